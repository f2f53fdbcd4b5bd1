//! kaohe-agent in the network lab: `once` in each bureau sees exactly what the lab planted,
//! and the collector scores the reports. Needs root (it skips, saying why, otherwise; with
//! `CI=true` it fails). The agent is built from the current sources on first use.

use std::collections::BTreeSet;

use kaohe_collector::offline::{PeriodChoice, ScoreRequest, score_files};
use kaohe_lab::{self as lab, Lab, Options};
use kaohe_rubric::evidence::{CheckStatus, ProbeRole, Report, Severity};

fn once(lab: &Lab, bureau: u8) -> Report {
    let host = format!("b{bureau}-agent");
    let ns = lab.namespace(&host).expect("agent host");
    let out_file = lab.state_dir().join(format!("b{bureau}-once.json"));
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(lab::testing::built_binary("kaohe-agent"))
        .args(["once", "--config"])
        .arg(lab.agent_config_path(bureau))
        .arg("--out")
        .arg(&out_file)
        .output()
        .expect("runs the agent");
    let summary = String::from_utf8_lossy(&out.stderr);
    println!("bureau {bureau} agent says:\n{summary}");
    assert!(out.status.success(), "agent failed in bureau {bureau}: {summary}");
    let text = std::fs::read_to_string(&out_file).expect("report written");
    Report::from_json(&text).expect("a valid v1 report")
}

/// Until a real collector runs in the lab, a listener stands in for its port so the
/// agent's TCP probe of the collector has something to reach.
fn stand_in_collector(lab: &Lab) -> Reaped {
    let ns = lab.namespace("collector").expect("collector host");
    let collector = lab
        .description()
        .hosts
        .iter()
        .find(|h| h.name == "collector")
        .expect("collector")
        .address();
    let ready = lab.state_dir().join("stand-in-collector.ready");
    let _ = std::fs::remove_file(&ready);
    let child = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(lab::testing::built_binary("kaohe-lab"))
        .args(["serve", "--netns", &ns, "--log"])
        .arg(lab.state_dir().join("stand-in-collector.log"))
        .arg("--ready")
        .arg(&ready)
        .args(["--tcp", &format!("{collector}:{}", lab.description().collector.port)])
        .spawn()
        .expect("listener starts");
    assert!(
        lab::wait_until(std::time::Duration::from_secs(5), || ready.exists()),
        "listener not ready"
    );
    Reaped(child)
}

/// A child process that is killed and reaped when the test is done with it.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn violations(r: &Report) -> Vec<String> {
    r.self_check
        .iter()
        .flat_map(|s| s.findings.iter())
        .filter(|f| f.severity == Severity::Violation)
        .map(|f| format!("{}: {}", f.code, f.detail))
        .collect()
}

fn inventory_ips(r: &Report) -> BTreeSet<String> {
    r.inventory.iter().map(|o| o.ip.clone()).collect()
}

#[test]
fn agent_once_in_each_bureau_reports_what_the_lab_planted_and_the_collector_scores_it() {
    if !lab::testing::require_root("agent_once_in_each_bureau_reports_what_the_lab_planted_and_the_collector_scores_it")
    {
        return;
    }
    let lab = Lab::up(Options::new("ka", lab::testing::built_binary("kaohe-lab"))).expect("lab comes up");
    let _collector = stand_in_collector(&lab);
    let facts = lab.facts().clone();
    let bureau = |id: u8| facts.bureaus.iter().find(|b| b.id == id).expect("bureau").clone();

    // Bureau 1, the control: everything up, no breach, no finding, inventory = live devices.
    let r1 = once(&lab, 1);
    for check in [
        r1.checks.reachability,
        r1.checks.isolation,
        r1.checks.self_check,
        r1.checks.inventory,
    ] {
        assert_eq!(check, CheckStatus::Ran, "{:?}", r1.problems);
    }
    let down: Vec<_> = r1.probes.samples.iter().filter(|s| !s.ok).collect();
    assert!(down.is_empty(), "bureau 1 targets down: {down:?}");
    assert!(r1.probes.samples.iter().any(|s| s.role == ProbeRole::Upstream));
    let breaches: Vec<_> = r1.isolation.iter().filter(|i| i.reached).collect();
    assert!(
        breaches.is_empty(),
        "bureau 1 must not reach the internet: {breaches:?}"
    );
    assert!(!r1.isolation.is_empty());
    assert!(violations(&r1).is_empty(), "{:?}", violations(&r1));
    let live: BTreeSet<String> = bureau(1).live_devices.iter().map(|d| d.ip.to_string()).collect();
    assert_eq!(
        inventory_ips(&r1),
        live,
        "inventory of bureau 1 = exactly its live devices"
    );
    for o in &r1.inventory {
        let want = bureau(1)
            .live_devices
            .iter()
            .find(|d| d.ip.to_string() == o.ip)
            .map(|d| d.mac.clone());
        assert_eq!(o.mac, want, "MAC of {}", o.ip);
    }
    assert!(r1.services.iter().all(|s| s.ok), "{:?}", r1.services);
    assert_eq!(r1.daily_checks.len(), 1);

    // Bureau 2: the unregistered device is in the inventory; the docker0/tun host is not flagged.
    let r2 = once(&lab, 2);
    let b2 = bureau(2);
    for d in &b2.unregistered {
        assert!(
            inventory_ips(&r2).contains(&d.ip.to_string()),
            "unregistered {} not found",
            d.ip
        );
    }
    for d in &b2.stale {
        assert!(
            !inventory_ips(&r2).contains(&d.ip.to_string()),
            "stale {} cannot be live",
            d.ip
        );
    }
    assert!(
        b2.false_positive_controls.contains(&b2.agent),
        "the agent host is the control"
    );
    assert!(
        violations(&r2).is_empty(),
        "docker0/tun host flagged: {:?}",
        violations(&r2)
    );
    assert!(
        r2.isolation.iter().all(|i| !i.reached),
        "bureau 2's agent host has no internet path"
    );

    // Bureau 3: the LAN reaches the internet through the rogue router.
    let r3 = once(&lab, 3);
    let reached: Vec<_> = r3.isolation.iter().filter(|i| i.reached).collect();
    assert!(!reached.is_empty(), "bureau 3's breach not reported");
    let rogue_ip = lab
        .description()
        .hosts
        .iter()
        .find(|h| h.name == "b3-rogue")
        .map(|h| h.address().to_string());
    assert!(
        reached.iter().all(|i| i.next_hop == rogue_ip),
        "breach via the rogue router: {reached:?}"
    );

    // The collector scores the reports against the lab's registries.
    let score = |b: u8, r: &Report| {
        let path = lab.state_dir().join(format!("b{b}-once.json"));
        assert_eq!(
            Report::from_json(&std::fs::read_to_string(&path).expect("read")).expect("parse"),
            *r
        );
        score_files(&ScoreRequest {
            rubric: None,
            registry: lab.registry_path(b),
            unit: None,
            evidence: vec![path],
            period: PeriodChoice::Auto,
            as_of: None,
        })
        .expect("scores")
    };
    let item = |s: &kaohe_rubric::Sheet, id: &str| s.items.iter().find(|i| i.id == id).expect("item").clone();
    let s1 = score(1, &r1);
    assert_eq!(
        item(&s1, "二.1").score,
        Some(3.0),
        "{:#?}",
        item(&s1, "二.1").deductions
    );
    assert_eq!(item(&s1, "三.3").score, Some(5.0));
    assert_eq!(
        item(&s1, "三.4").score,
        Some(5.0),
        "{:#?}",
        item(&s1, "三.4").deductions
    );
    let s2 = score(2, &r2);
    let d21 = item(&s2, "二.1");
    assert!(d21.score < Some(3.0));
    let ev = serde_json::to_string(&d21.deductions).expect("json");
    for d in &b2.unregistered {
        assert!(ev.contains(&d.ip.to_string()), "二.1 evidence names {}: {ev}", d.ip);
    }
    // One `once` is one isolation round: the breach is reported but not yet confirmed (two
    // consecutive rounds are needed), so 三.3 only warns; province_lab.rs checks the
    // confirmed deduction with the daemon.
    let s3 = score(3, &r3);
    let b3 = item(&s3, "三.3");
    assert_eq!(b3.score, Some(5.0), "{:#?}", b3.deductions);
    assert!(!b3.warnings.is_empty(), "the unconfirmed breach is a warning");

    let down = lab.down().expect("teardown");
    println!("lab down in {down:?}");
}

/// Outages in the spooled reports of an agent, one per (target, start), with their ends.
fn spooled_outages(state_dir: &std::path::Path) -> Vec<kaohe_rubric::evidence::Outage> {
    let mut by_key: std::collections::BTreeMap<(String, i64), kaohe_rubric::evidence::Outage> = Default::default();
    let spool = state_dir.join("spool");
    for e in std::fs::read_dir(&spool).expect("spool").flatten() {
        if e.path().extension().is_none_or(|x| x != "json") {
            continue;
        }
        let r = Report::from_json(&std::fs::read_to_string(e.path()).expect("read")).expect("spooled report is v1");
        for o in r.outages {
            let key = (o.target.clone(), o.start.timestamp_millis());
            let slot = by_key.entry(key).or_insert_with(|| o.clone());
            if o.end.is_some() {
                slot.end = o.end;
            }
        }
    }
    by_key.into_values().collect()
}

#[test]
fn daemon_in_bureau_3_records_each_uplink_flap_as_an_outage_within_two_probe_intervals() {
    if !lab::testing::require_root(
        "daemon_in_bureau_3_records_each_uplink_flap_as_an_outage_within_two_probe_intervals",
    ) {
        return;
    }
    let mut lab = Lab::up(Options::new("kf", lab::testing::built_binary("kaohe-lab"))).expect("lab comes up");
    let _collector = stand_in_collector(&lab);
    // Bureau 3's generated config, quickened: probes every second, a report every 2 s.
    let generated = std::fs::read_to_string(lab.agent_config_path(3)).expect("config");
    let quick = generated.replacen(
        "[schedule]\nprobe_interval_secs = 30",
        "[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 2",
        1,
    );
    assert_ne!(quick, generated, "the generated config has the expected schedule line");
    let config = lab.state_dir().join("b3-quick.toml");
    std::fs::write(&config, &quick).expect("write config");
    let cfg = kaohe_agent_config_state_dir(&quick);
    let _ = std::fs::remove_dir_all(&cfg);

    let ns = lab.namespace("b3-agent").expect("agent host");
    let agent = std::process::Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(lab::testing::built_binary("kaohe-agent"))
        .args(["run", "--config"])
        .arg(&config)
        .spawn()
        .expect("daemon starts");
    let agent = Reaped(agent);
    std::thread::sleep(std::time::Duration::from_secs(3));
    lab.flap_start(std::time::Duration::from_secs(10), std::time::Duration::from_secs(4))
        .expect("flapping starts");
    std::thread::sleep(std::time::Duration::from_secs(23));
    lab.flap_stop().expect("flapping stops");
    std::thread::sleep(std::time::Duration::from_secs(4));
    let _ = std::process::Command::new("kill")
        .arg("-TERM")
        .arg(agent.0.id().to_string())
        .status();
    drop(agent);

    let events = lab.flap_events();
    let downs: Vec<i64> = events
        .iter()
        .filter(|e| e.state == "down")
        .map(|e| e.t_unix_ms as i64)
        .collect();
    let ups: Vec<i64> = events
        .iter()
        .filter(|e| e.state == "up")
        .map(|e| e.t_unix_ms as i64)
        .collect();
    assert!(downs.len() >= 2, "two flaps at least: {events:?}");
    let outages = spooled_outages(&cfg);
    println!("flaps: {events:?}\noutages: {outages:#?}");
    let hub = lab
        .description()
        .hosts
        .iter()
        .find(|h| h.name == "hub")
        .expect("hub")
        .address()
        .to_string();
    let tolerance = 2_000; // two probe intervals, in ms
    for (i, down) in downs.iter().enumerate() {
        let Some(up) = ups.iter().find(|u| *u > down) else {
            continue;
        };
        let hit = outages.iter().find(|o| {
            o.target == hub
                && (o.start.timestamp_millis() - down).abs() <= tolerance
                && o.end.is_some_and(|e| (e.timestamp_millis() - up).abs() <= tolerance)
        });
        assert!(
            hit.is_some(),
            "flap {i} ({down}..{up}) has no matching outage of {hub}: {outages:#?}"
        );
    }
    let _ = lab.down();
}

/// The `state_dir` a generated agent config names.
fn kaohe_agent_config_state_dir(config: &str) -> std::path::PathBuf {
    config
        .lines()
        .find_map(|l| l.strip_prefix("state_dir = "))
        .map(|v| std::path::PathBuf::from(v.trim().trim_matches('"')))
        .expect("state_dir in config")
}

#[test]
fn agent_needs_only_cap_net_raw_as_an_unprivileged_user() {
    if !lab::testing::require_root("agent_needs_only_cap_net_raw_as_an_unprivileged_user") {
        return;
    }
    let setpriv = std::process::Command::new("setpriv").arg("--version").output().is_ok();
    if !lab::testing::require(
        "agent_needs_only_cap_net_raw_as_an_unprivileged_user",
        setpriv,
        "setpriv (util-linux)",
    ) {
        return;
    }
    let lab = Lab::up(Options::new("kc", lab::testing::built_binary("kaohe-lab"))).expect("lab comes up");
    // A copy of the binary and config that the unprivileged user can read.
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("kaohe-cap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let bin = dir.join("kaohe-agent");
    std::fs::copy(lab::testing::built_binary("kaohe-agent"), &bin).expect("copy agent");
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.join("agent.toml");
    std::fs::copy(lab.agent_config_path(1), &config).expect("copy config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let ns = lab.namespace("b1-agent").expect("agent host");
    let run = |caps: &[&str]| {
        let out = std::process::Command::new("ip")
            .args([
                "netns",
                "exec",
                &ns,
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
            ])
            .args(caps)
            .arg(&bin)
            .args(["once", "--config"])
            .arg(&config)
            .output()
            .expect("runs");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Report::from_json(&String::from_utf8_lossy(&out.stdout)).expect("report")
    };
    let with_cap = run(&["--inh-caps=+net_raw", "--ambient-caps=+net_raw"]);
    assert_eq!(
        with_cap.checks.reachability,
        CheckStatus::Ran,
        "{:?}",
        with_cap.problems
    );
    assert_eq!(with_cap.checks.inventory, CheckStatus::Ran, "{:?}", with_cap.problems);
    let icmp: Vec<_> = with_cap
        .probes
        .samples
        .iter()
        .filter(|s| s.kind == kaohe_rubric::evidence::ProbeKind::Icmp)
        .collect();
    assert!(
        !icmp.is_empty() && icmp.iter().all(|s| s.ok),
        "ICMP works with CAP_NET_RAW: {icmp:?}"
    );
    assert!(with_cap.inventory.len() > 1);
    // Without it the agent says what is missing instead of reporting the network down.
    let without = run(&[]);
    assert_eq!(without.checks.inventory, CheckStatus::Failed);
    assert!(
        without.problems.iter().any(|p| p.message.contains("CAP_NET_RAW")),
        "{:?}",
        without.problems
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = lab.down();
}

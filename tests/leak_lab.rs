//! Agentless leak detection in the network lab: forwarding probes find bureau 3's
//! rogue router and nothing in bureau 1; bureau 2's dual-homed PC, which does not
//! forward, is not found by them but by the spoofed-source probe, whose answer reaches the
//! leak listener on the internet side; a listener with another key hears nothing;
//! `--dry-run` sends no probe; the collector's sheets for bureaus 2 and 3 show the 三.4
//! deductions with this evidence. Needs root (it skips, saying why, otherwise; with
//! `CI=true` it fails). The agent is built from the current sources on first use.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kaohe_collector::offline::{PeriodChoice, ScoreRequest, score_files};
use kaohe_lab::{self as lab, Lab, Options};
use kaohe_rubric::evidence::{CheckStatus, LeakMethod, Report};

/// Bureau `b`'s generated agent config with leak detection switched on.
fn leak_config(lab: &Lab, b: u8) -> PathBuf {
    let generated = std::fs::read_to_string(lab.agent_config_path(b)).expect("config");
    let path = lab.state_dir().join(format!("b{b}-leak.toml"));
    std::fs::write(
        &path,
        format!(
            "{generated}\n[leak]\nlistener = \"203.0.113.99\"\nkey = \"lab-department-leak-key\"\nwait_ms = 1500\nmax_pps = 1000\n"
        ),
    )
    .expect("write config");
    path
}

fn agent(lab: &Lab, b: u8, args: &[&str]) -> (String, String) {
    let ns = lab.namespace(&format!("b{b}-agent")).expect("agent host");
    let out = Command::new("ip")
        .args(["netns", "exec", &ns])
        .arg(lab::testing::built_binary("kaohe-agent"))
        .args(args)
        .output()
        .expect("runs the agent");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(out.status.success(), "bureau {b}: agent {args:?} failed: {stderr}");
    (stdout, stderr)
}

fn once(lab: &Lab, b: u8) -> (Report, PathBuf) {
    let config = leak_config(lab, b);
    let out = lab.state_dir().join(format!("b{b}-leak-once.json"));
    let (_, summary) = agent(
        lab,
        b,
        &[
            "once",
            "--config",
            config.to_str().expect("utf8"),
            "--out",
            out.to_str().expect("utf8"),
        ],
    );
    println!("bureau {b}:\n{summary}");
    let report = Report::from_json(&std::fs::read_to_string(&out).expect("report")).expect("valid report");
    (report, out)
}

#[test]
fn leak_probes_find_the_bridging_hosts_of_bureaus_2_and_3_and_nothing_in_bureau_1() {
    if !lab::testing::require_root("leak_probes_find_the_bridging_hosts_of_bureaus_2_and_3_and_nothing_in_bureau_1") {
        return;
    }
    let lab = Lab::up(Options::new("kg", lab::testing::built_binary("kaohe-lab"))).expect("lab comes up");

    // A dry run lists every frame it would send and sends none: no canary hears of it.
    let before = lab.contacts().len();
    let config3 = leak_config(&lab, 3);
    let (plan, said) = agent(
        &lab,
        3,
        &["leak", "--dry-run", "--config", config3.to_str().expect("utf8")],
    );
    assert!(said.contains("未发送"), "{said}");
    assert!(
        plan.contains("转发探测 (forwarding): icmp 帧发往 10.3.0.254") && plan.contains("IP 203.0.113.99 → 10.3.0.254"),
        "the rogue router gets forwarding and spoofed-source probes:\n{plan}"
    );
    assert!(
        !plan.contains("转发探测 (forwarding): icmp 帧发往 10.3.0.1 "),
        "the bureau's own gateway (it carries the private network) gets no forwarding probe:\n{plan}"
    );
    assert!(
        plan.lines().all(|l| !l.contains("10.3.0.10 [")),
        "never the agent's own address:\n{plan}"
    );
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert_eq!(lab.contacts().len(), before, "a dry run reaches no canary");

    // Bureau 3: the rogue router forwards to the internet.
    let started = Instant::now();
    let (r3, path3) = once(&lab, 3);
    println!("bureau 3's once (with leak probes) took {:?}", started.elapsed());
    assert!(
        lab.contacts().len() > before,
        "the real run reaches the canaries (through the rogue router), so the dry run's silence means something"
    );
    assert_eq!(r3.checks.leak_detection, CheckStatus::Ran);
    let rogue: Vec<_> = r3.leaks.iter().filter(|l| l.ip == "10.3.0.254").collect();
    assert!(
        rogue
            .iter()
            .any(|l| l.method == LeakMethod::Forwarding && l.detail.contains("forwards packets")),
        "the TTL-1 probe expired at the rogue router: {:#?}",
        r3.leaks
    );
    assert!(
        rogue.iter().any(|l| l.detail.contains("198.51.100.10")),
        "a canary answered through it: {:#?}",
        r3.leaks
    );
    assert!(
        r3.leaks.iter().all(|l| l.ip == "10.3.0.254"),
        "only the rogue router: {:#?}",
        r3.leaks
    );

    // Bureau 1, the control: nothing. Bureau 2: its dual-homed PC does not forward, so the
    // forwarding probe does not find it (the spoofed-source probe is the listener's).
    let (r1, _) = once(&lab, 1);
    assert_eq!(r1.checks.leak_detection, CheckStatus::Ran);
    assert!(r1.leaks.is_empty(), "bureau 1: {:#?}", r1.leaks);
    // Bureau 2 with the leak listener running in the internet host (and a second one with
    // another key, standing in for a forger).
    let listen = |name: &str, key: &str| {
        let dir = lab.state_dir().join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let config = dir.join("listener.toml");
        std::fs::write(
            &config,
            format!(
                "state_dir = {:?}\n[schedule]\nreport_interval_secs = 1\n[listener]\naddress = \"203.0.113.99\"\nkey = \"{key}\"\nunits = [\"lab-b1\", \"lab-b2\", \"lab-b3\"]\n",
                dir.join("state").display().to_string()
            ),
        )
        .expect("listener config");
        let child = Command::new("ip")
            .args(["netns", "exec", &lab.namespace("inet").expect("inet host")])
            .arg(lab::testing::built_binary("kaohe-agent"))
            .args(["listen", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("listener starts");
        (Listener(child), dir.join("state").join("spool"))
    };
    let (listener, spool) = listen("listener", "lab-department-leak-key");
    let (forger, forger_spool) = listen("forger", "not-the-department-key");
    std::thread::sleep(std::time::Duration::from_millis(700));
    let (r2, path2) = once(&lab, 2);
    assert!(
        r2.leaks.iter().all(|l| l.method != LeakMethod::Forwarding),
        "bureau 2 has no forwarding host: {:#?}",
        r2.leaks
    );
    let _ = once(&lab, 1);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    drop(listener);
    drop(forger);
    let heard = spooled(&spool);
    let b2: Vec<_> = heard
        .iter()
        .filter(|r| r.unit_id == "lab-b2")
        .flat_map(|r| r.leaks.iter())
        .collect();
    for proto in ["icmp", "udp", "tcp"] {
        assert!(
            b2.iter()
                .any(|l| l.ip == "10.2.0.23" && l.method == LeakMethod::SpoofedSource && l.protocol == proto),
            "the dual-homed PC answered the {proto} probe by its internet link: {heard:#?}"
        );
    }
    assert!(
        heard.iter().all(|r| r.unit_id != "lab-b1"),
        "bureau 1 has no host with a path to the internet: {heard:#?}"
    );
    assert!(
        spooled(&forger_spool).iter().all(|r| r.leaks.is_empty()),
        "a listener without the department's key recognises nothing"
    );
    let sheet2 = score_files(&ScoreRequest {
        rubric: None,
        registry: lab.registry_path(2),
        unit: None,
        evidence: std::iter::once(path2).chain(spool_files(&spool, "lab-b2")).collect(),
        period: PeriodChoice::Auto,
        as_of: None,
    })
    .expect("scores");
    let item2 = sheet2.items.iter().find(|i| i.id == "三.4").expect("三.4");
    let evidence2 = serde_json::to_string(&item2.deductions).expect("json");
    assert!(
        evidence2.contains("10.2.0.23") && evidence2.contains("spoofed_source"),
        "三.4 for bureau 2 names the dual-homed PC found by the listener: {item2:#?}"
    );

    // The collector's sheet: 三.4 loses points for the rogue router, with this evidence.
    let sheet = score_files(&ScoreRequest {
        rubric: None,
        registry: lab.registry_path(3),
        unit: None,
        evidence: vec![path3],
        period: PeriodChoice::Auto,
        as_of: None,
    })
    .expect("scores");
    let item = sheet.items.iter().find(|i| i.id == "三.4").expect("三.4");
    let evidence = serde_json::to_string(&item.deductions).expect("json");
    assert!(
        item.score < Some(5.0) && evidence.contains("10.3.0.254") && evidence.contains("forwarding"),
        "三.4 for bureau 3: {:#?}",
        item
    );
    let _ = lab.down();
}

/// Stops the listener when dropped.
struct Listener(std::process::Child);

impl Drop for Listener {
    fn drop(&mut self) {
        // SIGTERM: the listener spools what it heard, then exits.
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        for _ in 0..50 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The reports a listener spooled.
fn spooled(spool: &std::path::Path) -> Vec<Report> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(spool).into_iter().flatten().flatten() {
        if let Ok(text) = std::fs::read_to_string(e.path())
            && let Ok(r) = Report::from_json(&text)
        {
            out.push(r);
        }
    }
    out
}

/// The spooled report files of one unit.
fn spool_files(spool: &std::path::Path, unit: &str) -> Vec<PathBuf> {
    std::fs::read_dir(spool)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| Report::from_json(&t).ok())
                .is_some_and(|r| r.unit_id == unit)
        })
        .collect()
}

//! The network lab: its planted facts checked with real packets.
//!
//! Every test that builds a lab needs root (network namespaces); without it the test
//! prints why it skips and passes (with `CI=true` it fails instead). Each test builds its own lab under its own prefix,
//! so tests run in parallel without touching each other, and a test that panics still
//! tears its lab down (the lab's Drop). Every probe is bounded (count and timeout).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kaohe_lab::generate::REGISTRY_HEADER;
use kaohe_lab::{self as lab, Description, Facts, Lab, Options, Probe};

/// `kaohe-lab`, built from the current sources: the lab's helper processes and its CLI.
fn helper() -> std::path::PathBuf {
    lab::testing::built_binary("kaohe-lab")
}

/// Whether the test can build labs; if not, it says why it skips (with `CI=true`, it
/// fails instead).
fn root_or_skip(test: &str) -> bool {
    lab::testing::require_root(test)
}

/// Builds a lab, or says why not and returns None (not root).
fn lab_up(test: &str, prefix: &str) -> Option<Lab> {
    if !root_or_skip(test) {
        return None;
    }
    let lab = Lab::up(Options::new(prefix, helper())).expect("the lab comes up");
    Some(lab)
}

fn ip_of_host(d: &Description, host: &str) -> Ipv4Addr {
    d.hosts[d.host_index(host).expect("host in the description")].address()
}

fn ip_of(lab: &Lab, host: &str) -> Ipv4Addr {
    ip_of_host(lab.description(), host)
}

fn canary(lab: &Lab) -> Ipv4Addr {
    *lab.facts().canaries.values().next().expect("a canary")
}

fn quick(p: Probe) -> Probe {
    p.with_timeout(Duration::from_millis(500))
}

fn reaches(lab: &Lab, host: &str, probe: Probe) -> bool {
    let out = lab.probe(host, &probe).expect("the probe runs");
    eprintln!("  {host}: {}", out.detail);
    out.ok
}

// ---------------------------------------------------------------- no root needed

#[test]
fn the_description_plants_the_faults_the_issue_asks_for() {
    let desc = Description::load(&lab::default_description()).expect("lab.toml loads");
    let facts = Facts::derive(&desc);
    let b = |id| facts.bureau(id).expect("bureau");

    let b1 = b(1);
    assert!(
        b1.unregistered.is_empty() && b1.stale.is_empty(),
        "bureau 1 is the clean control"
    );
    assert!(b1.dual_homed.is_empty() && b1.rogue_routers.is_empty() && b1.hosts_reaching_internet.is_empty());
    assert!(b1.flapping_uplinks.is_empty());

    let b2 = b(2);
    assert_eq!(b2.dual_homed, ["b2-pc3"]);
    assert_eq!(
        b2.unregistered.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["b2-nas"]
    );
    assert_eq!(b2.stale.len(), 1, "one registered device that is never present");
    assert_eq!(b2.false_positive_controls, ["b2-agent"]);
    assert_eq!(b2.hosts_reaching_internet, ["b2-pc3"], "only the dual-homed PC itself");

    let b3 = b(3);
    assert_eq!(b3.rogue_routers, ["b3-rogue"]);
    assert!(
        b3.hosts_reaching_internet.contains(&b3.agent),
        "the agent host's isolation check must see the breach"
    );
    let path = facts.hosts[&b3.agent].internet_path.clone().expect("a path");
    assert_eq!(
        path[1], "b3-rogue",
        "bureau 3 reaches the internet through the rogue router: {path:?}"
    );
    assert_eq!(b3.flapping_uplinks, ["b3-gw on bb3"]);

    for bureau in &facts.bureaus {
        let agent = &facts.hosts[&bureau.agent];
        assert_eq!(
            agent.reaches_targets,
            ["hub-router", "collector"],
            "bureau {} agent reaches its targets",
            bureau.id
        );
        assert!(
            bureau.live_devices.len() >= 6,
            "gateway, agent, office PCs and a printer"
        );
    }
}

#[test]
fn the_description_holds_only_lab_and_documentation_addresses() {
    let text = std::fs::read_to_string(lab::default_description()).expect("lab.toml");
    let allowed = [
        "10.0.0.0/8",
        "172.17.0.0/16",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "203.0.113.0/24",
    ]
    .map(|n| n.parse::<lab::net::Ipv4Net>().expect("prefix"));
    let mut seen = 0;
    for word in text.split(|c: char| !(c.is_ascii_digit() || c == '.')) {
        if let Ok(ip) = word.parse::<Ipv4Addr>() {
            seen += 1;
            assert!(
                allowed.iter().any(|n| n.contains(&ip)),
                "{ip} in lab.toml is neither a lab nor a documentation address"
            );
        }
    }
    assert!(seen > 30, "found only {seen} addresses");
}

#[test]
fn generated_registries_and_agent_configs_follow_the_description() {
    let desc = Description::load(&lab::default_description()).expect("lab.toml loads");
    let facts = Facts::derive(&desc);
    let dir = std::env::temp_dir().join(format!("kaohe-lab-gen-{}", std::process::id()));
    lab::generate::write_all(&desc, &facts, &dir).expect("files written");

    for bureau in &facts.bureaus {
        let bdir = lab::generate::bureau_dir(&dir, bureau.id);
        let csv = std::fs::read_to_string(bdir.join("registry.csv")).expect("registry");
        let mut lines = csv.lines();
        assert_eq!(lines.next(), Some(REGISTRY_HEADER));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert!(
            rows.iter().all(|r| r.len() == 8),
            "bureau {}: 8 columns everywhere",
            bureau.id
        );
        let registered: BTreeSet<&str> = rows.iter().filter(|r| r[0] == "设备").map(|r| r[2]).collect();
        for d in &bureau.live_devices {
            let listed = registered.contains(d.ip.to_string().as_str());
            let unregistered = bureau.unregistered.contains(d);
            assert_eq!(listed, !unregistered, "bureau {}: {} ({})", bureau.id, d.name, d.ip);
        }
        for s in &bureau.stale {
            assert!(
                registered.contains(s.ip.to_string().as_str()),
                "stale entry {} is registered",
                s.name
            );
        }
        assert!(
            rows.iter()
                .filter(|r| r[0] == "设备")
                .all(|r| !r[4].is_empty() && !r[5].is_empty()),
            "user and location"
        );
        assert!(
            rows.iter().any(|r| r[0] == "应用系统" && r[7].starts_with("http://")),
            "an application system"
        );

        let text = std::fs::read_to_string(bdir.join("agent.toml")).expect("agent config");
        let cfg: toml::Table = toml::from_str(&text).expect("agent.toml is TOML");
        assert_eq!(cfg["unit_id"].as_str(), Some(bureau.unit_id.as_str()));
        assert_eq!(cfg["collector"]["url"].as_str(), Some(desc.collector_url().as_str()));
        let targets = cfg["reachability"]["targets"].as_array().expect("targets");
        let upstream = targets
            .iter()
            .filter(|t| t["role"].as_str() == Some("upstream"))
            .count();
        assert_eq!(
            upstream,
            desc.agent_targets.iter().map(|t| t.probes.len()).sum::<usize>()
        );
        let gateway = ip_of_host(&desc, &bureau.gateway).to_string();
        assert!(
            targets
                .iter()
                .any(|t| t["role"].as_str() == Some("device") && t["address"].as_str() == Some(&gateway)),
            "the machine-room gateway is a device target"
        );
        assert_eq!(
            cfg["services"].as_array().map(Vec::len),
            desc.bureau(bureau.id).map(|b| b.apps.len())
        );
        let canaries = cfg["isolation"]["canaries"].as_array().expect("canaries");
        assert_eq!(
            canaries.len(),
            facts.canaries.len(),
            "the leak listener is not a canary"
        );
        let prefixes = cfg["inventory"]["prefixes"].as_array().expect("prefixes");
        assert_eq!(prefixes[0].as_str(), Some(bureau.lan_prefix.as_str()));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

// ---------------------------------------------------------------- in the lab

#[test]
fn bureau2_dual_homed_pc_answers_on_both_sides() {
    let Some(lab) = lab_up("bureau2_dual_homed_pc_answers_on_both_sides", "kld") else {
        return;
    };
    let pc = "b2-pc3";
    let d = lab.description();
    let h = &d.hosts[d.host_index(pc).expect("pc")];
    let lan_ip = h.nics[0].ip.addr();
    let inet_ip = h.nics[1].ip.addr();
    assert!(
        reaches(&lab, "b2-agent", quick(Probe::icmp(lan_ip))),
        "the LAN side answers"
    );
    assert!(
        reaches(&lab, "inet", quick(Probe::icmp(inet_ip))),
        "the internet side answers"
    );
    assert!(
        reaches(&lab, pc, quick(Probe::icmp(canary(&lab)))),
        "the PC itself reaches the internet"
    );
    assert!(reaches(&lab, pc, quick(Probe::tcp(canary(&lab), 443))));

    let fwd = lab.exec(pc, &["cat", "/proc/sys/net/ipv4/ip_forward"]).expect("cat");
    assert_eq!(String::from_utf8_lossy(&fwd.stdout).trim(), "0", "forwarding is off");
    let route = lab
        .exec(pc, &["ip", "-4", "route", "show", "default"])
        .expect("ip route");
    let route = String::from_utf8_lossy(&route.stdout);
    assert!(
        route.contains("via 192.0.2.1"),
        "default route via the internet: {route}"
    );

    // The rest of bureau 2 stays isolated: the PC does not forward.
    assert!(!reaches(&lab, "b2-pc1", quick(Probe::icmp(canary(&lab)))));

    // The unregistered device is live; the stale registry entry never answers.
    let b2 = lab.facts().bureau(2).expect("bureau 2");
    assert!(reaches(&lab, &b2.agent, quick(Probe::icmp(b2.unregistered[0].ip))));
    let stale = Probe::Icmp {
        addr: b2.stale[0].ip,
        count: 1,
        timeout: Duration::from_millis(300),
    };
    assert!(!reaches(&lab, &b2.agent, stale));
}

#[test]
fn false_positive_host_has_docker0_and_tun_but_no_internet_path() {
    let Some(lab) = lab_up("false_positive_host_has_docker0_and_tun_but_no_internet_path", "klp") else {
        return;
    };
    let b2 = lab.facts().bureau(2).expect("bureau 2");
    let host = b2.false_positive_controls[0].as_str();
    let links = lab.exec(host, &["ip", "-d", "-o", "link", "show"]).expect("ip link");
    let links = String::from_utf8_lossy(&links.stdout);
    assert!(
        links.lines().any(|l| l.contains("docker0") && l.contains("bridge")),
        "{links}"
    );
    assert!(
        links.lines().any(|l| l.contains("tun0") && l.contains("tun type tun")),
        "{links}"
    );
    let c = canary(&lab);
    for probe in [Probe::icmp(c), Probe::tcp(c, 443), Probe::dns(c)] {
        assert!(!reaches(&lab, host, quick(probe)), "{host} must not reach {probe:?}");
    }
    assert!(
        reaches(&lab, host, quick(Probe::icmp(ip_of(&lab, "collector")))),
        "but it reaches the collector"
    );
}

#[test]
fn bureau3_lan_reaches_canaries_through_the_rogue_router_and_bureau1_does_not() {
    let Some(lab) = lab_up(
        "bureau3_lan_reaches_canaries_through_the_rogue_router_and_bureau1_does_not",
        "klr",
    ) else {
        return;
    };
    let c = canary(&lab);
    for host in ["b3-agent", "b3-pc1"] {
        for probe in [Probe::icmp(c), Probe::tcp(c, 443), Probe::dns(c)] {
            assert!(reaches(&lab, host, quick(probe)), "{host} reaches {probe:?}");
        }
    }
    for host in ["b1-agent", "b1-pc1"] {
        for probe in [Probe::icmp(c), Probe::tcp(c, 443), Probe::dns(c)] {
            assert!(!reaches(&lab, host, quick(probe)), "{host} must not reach {probe:?}");
        }
    }
    // The canary saw bureau 3's own LAN addresses (no NAT), and nobody of bureau 1.
    let contacts = lab.contacts();
    let agent = ip_of(&lab, "b3-agent").to_string();
    assert!(
        contacts
            .iter()
            .any(|k| k.src.starts_with(&format!("{agent}:")) && k.proto == "tcp"),
        "{contacts:?}"
    );
    assert!(!contacts.iter().any(|k| k.src.starts_with("10.1.")), "{contacts:?}");

    // The path goes through the rogue router: without its forwarding, no breach.
    lab.set_forwarding("b3-rogue", false).expect("forwarding off");
    assert!(!reaches(&lab, "b3-agent", quick(Probe::icmp(c))));
    lab.set_forwarding("b3-rogue", true).expect("forwarding on");
    assert!(reaches(&lab, "b3-agent", quick(Probe::icmp(c))));
}

#[test]
fn every_host_reaches_exactly_what_the_description_predicts() {
    let Some(lab) = lab_up("every_host_reaches_exactly_what_the_description_predicts", "klm") else {
        return;
    };
    let d = lab.description();
    let facts = lab.facts();
    let mut probes = Vec::new();
    let mut expected = Vec::new();
    for h in &d.hosts {
        let f = &facts.hosts[&h.name];
        for (name, ip) in &facts.canaries {
            probes.push((h.name.as_str(), quick(Probe::icmp(*ip))));
            expected.push((
                h.name.clone(),
                format!("canary {name}"),
                f.reaches_canaries.contains(name),
            ));
        }
        for t in &d.agent_targets {
            probes.push((h.name.as_str(), quick(Probe::icmp(d.hosts[t.host].address()))));
            expected.push((
                h.name.clone(),
                format!("target {}", t.name),
                f.reaches_targets.contains(&t.name),
            ));
        }
    }
    let start = Instant::now();
    let outcomes = lab.probe_many(&probes).expect("probes run");
    eprintln!("{} probes in {} ms", outcomes.len(), start.elapsed().as_millis());
    let wrong: Vec<String> = expected
        .iter()
        .zip(&outcomes)
        .filter(|((_, _, want), got)| *want != got.ok)
        .map(|((host, what, want), got)| format!("{host} -> {what}: expected {want}, got {}", got.detail))
        .collect();
    assert!(
        wrong.is_empty(),
        "the lab disagrees with its description:\n{}",
        wrong.join("\n")
    );

    // The root namespace has exactly one link into the lab, carrying only its /30.
    let root = lab.root_link().expect("root link");
    let mine: Vec<String> = lab::leftovers(lab.prefix()).expect("links");
    assert_eq!(
        mine.iter().filter(|l| l.starts_with("link ")).collect::<Vec<_>>(),
        [&format!("link {}", root.root_dev)]
    );
    let addrs = std::process::Command::new("ip")
        .args(["-o", "addr", "show", "dev", &root.root_dev])
        .output()
        .expect("ip");
    let addrs = String::from_utf8_lossy(&addrs.stdout);
    assert_eq!(addrs.lines().count(), 1, "{addrs}");
    assert!(addrs.contains(&format!("{}/30", root.root_addr)), "{addrs}");
}

#[test]
fn fault_switches_take_effect_and_undo() {
    let Some(lab) = lab_up("fault_switches_take_effect_and_undo", "kls") else {
        return;
    };
    let collector = ip_of(&lab, "collector");
    let agent = "b1-agent";
    assert!(reaches(&lab, agent, quick(Probe::icmp(collector))));

    lab.set_link(agent, "eth0", false).expect("link down");
    assert!(!lab.link_state(agent, "eth0").expect("state").admin_up);
    assert!(!reaches(&lab, agent, quick(Probe::icmp(collector))));
    lab.set_link(agent, "eth0", true).expect("link up");
    // The default route came back with the link.
    assert!(reaches(
        &lab,
        agent,
        Probe::Icmp {
            addr: collector,
            count: 3,
            timeout: Duration::from_millis(500)
        }
    ));

    lab.netem(agent, "eth0", Some(&["loss", "100%"])).expect("netem");
    assert!(!reaches(&lab, agent, quick(Probe::icmp(collector))));
    lab.netem(agent, "eth0", Some(&["loss", "50%"])).expect("netem");
    let many = Probe::Icmp {
        addr: collector,
        count: 40,
        timeout: Duration::from_millis(100),
    };
    let out = lab.probe(agent, &many).expect("probe");
    let answered: u32 = out
        .detail
        .split_whitespace()
        .nth(2)
        .and_then(|s| s.split('/').next()?.parse().ok())
        .expect("n/40");
    eprintln!("  with 50% loss on the way out: {answered}/40 answered");
    assert!(
        (8..=32).contains(&answered),
        "about half of 40 round trips should pass, got {answered}"
    );
    lab.netem(agent, "eth0", None).expect("netem off");
    assert!(reaches(&lab, agent, quick(Probe::icmp(collector))));

    // Forwarding: the gateway of bureau 1 stops routing, its LAN loses the backbone.
    lab.set_forwarding("b1-gw", false).expect("forwarding off");
    assert!(!reaches(&lab, agent, quick(Probe::icmp(collector))));
    lab.set_forwarding("b1-gw", true).expect("forwarding on");
    assert!(reaches(&lab, agent, quick(Probe::icmp(collector))));
}

#[test]
fn flapping_uplink_goes_down_and_comes_back() {
    let Some(mut lab) = lab_up("flapping_uplink_goes_down_and_comes_back", "klf") else {
        return;
    };
    let d = lab.description().clone();
    let gw = &d.hosts[d.flap.host];
    let uplink = gw.nic_on(d.flap.segment).expect("uplink").dev.clone();
    let b3 = lab.facts().bureau(3).expect("bureau 3").clone();
    let hub = ip_of(&lab, "hub");
    assert!(lab.link_state(&gw.name, &uplink).expect("state").carrier);

    // Short enough for a test, long enough that ARP (1 s between retries) settles in
    // the up phase.
    let (period, down) = (Duration::from_millis(4000), Duration::from_millis(1500));
    let start = Instant::now();
    lab.flap_start(period, down).expect("flap start");
    let probe = Probe::Icmp {
        addr: hub,
        count: 1,
        timeout: Duration::from_millis(200),
    };
    let limit = Duration::from_secs(8);
    let carrier = |lab: &Lab| lab.link_state(&gw.name, &uplink).expect("state").carrier;

    assert!(lab::wait_until(limit, || !carrier(&lab)), "the uplink never went down");
    let went_down = start.elapsed();
    assert!(
        !reaches(&lab, &b3.agent, probe),
        "the hub is unreachable while the uplink is down"
    );
    assert!(lab::wait_until(limit, || carrier(&lab)), "the uplink never came back");
    let came_back = start.elapsed();
    let answered = lab::wait_until(Duration::from_secs(2), || reaches(&lab, &b3.agent, probe));
    let answers_again = start.elapsed();
    assert!(answered, "the hub answers again within 2 s of the uplink's return");
    eprintln!(
        "uplink down at {went_down:?}, up at {came_back:?}, hub answers at {answers_again:?} (period {period:?}, down {down:?})"
    );

    let events = lab.flap_events();
    let states: Vec<&str> = events.iter().map(|e| e.state.as_str()).collect();
    assert!(states.starts_with(&["down", "up"]), "flap log: {states:?}");
    let gap = events[1].t_unix_ms - events[0].t_unix_ms;
    assert!(
        (1400..=2000).contains(&gap),
        "down for {gap} ms, expected about {} ms",
        down.as_millis()
    );

    lab.flap_stop().expect("flap stop");
    assert!(!lab.flapping());
    assert!(carrier(&lab), "stopping leaves the uplink up");
}

#[test]
fn teardown_leaves_nothing_and_up_cleans_a_stale_lab() {
    let Some(lab) = lab_up("teardown_leaves_nothing_and_up_cleans_a_stale_lab", "klt") else {
        return;
    };
    let prefix = lab.prefix().to_string();
    let state: PathBuf = lab.state_dir().to_path_buf();
    assert!(lab.registry_path(1).exists() && lab.agent_config_path(3).exists() && lab.expected_path().exists());

    // A crashed run: the lab is never torn down (no Drop), then a new run of the same
    // prefix comes up over it.
    std::mem::forget(lab);
    let mut lab = Lab::up(Options::new(&prefix, helper())).expect("up over a stale lab");
    lab.flap_start(Duration::from_secs(60), Duration::from_secs(20))
        .expect("flapping, to have a process more");
    let namespaces: Vec<String> = lab::leftovers(&prefix)
        .expect("list")
        .into_iter()
        .filter(|l| l.starts_with("netns"))
        .collect();
    let d = lab.description();
    assert_eq!(
        namespaces.len(),
        d.hosts.len() + d.segments.len(),
        "the stale lab's namespaces were replaced, not added"
    );
    let pids = lab::lab_pids(&prefix);
    assert!(pids.len() >= 3, "listeners and flapper: {pids:?}");

    let took = lab.down().expect("down");
    eprintln!("down in {} ms", took.as_millis());
    let left = lab::leftovers(&prefix).expect("list");
    assert!(left.is_empty(), "left over: {left:?}");
    let netns = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    assert!(!String::from_utf8_lossy(&netns.stdout).contains(&format!("{prefix}-")));
    let links = std::process::Command::new("ip")
        .args(["-o", "link"])
        .output()
        .expect("ip link");
    assert!(!String::from_utf8_lossy(&links.stdout).contains(&format!("{prefix}-")));
    for pid in pids {
        assert!(
            !std::path::Path::new(&format!("/proc/{pid}/ns")).exists(),
            "process {pid} still runs"
        );
    }
    assert!(!state.exists(), "state dir {} removed", state.display());
}

#[test]
fn lab_comes_up_and_down_ten_times_in_a_row() {
    if !root_or_skip("lab_comes_up_and_down_ten_times_in_a_row") {
        return;
    }
    let prefix = "klx";
    let mut rows = Vec::new();
    for round in 1..=10 {
        let lab = Lab::up(Options {
            verbose: false,
            ..Options::new(prefix, helper())
        })
        .expect("up");
        let up = lab.timings().last().expect("total").1;
        let collector = ip_of(&lab, "collector");
        assert!(
            reaches(&lab, "b1-agent", quick(Probe::icmp(collector))),
            "round {round}: the lab works"
        );
        let down = lab.down().expect("down");
        let left = lab::leftovers(prefix).expect("list");
        assert!(left.is_empty(), "round {round}: left over {left:?}");
        assert!(
            up < Duration::from_secs(10),
            "round {round}: setup took {up:?}, over the 10 s the issue allows"
        );
        rows.push((round, up, down));
    }
    eprintln!("round    up ms  down ms");
    for (round, up, down) in &rows {
        eprintln!(
            "{round:>5} {:>8.1} {:>8.1}",
            up.as_secs_f64() * 1e3,
            down.as_secs_f64() * 1e3
        );
    }
    let n = rows.len() as f64;
    let mean =
        |f: fn(&(i32, Duration, Duration)) -> Duration| rows.iter().map(|r| f(r).as_secs_f64()).sum::<f64>() / n * 1e3;
    eprintln!(" mean {:>8.1} {:>8.1}", mean(|r| r.1), mean(|r| r.2));
}

#[test]
fn the_lab_command_brings_it_up_shows_it_and_takes_it_down() {
    if !root_or_skip("the_lab_command_brings_it_up_shows_it_and_takes_it_down") {
        return;
    }
    let prefix = "klc";
    let state = lab::default_state_dir(prefix);
    let run = |args: &[&str]| {
        let out = std::process::Command::new(helper())
            .args(["--prefix", prefix])
            .args(args)
            .output()
            .expect("kaohe-lab runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("$ kaohe-lab {}\n{text}", args.join(" "));
        (out.status.code(), text)
    };
    let (code, text) = run(&["up", "--no-flap"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("up in"), "up prints its timings: {text}");
    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("not flapping"), "{text}");
    let (code, text) = run(&["exec", "b3-rogue", "--", "cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!((code, text.trim()), (Some(0), "1"));
    let (code, text) = run(&["flap", "start", "--period", "4", "--down", "1"]);
    assert_eq!(code, Some(0), "{text}");
    let (_, text) = run(&["status"]);
    assert!(text.contains(": flapping"), "{text}");
    let (code, _) = run(&["flap", "stop"]);
    assert_eq!(code, Some(0));
    let (code, text) = run(&["forwarding", "b3-rogue", "off"]);
    assert_eq!(code, Some(0), "{text}");
    let (_, text) = run(&["exec", "b3-rogue", "--", "cat", "/proc/sys/net/ipv4/ip_forward"]);
    assert_eq!(text.trim(), "0");
    let (code, text) = run(&["exec", "nosuchhost", "--", "true"]);
    assert_eq!(code, Some(64), "{text}");
    let (code, text) = run(&["down"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(lab::leftovers(prefix).expect("list").is_empty());
    assert!(lab::lab_pids(prefix).is_empty());
    assert!(!state.exists());
    let (code, text) = run(&["status"]);
    assert_eq!(code, Some(3), "{text}");
}

#[test]
fn the_lab_command_generates_files_without_root() {
    let dir = std::env::temp_dir().join(format!("kaohe-lab-cli-gen-{}", std::process::id()));
    let out = std::process::Command::new(helper())
        .args(["gen", "--out"])
        .arg(&dir)
        .output()
        .expect("kaohe-lab runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in ["expected.json", "b1/registry.csv", "b2/agent.toml", "b3/registry.csv"] {
        assert!(dir.join(f).exists(), "{f}");
    }
    let bad = std::process::Command::new(helper())
        .args(["--prefix", "Bad-Prefix", "status"])
        .output()
        .expect("runs");
    assert_eq!(bad.status.code(), Some(64));
    let _ = std::fs::remove_dir_all(&dir);
}

//! Agentless leak detection in the network lab (issue 6): forwarding probes find bureau 3's
//! rogue router and nothing in bureau 1; bureau 2's dual-homed PC, which does not
//! forward, is not found by them; `--dry-run` sends no probe; the collector's sheet for
//! bureau 3 shows the 三.4 deduction with this evidence. Needs root (it skips, saying why,
//! otherwise) and the agent binary, which `cargo test --workspace` builds.

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kaohe_collector::offline::{PeriodChoice, ScoreRequest, score_files};
use kaohe_rubric::evidence::{CheckStatus, LeakMethod, Report};
use kaohe_tests::lab::{self, Lab, Options};

/// The `kaohe-agent` binary built beside this test.
fn agent_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join("kaohe-agent");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build -p kaohe-agent`) first",
        bin.display()
    );
    bin
}

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
        .arg(agent_bin())
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
fn forwarding_probes_find_the_rogue_router_and_nothing_else() {
    if !lab::is_root() {
        eprintln!("skipping: the lab needs root (network namespaces); this run is not root");
        return;
    }
    let lab = Lab::up(Options::new("kg", env!("CARGO_BIN_EXE_kaohe-lab"))).expect("lab comes up");

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
            .any(|l| l.method == LeakMethod::Forwarding && l.detail.contains("time exceeded")),
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
    let (r2, _) = once(&lab, 2);
    assert!(
        r2.leaks.iter().all(|l| l.method != LeakMethod::Forwarding),
        "bureau 2 has no forwarding host: {:#?}",
        r2.leaks
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

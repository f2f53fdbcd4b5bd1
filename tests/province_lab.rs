//! The whole chain in the lab: the real collector on the lab's collector host, an agent
//! per bureau enrolled with a one-time token and running as a daemon, reports delivered
//! over TLS into the collector's database, and each bureau scored from what was stored.
//! Needs root (it skips, saying why, otherwise) and the binaries `cargo test --workspace`
//! builds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use chrono::Utc;
use kaohe_collector::store::Store;
use kaohe_rubric::registry::Registry;
use kaohe_rubric::{Period, Rubric};
use kaohe_tests::lab::{self, Lab, Options};

fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` first",
        bin.display()
    );
    bin
}

struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

fn collector(data: &Path, args: &[&str]) -> String {
    let out = Command::new(bin("kaohe-collector"))
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .output()
        .expect("collector runs");
    assert!(
        out.status.success(),
        "collector {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn agents_enrol_deliver_to_the_real_collector_and_each_bureau_is_scored_from_the_database() {
    if !lab::is_root() {
        eprintln!("skipping: the lab needs root (network namespaces); this run is not root");
        return;
    }
    let lab = Lab::up(Options::new("kp", env!("CARGO_BIN_EXE_kaohe-lab"))).expect("lab comes up");
    let desc = lab.description().clone();
    let coll_host = desc
        .hosts
        .iter()
        .find(|h| h.name == "collector")
        .expect("collector host");
    let listen = format!("{}:{}", coll_host.address(), desc.collector.port);
    let data = lab.state_dir().join("collector-data");
    let _ = std::fs::remove_dir_all(&data);
    let public = format!("https://{listen}");
    for b in &desc.bureaus {
        collector(&data, &["unit", "add", &b.unit_id, "--name", &b.name]);
    }
    let ns = lab.namespace("collector").expect("ns");
    let _server = Reaped(
        Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(bin("kaohe-collector"))
            .args(["serve", "--listen", &listen, "--public-url", &public, "--data-dir"])
            .arg(&data)
            .spawn()
            .expect("collector starts"),
    );
    assert!(lab::wait_until(Duration::from_secs(10), || data
        .join("tls/ca.pem")
        .exists()));

    // Enrol and start an agent per bureau, quickened: probes every second, isolation every
    // 2 s, a report every 2 s.
    let mut agents = Vec::new();
    for b in &desc.bureaus {
        let token = collector(
            &data,
            &["token", "create", "--unit", &b.unit_id, "--public-url", &public],
        );
        let generated = std::fs::read_to_string(lab.agent_config_path(b.id)).expect("config");
        let quick = generated.replacen(
            "[schedule]\nprobe_interval_secs = 30",
            "[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 2\nisolation_interval_secs = 2",
            1,
        );
        let config = lab.state_dir().join(format!("b{}-province.toml", b.id));
        std::fs::write(&config, quick).expect("config");
        let agent_ns = lab.namespace(&format!("b{}-agent", b.id)).expect("ns");
        let out = Command::new("ip")
            .args(["netns", "exec", &agent_ns])
            .arg(bin("kaohe-agent"))
            .args(["enroll", &token, "--config"])
            .arg(&config)
            .output()
            .expect("enrol");
        assert!(
            out.status.success(),
            "bureau {} enrol: {}",
            b.id,
            String::from_utf8_lossy(&out.stderr)
        );
        agents.push(Reaped(
            Command::new("ip")
                .args(["netns", "exec", &agent_ns])
                .arg(bin("kaohe-agent"))
                .args(["run", "--config"])
                .arg(&config)
                .spawn()
                .expect("agent starts"),
        ));
    }
    std::thread::sleep(Duration::from_secs(12));
    drop(agents);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    let store = rt
        .block_on(Store::open(&format!("sqlite://{}", data.join("kaohe.db").display())))
        .expect("store");
    let rubric = Rubric::default_rubric();
    let mut sheets = Vec::new();
    for b in &desc.bureaus {
        let reports = rt
            .block_on(store.reports(&b.unit_id, Utc::now() - chrono::Duration::hours(1), Utc::now()))
            .expect("reports");
        assert!(
            reports.len() >= 3,
            "bureau {} delivered {} reports",
            b.id,
            reports.len()
        );
        // Each registry is valid and imports; the unit is then scored from the database's
        // daily roll-ups, as the dashboard does.
        let csv = std::fs::read(lab.registry_path(b.id)).expect("registry");
        Registry::from_csv(&csv, "registry.csv").expect("lab registry is valid");
        let path = lab.registry_path(b.id);
        collector(
            &data,
            &["registry", "import", "--unit", &b.unit_id, path.to_str().expect("utf8")],
        );
        let now = Utc::now();
        let sheet = rt
            .block_on(kaohe_collector::rollup::score_unit(
                &store,
                &rubric,
                &b.unit_id,
                Period::covering(now, now, rubric.timezone),
                now,
            ))
            .expect("scored from the database");
        assert_eq!(
            sheet.reports,
            reports.len(),
            "bureau {}: every report is in the roll-ups",
            b.id
        );
        sheets.push(sheet);
    }
    let item = |b: usize, id: &str| sheets[b].items.iter().find(|i| i.id == id).expect("item").clone();
    // Bureau 1, the control: its registry matches, no breach, no bridge.
    for id in ["二.1", "三.3", "三.4"] {
        let full = f64::from(item(0, id).points);
        assert_eq!(
            item(0, id).score,
            Some(full),
            "bureau 1 {id}: {:#?}",
            item(0, id).deductions
        );
    }
    // Bureau 2: the unregistered device costs under 二.1, with its address as evidence.
    let b2 = item(1, "二.1");
    let unregistered = &lab.facts().bureaus[1].unregistered;
    assert!(b2.score < Some(3.0));
    let evidence = serde_json::to_string(&b2.deductions).expect("json");
    for d in unregistered {
        assert!(evidence.contains(&d.ip.to_string()), "{evidence}");
    }
    // Bureau 3: the breach through the rogue router, confirmed by consecutive checks.
    let b3 = item(2, "三.3");
    assert!(b3.score < Some(5.0), "bureau 3 三.3: {b3:#?}");
    // Staff of bureau 2 get the list of devices to register, ready to complete and import.
    let registry_b2 = lab.registry_path(2);
    collector(
        &data,
        &[
            "registry",
            "import",
            "--unit",
            &desc.bureaus[1].unit_id,
            registry_b2.to_str().expect("utf8"),
        ],
    );
    let list = collector(
        &data,
        &["registry", "unregistered", "--unit", &desc.bureaus[1].unit_id, "--csv"],
    );
    for d in unregistered {
        assert!(list.contains(&d.ip.to_string()), "{list}");
    }
    let rows = list.lines().count();
    assert_eq!(
        rows,
        1 + unregistered.len(),
        "header + one row per unregistered device: {list}"
    );
    let _ = lab.down();
}

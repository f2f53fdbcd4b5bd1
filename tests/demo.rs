//! The demo (`deploy/demo`, `kaohe-lab demo`) end to end, quickly: the lab, the
//! collector, an agent per bureau, the score table after 20 s, and nothing left behind.
//! Needs root (it skips, saying why, otherwise; with `CI=true` it fails). The binaries
//! are built from the current sources on first use.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use kaohe_lab::{self as lab, Description};

/// The demo's own prefix (other tests use kl*, ka, kf, kc, kp, kq, kb, kr).
const PREFIX: &str = "kdt";

fn bin(name: &str) -> PathBuf {
    lab::testing::built_binary(name)
}

#[test]
fn the_demo_prints_the_table_and_the_dashboard_login_and_leaves_nothing_behind() {
    if !lab::testing::require_root("the_demo_prints_the_table_and_the_dashboard_login_and_leaves_nothing_behind") {
        return;
    }
    // The demo finds kaohe-collector and kaohe-agent beside kaohe-lab.
    let lab_bin = lab::testing::built_binary("kaohe-lab");
    for name in ["kaohe-collector", "kaohe-agent"] {
        let beside = lab_bin.parent().expect("dir").join(name);
        assert_eq!(beside, bin(name), "{name} beside kaohe-lab");
    }
    // A free loopback port (8443 may be taken on this machine).
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let start = Instant::now();
    let out = Command::new(&lab_bin)
        .args([
            "demo",
            "--prefix",
            PREFIX,
            "--seconds",
            "20",
            "--exit-after-table",
            "--port",
        ])
        .arg(port.to_string())
        .output()
        .expect("the demo runs");
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let left = lab::leftovers(PREFIX).expect("leftovers");
    assert!(
        out.status.success(),
        "demo failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(left.is_empty(), "left behind: {left:?}");
    eprintln!("demo took {:.1} s", took.as_secs_f64());

    let url = format!("管理平台 (dashboard): https://127.0.0.1:{port}/  用户 admin  密码 ");
    let login = stdout
        .lines()
        .find(|l| l.starts_with(&url))
        .unwrap_or_else(|| panic!("no dashboard line {url:?}:\n{stdout}"));
    assert!(login[url.len()..].trim().len() >= 16, "a password: {login}");
    assert!(stdout.contains("CA 指纹 (fingerprint): sha256:"), "{stdout}");

    // The ranking lists every lab bureau with its scores and a last report.
    let desc = Description::load(&lab::default_description()).expect("lab.toml");
    let table = stdout
        .split("全省评分表")
        .nth(1)
        .unwrap_or_else(|| panic!("no score table:\n{stdout}"));
    assert!(table.contains("考核排名 (ranking)"), "{table}");
    for b in &desc.bureaus {
        let row = table
            .lines()
            .find(|l| l.trim_end().ends_with(&format!(" {}", b.unit_id)))
            .unwrap_or_else(|| panic!("bureau {} is not in the table:\n{table}", b.unit_id));
        assert!(row.contains(&b.name), "{row}");
        let numbers = row.split_whitespace().filter(|w| w.parse::<f64>().is_ok()).count();
        // rank, 二, 三, automatic total, total, pending.
        assert!(numbers >= 6, "scores in {row:?}");
        assert!(!row.contains("从未上报"), "bureau {} never reported: {row}", b.unit_id);
        // And one line of deductions each.
        assert!(
            table
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{} ({})", b.name, b.unit_id))),
            "no deduction line for {}:\n{table}",
            b.unit_id
        );
    }
    assert!(stdout.contains("已清理, 无残留"), "{stdout}");
}

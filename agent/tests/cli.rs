//! The `kaohe-agent` binary as a user runs it.

#[test]
fn version_prints_the_package_version() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
        .arg("--version")
        .output()
        .expect("runs");
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.trim(), format!("kaohe-agent {}", env!("CARGO_PKG_VERSION")));
}

use std::process::{Command, Output};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
        .args(args)
        .output()
        .expect("runs")
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("kaohe-agent-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn empty_config_probes_nothing_and_says_so() {
    let path = temp_config("empty.toml", "");
    let out = agent(&["once", "--config", path.to_str().expect("utf8")]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("不探测任何目标"));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    for (check, status) in report["checks"].as_object().expect("checks") {
        assert_eq!(status, "not_configured", "{check}");
    }
    assert!(report["probes"]["samples"].as_array().is_some_and(Vec::is_empty));
}

#[test]
fn malformed_config_exits_64_naming_key_and_line() {
    let path = temp_config(
        "bad.toml",
        "[reachability]\n\n[[reachability.targets]]\naddress = \"10.0.0.1\"\nkind = \"smoke-signal\"\n",
    );
    let out = agent(&["check-config", "--config", path.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("第 5 行") && err.contains("reachability.targets[0].kind"),
        "{err}"
    );
}

#[test]
fn once_reports_reachable_and_refused_loopback_targets() {
    // Loopback only: 127.0.0.1 answers ICMP (as root or with ping_group_range); port 9 is closed.
    let path = temp_config(
        "lo.toml",
        "[reachability]\ntimeout_ms = 500\n[[reachability.targets]]\naddress = \"127.0.0.1:9\"\nkind = \"tcp\"\n",
    );
    let out = agent(&["once", "--config", path.to_str().expect("utf8")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report JSON");
    assert_eq!(report["checks"]["reachability"], "ran");
    let s = &report["probes"]["samples"][0];
    assert_eq!(
        (s["target"].as_str(), s["ok"].as_bool()),
        (Some("127.0.0.1:9"), Some(false))
    );
    assert_eq!(s["error"], "connection refused");
    // The report is schema v1 and reads back.
    kaohe_rubric::Report::from_value(report).expect("valid v1 report");
}

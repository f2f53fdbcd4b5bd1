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

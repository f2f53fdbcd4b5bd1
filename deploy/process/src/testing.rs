//! The rule for a test that needs what a machine may lack (root, PostgreSQL, a data
//! package): locally it skips and says so; under CI (`CI=true`) it fails, naming what is
//! missing, so a CI run that lost root or PostgreSQL is never green. One copy for the
//! agent's, the collector's and the lab's tests.

/// Whether this run is CI (`CI` is `true` or `1`): then nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether `test` can do its real part, which needs `what` (e.g. "root (network
/// namespaces)"); `have` says whether this run has it. Without it the test should return:
/// this prints that it skipped. Under CI it panics instead, naming what is missing.
pub fn require(test: &str, have: bool, what: &str) -> bool {
    if have {
        return true;
    }
    assert!(!in_ci(), "{test}: needs {what}; CI=true, so this is a failure");
    eprintln!("{test}: skipped, needs {what}");
    false
}

/// Whether this process runs as root (effective uid 0, from `/proc/self/status`).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .is_some_and(|euid| euid == "0")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_run_has_is_never_skipped() {
        assert!(require("t", true, "nothing"));
    }

    #[test]
    fn is_root_agrees_with_the_effective_uid() {
        let out = std::process::Command::new("id").arg("-u").output().expect("id runs");
        assert_eq!(is_root(), String::from_utf8_lossy(&out.stdout).trim() == "0");
    }
}

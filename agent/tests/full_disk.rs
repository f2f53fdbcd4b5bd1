//! A real full file system: the agent's state directory on a tiny tmpfs, filled up while
//! the real agent runs against a fake collector on loopback. Needs root to mount the
//! tmpfs: without it the test says why and skips, except under `CI=true`, where it fails.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{
    Mode, Shared, agent_config, assert_gaps_accounted, enrol_files, free_port, pki, start_agent_logging,
    start_collector, stop_agent, wait_for,
};

/// A tmpfs mounted for the test, unmounted however the test ends.
struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    fn mount(path: &Path, size: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(path).map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "kaohe-test"])
            .arg(path)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!("mount failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
        }
        Ok(Tmpfs {
            path: path.to_path_buf(),
        })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (an agent that did not stop): detach it now, it goes when free.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}

/// The agent, killed if the test fails before stopping it (so the tmpfs can go).
struct Running(Option<std::process::Child>);

impl Running {
    fn stop(mut self) {
        if let Some(agent) = self.0.take() {
            stop_agent(agent);
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut agent) = self.0.take() {
            let _ = agent.kill();
            let _ = agent.wait();
        }
    }
}

const TEST: &str = "on_a_full_disk_the_agent_counts_every_report_it_loses_and_the_collector_sees_the_gap";

/// Skips (saying what is missing) or, under CI=true, fails naming it.
fn cannot(missing: &str) {
    kaohe_process::testing::require(TEST, false, missing);
}

/// Fills the file system at `dir` to the last page: writes until the write fails with
/// ENOSPC several times in a row (the agent frees its temporary files meanwhile).
fn fill(dir: &Path) -> PathBuf {
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).expect("filler");
    let chunk = [0u8; 4096];
    let mut refused = 0;
    while refused < 5 {
        match f.write(&chunk) {
            Ok(_) => refused = 0,
            Err(e) if e.raw_os_error() == Some(28) => {
                refused += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("filling the tmpfs: {e}"),
        }
    }
    path
}

fn log_count(log: &Path, needle: &str) -> usize {
    std::fs::read_to_string(log).unwrap_or_default().matches(needle).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_full_disk_the_agent_counts_every_report_it_loses_and_the_collector_sees_the_gap() {
    if !kaohe_process::testing::is_root() {
        return cannot("root (to mount a tmpfs)");
    }
    let dir = std::env::temp_dir().join(format!("kaohe-full-disk-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let state = dir.join("state");
    let tmpfs = match Tmpfs::mount(&state, "256k") {
        Ok(t) => t,
        Err(e) => return cannot(&format!("a tmpfs ({e})")),
    };
    let pki = pki();
    enrol_files(&state, &pki);
    let addr = free_port();
    // A few reports fit in memory; the rest are dropped, and counted.
    let config = agent_config(&dir, &state, addr, "[spool]\nmemory_kib = 4\n");
    let log = dir.join("agent.log");
    let rx: Shared = Arc::default();
    let handle = start_collector(addr, &pki, rx.clone()).await;
    let agent = Running(Some(start_agent_logging(&config, &log)));
    wait_for(Duration::from_secs(30), "3 reports delivered", || {
        rx.lock().expect("lock").stored.len() >= 3
    })
    .await;

    // The collector goes away and the disk fills up: reports are held, then dropped.
    rx.lock().expect("lock").mode = Mode::Unavailable;
    let filler = fill(&state);
    wait_for(Duration::from_secs(30), "reports dropped from memory", || {
        log_count(&log, "reports held in memory reached their bound") > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let seen_before = rx.lock().expect("lock").sequences.iter().copied().max().unwrap_or(0);

    // Space returns and so does the collector.
    std::fs::remove_file(&filler).expect("remove the filler");
    rx.lock().expect("lock").mode = Mode::Accept;
    wait_for(Duration::from_secs(60), "reports after the gap", || {
        let r = rx.lock().expect("lock");
        let first_after = r
            .reports
            .iter()
            .filter(|x| x.spool_dropped > 0)
            .map(|x| x.sequence)
            .min();
        first_after.is_some_and(|s| r.sequences.iter().filter(|x| **x > s).count() >= 2)
    })
    .await;
    agent.stop();
    handle.shutdown();
    drop(tmpfs);

    let r = rx.lock().expect("lock");
    let gap = assert_gaps_accounted(&r.reports);
    let dropped = r.reports.iter().map(|x| x.spool_dropped).max().unwrap_or(0);
    assert!(
        gap > 0 && gap == dropped,
        "gap {gap} == dropped {dropped}, and something was dropped"
    );
    assert!(
        r.sequences.iter().any(|s| *s > seen_before),
        "reports made after the disk filled arrived"
    );
    let log_text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        log_text.contains("No space left on device"),
        "the error is named: {log_text}"
    );
    assert_eq!(
        log_count(&log, "cannot write the report to the spool"),
        1,
        "the failure is logged once, not per retry: {log_text}"
    );
    assert_eq!(
        log_count(&log, "spool writable again"),
        1,
        "the recovery is logged: {log_text}"
    );
    eprintln!(
        "full disk: {} reports stored, {gap} sequence numbers missing, spool_dropped {dropped}",
        r.reports.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

//! Benchmarks of the agent run by `kaohe-lab bench` (`deploy/bench/run`); the
//! figures are in `docs/benchmarks.md`. Measured, never asserted.
//!
//! - [`sweep`]: a /24 ARP sweep of `kaohe-agent once` beside `arp-scan` and `nmap -sn`, on
//!   a LAN of its own: one namespace per live host, all on one bridge, the scanner in a
//!   namespace of its own. Every packet stays inside namespaces this run created
//!   (`deploy/lab/README.md`, "Network rule"); the root namespace gets no address and no link.
//! - [`agent_rss`]: `kaohe-agent run` in bureau 1 of the lab for some minutes, sampling
//!   its memory (`/proc/PID/status`) and CPU time (`/proc/PID/stat`).

mod lan;
mod rss;
mod sweep;

use std::fs;
use std::io;
use std::process::{Command, Stdio};
use std::thread;
use std::time::Duration;

pub use lan::SweepLan;
pub use rss::{RssOptions, RssResult, Sample, agent_rss};
pub use sweep::{Run, SweepOptions, SweepResult, Tool, ToolResult, UnknownTool, default_tools, sweep};

use crate::sys::{ip_batch, kill_pids, run};
use crate::{LabError, PrefixError, lab_pids};

/// Where the benchmarks keep their configs, reports and logs (root-only tmpfs).
pub const WORK_DIR: &str = "/run/kaohe-bench";

/// A benchmark that could not run, with what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Lab(#[from] LabError),
    #[error(transparent)]
    Prefix(#[from] PrefixError),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    #[error("the agent's report: {source}")]
    Report {
        source: kaohe_rubric::evidence::EvidenceError,
    },
    #[error("needs root: it builds network namespaces")]
    NotRoot,
    /// Bad arguments (the CLI exits 64).
    #[error("{0}")]
    Usage(String),
    /// A tool or the agent did not do what the benchmark needs.
    #[error("{0}")]
    Failed(String),
}

fn io_err(context: impl std::fmt::Display) -> impl FnOnce(io::Error) -> BenchError {
    let context = context.to_string();
    move |source| BenchError::Io { context, source }
}

/// Sends a signal to processes by id (with the `kill` command: no libc here).
pub(crate) fn signal(pids: &[u32], sig: &str) {
    if pids.is_empty() {
        return;
    }
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .args(pids.iter().map(u32::to_string))
        .stderr(Stdio::null())
        .status();
}

/// The namespaces whose names start with `PREFIX-`.
fn namespaces_of(prefix: &str) -> Result<Vec<String>, BenchError> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    let p = format!("{prefix}-");
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(&p))
        .map(str::to_string)
        .collect())
}

/// Removes the sweep topology of a prefix: the processes inside its namespaces (by id),
/// then the namespaces, and with them every veth and the bridge. Returns how many
/// namespaces it removed. Safe when nothing is there.
pub fn clean_sweep(prefix: &str) -> Result<usize, BenchError> {
    crate::check_prefix(prefix)?;
    let namespaces = namespaces_of(prefix)?;
    kill_pids(&lab_pids(prefix), Duration::from_secs(1));
    let lines: Vec<String> = namespaces.iter().map(|n| format!("netns del {n}")).collect();
    if !lines.is_empty() {
        ip_batch(None, &lines)?;
    }
    Ok(namespaces.len())
}

/// The machine, for the record: cores, kernel, date.
pub fn machine() -> String {
    let cores = thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    format!("{cores} cores ({cpu}), kernel {}, {date}", kernel.trim())
}

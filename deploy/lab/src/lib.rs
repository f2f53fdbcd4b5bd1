//! The network lab: a small province in Linux network namespaces, the demo that runs
//! the whole chain in it for people, and the agent's benchmarks. One binary,
//! `kaohe-lab` ([`cli`]), drives all three; the workspace's integration tests (`tests/`)
//! use this crate as a library.
//!
//! `deploy/lab/lab.toml` describes the lab ([`model`]); [`Lab::up`] builds it with `ip`
//! (batched), `sysctl` and the lab's own helper processes ([`helper`]: the canary
//! listeners, the link flapper and the probes, run as `kaohe-lab` inside namespaces),
//! and tears it down when dropped. From the same description come each bureau's
//! registry and agent config ([`generate`]) and the facts the tests expect ([`facts`]).
//!
//! The rules every run keeps (`deploy/lab/README.md`, "Network rule"): every packet
//! goes to a namespace this run created; the root namespace has exactly one lab link,
//! to the collector; every name carries the run's prefix; `up` first removes a stale
//! lab of the same prefix.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod facts;
pub mod generate;
pub mod helper;
pub mod model;
pub mod net;
pub mod sys;
pub mod testing;

mod cleanup;
mod error;
mod lab;
mod ops;
mod probe;
mod setup;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use cleanup::{Cleanup, cleanup, read_run_info};
pub use error::{LabError, PrefixError};
pub use facts::Facts;
pub use lab::Lab;
pub use model::Description;
pub use probe::{Probe, ProbeOutcome};

/// Runtime state of every lab lives under here by default (root-only tmpfs).
pub const RUN_DIR: &str = "/run/kaohe-lab";
/// The lab end of the root link, inside the root host's namespace.
pub const ROOT_LINK_LAB_DEV: &str = "mgmt0";

/// A run prefix: 1-8 of `[a-z0-9]`, starting with a letter, so that the root link
/// `PREFIX-coll` fits in 15 bytes and `PREFIX-` never matches another prefix.
pub fn check_prefix(prefix: &str) -> Result<(), PrefixError> {
    let ok = (1..=8).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && prefix.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(PrefixError(prefix.to_string()))
    }
}

/// `deploy/lab/lab.toml` of this workspace.
pub fn default_description() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("lab.toml")
}

/// `/run/kaohe-lab/PREFIX`.
pub fn default_state_dir(prefix: &str) -> PathBuf {
    Path::new(RUN_DIR).join(prefix)
}

/// Whether this process is root. Tests that need the lab skip (and say so) otherwise.
pub fn is_root() -> bool {
    sys::euid() == Some(0)
}

/// Namespaces and root links that carry a prefix: what a torn-down lab must not leave.
pub fn leftovers(prefix: &str) -> Result<Vec<String>, LabError> {
    let p = format!("{prefix}-");
    let mut left: Vec<String> = sys::netns_list()?
        .into_iter()
        .filter(|n| n.starts_with(&p))
        .map(|n| format!("netns {n}"))
        .collect();
    left.extend(
        sys::root_links()?
            .into_iter()
            .filter(|l| l.starts_with(&p))
            .map(|l| format!("link {l}")),
    );
    Ok(left)
}

/// The processes running inside the namespaces of a prefix (listeners, flapper, and
/// whatever was started there with `exec`).
pub fn lab_pids(prefix: &str) -> Vec<u32> {
    let p = format!("{prefix}-");
    sys::netns_list()
        .unwrap_or_default()
        .iter()
        .filter(|n| n.starts_with(&p))
        .flat_map(|n| sys::netns_pids(n))
        .collect()
}

/// Polls `ready` every 5 ms until it holds (true) or `limit` has passed (false).
pub fn wait_until(limit: Duration, ready: impl FnMut() -> bool) -> bool {
    sys::wait_until(limit, ready)
}

/// How `up` handles bureau 3's flapping uplink.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlapMode {
    /// Not started (tests start it themselves).
    Off,
    /// As `[flap]` in the description says (autostart, period, down time).
    Description,
    /// Started with this schedule.
    Schedule { period: Duration, down: Duration },
}

/// How to build a lab.
#[derive(Debug, Clone)]
pub struct Options {
    pub prefix: String,
    pub description: PathBuf,
    pub state_dir: PathBuf,
    /// The `kaohe-lab` binary, which runs the listeners, the flapper and the probes
    /// inside namespaces. Tests pass [`testing::built_binary`]`("kaohe-lab")`.
    pub helper: PathBuf,
    pub flap: FlapMode,
    /// Print each step's time to stderr.
    pub verbose: bool,
}

impl Options {
    /// The workspace's lab description, state in `/run/kaohe-lab/PREFIX`, no flapping.
    pub fn new(prefix: &str, helper: impl Into<PathBuf>) -> Options {
        Options {
            prefix: prefix.to_string(),
            description: default_description(),
            state_dir: default_state_dir(prefix),
            helper: helper.into(),
            flap: FlapMode::Off,
            verbose: true,
        }
    }
}

/// The root namespace's one link into the lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RootLink {
    pub slot: u32,
    pub net: String,
    pub root_dev: String,
    pub root_addr: Ipv4Addr,
    pub lab_dev: String,
    pub lab_addr: Ipv4Addr,
    /// The collector as a browser in the root namespace reaches it.
    pub collector_url: String,
}

/// What `lab.json` in the state dir says about a running lab.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    pub prefix: String,
    pub description: PathBuf,
    pub state_dir: PathBuf,
    pub root_link: RootLink,
    /// host → namespace
    pub namespaces: BTreeMap<String, String>,
    /// segment → switch namespace
    pub switches: BTreeMap<String, String>,
    pub created_unix_ms: u128,
}

/// A probe run inside a lab host (by the helper binary; never from the root namespace).
/// A link's state as `ip link` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkState {
    /// Administratively up (`UP`).
    pub admin_up: bool,
    /// Has carrier (`LOWER_UP`).
    pub carrier: bool,
}

/// A line of the flapper's log.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FlapEvent {
    pub t_unix_ms: u128,
    /// "down" or "up".
    pub state: String,
}

/// A line of a listener's contact log: who reached which canary, how.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    pub t_unix_ms: u128,
    pub proto: String,
    pub src: String,
    pub dst: String,
}

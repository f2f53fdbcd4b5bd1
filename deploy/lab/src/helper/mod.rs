//! The lab's helper processes, run by `kaohe-lab` inside namespaces (`ip netns exec`):
//!
//! - `probe icmp|tcp|dns`: one bounded probe from a lab host (the machines have no
//!   ping or nc). Refuses to run outside a named namespace (the root namespace).
//! - `serve`: the canaries' TCP 443 and DNS listeners (and HTTP for the app server);
//!   every contact is logged as a JSON line, so the canaries double as leak listeners.
//! - `flap-run`: takes a switch port down and up on a schedule.
//!
//! `serve` and `flap-run` exit by themselves as soon as the namespace they were started
//! in is deleted (or replaced by a new one of the same name), so a crashed test never
//! leaves them probing or flapping.

mod flap;
mod probe;
mod serve;

use std::io;
use std::path::Path;

pub use flap::{FlapArgs, flap};
pub use probe::{ProbeArgs, ProbeKind, probe};
pub use serve::{ServeArgs, serve};

use crate::sys;

/// Why a helper could not do its job.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Bad arguments.
    #[error("{0}")]
    Usage(String),
    /// A probe asked to run in the root namespace.
    #[error("refusing to probe from outside the lab's namespaces; run it in a lab host (lab exec HOST -- ...)")]
    OutsideLab,
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
    /// Started outside the namespace it was told it runs in.
    #[error("not running inside namespace {0}")]
    NotInNamespace(String),
    #[error("`{command}` failed: {status}")]
    Command { command: String, status: String },
}

fn io_error(context: impl Into<String>) -> impl FnOnce(io::Error) -> HelperError {
    let context = context.into();
    move |source| HelperError::Io { context, source }
}

// ------------------------------------------------------------------ watchdog

/// Whether this process still runs in the namespace `/run/netns/NAME` names.
pub(crate) fn namespace_still_ours(name: &str, ours: Option<(u64, u64)>) -> bool {
    ours.is_some() && sys::netns_identity(&Path::new("/run/netns").join(name)) == ours
}

pub(crate) fn own_namespace() -> Option<(u64, u64)> {
    sys::netns_identity(Path::new("/proc/self/ns/net"))
}

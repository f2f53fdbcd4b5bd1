//! The collector's log: `tracing` to standard error, plain text for journald by default or
//! one JSON object per line (`--log-format json`) for log shippers; the `KAOHE_LOG`
//! variable filters it like `RUST_LOG` (e.g. `KAOHE_LOG=debug`, `KAOHE_LOG=kaohe_collector=debug,warn`).
//!
//! What a flood can trigger (refused connections, limit hits, rejected logins) goes through
//! a [`Throttle`], so that an attack cannot fill the disk: the first event of a kind is
//! logged, then at most one line per interval, saying how many were not logged.
//!
//! Secrets (passwords, tokens, credentials, cookies) are never logged: handlers log
//! user names, agent and unit ids, peer addresses, never a request's headers or body.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One readable line per event, with its time and level.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The filter when `KAOHE_LOG` is not set: the collector's own events from `info` for the
/// server (`warn` for one-shot commands, whose output is their own), other crates' from `warn`.
fn default_filter(server: bool) -> EnvFilter {
    EnvFilter::new(if server { "kaohe_collector=info,warn" } else { "warn" })
}

/// Installs the subscriber. `server` is true for `serve`. A second call does nothing.
pub fn init(format: LogFormat, server: bool) {
    let filter = match std::env::var("KAOHE_LOG") {
        Ok(v) if !v.trim().is_empty() => EnvFilter::try_new(v.trim()).unwrap_or_else(|e| {
            eprintln!("KAOHE_LOG 无法识别, 使用默认设置 (cannot parse KAOHE_LOG, using the default): {e}");
            default_filter(server)
        }),
        _ => default_filter(server),
    };
    let builder = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .with_target(false);
    let _ = match format {
        LogFormat::Text => builder.with_ansi(false).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(false).try_init(),
    };
}

/// Rate-limits log lines per kind of event.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    kinds: Mutex<HashMap<&'static str, Slot>>,
}

#[derive(Debug)]
struct Slot {
    last: Instant,
    suppressed: u64,
}

impl Throttle {
    /// At most one line per kind per `every`.
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            kinds: Mutex::new(HashMap::new()),
        }
    }

    /// Whether to log an event of `kind` now; `Some(n)` says yes, with `n` events of this
    /// kind not logged since the last line.
    pub fn allow(&self, kind: &'static str) -> Option<u64> {
        let mut kinds = self.kinds.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        match kinds.get_mut(kind) {
            Some(slot) if now.duration_since(slot.last) < self.every => {
                slot.suppressed += 1;
                None
            }
            Some(slot) => {
                let n = slot.suppressed;
                *slot = Slot {
                    last: now,
                    suppressed: 0,
                };
                Some(n)
            }
            None => {
                kinds.insert(
                    kind,
                    Slot {
                        last: now,
                        suppressed: 0,
                    },
                );
                Some(0)
            }
        }
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Throttle::new(Duration::from_secs(10))
    }
}

/// The process-wide throttle of the server's flood-prone log lines.
pub fn throttle() -> &'static Throttle {
    static T: std::sync::OnceLock<Throttle> = std::sync::OnceLock::new();
    T.get_or_init(Throttle::default)
}

/// Logs a warning of `kind` through the process throttle, adding how many were held back.
#[macro_export]
macro_rules! warn_throttled {
    ($kind:expr, $($arg:tt)+) => {
        if let Some(suppressed) = $crate::logging::throttle().allow($kind) {
            tracing::warn!(kind = $kind, suppressed, $($arg)+);
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_logged_once_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_millis(200));
        assert_eq!(t.allow("a"), Some(0));
        for _ in 0..1000 {
            assert_eq!(t.allow("a"), None);
        }
        assert_eq!(t.allow("b"), Some(0), "kinds are apart");
        std::thread::sleep(Duration::from_millis(250));
        assert_eq!(t.allow("a"), Some(1000));
    }
}

//! `flap-run`: takes a switch port down and up on a schedule.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use super::{HelperError, io_error, namespace_still_ours, own_namespace};
use crate::lab::unix_ms;

/// `flap-run --netns NAME --port DEV --period-ms P --down-ms D --log FILE [--max-secs S]`:
/// up for P-D ms, down for D ms, again, for at most S seconds (default one day).
#[derive(Debug, Clone, clap::Args)]
pub struct FlapArgs {
    /// The switch's namespace this runs in; the flapping ends when it is gone
    #[arg(long)]
    pub netns: String,
    /// The switch port to take down and up
    #[arg(long)]
    pub port: String,
    #[arg(long)]
    pub period_ms: u64,
    #[arg(long)]
    pub down_ms: u64,
    /// The flap log (JSON lines)
    #[arg(long)]
    pub log: PathBuf,
    #[arg(long, default_value_t = 86_400)]
    pub max_secs: u64,
}

fn set_port(port: &str, up: bool) -> Result<(), HelperError> {
    let state = if up { "up" } else { "down" };
    let command = format!("ip link set dev {port} {state}");
    let status = Command::new("ip")
        .args(["link", "set", "dev", port, state])
        .status()
        .map_err(io_error(command.clone()))?;
    if status.success() {
        Ok(())
    } else {
        Err(HelperError::Command {
            command,
            status: status.to_string(),
        })
    }
}

/// Flaps the port until the namespace is gone or the time is up.
pub fn flap(args: &FlapArgs) -> Result<(), HelperError> {
    let netns = args.netns.as_str();
    let period = Duration::from_millis(args.period_ms);
    let down = Duration::from_millis(args.down_ms);
    let max = Duration::from_secs(args.max_secs);
    if down.is_zero() || down >= period {
        return Err(HelperError::Usage("flap-run: need 0 < down < period".into()));
    }
    let ours = own_namespace();
    if !namespace_still_ours(netns, ours) {
        return Err(HelperError::NotInNamespace(netns.to_string()));
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(io_error(args.log.display().to_string()))?;
    let end = Instant::now() + max;
    // Sleeps up to `d`; false when it is time to stop.
    let wait = |d: Duration| -> bool {
        let until = Instant::now() + d;
        loop {
            if !namespace_still_ours(netns, ours) || Instant::now() >= end {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(Duration::from_millis(50)));
        }
    };
    let mut record = |state: &str| {
        let _ = writeln!(log, "{}", serde_json::json!({ "t_unix_ms": unix_ms(), "state": state }));
    };
    while wait(period - down) {
        set_port(&args.port, false)?;
        record("down");
        let go_on = wait(down);
        if namespace_still_ours(netns, ours) {
            set_port(&args.port, true)?;
            record("up");
        }
        if !go_on {
            break;
        }
    }
    Ok(())
}

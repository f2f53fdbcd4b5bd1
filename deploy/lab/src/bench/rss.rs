//! The agent's memory and CPU over some minutes in a lab bureau.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::Report;

use super::sweep::strip_ansi;
use super::{BenchError, io_err, signal};
use crate::sys::{describe, in_netns};
use crate::{Lab, Options, wait_until};

#[derive(Debug, Clone)]
pub struct RssOptions {
    /// The lab's prefix.
    pub prefix: String,
    pub duration: Duration,
    pub interval: Duration,
    pub agent: PathBuf,
    /// The `kaohe-lab` binary (the lab's listeners).
    pub helper: PathBuf,
    pub bureau: u8,
    pub work_dir: PathBuf,
}

/// One look at the agent.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub t: Duration,
    pub rss_kib: u64,
    pub hwm_kib: u64,
    /// Of the RSS: heap and stacks (`RssAnon`), and pages of mapped files, mostly the
    /// agent's own code and read-only data (`RssFile`).
    pub anon_kib: u64,
    pub file_kib: u64,
    /// utime + stime, in seconds.
    pub cpu_secs: f64,
    pub threads: u64,
}

#[derive(Debug, Clone)]
pub struct RssResult {
    pub command: String,
    pub config: PathBuf,
    pub samples: Vec<Sample>,
    pub samples_csv: PathBuf,
    pub log: PathBuf,
    pub spooled_reports: usize,
    pub spooled_bytes: u64,
    /// Spooled reports that carry an inventory (the daemon sweeps at start, then every
    /// `inventory_interval_secs`).
    pub reports_with_inventory: usize,
    pub warnings_logged: usize,
    pub errors_logged: usize,
    pub exit: String,
    pub stop_time: Duration,
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

fn sample(pid: u32, t: Duration, ticks: f64) -> Option<Sample> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised name: state is field 3, utime 14, stime 15.
    let rest: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: f64 = rest.get(11)?.parse().ok()?;
    let stime: f64 = rest.get(12)?.parse().ok()?;
    Some(Sample {
        t,
        rss_kib: status_kib(&status, "VmRSS:")?,
        hwm_kib: status_kib(&status, "VmHWM:")?,
        anon_kib: status_kib(&status, "RssAnon:").unwrap_or(0),
        file_kib: status_kib(&status, "RssFile:").unwrap_or(0),
        cpu_secs: (utime + stime) / ticks,
        threads: status_kib(&status, "Threads:").unwrap_or(0),
    })
}

/// Reports in the spool, their bytes, and how many carry an inventory.
fn spool_size(dir: &Path) -> (usize, u64, usize) {
    let (mut n, mut bytes, mut with_inventory) = (0, 0, 0);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().ends_with(".json") {
                n += 1;
                bytes += e.metadata().map(|m| m.len()).unwrap_or(0);
                let report = fs::read_to_string(e.path())
                    .ok()
                    .and_then(|t| Report::from_json(&t).ok());
                if report.is_some_and(|r| !r.inventory.is_empty()) {
                    with_inventory += 1;
                }
            }
        }
    }
    (n, bytes, with_inventory)
}

/// Runs `kaohe-agent run` in the lab's bureau for `duration`, sampling it every
/// `interval`, then stops it with SIGTERM and tears the lab down.
pub fn agent_rss(opts: &RssOptions) -> Result<RssResult, BenchError> {
    if !opts.agent.is_file() {
        return Err(BenchError::Failed(format!(
            "{} is missing (cargo build --release -p kaohe-agent)",
            opts.agent.display()
        )));
    }
    fs::create_dir_all(&opts.work_dir).map_err(io_err(format_args!("creating {}", opts.work_dir.display())))?;
    let mut lab_opts = Options::new(&opts.prefix, &opts.helper);
    lab_opts.verbose = false;
    let lab = Lab::up(lab_opts)?;
    let host = format!("b{}-agent", opts.bureau);
    let ns = lab.namespace(&host)?;
    let config = lab.agent_config_path(opts.bureau);
    let log = opts.work_dir.join(format!("agent-rss-{}.log", opts.prefix));
    let log_file = fs::File::create(&log).map_err(io_err(format_args!("creating {}", log.display())))?;
    let log_err = log_file.try_clone().map_err(io_err("duplicating a file handle"))?;
    let mut cmd = in_netns(&ns, &opts.agent);
    cmd.args(["run", "--config"])
        .arg(&config)
        .env("KAOHE_LOG", "kaohe_agent=info")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log_file)
        .stderr(log_err);
    let command = format!("KAOHE_LOG=kaohe_agent=info {}", describe(&cmd));
    let ticks = clock_ticks();
    let mut child = cmd
        .spawn()
        .map_err(io_err(format_args!("starting {}", opts.agent.display())))?;
    // `ip netns exec` execs the program: the child's pid becomes the agent's. Sample
    // only once it has (before, it is `ip`, with its own memory).
    let pid = child.id();
    let comm = || fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if !wait_until(Duration::from_secs(5), || comm().trim() == "kaohe-agent") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError::Failed(format!(
            "process {pid} is {:?}, not kaohe-agent, after 5 s; log: {}",
            comm().trim(),
            log.display()
        )));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    let csv_path = opts.work_dir.join(format!("agent-rss-{}.csv", opts.prefix));
    let mut csv = String::from("t_secs,rss_kib,hwm_kib,anon_kib,file_kib,cpu_secs,threads\n");
    let mut next = started;
    while started.elapsed() < opts.duration {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(BenchError::Failed(format!(
                "the agent exited early ({status}) after {} s; its log: {}",
                started.elapsed().as_secs(),
                log.display()
            )));
        }
        samples.extend(sample(pid, started.elapsed(), ticks));
        next += opts.interval;
        thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    // The last look, at the end of the duration, just before SIGTERM.
    samples.extend(sample(pid, started.elapsed(), ticks));
    for s in &samples {
        csv.push_str(&csv_line(s));
    }
    let (exit, stop_time) = terminate(&mut child);
    fs::write(&csv_path, csv).map_err(io_err(format_args!("writing {}", csv_path.display())))?;
    let state = lab
        .state_dir()
        .join(format!("b{}", opts.bureau))
        .join(crate::generate::AGENT_STATE_DIR);
    let (spooled_reports, spooled_bytes, reports_with_inventory) = spool_size(&state.join("spool"));
    let text = strip_ansi(&fs::read_to_string(&log).unwrap_or_default());
    let count = |needle: &str| text.lines().filter(|l| l.contains(needle)).count();
    let result = RssResult {
        command,
        config,
        samples,
        samples_csv: csv_path,
        log: log.clone(),
        spooled_reports,
        spooled_bytes,
        reports_with_inventory,
        warnings_logged: count(" WARN "),
        errors_logged: count(" ERROR "),
        exit,
        stop_time,
    };
    // Keep the agent's config beside its log: the lab's state dir goes with the lab.
    let _ = fs::copy(
        &result.config,
        opts.work_dir.join(format!("agent-rss-{}.toml", opts.prefix)),
    );
    lab.down()?;
    Ok(result)
}

fn csv_line(s: &Sample) -> String {
    format!(
        "{:.1},{},{},{},{},{:.2},{}\n",
        s.t.as_secs_f64(),
        s.rss_kib,
        s.hwm_kib,
        s.anon_kib,
        s.file_kib,
        s.cpu_secs,
        s.threads
    )
}

/// Stops the agent with SIGTERM (SIGKILL after 10 s): how it ended, and how long it took.
fn terminate(child: &mut Child) -> (String, Duration) {
    let stop = Instant::now();
    signal(&[child.id()], "TERM");
    let mut exit = None;
    while stop.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(status)) = child.try_wait() {
            exit = Some(status.to_string());
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    let stop_time = stop.elapsed();
    let exit = exit.unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        "did not stop within 10 s of SIGTERM; killed".into()
    });
    (exit, stop_time)
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

impl RssResult {
    pub fn render(&self) -> String {
        let (Some(first), Some(last)) = (self.samples.first(), self.samples.last()) else {
            return "no samples\n".into();
        };
        let peak_hwm = self.samples.iter().map(|s| s.hwm_kib).max().unwrap_or(0);
        let peak_rss = self.samples.iter().map(|s| s.rss_kib).max().unwrap_or(0);
        let min_rss = self.samples.iter().map(|s| s.rss_kib).min().unwrap_or(0);
        let threads = self.samples.iter().map(|s| s.threads).max().unwrap_or(0);
        let secs = last.t.as_secs_f64();
        let per_hour = |cpu: f64, over: f64| if over > 0.0 { cpu / over * 3600.0 } else { 0.0 };
        let total_h = per_hour(last.cpu_secs, secs);
        // Steady state: from the first sample at or after one minute.
        let steady = self.samples.iter().find(|s| s.t >= Duration::from_secs(60));
        let steady_h = steady.map(|s| per_hour(last.cpu_secs - s.cpu_secs, secs - s.t.as_secs_f64()));
        let mut s = format!(
            "kaohe-agent run for {:.0} s, {} samples of /proc/PID/status and /proc/PID/stat (first at {:.1} s).\n\n",
            secs,
            self.samples.len(),
            first.t.as_secs_f64()
        );
        s.push_str("| figure | value |\n|---|---|\n");
        s.push_str(&format!("| peak RSS (VmHWM) | {} ({peak_hwm} KiB) |\n", mib(peak_hwm)));
        s.push_str(&format!("| highest sampled VmRSS | {} |\n", mib(peak_rss)));
        s.push_str(&format!(
            "| VmRSS first / last sample / lowest | {} / {} / {} |\n",
            mib(first.rss_kib),
            mib(last.rss_kib),
            mib(min_rss)
        ));
        s.push_str(&format!(
            "| of the last VmRSS: RssAnon (heap, stacks) / RssFile (the binary's pages, libraries) | {} / {} |\n",
            mib(last.anon_kib),
            mib(last.file_kib)
        ));
        s.push_str(&format!(
            "| CPU time (utime + stime) | {:.2} s in {secs:.0} s |\n",
            last.cpu_secs
        ));
        s.push_str(&format!(
            "| CPU per hour, extrapolated from the whole run | {total_h:.1} s/h ({:.3} % of one core) |\n",
            total_h / 36.0
        ));
        if let Some(h) = steady_h {
            s.push_str(&format!(
                "| CPU per hour, after the first minute | {h:.1} s/h ({:.3} % of one core) |\n",
                h / 36.0
            ));
        }
        s.push_str(&format!("| threads (most seen) | {threads} |\n"));
        s.push_str(&format!(
            "| reports in the spool at the end | {} ({} KiB) |\n",
            self.spooled_reports,
            self.spooled_bytes / 1024
        ));
        s.push_str(&format!(
            "| reports carrying an inventory | {} |\n| WARN / ERROR lines logged | {} / {} |\n",
            self.reports_with_inventory, self.warnings_logged, self.errors_logged
        ));
        s.push_str(&format!(
            "| stop on SIGTERM | {} after {} ms |\n",
            self.exit,
            self.stop_time.as_millis()
        ));
        s.push_str(&format!(
            "\nCommand (config {}):\n\n    {}\n\nSamples: {}; agent log: {}\n",
            self.config.display(),
            self.command,
            self.samples_csv.display(),
            self.log.display()
        ));
        s
    }
}

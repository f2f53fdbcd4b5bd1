//! Benchmarks of the agent (issue 4), run by `kaohe-bench` (`deploy/bench/run`); the
//! figures are in `docs/benchmarks.md`. Measured, never asserted.
//!
//! - [`sweep`]: a /24 ARP sweep of `kaohe-agent once` beside `arp-scan` and `nmap -sn`, on
//!   a LAN of its own: one namespace per live host, all on one bridge, the scanner in a
//!   namespace of its own. Every packet stays inside namespaces this run created
//!   (`shared/docs/lab.md`); the root namespace gets no address and no link.
//! - [`agent_rss`]: `kaohe-agent run` in bureau 1 of the lab for some minutes, sampling
//!   its memory (`/proc/PID/status`) and CPU time (`/proc/PID/stat`).

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::{HowSeen, Report};

use crate::lab::sys::{describe, in_netns, ip_batch, kill_pids, run, run_parallel};
use crate::lab::{self, Lab, LabError, Options};

/// Where the benchmarks keep their configs, reports and logs (root-only tmpfs).
pub const WORK_DIR: &str = "/run/kaohe-bench";

/// A benchmark that could not run, with what to do about it.
#[derive(Debug)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

impl From<LabError> for BenchError {
    fn from(e: LabError) -> BenchError {
        BenchError(e.to_string())
    }
}

fn io_err(context: impl fmt::Display) -> impl FnOnce(std::io::Error) -> BenchError {
    move |e| BenchError(format!("{context}: {e}"))
}

/// Sends a signal to processes by id (with the `kill` command: no libc here).
fn signal(pids: &[u32], sig: &str) {
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
    lab::check_prefix(prefix).map_err(BenchError)?;
    let namespaces = namespaces_of(prefix)?;
    kill_pids(&lab::lab_pids(prefix), Duration::from_secs(1));
    let lines: Vec<String> = namespaces.iter().map(|n| format!("netns del {n}")).collect();
    if !lines.is_empty() {
        ip_batch(None, &lines)?;
    }
    Ok(namespaces.len())
}

// ------------------------------------------------------------------ the sweep LAN

/// The sweep's LAN: `PREFIX-scan` (the scanner, `.1`), `PREFIX-hNN` (the live hosts,
/// spread over `.2`–`.254`) and `PREFIX-sw` (bridge `br0`, one port per host).
/// Dropping it tears it down.
#[derive(Debug)]
pub struct SweepLan {
    prefix: String,
    pub net: &'static str,
    pub scanner_ns: String,
    pub scanner_ip: Ipv4Addr,
    pub hosts: Vec<(String, Ipv4Addr)>,
    pub setup: Duration,
}

/// The /24 swept.
const SWEEP_NET: &str = "10.77.0.0/24";
const SWEEP_BASE: [u8; 3] = [10, 77, 0];

impl SweepLan {
    /// Builds it (after removing a stale one of the same prefix). 1–253 hosts.
    pub fn up(prefix: &str, hosts: usize) -> Result<SweepLan, BenchError> {
        lab::check_prefix(prefix).map_err(BenchError)?;
        if !(1..=253).contains(&hosts) {
            return Err(BenchError(format!(
                "--hosts {hosts}: a /24 holds 1 to 253 hosts beside the scanner"
            )));
        }
        let started = Instant::now();
        clean_sweep(prefix)?;
        let [a, b, c] = SWEEP_BASE;
        let host_ip = |i: usize| {
            // Spread evenly over .2 ..= .254, so the live hosts are not one block.
            let last = u8::try_from(2 + i * 253 / hosts).unwrap_or(254);
            Ipv4Addr::new(a, b, c, last)
        };
        let lan = SweepLan {
            prefix: prefix.to_string(),
            net: SWEEP_NET,
            scanner_ns: format!("{prefix}-scan"),
            scanner_ip: Ipv4Addr::new(a, b, c, 1),
            hosts: (0..hosts)
                .map(|i| (format!("{prefix}-h{:02}", i + 1), host_ip(i)))
                .collect(),
            setup: Duration::ZERO,
        };
        let switch = format!("{prefix}-sw");
        let mut all: Vec<&str> = vec![&lan.scanner_ns, &switch];
        all.extend(lan.hosts.iter().map(|(n, _)| n.as_str()));
        // From here on, Drop cleans up whatever was built if a step fails.
        ip_batch(None, &all.iter().map(|n| format!("netns add {n}")).collect::<Vec<_>>())?;
        if Path::new("/proc/sys/net/ipv6").exists() {
            // IPv4 only: no router solicitations or DAD on the bridge while timing.
            let cmds = all
                .iter()
                .map(|ns| {
                    let mut cmd = in_netns(ns, "sysctl");
                    cmd.args([
                        "-q",
                        "-w",
                        "net.ipv6.conf.all.disable_ipv6=1",
                        "net.ipv6.conf.default.disable_ipv6=1",
                    ]);
                    cmd
                })
                .collect();
            run_parallel(cmds)?;
        }
        // Locally administered MACs 02:6b:62 ("kb"): 00:00:01 the scanner, 01:HI:LO hosts.
        let mut links = vec![format!(
            "link add name eth0 address 02:6b:62:00:00:01 netns {} type veth peer name scan netns {switch}",
            lan.scanner_ns
        )];
        for (i, (ns, _)) in lan.hosts.iter().enumerate() {
            let n = i + 1;
            links.push(format!(
                "link add name eth0 address 02:6b:62:01:{:02x}:{:02x} netns {ns} type veth peer name h{n:02} netns {switch}",
                n / 256,
                n % 256
            ));
        }
        ip_batch(None, &links)?;
        let mut sw = vec!["link add br0 type bridge".to_string(), "link set br0 up".into()];
        for port in std::iter::once("scan".to_string()).chain((1..=hosts).map(|n| format!("h{n:02}"))) {
            sw.push(format!("link set {port} master br0"));
            sw.push(format!("link set {port} up"));
        }
        let mut batches = vec![(switch.clone(), sw)];
        let host_lines = |ip: Ipv4Addr| {
            vec![
                "link set lo up".to_string(),
                format!("addr add {ip}/24 dev eth0"),
                "link set eth0 up".into(),
            ]
        };
        batches.push((lan.scanner_ns.clone(), host_lines(lan.scanner_ip)));
        batches.extend(lan.hosts.iter().map(|(ns, ip)| (ns.clone(), host_lines(*ip))));
        lab::sys::ip_batches_parallel(&batches)?;
        let mut lan = lan;
        lan.setup = started.elapsed();
        Ok(lan)
    }

    pub fn live(&self) -> BTreeSet<Ipv4Addr> {
        self.hosts.iter().map(|(_, ip)| *ip).collect()
    }

    /// Empties the scanner's neighbour table, so no run profits from the one before.
    fn forget_neighbours(&self) {
        let _ = run(Command::new("ip").args(["-n", &self.scanner_ns, "neigh", "flush", "all"]));
    }
}

impl Drop for SweepLan {
    fn drop(&mut self) {
        if let Err(e) = clean_sweep(&self.prefix) {
            eprintln!("kaohe-bench: tearing down {}-*: {e}", self.prefix);
        }
    }
}

// ------------------------------------------------------------------ sweep

/// A sweeper under test.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tool {
    /// `kaohe-agent once`, with `max_pps` set or left at its default (500).
    Agent {
        max_pps: Option<u32>,
    },
    /// `kaohe-agent once` with `[leak]`: the sweep, then 6 probe frames per live host
    /// (3 spoofed-source, 3 forwarding: TTL 1, 2, 64) at 1000 frames/s, and 500 ms for answers.
    AgentLeak,
    ArpScan,
    Nmap,
    NmapT5,
}

impl Tool {
    pub fn parse(s: &str) -> Result<Tool, String> {
        match s {
            "agent" => Ok(Tool::Agent { max_pps: None }),
            "agent-leak" => Ok(Tool::AgentLeak),
            "arp-scan" => Ok(Tool::ArpScan),
            "nmap" => Ok(Tool::Nmap),
            "nmap-t5" => Ok(Tool::NmapT5),
            _ => s
                .strip_prefix("agent-")
                .and_then(|p| p.parse().ok())
                .map(|p| Tool::Agent { max_pps: Some(p) })
                .ok_or_else(|| {
                    format!("unknown tool {s:?}: use agent, agent-PPS (e.g. agent-5000), arp-scan, nmap, nmap-t5")
                }),
        }
    }

    pub fn name(&self) -> String {
        match self {
            Tool::Agent { max_pps: None } => "kaohe-agent (default, 500 pps)".into(),
            Tool::Agent { max_pps: Some(p) } => format!("kaohe-agent (max_pps = {p})"),
            Tool::AgentLeak => "kaohe-agent with leak probes (6 frames per host, 1000/s, 500 ms wait)".into(),
            Tool::ArpScan => "arp-scan".into(),
            Tool::Nmap => "nmap -sn".into(),
            Tool::NmapT5 => "nmap -sn -T5".into(),
        }
    }

    /// The program it needs, to say so when it is missing.
    fn program(&self) -> Option<&'static str> {
        match self {
            Tool::Agent { .. } | Tool::AgentLeak => None,
            Tool::ArpScan => Some("arp-scan"),
            Tool::Nmap | Tool::NmapT5 => Some("nmap"),
        }
    }
}

/// The default set: the agent at its defaults and at 5000 pps, arp-scan, nmap.
pub fn default_tools() -> Vec<Tool> {
    vec![
        Tool::Agent { max_pps: None },
        Tool::Agent { max_pps: Some(5000) },
        Tool::ArpScan,
        Tool::Nmap,
        Tool::NmapT5,
    ]
}

#[derive(Debug, Clone)]
pub struct SweepOptions {
    pub prefix: String,
    pub hosts: usize,
    pub runs: usize,
    pub agent: PathBuf,
    pub tools: Vec<Tool>,
    pub work_dir: PathBuf,
}

/// One run of one tool.
#[derive(Debug, Clone)]
pub struct Run {
    /// The whole command, `ip netns exec` included.
    pub wall: Duration,
    /// What the tool itself says the sweep took (the agent's "ARP sweep done").
    pub logged: Option<Duration>,
    /// ARP requests and replies (the agent's log).
    pub requests: Option<u64>,
    pub replies: Option<u64>,
    /// Live hosts found (the scanner itself not counted).
    pub found: BTreeSet<Ipv4Addr>,
    /// The agent's `inventory[]` length (its own host and neighbour-table entries included).
    pub inventory_len: Option<usize>,
}

/// All runs of one tool.
#[derive(Debug, Clone)]
pub struct ToolResult {
    pub tool: Tool,
    pub command: String,
    pub runs: Vec<Run>,
}

#[derive(Debug, Clone)]
pub struct SweepResult {
    pub net: String,
    pub live: BTreeSet<Ipv4Addr>,
    pub setup: Duration,
    pub tools: Vec<ToolResult>,
    pub skipped: Vec<(Tool, String)>,
    pub load_before: String,
    pub load_after: String,
}

fn have(program: &str) -> bool {
    std::env::var_os("PATH").is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

/// Removes ANSI colour sequences (`ESC [ ... letter`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A `key=NUMBER` field of a tracing line.
fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

/// The first IPv4 address of each line, for the tools that print one host per line.
fn first_ips(text: &str, skip_prefix: &str) -> BTreeSet<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.strip_prefix(skip_prefix))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
}

impl SweepLan {
    fn command(&self, tool: &Tool, opts: &SweepOptions, config: &Path, report: &Path) -> Command {
        match tool {
            Tool::Agent { .. } | Tool::AgentLeak => {
                let mut cmd = in_netns(&self.scanner_ns, &opts.agent);
                cmd.args(["once", "--config"])
                    .arg(config)
                    .arg("--out")
                    .arg(report)
                    .env("KAOHE_LOG", "kaohe_agent=info")
                    .env("NO_COLOR", "1");
                cmd
            }
            Tool::ArpScan => {
                let mut cmd = in_netns(&self.scanner_ns, "arp-scan");
                cmd.args(["--interface=eth0", "--quiet", "--plain", self.net]);
                cmd
            }
            Tool::Nmap | Tool::NmapT5 => {
                let mut cmd = in_netns(&self.scanner_ns, "nmap");
                cmd.args(["-sn", "-n"]);
                if *tool == Tool::NmapT5 {
                    cmd.arg("-T5");
                }
                cmd.args(["-oG", "-", self.net]);
                cmd
            }
        }
    }

    fn measure(&self, tool: &Tool, opts: &SweepOptions, config: &Path, report: &Path) -> Result<Run, BenchError> {
        let _ = fs::remove_file(report);
        self.forget_neighbours();
        let mut cmd = self.command(tool, opts, config, report);
        let what = describe(&cmd);
        let t0 = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(io_err(format_args!("running {what}")))?;
        let wall = t0.elapsed();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = strip_ansi(&String::from_utf8_lossy(&out.stderr));
        if !out.status.success() {
            return Err(BenchError(format!(
                "`{what}` failed ({}): {}",
                out.status,
                stderr.trim()
            )));
        }
        let live = self.live();
        let mut run = Run {
            wall,
            logged: None,
            requests: None,
            replies: None,
            found: BTreeSet::new(),
            inventory_len: None,
        };
        let all_found = match tool {
            Tool::Agent { .. } | Tool::AgentLeak => {
                if let Some(line) = stderr.lines().find(|l| l.contains("ARP sweep done")) {
                    run.logged = field(line, "elapsed_ms").map(Duration::from_millis);
                    run.requests = field(line, "requests");
                    run.replies = field(line, "replies");
                }
                let text = fs::read_to_string(report).map_err(io_err(format_args!("reading {}", report.display())))?;
                let report = Report::from_json(&text).map_err(|e| BenchError(format!("the agent's report: {e}")))?;
                run.inventory_len = Some(report.inventory.len());
                report
                    .inventory
                    .iter()
                    .filter(|o| o.how.contains(&HowSeen::ArpSweep))
                    .filter_map(|o| o.ip.parse().ok())
                    .collect()
            }
            Tool::ArpScan => first_ips(&stdout, ""),
            Tool::Nmap | Tool::NmapT5 => first_ips(
                &stdout
                    .lines()
                    .filter(|l| l.contains("Status: Up"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                "Host: ",
            ),
        };
        run.found = all_found.into_iter().filter(|ip| *ip != self.scanner_ip).collect();
        let strangers: Vec<String> = run.found.difference(&live).map(Ipv4Addr::to_string).collect();
        if !strangers.is_empty() {
            eprintln!(
                "kaohe-bench: {} reported hosts that do not exist: {}",
                tool.name(),
                strangers.join(" ")
            );
        }
        Ok(run)
    }
}

/// Builds the LAN, runs every tool `runs` times (round robin, after one unrecorded
/// warm-up run each), tears the LAN down.
pub fn sweep(opts: &SweepOptions) -> Result<SweepResult, BenchError> {
    let work = opts.work_dir.join(&opts.prefix);
    fs::create_dir_all(&work).map_err(io_err(format_args!("creating {}", work.display())))?;
    let mut skipped = Vec::new();
    let mut tools = Vec::new();
    for t in &opts.tools {
        match t.program() {
            Some(p) if !have(p) => skipped.push((t.clone(), format!("{p} is not installed"))),
            _ if matches!(t, Tool::Agent { .. } | Tool::AgentLeak) && !opts.agent.is_file() => skipped.push((
                t.clone(),
                format!(
                    "{} is missing (cargo build --release -p kaohe-agent)",
                    opts.agent.display()
                ),
            )),
            _ => tools.push(t.clone()),
        }
    }
    let load_before = loadavg();
    let lan = SweepLan::up(&opts.prefix, opts.hosts)?;
    let configs: Vec<PathBuf> = tools
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let path = work.join(format!("agent-{i}.toml"));
            let mut text = format!(
                "state_dir = {:?}\n\n[inventory]\nprefixes = [{:?}]\n",
                work.join("agent-state").display().to_string(),
                lan.net
            );
            if let Tool::Agent { max_pps: Some(p) } = t {
                text.push_str(&format!("max_pps = {p}\n"));
            }
            if *t == Tool::AgentLeak {
                // Documentation addresses only; every frame goes to the LAN's hosts.
                text.push_str(
                    "\n[leak]\nlistener = \"203.0.113.99\"\nkey = \"bench-leak-key-0123\"\nforward_to = [\"198.51.100.10\"]\nmax_pps = 1000\nwait_ms = 500\n",
                );
            }
            fs::write(&path, text).map_err(io_err(format_args!("writing {}", path.display())))?;
            Ok(path)
        })
        .collect::<Result<_, BenchError>>()?;
    let report = work.join("report.json");
    let mut results: Vec<ToolResult> = tools
        .iter()
        .zip(&configs)
        .map(|(t, c)| ToolResult {
            tool: t.clone(),
            command: command_line(&lan.command(t, opts, c, &report), t),
            runs: Vec::new(),
        })
        .collect();
    for (t, c) in tools.iter().zip(&configs) {
        lan.measure(t, opts, c, &report)?;
    }
    for _ in 0..opts.runs {
        for (r, c) in results.iter_mut().zip(&configs) {
            let run = lan.measure(&r.tool, opts, c, &report)?;
            r.runs.push(run);
            thread::sleep(Duration::from_millis(100));
        }
    }
    let live = lan.live();
    let setup = lan.setup;
    drop(lan);
    Ok(SweepResult {
        net: SWEEP_NET.into(),
        live,
        setup,
        tools: results,
        skipped,
        load_before,
        load_after: loadavg(),
    })
}

/// The command as a person would type it (environment first, paths as given).
fn command_line(cmd: &Command, tool: &Tool) -> String {
    let mut s = String::new();
    if matches!(tool, Tool::Agent { .. } | Tool::AgentLeak) {
        s.push_str("KAOHE_LOG=kaohe_agent=info ");
    }
    s.push_str(&describe(cmd));
    s
}

fn median(v: &[Duration]) -> Option<Duration> {
    let mut v = v.to_vec();
    v.sort();
    match v.len() {
        0 => None,
        n if n % 2 == 1 => Some(v[n / 2]),
        n => Some((v[n / 2 - 1] + v[n / 2]) / 2),
    }
}

fn secs(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

fn spread(v: &[Duration]) -> String {
    match (median(v), v.iter().min(), v.iter().max()) {
        (Some(m), Some(lo), Some(hi)) => format!("{} ({}–{})", secs(m), secs(*lo), secs(*hi)),
        _ => "–".into(),
    }
}

impl SweepResult {
    /// A Markdown table and the commands.
    pub fn render(&self) -> String {
        let live = self.live.len();
        let runs = self.tools.first().map_or(0, |t| t.runs.len());
        let mut s = format!(
            "/24 ARP sweep of {} with {live} live hosts (each its own namespace, one bridge); {runs} runs per tool \
             after one unrecorded warm-up run, round robin; times in seconds, median (min–max); LAN built in {} ms; \
             load average before {}, after {}.\n\n",
            self.net,
            self.setup.as_millis(),
            self.load_before,
            self.load_after
        );
        s.push_str(
            "| tool | whole command, s | sweep as the agent logs it, s | live hosts found | ARP requests / replies |\n",
        );
        s.push_str("|---|---|---|---|---|\n");
        for t in &self.tools {
            let walls: Vec<Duration> = t.runs.iter().map(|r| r.wall).collect();
            let logged: Vec<Duration> = t.runs.iter().filter_map(|r| r.logged).collect();
            let counts: Vec<usize> = t.runs.iter().map(|r| r.found.len()).collect();
            let (lo, hi) = (
                counts.iter().min().copied().unwrap_or(0),
                counts.iter().max().copied().unwrap_or(0),
            );
            let found = if lo == hi {
                format!("{lo}/{live} in every run")
            } else {
                format!("{lo}–{hi}/{live}")
            };
            let missed: BTreeSet<Ipv4Addr> = t
                .runs
                .iter()
                .flat_map(|r| self.live.difference(&r.found).copied().collect::<Vec<_>>())
                .collect();
            let found = if missed.is_empty() {
                found
            } else {
                let list: Vec<String> = missed.iter().map(Ipv4Addr::to_string).collect();
                format!("{found}; missed at least once: {}", list.join(" "))
            };
            let arp = match t.runs.first() {
                Some(Run {
                    requests: Some(q),
                    replies: Some(_),
                    ..
                }) => {
                    let replies: Vec<String> = t.runs.iter().filter_map(|r| r.replies.map(|x| x.to_string())).collect();
                    format!("{q} / {}", replies.join(", "))
                }
                _ => "–".into(),
            };
            s.push_str(&format!(
                "| {} | {} | {} | {found} | {arp} |\n",
                t.tool.name(),
                spread(&walls),
                if logged.is_empty() {
                    "–".into()
                } else {
                    spread(&logged)
                },
            ));
        }
        for (t, why) in &self.skipped {
            s.push_str(&format!("| {} | skipped: {why} | | | |\n", t.name()));
        }
        let inv: Vec<String> = self
            .tools
            .iter()
            .filter(|t| matches!(t.tool, Tool::Agent { .. } | Tool::AgentLeak))
            .filter_map(|t| {
                let lens: BTreeSet<usize> = t.runs.iter().filter_map(|r| r.inventory_len).collect();
                let lens: Vec<String> = lens.iter().map(usize::to_string).collect();
                (!lens.is_empty()).then(|| format!("{}: {}", t.tool.name(), lens.join(", ")))
            })
            .collect();
        if !inv.is_empty() {
            s.push_str(&format!(
                "\nThe agent's inventory[] length (its own host included): {}.\n",
                inv.join("; ")
            ));
        }
        s.push_str("\nCommands (inside the scanner's namespace; the neighbour table is flushed before each run):\n\n");
        for t in &self.tools {
            s.push_str(&format!("    {}\n", t.command));
        }
        s
    }
}

// ------------------------------------------------------------------ agent-rss

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
        return Err(BenchError(format!(
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
    if !lab::wait_until(Duration::from_secs(5), || comm().trim() == "kaohe-agent") {
        let _ = child.kill();
        let _ = child.wait();
        return Err(BenchError(format!(
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
            return Err(BenchError(format!(
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
        csv.push_str(&format!(
            "{:.1},{},{},{},{},{:.2},{}\n",
            s.t.as_secs_f64(),
            s.rss_kib,
            s.hwm_kib,
            s.anon_kib,
            s.file_kib,
            s.cpu_secs,
            s.threads
        ));
    }
    let stop = Instant::now();
    signal(&[pid], "TERM");
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
    fs::write(&csv_path, csv).map_err(io_err(format_args!("writing {}", csv_path.display())))?;
    let state = lab
        .state_dir()
        .join(format!("b{}", opts.bureau))
        .join(lab::generate::AGENT_STATE_DIR);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tracing_fields_are_read_through_colours() {
        let line = "2026-01-01T00:00:00Z  INFO kaohe_agent::cycle: ARP sweep done \u{1b}[3mrequests\u{1b}[0m\u{1b}[2m=\u{1b}[0m253 replies=45 elapsed_ms=531";
        let plain = strip_ansi(line);
        assert_eq!(field(&plain, "requests"), Some(253));
        assert_eq!(field(&plain, "replies"), Some(45));
        assert_eq!(field(&plain, "elapsed_ms"), Some(531));
    }

    #[test]
    fn hosts_are_read_from_arp_scan_and_nmap_output() {
        let arp = "10.77.0.7\t02:6b:62:01:00:01\n10.77.0.12\t02:6b:62:01:00:02\n";
        assert_eq!(first_ips(arp, "").len(), 2);
        let nmap = "# Nmap 7.93\nHost: 10.77.0.7 ()\tStatus: Up\nHost: 10.77.0.1 ()\tStatus: Up\n";
        assert_eq!(first_ips(nmap, "Host: ").len(), 2);
    }

    #[test]
    fn medians() {
        let ms = |v: &[u64]| v.iter().map(|&m| Duration::from_millis(m)).collect::<Vec<_>>();
        assert_eq!(median(&ms(&[3, 1, 2])), Some(Duration::from_millis(2)));
        assert_eq!(median(&ms(&[4, 1, 2, 3])), Some(Duration::from_micros(2500)));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn tools_parse() {
        assert_eq!(Tool::parse("agent-5000"), Ok(Tool::Agent { max_pps: Some(5000) }));
        assert!(Tool::parse("fping").is_err());
    }
}

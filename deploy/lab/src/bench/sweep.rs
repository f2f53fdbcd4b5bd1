//! The sweep benchmark: each tool `runs` times on the LAN, and the table.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::str::FromStr;
use std::time::Duration;

use super::lan::SWEEP_NET;
use super::{BenchError, SweepLan, io_err};
use crate::sys::describe;
use std::thread;

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
    pub fn parse(s: &str) -> Result<Tool, UnknownTool> {
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
                .ok_or_else(|| UnknownTool(s.to_string())),
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

impl FromStr for Tool {
    type Err = UnknownTool;

    fn from_str(s: &str) -> Result<Tool, UnknownTool> {
        Tool::parse(s)
    }
}

/// A `--tools` entry that names no sweeper.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown tool {0:?}: use agent, agent-PPS (e.g. agent-5000), arp-scan, nmap, nmap-t5")]
pub struct UnknownTool(pub String);

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
pub(super) fn strip_ansi(s: &str) -> String {
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
pub(super) fn field(line: &str, key: &str) -> Option<u64> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.trim_matches('"').parse().ok())
}

/// The first IPv4 address of each line, for the tools that print one host per line.
pub(super) fn first_ips(text: &str, skip_prefix: &str) -> BTreeSet<Ipv4Addr> {
    text.lines()
        .filter_map(|l| l.strip_prefix(skip_prefix))
        .filter_map(|l| l.split_whitespace().next()?.parse().ok())
        .collect()
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

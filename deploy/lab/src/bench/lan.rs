//! The sweep's LAN of namespaces, and one measured run of a sweeper on it.

use std::collections::BTreeSet;
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::{HowSeen, Report};

use super::sweep::{field, first_ips, strip_ansi};
use super::{BenchError, Run, SweepOptions, Tool, clean_sweep, io_err};
use crate::sys::{describe, in_netns, ip_batch, run, run_parallel};

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
pub(super) const SWEEP_NET: &str = "10.77.0.0/24";
const SWEEP_BASE: [u8; 3] = [10, 77, 0];

impl SweepLan {
    /// Builds it (after removing a stale one of the same prefix). 1–253 hosts.
    pub fn up(prefix: &str, hosts: usize) -> Result<SweepLan, BenchError> {
        crate::check_prefix(prefix)?;
        if !(1..=253).contains(&hosts) {
            return Err(BenchError::Failed(format!(
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
        crate::sys::ip_batches_parallel(&batches)?;
        let mut lan = lan;
        lan.setup = started.elapsed();
        Ok(lan)
    }

    pub fn live(&self) -> BTreeSet<Ipv4Addr> {
        self.hosts.iter().map(|(_, ip)| *ip).collect()
    }

    /// Empties the scanner's neighbour table, so no run profits from the one before.
    pub(super) fn forget_neighbours(&self) {
        let _ = run(Command::new("ip").args(["-n", &self.scanner_ns, "neigh", "flush", "all"]));
    }
}

impl Drop for SweepLan {
    fn drop(&mut self) {
        if let Err(e) = clean_sweep(&self.prefix) {
            eprintln!("kaohe-lab bench: tearing down {}-*: {e}", self.prefix);
        }
    }
}

impl SweepLan {
    pub(super) fn command(&self, tool: &Tool, opts: &SweepOptions, config: &Path, report: &Path) -> Command {
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

    pub(super) fn measure(
        &self,
        tool: &Tool,
        opts: &SweepOptions,
        config: &Path,
        report: &Path,
    ) -> Result<Run, BenchError> {
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
            return Err(BenchError::Failed(format!(
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
                let report = Report::from_json(&text).map_err(|source| BenchError::Report { source })?;
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
                "kaohe-lab bench: {} reported hosts that do not exist: {}",
                tool.name(),
                strangers.join(" ")
            );
        }
        Ok(run)
    }
}

//! The network lab: a small province in Linux network namespaces (issue 3).
//!
//! `deploy/lab/lab.toml` describes it ([`model`]); [`Lab::up`] builds it with `ip`
//! (batched), `sysctl` and the lab's own helper binary (`kaohe-lab`, for the canary
//! listeners, the link flapper and the probes), and tears it down when dropped. From
//! the same description come each bureau's registry and agent config ([`generate`])
//! and the facts the tests expect ([`facts`]).
//!
//! Rules (`shared/docs/lab.md`): every packet goes to a namespace this run created;
//! the root namespace has exactly one lab link, to the collector; every name carries
//! the run's prefix; `up` first removes a stale lab of the same prefix.

pub mod cli;
pub mod facts;
pub mod generate;
pub mod helper;
pub mod model;
pub mod net;
pub mod sys;

use std::fmt;
use std::fs;
use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

pub use facts::Facts;
pub use model::Description;
use net::{Ipv4Net, Mac};

/// Runtime state of every lab lives under here by default (root-only tmpfs).
pub const RUN_DIR: &str = "/run/kaohe-lab";
/// The lab end of the root link, inside the root host's namespace.
pub const ROOT_LINK_LAB_DEV: &str = "mgmt0";
/// A root link slot file younger than this is never taken over (its lab may be
/// being built right now).
const SLOT_GRACE: Duration = Duration::from_secs(30);

/// What went wrong, with the context to act on it.
#[derive(Debug)]
pub enum LabError {
    /// The lab description is invalid; the message names the key (and line).
    Description {
        file: PathBuf,
        message: String,
    },
    /// A command failed.
    Command {
        command: String,
        status: String,
        stderr: String,
    },
    Io {
        context: String,
        source: io::Error,
    },
    /// Building a lab needs root.
    NotRoot,
    /// Bad arguments (the CLI exits 64).
    Usage(String),
    /// The lab is not in the state the operation needs.
    State(String),
}

impl LabError {
    pub fn io(context: impl Into<String>, source: io::Error) -> LabError {
        LabError::Io {
            context: context.into(),
            source,
        }
    }
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::Description { file, message } => write!(f, "{}: {message}", file.display()),
            LabError::Command {
                command,
                status,
                stderr,
            } => write!(f, "`{command}` failed ({status}): {stderr}"),
            LabError::Io { context, source } => write!(f, "{context}: {source}"),
            LabError::NotRoot => write!(f, "the lab needs root (network namespaces, veth, sysctl)"),
            LabError::Usage(m) | LabError::State(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for LabError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LabError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// A run prefix: 1-8 of `[a-z0-9]`, starting with a letter, so that the root link
/// `PREFIX-coll` fits in 15 bytes and `PREFIX-` never matches another prefix.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=8).contains(&prefix.len())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && prefix.as_bytes()[0].is_ascii_lowercase();
    if ok {
        Ok(())
    } else {
        Err(format!(
            "prefix {prefix:?}: use 1-8 of a-z and 0-9, starting with a letter"
        ))
    }
}

/// `deploy/lab/lab.toml` of this workspace.
pub fn default_description() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/lab/lab.toml")
}

/// `/run/kaohe-lab/PREFIX`.
pub fn default_state_dir(prefix: &str) -> PathBuf {
    Path::new(RUN_DIR).join(prefix)
}

/// A workspace binary (`kaohe-agent`, `kaohe-collector`, …) built beside the running test
/// (the target dir above `deps/`); panics saying how to build it when it is missing.
pub fn built_binary(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let dir = exe.parent().and_then(|d| d.parent()).expect("target dir");
    let bin = dir.join(name);
    assert!(
        bin.exists(),
        "{} is missing: run `cargo test --workspace` (or `cargo build --workspace`) first",
        bin.display()
    );
    bin
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
    /// inside namespaces. Tests pass `env!("CARGO_BIN_EXE_kaohe-lab")`.
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
    pub namespaces: std::collections::BTreeMap<String, String>,
    /// segment → switch namespace
    pub switches: std::collections::BTreeMap<String, String>,
    pub created_unix_ms: u128,
}

/// A probe run inside a lab host (by the helper binary; never from the root namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Icmp {
        addr: Ipv4Addr,
        count: u32,
        timeout: Duration,
    },
    Tcp {
        addr: SocketAddrV4,
        timeout: Duration,
    },
    Dns {
        addr: SocketAddrV4,
        timeout: Duration,
    },
}

impl Probe {
    /// One echo request, 1 s to answer.
    pub fn icmp(addr: Ipv4Addr) -> Probe {
        Probe::Icmp {
            addr,
            count: 1,
            timeout: Duration::from_secs(1),
        }
    }

    pub fn tcp(addr: Ipv4Addr, port: u16) -> Probe {
        Probe::Tcp {
            addr: SocketAddrV4::new(addr, port),
            timeout: Duration::from_secs(1),
        }
    }

    pub fn dns(addr: Ipv4Addr) -> Probe {
        Probe::Dns {
            addr: SocketAddrV4::new(addr, 53),
            timeout: Duration::from_secs(1),
        }
    }

    /// The same probe with another timeout (per attempt).
    pub fn with_timeout(self, t: Duration) -> Probe {
        match self {
            Probe::Icmp { addr, count, .. } => Probe::Icmp {
                addr,
                count,
                timeout: t,
            },
            Probe::Tcp { addr, .. } => Probe::Tcp { addr, timeout: t },
            Probe::Dns { addr, .. } => Probe::Dns { addr, timeout: t },
        }
    }

    fn args(&self) -> Vec<String> {
        let ms = |t: &Duration| t.as_millis().to_string();
        match self {
            Probe::Icmp { addr, count, timeout } => {
                vec![
                    "icmp".into(),
                    addr.to_string(),
                    "--count".into(),
                    count.to_string(),
                    "--timeout-ms".into(),
                    ms(timeout),
                ]
            }
            Probe::Tcp { addr, timeout } => vec!["tcp".into(), addr.to_string(), "--timeout-ms".into(), ms(timeout)],
            Probe::Dns { addr, timeout } => vec!["dns".into(), addr.to_string(), "--timeout-ms".into(), ms(timeout)],
        }
    }
}

/// A probe's result: reached or not, and what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub detail: String,
}

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

/// A lab that is up. Dropping a lab that [`Lab::up`] built tears it down.
#[derive(Debug)]
pub struct Lab {
    desc: Description,
    facts: Facts,
    prefix: String,
    description_path: PathBuf,
    state_dir: PathBuf,
    helper: PathBuf,
    root_link: Option<RootLink>,
    timings: Vec<(String, Duration)>,
    children: Vec<Child>,
    verbose: bool,
    /// Tear down on drop.
    owned: bool,
}

pub(crate) fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

impl Lab {
    /// Builds the lab (after removing a stale one with the same prefix).
    pub fn up(opts: Options) -> Result<Lab, LabError> {
        check_prefix(&opts.prefix).map_err(LabError::Usage)?;
        if !is_root() {
            return Err(LabError::NotRoot);
        }
        let desc = Description::load(&opts.description)?;
        let facts = Facts::derive(&desc);
        let mut lab = Lab {
            desc,
            facts,
            prefix: opts.prefix.clone(),
            description_path: opts.description.clone(),
            state_dir: opts.state_dir.clone(),
            helper: opts.helper.clone(),
            root_link: None,
            timings: Vec::new(),
            children: Vec::new(),
            verbose: opts.verbose,
            owned: true,
        };
        let start = Instant::now();
        lab.step("clean", |lab| cleanup(&lab.prefix, &lab.state_dir).map(|_| ()))?;
        lab.step("plan", Lab::claim_root_link)?;
        lab.step("namespaces", Lab::add_namespaces)?;
        lab.step("sysctl", Lab::set_sysctls)?;
        lab.step("links", Lab::add_links)?;
        lab.step("switches", Lab::configure_switches)?;
        lab.step("hosts", Lab::configure_hosts)?;
        lab.step("listeners", Lab::start_listeners)?;
        lab.step("files", Lab::write_files)?;
        let flap = match opts.flap {
            FlapMode::Off => None,
            FlapMode::Description => lab
                .desc
                .flap
                .autostart
                .then_some((lab.desc.flap.period, lab.desc.flap.down)),
            FlapMode::Schedule { period, down } => Some((period, down)),
        };
        if let Some((period, down)) = flap {
            lab.step("flap", |lab| lab.flap_start(period, down))?;
        }
        let total = start.elapsed();
        lab.timings.push(("total".into(), total));
        if lab.verbose {
            eprintln!("lab {}: up in {} ms", lab.prefix, total.as_millis());
        }
        Ok(lab)
    }

    /// A lab that is already up (built by another process, e.g. `lab up`). Dropping it
    /// leaves the lab running.
    pub fn attach(opts: Options) -> Result<Lab, LabError> {
        check_prefix(&opts.prefix).map_err(LabError::Usage)?;
        let desc = Description::load(&opts.description)?;
        let facts = Facts::derive(&desc);
        let info = read_run_info(&opts.state_dir).ok();
        let lab = Lab {
            desc,
            facts,
            prefix: opts.prefix.clone(),
            description_path: opts.description.clone(),
            state_dir: opts.state_dir.clone(),
            helper: opts.helper.clone(),
            root_link: info.map(|i| i.root_link),
            timings: Vec::new(),
            children: Vec::new(),
            verbose: opts.verbose,
            owned: false,
        };
        let first = lab.namespace_of_host(0);
        if !sys::netns_list()?.contains(&first) {
            return Err(LabError::State(format!(
                "no lab with prefix {:?} is up (no namespace {first})",
                lab.prefix
            )));
        }
        Ok(lab)
    }

    /// Leaves the lab running when this value is dropped (the CLI's `up`).
    pub fn detach(mut self) {
        self.owned = false;
        // The children go on without us; std does not kill them on drop.
        self.children.clear();
    }

    /// Tears the lab down: its processes, namespaces, root link, slot and state files.
    /// Returns how long it took.
    pub fn down(mut self) -> Result<Duration, LabError> {
        let start = Instant::now();
        self.owned = false;
        let result = cleanup(&self.prefix, &self.state_dir);
        self.reap();
        result.map(|_| start.elapsed())
    }

    fn reap(&mut self) {
        for mut c in self.children.drain(..) {
            if matches!(c.try_wait(), Ok(None)) {
                let _ = c.kill();
            }
            let _ = c.wait();
        }
    }

    fn step(&mut self, name: &str, f: impl FnOnce(&mut Lab) -> Result<(), LabError>) -> Result<(), LabError> {
        let start = Instant::now();
        f(self)?;
        let took = start.elapsed();
        if self.verbose {
            eprintln!(
                "lab {}: {name:<10} {:>6.1} ms",
                self.prefix,
                took.as_secs_f64() * 1000.0
            );
        }
        self.timings.push((name.to_string(), took));
        Ok(())
    }

    // -------------------------------------------------------------- accessors

    pub fn description(&self) -> &Description {
        &self.desc
    }

    pub fn facts(&self) -> &Facts {
        &self.facts
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn state_dir(&self) -> &Path {
        &self.state_dir
    }

    /// Step name → time, in order, ending with "total" (for a lab built by `up`).
    pub fn timings(&self) -> &[(String, Duration)] {
        &self.timings
    }

    pub fn root_link(&self) -> Option<&RootLink> {
        self.root_link.as_ref()
    }

    fn namespace_of_host(&self, i: usize) -> String {
        format!("{}-{}", self.prefix, self.desc.hosts[i].name)
    }

    fn switch_namespace(&self, segment: usize) -> String {
        format!("{}-sw-{}", self.prefix, self.desc.segments[segment].name)
    }

    /// The namespace of a host (`b1-pc1`) or switch (`sw-b1-lan`).
    pub fn namespace(&self, host: &str) -> Result<String, LabError> {
        if let Some(i) = self.desc.host_index(host) {
            return Ok(self.namespace_of_host(i));
        }
        if let Some(s) = host.strip_prefix("sw-").and_then(|s| self.desc.segment_index(s)) {
            return Ok(self.switch_namespace(s));
        }
        Err(LabError::Usage(format!(
            "no host {host:?} in the lab (switches are sw-SEGMENT)"
        )))
    }

    fn host(&self, name: &str) -> Result<usize, LabError> {
        self.desc
            .host_index(name)
            .ok_or_else(|| LabError::Usage(format!("no host {name:?} in the lab")))
    }

    fn run_dir(&self) -> PathBuf {
        self.state_dir.join("run")
    }

    /// `STATE/bN/registry.csv`.
    pub fn registry_path(&self, bureau: u8) -> PathBuf {
        generate::bureau_dir(&self.state_dir, bureau).join("registry.csv")
    }

    /// `STATE/bN/agent.toml`.
    pub fn agent_config_path(&self, bureau: u8) -> PathBuf {
        generate::bureau_dir(&self.state_dir, bureau).join("agent.toml")
    }

    /// `STATE/expected.json`.
    pub fn expected_path(&self) -> PathBuf {
        self.state_dir.join("expected.json")
    }

    // -------------------------------------------------------------- building

    fn claim_root_link(&mut self) -> Result<(), LabError> {
        let pool = self.desc.root_pool;
        let slot = claim_slot(&self.prefix, pool)?;
        let net = pool
            .subnet(30, slot)
            .ok_or_else(|| LabError::State(format!("slot {slot} is outside {pool}")))?;
        let (Some(root_addr), Some(lab_addr)) = (net.nth(1), net.nth(2)) else {
            return Err(LabError::State(format!("{net} has no host addresses")));
        };
        let c = &self.desc.collector;
        let collector_url = if c.host == self.desc.root_host {
            format!("{}://{lab_addr}:{}", c.scheme, c.port)
        } else {
            String::new()
        };
        self.root_link = Some(RootLink {
            slot,
            net: net.to_string(),
            root_dev: format!("{}-coll", self.prefix),
            root_addr,
            lab_dev: ROOT_LINK_LAB_DEV.into(),
            lab_addr,
            collector_url,
        });
        Ok(())
    }

    fn all_namespaces(&self) -> Vec<String> {
        let hosts = (0..self.desc.hosts.len()).map(|i| self.namespace_of_host(i));
        hosts
            .chain((0..self.desc.segments.len()).map(|s| self.switch_namespace(s)))
            .collect()
    }

    fn add_namespaces(&mut self) -> Result<(), LabError> {
        let lines: Vec<String> = self.all_namespaces().iter().map(|n| format!("netns add {n}")).collect();
        sys::ip_batch(None, &lines)
    }

    fn set_sysctls(&mut self) -> Result<(), LabError> {
        // Set before any interface exists, so that every interface inherits the
        // defaults (a new namespace copies IPv4 settings from the root namespace).
        let ipv6 = Path::new("/proc/sys/net/ipv6").exists();
        let mut cmds = Vec::new();
        let forwarding = self
            .desc
            .hosts
            .iter()
            .map(|h| h.forwarding)
            .chain(self.desc.segments.iter().map(|_| false));
        for (ns, fwd) in self.all_namespaces().into_iter().zip(forwarding) {
            let mut cmd = sys::in_netns(&ns, "sysctl");
            cmd.args([
                "-q",
                "-w",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.default.rp_filter=0",
            ]);
            cmd.arg(format!("net.ipv4.ip_forward={}", u8::from(fwd)));
            if ipv6 {
                // IPv4 only: no router solicitations or DAD chatter in the lab.
                cmd.args([
                    "net.ipv6.conf.all.disable_ipv6=1",
                    "net.ipv6.conf.default.disable_ipv6=1",
                ]);
            }
            cmds.push(cmd);
        }
        sys::run_parallel(cmds)
    }

    fn add_links(&mut self) -> Result<(), LabError> {
        let mut lines = Vec::new();
        for (i, h) in self.desc.hosts.iter().enumerate() {
            for n in &h.nics {
                lines.push(format!(
                    "link add name {} address {} netns {} type veth peer name {} address {} netns {}",
                    n.dev,
                    n.mac,
                    self.namespace_of_host(i),
                    h.name,
                    n.port_mac,
                    self.switch_namespace(n.segment)
                ));
            }
        }
        if let Some(r) = &self.root_link {
            let slot = u8::try_from(r.slot).unwrap_or(u8::MAX);
            lines.push(format!(
                "link add name {} address {} type veth peer name {} address {} netns {}",
                r.root_dev,
                Mac::lab(5, slot, 1),
                r.lab_dev,
                Mac::lab(5, slot, 2),
                self.namespace_of_host(self.desc.root_host)
            ));
        }
        sys::ip_batch(None, &lines)
    }

    fn configure_switches(&mut self) -> Result<(), LabError> {
        let mut batches = Vec::new();
        for (s, seg) in self.desc.segments.iter().enumerate() {
            let mut lines = vec![
                format!("link add br0 address {} type bridge", seg.bridge_mac),
                "link set br0 up".into(),
            ];
            for (i, _) in self.desc.attached(s) {
                let port = &self.desc.hosts[i].name;
                lines.push(format!("link set {port} master br0"));
                lines.push(format!("link set {port} up"));
            }
            batches.push((self.switch_namespace(s), lines));
        }
        sys::ip_batches_parallel(&batches)
    }

    /// The `ip route` lines of a host (added, or replaced after a link came back).
    fn route_lines(&self, host: usize, verb: &str, only_dev: Option<&str>) -> Vec<String> {
        let h = &self.desc.hosts[host];
        let dev_of = |via: Ipv4Addr| {
            h.nics
                .iter()
                .find(|n| n.ip.network().contains(via))
                .map(|n| n.dev.as_str())
        };
        let wanted = |via: Ipv4Addr| only_dev.is_none() || dev_of(via) == only_dev;
        let mut lines: Vec<String> = h
            .routes
            .iter()
            .filter(|r| wanted(r.via))
            .map(|r| format!("route {verb} {} via {}", r.dst, r.via))
            .collect();
        if let Some(gw) = h.gateway.filter(|gw| wanted(*gw)) {
            lines.push(format!("route {verb} default via {gw}"));
        }
        lines
    }

    fn configure_hosts(&mut self) -> Result<(), LabError> {
        let mut batches = Vec::new();
        for (i, h) in self.desc.hosts.iter().enumerate() {
            let mut lines = vec!["link set lo up".to_string()];
            lines.extend(h.canary_ips.iter().map(|ip| format!("addr add {ip}/32 dev lo")));
            for v in &h.virtuals {
                match v.kind {
                    model::VirtualKind::Bridge => {
                        let mac = v.mac.map(|m| format!(" address {m}")).unwrap_or_default();
                        lines.push(format!("link add {}{mac} type bridge", v.dev));
                    }
                    model::VirtualKind::Tun => lines.push(format!("tuntap add dev {} mode tun", v.dev)),
                }
                lines.push(format!("addr add {} dev {}", v.ip, v.dev));
                lines.push(format!("link set {} up", v.dev));
            }
            for n in &h.nics {
                lines.push(format!("addr add {} dev {}", n.ip, n.dev));
                lines.push(format!("link set {} up", n.dev));
            }
            if let Some(r) = self.root_link.as_ref().filter(|_| i == self.desc.root_host) {
                lines.push(format!("addr add {}/30 dev {}", r.lab_addr, r.lab_dev));
                lines.push(format!("link set {} up", r.lab_dev));
            }
            lines.extend(self.route_lines(i, "add", None));
            batches.push((self.namespace_of_host(i), lines));
        }
        sys::ip_batches_parallel(&batches)?;
        if let Some(r) = &self.root_link {
            // No IPv6 link-local address: the root end says nothing but IPv4.
            let lines = vec![
                format!("link set dev {} addrgenmode none", r.root_dev),
                format!("addr add {}/30 dev {}", r.root_addr, r.root_dev),
                format!("link set {} up", r.root_dev),
            ];
            sys::ip_batch(None, &lines)?;
        }
        Ok(())
    }

    fn spawn_helper(&mut self, ns: &str, args: &[String], log_name: &str) -> Result<u32, LabError> {
        let run = self.run_dir();
        let log_path = run.join(log_name);
        let log =
            fs::File::create(&log_path).map_err(|e| LabError::io(format!("creating {}", log_path.display()), e))?;
        let err = log
            .try_clone()
            .map_err(|e| LabError::io("duplicating a log file handle", e))?;
        let mut cmd = sys::in_netns(ns, &self.helper);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .process_group(0);
        let child = cmd
            .spawn()
            .map_err(|e| LabError::io(format!("starting {} in {ns}", self.helper.display()), e))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    fn start_listeners(&mut self) -> Result<(), LabError> {
        let run = self.run_dir();
        fs::create_dir_all(&run).map_err(|e| LabError::io(format!("creating {}", run.display()), e))?;
        let mut ready_files = Vec::new();
        for i in 0..self.desc.hosts.len() {
            let h = &self.desc.hosts[i];
            let mut listen = Vec::new();
            for c in self.desc.canaries.iter().filter(|c| c.host == i) {
                for p in &c.protocols {
                    match p {
                        model::CanaryProtocol::Icmp => {}
                        model::CanaryProtocol::Tcp443 => listen.extend(["--tcp".to_string(), format!("{}:443", c.ip)]),
                        model::CanaryProtocol::Dns => listen.extend(["--dns".to_string(), format!("{}:53", c.ip)]),
                    }
                }
            }
            for port in &h.http_ports {
                for n in &h.nics {
                    listen.extend(["--http".to_string(), format!("{}:{port}", n.ip.addr)]);
                }
            }
            if listen.is_empty() {
                continue;
            }
            let ns = self.namespace_of_host(i);
            let ready = run.join(format!("ready-{}", h.name));
            let mut args = vec![
                "serve".to_string(),
                "--netns".into(),
                ns.clone(),
                "--log".into(),
                run.join(format!("contacts-{}.jsonl", h.name)).display().to_string(),
                "--ready".into(),
                ready.display().to_string(),
            ];
            args.extend(listen);
            let log = format!("serve-{}.log", h.name);
            self.spawn_helper(&ns, &args, &log)?;
            ready_files.push((ready, run.join(log)));
        }
        for (ready, log) in ready_files {
            if !sys::wait_until(Duration::from_secs(5), || ready.exists()) {
                let said = fs::read_to_string(&log).unwrap_or_default();
                return Err(LabError::State(format!(
                    "a listener did not start within 5 s; {}: {said}",
                    log.display()
                )));
            }
        }
        Ok(())
    }

    fn run_info(&self) -> Option<RunInfo> {
        let root_link = self.root_link.clone()?;
        Some(RunInfo {
            prefix: self.prefix.clone(),
            description: self.description_path.clone(),
            state_dir: self.state_dir.clone(),
            root_link,
            namespaces: (0..self.desc.hosts.len())
                .map(|i| (self.desc.hosts[i].name.clone(), self.namespace_of_host(i)))
                .collect(),
            switches: (0..self.desc.segments.len())
                .map(|s| (self.desc.segments[s].name.clone(), self.switch_namespace(s)))
                .collect(),
            created_unix_ms: unix_ms(),
        })
    }

    fn write_files(&mut self) -> Result<(), LabError> {
        generate::write_all(&self.desc, &self.facts, &self.state_dir)?;
        if let Some(info) = self.run_info() {
            let path = self.state_dir.join("lab.json");
            let json = serde_json::to_string_pretty(&info).map_err(|e| LabError::State(format!("lab.json: {e}")))?;
            fs::write(&path, json + "\n").map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
        }
        Ok(())
    }

    // -------------------------------------------------------------- using

    /// Runs a command inside a host's (or switch's) namespace and waits for it.
    /// Bound its run time yourself (`-c`, `-W`, `timeout`).
    pub fn exec(&self, host: &str, args: &[&str]) -> Result<Output, LabError> {
        let ns = self.namespace(host)?;
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Usage("exec: no command".into()))?;
        let mut cmd = sys::in_netns(&ns, program);
        cmd.args(rest).stdin(Stdio::null());
        cmd.output()
            .map_err(|e| LabError::io(format!("running {program} in {ns}"), e))
    }

    fn probe_command(&self, host: &str, probe: &Probe) -> Result<Command, LabError> {
        let ns = self.namespace(host)?;
        let mut cmd = sys::in_netns(&ns, &self.helper);
        cmd.arg("probe")
            .args(probe.args())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(cmd)
    }

    fn outcome(out: &Output) -> ProbeOutcome {
        let mut detail = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let err = String::from_utf8_lossy(&out.stderr);
        if !err.trim().is_empty() {
            detail = format!("{detail} {}", err.trim());
        }
        ProbeOutcome {
            ok: out.status.success(),
            detail,
        }
    }

    /// Probes from inside a host: did it reach the address?
    pub fn probe(&self, host: &str, probe: &Probe) -> Result<ProbeOutcome, LabError> {
        let mut cmd = self.probe_command(host, probe)?;
        let out = cmd
            .output()
            .map_err(|e| LabError::io(format!("probing from {host}"), e))?;
        Ok(Lab::outcome(&out))
    }

    /// Many probes at once, each from its host; results in the same order.
    pub fn probe_many(&self, probes: &[(&str, Probe)]) -> Result<Vec<ProbeOutcome>, LabError> {
        let mut running = Vec::new();
        for (host, probe) in probes {
            let mut cmd = self.probe_command(host, probe)?;
            running.push(
                cmd.spawn()
                    .map_err(|e| LabError::io(format!("probing from {host}"), e))?,
            );
        }
        running
            .into_iter()
            .map(|c| {
                c.wait_with_output()
                    .map(|o| Lab::outcome(&o))
                    .map_err(|e| LabError::io("waiting for a probe", e))
            })
            .collect()
    }

    /// Takes a host's interface down or up. Bringing it up restores the routes the
    /// kernel dropped with it.
    pub fn set_link(&self, host: &str, dev: &str, up: bool) -> Result<(), LabError> {
        let i = self.host(host)?;
        let ns = self.namespace_of_host(i);
        let mut lines = vec![format!("link set dev {dev} {}", if up { "up" } else { "down" })];
        if up {
            lines.extend(self.route_lines(i, "replace", Some(dev)));
        }
        sys::ip_batch(Some(&ns), &lines)
    }

    /// Takes the switch port facing a host on a segment down or up: a carrier outage,
    /// which keeps the host's routes (this is how the uplink flaps).
    pub fn set_port(&self, segment: &str, host: &str, up: bool) -> Result<(), LabError> {
        let s = self
            .desc
            .segment_index(segment)
            .ok_or_else(|| LabError::Usage(format!("no segment {segment:?} in the lab")))?;
        let i = self.host(host)?;
        if self.desc.hosts[i].nic_on(s).is_none() {
            return Err(LabError::Usage(format!("host {host:?} has no port on {segment:?}")));
        }
        let line = format!("link set dev {host} {}", if up { "up" } else { "down" });
        sys::ip_batch(Some(&self.switch_namespace(s)), &[line])
    }

    /// The state of a host's interface.
    pub fn link_state(&self, host: &str, dev: &str) -> Result<LinkState, LabError> {
        let ns = self.namespace(host)?;
        let out = sys::run(Command::new("ip").args(["-n", &ns, "-o", "link", "show", "dev", dev]))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let flags = text
            .split_once('<')
            .and_then(|(_, r)| r.split_once('>'))
            .map(|(f, _)| f)
            .unwrap_or("");
        let flags: Vec<&str> = flags.split(',').collect();
        Ok(LinkState {
            admin_up: flags.contains(&"UP"),
            carrier: flags.contains(&"LOWER_UP"),
        })
    }

    /// Adds netem to a host's interface (`&["loss", "20%"]`), or with `None` removes
    /// it. Where the kernel has no netem (these machines' kernel has none), a plain
    /// `loss P%` is emulated: a classic-BPF filter on the interface's egress draws a
    /// random number per packet and sends the unlucky ones to a veth that is down
    /// (`lossy0`), which drops them. Other netem specs need netem.
    pub fn netem(&self, host: &str, dev: &str, spec: Option<&[&str]>) -> Result<(), LabError> {
        let i = self.host(host)?;
        let ns = self.namespace_of_host(i);
        let tc = |args: &[&str]| {
            let mut cmd = Command::new("tc");
            cmd.args(["-n", &ns]).args(args);
            sys::run(&mut cmd)
        };
        let Some(spec) = spec else {
            let _ = tc(&["qdisc", "del", "dev", dev, "root"]);
            let _ = tc(&["qdisc", "del", "dev", dev, "clsact"]);
            // Back to the state the lab built: "root" may now be the default qdisc.
            return Ok(());
        };
        let mut args = vec!["qdisc", "replace", "dev", dev, "root", "netem"];
        args.extend(spec);
        match tc(&args) {
            Ok(_) => Ok(()),
            Err(LabError::Command { stderr, .. }) if stderr.contains("qdisc kind is unknown") => {
                let percent = match spec {
                    ["loss", p] => p
                        .trim_end_matches('%')
                        .parse::<f64>()
                        .ok()
                        .filter(|p| (0.0..=100.0).contains(p)),
                    _ => None,
                };
                let Some(percent) = percent else {
                    return Err(LabError::State(format!(
                        "this kernel has no netem (sch_netem); only \"loss P%\" can be emulated, not {spec:?}"
                    )));
                };
                self.emulate_loss(i, dev, percent)
            }
            Err(e) => Err(e),
        }
    }

    fn emulate_loss(&self, host: usize, dev: &str, percent: f64) -> Result<(), LabError> {
        let ns = self.namespace_of_host(host);
        let sink = "lossy0";
        if sys::run(Command::new("ip").args(["-n", &ns, "link", "show", "dev", sink])).is_err() {
            let hi = u8::try_from(host + 1).unwrap_or(u8::MAX);
            let line = format!(
                "link add name {sink} address {} type veth peer name lossy1 address {}",
                Mac::lab(6, hi, 0),
                Mac::lab(6, hi, 1)
            );
            sys::ip_batch(Some(&ns), &[line])?;
        }
        // ld rand; jge #T, keep; ret -1 (match: drop); keep: ret 0.
        let threshold = (percent / 100.0 * 4_294_967_296.0).round();
        let bytecode = if threshold >= 4_294_967_295.0 {
            "1,6 0 0 4294967295".to_string()
        } else {
            format!(
                "4,32 0 0 4294963256,53 1 0 {},6 0 0 4294967295,6 0 0 0",
                threshold as u64
            )
        };
        let tc = |args: &[&str]| {
            let mut cmd = Command::new("tc");
            cmd.args(["-n", &ns]).args(args);
            sys::run(&mut cmd)
        };
        let _ = tc(&["qdisc", "del", "dev", dev, "clsact"]);
        tc(&["qdisc", "add", "dev", dev, "clsact"])?;
        let filter = [
            "filter", "add", "dev", dev, "egress", "pref", "1", "bpf", "bytecode", &bytecode,
        ];
        let action = ["action", "mirred", "egress", "redirect", "dev", sink];
        tc(&[&filter[..], &action[..]].concat())?;
        Ok(())
    }

    /// Turns a host's IP forwarding on or off.
    pub fn set_forwarding(&self, host: &str, on: bool) -> Result<(), LabError> {
        let ns = self.namespace_of_host(self.host(host)?);
        let mut cmd = sys::in_netns(&ns, "sysctl");
        cmd.args(["-q", "-w", &format!("net.ipv4.ip_forward={}", u8::from(on))]);
        sys::run(&mut cmd).map(|_| ())
    }

    fn flap_log(&self) -> PathBuf {
        self.run_dir().join("flap.jsonl")
    }

    /// Starts flapping the uplink of `[flap]`: up for `period - down`, then down for
    /// `down`, repeated. Restarts it if it runs already.
    pub fn flap_start(&mut self, period: Duration, down: Duration) -> Result<(), LabError> {
        if down.is_zero() || down >= period {
            return Err(LabError::Usage("flap: need 0 < down < period".into()));
        }
        self.flap_stop()?;
        let flap = self.desc.flap.clone();
        let ns = self.switch_namespace(flap.segment);
        let args = vec![
            "flap-run".to_string(),
            "--netns".into(),
            ns.clone(),
            "--port".into(),
            self.desc.hosts[flap.host].name.clone(),
            "--period-ms".into(),
            period.as_millis().to_string(),
            "--down-ms".into(),
            down.as_millis().to_string(),
            "--log".into(),
            self.flap_log().display().to_string(),
        ];
        fs::create_dir_all(self.run_dir()).map_err(|e| LabError::io("creating the run dir", e))?;
        let pid = self.spawn_helper(&ns, &args, "flap.log")?;
        let pid_path = self.run_dir().join("flap.pid");
        fs::write(&pid_path, format!("{pid}\n")).map_err(|e| LabError::io(format!("writing {}", pid_path.display()), e))
    }

    /// Stops flapping and leaves the uplink up.
    pub fn flap_stop(&mut self) -> Result<(), LabError> {
        let flap = self.desc.flap.clone();
        let ns = self.switch_namespace(flap.segment);
        let pids = sys::netns_pids(&ns);
        sys::kill_pids(&pids, Duration::from_secs(1));
        self.children.retain_mut(|c| !matches!(c.try_wait(), Ok(Some(_))));
        let _ = fs::remove_file(self.run_dir().join("flap.pid"));
        let port = self.desc.hosts[flap.host].name.clone();
        let segment = self.desc.segments[flap.segment].name.clone();
        self.set_port(&segment, &port, true)
    }

    /// Whether the flapper runs.
    pub fn flapping(&self) -> bool {
        !sys::netns_pids(&self.switch_namespace(self.desc.flap.segment)).is_empty()
    }

    /// What the flapper did, in order.
    pub fn flap_events(&self) -> Vec<FlapEvent> {
        read_jsonl(&self.flap_log())
    }

    /// Who reached the canaries (and the leak listener), from the listeners' logs.
    pub fn contacts(&self) -> Vec<Contact> {
        let mut all = Vec::new();
        if let Ok(dir) = fs::read_dir(self.run_dir()) {
            for e in dir.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.starts_with("contacts-") && name.ends_with(".jsonl") {
                    all.extend(read_jsonl::<Contact>(&e.path()));
                }
            }
        }
        all.sort_by_key(|c| c.t_unix_ms);
        all
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.owned {
            if let Err(e) = cleanup(&self.prefix, &self.state_dir) {
                eprintln!("lab {}: tearing down failed: {e}", self.prefix);
            }
            self.reap();
        }
    }
}

fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Reads `lab.json` of a running lab.
pub fn read_run_info(state_dir: &Path) -> Result<RunInfo, LabError> {
    let path = state_dir.join("lab.json");
    let text = fs::read_to_string(&path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|e| LabError::State(format!("{}: {e}", path.display())))
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    pub namespaces: usize,
    pub processes: usize,
    pub root_links: usize,
}

/// Removes every trace of a lab with this prefix: its processes (by id, found in its
/// namespaces), the root link, the namespaces (and with them every veth and bridge),
/// the root link slot and the state files. Safe to run when nothing is there.
pub fn cleanup(prefix: &str, state_dir: &Path) -> Result<Cleanup, LabError> {
    check_prefix(prefix).map_err(LabError::Usage)?;
    let p = format!("{prefix}-");
    let namespaces: Vec<String> = sys::netns_list()?.into_iter().filter(|n| n.starts_with(&p)).collect();
    let pids: Vec<u32> = namespaces.iter().flat_map(|n| sys::netns_pids(n)).collect();
    sys::kill_pids(&pids, Duration::from_secs(1));
    let links: Vec<String> = sys::root_links()?.into_iter().filter(|l| l.starts_with(&p)).collect();
    let mut lines: Vec<String> = links.iter().map(|l| format!("link del {l}")).collect();
    lines.extend(namespaces.iter().map(|n| format!("netns del {n}")));
    sys::ip_batch(None, &lines)?;
    release_slots(prefix);
    remove_state(state_dir);
    Ok(Cleanup {
        namespaces: namespaces.len(),
        processes: pids.len(),
        root_links: links.len(),
    })
}

/// Removes the files a lab wrote into its state dir (and the dir, if then empty).
fn remove_state(dir: &Path) {
    let _ = fs::remove_dir_all(dir.join("run"));
    for f in ["lab.json", "expected.json"] {
        let _ = fs::remove_file(dir.join(f));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bureau_dir = name.len() > 1 && name.starts_with('b') && name[1..].bytes().all(|b| b.is_ascii_digit());
            if bureau_dir {
                let _ = fs::remove_dir_all(e.path().join(generate::AGENT_STATE_DIR));
                for f in ["registry.csv", "agent.toml"] {
                    let _ = fs::remove_file(e.path().join(f));
                }
                let _ = fs::remove_dir(e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn slots_dir() -> PathBuf {
    Path::new(RUN_DIR).join("slots")
}

/// Takes a /30 of the root pool for this run: slot files `/run/kaohe-lab/slots/N`
/// hold the owning prefix, created exclusively, so concurrent runs never share one.
fn claim_slot(prefix: &str, pool: Ipv4Net) -> Result<u32, LabError> {
    let dir = slots_dir();
    fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let count = 1u32 << (30 - pool.len).min(8);
    let owner = |n: u32| {
        fs::read_to_string(dir.join(n.to_string()))
            .map(|s| s.trim().to_string())
            .ok()
    };
    if let Some(n) = (0..count).find(|&n| owner(n).as_deref() == Some(prefix)) {
        return Ok(n);
    }
    for n in 0..count {
        let path = dir.join(n.to_string());
        for attempt in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => {
                    fs::write(&path, prefix).map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if attempt == 0 && slot_is_stale(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    break;
                }
                Err(e) => return Err(LabError::io(format!("creating {}", path.display()), e)),
            }
        }
    }
    Err(LabError::State(format!(
        "all {count} root link slots of {pool} are taken ({})",
        dir.display()
    )))
}

/// A slot is stale when its lab has neither namespaces nor a root link, and the file is
/// old enough that no lab is being built with it.
fn slot_is_stale(path: &Path) -> bool {
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > SLOT_GRACE);
    let owner = fs::read_to_string(path).unwrap_or_default().trim().to_string();
    if !old {
        return false;
    }
    if check_prefix(&owner).is_err() {
        return true;
    }
    leftovers(&owner).is_ok_and(|l| l.is_empty())
}

fn release_slots(prefix: &str) {
    if let Ok(entries) = fs::read_dir(slots_dir()) {
        for e in entries.flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

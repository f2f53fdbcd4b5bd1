//! The lab description (`deploy/lab/lab.toml`), parsed in one step into a typed
//! [`Description`] in which every reference (segment, host, gateway) is resolved and
//! every interface has its MAC. Nothing after this module re-checks the file.
//!
//! MAC plan, `02:6b:68:KK:AA:BB` ("kh"), numbered by position in the file (1-based):
//! - `KK=00`: host NIC, AA = host, BB = NIC
//! - `KK=01`: the switch port facing that NIC, same AA/BB
//! - `KK=02`: a segment's bridge `br0`, AA = segment
//! - `KK=03`: a host's virtual bridge (docker0-style), AA = host, BB = its index
//! - `KK=05`: the root link, AA = the run's slot, BB = 1 (root end) or 2 (lab end)
//! - `KK=06`: the down veth pair `lossy0`/`lossy1` that emulated loss drops into, AA = host
//! - `KK=ee`: reserved for registry entries of devices that never exist

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::LabError;
use crate::net::{Ipv4Net, Mac};

mod raw;
mod resolve;

/// What is wrong with a lab file: its TOML, or what it says.
#[derive(Debug, thiserror::Error)]
pub enum DescriptionError {
    /// Not TOML of the lab's form; the parser's message names the line.
    #[error(transparent)]
    Toml(#[from] toml::de::Error),
    /// Well-formed but wrong; the message names the key.
    #[error("{0}")]
    Invalid(String),
}

use raw::RawFile;
pub use resolve::parse_route;

/// The longest host name: switch ports are named after hosts, and Linux interface
/// names are at most 15 bytes.
pub const MAX_HOST_NAME: usize = 13;
/// The longest segment name (namespace PREFIX-sw-NAME; kept short for `ip` output).
pub const MAX_SEGMENT_NAME: usize = 12;

// ------------------------------------------------------------------ typed model

/// What an agent target is probed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetProbe {
    Icmp,
    /// TCP connect to the target's service port (the collector's port for the collector).
    Tcp,
}

/// What a canary answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CanaryProtocol {
    Icmp,
    Tcp443,
    Dns,
}

/// Registry kinds other than devices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AppKind {
    App,
    Portal,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VirtualKind {
    Bridge,
    Tun,
}

/// The whole lab, resolved.
#[derive(Debug, Clone)]
pub struct Description {
    pub default_prefix: String,
    pub root_host: usize,
    pub root_pool: Ipv4Net,
    pub collector: Collector,
    pub agent_interval_secs: u32,
    pub agent_targets: Vec<Target>,
    /// The private network's address space (the agents' self-check).
    pub private_prefixes: Vec<Ipv4Net>,
    pub flap: Flap,
    pub canaries: Vec<Canary>,
    pub segments: Vec<Segment>,
    pub bureaus: Vec<Bureau>,
    pub hosts: Vec<Host>,
}

#[derive(Debug, Clone)]
pub struct Collector {
    pub host: usize,
    pub scheme: String,
    pub port: u16,
}

#[derive(Debug, Clone)]
pub struct Target {
    pub name: String,
    pub host: usize,
    pub probes: Vec<TargetProbe>,
}

#[derive(Debug, Clone)]
pub struct Flap {
    pub segment: usize,
    pub host: usize,
    pub period: Duration,
    pub down: Duration,
    pub autostart: bool,
}

#[derive(Debug, Clone)]
pub struct Canary {
    pub name: String,
    pub host: usize,
    pub ip: Ipv4Addr,
    pub protocols: Vec<CanaryProtocol>,
    pub leak: bool,
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub internet: bool,
    pub bridge_mac: Mac,
}

#[derive(Debug, Clone)]
pub struct Bureau {
    pub id: u8,
    pub unit_id: String,
    pub name: String,
    pub lan: usize,
    pub gateway: usize,
    pub agent: usize,
    pub apps: Vec<App>,
    pub stale: Vec<RegistryDevice>,
}

#[derive(Debug, Clone)]
pub struct App {
    pub kind: AppKind,
    pub name: String,
    pub url: String,
    pub user: String,
    pub location: String,
}

/// A device row of a registry.
#[derive(Debug, Clone)]
pub struct RegistryDevice {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub user: String,
    pub location: String,
    pub machine_room: bool,
}

#[derive(Debug, Clone)]
pub struct Host {
    pub name: String,
    pub bureau: Option<u8>,
    pub role: String,
    pub nics: Vec<Nic>,
    pub gateway: Option<Ipv4Addr>,
    pub routes: Vec<Route>,
    pub forwarding: bool,
    pub virtuals: Vec<Virtual>,
    /// Canary addresses this host carries (as /32 on `lo`: the machine's kernel has no
    /// dummy interfaces).
    pub canary_ips: Vec<Ipv4Addr>,
    pub http_ports: Vec<u16>,
    pub registry: Option<Registration>,
}

#[derive(Debug, Clone)]
pub struct Nic {
    pub dev: String,
    pub segment: usize,
    /// Address and prefix length, as assigned.
    pub ip: Ipv4Net,
    pub mac: Mac,
    /// MAC of the switch port at the other end of the veth.
    pub port_mac: Mac,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub dst: Ipv4Net,
    pub via: Ipv4Addr,
}

#[derive(Debug, Clone)]
pub struct Virtual {
    pub kind: VirtualKind,
    pub dev: String,
    pub ip: Ipv4Net,
    pub mac: Option<Mac>,
}

#[derive(Debug, Clone)]
pub struct Registration {
    pub name: String,
    pub user: String,
    pub location: String,
    pub machine_room: bool,
}

impl Host {
    /// The host's first address: what agents and tests call "the host's address".
    pub fn address(&self) -> Ipv4Addr {
        self.nics[0].ip.addr()
    }

    /// Every address the host owns.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.nics.iter().any(|n| n.ip.addr() == ip)
            || self.virtuals.iter().any(|v| v.ip.addr() == ip)
            || self.canary_ips.contains(&ip)
    }

    /// The NIC on a segment, if the host has one.
    pub fn nic_on(&self, segment: usize) -> Option<&Nic> {
        self.nics.iter().find(|n| n.segment == segment)
    }

    /// The device name of a NIC by name, if present.
    pub fn nic(&self, dev: &str) -> Option<&Nic> {
        self.nics.iter().find(|n| n.dev == dev)
    }
}

impl Description {
    /// Reads and resolves a lab file.
    pub fn load(path: &Path) -> Result<Description, LabError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LabError::io(format!("reading the lab description {}", path.display()), e))?;
        Description::parse(&text).map_err(|source| LabError::Description {
            file: path.to_path_buf(),
            source,
        })
    }

    /// Parses a lab file's text. The error names the key (and, from the TOML parser,
    /// the line) that is wrong.
    pub fn parse(text: &str) -> Result<Description, DescriptionError> {
        let raw: RawFile = toml::from_str(text)?;
        resolve::resolve(raw)
    }

    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.hosts.iter().position(|h| h.name == name)
    }

    pub fn segment_index(&self, name: &str) -> Option<usize> {
        self.segments.iter().position(|s| s.name == name)
    }

    pub fn bureau(&self, id: u8) -> Option<&Bureau> {
        self.bureaus.iter().find(|b| b.id == id)
    }

    /// The hosts with a NIC on a segment, with that NIC.
    pub fn attached(&self, segment: usize) -> impl Iterator<Item = (usize, &Nic)> + '_ {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(move |(i, h)| h.nic_on(segment).map(|n| (i, n)))
    }

    /// The collector's URL as agents in the lab use it.
    pub fn collector_url(&self) -> String {
        let c = &self.collector;
        format!("{}://{}:{}", c.scheme, self.hosts[c.host].address(), c.port)
    }
}

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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use super::LabError;
use super::net::{Ipv4Net, Mac};

/// The longest host name: switch ports are named after hosts, and Linux interface
/// names are at most 15 bytes.
pub const MAX_HOST_NAME: usize = 13;
/// The longest segment name (namespace PREFIX-sw-NAME; kept short for `ip` output).
pub const MAX_SEGMENT_NAME: usize = 12;

// ------------------------------------------------------------------ raw file

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    version: u32,
    lab: RawLab,
    collector: RawCollector,
    agent: RawAgent,
    flap: RawFlap,
    #[serde(default)]
    canary: Vec<RawCanary>,
    #[serde(default)]
    segment: Vec<RawSegment>,
    #[serde(default)]
    bureau: Vec<RawBureau>,
    #[serde(default)]
    host: Vec<RawHost>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLab {
    default_prefix: String,
    root_host: String,
    root_pool: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCollector {
    host: String,
    scheme: String,
    port: u16,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    interval_secs: u32,
    private_prefixes: Vec<String>,
    #[serde(default)]
    targets: Vec<RawTarget>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    name: String,
    host: String,
    probes: Vec<TargetProbe>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlap {
    segment: String,
    host: String,
    period_secs: u32,
    down_secs: u32,
    #[serde(default)]
    autostart: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCanary {
    name: String,
    host: String,
    ip: Ipv4Addr,
    protocols: Vec<CanaryProtocol>,
    #[serde(default)]
    leak: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSegment {
    name: String,
    #[serde(default)]
    internet: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBureau {
    id: u8,
    unit_id: String,
    name: String,
    lan: String,
    gateway: String,
    agent: String,
    #[serde(default)]
    app: Vec<RawApp>,
    #[serde(default)]
    stale: Vec<RawStale>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApp {
    kind: AppKind,
    name: String,
    url: String,
    user: String,
    location: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStale {
    name: String,
    ip: Ipv4Addr,
    mac: String,
    user: String,
    location: String,
    #[serde(default)]
    room: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHost {
    name: String,
    #[serde(default)]
    bureau: Option<u8>,
    role: String,
    nics: Vec<RawNic>,
    #[serde(default)]
    gateway: Option<Ipv4Addr>,
    #[serde(default)]
    routes: Vec<String>,
    #[serde(default)]
    forwarding: bool,
    #[serde(default, rename = "virtual")]
    virtuals: Vec<RawVirtual>,
    #[serde(default)]
    serve: Vec<String>,
    #[serde(default)]
    registry: Option<RawRegistry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNic {
    seg: String,
    ip: String,
    #[serde(default)]
    dev: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVirtual {
    kind: VirtualKind,
    dev: String,
    ip: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRegistry {
    name: String,
    user: String,
    location: String,
    #[serde(default)]
    room: bool,
}

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
        self.nics[0].ip.addr
    }

    /// Every address the host owns.
    pub fn owns(&self, ip: Ipv4Addr) -> bool {
        self.nics.iter().any(|n| n.ip.addr == ip)
            || self.virtuals.iter().any(|v| v.ip.addr == ip)
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
        Description::parse(&text).map_err(|message| LabError::Description {
            file: path.to_path_buf(),
            message,
        })
    }

    /// Parses a lab file's text. The error names the key (and, from the TOML parser,
    /// the line) that is wrong.
    pub fn parse(text: &str) -> Result<Description, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        resolve(raw)
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

fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{what} {name:?}: use 1-{max} characters of a-z, 0-9 and '-'"))
    }
}

fn check_dev(host: &str, dev: &str) -> Result<(), String> {
    let ok = !dev.is_empty()
        && dev.len() <= 15
        && dev.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && dev != "lo";
    if ok {
        Ok(())
    } else {
        Err(format!("host {host:?}: bad interface name {dev:?}"))
    }
}

fn u8_index(what: &str, index: usize) -> Result<u8, String> {
    u8::try_from(index + 1).map_err(|_| format!("too many {what} (at most 255)"))
}

fn resolve(raw: RawFile) -> Result<Description, String> {
    if raw.version != 1 {
        return Err(format!("version = {}: this kaohe-lab reads version 1", raw.version));
    }
    super::check_prefix(&raw.lab.default_prefix).map_err(|e| format!("lab.default_prefix: {e}"))?;
    let root_pool: Ipv4Net = raw.lab.root_pool.parse().map_err(|e| format!("lab.root_pool: {e}"))?;
    if root_pool.len > 30 {
        return Err("lab.root_pool: needs room for at least one /30".into());
    }

    // Segments.
    let mut segments = Vec::new();
    let mut seg_index = HashMap::new();
    for (i, s) in raw.segment.iter().enumerate() {
        check_name("segment", &s.name, MAX_SEGMENT_NAME)?;
        if seg_index.insert(s.name.clone(), i).is_some() {
            return Err(format!("segment {:?} is declared twice", s.name));
        }
        segments.push(Segment {
            name: s.name.clone(),
            internet: s.internet,
            bridge_mac: Mac::lab(0x02, u8_index("segments", i)?, 0),
        });
    }
    let seg = |name: &str, whose: &str| -> Result<usize, String> {
        seg_index
            .get(name)
            .copied()
            .ok_or_else(|| format!("{whose}: no segment {name:?}"))
    };

    // Hosts, first pass: names.
    let mut host_index = HashMap::new();
    for (i, h) in raw.host.iter().enumerate() {
        check_name("host", &h.name, MAX_HOST_NAME)?;
        if h.name.starts_with("sw-") {
            return Err(format!("host {:?}: names starting with sw- are the switches'", h.name));
        }
        if host_index.insert(h.name.clone(), i).is_some() {
            return Err(format!("host {:?} is declared twice", h.name));
        }
    }
    let host = |name: &str, whose: &str| -> Result<usize, String> {
        host_index
            .get(name)
            .copied()
            .ok_or_else(|| format!("{whose}: no host {name:?}"))
    };

    // Canaries, grouped by the host carrying them.
    let mut canaries = Vec::new();
    let mut canary_ips: BTreeMap<usize, Vec<Ipv4Addr>> = BTreeMap::new();
    for c in &raw.canary {
        let h = host(&c.host, &format!("canary {:?}", c.name))?;
        canary_ips.entry(h).or_default().push(c.ip);
        canaries.push(Canary {
            name: c.name.clone(),
            host: h,
            ip: c.ip,
            protocols: c.protocols.clone(),
            leak: c.leak,
        });
    }

    // Hosts, second pass.
    let bureau_ids: HashSet<u8> = raw.bureau.iter().map(|b| b.id).collect();
    let mut hosts = Vec::new();
    for (i, h) in raw.host.iter().enumerate() {
        let hi = u8_index("hosts", i)?;
        let whose = format!("host {:?}", h.name);
        if h.nics.is_empty() {
            return Err(format!("{whose}: needs at least one NIC"));
        }
        if let Some(b) = h.bureau.filter(|b| !bureau_ids.contains(b)) {
            return Err(format!("{whose}: no bureau {b}"));
        }
        let mut nics = Vec::new();
        for (j, n) in h.nics.iter().enumerate() {
            let nj = u8::try_from(j).map_err(|_| format!("{whose}: too many NICs"))?;
            let segment = seg(&n.seg, &whose)?;
            if nics.iter().any(|x: &Nic| x.segment == segment) {
                return Err(format!("{whose}: two NICs on segment {:?}", n.seg));
            }
            let ip: Ipv4Net = n.ip.parse().map_err(|e| format!("{whose}: nics[{j}].ip: {e}"))?;
            let dev = n.dev.clone().unwrap_or_else(|| format!("eth{j}"));
            check_dev(&h.name, &dev)?;
            if nics.iter().any(|x: &Nic| x.dev == dev) {
                return Err(format!("{whose}: two NICs named {dev:?}"));
            }
            nics.push(Nic {
                dev,
                segment,
                ip,
                mac: Mac::lab(0, hi, nj),
                port_mac: Mac::lab(1, hi, nj),
            });
        }
        let on_link = |ip: Ipv4Addr| nics.iter().any(|n| n.ip.network().contains(ip) && n.ip.addr != ip);
        if let Some(gw) = h.gateway.filter(|gw| !on_link(*gw)) {
            return Err(format!("{whose}: gateway {gw} is on none of its NICs' subnets"));
        }
        let mut routes = Vec::new();
        for r in &h.routes {
            let route = parse_route(r).map_err(|e| format!("{whose}: routes: {e}"))?;
            if !on_link(route.via) {
                return Err(format!(
                    "{whose}: route {r:?}: {} is on none of its NICs' subnets",
                    route.via
                ));
            }
            routes.push(route);
        }
        let mut virtuals = Vec::new();
        let mut bridges = 0u8;
        for v in &h.virtuals {
            check_dev(&h.name, &v.dev)?;
            let ip: Ipv4Net = v.ip.parse().map_err(|e| format!("{whose}: virtual {:?}: {e}", v.dev))?;
            let mac = match v.kind {
                VirtualKind::Bridge => {
                    bridges += 1;
                    Some(Mac::lab(3, hi, bridges))
                }
                VirtualKind::Tun => None,
            };
            virtuals.push(Virtual {
                kind: v.kind,
                dev: v.dev.clone(),
                ip,
                mac,
            });
        }
        let mut http_ports = Vec::new();
        for s in &h.serve {
            let port = s
                .strip_prefix("http:")
                .and_then(|p| p.parse::<u16>().ok())
                .ok_or_else(|| format!("{whose}: serve {s:?}: expected http:PORT"))?;
            http_ports.push(port);
        }
        let registry = h.registry.as_ref().map(|r| Registration {
            name: r.name.clone(),
            user: r.user.clone(),
            location: r.location.clone(),
            machine_room: r.room,
        });
        if registry.is_some() && h.bureau.is_none() {
            return Err(format!("{whose}: a registry entry needs a bureau"));
        }
        hosts.push(Host {
            name: h.name.clone(),
            bureau: h.bureau,
            role: h.role.clone(),
            nics,
            gateway: h.gateway,
            routes,
            forwarding: h.forwarding,
            virtuals,
            canary_ips: canary_ips.remove(&i).unwrap_or_default(),
            http_ports,
            registry,
        });
    }

    // Every address once.
    let mut seen: HashMap<Ipv4Addr, String> = HashMap::new();
    for h in &hosts {
        let all = h
            .nics
            .iter()
            .map(|n| n.ip.addr)
            .chain(h.virtuals.iter().map(|v| v.ip.addr));
        for ip in all.chain(h.canary_ips.iter().copied()) {
            if let Some(other) = seen.insert(ip, h.name.clone()) {
                return Err(format!("address {ip} is on both {other:?} and {:?}", h.name));
            }
            if root_pool.contains(ip) {
                return Err(format!("host {:?}: {ip} lies in lab.root_pool", h.name));
            }
        }
    }

    // Bureaus.
    let mut bureaus = Vec::new();
    let mut macs: HashSet<Mac> = hosts.iter().flat_map(|h| h.nics.iter().map(|n| n.mac)).collect();
    for b in &raw.bureau {
        let whose = format!("bureau {}", b.id);
        if bureaus.iter().any(|x: &Bureau| x.id == b.id) {
            return Err(format!("{whose} is declared twice"));
        }
        let lan = seg(&b.lan, &whose)?;
        let gateway = host(&b.gateway, &whose)?;
        let agent = host(&b.agent, &whose)?;
        for (role, h) in [("gateway", gateway), ("agent", agent)] {
            if hosts[h].bureau != Some(b.id) || hosts[h].nic_on(lan).is_none() {
                return Err(format!(
                    "{whose}: {role} {:?} must be of the bureau and on its LAN",
                    hosts[h].name
                ));
            }
        }
        let mut stale = Vec::new();
        for s in &b.stale {
            let mac: Mac = s.mac.parse().map_err(|e| format!("{whose}: stale {:?}: {e}", s.name))?;
            if !macs.insert(mac) || seen.contains_key(&s.ip) {
                return Err(format!("{whose}: stale {:?} reuses a live address or MAC", s.name));
            }
            stale.push(RegistryDevice {
                name: s.name.clone(),
                ip: s.ip,
                mac,
                user: s.user.clone(),
                location: s.location.clone(),
                machine_room: s.room,
            });
        }
        let apps = b
            .app
            .iter()
            .map(|a| App {
                kind: a.kind,
                name: a.name.clone(),
                url: a.url.clone(),
                user: a.user.clone(),
                location: a.location.clone(),
            })
            .collect();
        bureaus.push(Bureau {
            id: b.id,
            unit_id: b.unit_id.clone(),
            name: b.name.clone(),
            lan,
            gateway,
            agent,
            apps,
            stale,
        });
    }

    let collector = Collector {
        host: host(&raw.collector.host, "collector")?,
        scheme: raw.collector.scheme.clone(),
        port: raw.collector.port,
    };
    let mut agent_targets = Vec::new();
    for t in &raw.agent.targets {
        let whose = format!("agent.targets {:?}", t.name);
        let h = host(&t.host, &whose)?;
        if t.probes.contains(&TargetProbe::Tcp) && h != collector.host {
            return Err(format!(
                "{whose}: tcp probes need a port, and only the collector has one"
            ));
        }
        agent_targets.push(Target {
            name: t.name.clone(),
            host: h,
            probes: t.probes.clone(),
        });
    }
    let mut private_prefixes = Vec::new();
    for p in &raw.agent.private_prefixes {
        let net: Ipv4Net = p.parse().map_err(|e| format!("agent.private_prefixes: {e}"))?;
        private_prefixes.push(net.network());
    }
    let flap_segment = seg(&raw.flap.segment, "flap")?;
    let flap_host = host(&raw.flap.host, "flap")?;
    if hosts[flap_host].nic_on(flap_segment).is_none() {
        return Err(format!(
            "flap: host {:?} is not on segment {:?}",
            raw.flap.host, raw.flap.segment
        ));
    }
    if raw.flap.down_secs == 0 || raw.flap.down_secs >= raw.flap.period_secs {
        return Err("flap: need 0 < down_secs < period_secs".into());
    }
    for (i, s) in segments.iter().enumerate() {
        if !hosts.iter().any(|h| h.nic_on(i).is_some()) {
            return Err(format!("segment {:?} has no host", s.name));
        }
    }

    Ok(Description {
        default_prefix: raw.lab.default_prefix,
        root_host: host(&raw.lab.root_host, "lab.root_host")?,
        root_pool,
        collector,
        agent_interval_secs: raw.agent.interval_secs,
        agent_targets,
        private_prefixes,
        flap: Flap {
            segment: flap_segment,
            host: flap_host,
            period: Duration::from_secs(raw.flap.period_secs.into()),
            down: Duration::from_secs(raw.flap.down_secs.into()),
            autostart: raw.flap.autostart,
        },
        canaries,
        segments,
        bureaus,
        hosts,
    })
}

/// `"10.0.0.0/8 via 10.3.0.1"`.
pub fn parse_route(s: &str) -> Result<Route, String> {
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [dst, "via", via] => {
            let dst: Ipv4Net = dst.parse()?;
            let via: Ipv4Addr = via.parse().map_err(|_| format!("{via:?} is not an IPv4 address"))?;
            Ok(Route {
                dst: dst.network(),
                via,
            })
        }
        _ => Err(format!("{s:?} is not \"PREFIX via ADDRESS\"")),
    }
}

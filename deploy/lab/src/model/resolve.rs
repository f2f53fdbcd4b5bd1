//! From [`RawFile`] to [`Description`]: every reference resolved, every name, address
//! and MAC checked once. The error names the key that is wrong.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use super::raw::{RawFile, RawHost};
use super::*;

/// A description error that is not the TOML parser's.
fn invalid(message: impl Into<String>) -> DescriptionError {
    DescriptionError::Invalid(message.into())
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), DescriptionError> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?}: use 1-{max} characters of a-z, 0-9 and '-'"
        )))
    }
}

fn check_dev(host: &str, dev: &str) -> Result<(), DescriptionError> {
    let ok = !dev.is_empty()
        && dev.len() <= 15
        && dev.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        && dev != "lo";
    if ok {
        Ok(())
    } else {
        Err(invalid(format!("host {host:?}: bad interface name {dev:?}")))
    }
}

fn u8_index(what: &str, index: usize) -> Result<u8, DescriptionError> {
    u8::try_from(index + 1).map_err(|_| invalid(format!("too many {what} (at most 255)")))
}

/// The names of the file's segments and hosts, each once, with their positions.
struct Names {
    segments: HashMap<String, usize>,
    hosts: HashMap<String, usize>,
}

impl Names {
    fn read(raw: &RawFile) -> Result<Names, DescriptionError> {
        let mut seg_index = HashMap::new();
        for (i, s) in raw.segment.iter().enumerate() {
            check_name("segment", &s.name, MAX_SEGMENT_NAME)?;
            if seg_index.insert(s.name.clone(), i).is_some() {
                return Err(invalid(format!("segment {:?} is declared twice", s.name)));
            }
        }
        let mut host_index = HashMap::new();
        for (i, h) in raw.host.iter().enumerate() {
            check_name("host", &h.name, MAX_HOST_NAME)?;
            if h.name.starts_with("sw-") {
                return Err(invalid(format!(
                    "host {:?}: names starting with sw- are the switches'",
                    h.name
                )));
            }
            if host_index.insert(h.name.clone(), i).is_some() {
                return Err(invalid(format!("host {:?} is declared twice", h.name)));
            }
        }
        Ok(Names {
            segments: seg_index,
            hosts: host_index,
        })
    }

    fn segment(&self, name: &str, whose: &str) -> Result<usize, DescriptionError> {
        self.segments
            .get(name)
            .copied()
            .ok_or_else(|| invalid(format!("{whose}: no segment {name:?}")))
    }

    fn host(&self, name: &str, whose: &str) -> Result<usize, DescriptionError> {
        self.hosts
            .get(name)
            .copied()
            .ok_or_else(|| invalid(format!("{whose}: no host {name:?}")))
    }
}

pub(super) fn resolve(raw: RawFile) -> Result<Description, DescriptionError> {
    if raw.version != 1 {
        return Err(invalid(format!(
            "version = {}: this kaohe-lab reads version 1",
            raw.version
        )));
    }
    crate::check_prefix(&raw.lab.default_prefix).map_err(|e| invalid(format!("lab.default_prefix: {e}")))?;
    let root_pool: Ipv4Net = raw
        .lab
        .root_pool
        .parse()
        .map_err(|e| invalid(format!("lab.root_pool: {e}")))?;
    if root_pool.prefix_len() > 30 {
        return Err(invalid("lab.root_pool: needs room for at least one /30"));
    }

    let names = Names::read(&raw)?;
    let segments = segments(&raw)?;
    let (canaries, mut canary_ips) = canaries(&raw, &names)?;
    let bureau_ids: HashSet<u8> = raw.bureau.iter().map(|b| b.id).collect();
    let hosts = raw
        .host
        .iter()
        .enumerate()
        .map(|(i, h)| host(i, h, &names, &bureau_ids, canary_ips.remove(&i).unwrap_or_default()))
        .collect::<Result<Vec<_>, _>>()?;
    let seen = check_addresses(&hosts, root_pool)?;
    let bureaus = bureaus(&raw, &names, &hosts, &seen)?;

    let collector = Collector {
        host: names.host(&raw.collector.host, "collector")?,
        scheme: raw.collector.scheme.clone(),
        port: raw.collector.port,
    };
    let mut agent_targets = Vec::new();
    for t in &raw.agent.targets {
        let whose = format!("agent.targets {:?}", t.name);
        let h = names.host(&t.host, &whose)?;
        if t.probes.contains(&TargetProbe::Tcp) && h != collector.host {
            return Err(invalid(format!(
                "{whose}: tcp probes need a port, and only the collector has one"
            )));
        }
        agent_targets.push(Target {
            name: t.name.clone(),
            host: h,
            probes: t.probes.clone(),
        });
    }
    let mut private_prefixes = Vec::new();
    for p in &raw.agent.private_prefixes {
        let net: Ipv4Net = p.parse().map_err(|e| invalid(format!("agent.private_prefixes: {e}")))?;
        private_prefixes.push(net.trunc());
    }
    let flap_segment = names.segment(&raw.flap.segment, "flap")?;
    let flap_host = names.host(&raw.flap.host, "flap")?;
    if hosts[flap_host].nic_on(flap_segment).is_none() {
        return Err(invalid(format!(
            "flap: host {:?} is not on segment {:?}",
            raw.flap.host, raw.flap.segment
        )));
    }
    if raw.flap.down_secs == 0 || raw.flap.down_secs >= raw.flap.period_secs {
        return Err(invalid("flap: need 0 < down_secs < period_secs"));
    }
    for (i, s) in segments.iter().enumerate() {
        if !hosts.iter().any(|h| h.nic_on(i).is_some()) {
            return Err(invalid(format!("segment {:?} has no host", s.name)));
        }
    }

    Ok(Description {
        default_prefix: raw.lab.default_prefix,
        root_host: names.host(&raw.lab.root_host, "lab.root_host")?,
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

fn segments(raw: &RawFile) -> Result<Vec<Segment>, DescriptionError> {
    raw.segment
        .iter()
        .enumerate()
        .map(|(i, s)| {
            Ok(Segment {
                name: s.name.clone(),
                internet: s.internet,
                bridge_mac: Mac::lab(0x02, u8_index("segments", i)?, 0),
            })
        })
        .collect()
}

/// Canary addresses grouped by the host carrying them.
type CanaryIps = BTreeMap<usize, Vec<Ipv4Addr>>;

/// The canaries, and their addresses grouped by the host carrying them.
fn canaries(raw: &RawFile, names: &Names) -> Result<(Vec<Canary>, CanaryIps), DescriptionError> {
    let mut canaries = Vec::new();
    let mut canary_ips: BTreeMap<usize, Vec<Ipv4Addr>> = BTreeMap::new();
    for c in &raw.canary {
        let h = names.host(&c.host, &format!("canary {:?}", c.name))?;
        canary_ips.entry(h).or_default().push(c.ip);
        canaries.push(Canary {
            name: c.name.clone(),
            host: h,
            ip: c.ip,
            protocols: c.protocols.clone(),
            leak: c.leak,
        });
    }

    Ok((canaries, canary_ips))
}

/// One host of the file, every reference resolved.
fn host(
    i: usize,
    h: &RawHost,
    names: &Names,
    bureau_ids: &HashSet<u8>,
    canary_ips: Vec<Ipv4Addr>,
) -> Result<Host, DescriptionError> {
    let hi = u8_index("hosts", i)?;
    let whose = format!("host {:?}", h.name);
    if h.nics.is_empty() {
        return Err(invalid(format!("{whose}: needs at least one NIC")));
    }
    if let Some(b) = h.bureau.filter(|b| !bureau_ids.contains(b)) {
        return Err(invalid(format!("{whose}: no bureau {b}")));
    }
    let nics = nics(h, hi, &whose, names)?;
    let on_link = |ip: Ipv4Addr| nics.iter().any(|n| n.ip.contains(&ip) && n.ip.addr() != ip);
    if let Some(gw) = h.gateway.filter(|gw| !on_link(*gw)) {
        return Err(invalid(format!(
            "{whose}: gateway {gw} is on none of its NICs' subnets"
        )));
    }
    let mut routes = Vec::new();
    for r in &h.routes {
        let route = parse_route(r).map_err(|e| invalid(format!("{whose}: routes: {e}")))?;
        if !on_link(route.via) {
            return Err(invalid(format!(
                "{whose}: route {r:?}: {} is on none of its NICs' subnets",
                route.via
            )));
        }
        routes.push(route);
    }
    let virtuals = virtuals(h, hi, &whose)?;
    let mut http_ports = Vec::new();
    for s in &h.serve {
        let port = s
            .strip_prefix("http:")
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| invalid(format!("{whose}: serve {s:?}: expected http:PORT")))?;
        http_ports.push(port);
    }
    let registry = h.registry.as_ref().map(|r| Registration {
        name: r.name.clone(),
        user: r.user.clone(),
        location: r.location.clone(),
        machine_room: r.room,
    });
    if registry.is_some() && h.bureau.is_none() {
        return Err(invalid(format!("{whose}: a registry entry needs a bureau")));
    }
    Ok(Host {
        name: h.name.clone(),
        bureau: h.bureau,
        role: h.role.clone(),
        nics,
        gateway: h.gateway,
        routes,
        forwarding: h.forwarding,
        virtuals,
        canary_ips,
        http_ports,
        registry,
    })
}

/// A host's NICs, each on a segment of the file, with its MACs.
fn nics(h: &RawHost, hi: u8, whose: &str, names: &Names) -> Result<Vec<Nic>, DescriptionError> {
    let mut nics = Vec::new();
    for (j, n) in h.nics.iter().enumerate() {
        let nj = u8::try_from(j).map_err(|_| invalid(format!("{whose}: too many NICs")))?;
        let segment = names.segment(&n.seg, whose)?;
        if nics.iter().any(|x: &Nic| x.segment == segment) {
            return Err(invalid(format!("{whose}: two NICs on segment {:?}", n.seg)));
        }
        let ip: Ipv4Net =
            n.ip.parse()
                .map_err(|e| invalid(format!("{whose}: nics[{j}].ip: {e}")))?;
        let dev = n.dev.clone().unwrap_or_else(|| format!("eth{j}"));
        check_dev(&h.name, &dev)?;
        if nics.iter().any(|x: &Nic| x.dev == dev) {
            return Err(invalid(format!("{whose}: two NICs named {dev:?}")));
        }
        nics.push(Nic {
            dev,
            segment,
            ip,
            mac: Mac::lab(0, hi, nj),
            port_mac: Mac::lab(1, hi, nj),
        });
    }
    Ok(nics)
}

/// A host's virtual interfaces (bridges and tuns), numbered for their MACs.
fn virtuals(h: &RawHost, hi: u8, whose: &str) -> Result<Vec<Virtual>, DescriptionError> {
    let mut virtuals = Vec::new();
    let mut bridges = 0u8;
    for v in &h.virtuals {
        check_dev(&h.name, &v.dev)?;
        let ip: Ipv4Net =
            v.ip.parse()
                .map_err(|e| invalid(format!("{whose}: virtual {:?}: {e}", v.dev)))?;
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
    Ok(virtuals)
}

/// Every address on one host only, none in the root pool. Returns address → host.
fn check_addresses(hosts: &[Host], root_pool: Ipv4Net) -> Result<HashMap<Ipv4Addr, String>, DescriptionError> {
    let mut seen: HashMap<Ipv4Addr, String> = HashMap::new();
    for h in hosts {
        let all = h
            .nics
            .iter()
            .map(|n| n.ip.addr())
            .chain(h.virtuals.iter().map(|v| v.ip.addr()));
        for ip in all.chain(h.canary_ips.iter().copied()) {
            if let Some(other) = seen.insert(ip, h.name.clone()) {
                return Err(invalid(format!("address {ip} is on both {other:?} and {:?}", h.name)));
            }
            if root_pool.contains(&ip) {
                return Err(invalid(format!("host {:?}: {ip} lies in lab.root_pool", h.name)));
            }
        }
    }

    Ok(seen)
}

/// The bureaus: LAN, gateway and agent host of each, its apps and its stale devices.
fn bureaus(
    raw: &RawFile,
    names: &Names,
    hosts: &[Host],
    seen: &HashMap<Ipv4Addr, String>,
) -> Result<Vec<Bureau>, DescriptionError> {
    let mut bureaus = Vec::new();
    let mut macs: HashSet<Mac> = hosts.iter().flat_map(|h| h.nics.iter().map(|n| n.mac)).collect();
    for b in &raw.bureau {
        let whose = format!("bureau {}", b.id);
        if bureaus.iter().any(|x: &Bureau| x.id == b.id) {
            return Err(invalid(format!("{whose} is declared twice")));
        }
        let lan = names.segment(&b.lan, &whose)?;
        let gateway = names.host(&b.gateway, &whose)?;
        let agent = names.host(&b.agent, &whose)?;
        for (role, h) in [("gateway", gateway), ("agent", agent)] {
            if hosts[h].bureau != Some(b.id) || hosts[h].nic_on(lan).is_none() {
                return Err(invalid(format!(
                    "{whose}: {role} {:?} must be of the bureau and on its LAN",
                    hosts[h].name
                )));
            }
        }
        let mut stale = Vec::new();
        for s in &b.stale {
            let mac: Mac = s
                .mac
                .parse()
                .map_err(|e| invalid(format!("{whose}: stale {:?}: {e}", s.name)))?;
            if !macs.insert(mac) || seen.contains_key(&s.ip) {
                return Err(invalid(format!(
                    "{whose}: stale {:?} reuses a live address or MAC",
                    s.name
                )));
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

    Ok(bureaus)
}

/// `"10.0.0.0/8 via 10.3.0.1"`.
pub fn parse_route(s: &str) -> Result<Route, DescriptionError> {
    let words: Vec<&str> = s.split_whitespace().collect();
    match words.as_slice() {
        [dst, "via", via] => {
            let dst: Ipv4Net = dst.parse().map_err(|e| invalid(format!("{dst:?}: {e}")))?;
            let via: Ipv4Addr = via
                .parse()
                .map_err(|_| invalid(format!("{via:?} is not an IPv4 address")))?;
            Ok(Route { dst: dst.trunc(), via })
        }
        _ => Err(invalid(format!("{s:?} is not \"PREFIX via ADDRESS\""))),
    }
}

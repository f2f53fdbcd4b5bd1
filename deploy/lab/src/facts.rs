//! The facts the lab is built to show, derived from the description alone: which
//! hosts reach the internet canaries and through whom (a small model of IPv4
//! forwarding over the lab's segments), which are dual-homed or rogue routers, what
//! each bureau's inventory should find, what its registry lacks. The tests check these
//! against real packets; nothing here touches the network.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::Serialize;

use crate::model::{Bureau, Canary, Description};

/// How far a packet may be forwarded before the model gives up (a routing loop).
const MAX_HOPS: usize = 16;

/// The way a packet went: the hosts it passed, first the sender, last the owner of
/// the destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub hosts: Vec<usize>,
    /// The source address the sender used (its egress NIC's).
    pub source: Ipv4Addr,
}

/// Why a packet gets nowhere, in the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("{host} has no route to {dst}")]
    NoRoute { host: String, dst: Ipv4Addr },
    #[error("{host} does not forward")]
    NotForwarding { host: String },
    #[error("{host} routes {dst} into {dev}, which leads nowhere")]
    IntoNowhere { host: String, dst: Ipv4Addr, dev: String },
    #[error("nobody has {target} on segment {segment}")]
    NobodyThere { target: Ipv4Addr, segment: String },
    #[error("more than {MAX_HOPS} hops to {dst}: a routing loop")]
    Loop { dst: Ipv4Addr },
    #[error("no way back: {0}")]
    NoWayBack(Box<RouteError>),
    #[error("the answer to {to} goes elsewhere")]
    AnswerElsewhere { to: Ipv4Addr },
}

enum NextHop {
    /// Deliver on a segment to whoever has `target` there.
    Segment {
        segment: usize,
        target: Ipv4Addr,
        source: Ipv4Addr,
    },
    /// A route into an interface with nothing behind it (docker0, tun).
    Nowhere(String),
}

fn lookup(desc: &Description, host: usize, dst: Ipv4Addr) -> Result<NextHop, RouteError> {
    let h = &desc.hosts[host];
    // (prefix length, preference, hop); the longest prefix wins, then the first.
    let mut best: Option<(u8, NextHop)> = None;
    let mut consider = |len: u8, hop: NextHop| {
        if best.as_ref().is_none_or(|(l, _)| len > *l) {
            best = Some((len, hop));
        }
    };
    for n in &h.nics {
        if n.ip.contains(&dst) {
            consider(
                n.ip.prefix_len(),
                NextHop::Segment {
                    segment: n.segment,
                    target: dst,
                    source: n.ip.addr(),
                },
            );
        }
    }
    for v in &h.virtuals {
        if v.ip.contains(&dst) {
            consider(v.ip.prefix_len(), NextHop::Nowhere(v.dev.clone()));
        }
    }
    let via = |gw: Ipv4Addr| {
        h.nics.iter().find(|n| n.ip.contains(&gw)).map(|n| NextHop::Segment {
            segment: n.segment,
            target: gw,
            source: n.ip.addr(),
        })
    };
    for r in h.routes.iter().filter(|r| r.dst.contains(&dst)) {
        if let Some(hop) = via(r.via) {
            consider(r.dst.prefix_len(), hop);
        }
    }
    if let Some(hop) = h.gateway.and_then(via) {
        consider(0, hop);
    }
    best.map(|(_, hop)| hop).ok_or_else(|| RouteError::NoRoute {
        host: h.name.clone(),
        dst,
    })
}

/// Follows a packet from `from` to `dst` through forwarding hosts.
pub fn forward(desc: &Description, from: usize, dst: Ipv4Addr) -> Result<Path, RouteError> {
    let mut hosts = vec![from];
    let mut source = None;
    let mut at = from;
    for _ in 0..MAX_HOPS {
        if desc.hosts[at].owns(dst) {
            let source = source.unwrap_or(dst);
            return Ok(Path { hosts, source });
        }
        if at != from && !desc.hosts[at].forwarding {
            return Err(RouteError::NotForwarding {
                host: desc.hosts[at].name.clone(),
            });
        }
        match lookup(desc, at, dst)? {
            NextHop::Nowhere(dev) => {
                return Err(RouteError::IntoNowhere {
                    host: desc.hosts[at].name.clone(),
                    dst,
                    dev,
                });
            }
            NextHop::Segment {
                segment,
                target,
                source: src,
            } => {
                source.get_or_insert(src);
                let next = desc
                    .attached(segment)
                    .find(|(_, nic)| nic.ip.addr() == target)
                    .map(|(i, _)| i)
                    .ok_or_else(|| RouteError::NobodyThere {
                        target,
                        segment: desc.segments[segment].name.clone(),
                    })?;
                hosts.push(next);
                at = next;
            }
        }
    }
    Err(RouteError::Loop { dst })
}

/// A request from `from` to `dst` and its answer back: the request's path, if both
/// ways work.
pub fn round_trip(desc: &Description, from: usize, dst: Ipv4Addr) -> Result<Path, RouteError> {
    let there = forward(desc, from, dst)?;
    let owner = *there.hosts.last().unwrap_or(&from);
    let back = forward(desc, owner, there.source).map_err(|e| RouteError::NoWayBack(Box::new(e)))?;
    if back.hosts.last() != Some(&from) {
        return Err(RouteError::AnswerElsewhere { to: there.source });
    }
    Ok(there)
}

// ------------------------------------------------------------------ expected facts

/// Everything the tests (and later the agent's tests) expect, per host and bureau.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub hosts: BTreeMap<String, HostFacts>,
    pub bureaus: Vec<BureauFacts>,
    /// Non-leak canaries: name → address.
    pub canaries: BTreeMap<String, Ipv4Addr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct HostFacts {
    pub bureau: Option<u8>,
    pub role: String,
    pub addresses: Vec<String>,
    /// The canaries (by name) the host reaches, both ways.
    pub reaches_canaries: Vec<String>,
    /// The hosts a packet to the first reachable canary passes, sender first.
    pub internet_path: Option<Vec<String>>,
    /// Why the first canary is not reached, when it is not.
    pub internet_blocked_by: Option<String>,
    /// Agent targets (by name) the host reaches.
    pub reaches_targets: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BureauFacts {
    pub id: u8,
    pub unit_id: String,
    pub lan: String,
    pub lan_prefix: String,
    pub agent: String,
    pub gateway: String,
    /// Every live device on the bureau LAN, as an inventory should see it.
    pub live_devices: Vec<Device>,
    /// Live devices with no registry row.
    pub unregistered: Vec<Device>,
    /// Registry rows of devices that never exist.
    pub stale: Vec<Device>,
    /// Hosts with a NIC on the bureau LAN and one on the internet, forwarding off.
    pub dual_homed: Vec<String>,
    /// Hosts with a NIC on the bureau LAN and one on the internet, forwarding on.
    pub rogue_routers: Vec<String>,
    /// Bureau hosts that reach an internet canary (an isolation breach when non-empty).
    pub hosts_reaching_internet: Vec<String>,
    /// Bureau hosts with docker0-style bridges or tun interfaces and no internet path:
    /// nothing to flag there.
    pub false_positive_controls: Vec<String>,
    /// Uplinks that flap, as "HOST on SEGMENT".
    pub flapping_uplinks: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Device {
    pub name: String,
    pub ip: Ipv4Addr,
    pub mac: String,
}

impl Facts {
    pub fn derive(desc: &Description) -> Facts {
        let canaries: Vec<&Canary> = desc.canaries.iter().filter(|c| !c.leak).collect();
        let hosts: BTreeMap<String, HostFacts> = desc
            .hosts
            .iter()
            .enumerate()
            .map(|(i, h)| (h.name.clone(), host_facts(desc, &canaries, i)))
            .collect();
        let bureaus = desc.bureaus.iter().map(|b| bureau_facts(desc, &hosts, b)).collect();
        Facts {
            hosts,
            bureaus,
            canaries: canaries.iter().map(|c| (c.name.clone(), c.ip)).collect(),
        }
    }

    pub fn bureau(&self, id: u8) -> Option<&BureauFacts> {
        self.bureaus.iter().find(|b| b.id == id)
    }
}

/// What one host reaches: the canaries (and through whom), the agent's targets.
fn host_facts(desc: &Description, canaries: &[&Canary], i: usize) -> HostFacts {
    let h = &desc.hosts[i];
    let mut reaches = Vec::new();
    let mut path = None;
    let mut blocked = None;
    for c in canaries {
        match round_trip(desc, i, c.ip) {
            Ok(p) => {
                reaches.push(c.name.clone());
                path.get_or_insert_with(|| p.hosts.iter().map(|&x| desc.hosts[x].name.clone()).collect());
            }
            Err(e) => {
                blocked.get_or_insert(e.to_string());
            }
        }
    }
    let reaches_targets = desc
        .agent_targets
        .iter()
        .filter(|t| round_trip(desc, i, desc.hosts[t.host].address()).is_ok())
        .map(|t| t.name.clone())
        .collect();
    let addresses = h
        .nics
        .iter()
        .map(|n| n.ip.to_string())
        .chain(h.virtuals.iter().map(|v| v.ip.to_string()))
        .chain(h.canary_ips.iter().map(|ip| format!("{ip}/32")))
        .collect();
    HostFacts {
        bureau: h.bureau,
        role: h.role.clone(),
        addresses,
        reaches_canaries: reaches,
        internet_path: path,
        internet_blocked_by: blocked,
        reaches_targets,
    }
}

/// What one bureau's inventory, registry and isolation checks should find.
fn bureau_facts(desc: &Description, hosts: &BTreeMap<String, HostFacts>, b: &Bureau) -> BureauFacts {
    let internet_segments: Vec<usize> = desc
        .segments
        .iter()
        .enumerate()
        .filter(|(_, s)| s.internet)
        .map(|(i, _)| i)
        .collect();
    let members: Vec<usize> = desc
        .hosts
        .iter()
        .enumerate()
        .filter(|(_, h)| h.bureau == Some(b.id))
        .map(|(i, _)| i)
        .collect();
    let on_internet = |i: usize| {
        desc.hosts[i]
            .nics
            .iter()
            .any(|n| internet_segments.contains(&n.segment))
    };
    let on_lan = |i: usize| desc.hosts[i].nic_on(b.lan).is_some();
    let names = |pred: &dyn Fn(usize) -> bool| -> Vec<String> {
        members
            .iter()
            .copied()
            .filter(|&i| pred(i))
            .map(|i| desc.hosts[i].name.clone())
            .collect()
    };
    let live_devices: Vec<(Device, bool)> = desc
        .attached(b.lan)
        .map(|(i, nic)| {
            let h = &desc.hosts[i];
            (
                Device {
                    name: h.name.clone(),
                    ip: nic.ip.addr(),
                    mac: nic.mac.to_string(),
                },
                h.registry.is_some(),
            )
        })
        .collect();
    let reaching = |i: usize| !hosts[&desc.hosts[i].name].reaches_canaries.is_empty();
    let lan_prefix = desc
        .attached(b.lan)
        .map(|(_, nic)| nic.ip.trunc().to_string())
        .next()
        .unwrap_or_default();
    BureauFacts {
        id: b.id,
        unit_id: b.unit_id.clone(),
        lan: desc.segments[b.lan].name.clone(),
        lan_prefix,
        agent: desc.hosts[b.agent].name.clone(),
        gateway: desc.hosts[b.gateway].name.clone(),
        unregistered: live_devices
            .iter()
            .filter(|(_, r)| !r)
            .map(|(d, _)| d.clone())
            .collect(),
        live_devices: live_devices.into_iter().map(|(d, _)| d).collect(),
        stale: b
            .stale
            .iter()
            .map(|s| Device {
                name: s.name.clone(),
                ip: s.ip,
                mac: s.mac.to_string(),
            })
            .collect(),
        dual_homed: names(&|i| on_lan(i) && on_internet(i) && !desc.hosts[i].forwarding),
        rogue_routers: names(&|i| on_lan(i) && on_internet(i) && desc.hosts[i].forwarding),
        hosts_reaching_internet: names(&reaching),
        false_positive_controls: names(&|i| !desc.hosts[i].virtuals.is_empty() && !reaching(i)),
        flapping_uplinks: members
            .iter()
            .filter(|&&i| i == desc.flap.host)
            .map(|&i| format!("{} on {}", desc.hosts[i].name, desc.segments[desc.flap.segment].name))
            .collect(),
    }
}

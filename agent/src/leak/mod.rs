//! Agentless leak detection, the orchestration: which probes a round sends to which LAN
//! hosts ([`plan`]), sending them and reading what comes back ([`run`]), a round after an
//! inventory sweep ([`detect`]). The probes' signatures are in [`signer`]; their frames and
//! the parser of answers are in [`crate::wire`].
//!
//! - **Spoofed-source probes**: a frame to a LAN host's MAC whose IPv4 source is the
//!   internet-side *leak listener*. A host that answers by a path that bypasses the private
//!   network (a second NIC, a 4G dongle, a home router) delivers its answer to the
//!   listener, which verifies the signature and reports the host. Three kinds: ICMP echo
//!   (the reply echoes the signed payload), UDP to a closed port (the port-unreachable
//!   error quotes the signed datagram) and TCP SYN (the SYN-ACK or RST acknowledges the
//!   signed sequence number).
//! - **Forwarding probes**: a frame to a LAN host's MAC addressed to an internet canary,
//!   also with TTL 1: a host that forwards it answers the agent with ICMP time exceeded or
//!   a redirect quoting the signed probe, or the canary's reply comes back.

mod run;
pub mod signer;

use std::net::Ipv4Addr;

use kaohe_rubric::evidence::{HowSeen, LeakFinding, LeakMethod};

pub use run::run;
pub use signer::{Addressing, Kind, MAX_UNIT, Signer, Stamp, probe_frame};

use crate::platform::RawError;
use crate::wire::Mac;

/// Why a round of leak probes could not be sent or heard.
#[derive(Debug, thiserror::Error)]
pub enum LeakError {
    #[error(transparent)]
    Raw(#[from] RawError),
    #[error(transparent)]
    LocalSide(#[from] crate::inventory::InventoryError),
    #[error("单位标识超过 {MAX_UNIT} 字节, 无法签名 (unit id too long to sign)")]
    UnitTooLong,
}

/// One probe frame the run sends (what `--dry-run` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub host: Ipv4Addr,
    pub host_mac: Mac,
    pub method: LeakMethod,
    pub kind: Kind,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
}

impl Planned {
    /// One line in Chinese first, for `--dry-run`.
    pub fn describe(&self) -> String {
        let what = match self.method {
            LeakMethod::SpoofedSource => "伪造源地址探测 (spoofed source)",
            LeakMethod::Forwarding => "转发探测 (forwarding)",
        };
        let port = match self.kind {
            Kind::Icmp => String::new(),
            Kind::Udp(p) | Kind::Tcp(p) => format!(":{p}"),
        };
        format!(
            "{what}: {} 帧发往 {} [{}], IP {} → {}{port}, TTL {}",
            self.kind.name(),
            self.host,
            self.host_mac,
            self.src_ip,
            self.dst_ip,
            self.ttl
        )
    }
}

/// The routers that carry the private network for this host: for each private prefix,
/// the gateway of the most specific route that covers it. They forward by design and get
/// no forwarding probes; any other LAN host that forwards is a finding (a rogue router
/// handing out a default route, say).
pub fn private_routers(routes: &[crate::platform::RouteEntry], private: &[ipnet::IpNet]) -> Vec<Ipv4Addr> {
    let mut out = Vec::new();
    for p in private {
        let best = routes
            .iter()
            .filter(|r| r.gateway.is_some() && r.destination.contains(&p.network()))
            .max_by_key(|r| (r.destination.prefix_len(), std::cmp::Reverse(r.metric)));
        if let Some(std::net::IpAddr::V4(g)) = best.and_then(|r| r.gateway)
            && !out.contains(&g)
        {
            out.push(g);
        }
    }
    out
}

/// The frames a run sends: for each live host inside the inventory prefixes (never the
/// agent's own address), the spoofed-source probes (when a listener is configured) and,
/// for each forwarding destination, an ICMP echo with TTL 1 and one with TTL 64 — except
/// to `routers`, the gateways of the agent's own routes, which forward by design.
pub fn plan(
    leak: &crate::config::Leak,
    our_ip: Ipv4Addr,
    hosts: &[(Ipv4Addr, Mac)],
    routers: &[Ipv4Addr],
) -> Vec<Planned> {
    let mut out = Vec::new();
    for &(host, host_mac) in hosts.iter().filter(|(ip, _)| *ip != our_ip) {
        if let Some(listener) = leak.listener {
            for kind in [Kind::Icmp, Kind::Udp(leak.udp_port), Kind::Tcp(leak.tcp_port)] {
                out.push(Planned {
                    host,
                    host_mac,
                    method: LeakMethod::SpoofedSource,
                    kind,
                    src_ip: listener,
                    dst_ip: host,
                    ttl: 64,
                });
            }
        }
        for &canary in leak.forward_to.iter().filter(|_| !routers.contains(&host)) {
            // TTL 1 expires at the host (it forwards), TTL 2 at its next hop (where to),
            // TTL 64 reaches the canary if the way leads out.
            for ttl in [1, 2, 64] {
                out.push(Planned {
                    host,
                    host_mac,
                    method: LeakMethod::Forwarding,
                    kind: Kind::Icmp,
                    src_ip: our_ip,
                    dst_ip: canary,
                    ttl,
                });
            }
        }
    }
    out
}

/// What one leak-detection round did.
#[derive(Debug, Default)]
pub struct Round {
    pub findings: Vec<LeakFinding>,
    /// Probe frames sent (or, dry, that would be).
    pub planned: Vec<Planned>,
    pub errors: Vec<LeakError>,
}

/// Probes the live hosts an inventory sweep `found`, prefix by prefix (only hosts inside
/// the configured inventory prefixes). With `dry` nothing is sent: `planned` says what
/// would be. Blocking: run it on a blocking thread.
pub fn detect(config: &crate::config::Config, found: &crate::inventory::Found, dry: bool) -> Round {
    let mut round = Round::default();
    let Some(leak) = &config.leak else {
        return round;
    };
    let unit = config.unit_id.clone().unwrap_or_default();
    let routers = private_routers(&crate::platform::routes(), &config.private_prefixes);
    for prefix in &config.inventory_prefixes {
        let side = match crate::inventory::local_side(prefix, config.inventory_interface.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                round.errors.push(e.into());
                continue;
            }
        };
        // Only hosts that answered this sweep: not neighbour-table hearsay.
        let hosts: Vec<(Ipv4Addr, Mac)> = found
            .devices
            .iter()
            .filter(|(ip, (_, how))| prefix.contains(*ip) && how.contains(&HowSeen::ArpSweep))
            .map(|(ip, (mac, _))| (*ip, *mac))
            .collect();
        let planned = plan(leak, side.ip, &hosts, &routers);
        if !dry {
            let lan = run::Lan {
                prefix,
                private: &config.private_prefixes,
            };
            match run(leak, &unit, &side, &lan, &planned) {
                Ok(f) => round.findings.extend(f),
                Err(e) => round.errors.push(e),
            }
        }
        round.planned.extend(planned);
    }
    round
}

//! Sending a round of leak probes and reading the answers that come back to the agent.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::{LeakFinding, LeakMethod};

use super::{Addressing, Kind, LeakError, MAX_UNIT, Planned, Signer, Stamp, probe_frame};
use crate::inventory::LocalSide;
use crate::platform;
use crate::wire::Mac;
use crate::wire::ipv4::PROTO_ICMP;
use crate::wire::reply::Reply;

/// The LAN a round probes and the private network around it: an address outside both is
/// the internet.
#[derive(Debug, Clone, Copy)]
pub struct Lan<'a> {
    pub prefix: &'a ipnet::Ipv4Net,
    pub private: &'a [ipnet::IpNet],
}

impl Lan<'_> {
    fn outside(&self, a: &Ipv4Addr) -> bool {
        let ip = IpAddr::V4(*a);
        !self.prefix.contains(a)
            && if self.private.is_empty() {
                !a.is_private()
            } else {
                !self.private.iter().any(|p| p.contains(&ip))
            }
    }
}

/// Sends the planned frames at most `leak.max_pps` a second from `side` and collects, for
/// `leak.wait` after the last, the answers that prove a host forwards: an ICMP time
/// exceeded, redirect or unreachable quoting one of our forwarding probes, or a canary's
/// echo reply carrying our signed payload. (Answers to spoofed-source probes go to the
/// listener.) Blocking: run it on a blocking thread. Needs CAP_NET_RAW.
pub fn run(
    leak: &crate::config::Leak,
    unit: &str,
    side: &LocalSide,
    lan: &Lan<'_>,
    planned: &[Planned],
) -> Result<Vec<LeakFinding>, LeakError> {
    let interval = Duration::from_secs_f64(1.0 / f64::from(leak.max_pps.max(1)));
    // Waiting for a frame must not hold up the next probe: at most one interval.
    let read_timeout = interval.clamp(Duration::from_micros(200), Duration::from_millis(5));
    let (mut tx, mut rx) = platform::raw_channel(&side.iface, read_timeout, "发送探测帧")?;
    if unit.len() > MAX_UNIT {
        return Err(LeakError::UnitTooLong);
    }
    let mut heard = Heard {
        signer: Signer::new(&leak.key),
        unit,
        our_ip: side.ip,
        macs: planned.iter().map(|p| (p.host, p.host_mac)).collect(),
        sent: HashSet::with_capacity(planned.len()),
        forwards: BTreeSet::new(),
        findings: BTreeMap::new(),
    };
    let mut next = 0;
    let mut next_send = Instant::now();
    let mut last_send = Instant::now();
    loop {
        while next < planned.len() && Instant::now() >= next_send {
            let p = &planned[next];
            let stamp = Stamp {
                unit: unit.to_string(),
                target: p.host,
                kind: p.kind,
                nonce: rand::random(),
                at: chrono::Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32,
            };
            if p.method == LeakMethod::Forwarding {
                heard.sent.insert(stamp.nonce);
            }
            let a = Addressing {
                src_mac: side.mac,
                dst_mac: p.host_mac,
                src_ip: p.src_ip,
                dst_ip: p.dst_ip,
                ttl: p.ttl,
            };
            if let Some(Err(e)) = tx.send_to(&probe_frame(&heard.signer, &a, &stamp), None) {
                tracing::debug!(error = %e, "leak probe not sent");
            }
            next += 1;
            // Spaced by the interval from the last frame: no burst to catch up after a stall.
            next_send = Instant::now() + interval;
            last_send = Instant::now();
        }
        if next >= planned.len() && last_send.elapsed() >= leak.wait {
            break;
        }
        let Some(frame) = platform::next_frame(&mut *rx, &side.iface.name)? else {
            continue;
        };
        if let Some(reply) = Reply::parse(frame) {
            heard.judge(&reply, leak, lan);
        }
    }
    Ok(heard.into_findings())
}

/// What a run has heard so far.
struct Heard<'a> {
    signer: Signer,
    unit: &'a str,
    our_ip: Ipv4Addr,
    macs: BTreeMap<Ipv4Addr, Mac>,
    /// Only answers to the probes of this run count: a replayed answer carries another nonce.
    sent: HashSet<u32>,
    /// Hosts whose TTL-1 probe expired at themselves: they forward.
    forwards: BTreeSet<Ipv4Addr>,
    findings: BTreeMap<(Ipv4Addr, String), LeakFinding>,
}

impl Heard<'_> {
    /// Takes in one answer to the agent.
    fn judge(&mut self, reply: &Reply, leak: &crate::config::Leak, lan: &Lan<'_>) {
        // Proof that a probe left the private network through the host: the canary's
        // reply, or the probe expiring at a router outside the private network and the LAN.
        // The host's own time-exceeded (TTL 1) only shows that it forwards — any Docker
        // desktop does — and redirects or unreachables are no proof of a way out.
        let (to, how, proof) = match reply {
            Reply::IcmpError {
                to,
                icmp_type: 11,
                from,
                quoted,
            } if quoted.proto == PROTO_ICMP => (
                *to,
                format!(
                    "TTL 耗尽于 {from} (time exceeded at {from}) for a probe to {}",
                    quoted.dst
                ),
                lan.outside(from),
            ),
            Reply::EchoReply { from, to, .. } if leak.forward_to.contains(from) => (
                *to,
                format!("互联网探测点 {from} 经该主机应答 (the canary answered through the host)"),
                true,
            ),
            _ => return,
        };
        if to != self.our_ip {
            return;
        }
        let Some(stamp) = self.signer.answered(reply, &[], 0, 0) else {
            return;
        };
        if stamp.unit != self.unit
            || stamp.kind != Kind::Icmp
            || !self.macs.contains_key(&stamp.target)
            || !self.sent.contains(&stamp.nonce)
        {
            return;
        }
        if !proof {
            if how.contains(&format!("at {}", stamp.target)) {
                self.forwards.insert(stamp.target);
            }
            return;
        }
        let mac = self.macs.get(&stamp.target).map(Mac::to_string);
        self.findings
            .entry((stamp.target, how.clone()))
            .or_insert_with(|| LeakFinding {
                at: chrono::Utc::now(),
                ip: stamp.target.to_string(),
                mac,
                method: LeakMethod::Forwarding,
                protocol: "icmp".into(),
                detail: format!("转发探测 (forwarding probe): {how}"),
            });
    }

    fn into_findings(self) -> Vec<LeakFinding> {
        let mut out: Vec<_> = self.findings.into_values().collect();
        for f in &mut out {
            if f.ip.parse().is_ok_and(|ip: Ipv4Addr| self.forwards.contains(&ip)) {
                f.detail
                    .push_str("; 该主机转发数据包 (TTL 1 在该主机耗尽; the host forwards packets)");
            }
        }
        out
    }
}

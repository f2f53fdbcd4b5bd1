//! The leak listener's capture (`kaohe-agent listen`): on the internet side, it receives
//! the answers LAN hosts send to the agents' spoofed-source probes. An answer can only
//! arrive here by a path from the host to the internet that bypasses the private network
//! (which has none), so each verified answer is a finding for the probing agent's unit.
//! Only answers whose signature verifies under the department's key count: noise and
//! forgeries are dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::Utc;
use kaohe_rubric::evidence::{LeakFinding, LeakMethod};

use crate::config::Listener;
use crate::leak::{Kind, Signer};
use crate::platform::{self, RawError};
use crate::wire::reply::Reply;

/// How old a probe's answer may be (by the probe's signed time) to count.
pub const MAX_AGE_SECS: u32 = 300;

/// Why the listener cannot capture.
#[derive(Debug, thiserror::Error)]
pub enum ListenerError {
    #[error("没有可监听的网络接口 (no interface to capture on)")]
    NoInterface,
    #[error("接口 {0} 不存在 (no such interface)")]
    NoSuchInterface(String),
    #[error(transparent)]
    Raw(#[from] RawError),
}

/// A verified answer: the unit whose agent probed, and the finding.
#[derive(Debug, Clone, PartialEq)]
pub struct Heard {
    pub unit: String,
    pub finding: LeakFinding,
}

/// The interfaces to capture on: the named ones, or every interface that is up except
/// loopback.
pub fn interfaces(names: &[String]) -> Result<Vec<pnet_datalink::NetworkInterface>, ListenerError> {
    let all = pnet_datalink::interfaces();
    if names.is_empty() {
        let picked: Vec<_> = all.into_iter().filter(|i| i.is_up() && !i.is_loopback()).collect();
        if picked.is_empty() {
            return Err(ListenerError::NoInterface);
        }
        return Ok(picked);
    }
    names
        .iter()
        .map(|n| {
            all.iter()
                .find(|i| &i.name == n)
                .cloned()
                .ok_or_else(|| ListenerError::NoSuchInterface(n.clone()))
        })
        .collect()
}

/// What a verified answer says about the host, or None when it is not a verified answer
/// to one of our spoofed-source probes addressed to `address`, sent within
/// [`MAX_AGE_SECS`].
pub fn hear(reply: &Reply, signer: &Signer, l: &Listener, now_unix: u32) -> Option<Heard> {
    hear_with_nonce(reply, signer, l, now_unix).map(|(h, _)| h)
}

fn hear_with_nonce(reply: &Reply, signer: &Signer, l: &Listener, now_unix: u32) -> Option<(Heard, u32)> {
    let (to, from, how) = match reply {
        Reply::EchoReply { from, to, .. } => (*to, *from, "ICMP 回显应答 (echo reply)"),
        Reply::IcmpError {
            from,
            to,
            icmp_type: 3,
            quoted,
        } if quoted.dst != l.address => (*to, *from, "UDP 端口不可达 (port unreachable)"),
        Reply::TcpAnswer { from, to, rst, .. } => (*to, *from, if *rst { "TCP RST" } else { "TCP SYN-ACK" }),
        _ => return None,
    };
    if to != l.address {
        return None;
    }
    let stamp = signer.answered(reply, &l.units, now_unix, 3)?;
    // A probe answered long after it was sent is a replay (or a clock far off).
    if now_unix.abs_diff(stamp.at) > MAX_AGE_SECS {
        return None;
    }
    // The kind of answer must fit the kind of probe.
    let fits = matches!(
        (reply, stamp.kind),
        (Reply::EchoReply { .. }, Kind::Icmp)
            | (Reply::IcmpError { .. }, Kind::Udp(_))
            | (Reply::TcpAnswer { .. }, Kind::Tcp(_))
    );
    if !fits {
        return None;
    }
    let via = if from == stamp.target {
        String::new()
    } else {
        format!(", 经公网地址 {from} (via {from})")
    };
    let nonce = stamp.nonce;
    Some((
        Heard {
            unit: stamp.unit.clone(),
            finding: LeakFinding {
                at: Utc::now(),
                ip: stamp.target.to_string(),
                mac: None,
                method: LeakMethod::SpoofedSource,
                protocol: stamp.kind.name().into(),
                detail: format!("伪造源地址探测的应答到达互联网侧监听端 {}: {how}{via}", l.address),
            },
        },
        nonce,
    ))
}

/// Captures on one interface until `stop` is set, sending each verified answer.
/// Blocking: run it on a blocking thread. Needs CAP_NET_RAW.
pub fn capture(
    iface: &pnet_datalink::NetworkInterface,
    l: &Listener,
    tx: &tokio::sync::mpsc::UnboundedSender<Heard>,
    stop: &Arc<AtomicBool>,
) -> Result<(), ListenerError> {
    let signer = Signer::new(&l.key);
    let (_, mut rx) = platform::raw_channel(iface, Duration::from_millis(200), "监听")?;
    // Each probe's answer counts once: a captured answer sent again is dropped.
    let mut seen: std::collections::HashMap<(String, u32), u32> = std::collections::HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        let Some(frame) = platform::next_frame(&mut *rx, &iface.name)? else {
            continue;
        };
        let Some(reply) = Reply::parse(frame) else { continue };
        let now = Utc::now().timestamp().clamp(0, i64::from(u32::MAX)) as u32;
        let Some((h, nonce)) = hear_with_nonce(&reply, &signer, l, now) else {
            continue;
        };
        if seen.len() > 100_000 {
            seen.retain(|_, t| now.abs_diff(*t) <= MAX_AGE_SECS);
        }
        if seen
            .insert((format!("{}|{}", h.unit, h.finding.protocol), nonce), now)
            .is_some()
        {
            continue;
        }
        if tx.send(h).is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::leak::{Addressing, Stamp, probe_frame};
    use std::net::Ipv4Addr;

    fn listener(key: &[u8]) -> Listener {
        Listener {
            address: Ipv4Addr::new(203, 0, 113, 99),
            key: key.to_vec(),
            units: vec!["lab-b2".into()],
            interfaces: Vec::new(),
        }
    }

    /// The echo reply a dual-homed host sends to the listener for our spoofed probe.
    fn echo_reply(key: &[u8], to: Ipv4Addr) -> Reply {
        let stamp = Stamp {
            unit: "lab-b2".into(),
            target: Ipv4Addr::new(10, 2, 0, 23),
            kind: Kind::Icmp,
            nonce: 7,
            at: 1_800_000_000,
        };
        let a = Addressing {
            src_mac: crate::wire::Mac([2, 0, 0, 0, 0, 1]),
            dst_mac: crate::wire::Mac([2, 0, 0, 0, 0, 2]),
            src_ip: to,
            dst_ip: stamp.target,
            ttl: 64,
        };
        let f = probe_frame(&Signer::new(key), &a, &stamp);
        let payload = f[42..].to_vec();
        Reply::EchoReply {
            from: stamp.target,
            to,
            payload,
        }
    }

    #[test]
    fn a_verified_answer_is_a_finding_for_the_probing_unit() {
        let key = b"lab-department-leak-key";
        let l = listener(key);
        let h = hear(&echo_reply(key, l.address), &Signer::new(key), &l, 1_800_000_000).expect("heard");
        assert!(
            hear(&echo_reply(key, l.address), &Signer::new(key), &l, 1_800_000_000 + 3600).is_none(),
            "an answer an hour late is a replay"
        );
        assert_eq!((h.unit.as_str(), h.finding.ip.as_str()), ("lab-b2", "10.2.0.23"));
        assert_eq!(h.finding.method, LeakMethod::SpoofedSource);
        assert!(h.finding.detail.contains("203.0.113.99"), "{}", h.finding.detail);
    }

    #[test]
    fn a_forged_answer_or_one_to_another_address_is_dropped() {
        let l = listener(b"lab-department-leak-key");
        let signer = Signer::new(&l.key);
        // Signed with another key: someone without the department's key.
        assert!(
            hear(
                &echo_reply(b"someone-elses-key!!", l.address),
                &signer,
                &l,
                1_800_000_000
            )
            .is_none()
        );
        // Ours, but addressed elsewhere.
        let elsewhere = echo_reply(&l.key, Ipv4Addr::new(203, 0, 113, 10));
        assert!(hear(&elsewhere, &signer, &l, 1_800_000_000).is_none());
    }
}

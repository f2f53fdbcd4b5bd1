//! Isolation check (三.3): from the private LAN, try each internet canary — ICMP echo,
//! TCP 443, a DNS query on UDP 53 — with short timeouts. Reaching any canary is a breach,
//! reported with the canary, the protocol and the interface and next hop the kernel's
//! route sends it through.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use chrono::Utc;
use kaohe_rubric::evidence::{IsolationProtocol, IsolationResult};

use crate::config::{Canary, CanaryProtocol};
use crate::dual_homed::route_for;
use crate::platform::RouteEntry;
use crate::reachability::{ProbeError, Prober};

/// Name asked of a canary's DNS port. Any well-formed answer with our id proves the path.
const QUERY_NAME: &str = "kaohe-isolation-check.example";

/// A DNS query for `QUERY_NAME`, type A, with id `id`.
pub fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::with_capacity(64);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; 1 question
    for label in QUERY_NAME.split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

/// Whether `reply` is a DNS response to the query with id `id`: at least a header, the
/// same id, the QR bit set. Anything else (truncated, foreign, a query) is not a reply.
pub fn is_dns_reply(reply: &[u8], id: u16) -> bool {
    reply.len() >= 12 && reply[0..2] == id.to_be_bytes() && reply[2] & 0x80 != 0
}

async fn dns(ip: IpAddr, timeout: Duration) -> Result<(), ProbeError> {
    let io = |e| ProbeError::Io(std::sync::Arc::new(e));
    let bind = match ip {
        IpAddr::V4(_) => SocketAddr::from((std::net::Ipv4Addr::UNSPECIFIED, 0)),
        IpAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)),
    };
    let sock = tokio::net::UdpSocket::bind(bind).await.map_err(io)?;
    sock.connect((ip, 53)).await.map_err(io)?;
    let id: u16 = rand::random();
    sock.send(&dns_query(id)).await.map_err(io)?;
    let mut buf = [0u8; 512];
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, sock.recv(&mut buf)).await {
            Err(_) => return Err(ProbeError::Timeout),
            Ok(Err(e)) => return Err(io(e)),
            // Not ours (or garbage): keep waiting for the real answer until the deadline.
            Ok(Ok(n)) if !is_dns_reply(&buf[..n], id) => continue,
            Ok(Ok(_)) => return Ok(()),
        }
    }
}

/// One round over every canary and protocol; all results share the round's time.
pub async fn check(
    prober: &Prober,
    canaries: &[Canary],
    routes: &[RouteEntry],
    timeout: Duration,
) -> Vec<IsolationResult> {
    let at = Utc::now();
    let mut set = tokio::task::JoinSet::new();
    let mut order = 0usize;
    for c in canaries {
        for proto in &c.protocols {
            let (p, c, proto) = (prober.clone(), c.clone(), *proto);
            let i = order;
            order += 1;
            set.spawn(async move {
                let (protocol, target, result) = match proto {
                    CanaryProtocol::Icmp => (
                        IsolationProtocol::Icmp,
                        c.ip.to_string(),
                        p.ping(c.ip, i as u16).await.map(|_| ()),
                    ),
                    CanaryProtocol::Tcp443 => {
                        let sa = SocketAddr::new(c.ip, 443);
                        (IsolationProtocol::Tcp, sa.to_string(), p.connect(sa).await.map(|_| ()))
                    }
                    CanaryProtocol::Dns => (
                        IsolationProtocol::Dns,
                        SocketAddr::new(c.ip, 53).to_string(),
                        dns(c.ip, timeout).await,
                    ),
                };
                (i, c.ip, protocol, target, result)
            });
        }
    }
    let mut results = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((i, ip, protocol, canary, result)) = r {
            let route = route_for(routes, ip);
            results.push((
                i,
                IsolationResult {
                    at,
                    canary,
                    protocol,
                    reached: result.is_ok(),
                    via_interface: route.map(|r| r.interface.clone()),
                    next_hop: route.and_then(|r| r.gateway).map(|g| g.to_string()),
                    error: result.err().map(|e| e.to_string()),
                },
            ));
        }
    }
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_query_is_well_formed() {
        let q = dns_query(0xbeef);
        assert_eq!(&q[..2], &[0xbe, 0xef]);
        assert_eq!(q[5], 1, "one question");
        assert_eq!(&q[q.len() - 4..], &[0, 1, 0, 1]);
        assert!(!is_dns_reply(&q, 0xbeef), "a query is not a reply");
    }

    #[test]
    fn only_a_matching_response_counts() {
        let mut r = dns_query(7);
        r[2] |= 0x80;
        assert!(is_dns_reply(&r, 7));
        assert!(!is_dns_reply(&r, 8), "another id");
        assert!(!is_dns_reply(&r[..11], 7), "truncated");
        assert!(!is_dns_reply(&[], 7));
    }
}

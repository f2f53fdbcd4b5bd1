//! Reachability of the private network (三.2, 三.5): ICMP echo and TCP-connect probes of
//! the configured targets, and the outages they reveal.
//!
//! All ICMP probes share one socket per address family (surge-ping matches each reply to
//! the probe that caused it by identifier and sequence). A round is paced so that many
//! targets do not leave as one burst. A target is down after `down_after` consecutive
//! misses and up again on the first success; the outage starts at the first miss.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::{Outage, ProbeKind, ProbeRole, ProbeSample};
use surge_ping::{Client, ICMP, IcmpPacket, PingIdentifier, PingSequence};

use crate::config::{Probe, Role, Target};

/// Gap between the starts of two probes of one round.
const PACE: Duration = Duration::from_millis(5);

/// Why a probe got no answer, as its sample's `error` says.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProbeError {
    #[error("无法打开 ICMP 套接字, 需要 CAP_NET_RAW 或 ping_group_range (cannot open an ICMP socket: {0})")]
    NoIcmpSocket(#[source] Arc<std::io::Error>),
    #[error("ICMP 类型 {kind} 代码 {code} 来自 {from} (not an echo reply: unreachable or time exceeded)")]
    NotEchoReply { kind: u8, code: u8, from: IpAddr },
    #[error("ICMPv6 类型 {kind} 代码 {code} 来自 {from} (not an echo reply)")]
    NotEchoReplyV6 { kind: u8, code: u8, from: IpAddr },
    #[error("timeout")]
    Timeout,
    #[error("connection refused")]
    Refused,
    #[error("{0}")]
    Ping(#[source] Arc<surge_ping::SurgeError>),
    #[error("{0}")]
    Io(#[source] Arc<std::io::Error>),
}

/// Sends probes. ICMP needs CAP_NET_RAW (a raw socket) or, failing that, an unprivileged
/// ICMP datagram socket (`net.ipv4.ping_group_range`).
#[derive(Clone)]
pub struct Prober {
    v4: Result<Client, ProbeError>,
    v6: Result<Client, ProbeError>,
    timeout: Duration,
    ident: u16,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober").field("timeout", &self.timeout).finish()
    }
}

fn icmp_client(kind: ICMP) -> Result<Client, ProbeError> {
    // A raw socket first (CAP_NET_RAW); surge-ping falls back to a datagram socket.
    let config = surge_ping::Config::builder()
        .kind(kind)
        .sock_type_hint(socket2::Type::RAW)
        .build();
    Client::new(&config).map_err(|e| ProbeError::NoIcmpSocket(Arc::new(e)))
}

impl Prober {
    /// Opens the ICMP sockets. Must run inside a tokio runtime.
    pub fn new(timeout: Duration) -> Prober {
        Prober {
            v4: icmp_client(ICMP::V4),
            v6: icmp_client(ICMP::V6),
            timeout,
            ident: rand::random(),
        }
    }

    /// Why ICMP cannot be used, if it cannot.
    pub fn icmp_error(&self) -> Option<&ProbeError> {
        self.v4.as_ref().err()
    }

    /// One ICMP echo. Ok(rtt) on a reply, Err(reason) otherwise.
    pub async fn ping(&self, ip: IpAddr, seq: u16) -> Result<Duration, ProbeError> {
        let client = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let client = client.as_ref().map_err(Clone::clone)?;
        let mut pinger = client.pinger(ip, PingIdentifier(self.ident)).await;
        pinger.timeout(self.timeout);
        match pinger.ping(PingSequence(seq), b"kaohe-probe").await {
            // Only an echo reply from the target counts; surge-ping also hands back ICMP
            // errors (destination unreachable, time exceeded) that quote our request.
            Ok((IcmpPacket::V4(p), rtt)) if p.get_icmp_type().0 == 0 && p.get_source() == ip => Ok(rtt),
            Ok((IcmpPacket::V6(p), rtt)) if p.get_icmpv6_type().0 == 129 && IpAddr::V6(p.get_source()) == ip => Ok(rtt),
            Ok((IcmpPacket::V4(p), _)) => Err(ProbeError::NotEchoReply {
                kind: p.get_icmp_type().0,
                code: p.get_icmp_code().0,
                from: IpAddr::V4(p.get_source()),
            }),
            Ok((IcmpPacket::V6(p), _)) => Err(ProbeError::NotEchoReplyV6 {
                kind: p.get_icmpv6_type().0,
                code: p.get_icmpv6_code().0,
                from: IpAddr::V6(p.get_source()),
            }),
            Err(surge_ping::SurgeError::Timeout { .. }) => Err(ProbeError::Timeout),
            Err(e) => Err(ProbeError::Ping(Arc::new(e))),
        }
    }

    /// One TCP connect. Ok(time to connect) or Err(reason).
    pub async fn connect(&self, addr: SocketAddr) -> Result<Duration, ProbeError> {
        let start = Instant::now();
        match tokio::time::timeout(self.timeout, tokio::net::TcpStream::connect(addr)).await {
            Ok(Ok(_)) => Ok(start.elapsed()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(ProbeError::Refused),
            Ok(Err(e)) => Err(ProbeError::Io(Arc::new(e))),
            Err(_) => Err(ProbeError::Timeout),
        }
    }

    /// Probes one target.
    pub async fn probe(&self, target: &Target, seq: u16) -> ProbeSample {
        let at = Utc::now();
        let (kind, result) = match target.probe {
            Probe::Icmp(ip) => (ProbeKind::Icmp, self.ping(ip, seq).await),
            Probe::Tcp(sa) => (ProbeKind::Tcp, self.connect(sa).await),
        };
        ProbeSample {
            target: target.address(),
            kind,
            role: match target.role {
                Role::Upstream => ProbeRole::Upstream,
                Role::Device => ProbeRole::Device,
            },
            at,
            ok: result.is_ok(),
            rtt_ms: result.as_ref().ok().map(|d| d.as_secs_f64() * 1000.0),
            error: result.err().map(|e| e.to_string()),
            run: None,
        }
    }

    /// Probes every target once, paced, all in flight together. Samples come back in
    /// the order of `targets`.
    pub async fn round(&self, targets: &[Target], seq: u16) -> Vec<ProbeSample> {
        let mut set = tokio::task::JoinSet::new();
        for (i, t) in targets.iter().enumerate() {
            let p = self.clone();
            let t = t.clone();
            set.spawn(async move { (i, p.probe(&t, seq).await) });
            tokio::time::sleep(PACE).await;
        }
        let mut out: Vec<(usize, ProbeSample)> = Vec::with_capacity(targets.len());
        while let Some(r) = set.join_next().await {
            if let Ok(x) = r {
                out.push(x);
            }
        }
        out.sort_by_key(|(i, _)| *i);
        out.into_iter().map(|(_, s)| s).collect()
    }
}

#[derive(Debug, Default, Clone)]
struct TargetState {
    misses: u32,
    first_miss: Option<DateTime<Utc>>,
    down_since: Option<DateTime<Utc>>,
}

/// Turns probe samples into outages.
#[derive(Debug, Default)]
pub struct OutageTracker {
    down_after: u32,
    targets: HashMap<String, TargetState>,
    /// Outages that ended since the last [`OutageTracker::take_report`].
    ended: Vec<Outage>,
}

impl OutageTracker {
    pub fn new(down_after: u32) -> OutageTracker {
        OutageTracker {
            down_after: down_after.max(1),
            ..OutageTracker::default()
        }
    }

    /// Feeds one sample (in time order per target).
    pub fn observe(&mut self, s: &ProbeSample) {
        let st = self.targets.entry(s.target.clone()).or_default();
        if s.ok {
            if let Some(start) = st.down_since.take() {
                self.ended.push(Outage {
                    target: s.target.clone(),
                    start,
                    end: Some(s.at),
                });
            }
            st.misses = 0;
            st.first_miss = None;
        } else {
            st.misses += 1;
            if st.misses == 1 {
                st.first_miss = Some(s.at);
            }
            if st.misses >= self.down_after && st.down_since.is_none() {
                st.down_since = st.first_miss;
            }
        }
    }

    /// Whether a target is down now.
    pub fn is_down(&self, target: &str) -> bool {
        self.targets.get(target).is_some_and(|s| s.down_since.is_some())
    }

    /// Outages for the next report: those that ended since the last call, and those
    /// still going on (without an end; a later report repeats them with their end).
    pub fn take_report(&mut self) -> Vec<Outage> {
        let mut out = std::mem::take(&mut self.ended);
        let mut ongoing: Vec<Outage> = self
            .targets
            .iter()
            .filter_map(|(t, s)| {
                s.down_since.map(|start| Outage {
                    target: t.clone(),
                    start,
                    end: None,
                })
            })
            .collect();
        ongoing.sort_by(|a, b| a.target.cmp(&b.target));
        out.extend(ongoing);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn sample(sec: i64, ok: bool) -> ProbeSample {
        ProbeSample {
            target: "10.0.0.1".into(),
            kind: ProbeKind::Icmp,
            role: ProbeRole::Upstream,
            at: Utc.timestamp_opt(1_800_000_000 + sec, 0).single().expect("time"),
            ok,
            rtt_ms: None,
            error: None,
            run: None,
        }
    }

    #[test]
    fn down_after_three_misses_starting_at_the_first_and_up_on_first_success() {
        let mut t = OutageTracker::new(3);
        for (sec, ok) in [(0, true), (30, false), (60, false)] {
            t.observe(&sample(sec, ok));
        }
        assert!(!t.is_down("10.0.0.1"), "two misses are not an outage");
        t.observe(&sample(90, false));
        assert!(t.is_down("10.0.0.1"));
        let ongoing = t.take_report();
        assert_eq!(ongoing.len(), 1);
        assert_eq!((ongoing[0].start, ongoing[0].end), (sample(30, false).at, None));
        t.observe(&sample(120, false));
        t.observe(&sample(150, true));
        let done = t.take_report();
        assert_eq!(done.len(), 1);
        assert_eq!(
            (done[0].start, done[0].end),
            (sample(30, false).at, Some(sample(150, true).at))
        );
        assert!(t.take_report().is_empty());
    }

    #[test]
    fn isolated_misses_never_make_an_outage() {
        let mut t = OutageTracker::new(3);
        for (i, ok) in [false, false, true, false, true, false, false, true]
            .into_iter()
            .enumerate()
        {
            t.observe(&sample(i as i64 * 30, ok));
        }
        assert!(t.take_report().is_empty());
    }
}

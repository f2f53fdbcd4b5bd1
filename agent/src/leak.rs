//! Agentless leak detection, the packet half (issue 6): signed probe frames and the
//! checked parser of what comes back.
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
//!
//! A signature is a truncated HMAC-SHA256 (key from the config, shared with the listener)
//! over the unit, the target, the kind of probe, a nonce and the time, so the listener
//! tells our probes from noise and nobody without the key can make a finding.
//! [`Reply::parse`] is the one checked constructor for received frames: truncated or
//! hostile frames give `None`.

use std::net::Ipv4Addr;

use ring::hmac;

use crate::arp::Mac;

/// Marks a signed payload: "KHLK" and a format version.
const MAGIC: &[u8; 5] = b"KHLK1";
/// Bytes of the truncated HMAC carried in a payload.
const TAG_LEN: usize = 16;
const ETHERTYPE_IPV4: u16 = 0x0800;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
/// The first UDP/TCP source port of our probes; the low bits carry part of the nonce
/// (UDP) or of the signature (TCP).
const PORT_BASE: u16 = 0xC000;
/// The longest unit id a payload carries, in bytes.
pub const MAX_UNIT: usize = 200;

/// How a probe asks for an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Icmp,
    Udp(u16),
    Tcp(u16),
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Icmp => 1,
            Kind::Udp(_) => 2,
            Kind::Tcp(_) => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Icmp => "icmp",
            Kind::Udp(_) => "udp",
            Kind::Tcp(_) => "tcp",
        }
    }
}

/// What a probe says about itself (signed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub unit: String,
    pub target: Ipv4Addr,
    pub kind: Kind,
    pub nonce: u32,
    /// Unix seconds when sent.
    pub at: u32,
}

/// Signs and checks stamps with the department's leak key.
pub struct Signer {
    key: hmac::Key,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(…)")
    }
}

impl Signer {
    pub fn new(key: &[u8]) -> Signer {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    fn tag(&self, s: &Stamp) -> [u8; TAG_LEN] {
        let mut m = Vec::with_capacity(64);
        m.extend_from_slice(MAGIC);
        m.push(s.kind.code());
        m.extend_from_slice(&s.target.octets());
        m.extend_from_slice(&s.nonce.to_be_bytes());
        m.extend_from_slice(&s.at.to_be_bytes());
        m.extend_from_slice(s.unit.as_bytes());
        let full = hmac::sign(&self.key, &m);
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&full.as_ref()[..TAG_LEN]);
        t
    }

    /// The signed payload of an ICMP or UDP probe:
    /// MAGIC, kind, target, nonce, time, unit length, unit, tag.
    pub fn payload(&self, s: &Stamp) -> Vec<u8> {
        // Unit ids are short paths; one too long to carry is not probed for (see `run`).
        let unit = s.unit.as_bytes();
        let unit = &unit[..unit.len().min(MAX_UNIT)];
        let mut p = Vec::with_capacity(MAGIC.len() + 15 + unit.len() + TAG_LEN);
        p.extend_from_slice(MAGIC);
        p.push(s.kind.code());
        p.extend_from_slice(&s.target.octets());
        p.extend_from_slice(&s.nonce.to_be_bytes());
        p.extend_from_slice(&s.at.to_be_bytes());
        p.push(unit.len() as u8);
        p.extend_from_slice(unit);
        p.extend_from_slice(&self.tag(s));
        p
    }

    /// Reads and checks a signed payload (possibly followed by padding); `None` when it
    /// is not ours or the tag is wrong.
    pub fn verify_payload(&self, p: &[u8]) -> Option<Stamp> {
        let rest = p.strip_prefix(MAGIC.as_slice())?;
        let kind_code = *rest.first()?;
        let target = Ipv4Addr::from(<[u8; 4]>::try_from(rest.get(1..5)?).ok()?);
        let nonce = u32::from_be_bytes(rest.get(5..9)?.try_into().ok()?);
        let at = u32::from_be_bytes(rest.get(9..13)?.try_into().ok()?);
        let len = usize::from(*rest.get(13)?);
        let unit = std::str::from_utf8(rest.get(14..14 + len)?).ok()?.to_string();
        let tag = rest.get(14 + len..14 + len + TAG_LEN)?;
        let kind = match kind_code {
            1 => Kind::Icmp,
            2 => Kind::Udp(0),
            3 => Kind::Tcp(0),
            _ => return None,
        };
        let stamp = Stamp {
            unit,
            target,
            kind,
            nonce,
            at,
        };
        let want = self.tag(&stamp);
        same(&want, tag).then_some(stamp)
    }

    /// The TCP probe's source port and sequence number (what a SYN-ACK or RST
    /// acknowledges, plus one): 46 bits of an HMAC over the unit, the target, the port
    /// probed and the minute, so that guessing one takes ~2^46 tries.
    pub fn tcp_tag(&self, unit: &str, target: Ipv4Addr, dst_port: u16, minute: u32) -> (u16, u32) {
        let mut m = Vec::with_capacity(32);
        m.extend_from_slice(b"KHLKT");
        m.extend_from_slice(&target.octets());
        m.extend_from_slice(&dst_port.to_be_bytes());
        m.extend_from_slice(&minute.to_be_bytes());
        m.extend_from_slice(unit.as_bytes());
        let f = hmac::sign(&self.key, &m);
        let f = f.as_ref();
        (
            PORT_BASE | (u16::from_be_bytes([f[0], f[1]]) & 0x3fff),
            u32::from_be_bytes([f[2], f[3], f[4], f[5]]),
        )
    }
}

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The Internet checksum (RFC 1071).
fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for part in parts {
        for &b in *part {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, b])),
                None => odd = Some(b),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 packet (20-byte header) around `body`.
fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, ttl: u8, id: u16, body: &[u8]) -> Vec<u8> {
    let total = (20 + body.len()) as u16;
    let mut h = vec![0x45, 0, 0, 0, 0, 0, 0x40, 0, ttl, proto, 0, 0];
    h[2..4].copy_from_slice(&total.to_be_bytes());
    h[4..6].copy_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let c = checksum(&[&h]);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    h.extend_from_slice(body);
    h
}

/// The transport checksum's pseudo-header.
fn pseudo(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, len: usize) -> [u8; 12] {
    let mut p = [0u8; 12];
    p[..4].copy_from_slice(&src.octets());
    p[4..8].copy_from_slice(&dst.octets());
    p[9] = proto;
    p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
    p
}

/// Addresses of one probe frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addressing {
    pub src_mac: Mac,
    pub dst_mac: Mac,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
}

/// Builds the Ethernet frame of a probe: `a` says where it goes (for a spoofed-source
/// probe `src_ip` is the listener's; for a forwarding probe `dst_ip` is a canary while
/// `dst_mac` is the LAN host's), `stamp` what it says.
pub fn probe_frame(signer: &Signer, a: &Addressing, stamp: &Stamp) -> Vec<u8> {
    let src_port = PORT_BASE | (stamp.nonce as u16 & 0x3fff);
    let l4 = match stamp.kind {
        Kind::Icmp => {
            let payload = signer.payload(stamp);
            let mut icmp = vec![8, 0, 0, 0];
            icmp.extend_from_slice(&((stamp.nonce >> 16) as u16).to_be_bytes());
            icmp.extend_from_slice(&(stamp.nonce as u16).to_be_bytes());
            icmp.extend_from_slice(&payload);
            let c = checksum(&[&icmp]);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            (PROTO_ICMP, icmp)
        }
        Kind::Udp(port) => {
            let payload = signer.payload(stamp);
            let len = 8 + payload.len();
            let mut udp = Vec::with_capacity(len);
            udp.extend_from_slice(&src_port.to_be_bytes());
            udp.extend_from_slice(&port.to_be_bytes());
            udp.extend_from_slice(&(len as u16).to_be_bytes());
            udp.extend_from_slice(&[0, 0]);
            udp.extend_from_slice(&payload);
            let c = checksum(&[&pseudo(a.src_ip, a.dst_ip, PROTO_UDP, len), &udp]);
            udp[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
            (PROTO_UDP, udp)
        }
        Kind::Tcp(port) => {
            let (src_port, seq) = signer.tcp_tag(&stamp.unit, stamp.target, port, stamp.at / 60);
            let mut tcp = Vec::with_capacity(20);
            tcp.extend_from_slice(&src_port.to_be_bytes());
            tcp.extend_from_slice(&port.to_be_bytes());
            tcp.extend_from_slice(&seq.to_be_bytes());
            tcp.extend_from_slice(&[0, 0, 0, 0]); // ack
            tcp.extend_from_slice(&[0x50, 0x02]); // 5 words, SYN
            tcp.extend_from_slice(&1024u16.to_be_bytes()); // window
            tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
            let c = checksum(&[&pseudo(a.src_ip, a.dst_ip, PROTO_TCP, tcp.len()), &tcp]);
            tcp[16..18].copy_from_slice(&c.to_be_bytes());
            (PROTO_TCP, tcp)
        }
    };
    let ip = ipv4(a.src_ip, a.dst_ip, l4.0, a.ttl, stamp.nonce as u16, &l4.1);
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&a.dst_mac);
    f.extend_from_slice(&a.src_mac);
    f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
    f.extend_from_slice(&ip);
    f
}

/// A received IPv4 packet that may answer a probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// An ICMP echo reply and its payload.
    EchoReply {
        from: Ipv4Addr,
        to: Ipv4Addr,
        payload: Vec<u8>,
    },
    /// An ICMP error (3 unreachable, 5 redirect, 11 time exceeded) from `from`, quoting
    /// the start of the packet that caused it.
    IcmpError {
        from: Ipv4Addr,
        to: Ipv4Addr,
        icmp_type: u8,
        quoted: Quoted,
    },
    /// A TCP segment with SYN-ACK or RST set, acknowledging `ack`.
    TcpAnswer {
        from: Ipv4Addr,
        to: Ipv4Addr,
        src_port: u16,
        dst_port: u16,
        ack: u32,
        rst: bool,
    },
}

/// The packet an ICMP error quotes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quoted {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub proto: u8,
    /// The transport header and as much of its payload as was quoted.
    pub transport: Vec<u8>,
}

/// The IPv4 header of `p`: (src, dst, proto, header length, total length).
fn ipv4_header(p: &[u8]) -> Option<(Ipv4Addr, Ipv4Addr, u8, usize, usize)> {
    let first = *p.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let ihl = usize::from(first & 0x0f) * 4;
    if ihl < 20 || p.len() < ihl {
        return None;
    }
    let total = usize::from(u16::from_be_bytes([p[2], p[3]]));
    let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
    let dst = Ipv4Addr::new(p[16], p[17], p[18], p[19]);
    Some((src, dst, p[9], ihl, total))
}

impl Reply {
    /// Parses an Ethernet frame; `None` unless it is an IPv4 packet of a kind that can
    /// answer a probe. Never panics on any input.
    pub fn parse(frame: &[u8]) -> Option<Reply> {
        if u16::from_be_bytes([*frame.get(12)?, *frame.get(13)?]) != ETHERTYPE_IPV4 {
            return None;
        }
        Reply::parse_ip(frame.get(14..)?)
    }

    /// Parses an IPv4 packet (as a raw IP socket gives it).
    pub fn parse_ip(p: &[u8]) -> Option<Reply> {
        let (from, to, proto, ihl, total) = ipv4_header(p)?;
        let body = p.get(ihl..total.min(p.len()).max(ihl))?;
        match proto {
            PROTO_ICMP => {
                let (t, code) = (*body.first()?, *body.get(1)?);
                match t {
                    0 if code == 0 => Some(Reply::EchoReply {
                        from,
                        to,
                        payload: body.get(8..)?.to_vec(),
                    }),
                    3 | 5 | 11 => {
                        let inner = body.get(8..)?;
                        let (src, dst, iproto, iihl, _) = ipv4_header(inner)?;
                        Some(Reply::IcmpError {
                            from,
                            to,
                            icmp_type: t,
                            quoted: Quoted {
                                src,
                                dst,
                                proto: iproto,
                                transport: inner.get(iihl..)?.to_vec(),
                            },
                        })
                    }
                    _ => None,
                }
            }
            PROTO_TCP => {
                let flags = *body.get(13)?;
                let (syn, ack_flag, rst) = (flags & 0x02 != 0, flags & 0x10 != 0, flags & 0x04 != 0);
                if !((syn && ack_flag) || rst) {
                    return None;
                }
                Some(Reply::TcpAnswer {
                    from,
                    to,
                    src_port: u16::from_be_bytes([*body.first()?, *body.get(1)?]),
                    dst_port: u16::from_be_bytes([*body.get(2)?, *body.get(3)?]),
                    ack: u32::from_be_bytes(body.get(8..12)?.try_into().ok()?),
                    rst,
                })
            }
            _ => None,
        }
    }

    /// The signed stamp this reply answers, if it answers one of ours: the echoed or
    /// quoted payload verifies, or a TCP acknowledgement matches a signed sequence number
    /// of one of `units` within the last `minutes` minutes before `now` (Unix seconds).
    pub fn stamp(&self, signer: &Signer, units: &[String], now: u32, minutes: u32) -> Option<Stamp> {
        match self {
            Reply::EchoReply { payload, .. } => signer.verify_payload(payload),
            Reply::IcmpError { quoted, .. } => match quoted.proto {
                PROTO_ICMP => signer.verify_payload(quoted.transport.get(8..)?),
                PROTO_UDP => signer.verify_payload(quoted.transport.get(8..)?),
                _ => None,
            },
            Reply::TcpAnswer {
                from,
                src_port,
                dst_port,
                ack,
                ..
            } => {
                // Not one of our ports: no HMAC is spent on it.
                if dst_port & !0x3fff != PORT_BASE {
                    return None;
                }
                let seq = ack.wrapping_sub(1);
                for unit in units {
                    // The minutes before, and one after for clock skew.
                    for minute in (now / 60).saturating_sub(minutes)..=(now / 60).saturating_add(1) {
                        if signer.tcp_tag(unit, *from, *src_port, minute) == (*dst_port, seq) {
                            return Some(Stamp {
                                unit: unit.clone(),
                                target: *from,
                                kind: Kind::Tcp(*src_port),
                                nonce: seq,
                                at: minute * 60,
                            });
                        }
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST_MAC: Mac = [2, 0, 0, 0, 2, 23];
    const AGENT_MAC: Mac = [2, 0, 0, 0, 2, 10];

    fn stamp(kind: Kind) -> Stamp {
        Stamp {
            unit: "lab-b2".into(),
            target: Ipv4Addr::new(10, 2, 0, 23),
            kind,
            nonce: 0x1234_5678,
            at: 1_800_000_000,
        }
    }

    fn spoofed() -> Addressing {
        Addressing {
            src_mac: AGENT_MAC,
            dst_mac: HOST_MAC,
            src_ip: Ipv4Addr::new(203, 0, 113, 99),
            dst_ip: Ipv4Addr::new(10, 2, 0, 23),
            ttl: 64,
        }
    }

    /// What the host would send back: its own IPv4 packet to the listener.
    fn answer(proto: u8, l4: Vec<u8>) -> Vec<u8> {
        let mut f = vec![0u8; 12];
        f.extend_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f.extend_from_slice(&ipv4(
            Ipv4Addr::new(10, 2, 0, 23),
            Ipv4Addr::new(203, 0, 113, 99),
            proto,
            63,
            1,
            &l4,
        ));
        f
    }

    #[test]
    fn frames_have_valid_checksums() {
        let signer = Signer::new(b"key");
        for kind in [Kind::Icmp, Kind::Udp(33434), Kind::Tcp(443)] {
            let f = probe_frame(&signer, &spoofed(), &stamp(kind));
            assert_eq!(&f[..6], &HOST_MAC, "to the host's MAC");
            let ip = &f[14..];
            assert_eq!(checksum(&[&ip[..20]]), 0, "{kind:?}: IPv4 header checksum");
            assert_eq!(&ip[12..16], &[203, 0, 113, 99], "spoofed source");
            let l4 = &ip[20..];
            let ok = match kind {
                Kind::Icmp => checksum(&[l4]) == 0,
                Kind::Udp(_) => checksum(&[&pseudo(spoofed().src_ip, spoofed().dst_ip, PROTO_UDP, l4.len()), l4]) == 0,
                Kind::Tcp(_) => checksum(&[&pseudo(spoofed().src_ip, spoofed().dst_ip, PROTO_TCP, l4.len()), l4]) == 0,
            };
            assert!(ok, "{kind:?}: transport checksum");
        }
    }

    #[test]
    fn an_echo_reply_to_the_listener_verifies_and_a_forged_one_does_not() {
        let signer = Signer::new(b"department key");
        let f = probe_frame(&signer, &spoofed(), &stamp(Kind::Icmp));
        // The host echoes the ICMP body with type 0.
        let mut icmp = f[34..].to_vec();
        icmp[0] = 0;
        let reply = Reply::parse(&answer(PROTO_ICMP, icmp.clone())).expect("parses");
        let got = reply.stamp(&signer, &[], 0, 0).expect("ours");
        assert_eq!(got, stamp(Kind::Icmp));
        // The same reply checked with another key (a forged listener report): nothing.
        assert!(reply.stamp(&Signer::new(b"other key"), &[], 0, 0).is_none());
        // A bit flipped in the payload: nothing.
        let last = icmp.len() - 1;
        icmp[last] ^= 1;
        let bad = Reply::parse(&answer(PROTO_ICMP, icmp)).expect("parses");
        assert!(bad.stamp(&signer, &[], 0, 0).is_none());
    }

    #[test]
    fn a_port_unreachable_quoting_the_udp_probe_verifies() {
        let signer = Signer::new(b"k");
        let f = probe_frame(&signer, &spoofed(), &stamp(Kind::Udp(33434)));
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&f[14..]); // the whole original datagram
        let reply = Reply::parse(&answer(PROTO_ICMP, icmp)).expect("parses");
        assert!(matches!(reply, Reply::IcmpError { icmp_type: 3, .. }));
        let got = reply.stamp(&signer, &[], 0, 0).expect("ours");
        assert_eq!((got.unit.as_str(), got.kind), ("lab-b2", Kind::Udp(0)));
    }

    #[test]
    fn a_syn_ack_acknowledging_the_signed_sequence_verifies_for_its_unit() {
        let signer = Signer::new(b"k");
        let s = stamp(Kind::Tcp(443));
        let f = probe_frame(&signer, &spoofed(), &s);
        let tcp = &f[34..];
        let (sport, dport) = (
            u16::from_be_bytes([tcp[0], tcp[1]]),
            u16::from_be_bytes([tcp[2], tcp[3]]),
        );
        let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
        let mut answer_tcp = vec![0u8; 20];
        answer_tcp[0..2].copy_from_slice(&dport.to_be_bytes());
        answer_tcp[2..4].copy_from_slice(&sport.to_be_bytes());
        answer_tcp[8..12].copy_from_slice(&seq.wrapping_add(1).to_be_bytes());
        answer_tcp[12] = 0x50;
        answer_tcp[13] = 0x12; // SYN-ACK
        let reply = Reply::parse(&answer(PROTO_TCP, answer_tcp)).expect("parses");
        let units = vec!["lab-b1".to_string(), "lab-b2".to_string()];
        let got = reply.stamp(&signer, &units, s.at + 90, 2).expect("ours");
        assert_eq!(got.unit, "lab-b2");
        assert!(reply.stamp(&signer, &units, s.at + 600, 2).is_none(), "too old");
    }

    #[test]
    fn hostile_frames_never_panic() {
        let signer = Signer::new(b"k");
        let good = probe_frame(&signer, &spoofed(), &stamp(Kind::Udp(9)));
        for cut in 0..good.len() {
            let _ = Reply::parse(&good[..cut]).map(|r| r.stamp(&signer, &["u".into()], 0, 1));
        }
        let mut junk = good.clone();
        for i in 14..junk.len() {
            junk[i] = junk[i].wrapping_mul(31).wrapping_add(7);
            let _ = Reply::parse(&junk).map(|r| r.stamp(&signer, &["u".into()], 0, 1));
        }
    }
}

/// One probe frame the run sends (what `--dry-run` prints).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub host: Ipv4Addr,
    pub host_mac: Mac,
    /// "spoofed_source" or "forwarding".
    pub method: &'static str,
    pub kind: Kind,
    pub src_ip: Ipv4Addr,
    pub dst_ip: Ipv4Addr,
    pub ttl: u8,
}

impl Planned {
    /// One line in Chinese first, for `--dry-run`.
    pub fn describe(&self) -> String {
        let what = match self.method {
            "spoofed_source" => "伪造源地址探测 (spoofed source)",
            _ => "转发探测 (forwarding)",
        };
        let port = match self.kind {
            Kind::Icmp => String::new(),
            Kind::Udp(p) | Kind::Tcp(p) => format!(":{p}"),
        };
        format!(
            "{what}: {} 帧发往 {} [{}], IP {} → {}{port}, TTL {}",
            self.kind.name(),
            self.host,
            crate::arp::mac_to_string(&self.host_mac),
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
                    method: "spoofed_source",
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
                    method: "forwarding",
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

/// Sends the planned frames at most `leak.max_pps` a second from `iface` and collects, for
/// `leak.wait` after the last, the answers that prove a host forwards: an ICMP time
/// exceeded, redirect or unreachable quoting one of our forwarding probes, or a canary's
/// echo reply carrying our signed payload. (Answers to spoofed-source probes go to the
/// listener.) Blocking: run it on a blocking thread. Needs CAP_NET_RAW.
#[allow(clippy::too_many_arguments)]
pub fn run(
    leak: &crate::config::Leak,
    unit: &str,
    iface: &pnet_datalink::NetworkInterface,
    our_mac: Mac,
    our_ip: Ipv4Addr,
    lan: &ipnet::Ipv4Net,
    private: &[ipnet::IpNet],
    planned: &[Planned],
) -> Result<Vec<kaohe_rubric::evidence::LeakFinding>, String> {
    use std::collections::BTreeMap;
    use std::time::{Duration, Instant};

    let signer = Signer::new(&leak.key);
    let interval = Duration::from_secs_f64(1.0 / f64::from(leak.max_pps.max(1)));
    let config = pnet_datalink::Config {
        // Waiting for a frame must not hold up the next probe: at most one interval.
        read_timeout: Some(interval.clamp(Duration::from_micros(200), Duration::from_millis(5))),
        ..pnet_datalink::Config::default()
    };
    let (mut tx, mut rx) = match pnet_datalink::channel(iface, config) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => (tx, rx),
        Ok(_) => return Err("不支持的链路类型 (unsupported channel type)".into()),
        Err(e) => {
            return Err(format!(
                "无法在 {} 上发送探测帧, 需要 CAP_NET_RAW (cannot open a raw channel): {e}",
                iface.name
            ));
        }
    };
    let macs: BTreeMap<Ipv4Addr, Mac> = planned.iter().map(|p| (p.host, p.host_mac)).collect();
    let mut findings: BTreeMap<(Ipv4Addr, String), kaohe_rubric::evidence::LeakFinding> = BTreeMap::new();
    if unit.len() > MAX_UNIT {
        return Err(format!(
            "单位标识超过 {MAX_UNIT} 字节, 无法签名 (unit id too long to sign)"
        ));
    }
    let mut next = 0;
    let mut next_send = Instant::now();
    let mut last_send = Instant::now();
    // Only answers to the probes of this run count: a replayed answer carries another nonce.
    let mut sent: std::collections::HashSet<u32> = std::collections::HashSet::with_capacity(planned.len());
    // Hosts whose TTL-1 probe expired at themselves: they forward.
    let mut forwards: std::collections::BTreeSet<Ipv4Addr> = std::collections::BTreeSet::new();
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
            if p.method == "forwarding" {
                sent.insert(stamp.nonce);
            }
            let a = Addressing {
                src_mac: our_mac,
                dst_mac: p.host_mac,
                src_ip: p.src_ip,
                dst_ip: p.dst_ip,
                ttl: p.ttl,
            };
            if let Some(Err(e)) = tx.send_to(&probe_frame(&signer, &a, &stamp), None) {
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
        let frame = match rx.next() {
            Ok(f) => f,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => continue,
            Err(e) => return Err(format!("读取 {} 失败 (receive failed): {e}", iface.name)),
        };
        let Some(reply) = Reply::parse(frame) else { continue };
        // Proof that a probe left the private network through the host: the canary's
        // reply, or the probe expiring at a router outside the private network and the LAN.
        // The host's own time-exceeded (TTL 1) only shows that it forwards — any Docker
        // desktop does — and redirects or unreachables are no proof of a way out.
        let outside = |a: &Ipv4Addr| {
            let ip = std::net::IpAddr::V4(*a);
            !lan.contains(a)
                && if private.is_empty() {
                    !a.is_private()
                } else {
                    !private.iter().any(|p| p.contains(&ip))
                }
        };
        let (to, how, proof) = match &reply {
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
                outside(from),
            ),
            Reply::EchoReply { from, to, .. } if leak.forward_to.contains(from) => (
                *to,
                format!("互联网探测点 {from} 经该主机应答 (the canary answered through the host)"),
                true,
            ),
            _ => continue,
        };
        if to != our_ip {
            continue;
        }
        let Some(stamp) = reply.stamp(&signer, &[], 0, 0) else {
            continue;
        };
        if stamp.unit != unit
            || stamp.kind != Kind::Icmp
            || !macs.contains_key(&stamp.target)
            || !sent.contains(&stamp.nonce)
        {
            continue;
        }
        if !proof {
            if how.contains(&format!("at {}", stamp.target)) {
                forwards.insert(stamp.target);
            }
            continue;
        }
        let key = (stamp.target, how.clone());
        findings
            .entry(key)
            .or_insert_with(|| kaohe_rubric::evidence::LeakFinding {
                at: chrono::Utc::now(),
                ip: stamp.target.to_string(),
                mac: macs.get(&stamp.target).map(crate::arp::mac_to_string),
                method: kaohe_rubric::evidence::LeakMethod::Forwarding,
                protocol: "icmp".into(),
                detail: format!("转发探测 (forwarding probe): {how}"),
            });
    }
    let mut out: Vec<_> = findings.into_values().collect();
    for f in &mut out {
        if f.ip.parse().is_ok_and(|ip: Ipv4Addr| forwards.contains(&ip)) {
            f.detail
                .push_str("; 该主机转发数据包 (TTL 1 在该主机耗尽; the host forwards packets)");
        }
    }
    Ok(out)
}

/// What one leak-detection round did.
#[derive(Debug, Default)]
pub struct Round {
    pub findings: Vec<kaohe_rubric::evidence::LeakFinding>,
    /// Probe frames sent (or, dry, that would be).
    pub planned: Vec<Planned>,
    pub errors: Vec<String>,
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
        let (iface, our_mac, our_ip) = match crate::inventory::local_side(prefix, config.inventory_interface.as_deref())
        {
            Ok(s) => s,
            Err(e) => {
                round.errors.push(e);
                continue;
            }
        };
        // Only hosts that answered this sweep: not neighbour-table hearsay.
        let hosts: Vec<(Ipv4Addr, Mac)> = found
            .devices
            .iter()
            .filter(|(ip, (_, how))| prefix.contains(*ip) && how.contains(&kaohe_rubric::evidence::HowSeen::ArpSweep))
            .map(|(ip, (mac, _))| (*ip, *mac))
            .collect();
        let planned = plan(leak, our_ip, &hosts, &routers);
        if !dry {
            match run(
                leak,
                &unit,
                &iface,
                our_mac,
                our_ip,
                prefix,
                &config.private_prefixes,
                &planned,
            ) {
                Ok(f) => round.findings.extend(f),
                Err(e) => round.errors.push(e),
            }
        }
        round.planned.extend(planned);
    }
    round
}

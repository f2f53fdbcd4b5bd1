//! Signed probes: what a probe says about itself, the department's key that signs it, the
//! frames that carry a signed probe, and the check that an answer carries one.
//!
//! A signature is a truncated HMAC-SHA256 (key from the config, shared with the listener)
//! over the unit, the target, the kind of probe, a nonce and the time, so the listener
//! tells our probes from noise and nobody without the key can make a finding.

use std::net::Ipv4Addr;

use ring::hmac;

use crate::wire::ethernet::{self, ETHERTYPE_IPV4};
use crate::wire::ipv4::{self, PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use crate::wire::reply::Reply;
use crate::wire::{Mac, icmp, tcp, udp};

/// Marks a signed payload: "KHLK" and a format version.
const MAGIC: &[u8; 5] = b"KHLK1";
/// Bytes of the truncated HMAC carried in a payload.
const TAG_LEN: usize = 16;
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

    /// The signed stamp `reply` answers, if it answers one of ours: the echoed or quoted
    /// payload verifies, or a TCP acknowledgement matches a signed sequence number of one
    /// of `units` within the last `minutes` minutes before `now` (Unix seconds).
    pub fn answered(&self, reply: &Reply, units: &[String], now: u32, minutes: u32) -> Option<Stamp> {
        match reply {
            Reply::EchoReply { payload, .. } => self.verify_payload(payload),
            Reply::IcmpError { quoted, .. } => match quoted.proto {
                // The quoted echo request or datagram: 8 bytes of header, then ours.
                PROTO_ICMP | PROTO_UDP => self.verify_payload(quoted.transport.get(8..)?),
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
                        if self.tcp_tag(unit, *from, *src_port, minute) == (*dst_port, seq) {
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

/// Compares in time independent of where the bytes differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    let ip = |protocol| ipv4::Repr {
        src: a.src_ip,
        dst: a.dst_ip,
        protocol,
        ttl: a.ttl,
        ident: stamp.nonce as u16,
    };
    let (ip, l4) = match stamp.kind {
        Kind::Icmp => {
            let data = signer.payload(stamp);
            let echo = icmp::Repr::EchoRequest {
                ident: (stamp.nonce >> 16) as u16,
                seq: stamp.nonce as u16,
                data: &data,
            };
            (ip(PROTO_ICMP), echo.emit())
        }
        Kind::Udp(port) => {
            let ip = ip(PROTO_UDP);
            let ports = udp::Repr {
                src_port: PORT_BASE | (stamp.nonce as u16 & 0x3fff),
                dst_port: port,
            };
            let datagram = ports.emit(&ip, &signer.payload(stamp));
            (ip, datagram)
        }
        Kind::Tcp(port) => {
            let ip = ip(PROTO_TCP);
            let (src_port, seq) = signer.tcp_tag(&stamp.unit, stamp.target, port, stamp.at / 60);
            let syn = tcp::Repr {
                src_port,
                dst_port: port,
                seq,
                ack: 0,
                flags: tcp::SYN,
                window: 1024,
            };
            let segment = syn.emit(&ip);
            (ip, segment)
        }
    };
    ethernet::Repr {
        dst: a.dst_mac,
        src: a.src_mac,
        ethertype: ETHERTYPE_IPV4,
    }
    .emit(&ip.emit(&l4))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::checksum;

    const HOST_MAC: Mac = Mac([2, 0, 0, 0, 2, 23]);
    const AGENT_MAC: Mac = Mac([2, 0, 0, 0, 2, 10]);

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
        let ip = ipv4::Repr {
            src: Ipv4Addr::new(10, 2, 0, 23),
            dst: Ipv4Addr::new(203, 0, 113, 99),
            protocol: proto,
            ttl: 63,
            ident: 1,
        };
        f.extend_from_slice(&ip.emit(&l4));
        f
    }

    fn pseudo(proto: u8, len: usize) -> [u8; 12] {
        ipv4::Repr {
            src: spoofed().src_ip,
            dst: spoofed().dst_ip,
            protocol: proto,
            ttl: 0,
            ident: 0,
        }
        .pseudo_header(len)
    }

    #[test]
    fn frames_have_valid_checksums() {
        let signer = Signer::new(b"key");
        for kind in [Kind::Icmp, Kind::Udp(33434), Kind::Tcp(443)] {
            let f = probe_frame(&signer, &spoofed(), &stamp(kind));
            assert_eq!(&f[..6], &HOST_MAC.0, "to the host's MAC");
            let ip = &f[14..];
            assert_eq!(checksum(&[&ip[..20]]), 0, "{kind:?}: IPv4 header checksum");
            assert_eq!(&ip[12..16], &[203, 0, 113, 99], "spoofed source");
            let l4 = &ip[20..];
            let ok = match kind {
                Kind::Icmp => checksum(&[l4]) == 0,
                Kind::Udp(_) => checksum(&[&pseudo(PROTO_UDP, l4.len()), l4]) == 0,
                Kind::Tcp(_) => checksum(&[&pseudo(PROTO_TCP, l4.len()), l4]) == 0,
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
        let got = signer.answered(&reply, &[], 0, 0).expect("ours");
        assert_eq!(got, stamp(Kind::Icmp));
        // The same reply checked with another key (a forged listener report): nothing.
        assert!(Signer::new(b"other key").answered(&reply, &[], 0, 0).is_none());
        // A bit flipped in the payload: nothing.
        let last = icmp.len() - 1;
        icmp[last] ^= 1;
        let bad = Reply::parse(&answer(PROTO_ICMP, icmp)).expect("parses");
        assert!(signer.answered(&bad, &[], 0, 0).is_none());
    }

    #[test]
    fn a_port_unreachable_quoting_the_udp_probe_verifies() {
        let signer = Signer::new(b"k");
        let f = probe_frame(&signer, &spoofed(), &stamp(Kind::Udp(33434)));
        let mut icmp = vec![3, 3, 0, 0, 0, 0, 0, 0];
        icmp.extend_from_slice(&f[14..]); // the whole original datagram
        let reply = Reply::parse(&answer(PROTO_ICMP, icmp)).expect("parses");
        assert!(matches!(reply, Reply::IcmpError { icmp_type: 3, .. }));
        let got = signer.answered(&reply, &[], 0, 0).expect("ours");
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
        let got = signer.answered(&reply, &units, s.at + 90, 2).expect("ours");
        assert_eq!(got.unit, "lab-b2");
        assert!(signer.answered(&reply, &units, s.at + 600, 2).is_none(), "too old");
    }

    #[test]
    fn hostile_frames_never_panic() {
        let signer = Signer::new(b"k");
        let good = probe_frame(&signer, &spoofed(), &stamp(Kind::Udp(9)));
        for cut in 0..good.len() {
            let _ = Reply::parse(&good[..cut]).map(|r| signer.answered(&r, &["u".into()], 0, 1));
        }
        let mut junk = good.clone();
        for i in 14..junk.len() {
            junk[i] = junk[i].wrapping_mul(31).wrapping_add(7);
            let _ = Reply::parse(&junk).map(|r| signer.answered(&r, &["u".into()], 0, 1));
        }
    }
}

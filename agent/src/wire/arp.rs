//! ARP over Ethernet: building requests and parsing frames, as a pair.
//!
//! [`ArpFrame::parse`] is the one checked constructor: it accepts only a complete
//! Ethernet II frame carrying IPv4-over-Ethernet ARP (htype 1, ptype 0x0800, hlen 6,
//! plen 4) and after it no accessor can fail. Truncated or hostile frames give `None`.
//! Fuzzed by `agent/fuzz` (`cargo fuzz run arp_parse`).

use std::net::Ipv4Addr;

use super::be16;
use super::ethernet::{self, ETHERTYPE_ARP, ETHERTYPE_IPV4, Mac, mac_at};
use super::ipv4::ip_at;

pub const OP_REQUEST: u16 = 1;
pub const OP_REPLY: u16 = 2;
/// Ethernet header (14) + ARP body (28).
pub const FRAME_LEN: usize = 42;

/// A parsed ARP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArpFrame {
    pub eth_dst: Mac,
    pub eth_src: Mac,
    pub op: u16,
    pub sender_mac: Mac,
    pub sender_ip: Ipv4Addr,
    pub target_mac: Mac,
    pub target_ip: Ipv4Addr,
}

impl ArpFrame {
    /// Parses an Ethernet frame; `None` unless it is a well-formed IPv4 ARP frame.
    pub fn parse(frame: &[u8]) -> Option<ArpFrame> {
        if frame.len() < FRAME_LEN {
            return None;
        }
        let eth = ethernet::Frame::parse(frame)?;
        let arp = eth.payload;
        let (htype, ptype) = (be16(arp, 0)?, be16(arp, 2)?);
        if eth.repr.ethertype != ETHERTYPE_ARP || htype != 1 || ptype != ETHERTYPE_IPV4 || arp[4] != 6 || arp[5] != 4 {
            return None;
        }
        let op = be16(arp, 6)?;
        if op != OP_REQUEST && op != OP_REPLY {
            return None;
        }
        Some(ArpFrame {
            eth_dst: eth.repr.dst,
            eth_src: eth.repr.src,
            op,
            sender_mac: mac_at(arp, 8)?,
            sender_ip: ip_at(arp, 14)?,
            target_mac: mac_at(arp, 18)?,
            target_ip: ip_at(arp, 24)?,
        })
    }

    /// A broadcast "who has `target_ip`? tell `src_ip`".
    pub fn request(src_mac: Mac, src_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpFrame {
        ArpFrame {
            eth_dst: Mac::BROADCAST,
            eth_src: src_mac,
            op: OP_REQUEST,
            sender_mac: src_mac,
            sender_ip: src_ip,
            target_mac: Mac::ZERO,
            target_ip,
        }
    }

    /// The frame's bytes; `parse(&f.emit()) == Some(f)`.
    pub fn emit(&self) -> [u8; FRAME_LEN] {
        let mut b = [0u8; FRAME_LEN];
        b[0..6].copy_from_slice(&self.eth_dst.0);
        b[6..12].copy_from_slice(&self.eth_src.0);
        b[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
        b[14..16].copy_from_slice(&1u16.to_be_bytes());
        b[16..18].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        b[18] = 6;
        b[19] = 4;
        b[20..22].copy_from_slice(&self.op.to_be_bytes());
        b[22..28].copy_from_slice(&self.sender_mac.0);
        b[28..32].copy_from_slice(&self.sender_ip.octets());
        b[32..38].copy_from_slice(&self.target_mac.0);
        b[38..42].copy_from_slice(&self.target_ip.octets());
        b
    }

    /// Whether this is a reply to a request we sent from `our_mac`/`our_ip`.
    pub fn is_reply_to(&self, our_mac: &Mac, our_ip: Ipv4Addr) -> bool {
        self.op == OP_REPLY && self.target_ip == our_ip && self.target_mac == *our_mac && self.eth_dst == *our_mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OURS: Mac = Mac([0x02, 0x6b, 0x68, 0x01, 0x00, 0x0a]);
    const THEIRS: Mac = Mac([0x02, 0x6b, 0x68, 0x01, 0x00, 0x15]);

    fn reply() -> ArpFrame {
        ArpFrame {
            eth_dst: OURS,
            eth_src: THEIRS,
            op: OP_REPLY,
            sender_mac: THEIRS,
            sender_ip: Ipv4Addr::new(10, 1, 0, 21),
            target_mac: OURS,
            target_ip: Ipv4Addr::new(10, 1, 0, 10),
        }
    }

    #[test]
    fn emit_and_parse_are_a_pair() {
        let req = ArpFrame::request(OURS, Ipv4Addr::new(10, 1, 0, 10), Ipv4Addr::new(10, 1, 0, 21));
        assert_eq!(ArpFrame::parse(&req.emit()), Some(req));
        let r = reply();
        assert_eq!(ArpFrame::parse(&r.emit()), Some(r));
    }

    #[test]
    fn a_fixed_captured_reply_parses() {
        // An ARP reply as captured (with 18 bytes of Ethernet padding).
        let mut bytes = vec![
            0x02, 0x6b, 0x68, 0x01, 0x00, 0x0a, 0x02, 0x6b, 0x68, 0x01, 0x00, 0x15, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00,
            0x06, 0x04, 0x00, 0x02, 0x02, 0x6b, 0x68, 0x01, 0x00, 0x15, 10, 1, 0, 21, 0x02, 0x6b, 0x68, 0x01, 0x00,
            0x0a, 10, 1, 0, 10,
        ];
        bytes.extend_from_slice(&[0; 18]);
        let f = ArpFrame::parse(&bytes).expect("parses");
        assert!(f.is_reply_to(&OURS, Ipv4Addr::new(10, 1, 0, 10)));
        assert_eq!(f.sender_mac.to_string(), "02:6b:68:01:00:15");
    }

    #[test]
    fn truncated_or_foreign_frames_are_rejected() {
        let good = reply().emit();
        for n in 0..FRAME_LEN {
            assert_eq!(ArpFrame::parse(&good[..n]), None, "truncated to {n}");
        }
        let mut ipv4 = good;
        ipv4[13] = 0x00; // ethertype IPv4
        assert_eq!(ArpFrame::parse(&ipv4), None);
        let mut bad_op = good;
        bad_op[21] = 9;
        assert_eq!(ArpFrame::parse(&bad_op), None);
        let mut bad_len = good;
        bad_len[18] = 8;
        assert_eq!(ArpFrame::parse(&bad_len), None);
    }

    #[test]
    fn a_reply_to_someone_else_is_not_ours() {
        let mut r = reply();
        r.target_ip = Ipv4Addr::new(10, 1, 0, 99);
        assert!(!r.is_reply_to(&OURS, Ipv4Addr::new(10, 1, 0, 10)));
        let mut gratuitous = reply();
        gratuitous.op = OP_REQUEST;
        assert!(!gratuitous.is_reply_to(&OURS, Ipv4Addr::new(10, 1, 0, 10)));
    }
}

//! IPv4 packets (RFC 791): the header the agent writes for its probes (20 bytes, no
//! options, don't-fragment) and reads, with options, from answers.

use std::net::Ipv4Addr;

use super::{be16, checksum};

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
/// The header `emit` writes: no options.
pub const HEADER_LEN: usize = 20;

/// Reads an IPv4 address at `at`; `None` past the end.
pub(crate) fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let o: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(o))
}

/// What an IPv4 header says (of what the agent reads or writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub protocol: u8,
    pub ttl: u8,
    pub ident: u16,
}

/// A checked view of an IPv4 packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub repr: Repr,
    /// The header's own length field, in bytes (20 to 60).
    pub header_len: usize,
    /// The total length field, as written (not checked against the bytes).
    pub total_len: u16,
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// A packet as received: version 4, a complete header; the payload ends at the total
    /// length (or at the end of the bytes, if that comes first). `None` otherwise.
    pub fn parse(b: &'a [u8]) -> Option<Packet<'a>> {
        let mut p = Packet::parse_quoted(b)?;
        let end = usize::from(p.total_len).min(b.len()).max(p.header_len);
        p.payload = b.get(p.header_len..end)?;
        Some(p)
    }

    /// The start of a packet as an ICMP error quotes it: the payload is everything after
    /// the header, whatever the total length says (the quote is cut short).
    pub fn parse_quoted(b: &'a [u8]) -> Option<Packet<'a>> {
        let first = *b.first()?;
        if first >> 4 != 4 {
            return None;
        }
        let header_len = usize::from(first & 0x0f) * 4;
        if header_len < HEADER_LEN || b.len() < header_len {
            return None;
        }
        Some(Packet {
            repr: Repr {
                src: ip_at(b, 12)?,
                dst: ip_at(b, 16)?,
                protocol: *b.get(9)?,
                ttl: *b.get(8)?,
                ident: be16(b, 4)?,
            },
            header_len,
            total_len: be16(b, 2)?,
            payload: b.get(header_len..)?,
        })
    }
}

impl Repr {
    /// A probe's header from the listener's documentation address to a LAN host, for tests.
    #[cfg(test)]
    pub(crate) fn example(protocol: u8) -> Repr {
        Repr {
            src: Ipv4Addr::new(203, 0, 113, 99),
            dst: Ipv4Addr::new(10, 2, 0, 23),
            protocol,
            ttl: 64,
            ident: 1,
        }
    }

    /// The packet around `payload`: a 20-byte header with don't-fragment set and its
    /// checksum. `Packet::parse` gives back `self` and `payload`.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let total = (HEADER_LEN + payload.len()) as u16;
        let mut h = Vec::with_capacity(usize::from(total));
        h.extend_from_slice(&[0x45, 0]);
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&self.ident.to_be_bytes());
        h.extend_from_slice(&[0x40, 0, self.ttl, self.protocol, 0, 0]);
        h.extend_from_slice(&self.src.octets());
        h.extend_from_slice(&self.dst.octets());
        let c = checksum(&[&h]);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// The pseudo-header of the UDP and TCP checksums for `len` bytes of transport.
    pub fn pseudo_header(&self, len: usize) -> [u8; 12] {
        let mut p = [0u8; 12];
        p[..4].copy_from_slice(&self.src.octets());
        p[4..8].copy_from_slice(&self.dst.octets());
        p[9] = self.protocol;
        p[10..12].copy_from_slice(&(len as u16).to_be_bytes());
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repr() -> Repr {
        Repr {
            src: Ipv4Addr::new(10, 2, 0, 23),
            dst: Ipv4Addr::new(203, 0, 113, 99),
            protocol: PROTO_UDP,
            ttl: 63,
            ident: 0x1234,
        }
    }

    #[test]
    fn emit_and_parse_are_a_pair_with_a_valid_checksum() {
        let bytes = repr().emit(&[9, 8, 7]);
        assert_eq!(checksum(&[&bytes[..HEADER_LEN]]), 0);
        let p = Packet::parse(&bytes).expect("parses");
        assert_eq!((p.repr, p.payload, p.header_len), (repr(), &[9u8, 8, 7][..], 20));
    }

    #[test]
    fn a_fixed_header_with_options_and_padding_parses() {
        // IHL 6 (one option word), total length 26, then 2 bytes of link padding.
        let mut b = vec![0x46, 0, 0, 26, 0, 1, 0x40, 0, 64, 1, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2];
        b.extend_from_slice(&[1, 1, 1, 1, 0xaa, 0xbb, 0, 0]);
        let p = Packet::parse(&b).expect("parses");
        assert_eq!((p.header_len, p.payload), (24, &[0xaa, 0xbb][..]));
        assert_eq!(
            Packet::parse_quoted(&b).expect("quoted").payload,
            &[0xaa, 0xbb, 0, 0][..]
        );
    }

    #[test]
    fn truncated_or_foreign_packets_are_rejected() {
        let good = repr().emit(&[]);
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::parse(&good[..n]), None, "truncated to {n}");
        }
        let mut v6 = good.clone();
        v6[0] = 0x65;
        assert_eq!(Packet::parse(&v6), None);
        let mut short_ihl = good.clone();
        short_ihl[0] = 0x44;
        assert_eq!(Packet::parse(&short_ihl), None);
        let mut long_ihl = good;
        long_ihl[0] = 0x4f;
        assert_eq!(Packet::parse(&long_ihl), None);
    }
}

//! UDP datagrams (RFC 768).

use super::{be16, checksum, ipv4};

pub const HEADER_LEN: usize = 8;

/// A UDP header's ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
}

/// A checked view of a UDP datagram (or of the start of one, as an ICMP error quotes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<'a> {
    pub repr: Repr,
    /// The length field, as written.
    pub len: u16,
    /// Everything after the header (the length field is not applied: a quote is short).
    pub payload: &'a [u8],
}

impl<'a> Packet<'a> {
    /// `None` when shorter than a header.
    pub fn parse(b: &'a [u8]) -> Option<Packet<'a>> {
        Some(Packet {
            repr: Repr {
                src_port: be16(b, 0)?,
                dst_port: be16(b, 2)?,
            },
            len: be16(b, 4)?,
            payload: b.get(HEADER_LEN..)?,
        })
    }
}

impl Repr {
    /// The datagram around `payload`, with its checksum over `ip`'s pseudo-header.
    pub fn emit(&self, ip: &ipv4::Repr, payload: &[u8]) -> Vec<u8> {
        let len = HEADER_LEN + payload.len();
        let mut u = Vec::with_capacity(len);
        u.extend_from_slice(&self.src_port.to_be_bytes());
        u.extend_from_slice(&self.dst_port.to_be_bytes());
        u.extend_from_slice(&(len as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend_from_slice(payload);
        let c = checksum(&[&ip.pseudo_header(len), &u]);
        // Zero means "no checksum" in UDP; its one's complement twin stands in.
        u[6..8].copy_from_slice(&(if c == 0 { 0xffff } else { c }).to_be_bytes());
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_parse_are_a_pair_with_a_valid_checksum() {
        let ip = ipv4::Repr::example(ipv4::PROTO_UDP);
        let r = Repr {
            src_port: 0xc001,
            dst_port: 33434,
        };
        let bytes = r.emit(&ip, b"payload");
        assert_eq!(checksum(&[&ip.pseudo_header(bytes.len()), &bytes]), 0);
        let p = Packet::parse(&bytes).expect("parses");
        assert_eq!((p.repr, p.len, p.payload), (r, 15, &b"payload"[..]));
        for n in 0..HEADER_LEN {
            assert_eq!(Packet::parse(&bytes[..n]), None, "truncated to {n}");
        }
    }
}

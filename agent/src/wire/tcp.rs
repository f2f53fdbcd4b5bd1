//! TCP segments (RFC 9293): the SYN the leak probes send and the SYN-ACK or RST that
//! answers it. Options are neither written nor read.

use super::{be16, be32, checksum, ipv4};

/// A header without options.
pub const HEADER_LEN: usize = 20;
pub const FIN: u8 = 0x01;
pub const SYN: u8 = 0x02;
pub const RST: u8 = 0x04;
pub const ACK: u8 = 0x10;

/// What a TCP header says (of what the agent reads or writes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub src_port: u16,
    pub dst_port: u16,
    pub seq: u32,
    pub ack: u32,
    /// The flag bits of byte 13 (FIN, SYN, RST, PSH, ACK, URG, ECE, CWR).
    pub flags: u8,
    pub window: u16,
}

impl Repr {
    /// `None` when shorter than a header without options.
    pub fn parse(b: &[u8]) -> Option<Repr> {
        if b.len() < HEADER_LEN {
            return None;
        }
        Some(Repr {
            src_port: be16(b, 0)?,
            dst_port: be16(b, 2)?,
            seq: be32(b, 4)?,
            ack: be32(b, 8)?,
            flags: *b.get(13)?,
            window: be16(b, 14)?,
        })
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// The 20-byte segment (no options, no data) with its checksum over `ip`'s
    /// pseudo-header; `parse` gives back `self`.
    pub fn emit(&self, ip: &ipv4::Repr) -> Vec<u8> {
        let mut t = Vec::with_capacity(HEADER_LEN);
        t.extend_from_slice(&self.src_port.to_be_bytes());
        t.extend_from_slice(&self.dst_port.to_be_bytes());
        t.extend_from_slice(&self.seq.to_be_bytes());
        t.extend_from_slice(&self.ack.to_be_bytes());
        t.extend_from_slice(&[0x50, self.flags]); // 5 words
        t.extend_from_slice(&self.window.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent pointer
        let c = checksum(&[&ip.pseudo_header(t.len()), &t]);
        t[16..18].copy_from_slice(&c.to_be_bytes());
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emit_and_parse_are_a_pair_with_a_valid_checksum() {
        let ip = ipv4::Repr::example(ipv4::PROTO_TCP);
        let r = Repr {
            src_port: 0xc123,
            dst_port: 443,
            seq: 0xdead_beef,
            ack: 0,
            flags: SYN,
            window: 1024,
        };
        let bytes = r.emit(&ip);
        assert_eq!(checksum(&[&ip.pseudo_header(bytes.len()), &bytes]), 0);
        assert_eq!(Repr::parse(&bytes), Some(r));
        assert!(r.has(SYN) && !r.has(ACK));
        for n in 0..HEADER_LEN {
            assert_eq!(Repr::parse(&bytes[..n]), None, "truncated to {n}");
        }
    }
}

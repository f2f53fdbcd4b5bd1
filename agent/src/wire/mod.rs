//! Wire formats the agent sends and receives raw: Ethernet, ARP, IPv4, ICMP, UDP and TCP,
//! each a checked view with a parse/emit pair (smoltcp's `wire` style).
//!
//! Every `parse` is the one checked constructor of its type: it takes any bytes and gives
//! `None` unless they hold a complete header of that kind, and after it no accessor can
//! fail. Every `emit` writes what `parse` reads back. [`reply`] combines the layers into
//! the answers a leak probe can get; it is the one parser exposed to internet traffic and
//! is fuzzed by `agent/fuzz` (`reply_parse`), like [`arp`] (`arp_parse`).

pub mod arp;
pub mod ethernet;
pub mod icmp;
pub mod ipv4;
pub mod reply;
pub mod tcp;
pub mod udp;

pub use ethernet::Mac;

/// The Internet checksum (RFC 1071) over the concatenation of `parts`.
pub fn checksum(parts: &[&[u8]]) -> u16 {
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

/// Reads a big-endian `u16` at `at`; `None` past the end.
fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(at..at + 2)?.try_into().ok()?))
}

/// Reads a big-endian `u32` at `at`; `None` past the end.
fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_packet_with_its_checksum_is_zero() {
        // RFC 1071's example words, then the same with their checksum appended.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        let c = checksum(&[&data]);
        assert_eq!(c, 0x220d);
        assert_eq!(checksum(&[&data, &c.to_be_bytes()]), 0);
        // An odd split between parts does not change the sum.
        assert_eq!(checksum(&[&data[..3], &data[3..]]), c);
    }
}

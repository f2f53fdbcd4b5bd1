//! Ethernet II frames and the MAC address: the agent's one representation of a MAC.

use std::fmt;
use std::str::FromStr;

use super::be16;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
/// Destination, source, ethertype.
pub const HEADER_LEN: usize = 14;

/// A MAC address. Displays as `02:6b:68:01:00:0a`, parses from that (or with `-`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    pub const BROADCAST: Mac = Mac([0xff; 6]);
    pub const ZERO: Mac = Mac([0; 6]);

    pub fn octets(&self) -> [u8; 6] {
        self.0
    }

    /// The first three bytes: the vendor's OUI.
    pub fn oui(&self) -> [u8; 3] {
        [self.0[0], self.0[1], self.0[2]]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = &self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// Not six hexadecimal bytes separated by `:` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("“{0}” 不是 MAC 地址 (not a MAC address)")]
pub struct BadMac(pub String);

impl FromStr for Mac {
    type Err = BadMac;

    fn from_str(s: &str) -> Result<Mac, BadMac> {
        let v: Vec<u8> = s
            .split([':', '-'])
            .map(|h| u8::from_str_radix(h, 16))
            .collect::<Result<_, _>>()
            .map_err(|_| BadMac(s.to_string()))?;
        v.try_into().map(Mac).map_err(|_| BadMac(s.to_string()))
    }
}

impl From<[u8; 6]> for Mac {
    fn from(o: [u8; 6]) -> Mac {
        Mac(o)
    }
}

/// Reads a MAC at `at`; `None` past the end.
pub(crate) fn mac_at(b: &[u8], at: usize) -> Option<Mac> {
    Some(Mac(b.get(at..at + 6)?.try_into().ok()?))
}

/// An Ethernet II frame's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repr {
    pub dst: Mac,
    pub src: Mac,
    pub ethertype: u16,
}

/// A checked view of an Ethernet II frame: its header and what it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame<'a> {
    pub repr: Repr,
    pub payload: &'a [u8],
}

impl<'a> Frame<'a> {
    /// `None` when shorter than a header.
    pub fn parse(b: &'a [u8]) -> Option<Frame<'a>> {
        Some(Frame {
            repr: Repr {
                dst: mac_at(b, 0)?,
                src: mac_at(b, 6)?,
                ethertype: be16(b, 12)?,
            },
            payload: b.get(HEADER_LEN..)?,
        })
    }
}

impl Repr {
    /// The frame around `payload`; `Frame::parse` gives back `self` and `payload`.
    pub fn emit(&self, payload: &[u8]) -> Vec<u8> {
        let mut f = Vec::with_capacity(HEADER_LEN + payload.len());
        f.extend_from_slice(&self.dst.0);
        f.extend_from_slice(&self.src.0);
        f.extend_from_slice(&self.ethertype.to_be_bytes());
        f.extend_from_slice(payload);
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_prints_and_parses_as_a_pair() {
        let m = Mac([0x02, 0x6b, 0x68, 0x01, 0x00, 0x0a]);
        assert_eq!(m.to_string(), "02:6b:68:01:00:0a");
        assert_eq!("02:6b:68:01:00:0a".parse(), Ok(m));
        assert_eq!("02-6B-68-01-00-0A".parse(), Ok(m));
        for bad in [
            "",
            "02:6b:68:01:00",
            "02:6b:68:01:00:0a:01",
            "zz:6b:68:01:00:0a",
            "00:00:00:00:00:00:",
        ] {
            assert!(bad.parse::<Mac>().is_err(), "{bad}");
        }
    }

    #[test]
    fn emit_and_parse_are_a_pair() {
        let r = Repr {
            dst: Mac::BROADCAST,
            src: Mac([2, 0, 0, 0, 0, 1]),
            ethertype: ETHERTYPE_IPV4,
        };
        let bytes = r.emit(&[1, 2, 3]);
        let f = Frame::parse(&bytes).expect("parses");
        assert_eq!((f.repr, f.payload), (r, &[1u8, 2, 3][..]));
        for n in 0..HEADER_LEN {
            assert_eq!(Frame::parse(&bytes[..n]), None, "truncated to {n}");
        }
    }
}

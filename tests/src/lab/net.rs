//! Small address types the lab description is written in: an IPv4 interface
//! address with its prefix length, and a MAC address.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 address with a prefix length, as `ip addr add` takes it (`10.1.0.21/24`).
/// Also used for plain prefixes (`10.0.0.0/8`), where the host bits are zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Net {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Ipv4Net {
    pub fn new(addr: Ipv4Addr, len: u8) -> Option<Ipv4Net> {
        (len <= 32).then_some(Ipv4Net { addr, len })
    }

    fn mask(self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(self.len))
        }
    }

    /// The network this address lies in, host bits cleared.
    pub fn network(self) -> Ipv4Net {
        Ipv4Net {
            addr: Ipv4Addr::from(u32::from(self.addr) & self.mask()),
            len: self.len,
        }
    }

    pub fn contains(self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.addr) & self.mask()
    }

    /// Whether two prefixes share any address.
    pub fn overlaps(self, other: Ipv4Net) -> bool {
        self.contains(other.addr) || other.contains(self.addr)
    }

    /// The `index`-th subnet of length `len` inside this prefix.
    pub fn subnet(self, len: u8, index: u32) -> Option<Ipv4Net> {
        if len < self.len || len > 32 {
            return None;
        }
        let count = 1u64 << (len - self.len);
        if u64::from(index) >= count {
            return None;
        }
        let size = 1u64 << (32 - len);
        let base = u64::from(u32::from(self.network().addr)) + u64::from(index) * size;
        let base = u32::try_from(base).ok()?;
        Some(Ipv4Net {
            addr: Ipv4Addr::from(base),
            len,
        })
    }

    /// The `n`-th address of this prefix (0 = the network address).
    pub fn nth(self, n: u32) -> Option<Ipv4Addr> {
        let size = if self.len == 0 {
            u64::from(u32::MAX) + 1
        } else {
            1u64 << (32 - self.len)
        };
        if u64::from(n) >= size {
            return None;
        }
        Some(Ipv4Addr::from(u32::from(self.network().addr).checked_add(n)?))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl FromStr for Ipv4Net {
    type Err = String;

    fn from_str(s: &str) -> Result<Ipv4Net, String> {
        let (addr, len) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/LENGTH"))?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| format!("{addr:?} is not an IPv4 address"))?;
        let len: u8 = len.parse().map_err(|_| format!("{len:?} is not a prefix length"))?;
        Ipv4Net::new(addr, len).ok_or_else(|| format!("prefix length {len} is over 32"))
    }
}

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// The lab's locally administered MACs all start with `02:6b:68` ("kh").
    /// `kind` says what the interface is (see `model.rs`), `a` and `b` number it.
    pub fn lab(kind: u8, a: u8, b: u8) -> Mac {
        Mac([0x02, 0x6b, 0x68, kind, a, b])
    }

    pub fn is_locally_administered(self) -> bool {
        self.0[0] & 0x02 != 0 && self.0[0] & 0x01 == 0
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(format!("{s:?} is not a MAC address like 02:6b:68:00:01:00"));
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err(format!("{s:?} is not a MAC address like 02:6b:68:00:01:00"));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| format!("{s:?} has a bad byte {part:?}"))?;
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_contain_and_split() {
        let net: Ipv4Net = "10.255.255.0/24".parse().expect("valid");
        let slot = net.subnet(30, 3).expect("in range");
        assert_eq!(slot.to_string(), "10.255.255.12/30");
        assert_eq!(slot.nth(1), Some(Ipv4Addr::new(10, 255, 255, 13)));
        assert!(net.contains(Ipv4Addr::new(10, 255, 255, 200)));
        assert!(!net.contains(Ipv4Addr::new(10, 255, 254, 1)));
        assert!(net.subnet(30, 64).is_none());
        let host: Ipv4Net = "10.1.0.21/24".parse().expect("valid");
        assert_eq!(host.network().to_string(), "10.1.0.0/24");
        assert!("10.1.0.21/33".parse::<Ipv4Net>().is_err());
    }

    #[test]
    fn macs_round_trip() {
        let mac = Mac::lab(0, 7, 1);
        assert_eq!(mac.to_string(), "02:6b:68:00:07:01");
        assert_eq!("02:6b:68:00:07:01".parse::<Mac>(), Ok(mac));
        assert!(mac.is_locally_administered());
        assert!("02:6b:68:00:07".parse::<Mac>().is_err());
    }
}

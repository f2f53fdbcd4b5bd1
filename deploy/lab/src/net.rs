//! The address types the lab description is written in: IPv4 interface addresses and
//! prefixes are [`ipnet::Ipv4Net`] (`10.1.0.21/24`, `10.0.0.0/8`), and a MAC is [`Mac`],
//! the lab's one representation of it.

use std::fmt;
use std::str::FromStr;

pub use ipnet::Ipv4Net;

/// A MAC address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mac(pub [u8; 6]);

/// A text that is not a MAC address like `02:6b:68:00:01:00`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a MAC address like 02:6b:68:00:01:00")]
pub struct MacParseError(pub String);

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
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Mac, MacParseError> {
        let bad = || MacParseError(s.to_string());
        let parts: Vec<&str> = s.split(':').collect();
        if parts.len() != 6 {
            return Err(bad());
        }
        let mut out = [0u8; 6];
        for (slot, part) in out.iter_mut().zip(&parts) {
            if part.len() != 2 {
                return Err(bad());
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        Ok(Mac(out))
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn prefixes_contain_and_split() {
        // What the lab asks of ipnet: a /30 slot of the root pool and its two hosts,
        // containment, the network of an interface address, and no /33.
        let net: Ipv4Net = "10.255.255.0/24".parse().expect("valid");
        let slot = net.subnets(30).expect("longer").nth(3).expect("in range");
        assert_eq!(slot.to_string(), "10.255.255.12/30");
        assert_eq!(slot.hosts().next(), Some(Ipv4Addr::new(10, 255, 255, 13)));
        assert!(net.contains(&Ipv4Addr::new(10, 255, 255, 200)));
        assert!(!net.contains(&Ipv4Addr::new(10, 255, 254, 1)));
        assert!(net.subnets(30).expect("longer").nth(64).is_none());
        let host: Ipv4Net = "10.1.0.21/24".parse().expect("valid");
        assert_eq!(host.trunc().to_string(), "10.1.0.0/24");
        assert_eq!(host.to_string(), "10.1.0.21/24");
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

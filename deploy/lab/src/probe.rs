//! [`Probe`]: what a test asks a lab host to send, and what came of it.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Icmp {
        addr: Ipv4Addr,
        count: u32,
        timeout: Duration,
    },
    Tcp {
        addr: SocketAddrV4,
        timeout: Duration,
    },
    Dns {
        addr: SocketAddrV4,
        timeout: Duration,
    },
}

impl Probe {
    /// One echo request, 1 s to answer.
    pub fn icmp(addr: Ipv4Addr) -> Probe {
        Probe::Icmp {
            addr,
            count: 1,
            timeout: Duration::from_secs(1),
        }
    }

    pub fn tcp(addr: Ipv4Addr, port: u16) -> Probe {
        Probe::Tcp {
            addr: SocketAddrV4::new(addr, port),
            timeout: Duration::from_secs(1),
        }
    }

    pub fn dns(addr: Ipv4Addr) -> Probe {
        Probe::Dns {
            addr: SocketAddrV4::new(addr, 53),
            timeout: Duration::from_secs(1),
        }
    }

    /// The same probe with another timeout (per attempt).
    pub fn with_timeout(self, t: Duration) -> Probe {
        match self {
            Probe::Icmp { addr, count, .. } => Probe::Icmp {
                addr,
                count,
                timeout: t,
            },
            Probe::Tcp { addr, .. } => Probe::Tcp { addr, timeout: t },
            Probe::Dns { addr, .. } => Probe::Dns { addr, timeout: t },
        }
    }

    pub(crate) fn args(&self) -> Vec<String> {
        let ms = |t: &Duration| t.as_millis().to_string();
        match self {
            Probe::Icmp { addr, count, timeout } => {
                vec![
                    "icmp".into(),
                    addr.to_string(),
                    "--count".into(),
                    count.to_string(),
                    "--timeout-ms".into(),
                    ms(timeout),
                ]
            }
            Probe::Tcp { addr, timeout } => vec!["tcp".into(), addr.to_string(), "--timeout-ms".into(), ms(timeout)],
            Probe::Dns { addr, timeout } => vec!["dns".into(), addr.to_string(), "--timeout-ms".into(), ms(timeout)],
        }
    }
}

/// A probe's result: reached or not, and what happened, in words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOutcome {
    pub ok: bool,
    pub detail: String,
}

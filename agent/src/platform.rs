//! Everything the agent asks of the operating system about its own host, in one module
//! so that another platform (Windows) can follow: interfaces and their kinds, routes,
//! IP forwarding, the neighbour (ARP) table, host facts. Linux reads `/sys` and `/proc`
//! of the agent's network namespace.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use chrono::{DateTime, TimeZone, Utc};
use ipnet::IpNet;
use kaohe_rubric::evidence::{HostFacts, InterfaceKind};

use crate::wire::Mac;

/// A network interface of this host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iface {
    pub name: String,
    pub kind: InterfaceKind,
    pub up: bool,
    pub mac: Option<Mac>,
    pub addresses: Vec<IpNet>,
}

/// A route of the main table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteEntry {
    pub destination: IpNet,
    pub gateway: Option<IpAddr>,
    pub interface: String,
    pub metric: u32,
}

impl RouteEntry {
    pub fn is_default(&self) -> bool {
        self.destination.prefix_len() == 0
    }
}

/// The network state of this host as the self-check sees it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HostNet {
    pub interfaces: Vec<Iface>,
    pub routes: Vec<RouteEntry>,
    pub forwarding_v4: bool,
    pub forwarding_v6: bool,
}

/// Reads interfaces, routes and forwarding of the current network namespace.
pub fn host_net() -> HostNet {
    HostNet {
        interfaces: interfaces(),
        routes: routes(),
        forwarding_v4: read_flag("/proc/sys/net/ipv4/ip_forward"),
        forwarding_v6: read_flag("/proc/sys/net/ipv6/conf/all/forwarding"),
    }
}

fn read_flag(path: &str) -> bool {
    fs::read_to_string(path).is_ok_and(|s| s.trim() == "1")
}

fn read_trim(path: &Path) -> Option<String> {
    fs::read_to_string(path).ok().map(|s| s.trim().to_string())
}

/// The kind of an interface from its sysfs entries.
fn kind_of(dir: &Path, name: &str) -> InterfaceKind {
    let link_type = read_trim(&dir.join("type"))
        .and_then(|t| t.parse::<u32>().ok())
        .unwrap_or(0);
    let uevent = read_trim(&dir.join("uevent")).unwrap_or_default();
    let devtype = uevent
        .lines()
        .find_map(|l| l.strip_prefix("DEVTYPE="))
        .unwrap_or("")
        .to_string();
    match link_type {
        772 => return InterfaceKind::Loopback,
        512 => return InterfaceKind::Ppp,
        // ARPHRD_NONE (tun) and ARPHRD_RAWIP (many 4G modems).
        65534 if dir.join("tun_flags").exists() => return InterfaceKind::Tun,
        519 => return InterfaceKind::Mobile,
        _ => {}
    }
    if devtype == "wwan" || name.starts_with("wwan") || name.starts_with("usb") && devtype.is_empty() {
        return InterfaceKind::Mobile;
    }
    if devtype == "wlan" || dir.join("wireless").exists() || dir.join("phy80211").exists() {
        return InterfaceKind::Wireless;
    }
    if devtype == "bridge" || dir.join("bridge").exists() {
        return InterfaceKind::Bridge;
    }
    if dir.join("tun_flags").exists() {
        return InterfaceKind::Tun;
    }
    if devtype == "ppp" {
        return InterfaceKind::Ppp;
    }
    // A veth has no backing device and a peer: iflink differs from ifindex.
    let ifindex = read_trim(&dir.join("ifindex"));
    let iflink = read_trim(&dir.join("iflink"));
    if !dir.join("device").exists() && ifindex.is_some() && iflink.is_some() && ifindex != iflink {
        return InterfaceKind::Veth;
    }
    if link_type == 1 {
        InterfaceKind::Ethernet
    } else {
        InterfaceKind::Other
    }
}

/// Interfaces of the current network namespace with their addresses.
pub fn interfaces() -> Vec<Iface> {
    let networks = sysinfo::Networks::new_with_refreshed_list();
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir("/sys/class/net") else {
        return out;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let dir = Path::new("/sys/class/net").join(&name);
        let flags = read_trim(&dir.join("flags"))
            .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0);
        let mac = read_trim(&dir.join("address"))
            .and_then(|m| m.parse::<Mac>().ok())
            .filter(|m| *m != Mac::ZERO);
        let addresses = networks
            .get(&name)
            .map(|n| {
                n.ip_networks()
                    .iter()
                    .filter_map(|ipn| IpNet::new(ipn.addr, ipn.prefix).ok())
                    .collect()
            })
            .unwrap_or_default();
        out.push(Iface {
            kind: kind_of(&dir, &name),
            name,
            up: flags & 1 == 1,
            mac,
            addresses,
        });
    }
    out
}

/// IPv4 and IPv6 routes of the main table (`/proc/net/route`, `/proc/net/ipv6_route`).
pub fn routes() -> Vec<RouteEntry> {
    let mut out = fs::read_to_string("/proc/net/route")
        .map(|t| parse_route_v4(&t))
        .unwrap_or_default();
    out.extend(
        fs::read_to_string("/proc/net/ipv6_route")
            .map(|t| parse_route_v6(&t))
            .unwrap_or_default(),
    );
    out
}

/// Parses `/proc/net/route`: little-endian hex addresses, RTF_UP = 1, RTF_GATEWAY = 2.
pub fn parse_route_v4(text: &str) -> Vec<RouteEntry> {
    let hex_ip = |s: &str| u32::from_str_radix(s, 16).ok().map(|v| Ipv4Addr::from(v.swap_bytes()));
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 8 {
                return None;
            }
            let flags = u32::from_str_radix(f[3], 16).ok()?;
            // Not up, or an unreachable/blackhole/prohibit route (RTF_REJECT): no path.
            if flags & 1 == 0 || flags & 0x0200 != 0 || f[0] == "*" {
                return None;
            }
            let dest = hex_ip(f[1])?;
            let gw = hex_ip(f[2])?;
            let mask = hex_ip(f[7])?;
            let prefix = u32::from(mask).count_ones() as u8;
            Some(RouteEntry {
                destination: IpNet::new(IpAddr::V4(dest), prefix).ok()?.trunc(),
                gateway: (flags & 2 != 0).then_some(IpAddr::V4(gw)),
                interface: f[0].to_string(),
                metric: f[6].parse().unwrap_or(0),
            })
        })
        .collect()
}

/// Parses `/proc/net/ipv6_route`; skips the loopback device and local/multicast entries.
pub fn parse_route_v6(text: &str) -> Vec<RouteEntry> {
    let hex6 = |s: &str| u128::from_str_radix(s, 16).ok().map(Ipv6Addr::from);
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[9] == "lo" {
                return None;
            }
            let dest = hex6(f[0])?;
            let prefix = u8::from_str_radix(f[1], 16).ok()?;
            let gw = hex6(f[4])?;
            let flags = u32::from_str_radix(f[8], 16).ok()?;
            if flags & 1 == 0 || flags & 0x0200 != 0 || dest.segments()[0] & 0xff00 == 0xff00 {
                return None;
            }
            Some(RouteEntry {
                destination: IpNet::new(IpAddr::V6(dest), prefix).ok()?,
                gateway: (flags & 2 != 0 && !gw.is_unspecified()).then_some(IpAddr::V6(gw)),
                interface: f[9].to_string(),
                metric: u32::from_str_radix(f[5], 16).unwrap_or(0),
            })
        })
        .collect()
}

/// One entry of the kernel's neighbour table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub ip: Ipv4Addr,
    pub mac: Mac,
    pub interface: String,
}

/// Complete entries of `/proc/net/arp` (flag ATF_COM = 0x2).
pub fn neighbours() -> Vec<Neighbour> {
    fs::read_to_string("/proc/net/arp")
        .map(|t| parse_arp_table(&t))
        .unwrap_or_default()
}

pub fn parse_arp_table(text: &str) -> Vec<Neighbour> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 6 {
                return None;
            }
            let flags = u32::from_str_radix(f[2].trim_start_matches("0x"), 16).ok()?;
            let mac: Mac = f[3].parse().ok()?;
            if flags & 0x2 == 0 || mac == Mac::ZERO {
                return None;
            }
            Some(Neighbour {
                ip: f[0].parse().ok()?,
                mac,
                interface: f[5].to_string(),
            })
        })
        .collect()
}

/// Hostname, OS, boot time and agent version.
pub fn host_facts(agent_started_at: DateTime<Utc>) -> HostFacts {
    let boot = sysinfo::System::boot_time();
    HostFacts {
        hostname: sysinfo::System::host_name().unwrap_or_else(|| "unknown".into()),
        os: sysinfo::System::long_os_version().unwrap_or_else(|| std::env::consts::OS.into()),
        boot_time: Utc
            .timestamp_opt(i64::try_from(boot).unwrap_or(0), 0)
            .single()
            .filter(|_| boot > 0),
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        agent_started_at: Some(agent_started_at),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_route() {
        let text = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n\
                    eth0\t00000000\t0100010A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n\
                    eth0\t0000010A\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n\
                    wwan0\t00000000\t016433C6\t0003\t0\t0\t50\t00000000\t0\t0\t0\n";
        let r = parse_route_v4(text);
        assert_eq!(r.len(), 3);
        assert!(r[0].is_default());
        assert_eq!(r[0].gateway, Some("10.1.0.1".parse().expect("ip")));
        assert_eq!(r[1].destination.to_string(), "10.1.0.0/24");
        assert_eq!(r[1].gateway, None);
        assert_eq!((r[2].interface.as_str(), r[2].metric), ("wwan0", 50));
        // `ip route add unreachable default`: flags RTF_UP|RTF_REJECT, interface `*`.
        let hardened = "Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n\
                        *\t00000000\t00000000\t0201\t0\t0\t4278198272\t00000000\t0\t0\t0\n";
        assert!(
            parse_route_v4(hardened).is_empty(),
            "an unreachable default route is no path"
        );
        assert_eq!(r[2].gateway, Some("198.51.100.1".parse().expect("ip")));
    }

    #[test]
    fn parses_proc_net_arp_and_skips_incomplete_entries() {
        let text = "IP address       HW type     Flags       HW address            Mask     Device\n\
                    10.1.0.21        0x1         0x2         02:6b:68:01:00:15     *        eth0\n\
                    10.1.0.40        0x1         0x0         00:00:00:00:00:00     *        eth0\n";
        let n = parse_arp_table(text);
        assert_eq!(n.len(), 1);
        assert_eq!(n[0].mac.to_string(), "02:6b:68:01:00:15");
    }

    #[test]
    fn truncated_proc_lines_are_ignored() {
        assert!(parse_route_v4("Iface\nx y\n").is_empty());
        assert!(parse_route_v6("zz 40\n").is_empty());
        assert!(parse_arp_table("h\n1.2.3\n").is_empty());
    }
}

/// A raw Ethernet channel that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RawError {
    #[error("不支持的链路类型 (unsupported channel type)")]
    Unsupported,
    #[error("无法在 {iface} 上{doing}, 需要 CAP_NET_RAW (cannot open a raw channel): {source}")]
    Open {
        iface: String,
        /// What the channel was for, in Chinese ("收发 ARP").
        doing: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("读取 {iface} 失败 (receive failed): {source}")]
    Receive {
        iface: String,
        #[source]
        source: std::io::Error,
    },
}

/// The two ends of a raw Ethernet channel.
pub type RawChannel = (
    Box<dyn pnet_datalink::DataLinkSender>,
    Box<dyn pnet_datalink::DataLinkReceiver>,
);

/// Opens a raw Ethernet channel on `iface` whose reads wait at most `read_timeout`;
/// `doing` says what for in the error. Needs CAP_NET_RAW.
pub fn raw_channel(
    iface: &pnet_datalink::NetworkInterface,
    read_timeout: std::time::Duration,
    doing: &'static str,
) -> Result<RawChannel, RawError> {
    let config = pnet_datalink::Config {
        read_timeout: Some(read_timeout),
        ..pnet_datalink::Config::default()
    };
    match pnet_datalink::channel(iface, config) {
        Ok(pnet_datalink::Channel::Ethernet(tx, rx)) => Ok((tx, rx)),
        Ok(_) => Err(RawError::Unsupported),
        Err(source) => Err(RawError::Open {
            iface: iface.name.clone(),
            doing,
            source,
        }),
    }
}

/// The next frame from `rx`, or `None` when its read timed out.
pub fn next_frame<'a>(
    rx: &'a mut dyn pnet_datalink::DataLinkReceiver,
    iface: &str,
) -> Result<Option<&'a [u8]>, RawError> {
    match rx.next() {
        Ok(f) => Ok(Some(f)),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock) => Ok(None),
        Err(source) => Err(RawError::Receive {
            iface: iface.to_string(),
            source,
        }),
    }
}

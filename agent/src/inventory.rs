//! LAN inventory (二.1, 三.4): an active ARP sweep of the configured prefixes, passive ARP
//! heard meanwhile, and the kernel's neighbour table; each device with ip, mac and vendor.
//!
//! Polite by default (at most `max_pps` requests a second) yet fast: after the last
//! request the sweep waits only a few times the longest round trip it has observed,
//! instead of a fixed long timeout. Replies count only when they answer a request we
//! sent (right target ip and mac, from an address we asked about); anything else on the
//! wire is at most a passive sighting, and malformed frames are dropped.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use ipnet::Ipv4Net;
use kaohe_rubric::evidence::{HowSeen, Observation};

use crate::platform::{self, RawError};
use crate::wire::Mac;
use crate::wire::arp::{ArpFrame, OP_REQUEST};

/// Where Debian's `ieee-data` package keeps the IEEE OUI registry.
pub const OUI_FILE: &str = "/usr/share/ieee-data/oui.txt";
/// Shortest and longest wait after the last request.
const MIN_WAIT: Duration = Duration::from_millis(20);
const MAX_WAIT: Duration = Duration::from_secs(1);
/// Wait when nothing has answered yet, so no round trip is known.
const BLIND_WAIT: Duration = Duration::from_millis(500);

/// Figures of one sweep, for logs and the benchmark.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SweepStats {
    pub requests: usize,
    pub replies: usize,
    pub max_rtt: Duration,
    pub elapsed: Duration,
}

/// What a sweep found: ip → (mac, how).
#[derive(Debug, Default)]
pub struct Found {
    pub devices: BTreeMap<Ipv4Addr, (Mac, Vec<HowSeen>)>,
    pub stats: SweepStats,
}

impl Found {
    fn add(&mut self, ip: Ipv4Addr, mac: Mac, how: HowSeen) {
        let entry = self.devices.entry(ip).or_insert((mac, Vec::new()));
        if how == HowSeen::ArpSweep {
            entry.0 = mac; // an answer to our own request beats hearsay
        }
        if !entry.1.contains(&how) {
            entry.1.push(how);
            entry.1.sort();
        }
    }
}

/// Why a prefix cannot be swept (or probed for leaks).
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    #[error("接口 {0} 不存在或没有 IPv4 地址 (interface {0} not found or has no IPv4 address)")]
    NoInterface(String),
    #[error("本机没有位于 {0} 的地址, 无法清点该网段 (no local address in {0})")]
    NoLocalAddress(Ipv4Net),
    #[error("接口 {0} 没有 MAC 地址 (no MAC)")]
    NoMac(String),
    #[error(transparent)]
    Raw(#[from] RawError),
}

/// Where the agent stands on a prefix: the interface, its MAC and its IPv4 address.
#[derive(Debug, Clone)]
pub struct LocalSide {
    pub iface: pnet_datalink::NetworkInterface,
    pub mac: Mac,
    pub ip: Ipv4Addr,
}

/// The interface, MAC and IPv4 address from which to sweep `prefix`.
pub fn local_side(prefix: &Ipv4Net, name: Option<&str>) -> Result<LocalSide, InventoryError> {
    let ifaces = pnet_datalink::interfaces();
    let pick = ifaces.into_iter().find_map(|i| {
        if name.is_some_and(|n| n != i.name) {
            return None;
        }
        let ip = i.ips.iter().find_map(|n| match n.ip() {
            IpAddr::V4(v4) if prefix.contains(&v4) || name.is_some() => Some(v4),
            _ => None,
        })?;
        Some((i, ip))
    });
    let (iface, ip) = pick.ok_or_else(|| match name {
        Some(n) => InventoryError::NoInterface(n.to_string()),
        None => InventoryError::NoLocalAddress(*prefix),
    })?;
    let mac = iface
        .mac
        .map(|m| Mac(m.octets()))
        .ok_or_else(|| InventoryError::NoMac(iface.name.clone()))?;
    Ok(LocalSide { iface, mac, ip })
}

/// Sweeps one prefix. Blocking: run it on a blocking thread.
pub fn sweep(prefix: &Ipv4Net, interface: Option<&str>, max_pps: u32, found: &mut Found) -> Result<(), InventoryError> {
    let LocalSide {
        iface,
        mac: our_mac,
        ip: our_ip,
    } = local_side(prefix, interface)?;
    let (mut tx, mut rx) = platform::raw_channel(&iface, Duration::from_millis(1), "收发 ARP")?;
    let targets: Vec<Ipv4Addr> = prefix.hosts().filter(|ip| *ip != our_ip).collect();
    let interval = Duration::from_secs_f64(1.0 / f64::from(max_pps.max(1)));
    let started = Instant::now();
    let mut sent_at: HashMap<Ipv4Addr, Instant> = HashMap::with_capacity(targets.len());
    let mut answered: HashSet<Ipv4Addr> = HashSet::new();
    let mut next = 0usize;
    let mut next_send = Instant::now();
    let mut last_send = Instant::now();
    let mut max_rtt = Duration::ZERO;
    loop {
        let now = Instant::now();
        // Every request now due leaves (the receive below may have waited up to its 1 ms
        // timeout), so the rate follows max_pps rather than the timeout.
        while next < targets.len() && Instant::now() >= next_send {
            let frame = ArpFrame::request(our_mac, our_ip, targets[next]).emit();
            if let Some(Err(e)) = tx.send_to(&frame, None) {
                tracing::debug!(error = %e, "ARP request not sent");
            }
            sent_at.insert(targets[next], Instant::now());
            last_send = Instant::now();
            next += 1;
            next_send += interval;
        }
        if next >= targets.len() {
            let wait = if answered.is_empty() {
                BLIND_WAIT
            } else {
                (max_rtt * 3).clamp(MIN_WAIT, MAX_WAIT)
            };
            if now >= last_send + wait {
                break;
            }
        }
        let Some(bytes) = platform::next_frame(&mut *rx, &iface.name)? else {
            continue;
        };
        let Some(f) = ArpFrame::parse(bytes) else { continue };
        if f.is_reply_to(&our_mac, our_ip) {
            if let Some(t0) = sent_at.get(&f.sender_ip)
                && answered.insert(f.sender_ip)
            {
                max_rtt = max_rtt.max(t0.elapsed());
                found.add(f.sender_ip, f.sender_mac, HowSeen::ArpSweep);
            }
        } else if f.sender_ip != our_ip
            && !f.sender_ip.is_unspecified()
            && prefix.contains(&f.sender_ip)
            && (f.op == OP_REQUEST || f.target_ip != our_ip)
        {
            found.add(f.sender_ip, f.sender_mac, HowSeen::PassiveArp);
        }
    }
    found.add(our_ip, our_mac, HowSeen::Local);
    let s = &mut found.stats;
    s.requests += targets.len();
    s.replies += answered.len();
    s.max_rtt = s.max_rtt.max(max_rtt);
    s.elapsed += started.elapsed();
    Ok(())
}

/// Adds the kernel's neighbour-table entries inside the prefixes.
pub fn add_neighbours(prefixes: &[Ipv4Net], found: &mut Found) {
    for n in platform::neighbours() {
        if prefixes.iter().any(|p| p.contains(&n.ip)) {
            found.add(n.ip, n.mac, HowSeen::NeighbourTable);
        }
    }
}

/// Looks up vendors in an OUI file in the IEEE format (`00-00-0C   (hex)\t\tCisco…`),
/// keeping only the prefixes asked for, so the registry never sits in memory whole.
pub fn vendors<R: BufRead>(oui_file: R, wanted: &HashSet<[u8; 3]>) -> HashMap<[u8; 3], String> {
    let mut out = HashMap::new();
    for line in oui_file.lines().map_while(Result::ok) {
        let Some((hex, rest)) = line.split_once("(hex)") else {
            continue;
        };
        let bytes: Vec<u8> = hex
            .trim()
            .split('-')
            .filter_map(|h| u8::from_str_radix(h, 16).ok())
            .collect();
        if let Ok(oui) = <[u8; 3]>::try_from(bytes.as_slice())
            && wanted.contains(&oui)
        {
            out.insert(oui, rest.trim().to_string());
            if out.len() == wanted.len() {
                break;
            }
        }
    }
    out
}

/// Turns what was found into observations, with vendors from the OUI file if present.
pub fn observations(found: &Found, at: DateTime<Utc>) -> Vec<Observation> {
    let wanted: HashSet<[u8; 3]> = found
        .devices
        .values()
        .map(|(m, _)| m.oui())
        .filter(|o| o[0] & 0x02 == 0) // locally administered MACs have no vendor
        .collect();
    let names = match std::fs::File::open(OUI_FILE) {
        Ok(f) if !wanted.is_empty() => vendors(BufReader::new(f), &wanted),
        _ => HashMap::new(),
    };
    found
        .devices
        .iter()
        .map(|(ip, (mac, how))| Observation {
            ip: ip.to_string(),
            mac: Some(mac.to_string()),
            vendor: names.get(&mac.oui()).cloned(),
            first_seen: at,
            last_seen: at,
            how: how.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendors_are_read_from_the_ieee_format_keeping_only_what_is_asked() {
        let file = "OUI/MA-L\t\t\tOrganization\n\
                    00-00-0C   (hex)\t\tCisco Systems, Inc\n\
                    00000C     (base 16)\t\tCisco Systems, Inc\n\
                    \n\
                    3C-D9-2B   (hex)\t\tHewlett Packard\n\
                    F4-F2-6D   (hex)\t\tTP-LINK TECHNOLOGIES CO.,LTD.\n";
        let wanted: HashSet<[u8; 3]> = [[0xf4, 0xf2, 0x6d], [0x00, 0x00, 0x0c]].into_iter().collect();
        let v = vendors(file.as_bytes(), &wanted);
        assert_eq!(v.len(), 2);
        assert_eq!(v[&[0xf4, 0xf2, 0x6d]], "TP-LINK TECHNOLOGIES CO.,LTD.");
        assert!(!v.contains_key(&[0x3c, 0xd9, 0x2b]));
    }

    #[test]
    fn an_answer_to_our_request_beats_hearsay() {
        let mut f = Found::default();
        let ip = Ipv4Addr::new(10, 1, 0, 21);
        f.add(ip, Mac([2, 0, 0, 0, 0, 1]), HowSeen::PassiveArp);
        f.add(ip, Mac([2, 0, 0, 0, 0, 2]), HowSeen::ArpSweep);
        let (mac, how) = &f.devices[&ip];
        assert_eq!(mac, &Mac([2, 0, 0, 0, 0, 2]));
        assert_eq!(how, &vec![HowSeen::ArpSweep, HowSeen::PassiveArp]);
    }

    #[test]
    fn debian_ieee_data_is_readable_when_installed() {
        let f = std::fs::File::open(OUI_FILE);
        let what = format!("{OUI_FILE} (apt-get install ieee-data)");
        if !kaohe_process::testing::require("debian_ieee_data_is_readable_when_installed", f.is_ok(), &what) {
            return;
        }
        let Ok(f) = f else { return };
        let wanted: HashSet<[u8; 3]> = [[0x00, 0x00, 0x0c]].into_iter().collect();
        let v = vendors(BufReader::new(f), &wanted);
        assert!(v.get(&[0x00, 0x00, 0x0c]).is_some_and(|n| n.contains("Cisco")), "{v:?}");
    }
}

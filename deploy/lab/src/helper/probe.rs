//! `probe icmp|tcp|dns`: one bounded probe from a lab host (the machines have no ping
//! or nc). Refuses to run outside a named namespace (the root namespace).

use std::io::{self, Read as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::{HelperError, io_error};
use crate::lab::unix_ms;
use crate::sys;

const MAX_COUNT: u32 = 100;
const MAX_TIMEOUT_MS: u64 = 10_000;

/// What to probe with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeKind {
    Icmp,
    Tcp,
    Dns,
}

/// `probe icmp ADDR [--count N] [--timeout-ms T]`, `probe tcp ADDR:PORT [--timeout-ms T]`,
/// `probe dns ADDR[:PORT] [--timeout-ms T]`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    /// icmp, tcp or dns
    pub kind: ProbeKind,
    /// ADDR (icmp), ADDR[:PORT] (tcp: 443, dns: 53)
    pub target: String,
    /// Attempts (1-100)
    #[arg(long, default_value_t = 1)]
    pub count: u32,
    /// Time to answer per attempt (1-10000 ms)
    #[arg(long, default_value_t = 1000)]
    pub timeout_ms: u64,
}

/// Runs a probe: whether the target answered, and what happened, in one line.
/// Refuses to run outside a named namespace (the root namespace).
pub fn probe(args: &ProbeArgs) -> Result<(bool, String), HelperError> {
    if !sys::in_named_netns() {
        return Err(HelperError::OutsideLab);
    }
    let target = args.target.as_str();
    let timeout_ms = args.timeout_ms;
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(HelperError::Usage(format!("--timeout-ms must be 1..={MAX_TIMEOUT_MS}")));
    }
    let timeout = Duration::from_millis(timeout_ms);
    let count = args.count;
    if count == 0 || count > MAX_COUNT {
        return Err(HelperError::Usage(format!("--count must be 1..={MAX_COUNT}")));
    }
    let not_ipv4 = || HelperError::Usage(format!("{target:?} is not an IPv4 address"));
    let with_port = |default: u16| -> Result<SocketAddrV4, HelperError> {
        target
            .parse::<SocketAddrV4>()
            .or_else(|_| target.parse::<Ipv4Addr>().map(|ip| SocketAddrV4::new(ip, default)))
            .map_err(|_| not_ipv4())
    };
    match args.kind {
        ProbeKind::Icmp => {
            let addr: Ipv4Addr = target.parse().map_err(|_| not_ipv4())?;
            icmp(addr, count, timeout)
        }
        ProbeKind::Tcp => Ok(tcp(with_port(443)?, count, timeout)),
        ProbeKind::Dns => dns(with_port(53)?, count, timeout),
    }
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    for pair in data.chunks(2) {
        let word = u16::from_be_bytes([pair[0], pair.get(1).copied().unwrap_or(0)]);
        sum += u32::from(word);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

fn echo_request(id: u16, seq: u16) -> Vec<u8> {
    let mut pkt = vec![8, 0, 0, 0];
    pkt.extend(id.to_be_bytes());
    pkt.extend(seq.to_be_bytes());
    pkt.extend(b"kaohe-lab probe.");
    let sum = checksum(&pkt);
    pkt[2..4].copy_from_slice(&sum.to_be_bytes());
    pkt
}

enum Answer {
    Echo,
    Error(String),
}

/// Reads an IPv4 packet from a raw ICMP socket: our echo reply, an ICMP error about
/// our request, or something else (None).
fn classify(packet: &[u8], target: Ipv4Addr, id: u16, seq: u16) -> Option<Answer> {
    let ihl = usize::from(packet.first()? & 0x0f) * 4;
    let src = Ipv4Addr::new(*packet.get(12)?, *packet.get(13)?, *packet.get(14)?, *packet.get(15)?);
    let icmp = packet.get(ihl..)?;
    let ours = |b: &[u8]| b.get(4..6) == Some(&id.to_be_bytes()[..]) && b.get(6..8) == Some(&seq.to_be_bytes()[..]);
    match *icmp.first()? {
        0 if src == target && ours(icmp) => Some(Answer::Echo),
        t @ (3 | 11) => {
            let inner = icmp.get(8..)?;
            let inner_ihl = usize::from(inner.first()? & 0x0f) * 4;
            let inner_dst = Ipv4Addr::new(*inner.get(16)?, *inner.get(17)?, *inner.get(18)?, *inner.get(19)?);
            let inner_icmp = inner.get(inner_ihl..)?;
            if inner_dst != target || inner_icmp.first() != Some(&8) || !ours(inner_icmp) {
                return None;
            }
            let code = icmp.get(1).copied().unwrap_or(0);
            let what = if t == 3 {
                format!("destination unreachable (code {code})")
            } else {
                "time exceeded".to_string()
            };
            Some(Answer::Error(format!("{what} from {src}")))
        }
        _ => None,
    }
}

fn icmp(target: Ipv4Addr, count: u32, timeout: Duration) -> Result<(bool, String), HelperError> {
    let sock = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(io_error("raw ICMP socket"))?;
    let id = (std::process::id() & 0xffff) as u16;
    let dest = SockAddr::from(SocketAddrV4::new(target, 0));
    let mut replies = 0u32;
    let mut notes = Vec::new();
    for seq in 1..=count {
        let seq = (seq & 0xffff) as u16;
        let sent = Instant::now();
        if let Err(e) = sock.send_to(&echo_request(id, seq), &dest) {
            notes.push(format!("seq {seq}: {e}"));
            continue;
        }
        let deadline = sent + timeout;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                notes.push(format!("seq {seq}: no answer in {} ms", timeout.as_millis()));
                break;
            }
            let _ = sock.set_read_timeout(Some(left));
            match (&sock).read(&mut buf) {
                Ok(n) => match classify(&buf[..n], target, id, seq) {
                    Some(Answer::Echo) => {
                        replies += 1;
                        notes.push(format!(
                            "seq {seq}: reply in {:.3} ms",
                            sent.elapsed().as_secs_f64() * 1000.0
                        ));
                        break;
                    }
                    Some(Answer::Error(e)) => {
                        notes.push(format!("seq {seq}: {e}"));
                        break;
                    }
                    None => {}
                },
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    notes.push(format!("seq {seq}: no answer in {} ms", timeout.as_millis()));
                    break;
                }
                Err(e) => {
                    notes.push(format!("seq {seq}: {e}"));
                    break;
                }
            }
        }
    }
    let ok = replies > 0;
    Ok((
        ok,
        format!("icmp {target}: {replies}/{count} answered; {}", notes.join("; ")),
    ))
}

fn tcp(addr: SocketAddrV4, count: u32, timeout: Duration) -> (bool, String) {
    let mut notes = Vec::new();
    for _ in 0..count {
        match TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout) {
            Ok(_) => return (true, format!("tcp {addr}: connected")),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => notes.push("refused".to_string()),
            Err(e) if matches!(e.kind(), io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock) => {
                notes.push(format!("no answer in {} ms", timeout.as_millis()));
            }
            Err(e) => notes.push(e.to_string()),
        }
    }
    (false, format!("tcp {addr}: {}", notes.join("; ")))
}

pub(super) fn dns_query(id: u16) -> Vec<u8> {
    let mut q = Vec::new();
    q.extend(id.to_be_bytes());
    q.extend([0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in ["kaohe-probe", "example"] {
        q.push(label.len() as u8);
        q.extend(label.as_bytes());
    }
    q.extend([0, 0, 1, 0, 1]); // root, type A, class IN
    q
}

fn dns(addr: SocketAddrV4, count: u32, timeout: Duration) -> Result<(bool, String), HelperError> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(io_error("udp socket"))?;
    sock.connect(addr).map_err(io_error(format!("dns {addr}")))?;
    let mut notes = Vec::new();
    for attempt in 0..count {
        let id = ((unix_ms() as u32).wrapping_add(attempt) & 0xffff) as u16;
        if let Err(e) = sock.send(&dns_query(id)) {
            notes.push(e.to_string());
            continue;
        }
        let deadline = Instant::now() + timeout;
        let mut buf = [0u8; 1500];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                notes.push(format!("no answer in {} ms", timeout.as_millis()));
                break;
            }
            let _ = sock.set_read_timeout(Some(left));
            match sock.recv(&mut buf) {
                Ok(n) if n >= 12 && buf[..2] == id.to_be_bytes() && buf[2] & 0x80 != 0 => {
                    return Ok((true, format!("dns {addr}: answered ({n} bytes)")));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    notes.push("refused (port unreachable)".into());
                    break;
                }
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    notes.push(format!("no answer in {} ms", timeout.as_millis()));
                    break;
                }
                Err(e) => {
                    notes.push(e.to_string());
                    break;
                }
            }
        }
    }
    Ok((false, format!("dns {addr}: {}", notes.join("; "))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_request_checksums_to_zero() {
        let pkt = echo_request(0x1234, 7);
        assert_eq!(checksum(&pkt), 0);
    }

    #[test]
    fn icmp_errors_about_other_probes_are_ignored() {
        // An echo reply from the right address but with another id is not ours.
        let mut reply = vec![0x45u8; 20];
        reply[12..16].copy_from_slice(&[10, 0, 0, 1]);
        let mut icmp = echo_request(1, 1);
        icmp[0] = 0;
        reply.extend(icmp);
        assert!(matches!(
            classify(&reply, Ipv4Addr::new(10, 0, 0, 1), 1, 1),
            Some(Answer::Echo)
        ));
        assert!(classify(&reply, Ipv4Addr::new(10, 0, 0, 1), 2, 1).is_none());
        assert!(classify(&reply[..10], Ipv4Addr::new(10, 0, 0, 1), 1, 1).is_none());
    }
}

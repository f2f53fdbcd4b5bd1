//! The lab's helper processes, run by `kaohe-lab` inside namespaces (`ip netns exec`):
//!
//! - `probe icmp|tcp|dns`: one bounded probe from a lab host (the machines have no
//!   ping or nc). Refuses to run outside a named namespace (the root namespace).
//! - `serve`: the canaries' TCP 443 and DNS listeners (and HTTP for the app server);
//!   every contact is logged as a JSON line, so the canaries double as leak listeners.
//! - `flap-run`: takes a switch port down and up on a schedule.
//!
//! `serve` and `flap-run` exit by themselves as soon as the namespace they were started
//! in is deleted (or replaced by a new one of the same name), so a crashed test never
//! leaves them probing or flapping.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::cli::ArgList;
use super::{sys, unix_ms};

const MAX_COUNT: u32 = 100;
const MAX_TIMEOUT_MS: u64 = 10_000;

// ------------------------------------------------------------------ probe

/// `probe icmp ADDR [--count N] [--timeout-ms T]`, `probe tcp ADDR:PORT [--timeout-ms T]`,
/// `probe dns ADDR[:PORT] [--timeout-ms T]`. Prints one line; exits 0 when the target
/// answered, 1 when it did not, 2 on bad use.
pub fn probe_main(args: &ArgList) -> i32 {
    if !sys::in_named_netns() {
        eprintln!(
            "kaohe-lab probe: refusing to probe from outside the lab's namespaces; run it in a lab host (lab exec HOST -- ...)"
        );
        return 2;
    }
    match probe(args) {
        Ok((ok, line)) => {
            println!("{line}");
            i32::from(!ok)
        }
        Err(e) => {
            eprintln!("kaohe-lab probe: {e}");
            2
        }
    }
}

fn probe(args: &ArgList) -> Result<(bool, String), String> {
    let kind = args.positional(0).ok_or("probe: say icmp, tcp or dns")?;
    let target = args.positional(1).ok_or("probe: no target address")?;
    let timeout_ms: u64 = args.number("--timeout-ms")?.unwrap_or(1000);
    if timeout_ms == 0 || timeout_ms > MAX_TIMEOUT_MS {
        return Err(format!("--timeout-ms must be 1..={MAX_TIMEOUT_MS}"));
    }
    let timeout = Duration::from_millis(timeout_ms);
    let count: u32 = args.number("--count")?.unwrap_or(1);
    if count == 0 || count > MAX_COUNT {
        return Err(format!("--count must be 1..={MAX_COUNT}"));
    }
    let with_port = |default: u16| -> Result<SocketAddrV4, String> {
        target
            .parse::<SocketAddrV4>()
            .or_else(|_| target.parse::<Ipv4Addr>().map(|ip| SocketAddrV4::new(ip, default)))
            .map_err(|_| format!("{target:?} is not an IPv4 address"))
    };
    match kind {
        "icmp" => {
            let addr: Ipv4Addr = target
                .parse()
                .map_err(|_| format!("{target:?} is not an IPv4 address"))?;
            icmp(addr, count, timeout)
        }
        "tcp" => {
            let addr = with_port(443)?;
            Ok(tcp(addr, count, timeout))
        }
        "dns" => {
            let addr = with_port(53)?;
            dns(addr, count, timeout)
        }
        other => Err(format!("probe {other:?}: say icmp, tcp or dns")),
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

fn icmp(target: Ipv4Addr, count: u32, timeout: Duration) -> Result<(bool, String), String> {
    let sock =
        Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).map_err(|e| format!("raw ICMP socket: {e}"))?;
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

fn dns_query(id: u16) -> Vec<u8> {
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

fn dns(addr: SocketAddrV4, count: u32, timeout: Duration) -> Result<(bool, String), String> {
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    sock.connect(addr).map_err(|e| format!("dns {addr}: {e}"))?;
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

// ------------------------------------------------------------------ watchdog

/// Whether this process still runs in the namespace `/run/netns/NAME` names.
fn namespace_still_ours(name: &str, ours: Option<(u64, u64)>) -> bool {
    ours.is_some() && sys::netns_identity(&Path::new("/run/netns").join(name)) == ours
}

fn own_namespace() -> Option<(u64, u64)> {
    sys::netns_identity(Path::new("/proc/self/ns/net"))
}

// ------------------------------------------------------------------ serve

type Log = Arc<Mutex<File>>;

fn log_contact(log: &Log, proto: &str, src: SocketAddr, dst: SocketAddr) {
    let line = serde_json::json!({
        "t_unix_ms": unix_ms(),
        "proto": proto,
        "src": src.to_string(),
        "dst": dst.to_string(),
    });
    if let Ok(mut f) = log.lock() {
        let _ = writeln!(f, "{line}");
    }
}

/// `serve --netns NAME --log FILE --ready FILE [--tcp A:P]... [--dns A:P]... [--http A:P]...`
pub fn serve_main(args: &ArgList) -> i32 {
    match serve(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kaohe-lab serve: {e}");
            1
        }
    }
}

fn addrs(args: &ArgList, flag: &str) -> Result<Vec<SocketAddr>, String> {
    args.all(flag)
        .iter()
        .map(|a| a.parse().map_err(|_| format!("{flag} {a:?}: expected ADDRESS:PORT")))
        .collect()
}

fn serve(args: &ArgList) -> Result<(), String> {
    let netns = args
        .value("--netns")
        .ok_or("serve: --netns NAME is required")?
        .to_string();
    let log_path = PathBuf::from(args.value("--log").ok_or("serve: --log FILE is required")?);
    let ready = PathBuf::from(args.value("--ready").ok_or("serve: --ready FILE is required")?);
    let ours = own_namespace();
    if !namespace_still_ours(&netns, ours) {
        return Err(format!("not running inside namespace {netns}"));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log: Log = Arc::new(Mutex::new(file));

    for addr in addrs(args, "--tcp")? {
        let listener = TcpListener::bind(addr).map_err(|e| format!("tcp {addr}: {e}"))?;
        let log = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) {
                    log_contact(&log, "tcp", peer, local);
                }
            }
        });
    }
    for addr in addrs(args, "--dns")? {
        let sock = UdpSocket::bind(addr).map_err(|e| format!("dns {addr}: {e}"))?;
        let log = log.clone();
        let answer_ip = match addr {
            SocketAddr::V4(a) => *a.ip(),
            SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        thread::spawn(move || {
            let mut buf = [0u8; 1500];
            while let Ok((n, peer)) = sock.recv_from(&mut buf) {
                log_contact(&log, "dns", peer, addr);
                if let Some(reply) = dns_reply(&buf[..n], answer_ip) {
                    let _ = sock.send_to(&reply, peer);
                }
            }
        });
    }
    for addr in addrs(args, "--http")? {
        let listener = TcpListener::bind(addr).map_err(|e| format!("http {addr}: {e}"))?;
        let log = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) {
                    log_contact(&log, "http", peer, local);
                }
                let _ = http_answer(stream);
            }
        });
    }
    std::fs::write(&ready, format!("{}\n", std::process::id())).map_err(|e| format!("{}: {e}", ready.display()))?;
    while namespace_still_ours(&netns, ours) {
        thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Answers a DNS query with one A record (the canary's own address), or None when the
/// datagram is not a well-formed query.
fn dns_reply(query: &[u8], answer: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || query[4..6] != [0, 1] {
        return None;
    }
    // Walk the question's name to its end.
    let mut at = 12;
    loop {
        let len = usize::from(*query.get(at)?);
        if len == 0 {
            at += 1;
            break;
        }
        if len & 0xc0 != 0 {
            return None;
        }
        at += 1 + len;
    }
    let question_end = at + 4;
    let question = query.get(12..question_end)?;
    let mut r = Vec::with_capacity(question_end + 16);
    r.extend(&query[..2]);
    r.extend([0x81 | (query[2] & 0x01), 0x80]); // QR, RD copied, RA, NOERROR
    r.extend([0, 1, 0, 1, 0, 0, 0, 0]);
    r.extend(question);
    r.extend([0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
    r.extend(answer.octets());
    Some(r)
}

fn http_answer(mut stream: TcpStream) -> io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 8192 {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/");
    let body = format!(
        "<!doctype html><meta charset=\"utf-8\"><title>Kaohe lab</title><p>Kaohe lab app server: {}</p>\n",
        path.replace(['<', '>', '&', '"'], "")
    );
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

// ------------------------------------------------------------------ flap

/// `flap-run --netns NAME --port DEV --period-ms P --down-ms D --log FILE [--max-secs S]`:
/// up for P-D ms, down for D ms, again, for at most S seconds (default one day).
pub fn flap_main(args: &ArgList) -> i32 {
    match flap(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("kaohe-lab flap-run: {e}");
            1
        }
    }
}

fn set_port(port: &str, up: bool) -> Result<(), String> {
    let state = if up { "up" } else { "down" };
    let status = Command::new("ip")
        .args(["link", "set", "dev", port, state])
        .status()
        .map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("ip link set dev {port} {state}: {status}"))
    }
}

fn flap(args: &ArgList) -> Result<(), String> {
    let netns = args
        .value("--netns")
        .ok_or("flap-run: --netns NAME is required")?
        .to_string();
    let port = args
        .value("--port")
        .ok_or("flap-run: --port DEV is required")?
        .to_string();
    let period = Duration::from_millis(args.number("--period-ms")?.ok_or("flap-run: --period-ms is required")?);
    let down = Duration::from_millis(args.number("--down-ms")?.ok_or("flap-run: --down-ms is required")?);
    let log_path = PathBuf::from(args.value("--log").ok_or("flap-run: --log FILE is required")?);
    let max = Duration::from_secs(args.number("--max-secs")?.unwrap_or(86_400));
    if down.is_zero() || down >= period {
        return Err("flap-run: need 0 < down < period".into());
    }
    let ours = own_namespace();
    if !namespace_still_ours(&netns, ours) {
        return Err(format!("not running inside namespace {netns}"));
    }
    let mut log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let end = Instant::now() + max;
    // Sleeps up to `d`; false when it is time to stop.
    let wait = |d: Duration| -> bool {
        let until = Instant::now() + d;
        loop {
            if !namespace_still_ours(&netns, ours) || Instant::now() >= end {
                return false;
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return true;
            }
            thread::sleep(left.min(Duration::from_millis(50)));
        }
    };
    let mut record = |state: &str| {
        let _ = writeln!(log, "{}", serde_json::json!({ "t_unix_ms": unix_ms(), "state": state }));
    };
    while wait(period - down) {
        set_port(&port, false)?;
        record("down");
        let go_on = wait(down);
        if namespace_still_ours(&netns, ours) {
            set_port(&port, true)?;
            record("up");
        }
        if !go_on {
            break;
        }
    }
    Ok(())
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
    fn dns_reply_answers_the_question() {
        let q = dns_query(0xbeef);
        let r = dns_reply(&q, Ipv4Addr::new(198, 51, 100, 10)).expect("a query");
        assert_eq!(r[..2], [0xbe, 0xef]);
        assert_ne!(r[2] & 0x80, 0);
        assert_eq!(r[r.len() - 4..], [198, 51, 100, 10]);
        assert!(dns_reply(&q[..5], Ipv4Addr::LOCALHOST).is_none());
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

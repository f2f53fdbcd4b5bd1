//! `serve`: the canaries' TCP 443 and DNS listeners (and HTTP for the app server);
//! every contact is logged as a JSON line, so the canaries double as leak listeners.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use super::{HelperError, io_error, namespace_still_ours, own_namespace};
use crate::lab::unix_ms;

/// `serve --netns NAME --log FILE --ready FILE [--tcp A:P]... [--dns A:P]... [--http A:P]...`
#[derive(Debug, Clone, clap::Args)]
pub struct ServeArgs {
    /// The namespace this runs in; the listeners end when it is gone
    #[arg(long)]
    pub netns: String,
    /// The contact log (JSON lines)
    #[arg(long)]
    pub log: PathBuf,
    /// Written (with the pid) once every listener is bound
    #[arg(long)]
    pub ready: PathBuf,
    /// A TCP listener (the canaries' 443)
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub tcp: Vec<SocketAddr>,
    /// A DNS listener, answering with its own address
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub dns: Vec<SocketAddr>,
    /// An HTTP listener (the app server)
    #[arg(long, value_name = "ADDRESS:PORT")]
    pub http: Vec<SocketAddr>,
}

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

/// Runs the listeners until the namespace is gone.
pub fn serve(args: &ServeArgs) -> Result<(), HelperError> {
    let netns = args.netns.clone();
    let ours = own_namespace();
    if !namespace_still_ours(&netns, ours) {
        return Err(HelperError::NotInNamespace(netns));
    }
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.log)
        .map_err(io_error(args.log.display().to_string()))?;
    let log: Log = Arc::new(Mutex::new(file));

    for &addr in &args.tcp {
        let listener = TcpListener::bind(addr).map_err(io_error(format!("tcp {addr}")))?;
        let log = log.clone();
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                if let (Ok(peer), Ok(local)) = (stream.peer_addr(), stream.local_addr()) {
                    log_contact(&log, "tcp", peer, local);
                }
            }
        });
    }
    for &addr in &args.dns {
        let sock = UdpSocket::bind(addr).map_err(io_error(format!("dns {addr}")))?;
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
    for &addr in &args.http {
        let listener = TcpListener::bind(addr).map_err(io_error(format!("http {addr}")))?;
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
    std::fs::write(&args.ready, format!("{}\n", std::process::id()))
        .map_err(io_error(args.ready.display().to_string()))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::probe::dns_query;

    #[test]
    fn dns_reply_answers_the_question() {
        let q = dns_query(0xbeef);
        let r = dns_reply(&q, Ipv4Addr::new(198, 51, 100, 10)).expect("a query");
        assert_eq!(r[..2], [0xbe, 0xef]);
        assert_ne!(r[2] & 0x80, 0);
        assert_eq!(r[r.len() - 4..], [198, 51, 100, 10]);
        assert!(dns_reply(&q[..5], Ipv4Addr::LOCALHOST).is_none());
    }
}

//! Attacks on the real `kaohe-collector serve` process over raw TLS on loopback (issue 10):
//! big bodies without a credential, slowloris against a small file-descriptor limit, idle
//! and silent connections, and what the log says afterwards. Each test starts its own
//! collector binary with a config of its own and reads its memory from `/proc`.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// A collector process with its data directory, stopped and removed when dropped.
struct Server {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
    connector: TlsConnector,
    log: PathBuf,
    config: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_kaohe-collector")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port()
}

impl Server {
    /// Writes a config (`extra` appended), prepares units and users with `setup`, then
    /// starts `serve` (under `prlimit --nofile=N` when `nofile` is given).
    fn start(name: &str, extra: &str, nofile: Option<u64>, args: &[&str], setup: impl FnOnce(&Path)) -> Server {
        let dir = std::env::temp_dir().join(format!("kaohe-hard-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        let port = free_port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let config = dir.join("collector.toml");
        std::fs::write(
            &config,
            format!(
                "data_dir = \"{}\"\nlisten = \"{addr}\"\npublic_url = \"https://127.0.0.1:{port}\"\n{extra}\n",
                dir.join("data").display()
            ),
        )
        .expect("config");
        setup(&config);
        let log = dir.join("collector.log");
        let stderr = std::fs::File::create(&log).expect("log file");
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        cmd.args(["serve", "--config"])
            .arg(&config)
            .args(args)
            .env_remove("KAOHE_LOG")
            .stdout(Stdio::null())
            .stderr(stderr);
        let child = cmd.spawn().expect("collector starts");
        let ca = dir.join("data/tls/ca.pem");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !ca.exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let connector = connector(&std::fs::read(&ca).expect("the collector made its CA"));
        Server {
            child,
            dir,
            addr,
            connector,
            log,
            config,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the collector now, MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        self.tls_from(std::net::Ipv4Addr::LOCALHOST).await
    }

    /// A TLS connection from another loopback address (another machine, as the collector
    /// sees it).
    async fn tls_from(&self, source: std::net::Ipv4Addr) -> std::io::Result<TlsStream<TcpStream>> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind(SocketAddr::from((source, 0)))?;
        let tcp = socket.connect(self.addr).await?;
        let name = rustls::pki_types::ServerName::try_from("127.0.0.1").expect("name");
        self.connector.connect(name, tcp).await
    }

    /// Waits until `/healthz` answers.
    async fn ready(&self) {
        for _ in 0..200 {
            if self.get("/healthz", &[]).await.is_ok_and(|(s, _)| s == 200) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the collector did not start: {}", self.log_text());
    }

    /// One request on a fresh connection: (status, body).
    async fn request(&self, raw: &[u8]) -> std::io::Result<(u16, String)> {
        self.request_from(std::net::Ipv4Addr::LOCALHOST, raw).await
    }

    async fn request_from(&self, source: std::net::Ipv4Addr, raw: &[u8]) -> std::io::Result<(u16, String)> {
        let mut s = self.tls_from(source).await?;
        s.write_all(raw).await?;
        read_response(&mut s).await
    }

    async fn get(&self, path: &str, headers: &[(&str, &str)]) -> std::io::Result<(u16, String)> {
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        self.request(req.as_bytes()).await
    }

    async fn post(&self, path: &str, headers: &[(&str, &str)], body: &str) -> std::io::Result<(u16, String)> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        self.request(req.as_bytes()).await
    }

    /// Runs a one-shot command of the collector on this server's config.
    fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        cli(&self.config, args, env)
    }
}

fn cli(config: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let mut c = Command::new(bin());
    c.args(args).arg("--config").arg(config);
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("runs");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn connector(ca_pem: &[u8]) -> TlsConnector {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem).expect("ca pem"))
        .expect("root");
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

/// Reads a response's status line and (up to 64 KiB of) what follows.
async fn read_response<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> std::io::Result<(u16, String)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf);
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let len = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok());
            if len.is_some_and(|n| body.len() >= n) || buf.len() > 65536 {
                break;
            }
        }
    }
    let text = String::from_utf8_lossy(&buf).to_string();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "no response"))?;
    Ok((status, text))
}

/// Whether this run may do what the test needs; under CI it must.
fn can_run(what: &str, ok: bool) -> bool {
    kaohe_process::testing::require("hardening", ok, what)
}

/// Raises this test process's own file-descriptor limit (it opens well over a thousand).
fn many_fds(n: u64) -> bool {
    let _ = rlimit::increase_nofile_limit(n);
    rlimit::getrlimit(rlimit::Resource::NOFILE).is_ok_and(|(soft, _)| soft >= n)
}

/// Adds a unit and enrols an agent for it over HTTPS; returns its credential.
async fn enrolled_agent(s: &Server, unit: &str) -> (String, String) {
    let token = s.cli(&["token", "create", "--unit", unit], &[]);
    let token = kaohe_rubric::enrolment::Token::decode(&token).expect("token");
    let body = serde_json::json!({"secret": token.secret, "hostname": "h", "agent_version": "t"}).to_string();
    let (status, text) = s
        .post("/api/v1/enroll", &[("Content-Type", "application/json")], &body)
        .await
        .expect("enrol");
    assert_eq!(status, 200, "{text}");
    let json = text.split_once("\r\n\r\n").expect("body").1;
    let v: serde_json::Value = serde_json::from_str(json).expect("json");
    (
        v["agent_id"].as_str().expect("id").to_string(),
        v["credential"].as_str().expect("credential").to_string(),
    )
}

/// A report of `agent` for `unit`, made now, with nothing in it.
fn empty_report(agent: &str, unit: &str) -> kaohe_rubric::Report {
    kaohe_rubric::Report::empty(
        uuid::Uuid::new_v4(),
        agent,
        unit,
        1,
        chrono::Utc::now(),
        kaohe_rubric::evidence::HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "t".into(),
            agent_started_at: None,
        },
    )
}

fn add_unit(config: &Path, id: &str) {
    cli(
        config,
        &["unit", "add", id, "--name", "测试单位", "--kind", "county"],
        &[],
    );
}

/// Sends headers for a body of `length` bytes, reads the answer, while pushing 4 MiB of
/// the body anyway (as the attack did) and then stalling. Returns the status, or None if
/// the connection was closed.
async fn big_body(s: &Server, bearer: &str, length: u64, stall: Duration) -> Option<u16> {
    let mut c = s.tls().await.ok()?;
    let head = format!(
        "POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.ok()?;
    // Up to 4 MiB of the body, never all of it.
    let mut left = length.saturating_sub(1).min(4 << 20) as usize;
    let (mut rd, mut wr) = tokio::io::split(c);
    let writer = tokio::spawn(async move {
        let spaces = vec![b' '; 64 * 1024];
        while left > 0 {
            let n = left.min(spaces.len());
            if wr.write_all(&spaces[..n]).await.is_err() {
                return;
            }
            left -= n;
        }
        tokio::time::sleep(stall).await;
        drop(wr);
    });
    let answer = tokio::time::timeout(Duration::from_secs(20), read_response(&mut rd)).await;
    writer.abort();
    match answer {
        Ok(Ok((status, _))) => Some(status),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_big_bodies_without_a_credential_get_401_and_the_collector_stays_small() {
    if !can_run("1,000 file descriptors", many_fds(4096)) {
        return;
    }
    let s = Server::start(
        "bodies",
        "body_timeout_secs = 5\nheader_timeout_secs = 5",
        None,
        &[],
        |_| {},
    );
    s.ready().await;
    let before = s.rss_mib();
    let peak = Arc::new(std::sync::Mutex::new(before));
    let sampler = {
        let (peak, pid) = (peak.clone(), s.pid());
        tokio::spawn(async move {
            loop {
                let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                if let Some(kb) = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
                {
                    let mut p = peak.lock().expect("lock");
                    *p = p.max(kb / 1024.0);
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let s = Arc::new(s);
    let started = Instant::now();
    let attacks: Vec<_> = (0..200)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                // The finding's request: a little over the 4 MiB limit, never to be read.
                big_body(
                    &s,
                    "not-a-real-credential-0123456789",
                    4_194_354,
                    Duration::from_secs(30),
                )
                .await
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for a in attacks {
        statuses.push(a.await.expect("task"));
    }
    let took = started.elapsed();
    sampler.abort();
    let peak = *peak.lock().expect("lock");
    let answered_401 = statuses.iter().filter(|s| **s == Some(401)).count();
    let closed = statuses.iter().filter(|s| s.is_none()).count();
    println!(
        "200 unauthenticated 4 MiB bodies: {answered_401} × 401, {closed} closed, in {took:?}; RSS {before:.1} → peak {peak:.1} MiB"
    );
    assert_eq!(
        answered_401 + closed,
        200,
        "every one is refused or closed: {statuses:?}"
    );
    assert!(
        answered_401 >= 190,
        "the credential is refused before the body: {statuses:?}"
    );
    assert!(peak - before < 50.0, "RSS grew {:.1} MiB", peak - before);
    assert_eq!(s.get("/healthz", &[]).await.expect("healthz").0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_stalled_bodies_with_a_valid_credential_are_bounded_by_the_budget_and_time_out() {
    if !can_run("1,000 file descriptors", many_fds(4096)) {
        return;
    }
    let s = Server::start(
        "budget",
        "body_timeout_secs = 3\nmax_inflight_body_mib = 16",
        None,
        &[],
        |c| add_unit(c, "t"),
    );
    s.ready().await;
    // Thirteen agents (each may have four reports under way), so the budget decides.
    let mut credentials = Vec::new();
    for _ in 0..13 {
        credentials.push(enrolled_agent(&s, "t").await.1);
    }
    // Under the 4 MiB limit, so the body would be read: the budget decides.
    const LENGTH: u64 = 4_000_000;
    let fits = (16 * 1024) / LENGTH.div_ceil(1024) as usize;
    let before = s.rss_mib();
    let s = Arc::new(s);
    let started = Instant::now();
    let attacks: Vec<_> = (0..50)
        .map(|i| {
            let (s, c) = (s.clone(), credentials[i % credentials.len()].clone());
            tokio::spawn(async move { big_body(&s, &c, LENGTH, Duration::from_secs(30)).await })
        })
        .collect();
    let mut statuses = Vec::new();
    for a in attacks {
        statuses.push(a.await.expect("task"));
    }
    let after = s.rss_mib();
    let timed_out = statuses.iter().filter(|s| **s == Some(408)).count();
    let busy = statuses.iter().filter(|s| **s == Some(503)).count();
    println!(
        "50 stalled 4 MiB bodies with a credential: {timed_out} × 408, {busy} × 503 in {:?}; RSS {before:.1} → {after:.1} MiB",
        started.elapsed()
    );
    // 16 MiB holds four declared bodies of 3,907 KiB; the rest are told to come back later.
    assert_eq!(fits, 4);
    assert_eq!(timed_out, fits, "{statuses:?}");
    assert_eq!(busy, 50 - fits, "{statuses:?}");
    assert!(after - before < 16.0 + 20.0, "RSS grew {:.1} MiB", after - before);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "each within the body timeout"
    );
    let log = s.log_text();
    assert!(log.contains("max_inflight_body_mib"), "the log names the limit: {log}");
}

/// Slowloris: TLS connections that send a request line and then one header line every 5 s,
/// opened over the first two seconds and re-opened a few seconds after each is closed.
async fn slowloris(s: Arc<Server>, stop: Arc<std::sync::atomic::AtomicBool>, start: Duration) {
    use std::sync::atomic::Ordering;
    tokio::time::sleep(start).await;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut c) = s.tls().await else {
            tokio::time::sleep(Duration::from_millis(500)).await;
            continue;
        };
        let mut alive = c
            .write_all(b"POST /api/v1/reports HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .is_ok();
        while alive && !stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_secs(5)).await;
            alive = c.write_all(b"X-Slow: 1\r\n").await.is_ok() && c.flush().await.is_ok();
        }
        // Closed by the collector: come back a little later, as slowloris tools do.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_with_more_connections_than_file_descriptors_never_locks_out_healthz() {
    let prlimit = Command::new("prlimit")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !can_run("prlimit (util-linux)", prlimit) || !can_run("2,000 file descriptors", many_fds(4096)) {
        return;
    }
    let s = Arc::new(Server::start("slowloris", "", Some(1024), &[], |_| {}));
    s.ready().await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let attackers: Vec<_> = (0..1100u64)
        .map(|i| tokio::spawn(slowloris(s.clone(), stop.clone(), Duration::from_millis(2 * i))))
        .collect();
    let mut times = Vec::new();
    let mut failures = Vec::new();
    let started = Instant::now();
    let mut probes = 0;
    while started.elapsed() < Duration::from_secs(25) {
        let t = Instant::now();
        // The monitor is another machine than the attacker.
        let probe = s.request_from(
            std::net::Ipv4Addr::new(127, 0, 0, 2),
            b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
        );
        match tokio::time::timeout(Duration::from_secs(1), probe).await {
            Ok(Ok((200, _))) => times.push(t.elapsed()),
            other => failures.push(format!("{:?}: {other:?}", started.elapsed())),
        }
        probes += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for a in attackers {
        a.abort();
    }
    let log = s.log_text();
    times.sort();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .copied()
    };
    println!(
        "slowloris: 1,100 connections against 1,024 descriptors for 25 s: {probes} health checks, median {:?}, p90 {:?}, worst {:?}, {} failed; collector RSS {:.1} MiB",
        at(0.5),
        at(0.9),
        times.last(),
        failures.len(),
        s.rss_mib()
    );
    assert!(failures.is_empty(), "healthz within 1 s throughout: {failures:?}");
    assert!(log.contains("max_connections"), "the log names the limit: {log}");
    assert!(
        log.contains("文件描述符上限较低"),
        "the log says the descriptor limit lowered the cap: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_idle_and_slow_connections_are_closed_within_their_timeouts() {
    let s = Server::start(
        "idle",
        "tls_handshake_timeout_secs = 2\nheader_timeout_secs = 2",
        None,
        &[],
        |_| {},
    );
    s.ready().await;
    let started = Instant::now();
    // Raw TCP that never starts TLS.
    let mut silent = Vec::new();
    for _ in 0..20 {
        silent.push(TcpStream::connect(s.addr).await.expect("connect"));
    }
    // TLS done, then nothing: an idle connection.
    let mut idle = Vec::new();
    for _ in 0..20 {
        idle.push(s.tls().await.expect("tls"));
    }
    // Headers a line a second: never complete within the timeout.
    let mut slow = s.tls().await.expect("tls");
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.expect("write");
    let slow = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
                return;
            }
            let mut b = [0u8; 1];
            if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_millis(10), slow.read(&mut b)).await {
                return;
            }
        }
    });
    let closed = |r: Result<std::io::Result<usize>, tokio::time::error::Elapsed>| matches!(r, Ok(Ok(0) | Err(_)));
    for mut c in silent {
        let mut b = [0u8; 16];
        assert!(
            closed(tokio::time::timeout(Duration::from_secs(4), c.read(&mut b)).await),
            "a connection that never starts TLS is closed"
        );
    }
    for mut c in idle {
        let mut b = [0u8; 16];
        assert!(
            closed(tokio::time::timeout(Duration::from_secs(4), c.read(&mut b)).await),
            "an idle TLS connection is closed"
        );
    }
    tokio::time::timeout(Duration::from_secs(5), slow)
        .await
        .expect("the slow sender is cut off")
        .expect("task");
    let took = started.elapsed();
    println!("20 silent, 20 idle, 1 slow connection closed in {took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    let log = s.log_text();
    for limit in ["handshake_timeout", "header_timeout"] {
        assert!(log.contains(limit), "the log names {limit}: {log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_names_failures_and_limits_in_json_and_never_a_secret() {
    const PASSWORD: &str = "Real-Passw0rd-for-the-log-test";
    const WRONG: &str = "Wrong-Passw0rd-guessed-9";
    const BOGUS: &str = "bogus-credential-abcdef123456";
    const METRICS: &str = "metrics-token-0123456789abcdef";
    const HOOK_SECRET: &str = "hook-secret-ZYXWVU";
    let extra = format!(
        "webhook_url = \"https://127.0.0.1:1/hook?token={HOOK_SECRET}\"\nmetrics_token = \"{METRICS}\"\nheader_timeout_secs = 2"
    );
    let s = Server::start("log", &extra, None, &["--log-format", "json"], |c| {
        add_unit(c, "t");
        cli(
            c,
            &["user", "add", "admin", "--role", "province"],
            &[("KAOHE_PASSWORD", PASSWORD)],
        );
    });
    s.ready().await;
    let token_line = s.cli(&["token", "create", "--unit", "t"], &[]);
    let token = kaohe_rubric::enrolment::Token::decode(&token_line).expect("token");
    let body = serde_json::json!({"secret": token.secret, "hostname": "h", "agent_version": "t"}).to_string();
    let (status, text) = s
        .post("/api/v1/enroll", &[("Content-Type", "application/json")], &body)
        .await
        .expect("enrol");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(text.split_once("\r\n\r\n").expect("body").1).expect("json");
    let (agent, credential) = (
        v["agent_id"].as_str().expect("id").to_string(),
        v["credential"].as_str().expect("credential").to_string(),
    );

    // An isolation breach: an alert for the webhook, which refuses connections.
    let mut r = empty_report(&agent, "t");
    let now = r.created_at;
    r.checks.isolation = kaohe_rubric::evidence::CheckStatus::Ran;
    r.isolation.push(kaohe_rubric::evidence::IsolationResult {
        at: now,
        canary: "198.51.100.7".into(),
        protocol: kaohe_rubric::evidence::IsolationProtocol::Icmp,
        reached: true,
        via_interface: Some("eth0".into()),
        next_hop: None,
        error: None,
    });
    let auth = format!("Bearer {credential}");
    let report = serde_json::to_string(&r).expect("json");
    let (status, text) = s
        .post(
            "/api/v1/reports",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            &report,
        )
        .await
        .expect("report");
    assert_eq!(status, 200, "{text}");
    // Wrong credentials, wrong passwords until the back-off, metrics with and without the token.
    let bogus = format!("Bearer {BOGUS}");
    let (status, _) = s
        .post("/api/v1/reports", &[("Authorization", &bogus)], "{}")
        .await
        .expect("post");
    assert_eq!(status, 401);
    // A password typed into the name box, with a line break to forge a log line.
    let typed = "Typed-Into-Name-Box-7%0Aforged-log-line";
    let (status, _) = s
        .post(
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &format!("user={typed}&password=x"),
        )
        .await
        .expect("login");
    assert_eq!(status, 401);
    let form = format!("user=admin&password={WRONG}");
    for _ in 0..6 {
        let _ = s
            .post(
                "/login",
                &[("Content-Type", "application/x-www-form-urlencoded")],
                &form,
            )
            .await;
    }
    let good = format!("user=admin&password={PASSWORD}");
    let (status, page) = s
        .post(
            "/login",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            &good,
        )
        .await
        .expect("login");
    assert_eq!(status, 429, "backing off: {page}");
    let metrics_bearer = format!("Bearer {METRICS}");
    assert_eq!(
        s.get("/metrics", &[("Authorization", &metrics_bearer)])
            .await
            .expect("metrics")
            .0,
        200
    );
    assert_eq!(
        s.get("/metrics", &[("Authorization", "Bearer wrong-token-xyz")])
            .await
            .expect("metrics")
            .0,
        401
    );
    // An idle connection hits the header timeout.
    let idle = s.tls().await.expect("tls");
    // The webhook is tried every 2 s, then backs off; give it one try.
    tokio::time::sleep(Duration::from_secs(4)).await;
    drop(idle);

    let log = s.log_text();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line}"));
        assert!(v["message"].is_string() && v["level"].is_string(), "{line}");
    }
    let webhook = log
        .lines()
        .find(|l| l.contains("webhook push failed"))
        .unwrap_or_else(|| panic!("the failed push is logged: {log}"));
    assert!(
        webhook.contains("127.0.0.1:1") && webhook.to_lowercase().contains("connect"),
        "with the host and the reason: {webhook}"
    );
    for (what, needle) in [
        ("startup", "collector listening"),
        ("the CA fingerprint", "sha256:"),
        ("the database kind", "Sqlite"),
        ("the unknown credential", "ingest_unknown_credential"),
        ("failed logins", "login_failed"),
        ("the login back-off", "name+source back-off"),
        ("refused metrics", "metrics_refused"),
        ("the header timeout", "header_timeout"),
    ] {
        assert!(log.contains(needle), "the log shows {what} ({needle}): {log}");
    }
    for secret in [
        PASSWORD,
        WRONG,
        BOGUS,
        METRICS,
        HOOK_SECRET,
        token.secret.as_str(),
        token_line.as_str(),
        credential.as_str(),
        "Typed-Into-Name-Box-7",
        "forged-log-line",
    ] {
        assert!(!log.contains(secret), "a secret is in the log: {secret}");
    }
    let _ = std::io::stdout().flush();
}

#[tokio::test]
async fn the_data_directory_and_database_are_private_even_when_they_were_not() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("kaohe-hard-perms-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    // As an older collector left them: world-readable.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::write(dir.join("kaohe.db"), b"").expect("db");
    std::fs::set_permissions(dir.join("kaohe.db"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let config = kaohe_collector::config::CollectorConfig {
        data_dir: dir.clone(),
        ..Default::default()
    };
    let (store, _) = kaohe_collector::serve::prepare(&config).await.expect("prepare");
    // Write something so that SQLite makes its -wal and -shm files.
    store
        .add_unit(&kaohe_collector::store::Unit {
            id: "nx".into(),
            name: "n".into(),
            parent: None,
            kind: "province".into(),
            maintainer: None,
            responder: None,
            enrolled: None,
        })
        .await
        .expect("unit");
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700, "the data directory");
    assert_eq!(mode(&dir.join("tls")), 0o700, "the TLS directory (the CA key)");
    for f in [
        "kaohe.db",
        "kaohe.db-wal",
        "kaohe.db-shm",
        "tls/ca.key",
        "tls/server.key",
    ] {
        let p = dir.join(f);
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{f} is readable by others: {:o}", mode(&p));
        }
    }
    assert!(dir.join("kaohe.db-wal").exists(), "WAL mode made its file");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends the headers of a POST and part of its body from `source`, then stalls; returns
/// the connection so that it stays open.
async fn stalled_post(
    s: &Server,
    source: std::net::Ipv4Addr,
    path: &str,
    length: usize,
    sent: usize,
) -> Option<TlsStream<TcpStream>> {
    let mut c = s.tls_from(source).await.ok()?;
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {length}\r\n\r\n"
    );
    c.write_all(head.as_bytes()).await.ok()?;
    c.write_all(&vec![b'a'; sent]).await.ok()?;
    c.flush().await.ok()?;
    Some(c)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strangers_holding_login_and_enrolment_bodies_cannot_starve_agents_or_other_sources() {
    if !can_run("1,000 file descriptors", many_fds(4096)) {
        return;
    }
    let s = Server::start("strangers", "", None, &[], |c| add_unit(c, "t"));
    s.ready().await;
    let (agent, credential) = enrolled_agent(&s, "t").await;
    let attacker = std::net::Ipv4Addr::new(127, 0, 0, 2);
    // 1,050 login, enrolment and dashboard-form requests from one address, without a
    // session: headers declaring bodies (1,050 × up to 64 KiB is more than the whole body
    // budget), a little of each body, then nothing.
    let mut held = Vec::new();
    for i in 0..1050 {
        let (path, length, sent) = match i % 3 {
            0 => ("/login", 4096, 2048),
            1 => ("/api/v1/enroll", 16384, 8192),
            _ => ("/units/t/entries", 65536, 1024),
        };
        if let Some(c) = stalled_post(&s, attacker, path, length, sent).await {
            held.push(c);
        }
    }
    // An agent's report still goes through at once…
    let r = empty_report(&agent, "t");
    let auth = format!("Bearer {credential}");
    let t = Instant::now();
    let (status, text) = s
        .post(
            "/api/v1/reports",
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            &serde_json::to_string(&r).expect("json"),
        )
        .await
        .expect("report");
    let took = t.elapsed();
    assert_eq!(status, 200, "{text}");
    // …and a stranger from another address can still enrol.
    let token = s.cli(&["token", "create", "--unit", "t"], &[]);
    let token = kaohe_rubric::enrolment::Token::decode(&token).expect("token");
    let body = serde_json::json!({"secret": token.secret, "hostname": "h2", "agent_version": "t"}).to_string();
    let req = format!(
        "POST /api/v1/enroll HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = s
        .request_from(std::net::Ipv4Addr::new(127, 0, 0, 3), req.as_bytes())
        .await
        .expect("enrol");
    assert_eq!(status, 200, "{text}");
    println!(
        "1,050 stalled login/enrolment/form bodies from one address ({} connections held): an agent's report in {took:?}, another address enrols",
        held.len()
    );
    assert!(took < Duration::from_secs(2), "{took:?}");
    let log = s.log_text();
    assert!(
        log.contains("enrol_body") || log.contains("dashboard_body"),
        "the log names the refused bodies"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_report_acknowledged_before_a_kill_9_is_in_the_database() {
    let s = Server::start("kill9", "", None, &[], |c| add_unit(c, "t"));
    s.ready().await;
    let mut agents = Vec::new();
    for _ in 0..8 {
        agents.push(enrolled_agent(&s, "t").await);
    }
    let acked_ids = Arc::new(std::sync::Mutex::new(Vec::new()));
    let server = Arc::new(s);
    let senders: Vec<_> = agents
        .into_iter()
        .map(|(agent, credential)| {
            let (server, acked) = (server.clone(), acked_ids.clone());
            tokio::spawn(async move {
                let auth = format!("Bearer {credential}");
                for seq in 1.. {
                    let mut r = empty_report(&agent, "t");
                    r.sequence = seq;
                    let body = serde_json::to_string(&r).expect("json");
                    match server
                        .post(
                            "/api/v1/reports",
                            &[("Authorization", &auth), ("Content-Type", "application/json")],
                            &body,
                        )
                        .await
                    {
                        Ok((200, _)) => acked.lock().expect("lock").push(r.report_id),
                        Ok(_) => {}
                        Err(_) => return,
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // kill -9 while reports are arriving.
    let pid = server.pid();
    let killed = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(killed.success());
    for t in senders {
        let _ = tokio::time::timeout(Duration::from_secs(10), t).await;
    }
    let acked = acked_ids.lock().expect("lock").clone();
    assert!(
        acked.len() > 20,
        "reports were acknowledged before the kill: {}",
        acked.len()
    );
    let db = format!("sqlite://{}", server.dir.join("data/kaohe.db").display());
    let store = kaohe_collector::store::Store::open(&db)
        .await
        .expect("the database opens after kill -9");
    let mut missing = 0;
    for id in &acked {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE report_id = $1")
            .bind(id.to_string())
            .fetch_one(store.pool())
            .await
            .expect("count");
        if n != 1 {
            missing += 1;
        }
    }
    println!(
        "kill -9 under load: {} reports acknowledged, {missing} of them missing",
        acked.len()
    );
    assert_eq!(missing, 0, "an acknowledged report was lost");
}

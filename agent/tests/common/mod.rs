//! Shared by the agent's end-to-end tests: a fake collector on loopback (a private CA, real
//! acknowledgements, duplicate detection by report id, a switch to make it unavailable or
//! refuse reports) and helpers to run the real agent binary.

#![allow(dead_code)]

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kaohe_rubric::evidence::Report;

pub const CREDENTIAL: &str = "test-credential-0123456789";

/// How the fake collector answers reports.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum Mode {
    /// Stores and acknowledges.
    #[default]
    Accept,
    /// 503 to everything: the agent keeps its reports and retries.
    Unavailable,
    /// 400 for reports with these sequence numbers (refused for good), stores the others.
    Refuse(Vec<u64>),
}

#[derive(Default)]
pub struct Received {
    /// The one-time enrolment secret, taken when used.
    pub secret: Option<String>,
    pub ca_pem: String,
    pub mode: Mode,
    /// Every report id in the order it arrived, duplicates included.
    pub arrivals: Vec<String>,
    pub stored: HashSet<String>,
    pub sequences: Vec<u64>,
    /// Every report stored, in the order stored.
    pub reports: Vec<Report>,
}

pub type Shared = Arc<Mutex<Received>>;

async fn ingest(State(rx): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {CREDENTIAL}")) {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"unknown credential\"}".into());
    }
    let report = match Report::from_json(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{{\"error\":{:?}}}", e.to_string())),
    };
    let id = report.report_id.to_string();
    let mut r = rx.lock().expect("lock");
    match &r.mode {
        Mode::Accept => {}
        Mode::Unavailable => return (StatusCode::SERVICE_UNAVAILABLE, "{\"error\":\"busy\"}".into()),
        Mode::Refuse(seqs) if seqs.contains(&report.sequence) => {
            return (StatusCode::BAD_REQUEST, "{\"error\":\"refused for good\"}".into());
        }
        Mode::Refuse(_) => {}
    }
    r.arrivals.push(id.clone());
    let status = if r.stored.insert(id.clone()) {
        r.sequences.push(report.sequence);
        r.reports.push(report);
        "stored"
    } else {
        "duplicate"
    };
    (
        StatusCode::OK,
        format!("{{\"report_id\":\"{id}\",\"status\":\"{status}\"}}"),
    )
}

async fn enroll(State(rx): State<Shared>, body: String) -> (StatusCode, String) {
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let mut r = rx.lock().expect("lock");
    let given = v["secret"].as_str().map(str::to_string);
    if given.is_none() || r.secret.is_none() || given != r.secret {
        return (
            StatusCode::UNAUTHORIZED,
            "{\"error\":\"unknown, used or expired token\"}".into(),
        );
    }
    r.secret = None; // one time only
    let answer = serde_json::json!({
        "agent_id": "agent-enrolled-1",
        "unit_id": "lab/enrolled",
        "credential": CREDENTIAL,
        "ca_pem": r.ca_pem,
    });
    (StatusCode::OK, answer.to_string())
}

pub struct Pki {
    pub ca_pem: String,
    pub ca_fingerprint: String,
    pub cert_pem: String,
    pub key_pem: String,
}

pub fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Kaohe test CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
    let key = rcgen::KeyPair::generate().expect("key");
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("cert");
    Pki {
        ca_pem: ca.pem(),
        ca_fingerprint: kaohe_agent::delivery::fingerprint(ca.der()),
        // The chain the collector presents: its certificate, then the CA's.
        cert_pem: format!("{}{}", cert.pem(), ca.pem()),
        key_pem: key.serialize_pem(),
    }
}

pub async fn start_collector(addr: SocketAddr, pki: &Pki, rx: Shared) -> axum_server::Handle<SocketAddr> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem(pki.cert_pem.clone().into(), pki.key_pem.clone().into())
        .await
        .expect("tls config");
    let app = Router::new()
        .route("/api/v1/reports", post(ingest))
        .route("/api/v1/enroll", post(enroll))
        .with_state(rx);
    let handle = axum_server::Handle::new();
    let server = axum_server::bind_rustls(addr, tls).handle(handle.clone());
    tokio::spawn(async move {
        let _ = server.serve(app.into_make_service()).await;
    });
    assert!(handle.listening().await.is_some(), "collector listens");
    handle
}

/// A free loopback port.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
}

/// The credential and CA an enrolled agent has in its state directory.
pub fn enrol_files(state: &Path, pki: &Pki) {
    std::fs::write(state.join("credential"), CREDENTIAL).expect("credential");
    std::fs::write(state.join("collector-ca.pem"), &pki.ca_pem).expect("ca");
}

/// An agent config reporting every second to `addr`, probing it by TCP; `extra` is
/// appended (e.g. a `[spool]` section).
pub fn agent_config(dir: &Path, state: &Path, addr: SocketAddr, extra: &str) -> PathBuf {
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "unit_id = \"lab/delivery\"\nagent_id = \"agent-1\"\nstate_dir = {:?}\n\n[collector]\nurl = \"https://{addr}\"\n\n\
             [schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 1\n\n[reachability]\ntimeout_ms = 200\n\n\
             [[reachability.targets]]\nname = \"collector\"\naddress = \"{addr}\"\nkind = \"tcp\"\n\n{extra}",
            state.display().to_string()
        ),
    )
    .expect("config");
    config
}

/// Reports waiting in the spool (not rejected ones).
pub fn spooled(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("spool"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

pub fn start_agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
        .args(["run", "--config"])
        .arg(config)
        .env("KAOHE_LOG", "kaohe_agent=info")
        .spawn()
        .expect("agent starts")
}

/// The agent with its log (stderr) written to `log`.
pub fn start_agent_logging(config: &Path, log: &Path) -> Child {
    let file = std::fs::File::create(log).expect("log file");
    Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
        .args(["run", "--config"])
        .arg(config)
        .env("KAOHE_LOG", "kaohe_agent=info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::from(file))
        .spawn()
        .expect("agent starts")
}

pub fn stop_agent(mut agent: Child) {
    // SIGTERM: the agent spools its batch under way and exits cleanly.
    let _ = Command::new("kill").arg("-TERM").arg(agent.id().to_string()).status();
    let status = agent.wait().expect("agent exits");
    assert!(status.success(), "clean shutdown on SIGTERM: {status}");
}

pub async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// What a collector received from one agent that its counts do not explain: pairs of
/// consecutive reports (by sequence) whose gap is not the increase of `spool_dropped` plus
/// that of `spool_rejected`. Panics if a sequence number is used by two reports.
pub fn unaccounted_gaps(reports: &[Report]) -> Vec<String> {
    let mut by_seq: Vec<&Report> = reports.iter().collect();
    by_seq.sort_by_key(|r| r.sequence);
    let mut bad = Vec::new();
    for w in by_seq.windows(2) {
        let (a, b) = (w[0], w[1]);
        assert_ne!(
            a.sequence, b.sequence,
            "sequence {} used by two reports ({} and {})",
            a.sequence, a.report_id, b.report_id
        );
        let gap = b.sequence - a.sequence - 1;
        let dropped = b.spool_dropped.checked_sub(a.spool_dropped);
        let rejected = b.spool_rejected.checked_sub(a.spool_rejected);
        if dropped.zip(rejected).map(|(d, r)| d + r) != Some(gap) {
            bad.push(format!(
                "between sequences {} and {}: {gap} missing, but dropped {} -> {} and rejected {} -> {}",
                a.sequence, b.sequence, a.spool_dropped, b.spool_dropped, a.spool_rejected, b.spool_rejected
            ));
        }
    }
    bad
}

/// Checks that every gap in what a collector received from one agent is accounted for by
/// the counts, and no sequence number is used twice. Returns the total gap.
pub fn assert_gaps_accounted(reports: &[Report]) -> u64 {
    let bad = unaccounted_gaps(reports);
    assert!(bad.is_empty(), "{}", bad.join("\n"));
    let seqs: Vec<u64> = reports.iter().map(|r| r.sequence).collect();
    match (seqs.iter().min(), seqs.iter().max()) {
        (Some(lo), Some(hi)) => hi - lo + 1 - seqs.len() as u64,
        _ => 0,
    }
}

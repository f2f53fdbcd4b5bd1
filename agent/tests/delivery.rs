//! Delivery end to end over real HTTPS: a fake collector on loopback (a private CA, real
//! acknowledgements, duplicate detection by report id) and the real agent daemon, which
//! is stopped and restarted while the collector is down.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use kaohe_rubric::evidence::Report;

const CREDENTIAL: &str = "test-credential-0123456789";

#[derive(Default)]
struct Received {
    /// The one-time enrolment secret, taken when used.
    secret: Option<String>,
    ca_pem: String,
    /// Every report id in the order it arrived, duplicates included.
    arrivals: Vec<String>,
    stored: HashSet<String>,
    sequences: Vec<u64>,
}

type Shared = Arc<Mutex<Received>>;

async fn ingest(State(rx): State<Shared>, headers: HeaderMap, body: String) -> (StatusCode, String) {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&format!("Bearer {CREDENTIAL}")) {
        return (StatusCode::UNAUTHORIZED, "{\"error\":\"unknown credential\"}".into());
    }
    let _ = &rx;
    let report = match Report::from_json(&body) {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{{\"error\":{:?}}}", e.to_string())),
    };
    let id = report.report_id.to_string();
    let mut r = rx.lock().expect("lock");
    r.arrivals.push(id.clone());
    let status = if r.stored.insert(id.clone()) {
        r.sequences.push(report.sequence);
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

struct Pki {
    ca_pem: String,
    ca_fingerprint: String,
    cert_pem: String,
    key_pem: String,
}

fn pki() -> Pki {
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

async fn start_collector(addr: SocketAddr, pki: &Pki, rx: Shared) -> axum_server::Handle<SocketAddr> {
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

fn spooled(state: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(state.join("spool"))
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "json"))
                .collect()
        })
        .unwrap_or_default()
}

fn start_agent(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
        .args(["run", "--config"])
        .arg(config)
        .env("KAOHE_LOG", "kaohe_agent=info")
        .spawn()
        .expect("agent starts")
}

fn stop_agent(mut agent: Child) {
    // SIGTERM: the agent spools its batch under way and exits cleanly.
    let _ = Command::new("kill").arg("-TERM").arg(agent.id().to_string()).status();
    let status = agent.wait().expect("agent exits");
    assert!(status.success(), "clean shutdown on SIGTERM: {status}");
}

async fn wait_for(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(start.elapsed() < limit, "timed out after {limit:?} waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_made_while_the_collector_is_down_all_arrive_once_across_an_agent_restart() {
    let dir = std::env::temp_dir().join(format!("kaohe-delivery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    std::fs::create_dir_all(&state).expect("state dir");
    let pki = pki();
    std::fs::write(state.join("credential"), CREDENTIAL).expect("credential");
    std::fs::write(state.join("collector-ca.pem"), &pki.ca_pem).expect("ca");
    // A free loopback port for the collector, closed while it is "down".
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let config = dir.join("agent.toml");
    std::fs::write(
        &config,
        format!(
            "unit_id = \"lab/delivery\"\nagent_id = \"agent-1\"\nstate_dir = {:?}\n\n[collector]\nurl = \"https://{addr}\"\n\n\
             [schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 1\n\n[reachability]\ntimeout_ms = 200\n\n\
             [[reachability.targets]]\nname = \"collector\"\naddress = \"{addr}\"\nkind = \"tcp\"\n",
            state.display().to_string()
        ),
    )
    .expect("config");

    // Collector down: the agent spools, is restarted, and spools more.
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(20), "3 spooled reports", || {
        spooled(&state).len() >= 3
    })
    .await;
    stop_agent(agent);
    let before_restart = spooled(&state).len();
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(20), "3 more spooled reports", || {
        spooled(&state).len() >= before_restart + 3
    })
    .await;
    let made_while_down: HashSet<String> = spooled(&state)
        .iter()
        .filter_map(|p| p.file_stem()?.to_str()?.split_once('-').map(|(_, id)| id.to_string()))
        .collect();
    assert!(made_while_down.len() >= 6);

    // The collector returns: everything arrives, nothing twice.
    let rx: Shared = Arc::default();
    let handle = start_collector(addr, &pki, rx.clone()).await;
    wait_for(Duration::from_secs(90), "the spool to drain", || {
        let got = &rx.lock().expect("lock").stored;
        made_while_down.iter().all(|id| got.contains(id))
    })
    .await;
    stop_agent(agent);
    let r = rx.lock().expect("lock");
    let dups = r.arrivals.len() - r.stored.len();
    assert_eq!(dups, 0, "no report sent twice");
    // Delivered plus still spooled (the batch spooled at the final shutdown) = 1..=N.
    let mut seqs = r.sequences.clone();
    seqs.extend(
        spooled(&state)
            .iter()
            .filter_map(|p| p.file_stem()?.to_str()?.split_once('-')?.0.parse::<u64>().ok()),
    );
    seqs.sort_unstable();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "no sequence number lost or repeated across the restart");
    handle.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolling_with_a_one_time_token_pins_the_ca_and_reports_then_flow() {
    let dir = std::env::temp_dir().join(format!("kaohe-enroll-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let state = dir.join("state");
    let pki = pki();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr");
    let rx: Shared = Arc::new(Mutex::new(Received {
        secret: Some("one-time-secret".into()),
        ca_pem: pki.ca_pem.clone(),
        ..Received::default()
    }));
    let handle = start_collector(addr, &pki, rx.clone()).await;
    let token = |fingerprint: &str, expires: i64| {
        kaohe_rubric::enrolment::Token {
            url: format!("https://{addr}"),
            ca_fingerprint: fingerprint.to_string(),
            secret: "one-time-secret".into(),
            expires,
            unit: "lab/enrolled".into(),
        }
        .encode()
    };
    let config = dir.join("agent.toml");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        &config,
        format!(
            "state_dir = {:?}\n\n[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 1\n\n\
             [[reachability.targets]]\naddress = \"{addr}\"\nkind = \"tcp\"\n",
            state.display().to_string()
        ),
    )
    .expect("config");
    let enroll = |token: &str| {
        Command::new(env!("CARGO_BIN_EXE_kaohe-agent"))
            .args(["enroll", token, "--config"])
            .arg(&config)
            .output()
            .expect("runs")
    };
    let now = chrono_now();

    // A token whose pin does not match the collector's CA is refused before anything is sent.
    let wrong = format!("sha256:{}", "00".repeat(32));
    let out = enroll(&token(&wrong, now + 3600));
    assert_eq!(out.status.code(), Some(69));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("pinned CA"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        rx.lock().expect("lock").secret.is_some(),
        "the secret was not spent on a wrong collector"
    );
    // An expired token is refused by the agent itself.
    let out = enroll(&token(&pki.ca_fingerprint, now - 60));
    assert_eq!(out.status.code(), Some(69));
    assert!(String::from_utf8_lossy(&out.stderr).contains("expired"));

    // The right token enrols once.
    let good = token(&pki.ca_fingerprint, now + 3600);
    let out = enroll(&good);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("lab/enrolled"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(state.join("credential"))
        .expect("credential")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the credential is readable by the agent only");
    let out = enroll(&good);
    assert_eq!(out.status.code(), Some(69), "a token works once");
    assert!(String::from_utf8_lossy(&out.stderr).contains("401"));

    // The daemon, with no [collector] in its config, reports with what enrolment stored.
    let agent = start_agent(&config);
    wait_for(Duration::from_secs(30), "2 reports from the enrolled agent", || {
        rx.lock().expect("lock").stored.len() >= 2
    })
    .await;
    stop_agent(agent);
    handle.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}

fn chrono_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

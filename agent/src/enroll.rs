//! Enrolment: `kaohe-agent enroll TOKEN` exchanges a one-time token from the collector
//! (`kaohe-collector token create --unit PATH`) for this agent's own credential.
//!
//! The token is one line, `kaohe1.` followed by base64url (no padding) of JSON:
//! `{"u": collector URL, "f": "sha256:…" CA fingerprint, "s": one-time secret,
//!   "x": expiry (Unix seconds), "n": unit path}`.
//! The agent connects to `POST {u}/api/v1/enroll` trusting only a CA whose fingerprint is
//! `f` (the collector presents it in its chain), sends `{"secret", "hostname",
//! "agent_version"}`, and receives `{"agent_id", "unit_id", "credential", "ca_pem"}`. It
//! stores the credential (mode 0600), the CA certificate and `enrollment.json` in the
//! state directory; the collector keeps only a hash of the credential.

use std::path::Path;
use std::sync::Arc;

use rustls::DigitallySignedStruct;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use serde::{Deserialize, Serialize};

use kaohe_rubric::enrolment::{ENROLL_PATH, Token};

use crate::daemon::{CA_FILE, CREDENTIAL_FILE};
use crate::delivery::fingerprint;
use crate::spool::write_durably;

pub const ENROLLMENT_FILE: &str = "enrollment.json";

/// What the agent keeps after enrolling (besides the credential and the CA certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Enrollment {
    pub agent_id: String,
    pub unit_id: String,
    pub collector_url: String,
    pub ca_fingerprint: String,
}

impl Enrollment {
    pub fn load(state_dir: &Path) -> Option<Enrollment> {
        let text = std::fs::read_to_string(state_dir.join(ENROLLMENT_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

#[derive(Deserialize)]
struct Granted {
    agent_id: String,
    unit_id: String,
    credential: String,
    ca_pem: String,
}

/// Trusts a server whose chain includes the CA with the pinned fingerprint and whose
/// certificate that CA signed for the name connected to.
#[derive(Debug)]
struct PinnedCa {
    pin: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| fingerprint(c).eq_ignore_ascii_case(&self.pin))
            .ok_or_else(|| {
                rustls::Error::General(format!(
                    "采集中心未出示指纹为 {} 的 CA 证书 (the collector did not present the pinned CA)",
                    self.pin
                ))
            })?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, &[], server_name, ocsp, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("注册令牌已过期, 请向管理员申请新令牌 (the token has expired; ask for a new one)")]
    Expired,
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    #[error("{0}")]
    Client(#[source] reqwest::Error),
    #[error("无法连接采集中心 {url} (cannot reach the collector): {}", crate::services::full_message(.source))]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("采集中心拒绝注册 (enrolment refused, HTTP {status}): {text}")]
    Refused { status: reqwest::StatusCode, text: String },
    #[error("采集中心的应答无效 (bad enrolment answer): {0}")]
    BadAnswer(#[source] serde_json::Error),
    #[error("CA 证书无效 (bad CA certificate): {0}")]
    BadCa(#[source] rustls::pki_types::pem::Error),
    #[error("采集中心发来的 CA 证书与令牌中的指纹不符 (the CA sent does not match the token)")]
    CaMismatch,
    #[error("{}: {source}", path.display())]
    StateDir {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Write(#[from] crate::spool::SpoolError),
    #[error("{0}")]
    Json(#[source] serde_json::Error),
}

/// Enrols with the collector named in `token` and stores the result in `state_dir`.
pub async fn enroll(token: &Token, state_dir: &Path, now_unix: i64) -> Result<Enrollment, EnrollError> {
    if token.expires < now_unix {
        return Err(EnrollError::Expired);
    }
    crate::services::install_crypto_provider();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(EnrollError::Tls)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa {
            pin: token.ca_fingerprint.to_lowercase(),
            provider,
        }))
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(EnrollError::Client)?;
    let url = format!("{}{ENROLL_PATH}", token.url.trim_end_matches('/'));
    let body = serde_json::json!({
        "secret": token.secret,
        "hostname": sysinfo::System::host_name().unwrap_or_default(),
        "agent_version": env!("CARGO_PKG_VERSION"),
    });
    let resp = client
        .post(&url)
        .json(&body)
        .send()
        .await
        .map_err(|source| EnrollError::Unreachable { url, source })?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        return Err(EnrollError::Refused { status, text });
    }
    let g: Granted = serde_json::from_str(&text).map_err(EnrollError::BadAnswer)?;
    let ca: CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(g.ca_pem.as_bytes()).map_err(EnrollError::BadCa)?;
    if !fingerprint(&ca).eq_ignore_ascii_case(&token.ca_fingerprint) {
        return Err(EnrollError::CaMismatch);
    }
    std::fs::create_dir_all(state_dir).map_err(|source| EnrollError::StateDir {
        path: state_dir.to_path_buf(),
        source,
    })?;
    write_durably(state_dir, &state_dir.join(CREDENTIAL_FILE), g.credential.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(state_dir.join(CREDENTIAL_FILE), std::fs::Permissions::from_mode(0o600));
    }
    write_durably(state_dir, &state_dir.join(CA_FILE), g.ca_pem.as_bytes())?;
    let enrollment = Enrollment {
        agent_id: g.agent_id,
        unit_id: g.unit_id,
        collector_url: token.url.clone(),
        ca_fingerprint: token.ca_fingerprint.to_lowercase(),
    };
    let json = serde_json::to_vec_pretty(&enrollment).map_err(EnrollError::Json)?;
    write_durably(state_dir, &state_dir.join(ENROLLMENT_FILE), &json)?;
    Ok(enrollment)
}

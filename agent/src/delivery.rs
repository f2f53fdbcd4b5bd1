//! Delivery of spooled reports to the collector over HTTPS, trusting only the collector's
//! own CA (whose fingerprint the agent pins at enrolment).
//!
//! `POST {collector}/api/v1/reports` with `Authorization: Bearer CREDENTIAL` and the report
//! as JSON. The collector answers `200 {"report_id": …, "status": "stored" | "duplicate"}`
//! only after the report is durably committed; only then does the report leave the
//! spool. A 4xx other than 401/403/408/429 means the collector will never take this
//! report (malformed, too large): it is moved aside to `spool/rejected/`. Anything else
//! — no connection, 5xx, 429, an unknown credential — is retried with exponential
//! back-off and full jitter. Report ids let the collector drop duplicates, so a report
//! sent twice (e.g. the ack was lost) is still counted once.

use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Deserialize;

use crate::spool::{Entry, Spool};

pub use kaohe_rubric::enrolment::INGEST_PATH;

/// Back-off: the n-th retry waits a random time in `0..min(MAX, BASE × 2^n)`.
const BASE: Duration = Duration::from_secs(1);
const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    attempt: u32,
}

impl Backoff {
    /// The next wait, and one more attempt counted.
    pub fn next_wait(&mut self) -> Duration {
        let ceiling = BASE.saturating_mul(1u32 << self.attempt.min(16)).min(MAX);
        self.attempt = self.attempt.saturating_add(1);
        let ms = ceiling.as_millis().max(1) as u64;
        Duration::from_millis(rand::random_range(ms / 10..=ms))
    }

    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

/// SHA-256 fingerprint of a DER certificate, as `sha256:<hex>`.
pub fn fingerprint(der: &[u8]) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let hex: String = d.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

/// Why reports cannot be delivered now.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("采集中心 CA 证书无效 (bad collector CA certificate): {0}")]
    CaPem(#[source] rustls::pki_types::pem::Error),
    #[error("采集中心 CA 证书无效 (bad collector CA certificate): {0}")]
    Ca(#[source] rustls::Error),
    #[error("采集中心 CA 指纹不符: 应为 {want}, 实为 {got} (collector CA fingerprint mismatch)")]
    PinMismatch { want: String, got: String },
    #[error("{0}")]
    Tls(#[source] rustls::Error),
    #[error("无法创建 HTTPS 客户端 (cannot build the HTTPS client): {0}")]
    Client(#[source] reqwest::Error),
    #[error("尚未注册: 缺少凭据或采集中心证书, 请运行 kaohe-agent enroll (not enrolled yet)")]
    NotEnrolled,
    #[error("{0}")]
    Spool(#[from] crate::spool::SpoolError),
    /// The collector is unreachable or said to try again later, and why.
    #[error("{0}")]
    Retry(String),
}

/// Delivery stopped after `delivered` reports, to be retried later.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct Paused {
    pub delivered: usize,
    #[source]
    pub reason: DeliveryError,
}

/// An HTTPS client that trusts only `ca_pem`, after checking it against `pin`.
pub fn client(ca_pem: &[u8], pin: Option<&str>) -> Result<reqwest::Client, DeliveryError> {
    crate::services::install_crypto_provider();
    let ca = CertificateDer::from_pem_slice(ca_pem).map_err(DeliveryError::CaPem)?;
    if let Some(want) = pin {
        let got = fingerprint(&ca);
        if !got.eq_ignore_ascii_case(want) {
            return Err(DeliveryError::PinMismatch {
                want: want.to_string(),
                got,
            });
        }
    }
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).map_err(DeliveryError::Ca)?;
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(DeliveryError::Tls)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .user_agent(concat!("kaohe-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(DeliveryError::Client)
}

/// What the collector said about one report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// Durably stored (or already stored): remove from the spool.
    Acknowledged,
    /// Never acceptable: move aside.
    Refused(String),
    /// Try again later.
    Retry(String),
}

#[derive(Deserialize)]
struct Ack {
    report_id: String,
    status: String,
}

/// Sends one report body.
pub async fn send(client: &reqwest::Client, collector: &str, credential: &str, report_id: &str, body: Vec<u8>) -> Sent {
    let url = format!("{}{INGEST_PATH}", collector.trim_end_matches('/'));
    let resp = client
        .post(&url)
        .bearer_auth(credential)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await;
    let resp = match resp {
        Ok(r) => r,
        Err(e) => {
            return Sent::Retry(format!(
                "无法连接采集中心 (collector unreachable): {}",
                crate::services::full_message(&e)
            ));
        }
    };
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match status.as_u16() {
        200 | 201 => match serde_json::from_str::<Ack>(&text) {
            Ok(a) if a.report_id == report_id && (a.status == "stored" || a.status == "duplicate") => {
                Sent::Acknowledged
            }
            _ => Sent::Retry(format!("采集中心的确认无效 (unexpected acknowledgement): {text}")),
        },
        401 | 403 => Sent::Retry(format!(
            "采集中心拒绝本代理的凭据, 请重新注册 (credential refused, HTTP {status}): {text}"
        )),
        408 | 429 => Sent::Retry(format!("采集中心繁忙 (HTTP {status})")),
        400..=499 => Sent::Refused(format!("HTTP {status}: {text}")),
        _ => Sent::Retry(format!("采集中心错误 (HTTP {status}): {text}")),
    }
}

fn report_id_of(e: &Entry) -> String {
    e.path
        .file_stem()
        .and_then(|s| s.to_str())
        .and_then(|s| s.split_once('-'))
        .map(|(_, id)| id.to_string())
        .unwrap_or_default()
}

/// Sends every waiting report, oldest first, until the spool is empty (Ok(sent)) or the
/// collector must be retried later (Err, saying why and how many were delivered).
pub async fn drain(
    spool: &Spool,
    client: &reqwest::Client,
    collector: &str,
    credential: &str,
) -> Result<usize, Paused> {
    let mut sent = 0usize;
    let paused = |delivered: usize| {
        move |e: crate::spool::SpoolError| Paused {
            delivered,
            reason: e.into(),
        }
    };
    let pending = spool.pending().map_err(paused(0))?;
    for e in pending {
        let body = spool.read(&e).map_err(paused(sent))?;
        match send(client, collector, credential, &report_id_of(&e), body).await {
            Sent::Acknowledged => {
                spool.remove(&e).map_err(paused(sent))?;
                sent += 1;
            }
            Sent::Refused(why) => {
                let r = spool.reject(&e).map_err(paused(sent))?;
                let kept = r
                    .path
                    .as_deref()
                    .map_or_else(|| "-".into(), |p| p.display().to_string());
                tracing::error!(sequence = e.sequence, report = %kept, reason = %why, rejected_total = r.total, "the collector refused a report for good; moved aside");
            }
            Sent::Retry(why) => {
                return Err(Paused {
                    delivered: sent,
                    reason: DeliveryError::Retry(why),
                });
            }
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let mut b = Backoff::default();
        let waits: Vec<Duration> = (0..12).map(|_| b.next_wait()).collect();
        assert!(waits[0] <= Duration::from_secs(1));
        assert!(waits.iter().all(|w| *w <= MAX));
        assert!(waits[11] >= MAX / 10, "late retries wait long: {:?}", waits[11]);
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }

    #[test]
    fn fingerprint_is_sha256_hex() {
        assert_eq!(
            fingerprint(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}

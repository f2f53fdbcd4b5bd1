//! Service checks of application systems and portal sites (二.2): an HTTP(S) GET of each
//! configured URL — status, latency, and TLS errors told apart from other failures.

use std::time::{Duration, Instant};

use chrono::Utc;
use kaohe_rubric::evidence::{ServiceCheck, ServiceKind};

use crate::config::{self, Service};

/// Longest a service may take to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// Installs ring as the process's one rustls crypto provider (idempotent).
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The HTTP client of the service checks cannot be built.
#[derive(Debug, thiserror::Error)]
#[error("无法创建 HTTP 客户端 (cannot build the HTTP client): {0}")]
pub struct ClientError(#[source] reqwest::Error);

/// A client for service checks: system roots, no redirects followed beyond 5, a timeout.
pub fn client() -> Result<reqwest::Client, ClientError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(5))
        .user_agent(concat!("kaohe-agent/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientError)
}

/// The TLS error in an error's source chain, if any.
fn tls_error(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<rustls::Error>() {
            return Some(t.to_string());
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(t) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(t.to_string());
        }
        cur = err.source();
    }
    None
}

pub(crate) fn full_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        parts.push(s.to_string());
        cur = s.source();
    }
    parts.join(": ")
}

/// Checks one service.
pub async fn check(client: &reqwest::Client, s: &Service) -> ServiceCheck {
    let at = Utc::now();
    let start = Instant::now();
    let result = client.get(&s.url).send().await;
    let latency_ms = Some(start.elapsed().as_secs_f64() * 1000.0);
    let kind = match s.kind {
        config::ServiceKind::App => ServiceKind::App,
        config::ServiceKind::Portal => ServiceKind::Portal,
    };
    let base = ServiceCheck {
        kind,
        name: s.name.clone(),
        url: s.url.clone(),
        at,
        ok: false,
        status: None,
        latency_ms,
        error: None,
        tls_error: None,
    };
    match result {
        Ok(resp) => {
            let status = resp.status();
            ServiceCheck {
                ok: status.is_success() || status.is_redirection(),
                status: Some(status.as_u16()),
                error: (!(status.is_success() || status.is_redirection())).then(|| format!("HTTP {status}")),
                ..base
            }
        }
        Err(e) => ServiceCheck {
            tls_error: tls_error(&e),
            error: Some(if e.is_timeout() {
                "timeout".into()
            } else {
                full_message(&e)
            }),
            ..base
        },
    }
}

/// Checks every service concurrently; results in config order.
pub async fn check_all(client: &reqwest::Client, services: &[Service]) -> Vec<ServiceCheck> {
    let mut set = tokio::task::JoinSet::new();
    for (i, s) in services.iter().enumerate() {
        let (c, s) = (client.clone(), s.clone());
        set.spawn(async move { (i, check(&c, &s).await) });
    }
    let mut out = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok(x) = r {
            out.push(x);
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().map(|(_, c)| c).collect()
}

//! Pushing new alerts to the configured webhook.

use chrono::Utc;

use crate::store::Store;

/// Pushes new alerts to `url` as they appear: every 2 seconds, up to 50 at a time, as
/// `{"alerts": [Alert…]}`. A failed push is retried later (the alerts are given back),
/// backing off up to 5 minutes while the webhook keeps failing; each failure is logged with
/// the webhook's host and the reason (never the whole URL, which may hold a token).
pub async fn webhook_loop(store: Store, url: String) {
    let host = webhook_host(&url);
    let client = match reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(webhook_host = %host, error = %e.without_url(), "webhook client could not be built; alerts are not pushed");
            return;
        }
    };
    let every = std::time::Duration::from_secs(2);
    let mut wait = every;
    loop {
        tokio::time::sleep(wait).await;
        let alerts = match store.claim_unnotified_alerts(Utc::now(), 50).await {
            Ok(a) if a.is_empty() => continue,
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "alerts for the webhook could not be read");
                continue;
            }
        };
        let body = serde_json::json!({ "alerts": alerts });
        let sent = client.post(&url).json(&body).send().await;
        match sent {
            Ok(resp) if resp.status().is_success() => {
                tracing::info!(webhook_host = %host, count = alerts.len(), "告警已推送 (alerts pushed to the webhook)");
                wait = every;
            }
            other => {
                let (status, why) = match other {
                    Ok(resp) => (Some(resp.status().as_u16()), format!("HTTP {}", resp.status())),
                    Err(e) => (None, reason(&e)),
                };
                wait = (wait * 2).min(std::time::Duration::from_secs(300));
                tracing::warn!(
                    webhook_host = %host,
                    status,
                    error = %why,
                    alerts = alerts.len(),
                    retry_in_secs = wait.as_secs(),
                    "告警推送失败, 稍后重试 (webhook push failed; will retry)"
                );
                if let Err(e) = store.unclaim_alerts(&alerts).await {
                    tracing::error!(error = %e, "alerts could not be given back for retry");
                }
            }
        }
    }
}

/// The host (and port) of a webhook URL, for the log.
fn webhook_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_else(|| "(invalid URL)".into())
}

/// A request error and its causes, without the URL: "connection refused", "timed out"…
fn reason(e: &reqwest::Error) -> String {
    let mut out = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "cannot connect".to_string()
    } else {
        "request failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

//! Live alerts: a host bridging the private network and the internet, or the private
//! LAN reaching an internet canary. Raised at ingest from each report, kept once per
//! unit and subject (updated while it recurs), shown on the dashboard and pushed to the
//! configured webhook.

use chrono::{DateTime, Duration, Utc};
use kaohe_rubric::evidence::{Report, Severity};
use serde::Serialize;
use sqlx::Row;

use crate::store::{Store, StoreError, from_millis, millis};

/// An alert is open while it recurred within this long.
pub const OPEN_FOR: Duration = Duration::hours(24);

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// A dual-homed host or a leak path (三.4).
    Bridging,
    /// The private LAN reached an internet canary (三.3).
    IsolationBreach,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Bridging => "bridging",
            AlertKind::IsolationBreach => "isolation_breach",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            AlertKind::Bridging => "双网卡/跨网桥接",
            AlertKind::IsolationBreach => "专网可访问互联网",
        }
    }
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub unit_id: String,
    /// Stable per subject, e.g. "bridging:room-1:default_route_not_private".
    pub key: String,
    pub kind: AlertKind,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
    /// What was found, Chinese first, e.g. "发现双网卡主机 room-1 (self_check) …".
    pub detail: String,
}

/// The alerts one report raises.
pub fn from_report(r: &Report, tz: chrono_tz::Tz) -> Vec<Alert> {
    let mut out = Vec::new();
    let alert = |kind: AlertKind, key: String, at: DateTime<Utc>, detail: String| Alert {
        unit_id: r.unit_id.clone(),
        key,
        kind,
        first_seen: at,
        last_seen: at,
        detail,
    };
    if let Some(sc) = &r.self_check {
        for f in sc.findings.iter().filter(|f| f.severity == Severity::Violation) {
            out.push(alert(
                AlertKind::Bridging,
                format!("bridging:{}:{}", r.host.hostname, f.code),
                sc.at,
                format!(
                    "发现双网卡主机 {} ({}{}): {}; {}",
                    r.host.hostname,
                    f.code,
                    f.interface
                        .as_deref()
                        .map(|i| format!(", 接口 {i}"))
                        .unwrap_or_default(),
                    f.detail,
                    f.why_zh
                ),
            ));
        }
    }
    for l in &r.leaks {
        out.push(alert(
            AlertKind::Bridging,
            format!("bridging:{}", l.mac.as_deref().unwrap_or(&l.ip)),
            l.at,
            format!(
                "发现跨网桥接主机 {}{} (无代理探测 {:?}, {}): {}",
                l.ip,
                l.mac.as_deref().map(|m| format!(" [{m}]")).unwrap_or_default(),
                l.method,
                l.protocol,
                l.detail
            ),
        ));
    }
    for i in r.isolation.iter().filter(|i| i.reached) {
        out.push(alert(
            AlertKind::IsolationBreach,
            format!("isolation:{}", i.canary),
            i.at,
            format!(
                "专网局域网于 {} 可访问互联网探测点 {} ({:?}{})",
                i.at.with_timezone(&tz).format("%Y-%m-%d %H:%M"),
                i.canary,
                i.protocol,
                i.via_interface
                    .as_deref()
                    .map(|v| format!(", 经接口 {v}"))
                    .unwrap_or_default()
            ),
        ));
    }
    out
}

fn alert_from(row: &sqlx::any::AnyRow) -> Result<Alert, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let first: i64 = row.try_get("first_seen")?;
    let last: i64 = row.try_get("last_seen")?;
    Ok(Alert {
        unit_id: row.try_get("unit_id")?,
        key: row.try_get("key")?,
        kind: if kind == "isolation_breach" {
            AlertKind::IsolationBreach
        } else {
            AlertKind::Bridging
        },
        first_seen: from_millis(first),
        last_seen: from_millis(last),
        detail: row.try_get("detail")?,
    })
}

impl Store {
    /// Records alerts inside an ingest transaction: new ones are inserted (to be
    /// notified), recurring ones get their last-seen time and detail updated.
    pub async fn upsert_alerts(tx: &mut sqlx::Transaction<'_, sqlx::Any>, alerts: &[Alert]) -> Result<(), StoreError> {
        for a in alerts {
            sqlx::query(
                "INSERT INTO alerts (unit_id, key, kind, first_seen, last_seen, detail) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (unit_id, key) DO UPDATE SET \
                 last_seen = CASE WHEN excluded.last_seen > alerts.last_seen THEN excluded.last_seen ELSE alerts.last_seen END, \
                 first_seen = CASE WHEN alerts.last_seen < excluded.first_seen - $7 THEN excluded.first_seen \
                     WHEN excluded.first_seen < alerts.first_seen THEN excluded.first_seen ELSE alerts.first_seen END, \
                 notified_at = CASE WHEN alerts.last_seen < excluded.first_seen - $7 THEN NULL ELSE alerts.notified_at END, \
                 detail = excluded.detail",
            )
            .bind(&a.unit_id)
            .bind(&a.key)
            .bind(a.kind.as_str())
            .bind(millis(a.first_seen))
            .bind(millis(a.last_seen))
            .bind(&a.detail)
            // Seen again after it had closed: a new occurrence, pushed again.
            .bind(OPEN_FOR.num_milliseconds())
            .execute(&mut **tx)
            .await?;
        }
        Ok(())
    }

    /// Alerts seen within [`OPEN_FOR`] of `now`, newest first; all units or the given ones.
    pub async fn open_alerts(&self, units: Option<&[String]>, now: DateTime<Utc>) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE last_seen >= $1 ORDER BY last_seen DESC, unit_id, key")
            .bind(millis(now - OPEN_FOR))
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let a = alert_from(row)?;
            if units.is_none_or(|u| u.contains(&a.unit_id)) {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Claims up to `limit` alerts not yet pushed to the webhook, marking them sent at
    /// `now`; several collectors never push the same alert twice.
    pub async fn claim_unnotified_alerts(&self, now: DateTime<Utc>, limit: i64) -> Result<Vec<Alert>, StoreError> {
        let rows = sqlx::query("SELECT * FROM alerts WHERE notified_at IS NULL ORDER BY first_seen LIMIT $1")
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let a = alert_from(row)?;
            let claimed = sqlx::query(
                "UPDATE alerts SET notified_at = $1 WHERE unit_id = $2 AND key = $3 AND notified_at IS NULL",
            )
            .bind(millis(now))
            .bind(&a.unit_id)
            .bind(&a.key)
            .execute(self.pool())
            .await?;
            if claimed.rows_affected() == 1 {
                out.push(a);
            }
        }
        Ok(out)
    }

    /// Gives claimed alerts back (the webhook failed), to be tried again.
    pub async fn unclaim_alerts(&self, alerts: &[Alert]) -> Result<(), StoreError> {
        for a in alerts {
            sqlx::query("UPDATE alerts SET notified_at = NULL WHERE unit_id = $1 AND key = $2")
                .bind(&a.unit_id)
                .bind(&a.key)
                .execute(self.pool())
                .await?;
        }
        Ok(())
    }
}

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

//! Live alerts: a host bridging the private network and the internet, or the private
//! LAN reaching an internet canary. Raised at ingest from each report, kept once per
//! unit and subject (updated while it recurs), shown on the dashboard and pushed to the
//! configured webhook.

use chrono::{DateTime, Duration, Utc};
use kaohe_rubric::evidence::{Report, Severity};
use serde::Serialize;

mod webhook;

pub use webhook::webhook_loop;

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

    /// The kind stored as [`AlertKind::as_str`]; anything else counts as bridging.
    pub fn parse(s: &str) -> AlertKind {
        if s == "isolation_breach" {
            AlertKind::IsolationBreach
        } else {
            AlertKind::Bridging
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

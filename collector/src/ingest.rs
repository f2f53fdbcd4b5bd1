//! The agents' HTTPS API: enrolment and report ingest.
//!
//! - `POST /api/v1/enroll` `{"secret", "hostname", "agent_version"}` → `{"agent_id",
//!   "unit_id", "credential", "ca_pem"}`; 401 for an unknown, used or expired secret.
//! - `POST /api/v1/reports` with `Authorization: Bearer CREDENTIAL` and a schema-v1 report
//!   → `{"report_id", "status": "stored" | "duplicate"}`, sent only after the commit.
//!   401 unknown credential, 403 revoked agent or a report naming another agent or unit
//!   (an agent enrolled as a leak listener may name a unit below its own, with
//!   spoofed-source findings only),
//!   400 malformed JSON or wrong schema version (the message says which was expected),
//!   413 body too large, 429 over the per-agent rate.
//!
//! Errors are JSON `{"error": "…"}`, Chinese first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use kaohe_rubric::enrolment::{ENROLL_PATH, INGEST_PATH};
use kaohe_rubric::evidence::{EvidenceError, Report};
use serde::Deserialize;

use crate::store::{Store, Stored};

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub ingested: AtomicU64,
    pub duplicates: AtomicU64,
    pub rejected: AtomicU64,
    pub enrolled: AtomicU64,
}

/// Shared by the handlers.
#[derive(Debug)]
pub struct AppState {
    pub store: Store,
    writer: crate::batch::Writer,
    pub ca_pem: String,
    pub metrics: Metrics,
    pub reports_per_minute: u32,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl AppState {
    pub fn new(store: Store, ca_pem: String, reports_per_minute: u32) -> AppState {
        AppState {
            writer: crate::batch::Writer::start(store.clone()),
            store,
            ca_pem,
            metrics: Metrics::default(),
            reports_per_minute,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// A fixed one-minute window per agent (per collector process).
    fn allow(&self, agent: &str) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        let slot = w.entry(agent.to_string()).or_insert((now, 0));
        if now.duration_since(slot.0) >= Duration::from_secs(60) {
            *slot = (now, 0);
        }
        slot.1 += 1;
        slot.1 <= self.reports_per_minute
    }
}

/// Every path the router serves; `collector/api/openapi.json` describes each (tested).
pub const PATHS: &[&str] = &[INGEST_PATH, ENROLL_PATH, "/healthz", "/metrics"];

/// The OpenAPI description of this API.
pub const OPENAPI_JSON: &str = include_str!("../api/openapi.json");

/// The router of the agents' API (and health and metrics).
pub fn router(state: Arc<AppState>, max_body_bytes: usize) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .route(ENROLL_PATH, post(enroll))
        .route(PATHS[2], get(|| async { "ok\n" }))
        .route(PATHS[3], get(metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, zh: &str, en: &str) -> Response {
    let body = serde_json::json!({ "error": format!("{zh} ({en})") });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

async fn ingest(State(s): State<Arc<AppState>>, headers: HeaderMap, body: String) -> Response {
    let reject = |status, zh: &str, en: &str| {
        s.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        error(status, zh, en)
    };
    let Some(credential) = bearer(&headers) else {
        return reject(StatusCode::UNAUTHORIZED, "缺少凭据", "missing bearer credential");
    };
    let agent = match s.store.agent_by_credential(credential).await {
        Ok(Some(a)) => a,
        Ok(None) => return reject(StatusCode::UNAUTHORIZED, "凭据无效", "unknown credential"),
        Err(e) => {
            tracing::error!(error = %e, "credential lookup failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "数据库暂不可用",
                "database unavailable",
            );
        }
    };
    if agent.revoked_at.is_some() {
        return reject(StatusCode::FORBIDDEN, "该代理已被吊销", "this agent is revoked");
    }
    if !s.allow(&agent.id) {
        let mut r = reject(StatusCode::TOO_MANY_REQUESTS, "报告过于频繁", "rate limit exceeded");
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        return r;
    }
    let report = match Report::from_json(&body) {
        Ok(r) => r,
        Err(
            e @ (EvidenceError::Json(_) | EvidenceError::MissingVersion { .. } | EvidenceError::WrongVersion { .. }),
        ) => {
            return reject(StatusCode::BAD_REQUEST, "报告格式错误", &e.to_string());
        }
        Err(e) => return reject(StatusCode::UNPROCESSABLE_ENTITY, "报告内容错误", &e.to_string()),
    };
    if let Some(field) = report.rollup_fields() {
        return reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            "报告含有仅供采集中心汇总使用的字段",
            &format!("the report carries `{field}`, which only the collector's roll-ups may have"),
        );
    }
    // A leak listener is enrolled for a unit high in the tree (the department) and reports
    // leak findings for the units below it; nothing else may cross units.
    let listener_ok = report.unit_id != agent.unit_id
        && agent.kind == crate::store::LISTENER
        && report.is_leak_only()
        && s.store.is_below(&report.unit_id, &agent.unit_id).await.unwrap_or(false);
    if report.agent_id != agent.id || (report.unit_id != agent.unit_id && !listener_ok) {
        tracing::warn!(agent = %agent.id, claimed_unit = %report.unit_id, "report names another agent or unit");
        return reject(
            StatusCode::FORBIDDEN,
            "报告所属单位或代理与凭据不符",
            "the report names another agent or unit than the credential",
        );
    }
    let report_id = report.report_id;
    match s.writer.store(report, body).await {
        Ok(stored) => {
            let status = match stored {
                Stored::New => {
                    s.metrics.ingested.fetch_add(1, Ordering::Relaxed);
                    "stored"
                }
                Stored::Duplicate => {
                    s.metrics.duplicates.fetch_add(1, Ordering::Relaxed);
                    "duplicate"
                }
            };
            let body = serde_json::json!({ "report_id": report_id.to_string(), "status": status });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "report not stored");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "报告未能保存, 请稍后重试",
                "not stored; retry later",
            )
        }
    }
}

#[derive(Deserialize)]
struct EnrolRequest {
    secret: String,
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    agent_version: String,
}

/// A fresh random secret, URL-safe.
pub fn random_secret() -> String {
    let bytes: [u8; 32] = rand::random();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn enroll(State(s): State<Arc<AppState>>, body: String) -> Response {
    let Ok(req) = serde_json::from_str::<EnrolRequest>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "注册请求格式错误",
            "malformed enrolment request",
        );
    };
    let agent_id = format!("agent-{}", uuid::Uuid::new_v4().simple());
    let credential = random_secret();
    let hostname: String = req.hostname.chars().take(255).collect();
    let version: String = req.agent_version.chars().take(64).collect();
    match s
        .store
        .enrol(&req.secret, &agent_id, &credential, &hostname, &version, Utc::now())
        .await
    {
        Ok(Some(unit_id)) => {
            s.metrics.enrolled.fetch_add(1, Ordering::Relaxed);
            tracing::info!(agent = %agent_id, unit = %unit_id, host = %hostname, "agent enrolled");
            let body = serde_json::json!({
                "agent_id": agent_id,
                "unit_id": unit_id,
                "credential": credential,
                "ca_pem": s.ca_pem,
            });
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
        Ok(None) => error(
            StatusCode::UNAUTHORIZED,
            "注册令牌无效、已使用或已过期",
            "unknown, used or expired token",
        ),
        Err(e) => {
            tracing::error!(error = %e, "enrolment failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "数据库暂不可用",
                "database unavailable",
            )
        }
    }
}

async fn metrics(State(s): State<Arc<AppState>>) -> Response {
    let m = &s.metrics;
    let mut text = format!(
        "# HELP kaohe_reports_ingested_total Reports stored.\n# TYPE kaohe_reports_ingested_total counter\nkaohe_reports_ingested_total {}\n\
         # HELP kaohe_reports_duplicate_total Reports received again and acknowledged without storing.\n# TYPE kaohe_reports_duplicate_total counter\nkaohe_reports_duplicate_total {}\n\
         # HELP kaohe_reports_rejected_total Reports refused (auth, rate, schema, forged unit).\n# TYPE kaohe_reports_rejected_total counter\nkaohe_reports_rejected_total {}\n\
         # HELP kaohe_agents_enrolled_total Agents enrolled by this process.\n# TYPE kaohe_agents_enrolled_total counter\nkaohe_agents_enrolled_total {}\n",
        m.ingested.load(Ordering::Relaxed),
        m.duplicates.load(Ordering::Relaxed),
        m.rejected.load(Ordering::Relaxed),
        m.enrolled.load(Ordering::Relaxed),
    );
    // From the database, so every collector sharing it reports the same.
    if let Ok(seen) = s.store.last_seen_by_unit().await {
        text.push_str(
            "# HELP kaohe_unit_last_seen_seconds When a unit's agents last delivered a report (Unix time).\n\
             # TYPE kaohe_unit_last_seen_seconds gauge\n",
        );
        for (unit, ms) in seen {
            let label = unit.replace('\\', "\\\\").replace('"', "\\\"");
            text.push_str(&format!(
                "kaohe_unit_last_seen_seconds{{unit=\"{label}\"}} {}\n",
                ms / 1000
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

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
//!   408 body not received within `body_timeout_secs`, 413 body too large, 422 a report
//!   that can never be stored (a NUL character, a value no agent produces, a roll-up
//!   field), 429 over the per-agent rate or with too many reports under way, 503 only for
//!   what passes (the database away, the in-flight body budget spent, a report dated ahead
//!   of the collector's clock), with `Retry-After`.
//! - The credential is checked from the headers before a byte of the body is read.
//! - `GET /metrics` needs `metrics_token` as a bearer token, or without one configured
//!   comes only from loopback.
//!
//! Errors are JSON `{"error": "…"}`, Chinese first.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use chrono::Utc;
use kaohe_rubric::bounds::Bounds;
use kaohe_rubric::enrolment::{ENROLL_PATH, INGEST_PATH};
use kaohe_rubric::evidence::{EvidenceError, Report};
use serde::Deserialize;

use crate::batch::WriteError;
use crate::bodies::{BodyError, Budgets};
use crate::config::CollectorConfig;
use crate::conns::Conn;
use crate::store::{Agent, Store, Stored};
use crate::warn_throttled;

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
    max_body: usize,
    budgets: Budgets,
    metrics_token: Option<String>,
    /// Requests under way per agent, bounded by [`MAX_IN_FLIGHT_PER_AGENT`].
    in_flight: Arc<Mutex<HashMap<String, u32>>>,
    tracker: Arc<crate::conns::Tracker>,
}

/// Largest enrolment request: a secret, a host name and a version.
const MAX_ENROL_BODY: usize = 16 * 1024;

/// Reports one agent may have under way at once (an agent sends one at a time): a stolen
/// credential cannot hold more connection slots than this.
pub const MAX_IN_FLIGHT_PER_AGENT: u32 = 4;

/// One of an agent's requests under way; counted down when dropped.
struct InFlight {
    agent: String,
    map: Arc<Mutex<HashMap<String, u32>>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut m = self.map.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(n) = m.get_mut(&self.agent) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&self.agent);
            }
        }
    }
}

impl AppState {
    pub fn new(
        store: Store,
        ca_pem: String,
        config: &CollectorConfig,
        budgets: Budgets,
        tracker: Arc<crate::conns::Tracker>,
    ) -> AppState {
        AppState {
            writer: crate::batch::Writer::start(store.clone()),
            store,
            ca_pem,
            metrics: Metrics::default(),
            reports_per_minute: config.agent_reports_per_minute,
            windows: Mutex::new(HashMap::new()),
            max_body: config.max_body_kib * 1024,
            budgets,
            metrics_token: config.metrics_token.clone(),
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            tracker,
        }
    }

    /// Counts a request of `agent` under way; `None` when it has too many already.
    fn in_flight(&self, agent: &str) -> Option<InFlight> {
        let mut m = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = m.entry(agent.to_string()).or_insert(0);
        if *n >= MAX_IN_FLIGHT_PER_AGENT {
            return None;
        }
        *n += 1;
        Some(InFlight {
            agent: agent.to_string(),
            map: self.in_flight.clone(),
        })
    }

    /// A fixed one-minute window per agent (per collector process).
    fn allow(&self, agent: &str) -> bool {
        let mut w = self.windows.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        if w.len() > 100_000 {
            w.retain(|_, (start, _)| now.duration_since(*start) < Duration::from_secs(60));
        }
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

/// The router of the agents' API (and health and metrics). Bodies are read by the
/// handlers themselves, after the credential is checked, through the shared [`Budget`].
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(INGEST_PATH, post(ingest))
        .route(ENROLL_PATH, post(enroll))
        .route(PATHS[2], get(|| async { "ok\n" }))
        .route(PATHS[3], get(metrics))
        .with_state(state)
}

impl AppState {
    /// A refusal of a report, counted.
    fn reject(&self, status: StatusCode, zh: &str, en: &str) -> Response {
        self.metrics.rejected.fetch_add(1, Ordering::Relaxed);
        error(status, zh, en)
    }
}

fn error(status: StatusCode, zh: &str, en: &str) -> Response {
    let body = serde_json::json!({ "error": format!("{zh} ({en})") });
    (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

fn body_error(e: &BodyError) -> Response {
    let (status, message) = e.status_and_message();
    let body = serde_json::json!({ "error": message });
    let mut r = (status, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response();
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
    }
    r
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

/// The peer address for the log ("-" when the request did not come over the listener).
fn peer_of(conn: &Option<Extension<Conn>>) -> String {
    conn.as_ref().map_or_else(|| "-".to_string(), |c| c.peer.to_string())
}

async fn ingest(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<Conn>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer_of(&conn);
    let (agent, _in_flight) = match admit(&s, &peer, &headers).await {
        Ok(admitted) => admitted,
        Err(refused) => return refused,
    };
    // A known agent: its connection is no longer closed to make room.
    if let Some(Extension(c)) = &conn {
        c.serving();
    }
    let held = match s.budgets.members.read(&headers, body, s.max_body, None).await {
        Ok(h) => h,
        Err(e) => {
            s.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            warn_throttled!(
                "ingest_body",
                %peer,
                agent = %agent.id,
                unit = %agent.unit_id,
                problem = ?e,
                max_body_kib = s.max_body / 1024,
                max_inflight_body_mib = s.budgets.members.total_mib(),
                "报告请求体被拒绝 (report body refused)"
            );
            return body_error(&e);
        }
    };
    let Ok(body) = std::str::from_utf8(&held.bytes) else {
        return s.reject(
            StatusCode::BAD_REQUEST,
            "报告不是 UTF-8 文本",
            "the report is not UTF-8 text",
        );
    };
    let report = match checked_report(&s, &peer, &agent, body).await {
        Ok(report) => report,
        Err(refused) => return refused,
    };
    store_report(&s, &peer, &agent, report, body).await
}

/// The agent a report comes from, from the headers alone (nobody unknown gets a body
/// read), and its slot among its reports under way; or the refusal.
async fn admit(s: &AppState, peer: &str, headers: &HeaderMap) -> Result<(Agent, InFlight), Response> {
    // The credential first, from the headers alone: nobody unknown gets a body read.
    let Some(credential) = bearer(headers) else {
        warn_throttled!("ingest_unauthenticated", %peer, "报告缺少凭据 (report without a credential): 401");
        return Err(s.reject(StatusCode::UNAUTHORIZED, "缺少凭据", "missing bearer credential"));
    };
    let agent = match s.store.agent_by_credential(credential).await {
        Ok(Some(a)) => a,
        Ok(None) => {
            warn_throttled!("ingest_unknown_credential", %peer, "报告凭据无效 (report with an unknown credential): 401");
            return Err(s.reject(StatusCode::UNAUTHORIZED, "凭据无效", "unknown credential"));
        }
        Err(e) => {
            tracing::error!(error = %e, %peer, "credential lookup failed");
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "数据库暂不可用",
                "database unavailable",
            ));
        }
    };
    if agent.revoked_at.is_some() {
        warn_throttled!("ingest_revoked", %peer, agent = %agent.id, unit = %agent.unit_id, "已吊销的代理仍在上报 (a revoked agent reports): 403");
        return Err(s.reject(StatusCode::FORBIDDEN, "该代理已被吊销", "this agent is revoked"));
    }
    if !s.allow(&agent.id) {
        warn_throttled!(
            "ingest_rate",
            %peer,
            agent = %agent.id,
            unit = %agent.unit_id,
            limit = s.reports_per_minute,
            "代理上报过于频繁 (agent over agent_reports_per_minute): 429"
        );
        let mut r = s.reject(StatusCode::TOO_MANY_REQUESTS, "报告过于频繁", "rate limit exceeded");
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
        return Err(r);
    }
    let Some(in_flight) = s.in_flight(&agent.id) else {
        warn_throttled!(
            "ingest_in_flight",
            %peer,
            agent = %agent.id,
            unit = %agent.unit_id,
            limit = MAX_IN_FLIGHT_PER_AGENT,
            "代理同时上报过多 (agent has too many reports under way): 429"
        );
        let mut r = s.reject(
            StatusCode::TOO_MANY_REQUESTS,
            "同时上报过多",
            "too many reports under way",
        );
        r.headers_mut()
            .insert(header::RETRY_AFTER, header::HeaderValue::from_static("5"));
        return Err(r);
    };
    Ok((agent, in_flight))
}

/// The report in `body`, if it is one this agent may deliver: well-formed, storable,
/// within bounds, without roll-up fields, for its own unit (or, from a leak listener, for
/// a unit below its own); or the refusal.
async fn checked_report(s: &AppState, peer: &str, agent: &Agent, body: &str) -> Result<Report, Response> {
    let report = match Report::from_json(body) {
        Ok(r) => r,
        Err(
            e @ (EvidenceError::Json(_) | EvidenceError::MissingVersion { .. } | EvidenceError::WrongVersion { .. }),
        ) => {
            tracing::warn!(%peer, agent = %agent.id, error = %e, "report refused: 400");
            return Err(s.reject(StatusCode::BAD_REQUEST, "报告格式错误", &e.to_string()));
        }
        Err(e) => {
            tracing::warn!(%peer, agent = %agent.id, error = %e, "report refused: 422");
            return Err(s.reject(StatusCode::UNPROCESSABLE_ENTITY, "报告内容错误", &e.to_string()));
        }
    };
    // What the databases cannot store, or what no agent's schedule allows, is refused
    // for good (422), so that the agent sets it aside and moves on.
    if let Some(path) = kaohe_rubric::bounds::nul_in_json(body) {
        tracing::warn!(%peer, agent = %agent.id, report = %report.report_id, field = %path, "report refused: a string holds a NUL character (422)");
        return Err(s.reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            &format!("报告字段 {path} 含有 NUL 字符, 无法保存"),
            &format!("field {path} holds a NUL character, which cannot be stored"),
        ));
    }
    match report.check_bounds(Utc::now()) {
        Ok(()) => {}
        Err(e @ Bounds::Invalid { .. }) => {
            tracing::warn!(%peer, agent = %agent.id, report = %report.report_id, error = %e, "report refused: out of range (422)");
            return Err(s.reject(StatusCode::UNPROCESSABLE_ENTITY, "报告内容超出范围", &e.to_string()));
        }
        // Not wrong, early: the agent keeps it and sends it again once its time has come.
        Err(e @ Bounds::ClockAhead { .. }) => {
            warn_throttled!(
                "ingest_clock_ahead",
                %peer,
                agent = %agent.id,
                unit = %agent.unit_id,
                report = %report.report_id,
                error = %e,
                "代理主机时钟超前, 报告稍后再收 (the agent's clock is ahead: report deferred): 503"
            );
            s.metrics.rejected.fetch_add(1, Ordering::Relaxed);
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "报告时间超前, 稍后再试",
                &e.to_string(),
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("600"));
            return Err(r);
        }
    }
    if let Some(field) = report.rollup_fields() {
        tracing::warn!(%peer, agent = %agent.id, report = %report.report_id, field, "report refused: roll-up field (422)");
        return Err(s.reject(
            StatusCode::UNPROCESSABLE_ENTITY,
            "报告含有仅供采集中心汇总使用的字段",
            &format!("the report carries `{field}`, which only the collector's roll-ups may have"),
        ));
    }
    // A leak listener is enrolled for a unit high in the tree (the department) and reports
    // leak findings for the units below it; nothing else may cross units.
    let listener_ok = report.unit_id != agent.unit_id
        && agent.kind == crate::store::LISTENER
        && report.is_leak_only()
        && s.store.is_below(&report.unit_id, &agent.unit_id).await.unwrap_or(false);
    if report.agent_id != agent.id || (report.unit_id != agent.unit_id && !listener_ok) {
        tracing::warn!(%peer, agent = %agent.id, claimed_agent = ?report.agent_id, claimed_unit = ?report.unit_id, "report names another agent or unit: 403");
        return Err(s.reject(
            StatusCode::FORBIDDEN,
            "报告所属单位或代理与凭据不符",
            "the report names another agent or unit than the credential",
        ));
    }
    Ok(report)
}

/// Stores a checked report through the group-commit writer and answers the agent.
async fn store_report(s: &AppState, peer: &str, agent: &Agent, report: Report, body: &str) -> Response {
    let report_id = report.report_id;
    let unit = report.unit_id.clone();
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
        Err(WriteError::Permanent(e)) => {
            tracing::error!(%peer, agent = %agent.id, %unit, report = %report_id, error = %e, "report can never be stored: 422");
            s.reject(
                StatusCode::UNPROCESSABLE_ENTITY,
                "报告无法保存",
                &format!("the report cannot be stored: {e}"),
            )
        }
        Err(WriteError::Transient(e)) => {
            tracing::error!(%peer, agent = %agent.id, %unit, report = %report_id, error = %e, "report not stored; the agent will retry");
            let mut r = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "报告未能保存, 请稍后重试",
                "not stored; retry later",
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
            r
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

async fn enroll(
    State(s): State<Arc<AppState>>,
    conn: Option<Extension<Conn>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let peer = peer_of(&conn);
    let source = conn.as_ref().map(|c| c.peer.ip());
    let held = match s.budgets.strangers.read(&headers, body, MAX_ENROL_BODY, source).await {
        Ok(h) => h,
        Err(e) => {
            warn_throttled!("enrol_body", %peer, problem = ?e, "注册请求体被拒绝 (enrolment body refused)");
            return body_error(&e);
        }
    };
    let Ok(req) = serde_json::from_slice::<EnrolRequest>(&held.bytes) else {
        return error(
            StatusCode::BAD_REQUEST,
            "注册请求格式错误",
            "malformed enrolment request",
        );
    };
    for (field, value) in [("hostname", &req.hostname), ("agent_version", &req.agent_version)] {
        if value.contains('\0') {
            tracing::warn!(%peer, field, "enrolment refused: a NUL character (422)");
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                &format!("注册请求字段 {field} 含有 NUL 字符"),
                &format!("field {field} holds a NUL character, which cannot be stored"),
            );
        }
    }
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
            tracing::info!(%peer, agent = %agent_id, unit = %unit_id, host = ?hostname, "代理已注册 (agent enrolled)");
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
        Ok(None) => {
            warn_throttled!("enrol_refused", %peer, host = ?hostname, "注册令牌无效、已使用或已过期 (enrolment with an unknown, used or expired token): 401");
            error(
                StatusCode::UNAUTHORIZED,
                "注册令牌无效、已使用或已过期",
                "unknown, used or expired token",
            )
        }
        Err(e) => {
            tracing::error!(%peer, error = %e, "enrolment failed");
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "数据库暂不可用",
                "database unavailable",
            )
        }
    }
}

/// Whether the request may read `/metrics`: with the configured bearer token, or without
/// one configured only from the collector's own host.
fn metrics_allowed(s: &AppState, conn: &Option<Extension<Conn>>, headers: &HeaderMap) -> bool {
    match &s.metrics_token {
        Some(token) => bearer(headers).is_some_and(|b| crate::web::auth::same(b, token.trim())),
        None => conn.as_ref().is_some_and(|c| c.peer.ip().is_loopback()),
    }
}

async fn metrics(State(s): State<Arc<AppState>>, conn: Option<Extension<Conn>>, headers: HeaderMap) -> Response {
    if !metrics_allowed(&s, &conn, &headers) {
        warn_throttled!("metrics_refused", peer = %peer_of(&conn), "/metrics 访问被拒绝 (metrics refused: wrong token or not loopback)");
        return error(
            StatusCode::UNAUTHORIZED,
            "需要 metrics_token, 或从采集中心本机访问",
            "metrics need the metrics_token bearer, or a request from the collector's own host",
        );
    }
    let m = &s.metrics;
    let c = &s.tracker.counters;
    let mut text = format!(
        "# HELP kaohe_reports_ingested_total Reports stored.\n# TYPE kaohe_reports_ingested_total counter\nkaohe_reports_ingested_total {}\n\
         # HELP kaohe_reports_duplicate_total Reports received again and acknowledged without storing.\n# TYPE kaohe_reports_duplicate_total counter\nkaohe_reports_duplicate_total {}\n\
         # HELP kaohe_reports_rejected_total Reports refused (auth, rate, schema, forged unit, limits).\n# TYPE kaohe_reports_rejected_total counter\nkaohe_reports_rejected_total {}\n\
         # HELP kaohe_agents_enrolled_total Agents enrolled by this process.\n# TYPE kaohe_agents_enrolled_total counter\nkaohe_agents_enrolled_total {}\n\
         # HELP kaohe_connections_open Connections open now.\n# TYPE kaohe_connections_open gauge\nkaohe_connections_open {}\n\
         # HELP kaohe_connections_total Connections by outcome: accepted, refused (every slot serving), evicted (closed to make room), timed out.\n# TYPE kaohe_connections_total counter\n\
         kaohe_connections_total{{outcome=\"accepted\"}} {}\nkaohe_connections_total{{outcome=\"refused\"}} {}\nkaohe_connections_total{{outcome=\"evicted\"}} {}\n\
         kaohe_connections_total{{outcome=\"handshake_timeout\"}} {}\nkaohe_connections_total{{outcome=\"header_timeout\"}} {}\nkaohe_connections_total{{outcome=\"write_timeout\"}} {}\n",
        m.ingested.load(Ordering::Relaxed),
        m.duplicates.load(Ordering::Relaxed),
        m.rejected.load(Ordering::Relaxed),
        m.enrolled.load(Ordering::Relaxed),
        s.tracker.open(),
        c.accepted.load(Ordering::Relaxed),
        c.refused.load(Ordering::Relaxed),
        c.evicted.load(Ordering::Relaxed),
        c.handshake_timeouts.load(Ordering::Relaxed),
        c.header_timeouts.load(Ordering::Relaxed),
        c.write_timeouts.load(Ordering::Relaxed),
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

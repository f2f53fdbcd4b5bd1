//! The administrators' dashboard: server-rendered HTML pages (Chinese first, English with
//! `?lang=en`), its JSON API under `/api/v1/dashboard/`, login and roles.
//!
//! Unit ids contain slashes (`ningxia/yinchuan/xingqing`), so unit addresses are
//! `/units/{unit id}` followed by an optional suffix:
//!
//! | path | what |
//! | --- | --- |
//! | `GET /units/{id}?period=2026` | the unit page |
//! | `GET /units/{id}/export.csv` · `/export.xlsx` · `/report.html` | the sheet as CSV, XLSX, the printable 自检报告 |
//! | `POST /units/{id}/entries` | add a review, override or waiver (form) |
//! | `POST /units/{id}/entries/withdraw` | withdraw an entry (form field `id`) |
//! | `GET /api/v1/dashboard/units/{id}/sheet` · `/view` · `/entries` | JSON |
//! | `POST /api/v1/dashboard/units/{id}/entries` · `/entries/withdraw` | JSON, header `X-CSRF-Token` |
//!
//! Access: a unit outside the user's scope gets 403; without a session, pages redirect
//! (303) to `/login` and the API answers 401.

pub mod api;
pub mod auth;
pub mod html;
pub mod pages;
pub mod svg;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::{DateTime, Datelike, Utc};
use kaohe_rubric::period::Period;
use kaohe_rubric::rubric::Rubric;

use crate::bodies::Budgets;
use crate::config::CollectorConfig;
use crate::store::{Store, StoreError, Unit};
use auth::{LoginLimiter, SESSION_COOKIE, Session};
use html::Lang;

/// Every path the dashboard serves, as `collector/api/openapi.json` describes them
/// (`{unit}` stands for a unit id, slashes included).
pub const PATHS: &[&str] = &[
    "/",
    "/login",
    "/logout",
    "/overview",
    "/audit",
    "/units/{unit}",
    "/units/{unit}/export.csv",
    "/units/{unit}/export.xlsx",
    "/units/{unit}/report.html",
    "/units/{unit}/entries",
    "/units/{unit}/entries/withdraw",
    "/api/v1/dashboard/me",
    "/api/v1/dashboard/units",
    "/api/v1/dashboard/ranking",
    "/api/v1/dashboard/alerts",
    "/api/v1/dashboard/audit",
    "/api/v1/dashboard/units/{unit}/sheet",
    "/api/v1/dashboard/units/{unit}/view",
    "/api/v1/dashboard/units/{unit}/entries",
    "/api/v1/dashboard/units/{unit}/entries/withdraw",
];

/// Largest form or JSON body the dashboard accepts.
const MAX_BODY: usize = 64 * 1024;

/// What the dashboard's handlers share.
#[derive(Debug)]
pub struct WebState {
    pub store: Store,
    pub rubric: Rubric,
    pub session_hours: u32,
    pub logins: LoginLimiter,
}

/// The dashboard's router, to merge beside the agents' API. A POST's body is read only
/// after its session is checked (the login form's, with the strangers' budget), bounded in
/// size, time and memory, and every POST must come from this origin.
pub fn router(store: Store, rubric: Rubric, config: &CollectorConfig, budgets: Budgets) -> Router {
    let state = Arc::new(WebState {
        store,
        rubric,
        session_hours: config.session_hours.max(1),
        logins: LoginLimiter::default(),
    });
    let guarded = Guarded {
        web: state.clone(),
        budgets,
    };
    Router::new()
        .route("/", get(pages::root))
        .route("/login", get(pages::login_form).post(pages::login))
        .route("/logout", post(pages::logout))
        .route("/overview", get(pages::overview))
        .route("/audit", get(pages::audit))
        .route("/units/{*rest}", get(pages::unit_get).post(pages::unit_post))
        .route("/api/v1/dashboard/me", get(api::me))
        .route("/api/v1/dashboard/units", get(api::units))
        .route("/api/v1/dashboard/ranking", get(api::ranking))
        .route("/api/v1/dashboard/alerts", get(api::alerts))
        .route("/api/v1/dashboard/audit", get(api::audit))
        .route(
            "/api/v1/dashboard/units/{*rest}",
            get(api::unit_get).post(api::unit_post),
        )
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::from_fn_with_state(guarded, guard))
        .with_state(state)
}

/// Largest login form: a user name (at most 64 characters) and a password.
const MAX_LOGIN_BODY: usize = 4 * 1024;

/// What the guard in front of every dashboard handler needs.
#[derive(Debug, Clone)]
struct Guarded {
    web: Arc<WebState>,
    budgets: Budgets,
}

/// Before any dashboard handler: a URL holding U+0000 is refused (no database stores it);
/// a POST must come from this origin (login CSRF and the like; the CSRF token still guards
/// every form) and have a live session — except the login form — before its body is read,
/// whole and bounded. A POST with a session is served (never closed to make room).
async fn guard(State(g): State<Guarded>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let peer = crate::conns::peer(&parts.extensions);
    let shown_peer = peer.map_or_else(|| "-".into(), |p| p.to_string());
    if parts.uri.path().contains("%00") || parts.uri.query().is_some_and(|q| q.contains("%00")) {
        return refuse(
            &parts,
            &WebError::BadRequest("地址含有 NUL 字符 (the address holds a NUL character)".into()),
        );
    }
    if parts.method != Method::POST {
        // Other methods carry no body the dashboard reads.
        return next.run(Request::from_parts(parts, body)).await;
    }
    if !same_origin(&parts.headers) {
        crate::warn_throttled!(
            "cross_origin_post",
            peer = %shown_peer,
            path = %parts.uri.path(),
            "跨站 POST 被拒绝 (a POST from another origin was refused): 403"
        );
        return refuse(
            &parts,
            &WebError::Forbidden("请求来源与本站不符 (the request comes from another site)".into()),
        );
    }
    let login = parts.uri.path() == "/login";
    let (budget, limit, source) = if login {
        (&g.budgets.strangers, MAX_LOGIN_BODY, peer.map(|p| p.ip()))
    } else {
        match g.web.session(&parts.headers).await {
            Ok(session) => {
                if let Some(c) = parts.extensions.get::<crate::conns::Conn>() {
                    c.serving();
                }
                // The handler takes it from here instead of looking it up again.
                parts.extensions.insert(session);
                (&g.budgets.members, MAX_BODY, None)
            }
            Err(e) => return refuse(&parts, &e),
        }
    };
    let held = match budget.read(&parts.headers, body, limit, source).await {
        Ok(h) => h,
        Err(e) => {
            crate::warn_throttled!(
                "dashboard_body",
                peer = %shown_peer,
                path = %parts.uri.path(),
                problem = ?e,
                max_body_kib = limit / 1024,
                "管理平台请求体被拒绝 (dashboard request body refused)"
            );
            let (status, message) = e.status_and_message();
            return refuse(&parts, &WebError::Refused(status, message));
        }
    };
    // U+0000 in a form field (%00: a literal % is %25) or in JSON (\u0000): no database
    // stores it.
    let text = String::from_utf8_lossy(&held.bytes);
    let nul = text
        .split('&')
        .find(|pair| pair.contains("%00"))
        .map(|pair| pair.split('=').next().unwrap_or("").to_string())
        .or_else(|| kaohe_rubric::bounds::nul_in_json(&text));
    if let Some(field) = nul {
        return refuse(
            &parts,
            &WebError::BadRequest(format!(
                "{field} 含有 NUL 字符, 无法保存 ({field} holds a NUL character, which cannot be stored)"
            )),
        );
    }
    let req = Request::from_parts(parts, axum::body::Body::from(held.bytes.clone()));
    let resp = next.run(req).await;
    drop(held);
    resp
}

/// A refusal from the guard, as the handlers give theirs: JSON under `/api/`, else the
/// dashboard's error page (a missing session: to the login page).
fn refuse(parts: &axum::http::request::Parts, e: &WebError) -> Response {
    if parts.uri.path().starts_with("/api/") {
        return json_error(e);
    }
    let query = Q::try_from_uri(&parts.uri).unwrap_or_else(|_| axum::extract::Query(Default::default()));
    let lang = lang_of(query.get("lang").map(String::as_str), &parts.headers);
    // The session the guard checked, if any, so the page keeps its user and logout.
    pages::error_page(lang, &query, parts.extensions.get::<Session>(), e)
}

/// Whether a POST comes from this origin: its `Origin` (or else its `Referer`) names the
/// host it was sent to, over https. A request with neither comes from no browser form and
/// passes (the session and CSRF checks still apply).
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let ours = format!("https://{host}");
    if let Some(origin) = headers.get(header::ORIGIN) {
        return origin.to_str().is_ok_and(|o| o.eq_ignore_ascii_case(&ours));
    }
    if let Some(referer) = headers.get(header::REFERER) {
        return referer.to_str().is_ok_and(|r| {
            r.get(..ours.len()).is_some_and(|p| p.eq_ignore_ascii_case(&ours))
                && matches!(r.as_bytes().get(ours.len()), None | Some(b'/' | b'?'))
        });
    }
    true
}

/// Why a dashboard request failed; rendered as a page or as JSON.
#[derive(Debug)]
pub enum WebError {
    /// No (live) session.
    Login,
    Forbidden(String),
    NotFound(String),
    BadRequest(String),
    /// Any other refusal with its status (a body too large, too slow, the budget spent).
    Refused(StatusCode, String),
    Internal(String),
}

impl WebError {
    pub fn status(&self) -> StatusCode {
        match self {
            WebError::Login => StatusCode::UNAUTHORIZED,
            WebError::Forbidden(_) => StatusCode::FORBIDDEN,
            WebError::NotFound(_) => StatusCode::NOT_FOUND,
            WebError::BadRequest(_) => StatusCode::BAD_REQUEST,
            WebError::Refused(status, _) => *status,
            WebError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Chinese first, English in brackets.
    pub fn message(&self) -> String {
        match self {
            WebError::Login => "请先登录 (please log in)".into(),
            WebError::Forbidden(m) | WebError::NotFound(m) | WebError::BadRequest(m) | WebError::Refused(_, m) => {
                m.clone()
            }
            WebError::Internal(_) => "服务器内部错误, 请稍后重试 (internal error; retry later)".into(),
        }
    }

    /// Carries an internal error on its response, to be logged once with its context.
    pub fn mark(&self, r: &mut Response, session: Option<&Session>) {
        if let WebError::Internal(e) = self {
            r.extensions_mut().insert(Failure {
                error: e.clone(),
                user: session.map(|s| s.user.name.clone()),
            });
        }
    }

    pub fn csrf() -> WebError {
        WebError::Forbidden("安全校验失败, 请刷新页面后重试 (missing or wrong CSRF token)".into())
    }

    pub fn scope() -> WebError {
        WebError::Forbidden("无权查看该单位 (this unit is outside your access)".into())
    }
}

impl From<StoreError> for WebError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Invalid(m) => WebError::BadRequest(m),
            // Logged once, with the request's path and peer, when it is answered.
            other => WebError::Internal(other.to_string()),
        }
    }
}

impl From<crate::entries::EntryError> for WebError {
    fn from(e: crate::entries::EntryError) -> Self {
        use crate::entries::EntryError as E;
        match e {
            E::Store(e) => WebError::from(e),
            E::MayNotEnter { .. } | E::MayNotWithdraw { .. } => WebError::Forbidden(e.to_string()),
            E::NoLiveEntry(_) | E::NotThisUnit(_) => WebError::NotFound(e.to_string()),
            E::UnknownKind(_) | E::BadScore(_) | E::BadExpiry(_) | E::Invalid(_) => WebError::BadRequest(e.to_string()),
        }
    }
}

/// A request's query parameters.
type Q = axum::extract::Query<std::collections::HashMap<String, String>>;

/// One query parameter.
fn q<'a>(query: &'a Q, key: &str) -> Option<&'a str> {
    query.0.get(key).map(String::as_str)
}

/// The value of a cookie in the request.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The language: `?lang=` first, then the `lang` cookie, else Chinese.
pub fn lang_of(query: Option<&str>, headers: &HeaderMap) -> Lang {
    match query.or_else(|| cookie(headers, "lang")) {
        Some("en") => Lang::En,
        _ => Lang::Zh,
    }
}

impl WebState {
    /// The session of the request, extended (sliding) if live.
    pub async fn session(&self, headers: &HeaderMap) -> Result<Session, WebError> {
        let Some(token) = cookie(headers, SESSION_COOKIE).filter(|t| !t.is_empty()) else {
            return Err(WebError::Login);
        };
        let now = Utc::now();
        let until = now + chrono::Duration::hours(i64::from(self.session_hours));
        self.store.session(token, now, until).await?.ok_or(WebError::Login)
    }

    /// The session of a POST: the one the guard checked before reading its body (no
    /// second lookup), else the request's own.
    pub async fn posted_session(
        &self,
        checked: Option<axum::extract::Extension<Session>>,
        headers: &HeaderMap,
    ) -> Result<Session, WebError> {
        match checked {
            Some(axum::extract::Extension(s)) => Ok(s),
            None => self.session(headers).await,
        }
    }

    /// The units a user may see.
    pub async fn visible_units(&self, s: &Session) -> Result<Vec<Unit>, WebError> {
        let all = self.store.units().await?;
        Ok(s.user.visible_units(&all))
    }

    /// The unit if the user may see it: 403 outside the scope, 404 if it does not exist.
    pub async fn unit_in_scope(&self, s: &Session, id: &str) -> Result<Unit, WebError> {
        let visible = self.visible_units(s).await?;
        if let Some(u) = visible.into_iter().find(|u| u.id == id) {
            return Ok(u);
        }
        match s.user.role {
            auth::Role::Province | auth::Role::Reviewer => {
                Err(WebError::NotFound(format!("单位 {id} 不存在 (no such unit)")))
            }
            _ => Err(WebError::scope()),
        }
    }

    /// `?period=`, default the current year in the rubric's zone.
    pub fn period(&self, q: Option<&str>, now: DateTime<Utc>) -> Result<Period, WebError> {
        match q.map(str::trim).filter(|p| !p.is_empty()) {
            Some(p) => p.parse().map_err(|e| {
                WebError::BadRequest(format!(
                    "期间 {p} 无法识别, 应为 2026、2026-Q4、2026-11 等 (bad period): {e}"
                ))
            }),
            None => Ok(Period::Year {
                year: now.with_timezone(&self.rubric.timezone).year(),
            }),
        }
    }
}

/// Whether the CSRF token sent matches the session's, in constant time.
pub fn csrf_ok(s: &Session, sent: Option<&str>) -> bool {
    sent.is_some_and(|t| auth::same(t, &s.csrf_token))
}

/// Splits `/units/{id}{suffix}` paths: the id and which of `suffixes` ended it ("" none).
pub fn split_suffix<'a>(rest: &'a str, suffixes: &[&'static str]) -> (&'a str, &'static str) {
    let rest = rest.trim_matches('/');
    for s in suffixes {
        if let Some(id) = rest.strip_suffix(s)
            && !id.is_empty()
        {
            return (id.trim_end_matches('/'), s);
        }
    }
    (rest, "")
}

/// A JSON error body `{"error": "中文 (English)"}`.
pub fn json_error(e: &WebError) -> Response {
    let body = serde_json::json!({ "error": e.message() });
    let mut r = (
        e.status(),
        [(header::CONTENT_TYPE, "application/json; charset=utf-8")],
        body.to_string(),
    )
        .into_response();
    e.mark(&mut r, None);
    r
}

/// What went wrong inside a dashboard request, carried on its response for the log line
/// that [`crate::serve::harden`] writes with the path and the peer.
#[derive(Debug, Clone)]
pub struct Failure {
    pub error: String,
    pub user: Option<String>,
}

/// A `Content-Disposition` for a download with a UTF-8 file name (RFC 6266 / 5987) and an
/// ASCII `fallback` for old clients.
pub fn attachment(name: &str, fallback: &str) -> String {
    let ascii: String = fallback
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "attachment; filename=\"{ascii}\"; filename*=UTF-8''{}",
        html::url_part(name, false)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_post_from_another_origin_is_told_apart() {
        let h = |pairs: &[(header::HeaderName, &str)]| {
            let mut m = HeaderMap::new();
            for (k, v) in pairs {
                m.insert(k.clone(), v.parse().expect("value"));
            }
            m
        };
        let host = (header::HOST, "kaohe.example:8443");
        assert!(same_origin(&h(&[
            host.clone(),
            (header::ORIGIN, "https://kaohe.example:8443")
        ])));
        assert!(!same_origin(&h(&[
            host.clone(),
            (header::ORIGIN, "https://evil.example")
        ])));
        assert!(!same_origin(&h(&[host.clone(), (header::ORIGIN, "null")])));
        assert!(!same_origin(&h(&[
            host.clone(),
            (header::ORIGIN, "http://kaohe.example:8443")
        ])));
        assert!(same_origin(&h(&[
            host.clone(),
            (header::REFERER, "https://kaohe.example:8443/login")
        ])));
        assert!(!same_origin(&h(&[
            host.clone(),
            (header::REFERER, "https://kaohe.example:8443.evil.example/")
        ])));
        assert!(
            same_origin(&h(std::slice::from_ref(&host))),
            "no browser: the session and CSRF decide"
        );
        assert!(
            !same_origin(&h(&[(header::ORIGIN, "https://kaohe.example:8443")])),
            "no Host"
        );
    }

    #[test]
    fn unit_paths_split_into_the_id_and_the_suffix() {
        let s = ["/export.csv", "/export.xlsx", "/report.html"];
        assert_eq!(split_suffix("nx/yc/xq", &s), ("nx/yc/xq", ""));
        assert_eq!(split_suffix("nx/yc/xq/export.csv", &s), ("nx/yc/xq", "/export.csv"));
        assert_eq!(split_suffix("/nx/report.html/", &s), ("nx", "/report.html"));
        let e = ["/entries/withdraw", "/entries"];
        assert_eq!(split_suffix("nx/a/entries/withdraw", &e), ("nx/a", "/entries/withdraw"));
        assert_eq!(split_suffix("nx/a/entries", &e), ("nx/a", "/entries"));
    }

    #[test]
    fn escaping_covers_markup_and_attribute_quotes() {
        assert_eq!(
            html::esc("<script>a=\"1\" & 'b'</script>"),
            "&lt;script&gt;a=&quot;1&quot; &amp; &#39;b&#39;&lt;/script&gt;"
        );
        assert_eq!(html::url_part("nx/兴 庆", true), "nx/%E5%85%B4%20%E5%BA%86");
    }

    #[test]
    fn a_city_sees_its_subtree_and_a_unit_only_itself() {
        let u = |id: &str, parent: Option<&str>| Unit {
            id: id.into(),
            name: id.into(),
            parent: parent.map(str::to_string),
            kind: "county".into(),
            maintainer: None,
            responder: None,
            enrolled: None,
        };
        let all = vec![
            u("nx", None),
            u("nx/yc", Some("nx")),
            u("nx/yc/a", Some("nx/yc")),
            u("nx/yc/a/s", Some("nx/yc/a")),
            u("nx/wz", Some("nx")),
        ];
        let user = |role, unit: Option<&str>| auth::User {
            name: "x".into(),
            role,
            unit_id: unit.map(str::to_string),
            display_name: None,
            created_at: Utc::now(),
            disabled_at: None,
        };
        let ids = |v: Vec<Unit>| v.into_iter().map(|u| u.id).collect::<Vec<_>>();
        assert_eq!(
            ids(user(auth::Role::City, Some("nx/yc")).visible_units(&all)),
            ["nx/yc", "nx/yc/a", "nx/yc/a/s"]
        );
        assert_eq!(
            ids(user(auth::Role::Unit, Some("nx/yc/a")).visible_units(&all)),
            ["nx/yc/a"]
        );
        assert_eq!(user(auth::Role::Reviewer, None).visible_units(&all).len(), 5);
        assert!(user(auth::Role::City, None).visible_units(&all).is_empty());
    }
}

//! The dashboard's JSON API (`/api/v1/dashboard/…`): the same session cookie and access
//! rules as the pages; POSTs carry the session's CSRF token in `X-CSRF-Token`. Errors are
//! `{"error": "中文 (English)"}`; without a session, 401.

use std::sync::Arc;

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::Serialize;

use super::auth::{Role, Session};
use super::{Q, WebError, WebState, csrf_ok, json_error, q, split_suffix};
use crate::entries::{EntryInput, new_entry, withdraw};

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => (
            status,
            [
                (header::CONTENT_TYPE, "application/json; charset=utf-8"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response(),
        Err(e) => json_error(&WebError::Internal(e.to_string())),
    }
}

fn respond<T: Serialize>(r: Result<T, WebError>) -> Response {
    match r {
        Ok(v) => json(StatusCode::OK, &v),
        Err(e) => json_error(&e),
    }
}

/// The user, its role and the CSRF token for POSTs.
#[derive(Debug, Serialize)]
struct Me<'a> {
    name: &'a str,
    display_name: &'a str,
    role: Role,
    unit_id: Option<&'a str>,
    csrf_token: &'a str,
}

pub async fn me(State(st): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    match st.session(&headers).await {
        Ok(s) => json(
            StatusCode::OK,
            &Me {
                name: &s.user.name,
                display_name: s.user.shown_name(),
                role: s.user.role,
                unit_id: s.user.unit_id.as_deref(),
                csrf_token: &s.csrf_token,
            },
        ),
        Err(e) => json_error(&e),
    }
}

pub async fn units(State(st): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    respond(
        async {
            let s = st.session(&headers).await?;
            st.visible_units(&s).await
        }
        .await,
    )
}

pub async fn ranking(State(st): State<Arc<WebState>>, query: Q, headers: HeaderMap) -> Response {
    respond(
        async {
            let s = st.session(&headers).await?;
            let now = Utc::now();
            let period = st.period(q(&query, "period"), now)?;
            let units = st.visible_units(&s).await?;
            Ok::<_, WebError>(crate::scores::ranking(&st.store, &st.rubric, &units, period, now).await?)
        }
        .await,
    )
}

pub async fn alerts(State(st): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    respond(
        async {
            let s = st.session(&headers).await?;
            let ids: Vec<String> = st.visible_units(&s).await?.into_iter().map(|u| u.id).collect();
            Ok::<_, WebError>(st.store.open_alerts(Some(&ids), Utc::now()).await?)
        }
        .await,
    )
}

pub async fn audit(State(st): State<Arc<WebState>>, query: Q, headers: HeaderMap) -> Response {
    respond(
        async {
            let s = st.session(&headers).await?;
            if s.user.role != Role::Province {
                return Err(WebError::Forbidden(
                    "审计日志仅省级管理员可查看 (the audit log is for province administrators)".into(),
                ));
            }
            let limit = q(&query, "limit")
                .and_then(|l| l.parse::<i64>().ok())
                .unwrap_or(500)
                .clamp(1, 10_000);
            Ok(st
                .store
                .audit_log(q(&query, "unit").filter(|u| !u.is_empty()), limit)
                .await?)
        }
        .await,
    )
}

pub async fn unit_get(
    State(st): State<Arc<WebState>>,
    Path(rest): Path<String>,
    query: Q,
    headers: HeaderMap,
) -> Response {
    let (id, suffix) = split_suffix(&rest, &["/sheet", "/view", "/entries"]);
    let r: Result<Response, WebError> = async {
        let s = st.session(&headers).await?;
        if suffix.is_empty() {
            return Err(WebError::NotFound(
                "没有这个地址: 应为 units/{单位}/sheet、view 或 entries (no such path)".into(),
            ));
        }
        let unit = st.unit_in_scope(&s, id).await?;
        let now = Utc::now();
        let period = st.period(q(&query, "period"), now)?;
        Ok(match suffix {
            "/sheet" => json(
                StatusCode::OK,
                &crate::scores::unit_sheet(&st.store, &st.rubric, &unit.id, period, now).await?,
            ),
            "/view" => json(
                StatusCode::OK,
                &crate::view::unit_view(&st.store, &st.rubric, &unit.id, period, now).await?,
            ),
            _ => json(
                StatusCode::OK,
                &st.store
                    .entries(&unit.id, &crate::scores::entry_periods(&period))
                    .await?,
            ),
        })
    }
    .await;
    r.unwrap_or_else(|e| json_error(&e))
}

#[derive(Debug, serde::Deserialize)]
struct WithdrawInput {
    #[serde(default)]
    id: String,
}

/// `POST units/{id}/entries` (an entry as JSON: item, kind, score, reviewer, note,
/// expires, optional period) → 201 `{"id"}`; `POST units/{id}/entries/withdraw` `{"id"}`.
pub async fn unit_post(
    State(st): State<Arc<WebState>>,
    checked: Option<Extension<Session>>,
    Path(rest): Path<String>,
    query: Q,
    headers: HeaderMap,
    body: String,
) -> Response {
    let (id, suffix) = split_suffix(&rest, &["/entries/withdraw", "/entries"]);
    let r: Result<Response, WebError> = async {
        let s: Session = st.posted_session(checked, &headers).await?;
        let sent = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        if !csrf_ok(&s, sent) {
            return Err(WebError::csrf());
        }
        if suffix.is_empty() {
            return Err(WebError::NotFound("没有这个地址 (no such path)".into()));
        }
        let unit = st.unit_in_scope(&s, id).await?;
        let now = Utc::now();
        let value: serde_json::Value = serde_json::from_str(&body)
            .map_err(|e| WebError::BadRequest(format!("请求不是有效的 JSON (malformed JSON): {e}")))?;
        if suffix == "/entries/withdraw" {
            let w: WithdrawInput = serde_json::from_value(value)
                .map_err(|e| WebError::BadRequest(format!("请求格式错误 (bad request): {e}")))?;
            withdraw(&st.store, &s.user, &unit.id, &w.id, now).await?;
            return Ok(json(StatusCode::OK, &serde_json::json!({ "withdrawn": w.id })));
        }
        let period_text = value
            .get("period")
            .and_then(|p| p.as_str())
            .map(str::to_string)
            .or_else(|| q(&query, "period").map(str::to_string));
        let period = st.period(period_text.as_deref(), now)?;
        let input: EntryInput = serde_json::from_value(value)
            .map_err(|e| WebError::BadRequest(format!("请求格式错误 (bad request): {e}")))?;
        let entry = new_entry(&st.rubric, &s.user, &unit.id, &period, &input, now)?;
        let id = st.store.add_entry(&entry, &s.user.name, s.user.role, now).await?;
        Ok(json(
            StatusCode::CREATED,
            &serde_json::json!({ "id": id, "period": entry.period }),
        ))
    }
    .await;
    r.unwrap_or_else(|e| json_error(&e))
}

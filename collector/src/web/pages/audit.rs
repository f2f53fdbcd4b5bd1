//! `GET /audit`: the audit log, for province administrators.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

use super::{Q, error_page, html, nav, q, table_head};
use crate::web::auth::Role;
use crate::web::html::{esc, page, when};
use crate::web::{WebError, WebState, lang_of};

pub async fn audit(State(st): State<Arc<WebState>>, query: Q, headers: HeaderMap) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match st.session(&headers).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, &query, None, &e),
    };
    if s.user.role != Role::Province {
        return error_page(
            lang,
            &query,
            Some(&s),
            &WebError::Forbidden("审计日志仅省级管理员可查看 (the audit log is for province administrators)".into()),
        );
    }
    let unit = q(&query, "unit").filter(|u| !u.is_empty());
    let log = match st.store.audit_log(unit, 500).await {
        Ok(l) => l,
        Err(e) => return error_page(lang, &query, Some(&s), &WebError::from(e)),
    };
    let tz = st.rubric.timezone;
    let mut o = format!(
        "<h1>{}</h1>",
        lang.t("审计日志 (最近 500 条)", "Audit log (latest 500)")
    );
    o.push_str(&table_head(
        "audit",
        &[
            lang.t("时间", "Time"),
            lang.t("操作人", "Actor"),
            lang.t("操作", "Action"),
            lang.t("单位", "Unit"),
            lang.t("内容", "Detail"),
        ],
    ));
    for a in &log {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            when(a.at, tz),
            esc(&a.actor),
            esc(&a.action),
            esc(a.unit_id.as_deref().unwrap_or("")),
            esc(&a.detail)
        );
    }
    o.push_str("</table>");
    html(
        StatusCode::OK,
        &query,
        page(lang, lang.t("审计日志", "Audit log"), &nav(lang, Some(&s), None), &o),
    )
}

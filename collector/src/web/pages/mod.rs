//! The dashboard's HTML pages: login, overview (ranking, roll-ups, alerts), the unit page
//! (sheet with evidence, uptime chart, outages, inventory against registry, network map,
//! entries), the audit log and the exports. Each handler extracts, authorizes, calls the
//! domain ([`crate::scores`], [`crate::view`], [`crate::entries`]) and renders; this module
//! holds what every page shares: the response headers, the error page and the header bar.

mod audit;
mod entries;
mod exports;
mod login;
mod overview;
mod unit;

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kaohe_rubric::period::Period;

use super::auth::{Role, Session};
use super::html::{Lang, esc, page, url_part, when};
use super::{Q, WebError, WebState, csrf_ok, q};
use crate::alerts::Alert;

pub use audit::audit;
pub use entries::unit_post;
pub use login::{login, login_form, logout};
pub use overview::overview;
pub use unit::unit_get;

/// A page, with the `lang` cookie set when `?lang=` chose the language.
pub(super) fn html(status: StatusCode, query: &Q, body: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if let Some(l) = q(query, "lang").filter(|l| matches!(*l, "zh" | "en"))
        && let Ok(v) = HeaderValue::from_str(&format!("lang={l}; Path=/; Max-Age=31536000; SameSite=Strict"))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    no_store(&mut r);
    r
}

pub(super) fn no_store(r: &mut Response) {
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r.headers_mut()
        .insert("x-frame-options", HeaderValue::from_static("DENY"));
    r.headers_mut()
        .insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    // No scripts at all; inline styles only; forms post to this origin.
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
}

pub(super) fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The opening of a table of `class` and its header row; `heads` are our own words (not
/// escaped).
fn table_head(class: &str, heads: &[&str]) -> String {
    let mut o = format!("<table class=\"{class}\"><tr>");
    for h in heads {
        let _ = write!(o, "<th>{h}</th>");
    }
    o.push_str("</tr>");
    o
}

/// The session of a posted form once its CSRF token is checked; else the error, with the
/// session when there is one (for the page's header).
async fn form_session(
    st: &WebState,
    checked: Option<Extension<Session>>,
    headers: &HeaderMap,
    f: &HashMap<String, String>,
) -> Result<Session, (Option<Session>, WebError)> {
    let s = st.posted_session(checked, headers).await.map_err(|e| (None, e))?;
    if !csrf_ok(&s, f.get("csrf").map(String::as_str)) {
        return Err((Some(s), WebError::csrf()));
    }
    Ok(s)
}

/// An error as a page: no session → to the login page; otherwise the message.
pub(super) fn error_page(lang: Lang, query: &Q, session: Option<&Session>, e: &WebError) -> Response {
    if matches!(e, WebError::Login) {
        return see_other("/login");
    }
    let body = format!(
        "<h1>{}</h1><div class=\"err\">{}</div><p><a href=\"/\">{}</a></p>",
        e.status().as_u16(),
        esc(&e.message()),
        lang.t("返回首页", "back to the start")
    );
    let mut r = html(
        e.status(),
        query,
        page(lang, lang.t("错误", "Error"), &nav(lang, session, None), &body),
    );
    e.mark(&mut r, session);
    r
}

pub(super) fn unit_href(id: &str) -> String {
    format!("/units/{}", url_part(id, true))
}

/// The header: navigation, language, the user and the logout button.
pub(super) fn nav(lang: Lang, s: Option<&Session>, period: Option<&Period>) -> String {
    let mut o = String::from("<header>");
    let pq = period.map(|p| format!("?period={}", url_part(&p.to_string(), false)));
    let _ = write!(
        o,
        "<strong>{}</strong>",
        lang.t("考核 · 信息化考核管理平台", "Kaohe · assessment dashboard")
    );
    if let Some(s) = s {
        match (s.user.role, s.user.unit_id.as_deref()) {
            (Role::Unit, Some(own)) => {
                let _ = write!(
                    o,
                    "<a href=\"{}{}\">{}</a>",
                    esc(&unit_href(own)),
                    esc(pq.as_deref().unwrap_or("")),
                    lang.t("本单位", "My unit")
                );
            }
            _ => {
                let _ = write!(
                    o,
                    "<a href=\"/overview{}\">{}</a>",
                    esc(pq.as_deref().unwrap_or("")),
                    lang.t("总览", "Overview")
                );
            }
        }
        if s.user.role == Role::Province {
            let _ = write!(o, "<a href=\"/audit\">{}</a>", lang.t("审计日志", "Audit log"));
        }
    }
    let _ = write!(
        o,
        "<a href=\"?{}lang={}\">{}</a>",
        esc(&pq.as_deref().map(|p| format!("{}&", &p[1..])).unwrap_or_default()),
        if lang == Lang::Zh { "en" } else { "zh" },
        if lang == Lang::Zh { "English" } else { "中文" }
    );
    if let Some(s) = s {
        let _ = write!(
            o,
            "<span class=\"who\">{} ({})</span><form method=\"post\" action=\"/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><button type=\"submit\">{}</button></form>",
            esc(s.user.shown_name()),
            esc(lang.t(s.user.role.label_zh(), s.user.role.as_str())),
            esc(&s.csrf_token),
            lang.t("退出登录", "Log out")
        );
    }
    o.push_str("</header>");
    o
}

pub async fn root(State(st): State<Arc<WebState>>, headers: HeaderMap) -> Response {
    match st.session(&headers).await {
        Ok(_) => see_other("/overview"),
        Err(_) => see_other("/login"),
    }
}

pub(super) fn period_form(lang: Lang, action: &str, period: &Period) -> String {
    format!(
        "<form method=\"get\" action=\"{}\">{} <input name=\"period\" value=\"{}\" size=\"12\" title=\"2026 · 2026-Q4 · 2026-11\"> \
         <button type=\"submit\">{}</button></form>",
        esc(action),
        lang.t("考核期间", "Period"),
        esc(&period.to_string()),
        lang.t("查看", "Show")
    )
}

pub(super) fn alerts_html(lang: Lang, tz: chrono_tz::Tz, alerts: &[Alert], with_unit: bool) -> String {
    let mut o = format!("<h2>{}</h2>", lang.t("实时告警", "Open alerts"));
    if alerts.is_empty() {
        let _ = write!(
            o,
            "<p class=\"ok\">{}</p>",
            lang.t(
                "近 24 小时没有双网卡桥接或隔离突破告警",
                "no bridging or isolation alerts in the last 24 hours"
            )
        );
        return o;
    }
    let _ = write!(
        o,
        "<table class=\"alerts\"><tr>{}<th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        if with_unit {
            format!("<th>{}</th>", lang.t("单位", "Unit"))
        } else {
            String::new()
        },
        lang.t("类别", "Kind"),
        lang.t("情况", "Detail"),
        lang.t("首次发现", "First seen"),
        lang.t("最近发现", "Last seen"),
    );
    for a in alerts {
        let unit = if with_unit {
            format!(
                "<td><a href=\"{}\">{}</a></td>",
                esc(&unit_href(&a.unit_id)),
                esc(&a.unit_id)
            )
        } else {
            String::new()
        };
        let _ = write!(
            o,
            "<tr class=\"bridge\">{unit}<td class=\"bad\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(lang.t(a.kind.label_zh(), a.kind.as_str())),
            esc(&a.detail),
            when(a.first_seen, tz),
            when(a.last_seen, tz)
        );
    }
    o.push_str("</table>");
    o
}

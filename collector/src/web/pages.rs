//! The dashboard's HTML pages: login, overview (ranking, roll-ups, alerts), the unit page
//! (sheet with evidence, uptime chart, outages, inventory against registry, network map,
//! entries), the audit log and the exports.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use kaohe_rubric::period::Period;
use kaohe_rubric::scoring::sheet::human_duration;
use serde::Deserialize;

use super::auth::{self, Role, SESSION_COOKIE, Session};
use super::html::{Lang, esc, page, pts, url_part, when};
use super::{WebError, WebState, csrf_ok, lang_of, split_suffix, svg};
use crate::alerts::Alert;
use crate::conns::Conn;
use crate::review::{EntryKind, ManualEntry, NewEntry};
use crate::scores::{FullItem, FullSheet, Ranking};
use crate::store::Unit;
use crate::view::UnitView;

type Q = Query<HashMap<String, String>>;

fn q<'a>(query: &'a Q, key: &str) -> Option<&'a str> {
    query.0.get(key).map(String::as_str)
}

/// A page, with the `lang` cookie set when `?lang=` chose the language.
fn html(status: StatusCode, query: &Q, body: String) -> Response {
    let mut r = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response();
    if let Some(l) = q(query, "lang").filter(|l| matches!(*l, "zh" | "en"))
        && let Ok(v) = HeaderValue::from_str(&format!("lang={l}; Path=/; Max-Age=31536000; SameSite=Strict"))
    {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    no_store(&mut r);
    r
}

fn no_store(r: &mut Response) {
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

fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
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

fn unit_href(id: &str) -> String {
    format!("/units/{}", url_part(id, true))
}

/// The header: navigation, language, the user and the logout button.
fn nav(lang: Lang, s: Option<&Session>, period: Option<&Period>) -> String {
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

fn login_page(lang: Lang, query: &Q, status: StatusCode, error: Option<&str>, user: &str) -> Response {
    let mut body = format!(
        "<div class=\"login\"><h1>{}</h1>",
        lang.t("登录考核管理平台", "Log in to the Kaohe dashboard")
    );
    if let Some(e) = error {
        let _ = write!(body, "<div class=\"err\">{}</div>", esc(e));
    }
    let _ = write!(
        body,
        "<form method=\"post\" action=\"/login\"><label>{}<input name=\"user\" value=\"{}\" autocomplete=\"username\" required></label>\
         <label>{}<input type=\"password\" name=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">{}</button></form></div>",
        lang.t("用户名", "User name"),
        esc(user),
        lang.t("密码", "Password"),
        lang.t("登录", "Log in")
    );
    html(
        status,
        query,
        page(lang, lang.t("登录", "Log in"), &nav(lang, None, None), &body),
    )
}

pub async fn login_form(query: Q, headers: HeaderMap) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    login_page(lang, &query, StatusCode::OK, None, "")
}

#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

pub async fn login(
    State(st): State<Arc<WebState>>,
    conn: Option<Extension<Conn>>,
    query: Q,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    // Names are at most 64 characters; a longer one cannot exist, and is neither looked up
    // nor echoed in full.
    let name: String = f.user.trim().chars().take(65).collect();
    let source = conn
        .as_ref()
        .map_or(std::net::IpAddr::from([0, 0, 0, 0]), |c| c.peer.ip());
    let shown: String = name.chars().take(64).collect();
    if let Err(refusal) = st.logins.attempt(&name, source, std::time::Instant::now()) {
        let wait = refusal.retry_after().as_secs().max(1);
        crate::warn_throttled!(
            "login_limited",
            name_hash = %auth::name_tag(&name),
            %source,
            limit = refusal.limit(),
            retry_after_secs = wait,
            "登录尝试被限制 (login attempt refused by a limit): 429"
        );
        let mut r = login_page(
            lang,
            &query,
            StatusCode::TOO_MANY_REQUESTS,
            Some(&match lang {
                Lang::Zh => format!(
                    "登录尝试过多, 请 {} 后再试",
                    human_duration(i64::try_from(wait).unwrap_or(i64::MAX))
                ),
                Lang::En => format!("too many login attempts; try again in {wait} s"),
            }),
            &shown,
        );
        if let Ok(v) = HeaderValue::from_str(&wait.to_string()) {
            r.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return r;
    }
    let found = if name.chars().count() > 64 {
        Ok(None)
    } else {
        st.store.login_user(&name).await
    };
    let found = match found {
        Ok(u) => u,
        Err(e) => return error_page(lang, &query, None, &WebError::from(e)),
    };
    let password = f.password;
    let (user, hash) = match found {
        Some((u, h)) => (Some(u), h),
        None => (None, auth::dummy_hash().to_string()),
    };
    // At most a couple of password checks at once; a flood of logins waits or is refused.
    let permit = match tokio::time::timeout(std::time::Duration::from_secs(10), st.logins.verifying.acquire()).await {
        Ok(Ok(p)) => p,
        _ => {
            crate::warn_throttled!("login_busy", %source, "登录请求过多, 密码校验排队超时 (too many logins at once): 503");
            return login_page(
                lang,
                &query,
                StatusCode::SERVICE_UNAVAILABLE,
                Some(lang.t("登录请求过多, 请稍后再试", "too many logins at once; try again shortly")),
                &shown,
            );
        }
    };
    let ok = tokio::task::spawn_blocking(move || auth::verify_password(&password, &hash))
        .await
        .unwrap_or(false);
    drop(permit);
    let known = user.is_some();
    let Some(user) = user.filter(|_| ok) else {
        st.logins.failed(&name, source, std::time::Instant::now());
        // The name of a user that exists (as `?`, so no line break can forge a line); for
        // any other name only a tag, since people type passwords into the name box.
        if known {
            crate::warn_throttled!("login_failed", user = ?shown, %source, "管理平台登录失败 (dashboard login failed): 401");
        } else {
            crate::warn_throttled!(
                "login_failed",
                name_hash = %auth::name_tag(&name),
                %source,
                "管理平台登录失败, 用户不存在 (dashboard login failed: no such user): 401"
            );
        }
        return login_page(
            lang,
            &query,
            StatusCode::UNAUTHORIZED,
            Some(lang.t("用户名或密码错误", "wrong user name or password")),
            &shown,
        );
    };
    st.logins.succeeded(&name, source, std::time::Instant::now());
    let token = crate::ingest::random_secret();
    let csrf = crate::ingest::random_secret();
    let now = Utc::now();
    let until = now + chrono::Duration::hours(i64::from(st.session_hours));
    if let Err(e) = st.store.create_session(&token, &user.name, &csrf, now, until).await {
        return error_page(lang, &query, None, &WebError::from(e));
    }
    tracing::info!(user = %user.name, role = user.role.as_str(), %source, "管理平台登录 (dashboard login)");
    let to = match (user.role, user.unit_id.as_deref()) {
        (Role::Unit, Some(own)) => unit_href(own),
        _ => "/overview".to_string(),
    };
    let mut r = see_other(&to);
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; Secure; SameSite=Strict"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

pub async fn logout(
    State(st): State<Arc<WebState>>,
    checked: Option<Extension<Session>>,
    query: Q,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match st.posted_session(checked, &headers).await {
        Ok(s) => s,
        Err(_) => return see_other("/login"),
    };
    if !csrf_ok(&s, f.get("csrf").map(String::as_str)) {
        return error_page(lang, &query, Some(&s), &WebError::csrf());
    }
    if let Err(e) = st.store.end_session(&s.token_hash).await {
        return error_page(lang, &query, Some(&s), &WebError::from(e));
    }
    let mut r = see_other("/login");
    r.headers_mut().append(
        header::SET_COOKIE,
        HeaderValue::from_static("__Host-kaohe_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0"),
    );
    r
}

pub async fn overview(State(st): State<Arc<WebState>>, query: Q, headers: HeaderMap) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match st.session(&headers).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, &query, None, &e),
    };
    match overview_page(&st, &s, lang, &query).await {
        Ok(r) => r,
        Err(e) => error_page(lang, &query, Some(&s), &e),
    }
}

async fn overview_page(st: &WebState, s: &Session, lang: Lang, query: &Q) -> Result<Response, WebError> {
    let now = Utc::now();
    let period = st.period(q(query, "period"), now)?;
    if let (Role::Unit, Some(own)) = (s.user.role, s.user.unit_id.as_deref()) {
        return Ok(see_other(&format!(
            "{}?period={}",
            unit_href(own),
            url_part(&period.to_string(), false)
        )));
    }
    let units = st.visible_units(s).await?;
    let ranking = crate::scores::ranking(&st.store, &st.rubric, &units, period, now).await?;
    let ids: Vec<String> = units.iter().map(|u| u.id.clone()).collect();
    let alerts = st.store.open_alerts(Some(&ids), now).await?;
    let body = overview_body(st, lang, &period, &ranking, &alerts);
    Ok(html(
        StatusCode::OK,
        query,
        page(
            lang,
            lang.t("总览", "Overview"),
            &nav(lang, Some(s), Some(&period)),
            &body,
        ),
    ))
}

fn period_form(lang: Lang, action: &str, period: &Period) -> String {
    format!(
        "<form method=\"get\" action=\"{}\">{} <input name=\"period\" value=\"{}\" size=\"12\" title=\"2026 · 2026-Q4 · 2026-11\"> \
         <button type=\"submit\">{}</button></form>",
        esc(action),
        lang.t("考核期间", "Period"),
        esc(&period.to_string()),
        lang.t("查看", "Show")
    )
}

fn overview_body(st: &WebState, lang: Lang, period: &Period, r: &Ranking, alerts: &[Alert]) -> String {
    let tz = st.rubric.timezone;
    let mut o = String::new();
    let _ = write!(
        o,
        "<h1>{} · {}</h1>{}",
        lang.t("全省考核排名", "Province ranking"),
        esc(&r.period),
        period_form(lang, "/overview", period)
    );
    let (p2, p3) = (points_of(st, "二"), points_of(st, "三"));
    let _ = write!(
        o,
        "<table class=\"ranking\"><tr><th>{}</th><th>{}</th><th>{} ({p2})</th><th>{} ({p3})</th><th>{} ({})</th>\
         <th>{} ({})</th><th>{}</th><th>{}</th></tr>",
        lang.t("排名", "Rank"),
        lang.t("单位", "Unit"),
        lang.t("二", "II"),
        lang.t("三", "III"),
        lang.t("自动合计", "Automatic"),
        p2 + p3,
        lang.t("总分", "Total"),
        st.rubric.total_points,
        lang.t("待评审", "Pending"),
        lang.t("最后上报", "Last report"),
    );
    for row in &r.rows {
        let seen = row
            .last_seen
            .map(|ms| when(crate::store::from_millis(ms), tz))
            .unwrap_or_else(|| lang.t("从未上报", "never").to_string());
        let _ = write!(
            o,
            "<tr><td class=\"n\">{}</td><td><a href=\"{}?period={}\">{}</a> <span class=\"muted\">{}</span></td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n pending\">{}</td><td>{}</td></tr>",
            row.rank,
            esc(&unit_href(&row.unit.id)),
            esc(&url_part(&r.period, false)),
            esc(&row.unit.name),
            esc(&row.unit.id),
            pts(row.section2),
            pts(row.section3),
            pts(row.auto_total),
            pts(row.total),
            pts(row.pending_points),
            esc(&seen)
        );
    }
    if r.rows.is_empty() {
        let _ = write!(
            o,
            "<tr><td colspan=\"8\" class=\"muted\">{}</td></tr>",
            lang.t("没有可查看的单位", "no units to show")
        );
    }
    o.push_str("</table>");
    if !r.rollups.is_empty() {
        let _ = write!(
            o,
            "<h2>{}</h2><table class=\"rollups\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t(
                "市、县汇总 (所辖单位平均)",
                "City and county roll-ups (mean of their units)"
            ),
            lang.t("单位", "Unit"),
            lang.t("单位数", "Units"),
            lang.t("自动合计平均", "Mean automatic"),
            lang.t("总分平均", "Mean total"),
        );
        for ru in &r.rollups {
            let _ = write!(
                o,
                "<tr><td><a href=\"{}?period={}\">{}</a></td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&unit_href(&ru.unit.id)),
                esc(&url_part(&r.period, false)),
                esc(&ru.unit.name),
                ru.units,
                pts(ru.mean_auto_total),
                pts(ru.mean_total)
            );
        }
        o.push_str("</table>");
    }
    o.push_str(&alerts_html(lang, tz, alerts, true));
    o
}

fn points_of(st: &WebState, section: &str) -> u32 {
    st.rubric
        .sections
        .iter()
        .find(|s| s.id == section)
        .map_or(0, |s| s.points)
}

fn alerts_html(lang: Lang, tz: chrono_tz::Tz, alerts: &[Alert], with_unit: bool) -> String {
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

pub async fn unit_get(
    State(st): State<Arc<WebState>>,
    Path(rest): Path<String>,
    query: Q,
    headers: HeaderMap,
) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match st.session(&headers).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, &query, None, &e),
    };
    let (id, suffix) = split_suffix(&rest, &["/export.csv", "/export.xlsx", "/report.html"]);
    let result = async {
        let unit = st.unit_in_scope(&s, id).await?;
        let now = Utc::now();
        let period = st.period(q(&query, "period"), now)?;
        if suffix.is_empty() {
            unit_page(&st, &s, lang, &query, &unit, period, StatusCode::OK, None).await
        } else {
            let sheet = crate::scores::unit_sheet(&st.store, &st.rubric, &unit.id, period, now).await?;
            export(&unit, &period, &sheet, suffix, now)
        }
    }
    .await;
    result.unwrap_or_else(|e| error_page(lang, &query, Some(&s), &e))
}

/// A download of the sheet: CSV, XLSX or the printable self-check report.
pub fn export(
    unit: &Unit,
    period: &Period,
    sheet: &FullSheet,
    suffix: &str,
    now: DateTime<Utc>,
) -> Result<Response, WebError> {
    let base = format!("{}-{}-考核评分表", unit.name, period);
    let ascii = format!("kaohe-{}-{period}", unit.id.replace('/', "-"));
    let (bytes, kind, (name, fallback), inline) = match suffix {
        "/export.csv" => (
            crate::export::sheet_csv(sheet),
            "text/csv; charset=utf-8",
            (format!("{base}.csv"), format!("{ascii}.csv")),
            false,
        ),
        "/export.xlsx" => (
            crate::export::sheet_xlsx(sheet).map_err(|e| WebError::Internal(e.to_string()))?,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
            (format!("{base}.xlsx"), format!("{ascii}.xlsx")),
            false,
        ),
        _ => (
            crate::export::self_check_html(sheet, now).into_bytes(),
            "text/html; charset=utf-8",
            (
                format!("{}-{}-自检报告.html", unit.name, period),
                format!("{ascii}-self-check.html"),
            ),
            true,
        ),
    };
    let mut r = (StatusCode::OK, [(header::CONTENT_TYPE, kind)], bytes).into_response();
    let disposition = if inline {
        super::attachment(&name, &fallback).replacen("attachment", "inline", 1)
    } else {
        super::attachment(&name, &fallback)
    };
    if let Ok(v) = HeaderValue::from_str(&disposition) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    no_store(&mut r);
    Ok(r)
}

#[allow(clippy::too_many_arguments)]
async fn unit_page(
    st: &WebState,
    s: &Session,
    lang: Lang,
    query: &Q,
    unit: &Unit,
    period: Period,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, WebError> {
    let now = Utc::now();
    let sheet = crate::scores::unit_sheet(&st.store, &st.rubric, &unit.id, period, now).await?;
    let view = crate::view::unit_view(&st.store, &st.rubric, &unit.id, period, now).await?;
    let alerts = st.store.open_alerts(Some(std::slice::from_ref(&unit.id)), now).await?;
    let body = unit_body(st, s, lang, unit, &period, &sheet, &view, &alerts, message);
    Ok(html(
        status,
        query,
        page(lang, &unit.name, &nav(lang, Some(s), Some(&period)), &body),
    ))
}

#[allow(clippy::too_many_arguments)]
fn unit_body(
    st: &WebState,
    s: &Session,
    lang: Lang,
    unit: &Unit,
    period: &Period,
    sheet: &FullSheet,
    view: &UnitView,
    alerts: &[Alert],
    message: Option<&str>,
) -> String {
    let tz = st.rubric.timezone;
    let href = unit_href(&unit.id);
    let pq = format!("?period={}", url_part(&period.to_string(), false));
    let mut o = String::new();
    let _ = write!(
        o,
        "<h1>{} <span class=\"muted\">{}</span></h1>",
        esc(&unit.name),
        esc(&unit.id)
    );
    if let Some(m) = message {
        let _ = write!(o, "<div class=\"err\">{}</div>", esc(m));
    }
    o.push_str(&period_form(lang, &href, period));
    let p = &sheet.auto.period;
    let _ = write!(
        o,
        "<p>{} {} – {} ({} {}), {} {} · <strong>{} {} / {}</strong>, {} <span class=\"pending\">{}</span></p>",
        lang.t("评分窗口", "Scoring window"),
        when(p.window_start, tz),
        when(p.window_end, tz),
        p.days,
        lang.t("天", "days"),
        lang.t("代理报告", "agent reports"),
        sheet.auto.reports,
        lang.t("总分", "Total"),
        pts(sheet.total),
        sheet.total_max,
        lang.t("待评审", "pending"),
        pts(sheet.pending_points)
    );
    let _ = write!(
        o,
        "<p>{}: <a href=\"{}/export.csv{pq}\">CSV</a> · <a href=\"{}/export.xlsx{pq}\">Excel (XLSX)</a> · <a href=\"{}/report.html{pq}\">{}</a></p>",
        lang.t("导出", "Exports"),
        esc(&href),
        esc(&href),
        esc(&href),
        lang.t("自检报告 (可打印)", "self-check report (printable)")
    );
    // Sections.
    let _ = write!(
        o,
        "<table class=\"sections\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("部分", "Section"),
        lang.t("得分", "Score"),
        lang.t("标准分", "Points"),
        lang.t("待评审", "Pending")
    );
    for sec in &sheet.sections {
        let _ = write!(
            o,
            "<tr><td>{}、{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n pending\">{}</td></tr>",
            esc(&sec.id),
            esc(lang.t(&sec.title_zh, &sec.title_en)),
            pts(sec.score),
            sec.points,
            pts(sec.pending_points)
        );
    }
    o.push_str("</table>");
    o.push_str(&alerts_html(lang, tz, alerts, false));
    // The sheet, item by item.
    let _ = write!(o, "<h2>{}</h2>", lang.t("评分明细", "The sheet, item by item"));
    let _ = write!(
        o,
        "<table class=\"sheet\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("项目", "Item"),
        lang.t("内容", "What is assessed"),
        lang.t("得分/标准分", "Score"),
        lang.t("状态", "Status"),
        lang.t("扣分与证据", "Deductions and evidence"),
        lang.t("人工记录", "Entries")
    );
    for sec in &sheet.sections {
        let _ = write!(
            o,
            "<tr><th colspan=\"6\">{}、{} ({} {})</th></tr>",
            esc(&sec.id),
            esc(lang.t(&sec.title_zh, &sec.title_en)),
            sec.points,
            lang.t("分", "points")
        );
        for item in sheet.items.iter().filter(|i| i.section == sec.id) {
            o.push_str(&item_row(st, s, lang, unit, period, item));
        }
    }
    o.push_str("</table>");
    // Uptime and outages.
    let _ = write!(
        o,
        "<h2>{}</h2><div class=\"box\">{}</div>",
        lang.t(
            "专网每日可用率 (灰色: 无数据; 虚线: 99.5%)",
            "Daily private-network availability (grey: no data; dashed: 99.5%)"
        ),
        svg::uptime_chart(&view.days, lang)
    );
    let _ = write!(o, "<h3>{}</h3>", lang.t("中断记录", "Outages"));
    if view.outages.is_empty() {
        let _ = write!(
            o,
            "<p class=\"ok\">{}</p>",
            lang.t("本期无中断记录", "no outages in the period")
        );
    } else {
        let _ = write!(
            o,
            "<table class=\"outages\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("目标", "Target"),
            lang.t("类别", "Role"),
            lang.t("开始", "Start"),
            lang.t("结束", "End"),
            lang.t("时长", "Duration")
        );
        for out in &view.outages {
            let end = out
                .end
                .map(|e| when(e, tz))
                .unwrap_or_else(|| lang.t("未恢复", "ongoing").to_string());
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&out.target),
                esc(out.role),
                when(out.start, tz),
                esc(&end),
                esc(&human_duration(out.duration_secs))
            );
        }
        o.push_str("</table>");
    }
    // Inventory against the registry.
    let _ = write!(
        o,
        "<h2>{}</h2>",
        lang.t("设备清点与备案对照", "Inventory against the registry")
    );
    if view.inventory.is_empty() {
        let _ = write!(
            o,
            "<p class=\"muted\">{}</p>",
            lang.t("本期没有清点记录", "no inventory in the period")
        );
    } else {
        let _ = write!(
            o,
            "<table class=\"inventory\"><tr><th>IP</th><th>MAC</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
            lang.t("厂商", "Vendor"),
            lang.t("备案", "Registry"),
            lang.t("首次发现", "First seen"),
            lang.t("最后发现", "Last seen")
        );
        for d in &view.inventory {
            let (class, reg) = match (&d.registered_as, d.bridging) {
                (_, true) => (
                    "bridge",
                    format!(
                        "<span class=\"bad\">{}</span> {}",
                        lang.t("跨网桥接", "bridging"),
                        esc(d.registered_as.as_deref().unwrap_or(""))
                    ),
                ),
                (Some(n), false) => (
                    "reg",
                    format!(
                        "<span class=\"ok\">{}</span> {}",
                        lang.t("已备案", "registered"),
                        esc(n)
                    ),
                ),
                (None, false) => (
                    "unreg",
                    format!("<span class=\"warn\">{}</span>", lang.t("未备案", "unregistered")),
                ),
            };
            let _ = write!(
                o,
                "<tr class=\"{class}\"><td>{}</td><td>{}</td><td>{}</td><td>{reg}</td><td>{}</td><td>{}</td></tr>",
                esc(&d.ip),
                esc(d.mac.as_deref().unwrap_or("-")),
                esc(d.vendor.as_deref().unwrap_or("-")),
                when(d.first_seen, tz),
                when(d.last_seen, tz)
            );
        }
        o.push_str("</table>");
    }
    if !view.unseen.is_empty() {
        let _ = write!(
            o,
            "<h3>{}</h3><table class=\"unseen\"><tr><th>{}</th><th>{}</th><th>IP</th><th>MAC</th></tr>",
            lang.t("已备案但本期未发现的设备", "Registered devices not seen in the period"),
            lang.t("备案行", "Line"),
            lang.t("名称", "Name")
        );
        for u in &view.unseen {
            let _ = write!(
                o,
                "<tr><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                u.line,
                esc(&u.name),
                esc(u.ip.as_deref().unwrap_or("-")),
                esc(u.mac.as_deref().unwrap_or("-"))
            );
        }
        o.push_str("</table>");
    }
    // The map.
    let _ = write!(
        o,
        "<h2>{}</h2><div class=\"box\">{}</div>",
        lang.t("网络拓扑 (由代理上报生成)", "Network map (from the agents' reports)"),
        svg::network_map(&view.map, lang, tz)
    );
    // Agents.
    let _ = write!(
        o,
        "<h3>{}</h3><table class=\"agents\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("代理", "Agents"),
        lang.t("主机", "Host"),
        lang.t("版本", "Version"),
        lang.t("最后上报", "Last report"),
        lang.t("状态", "State")
    );
    for a in &view.agents {
        let _ = write!(
            o,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&a.hostname),
            esc(&a.agent_version),
            a.last_seen
                .map(|ms| when(crate::store::from_millis(ms), tz))
                .unwrap_or_else(|| "-".into()),
            if a.revoked_at.is_some() {
                lang.t("已吊销", "revoked")
            } else {
                lang.t("有效", "active")
            }
        );
    }
    o.push_str("</table>");
    o.push_str(&entry_form(st, s, lang, unit, period));
    o
}

fn entry_line(lang: Lang, tz: chrono_tz::Tz, e: &ManualEntry) -> String {
    let mut t = format!("<strong>{}</strong>", esc(lang.t(e.kind.label_zh(), e.kind.as_str())));
    if let Some(sc) = e.score {
        let _ = write!(t, " {}", pts(sc));
    }
    let _ = write!(
        t,
        " · {} {}: {}",
        lang.t("评审人", "by"),
        esc(&e.reviewer),
        esc(&e.note)
    );
    if let Some(x) = e.expires_at {
        let _ = write!(t, " · {} {}", lang.t("到期", "expires"), when(x, tz));
    }
    let _ = write!(
        t,
        " <span class=\"muted\">({} {})</span>",
        lang.t("录入于", "entered"),
        when(e.created_at, tz)
    );
    t
}

fn item_row(st: &WebState, s: &Session, lang: Lang, unit: &Unit, period: &Period, item: &FullItem) -> String {
    let tz = st.rubric.timezone;
    let mut o = String::new();
    let status = lang.t(item.status.label_zh(), status_en(item.status));
    let mut score = format!("{} / {}", pts(item.score), item.points);
    if let Some(a) = item.auto_score
        && matches!(
            item.status,
            crate::scores::FinalStatus::Overridden | crate::scores::FinalStatus::Waived
        )
    {
        let _ = write!(
            score,
            "<br><span class=\"muted\">{} {} / {}</span>",
            lang.t("自动评分", "automatic"),
            pts(a),
            pts(item.auto_max)
        );
    }
    if item.pending_points > 0.0 {
        let _ = write!(
            score,
            "<br><span class=\"pending\">{} {}</span>",
            lang.t("待评审", "pending"),
            pts(item.pending_points)
        );
    }
    let mut ded = String::new();
    for d in &item.deductions {
        let _ = write!(
            ded,
            "<div class=\"ded\"><span class=\"bad\">−{}</span> {}<ul class=\"ev\">",
            pts(d.points),
            esc(lang.t(&d.reason_zh, &d.reason_en))
        );
        for ev in d.evidence.iter().take(20) {
            let _ = write!(ded, "<li>{}</li>", esc(&ev.summary_zh(tz)));
        }
        if d.evidence.len() > 20 {
            let _ = write!(
                ded,
                "<li class=\"muted\">… {} {}</li>",
                d.evidence.len() - 20,
                lang.t("条未列出", "more")
            );
        }
        ded.push_str("</ul></div>");
    }
    for w in &item.warnings {
        let _ = write!(
            ded,
            "<div class=\"warn\">{} {}<ul class=\"ev\">",
            lang.t("提示:", "Note:"),
            esc(lang.t(&w.reason_zh, &w.reason_en))
        );
        for ev in w.evidence.iter().take(10) {
            let _ = write!(ded, "<li>{}</li>", esc(&ev.summary_zh(tz)));
        }
        ded.push_str("</ul></div>");
    }
    let mut entries = String::new();
    for e in &item.entries {
        let _ = write!(entries, "<div>{}", entry_line(lang, tz, e));
        if may_withdraw(s, e.kind, Role::parse(&e.author_role).unwrap_or(Role::Province)) {
            let _ = write!(
                entries,
                " <form method=\"post\" action=\"{}/entries/withdraw?period={}\" style=\"display:inline\">\
                 <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"id\" value=\"{}\">\
                 <button type=\"submit\">{}</button></form>",
                esc(&unit_href(&unit.id)),
                esc(&url_part(&period.to_string(), false)),
                esc(&s.csrf_token),
                esc(&e.id),
                lang.t("撤回", "Withdraw")
            );
        }
        entries.push_str("</div>");
    }
    for e in &item.expired {
        let _ = write!(
            entries,
            "<div class=\"muted\">{} {}</div>",
            lang.t("已过期:", "expired:"),
            entry_line(lang, tz, e)
        );
    }
    let _ = write!(
        o,
        "<tr id=\"item-{}\"><td>{}</td><td>{}</td><td class=\"n\">{score}</td><td class=\"st\"><span class=\"badge {:?}\">{}</span></td><td class=\"ded\">{ded}</td><td class=\"ent\">{entries}</td></tr>",
        esc(&item.id),
        esc(&item.id),
        esc(lang.t(&item.text_zh, &item.text_en)),
        item.status,
        esc(status)
    );
    o
}

fn status_en(s: crate::scores::FinalStatus) -> &'static str {
    match s {
        crate::scores::FinalStatus::Final => "scored",
        crate::scores::FinalStatus::Pending => "pending",
        crate::scores::FinalStatus::Overridden => "overridden",
        crate::scores::FinalStatus::Waived => "waived",
    }
}

/// Whether the user may withdraw an entry of `kind` entered by `author`: a kind the user
/// may enter, by a role at the user's level or below.
fn may_withdraw(s: &Session, kind: EntryKind, author: Role) -> bool {
    s.user.may_enter(kind) && s.user.role.level() >= author.level()
}

fn entry_form(st: &WebState, s: &Session, lang: Lang, unit: &Unit, period: &Period) -> String {
    let kinds: Vec<EntryKind> = [EntryKind::Review, EntryKind::Override, EntryKind::Waiver]
        .into_iter()
        .filter(|k| s.user.may_enter(*k))
        .collect();
    if kinds.is_empty() {
        return String::new();
    }
    let mut o = format!(
        "<h2>{}</h2><form class=\"entry box\" method=\"post\" action=\"{}/entries?period={}\">\
         <input type=\"hidden\" name=\"csrf\" value=\"{}\"><input type=\"hidden\" name=\"period\" value=\"{}\">",
        lang.t("录入评审、人工改分或豁免", "Enter a review, override or waiver"),
        esc(&unit_href(&unit.id)),
        esc(&url_part(&period.to_string(), false)),
        esc(&s.csrf_token),
        esc(&period.to_string())
    );
    let _ = write!(o, "<label>{} <select name=\"item\">", lang.t("条目", "Item"));
    for (_, item) in st.rubric.items() {
        let text: String = lang.t(&item.text_zh, &item.text_en).chars().take(40).collect();
        let _ = write!(
            o,
            "<option value=\"{}\">{} {} ({} {})</option>",
            esc(&item.id),
            esc(&item.id),
            esc(&text),
            item.points,
            lang.t("分", "pts")
        );
    }
    let _ = write!(
        o,
        "</select></label><label>{} <select name=\"kind\">",
        lang.t("类别", "Kind")
    );
    for k in kinds {
        let _ = write!(
            o,
            "<option value=\"{}\">{}</option>",
            k.as_str(),
            esc(lang.t(k.label_zh(), k.as_str()))
        );
    }
    let _ = write!(
        o,
        "</select></label><label>{} <input name=\"score\" inputmode=\"decimal\"></label>\
         <label>{} <input name=\"reviewer\" value=\"{}\" required></label>\
         <label>{} <textarea name=\"note\" rows=\"2\" required></textarea></label>\
         <label>{} <input type=\"date\" name=\"expires\"></label>\
         <button type=\"submit\">{}</button></form>",
        lang.t("分数 (豁免不填)", "Score (none for a waiver)"),
        lang.t("评审人", "Reviewer"),
        esc(s.user.shown_name()),
        lang.t("说明或理由", "Note or reason"),
        lang.t(
            "到期日 (人工改分和豁免必填)",
            "Expiry (required for overrides and waivers)"
        ),
        lang.t("保存", "Save")
    );
    o
}

/// An entry as asked for by a form or JSON, before checking.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntryInput {
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub kind: String,
    /// A number, or empty.
    #[serde(default)]
    pub score: Option<serde_json::Value>,
    #[serde(default)]
    pub reviewer: String,
    #[serde(default)]
    pub note: String,
    /// YYYY-MM-DD, or empty.
    #[serde(default)]
    pub expires: Option<String>,
}

impl EntryInput {
    fn from_form(f: &HashMap<String, String>) -> EntryInput {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        EntryInput {
            item: get("item"),
            kind: get("kind"),
            score: f.get("score").map(|s| serde_json::Value::String(s.clone())),
            reviewer: get("reviewer"),
            note: get("note"),
            expires: f.get("expires").cloned(),
        }
    }
}

/// Checks who may enter what and builds the entry; the caller validates it against the
/// rubric and stores it.
pub fn new_entry(
    st: &WebState,
    s: &Session,
    unit: &Unit,
    period: &Period,
    input: &EntryInput,
    now: DateTime<Utc>,
) -> Result<NewEntry, WebError> {
    let kind = EntryKind::parse(input.kind.trim()).ok_or_else(|| {
        WebError::BadRequest(format!(
            "类别 {} 无法识别, 应为 review、override 或 waiver (bad kind)",
            input.kind
        ))
    })?;
    if !s.user.may_enter(kind) {
        return Err(WebError::Forbidden(format!(
            "{} 无权录入{} ({} may not enter a {})",
            s.user.role.label_zh(),
            kind.label_zh(),
            s.user.role.as_str(),
            kind.as_str()
        )));
    }
    let score = match &input.score {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(t)) if t.trim().is_empty() => None,
        Some(serde_json::Value::String(t)) => Some(
            t.trim()
                .parse::<f64>()
                .map_err(|_| WebError::BadRequest(format!("分数 {t} 不是数字 (the score is not a number)")))?,
        ),
        Some(other) => {
            return Err(WebError::BadRequest(format!(
                "分数 {other} 不是数字 (the score is not a number)"
            )));
        }
    };
    let expires_at = match input.expires.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(super::expiry_from_date(
            t.parse().map_err(|_| {
                WebError::BadRequest(format!("到期日 {t} 应为 YYYY-MM-DD (the expiry must be YYYY-MM-DD)"))
            })?,
            st.rubric.timezone,
        )),
    };
    let entry = NewEntry {
        unit_id: unit.id.clone(),
        period: period.to_string(),
        item_id: input.item.trim().to_string(),
        kind,
        score,
        reviewer: input.reviewer.trim().to_string(),
        note: input.note.trim().to_string(),
        expires_at,
    };
    crate::review::validate(&st.rubric, &entry, now).map_err(WebError::BadRequest)?;
    Ok(entry)
}

/// Withdraws an entry of `unit` if the user may withdraw its kind.
pub async fn withdraw(st: &WebState, s: &Session, unit: &Unit, id: &str) -> Result<(), WebError> {
    let Some((owner, kind, author)) = st.store.entry_owner(id.trim()).await? else {
        return Err(WebError::NotFound(format!(
            "没有可撤回的记录 {id} (no such live entry)"
        )));
    };
    if owner != unit.id {
        return Err(WebError::NotFound(format!(
            "该单位没有记录 {id} (no such entry for this unit)"
        )));
    }
    if !may_withdraw(s, kind, author) {
        return Err(WebError::Forbidden(format!(
            "{} 无权撤回{}录入的{} ({} may not withdraw a {} entered by a {})",
            s.user.role.label_zh(),
            author.label_zh(),
            kind.label_zh(),
            s.user.role.as_str(),
            kind.as_str(),
            author.as_str()
        )));
    }
    st.store.withdraw_entry(id.trim(), &s.user.name, Utc::now()).await?;
    Ok(())
}

pub async fn unit_post(
    State(st): State<Arc<WebState>>,
    checked: Option<Extension<Session>>,
    Path(rest): Path<String>,
    query: Q,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match st.posted_session(checked, &headers).await {
        Ok(s) => s,
        Err(e) => return error_page(lang, &query, None, &e),
    };
    if !csrf_ok(&s, f.get("csrf").map(String::as_str)) {
        return error_page(lang, &query, Some(&s), &WebError::csrf());
    }
    let (id, suffix) = split_suffix(&rest, &["/entries/withdraw", "/entries"]);
    if suffix.is_empty() {
        return error_page(
            lang,
            &query,
            Some(&s),
            &WebError::NotFound("没有这个地址 (no such address)".into()),
        );
    }
    let unit = match st.unit_in_scope(&s, id).await {
        Ok(u) => u,
        Err(e) => return error_page(lang, &query, Some(&s), &e),
    };
    let now = Utc::now();
    let period_text = f.get("period").map(String::as_str).or_else(|| q(&query, "period"));
    let period = match st.period(period_text, now) {
        Ok(p) => p,
        Err(e) => return error_page(lang, &query, Some(&s), &e),
    };
    let done = if suffix == "/entries" {
        match new_entry(&st, &s, &unit, &period, &EntryInput::from_form(&f), now) {
            Ok(entry) => st
                .store
                .add_entry(&entry, &s.user.name, s.user.role, now)
                .await
                .map(|_| ())
                .map_err(WebError::from),
            Err(e) => Err(e),
        }
    } else {
        withdraw(&st, &s, &unit, f.get("id").map_or("", String::as_str)).await
    };
    match done {
        Ok(()) => see_other(&format!(
            "{}?period={}",
            unit_href(&unit.id),
            url_part(&period.to_string(), false)
        )),
        // A bad entry: the page again with the message, nothing stored.
        Err(e @ WebError::BadRequest(_)) => unit_page(
            &st,
            &s,
            lang,
            &query,
            &unit,
            period,
            StatusCode::BAD_REQUEST,
            Some(&e.message()),
        )
        .await
        .unwrap_or_else(|e| error_page(lang, &query, Some(&s), &e)),
        Err(e) => error_page(lang, &query, Some(&s), &e),
    }
}

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
        "<h1>{}</h1><table class=\"audit\"><tr><th>{}</th><th>{}</th><th>{}</th><th>{}</th><th>{}</th></tr>",
        lang.t("审计日志 (最近 500 条)", "Audit log (latest 500)"),
        lang.t("时间", "Time"),
        lang.t("操作人", "Actor"),
        lang.t("操作", "Action"),
        lang.t("单位", "Unit"),
        lang.t("内容", "Detail")
    );
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

//! `GET /login`, `POST /login` and `POST /logout`: the session cookie and the login limiter.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Extension, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::Utc;
use kaohe_rubric::scoring::sheet::human_duration;
use serde::Deserialize;

use super::{Q, error_page, form_session, html, nav, q, see_other, unit_href};
use crate::conns::Conn;
use crate::web::auth::{self, Role, SESSION_COOKIE, Session};
use crate::web::html::{Lang, esc, page};
use crate::web::{WebError, WebState, lang_of};

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
    let s = match form_session(&st, checked, &headers, &f).await {
        Ok(s) => s,
        Err((None, _)) => return see_other("/login"),
        Err((s, e)) => return error_page(lang, &query, s.as_ref(), &e),
    };
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

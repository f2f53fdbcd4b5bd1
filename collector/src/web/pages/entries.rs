//! The entry form on a unit page, and `POST /units/{id}/entries` and `…/entries/withdraw`.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;

use axum::Form;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use kaohe_rubric::period::Period;

use super::unit::{Viewer, unit_page};
use super::{Q, error_page, form_session, q, see_other, unit_href};
use crate::entries::{EntryInput, new_entry, withdraw};
use crate::review::EntryKind;
use crate::store::Unit;
use crate::web::auth::Session;
use crate::web::html::{Lang, esc, url_part};
use crate::web::{WebError, WebState, lang_of, split_suffix};

pub(super) fn entry_form(st: &WebState, s: &Session, lang: Lang, unit: &Unit, period: &Period) -> String {
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

pub async fn unit_post(
    State(st): State<Arc<WebState>>,
    checked: Option<Extension<Session>>,
    Path(rest): Path<String>,
    query: Q,
    headers: HeaderMap,
    Form(f): Form<HashMap<String, String>>,
) -> Response {
    let lang = lang_of(q(&query, "lang"), &headers);
    let s = match form_session(&st, checked, &headers, &f).await {
        Ok(s) => s,
        Err((s, e)) => return error_page(lang, &query, s.as_ref(), &e),
    };
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
        match new_entry(&st.rubric, &s.user, &unit.id, &period, &EntryInput::from_form(&f), now) {
            Ok(entry) => st
                .store
                .add_entry(&entry, &s.user.name, s.user.role, now)
                .await
                .map(|_| ())
                .map_err(WebError::from),
            Err(e) => Err(WebError::from(e)),
        }
    } else {
        withdraw(
            &st.store,
            &s.user,
            &unit.id,
            f.get("id").map_or("", String::as_str),
            now,
        )
        .await
        .map_err(WebError::from)
    };
    match done {
        Ok(()) => see_other(&format!(
            "{}?period={}",
            unit_href(&unit.id),
            url_part(&period.to_string(), false)
        )),
        // A bad entry: the page again with the message, nothing stored.
        Err(e @ WebError::BadRequest(_)) => {
            let v = Viewer {
                st: &st,
                s: &s,
                lang,
                query: &query,
            };
            unit_page(&v, &unit, period, StatusCode::BAD_REQUEST, Some(&e.message()))
                .await
                .unwrap_or_else(|e| error_page(lang, &query, Some(&s), &e))
        }
        Err(e) => error_page(lang, &query, Some(&s), &e),
    }
}

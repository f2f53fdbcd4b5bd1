//! `GET /overview`: the ranking of the units in scope, the roll-ups and the open alerts.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use kaohe_rubric::period::Period;

use super::{Q, alerts_html, error_page, html, nav, period_form, q, see_other, table_head, unit_href};
use crate::alerts::Alert;
use crate::scores::Ranking;
use crate::web::auth::{Role, Session};
use crate::web::html::{Lang, esc, page, pts, url_part, when};
use crate::web::{WebError, WebState, lang_of};

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
            "<h2>{}</h2>",
            lang.t(
                "市、县汇总 (所辖单位平均)",
                "City and county roll-ups (mean of their units)"
            )
        );
        o.push_str(&table_head(
            "rollups",
            &[
                lang.t("单位", "Unit"),
                lang.t("单位数", "Units"),
                lang.t("自动合计平均", "Mean automatic"),
                lang.t("总分平均", "Mean total"),
            ],
        ));
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

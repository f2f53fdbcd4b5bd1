//! `GET /units/{id}`: a unit's sheet with its evidence, availability, outages, inventory,
//! network map and agents; the exports under the same path.

use std::fmt::Write;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use chrono::Utc;
use kaohe_rubric::period::Period;
use kaohe_rubric::scoring::sheet::human_duration;

use super::entries::entry_form;
use super::{Q, alerts_html, error_page, html, nav, period_form, q, table_head, unit_href};
use crate::alerts::Alert;
use crate::review::ManualEntry;
use crate::scores::{FullItem, FullSheet};
use crate::store::Unit;
use crate::view::UnitView;
use crate::web::auth::{Role, Session};
use crate::web::html::{Lang, esc, page, pts, url_part, when, when_secs};
use crate::web::{WebError, WebState, lang_of, split_suffix, svg};

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
            let v = Viewer {
                st: &st,
                s: &s,
                lang,
                query: &query,
            };
            unit_page(&v, &unit, period, StatusCode::OK, None).await
        } else {
            let sheet = crate::scores::unit_sheet(&st.store, &st.rubric, &unit.id, period, now).await?;
            super::exports::export(&unit, &period, &sheet, suffix, now)
        }
    }
    .await;
    result.unwrap_or_else(|e| error_page(lang, &query, Some(&s), &e))
}

/// Who is looking at a page, in which language, with which query.
pub(super) struct Viewer<'a> {
    pub(super) st: &'a WebState,
    pub(super) s: &'a Session,
    pub(super) lang: Lang,
    pub(super) query: &'a Q,
}

/// What a unit page shows, loaded from the domain: the full sheet, the unit's view
/// (availability, outages, inventory, map, agents) and its open alerts.
struct UnitData {
    sheet: FullSheet,
    view: UnitView,
    alerts: Vec<Alert>,
}

/// The unit page, with `message` above the sheet (a refused entry) and `status`.
pub(super) async fn unit_page(
    v: &Viewer<'_>,
    unit: &Unit,
    period: Period,
    status: StatusCode,
    message: Option<&str>,
) -> Result<Response, WebError> {
    let (st, lang) = (v.st, v.lang);
    let now = Utc::now();
    let data = UnitData {
        sheet: crate::scores::unit_sheet(&st.store, &st.rubric, &unit.id, period, now).await?,
        view: crate::view::unit_view(&st.store, &st.rubric, &unit.id, period, now).await?,
        alerts: st.store.open_alerts(Some(std::slice::from_ref(&unit.id)), now).await?,
    };
    let body = unit_body(v, unit, &period, &data, message);
    Ok(html(
        status,
        v.query,
        page(lang, &unit.name, &nav(lang, Some(v.s), Some(&period)), &body),
    ))
}

fn unit_body(v: &Viewer<'_>, unit: &Unit, period: &Period, data: &UnitData, message: Option<&str>) -> String {
    let (lang, tz) = (v.lang, v.st.rubric.timezone);
    let mut o = summary_html(lang, tz, unit, period, &data.sheet, message);
    o.push_str(&alerts_html(lang, tz, &data.alerts, false));
    o.push_str(&sheet_html(v, unit, period, &data.sheet));
    o.push_str(&outages_html(lang, tz, &data.view));
    o.push_str(&inventory_html(lang, tz, &data.view));
    o.push_str(&map_and_agents_html(lang, tz, &data.view));
    o.push_str(&entry_form(v.st, v.s, lang, unit, period));
    o
}

/// The unit's name, the period, the window and totals, the exports and the sections.
fn summary_html(
    lang: Lang,
    tz: chrono_tz::Tz,
    unit: &Unit,
    period: &Period,
    sheet: &FullSheet,
    message: Option<&str>,
) -> String {
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
    o.push_str(&table_head(
        "sections",
        &[
            lang.t("部分", "Section"),
            lang.t("得分", "Score"),
            lang.t("标准分", "Points"),
            lang.t("待评审", "Pending"),
        ],
    ));
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
    o
}

/// The sheet, item by item, grouped by section.
fn sheet_html(v: &Viewer<'_>, unit: &Unit, period: &Period, sheet: &FullSheet) -> String {
    let lang = v.lang;
    let mut o = String::new();
    let _ = write!(o, "<h2>{}</h2>", lang.t("评分明细", "The sheet, item by item"));
    o.push_str(&table_head(
        "sheet",
        &[
            lang.t("项目", "Item"),
            lang.t("内容", "What is assessed"),
            lang.t("得分/标准分", "Score"),
            lang.t("状态", "Status"),
            lang.t("扣分与证据", "Deductions and evidence"),
            lang.t("人工记录", "Entries"),
        ],
    ));
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
            o.push_str(&item_row(v, unit, period, item));
        }
    }
    o.push_str("</table>");
    o
}

/// The daily availability chart and the outages of the period.
fn outages_html(lang: Lang, tz: chrono_tz::Tz, view: &UnitView) -> String {
    let mut o = String::new();
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
        o.push_str(&table_head(
            "outages",
            &[
                lang.t("目标", "Target"),
                lang.t("类别", "Role"),
                lang.t("开始", "Start"),
                lang.t("结束", "End"),
                lang.t("时长", "Duration"),
            ],
        ));
        for out in &view.outages {
            let end = out
                .end
                .map(|e| when_secs(e, tz))
                .unwrap_or_else(|| lang.t("未恢复", "ongoing").to_string());
            let _ = write!(
                o,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&out.target),
                esc(out.role),
                when_secs(out.start, tz),
                esc(&end),
                esc(&human_duration(out.duration_secs))
            );
        }
        o.push_str("</table>");
    }
    o
}

/// The devices the agents found, against the registry, and registered ones not seen.
fn inventory_html(lang: Lang, tz: chrono_tz::Tz, view: &UnitView) -> String {
    let mut o = String::new();
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
        o.push_str(&table_head(
            "inventory",
            &[
                "IP",
                "MAC",
                lang.t("厂商", "Vendor"),
                lang.t("备案", "Registry"),
                lang.t("首次发现", "First seen"),
                lang.t("最后发现", "Last seen"),
            ],
        ));
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
            "<h3>{}</h3>",
            lang.t("已备案但本期未发现的设备", "Registered devices not seen in the period")
        );
        o.push_str(&table_head(
            "unseen",
            &[lang.t("备案行", "Line"), lang.t("名称", "Name"), "IP", "MAC"],
        ));
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
    o
}

/// The network map and the unit's agents.
fn map_and_agents_html(lang: Lang, tz: chrono_tz::Tz, view: &UnitView) -> String {
    let mut o = String::new();
    // The map.
    let _ = write!(
        o,
        "<h2>{}</h2><div class=\"box\">{}</div>",
        lang.t("网络拓扑 (由代理上报生成)", "Network map (from the agents' reports)"),
        svg::network_map(&view.map, lang, tz)
    );
    // Agents.
    let _ = write!(o, "<h3>{}</h3>", lang.t("代理", "Agents"));
    o.push_str(&table_head(
        "agents",
        &[
            lang.t("主机", "Host"),
            lang.t("版本", "Version"),
            lang.t("最后上报", "Last report"),
            lang.t("状态", "State"),
        ],
    ));
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

fn item_row(v: &Viewer<'_>, unit: &Unit, period: &Period, item: &FullItem) -> String {
    let (s, lang, tz) = (v.s, v.lang, v.st.rubric.timezone);
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
        if crate::entries::may_withdraw(&s.user, e.kind, Role::parse(&e.author_role).unwrap_or(Role::Province)) {
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

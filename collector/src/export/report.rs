//! The printable self-check report (自检报告): one standalone HTML page.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use kaohe_rubric::scoring::Evidence;

use super::advice::item_advice;
use super::{entry_text, local_time, total_text, wholly_pending, window_text, zone};
use crate::render::pts;
use crate::review::{EntryKind, ManualEntry};
use crate::scores::{FinalStatus, FullItem, FullSheet};
use crate::web::html::esc;

/// Evidence lines listed under one deduction in the HTML report before "… 另有 N 条".
const MAX_EVIDENCE_IN_REPORT: usize = 20;

// The self-check report (HTML).

/// The page's style: screen and A4 print, system CJK fonts, nothing loaded from outside.
const REPORT_CSS: &str = r#"
@page { size: A4; margin: 15mm 14mm; }
* { box-sizing: border-box; }
body { font-family: "Noto Sans CJK SC", "Source Han Sans SC", "Microsoft YaHei", "PingFang SC", "SimSun", sans-serif;
  font-size: 14px; line-height: 1.6; color: #222; max-width: 210mm; margin: 0 auto; padding: 16px; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 18px; border-bottom: 2px solid #345; padding-bottom: 2px; margin: 24px 0 8px; }
h3 { font-size: 16px; margin: 16px 0 6px; }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; }
th, td { border: 1px solid #999; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #e8edf3; }
td.num, th.num { text-align: right; white-space: nowrap; }
tr.total td { font-weight: bold; background: #f3f6f9; }
.meta { color: #555; margin: 0 0 8px; }
.total-box { font-size: 18px; font-weight: bold; margin: 8px 0; }
.item { border: 1px solid #ccc; border-radius: 4px; padding: 6px 10px; margin: 6px 0; }
.item-head { display: flex; justify-content: space-between; gap: 12px; }
.item-id { font-weight: bold; margin-right: 6px; }
.score { white-space: nowrap; font-weight: bold; }
.badge { display: inline-block; padding: 0 6px; border-radius: 3px; font-size: 12px; margin-left: 6px;
  border: 1px solid #888; }
.badge.pending { background: #fff3cd; border-color: #c9a227; color: #6b5200; }
.badge.waived, .badge.overridden { background: #e2ecf7; border-color: #5b7fa8; }
.pending-item { border-left: 4px solid #c9a227; }
.parts { color: #555; font-size: 13px; }
ul { margin: 2px 0 4px; padding-left: 20px; }
.deduction { color: #8a1c1c; }
.warning { color: #6b5200; }
.evidence { color: #333; font-size: 13px; }
.entries { font-size: 13px; }
.expired { color: #777; }
ol.advice li { margin: 3px 0; }
footer { margin-top: 24px; color: #666; font-size: 12px; border-top: 1px solid #ccc; padding-top: 6px; }
@media print {
  body { font-size: 10.5pt; max-width: none; padding: 0; }
  h2 { break-after: avoid; }
  .item, tr { break-inside: avoid; }
  th, .badge, tr.total td { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"#;

fn html_head(o: &mut String, title: &str) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"zh-CN\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>{REPORT_CSS}</style>\n</head>\n<body>\n",
        esc(title)
    );
}

/// Title, unit, period, generation time and the total.
fn report_intro(o: &mut String, sheet: &FullSheet, title: &str, generated_at: DateTime<Utc>) {
    let tz = zone(sheet);
    let p = &sheet.auto.period;
    let _ = writeln!(o, "<header>\n<h1>{}</h1>", esc(title));
    let _ = writeln!(
        o,
        "<p class=\"meta\">单位: {} ({})<br>考核期间: {}, 评分窗口 {} ({}), 共 {} 天, 代理报告 {} 份<br>\
         评分细则: {}<br>生成时间: {} ({})</p>",
        esc(&sheet.auto.unit.name),
        esc(&sheet.auto.unit.id),
        esc(&p.label),
        esc(&window_text(p, tz)),
        esc(tz.name()),
        p.days,
        sheet.auto.reports,
        esc(&sheet.auto.rubric),
        esc(&generated_at.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string()),
        esc(tz.name()),
    );
    let _ = writeln!(o, "<p class=\"total-box\">{}</p>\n</header>", esc(&total_text(sheet)));
}

/// The summary table: one row per section (分值, 得分, 待评审) and the total.
fn summary_table(o: &mut String, sheet: &FullSheet) {
    o.push_str("<h2>得分汇总</h2>\n<table>\n<thead><tr><th>部分</th><th class=\"num\">分值</th>");
    o.push_str("<th class=\"num\">得分</th><th class=\"num\">待评审</th></tr></thead>\n<tbody>\n");
    for s in &sheet.sections {
        let _ = writeln!(
            o,
            "<tr><td>{}、{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(&s.id),
            esc(&s.title_zh),
            s.points,
            pts(s.score),
            pending_cell(s.pending_points)
        );
    }
    let _ = writeln!(
        o,
        "<tr class=\"total\"><td>合计</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
        sheet.total_max,
        pts(sheet.total),
        pending_cell(sheet.pending_points)
    );
    o.push_str("</tbody>\n</table>\n");
}

fn pending_cell(points: f64) -> String {
    if points > 0.0 {
        format!("{} 分", pts(points))
    } else {
        "—".to_string()
    }
}

/// The badge of an item's status.
fn badge(item: &FullItem) -> String {
    let class = match item.status {
        FinalStatus::Final => "final",
        FinalStatus::Pending => "pending",
        FinalStatus::Overridden => "overridden",
        FinalStatus::Waived => "waived",
    };
    let mut s = format!("<span class=\"badge {class}\">{}</span>", esc(item.status.label_zh()));
    if item.pending_points > 0.0 && item.status != FinalStatus::Pending {
        let _ = write!(
            s,
            "<span class=\"badge pending\">待评审 {} 分</span>",
            pts(item.pending_points)
        );
    }
    s
}

/// "自动评分 2.5 / 3；评审 待评审 (1 分)" for items with both parts or an automatic part.
fn parts_line(item: &FullItem) -> Option<String> {
    let mut parts = Vec::new();
    if item.auto_max > 0.0 {
        parts.push(match item.auto_score {
            Some(a) => format!("自动评分 {} / {}", pts(a), pts(item.auto_max)),
            None => format!("自动评分 — / {}", pts(item.auto_max)),
        });
    }
    if item.review_max > 0.0 && item.auto_max > 0.0 {
        parts.push(match item.review_score {
            Some(r) => format!("评审 {} / {}", pts(r), pts(item.review_max)),
            None => format!("评审部分 {} 分待评审", pts(item.review_max)),
        });
    }
    (!parts.is_empty()).then(|| parts.join("；"))
}

fn evidence_html(o: &mut String, evidence: &[Evidence], tz: Tz) {
    if evidence.is_empty() {
        return;
    }
    o.push_str("<ul class=\"evidence\">");
    for e in evidence.iter().take(MAX_EVIDENCE_IN_REPORT) {
        let _ = write!(o, "<li>{}</li>", esc(&e.summary_zh(tz)));
    }
    if evidence.len() > MAX_EVIDENCE_IN_REPORT {
        let _ = write!(
            o,
            "<li>… 另有 {} 条证据 (完整列表见 Excel 导出的“扣分证据”工作表)</li>",
            evidence.len() - MAX_EVIDENCE_IN_REPORT
        );
    }
    o.push_str("</ul>");
}

/// Deductions and warnings of an item, each with its evidence.
fn findings_html(o: &mut String, item: &FullItem, tz: Tz) {
    if item.deductions.is_empty() && item.warnings.is_empty() {
        return;
    }
    o.push_str("<ul>");
    for d in &item.deductions {
        let _ = write!(
            o,
            "<li><span class=\"deduction\">扣 {} 分: {}</span>",
            pts(d.points),
            esc(&d.reason_zh)
        );
        evidence_html(o, &d.evidence, tz);
        o.push_str("</li>");
    }
    for w in &item.warnings {
        let _ = write!(
            o,
            "<li><span class=\"warning\">提示 (不扣分): {}</span>",
            esc(&w.reason_zh)
        );
        evidence_html(o, &w.evidence, tz);
        o.push_str("</li>");
    }
    o.push_str("</ul>");
}

/// Entries in force and expired ones under an item.
fn item_entries_html(o: &mut String, item: &FullItem, tz: Tz) {
    if item.entries.is_empty() && item.expired.is_empty() {
        return;
    }
    o.push_str("<ul class=\"entries\">");
    for e in &item.entries {
        let _ = write!(o, "<li>{}</li>", esc(&entry_text(e, tz)));
    }
    for e in &item.expired {
        let _ = write!(
            o,
            "<li class=\"expired\">已过期, 不再适用: {}</li>",
            esc(&entry_text(e, tz))
        );
    }
    o.push_str("</ul>");
}

fn item_html(o: &mut String, item: &FullItem, tz: Tz) {
    let pending = if item.status == FinalStatus::Pending {
        " pending-item"
    } else {
        ""
    };
    let score = if wholly_pending(item) {
        format!("待评审 / {}", item.points)
    } else {
        format!("{} / {}", pts(item.score), item.points)
    };
    let _ = write!(
        o,
        "<div class=\"item{pending}\"><div class=\"item-head\"><div><span class=\"item-id\">{}</span>{}{}</div>\
         <div class=\"score\">{}</div></div>",
        esc(&item.id),
        esc(&item.text_zh),
        badge(item),
        esc(&score)
    );
    if let Some(parts) = parts_line(item) {
        let _ = write!(o, "<div class=\"parts\">{}</div>", esc(&parts));
    }
    findings_html(o, item, tz);
    item_entries_html(o, item, tz);
    o.push_str("</div>\n");
}

/// Each section with its items.
fn items_html(o: &mut String, sheet: &FullSheet) {
    let tz = zone(sheet);
    o.push_str("<h2>逐项评分</h2>\n");
    for s in &sheet.sections {
        let _ = writeln!(
            o,
            "<section><h3>{}、{} ({} 分, 得分 {}{})</h3>",
            esc(&s.id),
            esc(&s.title_zh),
            s.points,
            pts(s.score),
            if s.pending_points > 0.0 {
                format!(", 待评审 {} 分", pts(s.pending_points))
            } else {
                String::new()
            }
        );
        for item in sheet.items.iter().filter(|i| i.section == s.id) {
            item_html(o, item, tz);
        }
        o.push_str("</section>\n");
    }
}

/// Every entry of the sheet (in force and expired) as a table.
fn entries_html(o: &mut String, sheet: &FullSheet) {
    let tz = zone(sheet);
    o.push_str("<h2>评审、人工改分与豁免</h2>\n");
    let rows: Vec<(&FullItem, &ManualEntry, bool)> = sheet
        .items
        .iter()
        .flat_map(|i| {
            let live = i.entries.iter().map(move |e| (i, e, true));
            live.chain(i.expired.iter().map(move |e| (i, e, false)))
        })
        .collect();
    if rows.is_empty() {
        o.push_str("<p>本期没有评审、人工改分或豁免记录。</p>\n");
        return;
    }
    o.push_str(
        "<table>\n<thead><tr><th>条目</th><th>类型</th><th class=\"num\">分数</th><th>评审人</th>\
         <th>说明</th><th>有效期至</th><th>状态</th></tr></thead>\n<tbody>\n",
    );
    for (item, e, live) in rows {
        let class = if live { "" } else { " class=\"expired\"" };
        let _ = writeln!(
            o,
            "<tr{class}><td>{}</td><td>{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&item.id),
            esc(e.kind.label_zh()),
            e.score.map_or_else(|| "—".to_string(), pts),
            esc(&e.reviewer),
            esc(&e.note),
            esc(&e.expires_at.map_or_else(|| "—".to_string(), |t| local_time(t, tz))),
            entry_state(e, live)
        );
    }
    o.push_str("</tbody>\n</table>\n");
}

fn entry_state(e: &ManualEntry, live: bool) -> &'static str {
    match (live, e.kind) {
        (false, _) => "已过期",
        (true, EntryKind::Review) => "有效",
        (true, _) => "生效中",
    }
}

/// 整改建议: one line per item that lost points, then the items waiting for a reviewer.
fn advice_html(o: &mut String, sheet: &FullSheet) {
    let tz = zone(sheet);
    o.push_str("<h2>整改建议</h2>\n");
    let lines: Vec<String> = sheet.items.iter().filter_map(|i| item_advice(i, tz)).collect();
    if lines.is_empty() {
        o.push_str("<p>自动评分条目本期没有扣分, 请继续保持。</p>\n");
    } else {
        o.push_str("<ol class=\"advice\">\n");
        for l in &lines {
            let _ = writeln!(o, "<li>{}</li>", esc(l));
        }
        o.push_str("</ol>\n");
    }
    let pending: Vec<&FullItem> = sheet.items.iter().filter(|i| i.pending_points > 0.0).collect();
    if !pending.is_empty() {
        let ids: Vec<&str> = pending.iter().map(|i| i.id.as_str()).collect();
        let _ = writeln!(
            o,
            "<p>另有 {} 个条目 (共 {} 分) 待评审, 请备齐佐证材料供评审: {}</p>",
            pending.len(),
            pts(sheet.pending_points),
            esc(&ids.join("、"))
        );
    }
}

/// A printable self-check report (自检报告) for one unit as a complete standalone HTML
/// page (inline CSS with A4 print styles, no JavaScript, nothing loaded from elsewhere):
/// title "{unit name} 信息化建设自检报告 ({period})", the generation time, a summary per
/// section (分值/得分/待评审), each item with its score, deductions and their evidence
/// (pending reviewer items marked 待评审), the reviews, overrides and waivers in force and
/// expired ones, and a closing 整改建议 list with one line per item that lost points. All
/// text from data is HTML-escaped.
pub fn self_check_html(sheet: &FullSheet, generated_at: DateTime<Utc>) -> String {
    let title = format!(
        "{} 信息化建设自检报告 ({})",
        sheet.auto.unit.name, sheet.auto.period.label
    );
    let mut o = String::new();
    html_head(&mut o, &title);
    report_intro(&mut o, sheet, &title, generated_at);
    o.push_str("<main>\n");
    summary_table(&mut o, sheet);
    items_html(&mut o, sheet);
    entries_html(&mut o, sheet);
    advice_html(&mut o, sheet);
    o.push_str("</main>\n");
    o.push_str(
        "<footer>本报告由 Kaohe 根据考核代理上报的证据和备案自动生成, 供单位自查整改。\
         待评审的分值由评审人录入后计入总分; 人工改分和豁免到期后自动失效。</footer>\n",
    );
    o.push_str("</body>\n</html>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
    }
}

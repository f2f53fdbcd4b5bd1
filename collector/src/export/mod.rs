//! Exports of a unit's full sheet for people outside the dashboard: CSV and XLSX for
//! Excel, and a printable self-check report (自检报告) as one standalone HTML page.
//! Chinese first, like the sheet itself; every number comes from [`FullSheet`].

mod advice;
mod csv;
mod report;
mod table;
mod xlsx;

use std::fmt::Write;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use kaohe_rubric::scoring::{Deduction, Evidence, Note, PeriodInfo};

use crate::render::pts;
use crate::review::ManualEntry;
use crate::scores::{FinalStatus, FullItem, FullSheet};

pub use csv::sheet_csv;
pub use report::self_check_html;
pub use xlsx::{ExportError, sheet_xlsx};

/// Evidence summaries written into one table cell before "… 另有 N 条".
const MAX_EVIDENCE_IN_CELL: usize = 10;

// ---------------------------------------------------------------------------------------
// Shared: numbers, times, the texts of a row.

/// The unit's time zone as the engine recorded it (UTC if it cannot be read).
fn zone(sheet: &FullSheet) -> Tz {
    sheet.auto.period.timezone.parse().unwrap_or(Tz::UTC)
}

/// A time in the unit's zone: the date alone at midnight, else date and minutes.
fn local_time(t: DateTime<Utc>, tz: Tz) -> String {
    let local = t.with_timezone(&tz);
    if local.hour() == 0 && local.minute() == 0 {
        local.format("%Y-%m-%d").to_string()
    } else {
        local.format("%Y-%m-%d %H:%M").to_string()
    }
}

/// The scoring window: whole days as "2026-11-01 至 2026-11-02" (the end is exclusive, so
/// the last day shown is the one before it), else from and to the minute.
fn window_text(p: &PeriodInfo, tz: Tz) -> String {
    let (start, end) = (p.window_start.with_timezone(&tz), p.window_end.with_timezone(&tz));
    let midnight = |t: &DateTime<Tz>| t.hour() == 0 && t.minute() == 0 && t.second() == 0;
    if midnight(&start) && midnight(&end) && end > start {
        let last = (end - chrono::Duration::seconds(1)).date_naive();
        if last == start.date_naive() {
            return format!("{}", start.date_naive());
        }
        return format!("{} 至 {last}", start.date_naive());
    }
    format!("{} 至 {}", start.format("%Y-%m-%d %H:%M"), end.format("%Y-%m-%d %H:%M"))
}

/// "{id}、{title}" of the item's section, or the id alone.
fn section_label(sheet: &FullSheet, id: &str) -> String {
    match sheet.sections.iter().find(|s| s.id == id) {
        Some(s) => format!("{}、{}", s.id, s.title_zh),
        None => id.to_string(),
    }
}

/// The status of an item with the points still waiting for a reviewer.
fn status_text(item: &FullItem) -> String {
    let label = item.status.label_zh();
    if item.pending_points <= 0.0 {
        label.to_string()
    } else if item.status == FinalStatus::Pending {
        format!("{label} {} 分", pts(item.pending_points))
    } else {
        format!("{label}, 待评审 {} 分", pts(item.pending_points))
    }
}

/// Whether nothing of the item is scored yet (all of it waits for a reviewer).
fn wholly_pending(item: &FullItem) -> bool {
    item.status == FinalStatus::Pending && item.score == 0.0 && item.pending_points >= f64::from(item.points)
}

/// Evidence summaries of one deduction or warning, at most `max`, then "… 另有 N 条".
fn evidence_list(evidence: &[Evidence], tz: Tz, max: usize) -> String {
    let mut parts: Vec<String> = evidence.iter().take(max).map(|e| e.summary_zh(tz)).collect();
    if evidence.len() > max {
        parts.push(format!("… 另有 {} 条", evidence.len() - max));
    }
    parts.join(" | ")
}

/// One deduction in a cell: "扣 0.5 分: reason (证据: a | b)".
fn deduction_text(d: &Deduction, tz: Tz) -> String {
    let mut s = format!("扣 {} 分: {}", pts(d.points), d.reason_zh);
    if !d.evidence.is_empty() {
        let _ = write!(s, " (证据: {})", evidence_list(&d.evidence, tz, MAX_EVIDENCE_IN_CELL));
    }
    s
}

/// One warning in a cell: "提示 (不扣分): reason (证据: …)".
fn warning_text(w: &Note, tz: Tz) -> String {
    let mut s = format!("提示 (不扣分): {}", w.reason_zh);
    if !w.evidence.is_empty() {
        let _ = write!(s, " (证据: {})", evidence_list(&w.evidence, tz, MAX_EVIDENCE_IN_CELL));
    }
    s
}

/// The 扣分说明 cell: every deduction with its evidence, then the warnings, joined by "；".
fn deductions_cell(item: &FullItem, tz: Tz) -> String {
    let deductions = item.deductions.iter().map(|d| deduction_text(d, tz));
    let warnings = item.warnings.iter().map(|w| warning_text(w, tz));
    deductions.chain(warnings).collect::<Vec<_>>().join("；")
}

/// One entry: "人工改分 2 分, 评审人 王工, 说明: …, 有效期至 2027-01-01".
fn entry_text(e: &ManualEntry, tz: Tz) -> String {
    let mut s = e.kind.label_zh().to_string();
    if let Some(score) = e.score {
        let _ = write!(s, " {} 分", pts(score));
    }
    let _ = write!(s, ", 评审人 {}, 说明: {}", e.reviewer, e.note);
    if let Some(t) = e.expires_at {
        let _ = write!(s, ", 有效期至 {}", local_time(t, tz));
    }
    s
}

/// The 评审/改分记录 cell: the entries in force, joined by "；".
fn entries_cell(item: &FullItem, tz: Tz) -> String {
    item.entries
        .iter()
        .map(|e| entry_text(e, tz))
        .collect::<Vec<_>>()
        .join("；")
}

/// "总分 X / 100" and, while reviewers still owe points, " (待评审 Y 分)".
fn total_text(sheet: &FullSheet) -> String {
    let mut s = format!("总分 {} / {}", pts(sheet.total), sheet.total_max);
    if sheet.pending_points > 0.0 {
        let _ = write!(s, " (待评审 {} 分)", pts(sheet.pending_points));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_are_written_as_people_write_them() {
        assert_eq!(pts(3.0), "3");
        assert_eq!(pts(2.5), "2.5");
        assert_eq!(pts(1.0 / 3.0), "0.33");
        assert_eq!(pts(0.1 + 0.2), "0.3");
    }

    #[test]
    fn a_window_of_whole_days_names_its_last_day() {
        let at = |s: &str| s.parse::<DateTime<Utc>>().expect("time");
        let mut p = PeriodInfo {
            label: "2026-11-01..2026-11-02".into(),
            start: at("2026-10-31T16:00:00Z"),
            end: at("2026-11-02T16:00:00Z"),
            timezone: "Asia/Shanghai".into(),
            window_start: at("2026-10-31T16:00:00Z"),
            window_end: at("2026-11-02T16:00:00Z"),
            days: 2,
        };
        let tz: Tz = "Asia/Shanghai".parse().expect("zone");
        assert_eq!(window_text(&p, tz), "2026-11-01 至 2026-11-02");
        p.window_end = at("2026-11-02T00:30:00Z");
        assert_eq!(window_text(&p, tz), "2026-11-01 00:00 至 2026-11-02 08:30");
    }
}

//! Exports of a unit's full sheet for people outside the dashboard: CSV and XLSX for
//! Excel, and a printable self-check report (自检报告) as one standalone HTML page.
//! Chinese first, like the sheet itself; every number comes from [`FullSheet`].

use std::fmt::Write;

use chrono::{DateTime, Timelike, Utc};
use chrono_tz::Tz;
use kaohe_rubric::registry::safe_csv;
use kaohe_rubric::scoring::{Deduction, Evidence, Note, PeriodInfo, round2};
use rust_xlsxwriter::{Color, Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};

use crate::render::pts;
use crate::review::{EntryKind, ManualEntry};
use crate::scores::{FinalStatus, FullItem, FullSheet, SectionTotal};
use crate::web::html::esc;

/// The score table's columns, in order (CSV header and the XLSX sheet "评分表").
const COLUMNS: [&str; 10] = [
    "部分",
    "条目",
    "内容",
    "分值",
    "自动得分",
    "评审得分",
    "得分",
    "状态",
    "扣分说明",
    "评审/改分记录",
];

/// Evidence summaries written into one table cell before "… 另有 N 条".
const MAX_EVIDENCE_IN_CELL: usize = 10;

/// Evidence lines listed under one deduction in the HTML report before "… 另有 N 条".
const MAX_EVIDENCE_IN_REPORT: usize = 20;

/// Devices, hosts or services named in one line of advice before "等 N 项".
const MAX_NAMED_IN_ADVICE: usize = 8;

/// Excel's limit on the characters of one cell is 32,767; longer text is cut with "…".
const MAX_CELL_CHARS: usize = 32_000;

/// UTF-8 byte order mark: without it Excel reads a CSV in the local code page (GBK).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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

// ---------------------------------------------------------------------------------------
// The score table, as rows of cells shared by the CSV and the XLSX.

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
enum Cell {
    Text(String),
    Number(f64),
    Empty,
}

impl Cell {
    fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    fn number(x: Option<f64>) -> Cell {
        x.map_or(Cell::Empty, |x| Cell::Number(round2(x)))
    }
}

/// What a row of the table is, for its look in Excel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowKind {
    Item,
    Section,
    Total,
}

#[derive(Debug, Clone)]
struct Row {
    kind: RowKind,
    cells: [Cell; 10],
}

fn item_row(sheet: &FullSheet, item: &FullItem, tz: Tz) -> Row {
    let auto = if item.auto_max > 0.0 { item.auto_score } else { None };
    let review = if item.review_max > 0.0 { item.review_score } else { None };
    let score = if wholly_pending(item) { None } else { Some(item.score) };
    Row {
        kind: RowKind::Item,
        cells: [
            Cell::text(section_label(sheet, &item.section)),
            Cell::text(&item.id),
            Cell::text(&item.text_zh),
            Cell::Number(f64::from(item.points)),
            Cell::number(auto),
            Cell::number(review),
            Cell::number(score),
            Cell::text(status_text(item)),
            Cell::text(deductions_cell(item, tz)),
            Cell::text(entries_cell(item, tz)),
        ],
    }
}

fn section_row(s: &SectionTotal) -> Row {
    let status = if s.pending_points > 0.0 {
        Cell::text(format!("待评审 {} 分", pts(s.pending_points)))
    } else {
        Cell::Empty
    };
    Row {
        kind: RowKind::Section,
        cells: [
            Cell::text(format!("{}、{}", s.id, s.title_zh)),
            Cell::text(format!("{} 小计", s.id)),
            Cell::Empty,
            Cell::Number(f64::from(s.points)),
            Cell::Empty,
            Cell::Empty,
            Cell::Number(s.score),
            status,
            Cell::Empty,
            Cell::Empty,
        ],
    }
}

fn total_row(sheet: &FullSheet) -> Row {
    let status = if sheet.pending_points > 0.0 {
        Cell::text(format!("待评审 {} 分", pts(sheet.pending_points)))
    } else {
        Cell::Empty
    };
    Row {
        kind: RowKind::Total,
        cells: [
            Cell::text("合计"),
            Cell::text("总分"),
            Cell::Empty,
            Cell::Number(f64::from(sheet.total_max)),
            Cell::Empty,
            Cell::Empty,
            Cell::Number(sheet.total),
            status,
            Cell::Empty,
            Cell::Empty,
        ],
    }
}

/// Each section's items, then its subtotal; the grand total last.
fn table(sheet: &FullSheet) -> Vec<Row> {
    let tz = zone(sheet);
    let mut rows = Vec::with_capacity(sheet.items.len() + sheet.sections.len() + 1);
    for s in &sheet.sections {
        rows.extend(
            sheet
                .items
                .iter()
                .filter(|i| i.section == s.id)
                .map(|i| item_row(sheet, i, tz)),
        );
        rows.push(section_row(s));
    }
    // Items of a section the sheet does not list (a rubric and sheet out of step).
    let orphans = sheet
        .items
        .iter()
        .filter(|i| !sheet.sections.iter().any(|s| s.id == i.section));
    rows.extend(orphans.map(|i| item_row(sheet, i, tz)));
    rows.push(total_row(sheet));
    rows
}

// ---------------------------------------------------------------------------------------
// CSV.

/// One CSV field. Text goes through the one escaping every Kaohe CSV uses
/// (`kaohe_rubric::registry::safe_csv`): a cell that Excel would take for a formula
/// ("=…", "+…", "-…", "@…") gets a leading apostrophe, so a name or note from a user is
/// shown, never evaluated; a comma, a quote or a line break is quoted (RFC 4180). Numbers
/// are the program's own and stay as they are.
fn csv_field(out: &mut String, cell: &Cell) {
    match cell {
        Cell::Text(s) => safe_csv::push_text(out, s),
        Cell::Number(x) => safe_csv::push_field(out, &pts(*x)),
        Cell::Empty => {}
    }
}

fn csv_line(out: &mut String, cells: &[Cell]) {
    for (i, c) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        csv_field(out, c);
    }
    out.push_str("\r\n");
}

/// The full sheet as CSV (UTF-8 with a BOM so Excel opens it correctly), one row per item
/// plus section totals and the grand total; columns in Chinese: 部分, 条目, 内容, 分值,
/// 自动得分, 评审得分, 得分, 状态, 扣分说明 (deduction reasons with their evidence, joined
/// by "；"), 评审/改分记录 (entries in force: kind label, reviewer, note, expiry).
pub fn sheet_csv(sheet: &FullSheet) -> Vec<u8> {
    let mut text = String::new();
    csv_line(&mut text, &COLUMNS.map(Cell::text));
    for row in table(sheet) {
        csv_line(&mut text, &row.cells);
    }
    let mut out = Vec::with_capacity(UTF8_BOM.len() + text.len());
    out.extend_from_slice(UTF8_BOM);
    out.extend_from_slice(text.as_bytes());
    out
}

// ---------------------------------------------------------------------------------------
// XLSX.

/// Width of each column of "评分表", in Excel's character units (a Chinese character is
/// about two).
const SCORE_WIDTHS: [f64; 10] = [16.0, 7.0, 48.0, 6.0, 9.0, 9.0, 7.0, 14.0, 64.0, 40.0];

/// Width of each column of "扣分证据".
const EVIDENCE_WIDTHS: [f64; 4] = [8.0, 7.0, 50.0, 80.0];

/// A4 in Excel's paper sizes.
const PAPER_A4: u8 = 9;

/// The cell formats of the workbook. Numbers keep Excel's "General" format, which shows
/// 3, 2.5 and 0.33 as they are ("0.##" would show "3.").
struct Formats {
    title: Format,
    subtitle: Format,
    header: Format,
    item: Format,
    section: Format,
    total: Format,
}

impl Formats {
    fn new() -> Formats {
        let cell = Format::new()
            .set_align(FormatAlign::Top)
            .set_text_wrap()
            .set_border(FormatBorder::Thin);
        Formats {
            title: Format::new()
                .set_bold()
                .set_font_size(14)
                .set_align(FormatAlign::VerticalCenter),
            subtitle: Format::new().set_font_color(Color::RGB(0x59_59_59)),
            header: Format::new()
                .set_bold()
                .set_text_wrap()
                .set_align(FormatAlign::Center)
                .set_align(FormatAlign::VerticalCenter)
                .set_border(FormatBorder::Thin)
                .set_background_color(Color::RGB(0xD9_E1_F2)),
            section: cell.clone().set_bold().set_background_color(Color::RGB(0xF2_F2_F2)),
            total: cell.clone().set_bold().set_background_color(Color::RGB(0xDD_EB_F7)),
            item: cell,
        }
    }

    fn for_row(&self, kind: RowKind) -> &Format {
        match kind {
            RowKind::Item => &self.item,
            RowKind::Section => &self.section,
            RowKind::Total => &self.total,
        }
    }
}

/// Text cut to what one Excel cell holds.
fn cell_text(s: &str) -> String {
    if s.chars().count() <= MAX_CELL_CHARS {
        s.to_string()
    } else {
        let mut cut: String = s.chars().take(MAX_CELL_CHARS).collect();
        cut.push('…');
        cut
    }
}

fn write_cell(ws: &mut Worksheet, row: u32, col: u16, cell: &Cell, format: &Format) -> Result<(), XlsxError> {
    match cell {
        Cell::Text(s) => ws.write_string_with_format(row, col, cell_text(s), format)?,
        Cell::Number(x) => ws.write_number_with_format(row, col, *x, format)?,
        Cell::Empty => ws.write_blank(row, col, format)?,
    };
    Ok(())
}

fn write_header(ws: &mut Worksheet, row: u32, names: &[&str], f: &Format) -> Result<(), XlsxError> {
    for (col, name) in (0u16..).zip(names) {
        ws.write_string_with_format(row, col, *name, f)?;
    }
    Ok(())
}

fn set_widths(ws: &mut Worksheet, widths: &[f64]) -> Result<(), XlsxError> {
    for (col, w) in (0u16..).zip(widths) {
        ws.set_column_width(col, *w)?;
    }
    Ok(())
}

/// The line under the title: unit id, scoring window, reports, rubric.
fn subtitle(sheet: &FullSheet) -> String {
    let p = &sheet.auto.period;
    let tz = zone(sheet);
    format!(
        "单位编号 {}；评分窗口 {} ({})，共 {} 天；代理报告 {} 份；评分细则 {}",
        sheet.auto.unit.id,
        window_text(p, tz),
        tz.name(),
        p.days,
        sheet.auto.reports,
        sheet.auto.rubric
    )
}

/// "评分表": title, subtitle, header, then the table.
fn write_score_sheet(ws: &mut Worksheet, sheet: &FullSheet, f: &Formats) -> Result<(), XlsxError> {
    const HEADER_ROW: u32 = 2;
    let last_col = (COLUMNS.len() - 1) as u16;
    ws.set_name("评分表")?;
    let title = format!(
        "{} 信息化建设考核评分表　期间 {}　{}",
        sheet.auto.unit.name,
        sheet.auto.period.label,
        total_text(sheet)
    );
    ws.merge_range(0, 0, 0, last_col, &cell_text(&title), &f.title)?;
    ws.set_row_height(0, 24)?;
    ws.merge_range(1, 0, 1, last_col, &cell_text(&subtitle(sheet)), &f.subtitle)?;
    write_header(ws, HEADER_ROW, &COLUMNS, &f.header)?;
    for (r, row) in (HEADER_ROW + 1..).zip(table(sheet)) {
        let format = f.for_row(row.kind);
        for (col, cell) in (0u16..).zip(&row.cells) {
            write_cell(ws, r, col, cell, format)?;
        }
    }
    set_widths(ws, &SCORE_WIDTHS)?;
    ws.set_freeze_panes(HEADER_ROW + 1, 0)?;
    ws.set_repeat_rows(HEADER_ROW, HEADER_ROW)?;
    ws.set_paper_size(PAPER_A4).set_landscape().set_print_fit_to_pages(1, 0);
    Ok(())
}

/// One row of "扣分证据": item, points and reason on a deduction's first row only (so the
/// 扣分 column adds up to the points lost), one evidence per row.
fn evidence_rows(sheet: &FullSheet) -> Vec<[Cell; 4]> {
    let tz = zone(sheet);
    let mut rows = Vec::new();
    for item in &sheet.items {
        for d in &item.deductions {
            let summaries: Vec<String> = if d.evidence.is_empty() {
                vec![String::new()]
            } else {
                d.evidence.iter().map(|e| e.summary_zh(tz)).collect()
            };
            for (i, evidence) in summaries.into_iter().enumerate() {
                let first = i == 0;
                rows.push([
                    Cell::text(&item.id),
                    if first {
                        Cell::Number(round2(d.points))
                    } else {
                        Cell::Empty
                    },
                    if first { Cell::text(&d.reason_zh) } else { Cell::Empty },
                    Cell::Text(evidence),
                ]);
            }
        }
    }
    rows
}

/// "扣分证据": every deduction (条目, 扣分, 原因, 证据), one evidence per row.
fn write_evidence_sheet(ws: &mut Worksheet, sheet: &FullSheet, f: &Formats) -> Result<(), XlsxError> {
    ws.set_name("扣分证据")?;
    write_header(ws, 0, &["条目", "扣分", "原因", "证据"], &f.header)?;
    let rows = evidence_rows(sheet);
    if rows.is_empty() {
        ws.write_string_with_format(1, 0, "本期没有扣分", &f.item)?;
    }
    for (r, row) in (1u32..).zip(&rows) {
        for (col, cell) in (0u16..).zip(row) {
            write_cell(ws, r, col, cell, &f.item)?;
        }
    }
    set_widths(ws, &EVIDENCE_WIDTHS)?;
    ws.set_freeze_panes(1, 0)?;
    ws.set_repeat_rows(0, 0)?;
    ws.set_paper_size(PAPER_A4).set_landscape().set_print_fit_to_pages(1, 0);
    Ok(())
}

fn build_xlsx(sheet: &FullSheet) -> Result<Vec<u8>, XlsxError> {
    let f = Formats::new();
    let mut book = Workbook::new();
    write_score_sheet(book.add_worksheet(), sheet, &f)?;
    write_evidence_sheet(book.add_worksheet(), sheet, &f)?;
    book.save_to_buffer()
}

/// The same as an XLSX workbook: sheet "评分表" with the table of [`sheet_csv`] (header
/// bold, frozen header row, column widths, wrapped text for long cells, numbers as
/// numbers) under a title row with the unit name, period and "总分 X / 100 (待评审 Y 分)",
/// and a second worksheet "扣分证据" listing every deduction (条目, 扣分, 原因, 证据) with
/// one evidence per row.
pub fn sheet_xlsx(sheet: &FullSheet) -> Result<Vec<u8>, String> {
    build_xlsx(sheet).map_err(|e| format!("无法生成 Excel 文件 (cannot write the XLSX workbook): {e}"))
}

// ---------------------------------------------------------------------------------------
// 整改建议: what to fix, derived from the evidence of each deduction.

/// Names of at most [`MAX_NAMED_IN_ADVICE`] things, "、"-joined, then "等 N 项".
fn name_list(names: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let total = unique.len();
    let mut s = unique
        .into_iter()
        .take(MAX_NAMED_IN_ADVICE)
        .collect::<Vec<_>>()
        .join("、");
    if total > MAX_NAMED_IN_ADVICE {
        let _ = write!(s, " 等 {total} 项");
    }
    s
}

/// A device as people find it: "名称 (IP, MAC)", "IP (MAC)".
fn device_name(ip: &Option<String>, mac: &Option<String>, name: &Option<String>) -> String {
    let mut parts = [name.as_deref(), ip.as_deref(), mac.as_deref()].into_iter().flatten();
    match parts.next() {
        Some(first) => {
            let rest: Vec<&str> = parts.collect();
            if rest.is_empty() {
                first.to_string()
            } else {
                format!("{first} ({})", rest.join(", "))
            }
        }
        None => "未知设备".to_string(),
    }
}

/// What to do about a missing piece of evidence, by its key.
fn missing_advice(what: &str, summary: &str) -> String {
    let words = summary.strip_prefix("缺少: ").unwrap_or(summary);
    match what {
        "unit.maintainer" => "在单位资料中登记机房专人维护 (maintainer)".into(),
        "unit.responder" => "在单位资料中登记专网故障处置负责人 (responder)".into(),
        "registry:machine_room_device" => "在备案中登记机房设备及其 IP 地址 (“机房”列填“是”)".into(),
        "inventory:devices" => "检查考核代理的局域网设备清点配置, 确保能发现本局联网设备".into(),
        "probes:upstream" => "在考核代理中配置专网上游探测目标 (汇聚路由器、采集中心) 并保持运行".into(),
        "enrolment" => "尽早完成考核代理注册".into(),
        w if w.starts_with("check:") => format!("确保考核代理全期运行并上报{words}"),
        _ => format!("补齐{words}"),
    }
}

/// The evidence of one deduction sorted into what to fix.
#[derive(Default)]
struct Fixes {
    unregistered: Vec<String>,
    incomplete: Vec<String>,
    incomplete_fields: Vec<String>,
    unseen: Vec<String>,
    services: Vec<String>,
    missing_days: usize,
    missing_checks: Vec<String>,
    breaches: Vec<String>,
    bridging: Vec<String>,
    downtime: bool,
    outages: usize,
    unanswered: Vec<String>,
    other: Vec<String>,
}

impl Fixes {
    /// How many findings were sorted in so far.
    fn count(&self) -> usize {
        self.unregistered.len()
            + self.incomplete.len()
            + self.unseen.len()
            + self.services.len()
            + self.missing_days
            + self.breaches.len()
            + self.bridging.len()
            + usize::from(self.downtime)
            + self.outages
            + self.unanswered.len()
            + self.other.len()
    }

    fn add(&mut self, e: &Evidence, tz: Tz) {
        match e {
            Evidence::Device {
                ip,
                mac,
                name,
                registry_line,
                missing,
                ..
            } => {
                let who = device_name(ip, mac, name);
                if registry_line.is_none() {
                    self.unregistered.push(who);
                } else if !missing.is_empty() {
                    self.incomplete.push(who);
                    self.incomplete_fields.extend(missing.iter().map(|m| field_zh(m)));
                } else {
                    self.unseen.push(who);
                }
            }
            Evidence::Service { kind, name, url } => self.services.push(format!("{kind}“{name}” {url}")),
            Evidence::Days { count, missing, .. } => {
                self.missing_days += count;
                self.missing_checks.extend(missing.iter().cloned());
            }
            Evidence::Breach {
                canary,
                protocol,
                via_interface,
                ..
            } => {
                let via = via_interface
                    .as_deref()
                    .map(|i| format!(" 经接口 {i}"))
                    .unwrap_or_default();
                self.breaches.push(format!("{canary} ({protocol}){via}"));
            }
            Evidence::BridgingHost { host, ip, .. } => {
                self.bridging.push(match ip {
                    Some(ip) if !ip.is_empty() && ip != host => format!("{host} ({ip})"),
                    _ => host.clone(),
                });
            }
            Evidence::Downtime { .. } | Evidence::Uptime { .. } => self.downtime = true,
            Evidence::Outage { .. } => self.outages += 1,
            Evidence::Availability { target, ratio, .. } if *ratio < 1.0 => {
                self.unanswered.push(format!("{target} (应答率 {:.1}%)", ratio * 100.0));
            }
            Evidence::Availability { .. } => {}
            Evidence::Missing { what } => self.other.push(missing_advice(what, &e.summary_zh(tz))),
        }
    }

    /// The advice, one clause per kind of problem.
    fn advice(self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.unregistered.is_empty() {
            out.push(format!(
                "将以下设备登记备案 (写明使用者和使用地点): {}",
                name_list(self.unregistered)
            ));
        }
        if !self.incomplete.is_empty() {
            let fields = name_list(self.incomplete_fields);
            out.push(format!("补全以下设备备案中的{fields}: {}", name_list(self.incomplete)));
        }
        if !self.unseen.is_empty() {
            out.push(format!(
                "核实以下已备案设备: 仍在使用的应接入专网并开机受检, 已停用的从备案中删除: {}",
                name_list(self.unseen)
            ));
        }
        if !self.services.is_empty() {
            out.push(format!(
                "在备案中登记以下应用系统或门户网站: {}",
                name_list(self.services)
            ));
        }
        if self.missing_days > 0 {
            out.push(format!(
                "每天完成并记录日常检测 (本期缺少 {} 天, 缺项: {})",
                self.missing_days,
                name_list(self.missing_checks)
            ));
        }
        if !self.breaches.is_empty() {
            out.push(format!(
                "排查并切断专网局域网访问互联网的通路, 整改后复测: {}",
                name_list(self.breaches)
            ));
        }
        if !self.bridging.is_empty() {
            out.push(format!(
                "断开以下主机与互联网或其他网络的连接 (拆除第二网卡、无线网卡或共享上网), 专网主机只接专网: {}",
                name_list(self.bridging)
            ));
        }
        if self.downtime {
            out.push("排查专网中断或无数据的原因 (线路、汇聚设备、供电、考核代理主机), 提高专网可用率".into());
        }
        if self.outages > 0 {
            out.push("专网中断时及时报修处置, 在规定时限内恢复, 并留存处置记录".into());
        }
        if !self.unanswered.is_empty() {
            out.push(format!(
                "检查以下机房设备的运行和网络连接, 保持持续在线: {}",
                name_list(self.unanswered)
            ));
        }
        for o in self.other {
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }
}

/// A registry field in Chinese.
fn field_zh(field: &str) -> String {
    match field {
        "user" => "使用者".into(),
        "location" => "使用地点".into(),
        other => other.into(),
    }
}

/// One line of 整改建议 for an item that lost points, or `None`: what to fix, from the
/// evidence of all its deductions together (a deduction whose evidence says nothing to
/// act on is named by its reason). Waived items are not assessed, so they need nothing.
fn item_advice(item: &FullItem, tz: Tz) -> Option<String> {
    if item.deductions.is_empty() || item.status == FinalStatus::Waived {
        return None;
    }
    let mut fixes = Fixes::default();
    let mut unexplained = Vec::new();
    for d in &item.deductions {
        let before = fixes.count();
        for e in &d.evidence {
            fixes.add(e, tz);
        }
        if fixes.count() == before {
            unexplained.push(format!("针对“{}”进行整改", d.reason_zh));
        }
    }
    let mut clauses = fixes.advice();
    clauses.extend(unexplained);
    let lost: f64 = item.deductions.iter().map(|d| d.points).sum();
    Some(format!("{} (扣 {} 分): {}", item.id, pts(lost), clauses.join("；")))
}

// ---------------------------------------------------------------------------------------
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
    fn points_are_written_as_people_write_them() {
        assert_eq!(pts(3.0), "3");
        assert_eq!(pts(2.5), "2.5");
        assert_eq!(pts(1.0 / 3.0), "0.33");
        assert_eq!(pts(0.1 + 0.2), "0.3");
    }

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        let mut s = String::new();
        csv_line(
            &mut s,
            &[
                Cell::text("a,b"),
                Cell::text("say \"hi\""),
                Cell::text("=1+1"),
                Cell::Number(2.5),
            ],
        );
        assert_eq!(s, "\"a,b\",\"say \"\"hi\"\"\",'=1+1,2.5\r\n");
    }

    #[test]
    fn html_escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
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

    #[test]
    fn long_cells_are_cut_to_what_excel_holds() {
        let long = "证".repeat(MAX_CELL_CHARS + 10);
        assert_eq!(cell_text(&long).chars().count(), MAX_CELL_CHARS + 1);
    }
}

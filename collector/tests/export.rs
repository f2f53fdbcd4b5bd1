//! The exports as a user meets them: the CSV opened in Excel, the XLSX read back with
//! calamine, the self-check report as a page. The sheets come from the real engine over
//! the evidence of `tests/cases/`.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use calamine::{Data, Range, Reader, Xlsx};
use chrono::{DateTime, TimeZone, Utc};
use kaohe_collector::export::{self_check_html, sheet_csv, sheet_xlsx};
use kaohe_collector::offline::load_reports;
use kaohe_collector::review::{EntryKind, ManualEntry};
use kaohe_collector::scores::{FullSheet, full_sheet};
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::rubric::Rubric;
use kaohe_rubric::scoring::{ScoreInput, score};

const BOM: &[u8] = b"\xEF\xBB\xBF";

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cases").join(name)
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 20, 0, 0, 0)
        .single()
        .expect("valid time")
}

fn entry(item: &str, kind: EntryKind, score: Option<f64>, note: &str, expires: Option<DateTime<Utc>>) -> ManualEntry {
    ManualEntry {
        id: format!("e-{item}-{}", kind.as_str()),
        unit_id: "lab/case".into(),
        period: "2026".into(),
        item_id: item.into(),
        kind,
        score,
        reviewer: "张评审".into(),
        note: note.into(),
        expires_at: expires,
        created_at: Utc
            .with_ymd_and_hms(2026, 11, 10, 2, 0, 0)
            .single()
            .expect("valid time"),
        author_role: "province".into(),
    }
}

/// A review of 一.1, a waiver of 三.4 in force and an override of 二.2 that expired.
fn entries() -> Vec<ManualEntry> {
    let next_year = Utc.with_ymd_and_hms(2026, 12, 31, 16, 0, 0).single();
    let last_week = Utc.with_ymd_and_hms(2026, 11, 13, 16, 0, 0).single();
    vec![
        entry("一.1", EntryKind::Review, Some(3.0), "领导小组文件齐全 <见附件>", None),
        entry("三.4", EntryKind::Waiver, None, "机房改造期间不考核", next_year),
        entry("二.2", EntryKind::Override, Some(1.0), "补录纸质记录", last_week),
    ]
}

/// The full sheet of a `tests/cases/` folder scored by the engine, under the unit name
/// given, without the maintainer on record when `maintainer` is false (三.1 then loses
/// points for it).
fn sheet_of(case: &str, name: &str, maintainer: bool, entries: &[ManualEntry]) -> FullSheet {
    let dir = case_dir(case);
    let rubric = Rubric::default_rubric();
    let registry_path = dir.join("registry.csv");
    let registry_csv = std::fs::read(&registry_path).expect("registry readable");
    let registry = Registry::from_csv(&registry_csv, &registry_path.display().to_string()).expect("registry valid");
    let unit_text = std::fs::read_to_string(dir.join("unit.toml")).expect("unit profile readable");
    let mut profile = UnitProfile::from_toml(&unit_text, "unit.toml").expect("unit profile valid");
    profile.name = name.to_string();
    if !maintainer {
        profile.maintainer = None;
    }
    let reports = load_reports(&[dir.join("evidence.json")]).expect("evidence valid");
    let auto = score(&ScoreInput {
        rubric: &rubric,
        profile: &profile,
        registry: &registry,
        reports: &reports,
        period: "2026-11-01..2026-11-02".parse().expect("period"),
        as_of: None,
    });
    full_sheet(&rubric, auto, entries, now())
}

/// Bureau "示例司法所": one unregistered device (二.1), no maintainer on record (三.1),
/// reviewer entries as in [`entries`].
fn unregistered_device_sheet() -> FullSheet {
    sheet_of("rule-registry-unregistered-device", "示例司法所", false, &entries())
}

fn rubric_item_ids() -> Vec<String> {
    Rubric::default_rubric().items().map(|(_, i)| i.id.clone()).collect()
}

// ---------------------------------------------------------------------------------------
// CSV

fn csv_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    let body = bytes.strip_prefix(BOM).expect("the CSV starts with a UTF-8 BOM");
    let mut reader = csv::ReaderBuilder::new().has_headers(false).from_reader(body);
    reader
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

fn csv_row<'a>(rows: &'a [Vec<String>], id: &str) -> &'a [String] {
    rows.iter()
        .find(|r| r[1] == id)
        .unwrap_or_else(|| panic!("no row for {id}"))
}

#[test]
fn csv_opens_in_excel_with_a_bom_and_chinese_header() {
    let bytes = sheet_csv(&unregistered_device_sheet());
    assert!(bytes.starts_with(BOM), "Excel needs the BOM to read UTF-8");
    let rows = csv_rows(&bytes);
    assert_eq!(
        rows[0],
        [
            "部分",
            "条目",
            "内容",
            "分值",
            "自动得分",
            "评审得分",
            "得分",
            "状态",
            "扣分说明",
            "评审/改分记录"
        ]
    );
    assert!(rows.iter().all(|r| r.len() == 10), "every row has the ten columns");
}

#[test]
fn csv_lists_every_rubric_item_and_section_totals_adding_up_to_100() {
    let sheet = unregistered_device_sheet();
    let rows = csv_rows(&sheet_csv(&sheet));
    for id in rubric_item_ids() {
        assert!(rows.iter().any(|r| r[1] == id), "item {id} is missing from the CSV");
    }
    let subtotals: Vec<&Vec<String>> = rows.iter().filter(|r| r[1].ends_with("小计")).collect();
    assert_eq!(subtotals.len(), 6, "one subtotal per section");
    let points: u32 = subtotals
        .iter()
        .map(|r| r[3].parse::<u32>().expect("section points"))
        .sum();
    assert_eq!(points, 100);
    let total = csv_row(&rows, "总分");
    assert_eq!(total[3], "100");
    assert_eq!(total[6].parse::<f64>().expect("total is a number"), sheet.total);
    assert!(
        total[7].contains("待评审"),
        "the total says what still waits: {total:?}"
    );
}

#[test]
fn csv_shows_the_deduction_with_its_evidence() {
    let rows = csv_rows(&sheet_csv(&unregistered_device_sheet()));
    let item = csv_row(&rows, "二.1");
    assert_eq!(item[3], "3");
    assert_eq!(item[4], "2.5");
    assert_eq!(item[6], "2.5");
    assert!(item[8].contains("扣 0.5 分"), "{}", item[8]);
    assert!(item[8].contains("未备案"), "{}", item[8]);
    assert!(
        item[8].contains("10.1.0.99") && item[8].contains("f4:f2:6d:01:00:63"),
        "{}",
        item[8]
    );
    let room = csv_row(&rows, "三.1");
    assert!(room[8].contains("机房专人维护"), "{}", room[8]);
}

#[test]
fn csv_marks_pending_items_and_shows_entries_in_force() {
    let rows = csv_rows(&sheet_csv(&unregistered_device_sheet()));
    let pending = csv_row(&rows, "一.2");
    assert!(pending[7].contains("待评审"), "{pending:?}");
    assert_eq!(pending[6], "", "nothing scored yet, so no score");
    let reviewed = csv_row(&rows, "一.1");
    assert_eq!(reviewed[5], "3");
    assert!(
        reviewed[9].contains("评审 3 分") && reviewed[9].contains("张评审"),
        "{}",
        reviewed[9]
    );
    assert!(reviewed[9].contains("领导小组文件齐全"), "{}", reviewed[9]);
    let waived = csv_row(&rows, "三.4");
    assert_eq!(waived[7], "豁免");
    assert!(waived[9].contains("有效期至 2027-01-01"), "{}", waived[9]);
    let expired = csv_row(&rows, "二.2");
    assert!(
        !expired[9].contains("人工改分"),
        "an expired override is not in force: {}",
        expired[9]
    );
}

// ---------------------------------------------------------------------------------------
// XLSX

fn workbook(sheet: &FullSheet) -> Xlsx<Cursor<Vec<u8>>> {
    let bytes = sheet_xlsx(sheet).expect("the workbook is written");
    Xlsx::new(Cursor::new(bytes)).expect("calamine opens the workbook")
}

fn text(range: &Range<Data>, row: u32, col: u32) -> String {
    match range.get_value((row, col)) {
        Some(Data::String(s)) => s.clone(),
        Some(Data::Empty) | None => String::new(),
        Some(other) => panic!("({row}, {col}) is not text: {other:?}"),
    }
}

fn number(range: &Range<Data>, row: u32, col: u32) -> f64 {
    match range.get_value((row, col)) {
        Some(Data::Float(x)) => *x,
        Some(Data::Int(i)) => *i as f64,
        other => panic!("({row}, {col}) is not a number: {other:?}"),
    }
}

fn row_of(range: &Range<Data>, col: u32, value: &str) -> u32 {
    let (end, _) = range.end().expect("sheet not empty");
    (0..=end)
        .find(|r| text(range, *r, col) == value)
        .unwrap_or_else(|| panic!("no row with {value}"))
}

#[test]
fn xlsx_score_sheet_has_title_items_and_scores_as_numbers() {
    let sheet = unregistered_device_sheet();
    let mut book = workbook(&sheet);
    assert_eq!(book.sheet_names(), ["评分表", "扣分证据"]);
    let range = book.worksheet_range("评分表").expect("评分表 readable");
    let title = text(&range, 0, 0);
    assert!(title.contains("示例司法所"), "{title}");
    assert!(title.contains("2026-11-01..2026-11-02"), "{title}");
    assert!(
        title.contains(&format!("总分 {} / 100 (待评审", sheet.total)),
        "{title}"
    );
    assert_eq!(text(&range, 2, 1), "条目");
    assert_eq!(text(&range, 2, 8), "扣分说明");
    for id in rubric_item_ids() {
        row_of(&range, 1, &id);
    }
    let r = row_of(&range, 1, "二.1");
    assert_eq!(number(&range, r, 3), 3.0);
    assert_eq!(number(&range, r, 4), 2.5);
    assert_eq!(number(&range, r, 6), 2.5);
    assert!(text(&range, r, 8).contains("10.1.0.99"));
    let total = row_of(&range, 1, "总分");
    assert_eq!(number(&range, total, 3), 100.0);
    assert_eq!(number(&range, total, 6), sheet.total);
    let pending = row_of(&range, 1, "四.1");
    assert!(text(&range, pending, 7).contains("待评审"));
}

#[test]
fn xlsx_evidence_sheet_lists_one_evidence_per_row() {
    let sheet = unregistered_device_sheet();
    let mut book = workbook(&sheet);
    let range = book.worksheet_range("扣分证据").expect("扣分证据 readable");
    assert_eq!(
        (0..4).map(|c| text(&range, 0, c)).collect::<Vec<_>>(),
        ["条目", "扣分", "原因", "证据"]
    );
    let r = row_of(&range, 0, "二.1");
    assert_eq!(number(&range, r, 1), 0.5);
    assert!(text(&range, r, 2).contains("未备案"));
    assert!(text(&range, r, 3).contains("10.1.0.99"));
    let room = row_of(&range, 0, "三.1");
    assert!(
        text(&range, room, 3).contains("机房专人维护"),
        "{}",
        text(&range, room, 3)
    );
    // One row per piece of evidence, and the 扣分 column adds up to the points lost.
    let (end, _) = range.end().expect("rows");
    let evidence: usize = sheet
        .items
        .iter()
        .flat_map(|i| &i.deductions)
        .map(|d| d.evidence.len())
        .sum();
    assert_eq!(end as usize, evidence);
    let listed: f64 = (1..=end)
        .filter_map(|row| match range.get_value((row, 1)) {
            Some(Data::Float(x)) => Some(*x),
            _ => None,
        })
        .sum();
    let lost: f64 = sheet.items.iter().flat_map(|i| &i.deductions).map(|d| d.points).sum();
    assert!((listed - lost).abs() < 1e-9, "{listed} vs {lost}");
}

#[test]
fn xlsx_of_a_unit_without_deductions_says_so() {
    let sheet = sheet_of("perfect", "示例司法所", true, &[]);
    let mut book = workbook(&sheet);
    let range = book.worksheet_range("扣分证据").expect("扣分证据 readable");
    assert_eq!(text(&range, 1, 0), "本期没有扣分");
}

// ---------------------------------------------------------------------------------------
// The self-check report

fn report() -> String {
    self_check_html(&unregistered_device_sheet(), now())
}

#[test]
fn report_is_a_standalone_printable_page() {
    let html = report();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(html.contains("<meta charset=\"utf-8\">"));
    assert!(html.contains("<title>示例司法所 信息化建设自检报告 (2026-11-01..2026-11-02)</title>"));
    assert!(html.contains("@media print") && html.contains("size: A4"));
    assert!(
        html.contains("生成时间: 2026-11-20 08:00 (Asia/Shanghai)"),
        "time in the unit's zone"
    );
    for outside in ["<script", "<link", "src=", "http://", "https://", "@import", "url("] {
        // The services' URLs are data; the unit in this case has none in its deductions.
        assert!(!html.contains(outside), "the page must load nothing: found {outside}");
    }
    assert!(html.trim_end().ends_with("</html>"));
}

#[test]
fn report_summarises_each_section() {
    let sheet = unregistered_device_sheet();
    let html = self_check_html(&sheet, now());
    let summary =
        &html[html.find("<h2>得分汇总</h2>").expect("summary")..html.find("<h2>逐项评分</h2>").expect("items")];
    for s in &sheet.sections {
        assert!(
            summary.contains(&format!("{}、{}", s.id, s.title_zh)),
            "section {} missing",
            s.id
        );
    }
    assert!(summary.contains(&format!(
        "<td class=\"num\">100</td><td class=\"num\">{}</td>",
        sheet.total
    )));
}

#[test]
fn report_shows_deductions_with_evidence_and_marks_pending_items() {
    let html = report();
    let items = &html[html.find("<h2>逐项评分</h2>").expect("items")..];
    assert!(items.contains("扣 0.5 分: 发现 1 台未备案的联网设备"));
    assert!(
        items.contains("设备 10.1.0.99 f4:f2:6d:01:00:63"),
        "evidence in Chinese summary"
    );
    assert!(items.contains("缺少: 单位资料中的机房专人维护"));
    assert!(items.contains("<span class=\"badge pending\">待评审</span>"));
    assert!(items.contains("待评审 / 4"), "一.3 waits for its 4 points");
}

#[test]
fn report_lists_entries_in_force_and_expired_ones() {
    let html = report();
    let entries = &html[html.find("<h2>评审、人工改分与豁免</h2>").expect("entries")..];
    assert!(entries.contains("机房改造期间不考核") && entries.contains("生效中"));
    assert!(entries.contains("补录纸质记录") && entries.contains("已过期"));
    assert!(html.contains("已过期, 不再适用: 人工改分 1 分"));
}

#[test]
fn report_ends_with_what_to_fix() {
    let html = report();
    let advice = &html[html.find("<h2>整改建议</h2>").expect("整改建议 section")..];
    assert!(
        advice.contains("二.1 (扣 0.5 分): 将以下设备登记备案 (写明使用者和使用地点): 10.1.0.99 (f4:f2:6d:01:00:63)"),
        "{advice}"
    );
    assert!(
        advice.contains("三.1 (扣 1 分): 在单位资料中登记机房专人维护"),
        "{advice}"
    );
    assert!(!advice.contains("三.4"), "a waived item needs no fix");
    assert!(advice.contains("待评审, 请备齐佐证材料"));
}

#[test]
fn report_escapes_text_from_data() {
    let sheet = sheet_of(
        "rule-registry-unregistered-device",
        "<script>alert(1)</script>司法局",
        true,
        &entries(),
    );
    let html = self_check_html(&sheet, now());
    assert!(!html.contains("<script>"), "unit name must not become markup");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;司法局 信息化建设自检报告"));
    assert!(
        html.contains("领导小组文件齐全 &lt;见附件&gt;"),
        "reviewer notes are escaped"
    );
}

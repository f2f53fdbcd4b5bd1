//! The score table as rows of cells, shared by the CSV and the XLSX.

use chrono_tz::Tz;
use kaohe_rubric::scoring::round2;

use super::{deductions_cell, entries_cell, section_label, status_text, wholly_pending, zone};
use crate::render::pts;
use crate::scores::{FullItem, FullSheet, SectionTotal};

/// The score table's columns, in order (CSV header and the XLSX sheet "评分表").
pub(super) const COLUMNS: [&str; 10] = [
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

// The score table, as rows of cells shared by the CSV and the XLSX.

/// One cell of the table.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Cell {
    Text(String),
    Number(f64),
    Empty,
}

impl Cell {
    pub(super) fn text(s: impl Into<String>) -> Cell {
        Cell::Text(s.into())
    }

    pub(super) fn number(x: Option<f64>) -> Cell {
        x.map_or(Cell::Empty, |x| Cell::Number(round2(x)))
    }
}

/// What a row of the table is, for its look in Excel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RowKind {
    Item,
    Section,
    Total,
}

#[derive(Debug, Clone)]
pub(super) struct Row {
    pub(super) kind: RowKind,
    pub(super) cells: [Cell; 10],
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
pub(super) fn table(sheet: &FullSheet) -> Vec<Row> {
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

//! The sheet as an XLSX workbook: the score table and the evidence of every deduction.

use kaohe_rubric::scoring::round2;
use rust_xlsxwriter::{Color, Format, FormatAlign, FormatBorder, Workbook, Worksheet, XlsxError};

use super::table::{COLUMNS, Cell, RowKind, table};
use super::{total_text, window_text, zone};
use crate::scores::FullSheet;

/// Excel's limit on the characters of one cell is 32,767; longer text is cut with "…".
const MAX_CELL_CHARS: usize = 32_000;

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
pub fn sheet_xlsx(sheet: &FullSheet) -> Result<Vec<u8>, ExportError> {
    build_xlsx(sheet).map_err(ExportError::Xlsx)
}

/// Why an export could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("无法生成 Excel 文件 (cannot write the XLSX workbook): {0}")]
    Xlsx(#[source] XlsxError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_cells_are_cut_to_what_excel_holds() {
        let long = "证".repeat(MAX_CELL_CHARS + 10);
        assert_eq!(cell_text(&long).chars().count(), MAX_CELL_CHARS + 1);
    }
}

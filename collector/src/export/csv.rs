//! The sheet as CSV for Excel: UTF-8 with a byte order mark, every field defused.

use kaohe_rubric::registry::safe_csv;

use super::table::{COLUMNS, Cell, table};
use crate::render::pts;
use crate::scores::FullSheet;

/// UTF-8 byte order mark: without it Excel reads a CSV in the local code page (GBK).
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

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

#[cfg(test)]
mod tests {
    use super::*;

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
}

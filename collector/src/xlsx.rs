//! Registry import from Excel (XLSX), since units keep their 备案 there: the first sheet is
//! read into rows and checked exactly as the CSV format is, with Excel's row numbers as
//! line numbers. Nothing is imported unless every row is good.

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use kaohe_rubric::registry::{Registry, RegistryError, RowProblem};

/// Whether bytes look like an XLSX (a ZIP) file.
pub fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

fn cell(d: &Data) -> String {
    match d {
        Data::Empty => String::new(),
        Data::String(s) => s.replace(['\r', '\n'], " "),
        // Excel stores "101" typed into a cell as a number.
        Data::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
        Data::Float(f) => f.to_string(),
        Data::Int(i) => i.to_string(),
        Data::Bool(b) => if *b { "是" } else { "否" }.to_string(),
        other => other.to_string(),
    }
}

/// Reads the first sheet of an XLSX file as a registry.
pub fn registry_from_xlsx(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
    let fail = |message: String| RegistryError {
        file: file.to_string(),
        problems: vec![RowProblem {
            line: 1,
            column: None,
            message,
        }],
    };
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bytes))
        .map_err(|e| fail(format!("不是有效的 Excel (XLSX) 文件 (not a valid XLSX file): {e}")))?;
    let range = book
        .worksheet_range_at(0)
        .ok_or_else(|| fail("工作簿中没有工作表 (the workbook has no sheet)".into()))?
        .map_err(|e| fail(format!("无法读取第一个工作表 (cannot read the first sheet): {e}")))?;
    // Rows become CSV lines one for one, so a problem's line is the sheet's row number.
    let mut w = csv::WriterBuilder::new().from_writer(Vec::new());
    let (first_row, _) = range.start().unwrap_or((0, 0));
    for _ in 0..first_row {
        let _ = w.write_record([""]);
    }
    for row in range.rows() {
        let cells: Vec<String> = row.iter().map(cell).collect();
        w.write_record(&cells)
            .map_err(|e| fail(format!("无法转换工作表 (cannot convert the sheet): {e}")))?;
    }
    let csv = w
        .into_inner()
        .map_err(|e| fail(format!("无法转换工作表 (cannot convert the sheet): {e}")))?;
    Registry::from_csv(&csv, file)
}

//! Registry import from Excel (XLSX), since units keep their 备案 there: the first sheet is
//! read into rows and checked exactly as the CSV format is, with Excel's row numbers as
//! line numbers. Nothing is imported unless every row is good.
//!
//! A workbook is a ZIP of XML parts, and a file of a few kilobytes can declare, or unpack
//! to, anything. So it is bounded before anything parses it, and a limit it passes is named
//! in the error together with what the file declared:
//!
//! 1. the file's size (`limits::MAX_FILE_BYTES`) and its number of parts ([`MAX_PARTS`]);
//! 2. each XML part the reader needs: its declared size ([`MAX_PART_BYTES`]), then its
//!    actual size while it is unpacked with a cap (the header is never trusted), and all of
//!    them together ([`MAX_UNPACKED_BYTES`]);
//! 3. a quick pass over those parts: the shared strings' declared and actual count
//!    ([`MAX_SHARED_STRINGS`]), and every cell, row and dimension reference inside Excel's
//!    own grid;
//! 4. only then calamine reads that bounded copy, without the styles (a registry needs
//!    none, and they could multiply in memory), streaming the first sheet's cells: the
//!    sheet's declared dimension, then each cell's row, column and length are checked before
//!    it is kept ([`limits::MAX_ROWS`], [`limits::MAX_COLUMNS`], [`limits::MAX_CELL_CHARS`]),
//!    and the text made of them is bounded like a CSV file. calamine's `worksheet_range`,
//!    which allocates the declared width times height, is never used.

use std::io::{Cursor, Read, Write};
use std::path::Path;

use calamine::{Data, Reader, Xlsx};
use kaohe_rubric::registry::{Registry, RegistryError, RowProblem, limits};
use quick_xml::events::{BytesStart, Event};
use zip::ZipArchive;
use zip::write::{SimpleFileOptions, ZipWriter};

use crate::offline::InputError;

/// Parts (files) in the workbook's ZIP. Excel writes about ten for a one-sheet workbook.
pub const MAX_PARTS: usize = 1_000;
/// One XML part unpacked. A 20,000-row sheet of eight columns is about 6 MiB.
pub const MAX_PART_BYTES: u64 = 16 * 1024 * 1024;
/// All the XML parts read, unpacked.
pub const MAX_UNPACKED_BYTES: u64 = 32 * 1024 * 1024;
/// Entries of the shared-string table, declared or present.
pub const MAX_SHARED_STRINGS: u64 = 200_000;

/// Excel's own grid: 1,048,576 rows of 16,384 columns (A to XFD).
const EXCEL_ROWS: u64 = 1_048_576;
const EXCEL_COLUMNS: u64 = 16_384;

/// Whether bytes look like an XLSX (a ZIP) file.
pub fn is_xlsx(bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
}

/// Reads a registry file, CSV or XLSX, refusing one larger than `limits::MAX_FILE_BYTES`
/// before reading it.
pub fn read_registry_file(path: &Path) -> Result<Registry, InputError> {
    let read_err = |source| InputError::Read {
        path: path.to_path_buf(),
        source,
    };
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(read_err)?;
    let size = file.metadata().map_err(read_err)?.len();
    if size > limits::MAX_FILE_BYTES {
        return Err(whole(&name, too_big(size)).into());
    }
    // The size can change under us, or not be known (a pipe): read one byte past the limit.
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.take(limits::MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_err)?;
    Ok(registry_from_bytes(&bytes, &name)?)
}

/// A registry from a file's bytes: XLSX when it is a ZIP, CSV otherwise.
pub fn registry_from_bytes(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
    if is_xlsx(bytes) {
        registry_from_xlsx(bytes, file)
    } else {
        Registry::from_csv(bytes, file)
    }
}

fn too_big(size: u64) -> String {
    let max = limits::MAX_FILE_BYTES;
    format!("文件有 {size} 字节, 最多 {max} 字节 (the file has {size} bytes; at most {max})")
}

/// An error about the whole file (line 0: no row).
fn whole(file: &str, message: String) -> RegistryError {
    at(file, 0, message)
}

fn at(file: &str, line: usize, message: String) -> RegistryError {
    RegistryError {
        file: file.to_string(),
        problems: vec![RowProblem {
            line,
            column: None,
            message,
        }],
    }
}

/// A part's name for a message: short, and only printable characters.
fn shown(name: &str) -> String {
    let mut s: String = name
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if name.chars().count() > 80 {
        s.push('…');
    }
    s
}

/// Why a workbook is refused whole, before or while its cells are read.
#[derive(Debug, thiserror::Error)]
enum Refusal {
    /// Not a workbook, or a damaged one.
    #[error("不是有效的 Excel (XLSX) 文件 (not a valid XLSX file): {0}")]
    Damaged(String),
    /// Over one of the limits; the message names it and what the file holds.
    #[error("{0}")]
    Limit(String),
}

fn damaged(detail: impl std::fmt::Display) -> Refusal {
    Refusal::Damaged(detail.to_string())
}

/// Reads the first sheet of an XLSX file as a registry.
pub fn registry_from_xlsx(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
    let fail = |message: String| whole(file, message);
    if bytes.len() as u64 > limits::MAX_FILE_BYTES {
        return Err(fail(too_big(bytes.len() as u64)));
    }
    let bounded = bounded_copy(bytes).map_err(|r| fail(r.to_string()))?;
    let mut book: Xlsx<_> = Xlsx::new(Cursor::new(bounded)).map_err(|e| fail(damaged(e).to_string()))?;
    let first = book
        .sheet_names()
        .into_iter()
        .next()
        .ok_or_else(|| fail("工作簿中没有工作表 (the workbook has no sheet)".into()))?;
    let mut cells = book
        .worksheet_cells_reader(&first)
        .map_err(|e| fail(format!("无法读取第一个工作表 (cannot read the first sheet): {e}")))?;

    // The declared dimension first: a sheet that says it is larger than a registry can be
    // is refused before any cell is read.
    let dim = cells.dimensions();
    let (rows, columns) = (u64::from(dim.end.0) + 1, u64::from(dim.end.1) + 1);
    if rows > limits::MAX_ROWS as u64 {
        let max = limits::MAX_ROWS;
        return Err(fail(format!(
            "工作表声明了 {rows} 行, 最多 {max} 行 (the sheet declares {rows} rows; at most {max})"
        )));
    }
    if columns > limits::MAX_COLUMNS as u64 {
        let max = limits::MAX_COLUMNS;
        return Err(fail(format!(
            "工作表声明了 {columns} 列, 最多 {max} 列 (the sheet declares {columns} columns; at most {max})"
        )));
    }

    // Then the cells, as they stream: rows become CSV lines one for one, so a problem's
    // line is the sheet's row number.
    let mut sheet = SheetText::default();
    while let Some(cell) = cells
        .next_cell()
        .map_err(|e| fail(format!("无法读取第一个工作表 (cannot read the first sheet): {e}")))?
    {
        let (row, col) = cell.get_position();
        let (row, col) = (row as usize, col as usize);
        let name = cell_name(row, col);
        if row + 1 > limits::MAX_ROWS {
            let (n, max) = (row + 1, limits::MAX_ROWS);
            return Err(fail(format!(
                "单元格 {name} 在第 {n} 行, 最多 {max} 行 (cell {name} is in row {n}; at most {max} rows)"
            )));
        }
        if col + 1 > limits::MAX_COLUMNS {
            let (n, max) = (col + 1, limits::MAX_COLUMNS);
            return Err(fail(format!(
                "单元格 {name} 在第 {n} 列, 最多 {max} 列 (cell {name} is in column {n}; at most {max} columns)"
            )));
        }
        let text = cell_text(&Data::from(cell.get_value().clone()));
        if text.is_empty() {
            continue;
        }
        let chars = text.chars().count();
        if chars > limits::MAX_CELL_CHARS {
            let max = limits::MAX_CELL_CHARS;
            return Err(at(
                file,
                row + 1,
                format!(
                    "单元格 {name} 有 {chars} 个字符, 最多 {max} 个 (cell {name} has {chars} characters; at most {max})"
                ),
            ));
        }
        sheet.put(row, col, text).map_err(|r| fail(r.to_string()))?;
    }
    let csv = sheet.finish().map_err(|r| fail(r.to_string()))?;
    Registry::from_sheet_csv(&csv, file)
}

/// The sheet's rows written as CSV as they arrive, bounded like a CSV file.
#[derive(Default)]
struct SheetText {
    csv: Vec<u8>,
    /// Rows written so far (the next line's row index).
    lines: usize,
    /// The row being gathered and its cells by column.
    row: Option<(usize, Vec<String>)>,
}

impl SheetText {
    fn put(&mut self, row: usize, col: usize, text: String) -> Result<(), Refusal> {
        if self.row.as_ref().is_some_and(|(r, _)| *r != row) {
            self.flush()?;
        }
        if row < self.lines {
            return Err(damaged(format!(
                "第 {} 行出现在后面的行之后 (row {} comes after a later row)",
                row + 1,
                row + 1
            )));
        }
        let (_, cells) = self.row.get_or_insert_with(|| (row, Vec::new()));
        if cells.len() <= col {
            cells.resize(col + 1, String::new());
        }
        cells[col] = text;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), Refusal> {
        let Some((row, cells)) = self.row.take() else {
            return Ok(());
        };
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(&mut self.csv);
        let empty: [&str; 1] = [""];
        for _ in self.lines..row {
            w.write_record(empty).map_err(damaged)?;
        }
        w.write_record(&cells).map_err(damaged)?;
        w.flush().map_err(damaged)?;
        drop(w);
        self.lines = row + 1;
        let max = limits::MAX_FILE_BYTES;
        if self.csv.len() as u64 > max {
            return Err(Refusal::Limit(format!(
                "工作表的文字超过 {max} 字节 (the sheet holds more than {max} bytes of text; at most {max})"
            )));
        }
        Ok(())
    }

    fn finish(mut self) -> Result<Vec<u8>, Refusal> {
        self.flush()?;
        Ok(self.csv)
    }
}

/// A cell's text as a CSV field would hold it.
fn cell_text(d: &Data) -> String {
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

/// "A1" for a 0-based row and column.
fn cell_name(row: usize, col: usize) -> String {
    let mut letters = Vec::new();
    let mut c = col + 1;
    while c > 0 {
        let rem = (c - 1) % 26;
        letters.push(b'A' + rem as u8);
        c = (c - 1) / 26;
    }
    letters.reverse();
    format!("{}{}", String::from_utf8_lossy(&letters), row + 1)
}

/// Whether calamine needs a part to read cell values: XML and relationships, but not the
/// styles or the theme (without styles every number reads as a number, which is what a
/// registry holds), nor pictures, printer settings or macros.
fn needed(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    (lower.ends_with(".xml") || lower.ends_with(".rels")) && !lower.ends_with("styles.xml") && !lower.contains("theme/")
}

/// The workbook's needed parts, each unpacked with a cap and checked, stored again in a new
/// ZIP without compression for calamine. An error names the limit and what the file holds.
fn bounded_copy(bytes: &[u8]) -> Result<Vec<u8>, Refusal> {
    let mut zip = ZipArchive::new(Cursor::new(bytes)).map_err(damaged)?;
    if zip.len() > MAX_PARTS {
        let (n, max) = (zip.len(), MAX_PARTS);
        return Err(Refusal::Limit(format!(
            "压缩包有 {n} 个部分, 最多 {max} 个 (the workbook has {n} parts; at most {max})"
        )));
    }
    let mut out = ZipWriter::new(Cursor::new(Vec::new()));
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let mut unpacked: u64 = 0;
    let mut shared_strings: u64 = 0;
    for i in 0..zip.len() {
        let mut part = zip.by_index(i).map_err(damaged)?;
        let name = part.name().map_err(damaged)?.to_string();
        if part.is_dir() || !needed(&name) {
            continue;
        }
        let declared = part.size();
        if declared > MAX_PART_BYTES {
            let (p, max) = (shown(&name), MAX_PART_BYTES);
            return Err(Refusal::Limit(format!(
                "{p} 声明解压后有 {declared} 字节, 每部分最多 {max} 字节 ({p} declares {declared} bytes unpacked; at most {max})"
            )));
        }
        let room = MAX_UNPACKED_BYTES - unpacked;
        if declared > room {
            let max = MAX_UNPACKED_BYTES;
            let total = unpacked + declared;
            return Err(Refusal::Limit(format!(
                "各部分声明解压后合计至少 {total} 字节, 最多 {max} 字节 (the parts declare at least {total} bytes unpacked; at most {max})"
            )));
        }
        // Never trust the header: unpack at most one byte past what is allowed.
        let cap = MAX_PART_BYTES.min(room);
        let mut data = Vec::with_capacity(usize::try_from(declared).unwrap_or(0));
        (&mut part)
            .take(cap + 1)
            .read_to_end(&mut data)
            .map_err(|e| damaged(format!("{}: {e}", shown(&name))))?;
        if data.len() as u64 > cap {
            let p = shown(&name);
            return Err(Refusal::Limit(if cap == MAX_PART_BYTES {
                format!(
                    "{p} 解压后超过 {cap} 字节 (声明为 {declared}), 每部分最多 {cap} 字节 ({p} unpacks to more than {cap} bytes, declared {declared}; at most {cap})"
                )
            } else {
                let max = MAX_UNPACKED_BYTES;
                format!("各部分解压后合计超过 {max} 字节 (the parts unpack to more than {max} bytes; at most {max})")
            }));
        }
        drop(part);
        scan_part(&name, &data, &mut shared_strings)?;
        unpacked += data.len() as u64;
        out.start_file(name.as_str(), stored).map_err(damaged)?;
        out.write_all(&data).map_err(damaged)?;
    }
    Ok(out.finish().map_err(damaged)?.into_inner())
}

/// A quick pass over one XML part, before calamine reads it: the shared-string table's
/// declared and actual size, and every cell, row and dimension reference inside Excel's
/// grid (calamine's arithmetic on them assumes so).
fn scan_part(name: &str, data: &[u8], shared_strings: &mut u64) -> Result<(), Refusal> {
    let mut xml = quick_xml::Reader::from_reader(data);
    let config = xml.config_mut();
    config.check_end_names = false;
    config.check_comments = false;
    loop {
        let event = xml.read_event().map_err(|e| damaged(format!("{}: {e}", shown(name))))?;
        let e = match event {
            Event::Start(e) | Event::Empty(e) => e,
            Event::Eof => return Ok(()),
            _ => continue,
        };
        match e.local_name().as_ref() {
            "sst" => {
                for key in ["uniqueCount", "count"] {
                    if let Some(n) = attr(&e, key, name)?.and_then(|v| v.parse::<u64>().ok())
                        && n > MAX_SHARED_STRINGS
                    {
                        let max = MAX_SHARED_STRINGS;
                        return Err(Refusal::Limit(format!(
                            "共享字符串表声明了 {n} 项, 最多 {max} 项 (the shared-string table declares {n} entries; at most {max})"
                        )));
                    }
                }
            }
            "si" => {
                *shared_strings += 1;
                if *shared_strings > MAX_SHARED_STRINGS {
                    let max = MAX_SHARED_STRINGS;
                    return Err(Refusal::Limit(format!(
                        "共享字符串表超过 {max} 项 (the shared-string table has more than {max} entries; at most {max})"
                    )));
                }
            }
            "c" => check_ref(attr(&e, "r", name)?, false, name)?,
            "row" => check_ref(attr(&e, "r", name)?, true, name)?,
            "dimension" => {
                if let Some(v) = attr(&e, "ref", name)? {
                    let mut corners = Vec::new();
                    for part in v.split(':') {
                        corners.push(cell_ref(part, false).ok_or_else(|| outside(name, &v))?);
                    }
                    match corners[..] {
                        [_] => {}
                        [(r1, c1), (r2, c2)] if r1 <= r2 && c1 <= c2 => {}
                        _ => return Err(outside(name, &v)),
                    }
                }
            }
            _ => {}
        }
    }
}

/// The raw value of an attribute by its local name, as text.
fn attr(e: &BytesStart<'_>, key: &str, part: &str) -> Result<Option<String>, Refusal> {
    let mut found = None;
    for a in e.attributes().with_checks(false) {
        let a = a.map_err(|err| damaged(format!("{}: {err}", shown(part))))?;
        if a.key.local_name().as_ref() == key {
            let v = a.value;
            // Every reference with this name is checked, so the first is as good as any:
            // a second one is refused as a damaged file.
            if found.is_some() {
                return Err(damaged(format!("{}: 重复的属性 (a repeated attribute)", shown(part))));
            }
            found = Some(v.to_string());
        }
    }
    Ok(found)
}

fn check_ref(value: Option<String>, row_only: bool, part: &str) -> Result<(), Refusal> {
    match value {
        Some(v) if cell_ref(&v, row_only).is_none() => Err(outside(part, &v)),
        _ => Ok(()),
    }
}

fn outside(part: &str, value: &str) -> Refusal {
    let v = shown(value);
    damaged(format!(
        "{} 中的位置 “{v}” 不在 Excel 的 {EXCEL_ROWS} 行 × {EXCEL_COLUMNS} 列之内 (reference “{v}” is outside Excel's grid)",
        shown(part)
    ))
}

/// A reference such as "B7" (or "7" for a row) as 1-based (row, column), when it is inside
/// Excel's grid; column 0 when a row-only reference has no letters.
fn cell_ref(v: &str, row_only: bool) -> Option<(u64, u64)> {
    let digits_at = v.find(|c: char| c.is_ascii_digit())?;
    let (letters, digits) = v.split_at(digits_at);
    if letters.len() > 3 || !letters.bytes().all(|b| b.is_ascii_alphabetic()) || (!row_only && letters.is_empty()) {
        return None;
    }
    if digits.is_empty() || digits.len() > 7 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let row: u64 = digits.parse().ok()?;
    let col = letters
        .bytes()
        .fold(0u64, |c, b| c * 26 + u64::from(b.to_ascii_uppercase() - b'A') + 1);
    ((1..=EXCEL_ROWS).contains(&row) && col <= EXCEL_COLUMNS).then_some((row, col))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cell_names_and_references_agree() {
        assert_eq!(cell_name(0, 0), "A1");
        assert_eq!(cell_name(99_999, 2000), "BXY100000");
        assert_eq!(cell_name(1_048_575, 16_383), "XFD1048576");
        assert_eq!(cell_ref("XFD1048576", false), Some((1_048_576, 16_384)));
        assert_eq!(cell_ref("xfd1", false), Some((1, 16_384)));
        assert_eq!(cell_ref("7", true), Some((7, 0)));
        for bad in [
            "XFE1", "A1048577", "A0", "AAAA1", "A", "1", "A1B", "A-1", "A١", "é1", "",
        ] {
            assert_eq!(cell_ref(bad, false), None, "{bad}");
        }
        assert_eq!(cell_ref("4294967297", true), None);
    }
}

//! Small XLSX workbooks built in code for the registry-import tests and fuzz targets: a
//! first sheet (`xl/worksheets/sheet1.xml`) with whatever XML the test gives, the parts
//! Excel needs around it, and optionally a shared-string table.

use std::io::{Cursor, Write};

use zip::CompressionMethod;
use zip::write::{SimpleFileOptions, ZipWriter};

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;

const RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;

const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="备案" sheetId="1" r:id="rId1"/></sheets></workbook>"#;

const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/><Relationship Id="rId2" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/sharedStrings" Target="sharedStrings.xml"/></Relationships>"#;

pub const SHEET_START: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">"#;

/// A sheet's XML: an optional `<dimension ref>` and the rows given as XML.
pub fn sheet(dimension: Option<&str>, rows: &str) -> String {
    let dim = dimension
        .map(|d| format!(r#"<dimension ref="{d}"/>"#))
        .unwrap_or_default();
    format!("{SHEET_START}{dim}<sheetData>{rows}</sheetData></worksheet>")
}

/// A row of inline-string cells, each given as (reference, text).
pub fn row(r: u32, cells: &[(&str, &str)]) -> String {
    let mut s = format!(r#"<row r="{r}">"#);
    for (at, text) in cells {
        let text = text.replace('&', "&amp;").replace('<', "&lt;");
        s.push_str(&format!(r#"<c r="{at}" t="inlineStr"><is><t>{text}</t></is></c>"#));
    }
    s.push_str("</row>");
    s
}

/// The registry header in row 1 and one good device in row 2.
pub fn registry_rows() -> String {
    row(1, &[("A1", "类型"), ("B1", "名称"), ("C1", "IP地址")])
        + &row(2, &[("A2", "设备"), ("B2", "服务器"), ("C2", "10.1.0.10")])
}

/// A workbook whose first sheet is `sheet_xml`, with `shared` as its shared-string table.
pub fn workbook(sheet_xml: &[u8], shared: Option<&[u8]>, method: CompressionMethod) -> Vec<u8> {
    let mut parts: Vec<(&str, &[u8])> = vec![
        ("[Content_Types].xml", CONTENT_TYPES.as_bytes()),
        ("_rels/.rels", RELS.as_bytes()),
        ("xl/workbook.xml", WORKBOOK.as_bytes()),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS.as_bytes()),
        ("xl/worksheets/sheet1.xml", sheet_xml),
    ];
    if let Some(s) = shared {
        parts.push(("xl/sharedStrings.xml", s));
    }
    zip_of(&parts, method)
}

/// A ZIP of the given parts.
pub fn zip_of(parts: &[(&str, &[u8])], method: CompressionMethod) -> Vec<u8> {
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(method);
    for (name, data) in parts {
        z.start_file(*name, options).expect("zip entry");
        z.write_all(data).expect("zip write");
    }
    z.finish().expect("zip finish").into_inner()
}

/// A workbook whose first sheet holds one inline-string cell (B2) of `len` letters,
/// deflated as it is written, in 1 MiB pieces: a 1 GiB cell makes a file of about 1 MB.
pub fn workbook_with_huge_cell(len: u64) -> Vec<u8> {
    let mut z = ZipWriter::new(Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default().compression_method(CompressionMethod::Deflated);
    for (name, data) in [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", RELS),
        ("xl/workbook.xml", WORKBOOK),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
    ] {
        z.start_file(name, options).expect("zip entry");
        z.write_all(data.as_bytes()).expect("zip write");
    }
    z.start_file(
        "xl/worksheets/sheet1.xml",
        options.large_file(len > u64::from(u32::MAX) / 2),
    )
    .expect("zip entry");
    let head = format!(
        r#"{SHEET_START}<dimension ref="A1:C2"/><sheetData>{}<row r="2"><c r="A2" t="inlineStr"><is><t>设备</t></is></c><c r="B2" t="inlineStr"><is><t>"#,
        row(1, &[("A1", "类型"), ("B1", "名称"), ("C1", "IP地址")])
    );
    z.write_all(head.as_bytes()).expect("zip write");
    let chunk = vec![b'a'; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        z.write_all(&chunk[..n]).expect("zip write");
        left -= n as u64;
    }
    z.write_all(br#"</t></is></c></row></sheetData></worksheet>"#)
        .expect("zip write");
    z.finish().expect("zip finish").into_inner()
}

/// Rewrites the uncompressed size that the local and central headers of `name` declare.
pub fn lie_about_size(zip: &mut [u8], name: &str, size: u32) -> usize {
    let mut patched = 0;
    let n = name.as_bytes();
    let mut i = 0;
    while i + 46 <= zip.len() {
        let sig = &zip[i..i + 4];
        if sig == b"PK\x03\x04" {
            let len = u16::from_le_bytes([zip[i + 26], zip[i + 27]]) as usize;
            if zip.get(i + 30..i + 30 + len) == Some(n) {
                zip[i + 22..i + 26].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        } else if sig == b"PK\x01\x02" {
            let len = u16::from_le_bytes([zip[i + 28], zip[i + 29]]) as usize;
            if zip.get(i + 46..i + 46 + len) == Some(n) {
                zip[i + 24..i + 28].copy_from_slice(&size.to_le_bytes());
                patched += 1;
            }
        }
        i += 1;
    }
    patched
}

/// A first sheet of shared-string cells (indices 0 to 8 in three rows), for a test that
/// varies the shared-string table.
pub fn shared_string_sheet() -> String {
    let mut rows = String::new();
    for r in 1..=3u32 {
        rows.push_str(&format!(r#"<row r="{r}">"#));
        for (c, col) in ["A", "B", "C"].iter().enumerate() {
            let index = (r as usize - 1) * 3 + c;
            rows.push_str(&format!(r#"<c r="{col}{r}" t="s"><v>{index}</v></c>"#));
        }
        rows.push_str("</row>");
    }
    sheet(Some("A1:C3"), &rows)
}

/// A shared-string table for `shared_string_sheet` holding a registry header and two
/// devices.
pub fn registry_shared_strings() -> String {
    let strings = [
        "类型",
        "名称",
        "IP地址",
        "设备",
        "服务器",
        "10.1.0.10",
        "设备",
        "=打印机",
        "10.1.0.30",
    ];
    let mut s = String::from(
        r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?><sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" count="9" uniqueCount="9">"#,
    );
    for t in strings {
        s.push_str(&format!("<si><t>{t}</t></si>"));
    }
    s.push_str("</sst>");
    s
}

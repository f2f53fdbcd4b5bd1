//! Mutated registry files never crash the import, and whatever it accepts is within the
//! limits and exports back to itself (`support/import_checks.rs`). A seeded, bounded
//! mutation run on stable Rust; `collector/fuzz` has the cargo-fuzz targets `xlsx_import`
//! and `csv_import` for longer runs.

use kaohe_collector::testing::import_checks::check_import;
use kaohe_collector::testing::workbook;
use zip::CompressionMethod;

use kaohe_rubric::testing::rng::Rng;

/// Replaces, inserts or deletes a few pieces of `data`, with pieces from `tokens` or random bytes.
fn mutate(rng: &mut Rng, data: &mut Vec<u8>, tokens: &[&[u8]]) {
    for _ in 0..=rng.below(3) {
        let at = rng.below(data.len() + 1);
        match rng.below(5) {
            0 if at < data.len() => data[at] = rng.next_u64() as u8,
            1 => {
                let t = rng.pick(tokens);
                data.splice(at..at, t.iter().copied());
            }
            2 if at < data.len() => {
                let t = rng.pick(tokens);
                let end = (at + t.len()).min(data.len());
                data.splice(at..end, t.iter().copied());
            }
            3 if at < data.len() => {
                let end = (at + 1 + rng.below(16)).min(data.len());
                data.drain(at..end);
            }
            _ => data.truncate(data.len().max(1) - rng.below(2)),
        }
    }
}

const XML_TOKENS: [&[u8]; 22] = [
    b"<",
    b">",
    b"\"",
    b"/>",
    br#"r="XFD1048576""#,
    br#"r="XFE1""#,
    br#"r="A4294967297""#,
    br#"r="AAAAAAAAAAAAAAAAAAAA1""#,
    br#"<row r="4294967295"></row><row></row>"#,
    br#"<c r="B2" t="s"><v>99999999999</v></c>"#,
    br#"<dimension ref="B2:A1"/>"#,
    br#"<dimension ref="A1:XFD1048576"/>"#,
    br#"uniqueCount="18446744073709551615""#,
    b"_x0000_",
    b"&#0;",
    b"&amp;",
    b"</row><row>",
    b"<si><t>x</t></si>",
    b"\xc3\xa9",
    b"=",
    b"\0",
    b"99999999999999999999",
];

#[test]
fn mutated_workbooks_never_crash_the_import() {
    let sheet = workbook::sheet(
        Some("A1:C3"),
        &(workbook::registry_rows() + &workbook::row(3, &[("A3", "门户网站"), ("B3", "'=门户"), ("D3", "x")])),
    )
    .replace("</sheetData>", r#"<row r="4"><c r="A4" t="inlineStr"><is><t>应用系统</t></is></c><c r="B4" t="inlineStr"><is><t>OA</t></is></c></row></sheetData>"#);
    let shared_sheet = workbook::shared_string_sheet();
    let shared = workbook::registry_shared_strings();
    let fixture = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/registry.xlsx")).expect("fixture");
    // A portal without a URL: refused, naming row 3.
    assert!(!check_import(&workbook::workbook(
        sheet.as_bytes(),
        None,
        CompressionMethod::Stored
    )));
    assert!(check_import(&workbook::workbook(
        shared_sheet.as_bytes(),
        Some(shared.as_bytes()),
        CompressionMethod::Stored
    )));
    assert!(check_import(&fixture));

    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let (mut accepted, mut runs) = (0u32, 0u32);
    for i in 0..2_400u32 {
        let bytes = match i % 4 {
            // The first sheet's XML, mutated, in a good workbook.
            0 => {
                let mut xml = sheet.clone().into_bytes();
                mutate(&mut rng, &mut xml, &XML_TOKENS);
                workbook::workbook(&xml, None, CompressionMethod::Stored)
            }
            // The shared-string table, mutated.
            1 => {
                let mut sst = shared.clone().into_bytes();
                mutate(&mut rng, &mut sst, &XML_TOKENS);
                workbook::workbook(shared_sheet.as_bytes(), Some(&sst), CompressionMethod::Stored)
            }
            // The ZIP itself: a deflated workbook and a real one from Excel's kin.
            2 => {
                let mut z = workbook::workbook(sheet.as_bytes(), None, CompressionMethod::Deflated);
                mutate(
                    &mut rng,
                    &mut z,
                    &[b"PK\x03\x04", b"PK\x01\x02", b"\xff\xff\xff\xff", b"\0\0"],
                );
                z
            }
            _ => {
                let mut z = fixture.clone();
                mutate(
                    &mut rng,
                    &mut z,
                    &[b"PK\x03\x04", b"PK\x01\x02", b"\xff\xff\xff\xff", b"\0\0"],
                );
                z
            }
        };
        runs += 1;
        if check_import(&bytes) {
            accepted += 1;
        }
    }
    println!("{runs} mutated workbooks, {accepted} accepted");
    assert!(accepted > 50, "some mutations still import: {accepted}");
}

const CSV_TOKENS: [&[u8]; 16] = [
    b",",
    b"\"",
    b"\r\n",
    b"\n",
    b"\r",
    b"'",
    b"'=",
    b"=HYPERLINK(\"http://evil.example/\")",
    b"\0",
    b"\xc3\xa9",
    b"\xff",
    b"\xEF\xBB\xBF",
    b"\"\"",
    b",,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,,",
    b"10.1.0.10",
    b"02:6b:68:01:00:0a",
];

#[test]
fn mutated_csv_files_never_crash_the_import() {
    let example =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/example/registry.csv")).expect("example");
    let crafted = "\u{feff}类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址,备注\r\n\
                   设备,\"'=HYPERLINK(\"\"x\"\")\",10.0.0.1,,\"a,b\",\"楼\n上\",是,,\r\n\
                   门户网站,门户,,,,,,https://www.example/,注\r\n";
    assert!(check_import(&example));
    assert!(check_import(crafted.as_bytes()));
    let mut rng = Rng(42);
    let (mut accepted, mut runs) = (0u32, 0u32);
    for i in 0..20_000u32 {
        let mut bytes = if i % 2 == 0 {
            example.clone()
        } else {
            crafted.as_bytes().to_vec()
        };
        mutate(&mut rng, &mut bytes, &CSV_TOKENS);
        if workbook_like(&bytes) {
            continue;
        }
        runs += 1;
        if check_import(&bytes) {
            accepted += 1;
        }
    }
    println!("{runs} mutated CSV files, {accepted} accepted");
    assert!(accepted > 1_000, "some mutations still import: {accepted}");
}

fn workbook_like(bytes: &[u8]) -> bool {
    kaohe_collector::xlsx::is_xlsx(bytes)
}

//! The unit's registry (备案) as users keep it in spreadsheets, and the unit profile.
//!
//! Registry CSV: UTF-8 with or without BOM; the header names columns in Chinese or
//! English, in any order:
//!
//! | 中文 | English | content |
//! |---|---|---|
//! | 类型 | kind | 设备/device, 应用系统/app, 门户网站/portal (required) |
//! | 名称 | name | required |
//! | IP地址 | ip | a device needs an IP or a MAC |
//! | MAC地址 | mac | `aa:bb:cc:dd:ee:ff`, `aa-bb-…`, `aabb.ccdd.eeff` or bare hex |
//! | 使用者 | user | who uses the device |
//! | 使用地点 | location | where it is |
//! | 机房 | machine_room | 是/否, yes/no (empty = no) |
//! | 网址 | url | http(s) URL, required for app and portal |
//!
//! Other columns (e.g. 备注) are ignored. Parsing reports every bad row by line and
//! column and returns nothing unless the whole file is good.
//!
//! A file is refused before it costs memory when it passes one of the [`limits`], which
//! are far above any real registry; a cell holding U+0000 (which PostgreSQL cannot store in
//! text) is refused by row and column. [`safe_csv`] writes CSV that a spreadsheet opens
//! without evaluating formulas, and `from_csv` undoes exactly that escaping, so an export
//! imports back to the same registry.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use chrono::NaiveDate;
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// What a registry row describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// 设备: a networked computer or other device.
    Device,
    /// 应用系统: an application system.
    App,
    /// 门户网站: a portal site.
    Portal,
}

impl EntryKind {
    pub fn label_zh(self) -> &'static str {
        match self {
            EntryKind::Device => "设备",
            EntryKind::App => "应用系统",
            EntryKind::Portal => "门户网站",
        }
    }

    fn parse(s: &str) -> Option<EntryKind> {
        match s.trim().to_lowercase().as_str() {
            "设备" | "device" => Some(EntryKind::Device),
            "应用系统" | "应用" | "app" | "application" => Some(EntryKind::App),
            "门户网站" | "门户" | "网站" | "portal" => Some(EntryKind::Portal),
            _ => None,
        }
    }
}

/// One registered device, application system or portal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RegistryEntry {
    /// 1-based line in the source file.
    pub line: usize,
    pub kind: EntryKind,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<IpAddr>,
    /// Normalised to lower case `aa:bb:cc:dd:ee:ff`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mac: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub machine_room: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// A unit's registry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Registry {
    pub entries: Vec<RegistryEntry>,
}

impl Registry {
    pub fn devices(&self) -> impl Iterator<Item = &RegistryEntry> {
        self.entries.iter().filter(|e| e.kind == EntryKind::Device)
    }

    pub fn has_kind(&self, kind: EntryKind) -> bool {
        self.entries.iter().any(|e| e.kind == kind)
    }
}

/// Limits on a registry file. A unit's 备案 is tens to a few thousand rows of about eight
/// columns; these are far above that, and refuse a hostile or broken file before parsing it
/// can cost much memory or time.
pub mod limits {
    /// The file as stored (CSV or XLSX), and the text of an XLSX sheet once read.
    pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;
    /// Rows of the file, the header included (an XLSX sheet: its row numbers).
    pub const MAX_ROWS: usize = 20_000;
    /// Columns of a row.
    pub const MAX_COLUMNS: usize = 64;
    /// Characters in one cell.
    pub const MAX_CELL_CHARS: usize = 1_000;
}

/// CSV that a spreadsheet opens as data: the escaping every CSV export of Kaohe uses (the
/// dashboard's sheet, `registry export`, `registry unregistered --csv`).
///
/// A text cell that Excel or LibreOffice would take for a formula (it starts with `=`, `+`,
/// `-`, `@`, a tab or a carriage return) gets a leading apostrophe, so it is shown and never
/// evaluated; so does one that already starts with apostrophes before such a character,
/// which keeps the escape reversible: [`undo_formula_escape`] gives back exactly the text.
/// A field holding a comma, a quote or a line break is quoted (RFC 4180), so a line break
/// in a name stays inside its field and cannot start a row.
pub mod safe_csv {
    use std::borrow::Cow;

    const FORMULA_START: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

    fn looks_like_formula(s: &str) -> bool {
        s.trim_start_matches('\'').starts_with(FORMULA_START)
    }

    /// The text with a leading apostrophe when a spreadsheet would evaluate it.
    pub fn defuse_formula(s: &str) -> Cow<'_, str> {
        if looks_like_formula(s) {
            Cow::Owned(format!("'{s}"))
        } else {
            Cow::Borrowed(s)
        }
    }

    /// Undoes [`defuse_formula`]: `undo_formula_escape(&defuse_formula(s)) == s` for every `s`.
    pub fn undo_formula_escape(s: &str) -> &str {
        match s.strip_prefix('\'') {
            Some(rest) if looks_like_formula(rest) => rest,
            _ => s,
        }
    }

    /// One field as it is, quoted when it holds a comma, a quote or a line break. For
    /// numbers the program wrote; text from users or agents goes through [`push_text`].
    pub fn push_field(out: &mut String, field: &str) {
        if field.contains([',', '"', '\n', '\r']) {
            out.push('"');
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }

    /// One text field: formula-escaped, then quoted as needed.
    pub fn push_text(out: &mut String, text: &str) {
        push_field(out, &defuse_formula(text));
    }

    /// A line of text fields, ended by CRLF.
    pub fn push_line<'a>(out: &mut String, fields: impl IntoIterator<Item = &'a str>) {
        for (i, f) in fields.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_text(out, f);
        }
        out.push_str("\r\n");
    }

    /// The UTF-8 byte order mark, so that Excel opens the file as UTF-8.
    pub const UTF8_BOM: &str = "\u{feff}";
}

/// The registry CSV header, in Chinese, in the order [`Registry::to_csv`] writes.
pub const CSV_HEADER: [&str; 8] = [
    "类型",
    "名称",
    "IP地址",
    "MAC地址",
    "使用者",
    "使用地点",
    "机房",
    "网址",
];

/// One problem in a registry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowProblem {
    pub line: usize,
    /// The column as written in the header, when the problem is in one cell.
    pub column: Option<String>,
    pub message: String,
}

impl fmt::Display for RowProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.line, &self.column) {
            // Line 0: the whole file (a limit, a damaged workbook).
            (0, _) => write!(f, "{}", self.message),
            (line, Some(c)) => write!(f, "第 {line} 行 (line {line}), 列 “{c}”: {}", self.message),
            (line, None) => write!(f, "第 {line} 行 (line {line}): {}", self.message),
        }
    }
}

/// How many problems an error message lists; the rest are counted.
const PROBLEMS_SHOWN: usize = 100;

/// How many problems a file may show before the rest of it is not checked.
const PROBLEMS_KEPT: usize = 1_000;

/// A registry file that was not loaded. Lists every problem found; nothing was loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryError {
    pub file: String,
    pub problems: Vec<RowProblem>,
}

impl fmt::Display for RegistryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "备案文件 {} 有 {} 处错误, 未导入任何内容 (registry file has {} problem(s); nothing was loaded):",
            self.file,
            self.problems.len(),
            self.problems.len()
        )?;
        for p in self.problems.iter().take(PROBLEMS_SHOWN) {
            write!(f, "\n  {p}")?;
        }
        if self.problems.len() > PROBLEMS_SHOWN {
            let more = self.problems.len() - PROBLEMS_SHOWN;
            write!(f, "\n  …另有 {more} 处 (and {more} more)")?;
        }
        Ok(())
    }
}

impl std::error::Error for RegistryError {}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Col {
    Kind,
    Name,
    Ip,
    Mac,
    User,
    Location,
    MachineRoom,
    Url,
}

impl Col {
    fn parse(header: &str) -> Option<Col> {
        let h: String = header
            .trim()
            .to_lowercase()
            .chars()
            .filter(|c| !c.is_whitespace())
            .collect();
        Some(match h.as_str() {
            "类型" | "kind" | "type" => Col::Kind,
            "名称" | "name" => Col::Name,
            "ip地址" | "ip" => Col::Ip,
            "mac地址" | "mac" => Col::Mac,
            "使用者" | "user" => Col::User,
            "使用地点" | "location" => Col::Location,
            "机房" | "machine_room" | "machineroom" => Col::MachineRoom,
            "网址" | "url" => Col::Url,
            _ => return None,
        })
    }
}

/// Parses a MAC address in the usual spellings into lower-case colon form.
pub fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ':' | '-' | '.'))
        .collect::<String>()
        .to_lowercase();
    if hex.len() != 12 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    // Separators, if any, must sit at byte pairs or quads as in the usual forms.
    let seps = s.trim().chars().filter(|c| matches!(c, ':' | '-' | '.')).count();
    if !matches!(seps, 0 | 2 | 5) {
        return None;
    }
    let mut out = String::with_capacity(17);
    for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
        if i > 0 {
            out.push(':');
        }
        out.push(char::from(pair[0]));
        out.push(char::from(pair[1]));
    }
    Some(out)
}

fn parse_yes_no(s: &str) -> Option<bool> {
    match s.trim().to_lowercase().as_str() {
        "" | "否" | "no" | "n" | "false" | "0" => Some(false),
        "是" | "yes" | "y" | "true" | "1" => Some(true),
        _ => None,
    }
}

fn non_empty(s: Option<&str>) -> Option<String> {
    s.map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

/// The line a record starts on, from its byte offset. The csv reader's own line count is
/// one short after a CRLF line end (the `\n` is counted with the next record), and Excel
/// saves CSV with CRLF. Records come in order, so counting goes on from the last one.
struct LineCounter<'a> {
    bytes: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(bytes: &'a [u8]) -> LineCounter<'a> {
        LineCounter {
            bytes,
            offset: 0,
            line: 1,
        }
    }

    fn line_at(&mut self, byte: u64) -> usize {
        let mut start = usize::try_from(byte).unwrap_or(usize::MAX).min(self.bytes.len());
        // A record "starts" at the line end before it; its text starts after.
        while self.bytes.get(start).is_some_and(|b| matches!(b, b'\r' | b'\n')) {
            start += 1;
        }
        if start >= self.offset {
            self.line += self.bytes[self.offset..start].iter().filter(|&&b| b == b'\n').count();
            self.offset = start;
        }
        self.line
    }
}

/// What is wrong with a row's size or characters: more columns than [`limits::MAX_COLUMNS`],
/// a cell longer than [`limits::MAX_CELL_CHARS`], or a cell holding U+0000, the one
/// character PostgreSQL refuses in text. Each problem names the row and the column.
fn cell_limits(record: &[&str], line: usize, headers: &csv::StringRecord) -> Vec<RowProblem> {
    use limits::{MAX_CELL_CHARS, MAX_COLUMNS};
    if record.len() > MAX_COLUMNS {
        return vec![RowProblem {
            line,
            column: None,
            message: format!(
                "这一行有 {} 列, 最多 {MAX_COLUMNS} 列 (the row has {} columns; at most {MAX_COLUMNS})",
                record.len(),
                record.len()
            ),
        }];
    }
    let column = |i: usize| match headers.get(i).map(str::trim) {
        Some(h) if !h.is_empty() && !h.contains('\0') && h.chars().count() <= 40 => h.to_string(),
        _ => format!("#{}", i + 1),
    };
    let mut out = Vec::new();
    for (i, f) in record.iter().enumerate() {
        if f.contains('\0') {
            out.push(RowProblem {
                line,
                column: Some(column(i)),
                message: "含有空字符 (U+0000), 数据库无法保存 (contains a NUL character, U+0000, which the database cannot store)"
                    .into(),
            });
        } else {
            let n = f.chars().count();
            if n > MAX_CELL_CHARS {
                out.push(RowProblem {
                    line,
                    column: Some(column(i)),
                    message: format!(
                        "单元格有 {n} 个字符, 最多 {MAX_CELL_CHARS} 个 (the cell has {n} characters; at most {MAX_CELL_CHARS})"
                    ),
                });
            }
        }
    }
    out
}

impl Registry {
    /// The registry as CSV with the Chinese header ([`CSV_HEADER`]), the format
    /// [`Registry::from_csv`] reads: UTF-8 with a BOM, CRLF line ends, text escaped by
    /// [`safe_csv`] exactly as the dashboard's exports are. It parses back to the same
    /// entries.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(safe_csv::UTF8_BOM);
        safe_csv::push_line(&mut out, CSV_HEADER);
        for e in &self.entries {
            let ip = e.ip.map(|i| i.to_string()).unwrap_or_default();
            safe_csv::push_line(
                &mut out,
                [
                    e.kind.label_zh(),
                    e.name.as_str(),
                    ip.as_str(),
                    e.mac.as_deref().unwrap_or(""),
                    e.user.as_deref().unwrap_or(""),
                    e.location.as_deref().unwrap_or(""),
                    if e.machine_room { "是" } else { "否" },
                    e.url.as_deref().unwrap_or(""),
                ],
            );
        }
        out
    }
}

impl Registry {
    /// Parses registry CSV bytes. `file` names the source in error messages. A field that
    /// [`safe_csv`] escaped (a leading apostrophe before a formula) is read back unescaped.
    pub fn from_csv(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
        Registry::parse_csv(bytes, file, true)
    }

    /// Parses the rows of a spreadsheet already written as CSV, one sheet row per line (the
    /// XLSX import): every check of [`Registry::from_csv`], but a leading apostrophe is
    /// part of the cell's text, since Excel keeps its own "text" mark out of the value.
    pub fn from_sheet_csv(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
        Registry::parse_csv(bytes, file, false)
    }

    fn parse_csv(bytes: &[u8], file: &str, undo_escape: bool) -> Result<Registry, RegistryError> {
        use limits::{MAX_FILE_BYTES, MAX_ROWS};
        let fail = |problems: Vec<RowProblem>| RegistryError {
            file: file.to_string(),
            problems,
        };
        if bytes.len() as u64 > MAX_FILE_BYTES {
            return Err(fail(vec![RowProblem {
                line: 0,
                column: None,
                message: format!(
                    "文件有 {} 字节, 最多 {MAX_FILE_BYTES} 字节 (the file has {} bytes; at most {MAX_FILE_BYTES})",
                    bytes.len(),
                    bytes.len()
                ),
            }]));
        }
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        if let Err(e) = std::str::from_utf8(bytes) {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            return Err(fail(vec![RowProblem {
                line,
                column: None,
                message: "不是 UTF-8 编码; 请在 Excel 中另存为 “CSV UTF-8” (not UTF-8; save as CSV UTF-8)".into(),
            }]));
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(true)
            .trim(csv::Trim::All)
            .from_reader(bytes);
        let headers = match reader.headers() {
            Ok(h) => h.clone(),
            Err(e) => {
                return Err(fail(vec![RowProblem {
                    line: 1,
                    column: None,
                    message: format!("无法读取表头 (cannot read header): {e}"),
                }]));
            }
        };
        let mut problems = Vec::new();
        // The header is the file's first row: the same limits as every other row.
        let header_cells: Vec<&str> = headers.iter().collect();
        if let Some(p) = cell_limits(&header_cells, 1, &headers).into_iter().next() {
            return Err(fail(vec![p]));
        }
        let mut columns: HashMap<Col, (usize, String)> = HashMap::new();
        for (i, h) in headers.iter().enumerate() {
            if let Some(col) = Col::parse(h) {
                if let Some((_, first)) = columns.get(&col) {
                    problems.push(RowProblem {
                        line: 1,
                        column: Some(h.to_string()),
                        message: format!("与列 “{first}” 重复 (duplicate column)"),
                    });
                } else {
                    columns.insert(col, (i, h.to_string()));
                }
            }
        }
        for (col, name) in [(Col::Kind, "类型/kind"), (Col::Name, "名称/name")] {
            if !columns.contains_key(&col) {
                problems.push(RowProblem {
                    line: 1,
                    column: None,
                    message: format!("缺少必需的列 “{name}” (missing required column)"),
                });
            }
        }
        if !problems.is_empty() {
            return Err(fail(problems));
        }

        let mut lines = LineCounter::new(bytes);
        let mut entries = Vec::new();
        let mut seen_mac: HashMap<String, usize> = HashMap::new();
        let mut seen_ip: HashMap<IpAddr, usize> = HashMap::new();
        for (index, record) in reader.records().enumerate() {
            // A file bad on every row stops being read, so its errors stay small.
            if problems.len() >= PROBLEMS_KEPT {
                problems.push(RowProblem {
                    line: 0,
                    column: None,
                    message: format!(
                        "问题过多, 其余行未检查 (more than {PROBLEMS_KEPT} problems; the rest was not checked)"
                    ),
                });
                break;
            }
            // The header is row 1, so this record is at least row index + 2.
            if index + 2 > MAX_ROWS {
                let line = record
                    .as_ref()
                    .ok()
                    .and_then(|r| r.position())
                    .map_or(0, |p| lines.line_at(p.byte()));
                problems.push(RowProblem {
                    line,
                    column: None,
                    message: format!(
                        "文件超过 {MAX_ROWS} 行, 最多 {MAX_ROWS} 行 (the file has more than {MAX_ROWS} rows; at most {MAX_ROWS})"
                    ),
                });
                break;
            }
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| lines.line_at(p.byte()));
                    problems.push(RowProblem {
                        line,
                        column: None,
                        message: format!("CSV 格式错误 (malformed CSV): {e}"),
                    });
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| lines.line_at(p.byte()));
            // Limits apply to the text as it will be stored: the escape undone first, so
            // an export of a cell at the limit imports again.
            let fields: Vec<&str> = record
                .iter()
                .map(|f| {
                    if undo_escape {
                        safe_csv::undo_formula_escape(f)
                    } else {
                        f
                    }
                })
                .collect();
            let over = cell_limits(&fields, line, &headers);
            if !over.is_empty() {
                problems.extend(over);
                continue;
            }
            if fields.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let cell = |col: Col| columns.get(&col).and_then(|(i, _)| fields.get(*i).copied());
            let header = |col: Col| columns.get(&col).map(|(_, h)| h.clone());
            let mut bad = |col: Col, message: String| {
                problems.push(RowProblem {
                    line,
                    column: header(col),
                    message,
                })
            };

            let kind_text = cell(Col::Kind).unwrap_or("");
            let Some(kind) = EntryKind::parse(kind_text) else {
                bad(
                    Col::Kind,
                    format!("“{kind_text}” 不是有效类型, 应为 设备、应用系统 或 门户网站 (device, app or portal)"),
                );
                continue;
            };
            let name = non_empty(cell(Col::Name));
            if name.is_none() {
                bad(Col::Name, "名称不能为空 (name is required)".into());
            }
            let ip = match non_empty(cell(Col::Ip)) {
                None => None,
                Some(t) => match t.parse::<IpAddr>() {
                    Ok(ip) => Some(ip),
                    Err(_) => {
                        bad(Col::Ip, format!("“{t}” 不是有效的 IP 地址 (not an IP address)"));
                        None
                    }
                },
            };
            let mac = match non_empty(cell(Col::Mac)) {
                None => None,
                Some(t) => match normalize_mac(&t) {
                    Some(m) => Some(m),
                    None => {
                        bad(Col::Mac, format!("“{t}” 不是有效的 MAC 地址 (not a MAC address)"));
                        None
                    }
                },
            };
            let machine_room = match parse_yes_no(cell(Col::MachineRoom).unwrap_or("")) {
                Some(b) => b,
                None => {
                    bad(
                        Col::MachineRoom,
                        format!("“{}” 应为 是 或 否 (yes or no)", cell(Col::MachineRoom).unwrap_or("")),
                    );
                    false
                }
            };
            let url = non_empty(cell(Col::Url));
            if let Some(u) = &url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                bad(
                    Col::Url,
                    format!("“{u}” 应以 http:// 或 https:// 开头 (must be an http(s) URL)"),
                );
            }
            match kind {
                EntryKind::Device => {
                    if ip.is_none()
                        && mac.is_none()
                        && cell(Col::Ip).is_none_or(|t| t.trim().is_empty())
                        && cell(Col::Mac).is_none_or(|t| t.trim().is_empty())
                    {
                        problems.push(RowProblem {
                            line,
                            column: None,
                            message: "设备必须填写 IP地址 或 MAC地址 (a device needs an IP or a MAC)".into(),
                        });
                    }
                    if let Some(m) = &mac
                        && let Some(first) = seen_mac.insert(m.clone(), line)
                    {
                        problems.push(RowProblem {
                            line,
                            column: header(Col::Mac),
                            message: format!("MAC 地址 {m} 与第 {first} 行重复 (duplicate MAC, first on line {first})"),
                        });
                    }
                    if let Some(a) = ip
                        && let Some(first) = seen_ip.insert(a, line)
                    {
                        problems.push(RowProblem {
                            line,
                            column: header(Col::Ip),
                            message: format!("IP 地址 {a} 与第 {first} 行重复 (duplicate IP, first on line {first})"),
                        });
                    }
                }
                EntryKind::App | EntryKind::Portal => {
                    if url.is_none() {
                        problems.push(RowProblem {
                            line,
                            column: header(Col::Url).or(Some("网址/url".into())),
                            message: format!("{}必须填写网址 (an app or portal needs a URL)", kind.label_zh()),
                        });
                    }
                }
            }
            entries.push(RegistryEntry {
                line,
                kind,
                name: name.unwrap_or_default(),
                ip,
                mac,
                user: non_empty(cell(Col::User)),
                location: non_empty(cell(Col::Location)),
                machine_room,
                url,
            });
        }
        if problems.is_empty() {
            Ok(Registry { entries })
        } else {
            Err(fail(problems))
        }
    }
}

/// The unit profile: a small TOML file kept beside the registry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnitProfile {
    /// Path in the hierarchy, e.g. "ningxia/yinchuan/xingqing".
    pub id: String,
    /// e.g. "兴庆区司法局".
    pub name: String,
    /// The parent unit's id, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Designated maintainer (专人维护) of the network and machine room.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maintainer: Option<String>,
    /// Designated responder (专人) for private-network faults.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responder: Option<String>,
    /// The day the unit's agent was enrolled; scoring counts from this day. Written as
    /// a TOML date (`enrolled = 2026-03-01`) or a string (`"2026-03-01"`).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "de_date")]
    pub enrolled: Option<NaiveDate>,
    /// The moment the unit's first agent enrolled, when known (the collector knows it):
    /// scoring counts from then, so the hours before the agent existed are not "no data".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled_at: Option<chrono::DateTime<chrono::Utc>>,
    /// IANA time zone for calendar days; defaults to the rubric's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

fn de_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Toml(toml::value::Datetime),
    }
    let text = match Raw::deserialize(d)? {
        Raw::Text(t) => t,
        Raw::Toml(dt) => match (dt.date, dt.time) {
            (Some(date), None) => date.to_string(),
            _ => {
                return Err(serde::de::Error::custom(
                    "应为日期, 如 2026-03-01 (expected a date without time)",
                ));
            }
        },
    };
    NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .map(Some)
        .map_err(|_| serde::de::Error::custom(format!("“{text}” 不是日期, 应为 2026-03-01 (expected YYYY-MM-DD)")))
}

/// A unit profile that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("单位配置文件 {file}{}: {message}", line.map(|l| format!(" 第 {l} 行 (line {l})")).unwrap_or_default())]
pub struct ProfileError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl UnitProfile {
    pub fn from_toml(text: &str, file: &str) -> Result<UnitProfile, ProfileError> {
        let err = |line: Option<usize>, message: String| ProfileError {
            file: file.to_string(),
            line,
            message,
        };
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let p: UnitProfile = toml::from_str(text)
            .map_err(|e| err(e.span().map(|s| line_of(s.start)), e.message().trim().to_string()))?;
        let key_line = |key: &str| {
            text.lines()
                .position(|l| l.trim_start().starts_with(key))
                .map(|i| i + 1)
        };
        if p.id.trim().is_empty() {
            return Err(err(key_line("id"), "`id` 不能为空 (must not be empty)".into()));
        }
        if p.name.trim().is_empty() {
            return Err(err(key_line("name"), "`name` 不能为空 (must not be empty)".into()));
        }
        if let Some(tz) = &p.timezone
            && tz.parse::<Tz>().is_err()
        {
            return Err(err(
                key_line("timezone"),
                format!("未知时区 `{tz}` (unknown IANA time zone)"),
            ));
        }
        Ok(p)
    }

    /// A profile for a unit known only by id (no maintainer, responder or enrolment date).
    pub fn bare(id: &str) -> UnitProfile {
        UnitProfile {
            id: id.to_string(),
            name: id.to_string(),
            parent: None,
            maintainer: None,
            responder: None,
            enrolled: None,
            enrolled_at: None,
            timezone: None,
        }
    }

    pub fn has_maintainer(&self) -> bool {
        self.maintainer.as_deref().is_some_and(|s| !s.trim().is_empty())
    }

    pub fn has_responder(&self) -> bool {
        self.responder.as_deref().is_some_and(|s| !s.trim().is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chinese_header_with_bom_parses() {
        let csv = "\u{feff}类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址\n\
                   设备,办公电脑1,10.1.1.21,02-6B-68-01-01-15,张三,办公室,否,\n\
                   应用系统,OA,,,,,,https://oa.example/\n";
        let r = Registry::from_csv(csv.as_bytes(), "t.csv").expect("valid");
        assert_eq!(r.entries.len(), 2);
        assert_eq!(r.entries[0].mac.as_deref(), Some("02:6b:68:01:01:15"));
        assert_eq!(r.entries[0].line, 2);
        assert_eq!(r.entries[1].kind, EntryKind::App);
    }

    #[test]
    fn english_header_in_another_order_parses() {
        let csv = "name,kind,ip,machine_room,user,location\nsrv,device,10.0.0.5,yes,Li,Room 1\n";
        let r = Registry::from_csv(csv.as_bytes(), "t.csv").expect("valid");
        assert!(r.entries[0].machine_room);
    }

    #[test]
    fn every_bad_row_is_reported_by_line_and_column_and_nothing_loads() {
        let csv = "类型,名称,IP地址,MAC地址,使用者,使用地点,机房\n\
                   设备,A,10.1.1.300,,张三,办公室,否\n\
                   设备,B,10.1.1.3,zz:zz,张三,办公室,否\n\
                   打印机,C,10.1.1.4,,,,\n\
                   设备,D,10.1.1.3,,李四,办公室,也许\n";
        let e = Registry::from_csv(csv.as_bytes(), "t.csv").expect_err("rejected");
        let lines: Vec<(usize, Option<&str>)> = e.problems.iter().map(|p| (p.line, p.column.as_deref())).collect();
        assert_eq!(
            lines,
            vec![
                (2, Some("IP地址")),
                (3, Some("MAC地址")),
                (4, Some("类型")),
                (5, Some("机房")),
                (5, Some("IP地址")),
            ],
            "{e}"
        );
        assert!(e.to_string().contains("第 2 行"), "{e}");
    }

    #[test]
    fn missing_required_column_is_reported() {
        let e = Registry::from_csv("名称,IP地址\nA,10.0.0.1\n".as_bytes(), "t.csv").expect_err("rejected");
        assert!(e.to_string().contains("类型/kind"), "{e}");
    }

    #[test]
    fn non_utf8_is_reported_with_advice() {
        // "设备" in GBK.
        let e = Registry::from_csv(b"kind,name\n\xc9\xe8\xb1\xb8,A\n", "t.csv").expect_err("rejected");
        assert_eq!(e.problems[0].line, 2);
        assert!(e.to_string().contains("UTF-8"));
    }

    #[test]
    fn a_nul_in_any_cell_is_refused_by_row_and_column() {
        let csv = "类型,名称,IP地址,备注\n设备,A,10.0.0.1,\n设备,B\u{0},10.0.0.2,\n设备,C,10.0.0.3,x\u{0}\n";
        let e = Registry::from_csv(csv.as_bytes(), "t.csv").expect_err("rejected");
        let at: Vec<(usize, Option<&str>)> = e.problems.iter().map(|p| (p.line, p.column.as_deref())).collect();
        assert_eq!(at, vec![(3, Some("名称")), (4, Some("备注"))], "{e}");
        assert!(e.to_string().contains("U+0000"), "{e}");
        let e = Registry::from_csv("类型,名\u{0}称\n设备,A\n".as_bytes(), "t.csv").expect_err("rejected");
        assert_eq!(
            (e.problems[0].line, e.problems[0].column.as_deref()),
            (1, Some("#2")),
            "{e}"
        );
    }

    #[test]
    fn files_past_the_limits_are_refused_naming_the_limit() {
        use limits::*;
        let big = vec![b'a'; MAX_FILE_BYTES as usize + 1];
        let e = Registry::from_csv(&big, "t.csv").expect_err("too big");
        assert!(e.to_string().contains(&MAX_FILE_BYTES.to_string()), "{e}");
        assert!(
            !e.to_string().contains("第 0 行"),
            "a whole-file problem has no line: {e}"
        );

        let mut rows = String::from("类型,名称,IP地址\n");
        for i in 0..MAX_ROWS {
            rows.push_str(&format!("设备,d{i},10.{}.{}.{}\n", i >> 16, (i >> 8) & 255, i & 255));
        }
        let e = Registry::from_csv(rows.as_bytes(), "t.csv").expect_err("too many rows");
        assert_eq!(e.problems.len(), 1, "{e}");
        assert_eq!(e.problems[0].line, MAX_ROWS + 1, "{e}");
        assert!(e.to_string().contains("20000"), "{e}");
        // One row fewer is fine.
        let cut = rows.trim_end().rsplit_once('\n').map(|(a, _)| a).expect("rows");
        assert_eq!(
            Registry::from_csv(cut.as_bytes(), "t.csv")
                .expect("at the limit")
                .entries
                .len(),
            MAX_ROWS - 1
        );

        let wide = format!("类型,名称\n设备,A{}\n", ",x".repeat(MAX_COLUMNS));
        let e = Registry::from_csv(wide.as_bytes(), "t.csv").expect_err("too wide");
        assert_eq!(e.problems[0].line, 2);
        assert!(e.to_string().contains(&format!("最多 {MAX_COLUMNS} 列")), "{e}");

        let long = format!("类型,名称,IP地址\n设备,{},10.0.0.1\n", "名".repeat(MAX_CELL_CHARS + 1));
        let at_limit = format!("类型,名称,IP地址\n设备,={},10.0.0.1\n", "名".repeat(MAX_CELL_CHARS - 1));
        let r = Registry::from_csv(at_limit.as_bytes(), "t.csv").expect("at the limit");
        assert_eq!(
            Registry::from_csv(r.to_csv().as_bytes(), "t.csv").expect("its export, escaped, at the limit too"),
            r
        );
        let e = Registry::from_csv(long.as_bytes(), "t.csv").expect_err("too long");
        assert_eq!((e.problems[0].line, e.problems[0].column.as_deref()), (2, Some("名称")));
        assert!(e.to_string().contains("1001 个字符, 最多 1000 个"), "{e}");
    }

    #[test]
    fn an_error_lists_a_hundred_problems_and_counts_the_rest() {
        let mut csv = String::from("类型,名称\n");
        for _ in 0..150 {
            csv.push_str("打印机,A\n");
        }
        let e = Registry::from_csv(csv.as_bytes(), "t.csv").expect_err("rejected");
        assert_eq!(e.problems.len(), 150);
        let text = e.to_string();
        assert_eq!(text.lines().count(), 1 + 100 + 1, "{text}");
        assert!(text.contains("另有 50 处 (and 50 more)"), "{text}");
    }

    #[test]
    fn a_file_bad_everywhere_stops_at_a_thousand_problems() {
        let row = format!("设备{}\n", ",\u{0}".repeat(limits::MAX_COLUMNS - 1));
        let csv = format!("类型,名称\n{}", row.repeat(100));
        let e = Registry::from_csv(csv.as_bytes(), "t.csv").expect_err("rejected");
        assert_eq!(e.problems.len(), 16 * 63 + 1, "{}", e.problems.len());
        assert!(
            e.problems
                .last()
                .is_some_and(|p| p.message.contains("more than 1000 problems"))
        );
    }

    #[test]
    fn formula_escape_is_undone_exactly() {
        for s in [
            "=HYPERLINK(\"http://evil.example/\",\"click\")",
            "+1",
            "-1",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "'=x",
            "''=x",
            "'x",
            "x'",
            "'",
            "",
            "plain",
            "名称",
        ] {
            let escaped = safe_csv::defuse_formula(s);
            assert_eq!(safe_csv::undo_formula_escape(&escaped), s, "{s:?} -> {escaped:?}");
            let after_quotes = escaped.trim_start_matches('\'');
            assert!(
                escaped.starts_with('\'') || !after_quotes.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "{s:?} is not left as a formula"
            );
        }
    }

    #[test]
    fn to_csv_escapes_formulas_and_line_breaks_and_parses_back_the_same() {
        let csv = "类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址\n\
                   设备,\"=HYPERLINK(\"\"http://evil.example/\"\" \"\"click\"\")\",10.0.0.1,,\"@me\",\"楼上\n设备,伪造,10.9.9.9\",是,\n\
                   设备,'=already quoted,10.0.0.2,,-,,否,\n\
                   门户网站,门户,,,,,,https://www.example/\n";
        let a = Registry::from_csv(csv.as_bytes(), "a.csv").expect("valid");
        assert_eq!(a.entries[0].name, "=HYPERLINK(\"http://evil.example/\" \"click\")");
        assert_eq!(a.entries[0].location.as_deref(), Some("楼上\n设备,伪造,10.9.9.9"));
        assert_eq!(
            a.entries[1].name, "=already quoted",
            "an escaped cell is read unescaped"
        );
        let out = a.to_csv();
        assert!(out.starts_with('\u{feff}'));
        assert!(out.contains("'=HYPERLINK("), "{out}");
        assert!(out.contains(",'@me,"), "{out}");
        let records = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(out.as_bytes())
            .records()
            .count();
        assert_eq!(
            records,
            1 + 3,
            "the line break stays in its field, no row is forged: {out}"
        );
        let mut b = Registry::from_csv(out.as_bytes(), "b.csv").expect("export parses");
        // The quoted line break moved the rows after it down by one in the source.
        for (x, y) in a.entries.iter().zip(&mut b.entries) {
            y.line = x.line;
        }
        assert_eq!(a, b);
    }

    #[test]
    fn problems_in_a_crlf_file_are_named_by_their_true_line() {
        let csv = "类型,名称,IP地址\r\n设备,A,10.0.0.1\r\n\r\n设备,B,10.0.0.300\r\n设备,\"C\r\nD\",10.0.0.3\r\n设备,E,bad\r\n";
        let e = Registry::from_csv(csv.as_bytes(), "t.csv").expect_err("rejected");
        let lines: Vec<usize> = e.problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![4, 7], "{e}");
        let ok = Registry::from_csv(
            "类型,名称,IP地址\r\n设备,A,10.0.0.1\r\n设备,B,10.0.0.2".as_bytes(),
            "t.csv",
        )
        .expect("valid");
        assert_eq!(ok.entries.iter().map(|e| e.line).collect::<Vec<_>>(), vec![2, 3]);
    }

    #[test]
    fn mac_spellings() {
        assert_eq!(normalize_mac("aabb.ccdd.eeff").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(normalize_mac("AABBCCDDEEFF").as_deref(), Some("aa:bb:cc:dd:ee:ff"));
        assert_eq!(normalize_mac("aa:bb:cc:dd:ee"), None);
        assert_eq!(normalize_mac("aa:bb:cc:dd:ee:fg"), None);
    }

    #[test]
    fn profile_errors_name_the_line() {
        let e = UnitProfile::from_toml("id = \"a\"\nname = \"b\"\nenrolled = \"yesterday\"\n", "u.toml")
            .expect_err("rejected");
        assert_eq!(e.line, Some(3), "{e}");
        let e =
            UnitProfile::from_toml("id = \"a\"\nname = \"b\"\nmaintainor = \"x\"\n", "u.toml").expect_err("rejected");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.to_string().contains("maintainor"), "{e}");
    }
}

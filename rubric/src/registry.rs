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
        match &self.column {
            Some(c) => write!(
                f,
                "第 {} 行 (line {}), 列 “{}”: {}",
                self.line, self.line, c, self.message
            ),
            None => write!(f, "第 {} 行 (line {}): {}", self.line, self.line, self.message),
        }
    }
}

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
        for p in &self.problems {
            write!(f, "\n  {p}")?;
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

impl Registry {
    /// Parses registry CSV bytes. `file` names the source in error messages.
    pub fn from_csv(bytes: &[u8], file: &str) -> Result<Registry, RegistryError> {
        let fail = |problems: Vec<RowProblem>| RegistryError {
            file: file.to_string(),
            problems,
        };
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
        let mut columns: HashMap<Col, (usize, String)> = HashMap::new();
        let mut problems = Vec::new();
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

        let mut entries = Vec::new();
        let mut seen_mac: HashMap<String, usize> = HashMap::new();
        let mut seen_ip: HashMap<IpAddr, usize> = HashMap::new();
        for record in reader.records() {
            let record = match record {
                Ok(r) => r,
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line() as usize);
                    problems.push(RowProblem {
                        line,
                        column: None,
                        message: format!("CSV 格式错误 (malformed CSV): {e}"),
                    });
                    continue;
                }
            };
            let line = record.position().map_or(0, |p| p.line() as usize);
            if record.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            let cell = |col: Col| columns.get(&col).and_then(|(i, _)| record.get(*i));
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

//! The score sheet: what the engine returns. Every deducted point carries its reason in
//! Chinese and English and the evidence that caused it.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

/// An item-by-item score sheet for one unit and period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sheet {
    /// Rubric id, e.g. "ningxia-2026".
    pub rubric: String,
    pub unit: UnitRef,
    pub period: PeriodInfo,
    /// Sum of the automatic parts of sections 二 and 三 as scored.
    pub auto_points: f64,
    /// The most the automatic parts can give (26 with the shipped rubric).
    pub auto_max: f64,
    /// Points waiting for a reviewer (all reviewer items and reviewer parts).
    pub pending_points: f64,
    /// Agent reports that fell in the scoring window.
    pub reports: usize,
    pub items: Vec<ItemScore>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnitRef {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeriodInfo {
    /// As the user named it: "2026", "2026-Q4", "2026-11", "2026-11-01..2026-11-07".
    pub label: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub timezone: String,
    /// The part of the period that is scored: from enrolment (if later than the
    /// start) to the period end or the evaluation time, whichever is earlier.
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// Calendar days in the window.
    pub days: usize,
}

/// How an item's score came about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Scored automatically from evidence.
    Auto,
    /// Waiting (wholly or in part) for a reviewer.
    Pending,
    /// Entered or overridden by a reviewer.
    Manual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemScore {
    pub id: String,
    /// Section id, "一" … "六".
    pub section: String,
    /// Standard points.
    pub points: u32,
    pub text_zh: String,
    pub text_en: String,
    /// Points given so far; `null` while the whole item waits for a reviewer.
    pub score: Option<f64>,
    pub status: Status,
    /// Points a reviewer must still enter.
    pub pending_points: f64,
    pub deductions: Vec<Deduction>,
    /// Findings that cost nothing by default but deserve a look (e.g. stale entries).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Note>,
}

/// Points taken off an item, why, and what showed it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deduction {
    pub points: f64,
    pub reason_zh: String,
    pub reason_en: String,
    pub evidence: Vec<Evidence>,
}

/// A warning: a reason and its evidence, without points.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Note {
    pub reason_zh: String,
    pub reason_en: String,
    pub evidence: Vec<Evidence>,
}

/// One piece of evidence behind a deduction or warning.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Evidence {
    /// A device seen on the LAN or a registry entry.
    Device {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vendor: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// Line of the registry entry, when there is one.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registry_line: Option<usize>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        first_seen: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        last_seen: Option<DateTime<Utc>>,
        /// Registry fields that are empty ("user", "location").
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        missing: Vec<String>,
    },
    /// A target that was down.
    Outage {
        target: String,
        start: DateTime<Utc>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<DateTime<Utc>>,
        duration_secs: i64,
    },
    /// Time without a reachable upstream (or without data) inside the window.
    Downtime {
        start: DateTime<Utc>,
        end: DateTime<Utc>,
        duration_secs: i64,
    },
    /// Measured availability of the private-network upstream over the window.
    Uptime { ratio: f64, up_secs: i64, window_secs: i64 },
    /// Share of checks a target answered.
    Availability {
        target: String,
        ok: u64,
        total: u64,
        ratio: f64,
    },
    /// Internet canaries reached from the private LAN in one check.
    Breach {
        at: DateTime<Utc>,
        canary: String,
        protocol: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        via_interface: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next_hop: Option<String>,
    },
    /// A host found bridging the private network and another network.
    BridgingHost {
        host: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ip: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
        /// "self_check", "spoofed_source", "forwarding".
        method: String,
        detail: String,
        at: DateTime<Utc>,
    },
    /// Calendar days (inclusive range) without a complete daily check.
    Days {
        first: NaiveDate,
        last: NaiveDate,
        count: usize,
        /// Categories without results on those days.
        missing: Vec<String>,
    },
    /// An application system or portal the agent checked.
    Service { kind: String, name: String, url: String },
    /// Something that should be there and is not: a check that never ran, a profile field.
    Missing { what: String },
}

impl Evidence {
    /// One line in Chinese for the human sheet, with times in `tz`.
    pub fn summary_zh(&self, tz: Tz) -> String {
        let t = |d: &DateTime<Utc>| d.with_timezone(&tz).format("%Y-%m-%d %H:%M").to_string();
        // Outages and downtime to the second: a 20-second outage shown to the minute reads
        // "23:15 至 23:15".
        let ts = |d: &DateTime<Utc>| d.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string();
        match self {
            Evidence::Device {
                ip,
                mac,
                vendor,
                name,
                registry_line,
                last_seen,
                missing,
                ..
            } => {
                let mut s = format!(
                    "设备 {} {}",
                    ip.as_deref().unwrap_or("-"),
                    mac.as_deref().unwrap_or("-")
                );
                if let Some(v) = vendor {
                    s += &format!(" ({v})");
                }
                if let Some(n) = name {
                    s += &format!(" “{n}”");
                }
                if let Some(l) = registry_line {
                    s += &format!(" 备案第 {l} 行");
                }
                if !missing.is_empty() {
                    let zh: Vec<&str> = missing
                        .iter()
                        .map(|m| match m.as_str() {
                            "user" => "使用者",
                            "location" => "使用地点",
                            other => other,
                        })
                        .collect();
                    s += &format!(" 缺少{}", zh.join("、"));
                }
                if let Some(l) = last_seen {
                    s += &format!(" 最后发现于 {}", t(l));
                }
                s
            }
            Evidence::Outage {
                target,
                start,
                end,
                duration_secs,
            } => match end {
                Some(e) => format!(
                    "{target} 中断 {} 至 {} (共 {})",
                    ts(start),
                    ts(e),
                    human_duration(*duration_secs)
                ),
                None => format!(
                    "{target} 自 {} 起中断, 至期末未恢复 ({})",
                    ts(start),
                    human_duration(*duration_secs)
                ),
            },
            Evidence::Downtime {
                start,
                end,
                duration_secs,
            } => format!(
                "{} 至 {} 专网不可达或无数据 ({})",
                ts(start),
                ts(end),
                human_duration(*duration_secs)
            ),
            Evidence::Uptime {
                ratio,
                up_secs,
                window_secs,
            } => format!(
                "可用率 {:.3}% (在线 {} / 共 {})",
                ratio * 100.0,
                human_duration(*up_secs),
                human_duration(*window_secs)
            ),
            Evidence::Availability {
                target,
                ok,
                total,
                ratio,
            } => {
                format!("{target} 应答 {ok}/{total} 次检测 ({:.2}%)", ratio * 100.0)
            }
            Evidence::Breach {
                at,
                canary,
                protocol,
                via_interface,
                next_hop,
            } => {
                let mut s = format!("{} 可访问互联网探针 {canary} ({protocol})", t(at));
                if let Some(i) = via_interface {
                    s += &format!(" 经接口 {i}");
                }
                if let Some(h) = next_hop {
                    s += &format!(" 下一跳 {h}");
                }
                s
            }
            Evidence::BridgingHost {
                host,
                ip,
                mac,
                method,
                detail,
                at,
            } => {
                let how = match method.as_str() {
                    "self_check" => "本机自检",
                    "spoofed_source" => "伪造源地址探测",
                    "forwarding" => "转发探测",
                    other => other,
                };
                format!(
                    "发现串联主机 {host} {} {} ({how}) 于 {}: {detail}",
                    ip.as_deref().unwrap_or(""),
                    mac.as_deref().unwrap_or(""),
                    t(at)
                )
            }
            Evidence::Days {
                first,
                last,
                count,
                missing,
            } => {
                let span = if first == last {
                    first.to_string()
                } else {
                    format!("{first} 至 {last}")
                };
                format!("{span} ({count} 天) 缺少: {}", missing.join("、"))
            }
            Evidence::Service { kind, name, url } => format!("{kind} “{name}” {url}"),
            Evidence::Missing { what } => format!("缺少: {}", missing_zh(what)),
        }
    }
}

/// A `Missing` evidence key in words for the bureau's staff.
fn missing_zh(what: &str) -> String {
    let check = |c: &str| match c {
        "reachability" => "专网连通性探测记录",
        "isolation" => "互联网隔离检测记录",
        "self_check" => "代理主机双网卡自检记录",
        "inventory" => "局域网设备清点记录",
        "daily" => "日常检测记录",
        "services" => "应用系统与门户网站检测记录",
        "machine_room_devices" => "机房设备检测记录",
        _ => "",
    };
    match what {
        "unit.maintainer" => "单位资料中的机房专人维护 (maintainer)".into(),
        "unit.responder" => "单位资料中的故障处置负责人 (responder)".into(),
        "enrolment" => "本期内的注册".into(),
        "registry:machine_room_device" => "备案中带 IP 的机房设备".into(),
        "inventory:devices" => "清点发现的设备".into(),
        "probes:upstream" => "专网上游目标的探测数据".into(),
        other => match other.strip_prefix("check:").map(check) {
            Some(zh) if !zh.is_empty() => zh.to_string(),
            _ => other.to_string(),
        },
    }
}

/// "3 天 4 小时", "2 小时 5 分", "40 秒".
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60);
    if d > 0 {
        format!("{d} 天 {h} 小时")
    } else if h > 0 {
        format!("{h} 小时 {m} 分")
    } else if m > 0 {
        format!("{m} 分 {} 秒", s % 60)
    } else {
        format!("{s} 秒")
    }
}

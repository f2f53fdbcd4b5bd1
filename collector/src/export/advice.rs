//! 整改建议: what to fix, derived from the evidence of each deduction.

use std::fmt::Write;

use chrono_tz::Tz;
use kaohe_rubric::scoring::Evidence;

use crate::render::pts;
use crate::scores::{FinalStatus, FullItem};

/// Devices, hosts or services named in one line of advice before "等 N 项".
const MAX_NAMED_IN_ADVICE: usize = 8;

// 整改建议: what to fix, derived from the evidence of each deduction.

/// Names of at most [`MAX_NAMED_IN_ADVICE`] things, "、"-joined, then "等 N 项".
fn name_list(names: Vec<String>) -> String {
    let mut unique: Vec<String> = Vec::new();
    for n in names {
        if !unique.contains(&n) {
            unique.push(n);
        }
    }
    let total = unique.len();
    let mut s = unique
        .into_iter()
        .take(MAX_NAMED_IN_ADVICE)
        .collect::<Vec<_>>()
        .join("、");
    if total > MAX_NAMED_IN_ADVICE {
        let _ = write!(s, " 等 {total} 项");
    }
    s
}

/// A device as people find it: "名称 (IP, MAC)", "IP (MAC)".
fn device_name(ip: &Option<String>, mac: &Option<String>, name: &Option<String>) -> String {
    let mut parts = [name.as_deref(), ip.as_deref(), mac.as_deref()].into_iter().flatten();
    match parts.next() {
        Some(first) => {
            let rest: Vec<&str> = parts.collect();
            if rest.is_empty() {
                first.to_string()
            } else {
                format!("{first} ({})", rest.join(", "))
            }
        }
        None => "未知设备".to_string(),
    }
}

/// What to do about a missing piece of evidence, by its key.
fn missing_advice(what: &str, summary: &str) -> String {
    let words = summary.strip_prefix("缺少: ").unwrap_or(summary);
    match what {
        "unit.maintainer" => "在单位资料中登记机房专人维护 (maintainer)".into(),
        "unit.responder" => "在单位资料中登记专网故障处置负责人 (responder)".into(),
        "registry:machine_room_device" => "在备案中登记机房设备及其 IP 地址 (“机房”列填“是”)".into(),
        "inventory:devices" => "检查考核代理的局域网设备清点配置, 确保能发现本局联网设备".into(),
        "probes:upstream" => "在考核代理中配置专网上游探测目标 (汇聚路由器、采集中心) 并保持运行".into(),
        "enrolment" => "尽早完成考核代理注册".into(),
        w if w.starts_with("check:") => format!("确保考核代理全期运行并上报{words}"),
        _ => format!("补齐{words}"),
    }
}

/// The evidence of one deduction sorted into what to fix.
#[derive(Default)]
struct Fixes {
    unregistered: Vec<String>,
    incomplete: Vec<String>,
    incomplete_fields: Vec<String>,
    unseen: Vec<String>,
    services: Vec<String>,
    missing_days: usize,
    missing_checks: Vec<String>,
    breaches: Vec<String>,
    bridging: Vec<String>,
    downtime: bool,
    outages: usize,
    unanswered: Vec<String>,
    other: Vec<String>,
}

impl Fixes {
    /// How many findings were sorted in so far.
    fn count(&self) -> usize {
        self.unregistered.len()
            + self.incomplete.len()
            + self.unseen.len()
            + self.services.len()
            + self.missing_days
            + self.breaches.len()
            + self.bridging.len()
            + usize::from(self.downtime)
            + self.outages
            + self.unanswered.len()
            + self.other.len()
    }

    fn add(&mut self, e: &Evidence, tz: Tz) {
        match e {
            Evidence::Device {
                ip,
                mac,
                name,
                registry_line,
                missing,
                ..
            } => {
                let who = device_name(ip, mac, name);
                if registry_line.is_none() {
                    self.unregistered.push(who);
                } else if !missing.is_empty() {
                    self.incomplete.push(who);
                    self.incomplete_fields.extend(missing.iter().map(|m| field_zh(m)));
                } else {
                    self.unseen.push(who);
                }
            }
            Evidence::Service { kind, name, url } => self.services.push(format!("{kind}“{name}” {url}")),
            Evidence::Days { count, missing, .. } => {
                self.missing_days += count;
                self.missing_checks.extend(missing.iter().cloned());
            }
            Evidence::Breach {
                canary,
                protocol,
                via_interface,
                ..
            } => {
                let via = via_interface
                    .as_deref()
                    .map(|i| format!(" 经接口 {i}"))
                    .unwrap_or_default();
                self.breaches.push(format!("{canary} ({protocol}){via}"));
            }
            Evidence::BridgingHost { host, ip, .. } => {
                self.bridging.push(match ip {
                    Some(ip) if !ip.is_empty() && ip != host => format!("{host} ({ip})"),
                    _ => host.clone(),
                });
            }
            Evidence::Downtime { .. } | Evidence::Uptime { .. } => self.downtime = true,
            Evidence::Outage { .. } => self.outages += 1,
            Evidence::Availability { target, ratio, .. } if *ratio < 1.0 => {
                self.unanswered.push(format!("{target} (应答率 {:.1}%)", ratio * 100.0));
            }
            Evidence::Availability { .. } => {}
            Evidence::Missing { what } => self.other.push(missing_advice(what, &e.summary_zh(tz))),
        }
    }

    /// The advice, one clause per kind of problem.
    fn advice(self) -> Vec<String> {
        let mut out = Vec::new();
        if !self.unregistered.is_empty() {
            out.push(format!(
                "将以下设备登记备案 (写明使用者和使用地点): {}",
                name_list(self.unregistered)
            ));
        }
        if !self.incomplete.is_empty() {
            let fields = name_list(self.incomplete_fields);
            out.push(format!("补全以下设备备案中的{fields}: {}", name_list(self.incomplete)));
        }
        if !self.unseen.is_empty() {
            out.push(format!(
                "核实以下已备案设备: 仍在使用的应接入专网并开机受检, 已停用的从备案中删除: {}",
                name_list(self.unseen)
            ));
        }
        if !self.services.is_empty() {
            out.push(format!(
                "在备案中登记以下应用系统或门户网站: {}",
                name_list(self.services)
            ));
        }
        if self.missing_days > 0 {
            out.push(format!(
                "每天完成并记录日常检测 (本期缺少 {} 天, 缺项: {})",
                self.missing_days,
                name_list(self.missing_checks)
            ));
        }
        if !self.breaches.is_empty() {
            out.push(format!(
                "排查并切断专网局域网访问互联网的通路, 整改后复测: {}",
                name_list(self.breaches)
            ));
        }
        if !self.bridging.is_empty() {
            out.push(format!(
                "断开以下主机与互联网或其他网络的连接 (拆除第二网卡、无线网卡或共享上网), 专网主机只接专网: {}",
                name_list(self.bridging)
            ));
        }
        if self.downtime {
            out.push("排查专网中断或无数据的原因 (线路、汇聚设备、供电、考核代理主机), 提高专网可用率".into());
        }
        if self.outages > 0 {
            out.push("专网中断时及时报修处置, 在规定时限内恢复, 并留存处置记录".into());
        }
        if !self.unanswered.is_empty() {
            out.push(format!(
                "检查以下机房设备的运行和网络连接, 保持持续在线: {}",
                name_list(self.unanswered)
            ));
        }
        for o in self.other {
            if !out.contains(&o) {
                out.push(o);
            }
        }
        out
    }
}

/// A registry field in Chinese.
fn field_zh(field: &str) -> String {
    match field {
        "user" => "使用者".into(),
        "location" => "使用地点".into(),
        other => other.into(),
    }
}

/// One line of 整改建议 for an item that lost points, or `None`: what to fix, from the
/// evidence of all its deductions together (a deduction whose evidence says nothing to
/// act on is named by its reason). Waived items are not assessed, so they need nothing.
pub(super) fn item_advice(item: &FullItem, tz: Tz) -> Option<String> {
    if item.deductions.is_empty() || item.status == FinalStatus::Waived {
        return None;
    }
    let mut fixes = Fixes::default();
    let mut unexplained = Vec::new();
    for d in &item.deductions {
        let before = fixes.count();
        for e in &d.evidence {
            fixes.add(e, tz);
        }
        if fixes.count() == before {
            unexplained.push(format!("针对“{}”进行整改", d.reason_zh));
        }
    }
    let mut clauses = fixes.advice();
    clauses.extend(unexplained);
    let lost: f64 = item.deductions.iter().map(|d| d.points).sum();
    Some(format!("{} (扣 {} 分): {}", item.id, pts(lost), clauses.join("；")))
}

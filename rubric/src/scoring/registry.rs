//! 二.1 备案: are the devices the agents see registered, with user and location?
//!
//! Score = points × (observed devices matched to a complete registry entry ÷ observed
//! devices). Also: application systems or portals the agent checked while the registry
//! records none of that kind; registered devices never seen (stale entries).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use super::{Ctx, Evidence, Outcome, pts};
use crate::evidence::{Observation, ServiceKind};
use crate::registry::{EntryKind, RegistryEntry, normalize_mac};
use crate::rubric::RegistryRule;

/// A device seen on the LAN during the window, merged over all reports.
#[derive(Debug, Clone)]
pub(super) struct Seen {
    pub ip: String,
    pub mac: Option<String>,
    pub vendor: Option<String>,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

impl Seen {
    pub fn evidence(&self, entry: Option<&RegistryEntry>, missing: Vec<String>) -> Evidence {
        Evidence::Device {
            ip: Some(self.ip.clone()),
            mac: self.mac.clone(),
            vendor: self.vendor.clone(),
            name: entry.map(|e| e.name.clone()),
            registry_line: entry.map(|e| e.line),
            first_seen: Some(self.first_seen),
            last_seen: Some(self.last_seen),
            missing,
        }
    }
}

/// Devices observed in the window, one per MAC (or per IP when the MAC is unknown),
/// ordered by IP for stable output.
pub(super) fn observed(ctx: &Ctx<'_>) -> Vec<Seen> {
    let mut by_key: BTreeMap<String, Seen> = BTreeMap::new();
    let obs = ctx.reports.iter().flat_map(|r| r.inventory.iter());
    for o in obs.filter(|o| o.last_seen >= ctx.start && o.first_seen < ctx.end) {
        let mac = o.mac.as_deref().and_then(normalize_mac);
        let key = mac.clone().unwrap_or_else(|| format!("ip:{}", o.ip));
        by_key.entry(key).and_modify(|s| merge(s, o)).or_insert_with(|| Seen {
            ip: o.ip.clone(),
            mac,
            vendor: o.vendor.clone(),
            first_seen: o.first_seen,
            last_seen: o.last_seen,
        });
    }
    let mut v: Vec<Seen> = by_key.into_values().collect();
    v.sort_by(|a, b| {
        let ka = a.ip.parse::<std::net::IpAddr>().ok();
        let kb = b.ip.parse::<std::net::IpAddr>().ok();
        ka.cmp(&kb)
            .then_with(|| a.ip.cmp(&b.ip))
            .then_with(|| a.mac.cmp(&b.mac))
    });
    v
}

fn merge(s: &mut Seen, o: &Observation) {
    if o.last_seen > s.last_seen {
        s.last_seen = o.last_seen;
        s.ip = o.ip.clone();
    }
    s.first_seen = s.first_seen.min(o.first_seen);
    if s.vendor.is_none() {
        s.vendor = o.vendor.clone();
    }
}

/// The registry device a seen device is: same MAC when the entry has one, else same IP.
pub(super) fn match_entry<'r>(entries: &'r [RegistryEntry], seen: &Seen) -> Option<&'r RegistryEntry> {
    let devices = || entries.iter().filter(|e| e.kind == EntryKind::Device);
    if let Some(mac) = &seen.mac
        && let Some(e) = devices().find(|e| e.mac.as_deref() == Some(mac.as_str()))
    {
        return Some(e);
    }
    devices().find(|e| e.mac.is_none() && e.ip.is_some_and(|ip| ip.to_string() == seen.ip))
}

/// Whether a registry device was seen during the window.
pub(super) fn was_seen(entry: &RegistryEntry, seen: &[Seen], entries: &[RegistryEntry]) -> bool {
    seen.iter()
        .any(|s| match_entry(entries, s).is_some_and(|e| std::ptr::eq(e, entry)))
}

pub(super) fn entry_evidence(e: &RegistryEntry) -> Evidence {
    Evidence::Device {
        ip: e.ip.map(|ip| ip.to_string()),
        mac: e.mac.clone(),
        vendor: None,
        name: Some(e.name.clone()),
        registry_line: Some(e.line),
        first_seen: None,
        last_seen: None,
        missing: Vec::new(),
    }
}

pub(super) fn score(ctx: &Ctx<'_>, rule: &RegistryRule, max: f64) -> Outcome {
    if !ctx.ran(|c| c.inventory) {
        return Outcome::no_evidence(max, "局域网设备清点", "the LAN inventory", "inventory");
    }
    let entries = &ctx.registry.entries;
    let seen = observed(ctx);
    let mut out = Outcome::default();
    if seen.is_empty() {
        out.deduct(
            max,
            "设备清点未发现任何联网设备, 无法核对备案".into(),
            "the inventory saw no device on the LAN; the registry cannot be verified".into(),
            vec![Evidence::Missing {
                what: "inventory:devices".into(),
            }],
        );
        return out;
    }
    let n = seen.len() as f64;
    let mut unregistered = Vec::new();
    let mut incomplete = Vec::new();
    for s in &seen {
        match match_entry(entries, s) {
            None => unregistered.push(s.evidence(None, Vec::new())),
            Some(e) => {
                let mut missing = Vec::new();
                if rule.require_user && e.user.is_none() {
                    missing.push("user".to_string());
                }
                if rule.require_location && e.location.is_none() {
                    missing.push("location".to_string());
                }
                if !missing.is_empty() {
                    incomplete.push(s.evidence(Some(e), missing));
                }
            }
        }
    }
    if !unregistered.is_empty() {
        let k = unregistered.len();
        out.deduct(
            max * k as f64 / n,
            format!("发现 {k} 台未备案的联网设备 (共发现 {} 台)", seen.len()),
            format!("{k} of {} devices seen on the LAN are not in the registry", seen.len()),
            unregistered,
        );
    }
    if !incomplete.is_empty() {
        let k = incomplete.len();
        out.deduct(
            max * k as f64 / n,
            format!("{k} 台设备的备案信息不全 (缺少使用者或使用地点)"),
            format!("{k} registered devices lack the user or the location"),
            incomplete,
        );
    }

    // Application systems and portals the agent checked but nobody registered.
    let mut missing_kinds = Vec::new();
    let mut evidence = Vec::new();
    for (kind, entry_kind, zh) in [
        (ServiceKind::App, EntryKind::App, "应用系统"),
        (ServiceKind::Portal, EntryKind::Portal, "门户网站"),
    ] {
        let checked: BTreeMap<&str, &str> = ctx
            .reports
            .iter()
            .flat_map(|r| r.services.iter())
            .filter(|s| s.kind == kind && ctx.contains(s.at))
            .map(|s| (s.url.as_str(), s.name.as_str()))
            .collect();
        if !checked.is_empty() && !ctx.registry.has_kind(entry_kind) {
            missing_kinds.push(zh);
            evidence.extend(checked.into_iter().map(|(url, name)| Evidence::Service {
                kind: zh.to_string(),
                name: name.to_string(),
                url: url.to_string(),
            }));
        }
    }
    if !missing_kinds.is_empty() {
        let kinds = missing_kinds.join("、");
        out.deduct(
            rule.missing_services_deduction,
            format!(
                "备案中没有登记{kinds}, 但代理检测到了 (扣 {} 分)",
                pts(rule.missing_services_deduction)
            ),
            format!(
                "the agent checks application systems or portals that the registry does not record ({})",
                missing_kinds
                    .iter()
                    .map(|k| if *k == "应用系统" { "app" } else { "portal" })
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            evidence,
        );
    }

    // Registered devices never seen: stale entries.
    let stale: Vec<Evidence> = ctx
        .registry
        .devices()
        .filter(|e| !was_seen(e, &seen, entries))
        .map(entry_evidence)
        .collect();
    if !stale.is_empty() {
        let k = stale.len();
        let zh = format!("{k} 条设备备案在本期从未被发现 (可能已过时)");
        let en = format!("{k} registered devices were never seen in this period (stale entries?)");
        if rule.stale_entry_deduction > 0.0 {
            out.deduct(rule.stale_entry_deduction * k as f64, zh, en, stale);
        } else {
            out.warn(zh, en, stale);
        }
    }
    out
}

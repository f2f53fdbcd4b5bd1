//! 三.4 串联: hosts that bridge the private network and the internet or another
//! network, and registered office devices never seen on the private network.
//!
//! Bridging hosts come from the agent host's own self-check (findings of severity
//! `violation`) and from agentless leak and forwarding probes of LAN hosts. Each
//! distinct host costs `per_bridging_host`; each registered office device (not in the
//! machine room) that the inventory never saw costs `per_unseen_office_device`.

use std::collections::BTreeMap;

use super::registry::{entry_evidence, observed, was_seen};
use super::{Ctx, Evidence, Outcome, pts};
use crate::evidence::{LeakMethod, Severity};
use crate::registry::normalize_mac;
use crate::rubric::BridgingRule;

pub(super) fn score(ctx: &Ctx<'_>, rule: &BridgingRule, max: f64) -> Outcome {
    if !ctx.ran(|c| c.self_check) {
        return Outcome::no_evidence(
            max,
            "代理主机双网卡自检",
            "the agent host's dual-homing self-check",
            "self_check",
        );
    }
    if !ctx.ran(|c| c.inventory) {
        return Outcome::no_evidence(max, "局域网设备清点", "the LAN inventory", "inventory");
    }
    // Host key → evidence, in first-seen order of keys.
    let mut hosts: BTreeMap<String, Vec<Evidence>> = BTreeMap::new();
    // The leak listener knows only a host's IP; the inventory gives its MAC, so that one
    // host found by several probes counts once.
    let mac_of: BTreeMap<String, String> = observed(ctx).into_iter().filter_map(|s| Some((s.ip, s.mac?))).collect();
    let mut seen_findings: std::collections::BTreeSet<(String, String, Option<String>)> = Default::default();
    for r in &ctx.reports {
        if let Some(sc) = r.self_check.as_ref().filter(|sc| ctx.contains(sc.at)) {
            for f in sc.findings.iter().filter(|f| f.severity == Severity::Violation) {
                // One piece of evidence per host, finding and interface: the first seen.
                let seen_key = (r.host.hostname.clone(), f.code.clone(), f.interface.clone());
                if !seen_findings.insert(seen_key) {
                    continue;
                }
                let detail = match &f.interface {
                    Some(i) => format!("{} [{}] 接口 {i}: {}", f.code, f.why_zh, f.detail),
                    None => format!("{} [{}]: {}", f.code, f.why_zh, f.detail),
                };
                hosts
                    .entry(format!("host:{}", r.host.hostname))
                    .or_default()
                    .push(Evidence::BridgingHost {
                        host: r.host.hostname.clone(),
                        ip: None,
                        mac: None,
                        method: "self_check".into(),
                        detail,
                        at: sc.at,
                    });
            }
        }
        for l in r.leaks.iter().filter(|l| ctx.contains(l.at)) {
            let mac = l
                .mac
                .as_deref()
                .and_then(normalize_mac)
                .or_else(|| mac_of.get(&l.ip).cloned());
            let key = mac.clone().unwrap_or_else(|| format!("ip:{}", l.ip));
            let list = hosts.entry(key).or_default();
            let method = match l.method {
                LeakMethod::SpoofedSource => "spoofed_source",
                LeakMethod::Forwarding => "forwarding",
            };
            // One piece of evidence per method and protocol is enough.
            let dup = list.iter().any(|e| matches!(e, Evidence::BridgingHost { method: m, detail, .. } if m == method && detail.starts_with(&l.protocol)));
            if !dup {
                list.push(Evidence::BridgingHost {
                    host: l.ip.clone(),
                    ip: Some(l.ip.clone()),
                    mac,
                    method: method.into(),
                    detail: format!("{} {}", l.protocol, l.detail),
                    at: l.at,
                });
            }
        }
    }
    let mut out = Outcome::default();
    for (_, evidence) in hosts {
        let host = match &evidence[0] {
            Evidence::BridgingHost { host, .. } => host.clone(),
            _ => String::new(),
        };
        out.deduct(
            rule.per_bridging_host,
            format!(
                "发现串联主机 {host}: 同时连接专网与互联网或其他网络 (扣 {} 分)",
                pts(rule.per_bridging_host)
            ),
            format!("host {host} bridges the private network and the internet or another network"),
            evidence,
        );
    }
    let seen = observed(ctx);
    let entries = &ctx.registry.entries;
    for e in ctx.registry.devices().filter(|e| !e.machine_room) {
        if !was_seen(e, &seen, entries) {
            out.deduct(
                rule.per_unseen_office_device,
                format!(
                    "已备案的办公设备 “{}” 本期从未接入专网 (扣 {} 分)",
                    e.name,
                    pts(rule.per_unseen_office_device)
                ),
                format!(
                    "registered office device \"{}\" was never seen on the private network",
                    e.name
                ),
                vec![entry_evidence(e)],
            );
        }
    }
    out
}

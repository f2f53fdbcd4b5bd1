//! 三.1 机房: a designated maintainer on record and machine-room devices that answer;
//! the room itself, the wiring diagram and tidy lines are attested by a reviewer.

use std::collections::BTreeMap;

use super::{Ctx, Evidence, Outcome, pct};
use crate::evidence::ProbeRole;
use crate::rubric::MachineRoomRule;

pub(super) fn score(ctx: &Ctx<'_>, rule: &MachineRoomRule) -> Outcome {
    let mut out = Outcome::default();
    if !ctx.profile.has_maintainer() {
        out.deduct(
            rule.maintainer_points,
            "单位资料中未登记机房专人维护 (maintainer)".into(),
            "no designated maintainer is on record in the unit profile".into(),
            vec![Evidence::Missing {
                what: "unit.maintainer".into(),
            }],
        );
    }
    let room: Vec<_> = ctx
        .registry
        .devices()
        .filter(|e| e.machine_room)
        .filter_map(|e| e.ip.map(|ip| (ip.to_string(), e)))
        .collect();
    if room.is_empty() {
        out.deduct(
            rule.availability_points,
            "备案中没有登记带 IP 地址的机房设备, 无法检测其运行状况".into(),
            "the registry records no machine-room device with an IP address to check".into(),
            vec![Evidence::Missing {
                what: "registry:machine_room_device".into(),
            }],
        );
        return out;
    }
    // ok / total checks per machine-room device.
    let mut counts: BTreeMap<&str, (u64, u64)> = room.iter().map(|(ip, _)| (ip.as_str(), (0, 0))).collect();
    let samples = ctx.reports.iter().flat_map(|r| r.probes.samples.iter());
    for s in samples.filter(|s| s.role == ProbeRole::Device && ctx.contains(s.at)) {
        if let Some(c) = counts.get_mut(s.host()) {
            c.1 += s.count();
            if s.ok {
                c.0 += s.count();
            }
        }
    }
    let (ok, total) = counts.values().fold((0, 0), |(a, b), (o, t)| (a + o, b + t));
    if total == 0 {
        out.deduct(
            rule.availability_points,
            "无证据: 本期未检测任何机房设备".into(),
            "no evidence: no machine-room device was checked in this period".into(),
            vec![Evidence::Missing {
                what: "check:machine_room_devices".into(),
            }],
        );
        return out;
    }
    let ratio = ok as f64 / total as f64;
    if ratio < rule.availability_threshold {
        out.deduct(
            rule.availability_points,
            format!(
                "机房设备应答率 {}, 低于 {}",
                pct(ratio),
                pct(rule.availability_threshold)
            ),
            format!(
                "machine-room devices answered {} of checks, below {}",
                pct(ratio),
                pct(rule.availability_threshold)
            ),
            counts
                .into_iter()
                .filter(|(_, (o, t))| o < t || *t == 0)
                .map(|(ip, (o, t))| Evidence::Availability {
                    target: ip.to_string(),
                    ok: o,
                    total: t,
                    ratio: if t == 0 { 0.0 } else { o as f64 / t as f64 },
                })
                .collect(),
        );
    }
    out
}

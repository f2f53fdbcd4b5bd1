//! 三.5 故障处置: outages restored in time, and a designated responder on record.
//!
//! An outage starts at the first of the consecutive missed probes that took a target
//! down and ends at the first success. One not restored within `restore_within_hours`
//! (including one still going on at the end of the window) costs `per_slow_outage`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};

use super::{Ctx, Evidence, Outcome, pts};
use crate::rubric::OutageResponseRule;

pub(super) fn score(ctx: &Ctx<'_>, rule: &OutageResponseRule, max: f64) -> Outcome {
    if !ctx.ran(|c| c.reachability) {
        return Outcome::no_evidence(
            max,
            "专网连通性探测",
            "private-network reachability probing",
            "reachability",
        );
    }
    // The same outage is reported again by later reports until it ends: keep one per
    // (target, start), preferring a known end.
    let mut outages: BTreeMap<(DateTime<Utc>, &str), Option<DateTime<Utc>>> = BTreeMap::new();
    for o in ctx.reports.iter().flat_map(|r| r.outages.iter()) {
        let slot = outages.entry((o.start, o.target.as_str())).or_insert(o.end);
        if let Some(e) = o.end {
            *slot = Some(slot.map_or(e, |s| s.max(e)));
        }
    }
    let limit = Duration::milliseconds((rule.restore_within_hours * 3_600_000.0) as i64);
    let mut out = Outcome::default();
    for ((start, target), end) in outages {
        if start >= ctx.end || end.is_some_and(|e| e <= ctx.start) {
            continue;
        }
        let until = end.unwrap_or(ctx.end);
        let took = until - start;
        if took > limit {
            let ongoing = if end.is_none() { ", 至期末仍未恢复" } else { "" };
            out.deduct(
                rule.per_slow_outage,
                format!(
                    "{target} 于 {} 中断, {} 小时内未恢复{ongoing} (扣 {} 分)",
                    start.with_timezone(&ctx.tz).format("%Y-%m-%d %H:%M"),
                    pts(rule.restore_within_hours),
                    pts(rule.per_slow_outage)
                ),
                format!(
                    "outage of {target} from {} not restored within {} h",
                    start.to_rfc3339(),
                    pts(rule.restore_within_hours)
                ),
                vec![Evidence::Outage {
                    target: target.to_string(),
                    start,
                    end,
                    duration_secs: took.num_seconds(),
                }],
            );
        }
    }
    if !ctx.profile.has_responder() {
        out.deduct(
            rule.no_responder_deduction,
            "单位资料中未登记专网故障处置负责人 (responder)".into(),
            "no designated responder for private-network faults is on record in the unit profile".into(),
            vec![Evidence::Missing {
                what: "unit.responder".into(),
            }],
        );
    }
    out
}

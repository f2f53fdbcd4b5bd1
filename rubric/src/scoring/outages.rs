//! 三.5 故障处置: outages restored in time, and a designated responder on record.
//!
//! An outage of a target starts at the first of the consecutive missed probes that took
//! it down and ends at the first success. An outage left without an end (the agent
//! restarted while it lasted) ends at that target's first later successful probe. The
//! private network is down — an incident — while every upstream target is down at once,
//! so a collector outage alone or a machine-room device is no incident of the unit's.
//! An incident not restored within `restore_within_hours` (including one still going on
//! at the end of the window) costs `per_slow_outage`, in the period where it started.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

use super::uptime::Spans;
use super::{Ctx, Evidence, Outcome, pts};
use crate::evidence::ProbeRole;
use crate::rubric::OutageResponseRule;

/// A span during which a target was down.
type Down = (DateTime<Utc>, DateTime<Utc>);

pub(super) fn score(ctx: &Ctx<'_>, rule: &OutageResponseRule, max: f64) -> Outcome {
    if !ctx.ran(|c| c.reachability) {
        return Outcome::no_reachability(max);
    }
    let samples: Vec<_> = ctx.reports.iter().flat_map(|r| r.probes.samples.iter()).collect();
    let upstream: BTreeSet<&str> = samples
        .iter()
        .filter(|s| s.role == ProbeRole::Upstream)
        .map(|s| s.target.as_str())
        .collect();
    // The same outage is reported again by later reports until it ends: keep one per
    // (target, start), preferring a known end.
    let mut outages: BTreeMap<(&str, DateTime<Utc>), Option<DateTime<Utc>>> = BTreeMap::new();
    for o in ctx.reports.iter().flat_map(|r| r.outages.iter()) {
        if !upstream.contains(o.target.as_str()) {
            continue;
        }
        let slot = outages.entry((o.target.as_str(), o.start)).or_insert(o.end);
        if let Some(e) = o.end {
            *slot = Some(slot.map_or(e, |s| s.max(e)));
        }
    }
    for ((target, start), end) in outages.iter_mut() {
        if end.is_none() {
            *end = samples
                .iter()
                .filter(|s| s.ok && s.target == *target && s.last_at() > *start)
                .map(|s| s.at.max(*start))
                .min();
        }
    }
    // Down spans per upstream target; an incident is where all of them overlap.
    let mut per_target: BTreeMap<&str, Vec<Down>> = upstream.iter().map(|t| (*t, Vec::new())).collect();
    for ((target, start), end) in &outages {
        if let Some(v) = per_target.get_mut(target) {
            v.push((*start, end.unwrap_or(ctx.end).max(*start)));
        }
    }
    let mut sets = per_target.values().map(|v| Spans::from_unsorted(v.clone()));
    let incidents = match sets.next() {
        Some(first) => sets.fold(first, |acc, s| acc.intersect(&s)),
        None => Spans::default(),
    };
    let limit = Duration::milliseconds((rule.restore_within_hours * 3_600_000.0) as i64);
    let mut out = Outcome::default();
    for &(start, until) in incidents.spans() {
        if start < ctx.start || start >= ctx.end {
            continue;
        }
        let took = until - start;
        if took <= limit {
            continue;
        }
        let ongoing = until >= ctx.end;
        let evidence: Vec<Evidence> = outages
            .iter()
            .filter(|((_, s), e)| *s <= until && e.is_none_or(|e| e >= start))
            .map(|((target, s), e)| Evidence::Outage {
                target: target.to_string(),
                start: *s,
                end: *e,
                duration_secs: (e.unwrap_or(ctx.end) - *s).num_seconds(),
            })
            .collect();
        let targets = per_target.keys().copied().collect::<Vec<_>>().join(", ");
        let tail = if ongoing { ", 至期末仍未恢复" } else { "" };
        out.deduct(
            rule.per_slow_outage,
            format!(
                "专网于 {} 中断 (所有上游目标均不可达), {} 小时内未恢复{tail} (扣 {} 分)",
                start.with_timezone(&ctx.tz).format("%Y-%m-%d %H:%M:%S"),
                pts(rule.restore_within_hours),
                pts(rule.per_slow_outage)
            ),
            format!(
                "the private network was down from {} (no upstream target answered: {targets}) and not restored within {} h",
                start.to_rfc3339(),
                pts(rule.restore_within_hours)
            ),
            evidence,
        );
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

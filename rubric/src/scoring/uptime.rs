//! 三.2 专网接入: availability of the private-network upstream over the window.
//!
//! Each probe sample stands for the time until the next sample of the same target, but
//! for at most `sample_tolerance` probe intervals; time not covered by any sample is
//! "no data" and counts as down (全天候). The network is up while any (or all, per the
//! rule) upstream targets answer. Full points at availability ≥ `full_at`, none at
//! ≤ `zero_at`, linear between.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use chrono_tz::Tz;

use super::{Ctx, Evidence, LATE_REPORT_GRACE, Outcome, pct};
use crate::evidence::{ProbeRole, Report};
use crate::period::{days_in, local_midnight};
use crate::rubric::{Rubric, Rule, UpstreamRule, UptimeRule};

/// How many of the longest down spans a deduction lists.
const MAX_DOWNTIME_EVIDENCE: usize = 10;

type Span = (DateTime<Utc>, DateTime<Utc>);

/// A sample's (or run's) first and last time, whether it answered, and the longest time
/// its last sample may stand for.
type Held = (DateTime<Utc>, DateTime<Utc>, bool, Duration);

/// Sorted, disjoint, non-empty spans.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct Spans(Vec<Span>);

impl Spans {
    pub(super) fn spans(&self) -> &[Span] {
        &self.0
    }

    pub(super) fn from_unsorted(mut v: Vec<Span>) -> Spans {
        v.retain(|(a, b)| a < b);
        v.sort();
        let mut out: Vec<Span> = Vec::with_capacity(v.len());
        for (a, b) in v {
            match out.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(b),
                _ => out.push((a, b)),
            }
        }
        Spans(out)
    }

    fn union(sets: &[Spans]) -> Spans {
        Spans::from_unsorted(sets.iter().flat_map(|s| s.0.iter().copied()).collect())
    }

    pub(super) fn intersect(&self, other: &Spans) -> Spans {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let (a, b) = (self.0[i], other.0[j]);
            let lo = a.0.max(b.0);
            let hi = a.1.min(b.1);
            if lo < hi {
                out.push((lo, hi));
            }
            if a.1 < b.1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        Spans(out)
    }

    fn total(&self) -> Duration {
        self.0.iter().map(|(a, b)| *b - *a).sum()
    }

    /// The parts of `start..end` not covered.
    fn gaps(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Vec<Span> {
        let mut out = Vec::new();
        let mut at = start;
        for &(a, b) in &self.0 {
            if a > at {
                out.push((at, a.min(end)));
            }
            at = at.max(b);
        }
        if at < end {
            out.push((at, end));
        }
        out.retain(|(a, b)| a < b);
        out
    }
}

/// When the private network was up in `start..end`, by the rule's upstream policy;
/// `None` when no upstream target was probed in the window.
pub(super) fn upstream_up(
    reports: &[&Report],
    rule: &UptimeRule,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<Spans> {
    // Per target: (time, ok, the longest time the sample may stand for).
    let mut per_target: BTreeMap<&str, Vec<Held>> = BTreeMap::new();
    for r in reports {
        for s in r.probes.samples.iter().filter(|s| s.role == ProbeRole::Upstream) {
            // Clamped to what an agent's schedule allows, so that no report can stand for
            // more than its own interval (ingest refuses others; older stored ones count so).
            let interval = crate::bounds::clamp_interval(s.run.map_or(r.probes.interval_secs, |run| run.interval_secs));
            let hold = Duration::milliseconds((f64::from(interval) * rule.sample_tolerance * 1000.0) as i64);
            // A run of a roll-up may begin before the window; it counts from the start.
            if s.last_at() >= start && s.at < end {
                per_target
                    .entry(s.target.as_str())
                    .or_default()
                    .push((s.at.max(start), s.last_at(), s.ok, hold));
            }
        }
    }
    if per_target.is_empty() {
        return None;
    }
    let up_per_target: Vec<Spans> = per_target
        .into_values()
        .map(|mut samples| {
            samples.sort_by_key(|s| s.0);
            let mut spans = Vec::new();
            for (i, (at, last, ok, hold)) in samples.iter().enumerate() {
                if !ok {
                    continue;
                }
                let mut until = (*last + *hold).min(end);
                if let Some(next) = samples.get(i + 1) {
                    until = until.min(next.0.max(*last));
                }
                spans.push((*at, until));
            }
            Spans::from_unsorted(spans)
        })
        .collect();
    Some(match rule.upstream {
        UpstreamRule::Any => Spans::union(&up_per_target),
        UpstreamRule::All => up_per_target
            .iter()
            .skip(1)
            .fold(up_per_target[0].clone(), |acc, s| acc.intersect(s)),
    })
}

/// The private network's availability per local day of `start..end` (`None` for a day
/// without any upstream probe), by the rubric's uptime rule: the uptime chart.
pub fn daily_availability(
    rubric: &Rubric,
    reports: &[Report],
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<(NaiveDate, Option<f64>)> {
    let rule = rubric
        .items()
        .find_map(|(_, i)| match &i.rule {
            Some(Rule::Uptime(r)) => Some(r.clone()),
            _ => None,
        })
        .unwrap_or(UptimeRule {
            full_at: 0.99,
            zero_at: 0.9,
            upstream: UpstreamRule::Any,
            sample_tolerance: 1.5,
        });
    let refs: Vec<&Report> = reports.iter().collect();
    let up = upstream_up(&refs, &rule, start, end).unwrap_or_default();
    let mut probed: BTreeSet<NaiveDate> = BTreeSet::new();
    for s in reports.iter().flat_map(|r| r.probes.samples.iter()) {
        if s.role == ProbeRole::Upstream && s.last_at() >= start && s.at < end {
            // A run of a month digest may span many days: each of them was probed.
            let mut day = s.at.max(start).with_timezone(&tz).date_naive();
            let last = s.last_at().min(end).with_timezone(&tz).date_naive();
            while day <= last {
                probed.insert(day);
                day = day + chrono::Days::new(1);
            }
        }
    }
    days_in(start, end, tz)
        .into_iter()
        .map(|day| {
            if !probed.contains(&day) {
                return (day, None);
            }
            let a = local_midnight(day, tz).max(start);
            let b = local_midnight(day + chrono::Days::new(1), tz).min(end);
            let window = (b - a).num_seconds();
            let day_spans = Spans(vec![(a, b)]);
            let secs = up.intersect(&day_spans).total().num_seconds();
            (day, (window > 0).then(|| secs as f64 / window as f64))
        })
        .collect()
}

pub(super) fn score(ctx: &Ctx<'_>, rule: &UptimeRule, max: f64) -> Outcome {
    if !ctx.ran(|c| c.reachability) {
        return Outcome::no_reachability(max);
    }
    // While the period is under way, data of the last hour may still be on its way (a
    // batch not yet sent, a spool replaying): time after the last sample within that hour
    // is not counted yet. Older time without data counts as down.
    let last_sample = ctx
        .reports
        .iter()
        .flat_map(|r| r.probes.samples.iter())
        .filter(|s| s.role == ProbeRole::Upstream && s.at < ctx.end)
        .map(|s| s.last_at())
        .max();
    let end = match last_sample {
        Some(last) if ctx.open_end => ctx.end.min(last.max(ctx.end - LATE_REPORT_GRACE)).max(ctx.start),
        _ => ctx.end,
    };
    let Some(up) = upstream_up(&ctx.reports, rule, ctx.start, end) else {
        let mut out = Outcome::default();
        out.deduct(
            max,
            "无证据: 本期没有专网上游目标 (汇聚路由器、采集中心) 的探测数据".into(),
            "no evidence: no probe of a private-network upstream target in this period".into(),
            vec![Evidence::Missing {
                what: "probes:upstream".into(),
            }],
        );
        return out;
    };
    // Milliseconds, so that a short window is not rounded by whole seconds.
    let window_ms = (end - ctx.start).num_milliseconds().max(0);
    let up_ms = up.total().num_milliseconds().min(window_ms);
    let ratio = if window_ms > 0 {
        up_ms as f64 / window_ms as f64
    } else {
        1.0
    };
    let (up_secs, window) = (up_ms / 1000, window_ms / 1000);
    let factor = ((ratio - rule.zero_at) / (rule.full_at - rule.zero_at)).clamp(0.0, 1.0);
    let mut out = Outcome::default();
    if factor < 1.0 {
        let mut evidence = vec![Evidence::Uptime {
            ratio,
            up_secs,
            window_secs: window,
        }];
        let mut gaps = up.gaps(ctx.start, end);
        gaps.sort_by_key(|(a, b)| std::cmp::Reverse(*b - *a));
        let total_gaps = gaps.len();
        evidence.extend(
            gaps.into_iter()
                .take(MAX_DOWNTIME_EVIDENCE)
                .map(|(start, end)| Evidence::Downtime {
                    start,
                    end,
                    duration_secs: (end - start).num_seconds(),
                }),
        );
        let more = total_gaps.saturating_sub(MAX_DOWNTIME_EVIDENCE);
        let more_zh = if more > 0 {
            format!(", 另有 {more} 段较短的中断未列出")
        } else {
            String::new()
        };
        let more_en = if more > 0 {
            format!("; {more} shorter gaps not listed")
        } else {
            String::new()
        };
        out.deduct(
            max * (1.0 - factor),
            format!(
                "专网可用率 {} (满分需 ≥ {}, ≤ {} 不得分; 无数据时段按中断计){more_zh}",
                pct(ratio),
                pct(rule.full_at),
                pct(rule.zero_at)
            ),
            format!(
                "private-network availability {} (full points at >= {}, none at <= {}; time without data counts as down){more_en}",
                pct(ratio),
                pct(rule.full_at),
                pct(rule.zero_at)
            ),
            evidence,
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_800_000_000 + s, 0).single().unwrap_or_default()
    }

    #[test]
    fn spans_merge_intersect_and_gap() {
        let a = Spans::from_unsorted(vec![(t(10), t(20)), (t(0), t(5)), (t(4), t(8))]);
        assert_eq!(a.0, vec![(t(0), t(8)), (t(10), t(20))]);
        let b = Spans::from_unsorted(vec![(t(6), t(12))]);
        assert_eq!(a.intersect(&b).0, vec![(t(6), t(8)), (t(10), t(12))]);
        assert_eq!(a.gaps(t(0), t(30)), vec![(t(8), t(10)), (t(20), t(30))]);
        assert_eq!(a.total(), Duration::seconds(18));
    }
}

//! The scoring engine. Pure: values in, values out — no I/O, no clock, no async.
//!
//! [`score`] takes the rubric, the unit's profile and registry, its evidence reports,
//! a period and an evaluation time, and returns a [`Sheet`] with every item of the
//! rubric. Items with a rule are scored by the module named after what the rule
//! checks; reviewer items come out `pending` with their standard points.
//!
//! Invariants (tested): an item's score never goes below 0 (扣完为止); the points of
//! its deductions add up to exactly what it lost; every deduction names its evidence;
//! a check that never ran scores 0 with the reason "no evidence".

mod bridging;
mod daily;
mod isolation;
mod machine_room;
mod outages;
mod registry;
pub mod sheet;
mod uptime;

use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;

use crate::evidence::{CheckStatus, Checks, Report};
use crate::period::{Period, days_in, local_midnight};
use crate::registry::{Registry, UnitProfile};
use crate::rubric::{Item, Rubric, Rule, Scoring};
pub use sheet::{Deduction, Evidence, ItemScore, Note, PeriodInfo, Sheet, Status, UnitRef};
pub use uptime::daily_availability;

/// Reports created up to this long after the window's end still count for it (a batch
/// made just after midnight carries the samples of the minute before). The collector's
/// roll-ups read the raw reports of this same hour after a window, so that a roll-up scores
/// like the raw reports.
pub const LATE_REPORT_GRACE: Duration = Duration::hours(1);

/// Everything the engine needs.
#[derive(Debug, Clone, Copy)]
pub struct ScoreInput<'a> {
    pub rubric: &'a Rubric,
    pub profile: &'a UnitProfile,
    pub registry: &'a Registry,
    /// The unit's reports; those outside the window are ignored.
    pub reports: &'a [Report],
    pub period: Period,
    /// The evaluation time (the caller's clock): a period still under way is scored up
    /// to here. `None` scores the whole period.
    pub as_of: Option<DateTime<Utc>>,
}

/// What one rule found, before capping and rounding.
#[derive(Debug, Default)]
struct Outcome {
    deductions: Vec<Deduction>,
    warnings: Vec<Note>,
}

impl Outcome {
    fn deduct(&mut self, points: f64, reason_zh: String, reason_en: String, evidence: Vec<Evidence>) {
        if points > 0.0 {
            self.deductions.push(Deduction {
                points,
                reason_zh,
                reason_en,
                evidence,
            });
        }
    }

    fn warn(&mut self, reason_zh: String, reason_en: String, evidence: Vec<Evidence>) {
        self.warnings.push(Note {
            reason_zh,
            reason_en,
            evidence,
        });
    }

    /// No evidence because the private network was never probed (三.2, 三.5).
    fn no_reachability(points: f64) -> Outcome {
        Outcome::no_evidence(
            points,
            "专网连通性探测",
            "private-network reachability probing",
            "reachability",
        )
    }

    /// The whole automatic part is lost because a check produced no evidence.
    fn no_evidence(points: f64, check_zh: &str, check_en: &str, what: &str) -> Outcome {
        let mut o = Outcome::default();
        o.deduct(
            points,
            format!("无证据: 本期{check_zh}从未运行"),
            format!("no evidence: {check_en} never ran in this period"),
            vec![Evidence::Missing {
                what: format!("check:{what}"),
            }],
        );
        o
    }
}

/// The scoring window and the evidence that falls in it, shared by every rule.
#[derive(Debug)]
struct Ctx<'a> {
    profile: &'a UnitProfile,
    registry: &'a Registry,
    tz: Tz,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    /// The period is still under way: the window ends at the evaluation time.
    open_end: bool,
    reports: Vec<&'a Report>,
}

impl Ctx<'_> {
    fn contains(&self, t: DateTime<Utc>) -> bool {
        t >= self.start && t < self.end
    }

    /// Whether a check ran in at least one report of the window.
    fn ran(&self, check: impl Fn(&Checks) -> CheckStatus) -> bool {
        self.reports.iter().any(|r| check(&r.checks) == CheckStatus::Ran)
    }
}

/// Rounds to hundredths of a point, the precision of the sheet.
pub fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// Devices the agents saw in `start..end` that no registry entry matches: the list a
/// unit's staff works through to complete its registry (备案).
pub fn unregistered_devices(
    registry: &Registry,
    reports: &[Report],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Vec<Evidence> {
    let profile = UnitProfile::bare("");
    let ctx = Ctx {
        profile: &profile,
        registry,
        tz: chrono_tz::UTC,
        start,
        end,
        open_end: false,
        reports: reports.iter().collect(),
    };
    registry::observed(&ctx)
        .iter()
        .filter(|s| registry::match_entry(&registry.entries, s).is_none())
        .map(|s| s.evidence(None, Vec::new()))
        .collect()
}

/// Scores one unit for one period.
pub fn score(input: &ScoreInput<'_>) -> Sheet {
    let tz = input
        .profile
        .timezone
        .as_deref()
        .and_then(|t| t.parse::<Tz>().ok())
        .unwrap_or(input.rubric.timezone);
    let (period_start, period_end) = input.period.bounds(tz);
    let start = match input.profile.enrolled {
        Some(day) => period_start.max(local_midnight(day, tz)),
        None => period_start,
    };
    let start = input.profile.enrolled_at.map_or(start, |t| start.max(t));
    let end = match input.as_of {
        Some(t) => period_end.min(t),
        None => period_end,
    };
    let end = end.max(start);
    let reports: Vec<&Report> = input
        .reports
        .iter()
        .filter(|r| r.created_at >= start && r.created_at < end + LATE_REPORT_GRACE)
        .collect();
    let ctx = Ctx {
        profile: input.profile,
        registry: input.registry,
        tz,
        start,
        end,
        open_end: input.as_of.is_some_and(|t| t < period_end),
        reports,
    };

    let mut items = Vec::new();
    let (mut auto_points, mut auto_max, mut pending_points) = (0.0, 0.0, 0.0);
    for (section, item) in input.rubric.items() {
        let scored = score_item(&ctx, item);
        let in_auto_sections = item.scoring != Scoring::Reviewer;
        if in_auto_sections {
            auto_points += scored.score.unwrap_or(0.0);
            auto_max += item.auto_points();
        }
        pending_points += scored.pending_points;
        items.push(ItemScore {
            section: section.id.clone(),
            ..scored
        });
    }
    Sheet {
        rubric: input.rubric.id.clone(),
        unit: UnitRef {
            id: input.profile.id.clone(),
            name: input.profile.name.clone(),
        },
        period: PeriodInfo {
            label: input.period.to_string(),
            start: period_start,
            end: period_end,
            timezone: tz.name().to_string(),
            window_start: ctx.start,
            window_end: ctx.end,
            days: days_in(ctx.start, ctx.end, tz).len(),
        },
        auto_points: round2(auto_points),
        auto_max: round2(auto_max),
        pending_points: round2(pending_points),
        reports: ctx.reports.iter().map(|r| r.rollup_of.max(1) as usize).sum(),
        items,
    }
}

fn score_item(ctx: &Ctx<'_>, item: &Item) -> ItemScore {
    let base = ItemScore {
        id: item.id.clone(),
        section: String::new(),
        points: item.points,
        text_zh: item.text_zh.clone(),
        text_en: item.text_en.clone(),
        score: None,
        status: Status::Pending,
        pending_points: item.reviewer_points(),
        deductions: Vec::new(),
        warnings: Vec::new(),
    };
    let Some(rule) = &item.rule else {
        return base;
    };
    let max = item.auto_points();
    let outcome = if ctx.end <= ctx.start {
        let mut o = Outcome::default();
        o.deduct(
            max,
            "本期内单位尚未注册, 无评分窗口".into(),
            "the unit was not enrolled during this period; nothing to score".into(),
            vec![Evidence::Missing {
                what: "enrolment".into(),
            }],
        );
        o
    } else {
        match rule {
            Rule::Registry(r) => registry::score(ctx, r, max),
            Rule::DailyChecks(r) => daily::score(ctx, r, max),
            Rule::MachineRoom(r) => machine_room::score(ctx, r),
            Rule::Uptime(r) => uptime::score(ctx, r, max),
            Rule::Isolation(r) => isolation::score(ctx, r, max),
            Rule::Bridging(r) => bridging::score(ctx, r, max),
            Rule::OutageResponse(r) => outages::score(ctx, r, max),
        }
    };
    let (score, deductions) = cap(max, outcome.deductions);
    ItemScore {
        score: Some(score),
        status: if item.scoring == Scoring::Partial {
            Status::Pending
        } else {
            Status::Auto
        },
        deductions,
        warnings: outcome.warnings,
        ..base
    }
}

/// Applies 扣完为止: deductions are taken in order until the points are used up; a
/// deduction that would go below zero is cut to what was left and says so.
fn cap(max: f64, deductions: Vec<Deduction>) -> (f64, Vec<Deduction>) {
    let mut left = round2(max);
    let mut out = Vec::new();
    for mut d in deductions {
        let want = round2(d.points);
        if want <= 0.0 || left <= 0.0 {
            if left <= 0.0 && want > 0.0 {
                // Already at zero: keep the finding visible at 0 points.
                d.points = 0.0;
                d.reason_zh += " (已扣完为止)";
                d.reason_en += " (item already at 0)";
                out.push(d);
            }
            continue;
        }
        if want > left {
            d.reason_zh += &format!(" (应扣 {want} 分, 扣完为止)");
            d.reason_en += &format!(" (would cost {want}; capped at the item's remaining points)");
            d.points = left;
        } else {
            d.points = want;
        }
        left = round2(left - d.points);
        out.push(d);
    }
    (left.max(0.0), out)
}

/// Formats a share as a percentage for reasons.
fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Formats points without needless decimals: 1, 0.5, 2.67.
fn pts(x: f64) -> String {
    let r = round2(x);
    if (r - r.round()).abs() < 1e-9 {
        format!("{}", r.round() as i64)
    } else {
        format!("{r}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(points: f64) -> Deduction {
        Deduction {
            points,
            reason_zh: "x".into(),
            reason_en: "x".into(),
            evidence: vec![Evidence::Missing { what: "x".into() }],
        }
    }

    #[test]
    fn deductions_stop_at_zero_and_add_up_to_the_loss() {
        let (score, ds) = cap(5.0, vec![d(2.0), d(2.0), d(2.0), d(2.0)]);
        assert_eq!(score, 0.0);
        let pts: Vec<f64> = ds.iter().map(|d| d.points).collect();
        assert_eq!(pts, vec![2.0, 2.0, 1.0, 0.0]);
        assert!(ds[2].reason_zh.contains("扣完为止"));
        let (score, ds) = cap(3.0, vec![d(0.333333), d(0.666666)]);
        assert_eq!(score, 2.0);
        assert_eq!(ds.iter().map(|d| d.points).sum::<f64>(), 1.0);
    }
}

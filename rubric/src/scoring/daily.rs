//! 二.2 运维: daily checks of the network, devices, application systems and portals.
//!
//! A calendar day (in the unit's time zone) counts when the daily check record has
//! results for every category the unit has: the network always; devices, application
//! systems and portals when the registry records any. Score = points × counted days ÷
//! days in the window.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{Days, NaiveDate};

use super::{Ctx, Evidence, Outcome};
use crate::period::{days_in, local_day, local_midnight};
use crate::registry::EntryKind;
use crate::rubric::DailyChecksRule;

const NETWORK: &str = "网络";
const DEVICES: &str = "设备";
const APPS: &str = "应用系统";
const PORTALS: &str = "门户网站";

pub(super) fn score(ctx: &Ctx<'_>, _rule: &DailyChecksRule, max: f64) -> Outcome {
    let records: Vec<_> = ctx
        .reports
        .iter()
        .flat_map(|r| r.daily_checks.iter())
        .filter(|d| ctx.contains(d.at))
        .collect();
    if records.is_empty() && !ctx.ran(|c| c.daily) {
        return Outcome::no_evidence(max, "日常检测", "the daily check", "daily");
    }
    let mut required = vec![NETWORK];
    if ctx.registry.has_kind(EntryKind::Device) {
        required.push(DEVICES);
    }
    if ctx.registry.has_kind(EntryKind::App) {
        required.push(APPS);
    }
    if ctx.registry.has_kind(EntryKind::Portal) {
        required.push(PORTALS);
    }
    let mut done: BTreeMap<NaiveDate, BTreeSet<&str>> = BTreeMap::new();
    for d in &records {
        let set = done.entry(local_day(d.at, ctx.tz)).or_default();
        set.insert(NETWORK);
        if d.devices.is_some() {
            set.insert(DEVICES);
        }
        if d.apps.is_some() {
            set.insert(APPS);
        }
        if d.portals.is_some() {
            set.insert(PORTALS);
        }
    }
    let mut days = days_in(ctx.start, ctx.end, ctx.tz);
    // A day still under way (scoring as of now) counts only once its check is done.
    if let Some(last) = days.last().copied()
        && local_midnight(last, ctx.tz) < ctx.end
        && local_midnight(last + Days::new(1), ctx.tz) > ctx.end
        && !done.get(&last).is_some_and(|h| required.iter().all(|c| h.contains(c)))
    {
        days.pop();
    }
    // Runs of consecutive days missing the same categories.
    let mut runs: Vec<(NaiveDate, NaiveDate, usize, Vec<String>)> = Vec::new();
    let mut missing_days = 0usize;
    for day in &days {
        let have = done.get(day);
        let missing: Vec<String> = required
            .iter()
            .filter(|c| have.is_none_or(|h| !h.contains(**c)))
            .map(|c| c.to_string())
            .collect();
        if missing.is_empty() {
            continue;
        }
        missing_days += 1;
        match runs.last_mut() {
            Some((_, last, count, m)) if *m == missing && last.checked_add_days(Days::new(1)) == Some(*day) => {
                *last = *day;
                *count += 1;
            }
            _ => runs.push((*day, *day, 1, missing)),
        }
    }
    let mut out = Outcome::default();
    if missing_days > 0 && !days.is_empty() {
        let total = days.len();
        out.deduct(
            max * missing_days as f64 / total as f64,
            format!(
                "{total} 天中有 {missing_days} 天没有完整的日常检测记录 (需含: {})",
                required.join("、")
            ),
            format!("{missing_days} of {total} days lack a complete daily check record"),
            runs.into_iter()
                .map(|(first, last, count, missing)| Evidence::Days {
                    first,
                    last,
                    count,
                    missing,
                })
                .collect(),
        );
    }
    out
}

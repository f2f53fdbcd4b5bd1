//! Daily roll-ups: the reports of one agent on one local day merged into one digest
//! report, so that scoring a year reads 365 digests instead of every raw report.
//!
//! A digest is itself a schema-v1 [`Report`] (`rollup_of` > 0) and the engine scores it
//! like any report. Merging keeps everything a rule reads:
//! - probe samples become runs ([`SampleRun`]): consecutive samples of a target with the
//!   same result, no farther apart than the probe interval plus one second, within one
//!   local day. Availability, outage ends and machine-room counts come out as from the
//!   raw samples (a run bridges only gaps the rubric's `sample_tolerance` ≥ 1 covers,
//!   up to that one second of timer slack per sample);
//! - isolation rounds: every round with a breach is kept whole; of each stretch of clean
//!   rounds within a local day the first and the last are kept, which is all that breaks
//!   a streak of breaches;
//! - outages are kept once per (target, start), with the latest known end; inventory
//!   observations once per (ip, mac) over the day; leaks, daily checks and problems once;
//!   services once per (kind, url), the latest; self-check findings of the whole day on
//!   the day's self-check (the earliest with a finding, else the latest);
//! - checks: `ran` if any report ran the check, else the latest report's status.
//!
//! Reports merge in the agent's order (its sequence numbers). A report delivered late
//! because the agent was cut off still comes in order and merges into the digest of the
//! day it was made; one that comes out of order makes the caller rebuild that day's
//! digest from its reports in order, so the digest never depends on arrival order.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use chrono_tz::Tz;
use uuid::Uuid;

use crate::evidence::{CheckStatus, Checks, IsolationResult, ProbeSample, Report, SampleRun};
use crate::period::local_day;

/// The timer slack a run tolerates between samples, beyond the probe interval.
const RUN_SLACK: Duration = Duration::seconds(1);

/// How far runs and clean isolation stretches may reach in a digest: within a local day
/// (day digests, which windows may start or end between) or within a local month (month
/// digests, read only for windows that cover the month whole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reach {
    Day,
    Month,
}

/// The stretch of time `t` falls in, for [`Reach`].
fn stretch(t: DateTime<Utc>, tz: Tz, reach: Reach) -> (i32, u32, u32) {
    let d = local_day(t, tz);
    match reach {
        Reach::Day => (d.year(), d.month(), d.day()),
        Reach::Month => (d.year(), d.month(), 0),
    }
}

/// The local day a report belongs to (by its creation time).
pub fn report_day(report: &Report, tz: Tz) -> NaiveDate {
    local_day(report.created_at, tz)
}

/// Rolls reports up into one digest per agent and local day, in the agents' order
/// (whatever order they are given in). A report id seen twice is merged once.
pub fn digests(reports: &[Report], tz: Tz) -> Vec<Report> {
    let mut sorted: Vec<&Report> = reports.iter().collect();
    sorted.sort_by(|a, b| (&a.agent_id, a.sequence, a.created_at).cmp(&(&b.agent_id, b.sequence, b.created_at)));
    sorted.dedup_by_key(|r| r.report_id);
    // Per unit too: a leak listener's one agent reports for many units.
    let mut by_key: BTreeMap<(String, String, NaiveDate), Report> = BTreeMap::new();
    for r in sorted {
        let digest = by_key
            .entry((r.unit_id.clone(), r.agent_id.clone(), report_day(r, tz)))
            .or_insert_with(|| empty_digest(r));
        merge(digest, r, tz);
    }
    by_key.into_values().collect()
}

/// Combines digests of consecutive days (a month's) into one digest per agent. Scoring
/// a window that covers all of those days reads the same from it as from the days.
pub fn combine(days: &[Report], tz: Tz) -> Vec<Report> {
    let mut sorted: Vec<&Report> = days.iter().collect();
    // Day order: an agent whose sequence restarted (state lost) still combines whole.
    sorted.sort_by(|a, b| (&a.agent_id, a.created_at, a.sequence).cmp(&(&b.agent_id, b.created_at, b.sequence)));
    let mut by_agent: BTreeMap<(String, String), Report> = BTreeMap::new();
    for d in sorted {
        let digest = by_agent
            .entry((d.unit_id.clone(), d.agent_id.clone()))
            .or_insert_with(|| empty_digest(d));
        merge_in_order(digest, d, tz, Reach::Month);
    }
    by_agent.into_values().collect()
}

/// An empty digest for one agent and day.
pub fn empty_digest(first: &Report) -> Report {
    let mut d = Report::empty(
        Uuid::nil(),
        &first.agent_id,
        &first.unit_id,
        0,
        first.created_at,
        first.host.clone(),
    );
    d.probes.interval_secs = first.probes.interval_secs;
    d
}

/// Merges `report` into `digest` (both of the same agent and local day) if it is newer
/// than every report merged so far (by the agent's sequence number) and returns true.
/// An older report (delivered out of order) is not merged and false is returned: the
/// caller rebuilds the digest from the day's reports in order ([`digests`]), because
/// the compression of clean isolation rounds holds only for appending.
pub fn merge(digest: &mut Report, report: &Report, tz: Tz) -> bool {
    if digest.rollup_of != 0 && report.sequence <= digest.sequence {
        return false;
    }
    merge_in_order(digest, report, tz, Reach::Day);
    true
}

/// Merges `report`, known to come after everything in `digest`.
fn merge_in_order(digest: &mut Report, report: &Report, tz: Tz, reach: Reach) {
    let first = digest.rollup_of == 0;
    digest.host = report.host.clone();
    digest.checks = merge_checks(&digest.checks, &report.checks);
    digest.created_at = if first {
        report.created_at
    } else {
        digest.created_at.min(report.created_at)
    };
    digest.sequence = digest.sequence.max(report.sequence);
    digest.spool_dropped = digest.spool_dropped.max(report.spool_dropped);
    digest.spool_rejected = digest.spool_rejected.max(report.spool_rejected);
    digest.rollup_of = digest.rollup_of.saturating_add(report.rollup_of.max(1));
    digest.probes.interval_secs = digest.probes.interval_secs.max(report.probes.interval_secs);

    merge_samples(digest, report, tz, reach);
    merge_outages(digest, report);
    merge_isolation(digest, report, tz, reach);
    merge_self_check(digest, report);
    merge_inventory(digest, report);
    for s in &report.services {
        match digest.services.iter_mut().find(|d| d.kind == s.kind && d.url == s.url) {
            Some(d) if s.at > d.at => *d = s.clone(),
            Some(_) => {}
            None => digest.services.push(s.clone()),
        }
    }
    for d in &report.daily_checks {
        if !digest.daily_checks.contains(d) {
            digest.daily_checks.push(d.clone());
        }
    }
    digest.daily_checks.sort_by_key(|d| d.at);
    for l in &report.leaks {
        if !digest.leaks.contains(l) {
            digest.leaks.push(l.clone());
        }
    }
    for p in &report.problems {
        if !digest.problems.contains(p) {
            digest.problems.push(p.clone());
        }
    }
}

/// `b` is the newer report's: a check that ran in either ran, else `b` says.
fn merge_checks(a: &Checks, b: &Checks) -> Checks {
    let pick = |x: CheckStatus, y: CheckStatus| {
        if x == CheckStatus::Ran || y == CheckStatus::Ran {
            CheckStatus::Ran
        } else {
            y
        }
    };
    Checks {
        reachability: pick(a.reachability, b.reachability),
        isolation: pick(a.isolation, b.isolation),
        self_check: pick(a.self_check, b.self_check),
        inventory: pick(a.inventory, b.inventory),
        services: pick(a.services, b.services),
        daily: pick(a.daily, b.daily),
        leak_detection: pick(a.leak_detection, b.leak_detection),
    }
}

fn merge_samples(digest: &mut Report, report: &Report, tz: Tz, reach: Reach) {
    // As scoring takes it: a report stored before ingest checked the range cannot make a
    // run span more than an agent's schedule allows.
    let interval = crate::bounds::clamp_interval(report.probes.interval_secs);
    let mut all: Vec<ProbeSample> = std::mem::take(&mut digest.probes.samples);
    all.extend(report.probes.samples.iter().map(|s| {
        let mut s = s.clone();
        if s.run.is_none() {
            s.run = Some(SampleRun {
                last: s.at,
                count: 1,
                interval_secs: interval,
            });
        }
        s
    }));
    all.sort_by(|a, b| {
        (a.target.as_str(), a.role as u8, a.kind as u8, a.at).cmp(&(
            b.target.as_str(),
            b.role as u8,
            b.kind as u8,
            b.at,
        ))
    });
    let mut out: Vec<ProbeSample> = Vec::with_capacity(all.len());
    for s in all {
        if let Some(prev) = out.last_mut()
            && joins(prev, &s, tz, reach)
        {
            let (Some(p), Some(n)) = (prev.run.as_mut(), s.run) else {
                continue;
            };
            p.last = p.last.max(n.last);
            p.count = p.count.saturating_add(n.count);
            prev.rtt_ms = None;
            continue;
        }
        out.push(s);
    }
    digest.probes.samples = out;
}

/// Whether `next` continues the run `prev` (sorted by target, then time).
fn joins(prev: &ProbeSample, next: &ProbeSample, tz: Tz, reach: Reach) -> bool {
    let (Some(p), Some(n)) = (prev.run, next.run) else {
        return false;
    };
    prev.target == next.target
        && prev.role == next.role
        && prev.kind == next.kind
        && prev.ok == next.ok
        && p.interval_secs == n.interval_secs
        && next.at >= p.last
        && next.at - p.last <= Duration::seconds(i64::from(p.interval_secs)) + RUN_SLACK
        && stretch(prev.at, tz, reach) == stretch(n.last, tz, reach)
}

fn merge_outages(digest: &mut Report, report: &Report) {
    for o in &report.outages {
        match digest
            .outages
            .iter_mut()
            .find(|d| d.target == o.target && d.start == o.start)
        {
            Some(d) => {
                if o.end.is_some() {
                    d.end = d.end.max(o.end);
                }
            }
            None => digest.outages.push(o.clone()),
        }
    }
    digest
        .outages
        .sort_by(|a, b| (a.start, &a.target).cmp(&(b.start, &b.target)));
}

fn merge_isolation(digest: &mut Report, report: &Report, tz: Tz, reach: Reach) {
    let mut rounds: BTreeMap<DateTime<Utc>, Vec<IsolationResult>> = BTreeMap::new();
    for r in digest.isolation.drain(..).chain(report.isolation.iter().cloned()) {
        let round = rounds.entry(r.at).or_default();
        if !round.contains(&r) {
            round.push(r);
        }
    }
    let rounds: Vec<(DateTime<Utc>, Vec<IsolationResult>)> = rounds.into_iter().collect();
    let clean = |i: usize| !rounds[i].1.iter().any(|r| r.reached);
    let mut out = Vec::new();
    for i in 0..rounds.len() {
        if clean(i) {
            let here = stretch(rounds[i].0, tz, reach);
            let same_stretch = |j: usize| clean(j) && stretch(rounds[j].0, tz, reach) == here;
            let inner = i > 0 && same_stretch(i - 1) && i + 1 < rounds.len() && same_stretch(i + 1);
            if inner {
                continue;
            }
            // One result stands for a clean round.
            if let Some(first) = rounds[i].1.first() {
                out.push(first.clone());
            }
        } else {
            out.extend(rounds[i].1.iter().cloned());
        }
    }
    digest.isolation = out;
}

fn merge_self_check(digest: &mut Report, report: &Report) {
    let Some(new) = &report.self_check else {
        return;
    };
    let Some(old) = digest.self_check.as_mut() else {
        digest.self_check = Some(new.clone());
        return;
    };
    let mut findings = old.findings.clone();
    for f in &new.findings {
        if !findings.iter().any(|g| g.code == f.code && g.interface == f.interface) {
            findings.push(f.clone());
        }
    }
    // The time of the earliest self-check with a finding, else of the latest check.
    let at = match (old.findings.is_empty(), new.findings.is_empty()) {
        (false, false) => old.at.min(new.at),
        (false, true) => old.at,
        (true, false) => new.at,
        (true, true) => old.at.max(new.at),
    };
    if new.at > old.at || old.interfaces.is_empty() {
        old.interfaces = new.interfaces.clone();
        old.routes = new.routes.clone();
        old.ip_forwarding = new.ip_forwarding;
    }
    old.at = at;
    old.findings = findings;
}

fn merge_inventory(digest: &mut Report, report: &Report) {
    for o in &report.inventory {
        let key_mac = o.mac.as_ref().map(|m| m.to_ascii_lowercase());
        match digest
            .inventory
            .iter_mut()
            .find(|d| d.ip == o.ip && d.mac.as_ref().map(|m| m.to_ascii_lowercase()) == key_mac)
        {
            Some(d) => {
                d.first_seen = d.first_seen.min(o.first_seen);
                d.last_seen = d.last_seen.max(o.last_seen);
                if d.vendor.is_none() {
                    d.vendor.clone_from(&o.vendor);
                }
                for h in &o.how {
                    if !d.how.contains(h) {
                        d.how.push(*h);
                    }
                }
            }
            None => digest.inventory.push(o.clone()),
        }
    }
}

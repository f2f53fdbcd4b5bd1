//! 三.3 物理隔离: internet canaries reached from the private LAN.
//!
//! Isolation results sharing one `at` form a round. A round with any canary reached is
//! a breach; it is confirmed when the `confirm_consecutive` rounds ending with it are
//! all breaches. Deducted per calendar day with a confirmed breach.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};

use super::{Ctx, Evidence, Outcome, pts};
use crate::evidence::{IsolationProtocol, IsolationResult};
use crate::period::local_day;
use crate::rubric::IsolationRule;

fn protocol(p: IsolationProtocol) -> &'static str {
    match p {
        IsolationProtocol::Icmp => "icmp",
        IsolationProtocol::Tcp => "tcp",
        IsolationProtocol::Dns => "dns",
    }
}

fn breach_evidence(round: &[&IsolationResult]) -> Vec<Evidence> {
    round
        .iter()
        .filter(|r| r.reached)
        .map(|r| Evidence::Breach {
            at: r.at,
            canary: r.canary.clone(),
            protocol: protocol(r.protocol).to_string(),
            via_interface: r.via_interface.clone(),
            next_hop: r.next_hop.clone(),
        })
        .collect()
}

pub(super) fn score(ctx: &Ctx<'_>, rule: &IsolationRule, max: f64) -> Outcome {
    let mut rounds: BTreeMap<DateTime<Utc>, Vec<&IsolationResult>> = BTreeMap::new();
    for r in ctx.reports.iter().flat_map(|r| r.isolation.iter()) {
        if ctx.contains(r.at) {
            rounds.entry(r.at).or_default().push(r);
        }
    }
    if rounds.is_empty() {
        return Outcome::no_evidence(max, "互联网隔离检测", "the internet isolation check", "isolation");
    }
    let rounds: Vec<(DateTime<Utc>, Vec<&IsolationResult>)> = rounds.into_iter().collect();
    let breached: Vec<bool> = rounds.iter().map(|(_, rs)| rs.iter().any(|r| r.reached)).collect();
    let need = rule.confirm_consecutive.max(1) as usize;
    let mut days: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    let mut confirmed_round = vec![false; rounds.len()];
    for i in 0..rounds.len() {
        if i + 1 >= need && breached[i + 1 - need..=i].iter().all(|b| *b) {
            for c in &mut confirmed_round[i + 1 - need..=i] {
                *c = true;
            }
            days.entry(local_day(rounds[i].0, ctx.tz)).or_insert(i);
        }
    }
    let mut out = Outcome::default();
    for (day, i) in days {
        out.deduct(
            rule.per_breach_day,
            format!(
                "{day} 专网局域网可访问互联网 (连续 {need} 次检测确认, 扣 {} 分)",
                pts(rule.per_breach_day)
            ),
            format!("{day}: the private LAN reached the internet (confirmed by {need} consecutive checks)"),
            breach_evidence(&rounds[i].1),
        );
    }
    let unconfirmed: Vec<Evidence> = rounds
        .iter()
        .zip(&breached)
        .zip(&confirmed_round)
        .filter(|((_, b), c)| **b && !**c)
        .flat_map(|((r, _), _)| breach_evidence(&r.1))
        .collect();
    if !unconfirmed.is_empty() {
        out.warn(
            "单次检测发现可访问互联网, 未被下一次检测确认, 请核查".into(),
            "a single check reached the internet without confirmation by the next; please verify".into(),
            unconfirmed,
        );
    }
    out
}

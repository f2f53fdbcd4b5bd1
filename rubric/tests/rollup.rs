//! Daily roll-ups score exactly like the raw reports they merge: random days of probe
//! samples with jitter, gaps and outages, isolation rounds with breaches, reports merged
//! in order, reversed and shuffled (a late delivery), scored for each day, the whole
//! span and a period still under way.

use chrono::{DateTime, Duration, TimeZone, Utc};
use kaohe_rubric::evidence::{
    CheckStatus, HostFacts, IsolationProtocol, IsolationResult, Observation, Outage, ProbeKind, ProbeRole, ProbeSample,
    Report,
};
use kaohe_rubric::period::Period;
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::rollup::{combine, digests, report_day};
use kaohe_rubric::{Rubric, ScoreInput, score};
use uuid::Uuid;

/// A small deterministic generator (xorshift), so a failure is reproducible by seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn chance(&mut self, p: f64) -> bool {
        (self.next() % 10_000) as f64 / 10_000.0 < p
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const REGISTRY: &str =
    "类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址\n设备,核心交换机,10.9.0.2,02:00:00:00:09:02,张三,机房,是,\n";

fn day0() -> DateTime<Utc> {
    // 2026-11-01 00:00 Asia/Shanghai.
    Utc.with_ymd_and_hms(2026, 10, 31, 16, 0, 0).single().expect("time")
}

/// Three days of ten-minute reports from one agent, with trouble drawn from `seed`.
fn reports(seed: u64) -> Vec<Report> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let interval = 60;
    let mut out = Vec::new();
    let mut t = day0() - Duration::minutes(20);
    let end = day0() + Duration::days(3) + Duration::minutes(20);
    let mut seq = 0;
    let mut down_until: Option<DateTime<Utc>> = None;
    let mut breach_streak = 0;
    while t < end {
        seq += 1;
        let created = t + Duration::minutes(10) + Duration::seconds(2);
        let mut r = Report::empty(
            Uuid::from_u128(u128::from(seq)),
            "agent-1",
            "nx/test",
            seq,
            created,
            HostFacts {
                hostname: "room-1".into(),
                os: "linux".into(),
                boot_time: None,
                agent_version: "test".into(),
                agent_started_at: None,
            },
        );
        r.checks.reachability = CheckStatus::Ran;
        r.checks.isolation = CheckStatus::Ran;
        r.checks.inventory = CheckStatus::Ran;
        r.checks.self_check = CheckStatus::Ran;
        r.probes.interval_secs = interval;
        for k in 0..10 {
            let at = t + Duration::seconds(k * 60) + Duration::milliseconds((rng.below(600) as i64) - 300);
            if down_until.is_none() && rng.chance(0.004) {
                let until = at + Duration::minutes(rng.below(400) as i64 + 1);
                r.outages.push(Outage {
                    target: "10.9.0.1".into(),
                    start: at,
                    end: None,
                });
                down_until = Some(until);
            }
            let hub_down = down_until.is_some_and(|u| at < u);
            if !hub_down && let Some(u) = down_until.take() {
                r.outages.push(Outage {
                    target: "10.9.0.1".into(),
                    start: u - Duration::minutes(1),
                    end: Some(at),
                });
            }
            // A lost sample now and then (the agent was busy or restarted): a gap.
            if rng.chance(0.03) {
                continue;
            }
            for (target, role, ok) in [
                ("10.9.0.1", ProbeRole::Upstream, !hub_down && !rng.chance(0.01)),
                ("10.0.0.10:8443", ProbeRole::Upstream, !hub_down && !rng.chance(0.05)),
                ("10.9.0.2", ProbeRole::Device, !rng.chance(0.1)),
            ] {
                r.probes.samples.push(ProbeSample {
                    target: target.into(),
                    kind: if target.contains(':') {
                        ProbeKind::Tcp
                    } else {
                        ProbeKind::Icmp
                    },
                    role,
                    at,
                    ok,
                    rtt_ms: ok.then_some(1.5),
                    error: (!ok).then(|| "timeout".into()),
                    run: None,
                });
            }
        }
        for k in 0..2 {
            let at = t + Duration::minutes(k * 5);
            if breach_streak > 0 || rng.chance(0.02) {
                breach_streak = if breach_streak > 0 {
                    breach_streak - 1
                } else {
                    rng.below(4)
                };
            }
            for canary in ["198.51.100.10", "203.0.113.10"] {
                r.isolation.push(IsolationResult {
                    at,
                    canary: canary.into(),
                    protocol: IsolationProtocol::Icmp,
                    reached: breach_streak > 0 && canary.starts_with("198"),
                    via_interface: None,
                    next_hop: None,
                    error: None,
                });
            }
        }
        r.inventory.push(Observation {
            ip: "10.9.0.2".into(),
            mac: Some("02:00:00:00:09:02".into()),
            vendor: None,
            first_seen: t,
            last_seen: created,
            how: Vec::new(),
        });
        if rng.chance(0.05) {
            r.inventory.push(Observation {
                ip: "10.9.0.66".into(),
                mac: Some("02:00:00:00:09:66".into()),
                vendor: None,
                first_seen: t,
                last_seen: created,
                how: Vec::new(),
            });
        }
        out.push(r);
        t += Duration::minutes(10);
    }
    out
}

fn sheet_json(rubric: &Rubric, reports: &[Report], period: Period, as_of: Option<DateTime<Utc>>) -> String {
    let mut profile = UnitProfile::bare("nx/test");
    profile.maintainer = Some("张三".into());
    profile.responder = Some("李四".into());
    let registry = Registry::from_csv(REGISTRY.as_bytes(), "registry.csv").expect("registry");
    let sheet = score(&ScoreInput {
        rubric,
        profile: &profile,
        registry: &registry,
        reports,
        period,
        as_of,
    });
    serde_json::to_string_pretty(&sheet).expect("json")
}

/// What the collector loads to score a window: the digests of the window's local days,
/// and the raw reports made in the hour after it (they still carry its last samples).
fn window_inputs(
    digests: &[Report],
    raw: &[Report],
    period: Period,
    as_of: Option<DateTime<Utc>>,
    tz: chrono_tz::Tz,
) -> Vec<Report> {
    let (start, end) = period.bounds(tz);
    let end = as_of.map_or(end, |t| t.min(end));
    let first = start.with_timezone(&tz).date_naive();
    let last = (end - Duration::nanoseconds(1)).with_timezone(&tz).date_naive();
    let mut out: Vec<Report> = digests
        .iter()
        .filter(|d| (first..=last).contains(&report_day(d, tz)))
        .cloned()
        .collect();
    out.extend(
        raw.iter()
            .filter(|r| r.created_at >= end && r.created_at < end + Duration::hours(1))
            .cloned(),
    );
    out
}

#[test]
fn roll_ups_score_exactly_like_the_raw_reports_in_any_merge_order() {
    let rubric = Rubric::default_rubric();
    let tz = rubric.timezone;
    let periods: Vec<(Period, Option<DateTime<Utc>>)> = vec![
        ("2026-11-01".parse().expect("day"), None),
        ("2026-11-02".parse().expect("day"), None),
        ("2026-11-03".parse().expect("day"), None),
        ("2026-11".parse().expect("month"), Some(day0() + Duration::days(3))),
        ("2026-11-01..2026-11-03".parse().expect("days"), None),
    ];
    let mut deducted = 0;
    for seed in 1..=12 {
        let raw = reports(seed);
        let mut reversed = raw.clone();
        reversed.reverse();
        let mut shuffled = raw.clone();
        let mut rng = Rng(seed + 77);
        for i in (1..shuffled.len()).rev() {
            shuffled.swap(i, rng.below(i as u64 + 1) as usize);
        }
        for (period, as_of) in &periods {
            let want = sheet_json(&rubric, &raw, *period, *as_of);
            if want.contains("\"points\": 0.") || want.contains("扣") {
                deducted += 1;
            }
            for (name, order) in [("in order", &raw), ("reversed", &reversed), ("shuffled", &shuffled)] {
                let all = digests(order, tz);
                assert!(all.len() <= 5, "one digest per local day, got {}", all.len());
                let rolled = window_inputs(&all, order, *period, *as_of, tz);
                let samples: usize = all.iter().map(|d| d.probes.samples.len()).sum();
                let raw_samples: usize = raw.iter().map(|r| r.probes.samples.len()).sum();
                assert!(
                    samples * 3 < raw_samples,
                    "runs compress samples: {samples} of {raw_samples}"
                );
                let got = sheet_json(&rubric, &rolled, *period, *as_of);
                // A month's roll-up: the window's days combined into one digest.
                let (start, end) = period.bounds(tz);
                if as_of.is_none() && end - start > Duration::days(1) {
                    let tail: Vec<Report> = rolled.iter().filter(|r| r.rollup_of == 0).cloned().collect();
                    let days: Vec<Report> = rolled.iter().filter(|r| r.rollup_of > 0).cloned().collect();
                    let mut combined = combine(&days, tz);
                    assert_eq!(combined.len(), 1, "one agent, one combined digest");
                    combined.extend(tail);
                    let got = sheet_json(&rubric, &combined, *period, *as_of);
                    assert!(
                        got == want,
                        "seed {seed}, period {period}: the combined digest scores differently"
                    );
                }
                if got != want {
                    let line = want.lines().zip(got.lines()).position(|(a, b)| a != b).unwrap_or(0);
                    panic!(
                        "seed {seed}, period {period}, merged {name}: the roll-up's sheet differs at line {}:\n  raw:    {}\n  rolled: {}",
                        line + 1,
                        want.lines().nth(line).unwrap_or(""),
                        got.lines().nth(line).unwrap_or("")
                    );
                }
            }
        }
    }
    assert!(
        deducted > 10,
        "the random days should cost points now and then ({deducted})"
    );
}

#[test]
fn a_listeners_reports_for_two_units_roll_up_apart() {
    let tz = Rubric::default_rubric().timezone;
    let mut a = reports(3).remove(0);
    a.agent_id = "listener".into();
    a.unit_id = "nx/a".into();
    let mut b = a.clone();
    b.report_id = Uuid::from_u128(999);
    b.unit_id = "nx/b".into();
    b.sequence += 1;
    let rolled = digests(&[a, b], tz);
    let units: Vec<&str> = rolled.iter().map(|d| d.unit_id.as_str()).collect();
    assert_eq!(units, vec!["nx/a", "nx/b"], "one digest per unit, never a mix");
}

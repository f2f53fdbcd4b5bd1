//! 三.2 while the period is under way: the last hour's data may still be on its way, so
//! the time after the last sample is not counted yet; beyond an hour it counts as down.

use chrono::{DateTime, Duration, TimeZone, Utc};
use kaohe_rubric::evidence::{CheckStatus, HostFacts, ProbeKind, ProbeRole, ProbeSample, Report};
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::{Period, Rubric, ScoreInput, score};

fn t0() -> DateTime<Utc> {
    // 2026-11-02 10:00:00.250 Asia/Shanghai: enrolment, a quarter second before the first probe.
    Utc.with_ymd_and_hms(2026, 11, 2, 2, 0, 0).single().expect("time") + Duration::milliseconds(250)
}

/// Ten minutes of probes every 30 s, all answered.
fn ten_minutes_up() -> Report {
    let mut r = Report::empty(
        uuid::Uuid::nil(),
        "a",
        "nx/t",
        1,
        t0() + Duration::minutes(10),
        HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "t".into(),
            agent_started_at: None,
        },
    );
    r.checks.reachability = CheckStatus::Ran;
    r.probes.interval_secs = 30;
    for i in 0..20 {
        r.probes.samples.push(ProbeSample {
            target: "10.9.0.1".into(),
            kind: ProbeKind::Icmp,
            role: ProbeRole::Upstream,
            at: t0() + Duration::milliseconds(400) + Duration::seconds(30 * i),
            ok: true,
            rtt_ms: Some(1.0),
            error: None,
            run: None,
        });
    }
    r
}

fn uptime_score(as_of: DateTime<Utc>) -> f64 {
    let rubric = Rubric::default_rubric();
    let mut profile = UnitProfile::bare("nx/t");
    profile.enrolled_at = Some(t0());
    let sheet = score(&ScoreInput {
        rubric: &rubric,
        profile: &profile,
        registry: &Registry::default(),
        reports: &[ten_minutes_up()],
        period: "2026-11".parse::<Period>().expect("month"),
        as_of: Some(as_of),
    });
    sheet
        .items
        .iter()
        .find(|i| i.id == "三.2")
        .and_then(|i| i.score)
        .expect("三.2 scored")
}

#[test]
fn a_unit_whose_last_batch_is_still_on_its_way_keeps_full_availability() {
    let full = 5.0;
    // Twelve minutes after enrolment: the last 2 minutes may still be in the agent's batch.
    assert_eq!(uptime_score(t0() + Duration::minutes(12)), full);
    // 40 minutes on: still within the hour a report may take.
    assert_eq!(uptime_score(t0() + Duration::minutes(40)), full);
}

#[test]
fn silence_older_than_an_hour_counts_as_down() {
    // Two hours on, nothing since minute 10: 10 min up, 50 min counted down, an hour pending.
    let s = uptime_score(t0() + Duration::hours(2));
    assert_eq!(s, 0.0, "16.7% availability is far below the 95% floor");
}

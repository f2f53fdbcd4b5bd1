//! One report cannot buy a month (finding F8 of issue 10): a probe interval no agent's
//! schedule allows is clamped in scoring, so a single sample stands for at most
//! `sample_tolerance` × one hour, whatever the report says.

use chrono::{DateTime, Duration, TimeZone, Utc};
use kaohe_rubric::evidence::{CheckStatus, HostFacts, ProbeKind, ProbeRole, ProbeSample, Report};
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::{Period, Rubric, ScoreInput, score};

fn t0() -> DateTime<Utc> {
    // 2026-11-01 00:00 Asia/Shanghai: enrolled at the start of the month.
    Utc.with_ymd_and_hms(2026, 10, 31, 16, 0, 0).single().expect("time")
}

/// One report with one answered sample a minute after enrolment.
fn one_sample(interval_secs: u32) -> Report {
    let mut r = Report::empty(
        uuid::Uuid::nil(),
        "a",
        "nx/t",
        1,
        t0() + Duration::minutes(1),
        HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "t".into(),
            agent_started_at: None,
        },
    );
    r.checks.reachability = CheckStatus::Ran;
    r.probes.interval_secs = interval_secs;
    r.probes.samples.push(ProbeSample {
        target: "10.9.0.1".into(),
        kind: ProbeKind::Icmp,
        role: ProbeRole::Upstream,
        at: t0() + Duration::minutes(1),
        ok: true,
        rtt_ms: Some(1.0),
        error: None,
        run: None,
    });
    r
}

/// 三.2 for November, scored at the end of the month.
fn november_uptime(report: Report) -> (f64, String) {
    let rubric = Rubric::default_rubric();
    let mut profile = UnitProfile::bare("nx/t");
    profile.enrolled_at = Some(t0());
    let sheet = score(&ScoreInput {
        rubric: &rubric,
        profile: &profile,
        registry: &Registry::default(),
        reports: &[report],
        period: "2026-11".parse::<Period>().expect("month"),
        as_of: Some(t0() + Duration::days(31)),
    });
    let item = sheet.items.iter().find(|i| i.id == "三.2").expect("三.2");
    let evidence = serde_json::to_string(&item.deductions).expect("json");
    (item.score.expect("scored"), evidence)
}

#[test]
fn a_report_claiming_a_four_billion_second_interval_does_not_buy_the_month() {
    let (score, evidence) = november_uptime(one_sample(u32::MAX));
    assert_eq!(score, 0.0, "one sample is not a month of availability: {evidence}");
    // The same as a report that claims the longest interval any agent may have.
    assert_eq!(november_uptime(one_sample(3600)).0, 0.0);
}

#[test]
fn intervals_an_agent_may_have_are_left_as_they_are() {
    assert_eq!(kaohe_rubric::bounds::clamp_interval(30), 30);
    assert_eq!(kaohe_rubric::bounds::clamp_interval(0), 1);
    assert_eq!(kaohe_rubric::bounds::clamp_interval(u32::MAX), 3600);
}

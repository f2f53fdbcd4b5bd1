//! 三.4: one host found by several probes (forwarding by its MAC, the leak listener by its
//! IP only) is one bridging host, with all its evidence.

use chrono::{Duration, TimeZone, Utc};
use kaohe_rubric::evidence::{
    CheckStatus, HostFacts, HowSeen, LeakFinding, LeakMethod, Observation, Report, SelfCheck,
};
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::{Period, Rubric, ScoreInput, score};

#[test]
fn a_host_found_by_the_agent_and_by_the_listener_counts_once() {
    let t = Utc.with_ymd_and_hms(2026, 11, 2, 2, 0, 0).single().expect("time");
    let host = || HostFacts {
        hostname: "room".into(),
        os: "linux".into(),
        boot_time: None,
        agent_version: "t".into(),
        agent_started_at: None,
    };
    let mut agent = Report::empty(uuid::Uuid::nil(), "agent", "nx/b3", 1, t, host());
    agent.checks.self_check = CheckStatus::Ran;
    agent.checks.inventory = CheckStatus::Ran;
    agent.checks.leak_detection = CheckStatus::Ran;
    agent.self_check = Some(SelfCheck {
        at: t,
        interfaces: Vec::new(),
        routes: Vec::new(),
        ip_forwarding: false,
        findings: Vec::new(),
    });
    agent.inventory.push(Observation {
        ip: "10.3.0.254".into(),
        mac: Some("02:6b:68:00:17:00".into()),
        vendor: None,
        first_seen: t - Duration::minutes(5),
        last_seen: t,
        how: vec![HowSeen::ArpSweep],
    });
    agent.leaks.push(LeakFinding {
        at: t,
        ip: "10.3.0.254".into(),
        mac: Some("02:6b:68:00:17:00".into()),
        method: LeakMethod::Forwarding,
        protocol: "icmp".into(),
        detail: "time exceeded".into(),
    });
    let mut listener = Report::empty(uuid::Uuid::from_u128(2), "listener", "nx/b3", 1, t, host());
    listener.checks.leak_detection = CheckStatus::Ran;
    for protocol in ["icmp", "udp"] {
        listener.leaks.push(LeakFinding {
            at: t,
            ip: "10.3.0.254".into(),
            mac: None,
            method: LeakMethod::SpoofedSource,
            protocol: protocol.into(),
            detail: "echo reply reached the listener".into(),
        });
    }
    let rubric = Rubric::default_rubric();
    let sheet = score(&ScoreInput {
        rubric: &rubric,
        profile: &UnitProfile::bare("nx/b3"),
        registry: &Registry::default(),
        reports: &[agent, listener],
        period: "2026-11-02".parse::<Period>().expect("day"),
        as_of: None,
    });
    let item = sheet.items.iter().find(|i| i.id == "三.4").expect("三.4");
    assert_eq!(
        item.deductions.len(),
        1,
        "one host, one deduction: {:#?}",
        item.deductions
    );
    let evidence = serde_json::to_string(&item.deductions[0].evidence).expect("json");
    assert!(
        evidence.contains("forwarding") && evidence.contains("spoofed_source"),
        "both ways of finding it are evidence: {evidence}"
    );
}

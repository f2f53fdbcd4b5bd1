//! Golden evidence examples (rubric/testdata/evidence/): the wire contract of schema v1.

use kaohe_rubric::evidence::{CheckStatus, EvidenceError, Report};

fn golden(name: &str) -> String {
    let path = format!("{}/testdata/evidence/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

#[test]
fn full_report_round_trips_without_losing_a_field() {
    let text = golden("report-full.json");
    let report = Report::from_json(&text).expect("golden report parses");
    let again = serde_json::to_value(&report).expect("serialises");
    let original: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(
        again, original,
        "serialising the parsed report must give the golden JSON back"
    );
    assert_eq!(Report::from_value(again).expect("parses again"), report);
    // Every section of the schema is exercised by the golden file.
    assert!(!report.probes.samples.is_empty() && !report.outages.is_empty());
    assert!(report.outages.iter().any(|o| o.end.is_none()), "an ongoing outage");
    assert!(report.isolation.iter().any(|i| i.reached));
    assert!(report.self_check.as_ref().is_some_and(|s| !s.findings.is_empty()));
    assert!(report.inventory.iter().any(|o| o.vendor.is_some()));
    assert!(report.services.iter().any(|s| s.tls_error.is_some()));
    assert!(
        report
            .daily_checks
            .iter()
            .any(|d| d.portals.as_ref().is_some_and(|p| p.failed > 0))
    );
    assert!(!report.leaks.is_empty());
}

#[test]
fn empty_config_report_says_every_check_is_not_configured() {
    let report = Report::from_json(&golden("report-empty-config.json")).expect("parses");
    let c = &report.checks;
    for s in [
        c.reachability,
        c.isolation,
        c.self_check,
        c.inventory,
        c.services,
        c.daily,
        c.leak_detection,
    ] {
        assert_eq!(s, CheckStatus::NotConfigured);
    }
    let again = serde_json::to_value(&report).expect("serialises");
    assert_eq!(Report::from_value(again).expect("parses again"), report);
}

#[test]
fn unknown_extra_fields_from_a_newer_agent_are_accepted() {
    let report = Report::from_json(&golden("report-extra-fields.json")).expect("extra fields are fine");
    assert_eq!(report.unit_id, "lab/new-unit");
}

#[test]
fn another_schema_version_is_rejected_saying_which_was_expected() {
    let err = Report::from_json(&golden("report-v2.json")).expect_err("v2 is not v1");
    assert!(
        matches!(err, EvidenceError::WrongVersion { expected: 1, .. }),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains("schema_version 2") && msg.contains("expected 1"), "{msg}");
}

#[test]
fn missing_check_status_is_an_error_not_a_pass() {
    let mut v: serde_json::Value = serde_json::from_str(&golden("report-empty-config.json")).expect("json");
    v["checks"].as_object_mut().expect("object").remove("isolation");
    let err = Report::from_value(v).expect_err("a report must say whether isolation ran");
    assert!(err.to_string().contains("isolation"), "{err}");
}

#[test]
fn truncated_json_is_a_clear_error() {
    let text = golden("report-full.json");
    let mut cut = text.len() / 2;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let err = Report::from_json(&text[..cut]).expect_err("truncated");
    assert!(matches!(err, EvidenceError::Json(_)), "{err:?}");
}

#[test]
fn a_field_of_the_wrong_type_is_named_with_its_line_and_column() {
    let text = golden("report-empty-config.json").replacen("\"agent_id\": \"agent-new\"", "\"agent_id\": 5", 1);
    let err = Report::from_json(&text).expect_err("agent_id must be a string");
    let msg = err.to_string();
    assert!(msg.contains("line 4 column"), "{msg}");
    assert!(msg.contains("expected a string"), "{msg}");
}

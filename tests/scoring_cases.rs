//! Data-driven scoring tests: every folder under `tests/cases/` is one unit (registry,
//! profile, evidence) with the scores it must get (`case.toml`, checked by hand) and a
//! snapshot of the whole sheet (`expected.json`). `KAOHE_UPDATE_EXPECT=1 cargo test
//! --test scoring_cases` rewrites the snapshots; review the diff before committing.
//! `tests/cases/generate.py` makes the evidence.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaohe_collector::offline::{PeriodChoice, ScoreRequest, load_inputs, score_files};
use kaohe_rubric::ScoreInput;
use kaohe_rubric::scoring::{Sheet, Status};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    period: String,
    #[serde(default)]
    as_of: Option<String>,
    /// Evidence files relative to the case folder; default `evidence.json`.
    #[serde(default)]
    evidence: Option<Vec<String>>,
    #[serde(default)]
    expect_error: Option<String>,
    #[serde(default)]
    scores: BTreeMap<String, f64>,
    #[serde(default)]
    reasons: BTreeMap<String, String>,
}

fn cases_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("cases")
}

fn run_case(dir: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(dir.join("case.toml")).map_err(|e| format!("case.toml: {e}"))?;
    let case: Case = toml::from_str(&text).map_err(|e| format!("case.toml: {e}"))?;
    let evidence = match &case.evidence {
        Some(list) => list.iter().map(|p| dir.join(p)).collect(),
        None => vec![dir.join("evidence.json")],
    };
    let req = ScoreRequest {
        rubric: None,
        registry: dir.join("registry.csv"),
        unit: Some(dir.join("unit.toml")),
        evidence,
        period: case.period.parse::<PeriodChoice>().map_err(|e| e.to_string())?,
        as_of: match &case.as_of {
            Some(t) => Some(t.parse().map_err(|e| format!("as_of: {e}"))?),
            None => None,
        },
    };
    let result = score_files(&req);
    if let Some(want) = &case.expect_error {
        return match result {
            Ok(_) => Err(format!("expected an error containing {want:?}, but it scored")),
            Err(e) if e.to_string().contains(want.as_str()) => Ok(()),
            Err(e) => Err(format!("expected an error containing {want:?}, got: {e}")),
        };
    }
    let sheet = result.map_err(|e| format!("scoring failed: {e}"))?;
    check_invariants(&sheet)?;
    for (id, want) in &case.scores {
        let item = sheet
            .items
            .iter()
            .find(|i| &i.id == id)
            .ok_or(format!("no item {id}"))?;
        let got = item.score.ok_or(format!("{id} has no score"))?;
        if (got - want).abs() > 1e-9 {
            return Err(format!(
                "{id}: score {got}, expected {want} ({})\n  deductions: {:#?}",
                case.description, item.deductions
            ));
        }
    }
    for (id, words) in &case.reasons {
        let item = sheet
            .items
            .iter()
            .find(|i| &i.id == id)
            .ok_or(format!("no item {id}"))?;
        if !item.deductions.iter().any(|d| d.reason_en.contains(words.as_str())) {
            return Err(format!("{id}: no deduction says {words:?}: {:#?}", item.deductions));
        }
    }
    check_rollups_score_the_same(&req, &sheet)?;
    let snapshot = serde_json::to_string_pretty(&sheet).map_err(|e| e.to_string())? + "\n";
    let path = dir.join("expected.json");
    if std::env::var_os("KAOHE_UPDATE_EXPECT").is_some() {
        std::fs::write(&path, &snapshot).map_err(|e| e.to_string())?;
        return Ok(());
    }
    let want = std::fs::read_to_string(&path)
        .map_err(|e| format!("{}: {e} (run with KAOHE_UPDATE_EXPECT=1 to create it)", path.display()))?;
    if want != snapshot {
        let line = want
            .lines()
            .zip(snapshot.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(want.lines().count().min(snapshot.lines().count()));
        return Err(format!(
            "sheet differs from expected.json at line {}:\n  expected: {}\n  got:      {}\n(rerun with KAOHE_UPDATE_EXPECT=1 and review the diff)",
            line + 1,
            want.lines().nth(line).unwrap_or(""),
            snapshot.lines().nth(line).unwrap_or("")
        ));
    }
    Ok(())
}

/// Scoring the daily roll-ups (merged in reverse, as a late delivery would) gives the
/// same sheet as scoring the raw reports: what the collector relies on.
fn check_rollups_score_the_same(req: &ScoreRequest, raw: &Sheet) -> Result<(), String> {
    let rubric = kaohe_rubric::Rubric::default_rubric();
    let inputs = load_inputs(req, &rubric).map_err(|e| e.to_string())?;
    let mut reversed = inputs.reports.clone();
    reversed.reverse();
    for order in [inputs.reports.clone(), reversed] {
        let digests = kaohe_rubric::rollup::digests(&order, inputs.tz);
        let rolled = kaohe_rubric::score(&ScoreInput {
            rubric: &rubric,
            profile: &inputs.profile,
            registry: &inputs.registry,
            reports: &digests,
            period: inputs.period,
            as_of: req.as_of,
        });
        let a = serde_json::to_string_pretty(raw).map_err(|e| e.to_string())?;
        let b = serde_json::to_string_pretty(&rolled).map_err(|e| e.to_string())?;
        if a != b {
            let line = a.lines().zip(b.lines()).position(|(x, y)| x != y).unwrap_or(0);
            return Err(format!(
                "scoring the roll-ups of {} reports ({} digests) differs at line {}:\n  raw:    {}\n  rolled: {}",
                inputs.reports.len(),
                digests.len(),
                line + 1,
                a.lines().nth(line).unwrap_or(""),
                b.lines().nth(line).unwrap_or("")
            ));
        }
    }
    Ok(())
}

/// What must hold for every sheet, whatever the case.
fn check_invariants(sheet: &Sheet) -> Result<(), String> {
    let rubric = kaohe_rubric::Rubric::default_rubric();
    let mut auto_sum = 0.0;
    for item in &sheet.items {
        let spec = rubric.item(&item.id).ok_or(format!("unknown item {}", item.id))?;
        match item.score {
            None => {
                if item.status != Status::Pending || item.pending_points != f64::from(item.points) {
                    return Err(format!("{}: a reviewer item must be pending with its points", item.id));
                }
            }
            Some(score) => {
                auto_sum += score;
                let max = spec.auto_points();
                if !(0.0..=max).contains(&score) {
                    return Err(format!("{}: score {score} outside 0..={max}", item.id));
                }
                let lost: f64 = item.deductions.iter().map(|d| d.points).sum();
                if (max - score - lost).abs() > 1e-6 {
                    return Err(format!(
                        "{}: lost {} but deductions add up to {lost}",
                        item.id,
                        max - score
                    ));
                }
            }
        }
        for d in &item.deductions {
            if d.evidence.is_empty() || d.reason_zh.is_empty() || d.reason_en.is_empty() {
                return Err(format!("{}: deduction without reason or evidence: {d:?}", item.id));
            }
        }
    }
    if (auto_sum - sheet.auto_points).abs() > 0.011 {
        return Err(format!(
            "auto_points {} != sum of item scores {auto_sum}",
            sheet.auto_points
        ));
    }
    Ok(())
}

#[test]
fn every_case_in_tests_cases_scores_as_expected() {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cases_dir())
        .expect("tests/cases exists")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.join("case.toml").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 10, "the case folder went missing: {dirs:?}");
    let mut failures = Vec::new();
    for dir in &dirs {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match run_case(dir) {
            Ok(()) => println!("case {name}: ok"),
            Err(e) => failures.push(format!("case {name}: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        dirs.len(),
        failures.join("\n\n")
    );
}

#[test]
fn perfect_unit_gets_26_of_27_automatic_points_with_the_machine_room_visit_pending() {
    let dir = cases_dir().join("perfect");
    let sheet = score_files(&ScoreRequest {
        rubric: None,
        registry: dir.join("registry.csv"),
        unit: Some(dir.join("unit.toml")),
        evidence: vec![dir.join("evidence.json")],
        period: "2026-11-01..2026-11-02".parse().expect("period"),
        as_of: None,
    })
    .expect("scores");
    assert_eq!(sheet.auto_points, 26.0);
    assert_eq!(sheet.auto_max, 26.0);
    // 73 points of sections 一, 四, 五, 六 and the reviewer point of 三.1.
    assert_eq!(sheet.pending_points, 74.0);
    let room = sheet.items.iter().find(|i| i.id == "三.1").expect("三.1");
    assert_eq!(
        (room.score, room.status, room.pending_points),
        (Some(2.0), Status::Pending, 1.0)
    );
}

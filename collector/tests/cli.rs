//! The `kaohe-collector` binary as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn collector(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kaohe-collector"))
        .args(args)
        .current_dir(root())
        .output()
        .expect("runs")
}

/// The collector with its data directory in `data`.
fn collector_in(data: &str, args: &[&str]) -> Output {
    let mut a = args.to_vec();
    a.extend(["--data-dir", data]);
    collector(&a)
}

fn stdout_json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("stdout is JSON")
}

#[test]
fn rubric_show_json_lists_six_sections_worth_100_points() {
    let v = stdout_json(&collector(&["rubric", "show", "--json"]));
    let sections = v["sections"].as_array().expect("sections[]");
    let ids: Vec<&str> = sections.iter().filter_map(|s| s["id"].as_str()).collect();
    assert_eq!(ids, ["一", "二", "三", "四", "五", "六"]);
    let total: u64 = sections.iter().filter_map(|s| s["points"].as_u64()).sum();
    assert_eq!(total, 100);
    let item = &sections[2]["items"][3];
    assert_eq!(item["id"], "三.4");
    assert_eq!(item["points"], 5);
    assert_eq!(item["scoring"], "auto");
    assert!(item["text_zh"].as_str().is_some_and(|t| t.contains("串联")));
    assert!(item["text_en"].as_str().is_some_and(|t| !t.is_empty()));
    for s in sections {
        assert!(s["title_zh"].is_string() && s["title_en"].is_string());
    }
}

#[test]
fn rubric_show_reads_another_file_and_rejects_a_bad_one_naming_the_line() {
    let dir = std::env::temp_dir().join(format!("kaohe-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp");
    let text = kaohe_rubric::rubric::DEFAULT_RUBRIC_TOML.replacen("points = 35", "points = 36", 1);
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, text).expect("write");
    let out = collector(&["rubric", "show", "--rubric", bad.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(65));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.toml") && err.contains("行") && err.contains("sections[3].points"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn score_json_of_the_example_unit_has_the_documented_shape() {
    let v = stdout_json(&collector(&[
        "score",
        "--registry",
        "deploy/example/registry.csv",
        "--unit",
        "deploy/example/unit.toml",
        "--evidence",
        "deploy/example/reports",
        "--json",
    ]));
    assert_eq!(v["unit"]["id"], "ningxia/example/demo-station");
    assert_eq!(v["period"]["label"], "2026-11-16..2026-11-22");
    let auto = v["auto_points"].as_f64().expect("auto_points");
    assert!(auto > 0.0 && auto < 26.0, "the example has planted faults: {auto}");
    let items = v["items"].as_array().expect("items[]");
    let unregistered = items
        .iter()
        .find(|i| i["id"] == "二.1")
        .and_then(|i| i["deductions"].as_array())
        .and_then(|d| d.first())
        .expect("二.1 has a deduction");
    assert!(unregistered["reason_zh"].as_str().is_some_and(|r| r.contains("未备案")));
    assert_eq!(unregistered["evidence"][0]["ip"], "10.1.0.99");
    for i in items {
        for key in ["id", "points", "score", "status", "deductions"] {
            assert!(i.get(key).is_some(), "item lacks {key}: {i}");
        }
    }
    let reviewer = items.iter().find(|i| i["id"] == "一.1").expect("一.1");
    assert_eq!(reviewer["status"], "pending");
    assert!(
        reviewer["score"].is_null(),
        "a reviewer item is never given marks by default"
    );
}

#[test]
fn score_table_is_chinese_and_shows_each_deduction_with_its_evidence() {
    let out = collector(&[
        "score",
        "--registry",
        "deploy/example/registry.csv",
        "--unit",
        "deploy/example/unit.toml",
        "--evidence",
        "deploy/example/reports",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("自动评分合计 (二、三)"), "{text}");
    assert!(text.contains("发现 1 台未备案的联网设备"), "{text}");
    assert!(text.contains("· 设备 10.1.0.99"), "{text}");
    // Times are local (Asia/Shanghai): the outage began at 13:00 local, 05:00 UTC.
    assert!(text.contains("2026-11-18 13:00"), "{text}");
}

#[test]
fn bad_registry_row_is_reported_by_line_and_nothing_is_scored() {
    let out = collector(&[
        "score",
        "--registry",
        "tests/cases/registry-bad-row/registry.csv",
        "--evidence",
        "tests/cases/perfect/evidence.json",
    ]);
    assert_eq!(out.status.code(), Some(65));
    assert!(out.stdout.is_empty(), "no partial sheet on stdout");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("第 9 行") && err.contains("IP地址") && err.contains("10.1.0.300"),
        "{err}"
    );
}

#[test]
fn missing_file_exits_66_and_usage_error_exits_64() {
    let out = collector(&["score", "--registry", "no/such/file.csv"]);
    assert_eq!(out.status.code(), Some(66));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such/file.csv"));
    let out = collector(&["score", "--registry", "x.csv", "--period", "last-year"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2026-Q4"));
}

#[test]
fn evidence_of_another_unit_than_the_profile_is_refused() {
    let out = collector(&[
        "score",
        "--registry",
        "deploy/example/registry.csv",
        "--unit",
        "deploy/example/unit.toml",
        "--evidence",
        "tests/cases/perfect/evidence.json",
    ]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lab/case"));
}

#[test]
fn registry_import_is_all_or_nothing_and_export_round_trips_then_the_unit_scores_from_the_database() {
    let dir = std::env::temp_dir().join(format!("kaohe-cli-db-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("utf8");
    let ok = |args: &[&str]| {
        let out = collector_in(data, args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(&["unit", "add", "lab", "--name", "实验", "--kind", "province"]);
    ok(&["unit", "add", "lab/case", "--name", "示例司法所", "--parent", "lab"]);
    ok(&[
        "registry",
        "import",
        "--unit",
        "lab/case",
        "deploy/example/registry.csv",
    ]);
    // A file with a bad row changes nothing.
    let out = collector_in(
        data,
        &[
            "registry",
            "import",
            "--unit",
            "lab/case",
            "tests/cases/registry-bad-row/registry.csv",
        ],
    );
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("第 9 行"));
    let exported = ok(&["registry", "export", "--unit", "lab/case"]);
    let original = std::fs::read(root().join("deploy/example/registry.csv")).expect("csv");
    let a = kaohe_rubric::Registry::from_csv(&original, "a").expect("original");
    let b = kaohe_rubric::Registry::from_csv(exported.as_bytes(), "b").expect("exported");
    assert_eq!(a, b, "export gives back what was imported, not the bad file");
    ok(&[
        "unit",
        "set",
        "lab/case",
        "--maintainer",
        "王工",
        "--enrolled",
        "2026-11-01",
    ]);
    let v: serde_json::Value = serde_json::from_str(&ok(&[
        "score",
        "--db-unit",
        "lab/case",
        "--period",
        "2026-11",
        "--json",
    ]))
    .expect("json");
    assert_eq!(v["unit"]["name"], "示例司法所");
    assert_eq!(v["reports"], 0);
    let room = v["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["id"] == "三.1")
        .expect("三.1")
        .clone();
    assert_eq!(
        room["score"], 1.0,
        "the maintainer on record counts; no evidence for the rest: {room}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_same_report_given_twice_counts_once() {
    let args = |twice: bool| {
        let mut a = vec![
            "score",
            "--registry",
            "tests/cases/perfect/registry.csv",
            "--unit",
            "tests/cases/perfect/unit.toml",
            "--period",
            "2026-11-01..2026-11-02",
            "--json",
            "--evidence",
            "tests/cases/perfect/evidence.json",
        ];
        if twice {
            a.push("tests/cases/perfect/evidence.json");
        }
        a
    };
    let once = stdout_json(&collector(&args(false)));
    let twice = stdout_json(&collector(&args(true)));
    assert_eq!(once["reports"], twice["reports"]);
    assert_eq!(once, twice, "a duplicate changes nothing");
}

#[test]
fn an_excel_registry_imports_like_csv_and_a_bad_row_is_named_by_its_sheet_row() {
    let dir = std::env::temp_dir().join(format!("kaohe-cli-xlsx-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("utf8");
    let run = |args: &[&str]| collector_in(data, args);
    assert!(run(&["unit", "add", "u", "--name", "测试"]).status.success());
    let out = run(&[
        "registry",
        "import",
        "--unit",
        "u",
        "collector/tests/data/registry.xlsx",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let before = run(&["registry", "export", "--unit", "u"]).stdout;
    let reg = kaohe_rubric::Registry::from_csv(&before, "export").expect("export parses");
    assert_eq!(reg.entries.len(), 3);
    assert_eq!(
        reg.entries[1].name, "101",
        "a number typed into a name cell stays its text"
    );
    assert_eq!(reg.entries[1].mac.as_deref(), Some("02:6b:68:01:00:15"));
    // A bad row: named by its row in the sheet, and nothing changes.
    let out = run(&[
        "registry",
        "import",
        "--unit",
        "u",
        "collector/tests/data/registry-bad.xlsx",
    ]);
    assert_eq!(out.status.code(), Some(65));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("第 5 行"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(run(&["registry", "export", "--unit", "u"]).stdout, before);
    // A damaged file says so.
    let broken = dir.join("broken.xlsx");
    std::fs::write(&broken, b"PK\x03\x04 not really a workbook").expect("write");
    let out = run(&["registry", "import", "--unit", "u", broken.to_str().expect("utf8")]);
    assert_eq!(out.status.code(), Some(65));
    assert!(String::from_utf8_lossy(&out.stderr).contains("XLSX"));
    let _ = std::fs::remove_dir_all(&dir);
}

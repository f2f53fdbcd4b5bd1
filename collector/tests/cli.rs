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
    // The full sheet: the engine's part under "auto", every item with its entries.
    assert_eq!(v["auto"]["unit"]["name"], "示例司法所");
    assert_eq!(v["auto"]["reports"], 0);
    assert_eq!(v["total_max"], 100);
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

/// The collector with its data directory in `data`, a password in the environment and
/// optional standard input.
fn collector_with(data: &str, password: Option<&str>, stdin: Option<&str>, args: &[&str]) -> Output {
    use std::io::Write;
    let mut a = args.to_vec();
    a.extend(["--data-dir", data]);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kaohe-collector"));
    cmd.args(&a)
        .current_dir(root())
        .env_remove("KAOHE_PASSWORD")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    if let Some(p) = password {
        cmd.env("KAOHE_PASSWORD", p);
    }
    let mut child = cmd.spawn().expect("runs");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.unwrap_or("").as_bytes());
    }
    child.wait_with_output().expect("runs")
}

#[test]
fn user_add_checks_role_unit_and_password_and_lists_users_without_secrets() {
    let dir = std::env::temp_dir().join(format!("kaohe-cli-users-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.to_str().expect("utf8");
    let ok = |out: Output| {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    ok(collector_in(
        data,
        &["unit", "add", "nx", "--name", "宁夏", "--kind", "province"],
    ));
    ok(collector_in(
        data,
        &["unit", "add", "nx/a", "--name", "兴庆区司法局", "--parent", "nx"],
    ));
    // A bad role: a clear error naming the roles, exit 64, nobody added.
    let out = collector_with(
        data,
        Some("long enough 1"),
        None,
        &["user", "add", "x", "--role", "admin"],
    );
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("角色 admin 无法识别") && err.contains("province"), "{err}");
    // A unit user needs a unit that exists; a province user takes none.
    let out = collector_with(
        data,
        Some("long enough 1"),
        None,
        &["user", "add", "x", "--role", "unit"],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--unit"));
    let out = collector_with(
        data,
        Some("long enough 1"),
        None,
        &["user", "add", "x", "--role", "unit", "--unit", "nx/zz"],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("不存在"));
    // A short password is refused.
    let out = collector_with(data, Some("short"), None, &["user", "add", "x", "--role", "province"]);
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("密码至少"));
    // From the environment, and from standard input when it is not a terminal.
    ok(collector_with(
        data,
        Some("a good password"),
        None,
        &[
            "user",
            "add",
            "admin",
            "--role",
            "province",
            "--display-name",
            "省厅管理员",
        ],
    ));
    ok(collector_with(
        data,
        None,
        Some("another password\n"),
        &["user", "add", "staff", "--role", "unit", "--unit", "nx/a"],
    ));
    let out = collector_with(
        data,
        Some("a good password"),
        None,
        &["user", "add", "admin", "--role", "province"],
    );
    assert_eq!(out.status.code(), Some(64), "a name is used once");
    let list = ok(collector_in(data, &["user", "list"]));
    assert!(list.contains("admin\tprovince\t-\t省厅管理员"), "{list}");
    assert!(list.contains("staff\tunit\tnx/a"), "{list}");
    assert!(!list.contains("argon2"), "no hashes printed");
    ok(collector_in(data, &["user", "disable", "staff"]));
    assert!(ok(collector_in(data, &["user", "list"])).contains("已停用"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn review_add_shows_on_the_full_sheet_and_rank_prints_the_table_with_roll_ups() {
    let dir = std::env::temp_dir().join(format!("kaohe-cli-review-{}", std::process::id()));
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
    ok(&["unit", "add", "nx", "--name", "宁夏", "--kind", "province"]);
    ok(&[
        "unit",
        "add",
        "nx/yc",
        "--name",
        "银川市司法局",
        "--parent",
        "nx",
        "--kind",
        "city",
    ]);
    ok(&["unit", "add", "nx/yc/a", "--name", "兴庆区司法局", "--parent", "nx/yc"]);
    ok(&["unit", "add", "nx/yc/b", "--name", "金凤区司法局", "--parent", "nx/yc"]);
    let added = ok(&[
        "review",
        "add",
        "--unit",
        "nx/yc/b",
        "--period",
        "2026",
        "--item",
        "四.1",
        "--kind",
        "review",
        "--score",
        "2",
        "--reviewer",
        "李评审",
        "--note",
        "制度齐全",
    ]);
    assert!(added.contains("已录入评审"), "{added}");
    // An override needs an expiry: exit 64 with the Chinese reason.
    let out = collector_in(
        data,
        &[
            "review",
            "add",
            "--unit",
            "nx/yc/b",
            "--period",
            "2026",
            "--item",
            "三.2",
            "--kind",
            "override",
            "--score",
            "5",
            "--reviewer",
            "省厅",
            "--note",
            "停电",
        ],
    );
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("人工改分和豁免必须设定到期日"));
    let list = ok(&["review", "list", "--unit", "nx/yc/b", "--period", "2026"]);
    assert!(list.contains("四.1") && list.contains("李评审: 制度齐全"), "{list}");
    let sheet = ok(&["score", "--db-unit", "nx/yc/b", "--period", "2026"]);
    assert!(sheet.contains("[评审] 2 评审人 李评审: 制度齐全"), "{sheet}");
    assert!(sheet.contains("总分 Total"), "{sheet}");
    let rank = ok(&["rank", "--period", "2026"]);
    let header = rank.lines().nth(1).unwrap_or("");
    assert!(
        header.contains("排名") && header.contains("自动合计") && header.contains("总分"),
        "{rank}"
    );
    let b = rank.find("金凤区司法局").expect("B ranked");
    let a = rank.find("兴庆区司法局").expect("A ranked");
    assert!(b < a, "the reviewed unit ranks first:\n{rank}");
    assert!(rank.contains("市、县汇总") && rank.contains("银川市司法局"), "{rank}");
    // Withdrawn, it no longer counts.
    let id = list.split('\t').next().unwrap_or("").to_string();
    ok(&["review", "withdraw", &id]);
    assert!(ok(&["review", "list", "--unit", "nx/yc/b", "--period", "2026"]).contains("没有记录"));
    // Exports write files.
    let csv = dir.join("b.csv");
    ok(&[
        "export",
        "--unit",
        "nx/yc/b",
        "--period",
        "2026",
        "--format",
        "csv",
        "--out",
        csv.to_str().expect("utf8"),
    ]);
    assert!(String::from_utf8_lossy(&std::fs::read(&csv).expect("csv")).contains("四.1"));
    let out = collector_in(data, &["export", "--unit", "nx/yc/b", "--format", "pdf"]);
    assert_eq!(out.status.code(), Some(64));
    let _ = std::fs::remove_dir_all(&dir);
}

//! `kaohe-collector registry import` and the registry CSV the CLI writes, as a user (or an
//! attacker with a crafted file, or an agent with a crafted vendor name) meets them:
//! hostile workbooks are refused quickly, in little memory, naming the limit (F3); a NUL
//! is refused by row and column on SQLite and PostgreSQL (F5); CSV output cannot carry a
//! formula or forge a row, and still imports back (F9).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use chrono::Utc;
use kaohe_collector::store::{Store, Unit};
use kaohe_rubric::evidence::{CheckStatus, HostFacts, Observation, Report};
use zip::CompressionMethod;

use kaohe_collector::testing::workbook;

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

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kaohe-import-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// One run of the collector binary, measured from a process of its own: the exit code,
/// stderr, wall time and the child's peak RSS (getrusage of the waited-for children).
#[derive(Debug)]
struct Measured {
    code: Option<i32>,
    stderr: String,
    elapsed: Duration,
    peak_kib: i64,
}

const PROBE_ARGS: &str = "KAOHE_RSS_PROBE_ARGS";

/// Runs the collector with `args` from a fresh copy of this test binary, whose only child
/// it is, so that the children's peak RSS is this run's alone.
fn measured(args: &[&str]) -> Measured {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "rss_probe", "--nocapture", "--test-threads=1"])
        .env(PROBE_ARGS, args.join("\u{1f}"))
        .output()
        .expect("probe runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let field = |key: &str| {
        // The harness prints "test rss_probe ... " on the same line as the first field.
        text.split_once(key)
            .and_then(|(_, rest)| rest.lines().next())
            .unwrap_or_else(|| panic!("probe printed no {key}: {text}"))
            .to_string()
    };
    let stderr = text
        .split_once("@@stderr-begin\n")
        .and_then(|(_, rest)| rest.split_once("@@stderr-end"))
        .map(|(s, _)| s.to_string())
        .unwrap_or_default();
    Measured {
        code: field("@@exit=").parse().ok(),
        stderr,
        elapsed: Duration::from_micros(field("@@micros=").parse().expect("micros")),
        peak_kib: field("@@peak_kib=").parse().expect("kib"),
    }
}

/// Not a test of its own: the probe that `measured` runs in a separate process.
#[test]
fn rss_probe() {
    let Ok(args) = std::env::var(PROBE_ARGS) else {
        return;
    };
    let args: Vec<&str> = args.split('\u{1f}').collect();
    let start = Instant::now();
    let out = collector(&args);
    let elapsed = start.elapsed();
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_CHILDREN).expect("getrusage");
    println!("@@exit={}", out.status.code().map_or("none".into(), |c| c.to_string()));
    println!("@@micros={}", elapsed.as_micros());
    println!("@@peak_kib={}", usage.max_rss());
    println!("@@stderr-begin\n{}\n@@stderr-end", String::from_utf8_lossy(&out.stderr));
}

const MAX_RSS_KIB: i64 = 100 * 1024;

#[test]
fn hostile_workbooks_are_refused_at_once_in_little_memory_naming_the_limit() {
    let dir = temp_dir("hostile");
    let data = dir.join("data");
    let data = data.to_str().expect("utf8");
    let run = |args: &[&str]| {
        let mut a = args.to_vec();
        a.extend(["--data-dir", data]);
        collector(&a)
    };
    ok(run(&["unit", "add", "u", "--name", "测试"]));
    ok(run(&[
        "registry",
        "import",
        "--unit",
        "u",
        "deploy/example/registry.csv",
    ]));
    let before = ok(run(&["registry", "export", "--unit", "u"]));

    let header = workbook::row(1, &[("A1", "类型"), ("B1", "名称"), ("C1", "IP地址")]);
    // F3, first: one cell at XFD1048576, the sheet's dimension saying so (1.7 KB).
    let corner = workbook::sheet(
        Some("A1:XFD1048576"),
        &(header.clone() + &workbook::row(1_048_576, &[("XFD1048576", "x")])),
    );
    // Second: one cell at row 100000, column 2001 (BXY), and no dimension to warn of it.
    let far = workbook::sheet(None, &(header.clone() + &workbook::row(100_000, &[("BXY100000", "x")])));
    // Third: one cell of 1 GiB, deflated to about 1 MB.
    let started = Instant::now();
    let huge = workbook::workbook_with_huge_cell(1 << 30);
    let built = started.elapsed();
    // And the same with headers that lie: they declare 1000 bytes.
    let mut liar = huge.clone();
    assert_eq!(workbook::lie_about_size(&mut liar, "xl/worksheets/sheet1.xml", 1000), 2);

    let cases: Vec<(&str, Vec<u8>, Vec<&str>)> = vec![
        (
            "corner.xlsx",
            workbook::workbook(corner.as_bytes(), None, CompressionMethod::Deflated),
            vec![
                "工作表声明了 1048576 行, 最多 20000 行",
                "the sheet declares 1048576 rows; at most 20000",
            ],
        ),
        (
            "far.xlsx",
            workbook::workbook(far.as_bytes(), None, CompressionMethod::Deflated),
            vec!["单元格 BXY100000 在第 100000 行, 最多 20000 行", "at most 20000 rows"],
        ),
        (
            "huge-cell.xlsx",
            huge,
            vec!["xl/worksheets/sheet1.xml 声明解压后有 10737", "at most 16777216"],
        ),
        ("huge-cell-lying.xlsx", liar, vec!["xl/worksheets/sheet1.xml"]),
    ];
    for (name, bytes, says) in cases {
        let path = dir.join(name);
        std::fs::write(&path, &bytes).expect("write workbook");
        let m = measured(&[
            "registry",
            "import",
            "--unit",
            "u",
            path.to_str().expect("utf8"),
            "--data-dir",
            data,
        ]);
        println!(
            "{name}: {} bytes, exit {:?}, {:.0} ms, peak RSS {} KiB{}",
            bytes.len(),
            m.code,
            m.elapsed.as_secs_f64() * 1000.0,
            m.peak_kib,
            if name == "huge-cell.xlsx" {
                format!(" (built in {:.1} s)", built.as_secs_f64())
            } else {
                String::new()
            }
        );
        assert_eq!(m.code, Some(65), "{name}: {}", m.stderr);
        for s in says {
            assert!(m.stderr.contains(s), "{name} should say {s:?}: {}", m.stderr);
        }
        assert!(m.stderr.contains("未导入任何内容"), "{name}: {}", m.stderr);
        assert!(
            m.peak_kib < MAX_RSS_KIB,
            "{name}: peak RSS {} KiB, more than {MAX_RSS_KIB} KiB",
            m.peak_kib
        );
        assert_eq!(
            ok(run(&["registry", "export", "--unit", "u"])),
            before,
            "{name}: nothing was imported"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oversized_csv_is_refused_before_it_is_read_naming_the_limit() {
    let dir = temp_dir("big-csv");
    let data = dir.join("data");
    let data = data.to_str().expect("utf8");
    ok(collector(&["unit", "add", "u", "--name", "测试", "--data-dir", data]));
    let path = dir.join("big.csv");
    let file = std::fs::File::create(&path).expect("create");
    // 64 MiB, sparse: the import must refuse it by its size without reading it.
    file.set_len(64 << 20).expect("size");
    let m = measured(&[
        "registry",
        "import",
        "--unit",
        "u",
        path.to_str().expect("utf8"),
        "--data-dir",
        data,
    ]);
    println!(
        "big.csv: exit {:?}, {:.0} ms, peak RSS {} KiB",
        m.code,
        m.elapsed.as_secs_f64() * 1000.0,
        m.peak_kib
    );
    assert_eq!(m.code, Some(65), "{}", m.stderr);
    assert!(
        m.stderr.contains("文件有 67108864 字节, 最多 8388608 字节"),
        "{}",
        m.stderr
    );
    assert!(m.peak_kib < MAX_RSS_KIB, "peak RSS {} KiB", m.peak_kib);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_nul_in_a_registry_is_refused_by_row_and_column_on_every_database() {
    let dir = temp_dir("nul");
    let csv = dir.join("nul.csv");
    std::fs::write(
        &csv,
        "类型,名称,IP地址\n设备,服务器,10.1.0.10\n设备,打印\u{0}机,10.1.0.30\n",
    )
    .expect("write");
    // Excel writes a NUL in a cell as the escape _x0000_.
    let sheet = workbook::sheet(
        Some("A1:C3"),
        &(workbook::registry_rows()
            + &workbook::row(3, &[("A3", "设备"), ("B3", "打印_x0000_机"), ("C3", "10.1.0.30")])),
    );
    let xlsx = dir.join("nul.xlsx");
    std::fs::write(
        &xlsx,
        workbook::workbook(sheet.as_bytes(), None, CompressionMethod::Deflated),
    )
    .expect("write");
    for (backend, url) in common::database_urls("registry_nul").await {
        let data = dir.join(backend);
        let data = data.to_str().expect("utf8");
        let run = |args: &[&str]| {
            let mut a = args.to_vec();
            a.extend(["--data-dir", data, "--database-url", &url]);
            collector(&a)
        };
        ok(run(&["unit", "add", "u", "--name", "测试"]));
        ok(run(&[
            "registry",
            "import",
            "--unit",
            "u",
            "deploy/example/registry.csv",
        ]));
        let before = ok(run(&["registry", "export", "--unit", "u"]));
        for file in [&csv, &xlsx] {
            let out = run(&["registry", "import", "--unit", "u", file.to_str().expect("utf8")]);
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(65), "{backend} {}: {err}", file.display());
            assert!(
                err.contains("第 3 行 (line 3), 列 “名称”") && err.contains("U+0000"),
                "{backend} {}: {err}",
                file.display()
            );
            assert!(!err.contains("null character"), "no raw database error: {err}");
            assert_eq!(ok(run(&["registry", "export", "--unit", "u"])), before, "{backend}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

const EVIL: &str = "=HYPERLINK(\"http://evil.example/\" \"click\")\n设备,伪造,10.9.9.9";

fn host() -> HostFacts {
    HostFacts {
        hostname: "h".into(),
        os: "linux".into(),
        boot_time: None,
        agent_version: "0.1.0".into(),
        agent_started_at: None,
    }
}

/// CSV records of `text`, as a spreadsheet or the importer reads them.
fn records(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.expect("valid CSV").iter().map(str::to_string).collect())
        .collect()
}

#[tokio::test]
async fn cli_csv_escapes_an_agents_formula_and_line_break_and_still_imports_back() {
    let dir = temp_dir("csv-out");
    let data = dir.join("data");
    let data_s = data.to_str().expect("utf8");
    let url = format!("sqlite://{}", data.join("kaohe.db").display());
    ok(collector(&["unit", "add", "u", "--name", "测试", "--data-dir", data_s]));
    {
        let store = Store::open(&url).await.expect("store");
        store
            .add_token("u", "secret-1", Utc::now() + chrono::Duration::hours(1))
            .await
            .expect("token");
        store
            .enrol("secret-1", "agent-1", "cred-1", "host", "0.1.0", Utc::now())
            .await
            .expect("enrol");
        let now = Utc::now();
        let mut r = Report::empty(uuid::Uuid::new_v4(), "agent-1", "u", 1, now, host());
        r.checks.inventory = CheckStatus::Ran;
        r.inventory.push(Observation {
            ip: "10.1.0.99".into(),
            mac: Some("02:6b:68:01:00:63".into()),
            vendor: Some(EVIL.into()),
            first_seen: now - chrono::Duration::hours(1),
            last_seen: now,
            how: Vec::new(),
        });
        let body = serde_json::to_string(&r).expect("json");
        store.insert_report(&r, &body, now).await.expect("insert");
        let _: Option<Unit> = store.unit("u").await.expect("unit");
    }

    // `registry unregistered --csv`: one row, the vendor shown as text, the line break
    // inside its field.
    let out = ok(collector(&[
        "registry",
        "unregistered",
        "--unit",
        "u",
        "--csv",
        "--data-dir",
        data_s,
    ]));
    assert!(out.contains("'=HYPERLINK"), "{out}");
    let rows = records(&out);
    assert_eq!(rows.len(), 2, "header and one device, no forged row: {out}");
    assert_eq!(rows[1][1], format!("'{EVIL}"));
    assert_eq!(rows[1][2], "10.1.0.99");
    for row in &rows {
        for cell in row {
            assert!(
                !cell.starts_with(['=', '+', '-', '@']),
                "a cell a spreadsheet would evaluate: {cell:?}"
            );
        }
    }

    // It imports as it is, the name unescaped; `registry export` escapes it again, and
    // what it writes imports back to the same registry.
    let listed = dir.join("unregistered.csv");
    std::fs::write(&listed, &out).expect("write");
    ok(collector(&[
        "registry",
        "import",
        "--unit",
        "u",
        listed.to_str().expect("utf8"),
        "--data-dir",
        data_s,
    ]));
    let exported = ok(collector(&["registry", "export", "--unit", "u", "--data-dir", data_s]));
    let rows = records(&exported);
    assert_eq!(rows.len(), 2, "{exported}");
    assert_eq!(rows[1][1], format!("'{EVIL}"));
    let a = kaohe_rubric::Registry::from_csv(out.as_bytes(), "a").expect("listed");
    let b = kaohe_rubric::Registry::from_csv(exported.as_bytes(), "b").expect("exported");
    assert_eq!(a.entries[0].name, EVIL);
    assert_eq!(a, b, "export imports back to the same registry");
    let again = dir.join("exported.csv");
    std::fs::write(&again, &exported).expect("write");
    ok(collector(&[
        "registry",
        "import",
        "--unit",
        "u",
        again.to_str().expect("utf8"),
        "--data-dir",
        data_s,
    ]));
    assert_eq!(
        ok(collector(&["registry", "export", "--unit", "u", "--data-dir", data_s])),
        exported,
        "a round trip changes nothing"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

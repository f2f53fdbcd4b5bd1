//! The store on SQLite and (when configured) PostgreSQL: one suite, both backends.

mod common;

use chrono::{Duration, Utc};
use kaohe_collector::store::{Store, Stored, Unit};
use kaohe_rubric::evidence::{HostFacts, Report};

fn unit(id: &str, parent: Option<&str>) -> Unit {
    Unit {
        id: id.into(),
        name: format!("单位 {id}"),
        parent: parent.map(str::to_string),
        kind: "county".into(),
        maintainer: None,
        responder: None,
        enrolled: None,
    }
}

fn report(unit: &str, agent: &str, seq: u64) -> Report {
    let host = HostFacts {
        hostname: "h".into(),
        os: "linux".into(),
        boot_time: None,
        agent_version: "0.1.0".into(),
        agent_started_at: None,
    };
    Report::empty(uuid_v4(), agent, unit, seq, Utc::now(), host)
}

fn uuid_v4() -> uuid::Uuid {
    uuid::Uuid::new_v4()
}

async fn enrolled(s: &Store) {
    s.add_unit(&unit("nx", None)).await.expect("province");
    s.add_unit(&unit("nx/yc", Some("nx"))).await.expect("city");
    s.add_token("nx/yc", "secret-1", Utc::now() + Duration::hours(1))
        .await
        .expect("token");
    let got = s
        .enrol("secret-1", "agent-1", "cred-1", "host", "0.1.0", Utc::now())
        .await
        .expect("enrol");
    assert_eq!(got.as_deref(), Some("nx/yc"));
}

#[tokio::test]
async fn migrations_apply_once_and_reopening_is_harmless() {
    for (backend, s) in common::stores("migrate").await {
        s.migrate().await.unwrap_or_else(|e| panic!("{backend}: {e}"));
        let applied = s.migrations_applied().await.expect("applied");
        let all: Vec<i64> = (1..=kaohe_collector::store::latest_migration()).collect();
        assert_eq!(applied, all, "{backend}");
    }
}

#[tokio::test]
async fn a_database_made_before_the_migration_runner_opens_with_its_rows() {
    // Made by the collector at 546d216 (its own `schema_migrations` table, migrations 1–4).
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = std::env::temp_dir().join(format!("kaohe-store-legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::copy(fixtures.join("legacy-v4.sqlite"), dir.join("kaohe.db")).expect("copy fixture");
    let mut urls = vec![("sqlite", format!("sqlite://{}", dir.join("kaohe.db").display()))];
    if let Some(url) = common::postgres_test_url("legacy") {
        let schema = common::create_schema(&url, "legacy").await;
        let dump = std::fs::read_to_string(fixtures.join("legacy-v4.postgres.sql")).expect("fixture");
        let admin = sqlx::AnyPool::connect(&url).await.expect("postgres reachable");
        sqlx::raw_sql(sqlx::AssertSqlSafe(dump.replace("__SCHEMA__", &schema)))
            .execute(&admin)
            .await
            .expect("fixture loads");
        admin.close().await;
        urls.push(("postgres", format!("{url}?options=-c%20search_path%3D{schema}")));
    }
    for (backend, url) in urls {
        for open in ["first", "again"] {
            let s = Store::open(&url).await.unwrap_or_else(|e| panic!("{backend}: {e}"));
            let all: Vec<i64> = (1..=kaohe_collector::store::latest_migration()).collect();
            assert_eq!(s.migrations_applied().await.expect("applied"), all, "{backend} {open}");
            // The old table stays as it was.
            let old: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM schema_migrations")
                .fetch_one(s.pool())
                .await
                .expect("old table");
            assert_eq!(old, 4, "{backend} {open}");
            let ids: Vec<String> = s.units().await.expect("units").into_iter().map(|u| u.id).collect();
            assert_eq!(ids, ["nx", "nx/yc"], "{backend} {open}");
            let agent = s.agent_by_credential("cred-1").await.expect("agent").expect("enrolled");
            assert_eq!(agent.unit_id, "nx/yc", "{backend} {open}");
            assert_eq!(
                s.user("admin").await.expect("user").expect("admin").shown_name(),
                "管理员"
            );
            let entries = s.entries("nx/yc", &["2026".to_string()]).await.expect("entries");
            assert_eq!(entries.len(), 1, "{backend} {open}");
            assert_eq!(
                s.audit_log(Some("nx/yc"), 10).await.expect("audit").len(),
                1,
                "{backend} {open}"
            );
            let digests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollups WHERE reports = 3")
                .fetch_one(s.pool())
                .await
                .expect("roll-ups");
            assert_eq!(digests, 1, "{backend} {open}: the day's digest is kept, not rebuilt");
            let before = s.report_count("nx/yc").await.expect("count");
            let seq = if open == "first" { 4 } else { 5 };
            let r = report("nx/yc", "agent-1", seq);
            let body = serde_json::to_string(&r).expect("json");
            assert_eq!(
                s.insert_report(&r, &body, Utc::now()).await.expect("insert"),
                Stored::New
            );
            assert_eq!(
                s.report_count("nx/yc").await.expect("count"),
                before + 1,
                "{backend} {open}"
            );
            assert_eq!(before, if open == "first" { 3 } else { 4 }, "{backend} {open}");
            s.pool().close().await;
        }
    }
}

#[tokio::test]
async fn units_need_their_parent_and_ids_are_unique() {
    for (backend, s) in common::stores("units").await {
        let e = s.add_unit(&unit("nx/yc", Some("nx"))).await.expect_err("no parent yet");
        assert!(e.to_string().contains("上级单位"), "{backend}: {e}");
        s.add_unit(&unit("nx", None)).await.expect("province");
        s.add_unit(&unit("nx/yc", Some("nx"))).await.expect("city");
        assert!(s.add_unit(&unit("nx", None)).await.is_err(), "{backend}: duplicate");
        let ids: Vec<String> = s.units().await.expect("list").into_iter().map(|u| u.id).collect();
        assert_eq!(ids, ["nx", "nx/yc"], "{backend}");
    }
}

#[tokio::test]
async fn a_token_enrols_once_and_an_expired_one_not_at_all() {
    for (backend, s) in common::stores("tokens").await {
        enrolled(&s).await;
        let again = s
            .enrol("secret-1", "agent-2", "cred-2", "h", "0", Utc::now())
            .await
            .expect("query");
        assert_eq!(again, None, "{backend}: a used secret is refused");
        s.add_token("nx/yc", "old", Utc::now() - Duration::minutes(1))
            .await
            .expect("token");
        let late = s
            .enrol("old", "agent-3", "cred-3", "h", "0", Utc::now())
            .await
            .expect("query");
        assert_eq!(late, None, "{backend}: an expired secret is refused");
        assert!(
            s.add_token("nx/none", "x", Utc::now()).await.is_err(),
            "{backend}: unknown unit"
        );
        let a = s.agent_by_credential("cred-1").await.expect("query").expect("agent");
        assert_eq!((a.id.as_str(), a.unit_id.as_str()), ("agent-1", "nx/yc"));
        assert!(s.agent_by_credential("cred-x").await.expect("query").is_none());
        assert!(s.revoke_agent("agent-1", Utc::now()).await.expect("revoke"));
        let a = s.agent_by_credential("cred-1").await.expect("query").expect("agent");
        assert!(a.revoked_at.is_some(), "{backend}");
    }
}

#[tokio::test]
async fn a_report_is_stored_once_whatever_how_often_it_is_sent() {
    for (backend, s) in common::stores("reports").await {
        enrolled(&s).await;
        let r = report("nx/yc", "agent-1", 1);
        let body = serde_json::to_string(&r).expect("json");
        assert_eq!(
            s.insert_report(&r, &body, Utc::now()).await.expect("insert"),
            Stored::New,
            "{backend}"
        );
        assert_eq!(
            s.insert_report(&r, &body, Utc::now()).await.expect("insert"),
            Stored::Duplicate,
            "{backend}"
        );
        assert_eq!(s.report_count("nx/yc").await.expect("count"), 1, "{backend}");
        let back = s
            .reports(
                "nx/yc",
                Utc::now() - Duration::hours(1),
                Utc::now() + Duration::hours(1),
            )
            .await
            .expect("read");
        assert_eq!(back, vec![r], "{backend}");
    }
}

#[tokio::test]
async fn a_registry_import_replaces_the_whole_registry_and_reads_back() {
    for (backend, s) in common::stores("registry").await {
        enrolled(&s).await;
        let csv = "类型,名称,IP地址,MAC地址,使用者,使用地点,机房,网址\n\
                   设备,服务器,10.1.0.10,02:6b:68:01:00:0a,王工,机房,是,\n\
                   门户网站,门户,,,,,,https://www.example/\n";
        let reg = kaohe_rubric::Registry::from_csv(csv.as_bytes(), "r.csv").expect("csv");
        assert_eq!(s.replace_registry("nx/yc", &reg).await.expect("import"), 2, "{backend}");
        assert_eq!(s.registry("nx/yc").await.expect("read"), reg, "{backend}");
        let smaller = kaohe_rubric::Registry::from_csv(&csv.as_bytes()[..csv.find("门户网站").expect("row")], "r.csv")
            .expect("csv");
        s.replace_registry("nx/yc", &smaller).await.expect("import");
        assert_eq!(
            s.registry("nx/yc").await.expect("read").entries.len(),
            1,
            "{backend}: replaced, not appended"
        );
        assert!(
            s.replace_registry("nx/none", &reg).await.is_err(),
            "{backend}: unknown unit"
        );
    }
}

/// Two days of ten-minute reports with probe samples (some failing) and isolation
/// rounds (two breaches in a row on the second day), in the agent's order.
fn history() -> Vec<Report> {
    use kaohe_rubric::evidence::{CheckStatus, IsolationProtocol, IsolationResult, ProbeKind, ProbeRole, ProbeSample};
    // 2026-11-01 00:00 Asia/Shanghai.
    let day0 = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 10, 31, 16, 0, 0)
        .single()
        .expect("time");
    let mut out = Vec::new();
    for k in 0..(2 * 144) {
        let t = day0 + Duration::minutes(10 * k);
        let mut r = report("nx/yc", "agent-1", k as u64 + 1);
        r.created_at = t + Duration::minutes(10);
        r.checks.reachability = CheckStatus::Ran;
        r.checks.isolation = CheckStatus::Ran;
        r.probes.interval_secs = 60;
        for i in 0..10 {
            let at = t + Duration::seconds(60 * i);
            // An hour down on the first afternoon, and a flaky minute now and then.
            let ok = !(80..86).contains(&k) && (k * 10 + i) % 37 != 0;
            r.probes.samples.push(ProbeSample {
                target: "10.9.0.1".into(),
                kind: ProbeKind::Icmp,
                role: ProbeRole::Upstream,
                at,
                ok,
                rtt_ms: None,
                error: None,
                run: None,
            });
        }
        r.isolation.push(IsolationResult {
            at: t,
            canary: "198.51.100.10".into(),
            protocol: IsolationProtocol::Icmp,
            reached: k == 200 || k == 201,
            via_interface: None,
            next_hop: None,
            error: None,
        });
        out.push(r);
    }
    out
}

#[tokio::test]
async fn roll_ups_made_at_ingest_score_like_the_raw_reports_even_out_of_order() {
    let rubric = kaohe_rubric::Rubric::default_rubric();
    let period: kaohe_rubric::Period = "2026-11-01..2026-11-02".parse().expect("period");
    let now = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 10, 0, 0, 0)
        .single()
        .expect("time");
    for (backend, s) in common::stores("rollups").await {
        enrolled(&s).await;
        // Enrolled before the period: scoring counts from the first agent's enrolment.
        sqlx::query("UPDATE agents SET enrolled_at = 0")
            .execute(s.pool())
            .await
            .expect("backdate");
        let mut reports = history();
        // The second day arrives out of order (a replayed spool, a retry after a timeout).
        let second_day = reports.split_off(144);
        let mut shuffled = second_day.clone();
        shuffled.reverse();
        shuffled.swap(3, 60);
        for r in reports.iter().chain(&shuffled) {
            let body = serde_json::to_string(r).expect("json");
            s.insert_report(r, &body, now).await.expect("insert");
        }
        let rolled = kaohe_collector::rollup::score_unit(&s, &rubric, "nx/yc", period, now)
            .await
            .expect("score");
        let (start, end) = period.bounds(rubric.timezone);
        let raw_reports = s.reports("nx/yc", start, end + Duration::hours(1)).await.expect("raw");
        let unit = s.unit("nx/yc").await.expect("unit").expect("exists");
        let raw = kaohe_rubric::score(&kaohe_rubric::ScoreInput {
            rubric: &rubric,
            profile: &kaohe_rubric::registry::UnitProfile {
                enrolled_at: s.first_enrolments().await.expect("first").remove("nx/yc"),
                ..kaohe_collector::rollup::profile_of(&unit)
            },
            registry: &s.registry("nx/yc").await.expect("registry"),
            reports: &raw_reports,
            period,
            as_of: Some(now),
        });
        assert_eq!(rolled.reports, 288, "{backend}: every report counted once");
        let item = |sheet: &kaohe_rubric::Sheet, id: &str| {
            sheet
                .items
                .iter()
                .find(|i| i.id == id)
                .and_then(|i| i.score)
                .expect("scored")
        };
        assert!(
            item(&rolled, "三.2") < 4.0,
            "{backend}: the hour down costs 三.2 points"
        );
        assert!(
            item(&rolled, "三.3") < 5.0,
            "{backend}: the confirmed breach costs 三.3 points"
        );
        assert_eq!(
            serde_json::to_value(&rolled).expect("json"),
            serde_json::to_value(&raw).expect("json"),
            "{backend}: the roll-ups must score exactly like the raw reports"
        );
        // A whole month is read from a month digest, built on first use and rebuilt when a
        // late report of that month arrives.
        let month: kaohe_rubric::Period = "2026-11".parse().expect("month");
        let later = now + Duration::days(30);
        let raw_month = |s: Store, extra: usize| async move {
            let (start, end) = month.bounds(rubric_tz());
            let reports = s.reports("nx/yc", start, end + Duration::hours(1)).await.expect("raw");
            assert_eq!(reports.len(), 288 + extra);
            let unit = s.unit("nx/yc").await.expect("unit").expect("exists");
            kaohe_rubric::score(&kaohe_rubric::ScoreInput {
                rubric: &kaohe_rubric::Rubric::default_rubric(),
                profile: &kaohe_rubric::registry::UnitProfile {
                    enrolled_at: s.first_enrolments().await.expect("first").remove("nx/yc"),
                    ..kaohe_collector::rollup::profile_of(&unit)
                },
                registry: &s.registry("nx/yc").await.expect("registry"),
                reports: &reports,
                period: month,
                as_of: Some(later),
            })
        };
        let (m_start, _) = month.bounds(rubric_tz());
        assert_eq!(
            s.build_missing_months(m_start, later).await.expect("build"),
            1,
            "{backend}: the background builder makes November's digest"
        );
        assert_eq!(
            s.build_missing_months(m_start, later).await.expect("build"),
            0,
            "{backend}: and not again while it is current"
        );
        for round in 0..2 {
            let rolled = kaohe_collector::rollup::score_unit(&s, &rubric, "nx/yc", month, later)
                .await
                .expect("score");
            assert_eq!(
                serde_json::to_value(&rolled).expect("json"),
                serde_json::to_value(raw_month(s.clone(), 0).await).expect("json"),
                "{backend}: the month digest scores like the raw reports (round {round})"
            );
        }
        let months: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollup_months")
            .fetch_one(s.pool())
            .await
            .expect("count");
        assert_eq!(months, 1, "{backend}: the month digest is kept");
        let mut late = report("nx/yc", "agent-1", 1000);
        late.created_at = chrono::TimeZone::with_ymd_and_hms(&Utc, 2026, 11, 20, 4, 0, 0)
            .single()
            .expect("t");
        late.checks.isolation = kaohe_rubric::evidence::CheckStatus::Ran;
        late.isolation.push(kaohe_rubric::evidence::IsolationResult {
            at: late.created_at,
            canary: "198.51.100.10".into(),
            protocol: kaohe_rubric::evidence::IsolationProtocol::Icmp,
            reached: true,
            via_interface: None,
            next_hop: None,
            error: None,
        });
        s.insert_report(&late, &serde_json::to_string(&late).expect("json"), now)
            .await
            .expect("late report");
        let rolled = kaohe_collector::rollup::score_unit(&s, &rubric, "nx/yc", month, later)
            .await
            .expect("score");
        assert_eq!(
            rolled.reports, 289,
            "{backend}: the late report is in the rebuilt month digest"
        );
        assert_eq!(
            serde_json::to_value(&rolled).expect("json"),
            serde_json::to_value(raw_month(s.clone(), 1).await).expect("json"),
            "{backend}: after a late report the month digest is rebuilt"
        );
        let digests: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM rollups WHERE unit_id = 'nx/yc'")
            .fetch_one(s.pool())
            .await
            .expect("count");
        assert_eq!(
            digests, 4,
            "{backend}: one digest per local day (the first report of day 3 included, and the late report's day)"
        );
    }
}

fn rubric_tz() -> chrono_tz::Tz {
    kaohe_rubric::Rubric::default_rubric().timezone
}

#[tokio::test]
async fn text_postgresql_cannot_store_is_refused_alike_and_its_database_error_is_permanent() {
    for (backend, s) in common::stores("nul").await {
        enrolled(&s).await;
        // Names and profiles: refused before the database on both, naming the field.
        let mut bad = unit("nx/bad", Some("nx"));
        bad.name = "坏\0单位".into();
        let e = s.add_unit(&bad).await.expect_err("NUL in a name");
        assert!(
            e.to_string().contains("name") && e.to_string().contains("NUL"),
            "{backend}: {e}"
        );
        let e = s
            .set_unit_profile("nx/yc", Some("王\0工"), None, None)
            .await
            .expect_err("NUL in a maintainer");
        assert!(e.to_string().contains("maintainer"), "{backend}: {e}");
        // A report that slipped past ingest's check: PostgreSQL refuses it for its content,
        // which the ingest writer must answer 422 (never 503, which the agent retries forever).
        // An isolation breach whose canary holds a NUL: its alert is text PostgreSQL refuses.
        let mut r = report("nx/yc", "agent-1", 1);
        r.checks.isolation = kaohe_rubric::evidence::CheckStatus::Ran;
        r.isolation.push(kaohe_rubric::evidence::IsolationResult {
            at: r.created_at,
            canary: "198.51.100.7\0".into(),
            protocol: kaohe_rubric::evidence::IsolationProtocol::Icmp,
            reached: true,
            via_interface: None,
            next_hop: None,
            error: None,
        });
        let body = serde_json::to_string(&r).expect("json");
        match (backend, s.insert_report(&r, &body, Utc::now()).await) {
            ("postgres", Err(e)) => assert!(kaohe_collector::batch::permanent(&e), "{backend}: {e}"),
            ("postgres", Ok(_)) => panic!("postgres stored a NUL"),
            (_, r) => assert!(r.is_ok(), "{backend}: SQLite stores it; ingest refuses it first"),
        }
    }
}

#[tokio::test]
async fn an_agents_lost_reports_show_as_a_gap_that_its_own_count_explains() {
    for (backend, s) in common::stores("delivery").await {
        enrolled(&s).await;
        for (seq, dropped) in [(1, 0), (2, 0), (5, 2), (6, 2)] {
            let mut r = report("nx/yc", "agent-1", seq);
            r.spool_dropped = dropped;
            let body = serde_json::to_string(&r).expect("json");
            s.insert_report(&r, &body, Utc::now()).await.expect("insert");
        }
        let d = s.delivery("agent-1").await.expect("delivery");
        assert_eq!(
            (d.reports, d.first, d.last, d.missing, d.dropped, d.rejected),
            (4, Some(1), Some(6), 2, 2, 0),
            "{backend}"
        );
    }
}

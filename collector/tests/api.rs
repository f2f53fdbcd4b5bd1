//! The agents' API over real TLS on loopback, on SQLite and (when configured) PostgreSQL:
//! enrolment, ingest, and every kind of bad input getting a clear 4xx with nothing stored.

mod common;

use chrono::{Duration, Utc};
use common::Running;
use kaohe_collector::store::Store;
use kaohe_rubric::evidence::{
    HostFacts, IsolationProtocol, IsolationResult, ProbeKind, ProbeRole, ProbeSample, Report,
};

async fn start(test: &str, database_url: String) -> Running {
    let r = start_more(test, database_url).await;
    add_units(&r.store, &["nx", "nx/a", "nx/b"]).await;
    r
}

/// Units named by their ids, each below the one before the last slash.
async fn add_units(store: &Store, ids: &[&str]) {
    for id in ids {
        let parent = id.rsplit_once('/').map(|(p, _)| p);
        store
            .add_unit(&common::unit(id, id, parent, "county"))
            .await
            .expect("unit");
    }
}

/// Enrols an agent for `unit` through the API; returns (agent id, credential).
async fn enrol(r: &Running, unit: &str) -> (String, String) {
    enrol_as(r, unit, false).await
}

/// Enrols an agent, or with `listener` a leak listener, for `unit` through the API.
async fn enrol_as(r: &Running, unit: &str, listener: bool) -> (String, String) {
    let secret = format!("secret-{unit}-{}", uuid::Uuid::new_v4());
    let expires = Utc::now() + Duration::hours(1);
    if listener {
        r.store.add_listener_token(unit, &secret, expires).await.expect("token");
    } else {
        r.store.add_token(unit, &secret, expires).await.expect("token");
    }
    let client = kaohe_agent::delivery::client(&r.ca_pem, None).expect("client");
    let resp = client
        .post(format!("{}/api/v1/enroll", r.url))
        .json(&serde_json::json!({"secret": secret, "hostname": "h", "agent_version": "0.1.0"}))
        .send()
        .await
        .expect("enrol");
    assert_eq!(resp.status(), 200);
    let v: serde_json::Value = resp.json().await.expect("json");
    // The same secret again: refused.
    let again = client
        .post(format!("{}/api/v1/enroll", r.url))
        .json(&serde_json::json!({"secret": secret}))
        .send()
        .await
        .expect("enrol");
    assert_eq!(again.status(), 401, "a token works once");
    (
        v["agent_id"].as_str().expect("id").to_string(),
        v["credential"].as_str().expect("credential").to_string(),
    )
}

fn report(unit: &str, agent: &str, seq: u64) -> Report {
    let host = HostFacts {
        hostname: "h".into(),
        os: "linux".into(),
        boot_time: None,
        agent_version: "0.1.0".into(),
        agent_started_at: None,
    };
    Report::empty(uuid::Uuid::new_v4(), agent, unit, seq, Utc::now(), host)
}

async fn post(r: &Running, credential: Option<&str>, body: String) -> (u16, String) {
    let client = kaohe_agent::delivery::client(&r.ca_pem, None).expect("client");
    let mut req = client
        .post(format!("{}/api/v1/reports", r.url))
        .header("content-type", "application/json")
        .body(body);
    if let Some(c) = credential {
        req = req.bearer_auth(c);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_stores_once_and_refuses_bad_input_clearly_without_storing_it() {
    for (backend, db) in common::database_urls("api").await {
        let r = start(&format!("api-{backend}"), db).await;
        let (agent_a, cred_a) = enrol(&r, "nx/a").await;
        let (_agent_b, cred_b) = enrol(&r, "nx/b").await;

        // A good report is stored, and a replay is acknowledged as a duplicate.
        let good = report("nx/a", &agent_a, 1);
        let body = serde_json::to_string(&good).expect("json");
        let (s, text) = post(&r, Some(&cred_a), body.clone()).await;
        assert_eq!((s, text.contains("\"stored\"")), (200, true), "{backend}: {text}");
        let (s, text) = post(&r, Some(&cred_a), body.clone()).await;
        assert_eq!((s, text.contains("\"duplicate\"")), (200, true), "{backend}: {text}");

        // Bad input: each a clear 4xx.
        let cases: Vec<(&str, Option<&str>, String, u16, &str)> = vec![
            ("no credential", None, body.clone(), 401, "凭据"),
            ("unknown credential", Some("forged"), body.clone(), 401, "凭据无效"),
            (
                "malformed JSON",
                Some(&cred_a),
                "{\"schema_version\": 1, ".into(),
                400,
                "JSON",
            ),
            (
                "wrong schema version",
                Some(&cred_a),
                body.replacen("\"schema_version\":1", "\"schema_version\":7", 1),
                400,
                "expected 1",
            ),
            (
                "forged unit",
                Some(&cred_b),
                serde_json::to_string(&report("nx/a", &agent_a, 2)).expect("json"),
                403,
                "与凭据不符",
            ),
            (
                "a report passing itself off as a roll-up",
                Some(&cred_a),
                {
                    let mut fake = report("nx/a", &agent_a, 3);
                    fake.rollup_of = 4_611_686_018_427_387_904;
                    serde_json::to_string(&fake).expect("json")
                },
                422,
                "rollup_of",
            ),
            (
                "oversized body",
                Some(&cred_a),
                format!("{{\"pad\": \"{}\"}}", "x".repeat(80 * 1024)),
                413,
                "{\"error\":\"请求体超过上限",
            ),
            (
                "a NUL in a string (PostgreSQL cannot store it)",
                Some(&cred_a),
                {
                    let mut r = report("nx/a", &agent_a, 3);
                    r.isolation.push(IsolationResult {
                        at: r.created_at,
                        canary: "canary\0name".into(),
                        protocol: IsolationProtocol::Icmp,
                        reached: false,
                        via_interface: None,
                        next_hop: None,
                        error: None,
                    });
                    serde_json::to_string(&r).expect("json")
                },
                422,
                "isolation[0].canary",
            ),
            (
                "a NUL in a field the collector does not know",
                Some(&cred_a),
                body.replacen('{', "{\"extra\\u0000\":1,", 1),
                422,
                "NUL",
            ),
            (
                "a report dated hours ahead of the collector",
                Some(&cred_a),
                serde_json::to_string(&{
                    let mut r = report("nx/a", &agent_a, 3);
                    r.created_at += Duration::hours(3);
                    r
                })
                .expect("json"),
                // Not wrong, early: the agent keeps it and tries again later.
                503,
                "超前",
            ),
        ];
        for (what, cred, body, want, says) in cases {
            let (s, text) = post(&r, cred, body).await;
            assert_eq!(s, want, "{backend}: {what}: {text}");
            assert!(text.contains(says), "{backend}: {what}: {text}");
        }
        assert_eq!(
            r.store.report_count("nx/a").await.expect("count"),
            1,
            "{backend}: nothing else stored"
        );
        assert_eq!(r.store.report_count("nx/b").await.expect("count"), 0, "{backend}");
        // The agent sets the refused ones aside and its queue moves on: the next is stored.
        let next = serde_json::to_string(&report("nx/a", &agent_a, 4)).expect("json");
        let (s, text) = post(&r, Some(&cred_a), next).await;
        assert_eq!(s, 200, "{backend}: {text}");
        assert_eq!(r.store.report_count("nx/a").await.expect("count"), 2, "{backend}");
        // A probe interval no schedule allows is stored, not refused: scoring takes it as an
        // hour at most (rubric/tests/bounded_claims.rs), so the agent loses no evidence.
        let mut long = report("nx/a", &agent_a, 5);
        long.probes.interval_secs = u32::MAX;
        long.probes.samples.push(ProbeSample {
            target: "10.0.0.1".into(),
            kind: ProbeKind::Icmp,
            role: ProbeRole::Upstream,
            at: long.created_at,
            ok: true,
            rtt_ms: Some(1.0),
            error: None,
            run: None,
        });
        let (s, text) = post(&r, Some(&cred_a), serde_json::to_string(&long).expect("json")).await;
        assert_eq!(s, 200, "{backend}: {text}");

        // Enrolment refuses what cannot be stored too, naming the field.
        let secret = format!("secret-nul-{}", uuid::Uuid::new_v4());
        r.store
            .add_token("nx/b", &secret, Utc::now() + Duration::hours(1))
            .await
            .expect("token");
        let client = kaohe_agent::delivery::client(&r.ca_pem, None).expect("client");
        let resp = client
            .post(format!("{}/api/v1/enroll", r.url))
            .json(&serde_json::json!({"secret": secret, "hostname": "pc\u{0}1", "agent_version": "0.1.0"}))
            .send()
            .await
            .expect("enrol");
        assert_eq!(resp.status(), 422, "{backend}");
        assert!(resp.text().await.unwrap_or_default().contains("hostname"), "{backend}");

        // Metrics count what happened, and name the unit last seen.
        let client = kaohe_agent::delivery::client(&r.ca_pem, None).expect("client");
        let m = client
            .get(format!("{}/metrics", r.url))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        assert!(m.contains("kaohe_reports_ingested_total 3"), "{backend}: {m}");
        assert!(m.contains("kaohe_reports_duplicate_total 1"), "{backend}: {m}");
        assert!(
            m.contains("kaohe_unit_last_seen_seconds{unit=\"nx/a\"}"),
            "{backend}: {m}"
        );
        assert!(!m.contains("unit=\"nx/b\""), "{backend}: nx/b never delivered: {m}");

        // A revoked agent is refused.
        assert!(r.store.revoke_agent(&agent_a, Utc::now()).await.expect("revoke"));
        let (s, text) = post(
            &r,
            Some(&cred_a),
            serde_json::to_string(&report("nx/a", &agent_a, 3)).expect("json"),
        )
        .await;
        assert_eq!(s, 403, "{backend}: {text}");
        assert!(text.contains("吊销"), "{backend}: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_over_its_rate_gets_429_and_others_are_unaffected() {
    let (_, db) = common::database_urls("rate").await.remove(0);
    let r = start("rate", db).await;
    let (agent_a, cred_a) = enrol(&r, "nx/a").await;
    let (agent_b, cred_b) = enrol(&r, "nx/b").await;
    let mut limited = 0;
    for seq in 1..=25 {
        let (s, _) = post(
            &r,
            Some(&cred_a),
            serde_json::to_string(&report("nx/a", &agent_a, seq)).expect("json"),
        )
        .await;
        if s == 429 {
            limited += 1;
        }
    }
    assert_eq!(limited, 5, "20 a minute pass, the rest get 429");
    let (s, _) = post(
        &r,
        Some(&cred_b),
        serde_json::to_string(&report("nx/b", &agent_b, 1)).expect("json"),
    )
    .await;
    assert_eq!(s, 200, "another agent is not limited");
}

#[test]
fn the_openapi_file_describes_every_path_the_router_serves() {
    let spec: serde_json::Value = serde_json::from_str(kaohe_collector::ingest::OPENAPI_JSON).expect("valid JSON");
    assert_eq!(spec["openapi"], "3.1.0");
    let paths = spec["paths"].as_object().expect("paths");
    // The agents' API and the dashboard (pages and its JSON API).
    let served: Vec<&str> = kaohe_collector::ingest::PATHS
        .iter()
        .chain(kaohe_collector::web::PATHS)
        .copied()
        .collect();
    for p in &served {
        assert!(paths.contains_key(*p), "{p} is served but not described");
    }
    for p in paths.keys() {
        assert!(served.contains(&p.as_str()), "{p} is described but not served");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_collectors_on_one_postgresql_store_each_report_once_and_score_alike() {
    let Some(url) = common::postgres_test_url("two_collectors") else {
        return;
    };
    let db = common::postgres_url(&url, "two_collectors").await;
    let a = start("two-a", db.clone()).await;
    // The second collector runs its migrations against the same, already migrated database.
    let b = start_more("two-b", db).await;
    let (agent, cred) = enrol(&a, "nx/a").await;
    // The agent's reports go to either collector (a load balancer), some to both.
    let reports: Vec<Report> = (1..=12).map(|seq| report("nx/a", &agent, seq)).collect();
    for (i, r) in reports.iter().enumerate() {
        let body = serde_json::to_string(r).expect("json");
        let first = if i % 2 == 0 { &a } else { &b };
        let (s, text) = post(first, Some(&cred), body.clone()).await;
        assert_eq!((s, text.contains("stored")), (200, true), "{text}");
        if i % 3 == 0 {
            let other = if i % 2 == 0 { &b } else { &a };
            let (s, text) = post(other, Some(&cred), body).await;
            assert_eq!(
                (s, text.contains("duplicate")),
                (200, true),
                "a retry at the other collector: {text}"
            );
        }
    }
    assert_eq!(a.store.report_count("nx/a").await.expect("count"), 12);
    assert_eq!(b.store.report_count("nx/a").await.expect("count"), 12);
    let window = (Utc::now() - Duration::hours(1), Utc::now() + Duration::hours(1));
    let via_a = a.store.reports("nx/a", window.0, window.1).await.expect("read");
    let via_b = b.store.reports("nx/a", window.0, window.1).await.expect("read");
    assert_eq!(
        via_a, via_b,
        "both collectors see the same evidence, so they score alike"
    );
}

/// Another collector process on an existing database (units already there).
async fn start_more(test: &str, database_url: String) -> Running {
    start_with(test, database_url, None).await
}

async fn start_with(test: &str, database_url: String, webhook_url: Option<String>) -> Running {
    common::collector(&format!("api-{test}"), database_url, |c| {
        c.max_body_kib = 64;
        c.agent_reports_per_minute = 20;
        c.webhook_url = webhook_url;
    })
    .await
}

/// A webhook receiver on loopback that answers 500 to its first push, then 200.
async fn webhook() -> (String, std::sync::Arc<std::sync::Mutex<Vec<(u16, serde_json::Value)>>>) {
    use std::sync::{Arc, Mutex};
    let got: Arc<Mutex<Vec<(u16, serde_json::Value)>>> = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: String| {
            let g = g.clone();
            async move {
                let mut v = g.lock().expect("lock");
                let status = if v.is_empty() { 500 } else { 200 };
                v.push((status, serde_json::from_str(&body).unwrap_or_default()));
                axum::http::StatusCode::from_u16(status).expect("status")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}/hook"), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_isolation_breach_raises_an_alert_pushed_to_the_webhook_once_retried_after_a_failure() {
    for (backend, url) in common::database_urls("webhook").await {
        let (hook, got) = webhook().await;
        let r = start_with(&format!("webhook-{backend}"), url, Some(hook)).await;
        add_units(&r.store, &["nx", "nx/a"]).await;
        let (agent, credential) = enrol(&r, "nx/a").await;
        let breach = |seq: u64| {
            let mut rep = report("nx/a", &agent, seq);
            rep.isolation.push(kaohe_rubric::evidence::IsolationResult {
                at: Utc::now(),
                canary: "198.51.100.10".into(),
                protocol: kaohe_rubric::evidence::IsolationProtocol::Tcp,
                reached: true,
                via_interface: Some("eth1".into()),
                next_hop: None,
                error: None,
            });
            serde_json::to_string(&rep).expect("json")
        };
        assert_eq!(post(&r, Some(&credential), breach(1)).await.0, 200, "{backend}");
        // Pushed within a few ticks: first refused (500), then delivered.
        let mut delivered = false;
        for _ in 0..60 {
            tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            if got.lock().expect("lock").iter().any(|(status, _)| *status == 200) {
                delivered = true;
                break;
            }
        }
        assert!(
            delivered,
            "{backend}: the alert reached the webhook: {:?}",
            got.lock().expect("lock")
        );
        // The same breach again: the alert is updated, not pushed a second time.
        assert_eq!(post(&r, Some(&credential), breach(2)).await.0, 200, "{backend}");
        tokio::time::sleep(std::time::Duration::from_secs(3)).await;
        let pushes = got.lock().expect("lock").clone();
        assert_eq!(
            pushes.len(),
            2,
            "{backend}: one failed push and one retry, no more: {pushes:?}"
        );
        let alert = &pushes[1].1["alerts"][0];
        assert_eq!(alert["unit_id"], "nx/a", "{backend}");
        assert_eq!(alert["kind"], "isolation_breach", "{backend}");
        let detail = alert["detail"].as_str().unwrap_or("");
        assert!(
            detail.contains("可访问互联网") && detail.contains("198.51.100.10"),
            "{detail}"
        );
        let open = r.store.open_alerts(None, Utc::now()).await.expect("alerts");
        assert_eq!(open.len(), 1, "{backend}: one open alert for the breach");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leak_listener_reports_findings_for_units_below_its_own_and_nothing_else() {
    for (backend, url) in common::database_urls("listener").await {
        let r = start(&format!("listener-{backend}"), url).await;
        // The listener is enrolled for the province "nx"; agents of nx and nx/b.
        let (listener, listener_cred) = enrol_as(&r, "nx", true).await;
        let (province_agent, province_cred) = enrol(&r, "nx").await;
        let (_, cred_b) = enrol(&r, "nx/b").await;
        let leak_report = |agent: &str, unit: &str, seq: u64| {
            let mut rep = report(unit, agent, seq);
            rep.checks.leak_detection = kaohe_rubric::evidence::CheckStatus::Ran;
            rep.leaks.push(kaohe_rubric::evidence::LeakFinding {
                at: Utc::now(),
                ip: "10.1.0.23".into(),
                mac: None,
                method: kaohe_rubric::evidence::LeakMethod::SpoofedSource,
                protocol: "icmp".into(),
                detail: "echo reply reached the listener".into(),
            });
            rep
        };
        let json = |rep: &Report| serde_json::to_string(rep).expect("json");
        let (s, text) = post(&r, Some(&listener_cred), json(&leak_report(&listener, "nx/a", 1))).await;
        assert_eq!(
            s, 200,
            "{backend}: the listener reports a finding for a unit below it: {text}"
        );
        // An ordinary agent of the province (its own machine room) is no listener.
        let (s, _) = post(&r, Some(&province_cred), json(&leak_report(&province_agent, "nx/a", 1))).await;
        assert_eq!(
            s, 403,
            "{backend}: only a listener's credential reports for other units"
        );
        // More than leak findings for another unit: refused.
        let mut more = leak_report(&listener, "nx/a", 2);
        more.checks.inventory = kaohe_rubric::evidence::CheckStatus::Ran;
        let (s, _) = post(&r, Some(&listener_cred), json(&more)).await;
        assert_eq!(s, 403, "{backend}: a listener's report carries leak findings only");
        // A bureau's agent cannot report for its sibling, leak-only or not.
        let agent_b = r.store.agents(Some("nx/b")).await.expect("agents")[0].id.clone();
        let (s, _) = post(&r, Some(&cred_b), json(&leak_report(&agent_b, "nx/a", 1))).await;
        assert_eq!(s, 403, "{backend}: no unit reports for a sibling");
        // The finding is nx/a's evidence and raised an alert there.
        assert_eq!(r.store.report_count("nx/a").await.expect("count"), 1, "{backend}");
        let alerts = r.store.open_alerts(None, Utc::now()).await.expect("alerts");
        assert!(
            alerts
                .iter()
                .any(|a| a.unit_id == "nx/a" && a.detail.contains("10.1.0.23")),
            "{backend}: {alerts:?}"
        );
    }
}

//! The collector's benchmarks, printed as Markdown tables for `docs/benchmarks.md`:
//!
//! ```text
//! cargo bench -p kaohe-collector --bench collector -- [ingest] [province] [--postgres URL]
//!     [--reports 20000] [--agents 500] [--concurrency 64] [--units 300]
//! ```
//!
//! - `ingest`: synthetic agents (each report 60 probe samples, 30 inventory entries, two
//!   isolation rounds) delivered over HTTPS to a real collector on loopback; beside it the
//!   same reports through `Store::insert_report` (commit + roll-up + alerts, no HTTP) and
//!   raw inserts of the same rows into the `reports` table alone — the ceiling.
//! - `province`: a 300-unit province with a whole year of daily roll-ups, ranked (every
//!   unit scored for the year).
//!
//! SQLite always; PostgreSQL too with `--postgres URL` (or `KAOHE_TEST_POSTGRES_URL`).
//! Everything goes to loopback.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, Duration, TimeZone, Utc};
use kaohe_collector::config::CollectorConfig;
use kaohe_collector::store::{Store, Unit, millis};
use kaohe_rubric::Report;
use kaohe_rubric::evidence::{
    CheckStatus, HostFacts, HowSeen, IsolationProtocol, IsolationResult, Observation, ProbeKind, ProbeRole, ProbeSample,
};
use kaohe_rubric::rubric::Rubric;

struct Args {
    ingest: bool,
    province: bool,
    postgres: Option<String>,
    reports: usize,
    agents: usize,
    concurrency: usize,
    units: usize,
}

fn args() -> Args {
    let raw: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let value = |flag: &str| raw.iter().position(|a| a == flag).and_then(|i| raw.get(i + 1).cloned());
    let number = |flag: &str, default: usize| value(flag).and_then(|v| v.parse().ok()).unwrap_or(default);
    let ingest = raw.iter().any(|a| a == "ingest");
    let province = raw.iter().any(|a| a == "province");
    Args {
        ingest: ingest || !province,
        province: province || !ingest,
        postgres: value("--postgres").or_else(|| std::env::var("KAOHE_TEST_POSTGRES_URL").ok()),
        reports: number("--reports", 20_000),
        agents: number("--agents", 500),
        concurrency: number("--concurrency", 64),
        units: number("--units", 300),
    }
}

fn host() -> HostFacts {
    HostFacts {
        hostname: "room-1".into(),
        os: "linux".into(),
        boot_time: None,
        agent_version: "bench".into(),
        agent_started_at: None,
    }
}

/// One ten-minute report: 3 targets × 20 samples, 30 LAN devices, two isolation rounds.
fn synth_report(unit: &str, agent: &str, seq: u64, created: DateTime<Utc>) -> Report {
    let mut r = Report::empty(uuid::Uuid::new_v4(), agent, unit, seq, created, host());
    r.checks.reachability = CheckStatus::Ran;
    r.checks.isolation = CheckStatus::Ran;
    r.checks.inventory = CheckStatus::Ran;
    r.probes.interval_secs = 30;
    let start = created - Duration::minutes(10);
    for (target, role) in [
        ("10.9.0.1", ProbeRole::Upstream),
        ("10.0.0.10:8443", ProbeRole::Upstream),
        ("10.9.0.2", ProbeRole::Device),
    ] {
        for i in 0..20 {
            // A healthy line: a lost probe about once in three days.
            let ok = !(seq * 20 + i).is_multiple_of(2_000);
            r.probes.samples.push(ProbeSample {
                target: target.into(),
                kind: if target.contains(':') {
                    ProbeKind::Tcp
                } else {
                    ProbeKind::Icmp
                },
                role,
                at: start + Duration::seconds(30 * i as i64),
                ok,
                rtt_ms: ok.then_some(0.8),
                error: (!ok).then(|| "timeout".into()),
                run: None,
            });
        }
    }
    for d in 0..30u8 {
        r.inventory.push(Observation {
            ip: format!("10.9.0.{}", 10 + d),
            mac: Some(format!("02:00:00:00:09:{d:02x}")),
            vendor: Some("Huawei Technologies Co.,Ltd".into()),
            first_seen: start,
            last_seen: created,
            how: vec![HowSeen::ArpSweep],
        });
    }
    for k in 0..2 {
        r.isolation.push(IsolationResult {
            at: start + Duration::minutes(5 * k),
            canary: "198.51.100.10".into(),
            protocol: IsolationProtocol::Icmp,
            reached: false,
            via_interface: None,
            next_hop: None,
            error: Some("timeout".into()),
        });
    }
    r
}

fn unit(id: String, parent: Option<String>, kind: &str) -> Unit {
    Unit {
        name: format!("单位 {id}"),
        id,
        parent,
        kind: kind.into(),
        maintainer: Some("张三".into()),
        responder: Some("李四".into()),
        enrolled: None,
    }
}

/// A fresh database: SQLite in a temp dir, or a new schema of the PostgreSQL database.
async fn fresh_url(backend: &str, pg: Option<&str>, name: &str) -> String {
    match backend {
        "sqlite" => {
            let dir = std::env::temp_dir().join(format!("kaohe-bench-{name}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir");
            format!("sqlite://{}", dir.join("kaohe.db").display())
        }
        _ => {
            let url = pg.expect("postgres url");
            let schema = format!("kaohe_bench_{name}_{}", std::process::id());
            sqlx::any::install_default_drivers();
            let admin = sqlx::AnyPool::connect(url).await.expect("postgres reachable");
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                .execute(&admin)
                .await
                .expect("drop");
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
                .execute(&admin)
                .await
                .expect("create");
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}options=-c%20search_path%3D{schema}")
        }
    }
}

/// Units and enrolled agents; returns (unit, agent, credential) per agent.
async fn enrol(store: &Store, agents: usize) -> Vec<(String, String, String)> {
    store
        .add_unit(&unit("p".into(), None, "province"))
        .await
        .expect("province");
    let mut out = Vec::with_capacity(agents);
    for i in 0..agents {
        let id = format!("p/u{i:05}");
        store
            .add_unit(&unit(id.clone(), Some("p".into()), "county"))
            .await
            .expect("unit");
        let secret = format!("secret-{i}");
        store
            .add_token(&id, &secret, Utc::now() + Duration::hours(1))
            .await
            .expect("token");
        let agent = format!("agent-{i:05}");
        let cred = format!("cred-{i:05}-{}", uuid::Uuid::new_v4().simple());
        store
            .enrol(&secret, &agent, &cred, "room-1", "bench", Utc::now())
            .await
            .expect("enrol");
        out.push((id, agent, cred));
    }
    out
}

/// The load: `n` reports round-robin over the agents, serialised once.
fn load(agents: &[(String, String, String)], n: usize) -> Vec<(usize, Report, String)> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 2, 0, 0, 0).single().expect("time");
    (0..n)
        .map(|i| {
            let a = i % agents.len();
            let seq = (i / agents.len()) as u64 + 1;
            let r = synth_report(&agents[a].0, &agents[a].1, seq, t0 + Duration::minutes(10 * seq as i64));
            let body = serde_json::to_string(&r).expect("json");
            (a, r, body)
        })
        .collect()
}

/// Runs `work` over the items with `concurrency` tasks; returns reports per second.
async fn drive<F, Fut>(items: Arc<Vec<(usize, Report, String)>>, concurrency: usize, work: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static + Clone,
    Fut: std::future::Future<Output = ()> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (next, items, work) = (next.clone(), items.clone(), work.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= items.len() {
                    break;
                }
                work(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    items.len() as f64 / started.elapsed().as_secs_f64()
}

/// CPU seconds (user + system) a process has used so far, from /proc.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the command.
    (ticks(11) + ticks(12)) / 100.0
}

/// One row of the ingest table: what, reports per second, and the server's CPU time per
/// report where it runs in a process of its own.
struct IngestRow {
    what: String,
    rate: f64,
    server_cpu_ms: Option<f64>,
}

async fn ingest(backend: &'static str, a: &Args) -> Vec<IngestRow> {
    let mut rows = Vec::new();
    let pg = a.postgres.as_deref();

    // 1. Over HTTPS to a real collector process (the release binary), loopback only.
    let url = fresh_url(backend, pg, "http").await;
    let dir = std::env::temp_dir().join(format!("kaohe-bench-collector-{backend}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let config = CollectorConfig {
        data_dir: dir.clone(),
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        public_url: Some(format!("https://127.0.0.1:{port}")),
        database_url: Some(url.clone()),
        agent_reports_per_minute: u32::MAX,
        ..CollectorConfig::default()
    };
    let (store, _) = kaohe_collector::serve::prepare(&config).await.expect("prepare");
    let agents = enrol(&store, a.agents).await;
    let items = Arc::new(load(&agents, a.reports));
    let mean_kib = items.iter().map(|i| i.2.len()).sum::<usize>() as f64 / items.len() as f64 / 1024.0;
    let cfg = dir.join("collector.toml");
    std::fs::write(
        &cfg,
        format!(
            "data_dir = {:?}\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"https://127.0.0.1:{port}\"\ndatabase_url = {:?}\nagent_reports_per_minute = 4000000000\n",
            dir.display().to_string(),
            url
        ),
    )
    .expect("config");
    let mut server = std::process::Command::new(env!("CARGO_BIN_EXE_kaohe-collector"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("collector starts");
    let ca = std::fs::read(dir.join("tls/ca.pem")).expect("ca");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("ca pem"))
        .pool_max_idle_per_host(a.concurrency)
        .build()
        .expect("client");
    let endpoint = format!("https://127.0.0.1:{port}{}", kaohe_rubric::enrolment::INGEST_PATH);
    for _ in 0..200 {
        if client
            .get(format!("https://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_ok()
        {
            break;
        }
        tokio::time::sleep(StdDuration::from_millis(50)).await;
    }
    let creds: Arc<Vec<String>> = Arc::new(agents.iter().map(|x| x.2.clone()).collect());
    let (it, cl, ep) = (items.clone(), client.clone(), endpoint.clone());
    let cpu0 = cpu_secs(server.id());
    let rate = drive(items.clone(), a.concurrency, move |i| {
        let (it, cl, ep, creds) = (it.clone(), cl.clone(), ep.clone(), creds.clone());
        async move {
            let (agent, _, body) = &it[i];
            let resp = cl
                .post(&ep)
                .bearer_auth(&creds[*agent])
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .expect("post");
            assert!(resp.status().is_success(), "ingest: {}", resp.status());
        }
    })
    .await;
    let server_cpu = cpu_secs(server.id()) - cpu0;
    let _ = server.kill();
    let _ = server.wait();
    let stored: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM reports")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert_eq!(stored as usize, a.reports, "every report stored once");
    rows.push(IngestRow {
        what: format!(
            "{backend}: HTTPS to the collector process ({} agents, {} connections, {mean_kib:.1} KiB/report)",
            a.agents, a.concurrency
        ),
        rate,
        server_cpu_ms: Some(server_cpu * 1000.0 / a.reports as f64),
    });

    // 2. The storage path alone: the group-commit writer (commit + roll-up + alerts).
    let store = Store::open(&fresh_url(backend, pg, "store").await)
        .await
        .expect("store");
    enrol(&store, a.agents).await;
    let writer = kaohe_collector::batch::Writer::start(store.clone());
    let it = items.clone();
    let rate = drive(items.clone(), a.concurrency, move |i| {
        let (w, it) = (writer.clone(), it.clone());
        async move {
            let (_, r, body) = &it[i];
            w.store(r.clone(), body.clone()).await.expect("stored");
        }
    })
    .await;
    rows.push(IngestRow {
        what: format!("{backend}: group-commit writer, no HTTP (insert + roll-up + alerts)"),
        rate,
        server_cpu_ms: None,
    });

    // 3. Ceilings: the same rows into `reports` alone — one per transaction, and 256 per
    //    transaction like the writer's batches.
    for batch in [1usize, 256] {
        let store = Store::open(&fresh_url(backend, pg, &format!("raw{batch}")).await)
            .await
            .expect("store");
        enrol(&store, a.agents).await;
        let started = Instant::now();
        let chunks: Vec<Vec<usize>> = (0..items.len())
            .collect::<Vec<_>>()
            .chunks(batch)
            .map(<[usize]>::to_vec)
            .collect();
        let chunks = Arc::new(chunks);
        let next = Arc::new(AtomicUsize::new(0));
        let workers = if batch == 1 { 16 } else { 2 };
        let mut tasks = Vec::new();
        for _ in 0..workers {
            let (s, it, chunks, next) = (store.clone(), items.clone(), chunks.clone(), next.clone());
            tasks.push(tokio::spawn(async move {
                loop {
                    let c = next.fetch_add(1, Ordering::Relaxed);
                    let Some(chunk) = chunks.get(c) else { break };
                    let mut tx = s.pool().begin().await.expect("tx");
                    for &i in chunk {
                        let (_, r, body) = &it[i];
                        sqlx::query(
                            "INSERT INTO reports (report_id, agent_id, unit_id, sequence, created_at, received_at, body) \
                             VALUES ($1, $2, $3, $4, $5, $6, $7)",
                        )
                        .bind(r.report_id.to_string())
                        .bind(&r.agent_id)
                        .bind(&r.unit_id)
                        .bind(r.sequence as i64)
                        .bind(millis(r.created_at))
                        .bind(millis(Utc::now()))
                        .bind(body)
                        .execute(&mut *tx)
                        .await
                        .expect("insert");
                    }
                    tx.commit().await.expect("commit");
                }
            }));
        }
        for t in tasks {
            t.await.expect("task");
        }
        rows.push(IngestRow {
            what: format!("{backend}: raw INSERT of the same rows, {batch} per transaction (ceiling)"),
            rate: items.len() as f64 / started.elapsed().as_secs_f64(),
            server_cpu_ms: None,
        });
    }
    let _ = std::fs::remove_dir_all(&dir);
    rows
}

/// A local day's digest of a unit: 144 ten-minute reports merged, built once per kind
/// of day and copied to every day by rewriting its dates.
fn day_template(flaky: bool) -> String {
    let tz = Rubric::default_rubric().timezone;
    // 2026-01-01 00:00 Asia/Shanghai.
    let day = Utc.with_ymd_and_hms(2025, 12, 31, 16, 0, 0).single().expect("time");
    let reports: Vec<Report> = (0..144)
        .map(|k| {
            let mut r = synth_report("UNIT", "AGENT", k + 1, day + Duration::minutes(10 * k as i64 + 10));
            if flaky && (60..66).contains(&k) {
                for s in &mut r.probes.samples {
                    s.ok = false;
                }
            }
            r
        })
        .collect();
    let digests = kaohe_rubric::rollup::digests(&reports, tz);
    serde_json::to_string(&digests[0]).expect("json")
}

async fn province(backend: &'static str, a: &Args) -> Vec<(String, f64)> {
    let store = Store::open(&fresh_url(backend, a.postgres.as_deref(), "province").await)
        .await
        .expect("store");
    let mut units = vec![unit("p".into(), None, "province")];
    for c in 0..(a.units / 25).max(1) {
        units.push(unit(format!("p/c{c:02}"), Some("p".into()), "city"));
    }
    let cities = units.len() - 1;
    for i in 0..a.units {
        units.push(unit(
            format!("p/c{:02}/u{i:04}", i % cities),
            Some(format!("p/c{:02}", i % cities)),
            "county",
        ));
    }
    for u in &units {
        store.add_unit(u).await.expect("unit");
    }
    let templates = [day_template(false), day_template(true)];
    let counts: Vec<i64> = templates
        .iter()
        .map(|t| Report::from_json(t).map_or(0, |r| r.rollup_of as i64))
        .collect();
    let tz = Rubric::default_rubric().timezone;
    let built = Instant::now();
    let mut rows = 0usize;
    let mut tx = store.pool().begin().await.expect("tx");
    for (n, u) in units.iter().filter(|u| u.kind == "county").enumerate() {
        let agent = format!("agent-{n:05}");
        sqlx::query(
            "INSERT INTO agents (id, unit_id, credential_hash, hostname, agent_version, enrolled_at) VALUES ($1, $2, $3, 'room-1', 'bench', 0)",
        )
        .bind(&agent)
        .bind(&u.id)
        .bind(format!("h-{n}"))
        .execute(&mut *tx)
        .await
        .expect("agent");
        for d in 0..365 {
            let local = chrono::NaiveDate::from_ymd_opt(2026, 1, 1).expect("day") + chrono::Days::new(d);
            let prev = local.pred_opt().expect("day");
            let flaky = (n + d as usize).is_multiple_of(29);
            let body = templates[usize::from(flaky)]
                .replace("2025-12-31T", &format!("{prev}T"))
                .replace("2026-01-01T", &format!("{local}T"))
                .replace("\"UNIT\"", &format!("\"{}\"", u.id))
                .replace("\"AGENT\"", &format!("\"{agent}\""))
                .replace("\"sequence\":144,", &format!("\"sequence\":{},", (d + 1) * 144));
            sqlx::query(
                "INSERT INTO rollups (unit_id, day, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, $4, $5, 0)",
            )
            .bind(&u.id)
            .bind(local.to_string())
            .bind(&agent)
            .bind(counts[usize::from(flaky)])
            .bind(body)
            .execute(&mut *tx)
            .await
            .expect("rollup");
            rows += 1;
        }
    }
    tx.commit().await.expect("commit");
    let _ = tz;
    eprintln!(
        "{backend}: {rows} digests of {} units written in {:.1} s",
        a.units,
        built.elapsed().as_secs_f64()
    );
    let rubric = Rubric::default_rubric();
    let now = Utc.with_ymd_and_hms(2027, 1, 15, 0, 0, 0).single().expect("time");
    let year: kaohe_rubric::Period = "2026".parse().expect("year");
    let mut times = Vec::new();
    for _ in 0..4 {
        let t = Instant::now();
        let ranking = kaohe_collector::scores::ranking(&store, &rubric, &units, year, now)
            .await
            .expect("ranking");
        times.push(t.elapsed().as_secs_f64());
        assert_eq!(ranking.rows.len(), units.len() - 1, "every unit but the province");
        let scored = ranking.rows.iter().filter(|r| r.reports > 0).count();
        assert_eq!(scored, a.units, "every unit has a year of evidence");
    }
    let cold = times.remove(0);
    times.sort_by(f64::total_cmp);
    vec![
        (
            format!(
                "{backend}: rank {} units for 2026 from {rows} daily roll-ups, first time (builds {} month digests)",
                a.units,
                a.units * 12
            ),
            cold,
        ),
        (
            format!("{backend}: the same again (month digests kept), median of 3"),
            times[1],
        ),
    ]
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut backends = vec!["sqlite"];
    if a.postgres.is_some() {
        backends.push("postgres");
    } else {
        eprintln!("no --postgres URL and KAOHE_TEST_POSTGRES_URL unset: SQLite only");
    }
    if a.ingest {
        println!(
            "| ingest, {} reports | reports/s | collector CPU per report (capacity) |\n|---|---:|---:|",
            a.reports
        );
        for b in &backends {
            for row in rt.block_on(ingest(b, &a)) {
                let cpu = row.server_cpu_ms.map_or(String::from("—"), |ms| {
                    format!("{ms:.2} ms ({:.0}/s on 2 cores)", 2000.0 / ms)
                });
                println!("| {} | {:.0} | {cpu} |", row.what, row.rate);
            }
        }
        println!();
    }
    if a.province {
        println!("| province scoring | seconds |\n|---|---:|");
        for b in &backends {
            for (name, secs) in rt.block_on(province(b, &a)) {
                println!("| {name} | {secs:.3} |");
            }
        }
    }
}

//! Shared by the collector's tests: a store on each backend the machine has.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use kaohe_collector::config::CollectorConfig;
use kaohe_collector::store::{Store, Unit};

/// The PostgreSQL test database's URL, from `KAOHE_TEST_POSTGRES_URL`. Unset, the test's
/// PostgreSQL half is skipped, saying so — unless `CI=true`, where a test that cannot do
/// its real part fails, naming what is missing.
pub fn postgres_test_url(test: &str) -> Option<String> {
    let url = std::env::var("KAOHE_TEST_POSTGRES_URL").ok();
    let what = "PostgreSQL (KAOHE_TEST_POSTGRES_URL is not set)";
    // Without a URL this says it skipped (or, under CI, fails); either way `url` is the answer.
    kaohe_process::testing::require(test, url.is_some(), what);
    url
}

/// A store on a fresh SQLite file, and one on a fresh PostgreSQL schema when
/// `KAOHE_TEST_POSTGRES_URL` is set (see [`postgres_test_url`]).
pub async fn stores(test: &str) -> Vec<(&'static str, Store)> {
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("kaohe-store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = Store::open(&format!("sqlite://{}", dir.join("kaohe.db").display()))
        .await
        .expect("sqlite store opens");
    out.push(("sqlite", sqlite));
    if let Some(url) = postgres_test_url(test) {
        out.push(("postgres", postgres(&url, test).await));
    }
    out
}

/// Database URLs for a test: a fresh SQLite file, and a fresh PostgreSQL schema when
/// `KAOHE_TEST_POSTGRES_URL` is set (see [`postgres_test_url`]).
pub async fn database_urls(test: &str) -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("kaohe-db-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut out = vec![("sqlite", format!("sqlite://{}", dir.join("kaohe.db").display()))];
    if let Some(url) = postgres_test_url(test) {
        out.push(("postgres", postgres_url(&url, test).await));
    }
    out
}

/// A store in a new, empty schema of the test database.
pub async fn postgres(url: &str, test: &str) -> Store {
    Store::open(&postgres_url(url, test).await)
        .await
        .expect("postgres store opens")
}

/// A URL whose connections use a new, empty schema of the test database,
/// `kaohe_<test>_<pid>`.
pub async fn postgres_url(url: &str, test: &str) -> String {
    let schema = create_schema(url, test).await;
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
}

/// Creates the schema `kaohe_<test>_<pid>` (empty), first dropping the ones of this test
/// that earlier runs left behind: only those whose process is gone, so that a test
/// running at the same time in another process keeps its schema. Returns its name.
pub async fn create_schema(url: &str, test: &str) -> String {
    let prefix = format!("kaohe_{}_", test.replace('-', "_"));
    let schema = format!("{prefix}{}", std::process::id());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(url).await.expect("postgres reachable");
    let found: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS TEXT) FROM information_schema.schemata WHERE schema_name LIKE $1",
    )
    .bind(format!("{prefix}%"))
    .fetch_all(&admin)
    .await
    .expect("list schemas");
    let stale = found.into_iter().filter(|old| {
        // Another test's schema whose name starts like this one's ("units_2" for "units")
        // has a non-numeric rest, or a live process: it is left alone.
        let pid = old[prefix.len()..].parse::<u32>().ok();
        pid.is_some_and(|pid| pid == std::process::id() || !std::path::Path::new(&format!("/proc/{pid}")).exists())
    });
    for old in stale {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {old} CASCADE")))
            .execute(&admin)
            .await
            .expect("drop stale schema");
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    admin.close().await;
    schema
}

/// A collector serving TLS on a free loopback port; stopped (and its data directory
/// removed) when dropped.
pub struct Running {
    pub url: String,
    pub ca_pem: Vec<u8>,
    pub store: Store,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    dir: PathBuf,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Starts a collector on `database_url` with the defaults, changed by `tweak`, and waits
/// until it answers.
pub async fn collector(name: &str, database_url: String, tweak: impl FnOnce(&mut CollectorConfig)) -> Running {
    let dir = std::env::temp_dir().join(format!("kaohe-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let mut config = CollectorConfig {
        data_dir: dir.clone(),
        listen: SocketAddr::from(([127, 0, 0, 1], port)),
        public_url: Some(format!("https://127.0.0.1:{port}")),
        database_url: Some(database_url),
        ..CollectorConfig::default()
    };
    tweak(&mut config);
    let (store, _) = kaohe_collector::serve::prepare(&config).await.expect("prepare");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let c = config.clone();
    tokio::spawn(async move {
        let _ = kaohe_collector::serve::serve(c, async {
            let _ = rx.await;
        })
        .await;
    });
    let ca_pem = std::fs::read(dir.join("tls/ca.pem")).expect("ca");
    let url = config.public_url();
    let client = kaohe_agent::delivery::client(&ca_pem, None).expect("client");
    for _ in 0..100 {
        if client.get(format!("{url}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    Running {
        url,
        ca_pem,
        store,
        stop: Some(tx),
        dir,
    }
}

/// A unit with nothing but its place in the tree.
pub fn unit(id: &str, name: &str, parent: Option<&str>, kind: &str) -> Unit {
    Unit {
        id: id.into(),
        name: name.into(),
        parent: parent.map(str::to_string),
        kind: kind.into(),
        maintainer: None,
        responder: None,
        enrolled: None,
    }
}

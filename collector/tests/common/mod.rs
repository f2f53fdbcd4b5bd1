//! Shared by the collector's tests: a store on each backend the machine has.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;

use kaohe_collector::config::CollectorConfig;
use kaohe_collector::store::{Store, Unit};

/// A store on a fresh SQLite file, and one on a fresh PostgreSQL schema when
/// `KAOHE_TEST_POSTGRES_URL` is set (otherwise it says it skipped PostgreSQL).
pub async fn stores(test: &str) -> Vec<(&'static str, Store)> {
    let mut out = Vec::new();
    let dir = std::env::temp_dir().join(format!("kaohe-store-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let sqlite = Store::open(&format!("sqlite://{}", dir.join("kaohe.db").display()))
        .await
        .expect("sqlite store opens");
    out.push(("sqlite", sqlite));
    match std::env::var("KAOHE_TEST_POSTGRES_URL") {
        Ok(url) => out.push(("postgres", postgres(&url, test).await)),
        Err(_) => println!("{test}: KAOHE_TEST_POSTGRES_URL is not set; skipped the PostgreSQL half"),
    }
    out
}

/// Database URLs for a test: a fresh SQLite file, and a fresh PostgreSQL schema when
/// `KAOHE_TEST_POSTGRES_URL` is set.
pub async fn database_urls(test: &str) -> Vec<(&'static str, String)> {
    let dir = std::env::temp_dir().join(format!("kaohe-db-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let mut out = vec![("sqlite", format!("sqlite://{}", dir.join("kaohe.db").display()))];
    match std::env::var("KAOHE_TEST_POSTGRES_URL") {
        Ok(url) => out.push(("postgres", postgres_url(&url, test).await)),
        Err(_) => println!("{test}: KAOHE_TEST_POSTGRES_URL is not set; skipped the PostgreSQL half"),
    }
    out
}

/// A store in a new, empty schema of the test database.
pub async fn postgres(url: &str, test: &str) -> Store {
    Store::open(&postgres_url(url, test).await)
        .await
        .expect("postgres store opens")
}

/// A URL whose connections use a new, empty schema of the test database.
pub async fn postgres_url(url: &str, test: &str) -> String {
    let schema = format!("kaohe_{}_{}", test.replace('-', "_"), std::process::id());
    sqlx::any::install_default_drivers();
    let admin = sqlx::AnyPool::connect(url).await.expect("postgres reachable");
    // Schemas that earlier runs of this test left behind.
    let stale: Vec<String> = sqlx::query_scalar(
        "SELECT CAST(schema_name AS TEXT) FROM information_schema.schemata WHERE schema_name LIKE $1",
    )
    .bind(format!("kaohe_{}_%", test.replace('-', "_")))
    .fetch_all(&admin)
    .await
    .expect("list schemas");
    for old in stale {
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {old} CASCADE")))
            .execute(&admin)
            .await
            .expect("drop stale schema");
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
        .execute(&admin)
        .await
        .expect("drop schema");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create schema");
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}options=-c%20search_path%3D{schema}")
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

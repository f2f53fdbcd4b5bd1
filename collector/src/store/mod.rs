//! Storage: SQLite in the data directory (the embedded default, WAL) or PostgreSQL when
//! `database_url = "postgres://…"`. One set of portable SQL serves both through sqlx's
//! `Any` driver; the migrations under `collector/migrations/` are applied at open by sqlx's
//! runner (`migrate.rs`), and several collectors may share one PostgreSQL database.
//!
//! Every SQL statement of the collector lives in this module, one file per aggregate:
//! `units` (units and their registries), `agents` (enrolment tokens and agents), `reports`,
//! `rollups` (day and month digests), `entries` (manual entries and the audit log),
//! `alerts`, `users` (dashboard users and sessions).
//!
//! Times are stored as Unix milliseconds (BIGINT). Secrets (enrolment secrets, agent
//! credentials, session tokens) are stored only as SHA-256 hashes.

mod agents;
mod alerts;
mod entries;
mod migrate;
mod reports;
mod rollups;
mod units;
mod users;

use chrono::{DateTime, TimeZone, Utc};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;

pub use agents::{AGENT, Agent, LISTENER};
pub use migrate::latest_migration;
pub(crate) use reports::parse as parse_body;
pub use reports::{Delivery, Stored};
pub use units::Unit;
pub use users::{MAX_SESSION, Role, Session, User};

/// Why the store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("数据库错误 (database error): {0}")]
    Db(#[from] sqlx::Error),
    #[error("数据库迁移失败 (migration failed): {0}")]
    Migration(#[source] Box<sqlx::migrate::MigrateError>),
    /// A digest that cannot be written as JSON (never expected: digests are plain data).
    #[error("无法编码汇总数据 (cannot encode a roll-up): {0}")]
    Encode(#[source] serde_json::Error),
    /// The request itself is wrong (no such unit, a duplicate, text that cannot be stored):
    /// the message says what, Chinese first.
    #[error("{0}")]
    Invalid(String),
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        // Boxed: the migrator's error is large and rare, and every `Result` of the store
        // would otherwise carry its size.
        StoreError::Migration(Box::new(e))
    }
}

impl StoreError {
    /// Whether the database refuses the data itself, so that trying again cannot help:
    /// PostgreSQL's classes 22 (data exception: e.g. an untranslatable character) and 23
    /// (integrity constraint); SQLite's constraint (19), mismatch (20), too big (18) and
    /// range (25) errors; a request the store refuses ([`StoreError::Invalid`]) and a digest
    /// that cannot be encoded. Everything else (connections, locks, deadlocks, resources)
    /// is transient.
    pub fn is_permanent(&self) -> bool {
        let StoreError::Db(sqlx::Error::Database(d)) = self else {
            return matches!(self, StoreError::Invalid(_) | StoreError::Encode(_));
        };
        let code = d.code().unwrap_or_default();
        if code.len() == 5 {
            // A PostgreSQL SQLSTATE (SQLite's codes have at most four digits).
            code.starts_with("22") || code.starts_with("23")
        } else {
            // SQLite: an extended code keeps the primary code in its low byte.
            code.parse::<i64>().is_ok_and(|c| matches!(c & 0xff, 18 | 19 | 20 | 25))
        }
    }

    /// Whether the error says the database cannot be reached (rather than that a statement
    /// failed).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            StoreError::Db(
                sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) | sqlx::Error::Tls(_)
            )
        )
    }
}

/// Refuses text the databases cannot both store: PostgreSQL rejects U+0000 in text, so it
/// is refused on SQLite too, naming the field.
pub fn check_text(field: &str, value: &str) -> Result<(), StoreError> {
    if value.contains('\0') {
        return Err(StoreError::Invalid(format!(
            "{field} 含有 NUL 字符, 无法保存 ({field} holds a NUL character, which cannot be stored)"
        )));
    }
    Ok(())
}

/// "单位 … 不存在": the error for a unit id that names no unit.
fn no_such_unit(unit_id: &str) -> StoreError {
    StoreError::Invalid(format!("单位 {unit_id} 不存在 (no such unit)"))
}

/// Which database is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// The time zone whose calendar days the roll-ups follow (the rubric's).
    tz: chrono_tz::Tz,
}

/// SHA-256 hex of a secret, as stored.
pub fn hash_secret(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

pub fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms).single().unwrap_or_default()
}

/// A count or sequence number as the BIGINT it is stored as (saturating).
fn bigint(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (creating, for SQLite) the database at `url` and applies pending migrations.
    /// `sqlite://PATH` or `postgres://…`.
    pub async fn open(url: &str) -> Result<Store, StoreError> {
        Store::open_with(url, kaohe_rubric::Rubric::default_rubric().timezone).await
    }

    /// As [`Store::open`], with the time zone whose days the roll-ups follow (the
    /// rubric's), also for roll-ups a migration builds.
    pub async fn open_with(url: &str, tz: chrono_tz::Tz) -> Result<Store, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Backend::Postgres
        } else if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            // Only the scheme: the rest may hold a password.
            let scheme = url.split(':').next().unwrap_or("");
            return Err(StoreError::Invalid(format!(
                "不支持的数据库地址 (scheme `{scheme}:`): 应为 sqlite://路径 或 postgres://… (unsupported database URL)"
            )));
        };
        let url = match backend {
            Backend::Sqlite if !url.contains('?') => format!("{url}?mode=rwc"),
            _ => url.to_string(),
        };
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 16 })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        sqlx::query("PRAGMA journal_mode = WAL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA synchronous = FULL").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA foreign_keys = ON").execute(&mut *conn).await?;
                        sqlx::query("PRAGMA busy_timeout = 10000").execute(&mut *conn).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let store = Store { pool, backend, tz };
        store.migrate().await?;
        Ok(store)
    }

    pub fn timezone(&self) -> chrono_tz::Tz {
        self.tz
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tests and benchmarks that look underneath; the collector's
    /// own modules go through the methods of this module.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

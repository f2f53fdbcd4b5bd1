//! The schema's migrations: the SQL files under `collector/migrations/`, one set for both
//! databases, applied in order by sqlx's migration runner (its `_sqlx_migrations` table,
//! checksums and lock: PostgreSQL's advisory lock, so collectors sharing a database migrate
//! one at a time). Append only: a released migration is never edited (its checksum would
//! no longer match).
//!
//! Databases made before the runner kept their own table, `schema_migrations` (version,
//! name, applied_at); the versions it lists are carried over, recorded as applied without
//! running them again, and the table is left as it was.

use std::borrow::Cow;
use std::sync::OnceLock;

use sqlx::AnyConnection;
use sqlx::migrate::{Migrate, MigrateError, Migration, MigrationType, Migrator};

use super::{Backend, Store, StoreError};

/// The runner's table.
const TABLE: &str = "_sqlx_migrations";

/// (version, description, SQL), in order.
const FILES: &[(i64, &str, &str)] = &[
    (
        1,
        "units, enrolment tokens, agents, reports",
        include_str!("../../migrations/0001_units_tokens_agents_reports.sql"),
    ),
    (
        2,
        "registry entries",
        include_str!("../../migrations/0002_registry_entries.sql"),
    ),
    (
        3,
        "roll-ups, users, sessions, manual entries, audit log, alerts",
        include_str!("../../migrations/0003_rollups_users_sessions_entries_audit_alerts.sql"),
    ),
    (
        4,
        "who may withdraw an entry: its author's role; roll-ups rebuilt with the probe interval clamped",
        include_str!("../../migrations/0004_entry_author_role.sql"),
    ),
];

/// Versions whose application calls for the roll-ups to be rebuilt from the raw reports:
/// roll-ups came with 3; 4 came with the clamped probe interval, so runs joined before it
/// across gaps no agent's schedule allows are rebuilt.
const REBUILDS_ROLLUPS: &[i64] = &[3, 4];

fn migrator() -> &'static Migrator {
    static MIGRATOR: OnceLock<Migrator> = OnceLock::new();
    MIGRATOR.get_or_init(|| {
        let migrations = FILES
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sqlx::SqlSafeStr::into_sql_str(*sql),
                    false,
                )
            })
            .collect();
        Migrator::with_migrations(migrations)
    })
}

/// The newest migration this build knows.
pub fn latest_migration() -> i64 {
    FILES.last().map_or(0, |m| m.0)
}

impl Store {
    /// Applies every migration not yet applied, under the runner's lock, then rebuilds the
    /// roll-ups if a migration that needs it was applied now. Safe to run from several
    /// collectors at once.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.lock().await?;
        let applied = self.migrate_locked(&mut conn).await;
        if let Err(e) = conn.unlock().await {
            // A session lock must not go back to the pool with its connection.
            conn.close_on_drop();
            applied?;
            return Err(e.into());
        }
        drop(conn);
        if applied?.iter().any(|v| REBUILDS_ROLLUPS.contains(v)) {
            let n = self.rebuild_rollups().await?;
            if n > 0 {
                tracing::info!(digests = n, "daily roll-ups built for the stored reports");
            }
        }
        Ok(())
    }

    /// The versions of the migrations applied to this database, in order.
    pub async fn migrations_applied(&self) -> Result<Vec<i64>, StoreError> {
        let mut conn = self.pool.acquire().await?;
        conn.ensure_migrations_table(TABLE).await?;
        let mut versions: Vec<i64> = conn
            .list_applied_migrations(TABLE)
            .await?
            .iter()
            .map(|m| m.version)
            .collect();
        versions.sort_unstable();
        Ok(versions)
    }

    /// The runner's steps with the lock held: the legacy versions carried over, then each
    /// migration missing applied in its own transaction. Returns the versions applied now.
    async fn migrate_locked(&self, conn: &mut AnyConnection) -> Result<Vec<i64>, StoreError> {
        conn.ensure_migrations_table(TABLE).await?;
        if let Some(version) = conn.dirty_version(TABLE).await? {
            return Err(MigrateError::Dirty(version).into());
        }
        let applied = conn.list_applied_migrations(TABLE).await?;
        let legacy = if applied.is_empty() {
            self.legacy_version(conn).await?
        } else {
            None
        };
        let mut now = Vec::new();
        for m in migrator().iter() {
            match applied.iter().find(|a| a.version == m.version) {
                Some(a) if a.checksum != m.checksum => return Err(MigrateError::VersionMismatch(m.version).into()),
                Some(_) => {}
                None if legacy.is_some_and(|l| m.version <= l) => {
                    conn.skip(TABLE, m).await?;
                    tracing::info!(
                        version = m.version,
                        "database migration carried over from schema_migrations"
                    );
                }
                None => {
                    conn.apply(TABLE, m).await?;
                    tracing::info!(version = m.version, name = %m.description, "database migration applied");
                    now.push(m.version);
                }
            }
        }
        Ok(now)
    }

    /// The newest version in the table of migrations kept before sqlx's runner, if the
    /// database has that table.
    async fn legacy_version(&self, conn: &mut AnyConnection) -> Result<Option<i64>, StoreError> {
        let exists = match self.backend {
            Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
            Backend::Postgres => {
                "SELECT COUNT(*) FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_name = 'schema_migrations'"
            }
        };
        let n: i64 = sqlx::query_scalar(exists).fetch_one(&mut *conn).await?;
        if n == 0 {
            return Ok(None);
        }
        Ok(
            sqlx::query_scalar::<_, Option<i64>>("SELECT MAX(version) FROM schema_migrations")
                .fetch_one(&mut *conn)
                .await?,
        )
    }
}

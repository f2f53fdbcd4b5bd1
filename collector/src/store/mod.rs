//! Storage: SQLite in the data directory (the embedded default, WAL) or PostgreSQL when
//! `database_url = "postgres://…"`. One set of portable SQL serves both through sqlx's
//! `Any` driver; versioned migrations are applied at open, each in a transaction, and
//! several collectors may share one PostgreSQL database.
//!
//! Times are stored as Unix milliseconds (BIGINT). Secrets (enrolment secrets, agent
//! credentials) are stored only as SHA-256 hashes.

use chrono::{DateTime, TimeZone, Utc};
use kaohe_rubric::evidence::Report;
use kaohe_rubric::registry::{EntryKind, Registry, RegistryEntry};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

/// Migrations, in order. Append only: a released migration is never edited.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "units, enrolment tokens, agents, reports",
        r#"
CREATE TABLE units (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    parent TEXT REFERENCES units(id),
    kind TEXT NOT NULL,
    maintainer TEXT,
    responder TEXT,
    enrolled TEXT,
    created_at BIGINT NOT NULL
);
CREATE TABLE enrol_tokens (
    secret_hash TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    expires_at BIGINT NOT NULL,
    used_at BIGINT,
    created_at BIGINT NOT NULL
);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    credential_hash TEXT NOT NULL UNIQUE,
    hostname TEXT NOT NULL,
    agent_version TEXT NOT NULL,
    enrolled_at BIGINT NOT NULL,
    revoked_at BIGINT,
    last_seen BIGINT
);
CREATE TABLE reports (
    report_id TEXT PRIMARY KEY,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    unit_id TEXT NOT NULL REFERENCES units(id),
    sequence BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    received_at BIGINT NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX reports_unit_created ON reports (unit_id, created_at);
"#,
    ),
    (
        2,
        "registry entries",
        r#"
CREATE TABLE registry_entries (
    unit_id TEXT NOT NULL REFERENCES units(id),
    line BIGINT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    ip TEXT,
    mac TEXT,
    user_name TEXT,
    location TEXT,
    machine_room BIGINT NOT NULL,
    url TEXT,
    PRIMARY KEY (unit_id, line)
);
"#,
    ),
    (
        3,
        "roll-ups, users, sessions, manual entries, audit log, alerts",
        r#"
CREATE TABLE rollups (
    unit_id TEXT NOT NULL REFERENCES units(id),
    day TEXT NOT NULL,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    reports BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, day, agent_id)
);
CREATE TABLE rollup_months (
    unit_id TEXT NOT NULL REFERENCES units(id),
    month TEXT NOT NULL,
    agent_id TEXT NOT NULL REFERENCES agents(id),
    reports BIGINT NOT NULL,
    body TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (unit_id, month, agent_id)
);
CREATE TABLE users (
    name TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    role TEXT NOT NULL,
    unit_id TEXT REFERENCES units(id),
    display_name TEXT,
    created_at BIGINT NOT NULL,
    disabled_at BIGINT
);
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_name TEXT NOT NULL REFERENCES users(name),
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE TABLE manual_entries (
    id TEXT PRIMARY KEY,
    unit_id TEXT NOT NULL REFERENCES units(id),
    period TEXT NOT NULL,
    item_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    score DOUBLE PRECISION,
    reviewer TEXT NOT NULL,
    note TEXT NOT NULL,
    expires_at BIGINT,
    created_at BIGINT NOT NULL,
    withdrawn_at BIGINT
);
CREATE INDEX manual_entries_unit ON manual_entries (unit_id, period);
CREATE TABLE audit_log (
    id TEXT PRIMARY KEY,
    at BIGINT NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    unit_id TEXT,
    detail TEXT NOT NULL
);
CREATE INDEX audit_log_at ON audit_log (at);
ALTER TABLE enrol_tokens ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
ALTER TABLE agents ADD COLUMN kind TEXT NOT NULL DEFAULT 'agent';
CREATE TABLE alerts (
    unit_id TEXT NOT NULL REFERENCES units(id),
    key TEXT NOT NULL,
    kind TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    detail TEXT NOT NULL,
    notified_at BIGINT,
    PRIMARY KEY (unit_id, key)
)
"#,
    ),
    (
        4,
        "who may withdraw an entry: its author's role; roll-ups rebuilt with the probe interval clamped",
        r#"
ALTER TABLE manual_entries ADD COLUMN author_role TEXT
"#,
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("数据库错误 (database error): {0}")]
    Db(#[from] sqlx::Error),
    #[error("数据库迁移 {version} ({name}) 失败 (migration failed): {source}")]
    Migration {
        version: i64,
        name: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("{0}")]
    Invalid(String),
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

/// The newest migration this build knows.
pub fn latest_migration() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.0)
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

/// A unit of the hierarchy: province → city → county bureau → township station, plus
/// units directly under the department.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Unit {
    pub id: String,
    pub name: String,
    pub parent: Option<String>,
    pub kind: String,
    pub maintainer: Option<String>,
    pub responder: Option<String>,
    pub enrolled: Option<String>,
}

/// What an agent credential is for.
pub const AGENT: &str = "agent";
/// A leak listener: reports spoofed-source findings for the units below its own.
pub const LISTENER: &str = "listener";

/// An enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Agent {
    pub id: String,
    /// [`AGENT`] or [`LISTENER`].
    pub kind: String,
    pub unit_id: String,
    pub hostname: String,
    pub agent_version: String,
    pub enrolled_at: i64,
    pub revoked_at: Option<i64>,
    pub last_seen: Option<i64>,
}

/// What became of a report offered for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Committed now.
    New,
    /// Already there (same report id): acknowledged, not stored twice.
    Duplicate,
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

fn unit_from(row: &AnyRow) -> Result<Unit, sqlx::Error> {
    Ok(Unit {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        parent: row.try_get("parent")?,
        kind: row.try_get("kind")?,
        maintainer: row.try_get("maintainer")?,
        responder: row.try_get("responder")?,
        enrolled: row.try_get("enrolled")?,
    })
}

fn agent_from(row: &AnyRow) -> Result<Agent, sqlx::Error> {
    Ok(Agent {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        unit_id: row.try_get("unit_id")?,
        hostname: row.try_get("hostname")?,
        agent_version: row.try_get("agent_version")?,
        enrolled_at: row.try_get("enrolled_at")?,
        revoked_at: row.try_get("revoked_at")?,
        last_seen: row.try_get("last_seen")?,
    })
}

fn registry_entry_from(row: &AnyRow) -> Result<RegistryEntry, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let ip: Option<String> = row.try_get("ip")?;
    let line: i64 = row.try_get("line")?;
    let room: i64 = row.try_get("machine_room")?;
    Ok(RegistryEntry {
        line: usize::try_from(line).unwrap_or(0),
        kind: match kind.as_str() {
            "app" => EntryKind::App,
            "portal" => EntryKind::Portal,
            _ => EntryKind::Device,
        },
        name: row.try_get("name")?,
        ip: ip.and_then(|i| i.parse().ok()),
        mac: row.try_get("mac")?,
        user: row.try_get("user_name")?,
        location: row.try_get("location")?,
        machine_room: room != 0,
        url: row.try_get("url")?,
    })
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

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Applies every migration not yet applied. Safe to run from several collectors at once
    /// on PostgreSQL: each migration takes an advisory lock and checks again.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        sqlx::query("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at BIGINT NOT NULL)")
            .execute(&self.pool)
            .await?;
        let mut applied = Vec::new();
        for (version, name, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
            if self.backend == Backend::Postgres {
                sqlx::query("SELECT pg_advisory_xact_lock(727372)")
                    .execute(&mut *tx)
                    .await?;
            }
            let done: Option<i64> = sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            if done.is_some() {
                tx.commit().await?;
                continue;
            }
            for statement in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
                sqlx::query(statement)
                    .execute(&mut *tx)
                    .await
                    .map_err(|source| StoreError::Migration {
                        version: *version,
                        name,
                        source,
                    })?;
            }
            sqlx::query("INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)")
                .bind(version)
                .bind(*name)
                .bind(millis(Utc::now()))
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            tracing::info!(version, name, "database migration applied");
            applied.push(*version);
        }
        if applied.contains(&3) || applied.contains(&4) {
            // Roll-ups came with migration 3: build them for the reports already stored.
            // Migration 4 came with the clamped probe interval: runs joined before it across
            // gaps no agent's schedule allows are rebuilt.
            let n = self.rebuild_rollups().await?;
            if n > 0 {
                tracing::info!(digests = n, "daily roll-ups built for the stored reports");
            }
        }
        Ok(())
    }

    /// Whether `unit` lies below `ancestor` in the hierarchy (not equal).
    pub async fn is_below(&self, unit: &str, ancestor: &str) -> Result<bool, StoreError> {
        let mut at = self.unit(unit).await?.and_then(|u| u.parent);
        let mut hops = 0;
        while let Some(p) = at {
            if p == ancestor {
                return Ok(true);
            }
            hops += 1;
            if hops > 32 {
                break;
            }
            at = self.unit(&p).await?.and_then(|u| u.parent);
        }
        Ok(false)
    }

    /// Adds a unit. Its parent, if any, must exist.
    pub async fn add_unit(&self, unit: &Unit) -> Result<(), StoreError> {
        for (field, text) in [
            ("id", Some(&unit.id)),
            ("name", Some(&unit.name)),
            ("kind", Some(&unit.kind)),
            ("maintainer", unit.maintainer.as_ref()),
            ("responder", unit.responder.as_ref()),
        ] {
            check_text(field, text.map_or("", String::as_str))?;
        }
        if let Some(p) = &unit.parent
            && self.unit(p).await?.is_none()
        {
            return Err(StoreError::Invalid(format!(
                "上级单位 {p} 不存在, 请先添加 (parent unit does not exist)"
            )));
        }
        let done = sqlx::query(
            "INSERT INTO units (id, name, parent, kind, maintainer, responder, enrolled, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&unit.id)
        .bind(&unit.name)
        .bind(unit.parent.as_deref())
        .bind(&unit.kind)
        .bind(unit.maintainer.as_deref())
        .bind(unit.responder.as_deref())
        .bind(unit.enrolled.as_deref())
        .bind(millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Invalid(format!("单位 {} 已存在 (unit exists)", unit.id)));
        }
        Ok(())
    }

    pub async fn unit(&self, id: &str) -> Result<Option<Unit>, StoreError> {
        let row = sqlx::query("SELECT * FROM units WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(unit_from).transpose()?)
    }

    pub async fn units(&self) -> Result<Vec<Unit>, StoreError> {
        let rows = sqlx::query("SELECT * FROM units ORDER BY id")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.iter().map(unit_from).collect::<Result<_, _>>()?)
    }

    /// Stores an enrolment token (its secret's hash) for a unit.
    pub async fn add_token(&self, unit_id: &str, secret: &str, expires_at: DateTime<Utc>) -> Result<(), StoreError> {
        self.add_token_of_kind(unit_id, secret, expires_at, AGENT).await
    }

    /// A token whose agent is a leak listener: it may report spoofed-source findings for
    /// the units below `unit_id`.
    pub async fn add_listener_token(
        &self,
        unit_id: &str,
        secret: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.add_token_of_kind(unit_id, secret, expires_at, LISTENER).await
    }

    async fn add_token_of_kind(
        &self,
        unit_id: &str,
        secret: &str,
        expires_at: DateTime<Utc>,
        kind: &str,
    ) -> Result<(), StoreError> {
        if self.unit(unit_id).await?.is_none() {
            return Err(StoreError::Invalid(format!("单位 {unit_id} 不存在 (no such unit)")));
        }
        sqlx::query(
            "INSERT INTO enrol_tokens (secret_hash, unit_id, expires_at, created_at, kind) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(hash_secret(secret))
        .bind(unit_id)
        .bind(millis(expires_at))
        .bind(millis(Utc::now()))
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Spends a one-time secret and enrols an agent with a new credential, atomically.
    /// `None` when the secret is unknown, used or expired.
    pub async fn enrol(
        &self,
        secret: &str,
        agent_id: &str,
        credential: &str,
        hostname: &str,
        agent_version: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "UPDATE enrol_tokens SET used_at = $1 WHERE secret_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING unit_id, kind",
        )
        .bind(millis(now))
        .bind(hash_secret(secret))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            tx.rollback().await?;
            return Ok(None);
        };
        let unit: String = row.try_get("unit_id")?;
        let kind: String = row.try_get("kind")?;
        sqlx::query(
            "INSERT INTO agents (id, unit_id, credential_hash, hostname, agent_version, enrolled_at, kind) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(agent_id)
        .bind(&unit)
        .bind(hash_secret(credential))
        .bind(hostname)
        .bind(agent_version)
        .bind(millis(now))
        .bind(kind)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(unit))
    }

    /// The agent holding this credential, if any (revoked agents included; callers check).
    pub async fn agent_by_credential(&self, credential: &str) -> Result<Option<Agent>, StoreError> {
        let row = sqlx::query("SELECT * FROM agents WHERE credential_hash = $1")
            .bind(hash_secret(credential))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(agent_from).transpose()?)
    }

    pub async fn agents(&self, unit_id: Option<&str>) -> Result<Vec<Agent>, StoreError> {
        let rows = match unit_id {
            Some(u) => {
                sqlx::query("SELECT * FROM agents WHERE unit_id = $1 ORDER BY id")
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM agents ORDER BY id")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.iter().map(agent_from).collect::<Result<_, _>>()?)
    }

    /// Revokes an agent: its credential is refused from now on.
    pub async fn revoke_agent(&self, agent_id: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let r = sqlx::query("UPDATE agents SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
            .bind(millis(now))
            .bind(agent_id)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Stores a report unless its id is already stored, merges it into its day's roll-up
    /// and records the alerts it raises, all in one transaction; returns after the commit.
    pub async fn insert_report(&self, r: &Report, body: &str, now: DateTime<Utc>) -> Result<Stored, StoreError> {
        let mut out = self.insert_reports(&[(r, body)], now).await?;
        Ok(out.pop().unwrap_or(Stored::Duplicate))
    }

    /// Stores a batch of reports in one transaction (group commit): each is inserted
    /// unless its id is stored already, merged into its roll-up and its alerts recorded;
    /// returns, in order, what became of each, after the commit. All or nothing.
    pub async fn insert_reports(
        &self,
        batch: &[(&Report, &str)],
        now: DateTime<Utc>,
    ) -> Result<Vec<Stored>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut out = Vec::with_capacity(batch.len());
        let mut agents: Vec<&str> = Vec::new();
        for (r, body) in batch {
            let done = sqlx::query(
                "INSERT INTO reports (report_id, agent_id, unit_id, sequence, created_at, received_at, body) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (report_id) DO NOTHING",
            )
            .bind(r.report_id.to_string())
            .bind(&r.agent_id)
            .bind(&r.unit_id)
            .bind(i64::try_from(r.sequence).unwrap_or(i64::MAX))
            .bind(millis(r.created_at))
            .bind(millis(now))
            .bind(*body)
            .execute(&mut *tx)
            .await?;
            if done.rows_affected() == 1 {
                self.merge_rollup(&mut tx, r, now).await?;
                Store::upsert_alerts(&mut tx, &crate::alerts::from_report(r, self.tz)).await?;
                out.push(Stored::New);
            } else {
                out.push(Stored::Duplicate);
            }
            if !agents.contains(&r.agent_id.as_str()) {
                agents.push(&r.agent_id);
            }
        }
        for agent in agents {
            sqlx::query("UPDATE agents SET last_seen = $1 WHERE id = $2")
                .bind(millis(now))
                .bind(agent)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(out)
    }

    /// A unit's reports created in `from..to`, oldest first.
    pub async fn reports(
        &self,
        unit_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Report>, StoreError> {
        let rows = sqlx::query("SELECT body FROM reports WHERE unit_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, sequence")
            .bind(unit_id)
            .bind(millis(from))
            .bind(millis(to))
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let body: String = row.try_get("body")?;
            match Report::from_json(&body) {
                Ok(r) => out.push(r),
                Err(e) => tracing::error!(error = %e, "a stored report no longer parses; skipped"),
            }
        }
        Ok(out)
    }

    /// Replaces a unit's whole registry in one transaction: all of it or nothing.
    pub async fn replace_registry(&self, unit_id: &str, registry: &Registry) -> Result<usize, StoreError> {
        if self.unit(unit_id).await?.is_none() {
            return Err(StoreError::Invalid(format!("单位 {unit_id} 不存在 (no such unit)")));
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM registry_entries WHERE unit_id = $1")
            .bind(unit_id)
            .execute(&mut *tx)
            .await?;
        for e in &registry.entries {
            let kind = match e.kind {
                EntryKind::Device => "device",
                EntryKind::App => "app",
                EntryKind::Portal => "portal",
            };
            sqlx::query(
                "INSERT INTO registry_entries (unit_id, line, kind, name, ip, mac, user_name, location, machine_room, url) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(unit_id)
            .bind(e.line as i64)
            .bind(kind)
            .bind(&e.name)
            .bind(e.ip.map(|ip| ip.to_string()))
            .bind(e.mac.as_deref())
            .bind(e.user.as_deref())
            .bind(e.location.as_deref())
            .bind(i64::from(e.machine_room))
            .bind(e.url.as_deref())
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(registry.entries.len())
    }

    /// A unit's registry as stored.
    pub async fn registry(&self, unit_id: &str) -> Result<Registry, StoreError> {
        let rows = sqlx::query("SELECT * FROM registry_entries WHERE unit_id = $1 ORDER BY line")
            .bind(unit_id)
            .fetch_all(&self.pool)
            .await?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            entries.push(registry_entry_from(row)?);
        }
        Ok(Registry { entries })
    }

    /// Every unit's registry, in one query (ranking).
    pub async fn registries(&self) -> Result<std::collections::HashMap<String, Registry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM registry_entries ORDER BY unit_id, line")
            .fetch_all(&self.pool)
            .await?;
        let mut out: std::collections::HashMap<String, Registry> = std::collections::HashMap::new();
        for row in &rows {
            let unit: String = row.try_get("unit_id")?;
            out.entry(unit).or_default().entries.push(registry_entry_from(row)?);
        }
        Ok(out)
    }

    /// Sets the profile fields scoring reads (maintainer, responder, enrolment day).
    pub async fn set_unit_profile(
        &self,
        unit_id: &str,
        maintainer: Option<&str>,
        responder: Option<&str>,
        enrolled: Option<&str>,
    ) -> Result<bool, StoreError> {
        check_text("maintainer", maintainer.unwrap_or(""))?;
        check_text("responder", responder.unwrap_or(""))?;
        let r = sqlx::query(
            "UPDATE units SET maintainer = COALESCE($1, maintainer), responder = COALESCE($2, responder), \
             enrolled = COALESCE($3, enrolled) WHERE id = $4",
        )
        .bind(maintainer)
        .bind(responder)
        .bind(enrolled)
        .bind(unit_id)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Per unit, the last time any of its agents delivered a report (Unix ms).
    pub async fn last_seen_by_unit(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT unit_id, MAX(last_seen) AS seen FROM agents WHERE last_seen IS NOT NULL GROUP BY unit_id ORDER BY unit_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push((row.try_get("unit_id")?, row.try_get("seen")?));
        }
        Ok(out)
    }

    pub async fn report_count(&self, unit_id: &str) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM reports WHERE unit_id = $1")
            .bind(unit_id)
            .fetch_one(&self.pool)
            .await?)
    }

    /// How an agent's reports arrived: how many, their sequence range, the numbers missing
    /// in it, and what the agent says it lost (its latest report's cumulative counts).
    pub async fn delivery(&self, agent_id: &str) -> Result<Delivery, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(sequence) AS first, MAX(sequence) AS last FROM reports WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?;
        let n: i64 = row.try_get("n")?;
        let first: Option<i64> = row.try_get("first")?;
        let last: Option<i64> = row.try_get("last")?;
        let latest: Option<String> =
            sqlx::query_scalar("SELECT body FROM reports WHERE agent_id = $1 ORDER BY sequence DESC LIMIT 1")
                .bind(agent_id)
                .fetch_optional(&self.pool)
                .await?;
        let latest = latest.and_then(|b| Report::from_json(&b).ok());
        Ok(Delivery {
            reports: n,
            first,
            last,
            missing: match (first, last) {
                (Some(a), Some(b)) => (b - a + 1 - n).max(0),
                _ => 0,
            },
            dropped: latest.as_ref().map_or(0, |r| r.spool_dropped),
            rejected: latest.as_ref().map_or(0, |r| r.spool_rejected),
        })
    }
}

/// What [`Store::delivery`] tells about an agent's reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    pub reports: i64,
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// Sequence numbers between the first and the last that never arrived.
    pub missing: i64,
    /// The agent's own count of reports it lost (spool full, disk failing) …
    pub dropped: u64,
    /// … and of reports the collector refused for good.
    pub rejected: u64,
}

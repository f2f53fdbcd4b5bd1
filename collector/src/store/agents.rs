//! Enrolment tokens and the agents they enrolled.

use std::collections::HashMap;

use chrono::{DateTime, Utc};

use super::{Store, StoreError, from_millis, hash_secret, millis};

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

/// A query of agents, its columns in the order of [`AgentRow`].
macro_rules! select_agents {
    ($tail:literal) => {
        concat!(
            "SELECT id, kind, unit_id, hostname, agent_version, enrolled_at, revoked_at, last_seen FROM agents ",
            $tail
        )
    };
}

type AgentRow = (String, String, String, String, String, i64, Option<i64>, Option<i64>);

impl From<AgentRow> for Agent {
    fn from((id, kind, unit_id, hostname, agent_version, enrolled_at, revoked_at, last_seen): AgentRow) -> Agent {
        Agent {
            id,
            kind,
            unit_id,
            hostname,
            agent_version,
            enrolled_at,
            revoked_at,
            last_seen,
        }
    }
}

impl Store {
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
        self.require_unit(unit_id).await?;
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
        let spent: Option<(String, String)> = sqlx::query_as(
            "UPDATE enrol_tokens SET used_at = $1 WHERE secret_hash = $2 AND used_at IS NULL AND expires_at > $1 RETURNING unit_id, kind",
        )
        .bind(millis(now))
        .bind(hash_secret(secret))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((unit, kind)) = spent else {
            tx.rollback().await?;
            return Ok(None);
        };
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
        let row: Option<AgentRow> = sqlx::query_as(select_agents!("WHERE credential_hash = $1"))
            .bind(hash_secret(credential))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Agent::from))
    }

    pub async fn agents(&self, unit_id: Option<&str>) -> Result<Vec<Agent>, StoreError> {
        let rows: Vec<AgentRow> = match unit_id {
            Some(u) => {
                sqlx::query_as(select_agents!("WHERE unit_id = $1 ORDER BY id"))
                    .bind(u)
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query_as(select_agents!("ORDER BY id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows.into_iter().map(Agent::from).collect())
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

    /// Per unit, the last time any of its agents delivered a report (Unix ms).
    pub async fn last_seen_by_unit(&self) -> Result<Vec<(String, i64)>, StoreError> {
        Ok(sqlx::query_as(
            "SELECT unit_id, MAX(last_seen) AS seen FROM agents WHERE last_seen IS NOT NULL GROUP BY unit_id ORDER BY unit_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// When each unit's first agent enrolled (scoring counts from then).
    pub async fn first_enrolments(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT unit_id, MIN(enrolled_at) AS first FROM agents GROUP BY unit_id")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .map(|(unit, first)| (unit, from_millis(first)))
            .collect())
    }
}

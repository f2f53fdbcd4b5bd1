//! Agents' reports: stored once each, with their roll-up and alerts in the same
//! transaction.

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::Report;

use super::{Store, StoreError, bigint, millis};

/// What became of a report offered for storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// Committed now.
    New,
    /// Already there (same report id): acknowledged, not stored twice.
    Duplicate,
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

impl Store {
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
            .bind(bigint(r.sequence))
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
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM reports WHERE unit_id = $1 AND created_at >= $2 AND created_at < $3 ORDER BY created_at, sequence",
        )
        .bind(unit_id)
        .bind(millis(from))
        .bind(millis(to))
        .fetch_all(&self.pool)
        .await?;
        Ok(bodies.iter().filter_map(|b| parse(b, "report")).collect())
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
        let (n, first, last): (i64, Option<i64>, Option<i64>) = sqlx::query_as(
            "SELECT COUNT(*) AS n, MIN(sequence) AS first, MAX(sequence) AS last FROM reports WHERE agent_id = $1",
        )
        .bind(agent_id)
        .fetch_one(&self.pool)
        .await?;
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

/// A stored report or digest, parsed; one that no longer parses is logged and skipped.
pub(crate) fn parse(body: &str, what: &str) -> Option<Report> {
    match Report::from_json(body) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, what, "a stored report or roll-up no longer parses; skipped");
            None
        }
    }
}

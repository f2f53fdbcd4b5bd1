//! Daily roll-ups: per unit, agent and local day, one digest of every report of that day
//! (`kaohe_rubric::rollup`), merged at ingest in the report's transaction, so that scoring a
//! year reads 365 digests per agent instead of every raw report; month digests combine an
//! agent's days of a calendar month. Scoring a window reads the digests of its days plus
//! the raw reports of the hour after it (the engine's `LATE_REPORT_GRACE`: they still carry
//! its last samples) — exactly what the raw reports would give (tested in
//! `rubric/tests/rollup.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use kaohe_rubric::Report;
use kaohe_rubric::period::local_midnight;
use kaohe_rubric::rollup::{digests as roll_up, empty_digest, merge, report_day};
use kaohe_rubric::scoring::LATE_REPORT_GRACE;

use super::reports::parse;
use super::{Backend, Store, StoreError, bigint, millis};

/// The local days a window touches, first and last.
fn day_range(start: DateTime<Utc>, end: DateTime<Utc>, tz: chrono_tz::Tz) -> (NaiveDate, NaiveDate) {
    let first = start.with_timezone(&tz).date_naive();
    let last = (end - Duration::nanoseconds(1))
        .with_timezone(&tz)
        .date_naive()
        .max(first);
    (first, last)
}

impl Store {
    /// Merges a newly stored report into its agent-day digest, inside the ingest
    /// transaction. On PostgreSQL the digest row is locked, so collectors sharing the
    /// database merge one after the other. A report older than the digest (out of
    /// order) rebuilds the day from its raw reports.
    pub(crate) async fn merge_rollup(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        r: &Report,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        let tz = self.tz;
        let day = report_day(r, tz);
        sqlx::query(
            "INSERT INTO rollups (unit_id, day, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, 0, '', $4) \
             ON CONFLICT (unit_id, day, agent_id) DO NOTHING",
        )
        .bind(&r.unit_id)
        .bind(day.to_string())
        .bind(&r.agent_id)
        .bind(millis(now))
        .execute(&mut **tx)
        .await?;
        let lock = if self.backend == Backend::Postgres {
            " FOR UPDATE"
        } else {
            ""
        };
        let sql = format!("SELECT body FROM rollups WHERE unit_id = $1 AND day = $2 AND agent_id = $3{lock}");
        let body: String = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(&r.unit_id)
            .bind(day.to_string())
            .bind(&r.agent_id)
            .fetch_one(&mut **tx)
            .await?;
        let mut digest = match parse(&body, "roll-up").filter(|_| !body.is_empty()) {
            Some(d) => d,
            None => empty_digest(r),
        };
        if !merge(&mut digest, r, tz) {
            // Out of order: rebuild the day from its reports (this one included).
            let from = local_midnight(day, tz);
            let to = local_midnight(day + chrono::Days::new(1), tz);
            let bodies: Vec<String> = sqlx::query_scalar(
                "SELECT body FROM reports WHERE agent_id = $1 AND unit_id = $2 AND created_at >= $3 AND created_at < $4",
            )
            .bind(&r.agent_id)
            .bind(&r.unit_id)
            .bind(millis(from))
            .bind(millis(to))
            .fetch_all(&mut **tx)
            .await?;
            let reports = parse_all(&bodies, "report");
            let Some(rebuilt) = roll_up(&reports, tz).into_iter().next() else {
                return Ok(());
            };
            digest = rebuilt;
        }
        let body = serde_json::to_string(&digest).map_err(StoreError::Encode)?;
        sqlx::query("UPDATE rollups SET reports = $1, body = $2, updated_at = $3 WHERE unit_id = $4 AND day = $5 AND agent_id = $6")
            .bind(bigint(digest.rollup_of))
            .bind(body)
            .bind(millis(now))
            .bind(&r.unit_id)
            .bind(day.to_string())
            .bind(&r.agent_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Rebuilds every roll-up from the raw reports (after an upgrade that adds them, or
    /// to repair). Returns how many digests were written.
    pub async fn rebuild_rollups(&self) -> Result<usize, StoreError> {
        let tz = self.tz;
        let agents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT agent_id FROM reports")
            .fetch_all(&self.pool)
            .await?;
        let mut written = 0;
        for agent in agents {
            let bodies: Vec<String> = sqlx::query_scalar("SELECT body FROM reports WHERE agent_id = $1")
                .bind(&agent)
                .fetch_all(&self.pool)
                .await?;
            let reports = parse_all(&bodies, "report");
            let mut tx = self.pool.begin().await?;
            for table in ["rollups", "rollup_months"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE agent_id = $1")))
                    .bind(&agent)
                    .execute(&mut *tx)
                    .await?;
            }
            for d in roll_up(&reports, tz) {
                let body = serde_json::to_string(&d).map_err(StoreError::Encode)?;
                sqlx::query(
                    "INSERT INTO rollups (unit_id, day, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&d.unit_id)
                .bind(report_day(&d, tz).to_string())
                .bind(&d.agent_id)
                .bind(bigint(d.rollup_of))
                .bind(body)
                .bind(millis(Utc::now()))
                .execute(&mut *tx)
                .await?;
                written += 1;
            }
            tx.commit().await?;
        }
        Ok(written)
    }

    /// The evidence for scoring over `start..end`, as JSON bodies per unit (parsed by
    /// the caller, on every core): for each calendar month the window covers whole, the
    /// agents' month digests (built from the day digests on first use, and again whenever
    /// a report came in for that month since); the day digests of the other days; and the
    /// raw reports of the hour after the window. One unit, or all.
    pub(crate) async fn window_evidence(
        &self,
        unit: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let tz = self.tz;
        let (first, last) = day_range(start, end, tz);
        let months = whole_months(first, last);
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        let unit_filter = if unit.is_some() { " AND unit_id = $3" } else { "" };
        // Day digests outside the whole months.
        let day_ranges = match months {
            Some((m1, m2)) => vec![(first, m1.pred_opt().unwrap_or(m1)), (next_month(m2), last)],
            None => vec![(first, last)],
        };
        for (a, b) in day_ranges.into_iter().filter(|(a, b)| a <= b) {
            let sql =
                format!("SELECT unit_id, body FROM rollups WHERE day >= $1 AND day <= $2 AND reports > 0{unit_filter}");
            let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql))
                .bind(a.to_string())
                .bind(b.to_string());
            if let Some(u) = unit {
                q = q.bind(u);
            }
            for (unit_id, body) in q.fetch_all(&self.pool).await? {
                out.entry(unit_id).or_default().push(body);
            }
        }
        // Month digests, checked against the day digests' report counts.
        if let Some((m1, m2)) = months {
            for (unit_id, body, _) in self.current_months(unit, m1, m2, true).await? {
                out.entry(unit_id).or_default().extend(body);
            }
        }
        // The hour after the window.
        let sql = format!("SELECT unit_id, body FROM reports WHERE created_at >= $1 AND created_at < $2{unit_filter}");
        let mut q = sqlx::query_as::<_, (String, String)>(sqlx::AssertSqlSafe(sql))
            .bind(millis(end))
            .bind(millis(end + LATE_REPORT_GRACE));
        if let Some(u) = unit {
            q = q.bind(u);
        }
        for (unit_id, body) in q.fetch_all(&self.pool).await? {
            out.entry(unit_id).or_default().push(body);
        }
        Ok(out)
    }

    /// Builds the month digests that are missing or stale for the whole months of
    /// `start..end` (all units), so that scoring does not pay for them; returns how many.
    pub async fn build_missing_months(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<usize, StoreError> {
        let (first, last) = day_range(start, end, self.tz);
        let Some((m1, m2)) = whole_months(first, last) else {
            return Ok(0);
        };
        let months = self.current_months(None, m1, m2, false).await?;
        Ok(months.iter().filter(|(_, _, built)| *built).count())
    }

    /// For each agent-month from `m1` to `m2` (first days) that has day digests, of one
    /// unit or all: (unit, the month digest's body, whether it was built now). A month
    /// digest missing, or stale because its report count differs from its days' (a late
    /// report), is built again. With `bodies` false the bodies of current month digests
    /// are not read.
    async fn current_months(
        &self,
        unit: Option<&str>,
        m1: NaiveDate,
        m2: NaiveDate,
        bodies: bool,
    ) -> Result<Vec<(String, Option<String>, bool)>, StoreError> {
        let unit_filter = if unit.is_some() { " AND unit_id = $3" } else { "" };
        let m_last = next_month(m2).pred_opt().unwrap_or(m2);
        let sql = format!(
            "SELECT unit_id, agent_id, SUBSTR(day, 1, 7) AS month, CAST(SUM(reports) AS BIGINT) AS n FROM rollups \
             WHERE day >= $1 AND day <= $2{unit_filter} GROUP BY unit_id, agent_id, SUBSTR(day, 1, 7)"
        );
        let mut q = sqlx::query_as::<_, (String, String, String, i64)>(sqlx::AssertSqlSafe(sql))
            .bind(m1.to_string())
            .bind(m_last.to_string());
        if let Some(u) = unit {
            q = q.bind(u);
        }
        let expected = q.fetch_all(&self.pool).await?;
        let body_column = if bodies { "body" } else { "CAST(NULL AS TEXT)" };
        let sql = format!(
            "SELECT unit_id, agent_id, month, reports, {body_column} FROM rollup_months WHERE month >= $1 AND month <= $2{unit_filter}"
        );
        let mut q = sqlx::query_as::<_, (String, String, String, i64, Option<String>)>(sqlx::AssertSqlSafe(sql))
            .bind(month_key(m1))
            .bind(month_key(m2));
        if let Some(u) = unit {
            q = q.bind(u);
        }
        let mut have: HashMap<(String, String, String), (i64, Option<String>)> = q
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(|(unit_id, agent_id, month, reports, body)| ((unit_id, agent_id, month), (reports, body)))
            .collect();
        let mut out = Vec::with_capacity(expected.len());
        for (unit_id, agent_id, month, n) in expected {
            let key = (unit_id, agent_id, month);
            match have.remove(&key) {
                Some((stored, body)) if stored == n => out.push((key.0, body, false)),
                _ => {
                    let body = self.build_month(&key.0, &key.1, &key.2).await?;
                    out.push((key.0, Some(body), true));
                }
            }
        }
        Ok(out)
    }

    /// Combines an agent's day digests of one month ("2026-03") into its month digest,
    /// stores it and returns its body.
    async fn build_month(&self, unit: &str, agent: &str, month: &str) -> Result<String, StoreError> {
        let bodies: Vec<String> = sqlx::query_scalar(
            "SELECT body FROM rollups WHERE unit_id = $1 AND agent_id = $2 AND day >= $3 AND day <= $4 AND reports > 0",
        )
        .bind(unit)
        .bind(agent)
        .bind(format!("{month}-01"))
        .bind(format!("{month}-31"))
        .fetch_all(&self.pool)
        .await?;
        let days = parse_all(&bodies, "roll-up");
        let Some(digest) = kaohe_rubric::rollup::combine(&days, self.tz).into_iter().next() else {
            return Ok(String::new());
        };
        let body = serde_json::to_string(&digest).map_err(StoreError::Encode)?;
        sqlx::query(
            "INSERT INTO rollup_months (unit_id, month, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (unit_id, month, agent_id) DO UPDATE SET reports = excluded.reports, body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(unit)
        .bind(month)
        .bind(agent)
        .bind(bigint(digest.rollup_of))
        .bind(&body)
        .bind(millis(Utc::now()))
        .execute(&self.pool)
        .await?;
        Ok(body)
    }
}

/// The stored reports or digests that parse.
fn parse_all(bodies: &[String], what: &str) -> Vec<Report> {
    bodies.iter().filter_map(|b| parse(b, what)).collect()
}

/// "2026-03" for a day of March 2026.
fn month_key(d: NaiveDate) -> String {
    d.format("%Y-%m").to_string()
}

/// The first day of the month after `d`'s.
fn next_month(d: NaiveDate) -> NaiveDate {
    let first = d.with_day(1).unwrap_or(d);
    first + chrono::Months::new(1)
}

/// The first days of the first and last calendar months that lie whole in `first..=last`.
fn whole_months(first: NaiveDate, last: NaiveDate) -> Option<(NaiveDate, NaiveDate)> {
    let m1 = if first.day() == 1 { first } else { next_month(first) };
    let after_last = last.succ_opt()?;
    let m2_end = after_last.with_day(1)?; // the first day after the last whole month
    (m1 < m2_end).then(|| (m1, m2_end.pred_opt().and_then(|d| d.with_day(1)).unwrap_or(m1)))
}

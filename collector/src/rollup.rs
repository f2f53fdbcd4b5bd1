//! Daily roll-ups in the store: per unit, agent and local day, one digest of every
//! report of that day (`kaohe_rubric::rollup`), merged at ingest in the report's
//! transaction, so that scoring a year reads 365 digests per agent instead of every raw
//! report. Scoring a window reads the digests of its days plus the raw reports of the
//! hour after it (they still carry its last samples) — exactly what the raw reports
//! would give (tested in `rubric/tests/rollup.rs`).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use kaohe_rubric::Report;
use kaohe_rubric::period::{Period, local_midnight};
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::rollup::{digests as roll_up, empty_digest, merge, report_day};
use kaohe_rubric::rubric::Rubric;
use kaohe_rubric::scoring::{ScoreInput, Sheet, score};
use sqlx::Row;

use crate::store::{Backend, Store, StoreError, Unit, millis};

/// Reports made this long after a window still count for it (the engine's grace).
const GRACE: Duration = Duration::hours(1);

/// The profile scoring reads, from a stored unit.
pub fn profile_of(unit: &Unit) -> UnitProfile {
    UnitProfile {
        id: unit.id.clone(),
        name: unit.name.clone(),
        parent: unit.parent.clone(),
        maintainer: unit.maintainer.clone(),
        responder: unit.responder.clone(),
        enrolled: unit.enrolled.as_deref().and_then(|d| d.parse().ok()),
        enrolled_at: None,
        timezone: None,
    }
}

/// The local days a window touches, first and last.
fn day_range(start: DateTime<Utc>, end: DateTime<Utc>, tz: chrono_tz::Tz) -> (NaiveDate, NaiveDate) {
    let first = start.with_timezone(&tz).date_naive();
    let last = (end - Duration::nanoseconds(1))
        .with_timezone(&tz)
        .date_naive()
        .max(first);
    (first, last)
}

fn parse(body: &str, what: &str) -> Option<Report> {
    match Report::from_json(body) {
        Ok(r) => Some(r),
        Err(e) => {
            tracing::error!(error = %e, what, "a stored report or roll-up no longer parses; skipped");
            None
        }
    }
}

impl Store {
    /// When each unit's first agent enrolled (scoring counts from then).
    pub async fn first_enrolments(&self) -> Result<HashMap<String, DateTime<Utc>>, StoreError> {
        let rows = sqlx::query("SELECT unit_id, MIN(enrolled_at) AS first FROM agents GROUP BY unit_id")
            .fetch_all(self.pool())
            .await?;
        let mut out = HashMap::new();
        for row in rows {
            let unit: String = row.try_get("unit_id")?;
            let first: i64 = row.try_get("first")?;
            out.insert(unit, crate::store::from_millis(first));
        }
        Ok(out)
    }

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
        let tz = self.timezone();
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
        let lock = if self.backend() == Backend::Postgres {
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
            let rows = sqlx::query(
                "SELECT body FROM reports WHERE agent_id = $1 AND unit_id = $2 AND created_at >= $3 AND created_at < $4",
            )
            .bind(&r.agent_id)
            .bind(&r.unit_id)
            .bind(millis(from))
            .bind(millis(to))
            .fetch_all(&mut **tx)
            .await?;
            let mut reports = Vec::with_capacity(rows.len());
            for row in rows {
                let b: String = row.try_get("body")?;
                reports.extend(parse(&b, "report"));
            }
            let Some(rebuilt) = roll_up(&reports, tz).into_iter().next() else {
                return Ok(());
            };
            digest = rebuilt;
        }
        let body = serde_json::to_string(&digest).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query("UPDATE rollups SET reports = $1, body = $2, updated_at = $3 WHERE unit_id = $4 AND day = $5 AND agent_id = $6")
            .bind(i64::try_from(digest.rollup_of).unwrap_or(i64::MAX))
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
        let tz = self.timezone();
        let agents: Vec<String> = sqlx::query_scalar("SELECT DISTINCT agent_id FROM reports")
            .fetch_all(self.pool())
            .await?;
        let mut written = 0;
        for agent in agents {
            let rows = sqlx::query("SELECT body FROM reports WHERE agent_id = $1")
                .bind(&agent)
                .fetch_all(self.pool())
                .await?;
            let mut reports = Vec::with_capacity(rows.len());
            for row in rows {
                let b: String = row.try_get("body")?;
                reports.extend(parse(&b, "report"));
            }
            let mut tx = self.pool().begin().await?;
            for table in ["rollups", "rollup_months"] {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE agent_id = $1")))
                    .bind(&agent)
                    .execute(&mut *tx)
                    .await?;
            }
            for d in roll_up(&reports, tz) {
                let body = serde_json::to_string(&d).map_err(|e| StoreError::Invalid(e.to_string()))?;
                sqlx::query(
                    "INSERT INTO rollups (unit_id, day, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(&d.unit_id)
                .bind(report_day(&d, tz).to_string())
                .bind(&d.agent_id)
                .bind(i64::try_from(d.rollup_of).unwrap_or(i64::MAX))
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
    async fn window_evidence(
        &self,
        unit: Option<&str>,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<HashMap<String, Vec<String>>, StoreError> {
        let tz = self.timezone();
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
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(a.to_string())
                .bind(b.to_string());
            if let Some(u) = unit {
                q = q.bind(u);
            }
            for row in q.fetch_all(self.pool()).await? {
                out.entry(row.try_get("unit_id")?)
                    .or_default()
                    .push(row.try_get("body")?);
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
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(millis(end))
            .bind(millis(end + GRACE));
        if let Some(u) = unit {
            q = q.bind(u);
        }
        for row in q.fetch_all(self.pool()).await? {
            out.entry(row.try_get("unit_id")?)
                .or_default()
                .push(row.try_get("body")?);
        }
        Ok(out)
    }

    /// Builds the month digests that are missing or stale for the whole months of
    /// `start..end` (all units), so that scoring does not pay for them; returns how many.
    pub async fn build_missing_months(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Result<usize, StoreError> {
        let (first, last) = day_range(start, end, self.timezone());
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
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(m1.to_string())
            .bind(m_last.to_string());
        if let Some(u) = unit {
            q = q.bind(u);
        }
        let expected = q.fetch_all(self.pool()).await?;
        let body_column = if bodies { ", body" } else { "" };
        let sql = format!(
            "SELECT unit_id, agent_id, month, reports{body_column} FROM rollup_months WHERE month >= $1 AND month <= $2{unit_filter}"
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(month_key(m1))
            .bind(month_key(m2));
        if let Some(u) = unit {
            q = q.bind(u);
        }
        let mut have: HashMap<(String, String, String), (i64, Option<String>)> = HashMap::new();
        for row in q.fetch_all(self.pool()).await? {
            let body = if bodies { Some(row.try_get("body")?) } else { None };
            have.insert(
                (row.try_get("unit_id")?, row.try_get("agent_id")?, row.try_get("month")?),
                (row.try_get("reports")?, body),
            );
        }
        let mut out = Vec::with_capacity(expected.len());
        for row in expected {
            let key: (String, String, String) =
                (row.try_get("unit_id")?, row.try_get("agent_id")?, row.try_get("month")?);
            let n: i64 = row.try_get("n")?;
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
        let rows = sqlx::query(
            "SELECT body FROM rollups WHERE unit_id = $1 AND agent_id = $2 AND day >= $3 AND day <= $4 AND reports > 0",
        )
        .bind(unit)
        .bind(agent)
        .bind(format!("{month}-01"))
        .bind(format!("{month}-31"))
        .fetch_all(self.pool())
        .await?;
        let mut days = Vec::with_capacity(rows.len());
        for row in rows {
            let b: String = row.try_get("body")?;
            days.extend(parse(&b, "roll-up"));
        }
        let Some(digest) = kaohe_rubric::rollup::combine(&days, self.timezone()).into_iter().next() else {
            return Ok(String::new());
        };
        let body = serde_json::to_string(&digest).map_err(|e| StoreError::Invalid(e.to_string()))?;
        sqlx::query(
            "INSERT INTO rollup_months (unit_id, month, agent_id, reports, body, updated_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (unit_id, month, agent_id) DO UPDATE SET reports = excluded.reports, body = excluded.body, updated_at = excluded.updated_at",
        )
        .bind(unit)
        .bind(month)
        .bind(agent)
        .bind(i64::try_from(digest.rollup_of).unwrap_or(i64::MAX))
        .bind(&body)
        .bind(millis(Utc::now()))
        .execute(self.pool())
        .await?;
        Ok(body)
    }
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

/// Parses the bodies of one unit's evidence.
fn parse_all(bodies: &[String]) -> Vec<Report> {
    bodies
        .iter()
        .filter(|b| !b.is_empty())
        .filter_map(|b| parse(b, "roll-up"))
        .collect()
}

/// What scoring `start..end` of a unit reads: the digests of the window's days and the
/// raw reports of the hour after it.
pub async fn digests(
    store: &Store,
    _rubric: &Rubric,
    unit_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<Report>, StoreError> {
    let mut by_unit = store.window_evidence(Some(unit_id), start, end).await?;
    Ok(parse_all(&by_unit.remove(unit_id).unwrap_or_default()))
}

/// Scores one unit's automatic items for `period` as of `now`.
pub async fn score_unit(
    store: &Store,
    rubric: &Rubric,
    unit_id: &str,
    period: Period,
    now: DateTime<Utc>,
) -> Result<Sheet, StoreError> {
    let unit = store
        .unit(unit_id)
        .await?
        .ok_or_else(|| StoreError::Invalid(format!("单位 {unit_id} 不存在 (no such unit)")))?;
    let (start, end) = period.bounds(store.timezone());
    let evidence = digests(store, rubric, unit_id, start, end.min(now).max(start)).await?;
    let registry = store.registry(unit_id).await?;
    let mut profile = profile_of(&unit);
    profile.enrolled_at = store.first_enrolments().await?.remove(unit_id);
    Ok(score(&ScoreInput {
        rubric,
        profile: &profile,
        registry: &registry,
        reports: &evidence,
        period,
        as_of: Some(now),
    }))
}

/// Scores each of `units`, in order: three queries for all of them, then the engine on
/// every core.
pub async fn score_units(
    store: &Store,
    rubric: &Rubric,
    units: &[Unit],
    period: Period,
    now: DateTime<Utc>,
) -> Result<Vec<Sheet>, StoreError> {
    let (start, end) = period.bounds(store.timezone());
    let mut evidence = store.window_evidence(None, start, end.min(now).max(start)).await?;
    let mut registries = store.registries().await?;
    let first = store.first_enrolments().await?;
    let inputs: Vec<(UnitProfile, Registry, Vec<String>)> = units
        .iter()
        .map(|u| {
            let mut profile = profile_of(u);
            profile.enrolled_at = first.get(&u.id).copied();
            (
                profile,
                registries.remove(&u.id).unwrap_or_default(),
                evidence.remove(&u.id).unwrap_or_default(),
            )
        })
        .collect();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8);
    let chunk = inputs.len().div_ceil(threads).max(1);
    let sheets = std::thread::scope(|s| {
        let handles: Vec<_> = inputs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(profile, registry, bodies)| {
                            score(&ScoreInput {
                                rubric,
                                profile,
                                registry,
                                reports: &parse_all(bodies),
                                period,
                                as_of: Some(now),
                            })
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all = Vec::with_capacity(inputs.len());
        for h in handles {
            // A panic in the engine must not shift the other units' sheets.
            all.extend(h.join().map_err(|_| {
                StoreError::Invalid("评分引擎内部错误, 详见日志 (the scoring engine failed; see the log)".into())
            })?);
        }
        Ok::<_, StoreError>(all)
    })?;
    if sheets.len() != units.len() {
        return Err(StoreError::Invalid(
            "评分结果与单位数不符 (sheets do not match units)".into(),
        ));
    }
    Ok(sheets)
}

/// Keeps the month digests of the last 13 months built: at start, then every hour.
pub async fn month_builder(store: Store) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(3600));
    loop {
        tick.tick().await;
        let now = Utc::now();
        let started = std::time::Instant::now();
        match store.build_missing_months(now - Duration::days(400), now).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                months = n,
                secs = started.elapsed().as_secs_f64(),
                "month digests built"
            ),
            Err(e) => tracing::warn!(error = %e, "month digests could not be built; scoring builds them when needed"),
        }
    }
}

//! Manual entries (reviews, overrides, waivers) and the audit log. Entries are never
//! edited: a new one supersedes, withdrawing marks one; every change is logged in the same
//! transaction.

use chrono::{DateTime, Utc};

use super::{Role, Store, StoreError, check_text, from_millis, millis};
use crate::review::{AuditEntry, EntryKind, ManualEntry, NewEntry};

/// A query of live entries, its columns in the order of [`EntryRow`].
macro_rules! select_entries {
    ($tail:literal) => {
        concat!(
            "SELECT id, unit_id, period, item_id, kind, score, reviewer, note, expires_at, created_at, author_role \
             FROM manual_entries WHERE withdrawn_at IS NULL ",
            $tail
        )
    };
}

type EntryRow = (
    String,
    String,
    String,
    String,
    String,
    Option<f64>,
    String,
    String,
    Option<i64>,
    i64,
    Option<String>,
);

fn entry(
    (id, unit_id, period, item_id, kind, score, reviewer, note, expires_at, created_at, author_role): EntryRow,
) -> ManualEntry {
    ManualEntry {
        id,
        unit_id,
        period,
        item_id,
        kind: EntryKind::parse(&kind).unwrap_or(EntryKind::Review),
        score,
        reviewer,
        note,
        expires_at: expires_at.map(from_millis),
        created_at: from_millis(created_at),
        author_role: author_role.unwrap_or_else(|| "province".into()),
    }
}

impl Store {
    /// Stores a checked entry and its audit line in one transaction; returns its id.
    /// `author` is the role of whoever enters it (the command line counts as the province):
    /// only that level or higher may withdraw it.
    pub async fn add_entry(
        &self,
        e: &NewEntry,
        actor: &str,
        author: Role,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        for (field, text) in [("reviewer", &e.reviewer), ("note", &e.note)] {
            check_text(field, text)?;
        }
        self.require_unit(&e.unit_id).await?;
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO manual_entries (id, unit_id, period, item_id, kind, score, reviewer, note, expires_at, created_at, author_role) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&id)
        .bind(&e.unit_id)
        .bind(&e.period)
        .bind(&e.item_id)
        .bind(e.kind.as_str())
        .bind(e.score)
        .bind(&e.reviewer)
        .bind(&e.note)
        .bind(e.expires_at.map(millis))
        .bind(millis(now))
        .bind(author.as_str())
        .execute(&mut *tx)
        .await?;
        let detail = serde_json::json!({
            "entry": id, "period": e.period, "item": e.item_id, "kind": e.kind.as_str(),
            "score": e.score, "reviewer": e.reviewer, "note": e.note,
            "expires_at": e.expires_at.map(|t| t.to_rfc3339()),
        });
        let action = format!("entry.{}", e.kind.as_str());
        audit_in(&mut tx, now, actor, &action, Some(&e.unit_id), &detail.to_string()).await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Withdraws an entry (it stays in the log). False if there was none to withdraw.
    pub async fn withdraw_entry(&self, id: &str, actor: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let unit: Option<String> =
            sqlx::query_scalar("SELECT unit_id FROM manual_entries WHERE id = $1 AND withdrawn_at IS NULL")
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(unit) = unit else {
            return Ok(false);
        };
        sqlx::query("UPDATE manual_entries SET withdrawn_at = $1 WHERE id = $2")
            .bind(millis(now))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        let detail = serde_json::json!({ "entry": id }).to_string();
        audit_in(&mut tx, now, actor, "entry.withdraw", Some(&unit), &detail).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// A unit's live (not withdrawn) entries for the given period labels, oldest first.
    pub async fn entries(&self, unit_id: &str, periods: &[String]) -> Result<Vec<ManualEntry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(select_entries!("AND unit_id = $1 ORDER BY created_at, id"))
            .bind(unit_id)
            .fetch_all(&self.pool)
            .await?;
        Ok(of_periods(rows, periods))
    }

    /// Every live entry of the given period labels, for all units (ranking).
    pub async fn all_entries(&self, periods: &[String]) -> Result<Vec<ManualEntry>, StoreError> {
        let rows: Vec<EntryRow> = sqlx::query_as(select_entries!("ORDER BY created_at, id"))
            .fetch_all(&self.pool)
            .await?;
        Ok(of_periods(rows, periods))
    }

    /// The unit, kind and author's role of a live entry, to check who may withdraw it.
    /// Entries from before the author's role was kept count as the province's.
    pub async fn entry_owner(&self, id: &str) -> Result<Option<(String, EntryKind, Role)>, StoreError> {
        let row: Option<(String, String, Option<String>)> = sqlx::query_as(
            "SELECT unit_id, kind, author_role FROM manual_entries WHERE id = $1 AND withdrawn_at IS NULL",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(unit, kind, author)| {
            (
                unit,
                EntryKind::parse(&kind).unwrap_or(EntryKind::Override),
                author.as_deref().and_then(Role::parse).unwrap_or(Role::Province),
            )
        }))
    }

    /// Appends one line to the audit log.
    pub async fn audit(
        &self,
        now: DateTime<Utc>,
        actor: &str,
        action: &str,
        unit_id: Option<&str>,
        detail: &str,
    ) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        audit_in(&mut tx, now, actor, action, unit_id, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest audit lines first, optionally for one unit.
    pub async fn audit_log(&self, unit_id: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        type Line = (i64, String, String, Option<String>, String);
        let rows: Vec<Line> = match unit_id {
            Some(u) => {
                sqlx::query_as(
                    "SELECT at, actor, action, unit_id, detail FROM audit_log WHERE unit_id = $1 ORDER BY at DESC, id LIMIT $2",
                )
                .bind(u)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query_as("SELECT at, actor, action, unit_id, detail FROM audit_log ORDER BY at DESC, id LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        Ok(rows
            .into_iter()
            .map(|(at, actor, action, unit_id, detail)| AuditEntry {
                at: from_millis(at),
                actor,
                action,
                unit_id,
                detail,
            })
            .collect())
    }
}

/// The entries of the given period labels.
fn of_periods(rows: Vec<EntryRow>, periods: &[String]) -> Vec<ManualEntry> {
    rows.into_iter()
        .map(entry)
        .filter(|e| periods.contains(&e.period))
        .collect()
}

async fn audit_in(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    now: DateTime<Utc>,
    actor: &str,
    action: &str,
    unit_id: Option<&str>,
    detail: &str,
) -> Result<(), StoreError> {
    sqlx::query("INSERT INTO audit_log (id, at, actor, action, unit_id, detail) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(uuid::Uuid::new_v4().simple().to_string())
        .bind(millis(now))
        .bind(actor)
        .bind(action)
        .bind(unit_id)
        .bind(detail)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

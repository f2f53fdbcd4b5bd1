//! What people add to the automatic scores: reviewer entries for the reviewer items and
//! the manual sections (一, 四, 五, 六), overrides of automatic items and waivers. Every
//! entry names its reviewer and carries a note; overrides and waivers also need an expiry.
//! Entries are never edited: a new entry for the same item supersedes the older one, and
//! withdrawing marks it. Every change goes to the audit log.

use chrono::{DateTime, Utc};
use kaohe_rubric::rubric::{Item, Rubric, Scoring};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::store::{Store, StoreError, from_millis, millis};

/// What an entry does to an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// A reviewer's score for a reviewer item, or for the reviewer part of a partial item.
    Review,
    /// Replaces an automatic item's score; the automatic score stays beside it.
    Override,
    /// The item is not assessed for this unit (e.g. no machine room): full points.
    Waiver,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntryKind::Review => "review",
            EntryKind::Override => "override",
            EntryKind::Waiver => "waiver",
        }
    }

    pub fn label_zh(self) -> &'static str {
        match self {
            EntryKind::Review => "评审",
            EntryKind::Override => "人工改分",
            EntryKind::Waiver => "豁免",
        }
    }

    pub fn parse(s: &str) -> Option<EntryKind> {
        match s {
            "review" => Some(EntryKind::Review),
            "override" => Some(EntryKind::Override),
            "waiver" => Some(EntryKind::Waiver),
            _ => None,
        }
    }
}

/// One stored entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ManualEntry {
    pub id: String,
    pub unit_id: String,
    /// The period label it applies to ("2026", "2026Q3", "2026-05").
    pub period: String,
    pub item_id: String,
    pub kind: EntryKind,
    /// Points given (review: of the reviewer part; override: of the whole item). None for
    /// a waiver.
    pub score: Option<f64>,
    pub reviewer: String,
    pub note: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    /// The role of whoever entered it ("province", "city", "reviewer"); only that level or
    /// higher may withdraw it. Entries from before this was kept, and the command line's,
    /// count as the province's.
    pub author_role: String,
}

impl ManualEntry {
    /// Whether an override or waiver has passed its expiry at `now`.
    pub fn expired(&self, now: DateTime<Utc>) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A new entry as asked for (CLI or dashboard), before checking.
#[derive(Debug, Clone)]
pub struct NewEntry {
    pub unit_id: String,
    pub period: String,
    pub item_id: String,
    pub kind: EntryKind,
    pub score: Option<f64>,
    pub reviewer: String,
    pub note: String,
    pub expires_at: Option<DateTime<Utc>>,
}

/// Checks an entry against the rubric: the item exists, the kind fits the item, the score
/// is within the item's points, a reviewer and a note are given, overrides and waivers
/// have a reason and a future expiry. The message is Chinese first.
pub fn validate(rubric: &Rubric, e: &NewEntry, now: DateTime<Utc>) -> Result<(), String> {
    let item: &Item = rubric
        .item(&e.item_id)
        .ok_or_else(|| format!("评分表中没有条目 {} (no such item)", e.item_id))?;
    if e.reviewer.trim().is_empty() {
        return Err("必须填写评审人 (the reviewer's name is required)".into());
    }
    if e.note.trim().is_empty() {
        return Err(match e.kind {
            EntryKind::Review => "必须填写评审说明 (a note is required)".into(),
            _ => "人工改分和豁免必须填写理由 (an override or waiver needs a reason)".into(),
        });
    }
    match e.kind {
        EntryKind::Review => {
            if e.expires_at.is_some() {
                return Err("评审分不设到期日, 到期日只用于人工改分和豁免 (a review takes no expiry)".into());
            }
            let max = item.reviewer_points();
            if item.scoring == Scoring::Auto || max <= 0.0 {
                return Err(format!(
                    "条目 {} 完全自动评分, 不能评审打分; 如需更正请用人工改分 (override) (item is automatic; use an override)",
                    item.id
                ));
            }
            let s = e.score.ok_or("评审必须给出分数 (a review needs a score)")?;
            if !(s.is_finite() && (0.0..=max).contains(&s)) {
                return Err(format!(
                    "条目 {} 评审分应在 0 到 {max} 之间, 实为 {s} (score out of range)",
                    item.id
                ));
            }
        }
        EntryKind::Override | EntryKind::Waiver => {
            if item.rule.is_none() {
                return Err(format!(
                    "条目 {} 没有自动评分, 请用评审 (review) (item has no automatic score; use a review)",
                    item.id
                ));
            }
            match e.expires_at {
                None => return Err("人工改分和豁免必须设定到期日 (an override or waiver needs an expiry)".into()),
                Some(t) if t <= now => return Err("到期日必须在将来 (the expiry must be in the future)".into()),
                Some(_) => {}
            }
            if e.kind == EntryKind::Override {
                let max = item.auto_points();
                let s = e.score.ok_or("人工改分必须给出分数 (an override needs a score)")?;
                if !(s.is_finite() && (0.0..=max).contains(&s)) {
                    return Err(format!(
                        "条目 {} 自动部分的分数应在 0 到 {max} 之间, 实为 {s} (score out of range)",
                        item.id
                    ));
                }
            } else if e.score.is_some() {
                return Err("豁免不带分数 (a waiver takes no score)".into());
            }
        }
    }
    Ok(())
}

fn entry_from(row: &AnyRow) -> Result<ManualEntry, sqlx::Error> {
    let kind: String = row.try_get("kind")?;
    let expires: Option<i64> = row.try_get("expires_at")?;
    let created: i64 = row.try_get("created_at")?;
    Ok(ManualEntry {
        id: row.try_get("id")?,
        unit_id: row.try_get("unit_id")?,
        period: row.try_get("period")?,
        item_id: row.try_get("item_id")?,
        kind: EntryKind::parse(&kind).unwrap_or(EntryKind::Review),
        score: row.try_get("score")?,
        reviewer: row.try_get("reviewer")?,
        note: row.try_get("note")?,
        expires_at: expires.map(from_millis),
        created_at: from_millis(created),
        author_role: row
            .try_get::<Option<String>, _>("author_role")?
            .unwrap_or_else(|| "province".into()),
    })
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub unit_id: Option<String>,
    pub detail: String,
}

impl Store {
    /// Stores a checked entry and its audit line in one transaction; returns its id.
    /// `author` is the role of whoever enters it (the command line counts as the province):
    /// only that level or higher may withdraw it.
    pub async fn add_entry(
        &self,
        e: &NewEntry,
        actor: &str,
        author: crate::web::auth::Role,
        now: DateTime<Utc>,
    ) -> Result<String, StoreError> {
        for (field, text) in [("reviewer", &e.reviewer), ("note", &e.note)] {
            crate::store::check_text(field, text)?;
        }
        if self.unit(&e.unit_id).await?.is_none() {
            return Err(StoreError::Invalid(format!("单位 {} 不存在 (no such unit)", e.unit_id)));
        }
        let id = uuid::Uuid::new_v4().simple().to_string();
        let mut tx = self.pool().begin().await?;
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
        audit_in(
            &mut tx,
            now,
            actor,
            &format!("entry.{}", e.kind.as_str()),
            Some(&e.unit_id),
            &detail.to_string(),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// Withdraws an entry (it stays in the log). False if there was none to withdraw.
    pub async fn withdraw_entry(&self, id: &str, actor: &str, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
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
        let rows = sqlx::query(
            "SELECT * FROM manual_entries WHERE unit_id = $1 AND withdrawn_at IS NULL ORDER BY created_at, id",
        )
        .bind(unit_id)
        .fetch_all(self.pool())
        .await?;
        let mut out = Vec::new();
        for row in &rows {
            let e = entry_from(row)?;
            if periods.contains(&e.period) {
                out.push(e);
            }
        }
        Ok(out)
    }

    /// Every live entry of the given period labels, for all units (ranking).
    pub async fn all_entries(&self, periods: &[String]) -> Result<Vec<ManualEntry>, StoreError> {
        let rows = sqlx::query("SELECT * FROM manual_entries WHERE withdrawn_at IS NULL ORDER BY created_at, id")
            .fetch_all(self.pool())
            .await?;
        let mut out = Vec::new();
        for row in &rows {
            let e = entry_from(row)?;
            if periods.contains(&e.period) {
                out.push(e);
            }
        }
        Ok(out)
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
        let mut tx = self.pool().begin().await?;
        audit_in(&mut tx, now, actor, action, unit_id, detail).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The newest audit lines first, optionally for one unit.
    pub async fn audit_log(&self, unit_id: Option<&str>, limit: i64) -> Result<Vec<AuditEntry>, StoreError> {
        let rows = match unit_id {
            Some(u) => {
                sqlx::query("SELECT * FROM audit_log WHERE unit_id = $1 ORDER BY at DESC, id LIMIT $2")
                    .bind(u)
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
            None => {
                sqlx::query("SELECT * FROM audit_log ORDER BY at DESC, id LIMIT $1")
                    .bind(limit)
                    .fetch_all(self.pool())
                    .await?
            }
        };
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let at: i64 = row.try_get("at")?;
            out.push(AuditEntry {
                at: from_millis(at),
                actor: row.try_get("actor")?,
                action: row.try_get("action")?,
                unit_id: row.try_get("unit_id")?,
                detail: row.try_get("detail")?,
            });
        }
        Ok(out)
    }
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

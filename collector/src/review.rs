//! What people add to the automatic scores: reviewer entries for the reviewer items and
//! the manual sections (一, 四, 五, 六), overrides of automatic items and waivers. Every
//! entry names its reviewer and carries a note; overrides and waivers also need an expiry.
//! Entries are never edited: a new entry for the same item supersedes the older one, and
//! withdrawing marks it. Every change goes to the audit log.

use chrono::{DateTime, Utc};
use kaohe_rubric::rubric::{Item, Rubric, Scoring};
use serde::{Deserialize, Serialize};

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

/// Why an entry cannot be stored; the message is Chinese first.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EntryError {
    #[error("评分表中没有条目 {0} (no such item)")]
    NoSuchItem(String),
    #[error("必须填写评审人 (the reviewer's name is required)")]
    NoReviewer,
    #[error("必须填写评审说明 (a note is required)")]
    NoNote,
    #[error("人工改分和豁免必须填写理由 (an override or waiver needs a reason)")]
    NoReason,
    #[error("评审分不设到期日, 到期日只用于人工改分和豁免 (a review takes no expiry)")]
    ReviewExpiry,
    #[error(
        "条目 {0} 完全自动评分, 不能评审打分; 如需更正请用人工改分 (override) (item is automatic; use an override)"
    )]
    Automatic(String),
    #[error("评审必须给出分数 (a review needs a score)")]
    ReviewScore,
    #[error("条目 {item} 评审分应在 0 到 {max} 之间, 实为 {score} (score out of range)")]
    ReviewRange { item: String, max: f64, score: f64 },
    #[error("条目 {0} 没有自动评分, 请用评审 (review) (item has no automatic score; use a review)")]
    NotAutomatic(String),
    #[error("人工改分和豁免必须设定到期日 (an override or waiver needs an expiry)")]
    NoExpiry,
    #[error("到期日必须在将来 (the expiry must be in the future)")]
    ExpiryPast,
    #[error("人工改分必须给出分数 (an override needs a score)")]
    OverrideScore,
    #[error("条目 {item} 自动部分的分数应在 0 到 {max} 之间, 实为 {score} (score out of range)")]
    OverrideRange { item: String, max: f64, score: f64 },
    #[error("豁免不带分数 (a waiver takes no score)")]
    WaiverScore,
}

/// Checks an entry against the rubric: the item exists, the kind fits the item, the score
/// is within the item's points, a reviewer and a note are given, overrides and waivers
/// have a reason and a future expiry.
pub fn check(rubric: &Rubric, e: &NewEntry, now: DateTime<Utc>) -> Result<(), EntryError> {
    let item: &Item = rubric
        .item(&e.item_id)
        .ok_or_else(|| EntryError::NoSuchItem(e.item_id.clone()))?;
    if e.reviewer.trim().is_empty() {
        return Err(EntryError::NoReviewer);
    }
    if e.note.trim().is_empty() {
        return Err(match e.kind {
            EntryKind::Review => EntryError::NoNote,
            _ => EntryError::NoReason,
        });
    }
    match e.kind {
        EntryKind::Review => {
            if e.expires_at.is_some() {
                return Err(EntryError::ReviewExpiry);
            }
            let max = item.reviewer_points();
            if item.scoring == Scoring::Auto || max <= 0.0 {
                return Err(EntryError::Automatic(item.id.clone()));
            }
            let score = e.score.ok_or(EntryError::ReviewScore)?;
            if !(score.is_finite() && (0.0..=max).contains(&score)) {
                let item = item.id.clone();
                return Err(EntryError::ReviewRange { item, max, score });
            }
        }
        EntryKind::Override | EntryKind::Waiver => {
            if item.rule.is_none() {
                return Err(EntryError::NotAutomatic(item.id.clone()));
            }
            match e.expires_at {
                None => return Err(EntryError::NoExpiry),
                Some(t) if t <= now => return Err(EntryError::ExpiryPast),
                Some(_) => {}
            }
            if e.kind == EntryKind::Override {
                let max = item.auto_points();
                let score = e.score.ok_or(EntryError::OverrideScore)?;
                if !(score.is_finite() && (0.0..=max).contains(&score)) {
                    let item = item.id.clone();
                    return Err(EntryError::OverrideRange { item, max, score });
                }
            } else if e.score.is_some() {
                return Err(EntryError::WaiverScore);
            }
        }
    }
    Ok(())
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

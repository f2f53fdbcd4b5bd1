//! Manual entries as people ask for them — reviews, overrides and waivers — checked for who
//! may enter or withdraw what, and turned into [`NewEntry`] values for the store. The
//! dashboard's pages and its JSON API call the same functions; the CLI acts as a province
//! administrator and shares the expiry rule.

use std::collections::HashMap;

use chrono::{DateTime, NaiveDate, Utc};
use kaohe_rubric::Rubric;
use kaohe_rubric::period::Period;
use serde::Deserialize;

use crate::review::{EntryKind, NewEntry};
use crate::store::{Store, StoreError};
use crate::web::auth::{Role, User};

/// An entry as asked for by a form or JSON, before checking.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct EntryInput {
    #[serde(default)]
    pub item: String,
    #[serde(default)]
    pub kind: String,
    /// A number, or empty.
    #[serde(default)]
    pub score: Option<serde_json::Value>,
    #[serde(default)]
    pub reviewer: String,
    #[serde(default)]
    pub note: String,
    /// YYYY-MM-DD, or empty.
    #[serde(default)]
    pub expires: Option<String>,
}

impl EntryInput {
    /// The fields of a posted form.
    pub fn from_form(f: &HashMap<String, String>) -> EntryInput {
        let get = |k: &str| f.get(k).cloned().unwrap_or_default();
        EntryInput {
            item: get("item"),
            kind: get("kind"),
            score: f.get("score").map(|s| serde_json::Value::String(s.clone())),
            reviewer: get("reviewer"),
            note: get("note"),
            expires: f.get("expires").cloned(),
        }
    }
}

/// Why an entry cannot be added or withdrawn. Chinese first, English in brackets.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("类别 {0} 无法识别, 应为 review、override 或 waiver (bad kind)")]
    UnknownKind(String),
    #[error("分数 {0} 不是数字 (the score is not a number)")]
    BadScore(String),
    #[error("到期日 {0} 应为 YYYY-MM-DD (the expiry must be YYYY-MM-DD)")]
    BadExpiry(String),
    /// The rubric's rules for the entry (an item that exists, a score in range, an expiry).
    #[error(transparent)]
    Invalid(#[from] crate::review::EntryError),
    #[error("{} 无权录入{} ({} may not enter a {})", role.label_zh(), kind.label_zh(), role.as_str(), kind.as_str())]
    MayNotEnter { role: Role, kind: EntryKind },
    #[error(
        "{} 无权撤回{}录入的{} ({} may not withdraw a {} entered by a {})",
        role.label_zh(), author.label_zh(), kind.label_zh(), role.as_str(), kind.as_str(), author.as_str()
    )]
    MayNotWithdraw { role: Role, author: Role, kind: EntryKind },
    #[error("没有可撤回的记录 {0} (no such live entry)")]
    NoLiveEntry(String),
    #[error("该单位没有记录 {0} (no such entry for this unit)")]
    NotThisUnit(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks who may enter what and builds the entry, validated against the rubric; the
/// caller stores it.
pub fn new_entry(
    rubric: &Rubric,
    user: &User,
    unit_id: &str,
    period: &Period,
    input: &EntryInput,
    now: DateTime<Utc>,
) -> Result<NewEntry, EntryError> {
    let kind = EntryKind::parse(input.kind.trim()).ok_or_else(|| EntryError::UnknownKind(input.kind.clone()))?;
    if !user.may_enter(kind) {
        return Err(EntryError::MayNotEnter { role: user.role, kind });
    }
    let score = match &input.score {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(t)) if t.trim().is_empty() => None,
        Some(serde_json::Value::String(t)) => {
            Some(t.trim().parse::<f64>().map_err(|_| EntryError::BadScore(t.clone()))?)
        }
        Some(other) => return Err(EntryError::BadScore(other.to_string())),
    };
    let expires_at = match input.expires.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => Some(expiry_from_date(
            t.parse().map_err(|_| EntryError::BadExpiry(t.to_string()))?,
            rubric.timezone,
        )),
    };
    let entry = NewEntry {
        unit_id: unit_id.to_string(),
        period: period.to_string(),
        item_id: input.item.trim().to_string(),
        kind,
        score,
        reviewer: input.reviewer.trim().to_string(),
        note: input.note.trim().to_string(),
        expires_at,
    };
    crate::review::check(rubric, &entry, now)?;
    Ok(entry)
}

/// Whether `user` may withdraw an entry of `kind` entered by `author`: a kind the user may
/// enter, by a role at the user's level or below.
pub fn may_withdraw(user: &User, kind: EntryKind, author: Role) -> bool {
    user.may_enter(kind) && user.role.level() >= author.level()
}

/// Withdraws entry `id` of the unit if `user` may withdraw it.
pub async fn withdraw(
    store: &Store,
    user: &User,
    unit_id: &str,
    id: &str,
    now: DateTime<Utc>,
) -> Result<(), EntryError> {
    let Some((owner, kind, author)) = store.entry_owner(id.trim()).await? else {
        return Err(EntryError::NoLiveEntry(id.to_string()));
    };
    if owner != unit_id {
        return Err(EntryError::NotThisUnit(id.to_string()));
    }
    if !may_withdraw(user, kind, author) {
        return Err(EntryError::MayNotWithdraw {
            role: user.role,
            author,
            kind,
        });
    }
    store.withdraw_entry(id.trim(), &user.name, now).await?;
    Ok(())
}

/// An expiry date (YYYY-MM-DD) as the instant it ends: the next local midnight, so the
/// entry holds through that whole day.
pub fn expiry_from_date(day: NaiveDate, tz: chrono_tz::Tz) -> DateTime<Utc> {
    kaohe_rubric::period::local_midnight(day.succ_opt().unwrap_or(day), tz)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_expiry_date_holds_through_that_local_day() {
        let t = expiry_from_date(
            NaiveDate::from_ymd_opt(2026, 12, 31).expect("date"),
            chrono_tz::Asia::Shanghai,
        );
        assert_eq!(t.to_rfc3339(), "2026-12-31T16:00:00+00:00");
    }
}

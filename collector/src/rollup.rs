//! Daily roll-ups: per unit and local day, one digest of every report of that day,
//! updated at ingest, so that scoring a year reads 365 digests instead of every raw
//! report.

use chrono::{DateTime, Utc};
use kaohe_rubric::period::Period;
use kaohe_rubric::registry::UnitProfile;
use kaohe_rubric::rubric::Rubric;
use kaohe_rubric::scoring::{ScoreInput, Sheet, score};

use crate::store::{Store, StoreError, Unit};

/// The profile scoring reads, from a stored unit.
pub fn profile_of(unit: &Unit) -> UnitProfile {
    UnitProfile {
        id: unit.id.clone(),
        name: unit.name.clone(),
        parent: unit.parent.clone(),
        maintainer: unit.maintainer.clone(),
        responder: unit.responder.clone(),
        enrolled: unit.enrolled.as_deref().and_then(|d| d.parse().ok()),
        timezone: None,
    }
}

/// What scoring `start..end` of a unit reads: the digests of the window's days and the
/// raw reports of the hour after it.
pub async fn digests(
    store: &Store,
    rubric: &Rubric,
    unit_id: &str,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Result<Vec<kaohe_rubric::Report>, StoreError> {
    let reports = store.reports(unit_id, start, end + chrono::Duration::hours(1)).await?;
    Ok(kaohe_rubric::rollup::digests(&reports, rubric.timezone))
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
    let mut v = score_units(store, rubric, std::slice::from_ref(&unit), period, now).await?;
    Ok(v.remove(0))
}

/// Scores each of `units`, in order.
pub async fn score_units(
    store: &Store,
    rubric: &Rubric,
    units: &[Unit],
    period: Period,
    now: DateTime<Utc>,
) -> Result<Vec<Sheet>, StoreError> {
    let (start, end) = period.bounds(rubric.timezone);
    let mut out = Vec::with_capacity(units.len());
    for unit in units {
        let profile = profile_of(unit);
        let registry = store.registry(&unit.id).await?;
        let reports = store.reports(&unit.id, start, end + chrono::Duration::hours(1)).await?;
        out.push(score(&ScoreInput {
            rubric,
            profile: &profile,
            registry: &registry,
            reports: &reports,
            period,
            as_of: Some(now),
        }));
    }
    Ok(out)
}

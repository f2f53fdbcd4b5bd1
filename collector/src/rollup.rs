//! Scoring from the roll-ups: the evidence of a window as the store keeps it (day and
//! month digests and the raw reports of the hour after it, `store/rollups.rs`), scoring one
//! unit or all units on every core, and the task that keeps month digests built.

use chrono::{DateTime, Duration, Utc};
use kaohe_rubric::Report;
use kaohe_rubric::period::Period;
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::rubric::Rubric;
use kaohe_rubric::scoring::{ScoreInput, Sheet, score};

use crate::store::{Store, StoreError, Unit, parse_body};

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

/// Parses the bodies of one unit's evidence.
fn parse_all(bodies: &[String]) -> Vec<Report> {
    bodies
        .iter()
        .filter(|b| !b.is_empty())
        .filter_map(|b| parse_body(b, "roll-up"))
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

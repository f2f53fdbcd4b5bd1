//! The full 100-point sheet of a unit (automatic scores plus the reviewers' entries) and
//! the province ranking with city and county roll-ups. What the dashboard, the JSON API,
//! the exports and `kaohe-collector score` show.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Datelike, Utc};
use kaohe_rubric::period::Period;
use kaohe_rubric::rubric::{Rubric, Scoring};
use kaohe_rubric::scoring::{Deduction, Note, Sheet, round2};
use serde::Serialize;

use crate::review::{EntryKind, ManualEntry};
use crate::store::{Store, StoreError, Unit};

/// Where an item's final score stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FinalStatus {
    /// Scored in full (automatically, by review, or both).
    Final,
    /// Some of its points wait for a reviewer.
    Pending,
    /// An override replaces the automatic score.
    Overridden,
    /// Waived: full points, with a reason and an expiry.
    Waived,
}

impl FinalStatus {
    pub fn label_zh(self) -> &'static str {
        match self {
            FinalStatus::Final => "已评分",
            FinalStatus::Pending => "待评审",
            FinalStatus::Overridden => "人工改分",
            FinalStatus::Waived => "豁免",
        }
    }
}

/// One item of the full sheet.
#[derive(Debug, Clone, Serialize)]
pub struct FullItem {
    pub section: String,
    pub id: String,
    pub points: u32,
    pub text_zh: String,
    pub text_en: String,
    /// "auto", "partial" or "reviewer".
    pub scoring: &'static str,
    /// What the engine gave the automatic part (kept beside an override or waiver).
    pub auto_score: Option<f64>,
    /// Points of the automatic part.
    pub auto_max: f64,
    /// The reviewer's points for the reviewer part, once entered.
    pub review_score: Option<f64>,
    /// Points of the reviewer part.
    pub review_max: f64,
    /// The item's points so far (the pending part counts 0).
    pub score: f64,
    pub status: FinalStatus,
    /// Points still waiting for a reviewer.
    pub pending_points: f64,
    pub deductions: Vec<Deduction>,
    pub warnings: Vec<Note>,
    /// The entries in force for this item (review, override, waiver), newest last.
    pub entries: Vec<ManualEntry>,
    /// Overrides and waivers that have expired and no longer apply.
    pub expired: Vec<ManualEntry>,
}

/// A section's total.
#[derive(Debug, Clone, Serialize)]
pub struct SectionTotal {
    pub id: String,
    pub title_zh: String,
    pub title_en: String,
    pub points: u32,
    pub score: f64,
    pub pending_points: f64,
}

/// The full sheet of one unit and period.
#[derive(Debug, Clone, Serialize)]
pub struct FullSheet {
    /// What the engine computed (automatic items, evidence).
    pub auto: Sheet,
    pub items: Vec<FullItem>,
    pub sections: Vec<SectionTotal>,
    /// Points so far, of `total_max`.
    pub total: f64,
    pub total_max: u32,
    /// Points that wait for a reviewer.
    pub pending_points: f64,
}

impl FullSheet {
    /// A section's total by id ("二", "三"); 0 if absent.
    pub fn section(&self, id: &str) -> f64 {
        self.sections.iter().find(|s| s.id == id).map_or(0.0, |s| s.score)
    }
}

/// The period labels whose entries apply to `period`: its own and, for a part of a year,
/// the year's (entries are usually made once per assessment year).
pub fn entry_periods(period: &Period) -> Vec<String> {
    let own = period.to_string();
    let year = period.days().0.year().to_string();
    if own == year { vec![own] } else { vec![own, year] }
}

/// Joins the engine's sheet with the entries in force at `now`.
pub fn full_sheet(rubric: &Rubric, auto: Sheet, entries: &[ManualEntry], now: DateTime<Utc>) -> FullSheet {
    let mut items = Vec::new();
    let mut sections: Vec<SectionTotal> = rubric
        .sections
        .iter()
        .map(|s| SectionTotal {
            id: s.id.clone(),
            title_zh: s.title_zh.clone(),
            title_en: s.title_en.clone(),
            points: s.points,
            score: 0.0,
            pending_points: 0.0,
        })
        .collect();
    let by_id: HashMap<&str, _> = auto.items.iter().map(|i| (i.id.as_str(), i)).collect();
    for (section, item) in rubric.items() {
        let engine = by_id.get(item.id.as_str());
        let mine: Vec<&ManualEntry> = entries.iter().filter(|e| e.item_id == item.id).collect();
        // The newest entry of each kind wins.
        let latest = |k: EntryKind| mine.iter().rev().find(|e| e.kind == k).copied();
        let mut in_force = Vec::new();
        let mut expired = Vec::new();
        let auto_max = item.auto_points();
        let review_max = item.reviewer_points();
        let auto_score = engine.and_then(|i| i.score).filter(|_| item.rule.is_some());
        let mut status = FinalStatus::Final;
        let mut auto_part = auto_score.unwrap_or(0.0);
        // The newest override or waiver still in force decides; expired ones are listed.
        for e in mine.iter().filter(|e| e.kind != EntryKind::Review && e.expired(now)) {
            expired.push((*e).clone());
        }
        let exception = mine
            .iter()
            .rev()
            .find(|e| e.kind != EntryKind::Review && !e.expired(now))
            .copied();
        if let Some(e) = exception {
            match e.kind {
                EntryKind::Waiver => {
                    status = FinalStatus::Waived;
                    auto_part = auto_max;
                }
                _ => {
                    status = FinalStatus::Overridden;
                    auto_part = e.score.unwrap_or(0.0).min(auto_max);
                }
            }
            in_force.push(e.clone());
        }
        let review = latest(EntryKind::Review);
        let mut pending = 0.0;
        let review_score = if review_max > 0.0 {
            match review {
                // A waived item is not assessed: full points, whatever a review said.
                _ if status == FinalStatus::Waived => Some(review_max),
                Some(r) => {
                    in_force.push(r.clone());
                    r.score.map(|s| s.min(review_max))
                }
                None => {
                    pending = review_max;
                    if status == FinalStatus::Final {
                        status = FinalStatus::Pending;
                    }
                    None
                }
            }
        } else {
            None
        };
        let score = round2(if item.rule.is_some() { auto_part } else { 0.0 } + review_score.unwrap_or(0.0));
        if let Some(s) = sections.iter_mut().find(|s| s.id == section.id) {
            s.score = round2(s.score + score);
            s.pending_points = round2(s.pending_points + pending);
        }
        items.push(FullItem {
            section: section.id.clone(),
            id: item.id.clone(),
            points: item.points,
            text_zh: item.text_zh.clone(),
            text_en: item.text_en.clone(),
            scoring: match item.scoring {
                Scoring::Auto => "auto",
                Scoring::Partial => "partial",
                Scoring::Reviewer => "reviewer",
            },
            auto_score,
            auto_max,
            review_score,
            review_max,
            score,
            status,
            pending_points: pending,
            deductions: engine.map(|i| i.deductions.clone()).unwrap_or_default(),
            warnings: engine.map(|i| i.warnings.clone()).unwrap_or_default(),
            entries: in_force,
            expired,
        });
    }
    let total = round2(sections.iter().map(|s| s.score).sum());
    let pending_points = round2(sections.iter().map(|s| s.pending_points).sum());
    FullSheet {
        auto,
        items,
        sections,
        total,
        total_max: rubric.total_points,
        pending_points,
    }
}

/// A unit's full sheet from the store.
pub async fn unit_sheet(
    store: &Store,
    rubric: &Rubric,
    unit_id: &str,
    period: Period,
    now: DateTime<Utc>,
) -> Result<FullSheet, StoreError> {
    let auto = crate::rollup::score_unit(store, rubric, unit_id, period, now).await?;
    let entries = store.entries(unit_id, &entry_periods(&period)).await?;
    Ok(full_sheet(rubric, auto, &entries, now))
}

/// One row of the ranking.
#[derive(Debug, Clone, Serialize)]
pub struct RankRow {
    /// 1-based; equal totals share a rank.
    pub rank: usize,
    pub unit: Unit,
    /// Sections 二 and 三 (the automatic sections) and their sum, of 27.
    pub section2: f64,
    pub section3: f64,
    pub auto_total: f64,
    /// The whole sheet so far, and what still waits for reviewers.
    pub total: f64,
    pub pending_points: f64,
    pub reports: usize,
    /// Last report from any of its agents (Unix ms).
    pub last_seen: Option<i64>,
}

/// A city's or county's roll-up: the mean of the units in its subtree (itself included)
/// that have reported.
#[derive(Debug, Clone, Serialize)]
pub struct Rollup {
    pub unit: Unit,
    pub units: usize,
    pub mean_auto_total: f64,
    pub mean_total: f64,
}

/// The ranking of `units` and the roll-ups of every city and county among them.
#[derive(Debug, Clone, Serialize)]
pub struct Ranking {
    pub period: String,
    pub rows: Vec<RankRow>,
    pub rollups: Vec<Rollup>,
}

/// Scores every unit given (with agents or not) and ranks them by total, then by the
/// automatic sections.
pub async fn ranking(
    store: &Store,
    rubric: &Rubric,
    units: &[Unit],
    period: Period,
    now: DateTime<Utc>,
) -> Result<Ranking, StoreError> {
    let labels = entry_periods(&period);
    let mut entries: HashMap<String, Vec<ManualEntry>> = HashMap::new();
    for e in store.all_entries(&labels).await? {
        entries.entry(e.unit_id.clone()).or_default().push(e);
    }
    let seen: HashMap<String, i64> = store.last_seen_by_unit().await?.into_iter().collect();
    // The province (the department itself) is the assessor, not a unit ranked.
    let units: Vec<Unit> = units.iter().filter(|u| u.kind != "province").cloned().collect();
    let units = &units[..];
    let sheets = crate::rollup::score_units(store, rubric, units, period, now).await?;
    let mut rows: Vec<RankRow> = Vec::with_capacity(units.len());
    for (unit, auto) in units.iter().zip(sheets) {
        let full = full_sheet(rubric, auto, entries.get(&unit.id).map_or(&[][..], |v| &v[..]), now);
        let (s2, s3) = (full.section("二"), full.section("三"));
        rows.push(RankRow {
            rank: 0,
            unit: unit.clone(),
            section2: s2,
            section3: s3,
            auto_total: round2(s2 + s3),
            total: full.total,
            pending_points: full.pending_points,
            reports: full.auto.reports,
            last_seen: seen.get(&unit.id).copied(),
        });
    }
    rows.sort_by(|a, b| {
        b.total
            .total_cmp(&a.total)
            .then(b.auto_total.total_cmp(&a.auto_total))
            .then(a.unit.id.cmp(&b.unit.id))
    });
    let mut prev: Option<(f64, f64)> = None;
    for i in 0..rows.len() {
        let key = (rows[i].total, rows[i].auto_total);
        rows[i].rank = match prev {
            Some(p) if p == key => rows[i - 1].rank,
            _ => i + 1,
        };
        prev = Some(key);
    }
    let rollups = rollups(&rows);
    Ok(Ranking {
        period: period.to_string(),
        rows,
        rollups,
    })
}

fn rollups(rows: &[RankRow]) -> Vec<Rollup> {
    let by_id: HashMap<&str, &Unit> = rows.iter().map(|r| (r.unit.id.as_str(), &r.unit)).collect();
    let mut acc: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    // Units that never reported (no agent yet) are listed in the ranking, but a roll-up is
    // the mean of the units that are observed; a city with none yet is listed with 0 units.
    for r in rows {
        let reported = r.last_seen.is_some();
        // Credit the unit itself and each ancestor that is a city or county.
        let mut at = Some(&r.unit);
        while let Some(u) = at {
            if matches!(u.kind.as_str(), "city" | "county") {
                let a = acc.entry(u.id.as_str()).or_default();
                if reported {
                    a.0 += 1;
                    a.1 += r.auto_total;
                    a.2 += r.total;
                }
            }
            at = u.parent.as_deref().and_then(|p| by_id.get(p).copied());
        }
    }
    acc.into_iter()
        .filter_map(|(id, (n, auto, total))| {
            Some(Rollup {
                unit: (*by_id.get(id)?).clone(),
                units: n,
                mean_auto_total: round2(auto / n.max(1) as f64),
                mean_total: round2(total / n.max(1) as f64),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use kaohe_rubric::registry::{Registry, UnitProfile};
    use kaohe_rubric::scoring::{ScoreInput, score};

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, 0, 0, 0)
            .single()
            .unwrap_or_default()
    }

    fn entry(kind: EntryKind, score: Option<f64>, created: u32, expires: Option<u32>) -> ManualEntry {
        ManualEntry {
            id: format!("{kind:?}{created}"),
            unit_id: "u".into(),
            period: "2026".into(),
            item_id: "三.1".into(),
            kind,
            score,
            reviewer: "李评审".into(),
            note: "n".into(),
            expires_at: expires.map(at),
            created_at: at(created),
            author_role: "province".into(),
        }
    }

    fn item(entries: &[ManualEntry], now: DateTime<Utc>) -> FullItem {
        let rubric = Rubric::default_rubric();
        let auto = score(&ScoreInput {
            rubric: &rubric,
            profile: &UnitProfile::bare("u"),
            registry: &Registry::default(),
            reports: &[],
            period: "2026-11".parse().unwrap_or(Period::Year { year: 2026 }),
            as_of: Some(now),
        });
        let sheet = full_sheet(&rubric, auto, entries, now);
        sheet
            .items
            .into_iter()
            .find(|i| i.id == "三.1")
            .unwrap_or_else(|| panic!("三.1"))
    }

    #[test]
    fn a_waiver_gives_the_whole_item_even_over_an_older_low_review() {
        let i = item(
            &[
                entry(EntryKind::Review, Some(0.0), 1, None),
                entry(EntryKind::Waiver, None, 2, Some(30)),
            ],
            at(3),
        );
        assert_eq!(i.status, FinalStatus::Waived);
        assert_eq!(i.score, f64::from(i.points), "{i:#?}");
        assert_eq!(i.auto_score, Some(0.0), "the automatic score stays beside the waiver");
    }

    #[test]
    fn an_expired_override_gives_way_to_an_older_waiver_still_in_force() {
        let i = item(
            &[
                entry(EntryKind::Waiver, None, 1, Some(30)),
                entry(EntryKind::Override, Some(1.0), 2, Some(3)),
            ],
            at(4),
        );
        assert_eq!(i.status, FinalStatus::Waived, "{i:#?}");
        assert_eq!(i.expired.len(), 1);
        assert_eq!(i.expired[0].kind, EntryKind::Override);
    }
}

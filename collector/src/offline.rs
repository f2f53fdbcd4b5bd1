//! Offline scoring: one unit from files — registry CSV, unit profile, evidence reports —
//! as `kaohe-collector score` does it. The same function serves the data-driven tests.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use kaohe_rubric::evidence::Report;
use kaohe_rubric::period::Period;
use kaohe_rubric::registry::{Registry, UnitProfile};
use kaohe_rubric::rubric::{DEFAULT_RUBRIC_NAME, Rubric};
use kaohe_rubric::scoring::{ScoreInput, Sheet, score};

/// Which period to score.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeriodChoice {
    /// The whole calendar days that the evidence covers.
    Auto,
    Fixed(Period),
}

impl std::str::FromStr for PeriodChoice {
    type Err = kaohe_rubric::period::PeriodError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().eq_ignore_ascii_case("auto") {
            Ok(PeriodChoice::Auto)
        } else {
            s.parse().map(PeriodChoice::Fixed)
        }
    }
}

/// What to score.
#[derive(Debug, Clone)]
pub struct ScoreRequest {
    pub rubric: Option<PathBuf>,
    pub registry: PathBuf,
    pub unit: Option<PathBuf>,
    /// Report files (one report or an array of reports each) or folders of `*.json`.
    pub evidence: Vec<PathBuf>,
    pub period: PeriodChoice,
    /// Score a period under way up to this time; `None` scores the whole period.
    pub as_of: Option<DateTime<Utc>>,
}

/// Why the inputs could not be scored. Each names the file and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("无法读取 {path} (cannot read): {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Rubric(#[from] kaohe_rubric::rubric::RubricError),
    #[error("{0}")]
    Registry(#[from] kaohe_rubric::registry::RegistryError),
    #[error("{0}")]
    Profile(#[from] kaohe_rubric::registry::ProfileError),
    #[error("证据文件 {path}: {message}")]
    Evidence { path: PathBuf, message: String },
    #[error(
        "证据属于多个单位 ({first} 与 {other}, 见 {path}); 一次只能评一个单位 (evidence mixes units; score one unit at a time)"
    )]
    MixedUnits {
        first: String,
        other: String,
        path: PathBuf,
    },
    #[error(
        "证据文件 {path} 属于单位 {found}, 但单位资料为 {expected} (evidence is for another unit than the profile)"
    )]
    WrongUnit {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("--period auto 需要证据来确定期间; 请用 --period 指定 (auto period needs evidence; give --period)")]
    NoEvidenceForAutoPeriod,
}

impl InputError {
    /// Exit code: 66 when a file cannot be read, 65 for bad data (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            InputError::Read { .. } => 66,
            _ => 65,
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, InputError> {
    std::fs::read(path).map_err(|source| InputError::Read {
        path: path.to_path_buf(),
        source,
    })
}

fn read_text(path: &Path) -> Result<String, InputError> {
    let bytes = read(path)?;
    String::from_utf8(bytes).map_err(|e| InputError::Evidence {
        path: path.to_path_buf(),
        message: format!("不是 UTF-8 文本 (not UTF-8): {e}"),
    })
}

/// Loads the rubric from a file, or the shipped one.
pub fn load_rubric(path: Option<&Path>) -> Result<Rubric, InputError> {
    match path {
        Some(p) => Ok(Rubric::from_toml(&read_text(p)?, &p.display().to_string())?),
        None => Ok(Rubric::from_toml(
            kaohe_rubric::rubric::DEFAULT_RUBRIC_TOML,
            DEFAULT_RUBRIC_NAME,
        )?),
    }
}

/// Expands folders to their `*.json` files, sorted, and keeps files as given.
fn evidence_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, InputError> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|source| InputError::Read {
                path: p.clone(),
                source,
            })?;
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.extension().is_some_and(|x| x == "json"))
                .collect();
            files.sort();
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

/// Reads every report, checking that they all belong to one unit.
pub fn load_reports(paths: &[PathBuf]) -> Result<Vec<Report>, InputError> {
    let mut reports: Vec<Report> = Vec::new();
    let mut first_unit: Option<String> = None;
    for path in evidence_files(paths)? {
        let text = read_text(&path)?;
        let batch = Report::many_from_json(&text).map_err(|e| InputError::Evidence {
            path: path.clone(),
            message: e.to_string(),
        })?;
        for r in &batch {
            match &first_unit {
                None => first_unit = Some(r.unit_id.clone()),
                Some(u) if *u != r.unit_id => {
                    return Err(InputError::MixedUnits {
                        first: u.clone(),
                        other: r.unit_id.clone(),
                        path,
                    });
                }
                Some(_) => {}
            }
        }
        reports.extend(batch);
    }
    // The same report in two files counts once.
    let mut seen = std::collections::HashSet::new();
    reports.retain(|r| seen.insert(r.report_id));
    reports.sort_by_key(|r| (r.created_at, r.sequence));
    Ok(reports)
}

/// The earliest and latest instant the evidence speaks of: its samples, checks and
/// records (a report made just after midnight does not add a day), or the creation
/// time of a report that holds none.
fn evidence_span(reports: &[Report]) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let times = reports.iter().flat_map(|r| {
        let samples = r.probes.samples.iter().map(|s| s.at);
        let iso = r.isolation.iter().map(|i| i.at);
        let daily = r.daily_checks.iter().map(|d| d.at);
        let services = r.services.iter().map(|s| s.at);
        let inner: Vec<DateTime<Utc>> = samples.chain(iso).chain(daily).chain(services).collect();
        if inner.is_empty() { vec![r.created_at] } else { inner }
    });
    times.fold(None, |acc, t| match acc {
        None => Some((t, t)),
        Some((a, b)) => Some((a.min(t), b.max(t))),
    })
}

/// Loads everything a request names and scores it.
pub fn score_files(req: &ScoreRequest) -> Result<Sheet, InputError> {
    score_files_with(req, &load_rubric(req.rubric.as_deref())?)
}

/// As [`score_files`], with the rubric already loaded (`req.rubric` is not read).
pub fn score_files_with(req: &ScoreRequest, rubric: &Rubric) -> Result<Sheet, InputError> {
    let inputs = load_inputs(req, rubric)?;
    Ok(score(&ScoreInput {
        rubric,
        profile: &inputs.profile,
        registry: &inputs.registry,
        reports: &inputs.reports,
        period: inputs.period,
        as_of: req.as_of,
    }))
}

/// What a request names, loaded and checked.
#[derive(Debug)]
pub struct Inputs {
    pub registry: Registry,
    pub profile: UnitProfile,
    pub reports: Vec<Report>,
    pub period: Period,
    /// The unit's time zone (profile, else the rubric's).
    pub tz: chrono_tz::Tz,
}

/// Loads the registry, profile and reports a request names and settles the period.
pub fn load_inputs(req: &ScoreRequest, rubric: &Rubric) -> Result<Inputs, InputError> {
    let registry = Registry::from_csv(&read(&req.registry)?, &req.registry.display().to_string())?;
    let reports = load_reports(&req.evidence)?;
    let profile = match &req.unit {
        Some(p) => {
            let profile = UnitProfile::from_toml(&read_text(p)?, &p.display().to_string())?;
            if let Some(r) = reports.iter().find(|r| r.unit_id != profile.id) {
                return Err(InputError::WrongUnit {
                    path: req.evidence.first().cloned().unwrap_or_default(),
                    found: r.unit_id.clone(),
                    expected: profile.id,
                });
            }
            profile
        }
        None => UnitProfile::bare(reports.first().map_or("unknown", |r| r.unit_id.as_str())),
    };
    let tz = profile
        .timezone
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(rubric.timezone);
    let period = match req.period {
        PeriodChoice::Fixed(p) => p,
        PeriodChoice::Auto => {
            let (a, b) = evidence_span(&reports).ok_or(InputError::NoEvidenceForAutoPeriod)?;
            Period::covering(a, b, tz)
        }
    };
    Ok(Inputs {
        registry,
        profile,
        reports,
        period,
        tz,
    })
}

/// A registry as CSV with the Chinese header, the format `Registry::from_csv` reads:
/// formula-escaped and quoted exactly as the dashboard's exports, so a name or vendor from
/// an agent or a file is never evaluated by a spreadsheet and cannot forge a row, and it
/// imports back to the same registry.
pub fn registry_csv(registry: &Registry) -> String {
    registry.to_csv()
}

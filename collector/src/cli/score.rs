//! `kaohe-collector score`: one unit, offline from files or from the collector's database.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use super::{CliError, ServerArgs, current_year, print, stored_sheet};
use crate::offline::{self, PeriodChoice, ScoreRequest};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// 单位备案 CSV (the unit's registry CSV); 与 --db-unit 二选一
    #[arg(long, value_name = "FILE", required_unless_present = "db_unit")]
    pub registry: Option<PathBuf>,
    /// 从采集中心数据库为该单位评分: 备案、单位资料与报告均取自数据库
    /// (score this unit from the collector's database: registry, profile and reports)
    #[arg(long, value_name = "UNIT", conflicts_with_all = ["registry", "unit", "evidence"])]
    pub db_unit: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
    /// 单位资料 TOML: 名称、维护人、负责人、注册日期 (unit profile; without it nobody is on record)
    #[arg(long, value_name = "FILE")]
    pub unit: Option<PathBuf>,
    /// 代理报告 JSON 文件或目录, 可多个 (report files or folders of *.json; none = no evidence)
    #[arg(long, value_name = "PATH", num_args = 1..)]
    pub evidence: Vec<PathBuf>,
    /// 评分期间: 2026、2026-Q4、2026-11、2026-11-01..2026-11-07 或 auto (证据覆盖的日期)
    #[arg(long, default_value = "auto", value_name = "PERIOD")]
    pub period: PeriodChoice,
    /// 评分时点 (RFC 3339); 进行中的期间只评到此时。默认为当前时间 (score a period under way up to this time; default now)
    #[arg(long, value_name = "TIME")]
    pub as_of: Option<DateTime<Utc>>,
    /// 评分细则文件 (rubric file; default: the shipped one)
    #[arg(long, value_name = "FILE")]
    pub rubric: Option<PathBuf>,
    /// 以 JSON 输出 (print JSON)
    #[arg(long)]
    pub json: bool,
}

impl ScoreArgs {
    pub(super) fn run(self, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        match self.db_unit.clone() {
            Some(unit) => self.score_database(unit, now, out),
            None => self.score_files(now, out),
        }
    }

    /// The full sheet from the database: registry, profile, reports and manual entries.
    fn score_database(self, unit: String, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        let config = self.server.config()?;
        let rubric = offline::load_rubric(self.rubric.as_deref().or(config.rubric.as_deref()))?;
        let as_of = self.as_of.unwrap_or(now);
        let period = match self.period {
            PeriodChoice::Fixed(p) => p,
            // The assessment year so far.
            PeriodChoice::Auto => current_year(&rubric, as_of),
        };
        let sheet = stored_sheet(&config, &rubric, &unit, period, as_of)?;
        print(out, self.json, &sheet, |s| crate::render::full_sheet_text(s, &rubric));
        Ok(())
    }

    /// The engine's sheet from the files given.
    fn score_files(self, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        let req = ScoreRequest {
            rubric: self.rubric.clone(),
            registry: self.registry.clone().unwrap_or_default(),
            unit: self.unit,
            evidence: self.evidence,
            period: self.period,
            as_of: Some(self.as_of.unwrap_or(now)),
        };
        let rubric = offline::load_rubric(self.rubric.as_deref())?;
        let sheet = offline::score_files_with(&req, &rubric)?;
        print(out, self.json, &sheet, |s| crate::render::sheet_text(s, &rubric));
        Ok(())
    }
}

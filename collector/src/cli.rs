//! Command-line interface. `main.rs` parses, calls [`run`], and maps errors to exit codes.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::offline::{self, InputError, PeriodChoice, ScoreRequest};
use crate::render;

#[derive(Debug, Parser)]
#[command(
    name = "kaohe-collector",
    version,
    about = "考核采集中心: 汇总代理报告, 管理备案, 自动评分 (Kaohe collector: scores units against the rubric)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// 查看评分细则 (show the rubric)
    Rubric {
        #[command(subcommand)]
        action: RubricAction,
    },
    /// 离线为一个单位评分 (score one unit offline from files)
    Score(ScoreArgs),
}

#[derive(Debug, Subcommand)]
pub enum RubricAction {
    /// 显示各章节、细则、标准分与评分方式 (sections, items, points and how each is scored)
    Show {
        /// 评分细则文件; 默认为内置的宁夏 2026 版 (rubric file; default: the shipped Ningxia 2026 rubric)
        #[arg(long, value_name = "FILE")]
        rubric: Option<PathBuf>,
        /// 以 JSON 输出 (print JSON)
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// 单位备案 CSV (the unit's registry CSV)
    #[arg(long, value_name = "FILE")]
    pub registry: PathBuf,
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

/// The rubric as JSON: `sections[]` with `id`, `title_zh`, `title_en`, `points`, `items[]`.
#[derive(Serialize)]
struct RubricJson<'a> {
    id: &'a str,
    version: u32,
    title_zh: &'a str,
    title_en: &'a str,
    total_points: u32,
    timezone: &'a str,
    sections: &'a [kaohe_rubric::rubric::Section],
}

/// Runs a command, writing its output to `out`. `now` is the caller's clock.
pub fn run(cli: Cli, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), InputError> {
    match cli.command {
        Command::Rubric {
            action: RubricAction::Show { rubric, json },
        } => {
            let r = offline::load_rubric(rubric.as_deref())?;
            if json {
                let view = RubricJson {
                    id: &r.id,
                    version: r.version,
                    title_zh: &r.title_zh,
                    title_en: &r.title_en,
                    total_points: r.total_points,
                    timezone: r.timezone.name(),
                    sections: &r.sections,
                };
                write_json(out, &view);
            } else {
                let _ = out.write_all(render::rubric_text(&r).as_bytes());
            }
        }
        Command::Score(args) => {
            let req = ScoreRequest {
                rubric: args.rubric.clone(),
                registry: args.registry,
                unit: args.unit,
                evidence: args.evidence,
                period: args.period,
                as_of: Some(args.as_of.unwrap_or(now)),
            };
            let sheet = offline::score_files(&req)?;
            if args.json {
                write_json(out, &sheet);
            } else {
                let rubric = offline::load_rubric(args.rubric.as_deref())?;
                let _ = out.write_all(render::sheet_text(&sheet, &rubric).as_bytes());
            }
        }
    }
    Ok(())
}

fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) {
    // Serialising our own plain data types cannot fail.
    if let Ok(text) = serde_json::to_string_pretty(value) {
        let _ = writeln!(out, "{text}");
    }
}

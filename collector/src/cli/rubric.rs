//! `kaohe-collector rubric show`.

use std::io::Write;
use std::path::PathBuf;

use clap::Subcommand;
use serde::Serialize;

use super::{CliError, write_json};
use crate::offline;

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

impl RubricAction {
    pub(super) fn run(self, out: &mut dyn Write) -> Result<(), CliError> {
        let RubricAction::Show { rubric, json } = self;
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
            let _ = out.write_all(crate::render::rubric_text(&r).as_bytes());
        }
        Ok(())
    }
}

//! `kaohe-collector export`: a unit's sheet as CSV, XLSX or the printable 自检报告.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use kaohe_rubric::period::Period;

use super::{CliError, ServerArgs, current_year, stored_sheet, write_output};
use crate::offline;

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// 单位路径 (the unit's path)
    #[arg(long)]
    unit: String,
    /// 考核期间; 默认当年 (default: the current year)
    #[arg(long, value_name = "PERIOD")]
    period: Option<Period>,
    /// csv | xlsx | html (html: 自检报告 self-check report)
    #[arg(long)]
    format: String,
    /// 输出文件; 默认标准输出 (default stdout)
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// 评分细则文件 (rubric file)
    #[arg(long, value_name = "FILE")]
    rubric: Option<PathBuf>,
    #[command(flatten)]
    server: ServerArgs,
}

impl ExportArgs {
    pub(super) fn run(self, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        let config = self.server.config()?;
        let rubric = offline::load_rubric(self.rubric.as_deref().or(config.rubric.as_deref()))?;
        let period = self.period.unwrap_or_else(|| current_year(&rubric, now));
        let format = self.format;
        if !matches!(format.as_str(), "csv" | "xlsx" | "html") {
            return Err(CliError::Usage(format!(
                "导出格式 {format} 无法识别, 应为 csv、xlsx 或 html (unknown format)"
            )));
        }
        let unit = self.unit;
        let sheet = stored_sheet(&config, &rubric, &unit, period, now)?;
        let bytes = match format.as_str() {
            "csv" => crate::export::sheet_csv(&sheet),
            "xlsx" => crate::export::sheet_xlsx(&sheet)?,
            _ => crate::export::self_check_html(&sheet, now).into_bytes(),
        };
        write_output(self.out, &bytes, out, true)
    }
}

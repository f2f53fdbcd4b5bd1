//! `kaohe-collector rank`: the ranking with city and county roll-ups.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use kaohe_rubric::period::Period;

use super::{CliError, ServerArgs, current_year, print, with_store};
use crate::offline;

#[derive(Debug, clap::Args)]
pub struct RankArgs {
    /// 考核期间: 2026、2026-Q4、2026-11; 默认当年 (default: the current year)
    #[arg(long, value_name = "PERIOD")]
    period: Option<Period>,
    /// 评分细则文件 (rubric file; default: the configured or shipped one)
    #[arg(long, value_name = "FILE")]
    rubric: Option<PathBuf>,
    /// 以 JSON 输出 (print JSON)
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    server: ServerArgs,
}

impl RankArgs {
    pub(super) fn run(self, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        let config = self.server.config()?;
        let rubric = offline::load_rubric(self.rubric.as_deref().or(config.rubric.as_deref()))?;
        let period = self.period.unwrap_or_else(|| current_year(&rubric, now));
        let ranking = {
            let rubric = &rubric;
            with_store(&config, |store| async move {
                let units = store.units().await?;
                Ok(crate::scores::ranking(&store, rubric, &units, period, now).await?)
            })?
        };
        print(out, self.json, &ranking, |r| crate::render::ranking_text(r, &rubric));
        Ok(())
    }
}

//! `kaohe-collector review`: reviews, overrides and waivers — add, list, withdraw.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use kaohe_rubric::period::Period;

use super::{CliError, cli_actor, current_year, require_unit, with_store};
use crate::config::CollectorConfig;
use crate::offline;
use crate::review::{EntryKind, NewEntry};
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum ReviewAction {
    /// 录入评审、人工改分或豁免 (add a review, override or waiver)
    Add {
        /// 单位路径 (the unit's path)
        #[arg(long)]
        unit: String,
        /// 考核期间; 默认当年 (default: the current year)
        #[arg(long, value_name = "PERIOD")]
        period: Option<Period>,
        /// 条目, 如 四.1 (the item)
        #[arg(long)]
        item: String,
        /// review (评审) | override (人工改分) | waiver (豁免)
        #[arg(long)]
        kind: String,
        /// 分数; 豁免不填 (points; none for a waiver)
        #[arg(long)]
        score: Option<f64>,
        /// 评审人姓名 (the reviewer's name)
        #[arg(long)]
        reviewer: String,
        /// 说明或理由 (note or reason)
        #[arg(long)]
        note: String,
        /// 到期日 YYYY-MM-DD, 当日有效; 人工改分和豁免必填 (expiry, inclusive; required for overrides and waivers)
        #[arg(long)]
        expires: Option<chrono::NaiveDate>,
        /// 评分细则文件 (rubric file)
        #[arg(long, value_name = "FILE")]
        rubric: Option<PathBuf>,
    },
    /// 列出单位在期间内有效的记录 (list a unit's live entries)
    List {
        #[arg(long)]
        unit: String,
        #[arg(long, value_name = "PERIOD")]
        period: Option<Period>,
    },
    /// 撤回一条记录 (withdraw an entry by id; it stays in the audit log)
    Withdraw { id: String },
}

impl ReviewAction {
    pub(super) fn run(self, config: &CollectorConfig, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        with_store(
            config,
            |store| async move { self.apply(&store, config, now, out).await },
        )
    }

    async fn apply(
        self,
        store: &Store,
        config: &CollectorConfig,
        now: DateTime<Utc>,
        out: &mut dyn Write,
    ) -> Result<(), CliError> {
        match self {
            ReviewAction::Add {
                unit,
                period,
                item,
                kind,
                score,
                reviewer,
                note,
                expires,
                rubric,
            } => {
                let rubric = offline::load_rubric(rubric.as_deref().or(config.rubric.as_deref()))?;
                let kind = EntryKind::parse(kind.trim()).ok_or_else(|| {
                    CliError::Usage(format!(
                        "类别 {kind} 无法识别, 应为 review (评审)、override (人工改分) 或 waiver (豁免) (unknown kind)"
                    ))
                })?;
                let period = period.unwrap_or_else(|| current_year(&rubric, now));
                let entry = NewEntry {
                    unit_id: unit.clone(),
                    period: period.to_string(),
                    item_id: item.trim().to_string(),
                    kind,
                    score,
                    reviewer: reviewer.trim().to_string(),
                    note: note.trim().to_string(),
                    expires_at: expires.map(|d| crate::entries::expiry_from_date(d, rubric.timezone)),
                };
                crate::review::check(&rubric, &entry, now)?;
                require_unit(store, &unit).await?;
                let id = store
                    .add_entry(&entry, &cli_actor(), crate::web::auth::Role::Province, now)
                    .await?;
                let _ = writeln!(
                    out,
                    "已录入{} (entry added): {id}  单位 {unit} 期间 {period} 条目 {}",
                    kind.label_zh(),
                    entry.item_id
                );
            }
            ReviewAction::List { unit, period } => {
                let rubric = offline::load_rubric(config.rubric.as_deref())?;
                let period = period.unwrap_or_else(|| current_year(&rubric, now));
                let entries = store.entries(&unit, &crate::scores::entry_periods(&period)).await?;
                if entries.is_empty() {
                    let _ = writeln!(out, "单位 {unit} 期间 {period} 没有记录 (no entries)");
                }
                for e in entries {
                    let expires = e
                        .expires_at
                        .map(|t| format!(" 到期 {}", t.with_timezone(&rubric.timezone).format("%Y-%m-%d %H:%M")))
                        .unwrap_or_default();
                    let expired = if e.expired(now) { " [已过期 expired]" } else { "" };
                    let _ = writeln!(
                        out,
                        "{}\t{}\t{}\t{}\t{}\t{}: {}{expires}{expired}",
                        e.id,
                        e.period,
                        e.item_id,
                        e.kind.label_zh(),
                        e.score.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        e.reviewer,
                        e.note
                    );
                }
            }
            ReviewAction::Withdraw { id } => {
                if !store.withdraw_entry(&id, &cli_actor(), now).await? {
                    return Err(CliError::Usage(format!("没有可撤回的记录 {id} (no such live entry)")));
                }
                let _ = writeln!(out, "已撤回 (withdrawn): {id}");
            }
        }
        Ok(())
    }
}

//! `kaohe-collector registry`: import, export, and the devices nobody registered.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::Subcommand;
use kaohe_rubric::registry::safe_csv;
use kaohe_rubric::scoring::Evidence;

use super::{CliError, with_store, write_output};
use crate::config::CollectorConfig;
use crate::store::Store;

#[derive(Debug, Subcommand)]
pub enum RegistryAction {
    /// 导入备案 CSV 或 Excel (XLSX, 第一个工作表), 整体替换该单位原有备案; 有错误的行全部列出,
    /// 不导入任何内容 (import a registry CSV or XLSX, replacing it whole; nothing if any row is bad)
    Import {
        #[arg(long)]
        unit: String,
        file: PathBuf,
    },
    /// 列出代理发现但未备案的设备, 供单位补充备案 (devices the agents saw that nobody registered)
    Unregistered {
        #[arg(long)]
        unit: String,
        /// 回看天数 (look back this many days)
        #[arg(long, default_value_t = 30)]
        days: u32,
        /// 以 CSV 输出, 可补全使用者与使用地点后直接导入 (print CSV ready to complete and import)
        #[arg(long)]
        csv: bool,
    },
    /// 导出备案 CSV (export the registry as CSV, Chinese header)
    Export {
        #[arg(long)]
        unit: String,
        /// 输出文件; 默认标准输出 (default stdout)
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

impl RegistryAction {
    pub(super) fn run(self, config: &CollectorConfig, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        with_store(config, |store| async move {
            match self {
                RegistryAction::Import { unit, file } => {
                    // Bounded before it is read whole (size, rows, columns, cells).
                    let registry = crate::xlsx::read_registry_file(&file)?;
                    let n = store
                        .replace_registry(&unit, &registry)
                        .await
                        .map_err(CliError::Server)?;
                    let _ = writeln!(out, "已导入 {n} 条备案到单位 {unit} (imported {n} entries)");
                }
                RegistryAction::Unregistered { unit, days, csv } => {
                    unregistered(&store, &unit, days, csv, now, out).await?;
                }
                RegistryAction::Export { unit, out: file } => {
                    let registry = store.registry(&unit).await.map_err(CliError::Server)?;
                    let csv = crate::offline::registry_csv(&registry);
                    write_output(file, csv.as_bytes(), out, false)?;
                }
            }
            Ok(())
        })
    }
}

/// The devices the unit's agents saw in the last `days` days that its registry lacks, as
/// a list or as a registry CSV ready to complete.
async fn unregistered(
    store: &Store,
    unit: &str,
    days: u32,
    csv: bool,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), CliError> {
    let registry = store.registry(unit).await.map_err(CliError::Server)?;
    let from = now - chrono::Duration::days(i64::from(days));
    let reports = store
        .reports(unit, from, now + chrono::Duration::hours(1))
        .await
        .map_err(CliError::Server)?;
    let found = kaohe_rubric::scoring::unregistered_devices(&registry, &reports, from, now);
    // CSV: vendor, IP and MAC come from agents, so every field is escaped as the
    // dashboard's exports are (no formula, no forged row).
    let mut table = String::new();
    if csv {
        table.push_str(safe_csv::UTF8_BOM);
        safe_csv::push_line(&mut table, kaohe_rubric::registry::CSV_HEADER);
    } else if found.is_empty() {
        let _ = writeln!(out, "近 {days} 天发现的设备均已备案 (every device seen is registered)");
    } else {
        let _ = writeln!(
            out,
            "近 {days} 天发现 {} 台未备案设备 (unregistered devices):",
            found.len()
        );
    }
    for e in &found {
        if let Evidence::Device {
            ip,
            mac,
            vendor,
            last_seen,
            ..
        } = e
        {
            let ip = ip.as_deref().unwrap_or("");
            let mac = mac.as_deref().unwrap_or("");
            if csv {
                let name = vendor.as_deref().unwrap_or("未知设备");
                safe_csv::push_line(&mut table, ["设备", name, ip, mac, "", "", "否", ""]);
            } else {
                let seen = last_seen
                    .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  {ip}\t{mac}\t{}\t最后发现 {seen}",
                    vendor.as_deref().unwrap_or("-")
                );
            }
        }
    }
    let _ = out.write_all(table.as_bytes());
    Ok(())
}

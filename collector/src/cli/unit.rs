//! `kaohe-collector unit`: add, list and profile units.

use std::io::Write;

use clap::Subcommand;

use super::{CliError, with_store};
use crate::config::CollectorConfig;
use crate::store::Unit;

#[derive(Debug, Subcommand)]
pub enum UnitAction {
    /// 添加单位 (add a unit)
    Add {
        /// 单位路径, 如 ningxia/yinchuan/xingqing (the unit's path)
        id: String,
        /// 单位名称, 如 兴庆区司法局
        #[arg(long)]
        name: String,
        /// 上级单位路径 (parent unit's path; must exist)
        #[arg(long)]
        parent: Option<String>,
        /// province | city | county | station | department
        #[arg(long, default_value = "county")]
        kind: String,
    },
    /// 列出单位 (list units)
    List,
    /// 设置单位资料: 维护人、负责人、注册日期 (set the profile scoring reads)
    Set {
        id: String,
        /// 机房专人维护 (三.1)
        #[arg(long)]
        maintainer: Option<String>,
        /// 专网故障处置负责人 (三.5)
        #[arg(long)]
        responder: Option<String>,
        /// 注册日期 YYYY-MM-DD; 评分从此日起算 (scoring counts from this day)
        #[arg(long)]
        enrolled: Option<chrono::NaiveDate>,
    },
}

impl UnitAction {
    pub(super) fn run(self, config: &CollectorConfig, out: &mut dyn Write) -> Result<(), CliError> {
        with_store(config, |store| async move {
            match self {
                UnitAction::Add { id, name, parent, kind } => {
                    let unit = Unit {
                        id: id.clone(),
                        name,
                        parent,
                        kind,
                        maintainer: None,
                        responder: None,
                        enrolled: None,
                    };
                    store.add_unit(&unit).await.map_err(CliError::Server)?;
                    let _ = writeln!(out, "已添加单位 (unit added): {id}");
                }
                UnitAction::Set {
                    id,
                    maintainer,
                    responder,
                    enrolled,
                } => {
                    let day = enrolled.map(|d| d.to_string());
                    let found = store
                        .set_unit_profile(&id, maintainer.as_deref(), responder.as_deref(), day.as_deref())
                        .await
                        .map_err(CliError::Server)?;
                    if !found {
                        return Err(CliError::NoSuchUnit(id));
                    }
                    let _ = writeln!(out, "已更新单位资料 (profile updated): {id}");
                }
                UnitAction::List => {
                    for u in store.units().await.map_err(CliError::Server)? {
                        let _ = writeln!(
                            out,
                            "{}\t{}\t{}\t{}",
                            u.id,
                            u.name,
                            u.kind,
                            u.parent.unwrap_or_default()
                        );
                    }
                }
            }
            Ok(())
        })
    }
}

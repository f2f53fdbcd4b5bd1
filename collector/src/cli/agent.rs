//! `kaohe-collector agent`: list agents with their delivery, revoke one.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{CliError, with_store};
use crate::config::CollectorConfig;

#[derive(Debug, Subcommand)]
pub enum AgentAction {
    /// 列出代理 (list agents)
    List {
        #[arg(long)]
        unit: Option<String>,
    },
    /// 吊销代理: 其凭据此后被拒绝 (revoke an agent: its credential is refused from now on)
    Revoke { id: String },
}

impl AgentAction {
    pub(super) fn run(self, config: &CollectorConfig, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        with_store(config, |store| async move {
            match self {
                AgentAction::List { unit } => {
                    for a in store.agents(unit.as_deref()).await.map_err(CliError::Server)? {
                        let state = if a.revoked_at.is_some() {
                            "已吊销 revoked"
                        } else {
                            "有效 active"
                        };
                        let d = store.delivery(&a.id).await.map_err(CliError::Server)?;
                        let range = match (d.first, d.last) {
                            (Some(f), Some(l)) => format!("{f}..{l}"),
                            _ => "-".into(),
                        };
                        let _ = writeln!(
                            out,
                            "{}\t{}\t{}\t{}\t{}\t{state}\t报告 reports {} (序号 seq {range}, 缺失 missing {})\t代理丢弃 dropped {}\t拒收 rejected {}",
                            a.id,
                            a.unit_id,
                            a.kind,
                            a.hostname,
                            a.agent_version,
                            d.reports,
                            d.missing,
                            d.dropped,
                            d.rejected
                        );
                    }
                }
                AgentAction::Revoke { id } => {
                    if !store.revoke_agent(&id, now).await.map_err(CliError::Server)? {
                        return Err(CliError::NoActiveAgent(id));
                    }
                    let _ = writeln!(out, "已吊销代理 (revoked): {id}");
                }
            }
            Ok(())
        })
    }
}

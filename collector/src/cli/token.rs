//! `kaohe-collector token create`: one-time enrolment tokens.

use std::io::Write;

use chrono::{DateTime, Utc};
use clap::Subcommand;

use super::{CliError, block_on};
use crate::config::CollectorConfig;

#[derive(Debug, Subcommand)]
pub enum TokenAction {
    /// 为单位生成一次性注册令牌 (a one-time enrolment token for a unit)
    Create {
        /// 单位路径 (the unit's path)
        #[arg(long)]
        unit: String,
        /// 有效小时数 (hours the token stays valid)
        #[arg(long, default_value_t = 72)]
        hours: u32,
        /// 泄漏监听端的令牌: 可为本单位以下各单位报告伪造源地址探测发现
        /// (a token for a leak listener, which reports findings for the units below this one)
        #[arg(long)]
        listener: bool,
    },
}

impl TokenAction {
    pub(super) fn run(self, config: &CollectorConfig, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
        let TokenAction::Create { unit, hours, listener } = self;
        block_on(async move {
            let (store, fingerprint) = crate::serve::prepare(config).await?;
            let secret = crate::ingest::random_secret();
            let expires = now + chrono::Duration::hours(i64::from(hours));
            let added = if listener {
                store.add_listener_token(&unit, &secret, expires).await
            } else {
                store.add_token(&unit, &secret, expires).await
            };
            added.map_err(CliError::Server)?;
            let token = kaohe_rubric::enrolment::Token {
                url: config.public_url(),
                ca_fingerprint: fingerprint,
                secret,
                expires: expires.timestamp(),
                unit: unit.clone(),
            };
            let _ = writeln!(out, "{}", token.encode());
            eprintln!(
                "单位 {unit} 的一次性注册令牌, 有效至 {} (one-time token). 在代理上运行: kaohe-agent enroll <令牌>",
                expires.format("%Y-%m-%d %H:%M UTC")
            );
            Ok(())
        })
    }
}

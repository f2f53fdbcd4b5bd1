//! Command-line interface: the clap root and one file per command group, each parsing its
//! arguments and calling the library. `main.rs` parses, calls [`run`], and on an error
//! calls [`CliError::report`] and exits with [`CliError::exit_code`], the one place exit
//! codes are decided (a bad command line included).

mod agent;
mod export;
mod rank;
mod registry;
mod review;
mod rubric;
mod score;
mod serve;
mod token;
mod unit;
mod user;

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde::Serialize;

use kaohe_rubric::period::Period;

use crate::config::{CollectorConfig, ConfigError};
use crate::offline::InputError;
use crate::store::{Store, StoreError};

pub use agent::AgentAction;
pub use export::ExportArgs;
pub use rank::RankArgs;
pub use registry::RegistryAction;
pub use review::ReviewAction;
pub use rubric::RubricAction;
pub use score::ScoreArgs;
pub use token::TokenAction;
pub use unit::UnitAction;
pub use user::UserAction;

#[derive(Debug, Parser)]
#[command(
    name = "kaohe-collector",
    version,
    about = "考核采集中心: 汇总代理报告, 管理备案, 自动评分 (Kaohe collector: scores units against the rubric)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// 日志格式: text (默认, 适合 journald) 或 json (每行一个 JSON 对象); 日志写到标准错误,
    /// 由 KAOHE_LOG 过滤 (log format on standard error: text, or json for log shippers;
    /// filter with KAOHE_LOG, e.g. KAOHE_LOG=debug)
    #[arg(long, value_enum, default_value = "text", global = true)]
    pub log_format: crate::logging::LogFormat,
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
    /// 启动采集中心 (仅 TLS) (run the collector; TLS only)
    Serve(ServerArgs),
    /// 管理单位 (manage units)
    Unit {
        #[command(subcommand)]
        action: UnitAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 生成代理注册令牌 (enrolment tokens)
    Token {
        #[command(subcommand)]
        action: TokenAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 导入或导出单位备案 (import or export a unit's registry)
    Registry {
        #[command(subcommand)]
        action: RegistryAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 查看或吊销代理 (list or revoke agents)
    Agent {
        #[command(subcommand)]
        action: AgentAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 管理平台用户: 添加、列出、改密码、停用 (dashboard users)
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 评审、人工改分与豁免 (reviews, overrides and waivers)
    Review {
        #[command(subcommand)]
        action: ReviewAction,
        #[command(flatten)]
        server: ServerArgs,
    },
    /// 全省排名及市、县汇总 (the ranking of units with city and county roll-ups)
    Rank(RankArgs),
    /// 导出单位评分表: CSV、Excel 或可打印的自检报告 (export a unit's sheet)
    Export(ExportArgs),
}

/// Where the collector keeps its state.
#[derive(Debug, Clone, clap::Args)]
pub struct ServerArgs {
    /// 配置文件 (collector.toml; every option has a default)
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
    /// 数据目录, 覆盖配置 (data directory: database, TLS material; overrides the config)
    #[arg(long, value_name = "DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// 监听地址, 覆盖配置 (listen address, overrides the config)
    #[arg(long, value_name = "ADDR", global = true)]
    pub listen: Option<std::net::SocketAddr>,
    /// 代理访问本采集中心的地址, 写入注册令牌 (public URL agents use; goes into tokens)
    #[arg(long, value_name = "URL", global = true)]
    pub public_url: Option<String>,
    /// 数据库地址 sqlite://… 或 postgres://… (database URL)
    #[arg(long, value_name = "URL", global = true)]
    pub database_url: Option<String>,
}

impl ServerArgs {
    /// The configuration file with the command line's overrides.
    fn config(&self) -> Result<CollectorConfig, CliError> {
        let mut c = CollectorConfig::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            c.data_dir = d.clone();
        }
        if let Some(l) = self.listen {
            c.listen = l;
        }
        if let Some(u) = &self.public_url {
            c.public_url = Some(u.clone());
        }
        if let Some(u) = &self.database_url {
            c.database_url = Some(u.clone());
        }
        Ok(c)
    }
}

/// Why a command failed. Each variant decides its exit code (sysexits.h) in
/// [`CliError::exit_code`]; the message is printed after "错误 (error):".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The command line itself: an unknown option, a missing value — or `--help` and
    /// `--version`, which clap reports this way too (exit 0).
    #[error(transparent)]
    Arguments(#[from] clap::Error),
    /// A file given on the command line could not be read, or its contents are bad.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The configuration file or its overrides.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A bad argument, or a request the data refuses (a password policy, an entry's rules).
    #[error("{0}")]
    Usage(String),
    #[error("单位 {0} 不存在 (no such unit)")]
    NoSuchUnit(String),
    /// The store refused what was asked (`StoreError::Invalid`, exit 64) or failed (69).
    #[error(transparent)]
    Store(StoreError),
    /// The store failed in a command that reports every store failure, a refusal
    /// included, as the collector's (69).
    #[error(transparent)]
    Server(StoreError),
    /// The data directory, its TLS material or the database could not be prepared.
    #[error(transparent)]
    Prepare(#[from] crate::serve::ServeError),
    #[error("无法启动运行时 (cannot start the runtime): {0}")]
    Runtime(#[source] std::io::Error),
    #[error("没有可吊销的代理 {0} (no such active agent)")]
    NoActiveAgent(String),
    /// A new password the policy refuses.
    #[error(transparent)]
    WeakPassword(Box<crate::web::auth::PasswordError>),
    /// A password could not be hashed.
    #[error(transparent)]
    Hash(Box<crate::web::auth::PasswordError>),
    /// A manual entry the rubric's rules refuse.
    #[error(transparent)]
    Entry(#[from] crate::review::EntryError),
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
}

impl CliError {
    /// The exit code: 64 for a usage or configuration error, 65 for bad data, 66 when a
    /// file cannot be read, 69 when the collector's own state fails (sysexits.h).
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Arguments(e) if !e.use_stderr() => 0,
            CliError::Arguments(_) => 64,
            CliError::Input(e) => e.exit_code(),
            CliError::Config(_)
            | CliError::Usage(_)
            | CliError::NoSuchUnit(_)
            | CliError::WeakPassword(_)
            | CliError::Entry(_) => 64,
            CliError::Store(StoreError::Invalid(_)) => 64,
            CliError::Store(_)
            | CliError::Server(_)
            | CliError::Prepare(_)
            | CliError::Runtime(_)
            | CliError::NoActiveAgent(_)
            | CliError::Hash(_)
            | CliError::Export(_) => 69,
        }
    }
}

impl CliError {
    /// Tells the user: clap's own text for the command line (help and version on standard
    /// output), else "错误 (error):" and the message on standard error.
    pub fn report(&self) {
        match self {
            CliError::Arguments(e) => {
                let _ = e.print();
            }
            e => eprintln!("错误 (error): {e}"),
        }
    }
}

impl From<StoreError> for CliError {
    fn from(e: StoreError) -> Self {
        CliError::Store(e)
    }
}

/// Runs a command, writing its output to `out`. `now` is the caller's clock.
pub fn run(cli: Cli, now: DateTime<Utc>, out: &mut dyn Write) -> Result<(), CliError> {
    match cli.command {
        Command::Rubric { action } => action.run(out),
        Command::Serve(server) => serve::run(&server, cli.log_format),
        Command::Unit { action, server } => action.run(&server.config()?, out),
        Command::Token { action, server } => action.run(&server.config()?, now, out),
        Command::Registry { action, server } => action.run(&server.config()?, now, out),
        Command::Agent { action, server } => action.run(&server.config()?, now, out),
        Command::User { action, server } => action.run(&server.config()?, now, out),
        Command::Review { action, server } => action.run(&server.config()?, now, out),
        Command::Rank(args) => args.run(now, out),
        Command::Export(args) => args.run(now, out),
        Command::Score(args) => args.run(now, out),
    }
}

/// Runs `f` on a fresh runtime with the store of `config` (its data directory prepared).
fn with_store<T, F>(config: &CollectorConfig, f: impl FnOnce(Store) -> F) -> Result<T, CliError>
where
    F: std::future::Future<Output = Result<T, CliError>>,
{
    block_on(async move {
        let (store, _) = crate::serve::prepare(config).await?;
        f(store).await
    })
}

/// The runtime every command shares (`kaohe_process`, as the agent's).
fn block_on<T>(f: impl std::future::Future<Output = Result<T, CliError>>) -> Result<T, CliError> {
    kaohe_process::block_on(f).map_err(CliError::Runtime)?
}

/// A unit's full sheet from the store as of `at`; the unit must exist.
fn stored_sheet(
    config: &CollectorConfig,
    rubric: &kaohe_rubric::Rubric,
    unit: &str,
    period: Period,
    at: DateTime<Utc>,
) -> Result<crate::scores::FullSheet, CliError> {
    with_store(config, |store| async move {
        require_unit(&store, unit).await?;
        Ok(crate::scores::unit_sheet(&store, rubric, unit, period, at).await?)
    })
}

/// Prints `value` as JSON, or as the text `text` makes of it.
fn print<T: Serialize>(out: &mut dyn Write, json: bool, value: &T, text: impl FnOnce(&T) -> String) {
    if json {
        write_json(out, value);
    } else {
        let _ = out.write_all(text(value).as_bytes());
    }
}

fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) {
    // Serialising our own plain data types cannot fail.
    if let Ok(text) = serde_json::to_string_pretty(value) {
        let _ = writeln!(out, "{text}");
    }
}

/// Writes `bytes` to `file`, saying so on `out`, or to `out` itself.
fn write_output(file: Option<PathBuf>, bytes: &[u8], out: &mut dyn Write, say: bool) -> Result<(), CliError> {
    match file {
        Some(path) => {
            std::fs::write(&path, bytes).map_err(|source| InputError::Read {
                path: path.clone(),
                source,
            })?;
            if say {
                let _ = writeln!(out, "已导出 (exported): {}", path.display());
            }
        }
        None => {
            let _ = out.write_all(bytes);
        }
    }
    Ok(())
}

/// Fails unless the unit exists.
async fn require_unit(store: &Store, unit: &str) -> Result<(), CliError> {
    match store.unit(unit).await? {
        Some(_) => Ok(()),
        None => Err(CliError::NoSuchUnit(unit.to_string())),
    }
}

/// The current assessment year in the rubric's time zone.
fn current_year(rubric: &kaohe_rubric::Rubric, now: DateTime<Utc>) -> Period {
    Period::Year {
        year: chrono::Datelike::year(&now.with_timezone(&rubric.timezone)),
    }
}

/// Who did it, for the audit log: `cli:` and the login name.
fn cli_actor() -> String {
    let who = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{who}")
}

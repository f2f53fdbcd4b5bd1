//! Command-line interface. `main.rs` parses, calls [`run`], and maps errors to exit codes.

use std::io::Write;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use clap::{Parser, Subcommand};
use serde::Serialize;

use kaohe_rubric::period::Period;
use kaohe_rubric::registry::safe_csv;

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
    Rank {
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
    },
    /// 导出单位评分表: CSV、Excel 或可打印的自检报告 (export a unit's sheet)
    Export {
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
    },
}

#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// 添加用户; 密码取自环境变量 KAOHE_PASSWORD, 否则在终端输入两次 (不回显), 非终端时读标准输入一行
    /// (add a user; password from KAOHE_PASSWORD, else asked twice on the terminal, else one line of stdin)
    Add {
        /// 登录名 (login name)
        name: String,
        /// province (省级管理员) | city (市级管理员) | unit (单位人员) | reviewer (评审人)
        #[arg(long)]
        role: String,
        /// 所属单位, city 与 unit 角色必填 (the user's unit; required for city and unit)
        #[arg(long)]
        unit: Option<String>,
        /// 显示名称, 如 张三 (shown and prefilled as reviewer)
        #[arg(long)]
        display_name: Option<String>,
    },
    /// 列出用户 (list users)
    List,
    /// 修改密码, 并结束该用户的所有会话 (set a new password; ends the user's sessions)
    Passwd { name: String },
    /// 停用用户, 并结束其会话 (disable a user and end its sessions)
    Disable { name: String },
}

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
    fn config(&self) -> Result<crate::config::CollectorConfig, InputError> {
        let mut c = crate::config::CollectorConfig::load(self.config.as_deref()).map_err(InputError::Usage)?;
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
    /// 单位备案 CSV (the unit's registry CSV); 与 --db-unit 二选一
    #[arg(long, value_name = "FILE", required_unless_present = "db_unit")]
    pub registry: Option<PathBuf>,
    /// 从采集中心数据库为该单位评分: 备案、单位资料与报告均取自数据库
    /// (score this unit from the collector's database: registry, profile and reports)
    #[arg(long, value_name = "UNIT", conflicts_with_all = ["registry", "unit", "evidence"])]
    pub db_unit: Option<String>,
    #[command(flatten)]
    pub server: ServerArgs,
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
        Command::Serve(server) => {
            let config = server.config()?;
            config.check().map_err(InputError::Usage)?;
            // In JSON mode standard output stays free of the human banner.
            let banner = cli.log_format == crate::logging::LogFormat::Text;
            block_on(async move {
                crate::serve::serve_with(
                    config,
                    async {
                        shutdown_signal().await;
                    },
                    banner,
                )
                .await
                .map_err(InputError::Server)
            })?;
        }
        Command::Unit { action, server } => {
            let config = server.config()?;
            block_on(async move {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                match action {
                    UnitAction::Add { id, name, parent, kind } => {
                        let unit = crate::store::Unit {
                            id: id.clone(),
                            name,
                            parent,
                            kind,
                            maintainer: None,
                            responder: None,
                            enrolled: None,
                        };
                        store
                            .add_unit(&unit)
                            .await
                            .map_err(|e| InputError::Server(e.to_string()))?;
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
                            .map_err(|e| InputError::Server(e.to_string()))?;
                        if !found {
                            return Err(InputError::Usage(format!("单位 {id} 不存在 (no such unit)")));
                        }
                        let _ = writeln!(out, "已更新单位资料 (profile updated): {id}");
                    }
                    UnitAction::List => {
                        for u in store.units().await.map_err(|e| InputError::Server(e.to_string()))? {
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
                Ok::<(), InputError>(())
            })?;
        }
        Command::Token {
            action: TokenAction::Create { unit, hours, listener },
            server,
        } => {
            let config = server.config()?;
            block_on(async move {
                let (store, fingerprint) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                let secret = crate::ingest::random_secret();
                let expires = now + chrono::Duration::hours(i64::from(hours));
                let added = if listener {
                    store.add_listener_token(&unit, &secret, expires).await
                } else {
                    store.add_token(&unit, &secret, expires).await
                };
                added.map_err(|e| InputError::Server(e.to_string()))?;
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
                Ok::<(), InputError>(())
            })?;
        }
        Command::Registry { action, server } => {
            let config = server.config()?;
            block_on(async move {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                match action {
                    RegistryAction::Import { unit, file } => {
                        // Bounded before it is read whole (size, rows, columns, cells).
                        let registry = crate::xlsx::read_registry_file(&file)?;
                        let n = store
                            .replace_registry(&unit, &registry)
                            .await
                            .map_err(|e| InputError::Server(e.to_string()))?;
                        let _ = writeln!(out, "已导入 {n} 条备案到单位 {unit} (imported {n} entries)");
                    }
                    RegistryAction::Unregistered { unit, days, csv } => {
                        let server = |e: crate::store::StoreError| InputError::Server(e.to_string());
                        let registry = store.registry(&unit).await.map_err(server)?;
                        let from = now - chrono::Duration::days(i64::from(days));
                        let reports = store
                            .reports(&unit, from, now + chrono::Duration::hours(1))
                            .await
                            .map_err(server)?;
                        let found = kaohe_rubric::scoring::unregistered_devices(&registry, &reports, from, now);
                        // CSV: vendor, IP and MAC come from agents, so every field is escaped
                        // as the dashboard's exports are (no formula, no forged row).
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
                            if let kaohe_rubric::scoring::Evidence::Device {
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
                    }
                    RegistryAction::Export { unit, out: file } => {
                        let registry = store
                            .registry(&unit)
                            .await
                            .map_err(|e| InputError::Server(e.to_string()))?;
                        let csv = crate::offline::registry_csv(&registry);
                        match file {
                            Some(path) => {
                                std::fs::write(&path, csv).map_err(|source| InputError::Read { path, source })?
                            }
                            None => {
                                let _ = out.write_all(csv.as_bytes());
                            }
                        }
                    }
                }
                Ok::<(), InputError>(())
            })?;
        }
        Command::Agent { action, server } => {
            let config = server.config()?;
            block_on(async move {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                match action {
                    AgentAction::List { unit } => {
                        for a in store
                            .agents(unit.as_deref())
                            .await
                            .map_err(|e| InputError::Server(e.to_string()))?
                        {
                            let state = if a.revoked_at.is_some() {
                                "已吊销 revoked"
                            } else {
                                "有效 active"
                            };
                            let d = store
                                .delivery(&a.id)
                                .await
                                .map_err(|e| InputError::Server(e.to_string()))?;
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
                        if store
                            .revoke_agent(&id, now)
                            .await
                            .map_err(|e| InputError::Server(e.to_string()))?
                        {
                            let _ = writeln!(out, "已吊销代理 (revoked): {id}");
                        } else {
                            return Err(InputError::Server(format!(
                                "没有可吊销的代理 {id} (no such active agent)"
                            )));
                        }
                    }
                }
                Ok::<(), InputError>(())
            })?;
        }
        Command::User { action, server } => {
            let config = server.config()?;
            let password = match &action {
                UserAction::Add { .. } | UserAction::Passwd { .. } => Some(read_new_password()?),
                _ => None,
            };
            block_on(async move {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                user_command(&store, action, password, now, out).await
            })?;
        }
        Command::Review { action, server } => {
            let config = server.config()?;
            block_on(async move {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                review_command(&store, &config, action, now, out).await
            })?;
        }
        Command::Rank {
            period,
            rubric,
            json,
            server,
        } => {
            let config = server.config()?;
            let rubric = offline::load_rubric(rubric.as_deref().or(config.rubric.as_deref()))?;
            let period = period.unwrap_or_else(|| current_year(&rubric, now));
            let ranking = block_on(async {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                let units = store.units().await.map_err(store_error)?;
                crate::scores::ranking(&store, &rubric, &units, period, now)
                    .await
                    .map_err(store_error)
            })?;
            if json {
                write_json(out, &ranking);
            } else {
                let _ = out.write_all(render::ranking_text(&ranking, &rubric).as_bytes());
            }
        }
        Command::Export {
            unit,
            period,
            format,
            out: file,
            rubric,
            server,
        } => {
            let config = server.config()?;
            let rubric = offline::load_rubric(rubric.as_deref().or(config.rubric.as_deref()))?;
            let period = period.unwrap_or_else(|| current_year(&rubric, now));
            if !matches!(format.as_str(), "csv" | "xlsx" | "html") {
                return Err(InputError::Usage(format!(
                    "导出格式 {format} 无法识别, 应为 csv、xlsx 或 html (unknown format)"
                )));
            }
            let sheet = block_on(async {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                if store.unit(&unit).await.map_err(store_error)?.is_none() {
                    return Err(InputError::Usage(format!("单位 {unit} 不存在 (no such unit)")));
                }
                crate::scores::unit_sheet(&store, &rubric, &unit, period, now)
                    .await
                    .map_err(store_error)
            })?;
            let bytes = match format.as_str() {
                "csv" => crate::export::sheet_csv(&sheet),
                "xlsx" => crate::export::sheet_xlsx(&sheet).map_err(InputError::Server)?,
                _ => crate::export::self_check_html(&sheet, now).into_bytes(),
            };
            match file {
                Some(path) => {
                    std::fs::write(&path, &bytes).map_err(|source| InputError::Read {
                        path: path.clone(),
                        source,
                    })?;
                    let _ = writeln!(out, "已导出 (exported): {}", path.display());
                }
                None => {
                    let _ = out.write_all(&bytes);
                }
            }
        }
        Command::Score(args) if args.db_unit.is_some() => {
            let config = args.server.config()?;
            let unit = args.db_unit.clone().unwrap_or_default();
            let rubric = offline::load_rubric(args.rubric.as_deref().or(config.rubric.as_deref()))?;
            let as_of = args.as_of.unwrap_or(now);
            let period = match args.period {
                PeriodChoice::Fixed(p) => p,
                // The assessment year so far.
                PeriodChoice::Auto => current_year(&rubric, as_of),
            };
            let sheet = block_on(async {
                let (store, _) = crate::serve::prepare(&config).await.map_err(InputError::Server)?;
                if store.unit(&unit).await.map_err(store_error)?.is_none() {
                    return Err(InputError::Usage(format!("单位 {unit} 不存在 (no such unit)")));
                }
                crate::scores::unit_sheet(&store, &rubric, &unit, period, as_of)
                    .await
                    .map_err(store_error)
            })?;
            if args.json {
                write_json(out, &sheet);
            } else {
                let _ = out.write_all(render::full_sheet_text(&sheet, &rubric).as_bytes());
            }
        }
        Command::Score(args) => {
            let req = ScoreRequest {
                rubric: args.rubric.clone(),
                registry: args.registry.clone().unwrap_or_default(),
                unit: args.unit,
                evidence: args.evidence,
                period: args.period,
                as_of: Some(args.as_of.unwrap_or(now)),
            };
            let rubric = offline::load_rubric(args.rubric.as_deref())?;
            let sheet = offline::score_files_with(&req, &rubric)?;
            if args.json {
                write_json(out, &sheet);
            } else {
                let _ = out.write_all(render::sheet_text(&sheet, &rubric).as_bytes());
            }
        }
    }
    Ok(())
}

fn block_on<T>(f: impl std::future::Future<Output = Result<T, InputError>>) -> Result<T, InputError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| InputError::Server(format!("无法启动运行时 (cannot start the runtime): {e}")))?
        .block_on(f)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

fn write_json<T: Serialize>(out: &mut dyn Write, value: &T) {
    // Serialising our own plain data types cannot fail.
    if let Ok(text) = serde_json::to_string_pretty(value) {
        let _ = writeln!(out, "{text}");
    }
}

/// A store error for the CLI: bad input exits 64, the database 69.
fn store_error(e: crate::store::StoreError) -> InputError {
    match e {
        crate::store::StoreError::Invalid(m) => InputError::Usage(m),
        other => InputError::Server(other.to_string()),
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

/// A new password: `KAOHE_PASSWORD`, else asked twice on the terminal without echo (via
/// `stty`), else one line of standard input.
fn read_new_password() -> Result<String, InputError> {
    use std::io::{BufRead, IsTerminal};
    let password = if let Ok(p) = std::env::var("KAOHE_PASSWORD") {
        p
    } else if std::io::stdin().is_terminal() {
        let first = prompt_hidden("新密码 (new password): ")?;
        let second = prompt_hidden("再次输入 (again): ")?;
        if first != second {
            return Err(InputError::Usage("两次输入的密码不一致 (the passwords differ)".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| InputError::Usage(format!("无法读取密码 (cannot read the password): {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    crate::web::auth::check_new_password(&password).map_err(InputError::Usage)?;
    Ok(password)
}

fn prompt_hidden(prompt: &str) -> Result<String, InputError> {
    use std::io::BufRead;
    eprint!("{prompt}");
    let stty = |arg: &str| {
        std::process::Command::new("stty")
            .arg(arg)
            .stdin(std::process::Stdio::inherit())
            .status()
            .is_ok_and(|s| s.success())
    };
    let hidden = stty("-echo");
    let mut line = String::new();
    let read = std::io::stdin().lock().read_line(&mut line);
    if hidden {
        stty("echo");
    }
    eprintln!();
    read.map_err(|e| InputError::Usage(format!("无法读取密码 (cannot read the password): {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_string())
}

async fn user_command(
    store: &crate::store::Store,
    action: UserAction,
    password: Option<String>,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    use crate::web::auth::{Role, hash_password};
    let hashed = |p: Option<String>| -> Result<String, InputError> {
        hash_password(&p.unwrap_or_default()).map_err(InputError::Server)
    };
    match action {
        UserAction::Add {
            name,
            role,
            unit,
            display_name,
        } => {
            let role = Role::parse(role.trim()).ok_or_else(|| {
                InputError::Usage(format!(
                    "角色 {role} 无法识别, 应为 province (省级管理员)、city (市级管理员)、unit (单位人员) 或 reviewer (评审人) (unknown role)"
                ))
            })?;
            let hash = hashed(password)?;
            store
                .add_user(&name, &hash, role, unit.as_deref(), display_name.as_deref(), now)
                .await
                .map_err(store_error)?;
            let detail = serde_json::json!({ "user": name, "role": role.as_str(), "unit": unit }).to_string();
            store
                .audit(now, &cli_actor(), "user.add", unit.as_deref(), &detail)
                .await
                .map_err(store_error)?;
            let _ = writeln!(
                out,
                "已添加用户 (user added): {name} ({} {})",
                role.label_zh(),
                role.as_str()
            );
        }
        UserAction::List => {
            let users = store.users().await.map_err(store_error)?;
            if users.is_empty() {
                let _ = writeln!(out, "尚无用户; 用 user add 添加第一个省级管理员 (no users yet)");
            }
            for u in users {
                let state = if u.disabled_at.is_some() {
                    "已停用 disabled"
                } else {
                    "有效 active"
                };
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{state}",
                    u.name,
                    u.role.as_str(),
                    u.unit_id.as_deref().unwrap_or("-"),
                    u.display_name.as_deref().unwrap_or("-")
                );
            }
        }
        UserAction::Passwd { name } => {
            let hash = hashed(password)?;
            if !store.set_password(&name, &hash).await.map_err(store_error)? {
                return Err(InputError::Usage(format!("用户 {name} 不存在 (no such user)")));
            }
            let detail = serde_json::json!({ "user": name }).to_string();
            store
                .audit(now, &cli_actor(), "user.passwd", None, &detail)
                .await
                .map_err(store_error)?;
            let _ = writeln!(
                out,
                "已修改密码, 该用户需重新登录 (password set; sessions ended): {name}"
            );
        }
        UserAction::Disable { name } => {
            if !store.disable_user(&name, now).await.map_err(store_error)? {
                return Err(InputError::Usage(format!(
                    "没有可停用的用户 {name} (no such active user)"
                )));
            }
            let detail = serde_json::json!({ "user": name }).to_string();
            store
                .audit(now, &cli_actor(), "user.disable", None, &detail)
                .await
                .map_err(store_error)?;
            let _ = writeln!(out, "已停用用户 (user disabled): {name}");
        }
    }
    Ok(())
}

async fn review_command(
    store: &crate::store::Store,
    config: &crate::config::CollectorConfig,
    action: ReviewAction,
    now: DateTime<Utc>,
    out: &mut dyn Write,
) -> Result<(), InputError> {
    use crate::review::{EntryKind, NewEntry};
    match action {
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
                InputError::Usage(format!(
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
                expires_at: expires.map(|d| crate::web::expiry_from_date(d, rubric.timezone)),
            };
            crate::review::validate(&rubric, &entry, now).map_err(InputError::Usage)?;
            if store.unit(&unit).await.map_err(store_error)?.is_none() {
                return Err(InputError::Usage(format!("单位 {unit} 不存在 (no such unit)")));
            }
            let id = store
                .add_entry(&entry, &cli_actor(), crate::web::auth::Role::Province, now)
                .await
                .map_err(store_error)?;
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
            let entries = store
                .entries(&unit, &crate::scores::entry_periods(&period))
                .await
                .map_err(store_error)?;
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
            if !store
                .withdraw_entry(&id, &cli_actor(), now)
                .await
                .map_err(store_error)?
            {
                return Err(InputError::Usage(format!("没有可撤回的记录 {id} (no such live entry)")));
            }
            let _ = writeln!(out, "已撤回 (withdrawn): {id}");
        }
    }
    Ok(())
}

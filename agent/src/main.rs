use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kaohe_agent::config::Config;
use kaohe_agent::cycle;

/// Default config file.
const DEFAULT_CONFIG: &str = "/etc/kaohe/agent.toml";

#[derive(Debug, Parser)]
#[command(
    name = "kaohe-agent",
    version,
    about = "考核代理: 探测司法行政专网连通性、隔离与串联, 清点局域网设备 (Kaohe agent)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// 以守护进程运行: 按计划检测, 报告写入本地队列并发送到采集中心; SIGTERM 时干净退出
    /// (run as a daemon; clean shutdown on SIGTERM)
    Run {
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
    /// 运行一轮全部检测并输出报告, 不需要采集中心 (one full cycle of every check; prints the report)
    Once {
        /// 配置文件 (config file)
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// 将报告 JSON 写入文件而不是标准输出 (write the report JSON here instead of stdout)
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// 用采集中心发放的一次性令牌注册本代理 (enrol with a one-time token from the collector)
    Enroll {
        /// kaohe-collector token create 输出的令牌 (the token printed by `kaohe-collector token create`)
        token: String,
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
    /// 无代理泄漏检测: 清点局域网后向每台在线主机发送伪造源地址探测与转发探测, 输出发现的
    /// 跨网主机 (agentless leak detection: probe every live LAN host once and print findings)
    Leak {
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// 只清点并列出将发送的每个探测帧, 不发送 (sweep, then list every probe frame without sending it)
        #[arg(long)]
        dry_run: bool,
    },
    /// 泄漏监听端 (部署在互联网侧): 接收代理伪造源地址探测的应答, 验证签名后报告跨网主机
    /// (the internet-side leak listener: verifies answers to spoofed-source probes, reports them)
    Listen {
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
    /// 查看本代理的注册与报告队列状态: 序号、待发送、已丢弃与被拒收的报告
    /// (show the enrolment and the report spool: sequence, waiting, dropped and refused reports)
    Status {
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
        /// 状态目录, 覆盖配置 (the state directory, instead of the config's)
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// 以 JSON 输出 (print JSON)
        #[arg(long)]
        json: bool,
    },
    /// 检查配置文件并说明将检测什么 (validate the config and say what it will check)
    CheckConfig {
        #[arg(long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
        config: PathBuf,
    },
}

/// Why a command failed; [`Failure::exit_code`] is the one place exit codes are decided.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("无法读取配置文件 {} (cannot read config): {source}", path.display())]
    ReadConfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Config(#[from] kaohe_agent::config::ConfigError),
    /// The built-in default config is broken: a defect, not the user's.
    #[error("{0}")]
    DefaultConfig(#[source] kaohe_agent::config::ConfigError),
    #[error("{0}")]
    Token(#[from] kaohe_rubric::enrolment::TokenError),
    #[error("无法启动运行时 (cannot start the runtime): {0}")]
    Runtime(#[source] std::io::Error),
    #[error("注册失败 (enrolment failed): {0}")]
    Enroll(#[from] kaohe_agent::enroll::EnrollError),
    #[error("{0}")]
    Leak(#[from] LeakOnceError),
    #[error("{0}")]
    Json(#[source] serde_json::Error),
    #[error("无法写入 {} (cannot write): {source}", path.display())]
    WriteOut {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Status(#[from] kaohe_agent::spool::SpoolError),
    #[error("{0}")]
    Daemon(#[from] kaohe_agent::daemon::DaemonError),
}

impl Failure {
    /// sysexits(3): 64 usage or config, 66 no input, 69 unavailable, 70 software,
    /// 73 cannot create output, 74 I/O.
    fn exit_code(&self) -> u8 {
        match self {
            Failure::Config(_) | Failure::Token(_) => 64,
            Failure::ReadConfig { .. } => 66,
            Failure::Enroll(_) | Failure::Leak(_) => 69,
            Failure::DefaultConfig(_) | Failure::Runtime(_) | Failure::Json(_) => 70,
            Failure::WriteOut { .. } => 73,
            Failure::Status(_) | Failure::Daemon(_) => 74,
        }
    }
}

/// Why `kaohe-agent leak` could not run its round.
#[derive(Debug, thiserror::Error)]
enum LeakOnceError {
    #[error("配置中没有 [leak] 段, 未启用泄漏检测 (no [leak] section in the config)")]
    NoLeakSection,
    #[error("泄漏检测只探测清点到的主机, 需要 [inventory] prefixes (leak probes go only to hosts the inventory found)")]
    NoInventory,
    #[error("{0}")]
    Sweep(#[from] kaohe_agent::inventory::InventoryError),
    #[error("{0}")]
    Round(#[from] kaohe_agent::leak::LeakError),
    #[error("{0}")]
    Json(#[from] serde_json::Error),
}

fn load(path: &PathBuf) -> Result<Config, Failure> {
    let text = std::fs::read_to_string(path).map_err(|source| Failure::ReadConfig {
        path: path.clone(),
        source,
    })?;
    Ok(Config::from_toml(&text, &path.display().to_string())?)
}

/// The runtime every Kaohe binary runs on (`kaohe_process`, shared with the collector).
fn runtime() -> Result<tokio::runtime::Runtime, Failure> {
    kaohe_process::runtime().map_err(Failure::Runtime)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(64)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("KAOHE_LOG").unwrap_or_else(|_| "warn".into()))
        .init();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("错误 (error): {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Listen { config } => daemon(&config, |c, rx| Box::pin(kaohe_agent::daemon::listen(c, rx))),
        Command::Run { config } => daemon(&config, |c, rx| Box::pin(kaohe_agent::daemon::run(c, rx))),
        Command::Enroll { token, config } => enroll(&token, &config),
        Command::Leak { config, dry_run } => leak_once(&load(&config)?, dry_run),
        Command::Status {
            config,
            state_dir,
            json,
        } => {
            let state_dir = match state_dir {
                Some(d) => d,
                None if config.exists() => load(&config)?.state_dir,
                None => PathBuf::from(kaohe_agent::config::DEFAULT_STATE_DIR),
            };
            status(&state_dir, json)
        }
        Command::CheckConfig { config } => {
            let c = load(&config)?;
            println!("配置有效 (config is valid): {}", config.display());
            println!("{}", kaohe_agent::config::describe_zh(&c));
            Ok(())
        }
        Command::Once { config, out } => once(&load(&config)?, out),
    }
}

/// `kaohe-agent enroll`.
fn enroll(token: &str, config: &PathBuf) -> Result<(), Failure> {
    let token = kaohe_rubric::enrolment::Token::decode(token)?;
    // A missing config file is fine here: enrolment needs only the state directory.
    let c = if config.exists() {
        load(config)?
    } else {
        Config::from_toml("", "(default)").map_err(Failure::DefaultConfig)?
    };
    let now = chrono::Utc::now().timestamp();
    let e = runtime()?.block_on(kaohe_agent::enroll::enroll(&token, &c.state_dir, now))?;
    println!(
        "注册成功 (enrolled): 单位 {} 代理 {}; 采集中心 {}; 凭据已保存在 {}",
        e.unit_id,
        e.agent_id,
        e.collector_url,
        c.state_dir.display()
    );
    Ok(())
}

/// `kaohe-agent once`.
fn once(c: &Config, out: Option<PathBuf>) -> Result<(), Failure> {
    let report = runtime()?.block_on(cycle::once(c, chrono::Utc::now(), 0));
    eprintln!("{}", cycle::summary_zh(c, &report));
    let json = serde_json::to_string_pretty(&report).map_err(Failure::Json)?;
    match out {
        Some(path) => std::fs::write(&path, json + "\n").map_err(|source| Failure::WriteOut { path, source }),
        None => {
            println!("{json}");
            Ok(())
        }
    }
}

/// `kaohe-agent status`: the enrolment and the spool, read without disturbing a running agent.
fn status(state_dir: &std::path::Path, json: bool) -> Result<(), Failure> {
    let enrolment = kaohe_agent::enroll::Enrollment::load(state_dir);
    let spool = kaohe_agent::spool::peek(&state_dir.join("spool"))?;
    if json {
        let v = serde_json::json!({ "state_dir": state_dir, "enrollment": enrolment, "spool": spool });
        println!("{v}");
        return Ok(());
    }
    println!("状态目录 (state directory): {}", state_dir.display());
    match &enrolment {
        Some(e) => println!(
            "已注册 (enrolled): 单位 {} 代理 {} 采集中心 {}",
            e.unit_id, e.agent_id, e.collector_url
        ),
        None => println!("未注册 (not enrolled): 运行 kaohe-agent enroll <令牌>"),
    }
    match spool {
        Some(p) => {
            println!("最近报告序号 (last sequence): {}", p.sequence);
            println!(
                "待发送 (waiting): {} 份, {} KiB",
                p.waiting,
                p.waiting_bytes.div_ceil(1024)
            );
            println!("已丢弃 (dropped, 磁盘满或队列满): {}", p.dropped);
            println!(
                "被采集中心拒收 (refused by the collector): {} (保留 {} 份于 spool/rejected/)",
                p.rejected, p.rejected_kept
            );
        }
        None => println!("报告队列尚未建立 (no spool yet: the agent has not run)"),
    }
    Ok(())
}

/// `kaohe-agent leak`: sweep the inventory prefixes, then probe (or list) every live host.
fn leak_once(c: &Config, dry_run: bool) -> Result<(), Failure> {
    if c.leak.is_none() {
        return Err(LeakOnceError::NoLeakSection.into());
    }
    if c.inventory_prefixes.is_empty() {
        return Err(LeakOnceError::NoInventory.into());
    }
    let mut found = kaohe_agent::inventory::Found::default();
    for prefix in &c.inventory_prefixes {
        kaohe_agent::inventory::sweep(
            prefix,
            c.inventory_interface.as_deref(),
            c.inventory_max_pps,
            &mut found,
        )
        .map_err(LeakOnceError::from)?;
    }
    let mut round = kaohe_agent::leak::detect(c, &found, dry_run);
    if !round.errors.is_empty() {
        return Err(LeakOnceError::from(round.errors.swap_remove(0)).into());
    }
    let hosts: std::collections::BTreeSet<_> = round.planned.iter().map(|p| p.host).collect();
    eprintln!(
        "{} 台主机, {} 个探测帧{} (hosts, probe frames)",
        hosts.len(),
        round.planned.len(),
        if dry_run { ", 未发送 (dry run: not sent)" } else { "" }
    );
    if dry_run {
        for p in &round.planned {
            println!("{}", p.describe());
        }
        return Ok(());
    }
    if round.findings.is_empty() {
        eprintln!("未发现经转发通往互联网的主机 (no host found forwarding to the internet)");
    }
    for f in &round.findings {
        eprintln!(
            "发现跨网主机 (bridging host) {} {}: {}",
            f.ip,
            f.mac.as_deref().unwrap_or(""),
            f.detail
        );
    }
    let json = serde_json::to_string_pretty(&round.findings).map_err(LeakOnceError::from)?;
    println!("{json}");
    Ok(())
}

type Daemon = std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), kaohe_agent::daemon::DaemonError>>>>;

/// Runs a daemon mode (`run`, `listen`) until SIGTERM or Ctrl-C.
fn daemon(
    config: &PathBuf,
    mode: impl FnOnce(Config, tokio::sync::watch::Receiver<bool>) -> Daemon,
) -> Result<(), Failure> {
    let c = load(config)?;
    runtime()?.block_on(async move {
        let (tx, rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            kaohe_process::stop_signal().await;
            tracing::info!("shutting down");
            let _ = tx.send(true);
        });
        mode(c, rx).await
    })?;
    Ok(())
}

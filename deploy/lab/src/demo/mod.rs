//! `kaohe-lab demo` (`deploy/demo`): the whole chain in the lab, for people.
//!
//! Builds the lab under its own prefix, starts the real collector (SQLite) in the lab's
//! collector namespace, adds the province → city → bureau hierarchy, imports each
//! bureau's registry, creates a province administrator and a unit-staff user with
//! random passwords, enrols one agent per bureau with a one-time token and runs it on
//! a quickened schedule. The dashboard is forwarded from a loopback port of the machine
//! (`127.0.0.1:8443`) to the collector over the lab's one root link. After the wait it
//! prints the province ranking (`kaohe-collector rank`) and each bureau's deductions
//! (`kaohe-collector score --db-unit`), then keeps running until Ctrl-C.
//!
//! Teardown on every way out (done, error, panic, Ctrl-C, SIGTERM, SIGHUP): the agents
//! and the collector are stopped, the lab's namespaces, root link and state removed.
//! Children run in their own process group, so that a Ctrl-C reaches only the demo,
//! which then tears down in order.

mod process;
mod steps;
mod text;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use process::{binaries, bind_port, forward, watch_signals};
use steps::Demo;
use text::mmss;

use crate::{LabError, check_prefix, is_root, leftovers};

/// How the demo failed; `kaohe-lab` turns it into the exit code (see [`crate::cli`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DemoFailure {
    /// Bad options.
    Usage,
    /// A service (the collector, an agent, a port, a command) failed.
    Unavailable,
    /// A bug or the machine (files, randomness, the runtime).
    Internal,
    /// Not root.
    NotRoot,
    /// SIGINT, SIGTERM or SIGHUP before the table.
    Interrupted,
}

pub const USAGE: &str = "\
用法 (usage): kaohe-lab demo [选项]   (deploy/demo 先构建再运行它; 需要 root)

  搭建实验网络, 启动采集中心 (SQLite) 与每个司法局一个代理 (加快的日程),
  数分钟后打印全省评分表与管理平台地址和登录; Ctrl-C 结束并清理一切。
  (builds the lab, runs the collector and one agent per bureau, prints the score
  table and the dashboard login; Ctrl-C tears everything down)

  --minutes N          等待 N 分钟后打印评分表 (wait before the table; default 3)
  --seconds N          同上, 以秒计, 优先于 --minutes (the same in seconds; for tests)
  --port N             管理平台在本机 127.0.0.1 上的端口 (dashboard port on loopback;
                       default 8443; 0 = any free port)
  --prefix P           实验网络命名空间前缀 (namespace prefix; default kd)
  --no-flap            三区上行链路不闪断 (bureau 3's uplink does not flap)
  --exit-after-table   打印评分表后即清理退出 (tear down right after the table)
  -h, --help           本说明 (this text)";

/// `kaohe-lab demo`'s options (the help is [`USAGE`]).
#[derive(Debug, Clone, clap::Args)]
#[command(override_help = USAGE)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 3.0)]
    minutes: f64,
    #[arg(long)]
    seconds: Option<f64>,
    #[arg(long, default_value_t = 8443)]
    port: u16,
    #[arg(long, default_value = "kd")]
    prefix: String,
    #[arg(long)]
    no_flap: bool,
    #[arg(long)]
    exit_after_table: bool,
}

/// What went wrong, said in Chinese first, and how.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct DemoError {
    kind: DemoFailure,
    message: String,
}

impl DemoError {
    fn new(kind: DemoFailure, message: impl Into<String>) -> DemoError {
        DemoError {
            kind,
            message: message.into(),
        }
    }

    pub fn kind(&self) -> DemoFailure {
        self.kind
    }
}

impl From<LabError> for DemoError {
    fn from(e: LabError) -> DemoError {
        match e {
            LabError::NotRoot => not_root(),
            other => DemoError::new(DemoFailure::Internal, format!("实验网络出错 (lab error): {other}")),
        }
    }
}

fn not_root() -> DemoError {
    DemoError::new(
        DemoFailure::NotRoot,
        "演示需要 root 权限: 它用网络命名空间 (ip netns)、veth 和网桥搭建一个小省份的实验网络。\
         请运行 deploy/demo\n\
         (the demo needs root: it builds network namespaces, veths and bridges; run deploy/demo)",
    )
}

fn interrupted() -> DemoError {
    DemoError::new(DemoFailure::Interrupted, "已中断 (interrupted)")
}

#[derive(Debug, Clone)]
struct DemoOptions {
    prefix: String,
    port: u16,
    wait: Duration,
    exit_after_table: bool,
    flap: bool,
}

/// Checks what clap cannot: the wait's range and the prefix.
fn options(args: &DemoArgs) -> Result<DemoOptions, DemoError> {
    let usage = |e: String| DemoError::new(DemoFailure::Usage, format!("{e}\n\n{USAGE}"));
    let secs = args.seconds.unwrap_or(args.minutes * 60.0);
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(usage(format!(
            "等待时间须在 0 到 7 天之间 (the wait must be 0 s to 7 days): {secs}"
        )));
    }
    check_prefix(&args.prefix).map_err(|e| usage(e.to_string()))?;
    Ok(DemoOptions {
        prefix: args.prefix.clone(),
        port: args.port,
        wait: Duration::from_secs_f64(secs),
        exit_after_table: args.exit_after_table,
        flap: !args.no_flap,
    })
}

/// Runs `kaohe-lab demo`; on failure it has said what went wrong (and whether anything
/// was left over).
pub fn main(args: &DemoArgs) -> Result<(), DemoError> {
    let opts = match options(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("kaohe-lab demo: {e}");
            return Err(e);
        }
    };
    match run(&opts) {
        Ok(()) => Ok(()),
        Err(e) => {
            // The lab and the services are gone by now (dropped on the way out of `run`).
            if e.kind == DemoFailure::Interrupted {
                eprintln!("已中断 (interrupted)");
            } else {
                eprintln!("\n错误 (error): {e}");
            }
            match leftovers(&opts.prefix) {
                Ok(left) if left.is_empty() => eprintln!("已清理, 无残留 (torn down: nothing left)"),
                Ok(left) => eprintln!(
                    "仍有残留 (left over): {}; 运行 deploy/lab/lab --prefix {} down",
                    left.join(", "),
                    opts.prefix
                ),
                Err(e) => eprintln!("无法检查残留 (cannot check for leftovers): {e}"),
            }
            Err(e)
        }
    }
}

fn run(opts: &DemoOptions) -> Result<(), DemoError> {
    let started = Instant::now();
    if !is_root() {
        return Err(not_root());
    }
    let bins = binaries()?;
    check_ip_command()?;
    // The port first: if it is taken, say so before building anything.
    let listener = bind_port(opts.port)?;
    let port = listener
        .local_addr()
        .map_err(|e| DemoError::new(DemoFailure::Internal, format!("{e}")))?
        .port();
    let rt = kaohe_process::runtime().map_err(|e| DemoError::new(DemoFailure::Internal, format!("tokio: {e}")))?;
    let stop = watch_signals(&rt)?;

    let mut demo = Demo::up(opts, bins, stop)?;
    let logins = demo.add_units_and_users()?;
    let upstream = demo.start_collector()?;
    let fingerprint =
        kaohe_collector::tls::ca_fingerprint(&kaohe_collector::tls::TlsFiles::in_dir(&demo.data.join("tls")))
            .map_err(|e| DemoError::new(DemoFailure::Internal, format!("CA 指纹 (fingerprint): {e}")))?;
    let coll_ns = demo.lab.namespace(&demo.desc.hosts[demo.desc.collector.host].name)?;
    println!(
        "   {} (命名空间 {coll_ns}); 数据 {}",
        demo.desc.collector_url(),
        demo.data.display()
    );
    demo.start_agents()?;

    // 4. The dashboard, from this machine.
    forward(listener, upstream);
    let url = format!("https://127.0.0.1:{port}/");
    demo.print_logins(&url, &logins, &fingerprint);
    demo.wait_for_reports(&rt, opts)?;
    demo.print_table()?;
    println!();
    println!(
        "用时 (wall time) {}; 管理平台 (dashboard): {url}  用户 admin  密码 {}",
        mmss(started.elapsed()),
        logins.admin_pw
    );
    // 7. Keep running until Ctrl-C, unless told otherwise.
    if !opts.exit_after_table {
        demo.keep_running(&rt)?;
    }
    demo.finish()
}

fn check_ip_command() -> Result<(), DemoError> {
    let works = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        Ok(())
    } else {
        Err(DemoError::new(
            DemoFailure::Unavailable,
            "找不到 ip 命令: 请安装 iproute2 (apt-get install iproute2) (the `ip` command is missing: install iproute2)",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `kaohe-lab demo ARGS` as the command line parses it: None for `--help`.
    fn parse(args: &[String]) -> Result<Option<DemoOptions>, DemoError> {
        #[derive(Debug, clap::Parser)]
        struct Demo {
            #[command(flatten)]
            args: DemoArgs,
        }
        let argv = std::iter::once("demo".to_string()).chain(args.iter().cloned());
        match <Demo as clap::Parser>::try_parse_from(argv) {
            Ok(d) => options(&d.args).map(Some),
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => Ok(None),
            Err(e) => Err(DemoError::new(DemoFailure::Usage, e.to_string())),
        }
    }

    #[test]
    fn options_have_defaults_and_reject_the_unknown() {
        let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let o = parse(&args("")).expect("ok").expect("opts");
        assert_eq!(
            (o.port, o.wait, o.prefix.as_str()),
            (8443, Duration::from_secs(180), "kd")
        );
        let o = parse(&args("--seconds 20 --port 0 --exit-after-table"))
            .expect("ok")
            .expect("opts");
        assert_eq!((o.port, o.wait, o.exit_after_table), (0, Duration::from_secs(20), true));
        assert!(parse(&args("--bogus")).is_err());
        assert!(parse(&args("--port 70000")).is_err());
        assert!(parse(&args("--help")).expect("ok").is_none());
    }
}

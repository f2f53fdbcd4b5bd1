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

use std::fmt;
use std::fs;
use std::io::{self, Read as _};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use kaohe_tests::lab::cli::ArgList;
use kaohe_tests::lab::{self, FlapMode, Lab, LabError, Options, sys};

/// Exit codes: 0 done (or Ctrl-C after the table), 64 usage, 69 a service failed,
/// 70 internal, 77 not root, 130 interrupted before the table.
const EX_USAGE: i32 = 64;
const EX_UNAVAILABLE: i32 = 69;
const EX_SOFTWARE: i32 = 70;
const EX_NOPERM: i32 = 77;
const EX_INTERRUPTED: i32 = 130;

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

/// What went wrong, said in Chinese first, and the exit code.
#[derive(Debug)]
struct DemoError {
    code: i32,
    message: String,
}

impl DemoError {
    fn new(code: i32, message: impl Into<String>) -> DemoError {
        DemoError {
            code,
            message: message.into(),
        }
    }
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<LabError> for DemoError {
    fn from(e: LabError) -> DemoError {
        match e {
            LabError::NotRoot => not_root(),
            other => DemoError::new(EX_SOFTWARE, format!("实验网络出错 (lab error): {other}")),
        }
    }
}

fn not_root() -> DemoError {
    DemoError::new(
        EX_NOPERM,
        "演示需要 root 权限: 它用网络命名空间 (ip netns)、veth 和网桥搭建一个小省份的实验网络。\
         请运行 deploy/demo\n\
         (the demo needs root: it builds network namespaces, veths and bridges; run deploy/demo)",
    )
}

fn interrupted() -> DemoError {
    DemoError::new(EX_INTERRUPTED, "已中断 (interrupted)")
}

#[derive(Debug, Clone)]
struct DemoOptions {
    prefix: String,
    port: u16,
    wait: Duration,
    exit_after_table: bool,
    flap: bool,
}

fn parse(args: &[String]) -> Result<Option<DemoOptions>, DemoError> {
    let switches = ["--exit-after-table", "--no-flap", "--help"];
    if args.iter().any(|a| a == "-h" || a == "--help" || a == "help") {
        return Ok(None);
    }
    let known = [
        "--minutes",
        "--seconds",
        "--port",
        "--prefix",
        "--exit-after-table",
        "--no-flap",
    ];
    let unknown: Vec<&str> = args
        .iter()
        .filter(|x| x.starts_with("--"))
        .map(|x| x.split('=').next().unwrap_or(x))
        .filter(|x| !known.contains(x))
        .collect();
    if !unknown.is_empty() {
        return Err(DemoError::new(
            EX_USAGE,
            format!("未知选项 (unknown option): {}\n\n{USAGE}", unknown.join(" ")),
        ));
    }
    let a = ArgList::parse(args, &switches).map_err(|e| DemoError::new(EX_USAGE, format!("{e}\n\n{USAGE}")))?;
    if !a.positionals().is_empty() {
        return Err(DemoError::new(
            EX_USAGE,
            format!(
                "多余的参数 (unexpected argument): {}\n\n{USAGE}",
                a.positionals().join(" ")
            ),
        ));
    }
    let usage = |e: String| DemoError::new(EX_USAGE, format!("{e}\n\n{USAGE}"));
    let minutes: f64 = a.number("--minutes").map_err(usage)?.unwrap_or(3.0);
    let seconds: Option<f64> = a.number("--seconds").map_err(usage)?;
    let secs = seconds.unwrap_or(minutes * 60.0);
    if !(secs.is_finite() && (0.0..=7.0 * 86_400.0).contains(&secs)) {
        return Err(usage(format!(
            "等待时间须在 0 到 7 天之间 (the wait must be 0 s to 7 days): {secs}"
        )));
    }
    let port: u16 = a.number("--port").map_err(usage)?.unwrap_or(8443);
    let prefix = a.value("--prefix").unwrap_or("kd").to_string();
    lab::check_prefix(&prefix).map_err(usage)?;
    Ok(Some(DemoOptions {
        prefix,
        port,
        wait: Duration::from_secs_f64(secs),
        exit_after_table: a.switch("--exit-after-table"),
        flap: !a.switch("--no-flap"),
    }))
}

/// Runs `kaohe-lab demo ARGS`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let opts = match parse(args) {
        Ok(Some(o)) => o,
        Ok(None) => {
            println!("{USAGE}");
            return 0;
        }
        Err(e) => {
            eprintln!("kaohe-lab demo: {e}");
            return e.code;
        }
    };
    match run(&opts) {
        Ok(code) => code,
        Err(e) => {
            // The lab and the services are gone by now (dropped on the way out of `run`).
            if e.code == EX_INTERRUPTED {
                eprintln!("已中断 (interrupted)");
            } else {
                eprintln!("\n错误 (error): {e}");
            }
            match lab::leftovers(&opts.prefix) {
                Ok(left) if left.is_empty() => eprintln!("已清理, 无残留 (torn down: nothing left)"),
                Ok(left) => eprintln!(
                    "仍有残留 (left over): {}; 运行 deploy/lab/lab --prefix {} down",
                    left.join(", "),
                    opts.prefix
                ),
                Err(e) => eprintln!("无法检查残留 (cannot check for leftovers): {e}"),
            }
            e.code
        }
    }
}

// ------------------------------------------------------------------ signals

/// Set once SIGINT, SIGTERM or SIGHUP arrived. Watched by a tokio task on its own worker
/// thread, so the demo's plain blocking code only has to look at the flag.
#[derive(Debug, Clone)]
struct Stop(Arc<AtomicBool>);

impl Stop {
    fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    fn check(&self) -> Result<(), DemoError> {
        if self.requested() { Err(interrupted()) } else { Ok(()) }
    }

    /// Sleeps up to `d`; false when a stop was requested meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        let end = Instant::now() + d;
        while Instant::now() < end {
            if self.requested() {
                return false;
            }
            thread::sleep((end - Instant::now()).min(Duration::from_millis(100)));
        }
        !self.requested()
    }
}

fn watch_signals(rt: &tokio::runtime::Runtime) -> Result<Stop, DemoError> {
    use tokio::signal::unix::{SignalKind, signal};
    let flag = Arc::new(AtomicBool::new(false));
    let kinds = [SignalKind::interrupt(), SignalKind::terminate(), SignalKind::hangup()];
    let mut streams = Vec::new();
    rt.block_on(async {
        for k in kinds {
            streams.push(signal(k)?);
        }
        Ok::<_, io::Error>(())
    })
    .map_err(|e| DemoError::new(EX_SOFTWARE, format!("无法处理信号 (cannot handle signals): {e}")))?;
    for mut s in streams {
        let flag = flag.clone();
        rt.spawn(async move {
            while s.recv().await.is_some() {
                if !flag.swap(true, Ordering::SeqCst) {
                    eprintln!("\n收到中断信号, 正在清理… (stopping: tearing everything down)");
                }
            }
        });
    }
    Ok(Stop(flag))
}

// ------------------------------------------------------------------ processes

/// The demo's services. Declared after the lab, so dropped before it: agents, then the
/// collector, get SIGTERM (then SIGKILL), and the demo's files are removed; then the
/// lab's own Drop tears it down.
#[derive(Debug)]
struct Running {
    agents: Vec<Child>,
    collector: Option<Child>,
    /// STATE/demo: the collector's data and config, the agents' configs.
    dir: PathBuf,
}

impl Running {
    fn stop(&mut self) {
        let pids: Vec<u32> = self.agents.iter().map(Child::id).collect();
        sys::kill_pids(&pids, Duration::from_secs(3));
        for c in &mut self.agents {
            let _ = c.wait();
        }
        self.agents.clear();
        if let Some(mut c) = self.collector.take() {
            sys::kill_pids(&[c.id()], Duration::from_secs(5));
            let _ = c.wait();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Stops the services and removes the lab; returns what was left over (nothing, we hope).
fn teardown(mut running: Running, lab: Lab) -> Result<Vec<String>, DemoError> {
    running.stop();
    let prefix = lab.prefix().to_string();
    lab.down()?;
    Ok(lab::leftovers(&prefix)?)
}

/// `DIR/kaohe-collector` and `DIR/kaohe-agent` beside this binary.
#[derive(Debug, Clone)]
struct Binaries {
    collector: PathBuf,
    agent: PathBuf,
    helper: PathBuf,
}

fn binaries() -> Result<Binaries, DemoError> {
    let helper = std::env::current_exe().map_err(|e| {
        DemoError::new(
            EX_SOFTWARE,
            format!("找不到 kaohe-lab 自身 (cannot find own binary): {e}"),
        )
    })?;
    let dir = helper.parent().unwrap_or(Path::new(".")).to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let build = format!(
        "cargo build{} -p kaohe-collector -p kaohe-agent -p kaohe-tests",
        if release { " --release" } else { "" }
    );
    let find = |name: &str| {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(DemoError::new(
                EX_UNAVAILABLE,
                format!(
                    "找不到 {name} ({} 中没有): 请先运行 `{build}`, 或直接用 deploy/demo (它会构建)\n\
                     ({name} is missing from {}: run `{build}` first, or use deploy/demo, which builds)",
                    dir.display(),
                    dir.display()
                ),
            ))
        }
    };
    Ok(Binaries {
        collector: find("kaohe-collector")?,
        agent: find("kaohe-agent")?,
        helper,
    })
}

/// Runs a collector CLI command with the demo's config; its stdout, or the error it gave.
fn collector_cli(bins: &Binaries, config: &Path, args: &[&str], env: &[(&str, &str)]) -> Result<String, DemoError> {
    let mut cmd = Command::new(&bins.collector);
    // Its own process group: a Ctrl-C reaches only the demo, which then stops in order.
    cmd.args(args)
        .arg("--config")
        .arg(config)
        .stdin(Stdio::null())
        .process_group(0);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().map_err(|e| {
        DemoError::new(
            EX_UNAVAILABLE,
            format!("无法运行 (cannot run) {}: {e}", bins.collector.display()),
        )
    })?;
    if !out.status.success() {
        return Err(DemoError::new(
            EX_UNAVAILABLE,
            format!(
                "kaohe-collector {} 失败 (failed, {}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A child in a lab namespace, in its own process group, output to `log`.
fn spawn_in(ns: &str, program: &Path, args: &[&str], log: &Path) -> Result<Child, DemoError> {
    let file = fs::File::create(log).map_err(|e| {
        DemoError::new(
            EX_SOFTWARE,
            format!("无法创建日志 (cannot create) {}: {e}", log.display()),
        )
    })?;
    let err = file
        .try_clone()
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("日志 (log): {e}")))?;
    let mut cmd = sys::in_netns(ns, program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0);
    cmd.spawn().map_err(|e| {
        DemoError::new(
            EX_UNAVAILABLE,
            format!("无法在 {ns} 中启动 (cannot start in {ns}) {}: {e}", program.display()),
        )
    })
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn exited(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// A random password: 16 characters of an alphabet without look-alikes.
fn random_password() -> Result<String, DemoError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("无法读取随机数 (/dev/urandom): {e}")))?;
    // Rejection sampling keeps the characters uniform.
    let limit = 256 - 256 % ALPHABET.len();
    let pw: String = bytes
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .take(16)
        .collect();
    if pw.len() < 16 {
        return Err(DemoError::new(EX_SOFTWARE, "随机数不足 (not enough randomness)"));
    }
    Ok(pw)
}

// ------------------------------------------------------------------ port forwarding

/// Binds the dashboard's loopback port, or says it is taken and what to do.
fn bind_port(port: u16) -> Result<TcpListener, DemoError> {
    let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    TcpListener::bind(addr).map_err(|e| {
        let why = if e.kind() == io::ErrorKind::AddrInUse {
            format!(
                "端口 {addr} 已被占用: 请用 --port 换一个, 如 --port 9443 (--port 0 自动选择空闲端口)\n\
                 (port {addr} is taken: choose another with --port, e.g. --port 9443, or --port 0 for any free port)"
            )
        } else {
            format!("无法监听 {addr} (cannot listen): {e}")
        };
        DemoError::new(EX_UNAVAILABLE, why)
    })
}

/// Forwards every connection to the loopback port to the collector at `to`, over the
/// lab's root link (the one lab link of the root namespace, made for exactly this).
/// The threads end with the process.
fn forward(listener: TcpListener, to: SocketAddr) {
    thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(client) = conn else { continue };
            thread::spawn(move || {
                let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(5)) else {
                    let _ = client.shutdown(Shutdown::Both);
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (Ok(mut c2), Ok(mut s2)) = (client.try_clone(), server.try_clone()) else {
                    return;
                };
                let up = thread::spawn(move || {
                    let mut client = client;
                    let mut server = server;
                    let _ = io::copy(&mut client, &mut server);
                    let _ = server.shutdown(Shutdown::Write);
                });
                let _ = io::copy(&mut s2, &mut c2);
                let _ = c2.shutdown(Shutdown::Write);
                let _ = up.join();
            });
        }
    });
}

// ------------------------------------------------------------------ the demo

/// Province and city above the lab's bureaus (the lab has only bureaus).
const PROVINCE: (&str, &str) = ("lab", "实验省司法厅");
const CITY: (&str, &str) = ("lab-city", "实验市司法局");

/// The quickened schedule: probes every second, a report every 2 s (as in the province
/// test), isolation every 2 s, the other checks every 10-20 s, and the daily check
/// record (二.2) right at the start, whatever the time of day.
/// Agentless leak detection, forwarding probes only (the lab's internet side has no
/// path to the collector for a listener's reports): every 20 s after an inventory sweep,
/// to the isolation canaries. Finds bureau 3's rogue router (三.4).
const LEAK_PROBES: &str = "\n[leak]\nkey = \"lab-department-leak-key\"\nwait_ms = 1000\ninterval_secs = 20\n";

fn quicken(generated: &str) -> Result<String, DemoError> {
    let from = "[schedule]\nprobe_interval_secs = ";
    let start = generated.find(from).ok_or_else(|| {
        DemoError::new(
            EX_SOFTWARE,
            "生成的代理配置中没有 [schedule] (the generated agent config has no [schedule])",
        )
    })?;
    let value_end = generated[start + from.len()..]
        .find('\n')
        .map_or(generated.len(), |i| start + from.len() + i);
    let quick = "[schedule]\nprobe_interval_secs = 1\nreport_interval_secs = 2\nisolation_interval_secs = 2\n\
                 self_check_interval_secs = 10\ninventory_interval_secs = 20\nservices_interval_secs = 20\n\
                 daily_check_at = \"00:00\"";
    Ok(format!("{}{quick}{}", &generated[..start], &generated[value_end..]))
}

fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}", s / 60, s % 60)
}

fn run(opts: &DemoOptions) -> Result<i32, DemoError> {
    let started = Instant::now();
    if !lab::is_root() {
        return Err(not_root());
    }
    let bins = binaries()?;
    if Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| !s.success())
        .unwrap_or(true)
    {
        return Err(DemoError::new(
            EX_UNAVAILABLE,
            "找不到 ip 命令: 请安装 iproute2 (apt-get install iproute2) (the `ip` command is missing: install iproute2)",
        ));
    }
    // The port first: if it is taken, say so before building anything.
    let listener = bind_port(opts.port)?;
    let port = listener
        .local_addr()
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("{e}")))?
        .port();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("tokio: {e}")))?;
    let stop = watch_signals(&rt)?;

    // 1. The lab.
    println!("① 搭建实验网络 (building the lab, prefix {})…", opts.prefix);
    let mut lab_opts = Options::new(&opts.prefix, &bins.helper);
    lab_opts.verbose = false;
    lab_opts.flap = if opts.flap {
        FlapMode::Description
    } else {
        FlapMode::Off
    };
    let lab = Lab::up(lab_opts)?;
    // Everything the demo writes (the collector's data, its config, the agents'
    // configs) goes under STATE/demo, removed on the way out; the lab removes the rest.
    let demo_dir = lab.state_dir().join("demo");
    let data = demo_dir.join("collector");
    let mut running = Running {
        agents: Vec::new(),
        collector: None,
        dir: demo_dir.clone(),
    };
    stop.check()?;
    let desc = lab.description().clone();
    let took = lab.timings().last().map_or(0, |(_, d)| d.as_millis());
    println!(
        "   {} 个命名空间, 用时 {took} ms; 三个司法局: {}",
        lab.facts().hosts.len() + desc.segments.len(),
        desc.bureaus
            .iter()
            .map(|b| format!("{} ({})", b.name, b.unit_id))
            .collect::<Vec<_>>()
            .join("、")
    );
    if lab.flapping() {
        println!(
            "   实验三区上行链路每 {} 秒中断 {} 秒 (bureau 3's uplink flaps)",
            desc.flap.period.as_secs(),
            desc.flap.down.as_secs()
        );
    }
    let root = lab
        .root_link()
        .cloned()
        .ok_or_else(|| DemoError::new(EX_SOFTWARE, "实验网络没有到采集中心的链路 (the lab has no root link)"))?;

    // 2. The collector's units, registries and users, then the server.
    println!("② 启动采集中心 (starting the collector, SQLite)…");
    let _ = fs::remove_dir_all(&demo_dir);
    fs::create_dir_all(&data)
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("无法创建 (cannot create) {}: {e}", data.display())))?;
    let coll_host = &desc.hosts[desc.collector.host];
    let public_url = desc.collector_url();
    let config = demo_dir.join("collector.toml");
    let config_text = format!(
        "# kaohe-lab demo\ndata_dir = {:?}\nlisten = \"0.0.0.0:{}\"\npublic_url = {:?}\ntls_names = [\"{}\"]\n",
        data.display().to_string(),
        desc.collector.port,
        public_url,
        root.lab_addr
    );
    fs::write(&config, config_text).map_err(|e| {
        DemoError::new(
            EX_SOFTWARE,
            format!("无法写入 (cannot write) {}: {e}", config.display()),
        )
    })?;
    let cli = |args: &[&str]| collector_cli(&bins, &config, args, &[]);
    cli(&["unit", "add", PROVINCE.0, "--name", PROVINCE.1, "--kind", "province"])?;
    cli(&[
        "unit", "add", CITY.0, "--name", CITY.1, "--kind", "city", "--parent", PROVINCE.0,
    ])?;
    for b in &desc.bureaus {
        cli(&[
            "unit", "add", &b.unit_id, "--name", &b.name, "--kind", "county", "--parent", CITY.0,
        ])?;
        let registry = lab.registry_path(b.id);
        cli(&[
            "registry",
            "import",
            "--unit",
            &b.unit_id,
            registry.to_str().unwrap_or_default(),
        ])?;
        // The machine room's keeper (the agent host's registered user) maintains it and
        // answers for the private network.
        let keeper = desc.hosts[b.agent]
            .registry
            .as_ref()
            .map_or_else(|| "值班员".to_string(), |r| r.user.clone());
        cli(&[
            "unit",
            "set",
            &b.unit_id,
            "--maintainer",
            &keeper,
            "--responder",
            &keeper,
        ])?;
    }
    let admin_pw = random_password()?;
    collector_cli(
        &bins,
        &config,
        &[
            "user",
            "add",
            "admin",
            "--role",
            "province",
            "--display-name",
            "省厅管理员",
        ],
        &[("KAOHE_PASSWORD", &admin_pw)],
    )?;
    let first = desc
        .bureaus
        .first()
        .ok_or_else(|| DemoError::new(EX_SOFTWARE, "实验网络没有司法局 (the lab has no bureau)"))?;
    let staff = format!("b{}-staff", first.id);
    let staff_pw = random_password()?;
    collector_cli(
        &bins,
        &config,
        &[
            "user",
            "add",
            &staff,
            "--role",
            "unit",
            "--unit",
            &first.unit_id,
            "--display-name",
            &format!("{}人员", first.name),
        ],
        &[("KAOHE_PASSWORD", &staff_pw)],
    )?;
    stop.check()?;

    let run_dir = lab.state_dir().join("run");
    let coll_ns = lab.namespace(&coll_host.name)?;
    let coll_log = run_dir.join("collector.log");
    let config_arg = config.display().to_string();
    running.collector = Some(spawn_in(
        &coll_ns,
        &bins.collector,
        &["serve", "--config", &config_arg],
        &coll_log,
    )?);
    // Ready when it answers on the root link (as the browser will reach it).
    let upstream = SocketAddr::V4(SocketAddrV4::new(root.lab_addr, desc.collector.port));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        stop.check()?;
        if let Some(status) = running.collector.as_mut().and_then(exited) {
            return Err(DemoError::new(
                EX_UNAVAILABLE,
                format!(
                    "采集中心启动失败 (the collector exited, {status}); {}:\n{}",
                    coll_log.display(),
                    log_tail(&coll_log, 20)
                ),
            ));
        }
        if data.join("tls/ca.pem").exists() && TcpStream::connect_timeout(&upstream, Duration::from_millis(500)).is_ok()
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(DemoError::new(
                EX_UNAVAILABLE,
                format!(
                    "采集中心 30 秒内未就绪 (the collector did not answer within 30 s); {}:\n{}",
                    coll_log.display(),
                    log_tail(&coll_log, 20)
                ),
            ));
        }
        thread::sleep(Duration::from_millis(50));
    }
    let fingerprint = kaohe_collector::tls::ca_fingerprint(&kaohe_collector::tls::TlsFiles::in_dir(&data.join("tls")))
        .map_err(|e| DemoError::new(EX_SOFTWARE, format!("CA 指纹 (fingerprint): {e}")))?;
    println!("   {public_url} (命名空间 {coll_ns}); 数据 {}", data.display());

    // 3. Agents: a one-time token each, enrolled, then the daemon on the quick schedule.
    println!("③ 注册并启动代理, 加快的日程 (enrolling the agents; quickened schedule)…");
    for b in &desc.bureaus {
        stop.check()?;
        let token = cli(&["token", "create", "--unit", &b.unit_id, "--hours", "1"])?
            .trim()
            .to_string();
        let generated = fs::read_to_string(lab.agent_config_path(b.id))
            .map_err(|e| DemoError::new(EX_SOFTWARE, format!("代理配置 (agent config) of bureau {}: {e}", b.id)))?;
        let agent_config = demo_dir.join(format!("b{}-agent.toml", b.id));
        fs::write(&agent_config, quicken(&generated)? + LEAK_PROBES)
            .map_err(|e| DemoError::new(EX_SOFTWARE, format!("{}: {e}", agent_config.display())))?;
        let ns = lab.namespace(&desc.hosts[b.agent].name)?;
        let out = sys::in_netns(&ns, &bins.agent)
            .args(["enroll", &token, "--config"])
            .arg(&agent_config)
            .stdin(Stdio::null())
            .process_group(0)
            .output()
            .map_err(|e| DemoError::new(EX_UNAVAILABLE, format!("kaohe-agent enroll: {e}")))?;
        if !out.status.success() {
            return Err(DemoError::new(
                EX_UNAVAILABLE,
                format!(
                    "{} 的代理注册失败 (enrolment failed, {}): {}",
                    b.name,
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ),
            ));
        }
        let log = run_dir.join(format!("agent-b{}.log", b.id));
        let cfg = agent_config.display().to_string();
        running
            .agents
            .push(spawn_in(&ns, &bins.agent, &["run", "--config", &cfg], &log)?);
        println!("   {} ({}): {ns}", b.name, b.unit_id);
    }

    // 4. The dashboard, from this machine.
    forward(listener, upstream);
    let url = format!("https://127.0.0.1:{port}/");
    println!();
    println!("管理平台 (dashboard): {url}  用户 admin  密码 {admin_pw}");
    println!(
        "  单位人员 (unit staff of {}): 用户 {staff}  密码 {staff_pw}",
        first.name
    );
    println!("  CA 指纹 (fingerprint): {fingerprint}");
    println!(
        "  证书由采集中心的私有 CA 签发, 浏览器会提示不受信任: 核对指纹后继续, 或导入 {}",
        data.join("tls/ca.pem").display()
    );
    println!("  (the certificate comes from the collector's private CA: check the fingerprint, or trust that file)");
    println!("  也可直接访问 (also on the lab's root link): {}/", root.collector_url);
    println!();

    // 5. Wait, showing progress.
    let store_url = format!("sqlite://{}", data.join("kaohe.db").display());
    let store = rt
        .block_on(kaohe_collector::store::Store::open(&store_url))
        .map_err(|e| DemoError::new(EX_UNAVAILABLE, format!("数据库 (database) {store_url}: {e}")))?;
    let wait_start = Instant::now();
    println!(
        "④ 等待代理上报 {} (waiting for reports; the score table follows)…",
        mmss(opts.wait)
    );
    let progress = |running: &mut Running| -> Result<(), DemoError> {
        check_children(running, &run_dir)?;
        let mut parts = Vec::new();
        for b in &desc.bureaus {
            let n = rt.block_on(store.report_count(&b.unit_id)).unwrap_or(-1);
            parts.push(format!("{} {n}", b.name));
        }
        println!(
            "   [{}] 已收到报告 (reports received): {}",
            mmss(wait_start.elapsed()),
            parts.join(" · ")
        );
        Ok(())
    };
    let tick = Duration::from_secs(10);
    while wait_start.elapsed() < opts.wait {
        let left = opts.wait.saturating_sub(wait_start.elapsed());
        if !stop.sleep(left.min(tick)) {
            return Err(interrupted());
        }
        progress(&mut running)?;
    }

    // 6. The table.
    println!();
    println!("⑤ 全省评分表 (province score table):");
    println!();
    print!("{}", cli(&["rank"])?);
    println!();
    println!("各单位扣分 (deductions, sections 二 and 三):");
    for b in &desc.bureaus {
        let json = cli(&["score", "--db-unit", &b.unit_id, "--json"])?;
        println!("  {}", deduction_line(&b.name, &b.unit_id, &json));
    }
    println!();
    println!(
        "用时 (wall time) {}; 管理平台 (dashboard): {url}  用户 admin  密码 {admin_pw}",
        mmss(started.elapsed())
    );

    // 7. Keep running until Ctrl-C, unless told otherwise.
    if !opts.exit_after_table {
        println!("演示继续运行: 代理持续上报, 管理平台保持可用。按 Ctrl-C 结束并清理。");
        println!("(still running: agents keep reporting, the dashboard stays up; Ctrl-C tears everything down)");
        let mut last = Instant::now();
        while stop.sleep(Duration::from_secs(1)) {
            check_children(&mut running, &run_dir)?;
            if last.elapsed() >= Duration::from_secs(60) {
                last = Instant::now();
                progress(&mut running)?;
            }
        }
    }

    println!("正在清理 (tearing down)…");
    let t = Instant::now();
    let left = teardown(running, lab)?;
    if left.is_empty() {
        println!(
            "已清理, 无残留 (torn down in {} ms: no namespace, link or process left)",
            t.elapsed().as_millis()
        );
        Ok(0)
    } else {
        Err(DemoError::new(
            EX_SOFTWARE,
            format!("清理后仍有残留 (still there after teardown): {}", left.join(", ")),
        ))
    }
}

/// An agent or the collector that died is an error, with its log's last lines.
fn check_children(running: &mut Running, run_dir: &Path) -> Result<(), DemoError> {
    if let Some(status) = running.collector.as_mut().and_then(exited) {
        let log = run_dir.join("collector.log");
        return Err(DemoError::new(
            EX_UNAVAILABLE,
            format!(
                "采集中心已退出 (the collector exited, {status}); {}:\n{}",
                log.display(),
                log_tail(&log, 20)
            ),
        ));
    }
    for (i, a) in running.agents.iter_mut().enumerate() {
        if let Some(status) = exited(a) {
            let log = run_dir.join(format!("agent-b{}.log", i + 1));
            return Err(DemoError::new(
                EX_UNAVAILABLE,
                format!(
                    "代理已退出 (an agent exited, {status}); {}:\n{}",
                    log.display(),
                    log_tail(&log, 20)
                ),
            ));
        }
    }
    Ok(())
}

/// "实验二区司法局 (lab-b2) 二 12.5 三 9: 二.1 −1.5 发现未备案设备…；三.4 −0.5 …" from the
/// JSON of `kaohe-collector score --db-unit ID --json`.
fn deduction_line(name: &str, unit: &str, json: &str) -> String {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(json) else {
        return format!("{name} ({unit}): 无法解析评分 (unreadable sheet)");
    };
    let items = v
        .pointer("/auto/items")
        .or_else(|| v.get("items"))
        .and_then(|i| i.as_array())
        .cloned()
        .unwrap_or_default();
    let mut parts = Vec::new();
    for item in &items {
        let id = item.get("id").and_then(|x| x.as_str()).unwrap_or("?");
        if !(id.starts_with('二') || id.starts_with('三')) {
            continue;
        }
        for d in item.get("deductions").and_then(|x| x.as_array()).into_iter().flatten() {
            let points = d.get("points").and_then(serde_json::Value::as_f64).unwrap_or(0.0);
            let reason = d.get("reason_zh").and_then(|x| x.as_str()).unwrap_or("");
            parts.push(format!("{id} −{} {}", trim_points(points), shorten(reason, 48)));
        }
    }
    let sections: Vec<String> = v
        .get("sections")
        .and_then(|s| s.as_array())
        .into_iter()
        .flatten()
        .filter_map(|s| {
            let id = s.get("id")?.as_str()?;
            let score = s.get("score")?.as_f64()?;
            (id == "二" || id == "三").then(|| format!("{id} {}", trim_points(score)))
        })
        .collect();
    let head = if sections.is_empty() {
        format!("{name} ({unit})")
    } else {
        format!("{name} ({unit}) {}", sections.join(" "))
    };
    if parts.is_empty() {
        format!("{head}: 无扣分 (no deductions)")
    } else {
        format!("{head}: {}", parts.join("；"))
    }
}

fn trim_points(p: f64) -> String {
    let s = format!("{p:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

fn shorten(s: &str, max_chars: usize) -> String {
    let s = s.trim();
    if s.chars().count() <= max_chars {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max_chars).collect();
        format!("{cut}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_is_quickened_and_the_rest_kept() {
        let generated = "unit_id = \"lab-b1\"\n\n[schedule]\nprobe_interval_secs = 30\n\n[[reachability.targets]]\n";
        let q = quicken(generated).expect("quickened");
        assert!(q.contains("probe_interval_secs = 1\nreport_interval_secs = 2\n"), "{q}");
        assert!(!q.contains("= 30"), "{q}");
        assert!(
            q.ends_with("daily_check_at = \"00:00\"\n\n[[reachability.targets]]\n"),
            "{q}"
        );
    }

    #[test]
    fn options_have_defaults_and_reject_the_unknown() {
        let args = |s: &str| s.split_whitespace().map(str::to_string).collect::<Vec<_>>();
        let o = parse(&[]).expect("ok").expect("opts");
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

    #[test]
    fn passwords_are_random_and_long() {
        let (a, b) = (random_password().expect("pw"), random_password().expect("pw"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[test]
    fn a_deduction_line_lists_the_points_lost() {
        let json = r#"{"auto":{"items":[{"id":"二.1","deductions":[{"points":1.5,"reason_zh":"发现未备案设备 10.2.0.66"}]},
            {"id":"一.1","deductions":[{"points":2,"reason_zh":"x"}]}]},
            "sections":[{"id":"二","score":8.5},{"id":"三","score":17}]}"#;
        let line = deduction_line("实验二区司法局", "lab-b2", json);
        assert_eq!(
            line,
            "实验二区司法局 (lab-b2) 二 8.5 三 17: 二.1 −1.5 发现未备案设备 10.2.0.66"
        );
    }
}

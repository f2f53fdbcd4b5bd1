//! The demo's processes: the signal flag, the services it runs and stops, the
//! collector's CLI, and the dashboard's port forwarding.

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

use super::{DemoError, DemoFailure, interrupted};
use crate::{Lab, leftovers, sys};

/// Set once SIGINT, SIGTERM or SIGHUP arrived. Watched by a tokio task on its own worker
/// thread, so the demo's plain blocking code only has to look at the flag.
#[derive(Debug, Clone)]
pub(super) struct Stop(Arc<AtomicBool>);

impl Stop {
    pub(super) fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(super) fn check(&self) -> Result<(), DemoError> {
        if self.requested() { Err(interrupted()) } else { Ok(()) }
    }

    /// Sleeps up to `d`; false when a stop was requested meanwhile.
    pub(super) fn sleep(&self, d: Duration) -> bool {
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

pub(super) fn watch_signals(rt: &tokio::runtime::Runtime) -> Result<Stop, DemoError> {
    let flag = Arc::new(AtomicBool::new(false));
    // Installed before the demo builds anything, so no signal ends it without teardown.
    let mut signals = rt
        .block_on(async { kaohe_process::StopSignals::install(true) })
        .map_err(|e| {
            DemoError::new(
                DemoFailure::Internal,
                format!("无法处理信号 (cannot handle signals): {e}"),
            )
        })?;
    let seen = flag.clone();
    rt.spawn(async move {
        loop {
            signals.recv().await;
            if !seen.swap(true, Ordering::SeqCst) {
                eprintln!("\n收到中断信号, 正在清理… (stopping: tearing everything down)");
            }
        }
    });
    Ok(Stop(flag))
}

// ------------------------------------------------------------------ processes

/// The demo's services. Declared after the lab, so dropped before it: agents, then the
/// collector, get SIGTERM (then SIGKILL), and the demo's files are removed; then the
/// lab's own Drop tears it down.
#[derive(Debug)]
pub(super) struct Running {
    pub(super) agents: Vec<Child>,
    pub(super) collector: Option<Child>,
    /// STATE/demo: the collector's data and config, the agents' configs.
    pub(super) dir: PathBuf,
}

impl Running {
    pub(super) fn stop(&mut self) {
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
pub(super) fn teardown(mut running: Running, lab: Lab) -> Result<Vec<String>, DemoError> {
    running.stop();
    let prefix = lab.prefix().to_string();
    lab.down()?;
    Ok(leftovers(&prefix)?)
}

/// `DIR/kaohe-collector` and `DIR/kaohe-agent` beside this binary.
#[derive(Debug, Clone)]
pub(super) struct Binaries {
    pub(super) collector: PathBuf,
    pub(super) agent: PathBuf,
    pub(super) helper: PathBuf,
}

pub(super) fn binaries() -> Result<Binaries, DemoError> {
    let helper = std::env::current_exe().map_err(|e| {
        DemoError::new(
            DemoFailure::Internal,
            format!("找不到 kaohe-lab 自身 (cannot find own binary): {e}"),
        )
    })?;
    let dir = helper.parent().unwrap_or(Path::new(".")).to_path_buf();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let build = format!(
        "cargo build{} -p kaohe-collector -p kaohe-agent -p kaohe-lab",
        if release { " --release" } else { "" }
    );
    let find = |name: &str| {
        let p = dir.join(name);
        if p.is_file() {
            Ok(p)
        } else {
            Err(DemoError::new(
                DemoFailure::Unavailable,
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
pub(super) fn collector_cli(
    bins: &Binaries,
    config: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String, DemoError> {
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
            DemoFailure::Unavailable,
            format!("无法运行 (cannot run) {}: {e}", bins.collector.display()),
        )
    })?;
    if !out.status.success() {
        return Err(DemoError::new(
            DemoFailure::Unavailable,
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
pub(super) fn spawn_in(ns: &str, program: &Path, args: &[&str], log: &Path) -> Result<Child, DemoError> {
    let file = fs::File::create(log).map_err(|e| {
        DemoError::new(
            DemoFailure::Internal,
            format!("无法创建日志 (cannot create) {}: {e}", log.display()),
        )
    })?;
    let err = file
        .try_clone()
        .map_err(|e| DemoError::new(DemoFailure::Internal, format!("日志 (log): {e}")))?;
    let mut cmd = sys::in_netns(ns, program);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(err)
        .process_group(0);
    cmd.spawn().map_err(|e| {
        DemoError::new(
            DemoFailure::Unavailable,
            format!("无法在 {ns} 中启动 (cannot start in {ns}) {}: {e}", program.display()),
        )
    })
}

pub(super) fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(super) fn exited(child: &mut Child) -> Option<String> {
    match child.try_wait() {
        Ok(Some(status)) => Some(status.to_string()),
        Ok(None) => None,
        Err(e) => Some(e.to_string()),
    }
}

/// A random password: 16 characters of an alphabet without look-alikes.
pub(super) fn random_password() -> Result<String, DemoError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 64];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| DemoError::new(DemoFailure::Internal, format!("无法读取随机数 (/dev/urandom): {e}")))?;
    // Rejection sampling keeps the characters uniform.
    let limit = 256 - 256 % ALPHABET.len();
    let pw: String = bytes
        .iter()
        .filter(|&&b| usize::from(b) < limit)
        .map(|&b| char::from(ALPHABET[usize::from(b) % ALPHABET.len()]))
        .take(16)
        .collect();
    if pw.len() < 16 {
        return Err(DemoError::new(
            DemoFailure::Internal,
            "随机数不足 (not enough randomness)",
        ));
    }
    Ok(pw)
}

/// An agent or the collector that died is an error, with its log's last lines.
pub(super) fn check_children(running: &mut Running, run_dir: &Path) -> Result<(), DemoError> {
    if let Some(status) = running.collector.as_mut().and_then(exited) {
        let log = run_dir.join("collector.log");
        return Err(DemoError::new(
            DemoFailure::Unavailable,
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
                DemoFailure::Unavailable,
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

// ------------------------------------------------------------------ port forwarding

/// Binds the dashboard's loopback port, or says it is taken and what to do.
pub(super) fn bind_port(port: u16) -> Result<TcpListener, DemoError> {
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
        DemoError::new(DemoFailure::Unavailable, why)
    })
}

/// Forwards every connection to the loopback port to the collector at `to`, over the
/// lab's root link (the one lab link of the root namespace, made for exactly this).
/// The threads end with the process.
pub(super) fn forward(listener: TcpListener, to: SocketAddr) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_random_and_long() {
        let (a, b) = (random_password().expect("pw"), random_password().expect("pw"));
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }
}

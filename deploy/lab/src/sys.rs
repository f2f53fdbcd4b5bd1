//! The lab's only contact with the system: `ip`, `tc` and `sysctl` (the latter inside
//! `ip netns exec`), `kill` for the lab's own processes, and a few files under /proc
//! and /run. Everything is run by absolute command name with explicit arguments.

use std::io::Write as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::LabError;

/// A command as a shell would show it.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion; a non-zero exit is an error carrying its stderr.
pub fn run(cmd: &mut Command) -> Result<Output, LabError> {
    let what = describe(cmd);
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::io(format!("running {what}"), e))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(LabError::Command {
            command: what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs `ip [-n NS] -batch -` with the given lines on stdin.
pub fn ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(), LabError> {
    if lines.is_empty() {
        return Ok(());
    }
    let child = spawn_ip_batch(netns, lines)?;
    finish(child)
}

fn spawn_ip_batch(netns: Option<&str>, lines: &[String]) -> Result<(Child, String), LabError> {
    let mut cmd = Command::new("ip");
    if let Some(ns) = netns {
        cmd.args(["-n", ns]);
    }
    cmd.args(["-batch", "-"]);
    let what = format!("{} <<{} lines>>", describe(&cmd), lines.len());
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| LabError::io(format!("running {what}"), e))?;
    let mut text = lines.join("\n");
    text.push('\n');
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(text.as_bytes())
            .map_err(|e| LabError::io(format!("feeding {what}"), e))?;
    }
    Ok((child, format!("{what}:\n{text}")))
}

fn finish((child, what): (Child, String)) -> Result<(), LabError> {
    let out = child
        .wait_with_output()
        .map_err(|e| LabError::io(format!("waiting for {what}"), e))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(LabError::Command {
            command: what,
            status: out.status.to_string(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Runs one `ip -n NS -batch -` per namespace, all at once.
pub fn ip_batches_parallel(batches: &[(String, Vec<String>)]) -> Result<(), LabError> {
    let mut running = Vec::new();
    for (ns, lines) in batches.iter().filter(|(_, l)| !l.is_empty()) {
        running.push(spawn_ip_batch(Some(ns), lines)?);
    }
    let mut first_error = None;
    for r in running {
        if let Err(e) = finish(r) {
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Runs several commands at once and waits for all; the first failure is returned.
pub fn run_parallel(cmds: Vec<Command>) -> Result<(), LabError> {
    let mut running = Vec::new();
    for mut cmd in cmds {
        let what = describe(&cmd);
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LabError::io(format!("running {what}"), e))?;
        running.push((child, what));
    }
    let mut first_error = None;
    for (child, what) in running {
        match child.wait_with_output() {
            Ok(out) if out.status.success() => {}
            Ok(out) => {
                first_error.get_or_insert(LabError::Command {
                    command: what,
                    status: out.status.to_string(),
                    stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            Err(e) => {
                first_error.get_or_insert(LabError::io(format!("waiting for {what}"), e));
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// A command run inside a namespace.
pub fn in_netns(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program);
    cmd
}

/// The names of all named namespaces.
pub fn netns_list() -> Result<Vec<String>, LabError> {
    let out = run(Command::new("ip").args(["netns", "list"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_string)
        .collect())
}

/// The names of the root namespace's links.
pub fn root_links() -> Result<Vec<String>, LabError> {
    let out = run(Command::new("ip").args(["-o", "link", "show"]))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|name| name.split('@').next().unwrap_or(name).to_string())
        .collect())
}

/// The processes inside a namespace.
pub fn netns_pids(ns: &str) -> Vec<u32> {
    let Ok(out) = run(Command::new("ip").args(["netns", "pids", ns])) else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether a process exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with(['Z', 'X'])),
        Err(_) => false,
    }
}

/// Ends processes by id: TERM, then KILL what is left after `grace`.
pub fn kill_pids(pids: &[u32], grace: Duration) {
    let alive_now: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    if alive_now.is_empty() {
        return;
    }
    let args: Vec<String> = alive_now.iter().map(u32::to_string).collect();
    let _ = Command::new("kill")
        .arg("-TERM")
        .args(&args)
        .stderr(Stdio::null())
        .status();
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && alive_now.iter().any(|&p| alive(p)) {
        thread::sleep(Duration::from_millis(10));
    }
    let left: Vec<String> = alive_now.iter().filter(|&&p| alive(p)).map(u32::to_string).collect();
    if !left.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(&left)
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && alive_now.iter().any(|&p| alive(p)) {
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// The effective user id, from /proc (std has no getuid).
pub fn euid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// The identity (device, inode) of a network namespace file.
pub fn netns_identity(path: &Path) -> Option<(u64, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino()))
}

/// Whether this process runs in a named namespace (one of `/run/netns`), as every lab
/// host is; the root namespace is not one. (PID 1's namespace may not be readable in
/// a sandbox, so it is not compared.)
pub fn in_named_netns() -> bool {
    let Some(mine) = netns_identity(Path::new("/proc/self/ns/net")) else {
        return false;
    };
    std::fs::read_dir("/run/netns")
        .map(|dir| dir.flatten().any(|e| netns_identity(&e.path()) == Some(mine)))
        .unwrap_or(false)
}

/// Waits until `ready` holds, checking every 5 ms, for at most `limit`.
pub fn wait_until(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if ready() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

//! Removing a lab, also one a crashed run left behind, and the root link slots that
//! keep concurrent labs apart.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::Ipv4Net;
use serde::Deserialize;

use crate::{LabError, RUN_DIR, RunInfo, check_prefix, generate, leftovers, sys};

/// A root link slot file younger than this is never taken over (its lab may be
/// being built right now).
const SLOT_GRACE: Duration = Duration::from_secs(30);

pub(crate) fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> Vec<T> {
    fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Reads `lab.json` of a running lab.
pub fn read_run_info(state_dir: &Path) -> Result<RunInfo, LabError> {
    let path = state_dir.join("lab.json");
    let text = fs::read_to_string(&path).map_err(|e| LabError::io(format!("reading {}", path.display()), e))?;
    serde_json::from_str(&text).map_err(|source| LabError::Json {
        context: path.display().to_string(),
        source,
    })
}

/// What a cleanup removed.
#[derive(Debug, Clone, Default)]
pub struct Cleanup {
    pub namespaces: usize,
    pub processes: usize,
    pub root_links: usize,
}

/// Removes every trace of a lab with this prefix: its processes (by id, found in its
/// namespaces), the root link, the namespaces (and with them every veth and bridge),
/// the root link slot and the state files. Safe to run when nothing is there.
pub fn cleanup(prefix: &str, state_dir: &Path) -> Result<Cleanup, LabError> {
    check_prefix(prefix)?;
    let p = format!("{prefix}-");
    let namespaces: Vec<String> = sys::netns_list()?.into_iter().filter(|n| n.starts_with(&p)).collect();
    let pids: Vec<u32> = namespaces.iter().flat_map(|n| sys::netns_pids(n)).collect();
    sys::kill_pids(&pids, Duration::from_secs(1));
    let links: Vec<String> = sys::root_links()?.into_iter().filter(|l| l.starts_with(&p)).collect();
    let mut lines: Vec<String> = links.iter().map(|l| format!("link del {l}")).collect();
    lines.extend(namespaces.iter().map(|n| format!("netns del {n}")));
    sys::ip_batch(None, &lines)?;
    release_slots(prefix);
    remove_state(state_dir);
    Ok(Cleanup {
        namespaces: namespaces.len(),
        processes: pids.len(),
        root_links: links.len(),
    })
}

/// Removes the files a lab wrote into its state dir (and the dir, if then empty).
fn remove_state(dir: &Path) {
    let _ = fs::remove_dir_all(dir.join("run"));
    for f in ["lab.json", "expected.json"] {
        let _ = fs::remove_file(dir.join(f));
    }
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let bureau_dir = name.len() > 1 && name.starts_with('b') && name[1..].bytes().all(|b| b.is_ascii_digit());
            if bureau_dir {
                let _ = fs::remove_dir_all(e.path().join(generate::AGENT_STATE_DIR));
                for f in ["registry.csv", "agent.toml"] {
                    let _ = fs::remove_file(e.path().join(f));
                }
                let _ = fs::remove_dir(e.path());
            }
        }
    }
    let _ = fs::remove_dir(dir);
}

fn slots_dir() -> PathBuf {
    Path::new(RUN_DIR).join("slots")
}

/// Takes a /30 of the root pool for this run: slot files `/run/kaohe-lab/slots/N`
/// hold the owning prefix, created exclusively, so concurrent runs never share one.
pub(crate) fn claim_slot(prefix: &str, pool: Ipv4Net) -> Result<u32, LabError> {
    let dir = slots_dir();
    fs::create_dir_all(&dir).map_err(|e| LabError::io(format!("creating {}", dir.display()), e))?;
    let count = 1u32 << (30 - pool.prefix_len()).min(8);
    let owner = |n: u32| {
        fs::read_to_string(dir.join(n.to_string()))
            .map(|s| s.trim().to_string())
            .ok()
    };
    if let Some(n) = (0..count).find(|&n| owner(n).as_deref() == Some(prefix)) {
        return Ok(n);
    }
    for n in 0..count {
        let path = dir.join(n.to_string());
        for attempt in 0..2 {
            match fs::OpenOptions::new().write(true).create_new(true).open(&path) {
                Ok(_) => {
                    fs::write(&path, prefix).map_err(|e| LabError::io(format!("writing {}", path.display()), e))?;
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    if attempt == 0 && slot_is_stale(&path) {
                        let _ = fs::remove_file(&path);
                        continue;
                    }
                    break;
                }
                Err(e) => return Err(LabError::io(format!("creating {}", path.display()), e)),
            }
        }
    }
    Err(LabError::State(format!(
        "all {count} root link slots of {pool} are taken ({})",
        dir.display()
    )))
}

/// A slot is stale when its lab has neither namespaces nor a root link, and the file is
/// old enough that no lab is being built with it.
fn slot_is_stale(path: &Path) -> bool {
    let old = fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age > SLOT_GRACE);
    let owner = fs::read_to_string(path).unwrap_or_default().trim().to_string();
    if !old {
        return false;
    }
    if check_prefix(&owner).is_err() {
        return true;
    }
    leftovers(&owner).is_ok_and(|l| l.is_empty())
}

fn release_slots(prefix: &str) {
    if let Ok(entries) = fs::read_dir(slots_dir()) {
        for e in entries.flatten() {
            if fs::read_to_string(e.path()).is_ok_and(|s| s.trim() == prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

//! The spool's files: names, listing, durable writes and directory syncs, and `peek`
//! for `kaohe-agent status`.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use kaohe_rubric::evidence::Report;

use super::*;

pub(super) fn step(fault: Option<&FaultHook>, s: Step, path: &Path) -> std::io::Result<()> {
    match fault {
        Some(f) => f(s, path),
        None => Ok(()),
    }
}

pub(super) fn file_name(report: &Report) -> String {
    format!("{:020}-{}.json", report.sequence, report.report_id)
}

/// The reports in `dir` (`SEQUENCE-ID.json`), oldest first.
pub(super) fn list(dir: &Path) -> Result<Vec<Entry>, SpoolError> {
    let mut out = Vec::new();
    let read = match fs::read_dir(dir) {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    for e in read.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(stem) = name.strip_suffix(".json") else {
            continue;
        };
        let Some((seq, _)) = stem.split_once('-') else { continue };
        let Ok(sequence) = seq.parse::<u64>() else { continue };
        let bytes = e.metadata().map(|m| m.len()).unwrap_or(0);
        out.push(Entry {
            path: e.path(),
            sequence,
            bytes,
        });
    }
    out.sort_by(|a, b| (a.sequence, &a.path).cmp(&(b.sequence, &b.path)));
    Ok(out)
}

/// What a spool directory holds, read without opening the spool (a running agent may hold
/// it): for `kaohe-agent status` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Peek {
    /// The last sequence number given out (as last written to the state file).
    pub sequence: u64,
    /// Reports lost, and refused for good by the collector, in all.
    pub dropped: u64,
    pub rejected: u64,
    /// Reports waiting on disk for delivery, and their size.
    pub waiting: usize,
    pub waiting_bytes: u64,
    /// Refused reports kept aside in `rejected/`, and their size.
    pub rejected_kept: usize,
    pub rejected_bytes: u64,
}

/// Reads a spool directory's state file and lists its reports, changing nothing; `None`
/// when there is no state file yet.
pub fn peek(dir: &Path) -> Result<Option<Peek>, SpoolError> {
    let path = dir.join(STATE_FILE);
    let buf = match fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(&path)(e)),
    };
    let state = State::newest(&buf).ok_or_else(|| SpoolError::Corrupt { path: path.clone() })?;
    let waiting = list(dir)?;
    let kept = list(&dir.join(REJECTED_DIR))?;
    Ok(Some(Peek {
        sequence: state.sequence,
        dropped: state.dropped,
        rejected: state.rejected,
        waiting: waiting.len(),
        waiting_bytes: waiting.iter().map(|e| e.bytes).sum(),
        rejected_kept: kept.len(),
        rejected_bytes: kept.iter().map(|e| e.bytes).sum(),
    }))
}

pub(super) fn remove_temporaries(dir: &Path) {
    if let Ok(read) = fs::read_dir(dir) {
        for e in read.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

pub(super) fn sync_dir(fault: Option<&FaultHook>, dir: &Path) -> Result<(), SpoolError> {
    step(fault, Step::SyncDir, dir).map_err(io(dir))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `data` to `path` so that after return it survives a crash: temp file, fsync,
/// rename, fsync of the directory.
pub fn write_durably(dir: &Path, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    durable_write(None, dir, path, data)
}

pub(super) fn durable_write(fault: Option<&FaultHook>, dir: &Path, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    let written = (|| {
        step(fault, Step::WriteTemp, &tmp)?;
        let mut f = OpenOptions::new().create(true).write(true).truncate(true).open(&tmp)?;
        f.write_all(data)?;
        step(fault, Step::SyncTemp, &tmp)?;
        f.sync_all()?;
        step(fault, Step::Rename, path)?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        // Leave no half-written file behind (a crash leaves it to `Spool::open`).
        if step(fault, Step::Remove, &tmp).is_ok() {
            let _ = fs::remove_file(&tmp);
        }
        return Err(io(&tmp)(e));
    }
    sync_dir(fault, dir)
}

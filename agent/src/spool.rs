//! The on-disk spool: a report counts as made once it is here, durably (written to a
//! temporary file, fsynced, renamed, directory fsynced). Reports leave the spool only
//! when the collector has acknowledged them. While the collector is unreachable the
//! spool grows up to a bound; past it the oldest reports are dropped first and counted,
//! and the next report says how many. A restart resumes from what is on disk.
//!
//! Files are named `SEQUENCE-REPORTID.json` (sequence zero-padded), so their order on
//! disk is the order they were made.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use kaohe_rubric::evidence::Report;

#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("报告队列 {path} 读写失败 (spool I/O error): {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("无法序列化报告 (cannot serialise report): {0}")]
    Json(#[from] serde_json::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A spooled report waiting for acknowledgement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub sequence: u64,
    pub bytes: u64,
}

#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    /// Reports dropped in all; persisted so a restart does not forget.
    dropped_file: PathBuf,
}

impl Spool {
    /// Opens (creating) the spool in `dir`, removing temporary files of a crashed write.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            dropped_file: dir.join("dropped.count"),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Waiting reports, oldest first.
    pub fn pending(&self) -> Result<Vec<Entry>, SpoolError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io(&self.dir))?.flatten() {
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
        out.sort_by_key(|e| (e.sequence, e.path.clone()));
        Ok(out)
    }

    /// Reports dropped in all since the spool was created.
    pub fn dropped(&self) -> u64 {
        fs::read_to_string(&self.dropped_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    fn set_dropped(&self, n: u64) -> Result<(), SpoolError> {
        write_durably(&self.dir, &self.dropped_file, n.to_string().as_bytes())
    }

    /// Adds a report durably, making room first by dropping the oldest reports if the
    /// spool is full; the report carries the cumulative count of dropped reports.
    /// Returns how many old reports this addition pushed out.
    pub fn push(&self, report: &mut Report) -> Result<u64, SpoolError> {
        let mut pending = self.pending()?;
        let mut total: u64 = pending.iter().map(|e| e.bytes).sum();
        // Room for the report as it will be written (its count field may grow by a few bytes).
        let estimate = serde_json::to_vec(report)?.len() as u64 + 32;
        let mut pushed_out = 0u64;
        while total + estimate > self.max_bytes && !pending.is_empty() {
            let oldest = pending.remove(0);
            fs::remove_file(&oldest.path).map_err(io(&oldest.path))?;
            total -= oldest.bytes;
            pushed_out += 1;
        }
        let dropped = self.dropped() + pushed_out;
        if pushed_out > 0 {
            self.set_dropped(dropped)?;
            tracing::warn!(
                dropped = pushed_out,
                total = dropped,
                "spool full: dropped the oldest reports"
            );
        }
        report.spool_dropped = dropped;
        let body = serde_json::to_vec(report)?;
        let name = format!("{:020}-{}.json", report.sequence, report.report_id);
        write_durably(&self.dir, &self.dir.join(name), &body)?;
        Ok(pushed_out)
    }

    /// Reads a waiting report.
    pub fn read(&self, e: &Entry) -> Result<Vec<u8>, SpoolError> {
        fs::read(&e.path).map_err(io(&e.path))
    }

    /// Removes an acknowledged report.
    pub fn remove(&self, e: &Entry) -> Result<(), SpoolError> {
        match fs::remove_file(&e.path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(&e.path)(err)),
        }
    }

    /// Moves a report the collector refused for good (a 4xx) aside, for a person to read.
    pub fn reject(&self, e: &Entry) -> Result<PathBuf, SpoolError> {
        let dir = self.dir.join("rejected");
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let to = dir.join(e.path.file_name().unwrap_or_default());
        fs::rename(&e.path, &to).map_err(io(&e.path))?;
        Ok(to)
    }
}

/// Writes `data` to `path` so that after return it survives a crash: temp file, fsync,
/// rename, fsync of the directory.
pub fn write_durably(dir: &Path, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
    }
    fs::rename(&tmp, path).map_err(io(path))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use kaohe_rubric::evidence::HostFacts;

    fn report(seq: u64) -> Report {
        let host = HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "0".into(),
            agent_started_at: None,
        };
        Report::empty(uuid::Uuid::new_v4(), "a", "u", seq, Utc::now(), host)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kaohe-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn reports_survive_reopening_in_order_until_removed() {
        let dir = tmpdir("order");
        let s = Spool::open(&dir, 1 << 20).expect("open");
        for seq in [3, 1, 2] {
            s.push(&mut report(seq)).expect("push");
        }
        fs::write(dir.join("00000000000000000009-x.tmp"), b"half a report").expect("tmp");
        let s = Spool::open(&dir, 1 << 20).expect("reopen");
        let p = s.pending().expect("list");
        assert_eq!(p.iter().map(|e| e.sequence).collect::<Vec<_>>(), vec![1, 2, 3]);
        assert!(
            !dir.join("00000000000000000009-x.tmp").exists(),
            "a torn write is cleaned"
        );
        let r: Report = serde_json::from_slice(&s.read(&p[0]).expect("read")).expect("json");
        assert_eq!(r.sequence, 1);
        s.remove(&p[0]).expect("ack");
        assert_eq!(s.pending().expect("list").len(), 2);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_the_next_report_says_how_many() {
        let dir = tmpdir("bound");
        let one = serde_json::to_vec(&report(1)).expect("json").len() as u64 + 32;
        let s = Spool::open(&dir, one * 3 + one / 2).expect("open");
        for seq in 1..=3 {
            assert_eq!(s.push(&mut report(seq)).expect("push"), 0);
        }
        assert_eq!(s.push(&mut report(4)).expect("push"), 1, "report 1 makes room");
        assert_eq!(s.push(&mut report(5)).expect("push"), 1, "report 2 makes room");
        let mut next = report(6);
        s.push(&mut next).expect("push");
        assert_eq!(next.spool_dropped, 3, "the count is cumulative: reports 1, 2 and 3");
        let s = Spool::open(&dir, one * 3 + one / 2).expect("reopen");
        assert_eq!(s.dropped(), 3, "a restart remembers");
        let seqs: Vec<u64> = s.pending().expect("list").iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![4, 5, 6]);
        let _ = fs::remove_dir_all(&dir);
    }
}

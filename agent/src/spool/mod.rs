//! The spool: where a report waits until the collector has acknowledged it, and the
//! agent's count of every report it could not deliver. It loses nothing silently: every
//! sequence number the agent gives out is delivered or in exactly one of these states, and
//! the collector can tell which from the reports it receives.
//!
//! - **On disk** (`SEQUENCE-REPORTID.json`, sequence zero-padded so the order on disk is the
//!   order of making): written to a temporary file, fsynced, renamed, directory fsynced.
//!   A report leaves the spool only when the collector acknowledged it.
//! - **Held in memory** while the spool cannot be written (a full disk, EIO, a read-only
//!   file system: any I/O error), up to `spool.memory_kib` (1 MiB by default) of reports,
//!   kept serialised (so the bound is what they cost: the agent stays under its 10 MiB).
//!   They are written to disk, oldest first and before any newer report, on the next report
//!   and every few seconds (`Spool::retry`), and may be delivered straight from memory
//!   meanwhile (a full disk with a working collector then loses nothing). Past the bound the
//!   oldest held report is dropped and counted.
//! - **Dropped**: pushed out of a full spool (`spool.max_mib`, oldest first) or of the
//!   memory bound, or still held in memory when the agent stopped. Counted in
//!   `spool_dropped`.
//! - **Rejected**: refused for good by the collector (a 4xx), moved to `rejected/` for a
//!   person to read and counted in `spool_rejected`. `rejected/` lives inside
//!   `spool.max_mib`: when room is needed, rejected reports go first (oldest first), since
//!   the collector will never take them and their count is already reported.
//!
//! A report is sent with two counts: of the sequence numbers below its own, how many were
//! dropped (`spool_dropped`) and how many rejected (`spool_rejected`). Reports are sent in
//! order, so for any two consecutive reports the collector receives, the sequence gap
//! between them equals the increase of `spool_dropped` plus that of `spool_rejected`.
//! (The copy on disk holds the counts as they stood when it was written.)
//!
//! **The state file** (`state`) keeps the last sequence number given out, the sequence
//! up to which every report is accounted for (on disk, delivered, rejected or dropped), the
//! two counts and a pending drop or rejection. It is made once (8 KiB, written in full, so
//! updating it never needs a new disk block: a full disk cannot stop the counting) and then
//! updated in place: two 4 KiB slots, each with a generation number and a SHA-256 checksum;
//! an update writes the older slot and fdatasyncs it, and reading takes the valid slot with
//! the highest generation, so a torn write leaves the previous state. A drop or rejection is
//! recorded (count and sequence) before the file is deleted or moved, and opening the
//! spool completes a half-done one; sequence numbers given out but neither on disk nor
//! accounted for (reports held in memory when the agent died) are counted as dropped on
//! opening. So a kill -9 at any instruction loses no count. What it can over-count, by one
//! report: a report delivered straight from memory whose acknowledgement arrived but whose
//! state update had not been written yet. What it cannot count: reports made while even
//! the state file could not be written (EIO), if the agent then dies before it can; they
//! are kept in memory and the counts written as soon as the file is writable again.
//!
//! A report leaves the agent only once its sequence number is in the state file, so a
//! restart never reuses one. The state file is made on the first open; if even that fails
//! (a disk already full), the agent does not start (exit 74) and numbers nothing. An agent
//! upgraded in place takes over the old `sequence` and `dropped.count` files then, and
//! counts as dropped the numbers the old agent gave out above its oldest waiting report
//! but never spooled.
//!
//! Failures are logged once per incident (the first, then at most once a minute, then the
//! recovery), not on every retry.

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::Report;

/// The state file's name in the spool directory.
pub const STATE_FILE: &str = "state";
/// Where reports the collector refused for good are kept, in the spool directory.
pub const REJECTED_DIR: &str = "rejected";
/// The count of dropped reports before the state file existed (migrated on first open).
const LEGACY_DROPPED_FILE: &str = "dropped.count";
/// Reports held in memory while the spool cannot be written, by default.
pub const DEFAULT_MEMORY_BYTES: u64 = 1 << 20;

const SLOT: usize = 4096;
const MAGIC: &[u8; 8] = b"KHSPOOL1";
/// Bytes of a slot covered by the checksum; the checksum follows them.
const BODY: usize = 64;
/// A failure that goes on is logged again at most this often.
const LOG_EVERY: Duration = Duration::from_secs(60);
/// A report read for sending counts as in flight this long (the delivery client's timeout
/// is 30 s); a report in flight is not dropped, so it is never both counted and delivered.
const IN_FLIGHT_FOR: Duration = Duration::from_secs(40);

mod files;
mod ledger;
mod open;
mod state;
mod write;

use files::*;
pub use files::{Peek, peek, write_durably};
use ledger::*;
use state::*;

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
    #[error(
        "报告队列状态文件 {path} 损坏: 两个副本的校验和都不对, 需要人工检查 \
         (spool state file corrupt: both copies fail their checksum; a person must look at it)"
    )]
    Corrupt { path: PathBuf },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One step the spool takes on disk. The fault hook (`Options::fault`) sees each step
/// before it is taken and can fail it: tests use it to fill the disk or to stop the
/// spool dead after any step, as a kill -9 would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Creating and writing a temporary file (a report, a rejected report, a new state file).
    WriteTemp,
    /// fsync of the temporary file.
    SyncTemp,
    /// Renaming a file into place (a written report, or a report moved to `rejected/`).
    Rename,
    /// fsync of a directory.
    SyncDir,
    /// Overwriting one slot of the state file.
    WriteState,
    /// fdatasync of the state file.
    SyncState,
    /// Deleting a file (a dropped report, a delivered one, a temporary file).
    Remove,
}

/// Called before every step on disk with the file it concerns; an error fails the step.
pub type FaultHook = Arc<dyn Fn(Step, &Path) -> std::io::Result<()> + Send + Sync>;

/// How a spool is opened.
#[derive(Clone)]
pub struct Options {
    /// Bound of the spool on disk (waiting and rejected reports), `spool.max_mib`.
    pub max_bytes: u64,
    /// Bound of the reports held in memory while the spool cannot be written,
    /// `spool.memory_kib`. The newest report is held even if it alone is larger.
    pub memory_bytes: u64,
    /// The sequence file of agents before the state file, taken over on first open.
    pub legacy_sequence: Option<PathBuf>,
    /// Test seam: see `Step`.
    pub fault: Option<FaultHook>,
}

impl Options {
    pub fn new(max_bytes: u64) -> Options {
        Options {
            max_bytes,
            memory_bytes: DEFAULT_MEMORY_BYTES,
            legacy_sequence: None,
            fault: None,
        }
    }
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("max_bytes", &self.max_bytes)
            .field("memory_bytes", &self.memory_bytes)
            .field("legacy_sequence", &self.legacy_sequence)
            .field("fault", &self.fault.is_some())
            .finish()
    }
}

/// A report waiting for acknowledgement, on disk or held in memory (then `path` is where
/// it will be written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: PathBuf,
    pub sequence: u64,
    pub bytes: u64,
}

/// What `Spool::push` did with a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pushed {
    pub sequence: u64,
    /// Held in memory: the spool could not be written (or older reports are still held).
    pub held: bool,
    /// Reports dropped to make room for it (oldest first, on disk or in memory).
    pub dropped: u64,
}

/// Where a rejected report went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejected {
    /// `None` when it was held in memory and could not be written to `rejected/`.
    pub path: Option<PathBuf>,
    /// Reports rejected in all.
    pub total: u64,
}

/// The spool's counts, as they stand (some perhaps not yet written to the state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// The last sequence number given out.
    pub sequence: u64,
    pub dropped: u64,
    pub rejected: u64,
    /// Reports held in memory, and their size.
    pub held: usize,
    pub held_bytes: u64,
}

pub struct Spool {
    dir: PathBuf,
    rejected_dir: PathBuf,
    max_bytes: u64,
    memory_bytes: u64,
    fault: Option<FaultHook>,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("dir", &self.dir)
            .field("max_bytes", &self.max_bytes)
            .field("memory_bytes", &self.memory_bytes)
            .finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The counts as they stand.
    pub fn counts(&self) -> Counts {
        let i = lock(&self.inner);
        Counts {
            sequence: i.state.sequence,
            dropped: i.state.dropped,
            rejected: i.state.rejected,
            held: i.held.len(),
            held_bytes: i.held_bytes,
        }
    }

    /// Reports dropped in all since the spool was created.
    pub fn dropped(&self) -> u64 {
        lock(&self.inner).state.dropped
    }

    /// Reports the collector refused for good, in all.
    pub fn rejected(&self) -> u64 {
        lock(&self.inner).state.rejected
    }

    /// Reports waiting to be sent, oldest first: those on disk, then those held in memory.
    /// Only reports whose sequence number is in the state file are listed (so one that was
    /// sent is never given out again after a crash).
    pub fn pending(&self) -> Result<Vec<Entry>, SpoolError> {
        let mut i = lock(&self.inner);
        let visible = i.file.written.sequence;
        let hidden = i.state.intent.sequence();
        let mut out: Vec<Entry> = list(&self.dir)?
            .into_iter()
            .filter(|e| e.sequence <= visible && Some(e.sequence) != hidden && i.held_index(e.sequence).is_none())
            .collect();
        out.extend(i.held.iter().filter(|h| h.sequence <= visible).map(|h| Entry {
            path: self.dir.join(&h.name),
            sequence: h.sequence,
            bytes: h.bytes(),
        }));
        // Drops below the oldest waiting report count for every report still to be sent.
        let oldest = out.first().map_or(i.state.sequence.saturating_add(1), |e| e.sequence);
        i.dropped_above.forget_below(oldest);
        Ok(out)
    }

    /// Gives the report its sequence number and the cumulative counts and spools it: on
    /// disk if it can (writing the reports held in memory first, and making room by
    /// dropping the oldest if the spool is full), else held in memory. Fails only if the
    /// report cannot be serialised; an I/O error is handled here (and logged once).
    pub fn push(&self, report: &mut Report) -> Result<Pushed, SpoolError> {
        let now = Instant::now();
        let mut i = lock(&self.inner);
        self.write_held(&mut i, now);
        let sequence = i.state.sequence.saturating_add(1);
        report.sequence = sequence;
        i.stamp(report);
        let mut held = Held::new(report)?;
        let mut dropped = 0;
        let mut failed = None;
        if i.held.is_empty() {
            match self.write_report(&mut i, report, now) {
                Ok(out) => {
                    i.state.sequence = sequence;
                    let _ = self.persist(&mut i, now);
                    self.recovered(&mut i, now);
                    return Ok(Pushed {
                        sequence,
                        held: false,
                        dropped: out,
                    });
                }
                Err((out, e)) => {
                    dropped = out;
                    i.stamp(report);
                    held = Held::new(report)?;
                    failed = Some(e);
                }
            }
        }
        i.state.sequence = sequence;
        i.held_bytes += held.bytes();
        i.held.push_back(held);
        if let Some(e) = failed {
            self.write_failed(&mut i, &e, now);
        }
        dropped += self.enforce_memory_bound(&mut i, now);
        let _ = self.persist(&mut i, now);
        Ok(Pushed {
            sequence,
            held: true,
            dropped,
        })
    }

    /// Writes the reports held in memory to disk, oldest first; how many were written.
    pub fn retry(&self) -> usize {
        let now = Instant::now();
        let mut i = lock(&self.inner);
        let n = self.write_held(&mut i, now);
        if !i.state.same(&i.file.written) {
            let _ = self.persist(&mut i, now);
        }
        n
    }

    /// Before the agent stops: writes what it can of the reports held in memory and counts
    /// the rest as dropped.
    pub fn close(&self) {
        let now = Instant::now();
        let mut i = lock(&self.inner);
        self.write_held(&mut i, now);
        let lost = i.held.len() as u64;
        if lost > 0 {
            i.held.clear();
            i.held_bytes = 0;
            i.state.dropped += lost;
            tracing::error!(
                lost,
                dropped_total = i.state.dropped,
                spool = %self.dir.display(),
                "the agent stops with reports it could not write to the spool; they are counted as dropped"
            );
        }
        if !i.state.same(&i.file.written) {
            let _ = self.persist(&mut i, now);
        }
    }

    /// Reads a waiting report for sending (from disk, or from memory) with the counts of
    /// the reports below it dropped and rejected, and marks it in flight, so that it is not
    /// dropped while it is being sent.
    pub fn read(&self, e: &Entry) -> Result<Vec<u8>, SpoolError> {
        let mut i = lock(&self.inner);
        i.in_flight = Some((e.sequence, Instant::now()));
        let mut r = match i.held_index(e.sequence) {
            Some(at) => i.held[at].report()?,
            None => {
                let bytes = fs::read(&e.path).map_err(io(&e.path))?;
                match serde_json::from_slice::<Report>(&bytes) {
                    Ok(r) => r,
                    // Not ours to mend: the collector will say what is wrong with it.
                    Err(_) => return Ok(bytes),
                }
            }
        };
        i.stamp_for_sending(&mut r);
        Ok(serde_json::to_vec(&r)?)
    }

    /// Removes an acknowledged report.
    pub fn remove(&self, e: &Entry) -> Result<(), SpoolError> {
        let now = Instant::now();
        let mut i = lock(&self.inner);
        if i.in_flight.is_some_and(|(s, _)| s == e.sequence) {
            i.in_flight = None;
        }
        if let Some(at) = i.held_index(e.sequence) {
            if let Some(h) = i.held.remove(at) {
                i.held_bytes -= h.bytes();
                i.delivered_from_memory += 1;
            }
            // Delivered: the state file says so as soon as it can.
            let _ = self.persist(&mut i, now);
            return Ok(());
        }
        self.remove_file(&e.path)
    }

    /// Moves a report the collector refused for good (a 4xx) to `rejected/`, for a person to
    /// read, counting it first. A report held in memory is written there if the disk allows.
    pub fn reject(&self, e: &Entry) -> Result<Rejected, SpoolError> {
        let now = Instant::now();
        let mut i = lock(&self.inner);
        if i.in_flight.is_some_and(|(s, _)| s == e.sequence) {
            i.in_flight = None;
        }
        if let Some(at) = i.held_index(e.sequence) {
            let Some(h) = i.held.remove(at) else {
                return Err(SpoolError::Io {
                    path: e.path.clone(),
                    source: std::io::ErrorKind::NotFound.into(),
                });
            };
            i.held_bytes -= h.bytes();
            i.state.rejected += 1;
            let _ = self.persist(&mut i, now);
            let path = h.report().ok().and_then(|mut r| {
                i.stamp(&mut r);
                self.keep_rejected(&r)
            });
            return Ok(Rejected {
                path,
                total: i.state.rejected,
            });
        }
        if i.state.intent != Intent::Reject(e.sequence) {
            let before = i.state;
            i.state.rejected += 1;
            i.state.intent = Intent::Reject(e.sequence);
            if let Err(err) = self.persist(&mut i, now) {
                i.state = before;
                return Err(err);
            }
        }
        let to = self.rejected_dir.join(e.path.file_name().unwrap_or_default());
        let moved = fs::create_dir_all(&self.rejected_dir)
            .and_then(|()| step(self.fault.as_ref(), Step::Rename, &e.path))
            .and_then(|()| fs::rename(&e.path, &to));
        let kept = match moved {
            Ok(()) => {
                let _ = sync_dir(self.fault.as_ref(), &self.rejected_dir);
                let _ = sync_dir(self.fault.as_ref(), &self.dir);
                Some(to)
            }
            // No room to move it aside (a full disk): it is counted already, so it goes, and
            // can never be sent again nor counted twice.
            Err(err) => {
                tracing::warn!(error = %err, sequence = e.sequence, "cannot move a refused report to rejected/; it is counted and removed");
                self.remove_file(&e.path)?;
                None
            }
        };
        i.state.intent = Intent::None;
        Ok(Rejected {
            path: kept,
            total: i.state.rejected,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use kaohe_rubric::evidence::HostFacts;

    fn report() -> Report {
        let host = HostFacts {
            hostname: "h".into(),
            os: "linux".into(),
            boot_time: None,
            agent_version: "0".into(),
            agent_started_at: None,
        };
        Report::empty(uuid::Uuid::new_v4(), "a", "u", 0, Utc::now(), host)
    }

    fn tmpdir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("kaohe-spool-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn one() -> u64 {
        serde_json::to_vec(&report()).expect("json").len() as u64 + 40
    }

    #[test]
    fn reports_survive_reopening_in_order_until_removed() {
        let dir = tmpdir("order");
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("open");
        for want in 1..=3 {
            assert_eq!(s.push(&mut report()).expect("push").sequence, want);
        }
        fs::write(dir.join("00000000000000000009-x.tmp"), b"half a report").expect("tmp");
        drop(s);
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("reopen");
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
        assert_eq!(s.push(&mut report()).expect("push").sequence, 4, "numbering goes on");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_full_spool_drops_the_oldest_and_the_next_report_says_how_many() {
        let dir = tmpdir("bound");
        let max = one() * 3 + one() / 2;
        let s = Spool::open(&dir, Options::new(max)).expect("open");
        for _ in 1..=3 {
            assert_eq!(s.push(&mut report()).expect("push").dropped, 0);
        }
        assert_eq!(s.push(&mut report()).expect("push").dropped, 1, "report 1 makes room");
        assert_eq!(s.push(&mut report()).expect("push").dropped, 1, "report 2 makes room");
        let mut next = report();
        s.push(&mut next).expect("push");
        assert_eq!(next.spool_dropped, 3, "the count is cumulative: reports 1, 2 and 3");
        drop(s);
        let s = Spool::open(&dir, Options::new(max)).expect("reopen");
        assert_eq!(s.dropped(), 3, "a restart remembers");
        let seqs: Vec<u64> = s.pending().expect("list").iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![4, 5, 6]);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn an_agent_upgraded_in_place_goes_on_from_its_old_sequence_and_counts_what_it_lost() {
        let dir = tmpdir("migrate");
        let spool = dir.join("spool");
        fs::create_dir_all(&spool).expect("dir");
        // The older agent: reports 40 and 42 waiting, 41 and 43 given out but lost (F6).
        for seq in [40, 42] {
            let mut r = report();
            r.sequence = seq;
            fs::write(spool.join(file_name(&r)), serde_json::to_vec(&r).expect("json")).expect("old report");
        }
        fs::write(dir.join("sequence"), "43").expect("old sequence");
        fs::write(spool.join("dropped.count"), "7").expect("old count");
        let options = Options {
            legacy_sequence: Some(dir.join("sequence")),
            ..Options::new(1 << 20)
        };
        let s = Spool::open(&spool, options.clone()).expect("open");
        assert_eq!(s.dropped(), 9, "7 dropped before, 41 and 43 lost");
        let mut r = report();
        assert_eq!(s.push(&mut r).expect("push").sequence, 44);
        assert!(!dir.join("sequence").exists() && !spool.join("dropped.count").exists());
        let sent: Vec<(u64, u64)> = s
            .pending()
            .expect("pending")
            .iter()
            .map(|e| {
                let r: Report = serde_json::from_slice(&s.read(e).expect("read")).expect("json");
                (r.sequence, r.spool_dropped)
            })
            .collect();
        assert_eq!(
            sent,
            vec![(40, 7), (42, 8), (44, 9)],
            "each gap is counted by the report after it"
        );
        drop(s);
        let s = Spool::open(&spool, options).expect("reopen");
        assert_eq!((s.counts().sequence, s.dropped()), (44, 9));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_torn_state_slot_falls_back_to_the_previous_state_and_two_are_corruption() {
        let dir = tmpdir("torn");
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("open");
        s.push(&mut report()).expect("push");
        s.push(&mut report()).expect("push");
        drop(s);
        let path = dir.join(STATE_FILE);
        let mut bytes = fs::read(&path).expect("state");
        assert_eq!(bytes.len(), 2 * SLOT, "the state file is made whole");
        let newest = (0..2)
            .max_by_key(|i| State::decode(&bytes[i * SLOT..(i + 1) * SLOT]).map_or(0, |s| s.generation))
            .expect("a slot");
        bytes[newest * SLOT + 20] ^= 0xff;
        fs::write(&path, &bytes).expect("tear");
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("reopen");
        assert_eq!(
            s.counts().sequence,
            2,
            "the older slot, with the report on disk, gives 2"
        );
        drop(s);
        let mut bytes = fs::read(&path).expect("state");
        bytes[20] ^= 0xff;
        bytes[SLOT + 20] ^= 0xff;
        fs::write(&path, &bytes).expect("tear both");
        let e = Spool::open(&dir, Options::new(1 << 20)).expect_err("corrupt");
        assert!(e.to_string().contains("corrupt"), "{e}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn dropped_numbers_above_a_report_are_counted_by_ranges() {
        let mut r = Ranges::default();
        r.insert_range(5, 1_000_004);
        r.insert(1_000_005);
        r.insert(2_000_000);
        assert_eq!(r.0.len(), 2, "adjacent numbers join a range");
        assert_eq!(r.count_above(0), 1_000_002);
        assert_eq!(r.count_above(4), 1_000_002);
        assert_eq!(r.count_above(5), 1_000_001);
        assert_eq!(r.count_above(1_000_005), 1);
        assert_eq!(r.count_above(2_000_000), 0);
        r.forget_below(500_000);
        assert_eq!(r.count_above(0), 500_007);
        r.forget_below(1_500_000);
        assert_eq!((r.count_above(0), r.0.len()), (1, 1));
    }

    #[test]
    fn a_stray_file_with_a_huge_sequence_number_does_not_hang_the_opening() {
        let dir = tmpdir("stray");
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("open");
        s.push(&mut report()).expect("push");
        drop(s);
        fs::write(dir.join("00000100000000000000-stray.json"), b"{}").expect("stray");
        let s = Spool::open(&dir, Options::new(1 << 20)).expect("reopen");
        assert_eq!(s.counts().sequence, 100_000_000_000_000);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn incidents_log_the_first_failure_then_once_a_minute() {
        let t0 = Instant::now();
        let mut i = Incident::default();
        assert_eq!(i.fail(t0), Some(true));
        assert_eq!(i.fail(t0 + Duration::from_secs(5)), None);
        assert_eq!(i.fail(t0 + Duration::from_secs(59)), None);
        assert_eq!(i.fail(t0 + Duration::from_secs(61)), Some(false));
        assert_eq!(i.take_unlogged(), 4);
        assert_eq!(i.fail(t0 + Duration::from_secs(62)), None);
        assert_eq!(i.recover(t0 + Duration::from_secs(70)), Some(Duration::from_secs(70)));
        assert_eq!(i.recover(t0 + Duration::from_secs(71)), None, "recovered once");
        assert_eq!(i.fail(t0 + Duration::from_secs(72)), Some(true), "a new incident");
    }
}

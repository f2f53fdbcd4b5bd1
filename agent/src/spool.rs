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

use std::collections::{BTreeSet, VecDeque};
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
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

/// An operation on a spooled file that was counted before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Intent {
    #[default]
    None,
    /// Delete the report with this sequence (counted in `dropped`).
    Drop(u64),
    /// Move the report with this sequence to `rejected/` (counted in `rejected`).
    Reject(u64),
}

impl Intent {
    fn sequence(self) -> Option<u64> {
        match self {
            Intent::None => None,
            Intent::Drop(s) | Intent::Reject(s) => Some(s),
        }
    }
}

/// What the state file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct State {
    generation: u64,
    /// The last sequence number given out.
    sequence: u64,
    /// Every sequence number up to this one is on disk, delivered, rejected or dropped.
    accounted: u64,
    dropped: u64,
    rejected: u64,
    intent: Intent,
}

impl State {
    fn encode(&self) -> [u8; SLOT] {
        let mut b = [0u8; SLOT];
        b[0..8].copy_from_slice(MAGIC);
        let (kind, seq) = match self.intent {
            Intent::None => (0u64, 0),
            Intent::Drop(s) => (1, s),
            Intent::Reject(s) => (2, s),
        };
        let fields = [
            self.generation,
            self.sequence,
            self.accounted,
            self.dropped,
            self.rejected,
            kind,
            seq,
        ];
        for (i, v) in fields.iter().enumerate() {
            b[8 + i * 8..16 + i * 8].copy_from_slice(&v.to_le_bytes());
        }
        let sum = ring::digest::digest(&ring::digest::SHA256, &b[..BODY]);
        b[BODY..BODY + 32].copy_from_slice(sum.as_ref());
        b
    }

    /// A slot's state, if its checksum holds.
    fn decode(b: &[u8]) -> Option<State> {
        if b.len() < BODY + 32 || &b[0..8] != MAGIC {
            return None;
        }
        let sum = ring::digest::digest(&ring::digest::SHA256, &b[..BODY]);
        if sum.as_ref() != &b[BODY..BODY + 32] {
            return None;
        }
        let field = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[8 + i * 8..16 + i * 8]);
            u64::from_le_bytes(a)
        };
        let intent = match (field(5), field(6)) {
            (0, _) => Intent::None,
            (1, s) => Intent::Drop(s),
            (2, s) => Intent::Reject(s),
            _ => return None,
        };
        Some(State {
            generation: field(0),
            sequence: field(1),
            accounted: field(2),
            dropped: field(3),
            rejected: field(4),
            intent,
        })
    }

    /// The newest valid slot of a state file's contents.
    fn newest(file: &[u8]) -> Option<State> {
        (0..2)
            .filter_map(|i| file.get(i * SLOT..(i + 1) * SLOT).and_then(State::decode))
            .max_by_key(|s| s.generation)
    }

    /// The same state, whatever the generation.
    fn same(&self, other: &State) -> bool {
        State {
            generation: other.generation,
            ..*self
        } == *other
    }
}

/// The state file, open for updates in place.
#[derive(Debug)]
struct StateFile {
    path: PathBuf,
    file: File,
    /// What is on disk.
    written: State,
}

impl StateFile {
    fn load(path: &Path) -> Result<Option<StateFile>, SpoolError> {
        let mut file = match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(path)(e)),
        };
        let mut buf = Vec::with_capacity(2 * SLOT);
        file.read_to_end(&mut buf).map_err(io(path))?;
        let best = State::newest(&buf);
        match best {
            Some(written) => Ok(Some(StateFile {
                path: path.to_path_buf(),
                file,
                written,
            })),
            None => Err(SpoolError::Corrupt {
                path: path.to_path_buf(),
            }),
        }
    }

    /// Makes the file whole (both slots written), durably, holding `state`.
    fn create(fault: Option<&FaultHook>, dir: &Path, path: &Path, state: State) -> Result<StateFile, SpoolError> {
        let written = State { generation: 1, ..state };
        let mut data = vec![0u8; 2 * SLOT];
        data[SLOT..].copy_from_slice(&written.encode());
        durable_write(fault, dir, path, &data)?;
        let file = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
        Ok(StateFile {
            path: path.to_path_buf(),
            file,
            written,
        })
    }

    /// Writes `next` over the older slot and fdatasyncs it.
    fn write(&mut self, fault: Option<&FaultHook>, next: State) -> Result<(), SpoolError> {
        let next = State {
            generation: self.written.generation + 1,
            ..next
        };
        let offset = (next.generation % 2) * SLOT as u64;
        step(fault, Step::WriteState, &self.path).map_err(io(&self.path))?;
        self.file
            .seek(SeekFrom::Start(offset))
            .and_then(|_| self.file.write_all(&next.encode()))
            .map_err(io(&self.path))?;
        step(fault, Step::SyncState, &self.path).map_err(io(&self.path))?;
        self.file.sync_data().map_err(io(&self.path))?;
        self.written = next;
        Ok(())
    }
}

/// A failure that may go on: logged when it starts, then at most once a minute.
#[derive(Debug, Default)]
struct Incident {
    since: Option<Instant>,
    last_logged: Option<Instant>,
    /// Failures since the last log line.
    unlogged: u64,
}

impl Incident {
    /// Records a failure. `Some(true)` for the first of an incident, `Some(false)` when a
    /// reminder is due, `None` when this one is not to be logged.
    fn fail(&mut self, now: Instant) -> Option<bool> {
        self.unlogged += 1;
        let due = match (self.since, self.last_logged) {
            (None, _) => {
                self.since = Some(now);
                Some(true)
            }
            (Some(_), Some(t)) if now.saturating_duration_since(t) < LOG_EVERY => None,
            _ => Some(false),
        };
        if due.is_some() {
            self.last_logged = Some(now);
        }
        due
    }

    /// Failures since the last log line, counted as logged.
    fn take_unlogged(&mut self) -> u64 {
        std::mem::take(&mut self.unlogged)
    }

    /// Ends the incident: how long it lasted, if there was one.
    fn recover(&mut self, now: Instant) -> Option<Duration> {
        let since = self.since?;
        *self = Incident::default();
        Some(now.saturating_duration_since(since))
    }
}

/// Sequence numbers as inclusive ranges (a gap of a million numbers is one entry).
#[derive(Debug, Default)]
struct Ranges(std::collections::BTreeMap<u64, u64>);

impl Ranges {
    fn insert(&mut self, s: u64) {
        self.insert_range(s, s);
    }

    /// Adds `from..=to` (which must not overlap what is there; drops never do).
    fn insert_range(&mut self, from: u64, to: u64) {
        if from > to {
            return;
        }
        // Joined to a range ending just below, if any.
        match self.0.range(..from).next_back() {
            Some((&start, &end)) if end.checked_add(1) == Some(from) => {
                self.0.insert(start, to);
            }
            _ => {
                self.0.insert(from, to);
            }
        }
    }

    /// How many numbers above `s`.
    fn count_above(&self, s: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .take_while(|(_, end)| **end > s)
            .map(|(start, end)| end - (*start).max(s + 1) + 1)
            .sum()
    }

    /// Forgets the numbers below `s`.
    fn forget_below(&mut self, s: u64) {
        let above = self.0.split_off(&s);
        let straddling = self.0.last_key_value().map(|(_, end)| *end).filter(|end| *end >= s);
        self.0 = above;
        if let Some(end) = straddling {
            self.0.insert(s, end);
        }
    }
}

/// A report held in memory, serialised (so the memory bound is what it costs).
#[derive(Debug)]
struct Held {
    sequence: u64,
    /// Its file name in the spool.
    name: String,
    body: Vec<u8>,
}

impl Held {
    fn new(report: &Report) -> Result<Held, serde_json::Error> {
        let mut body = serde_json::to_vec(report)?;
        body.shrink_to_fit();
        Ok(Held {
            sequence: report.sequence,
            name: file_name(report),
            body,
        })
    }

    fn bytes(&self) -> u64 {
        self.body.len() as u64
    }

    fn report(&self) -> Result<Report, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[derive(Debug)]
struct Inner {
    /// The state as it stands; `file.written` is what is on disk.
    state: State,
    file: StateFile,
    held: VecDeque<Held>,
    held_bytes: u64,
    /// Dropped sequence numbers that may be above a waiting report (reports held in
    /// memory, or one next to the report in flight): a report is sent counting only the
    /// drops below its own number.
    dropped_above: Ranges,
    /// The report last read for sending, and when.
    in_flight: Option<(u64, Instant)>,
    /// Reports could not be written.
    write_trouble: Incident,
    /// The state file could not be written.
    state_trouble: Incident,
    /// Reports were dropped (memory bound or spool full).
    overflow: Incident,
    /// Since `write_trouble` began: written from memory, delivered from memory, and the
    /// dropped count when it began.
    written_from_memory: u64,
    delivered_from_memory: u64,
    dropped_before: u64,
}

impl Inner {
    fn in_flight(&self, sequence: u64, now: Instant) -> bool {
        self.in_flight
            .is_some_and(|(s, t)| s == sequence && now.saturating_duration_since(t) < IN_FLIGHT_FOR)
    }

    fn held_index(&self, sequence: u64) -> Option<usize> {
        self.held.iter().position(|h| h.sequence == sequence)
    }

    /// Sets the counts a report is written with: as they stand.
    fn stamp(&self, report: &mut Report) {
        report.spool_dropped = self.state.dropped;
        report.spool_rejected = self.state.rejected;
    }

    /// Sets the counts a report is sent with: the reports below its own sequence number
    /// dropped and rejected. Reports are sent in order, so every number below it is settled
    /// and these do not change when it is sent again.
    fn stamp_for_sending(&self, report: &mut Report) {
        let above = self.dropped_above.count_above(report.sequence);
        report.spool_dropped = self.state.dropped.saturating_sub(above);
        report.spool_rejected = self.state.rejected;
    }

    fn drop_counted(&mut self, sequence: u64) {
        self.state.dropped += 1;
        self.dropped_above.insert(sequence);
    }
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

fn step(fault: Option<&FaultHook>, s: Step, path: &Path) -> std::io::Result<()> {
    match fault {
        Some(f) => f(s, path),
        None => Ok(()),
    }
}

fn file_name(report: &Report) -> String {
    format!("{:020}-{}.json", report.sequence, report.report_id)
}

/// The reports in `dir` (`SEQUENCE-ID.json`), oldest first.
fn list(dir: &Path) -> Result<Vec<Entry>, SpoolError> {
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

fn remove_temporaries(dir: &Path) {
    if let Ok(read) = fs::read_dir(dir) {
        for e in read.flatten() {
            if e.file_name().to_string_lossy().ends_with(".tmp") {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Spool {
    /// Opens (creating) the spool in `dir`: removes temporary files of a crashed write,
    /// reads the state file (or makes it, taking over the files of an older agent),
    /// completes a drop or rejection a crash interrupted, and counts as dropped the reports
    /// that were held in memory when the agent last stopped.
    pub fn open(dir: &Path, options: Options) -> Result<Spool, SpoolError> {
        let fault = options.fault.as_ref();
        fs::create_dir_all(dir).map_err(io(dir))?;
        let rejected_dir = dir.join(REJECTED_DIR);
        remove_temporaries(dir);
        remove_temporaries(&rejected_dir);
        // Made now, while there is room, so that moving a report there later needs none.
        let _ = fs::create_dir_all(&rejected_dir);
        let disk = list(dir)?;
        let on_disk_max = disk.last().map_or(0, |e| e.sequence);
        let path = dir.join(STATE_FILE);
        let mut file = match StateFile::load(&path)? {
            Some(f) => f,
            None => Self::migrate(fault, dir, &path, &disk, options.legacy_sequence.as_deref())?,
        };
        let mut state = file.written;
        state.sequence = state.sequence.max(on_disk_max);
        // A drop or rejection counted but perhaps not done.
        match state.intent {
            Intent::None => {}
            Intent::Drop(s) => {
                for e in disk.iter().filter(|e| e.sequence == s) {
                    step(fault, Step::Remove, &e.path).map_err(io(&e.path))?;
                    match fs::remove_file(&e.path) {
                        Ok(()) => {}
                        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                        Err(err) => return Err(io(&e.path)(err)),
                    }
                    tracing::info!(report = %e.path.display(), "completed the drop of a report interrupted by a crash");
                }
                sync_dir(fault, dir)?;
            }
            Intent::Reject(s) => {
                for e in disk.iter().filter(|e| e.sequence == s) {
                    let to = rejected_dir.join(e.path.file_name().unwrap_or_default());
                    let moved = fs::create_dir_all(&rejected_dir)
                        .and_then(|()| step(fault, Step::Rename, &e.path))
                        .and_then(|()| fs::rename(&e.path, &to));
                    match moved {
                        Ok(()) => {
                            sync_dir(fault, &rejected_dir)?;
                            tracing::info!(report = %to.display(), "completed the rejection of a report interrupted by a crash");
                        }
                        // A full disk must not keep the agent from starting: the report is
                        // counted as rejected already, so it goes.
                        Err(err) => {
                            tracing::warn!(error = %err, report = %e.path.display(), "cannot move a refused report to rejected/; it is counted and removed");
                            step(fault, Step::Remove, &e.path).map_err(io(&e.path))?;
                            match fs::remove_file(&e.path) {
                                Ok(()) => {}
                                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                                Err(err) => return Err(io(&e.path)(err)),
                            }
                        }
                    }
                    sync_dir(fault, dir)?;
                }
            }
        }
        state.intent = Intent::None;
        // Sequence numbers given out after `accounted` that are not on disk were reports
        // held in memory: lost with the process, so counted as dropped.
        let kept = disk
            .iter()
            .filter(|e| e.sequence > state.accounted && e.sequence <= state.sequence)
            .map(|e| e.sequence)
            .collect::<std::collections::BTreeSet<_>>()
            .len() as u64;
        let lost = state.sequence.saturating_sub(state.accounted).saturating_sub(kept);
        state.dropped += lost;
        state.accounted = state.sequence;
        // Numbers missing above the oldest waiting report were dropped (reports are sent
        // in order, so none of them was delivered or rejected).
        let waiting: BTreeSet<u64> = disk
            .iter()
            .map(|e| e.sequence)
            .filter(|s| Some(*s) != file.written.intent.sequence())
            .collect();
        let mut dropped_above = Ranges::default();
        for (a, b) in waiting
            .iter()
            .zip(waiting.iter().skip(1).chain([&state.sequence.saturating_add(1)]))
        {
            dropped_above.insert_range(a.saturating_add(1), b.saturating_sub(1));
        }
        if !state.same(&file.written) {
            file.write(fault, state)?;
        }
        if lost > 0 {
            tracing::warn!(
                lost,
                dropped_total = state.dropped,
                spool = %dir.display(),
                "sequence numbers given out but never spooled (reports held in memory when the agent stopped) are counted as dropped"
            );
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            rejected_dir,
            max_bytes: options.max_bytes,
            memory_bytes: options.memory_bytes,
            fault: options.fault.clone(),
            inner: Mutex::new(Inner {
                state: file.written,
                file,
                held: VecDeque::new(),
                held_bytes: 0,
                dropped_above,
                in_flight: None,
                write_trouble: Incident::default(),
                state_trouble: Incident::default(),
                overflow: Incident::default(),
                written_from_memory: 0,
                delivered_from_memory: 0,
                dropped_before: 0,
            }),
        })
    }

    /// Makes the state file from an older agent's `sequence` and `dropped.count` files (then
    /// removes them) or, for a new spool, from nothing. Numbers the older agent gave out
    /// above its oldest waiting report but never spooled (it lost them silently) are left
    /// unaccounted for, so that opening counts them as dropped.
    fn migrate(
        fault: Option<&FaultHook>,
        dir: &Path,
        path: &Path,
        disk: &[Entry],
        legacy_sequence: Option<&Path>,
    ) -> Result<StateFile, SpoolError> {
        let read_u64 = |p: &Path| -> Option<u64> { fs::read_to_string(p).ok()?.trim().parse().ok() };
        let dropped_file = dir.join(LEGACY_DROPPED_FILE);
        let old_sequence = legacy_sequence.and_then(read_u64);
        let old_dropped = read_u64(&dropped_file);
        let sequence = old_sequence.unwrap_or(0).max(disk.last().map_or(0, |e| e.sequence));
        let state = State {
            generation: 0,
            sequence,
            accounted: disk.first().map_or(sequence, |e| e.sequence),
            dropped: old_dropped.unwrap_or(0),
            rejected: 0,
            intent: Intent::None,
        };
        let file = StateFile::create(fault, dir, path, state)?;
        if old_sequence.is_some() || old_dropped.is_some() {
            for p in legacy_sequence.into_iter().chain([dropped_file.as_path()]) {
                let _ = fs::remove_file(p);
            }
            tracing::info!(
                sequence,
                dropped = state.dropped,
                state = %path.display(),
                "took over the report sequence and dropped count of the previous agent"
            );
        }
        Ok(file)
    }

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

    /// Writes a rejected report that was held in memory to `rejected/`, making room among
    /// the rejected ones; best effort.
    fn keep_rejected(&self, r: &Report) -> Option<PathBuf> {
        let body = serde_json::to_vec(r).ok()?;
        let path = self.rejected_dir.join(file_name(r));
        let kept = (|| {
            let rejected = list(&self.rejected_dir)?;
            let mut total: u64 = list(&self.dir)?.iter().chain(&rejected).map(|e| e.bytes).sum();
            for old in &rejected {
                if total + body.len() as u64 <= self.max_bytes {
                    break;
                }
                self.remove_file(&old.path)?;
                total -= old.bytes;
            }
            fs::create_dir_all(&self.rejected_dir).map_err(io(&self.rejected_dir))?;
            durable_write(self.fault.as_ref(), &self.rejected_dir, &path, &body)
        })();
        match kept {
            Ok(()) => Some(path),
            Err(e) => {
                tracing::warn!(error = %e, sequence = r.sequence, "cannot keep a rejected report held in memory; it is counted but not kept");
                None
            }
        }
    }

    /// Writes held reports to disk, oldest first, until one fails.
    fn write_held(&self, i: &mut Inner, now: Instant) -> usize {
        let mut n = 0;
        while let Some(h) = i.held.front() {
            let Ok(mut r) = h.report() else {
                // Cannot happen (it was serialised here); were it so, it must not block the rest.
                if let Some(h) = i.held.pop_front() {
                    i.held_bytes -= h.bytes();
                    i.drop_counted(h.sequence);
                    tracing::error!(
                        sequence = h.sequence,
                        "a report held in memory cannot be read back; dropped"
                    );
                }
                continue;
            };
            match self.write_report(i, &mut r, now) {
                Ok(_) => {
                    if let Some(h) = i.held.pop_front() {
                        i.held_bytes -= h.bytes();
                    }
                    n += 1;
                }
                Err((_, e)) => {
                    self.write_failed(i, &e, now);
                    break;
                }
            }
        }
        if n > 0 {
            i.written_from_memory += n as u64;
            let _ = self.persist(i, now);
            if i.held.is_empty() {
                self.recovered(i, now);
            }
        }
        n
    }

    /// Makes room for `report` and writes it durably with the counts as they then stand.
    /// On failure, how many were dropped making room, and why.
    fn write_report(&self, i: &mut Inner, report: &mut Report, now: Instant) -> Result<u64, (u64, SpoolError)> {
        let estimate = serde_json::to_vec(report).map_err(|e| (0, e.into()))?.len() as u64 + 32;
        let dropped = self.make_room(i, estimate, now)?;
        i.stamp(report);
        let body = serde_json::to_vec(report).map_err(|e| (dropped, e.into()))?;
        let path = self.dir.join(file_name(report));
        durable_write(self.fault.as_ref(), &self.dir, &path, &body).map_err(|e| (dropped, e))?;
        Ok(dropped)
    }

    /// Frees room for `need` bytes within `max_bytes`: rejected reports first, then the
    /// oldest waiting ones (except the one in flight), each drop counted before the file
    /// goes. How many waiting reports were dropped, also when it fails.
    fn make_room(&self, i: &mut Inner, need: u64, now: Instant) -> Result<u64, (u64, SpoolError)> {
        let disk = list(&self.dir).map_err(|e| (0, e))?;
        let rejected = list(&self.rejected_dir).map_err(|e| (0, e))?;
        let mut total: u64 = disk.iter().chain(&rejected).map(|e| e.bytes).sum();
        if total + need <= self.max_bytes {
            return Ok(0);
        }
        let mut freed_rejected = 0u64;
        for r in &rejected {
            if total + need <= self.max_bytes {
                break;
            }
            self.remove_file(&r.path).map_err(|e| (0, e))?;
            total -= r.bytes;
            freed_rejected += 1;
        }
        let mut dropped = 0u64;
        for e in &disk {
            if total + need <= self.max_bytes {
                break;
            }
            if i.in_flight(e.sequence, now) || i.held_index(e.sequence).is_some() {
                continue;
            }
            self.drop_file(i, e, now).map_err(|err| (dropped, err))?;
            total -= e.bytes;
            dropped += 1;
        }
        if (dropped > 0 || freed_rejected > 0)
            && let Some(first) = i.overflow.fail(now)
        {
            tracing::warn!(
                dropped,
                rejected_removed = freed_rejected,
                dropped_total = i.state.dropped,
                max_bytes = self.max_bytes,
                spool = %self.dir.display(),
                drops_since_last_log = i.overflow.take_unlogged(),
                "{}",
                if first {
                    "spool full: dropped the oldest reports"
                } else {
                    "spool still full: dropping the oldest reports"
                }
            );
        }
        Ok(dropped)
    }

    /// Drops one waiting report: counts it durably, then deletes it.
    fn drop_file(&self, i: &mut Inner, e: &Entry, now: Instant) -> Result<(), SpoolError> {
        if i.state.intent != Intent::Drop(e.sequence) {
            let before = i.state;
            i.state.dropped += 1;
            i.state.intent = Intent::Drop(e.sequence);
            if let Err(err) = self.persist(i, now) {
                i.state = before;
                return Err(err);
            }
            i.dropped_above.insert(e.sequence);
        }
        self.remove_file(&e.path)?;
        let _ = sync_dir(self.fault.as_ref(), &self.dir);
        i.state.intent = Intent::None;
        Ok(())
    }

    /// Past the memory bound, drops the oldest held reports (not the one in flight, and
    /// always keeping the newest).
    fn enforce_memory_bound(&self, i: &mut Inner, now: Instant) -> u64 {
        let mut dropped = 0;
        while i.held_bytes > self.memory_bytes && i.held.len() > 1 {
            let front = i.held.front().map_or(0, |h| h.sequence);
            let at = usize::from(i.in_flight(front, now));
            if let Some(h) = i.held.remove(at) {
                i.held_bytes -= h.bytes();
                i.drop_counted(h.sequence);
                dropped += 1;
            }
        }
        if dropped > 0
            && let Some(first) = i.overflow.fail(now)
        {
            tracing::warn!(
                dropped,
                dropped_total = i.state.dropped,
                held = i.held.len(),
                memory_bytes = self.memory_bytes,
                drops_since_last_log = i.overflow.take_unlogged(),
                "{}",
                if first {
                    "reports held in memory reached their bound: dropped the oldest"
                } else {
                    "reports held in memory still at their bound: dropping the oldest"
                }
            );
        }
        dropped
    }

    /// Writes the state as it stands (with `accounted` up to the oldest held report).
    fn persist(&self, i: &mut Inner, now: Instant) -> Result<(), SpoolError> {
        i.state.accounted = match i.held.front() {
            Some(h) => h.sequence - 1,
            None => i.state.sequence,
        };
        if i.state.same(&i.file.written) {
            return Ok(());
        }
        let next = i.state;
        match i.file.write(self.fault.as_ref(), next) {
            Ok(()) => {
                i.state.generation = i.file.written.generation;
                if let Some(lasted) = i.state_trouble.recover(now) {
                    tracing::info!(
                        state = %i.file.path.display(),
                        seconds = lasted.as_secs(),
                        sequence = i.state.sequence,
                        dropped_total = i.state.dropped,
                        rejected_total = i.state.rejected,
                        "spool state file writable again; counts written"
                    );
                }
                Ok(())
            }
            Err(e) => {
                if let Some(first) = i.state_trouble.fail(now) {
                    tracing::error!(
                        error = %e,
                        state = %i.file.path.display(),
                        sequence = i.state.sequence,
                        dropped_total = i.state.dropped,
                        rejected_total = i.state.rejected,
                        failures = i.state_trouble.take_unlogged(),
                        "{}",
                        if first {
                            "cannot write the spool state file; counts are kept in memory until it can"
                        } else {
                            "spool state file still not writable"
                        }
                    );
                }
                Err(e)
            }
        }
    }

    fn write_failed(&self, i: &mut Inner, e: &SpoolError, now: Instant) {
        let Some(first) = i.write_trouble.fail(now) else {
            return;
        };
        if first {
            i.written_from_memory = 0;
            i.delivered_from_memory = 0;
            i.dropped_before = i.state.dropped;
        }
        tracing::error!(
            error = %e,
            spool = %self.dir.display(),
            held = i.held.len(),
            held_bytes = i.held_bytes,
            memory_bytes = self.memory_bytes,
            dropped_total = i.state.dropped,
            failures = i.write_trouble.take_unlogged(),
            "{}",
            if first {
                "cannot write the report to the spool; holding reports in memory and retrying"
            } else {
                "spool still not writable; holding reports in memory"
            }
        );
    }

    fn recovered(&self, i: &mut Inner, now: Instant) {
        if let Some(lasted) = i.write_trouble.recover(now) {
            i.overflow.recover(now);
            tracing::info!(
                spool = %self.dir.display(),
                written_from_memory = i.written_from_memory,
                delivered_from_memory = i.delivered_from_memory,
                dropped = i.state.dropped - i.dropped_before,
                seconds = lasted.as_secs(),
                "spool writable again, {} reports written from memory",
                i.written_from_memory
            );
        }
    }

    fn remove_file(&self, path: &Path) -> Result<(), SpoolError> {
        step(self.fault.as_ref(), Step::Remove, path).map_err(io(path))?;
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(path)(err)),
        }
    }
}

fn sync_dir(fault: Option<&FaultHook>, dir: &Path) -> Result<(), SpoolError> {
    step(fault, Step::SyncDir, dir).map_err(io(dir))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Writes `data` to `path` so that after return it survives a crash: temp file, fsync,
/// rename, fsync of the directory.
pub fn write_durably(dir: &Path, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
    durable_write(None, dir, path, data)
}

fn durable_write(fault: Option<&FaultHook>, dir: &Path, path: &Path, data: &[u8]) -> Result<(), SpoolError> {
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

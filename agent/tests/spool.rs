//! The spool loses nothing silently, tested through its fault seam (`spool::Options::fault`):
//! a disk that is full or fails (ENOSPC, EIO, EROFS), and a disk that dies after any step
//! (as under kill -9: what was written stays, nothing more happens), then reopened.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use chrono::Utc;
use common::{assert_gaps_accounted, unaccounted_gaps};
use kaohe_agent::spool::{FaultHook, Options, Spool, Step};
use kaohe_rubric::evidence::{HostFacts, Report};

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const EROFS: i32 = 30;

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

/// Room for one report on disk (with its counts and a margin).
fn one() -> u64 {
    serde_json::to_vec(&report()).expect("json").len() as u64 + 40
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("kaohe-spooltest-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn sequence_of(path: &Path) -> Option<u64> {
    path.file_name()?.to_str()?.split_once('-')?.0.parse().ok()
}

fn json_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    out.retain(|p| p.extension().is_some_and(|x| x == "json"));
    out.sort();
    out
}

/// The reports waiting on disk, by sequence.
fn on_disk(dir: &Path) -> Vec<Report> {
    json_files(dir)
        .iter()
        .map(|p| Report::from_json(&std::fs::read_to_string(p).expect("read")).expect("a whole report"))
        .collect()
}

fn sequences(reports: &[Report]) -> Vec<u64> {
    reports.iter().map(|r| r.sequence).collect()
}

/// Bytes of waiting and rejected reports.
fn spool_bytes(dir: &Path) -> u64 {
    json_files(dir)
        .into_iter()
        .chain(json_files(&dir.join("rejected")))
        .map(|p| std::fs::metadata(p).map_or(0, |m| m.len()))
        .sum()
}

/// A disk that can fail one kind of step with an errno, and records what it renamed
/// into place.
#[derive(Default)]
struct Disk {
    failing: Mutex<Option<(Step, i32)>>,
    renamed: Mutex<Vec<u64>>,
}

impl Disk {
    fn hook(self: &Arc<Self>) -> FaultHook {
        let d = self.clone();
        Arc::new(move |step, path| {
            if let Some((s, errno)) = *d.failing.lock().expect("lock")
                && s == step
            {
                return Err(std::io::Error::from_raw_os_error(errno));
            }
            if step == Step::Rename
                && let Some(seq) = sequence_of(path)
            {
                d.renamed.lock().expect("lock").push(seq);
            }
            Ok(())
        })
    }

    fn fail(&self, step: Step, errno: i32) {
        *self.failing.lock().expect("lock") = Some((step, errno));
    }

    fn heal(&self) {
        *self.failing.lock().expect("lock") = None;
    }

    fn renamed(&self) -> Vec<u64> {
        self.renamed.lock().expect("lock").clone()
    }
}

#[test]
fn a_failing_disk_holds_reports_in_memory_and_writes_them_in_order_when_it_works_again() {
    for (step, errno) in [(Step::WriteTemp, ENOSPC), (Step::SyncTemp, EIO), (Step::Rename, EROFS)] {
        let dir = tmpdir(&format!("full-{errno}"));
        let disk = Arc::new(Disk::default());
        let s = Spool::open(
            &dir,
            Options {
                memory_bytes: 3 * one() + one() / 2,
                fault: Some(disk.hook()),
                ..Options::new(1 << 20)
            },
        )
        .expect("open");
        for _ in 1..=2 {
            assert!(!s.push(&mut report()).expect("push").held);
        }
        disk.fail(step, errno);
        for want in 3..=8 {
            let p = s.push(&mut report()).expect("push");
            assert_eq!(
                (p.sequence, p.held),
                (want, true),
                "errno {errno}: the sequence goes on"
            );
        }
        let c = s.counts();
        assert_eq!(
            (c.held, c.dropped),
            (3, 3),
            "errno {errno}: 3 held, reports 3, 4 and 5 pushed out of memory and counted"
        );
        assert_eq!(
            sequences(&on_disk(&dir)),
            vec![1, 2],
            "errno {errno}: nothing half-written: {:?}",
            std::fs::read_dir(&dir).map(|d| d.flatten().map(|e| e.file_name()).collect::<Vec<_>>())
        );
        assert!(
            json_files(&dir).len() == 2
                && !std::fs::read_dir(&dir)
                    .expect("dir")
                    .flatten()
                    .any(|e| e.path().extension().is_some_and(|x| x == "tmp")),
            "errno {errno}: no temporary file left behind"
        );
        let waiting: Vec<u64> = s.pending().expect("pending").iter().map(|e| e.sequence).collect();
        assert_eq!(
            waiting,
            vec![1, 2, 6, 7, 8],
            "errno {errno}: held reports wait for delivery too"
        );
        assert_eq!(s.retry(), 0, "errno {errno}: still failing");

        disk.heal();
        assert_eq!(s.retry(), 3, "errno {errno}: the held reports are written");
        let p = s.push(&mut report()).expect("push");
        assert_eq!((p.sequence, p.held), (9, false));
        assert_eq!(
            disk.renamed(),
            vec![1, 2, 6, 7, 8, 9],
            "errno {errno}: written in sequence order"
        );
        let reports = on_disk(&dir);
        assert_eq!(sequences(&reports), vec![1, 2, 6, 7, 8, 9]);
        assert_eq!(
            reports.iter().map(|r| r.spool_dropped).collect::<Vec<_>>(),
            vec![0, 0, 3, 3, 3, 3],
            "errno {errno}: written with the counts as they stood"
        );
        assert_eq!(
            assert_gaps_accounted(&reports),
            3,
            "errno {errno}: the gap 3..=5 is the 3 dropped"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn reports_held_in_memory_when_the_agent_dies_or_stops_are_counted_once() {
    let dir = tmpdir("held-lost");
    let disk = Arc::new(Disk::default());
    let options = Options {
        fault: Some(disk.hook()),
        ..Options::new(1 << 20)
    };
    let s = Spool::open(&dir, options.clone()).expect("open");
    s.push(&mut report()).expect("push");
    s.push(&mut report()).expect("push");
    disk.fail(Step::WriteTemp, ENOSPC);
    assert!(s.push(&mut report()).expect("push").held);
    assert!(s.push(&mut report()).expect("push").held);
    // Killed: reports 3 and 4 die with the process; the state file knew their numbers.
    drop(s);
    let s = Spool::open(&dir, options.clone()).expect("reopen");
    assert_eq!((s.counts().sequence, s.dropped()), (4, 2));
    // Stopped cleanly with report 5 held: counted at once, and not again on reopening.
    assert!(s.push(&mut report()).expect("push").held);
    s.close();
    assert_eq!(s.dropped(), 3);
    drop(s);
    disk.heal();
    let s = Spool::open(&dir, options).expect("reopen");
    assert_eq!(s.dropped(), 3, "counted once");
    let mut next = report();
    assert_eq!(s.push(&mut next).expect("push").sequence, 6);
    assert_eq!(next.spool_dropped, 3);
    let reports = on_disk(&dir);
    assert_eq!(sequences(&reports), vec![1, 2, 6]);
    assert_eq!(assert_gaps_accounted(&reports), 3);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn with_a_full_disk_and_a_working_collector_reports_are_delivered_from_memory_and_nothing_is_lost() {
    let dir = tmpdir("from-memory");
    let disk = Arc::new(Disk::default());
    let options = Options {
        fault: Some(disk.hook()),
        ..Options::new(1 << 20)
    };
    let s = Spool::open(&dir, options.clone()).expect("open");
    disk.fail(Step::WriteTemp, ENOSPC);
    for _ in 0..2 {
        s.push(&mut report()).expect("push");
    }
    for e in s.pending().expect("pending") {
        let r = Report::from_json(&String::from_utf8(s.read(&e).expect("read")).expect("utf-8")).expect("report");
        assert_eq!(r.sequence, e.sequence);
        s.remove(&e).expect("acknowledged");
    }
    assert_eq!(s.counts().held, 0);
    drop(s);
    let s = Spool::open(&dir, options).expect("reopen");
    assert_eq!((s.counts().sequence, s.dropped()), (2, 0), "delivered, not dropped");
    disk.heal();
    let mut next = report();
    s.push(&mut next).expect("push");
    assert_eq!((next.sequence, next.spool_dropped), (3, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rejected_reports_live_inside_the_spool_bound_go_first_and_are_counted() {
    let dir = tmpdir("rejected");
    let max = 4 * one() + one() / 2;
    let disk = Arc::new(Disk::default());
    let options = Options {
        fault: Some(disk.hook()),
        ..Options::new(max)
    };
    let s = Spool::open(&dir, options.clone()).expect("open");
    for _ in 1..=4 {
        s.push(&mut report()).expect("push");
    }
    for e in &s.pending().expect("pending")[..2] {
        let r = s.reject(e).expect("reject");
        assert!(
            r.path.as_ref().is_some_and(|p| p.starts_with(dir.join("rejected"))),
            "{r:?}"
        );
    }
    assert_eq!(s.rejected(), 2);
    assert_eq!(json_files(&dir.join("rejected")).len(), 2);
    let mut fifth = report();
    assert_eq!(
        s.push(&mut fifth).expect("push").dropped,
        0,
        "a rejected report makes room"
    );
    assert_eq!((fifth.spool_rejected, fifth.spool_dropped), (2, 0));
    assert_eq!(json_files(&dir.join("rejected")).len(), 1, "the oldest rejected went");
    assert!(spool_bytes(&dir) <= max);
    assert_eq!(s.push(&mut report()).expect("push").dropped, 0);
    assert!(json_files(&dir.join("rejected")).is_empty());
    assert!(spool_bytes(&dir) <= max);
    assert_eq!(
        s.push(&mut report()).expect("push").dropped,
        1,
        "then waiting reports, oldest first"
    );
    assert!(spool_bytes(&dir) <= max);
    assert_eq!(sequences(&on_disk(&dir)), vec![4, 5, 6, 7]);
    // A report refused while held in memory (the disk full) is counted, though not kept.
    disk.fail(Step::WriteTemp, ENOSPC);
    s.push(&mut report()).expect("push");
    let held = s
        .pending()
        .expect("pending")
        .into_iter()
        .find(|e| e.sequence == 8)
        .expect("held");
    assert_eq!(s.reject(&held).expect("reject").path, None);
    assert_eq!(s.rejected(), 3);
    drop(s);
    disk.heal();
    let s = Spool::open(&dir, options).expect("reopen");
    let mut next = report();
    s.push(&mut next).expect("push");
    assert_eq!((next.sequence, next.spool_rejected, next.spool_dropped), (9, 3, 2));
    assert!(spool_bytes(&dir) <= max);
    let reports = on_disk(&dir);
    // 1, 2 and 8 rejected; 3 and 4 dropped.
    assert_eq!(sequences(&reports), vec![5, 6, 7, 9]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A disk that dies at step `k`: that step and every later one fail, as when the agent is
/// killed between two steps (what it wrote stays, even unsynced, as after kill -9). It can
/// also be full (new data fails with ENOSPC) before it dies.
struct Dying {
    k: usize,
    taken: AtomicUsize,
    full: AtomicBool,
}

impl Dying {
    fn new(k: usize) -> Arc<Dying> {
        Arc::new(Dying {
            k,
            taken: AtomicUsize::new(0),
            full: AtomicBool::new(false),
        })
    }

    fn hook(self: &Arc<Self>) -> FaultHook {
        let d = self.clone();
        Arc::new(move |step, _path| {
            if d.taken.fetch_add(1, Ordering::SeqCst) >= d.k {
                return Err(std::io::Error::other("killed"));
            }
            if step == Step::WriteTemp && d.full.load(Ordering::SeqCst) {
                return Err(std::io::Error::from_raw_os_error(ENOSPC));
            }
            Ok(())
        })
    }

    /// The scenario ran to its end without dying.
    fn survived(&self) -> bool {
        self.taken.load(Ordering::SeqCst) <= self.k
    }
}

/// What the spool says after being reopened from disk.
struct After {
    sequence: u64,
    dropped: u64,
    rejected: u64,
    /// Sequence numbers the collector received before the crash.
    sent_before: BTreeSet<u64>,
    on_disk: BTreeSet<u64>,
    rejected_files: usize,
    /// What a collector received, once each, from the start: a report 0 with no counts,
    /// what was delivered before the crash, everything waiting after it and one new report.
    received: Vec<Report>,
}

/// Delivers every waiting report in order as the uploader does: the collector has it once
/// it is read (its acknowledgement may still fail to remove it).
fn deliver(s: &Spool) -> Vec<Report> {
    let mut got = Vec::new();
    for e in s.pending().unwrap_or_default() {
        let Ok(body) = s.read(&e) else { break };
        got.push(Report::from_json(&String::from_utf8(body).expect("utf-8")).expect("a whole report"));
        let _ = s.remove(&e);
    }
    got
}

/// Runs `scenario` against a disk that dies at step k, for every k until it runs to its
/// end, each time on a fresh spool made by `setup`, then reopens the spool from disk (no
/// faults), lets the collector have everything and calls `check`. `scenario` returns what
/// it delivered. Returns how many steps the whole scenario takes.
fn at_every_step(
    name: &str,
    options: Options,
    setup: impl Fn(&Spool),
    scenario: impl Fn(&Spool, &Dying) -> Vec<Report>,
    check: impl Fn(usize, &After),
) -> usize {
    for k in 0.. {
        let dir = tmpdir(&format!("crash-{name}-{k}"));
        setup(&Spool::open(&dir, options.clone()).expect("setup"));
        let dying = Dying::new(k);
        let before = {
            let s = Spool::open(
                &dir,
                Options {
                    fault: Some(dying.hook()),
                    ..options.clone()
                },
            )
            .expect("open before the crash");
            scenario(&s, &dying)
            // Dropped without `close`: the process is gone.
        };
        let s = Spool::open(&dir, options.clone()).expect("reopen after the crash");
        let c = s.counts();
        let on_disk = sequences(&on_disk(&dir)).into_iter().collect();
        let rejected_files = json_files(&dir.join("rejected")).len();
        s.push(&mut report()).expect("push after the crash");
        let mut zero = report();
        zero.sequence = 0;
        let sent_before = before.iter().map(|r| r.sequence).collect();
        let mut received = vec![zero];
        for r in before.into_iter().chain(deliver(&s)) {
            if !received.iter().any(|x| x.report_id == r.report_id) {
                received.push(r);
            }
        }
        let after = After {
            sequence: c.sequence,
            dropped: c.dropped,
            rejected: c.rejected,
            sent_before,
            on_disk,
            rejected_files,
            received,
        };
        check(k, &after);
        let _ = std::fs::remove_dir_all(&dir);
        if dying.survived() {
            return k;
        }
    }
    unreachable!()
}

#[test]
fn a_crash_at_any_step_of_a_drop_neither_loses_nor_double_counts_it() {
    let options = Options::new(3 * one() + one() / 2);
    let outcomes = Mutex::new(BTreeSet::new());
    let steps = at_every_step(
        "drop",
        options,
        |s| {
            for _ in 0..3 {
                s.push(&mut report()).expect("push");
            }
        },
        |s, _| {
            // Report 4 needs room: report 1 is dropped.
            let _ = s.push(&mut report());
            Vec::new()
        },
        |k, a| {
            let disk = &a.on_disk;
            assert_eq!(
                a.dropped + disk.len() as u64,
                a.sequence,
                "crash at step {k}: every number is on disk or counted, once: {disk:?}, dropped {}",
                a.dropped
            );
            assert!(a.dropped <= 1, "crash at step {k}: only report 1 is ever dropped");
            assert_eq!(
                disk.contains(&1),
                a.dropped == 0,
                "crash at step {k}: 1 is gone iff counted"
            );
            assert_gaps_accounted(&a.received);
            outcomes.lock().expect("lock").insert((a.dropped, a.sequence));
        },
    );
    assert!(steps >= 6, "the drop and the write take several steps: {steps}");
    let outcomes = outcomes.into_inner().expect("lock");
    assert!(
        outcomes.contains(&(0, 3)) && outcomes.contains(&(1, 3)) && outcomes.contains(&(1, 4)),
        "crashes before the drop, between drop and write, and after both: {outcomes:?}"
    );
}

#[test]
fn a_crash_at_any_step_while_the_disk_is_full_and_when_it_recovers_loses_no_count() {
    let options = Options {
        memory_bytes: one() + one() / 2,
        ..Options::new(1 << 20)
    };
    let steps = at_every_step(
        "full",
        options,
        |s| {
            for _ in 0..2 {
                s.push(&mut report()).expect("push");
            }
        },
        |s, d| {
            d.full.store(true, Ordering::SeqCst);
            for _ in 0..4 {
                let _ = s.push(&mut report());
            }
            d.full.store(false, Ordering::SeqCst);
            s.retry();
            let _ = s.push(&mut report());
            Vec::new()
        },
        |k, a| {
            let disk = &a.on_disk;
            assert_eq!(
                a.dropped + disk.len() as u64,
                a.sequence,
                "crash at step {k}: every number is on disk or counted, once: {disk:?}, dropped {}",
                a.dropped
            );
            assert!(disk.is_superset(&BTreeSet::from([1, 2])), "crash at step {k}: {disk:?}");
            assert_gaps_accounted(&a.received);
        },
    );
    assert!(steps >= 10, "{steps}");
}

#[test]
fn a_crash_at_any_step_of_a_rejection_counts_it_once() {
    let options = Options::new(1 << 20);
    at_every_step(
        "reject",
        options,
        |s| {
            for _ in 0..3 {
                s.push(&mut report()).expect("push");
            }
        },
        |s, _| {
            if let Some(e) = s.pending().ok().and_then(|p| p.into_iter().next()) {
                let _ = s.read(&e);
                let _ = s.reject(&e);
            }
            Vec::new()
        },
        |k, a| {
            let disk = &a.on_disk;
            assert_eq!(a.dropped, 0, "crash at step {k}");
            assert_eq!(
                a.rejected + disk.len() as u64,
                a.sequence,
                "crash at step {k}: {disk:?}"
            );
            assert_eq!(
                a.rejected as usize, a.rejected_files,
                "crash at step {k}: counted iff moved aside"
            );
            assert_eq!(disk.contains(&1), a.rejected == 0, "crash at step {k}");
            assert_gaps_accounted(&a.received);
        },
    );
}

/// The one report a crash can count twice: delivered from memory (the disk full), its
/// acknowledgement in, and the agent killed before the state file recorded it.
#[test]
fn a_crash_at_any_step_of_delivering_from_memory_over_counts_at_most_that_report() {
    let options = Options::new(1 << 20);
    let over_counted = Mutex::new(Vec::new());
    at_every_step(
        "memory",
        options,
        |s| {
            s.push(&mut report()).expect("push");
        },
        |s, d| {
            d.full.store(true, Ordering::SeqCst);
            let _ = s.push(&mut report());
            // The collector takes reports 1 (from disk) and 2 (from memory).
            let sent = deliver(s);
            d.full.store(false, Ordering::SeqCst);
            let _ = s.push(&mut report());
            sent
        },
        |k, a| {
            let sent = &a.sent_before;
            assert!(
                a.sequence >= sent.iter().copied().max().unwrap_or(0),
                "crash at step {k}: a number that left the agent is never given out again"
            );
            let bad = unaccounted_gaps(&a.received);
            if !bad.is_empty() {
                // Report 2 arrived, and is counted as dropped too.
                assert!(
                    sent.contains(&2) && !a.on_disk.contains(&2) && a.dropped == 1,
                    "crash at step {k}: {bad:?}"
                );
                assert_eq!(bad.len(), 1, "crash at step {k}: only report 2: {bad:?}");
                assert!(
                    bad[0].starts_with("between sequences 2 and 3"),
                    "crash at step {k}: {bad:?}"
                );
                over_counted.lock().expect("lock").push(k);
            }
        },
    );
    eprintln!(
        "report 2 counted as dropped although delivered for a crash at steps {:?}",
        over_counted.into_inner().expect("lock")
    );
}

#[test]
fn a_report_refused_when_it_cannot_be_moved_aside_is_counted_once_removed_and_the_spool_still_opens() {
    let dir = tmpdir("reject-full");
    let disk = Arc::new(Disk::default());
    let options = Options {
        fault: Some(disk.hook()),
        ..Options::new(1 << 20)
    };
    let s = Spool::open(&dir, options.clone()).expect("open");
    for _ in 1..=3 {
        s.push(&mut report()).expect("push");
    }
    // The disk is full: the refused report cannot be moved to rejected/.
    disk.fail(Step::Rename, ENOSPC);
    let first = s.pending().expect("pending")[0].clone();
    let r = s.reject(&first).expect("counted even so");
    assert_eq!((r.path, r.total), (None, 1), "not kept, counted");
    assert_eq!(sequences(&on_disk(&dir)), vec![2, 3], "it is never sent again");
    // Dropping to make room later cannot count it a second time.
    let mut next = report();
    disk.heal();
    s.push(&mut next).expect("push");
    assert_eq!((next.spool_rejected, next.spool_dropped), (1, 0));
    drop(s);
    // And the spool opens again (a full disk does not keep the agent from starting).
    disk.fail(Step::Rename, ENOSPC);
    let s = Spool::open(&dir, options).expect("reopens on a full disk");
    assert_eq!((s.rejected(), s.dropped()), (1, 0));
    let _ = std::fs::remove_dir_all(&dir);
}

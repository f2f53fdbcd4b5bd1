//! The spool's write path: holding, writing, dropping to make room, persisting the
//! state, and the logs of a failing disk.

use std::fs::{self};
use std::path::{Path, PathBuf};
use std::time::Instant;

use kaohe_rubric::evidence::Report;

use super::*;

impl Spool {
    /// Writes a rejected report that was held in memory to `rejected/`, making room among
    /// the rejected ones; best effort.
    pub(super) fn keep_rejected(&self, r: &Report) -> Option<PathBuf> {
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
    pub(super) fn write_held(&self, i: &mut Inner, now: Instant) -> usize {
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
    pub(super) fn write_report(
        &self,
        i: &mut Inner,
        report: &mut Report,
        now: Instant,
    ) -> Result<u64, (u64, SpoolError)> {
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
    pub(super) fn make_room(&self, i: &mut Inner, need: u64, now: Instant) -> Result<u64, (u64, SpoolError)> {
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
    pub(super) fn drop_file(&self, i: &mut Inner, e: &Entry, now: Instant) -> Result<(), SpoolError> {
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
    pub(super) fn enforce_memory_bound(&self, i: &mut Inner, now: Instant) -> u64 {
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
    pub(super) fn persist(&self, i: &mut Inner, now: Instant) -> Result<(), SpoolError> {
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

    pub(super) fn write_failed(&self, i: &mut Inner, e: &SpoolError, now: Instant) {
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

    pub(super) fn recovered(&self, i: &mut Inner, now: Instant) {
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

    pub(super) fn remove_file(&self, path: &Path) -> Result<(), SpoolError> {
        step(self.fault.as_ref(), Step::Remove, path).map_err(io(path))?;
        match fs::remove_file(path) {
            Ok(()) => Ok(()),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(io(path)(err)),
        }
    }
}

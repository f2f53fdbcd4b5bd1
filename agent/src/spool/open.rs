//! Opening a spool: the state file read or created, files left by a crash cleaned up,
//! an agent's older layout migrated, the numbers on disk checked against the state.

use std::collections::{BTreeSet, VecDeque};
use std::fs;
use std::path::Path;
use std::sync::Mutex;

use super::*;

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
    pub(super) fn migrate(
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
}

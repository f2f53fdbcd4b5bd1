//! What the spool keeps in memory: failure incidents for the logs, ranges of dropped
//! numbers, reports held while the disk cannot be written, and the state behind the lock.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use kaohe_rubric::evidence::Report;

use super::*;

/// A failure that may go on: logged when it starts, then at most once a minute.
#[derive(Debug, Default)]
pub(super) struct Incident {
    pub(super) since: Option<Instant>,
    pub(super) last_logged: Option<Instant>,
    /// Failures since the last log line.
    pub(super) unlogged: u64,
}

impl Incident {
    /// Records a failure. `Some(true)` for the first of an incident, `Some(false)` when a
    /// reminder is due, `None` when this one is not to be logged.
    pub(super) fn fail(&mut self, now: Instant) -> Option<bool> {
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
    pub(super) fn take_unlogged(&mut self) -> u64 {
        std::mem::take(&mut self.unlogged)
    }

    /// Ends the incident: how long it lasted, if there was one.
    pub(super) fn recover(&mut self, now: Instant) -> Option<Duration> {
        let since = self.since?;
        *self = Incident::default();
        Some(now.saturating_duration_since(since))
    }
}

/// Sequence numbers as inclusive ranges (a gap of a million numbers is one entry).
#[derive(Debug, Default)]
pub(super) struct Ranges(pub(super) std::collections::BTreeMap<u64, u64>);

impl Ranges {
    pub(super) fn insert(&mut self, s: u64) {
        self.insert_range(s, s);
    }

    /// Adds `from..=to` (which must not overlap what is there; drops never do).
    pub(super) fn insert_range(&mut self, from: u64, to: u64) {
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
    pub(super) fn count_above(&self, s: u64) -> u64 {
        self.0
            .iter()
            .rev()
            .take_while(|(_, end)| **end > s)
            .map(|(start, end)| end - (*start).max(s + 1) + 1)
            .sum()
    }

    /// Forgets the numbers below `s`.
    pub(super) fn forget_below(&mut self, s: u64) {
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
pub(super) struct Held {
    pub(super) sequence: u64,
    /// Its file name in the spool.
    pub(super) name: String,
    pub(super) body: Vec<u8>,
}

impl Held {
    pub(super) fn new(report: &Report) -> Result<Held, serde_json::Error> {
        let mut body = serde_json::to_vec(report)?;
        body.shrink_to_fit();
        Ok(Held {
            sequence: report.sequence,
            name: file_name(report),
            body,
        })
    }

    pub(super) fn bytes(&self) -> u64 {
        self.body.len() as u64
    }

    pub(super) fn report(&self) -> Result<Report, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

#[derive(Debug)]
pub(super) struct Inner {
    /// The state as it stands; `file.written` is what is on disk.
    pub(super) state: State,
    pub(super) file: StateFile,
    pub(super) held: VecDeque<Held>,
    pub(super) held_bytes: u64,
    /// Dropped sequence numbers that may be above a waiting report (reports held in
    /// memory, or one next to the report in flight): a report is sent counting only the
    /// drops below its own number.
    pub(super) dropped_above: Ranges,
    /// The report last read for sending, and when.
    pub(super) in_flight: Option<(u64, Instant)>,
    /// Reports could not be written.
    pub(super) write_trouble: Incident,
    /// The state file could not be written.
    pub(super) state_trouble: Incident,
    /// Reports were dropped (memory bound or spool full).
    pub(super) overflow: Incident,
    /// Since `write_trouble` began: written from memory, delivered from memory, and the
    /// dropped count when it began.
    pub(super) written_from_memory: u64,
    pub(super) delivered_from_memory: u64,
    pub(super) dropped_before: u64,
}

impl Inner {
    pub(super) fn in_flight(&self, sequence: u64, now: Instant) -> bool {
        self.in_flight
            .is_some_and(|(s, t)| s == sequence && now.saturating_duration_since(t) < IN_FLIGHT_FOR)
    }

    pub(super) fn held_index(&self, sequence: u64) -> Option<usize> {
        self.held.iter().position(|h| h.sequence == sequence)
    }

    /// Sets the counts a report is written with: as they stand.
    pub(super) fn stamp(&self, report: &mut Report) {
        report.spool_dropped = self.state.dropped;
        report.spool_rejected = self.state.rejected;
    }

    /// Sets the counts a report is sent with: the reports below its own sequence number
    /// dropped and rejected. Reports are sent in order, so every number below it is settled
    /// and these do not change when it is sent again.
    pub(super) fn stamp_for_sending(&self, report: &mut Report) {
        let above = self.dropped_above.count_above(report.sequence);
        report.spool_dropped = self.state.dropped.saturating_sub(above);
        report.spool_rejected = self.state.rejected;
    }

    pub(super) fn drop_counted(&mut self, sequence: u64) {
        self.state.dropped += 1;
        self.dropped_above.insert(sequence);
    }
}

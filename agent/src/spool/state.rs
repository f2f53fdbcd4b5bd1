//! The state file: two slots written in place, each with a generation and a checksum,
//! so a torn write falls back to the previous state.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::*;

/// An operation on a spooled file that was counted before it was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) enum Intent {
    #[default]
    None,
    /// Delete the report with this sequence (counted in `dropped`).
    Drop(u64),
    /// Move the report with this sequence to `rejected/` (counted in `rejected`).
    Reject(u64),
}

impl Intent {
    pub(super) fn sequence(self) -> Option<u64> {
        match self {
            Intent::None => None,
            Intent::Drop(s) | Intent::Reject(s) => Some(s),
        }
    }
}

/// What the state file holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct State {
    pub(super) generation: u64,
    /// The last sequence number given out.
    pub(super) sequence: u64,
    /// Every sequence number up to this one is on disk, delivered, rejected or dropped.
    pub(super) accounted: u64,
    pub(super) dropped: u64,
    pub(super) rejected: u64,
    pub(super) intent: Intent,
}

impl State {
    pub(super) fn encode(&self) -> [u8; SLOT] {
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
    pub(super) fn decode(b: &[u8]) -> Option<State> {
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
    pub(super) fn newest(file: &[u8]) -> Option<State> {
        (0..2)
            .filter_map(|i| file.get(i * SLOT..(i + 1) * SLOT).and_then(State::decode))
            .max_by_key(|s| s.generation)
    }

    /// The same state, whatever the generation.
    pub(super) fn same(&self, other: &State) -> bool {
        State {
            generation: other.generation,
            ..*self
        } == *other
    }
}

/// The state file, open for updates in place.
#[derive(Debug)]
pub(super) struct StateFile {
    pub(super) path: PathBuf,
    pub(super) file: File,
    /// What is on disk.
    pub(super) written: State,
}

impl StateFile {
    pub(super) fn load(path: &Path) -> Result<Option<StateFile>, SpoolError> {
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
    pub(super) fn create(
        fault: Option<&FaultHook>,
        dir: &Path,
        path: &Path,
        state: State,
    ) -> Result<StateFile, SpoolError> {
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
    pub(super) fn write(&mut self, fault: Option<&FaultHook>, next: State) -> Result<(), SpoolError> {
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

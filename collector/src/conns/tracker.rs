//! Who holds a connection slot, and which connection closes to make room: [`Tracker`]
//! keeps every open connection with its stage, and per source address those that have not
//! proven anything, oldest first.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::Limits;
use crate::warn_throttled;

/// Where a connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// TLS handshake under way.
    Handshake,
    /// Idle, or sending a request that has not proven itself yet: may be closed for room.
    Waiting,
    /// Serving a request that proved itself (or has no body): never closed for room.
    Serving,
}

#[derive(Debug)]
struct Entry {
    stage: Stage,
    source: IpAddr,
    evict: Arc<Notify>,
}

/// A source address's evictable connections, by stage, oldest first.
#[derive(Debug, Default)]
struct Source {
    handshaking: BTreeSet<u64>,
    waiting: BTreeSet<u64>,
}

/// Open connections and, per source address, those that may be closed for room, with an
/// index of the sources by how many they hold: room is made at the expense of the source
/// that holds the most, so a flood from a few addresses cannot push out anyone else.
#[derive(Debug, Default)]
struct Table {
    next: u64,
    conns: HashMap<u64, Entry>,
    sources: HashMap<IpAddr, Source>,
    /// (evictable connections, source), for the total cap.
    by_evictable: BTreeSet<(usize, IpAddr)>,
    /// (handshakes in progress, source), for the handshake cap.
    by_handshakes: BTreeSet<(usize, IpAddr)>,
    handshakes: usize,
}

impl Table {
    /// Moves connection `id` into `stage` (None: gone), keeping the indexes.
    fn place(&mut self, id: u64, source: IpAddr, from: Option<Stage>, to: Option<Stage>) {
        let src = self.sources.entry(source).or_default();
        let before = (src.handshaking.len() + src.waiting.len(), src.handshaking.len());
        match from {
            Some(Stage::Handshake) => {
                src.handshaking.remove(&id);
            }
            Some(Stage::Waiting) => {
                src.waiting.remove(&id);
            }
            _ => {}
        }
        match to {
            Some(Stage::Handshake) => {
                src.handshaking.insert(id);
            }
            Some(Stage::Waiting) => {
                src.waiting.insert(id);
            }
            _ => {}
        }
        let after = (src.handshaking.len() + src.waiting.len(), src.handshaking.len());
        if src.handshaking.is_empty() && src.waiting.is_empty() {
            self.sources.remove(&source);
        }
        if before.0 != after.0 {
            self.by_evictable.remove(&(before.0, source));
            if after.0 > 0 {
                self.by_evictable.insert((after.0, source));
            }
        }
        if before.1 != after.1 {
            self.by_handshakes.remove(&(before.1, source));
            if after.1 > 0 {
                self.by_handshakes.insert((after.1, source));
            }
            self.handshakes = self.handshakes + after.1 - before.1;
        }
    }

    fn set(&mut self, id: u64, stage: Stage) {
        let Some(e) = self.conns.get_mut(&id) else { return };
        let (from, source) = (e.stage, e.source);
        if from == stage {
            return;
        }
        e.stage = stage;
        self.place(id, source, Some(from), Some(stage));
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.conns.remove(&id)?;
        self.place(id, e.source, Some(e.stage), None);
        Some(e)
    }

    /// Closes the oldest unproven connection (only handshakes, with `handshakes_only`) of
    /// the source that holds the most; false if there is none.
    fn evict(&mut self, handshakes_only: bool) -> bool {
        let index = if handshakes_only {
            &self.by_handshakes
        } else {
            &self.by_evictable
        };
        let Some(&(_, source)) = index.last() else {
            return false;
        };
        let Some(src) = self.sources.get(&source) else {
            return false;
        };
        let oldest = if handshakes_only {
            src.handshaking.first().copied()
        } else {
            match (src.handshaking.first(), src.waiting.first()) {
                (Some(a), Some(b)) => Some(*a.min(b)),
                (a, b) => a.or(b).copied(),
            }
        };
        match oldest.and_then(|id| self.remove(id)) {
            Some(e) => {
                e.evict.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts for `/metrics` and the log.
#[derive(Debug, Default)]
pub struct ConnCounters {
    pub accepted: AtomicU64,
    pub refused: AtomicU64,
    pub evicted: AtomicU64,
    pub handshake_timeouts: AtomicU64,
    pub header_timeouts: AtomicU64,
    pub write_timeouts: AtomicU64,
}

/// Every open connection of the listener and its stage.
#[derive(Debug)]
pub struct Tracker {
    pub(super) limits: Limits,
    table: Mutex<Table>,
    pub counters: ConnCounters,
}

impl Tracker {
    pub fn new(limits: Limits) -> Arc<Tracker> {
        Arc::new(Tracker {
            limits,
            table: Mutex::new(Table::default()),
            counters: ConnCounters::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Moves connection `id` to `stage`.
    pub(super) fn set_stage(&self, id: u64, stage: Stage) {
        self.table().set(id, stage);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.table().conns.len()
    }

    /// Takes a new connection in, closing the oldest unproven ones if a cap is reached;
    /// `None` when every slot is serving a request.
    pub(super) fn admit(self: &Arc<Self>, peer: SocketAddr) -> Option<Guard> {
        let mut t = self.table();
        let mut evicted = 0u64;
        while t.handshakes >= self.limits.max_handshakes && t.evict(true) {
            evicted += 1;
        }
        while t.conns.len() >= self.limits.max_connections {
            if !t.evict(false) {
                drop(t);
                self.counters.refused.fetch_add(1, Ordering::Relaxed);
                self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
                return None;
            }
            evicted += 1;
        }
        let id = t.next;
        t.next += 1;
        let evict = Arc::new(Notify::new());
        t.conns.insert(
            id,
            Entry {
                stage: Stage::Handshake,
                source: crate::bodies::source_key(peer.ip()),
                evict: evict.clone(),
            },
        );
        t.place(id, crate::bodies::source_key(peer.ip()), None, Some(Stage::Handshake));
        let open = t.conns.len();
        drop(t);
        self.counters.accepted.fetch_add(1, Ordering::Relaxed);
        if evicted > 0 {
            self.counters.evicted.fetch_add(evicted, Ordering::Relaxed);
            warn_throttled!(
                "connections_evicted",
                %peer,
                open,
                max_connections = self.limits.max_connections,
                max_tls_handshakes = self.limits.max_handshakes,
                "连接数达到上限, 已关闭最早的未完成请求的连接 (connection limit reached: closed the oldest connection without a complete request)"
            );
        }
        Some(Guard {
            id,
            tracker: self.clone(),
            evict,
        })
    }
}

/// A connection's place in the [`Tracker`]; leaving it when dropped.
#[derive(Debug)]
pub(super) struct Guard {
    pub(super) id: u64,
    pub(super) tracker: Arc<Tracker>,
    pub(super) evict: Arc<Notify>,
}

impl Guard {
    pub(super) fn set(&self, stage: Stage) {
        self.tracker.table().set(self.id, stage);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        self.tracker.table().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn limits(conns: usize, handshakes: usize) -> Limits {
        Limits {
            max_connections: conns,
            max_handshakes: handshakes,
            handshake_timeout: Duration::from_secs(1),
            header_timeout: Duration::from_secs(1),
            write_timeout: Duration::from_secs(1),
        }
    }

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    fn from(last: u8) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, last], 1))
    }

    async fn told_to_close(g: &Guard) -> bool {
        tokio::time::timeout(Duration::from_millis(10), g.evict.notified())
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn at_the_cap_the_oldest_unproven_connection_makes_room_and_serving_ones_stay() {
        let t = Tracker::new(limits(3, 10));
        let a = t.admit(peer()).expect("a");
        let b = t.admit(peer()).expect("b");
        let c = t.admit(peer()).expect("c");
        a.set(Stage::Serving);
        b.set(Stage::Waiting);
        c.set(Stage::Waiting);
        let d = t.admit(peer()).expect("d evicts b, the oldest not serving");
        assert!(told_to_close(&b).await, "b was told to close");
        assert!(!told_to_close(&c).await);
        assert_eq!(t.open(), 3);
        c.set(Stage::Serving);
        d.set(Stage::Serving);
        assert!(t.admit(peer()).is_none(), "every slot serves a request: refused");
        assert_eq!(t.counters.refused.load(Ordering::Relaxed), 1);
        drop(a);
        assert!(t.admit(peer()).is_some(), "a slot came free");
    }

    #[tokio::test]
    async fn room_is_made_at_the_expense_of_the_source_holding_the_most() {
        let t = Tracker::new(limits(4, 10));
        let probe = t.admit(from(2)).expect("an early connection of another source");
        let flood: Vec<Guard> = (0..3).map(|_| t.admit(from(1)).expect("flood")).collect();
        let _newer = t.admit(from(1)).expect("evicts");
        assert!(!told_to_close(&probe).await, "the other source keeps its connection");
        assert!(told_to_close(&flood[0]).await, "the flood's oldest goes");
        let _another = t.admit(from(3)).expect("a third source gets in");
        assert!(told_to_close(&flood[1]).await);
        assert!(!told_to_close(&probe).await);
    }

    #[tokio::test]
    async fn handshakes_have_their_own_cap() {
        let t = Tracker::new(limits(100, 2));
        let a = t.admit(peer()).expect("a");
        let b = t.admit(peer()).expect("b");
        let _c = t.admit(peer()).expect("c");
        assert!(told_to_close(&a).await, "the oldest handshake made room");
        b.set(Stage::Waiting);
        let _d = t.admit(peer()).expect("d");
        assert_eq!(t.open(), 3, "b finished its handshake and stays");
        assert!(!told_to_close(&b).await);
    }
}

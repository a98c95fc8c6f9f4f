//! The registry of live sessions: who is connected, the sessions of one client, and the
//! counters that must outlive a session (policy drops, the final figures of closed sessions).
//!
//! Totals are monotonic: when a session leaves, its final counters move into `departed`
//! under the same lock that [`SessionRegistry::totals`] reads, so a session is never counted
//! twice or lost between the two (Prometheus counters must never go down).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;

use super::{PolicyDrops, SessionInfo};
use crate::net::SendStatsSnapshot;

/// Cumulative per-session figures, summed over sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionTotals {
    /// Message bytes written to client sockets.
    pub(crate) bytes_sent: u64,
    /// Audio chunks written.
    pub(crate) chunks_sent: u64,
    /// Chunks skipped as too old to play.
    pub(crate) chunks_late: u64,
    /// Chunks lost because a session fell a whole queue behind.
    pub(crate) chunks_dropped: u64,
    /// Time requests answered.
    pub(crate) time_replies: u64,
    /// Zerocopy and regular send counters; `outstanding` is only ever summed over live
    /// sessions (a closed session has nothing in flight that the relay still waits for).
    pub(crate) sends: SendStatsSnapshot,
}

impl SessionTotals {
    /// One session's figures now.
    pub(crate) fn of(info: &SessionInfo) -> Self {
        let stats = &info.stats;
        Self {
            bytes_sent: info.bytes_sent(),
            chunks_sent: stats.chunks_sent.load(Ordering::Relaxed),
            chunks_late: stats.chunks_late.load(Ordering::Relaxed),
            chunks_dropped: stats.chunks_dropped.load(Ordering::Relaxed),
            time_replies: stats.time_replies.load(Ordering::Relaxed),
            sends: info.send_stats.snapshot(),
        }
    }

    /// Adds `other`'s figures to these.
    pub(crate) fn add(&mut self, other: &Self) {
        self.bytes_sent += other.bytes_sent;
        self.chunks_sent += other.chunks_sent;
        self.chunks_late += other.chunks_late;
        self.chunks_dropped += other.chunks_dropped;
        self.time_replies += other.time_replies;
        self.sends.add(&other.sends);
    }
}

/// Every live session, by id.
#[derive(Debug)]
pub(crate) struct SessionRegistry {
    live: DashMap<u64, Arc<SessionInfo>>,
    next_id: AtomicU64,
    /// Final figures of the sessions that closed. Locked by removals and by `totals`.
    departed: Mutex<SessionTotals>,
    /// Sessions dropped and connections refused by policy.
    pub(crate) drops: PolicyDrops,
}

impl Default for SessionRegistry {
    fn default() -> Self {
        Self {
            live: DashMap::new(),
            next_id: AtomicU64::new(1),
            departed: Mutex::new(SessionTotals::default()),
            drops: PolicyDrops::default(),
        }
    }
}

impl SessionRegistry {
    /// A new session number; numbers start at 1 and are taken once per accepted connection.
    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Connections accepted since start.
    pub(crate) fn accepted(&self) -> u64 {
        self.next_id.load(Ordering::Relaxed).saturating_sub(1)
    }

    pub(crate) fn insert(&self, info: Arc<SessionInfo>) {
        self.live.insert(info.id, info);
    }

    /// Removes a session, keeping its final figures in the totals.
    pub(crate) fn remove(&self, id: u64) {
        let mut departed = self.lock_departed();
        if let Some((_, info)) = self.live.remove(&id) {
            let mut last = SessionTotals::of(&info);
            last.sends.outstanding = 0;
            departed.add(&last);
        }
    }

    /// The session with this id.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<SessionInfo>> {
        self.live.get(&id).map(|entry| entry.value().clone())
    }

    /// Every live session, ordered by id. The `Arc`s are cloned out, so no map guard is held
    /// while the caller works with them.
    pub(crate) fn all(&self) -> Vec<Arc<SessionInfo>> {
        let mut all: Vec<_> = self.live.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|info| info.id);
        all
    }

    /// The live sessions of `client_id` (a client may connect more than once,
    /// docs/PROTOCOL.md §2.7).
    pub(crate) fn of_client(&self, client_id: &str) -> Vec<Arc<SessionInfo>> {
        self.live
            .iter()
            .filter(|e| e.value().is_client(client_id))
            .map(|e| e.value().clone())
            .collect()
    }

    /// Whether a live session other than `except` belongs to `client_id`.
    pub(crate) fn has_other_session(&self, client_id: &str, except: u64) -> bool {
        self.live
            .iter()
            .any(|e| *e.key() != except && e.value().is_client(client_id))
    }

    /// Totals since start (closed sessions included) and the live sessions they include.
    pub(crate) fn totals(&self) -> (SessionTotals, Vec<Arc<SessionInfo>>) {
        let departed = self.lock_departed();
        let live = self.all();
        let mut totals = departed.clone();
        drop(departed);
        for info in &live {
            totals.add(&SessionTotals::of(info));
        }
        (totals, live)
    }

    fn lock_departed(&self) -> MutexGuard<'_, SessionTotals> {
        self.departed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

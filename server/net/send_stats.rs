//! A session's send counters: how its messages went out (zerocopy or ordinary sends), shared
//! between its sender and the reports that read them.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};

/// How a session sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum SendMode {
    /// Ordinary sends only.
    Regular = 0,
    /// Large messages with `MSG_ZEROCOPY`.
    Zerocopy = 1,
    /// Started with zerocopy; fell back to ordinary sends after the kernel copied anyway.
    FellBack = 2,
}

impl SendMode {
    fn from_u8(value: u8) -> Self {
        match value {
            1 => Self::Zerocopy,
            2 => Self::FellBack,
            _ => Self::Regular,
        }
    }

    /// Lower-case name for logs and APIs.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Zerocopy => "zerocopy",
            Self::FellBack => "zerocopy-fallback",
        }
    }
}

/// A session's send counters, zerocopy and ordinary; cumulative (periodic reports print
/// differences).
#[derive(Debug, Default)]
pub(crate) struct SendStats {
    mode: AtomicU8,
    /// `sendmsg(MSG_ZEROCOPY)` calls made.
    pub(crate) zerocopy_attempts: AtomicU64,
    /// Those the kernel accepted (each took one completion id).
    pub(crate) zerocopy_successful: AtomicU64,
    /// Bytes accepted by zerocopy calls.
    pub(crate) zerocopy_bytes: AtomicU64,
    /// Messages finished by ordinary sends.
    pub(crate) regular_sends: AtomicU64,
    /// Bytes sent the ordinary way.
    pub(crate) regular_bytes: AtomicU64,
    /// Zerocopy-eligible messages sent the ordinary way behind ordinary bytes (see
    /// `net::sender`).
    pub(crate) coordination_fallbacks: AtomicU64,
    /// Zerocopy sends the kernel has not completed yet (a gauge).
    pub(crate) outstanding: AtomicU64,
    /// Completed zerocopy sends the kernel reported as copied.
    pub(crate) copied_completions: AtomicU64,
    /// Messages sent the ordinary way after `ENOBUFS` from a zerocopy call.
    pub(crate) enobufs_fallbacks: AtomicU64,
    /// 1 when zerocopy was asked for but the socket refused `SO_ZEROCOPY`.
    pub(crate) zerocopy_refused: AtomicU64,
    auto_fallback_engaged: AtomicBool,
}

/// A plain-number copy of [`SendStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SendStatsSnapshot {
    /// See [`SendStats::zerocopy_attempts`].
    pub(crate) zerocopy_attempts: u64,
    /// See [`SendStats::zerocopy_successful`].
    pub(crate) zerocopy_successful: u64,
    /// See [`SendStats::zerocopy_bytes`].
    pub(crate) zerocopy_bytes: u64,
    /// See [`SendStats::regular_sends`].
    pub(crate) regular_sends: u64,
    /// See [`SendStats::regular_bytes`].
    pub(crate) regular_bytes: u64,
    /// See [`SendStats::coordination_fallbacks`].
    pub(crate) coordination_fallbacks: u64,
    /// See [`SendStats::outstanding`].
    pub(crate) outstanding: u64,
    /// See [`SendStats::copied_completions`].
    pub(crate) copied_completions: u64,
    /// See [`SendStats::enobufs_fallbacks`].
    pub(crate) enobufs_fallbacks: u64,
}

impl SendStatsSnapshot {
    /// Share of sent bytes that went out with zerocopy, in percent.
    pub(crate) fn zerocopy_percent(&self) -> f64 {
        let total = self.zerocopy_bytes + self.regular_bytes;
        if total == 0 {
            0.0
        } else {
            self.zerocopy_bytes as f64 * 100.0 / total as f64
        }
    }

    /// Accepted zerocopy calls per attempt, in percent.
    pub(crate) fn success_rate(&self) -> f64 {
        if self.zerocopy_attempts == 0 {
            0.0
        } else {
            self.zerocopy_successful as f64 * 100.0 / self.zerocopy_attempts as f64
        }
    }

    /// Counter differences since `earlier`; `outstanding` stays the current gauge.
    pub(crate) fn since(&self, earlier: &Self) -> Self {
        Self {
            zerocopy_attempts: self.zerocopy_attempts - earlier.zerocopy_attempts,
            zerocopy_successful: self.zerocopy_successful - earlier.zerocopy_successful,
            zerocopy_bytes: self.zerocopy_bytes - earlier.zerocopy_bytes,
            regular_sends: self.regular_sends - earlier.regular_sends,
            regular_bytes: self.regular_bytes - earlier.regular_bytes,
            coordination_fallbacks: self.coordination_fallbacks - earlier.coordination_fallbacks,
            outstanding: self.outstanding,
            copied_completions: self.copied_completions - earlier.copied_completions,
            enobufs_fallbacks: self.enobufs_fallbacks - earlier.enobufs_fallbacks,
        }
    }

    /// Sums two snapshots (for server-wide totals).
    pub(crate) fn add(&mut self, other: &Self) {
        self.zerocopy_attempts += other.zerocopy_attempts;
        self.zerocopy_successful += other.zerocopy_successful;
        self.zerocopy_bytes += other.zerocopy_bytes;
        self.regular_sends += other.regular_sends;
        self.regular_bytes += other.regular_bytes;
        self.coordination_fallbacks += other.coordination_fallbacks;
        self.outstanding += other.outstanding;
        self.copied_completions += other.copied_completions;
        self.enobufs_fallbacks += other.enobufs_fallbacks;
    }
}

impl SendStats {
    /// The session's current mode.
    pub(crate) fn mode(&self) -> SendMode {
        SendMode::from_u8(self.mode.load(Ordering::Relaxed))
    }

    /// Whether auto-fallback switched this session to ordinary sends.
    #[cfg(test)]
    pub(crate) fn auto_fallback_engaged(&self) -> bool {
        self.auto_fallback_engaged.load(Ordering::Relaxed)
    }

    /// Current values.
    pub(crate) fn snapshot(&self) -> SendStatsSnapshot {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SendStatsSnapshot {
            zerocopy_attempts: load(&self.zerocopy_attempts),
            zerocopy_successful: load(&self.zerocopy_successful),
            zerocopy_bytes: load(&self.zerocopy_bytes),
            regular_sends: load(&self.regular_sends),
            regular_bytes: load(&self.regular_bytes),
            coordination_fallbacks: load(&self.coordination_fallbacks),
            outstanding: load(&self.outstanding),
            copied_completions: load(&self.copied_completions),
            enobufs_fallbacks: load(&self.enobufs_fallbacks),
        }
    }

    pub(super) fn set_mode(&self, mode: SendMode) {
        self.mode.store(mode as u8, Ordering::Relaxed);
    }

    /// Records that the socket refused `SO_ZEROCOPY`.
    pub(super) fn record_zerocopy_refused(&self) {
        self.zerocopy_refused.store(1, Ordering::Relaxed);
    }

    /// Records that auto-fallback switched the session to ordinary sends.
    pub(super) fn engage_auto_fallback(&self) {
        self.set_mode(SendMode::FellBack);
        self.auto_fallback_engaged.store(true, Ordering::Relaxed);
    }

    pub(super) fn set_outstanding(&self, outstanding: usize) {
        self.outstanding
            .store(outstanding as u64, Ordering::Relaxed);
    }

    pub(super) fn bump(counter: &AtomicU64, by: u64) {
        counter.fetch_add(by, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_round_trips_and_fallback_is_recorded() {
        let stats = SendStats::default();
        assert_eq!(stats.mode(), SendMode::Regular);
        stats.set_mode(SendMode::Zerocopy);
        assert_eq!(stats.mode(), SendMode::Zerocopy);
        assert!(!stats.auto_fallback_engaged());
        stats.engage_auto_fallback();
        assert_eq!(stats.mode(), SendMode::FellBack);
        assert_eq!(stats.mode().as_str(), "zerocopy-fallback");
        assert!(stats.auto_fallback_engaged());
    }

    #[test]
    fn snapshots_difference_and_sum() {
        let stats = SendStats::default();
        SendStats::bump(&stats.zerocopy_bytes, 300);
        SendStats::bump(&stats.regular_bytes, 100);
        stats.set_outstanding(2);
        let earlier = stats.snapshot();
        assert_eq!(earlier.zerocopy_percent(), 75.0);
        SendStats::bump(&stats.regular_sends, 4);
        stats.set_outstanding(1);
        let later = stats.snapshot().since(&earlier);
        assert_eq!((later.regular_sends, later.outstanding), (4, 1));
        assert_eq!(later.zerocopy_bytes, 0);
        let mut total = earlier;
        total.add(&later);
        assert_eq!((total.regular_sends, total.outstanding), (4, 3));
    }
}

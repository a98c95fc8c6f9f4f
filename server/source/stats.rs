//! What a stream's input did that its chunks do not show: a source process that had to be
//! started again, a capture device that overran or was reopened.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one stream's input, monotonic since the stream started.
#[derive(Debug, Default)]
pub(crate) struct SourceStats {
    /// Times the input was started again: a source process or player that ended (or that
    /// its watchdog ended), a capture device reopened after an error.
    pub(crate) restarts: AtomicU64,
    /// Capture overruns: the device's buffer filled before it was read (ALSA xruns).
    pub(crate) overruns: AtomicU64,
    /// Captured frames read and thrown away to catch up when far behind (snapserver keeps a
    /// capture at most three chunks behind the device).
    pub(crate) frames_dropped: AtomicU64,
}

impl SourceStats {
    pub(crate) fn count_restart(&self) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
    }
}

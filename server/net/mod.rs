//! Socket-level networking: binding listeners, the kernel's MSG_ZEROCOPY interface, the per-session sender that
//! coordinates zerocopy and ordinary sends on one socket, the pure queue policy behind it,
//! and the counters it keeps.

mod listen;
mod send_queue;
mod send_stats;
pub(crate) mod sender;
pub(crate) mod zerocopy;

pub(crate) use listen::listen;
pub(crate) use send_stats::{SendMode, SendStats, SendStatsSnapshot};
pub(crate) use zerocopy::probe as zerocopy_probe;

//! Socket-level sending: the kernel's MSG_ZEROCOPY interface and the per-session sender
//! that coordinates zerocopy and ordinary sends on one socket.

pub mod sender;
pub(crate) mod zerocopy;

pub use sender::{SendMode, ZerocopyStats, ZerocopyStatsSnapshot};
pub use zerocopy::probe as zerocopy_probe;

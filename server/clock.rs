//! The server's one clock for the protocol: `CLOCK_MONOTONIC`, the clock snapserver stamps
//! Time replies and chunks with (docs/PROTOCOL.md §2.3). Time replies and WireChunk
//! timestamps must come from the same clock or clients drift apart.

use std::time::Duration;

use tokio::time::Instant;

use crate::protocol::Tv;

/// Now on the monotonic clock, as microseconds since boot.
pub fn now_micros() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec * 1_000_000 + ts.tv_nsec / 1_000
}

/// Now on the monotonic clock, as the protocol carries it.
pub fn now() -> Tv {
    Tv::from_micros(now_micros())
}

/// The tokio instant at which the monotonic clock reads `micros`, for sleeping until a
/// protocol time. Both clocks are `CLOCK_MONOTONIC`, so this is a plain offset.
pub(crate) fn instant_at(micros: i64) -> Instant {
    let now = Instant::now();
    let delta = micros - now_micros();
    if delta >= 0 {
        now + Duration::from_micros(delta as u64)
    } else {
        now.checked_sub(Duration::from_micros(delta.unsigned_abs()))
            .unwrap_or(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn monotonic_and_positive() {
        let a = now_micros();
        let b = now_micros();
        assert!(a > 0 && b >= a);
        assert!(now().sec >= 0);
    }

    #[test]
    fn instant_at_tracks_the_clock() {
        let target = now_micros() + 50_000;
        let at = instant_at(target);
        let until = at.saturating_duration_since(Instant::now());
        assert!(until <= Duration::from_millis(50) && until >= Duration::from_millis(40));
    }
}

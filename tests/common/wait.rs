//! Waiting for conditions that become true, instead of fixed sleeps.

use std::time::{Duration, Instant};

/// Polls `check` every 20 ms until it returns `Some`, failing with `what` (and the value of
/// `context()`) after `timeout`. For conditions that become true, instead of fixed sleeps.
pub fn eventually<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not happen within {timeout:?}; context:\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

//! The rules for values users set on clients and groups: the one place they live. The model
//! applies them to every change; gRPC and JSON-RPC pass what they were given and map the one
//! [`StateError::Invalid`] to their own error shape, so the same bad input gets the same
//! answer on both APIs.

use super::StateError;

/// Lowest client latency, ms: a client told to play this much later than the stream.
pub(crate) const MIN_LATENCY_MS: i64 = -10_000;
/// Longest name, in characters.
pub(crate) const MAX_NAME_CHARS: usize = 100;

fn invalid(field: &'static str, value: impl ToString, allowed: String) -> StateError {
    StateError::Invalid {
        field,
        value: value.to_string(),
        allowed,
    }
}

/// A volume percentage: 0 to 100.
///
/// # Errors
///
/// Outside 0 to 100.
pub(crate) fn volume_percent(percent: i64) -> Result<u16, StateError> {
    u16::try_from(percent)
        .ok()
        .filter(|p| *p <= 100)
        .ok_or_else(|| invalid("volume.percent", percent, "0 to 100".to_owned()))
}

/// A client latency in ms: from [`MIN_LATENCY_MS`] to the current buffer (a client cannot
/// play earlier than its buffer allows).
///
/// # Errors
///
/// Outside that range.
pub(crate) fn latency(latency: i64, buffer_ms: u32) -> Result<i32, StateError> {
    let max = i64::from(buffer_ms);
    if (MIN_LATENCY_MS..=max).contains(&latency) {
        // In range of i32: both bounds are.
        Ok(i32::try_from(latency).unwrap_or_default())
    } else {
        Err(invalid(
            "latency",
            latency,
            format!("{MIN_LATENCY_MS} to {max} (the buffer, ms)"),
        ))
    }
}

/// A client or group name, stored trimmed: at most [`MAX_NAME_CHARS`] characters, no control
/// characters. Empty clears the name (clients then show their host name), as snapserver
/// allows.
///
/// # Errors
///
/// Too long, or a control character.
pub(crate) fn name(name: &str) -> Result<String, StateError> {
    let trimmed = name.trim();
    if trimmed.chars().count() > MAX_NAME_CHARS || trimmed.chars().any(char::is_control) {
        return Err(invalid(
            "name",
            name.escape_debug(),
            format!("at most {MAX_NAME_CHARS} characters, no control characters"),
        ));
    }
    Ok(trimmed.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_is_a_percentage() {
        assert_eq!(volume_percent(0), Ok(0));
        assert_eq!(volume_percent(100), Ok(100));
        for bad in [-1, 101, 65_636, i64::MAX] {
            assert!(
                matches!(
                    volume_percent(bad),
                    Err(StateError::Invalid {
                        field: "volume.percent",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn latency_reaches_from_the_minimum_to_the_buffer() {
        assert_eq!(latency(-10_000, 1000), Ok(-10_000));
        assert_eq!(latency(1000, 1000), Ok(1000));
        assert!(latency(1001, 1000).is_err());
        assert!(latency(-10_001, 1000).is_err());
        assert!(latency(i64::MAX, 1000).is_err());
        let Err(StateError::Invalid { allowed, .. }) = latency(5000, 1000) else {
            panic!("5000 ms with a 1000 ms buffer must be refused");
        };
        assert_eq!(allowed, "-10000 to 1000 (the buffer, ms)");
    }

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(name("  Kitchen "), Ok("Kitchen".to_owned()));
        assert_eq!(name(""), Ok(String::new()));
        assert!(name(&"x".repeat(101)).is_err());
        assert_eq!(name(&"é".repeat(100)).map(|n| n.chars().count()), Ok(100));
        assert!(name("a\u{7}b").is_err());
    }
}

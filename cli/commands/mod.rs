//! One file per command (or per resource for its small verbs).

pub mod client;
pub mod completions;
pub mod config;
pub mod events;
pub mod groups;
pub mod health;
pub mod sessions;
pub mod stats;
pub mod stream;
pub mod streams;

/// Microseconds since the epoch as a local-agnostic UTC time of day, `YYYY-MM-DD HH:MM:SS`.
pub fn time_utc(us: i64) -> String {
    if us <= 0 {
        return "-".to_owned();
    }
    let secs = us / 1_000_000;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = snaprelay::calendar::civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_times() {
        assert_eq!(super::time_utc(0), "-");
        assert_eq!(
            super::time_utc(1_700_000_000_000_000),
            "2023-11-14 22:13:20Z"
        );
    }
}

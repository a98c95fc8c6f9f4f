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
    // Civil-from-days (H. Hinnant), to avoid a date crate for one column.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
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

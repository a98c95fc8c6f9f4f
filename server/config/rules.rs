//! What a config key accepts: the [`Rule`] each row of the key table carries, and the checks
//! rules point to. Validation at start-up, UpdateConfig at run time and the `-hh` listing all
//! read these, so a key's range is written once.

use std::net::IpAddr;

use figment::value::Value;

use super::SUPPORTED_CODECS;
use crate::source::SCHEMES;

/// The valid values of one key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    /// A key snaprelay does not read (not supported yet): never checked.
    Any,
    /// `true` or `false`; `1`/`0`, `yes`/`no` and `on`/`off` too (see [`parse_bool`]).
    Bool,
    /// A whole number from `min` to `max`.
    Int {
        /// Smallest valid value.
        min: i64,
        /// Largest valid value.
        max: i64,
        /// What a valid value looks like, with `{min}` and `{max}` where the bounds go.
        text: &'static str,
    },
    /// Text that `check` accepts; without a check, whatever the field's type reads (a path, a
    /// sample format).
    Text {
        /// What a valid value looks like.
        text: &'static str,
        /// Whether a value (as the user typed it) is valid.
        check: Option<fn(&str) -> bool>,
    },
    /// A codec from [`SUPPORTED_CODECS`], optionally followed by `:options`.
    Codec,
    /// A comma-separated list of source schemes ([`SCHEMES`], the source module's list),
    /// possibly empty.
    Schemes,
}

impl Rule {
    /// A whole number from `min` to `max`, described by `text` (`{min}`, `{max}` filled in).
    pub(crate) const fn int(min: i64, max: i64, text: &'static str) -> Self {
        Rule::Int { min, max, text }
    }

    /// Text the field's type checks when it is read; `text` says what it looks like.
    pub(crate) const fn text(text: &'static str) -> Self {
        Rule::Text { text, check: None }
    }

    /// Text that `check` accepts; `text` says what it looks like.
    pub(crate) const fn checked(text: &'static str, check: fn(&str) -> bool) -> Self {
        Rule::Text {
            text,
            check: Some(check),
        }
    }

    /// What a valid value looks like, for "expected ..." in error messages and for `-hh`.
    pub(crate) fn allowed(&self) -> String {
        match *self {
            Rule::Any => "any value".to_owned(),
            Rule::Bool => "true or false".to_owned(),
            Rule::Int { min, max, text } => text
                .replace("{min}", &min.to_string())
                .replace("{max}", &max.to_string()),
            Rule::Text { text, .. } => text.to_owned(),
            // Built from the lists so that they grow with them.
            Rule::Codec => format!("one of: {}", SUPPORTED_CODECS.join(", ")),
            Rule::Schemes => format!(
                "a comma-separated list of {} (or empty)",
                SCHEMES.join(", ")
            ),
        }
    }

    /// Whether `value`, as the user typed it (or as a typed config value renders), is valid.
    pub(crate) fn accepts(&self, value: &str) -> bool {
        match *self {
            Rule::Any => true,
            Rule::Bool => parse_bool(value).is_some(),
            Rule::Int { .. } => self.number(value).is_some(),
            Rule::Text { check, .. } => check.is_none_or(|check| check(value)),
            Rule::Codec => {
                let name = value.split(':').next().unwrap_or_default();
                SUPPORTED_CODECS.contains(&name)
            }
            Rule::Schemes => value
                .split(',')
                .map(str::trim)
                .filter(|scheme| !scheme.is_empty())
                .all(|scheme| SCHEMES.contains(&scheme)),
        }
    }

    /// `value` as a number, when this is an [`Rule::Int`] and the number is within range.
    pub(crate) fn number(&self, value: &str) -> Option<i64> {
        let Rule::Int { min, max, .. } = *self else {
            return None;
        };
        let number = value.trim().parse::<i64>().ok()?;
        (min..=max).contains(&number).then_some(number)
    }
}

/// A boolean as the config layers read one (figment's lossy reading: `true`/`false`,
/// `yes`/`no`, `on`/`off`, `1`/`0`, any case), so UpdateConfig takes what a file takes.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    Value::from(value.trim()).to_bool_lossy()
}

/// An IP address such as `0.0.0.0` or `::` (surrounding spaces allowed, as the listeners trim).
pub(super) fn ip_address(value: &str) -> bool {
    value.trim().parse::<IpAddr>().is_ok()
}

/// Empty, or an `http://` or `https://` URL (the start of cover art URLs).
pub(super) fn url_prefix(value: &str) -> bool {
    let value = value.trim();
    value.is_empty() || value.starts_with("http://") || value.starts_with("https://")
}

/// Anything but empty or blank.
pub(super) fn non_blank(value: &str) -> bool {
    !value.trim().is_empty()
}

/// Printable ASCII without spaces, or empty: what fits in an `Authorization: Bearer` header.
pub(super) fn token(value: &str) -> bool {
    value.chars().all(|c| c.is_ascii_graphic())
}

/// A log sink: snapserver's `stdout`, `stderr`, `null`, `system`, `file:<path>`, or empty for
/// the program's default.
pub(super) fn log_sink(value: &str) -> bool {
    crate::log_output::Sink::parse(value, crate::log_output::Sink::Stderr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_rules_fill_in_and_enforce_their_bounds() {
        let rule = Rule::int(20, 60_000, "a number of milliseconds from {min} to {max}");
        assert_eq!(rule.allowed(), "a number of milliseconds from 20 to 60000");
        assert_eq!(rule.number("20"), Some(20));
        assert_eq!(rule.number(" 60000 "), Some(60_000));
        for bad in ["19", "60001", "-1", "", "1e3", "many"] {
            assert!(!rule.accepts(bad), "{bad}");
        }
        assert_eq!(Rule::Bool.number("1"), None);
    }

    #[test]
    fn bools_read_as_figment_reads_them() {
        for yes in ["true", "TRUE", "on", "yes", "1", " true "] {
            assert_eq!(parse_bool(yes), Some(true), "{yes}");
        }
        for no in ["false", "Off", "no", "0"] {
            assert_eq!(parse_bool(no), Some(false), "{no}");
        }
        assert_eq!(parse_bool("maybe"), None);
        assert!(!Rule::Bool.accepts("2"));
    }

    #[test]
    fn list_rules_follow_their_lists() {
        assert!(Rule::Codec.accepts("flac:8") && Rule::Codec.accepts("pcm"));
        assert!(!Rule::Codec.accepts("mp3"));
        for scheme in SCHEMES {
            assert!(Rule::Schemes.allowed().contains(scheme));
        }
        assert!(Rule::Schemes.accepts("") && Rule::Schemes.accepts("pipe, tcp"));
        assert!(!Rule::Schemes.accepts("pipe,jack"));
    }

    #[test]
    fn text_checks() {
        assert!(ip_address(" ::1") && ip_address("0.0.0.0") && !ip_address("localhost"));
        assert!(non_blank("x") && !non_blank("  "));
        assert!(url_prefix("") && url_prefix("https://a.example") && !url_prefix("a.example"));
        assert!(token("") && token("s3cret!") && !token("two words") && !token("é"));
        assert!(log_sink("stderr") && log_sink("file:/var/log/x") && !log_sink("syslog"));
        assert!(Rule::text("a path").accepts("anything"));
    }
}

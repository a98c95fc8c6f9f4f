//! Why loading the configuration failed ([`ConfigError`]), and the "did you mean" hint that
//! every "no such key" message (here and in the control API) ends with.

use std::path::PathBuf;

/// Why the configuration could not be loaded. Every message names the file, variable or flag
/// and, for values, the key, the value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The config file could not be read. (The OS error is part of the message rather than a
    /// `source()`, so `{:#}` chains do not print it twice.)
    #[error("cannot read config file {}: {cause}", .path.display())]
    Read {
        /// The file given with `-c`.
        path: PathBuf,
        /// What the OS said.
        cause: std::io::Error,
    },
    /// A line of an INI config file cannot be read.
    #[error("{} line {line}: {message}", .path.display())]
    Syntax {
        /// The config file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with the line.
        message: String,
    },
    /// A `.toml` config file is not valid TOML.
    #[error("{} is not valid TOML: {message}", .path.display())]
    Toml {
        /// The config file.
        path: PathBuf,
        /// The TOML parser's message, with line and column.
        message: String,
    },
    /// A key neither snaprelay nor snapserver knows.
    #[error("unknown config key '{key}' ({location}){}", did_you_mean(.suggestion))]
    UnknownKey {
        /// `section.key` as given.
        key: String,
        /// File (and line), environment variable or flag.
        location: String,
        /// A known key within edit distance 2.
        suggestion: Option<&'static str>,
    },
    /// A TOML key outside any `[section]`.
    #[error("config key '{key}' is outside any section ({location})")]
    OutsideSection {
        /// The key as given.
        key: String,
        /// File, environment variable or flag.
        location: String,
    },
    /// A key and its old alias are both set in one layer.
    #[error("both {alias} and {key} are set ({location}); {alias} is an old name of {key}, keep only {key}")]
    Conflict {
        /// The canonical key.
        key: String,
        /// Its old name.
        alias: String,
        /// File, environment variable or flag.
        location: String,
    },
    /// A value that does not parse or is out of range.
    #[error("invalid value '{value}' for {key} (from {origin}): expected {allowed}")]
    Invalid {
        /// `section.key`.
        key: String,
        /// The value as given.
        value: String,
        /// File (and line), `env VAR`, `flag --x` or `default`.
        origin: String,
        /// What is allowed.
        allowed: String,
    },
    /// A key snaprelay does not implement yet, set to something that ignoring would leave open
    /// (client certificates, authorization).
    #[error(
        "{key} (from {origin}: {what}) is not supported by snaprelay yet, and running without \
         it would leave open what it asks to close; remove it, or use snapserver for this setup"
    )]
    Unsupported {
        /// `section.key`.
        key: String,
        /// File (and line), `env VAR` or `flag --x`.
        origin: String,
        /// What the key does.
        what: &'static str,
    },
    /// An extraction error figment could not tie to a key (should not happen).
    #[error("{0}")]
    Extract(String),
}

/// `"; did you mean 'stream.buffer'?"` for a suggested key, or nothing.
pub(crate) fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |key| format!("; did you mean '{key}'?"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_you_mean_is_empty_without_a_suggestion() {
        assert_eq!(did_you_mean(&None), "");
        assert_eq!(
            did_you_mean(&Some("stream.buffer")),
            "; did you mean 'stream.buffer'?"
        );
    }
}

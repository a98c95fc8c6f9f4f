//! `logging.filter`: snapserver's `TAG:LEVEL` filters translated into tracing `EnvFilter`
//! directives, and the one check of a filter that config validation and UpdateConfig share.

use super::Config;

impl Config {
    /// The logging filter as a tracing `EnvFilter` directive. snapserver's `TAG:LEVEL` lists
    /// are translated: `*:LEVEL` becomes `LEVEL`, any other tag becomes the module
    /// `snaprelay::<tag in lowercase>` (snapserver's tags are C++ class names, so this is a best
    /// effort), and the levels map trace→trace, debug→debug, info/notice→info, warning→warn,
    /// error/fatal→error. A filter that already looks like an EnvFilter directive passes
    /// through unchanged.
    pub fn log_filter_directive(&self) -> String {
        // A validated config always translates; the fallback only serves hand-built configs.
        translate_filter(&self.logging.filter).unwrap_or_else(|_| self.logging.filter.clone())
    }
}

/// Translates a snapserver `TAG:LEVEL[,TAG:LEVEL]*` filter into an EnvFilter directive; anything
/// else passes through. Fails on a snapserver-style filter with an unknown level.
fn translate_filter(filter: &str) -> Result<String, String> {
    let parts: Vec<&str> = filter.split(',').map(str::trim).collect();
    // EnvFilter directives use `=` and `::`; a snapserver filter has neither.
    let snapserver_style = parts.iter().all(|part| {
        !part.contains('=') && !part.contains("::") && !part.contains('[') && part.contains(':')
    });
    if !snapserver_style {
        return Ok(filter.to_owned());
    }
    let mut directives = Vec::with_capacity(parts.len());
    for part in parts {
        let (tag, level) = part.split_once(':').unwrap_or((part, ""));
        let level = match level.trim().to_ascii_lowercase().as_str() {
            "trace" => "trace",
            "debug" => "debug",
            "info" | "notice" => "info",
            "warning" | "warn" => "warn",
            "error" | "fatal" => "error",
            _ => return Err(part.to_owned()),
        };
        match tag.trim() {
            "*" => directives.push(level.to_owned()),
            tag => directives.push(format!("snaprelay::{}={level}", tag.to_lowercase())),
        }
    }
    Ok(directives.join(","))
}

/// The EnvFilter directive for `filter`, when it is a valid `logging.filter`: a snapserver
/// filter with known levels, or an EnvFilter directive tracing accepts, and not empty. The rule
/// of `logging.filter` in the key table, so start-up and UpdateConfig accept the same filters.
pub(crate) fn filter_directive(filter: &str) -> Option<String> {
    translate_filter(filter).ok().filter(|directive| {
        !directive.trim().is_empty() && tracing_subscriber::EnvFilter::try_new(directive).is_ok()
    })
}

/// Whether `filter` is a valid `logging.filter` (see [`filter_directive`]).
pub(super) fn is_valid(filter: &str) -> bool {
    filter_directive(filter).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_filter_translation() {
        let directive = |filter: &str| {
            let mut config = Config::default();
            config.logging.filter = filter.to_owned();
            config.log_filter_directive()
        };
        assert_eq!(directive("*:info"), "info");
        assert_eq!(directive("*:notice"), "info");
        assert_eq!(directive("*:warning"), "warn");
        assert_eq!(directive("*:fatal"), "error");
        assert_eq!(
            directive("*:debug,Stream:trace"),
            "debug,snaprelay::stream=trace"
        );
        assert_eq!(directive("debug"), "debug");
        assert_eq!(
            directive("snaprelay::session=debug,info"),
            "snaprelay::session=debug,info"
        );
        assert!(translate_filter("*:loud").is_err());
    }

    #[test]
    fn only_filters_tracing_accepts_are_valid() {
        assert_eq!(filter_directive("*:debug").as_deref(), Some("debug"));
        assert_eq!(
            filter_directive("snaprelay=trace").as_deref(),
            Some("snaprelay=trace")
        );
        for bad in ["", "  ", "*:loud", "snaprelay=[[["] {
            assert_eq!(filter_directive(bad), None, "{bad:?}");
        }
    }
}

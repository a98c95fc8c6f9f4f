//! GetConfig and UpdateConfig: the start-up configuration with its origins, overlaid with
//! what was changed at run time, and the table of keys that may change while running.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::ControlError;
use crate::config::{keys, translate_filter, Origin};
use crate::pb;
use crate::settings::LiveSettings;

/// Keys UpdateConfig accepts, with what a valid value looks like. The zerocopy keys only
/// affect sessions created after the change.
pub(crate) const RUNTIME_KEYS: &[(&str, &str)] = &[
    ("stream.buffer", "a number of milliseconds from 20 to 60000"),
    (
        "logging.filter",
        "a filter such as *:info or *:debug,Stream:trace, or a tracing EnvFilter directive",
    ),
    ("stream.zerocopy", "true or false"),
    (
        "stream.zerocopy_threshold",
        "a number of bytes from 1 to 1000000",
    ),
    (
        "server.diagnostics_interval_s",
        "a number of seconds from 0 (off) to 86400",
    ),
];

/// Keys whose value is a secret and is never sent back.
const SECRET_KEYS: &[&str] = &["grpc.token"];

/// A validated change, ready to apply.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    BufferMs(u32),
    LogFilter { filter: String, directive: String },
    Zerocopy(bool),
    ZerocopyThreshold(usize),
    DiagnosticsInterval(Duration),
}

/// The configuration as loaded plus what changed since.
#[derive(Debug)]
pub(crate) struct ConfigView {
    /// `(key, value, origin)` of every implemented key at start-up.
    loaded: Vec<(String, String, Origin)>,
    /// Keys changed at run time, with their new value as text.
    changed: Mutex<BTreeMap<String, String>>,
}

impl ConfigView {
    pub(crate) fn new(loaded: Vec<(String, String, Origin)>) -> Self {
        Self {
            loaded,
            changed: Mutex::new(BTreeMap::new()),
        }
    }

    /// Every key (or only `key` when not empty), as the API shows them.
    pub(crate) fn entries(
        &self,
        live: &LiveSettings,
        key: &str,
    ) -> Result<Vec<pb::ConfigEntry>, ControlError> {
        let changed = self
            .changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let mut entries: Vec<pb::ConfigEntry> = self
            .loaded
            .iter()
            .map(|(name, value, origin)| {
                let (origin, detail) = match origin {
                    Origin::Default => (pb::ConfigOrigin::Default, String::new()),
                    Origin::File(path) => (pb::ConfigOrigin::File, path.display().to_string()),
                    Origin::Env(var) => (pb::ConfigOrigin::Env, var.clone()),
                    Origin::Flag => (pb::ConfigOrigin::Flag, String::new()),
                };
                entry(name, value.clone(), origin, detail)
            })
            .collect();
        // Runtime keys the loaded config does not know (yet) still show their live value.
        for (name, _) in RUNTIME_KEYS {
            if !entries.iter().any(|e| e.key == *name) {
                let value = current(live, name);
                entries.push(entry(name, value, pb::ConfigOrigin::Default, String::new()));
            }
        }
        for entry in &mut entries {
            if changed.contains_key(&entry.key) {
                entry.value = current(live, &entry.key);
                entry.origin = pb::ConfigOrigin::Runtime as i32;
                entry.origin_detail = "UpdateConfig".to_owned();
            }
            if SECRET_KEYS.contains(&entry.key.as_str()) && !entry.value.is_empty() {
                entry.value = "(set)".to_owned();
            }
        }
        if key.is_empty() {
            return Ok(entries);
        }
        let found: Vec<_> = entries.into_iter().filter(|e| e.key == key).collect();
        if found.is_empty() {
            return Err(ControlError::ConfigKeyNotFound {
                key: key.to_owned(),
                suggestion: keys::suggest(key),
            });
        }
        Ok(found)
    }

    /// Records that `key` changed at run time.
    pub(crate) fn mark_changed(&self, key: &str, value: &str) {
        self.changed
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), value.to_owned());
    }
}

fn entry(name: &str, value: String, origin: pb::ConfigOrigin, detail: String) -> pb::ConfigEntry {
    let runtime = RUNTIME_KEYS.iter().find(|(key, _)| *key == name);
    pb::ConfigEntry {
        key: name.to_owned(),
        value,
        origin: origin as i32,
        origin_detail: detail,
        runtime_updatable: runtime.is_some(),
        allowed: runtime.map_or_else(|| keys::allowed(name), |(_, allowed)| (*allowed).to_owned()),
    }
}

/// The live value of a runtime key as text.
pub(crate) fn current(live: &LiveSettings, key: &str) -> String {
    match key {
        "stream.buffer" => live.buffer_ms().to_string(),
        "logging.filter" => live.log_filter(),
        "stream.zerocopy" => live.zerocopy_enabled().to_string(),
        "stream.zerocopy_threshold" => live.zerocopy_threshold().to_string(),
        "server.diagnostics_interval_s" => live.diagnostics_interval().as_secs().to_string(),
        _ => String::new(),
    }
}

/// Checks one change without applying it.
pub(crate) fn parse(key: &str, value: &str) -> Result<Change, ControlError> {
    let Some((_, allowed)) = RUNTIME_KEYS.iter().find(|(name, _)| *name == key) else {
        if key.is_empty() {
            return Err(ControlError::invalid(
                "key",
                "",
                "a config key such as stream.buffer",
            ));
        }
        return Err(ControlError::NotUpdatable {
            key: key.to_owned(),
            updatable: RUNTIME_KEYS
                .iter()
                .map(|(name, _)| *name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let invalid = || ControlError::invalid(key, value, *allowed);
    let text = value.trim();
    let number = |range: std::ops::RangeInclusive<u64>| {
        text.parse::<u64>()
            .ok()
            .filter(|n| range.contains(n))
            .ok_or_else(invalid)
    };
    Ok(match key {
        "stream.buffer" => Change::BufferMs(number(20..=60_000)? as u32),
        "logging.filter" => {
            let directive = translate_filter(text).map_err(|_| invalid())?;
            if directive.trim().is_empty()
                || tracing_subscriber::EnvFilter::try_new(&directive).is_err()
            {
                return Err(invalid());
            }
            Change::LogFilter {
                filter: text.to_owned(),
                directive,
            }
        }
        "stream.zerocopy" => Change::Zerocopy(match text.to_ascii_lowercase().as_str() {
            "true" | "on" | "yes" | "1" => true,
            "false" | "off" | "no" | "0" => false,
            _ => return Err(invalid()),
        }),
        "stream.zerocopy_threshold" => Change::ZerocopyThreshold(number(1..=1_000_000)? as usize),
        "server.diagnostics_interval_s" => {
            Change::DiagnosticsInterval(Duration::from_secs(number(0..=86_400)?))
        }
        _ => return Err(invalid()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn parses_each_runtime_key() {
        assert_eq!(
            parse("stream.buffer", "500").unwrap(),
            Change::BufferMs(500)
        );
        assert_eq!(
            parse("stream.zerocopy", "on").unwrap(),
            Change::Zerocopy(true)
        );
        assert_eq!(
            parse("stream.zerocopy_threshold", "4096").unwrap(),
            Change::ZerocopyThreshold(4096)
        );
        assert_eq!(
            parse("server.diagnostics_interval_s", "5").unwrap(),
            Change::DiagnosticsInterval(Duration::from_secs(5))
        );
        assert_eq!(
            parse("logging.filter", "*:debug").unwrap(),
            Change::LogFilter {
                filter: "*:debug".into(),
                directive: "debug".into()
            }
        );
    }

    #[test]
    fn rejects_with_field_and_allowed_values() {
        let err = parse("stream.buffer", "5").unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(
            err.to_string(),
            "invalid stream.buffer '5': expected a number of milliseconds from 20 to 60000"
        );
        let err = parse("stream.port", "1").unwrap_err();
        assert!(
            err.to_string().contains("cannot change at run time"),
            "{err}"
        );
        assert!(parse("logging.filter", "*:loud").is_err());
        assert!(parse("stream.zerocopy", "maybe").is_err());
    }

    #[test]
    fn entries_hide_secrets_and_mark_runtime_changes() {
        let live = LiveSettings::new(&Config::default(), None);
        let view = ConfigView::new(vec![
            (
                "grpc.token".into(),
                "s3cret".into(),
                Origin::Env("X".into()),
            ),
            ("stream.buffer".into(), "1000".into(), Origin::Default),
        ]);
        live.set_buffer_ms(400);
        view.mark_changed("stream.buffer", "400");
        let entries = view.entries(&live, "").unwrap();
        let token = entries.iter().find(|e| e.key == "grpc.token").unwrap();
        assert_eq!(token.value, "(set)");
        assert_eq!(token.origin, pb::ConfigOrigin::Env as i32);
        let buffer = &view.entries(&live, "stream.buffer").unwrap()[0];
        assert_eq!(buffer.value, "400");
        assert_eq!(buffer.origin, pb::ConfigOrigin::Runtime as i32);
        assert!(buffer.runtime_updatable);
        assert!(entries.iter().any(|e| e.key == "stream.zerocopy_threshold"));
        let err = view.entries(&live, "stream.buffr").unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
    }
}

//! GetConfig and UpdateConfig: the start-up configuration with its origins, overlaid with
//! what was changed at run time. Which keys may change while running, and what values they
//! take, is the config key table's (`runtime` and `rule` of each row in `config::keys`).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use super::ControlError;
use crate::config::{filter_directive, keys, Origin};
use crate::pb;
use crate::settings::LiveSettings;

/// A validated change, ready to apply. The zerocopy changes only affect sessions created
/// after them.
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
        for row in keys::runtime() {
            if !entries.iter().any(|e| e.key == row.name) {
                let value = current(live, row.name);
                entries.push(entry(
                    row.name,
                    value,
                    pb::ConfigOrigin::Default,
                    String::new(),
                ));
            }
        }
        for entry in &mut entries {
            if changed.contains_key(&entry.key) {
                entry.value = current(live, &entry.key);
                entry.origin = pb::ConfigOrigin::Runtime as i32;
                entry.origin_detail = "UpdateConfig".to_owned();
            }
            let secret = keys::find(&entry.key).is_some_and(|row| row.secret);
            if secret && !entry.value.is_empty() {
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
    pb::ConfigEntry {
        key: name.to_owned(),
        value,
        origin: origin as i32,
        origin_detail: detail,
        runtime_updatable: keys::find(name).is_some_and(|row| row.runtime),
        allowed: keys::allowed(name),
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

/// Checks one change without applying it, against the key's row in the config key table (the
/// same rule start-up validation applies).
pub(crate) fn parse(key: &str, value: &str) -> Result<Change, ControlError> {
    let Some(row) = keys::find(key).filter(|row| row.runtime) else {
        if key.is_empty() {
            return Err(ControlError::invalid(
                "key",
                "",
                "a config key such as stream.buffer",
            ));
        }
        return Err(ControlError::NotUpdatable {
            key: key.to_owned(),
            updatable: keys::runtime()
                .map(|row| row.name)
                .collect::<Vec<_>>()
                .join(", "),
        });
    };
    let invalid = || ControlError::invalid(key, value, row.rule.allowed());
    let text = value.trim();
    if !row.rule.accepts(text) {
        return Err(invalid());
    }
    let number = || row.rule.number(text).ok_or_else(invalid);
    Ok(match key {
        "stream.buffer" => Change::BufferMs(u32::try_from(number()?).map_err(|_| invalid())?),
        "logging.filter" => Change::LogFilter {
            filter: text.to_owned(),
            directive: filter_directive(text).ok_or_else(invalid)?,
        },
        "stream.zerocopy" => Change::Zerocopy(keys::parse_bool(text).ok_or_else(invalid)?),
        "stream.zerocopy_threshold" => {
            Change::ZerocopyThreshold(usize::try_from(number()?).map_err(|_| invalid())?)
        }
        "server.diagnostics_interval_s" => Change::DiagnosticsInterval(Duration::from_secs(
            u64::try_from(number()?).map_err(|_| invalid())?,
        )),
        // A row marked runtime without a change here; the tests catch it.
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

    /// The key table decides what UpdateConfig takes: every row marked runtime is accepted
    /// (with its default as the value) and has a live value, every other key is refused.
    #[test]
    fn runtime_rows_and_only_those_are_updatable() {
        let live = LiveSettings::new(&Config::default(), None);
        for row in keys::KEYS {
            let result = parse(row.name, row.default);
            if row.runtime {
                assert!(result.is_ok(), "{}: {:?}", row.name, result);
                assert!(!current(&live, row.name).is_empty(), "{}", row.name);
            } else {
                let err = result.unwrap_err();
                assert!(
                    matches!(err, ControlError::NotUpdatable { .. }),
                    "{}: {err}",
                    row.name
                );
            }
        }
        let err = parse("stream.port", "1").unwrap_err().to_string();
        let updatable: Vec<&str> = keys::runtime().map(|row| row.name).collect();
        assert!(err.ends_with(&updatable.join(", ")), "{err}");
    }

    /// Start-up validation and UpdateConfig reject the same values with the same bounds, from
    /// the one rule in the key table.
    #[test]
    fn validation_and_update_config_agree_on_every_runtime_rule() {
        let load = |key: &str, value: &str| {
            crate::config::load_from(
                &crate::config::Args::try_parse_from(["snaprelay", &format!("--{key}={value}")])
                    .unwrap(),
                Vec::new(),
            )
        };
        let mut cases: Vec<(&str, String, bool)> = vec![
            ("logging.filter", "*:loud".into(), false),
            ("logging.filter", "*:debug,Stream:trace".into(), true),
            ("stream.zerocopy", "maybe".into(), false),
            ("stream.zerocopy", "on".into(), true),
        ];
        for row in keys::runtime() {
            if let keys::Rule::Int { min, max, .. } = row.rule {
                cases.push((row.name, min.to_string(), true));
                cases.push((row.name, max.to_string(), true));
                cases.push((row.name, (min - 1).to_string(), false));
                cases.push((row.name, (max + 1).to_string(), false));
            }
        }
        assert!(cases
            .iter()
            .any(|(key, value, _)| *key == "stream.buffer" && value == "60001"));
        for (key, value, valid) in cases {
            let update = parse(key, &value);
            let start = load(key, &value);
            assert_eq!(update.is_ok(), valid, "UpdateConfig {key}={value}");
            assert_eq!(start.is_ok(), valid, "start-up {key}={value}");
            if !valid {
                let allowed = keys::allowed(key);
                let update = update.unwrap_err().to_string();
                let start = start.unwrap_err().to_string();
                assert!(update.ends_with(&format!("expected {allowed}")), "{update}");
                assert!(start.ends_with(&format!("expected {allowed}")), "{start}");
                assert!(update.contains(&format!("'{value}'")), "{update}");
                assert!(start.contains(&format!("'{value}'")), "{start}");
            }
        }
        let err = parse("stream.buffer", "60001").unwrap_err().to_string();
        assert!(err.ends_with("from 20 to 60000"), "{err}");
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

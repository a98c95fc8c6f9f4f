//! The figment layers: each source (defaults, config file, environment, flags) read into a
//! `{section: {key: value}}` dict, checked against the key table and normalised (aliases moved,
//! not-yet keys turned into notices), with metadata naming where each key came from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

use super::ini;
use super::keys::{self, Repeat, Status};
use super::provenance::{render, LAYER_DEFAULT, LAYER_ENV, LAYER_FILE, LAYER_FLAG};
use super::{Args, Config, ConfigError};

/// One figment layer: a normalised `{section: {key: value}}` dict, with metadata whose
/// interpolater names where each key came from (file line, variable, flag).
pub(super) struct Layer {
    metadata: Metadata,
    dict: Dict,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        self.metadata.clone()
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}

/// Metadata whose interpolater looks keys up in `names` (falling back to `fallback`).
fn metadata(name: &'static str, names: BTreeMap<String, String>, fallback: String) -> Metadata {
    let names = Arc::new(names);
    Metadata::named(name).interpolater(move |_: &Profile, keys: &[&str]| {
        names
            .get(&keys.join("."))
            .cloned()
            .unwrap_or_else(|| fallback.clone())
    })
}

/// How a layer names the place a key came from, for error messages.
enum Place<'a> {
    /// A file; keys map to line numbers where known (INI).
    File(&'a Path, &'a BTreeMap<String, usize>),
    /// Keys map to environment variable names.
    Env(&'a BTreeMap<String, String>),
    /// Keys map to flag spellings.
    Flag(&'a BTreeMap<String, String>),
}

impl Place<'_> {
    /// "/etc/snapserver.conf line 3", "env SNAPRELAY_STREAM__PORT", "flag --port".
    fn describe(&self, key: &str) -> String {
        match self {
            Place::File(path, lines) => match lines.get(key) {
                Some(line) => format!("{} line {line}", path.display()),
                None => path.display().to_string(),
            },
            Place::Env(names) => format!("env {}", names.get(key).map_or(key, String::as_str)),
            Place::Flag(names) => format!("flag {}", names.get(key).map_or(key, String::as_str)),
        }
    }

    /// Like `describe`, reading naturally after "unknown config key 'x' (".
    fn location(&self, key: &str) -> String {
        match self {
            Place::File(..) => format!("in {}", self.describe(key)),
            _ => self.describe(key),
        }
    }
}

impl Layer {
    pub(super) fn defaults() -> Self {
        let dict = Value::serialize(Config::default())
            .ok()
            .and_then(|value| value.into_dict())
            .expect("Config serializes to a dict");
        Self {
            metadata: metadata(LAYER_DEFAULT, BTreeMap::new(), "default".to_owned()),
            dict,
        }
    }

    /// Reads `path` as TOML, or as snapserver.conf INI when it is not a `.toml` file and does
    /// not parse as TOML (the stock /etc/snapserver.conf has unquoted values, so it is not
    /// TOML).
    pub(super) fn file(path: &Path, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let bytes = std::fs::read(path).map_err(|cause| ConfigError::Read {
            path: path.to_owned(),
            cause,
        })?;
        let text = String::from_utf8(bytes).map_err(|error| {
            let valid = &error.as_bytes()[..error.utf8_error().valid_up_to()];
            ConfigError::Syntax {
                path: path.to_owned(),
                line: 1 + valid.iter().filter(|&&byte| byte == b'\n').count(),
                message: "not UTF-8 text (is this a text file?)".to_owned(),
            }
        })?;
        let is_toml = path.extension().is_some_and(|ext| ext == "toml");
        let syntax = |error: ini::IniError| ConfigError::Syntax {
            path: path.to_owned(),
            line: error.line,
            message: error.message,
        };
        let entries = ini::parse(&text);
        // Simple TOML files read as INI too, which gives line numbers for messages about them.
        let mut lines = BTreeMap::new();
        for entry in entries.iter().flatten() {
            lines.entry(entry.name.clone()).or_insert(entry.line);
        }
        let raw = match Toml::string(&text).data() {
            Ok(mut profiles) => profiles.remove(&Profile::Default).unwrap_or_default(),
            Err(error) if is_toml => {
                return Err(ConfigError::Toml {
                    path: path.to_owned(),
                    message: error.to_string(),
                })
            }
            Err(_) => {
                let entries = entries.map_err(syntax)?;
                ini::to_dict(&entries, |name| keys::find(name).map(|key| key.repeat))
                    .map_err(syntax)?
            }
        };
        let (dict, renames) = normalize(raw, &Place::File(path, &lines), notices)?;
        for (to, from) in renames {
            if let Some(&line) = lines.get(&from) {
                lines.insert(to, line);
            }
        }
        let display = path.display().to_string();
        let names = lines
            .into_iter()
            .map(|(key, line)| (key, format!("{display} line {line}")))
            .collect();
        Ok(Self {
            metadata: metadata(LAYER_FILE, names, display)
                .source(figment::Source::File(path.to_owned())),
            dict,
        })
    }

    pub(super) fn env(
        env: impl IntoIterator<Item = (String, String)>,
        notices: &mut Vec<String>,
    ) -> Result<Self, ConfigError> {
        const PREFIX: &str = "SNAPRELAY_";
        let mut raw = Dict::new();
        let mut names = BTreeMap::new();
        let mut log = None;
        for (var, value) in env {
            let Some(rest) = var.strip_prefix(PREFIX) else {
                continue;
            };
            if rest == "LOG" {
                log = Some(value);
                continue;
            }
            // Only SECTION__KEY names are config keys; SNAPRELAY_FOO may belong to someone else.
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (section.to_lowercase(), key.to_lowercase());
            names.insert(format!("{}.{key}", section.replace('-', "_")), var.clone());
            insert(&mut raw, &section, &key, Value::from(value));
        }
        let (mut dict, renames) = normalize(raw, &Place::Env(&names), notices)?;
        for (to, from) in renames {
            if let Some(var) = names.get(&from).cloned() {
                names.insert(to, var);
            }
        }
        if let Some(filter) = log {
            insert(&mut dict, "logging", "filter", Value::from(filter));
            names.insert("logging.filter".to_owned(), format!("{PREFIX}LOG"));
        }
        Ok(Self {
            metadata: metadata(LAYER_ENV, names, "SNAPRELAY_".to_owned()),
            dict,
        })
    }

    /// snapserver-style `--section.key=value` overrides first, then the named flags, which
    /// win when both set the same key.
    pub(super) fn flags(args: &Args, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
        let mut raw = Dict::new();
        let mut names = BTreeMap::new();
        for (name, value) in &args.overrides {
            let (section, key) = name.split_once('.').unwrap_or((name.as_str(), ""));
            let canonical = format!("{}.{key}", section.replace('-', "_"));
            names.insert(canonical.clone(), format!("--{name}"));
            let value = Value::from(value.as_str());
            let repeat = keys::find(&canonical).map(|key| key.repeat);
            match find_mut(&mut raw, section, key) {
                Some(Value::Array(_, list)) if repeat != Some(Repeat::Once) => list.push(value),
                Some(previous) if repeat != Some(Repeat::Once) => {
                    *previous = Value::from(vec![previous.clone(), value]);
                }
                _ => insert(&mut raw, section, key, value),
            }
        }
        let (mut dict, renames) = normalize(raw, &Place::Flag(&names), notices)?;
        for (to, from) in renames {
            if let Some(flag) = names.get(&from).cloned() {
                names.insert(to, flag);
            }
        }
        let mut set = |key: &str, flag: &str, value: Value| {
            let (section, name) = key.split_once('.').expect("section.key");
            insert(&mut dict, section, name, value);
            names.insert(key.to_owned(), flag.to_owned());
        };
        if let Some(port) = args.port {
            set("stream.port", "--port", Value::from(port));
        }
        if !args.bind.is_empty() {
            set(
                "stream.bind_to_address",
                "--bind",
                Value::from(args.bind.clone()),
            );
        }
        if !args.source.is_empty() {
            set(
                "stream.source",
                "--source",
                Value::from(args.source.clone()),
            );
        }
        if let Some(format) = args.sampleformat {
            set(
                "stream.sampleformat",
                "--sampleformat",
                Value::from(format.to_string()),
            );
        }
        if let Some(codec) = &args.codec {
            set("stream.codec", "--codec", Value::from(codec.as_str()));
        }
        if let Some(chunk_ms) = args.chunk_ms {
            set("stream.chunk_ms", "--chunk-ms", Value::from(chunk_ms));
        }
        if let Some(buffer) = args.buffer {
            set("stream.buffer", "--buffer", Value::from(buffer));
        }
        if args.zerocopy {
            set("stream.zerocopy", "-z", Value::from(true));
        }
        if let Some(datadir) = &args.datadir {
            let text = datadir.to_string_lossy().into_owned();
            set("server.datadir", "--datadir", Value::from(text));
        }
        if let Some(filter) = &args.log_filter {
            set(
                "logging.filter",
                "--log-filter",
                Value::from(filter.as_str()),
            );
        }
        Ok(Self {
            metadata: metadata(LAYER_FLAG, names, "--".to_owned()),
            dict,
        })
    }
}

fn insert(dict: &mut Dict, section: &str, key: &str, value: Value) {
    let entry = dict
        .entry(section.to_owned())
        .or_insert_with(|| Value::from(Dict::new()));
    if let Value::Dict(_, keys) = entry {
        keys.insert(key.to_owned(), value);
    }
}

fn find_mut<'a>(dict: &'a mut Dict, section: &str, key: &str) -> Option<&'a mut Value> {
    match dict.get_mut(section)? {
        Value::Dict(_, keys) => keys.get_mut(key),
        _ => None,
    }
}

/// Checks one layer's raw `{section: {key: value}}` against the key table and reshapes it into
/// the `Config` layout: `-` in section names becomes `_`, unknown keys fail, not-yet keys become
/// notices and are dropped, aliases move to their canonical key, `Join` lists are joined.
/// Returns the dict and the `(canonical, as given)` names of moved keys, so the layer can still
/// say where a moved value came from.
fn normalize(
    raw: Dict,
    place: &Place<'_>,
    notices: &mut Vec<String>,
) -> Result<(Dict, Vec<(String, String)>), ConfigError> {
    let mut kept: BTreeMap<String, Value> = BTreeMap::new();
    let mut moved = Vec::new();
    for (section, value) in raw {
        let Value::Dict(_, entries) = value else {
            return Err(ConfigError::OutsideSection {
                location: place.location(&section),
                key: section,
            });
        };
        let section = section.replace('-', "_");
        for (key, value) in entries {
            let name = format!("{section}.{key}");
            let Some(row) = keys::find(&name) else {
                return Err(ConfigError::UnknownKey {
                    location: place.location(&name),
                    suggestion: keys::suggest(&name),
                    key: name,
                });
            };
            match row.status {
                Status::Implemented => {
                    kept.insert(name, value);
                }
                Status::NotYet => {
                    notices.push(format!("config: {name} is not supported yet; ignored"));
                }
                Status::Refused => {
                    let default = match row.default {
                        "true" | "false" => value.to_bool_lossy() == Some(row.default == "true"),
                        text => render(&value).trim() == text,
                    };
                    if !default {
                        return Err(ConfigError::Unsupported {
                            origin: place.describe(&name),
                            what: row.help,
                            key: name,
                        });
                    }
                }
                Status::Alias(_) | Status::Overrides(_) => moved.push((row, name, value)),
            }
        }
    }
    let mut renames = Vec::new();
    for (row, name, value) in moved {
        let (Status::Alias(target) | Status::Overrides(target)) = row.status else {
            continue;
        };
        let repeat = keys::find(target).map_or(Repeat::Once, |key| key.repeat);
        match (row.status, kept.remove(target)) {
            (Status::Alias(_), Some(existing)) if repeat == Repeat::List => {
                kept.insert(target.to_owned(), concat(existing, value));
            }
            (Status::Alias(_), Some(_)) => {
                return Err(ConfigError::Conflict {
                    key: target.to_owned(),
                    location: place.location(&name),
                    alias: name,
                })
            }
            _ => {
                kept.insert(target.to_owned(), value);
                renames.push((target.to_owned(), name));
            }
        }
    }
    let mut dict = Dict::new();
    for (name, value) in kept {
        let value = match (keys::find(&name).map(|key| key.repeat), value) {
            (Some(Repeat::Join), Value::Array(_, items)) => {
                Value::from(items.iter().map(render).collect::<Vec<_>>().join(","))
            }
            (_, value) => value,
        };
        let (section, key) = name.split_once('.').expect("table names are section.key");
        insert(&mut dict, section, key, value);
    }
    Ok((dict, renames))
}

/// `a` then `b` as one list, whether each is a single value or a list.
fn concat(a: Value, b: Value) -> Value {
    let mut list = match a {
        Value::Array(_, items) => items,
        other => vec![other],
    };
    match b {
        Value::Array(_, items) => list.extend(items),
        other => list.push(other),
    }
    Value::from(list)
}

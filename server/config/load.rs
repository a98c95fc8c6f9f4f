//! Loading: the figment layers (built-in defaults → config file → `SNAPRELAY_*` environment →
//! command-line flags, built in [`super::layers`]) merged, extracted into [`Config`] and
//! validated, plus where each effective value came from ([`Loaded::origin`]).

use std::fmt;
use std::path::PathBuf;

use figment::value::Value;
use figment::Figment;

use super::keys::{self, Status};
use super::layers::Layer;
use super::provenance::{describe, interpolate, render, LAYER_ENV, LAYER_FILE, LAYER_FLAG};
use super::validate::validate;
use super::{Args, Config, ConfigError};

/// Where a key's effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The config file given with `-c`.
    File(PathBuf),
    /// The environment variable named here.
    Env(String),
    /// A command-line flag.
    Flag,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => write!(f, "env {var}"),
            Origin::Flag => f.write_str("command line"),
        }
    }
}
/// A loaded, validated configuration plus what to tell the user about it.
#[derive(Debug)]
pub struct Loaded {
    /// The validated configuration.
    pub config: Config,
    /// One line per accepted-but-ignored setting, e.g. `config: http.port is not supported
    /// yet; ignored`. The caller logs them once tracing is up.
    pub notices: Vec<String>,
    /// The merged layers, kept so [`Loaded::origin`] can answer where each value came from.
    figment: Figment,
}

impl Loaded {
    /// Where the effective value of `key` (an implemented `section.key`) came from. A key that
    /// arrived under an alias (`tcp_streaming.port`) reports the canonical key's origin.
    pub(crate) fn origin(&self, key: &str) -> Origin {
        let Some(metadata) = self.figment.find_metadata(key) else {
            return Origin::Default;
        };
        match metadata.name.as_ref() {
            LAYER_FILE => metadata
                .source
                .as_ref()
                .and_then(|source| source.file_path())
                .map_or(Origin::Default, |path| Origin::File(path.to_owned())),
            LAYER_ENV => Origin::Env(interpolate(metadata, key)),
            LAYER_FLAG => Origin::Flag,
            _ => Origin::Default,
        }
    }

    /// Every implemented key with its effective value as text (lists joined with ", ") and
    /// origin, in key-table order: what a `GetConfig` or a startup log line shows.
    pub fn effective(&self) -> Vec<(String, String, Origin)> {
        let values = Value::serialize(&self.config).ok();
        keys::KEYS
            .iter()
            .filter(|key| key.status == Status::Implemented)
            .map(|key| {
                let text = if key.name == "stream.source" {
                    // Source URIs may carry passwords and tokens (GetConfig shows this).
                    self.config
                        .stream
                        .source
                        .iter()
                        .map(|uri| crate::source::redacted_uri_string(uri))
                        .collect::<Vec<_>>()
                        .join(", ")
                } else {
                    values
                        .as_ref()
                        .and_then(|values| values.find_ref(key.name))
                        .map(render)
                        .unwrap_or_default()
                };
                (key.name.to_owned(), text, self.origin(key.name))
            })
            .collect()
    }
}

/// Loads the configuration from the file given with `-c`, the process environment and the
/// flags in `args`.
///
/// # Errors
///
/// See [`load_from`].
pub fn load(args: &Args) -> Result<Loaded, ConfigError> {
    // vars() panics on non-Unicode variables; ours are Unicode, others do not matter.
    let env = std::env::vars_os().filter_map(|(name, value)| {
        let name = name.into_string().ok()?;
        Some((name, value.to_string_lossy().into_owned()))
    });
    load_from(args, env)
}

/// Like [`load`], with the environment given as `(name, value)` pairs. Only variables named
/// `SNAPRELAY_<SECTION>__<KEY>` are config keys; `SNAPRELAY_LOG` sets `logging.filter` and
/// wins over `SNAPRELAY_LOGGING__FILTER`; other variables are ignored.
///
/// # Errors
///
/// An unreadable or malformed config file, an unknown key in any layer, or a value that does
/// not parse or is out of range.
pub fn load_from(
    args: &Args,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Loaded, ConfigError> {
    let mut notices = Vec::new();
    let mut figment = Figment::from(Layer::defaults());
    match (&args.config, args.personality.default_config()) {
        (Some(path), _) => figment = figment.merge(Layer::file(path, &mut notices)?),
        // As snapserver: its config file when there is one, else the defaults, said once.
        (None, Some(path)) if path.exists() => {
            figment = figment.merge(Layer::file(path, &mut notices)?);
        }
        (None, Some(path)) => notices.push(format!(
            "config: {} not found; running on the built-in defaults",
            path.display()
        )),
        (None, None) => {}
    }
    figment = figment.merge(Layer::env(env, &mut notices)?);
    figment = figment.merge(Layer::flags(args, &mut notices)?);
    let mut config: Config = figment
        .extract_lossy()
        .map_err(|error| extract_error(&figment, error))?;
    validate(&mut config, &figment)?;
    // The same ignored key in two layers is still one thing to tell the user.
    let mut seen = std::collections::BTreeSet::new();
    notices.retain(|notice| seen.insert(notice.clone()));
    Ok(Loaded {
        config,
        notices,
        figment,
    })
}

/// Turns figment's type errors (`port = "abc"`) into the same `Invalid` form as range errors.
fn extract_error(figment: &Figment, error: figment::Error) -> ConfigError {
    let Some(error) = error.into_iter().next() else {
        return ConfigError::Extract("cannot read the configuration".to_owned());
    };
    if error.path.len() < 2 {
        return ConfigError::Extract(error.to_string());
    }
    // Errors inside lists carry the element index as a third path part.
    let key = error.path[..2].join(".");
    let value = figment
        .find_value(&key)
        .map(|value| render(&value))
        .unwrap_or_default();
    let mut allowed = keys::allowed(&key);
    if let figment::error::Kind::Message(message) = &error.kind {
        // Our own deserializers (SampleFormat) say precisely what is wrong.
        allowed = format!("{allowed}; {message}");
    }
    ConfigError::Invalid {
        origin: describe(figment, &key),
        key,
        value,
        allowed,
    }
}

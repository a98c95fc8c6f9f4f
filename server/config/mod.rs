//! Server configuration: figment layers (built-in defaults → config file → `SNAPRELAY_*`
//! environment → command-line flags), snapserver.conf compatibility and validation
//! (design.md "Configuration", snapcast-protocol.md §6.1).
//!
//! Every layer goes through the key table in [`keys`]: unknown keys are errors, keys snapserver
//! knows but we do not implement yet become [`Loaded::notices`], aliases are folded into their
//! canonical key. Only then are the layers merged and extracted, and every value checked.
//! This module reads the config file; it never logs (tracing is not set up yet when it runs).

mod args;
mod ini;
pub mod keys;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use figment::providers::{Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::{Deserialize, Serialize};

use crate::sample_format::SampleFormat;
pub use args::{help_text, print_help, Args};
use keys::{Repeat, Status};

/// Codecs the stream encoder can produce: the encoder's own list, so adding a codec there is
/// all the config needs (the error message and `-hh` are built from it).
pub const SUPPORTED_CODECS: &[&str] = crate::encoder::SUPPORTED_CODECS;

/// The whole validated server configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[server]`: process-wide settings.
    pub server: ServerConfig,
    /// `[stream]` (and `[tcp-streaming]`): the stream listener and source defaults.
    pub stream: StreamConfig,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[streaming_client]`: defaults for newly seen clients.
    pub streaming_client: StreamingClientConfig,
    /// `[grpc]`: the control API listener (snaprelay only).
    pub grpc: GrpcConfig,
    /// `[http]`: the HTTP listener (`/metrics`; snapserver's JSON-RPC over HTTP later).
    pub http: HttpConfig,
    /// `[tcp]` (and `[tcp-control]`): the JSON-RPC TCP listener.
    pub tcp: TcpConfig,
    /// `[jsonrpc]`: what the Snapcast JSON-RPC API allows (snaprelay only).
    pub jsonrpc: JsonRpcConfig,
}

/// `[tcp]` keys (snapserver 0.33+: `[tcp-control]`): the JSON-RPC TCP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TcpConfig {
    /// Whether JSON-RPC is served over TCP.
    pub enabled: bool,
    /// Listen addresses; `0.0.0.0` rather than snapserver's `::` for the reason given at
    /// [`HttpConfig::bind_to_address`].
    #[serde(deserialize_with = "string_or_list")]
    pub bind_to_address: Vec<String>,
    /// TCP port (snapserver's 1705); 0 picks a free one (the log line says which).
    pub port: u16,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_to_address: vec!["0.0.0.0".to_owned()],
            port: crate::DEFAULT_JSONRPC_PORT,
        }
    }
}

/// `[jsonrpc]` keys: the Snapcast JSON-RPC API's switches and safety limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JsonRpcConfig {
    /// Whether `POST /jsonrpc` and the `/jsonrpc` websocket are served on the HTTP listener.
    pub http_enabled: bool,
    /// Comma-separated source schemes `Stream.AddStream` may start. `process` is left out by
    /// default: starting programs from the network is CVE-2023-36177.
    pub add_stream_schemes: String,
    /// Whether callers must present the gRPC token (`grpc.token`/`grpc.token_file`).
    pub require_token: bool,
}

impl Default for JsonRpcConfig {
    fn default() -> Self {
        Self {
            http_enabled: true,
            add_stream_schemes: "pipe,file,tcp,tone".to_owned(),
            require_token: false,
        }
    }
}

impl JsonRpcConfig {
    /// The allowed schemes as a list.
    pub fn schemes(&self) -> Vec<String> {
        self.add_stream_schemes
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

/// `[http]` keys: the HTTP listener that serves `/metrics` (and, later, JSON-RPC).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpConfig {
    /// Whether the HTTP listener runs at all.
    pub enabled: bool,
    /// Listen addresses, IP addresses. `0.0.0.0` rather than snapserver's `::` by default:
    /// binding `::` fails outright on hosts and pods with IPv6 disabled.
    #[serde(deserialize_with = "string_or_list")]
    pub bind_to_address: Vec<String>,
    /// TCP port (snapserver's 1780); 0 picks a free one (the log line says which).
    pub port: u16,
    /// Whether `/metrics` (Prometheus text format) is served on this listener.
    pub metrics: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_to_address: vec!["0.0.0.0".to_owned()],
            port: crate::DEFAULT_HTTP_PORT,
            metrics: true,
        }
    }
}

/// `[grpc]` keys: where the control API listens and how it is protected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrpcConfig {
    /// Whether the control API is served at all.
    pub enabled: bool,
    /// Listen address, an IP address; loopback by default so that nothing outside the host
    /// can steer the relay unless asked to.
    pub bind_to_address: String,
    /// TCP port; 0 picks a free one (the log line says which).
    pub port: u16,
    /// Bearer token required on every call except health; empty means none.
    pub token: String,
    /// File whose first line is the token (wins over `token`, keeps it out of argv/env).
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, the API is served over TLS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_to_address: "127.0.0.1".to_owned(),
            port: crate::DEFAULT_GRPC_PORT,
            token: String::new(),
            token_file: None,
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[server]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerConfig {
    /// Directory for server.json; `None` picks the snapserver locations (snapcast-protocol.md
    /// §6.3). An empty value in the file means `None`, as in snapserver.
    pub datadir: Option<PathBuf>,
    /// Runtime worker threads; -1 means automatic.
    pub threads: i32,
    /// A stream client that has not sent Hello after this many milliseconds is dropped.
    pub hello_timeout_ms: u64,
    /// Most stream clients connected at once; further connections are refused.
    pub max_clients: usize,
    /// Seconds between the periodic zerocopy and pool reports; 0 turns them off.
    pub diagnostics_interval_s: u64,
    /// Most bytes the chunk buffer pool keeps in its free lists.
    pub pool_max_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            datadir: None,
            threads: -1,
            hello_timeout_ms: 10_000,
            max_clients: 1000,
            diagnostics_interval_s: 30,
            pool_max_bytes: crate::pool::DEFAULT_MAX_POOLED_BYTES,
        }
    }
}

/// `[stream]` keys. `[tcp-streaming] port` and `bind_to_address` (snapserver 0.33+) land in
/// `port` and `bind_to_address` here, winning over the `[stream]` spelling in the same layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamConfig {
    /// Addresses the stream listener binds, each a valid IP address.
    #[serde(deserialize_with = "string_or_list")]
    pub bind_to_address: Vec<String>,
    /// TCP port of the stream listener.
    pub port: u16,
    /// Source URIs, one stream each; never empty. Parsed by the source module.
    #[serde(deserialize_with = "string_or_list")]
    pub source: Vec<String>,
    /// Default sample format of sources.
    pub sampleformat: SampleFormat,
    /// Default codec, `name[:options]`; `name` is one of [`SUPPORTED_CODECS`].
    pub codec: String,
    /// Default source read size in milliseconds (10..=1000).
    pub chunk_ms: u32,
    /// End-to-end latency in milliseconds (20..=60000).
    pub buffer: u32,
    /// Whether muted clients still get audio.
    pub send_to_muted: bool,
    /// Send large messages with `MSG_ZEROCOPY` on new sessions.
    pub zerocopy: bool,
    /// Messages at least this large go zerocopy.
    pub zerocopy_threshold: usize,
    /// Stop zerocopy on a session once the kernel reports copied completions.
    pub zerocopy_auto_fallback: bool,
    /// Milliseconds a session collects chunks before sending them together (0: each chunk
    /// at once); capped at a tenth of `buffer`.
    pub send_batch_ms: u32,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            bind_to_address: vec!["0.0.0.0".to_owned()],
            port: crate::DEFAULT_STREAM_PORT,
            source: vec!["pipe:///tmp/snapfifo?name=default".to_owned()],
            sampleformat: SampleFormat::default(),
            codec: crate::encoder::DEFAULT_CODEC.to_owned(),
            chunk_ms: 20,
            buffer: 1000,
            send_to_muted: false,
            zerocopy: false,
            zerocopy_threshold: 1024,
            zerocopy_auto_fallback: true,
            send_batch_ms: 60,
        }
    }
}

/// `[logging]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoggingConfig {
    /// snapserver-style filter (`*:info`) or a tracing EnvFilter directive; see
    /// [`Config::log_filter_directive`].
    pub filter: String,
    /// `""` (the binary's default output), `"stdout"` or `"stderr"`; snapserver sinks we
    /// cannot honour yet (`null`, `system`, `file:<path>`) are reset to `""` with a notice.
    pub sink: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        Self {
            filter: "*:info".to_owned(),
            sink: String::new(),
        }
    }
}

/// `[streaming_client]` keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamingClientConfig {
    /// Volume (0..=100) given to a client the first time it is seen.
    pub initial_volume: u8,
}

impl Default for StreamingClientConfig {
    fn default() -> Self {
        Self {
            initial_volume: 100,
        }
    }
}

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
    /// An extraction error figment could not tie to a key (should not happen).
    #[error("{0}")]
    Extract(String),
}

fn did_you_mean(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |key| format!("; did you mean '{key}'?"))
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
    pub fn origin(&self, key: &str) -> Origin {
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
                let text = values
                    .as_ref()
                    .and_then(|values| values.find_ref(key.name))
                    .map(render)
                    .unwrap_or_default();
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
    if let Some(path) = &args.config {
        figment = figment.merge(Layer::file(path, &mut notices)?);
    }
    figment = figment.merge(Layer::env(env, &mut notices)?);
    figment = figment.merge(Layer::flags(args, &mut notices)?);
    let mut config: Config = figment
        .extract_lossy()
        .map_err(|error| extract_error(&figment, error))?;
    validate(&mut config, &figment, &mut notices)?;
    // The same ignored key in two layers is still one thing to tell the user.
    let mut seen = std::collections::BTreeSet::new();
    notices.retain(|notice| seen.insert(notice.clone()));
    Ok(Loaded {
        config,
        notices,
        figment,
    })
}

// Metadata names of the layers; `Loaded::origin` maps them back to `Origin`.
const LAYER_DEFAULT: &str = "default";
const LAYER_FILE: &str = "config file";
const LAYER_ENV: &str = "environment";
const LAYER_FLAG: &str = "command line";

/// One figment layer: a normalised `{section: {key: value}}` dict, with metadata whose
/// interpolater names where each key came from (file line, variable, flag).
struct Layer {
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

fn interpolate(metadata: &Metadata, key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    metadata.interpolate(&Profile::Default, &parts)
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
    fn defaults() -> Self {
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
    fn file(path: &Path, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
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

    fn env(
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
    fn flags(args: &Args, notices: &mut Vec<String>) -> Result<Self, ConfigError> {
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
                Status::AlwaysOn => match value.to_bool_lossy() {
                    Some(true) => {}
                    Some(false) => notices.push(format!(
                        "config: {name} = false is ignored: snaprelay always has it on ({})",
                        row.help
                    )),
                    None => {
                        return Err(ConfigError::Invalid {
                            value: render(&value),
                            origin: place.describe(&name),
                            allowed: keys::allowed(&name),
                            key: name,
                        })
                    }
                },
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

/// A value as the user would have typed it.
fn render(value: &Value) -> String {
    match value {
        Value::String(_, text) => text.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => String::new(),
        Value::Array(_, items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        Value::Dict(_, entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{key} = {}", render(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// Where the effective value of `key` came from, as text for error messages.
fn describe(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "default".to_owned();
    };
    let name = interpolate(metadata, key);
    match metadata.name.as_ref() {
        LAYER_ENV => format!("env {name}"),
        LAYER_FLAG => format!("flag {name}"),
        _ => name,
    }
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

/// Range and syntax checks on the extracted values, plus the notices that depend on values.
fn validate(
    config: &mut Config,
    figment: &Figment,
    notices: &mut Vec<String>,
) -> Result<(), ConfigError> {
    let invalid = |key: &str, value: &dyn fmt::Display| ConfigError::Invalid {
        key: key.to_owned(),
        value: value.to_string(),
        origin: describe(figment, key),
        allowed: keys::allowed(key),
    };
    let check = |ok: bool, key: &str, value: &dyn fmt::Display| {
        if ok {
            Ok(())
        } else {
            Err(invalid(key, value))
        }
    };

    let server = &mut config.server;
    if server
        .datadir
        .as_ref()
        .is_some_and(|dir| dir.as_os_str().is_empty())
    {
        server.datadir = None;
    }
    check(
        (-1..=256).contains(&server.threads),
        "server.threads",
        &server.threads,
    )?;
    check(
        (100..=300_000).contains(&server.hello_timeout_ms),
        "server.hello_timeout_ms",
        &server.hello_timeout_ms,
    )?;
    check(
        (1..=100_000).contains(&server.max_clients),
        "server.max_clients",
        &server.max_clients,
    )?;
    check(
        server.diagnostics_interval_s <= 86_400,
        "server.diagnostics_interval_s",
        &server.diagnostics_interval_s,
    )?;
    check(
        server.pool_max_bytes <= 1 << 32,
        "server.pool_max_bytes",
        &server.pool_max_bytes,
    )?;

    let stream = &config.stream;
    check(
        !stream.bind_to_address.is_empty(),
        "stream.bind_to_address",
        &"",
    )?;
    for address in &stream.bind_to_address {
        check(
            address.parse::<IpAddr>().is_ok(),
            "stream.bind_to_address",
            address,
        )?;
    }
    check(!stream.source.is_empty(), "stream.source", &"")?;
    for source in &stream.source {
        check(!source.trim().is_empty(), "stream.source", source)?;
    }
    let codec_name = stream.codec.split(':').next().unwrap_or_default();
    check(
        SUPPORTED_CODECS.contains(&codec_name),
        "stream.codec",
        &stream.codec,
    )?;
    check(
        (10..=1000).contains(&stream.chunk_ms),
        "stream.chunk_ms",
        &stream.chunk_ms,
    )?;
    check(
        (20..=60_000).contains(&stream.buffer),
        "stream.buffer",
        &stream.buffer,
    )?;
    check(
        stream.send_batch_ms <= 1000,
        "stream.send_batch_ms",
        &stream.send_batch_ms,
    )?;
    check(
        (1..=1_000_000).contains(&stream.zerocopy_threshold),
        "stream.zerocopy_threshold",
        &stream.zerocopy_threshold,
    )?;

    let volume = config.streaming_client.initial_volume;
    check(volume <= 100, "streaming_client.initial_volume", &volume)?;

    let grpc = &mut config.grpc;
    for path in [&mut grpc.token_file, &mut grpc.tls_cert, &mut grpc.tls_key] {
        // As for datadir: an empty value in a file means "not set".
        if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            *path = None;
        }
    }
    check(
        grpc.bind_to_address.trim().parse::<IpAddr>().is_ok(),
        "grpc.bind_to_address",
        &grpc.bind_to_address,
    )?;
    check(
        grpc.token.chars().all(|c| c.is_ascii_graphic()),
        "grpc.token",
        &"(hidden)",
    )?;
    let tls_cert = grpc.tls_cert.as_ref().map(|p| p.display().to_string());
    let tls_key = grpc.tls_key.as_ref().map(|p| p.display().to_string());
    check(tls_key.is_some() || tls_cert.is_none(), "grpc.tls_key", &"")?;
    check(
        tls_cert.is_some() || tls_key.is_none(),
        "grpc.tls_cert",
        &"",
    )?;

    let http = &config.http;
    check(
        !http.bind_to_address.is_empty(),
        "http.bind_to_address",
        &"",
    )?;
    for address in &http.bind_to_address {
        check(
            address.trim().parse::<IpAddr>().is_ok(),
            "http.bind_to_address",
            address,
        )?;
    }

    let tcp = &config.tcp;
    check(!tcp.bind_to_address.is_empty(), "tcp.bind_to_address", &"")?;
    for address in &tcp.bind_to_address {
        check(
            address.trim().parse::<IpAddr>().is_ok(),
            "tcp.bind_to_address",
            address,
        )?;
    }
    for scheme in config.jsonrpc.schemes() {
        check(
            ["pipe", "file", "tcp", "tone", "process"].contains(&scheme.as_str()),
            "jsonrpc.add_stream_schemes",
            &scheme,
        )?;
    }

    let logging = &mut config.logging;
    match logging.sink.as_str() {
        "" | "stdout" | "stderr" => {}
        "null" | "system" => {
            notices.push(format!(
                "config: logging.sink {} is not supported yet; using the default",
                logging.sink
            ));
            logging.sink.clear();
        }
        sink if sink.starts_with("file:") => {
            notices.push(format!(
                "config: logging.sink {sink} is not supported yet; using the default"
            ));
            logging.sink.clear();
        }
        sink => return Err(invalid("logging.sink", &sink)),
    }
    let directive = translate_filter(&logging.filter).ok();
    let parses = directive
        .as_deref()
        .is_some_and(|d| !d.trim().is_empty() && tracing_subscriber::EnvFilter::try_new(d).is_ok());
    check(parses, "logging.filter", &logging.filter)?;
    Ok(())
}

/// Translates a snapserver `TAG:LEVEL[,TAG:LEVEL]*` filter into an EnvFilter directive; anything
/// else passes through. Fails on a snapserver-style filter with an unknown level.
pub(crate) fn translate_filter(filter: &str) -> Result<String, String> {
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

/// Accepts one string or a list of strings: TOML may write `source` either way, and a single
/// INI line or environment variable is a plain string.
fn string_or_list<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Vec<String>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }

        fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_owned()])
        }

        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            let mut list = Vec::new();
            while let Some(item) = seq.next_element::<String>()? {
                list.push(item);
            }
            Ok(list)
        }
    }
    deserializer.deserialize_any(Visitor)
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    /// A typical Debian snapserver 0.26 /etc/snapserver.conf, comments and all.
    const DEBIAN_CONF: &str = r#"###############################################################################
#     ______                                                                  #
#    / _____)                                                                 #
#   ( (____   ____   _____  ____    ___  _____   ____  _   _  _____   ____    #
#  Snapserver config file                                                     #
###############################################################################

# default values are commented
# uncomment and edit to change them

# Settings can be overwritten on command line with:
#  "--<section>.<name>=<value>", e.g. --server.threads=4


# General server settings #####################################################
#
[server]
# Number of additional worker threads to use
#threads = -1

# the pid file when running as daemon
#pidfile = /var/run/snapserver/pid

# the user to run as when daemonized
#user = snapserver
# the group to run as when daemonized
#group = snapserver

# directory where persistent data is stored (server.json)
#datadir = 

#
###############################################################################


# HTTP RPC ####################################################################
#
[http]
# enable HTTP Json RPC (HTTP POST and websockets)
#enabled = true

# address to listen on, can be specified multiple times
# use "0.0.0.0" to bind to any IPv4 address or :: to bind to any IPv6 address
#bind_to_address = 0.0.0.0

# which port the server should listen to
#port = 1780

# serve a website from the doc_root location
# disabled if commented or empty
doc_root = /usr/share/snapserver/snapweb

# Hostname or IP under which clients can reach this host
#host = <hostname>

#
###############################################################################


# TCP RPC #####################################################################
#
[tcp]
# enable TCP Json RPC
#enabled = true

#bind_to_address = 0.0.0.0

# which port the server should listen to
#port = 1705
#
###############################################################################


# Stream settings #############################################################
#
[stream]
#bind_to_address = 0.0.0.0

# which port the server should listen to
#port = 1704

# source URI of the PCM input stream, can be configured multiple times
# Format: TYPE://host/path?name=<name>[&codec=<codec>][&sampleformat=<sampleformat>][&chunk_ms=<chunk ms>]
# pipe: pipe:///<path/to/pipe>?name=<name>[&mode=create][&dryout_ms=2000], mode can be "create" or "read"
source = pipe:///tmp/snapfifo?name=default

# Default sample format: <sample rate>:<bits per sample>:<channels>
#sampleformat = 48000:16:2

# Default transport codec
# (flac|ogg|opus|pcm)[:options]
#codec = flac

# Default source stream read chunk size [ms].
#chunk_ms = 20

# Buffer [ms]
#buffer = 1000

# Send audio to muted clients
#send_to_muted = false
#
###############################################################################


# Logging options #############################################################
#
[logging]

# log sink [null,system,stdout,stderr,file:<filename>]
#sink = 

# log filter <tag>:<level>[,<tag>:<level>]*
# with tag = * or <log tag> and level = [trace,debug,info,notice,warning,error,fatal]
#filter = *:info
#
###############################################################################
"#;

    /// Values different from every default, as INI lines per key.
    const EVERY_KEY_INI: &str = "[server]\ndatadir = /var/lib/relay\nthreads = 3\n\
        hello_timeout_ms = 2500\nmax_clients = 7\ndiagnostics_interval_s = 5\n\
        pool_max_bytes = 4096\n\
        [stream]\nbind_to_address = 127.0.0.1\nport = 1800\nsource = pipe:///x?name=a\n\
        sampleformat = 44100:16:2\ncodec = pcm:opt\nchunk_ms = 40\nbuffer = 500\n\
        send_to_muted = true\nzerocopy = true\nzerocopy_threshold = 2048\n\
        zerocopy_auto_fallback = false\nsend_batch_ms = 40\n\
        [logging]\nfilter = *:debug\nsink = stderr\n\
        [streaming_client]\ninitial_volume = 55\n\
        [grpc]\nenabled = false\nbind_to_address = ::1\nport = 1811\ntoken = s3cret\n\
        token_file = /etc/relay.token\ntls_cert = /etc/relay.crt\ntls_key = /etc/relay.key\n\
        [http]\nenabled = false\nbind_to_address = 127.0.0.1\nport = 1880\nmetrics = false\n\
        [tcp]\nenabled = false\nbind_to_address = 127.0.0.1\nport = 1805\n\
        [jsonrpc]\nhttp_enabled = false\nadd_stream_schemes = tcp\nrequire_token = true\n";

    const EVERY_KEY_TOML: &str = "[server]\ndatadir = \"/var/lib/relay\"\nthreads = 3\n\
        hello_timeout_ms = 2500\nmax_clients = 7\ndiagnostics_interval_s = 5\n\
        pool_max_bytes = 4096\n\
        [stream]\nbind_to_address = \"127.0.0.1\"\nport = 1800\nsource = \"pipe:///x?name=a\"\n\
        sampleformat = \"44100:16:2\"\ncodec = \"pcm:opt\"\nchunk_ms = 40\nbuffer = 500\n\
        send_to_muted = true\nzerocopy = true\nzerocopy_threshold = 2048\n\
        zerocopy_auto_fallback = false\nsend_batch_ms = 40\n\
        [logging]\nfilter = \"*:debug\"\nsink = \"stderr\"\n\
        [streaming_client]\ninitial_volume = 55\n\
        [grpc]\nenabled = false\nbind_to_address = \"::1\"\nport = 1811\ntoken = \"s3cret\"\n\
        token_file = \"/etc/relay.token\"\ntls_cert = \"/etc/relay.crt\"\n\
        tls_key = \"/etc/relay.key\"\n\
        [http]\nenabled = false\nbind_to_address = \"127.0.0.1\"\nport = 1880\nmetrics = false\n\
        [tcp]\nenabled = false\nbind_to_address = \"127.0.0.1\"\nport = 1805\n\
        [jsonrpc]\nhttp_enabled = false\nadd_stream_schemes = \"tcp\"\nrequire_token = true\n";

    /// (key, value as text) for every implemented key, matching the EVERY_KEY_* files.
    const EVERY_KEY: &[(&str, &str)] = &[
        ("server.datadir", "/var/lib/relay"),
        ("server.threads", "3"),
        ("server.hello_timeout_ms", "2500"),
        ("server.max_clients", "7"),
        ("server.diagnostics_interval_s", "5"),
        ("server.pool_max_bytes", "4096"),
        ("stream.bind_to_address", "127.0.0.1"),
        ("stream.port", "1800"),
        ("stream.source", "pipe:///x?name=a"),
        ("stream.sampleformat", "44100:16:2"),
        ("stream.codec", "pcm:opt"),
        ("stream.chunk_ms", "40"),
        ("stream.buffer", "500"),
        ("stream.send_to_muted", "true"),
        ("stream.zerocopy", "true"),
        ("stream.zerocopy_threshold", "2048"),
        ("stream.zerocopy_auto_fallback", "false"),
        ("stream.send_batch_ms", "40"),
        ("logging.filter", "*:debug"),
        ("logging.sink", "stderr"),
        ("streaming_client.initial_volume", "55"),
        ("grpc.enabled", "false"),
        ("grpc.bind_to_address", "::1"),
        ("grpc.port", "1811"),
        ("grpc.token", "s3cret"),
        ("grpc.token_file", "/etc/relay.token"),
        ("grpc.tls_cert", "/etc/relay.crt"),
        ("grpc.tls_key", "/etc/relay.key"),
        ("http.enabled", "false"),
        ("http.bind_to_address", "127.0.0.1"),
        ("http.port", "1880"),
        ("http.metrics", "false"),
        ("tcp.enabled", "false"),
        ("tcp.bind_to_address", "127.0.0.1"),
        ("tcp.port", "1805"),
        ("jsonrpc.http_enabled", "false"),
        ("jsonrpc.add_stream_schemes", "tcp"),
        ("jsonrpc.require_token", "true"),
    ];

    fn changed_config() -> Config {
        Config {
            server: ServerConfig {
                datadir: Some("/var/lib/relay".into()),
                threads: 3,
                hello_timeout_ms: 2500,
                max_clients: 7,
                diagnostics_interval_s: 5,
                pool_max_bytes: 4096,
            },
            stream: StreamConfig {
                bind_to_address: vec!["127.0.0.1".into()],
                port: 1800,
                source: vec!["pipe:///x?name=a".into()],
                sampleformat: "44100:16:2".parse().unwrap(),
                codec: "pcm:opt".into(),
                chunk_ms: 40,
                buffer: 500,
                send_to_muted: true,
                zerocopy: true,
                zerocopy_threshold: 2048,
                zerocopy_auto_fallback: false,
                send_batch_ms: 40,
            },
            logging: LoggingConfig {
                filter: "*:debug".into(),
                sink: "stderr".into(),
            },
            streaming_client: StreamingClientConfig { initial_volume: 55 },
            grpc: GrpcConfig {
                enabled: false,
                bind_to_address: "::1".into(),
                port: 1811,
                token: "s3cret".into(),
                token_file: Some("/etc/relay.token".into()),
                tls_cert: Some("/etc/relay.crt".into()),
                tls_key: Some("/etc/relay.key".into()),
            },
            http: HttpConfig {
                enabled: false,
                bind_to_address: vec!["127.0.0.1".into()],
                port: 1880,
                metrics: false,
            },
            tcp: TcpConfig {
                enabled: false,
                bind_to_address: vec!["127.0.0.1".into()],
                port: 1805,
            },
            jsonrpc: JsonRpcConfig {
                http_enabled: false,
                add_stream_schemes: "tcp".into(),
                require_token: true,
            },
        }
    }

    /// A config file in a temp dir that lives as long as the returned guard.
    fn file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::File::create(&path)
            .and_then(|mut file| file.write_all(contents))
            .unwrap();
        (dir, path)
    }

    fn args(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("snaprelay").chain(argv.iter().copied())).unwrap()
    }

    fn env(vars: &[(&str, &str)]) -> Vec<(String, String)> {
        vars.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_file(name: &str, contents: &str) -> Result<Loaded, ConfigError> {
        let (_dir, path) = file(name, contents.as_bytes());
        load_from(&args(&["-c", path.to_str().unwrap()]), env(&[]))
    }

    fn error_text(result: Result<Loaded, ConfigError>) -> String {
        result.map(|loaded| loaded.config).unwrap_err().to_string()
    }

    #[test]
    fn defaults_mirror_snapserver_and_the_key_table() {
        let loaded = load_from(&Args::default(), env(&[])).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert!(loaded.notices.is_empty());
        let config = &loaded.config;
        assert_eq!(config.server.datadir, None);
        assert_eq!(config.server.threads, -1);
        assert_eq!(config.server.hello_timeout_ms, 10_000);
        assert_eq!(config.server.max_clients, 1000);
        assert_eq!(config.stream.bind_to_address, ["0.0.0.0"]);
        assert_eq!(config.stream.port, 1704);
        assert_eq!(config.stream.source, ["pipe:///tmp/snapfifo?name=default"]);
        assert_eq!(config.stream.sampleformat.to_string(), "48000:16:2");
        assert_eq!(config.stream.codec, "flac");
        assert_eq!(config.stream.chunk_ms, 20);
        assert_eq!(config.stream.buffer, 1000);
        assert!(!config.stream.send_to_muted);
        assert_eq!(config.logging.filter, "*:info");
        assert_eq!(config.logging.sink, "");
        assert_eq!(config.streaming_client.initial_volume, 100);
        // The table's default text (shown by -hh) must be the real default.
        let effective = loaded.effective();
        let implemented = keys::KEYS
            .iter()
            .filter(|k| k.status == Status::Implemented);
        assert_eq!(effective.len(), implemented.clone().count());
        for (key, (name, value, origin)) in implemented.zip(&effective) {
            assert_eq!((key.name, key.default), (name.as_str(), value.as_str()));
            assert_eq!(*origin, Origin::Default, "{name}");
        }
        assert_eq!(
            EVERY_KEY.len(),
            effective.len(),
            "EVERY_KEY covers every key"
        );
    }

    fn assert_every_key(loaded: &Loaded, origin: impl Fn(&str) -> Origin) {
        assert_eq!(loaded.config, changed_config());
        let effective = loaded.effective();
        for (key, value) in EVERY_KEY {
            let (_, text, from) = effective.iter().find(|(k, ..)| k == key).unwrap();
            assert_eq!(text, value, "{key}");
            assert_eq!(*from, origin(key), "{key}");
            assert_eq!(loaded.origin(key), origin(key), "{key}");
        }
    }

    #[test]
    fn every_key_from_ini() {
        let (_dir, path) = file("snapserver.conf", EVERY_KEY_INI.as_bytes());
        let loaded = load_from(&args(&["-c", path.to_str().unwrap()]), env(&[])).unwrap();
        assert_every_key(&loaded, |_| Origin::File(path.clone()));
        assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    }

    #[test]
    fn every_key_from_toml() {
        for name in ["relay.toml", "relay.conf"] {
            let (_dir, path) = file(name, EVERY_KEY_TOML.as_bytes());
            let loaded = load_from(&args(&["-c", path.to_str().unwrap()]), env(&[])).unwrap();
            assert_every_key(&loaded, |_| Origin::File(path.clone()));
        }
    }

    #[test]
    fn every_key_from_env() {
        let vars: Vec<(String, String)> = EVERY_KEY
            .iter()
            .map(|(key, value)| (keys::env_var(key), value.to_string()))
            .collect();
        let loaded = load_from(&Args::default(), vars).unwrap();
        assert_every_key(&loaded, |key| Origin::Env(keys::env_var(key)));
    }

    #[test]
    fn every_key_from_generic_flags() {
        let argv: Vec<String> = EVERY_KEY
            .iter()
            .map(|(key, value)| format!("--{key}={value}"))
            .collect();
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        let loaded = load_from(&args(&argv), env(&[])).unwrap();
        assert_every_key(&loaded, |_| Origin::Flag);
    }

    #[test]
    fn named_flags_set_their_keys() {
        let loaded = load_from(
            &args(&[
                "-p",
                "1800",
                "--bind",
                "127.0.0.1",
                "-s",
                "pipe:///x?name=a",
                "--sampleformat",
                "44100:16:2",
                "--codec",
                "pcm:opt",
                "--chunk-ms",
                "40",
                "--buffer",
                "500",
                "--datadir",
                "/var/lib/relay",
                "--log-filter",
                "*:debug",
                "--server.threads=3",
                "--server.hello_timeout_ms=2500",
                "--server.max_clients=7",
                "--server.diagnostics_interval_s=5",
                "--server.pool_max_bytes=4096",
                "--stream.send_to_muted=true",
                "-z",
                "--stream.zerocopy_threshold=2048",
                "--stream.zerocopy_auto_fallback=false",
                "--stream.send_batch_ms=40",
                "--logging.sink=stderr",
                "--streaming_client.initial_volume=55",
                "--grpc.enabled=false",
                "--grpc.bind_to_address=::1",
                "--grpc.port=1811",
                "--grpc.token=s3cret",
                "--grpc.token_file=/etc/relay.token",
                "--grpc.tls_cert=/etc/relay.crt",
                "--grpc.tls_key=/etc/relay.key",
                "--http.enabled=false",
                "--http.bind_to_address=127.0.0.1",
                "--http.port=1880",
                "--http.metrics=false",
                "--tcp.enabled=false",
                "--tcp.bind_to_address=127.0.0.1",
                "--tcp.port=1805",
                "--jsonrpc.http_enabled=false",
                "--jsonrpc.add_stream_schemes=tcp",
                "--jsonrpc.require_token=true",
            ]),
            env(&[]),
        )
        .unwrap();
        assert_every_key(&loaded, |_| Origin::Flag);
    }

    #[test]
    fn precedence_is_default_file_env_flag() {
        let (_dir, path) = file(
            "s.conf",
            b"[stream]\nbuffer = 300\nchunk_ms = 30\nport = 1801\n",
        );
        let path_arg = path.to_str().unwrap();
        let vars = env(&[
            ("SNAPRELAY_STREAM__BUFFER", "400"),
            ("SNAPRELAY_STREAM__CHUNK_MS", "40"),
        ]);
        let loaded = load_from(&args(&["-c", path_arg, "--buffer", "500"]), vars).unwrap();
        let stream = &loaded.config.stream;
        assert_eq!(
            (stream.buffer, stream.chunk_ms, stream.port),
            (500, 40, 1801)
        );
        assert_eq!(stream.codec, "flac");
        assert_eq!(loaded.origin("stream.buffer"), Origin::Flag);
        assert_eq!(
            loaded.origin("stream.chunk_ms"),
            Origin::Env("SNAPRELAY_STREAM__CHUNK_MS".into())
        );
        assert_eq!(loaded.origin("stream.port"), Origin::File(path.clone()));
        assert_eq!(loaded.origin("stream.codec"), Origin::Default);
        // Named flags win over generic ones.
        let loaded =
            load_from(&args(&["--stream.buffer=600", "--buffer", "700"]), env(&[])).unwrap();
        assert_eq!(loaded.config.stream.buffer, 700);
    }

    #[test]
    fn generic_flag_sets_buffer() {
        let loaded = load_from(&args(&["--stream.buffer=500"]), env(&[])).unwrap();
        assert_eq!(loaded.config.stream.buffer, 500);
        assert_eq!(loaded.origin("stream.buffer"), Origin::Flag);
        let loaded = load_from(&args(&["--stream.buffer", "450"]), env(&[])).unwrap();
        assert_eq!(loaded.config.stream.buffer, 450);
    }

    #[test]
    fn debian_snapserver_conf_loads_with_notices() {
        let loaded = load_file("snapserver.conf", DEBIAN_CONF).unwrap();
        assert_eq!(loaded.config, Config::default());
        assert_eq!(
            loaded.notices,
            ["config: http.doc_root is not supported yet; ignored"]
        );
    }

    #[test]
    fn snapserver_033_sections_and_aliases() {
        let conf = "[tcp-streaming]\nport = 1900\nbind_to_address = ::1\nenabled = false\n\
                    publish = true\n[tcp-control]\nport = 1706\n[tcp]\nport = 1705\n[stream]\n\
                    port = 1800\nbind_to_address = 0.0.0.0\nstream = pipe:///a?name=a\n\
                    stream_buffer = 50\n";
        let loaded = load_file("snapserver.conf", conf).unwrap();
        assert_eq!(
            loaded.config.tcp.port, 1706,
            "[tcp-control] wins over [tcp]"
        );
        let stream = &loaded.config.stream;
        assert_eq!((stream.port, stream.chunk_ms), (1900, 50));
        assert_eq!(stream.bind_to_address, ["::1"]);
        assert_eq!(stream.source, ["pipe:///a?name=a"]);
        assert_eq!(
            loaded.notices,
            [
                "config: tcp_streaming.enabled = false is ignored: snaprelay always has it on \
                 (the stream listener; snaprelay always runs it)",
                "config: tcp_streaming.publish is not supported yet; ignored",
            ]
        );
        // The old [stream] spelling in a later layer still wins over the file.
        let loaded = load_from(
            &args(&["--stream.port=1950"]),
            env(&[("SNAPRELAY_TCP_STREAMING__PORT", "1960")]),
        )
        .unwrap();
        assert_eq!(loaded.config.stream.port, 1950);
        let loaded = load_from(
            &Args::default(),
            env(&[("SNAPRELAY_TCP_STREAMING__PORT", "1960")]),
        )
        .unwrap();
        assert_eq!(loaded.config.stream.port, 1960);
        assert_eq!(
            loaded.origin("stream.port"),
            Origin::Env("SNAPRELAY_TCP_STREAMING__PORT".into())
        );
        // An alias and its key both set is a mistake worth pointing out.
        let error = error_text(load_file(
            "a.conf",
            "[stream]\nchunk_ms = 20\nstream_buffer = 30\n",
        ));
        assert!(
            error.contains("stream.stream_buffer") && error.contains("stream.chunk_ms"),
            "{error}"
        );
    }

    #[test]
    fn repeated_source_lines_make_a_list() {
        let conf = "[stream]\nsource = pipe:///a?name=a\n# second one\nsource = \"tcp://127.0.0.1?name=b\"\n\
                    stream = pipe:///c?name=c\nbind_to_address = 127.0.0.1\nbind_to_address = ::1\n\
                    [logging]\nfilter = *:info\nfilter = Stream:debug\n";
        let loaded = load_file("snapserver.conf", conf).unwrap();
        assert_eq!(
            loaded.config.stream.source,
            [
                "pipe:///a?name=a",
                "tcp://127.0.0.1?name=b",
                "pipe:///c?name=c"
            ]
        );
        assert_eq!(loaded.config.stream.bind_to_address, ["127.0.0.1", "::1"]);
        assert_eq!(loaded.config.logging.filter, "*:info,Stream:debug");
        let toml = "[stream]\nsource = [\"pipe:///a?name=a\", \"pipe:///b?name=b\"]\n";
        let loaded = load_file("relay.toml", toml).unwrap();
        assert_eq!(
            loaded.config.stream.source,
            ["pipe:///a?name=a", "pipe:///b?name=b"]
        );
        let loaded = load_from(
            &args(&[
                "--stream.source=pipe:///a?name=a",
                "--stream.source=pipe:///b?name=b",
            ]),
            env(&[]),
        )
        .unwrap();
        assert_eq!(
            loaded.config.stream.source,
            ["pipe:///a?name=a", "pipe:///b?name=b"]
        );
        // -s replaces the configured list rather than adding to it.
        let (_dir, path) = file("s.conf", conf.as_bytes());
        let loaded = load_from(
            &args(&["-c", path.to_str().unwrap(), "-s", "pipe:///z?name=z"]),
            env(&[]),
        )
        .unwrap();
        assert_eq!(loaded.config.stream.source, ["pipe:///z?name=z"]);
    }

    #[test]
    fn unknown_keys_fail_everywhere_with_a_suggestion() {
        let error = error_text(load_file("s.conf", "[stream]\nport = 1704\nbuffr = 500\n"));
        assert!(
            error.starts_with("unknown config key 'stream.buffr' (in "),
            "{error}"
        );
        assert!(error.contains("s.conf line 3"), "{error}");
        assert!(error.ends_with("did you mean 'stream.buffer'?"), "{error}");

        let error = error_text(load_file("s.toml", "[strem]\nport = 1704\n"));
        assert!(
            error.contains("'strem.port'") && error.contains("'stream.port'"),
            "{error}"
        );

        let error = error_text(load_from(
            &Args::default(),
            env(&[("SNAPRELAY_STREAM__BUFFR", "1")]),
        ));
        assert_eq!(
            error,
            "unknown config key 'stream.buffr' (env SNAPRELAY_STREAM__BUFFR); did you mean 'stream.buffer'?"
        );
        let error = error_text(load_from(&args(&["--stream.colour=red"]), env(&[])));
        assert_eq!(
            error,
            "unknown config key 'stream.colour' (flag --stream.colour)"
        );
        let error = error_text(load_file("s.toml", "port = 1704\n"));
        assert!(error.contains("'port' is outside any section"), "{error}");
    }

    #[test]
    fn other_snaprelay_variables_are_not_config_keys() {
        let vars = env(&[
            ("SNAPRELAY_LOG", "debug"),
            ("SNAPRELAY_OTHER", "x"),
            ("PATH", "/bin"),
        ]);
        let loaded = load_from(&Args::default(), vars).unwrap();
        assert_eq!(loaded.config.logging.filter, "debug");
        assert_eq!(
            loaded.origin("logging.filter"),
            Origin::Env("SNAPRELAY_LOG".into())
        );
        let vars = env(&[
            ("SNAPRELAY_LOG", "debug"),
            ("SNAPRELAY_LOGGING__FILTER", "*:trace"),
        ]);
        let loaded = load_from(&Args::default(), vars.clone()).unwrap();
        assert_eq!(loaded.config.logging.filter, "debug");
        let loaded = load_from(&args(&["--log-filter", "warn"]), vars).unwrap();
        assert_eq!(loaded.config.logging.filter, "warn");
    }

    #[test]
    fn env_source_becomes_a_one_element_list() {
        let vars = env(&[
            ("SNAPRELAY_STREAM__SOURCE", "pipe:///x?name=a"),
            ("SNAPRELAY_STREAM__BUFFER", "500"),
        ]);
        let loaded = load_from(&Args::default(), vars).unwrap();
        assert_eq!(loaded.config.stream.source, ["pipe:///x?name=a"]);
        assert_eq!(loaded.config.stream.buffer, 500);
    }

    #[test]
    fn not_yet_keys_give_one_notice_each() {
        let (_dir, path) = file(
            "s.conf",
            b"[http]\nssl_port = 1788\nssl_enabled = true\n[ssl]\nclient_cert = a\nclient_cert = b\n",
        );
        let loaded = load_from(
            &args(&["-c", path.to_str().unwrap(), "--http.ssl_port=1789"]),
            env(&[("SNAPRELAY_STREAM__PLUGIN_DIR", "/p")]),
        )
        .unwrap();
        assert_eq!(
            loaded.notices,
            [
                "config: http.ssl_enabled is not supported yet; ignored",
                "config: http.ssl_port is not supported yet; ignored",
                "config: ssl.client_cert is not supported yet; ignored",
                "config: stream.plugin_dir is not supported yet; ignored",
            ]
        );
        for sink in ["system", "null", "file:/var/log/snap.log"] {
            let loaded = load_from(&args(&[&format!("--logging.sink={sink}")]), env(&[])).unwrap();
            assert_eq!(loaded.config.logging.sink, "");
            assert_eq!(
                loaded.notices,
                [format!(
                    "config: logging.sink {sink} is not supported yet; using the default"
                )]
            );
        }
    }

    /// Every validated key with a bad value: the error names key, value, origin and what is
    /// allowed.
    #[test]
    fn invalid_values_name_key_value_origin_and_allowed() {
        let cases: &[(&str, &str, &str)] = &[
            ("server.threads", "-2", "-1 (automatic)"),
            ("server.threads", "many", "-1 (automatic)"),
            ("server.hello_timeout_ms", "5", "100 to 300000"),
            ("server.max_clients", "0", "1 to 100000"),
            ("server.max_clients", "-3", "1 to 100000"),
            ("stream.bind_to_address", "localhost", "an IP address"),
            (
                "stream.port",
                "abc",
                "a port number 0-65535 (0: any free port)",
            ),
            (
                "stream.port",
                "70000",
                "a port number 0-65535 (0: any free port)",
            ),
            ("stream.source", "  ", "a source URI"),
            (
                "stream.sampleformat",
                "44100:12:2",
                "bit depth 12 is not supported",
            ),
            ("stream.sampleformat", "stereo", "rate:bits:channels"),
            ("stream.codec", "mp3", "one of: flac, ogg, opus, pcm"),
            ("stream.chunk_ms", "5", "10 to 1000"),
            ("stream.chunk_ms", "1001", "10 to 1000"),
            ("stream.buffer", "19", "20 to 60000"),
            ("stream.buffer", "60001", "20 to 60000"),
            ("stream.send_to_muted", "maybe", "true or false"),
            ("stream.zerocopy", "perhaps", "true or false"),
            ("stream.zerocopy_threshold", "0", "1 to 1000000"),
            ("stream.zerocopy_threshold", "big", "1 to 1000000"),
            ("stream.zerocopy_auto_fallback", "2", "true or false"),
            ("stream.send_batch_ms", "1001", "0 to 1000"),
            ("server.diagnostics_interval_s", "86401", "0 (off) to 86400"),
            ("server.pool_max_bytes", "-1", "0 to 4294967296"),
            ("streaming_client.initial_volume", "101", "0 to 100"),
            ("streaming_client.initial_volume", "300", "0 to 100"),
            ("logging.sink", "syslog", "empty, stdout or stderr"),
            ("logging.filter", "*:loud", "a filter such as *:info"),
            ("logging.filter", "", "a filter such as *:info"),
            ("tcp_streaming.enabled", "perhaps", "true or false"),
            ("http.enabled", "perhaps", "true or false"),
            ("http.bind_to_address", "localhost", "an IP address"),
            ("http.port", "65536", "a port number 0-65535"),
            ("http.metrics", "2", "true or false"),
        ];
        for (key, value, allowed) in cases {
            let (section, name) = key.split_once('.').unwrap();
            let ini = format!("[{section}]\n{name} = {value}\n");
            let (_dir, path) = file("s.conf", ini.as_bytes());
            let error = error_text(load_from(&args(&["-c", path.to_str().unwrap()]), env(&[])));
            let shown_key = if *key == "tcp_streaming.enabled" {
                *key
            } else {
                key
            };
            let expected_start = format!(
                "invalid value '{}' for {shown_key} (from {}",
                value.trim(),
                path.display()
            );
            assert!(error.starts_with(&expected_start), "{key}={value}: {error}");
            assert!(error.contains(allowed), "{key}={value}: {error}");

            let var = keys::env_var(key);
            let error = error_text(load_from(&Args::default(), env(&[(&var, value)])));
            assert!(
                error.contains(&format!("(from env {var})")),
                "{key}={value}: {error}"
            );

            let flag = format!("--{key}={value}");
            let error = error_text(load_from(&args(&[&flag]), env(&[])));
            assert!(
                error.contains(&format!("(from flag --{key})")),
                "{key}={value}: {error}"
            );
        }
        let error = error_text(load_from(&args(&["--chunk-ms", "5"]), env(&[])));
        assert_eq!(
            error,
            "invalid value '5' for stream.chunk_ms (from flag --chunk-ms): \
             expected a number of milliseconds from 10 to 1000"
        );
        let error = error_text(load_file("s.toml", "[stream]\nbind_to_address = []\n"));
        assert!(error.contains("for stream.bind_to_address"), "{error}");
        let error = error_text(load_file("s.toml", "[stream]\nsource = [\"a\", 5]\n"));
        assert!(error.contains("for stream.source"), "{error}");
    }

    #[test]
    fn garbage_files_fail_with_a_line_number() {
        let error = error_text(load_file(
            "s.conf",
            "[stream]\nport = 1704\nthis line has no equals\n",
        ));
        assert!(error.ends_with("s.conf line 3: expected 'key = value' or '[section]', found 'this line has no equals'"), "{error}");
        let error = error_text(load_file("s.conf", "# comment\nport = 1704\n"));
        assert!(error.contains("'port' is outside any section"), "{error}");
        let error = error_text(load_file(
            "s.conf",
            "# comment\nsource = pipe:///x?name=a\n",
        ));
        assert!(
            error.contains("line 2: key 'source' is outside any section"),
            "{error}"
        );
        let (_dir, path) = file("junk.conf", b"[stream]\n\x00\x9f\x92\x96\xff\xfe binary\n");
        let error = error_text(load_from(&args(&["-c", path.to_str().unwrap()]), env(&[])));
        assert!(error.contains("junk.conf line 2: not UTF-8"), "{error}");
        let error = error_text(load_file("junk.conf", "[stream]\n\u{1}\u{2}\u{3}\n"));
        assert!(
            error.contains("line 2: unexpected control character"),
            "{error}"
        );
        let error = error_text(load_file("s.conf", "[stream]\nport = 1\nport = 2\n"));
        assert!(
            error.contains("line 3: stream.port is already set on line 2"),
            "{error}"
        );
        let error = error_text(load_file("s.toml", "[stream]\nport = \n"));
        assert!(error.contains("s.toml is not valid TOML"), "{error}");
    }

    #[test]
    fn missing_file_names_path_and_os_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.conf");
        let error = error_text(load_from(&args(&["-c", path.to_str().unwrap()]), env(&[])));
        assert!(error.starts_with("cannot read config file "), "{error}");
        assert!(
            error.contains("absent.conf") && error.contains("os error 2"),
            "{error}"
        );
    }

    #[test]
    fn empty_datadir_means_none() {
        let loaded = load_file("s.conf", "[server]\ndatadir =\n").unwrap();
        assert_eq!(loaded.config.server.datadir, None);
    }

    #[test]
    fn bools_accept_snapserver_spellings() {
        for (text, expected) in [("true", true), ("1", true), ("false", false), ("0", false)] {
            let loaded =
                load_file("s.conf", &format!("[stream]\nsend_to_muted = {text}\n")).unwrap();
            assert_eq!(loaded.config.stream.send_to_muted, expected, "{text}");
        }
    }

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
}

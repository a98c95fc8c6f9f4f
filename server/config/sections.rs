//! The config sections as Rust structs (`[server]`, `[stream]`, `[grpc]`, ...), one field per
//! implemented key of the table in [`super::keys`], each with its built-in default. What values
//! are valid is the table's business (its [`Rule`](super::keys::Rule)s), not these types'.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::sample_format::SampleFormat;

/// The default listen address of the HTTP, JSON-RPC and stream listeners: every address of
/// both families (snapserver 0.30+). Where IPv6 is off, binding it falls back to `0.0.0.0`
/// with a warning (`net::listen`).
pub const ANY_ADDRESS: &str = "::";

/// The whole validated server configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// `[server]`: process-wide settings.
    pub server: ServerConfig,
    /// `[stream]` (and `[tcp-streaming]`): the stream listener and source defaults.
    pub(crate) stream: StreamConfig,
    /// `[logging]`.
    pub logging: LoggingConfig,
    /// `[streaming_client]`: defaults for newly seen clients.
    pub(crate) streaming_client: StreamingClientConfig,
    /// `[grpc]`: the control API listener (snaprelay only).
    pub grpc: GrpcConfig,
    /// `[http]`: the HTTP listener (`/metrics`; snapserver's JSON-RPC over HTTP later).
    pub http: HttpConfig,
    /// `[tcp]` (and `[tcp-control]`): the JSON-RPC TCP listener.
    pub(crate) tcp: TcpConfig,
    /// `[jsonrpc]`: what the Snapcast JSON-RPC API allows (snaprelay only).
    pub(crate) jsonrpc: JsonRpcConfig,
    /// `[ssl]`: the certificate of the HTTPS listener.
    pub ssl: SslConfig,
}

/// `[ssl]` keys: the certificate and key the HTTPS listener presents (PEM files).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SslConfig {
    /// Certificate chain, PEM; empty for none.
    pub certificate: String,
    /// Its private key, PEM (PKCS#8, PKCS#1 or SEC1, unencrypted); empty for none.
    pub certificate_key: String,
    /// Whether HTTPS clients must present a certificate signed by one of `client_cert`'s CAs
    /// (mutual TLS).
    pub verify_clients: bool,
    /// PEM files of the CAs that sign client certificates.
    #[serde(deserialize_with = "string_or_list")]
    pub client_cert: Vec<String>,
}

/// `[tcp]` keys (snapserver 0.33+: `[tcp-control]`): the JSON-RPC TCP listener.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct TcpConfig {
    /// Whether JSON-RPC is served over TCP.
    pub(crate) enabled: bool,
    /// Listen addresses; [`ANY_ADDRESS`] by default, as snapserver 0.30+.
    #[serde(deserialize_with = "string_or_list")]
    pub(crate) bind_to_address: Vec<String>,
    /// TCP port (snapserver's 1705); 0 picks a free one (the log line says which).
    pub(crate) port: u16,
    /// Publish it via mDNS (`_snapcast-ctrl._tcp` and the older names).
    pub(crate) publish: bool,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_to_address: vec![ANY_ADDRESS.to_owned()],
            port: crate::DEFAULT_JSONRPC_PORT,
            publish: true,
        }
    }
}

/// `[jsonrpc]` keys: the Snapcast JSON-RPC API's switches and safety limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct JsonRpcConfig {
    /// Whether `POST /jsonrpc` and the `/jsonrpc` websocket are served on the HTTP listener.
    pub(crate) http_enabled: bool,
    /// Comma-separated source schemes `Stream.AddStream` may start. `process` is left out by
    /// default: starting programs from the network is CVE-2023-36177.
    pub(crate) add_stream_schemes: String,
    /// Whether callers must present the gRPC token (`grpc.token`/`grpc.token_file`).
    pub(crate) require_token: bool,
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
    pub(crate) fn schemes(&self) -> Vec<String> {
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
    /// Listen addresses, IP addresses; [`ANY_ADDRESS`] by default, as snapserver 0.30+.
    #[serde(deserialize_with = "string_or_list")]
    pub bind_to_address: Vec<String>,
    /// TCP port (snapserver's 1780); 0 picks a free one (the log line says which).
    pub port: u16,
    /// Whether `/metrics` (Prometheus text format) is served on this listener.
    pub metrics: bool,
    /// Host name in cover art URLs (`artUrl`) and `--snapcast-host` of stream plugins;
    /// `<hostname>` stands for this machine's name.
    pub host: String,
    /// Replaces `http://<host>:<port>` at the start of cover art URLs (e.g. behind a reverse
    /// proxy); empty for none.
    pub url_prefix: String,
    /// Publish the HTTP service via mDNS (`_snapcast-http._tcp`).
    pub publish_http: bool,
    /// Publish the HTTPS service via mDNS (`_snapcast-https._tcp`) when HTTPS is on.
    pub publish_https: bool,
    /// Serve HTTPS (and `wss://`) too, with `[ssl]`'s certificate.
    pub ssl_enabled: bool,
    /// HTTPS listen addresses.
    #[serde(deserialize_with = "string_or_list")]
    pub ssl_bind_to_address: Vec<String>,
    /// HTTPS port (snapserver's 1788).
    pub ssl_port: u16,
    /// Static files to serve (Snapweb); empty: snapserver's Snapweb path when it exists,
    /// else a status page of our own.
    pub doc_root: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            bind_to_address: vec![ANY_ADDRESS.to_owned()],
            port: crate::DEFAULT_HTTP_PORT,
            metrics: true,
            host: "<hostname>".to_owned(),
            url_prefix: String::new(),
            publish_http: true,
            publish_https: true,
            ssl_enabled: false,
            ssl_bind_to_address: vec![ANY_ADDRESS.to_owned()],
            ssl_port: crate::DEFAULT_HTTPS_PORT,
            doc_root: String::new(),
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
    pub(crate) bind_to_address: String,
    /// TCP port; 0 picks a free one (the log line says which).
    pub(crate) port: u16,
    /// Bearer token required on every call except health; empty means none.
    pub(crate) token: String,
    /// File whose first line is the token (wins over `token`, keeps it out of argv/env).
    pub token_file: Option<PathBuf>,
    /// PEM certificate chain; with `tls_key`, the API is served over TLS.
    pub(crate) tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub(crate) tls_key: Option<PathBuf>,
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
    /// Directory for server.json; `None` picks the snapserver locations (docs/PROTOCOL.md
    /// §4.4). An empty value in the file means `None`, as in snapserver.
    pub(crate) datadir: Option<PathBuf>,
    /// Runtime worker threads; -1 means automatic.
    pub threads: i32,
    /// A stream client that has not sent Hello after this many milliseconds is dropped.
    pub(crate) hello_timeout_ms: u64,
    /// Most stream clients connected at once; further connections are refused.
    pub(crate) max_clients: usize,
    /// Seconds between the periodic zerocopy and pool reports; 0 turns them off.
    pub(crate) diagnostics_interval_s: u64,
    /// Most bytes the chunk buffer pool keeps in its free lists.
    pub(crate) pool_max_bytes: usize,
    /// Publish the services via mDNS / DNS-SD.
    pub(crate) mdns_enabled: bool,
    /// Where `-d` writes the daemon's pid.
    pub pidfile: PathBuf,
    /// The user `-d` switches to when started as root; empty stays root.
    pub user: String,
    /// Its group; empty takes the user's own.
    pub group: String,
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
            mdns_enabled: true,
            pidfile: PathBuf::from("/var/run/snapserver/pid"),
            user: "snapserver".to_owned(),
            group: String::new(),
        }
    }
}

/// `[stream]` keys. `[tcp-streaming] port` and `bind_to_address` (snapserver 0.33+) land in
/// `port` and `bind_to_address` here, winning over the `[stream]` spelling in the same layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct StreamConfig {
    /// Addresses the stream listener binds, each a valid IP address.
    #[serde(deserialize_with = "string_or_list")]
    pub(crate) bind_to_address: Vec<String>,
    /// TCP port of the stream listener.
    pub(crate) port: u16,
    /// Source URIs, one stream each; never empty. Parsed by the source module.
    #[serde(deserialize_with = "string_or_list")]
    pub(crate) source: Vec<String>,
    /// Default sample format of sources.
    pub(crate) sampleformat: SampleFormat,
    /// Default codec, `name[:options]`; `name` is one of
    /// [`SUPPORTED_CODECS`](super::SUPPORTED_CODECS).
    pub(crate) codec: String,
    /// Default source read size in milliseconds.
    pub(crate) chunk_ms: u32,
    /// End-to-end latency in milliseconds.
    pub(crate) buffer: u32,
    /// Whether muted clients still get audio.
    pub(crate) send_to_muted: bool,
    /// Send large messages with `MSG_ZEROCOPY` on new sessions.
    pub(crate) zerocopy: bool,
    /// Messages at least this large go zerocopy.
    pub(crate) zerocopy_threshold: usize,
    /// Stop zerocopy on a session once the kernel reports copied completions.
    pub(crate) zerocopy_auto_fallback: bool,
    /// Milliseconds a session collects chunks before sending them together (0: each chunk
    /// at once); capped at a tenth of `buffer`.
    pub(crate) send_batch_ms: u32,
    /// Where a relative `controlscript` is looked up, and where a `Stream.AddStream`
    /// controlscript must live.
    pub(crate) plugin_dir: PathBuf,
    /// Publish the stream listener via mDNS (`_snapcast._tcp`, `_snapcast-stream._tcp`).
    pub(crate) publish: bool,
    /// Serve stream clients over plain TCP (`[tcp-streaming] enabled`, snapserver 0.33+).
    /// Off: only WebSocket `/stream` clients on the HTTP/HTTPS listeners play.
    pub(crate) tcp_enabled: bool,
}

impl Config {
    /// As snapserver when it daemonises (`-d`): the state goes to `/var/lib/snapserver`
    /// unless `server.datadir` says otherwise (the daemon's user has no home of its own).
    /// Returns the directory the state goes to.
    pub fn daemon_datadir(&mut self) -> PathBuf {
        self.server
            .datadir
            .get_or_insert_with(|| PathBuf::from("/var/lib/snapserver"))
            .clone()
    }

    /// What `[stream]` supplies to every source URI (start-up and `Stream.AddStream` alike).
    pub fn source_defaults(&self) -> crate::source::SourceDefaults {
        crate::source::SourceDefaults {
            sample_format: self.stream.sampleformat,
            codec: self.stream.codec.clone(),
            chunk_ms: self.stream.chunk_ms,
            plugin_dir: self.stream.plugin_dir.clone(),
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            bind_to_address: vec![ANY_ADDRESS.to_owned()],
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
            plugin_dir: PathBuf::from(crate::source::DEFAULT_PLUGIN_DIR),
            publish: true,
            tcp_enabled: true,
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
    /// Where log lines go: `stdout`, `stderr`, `null`, `system` (syslog), `file:<path>`, or
    /// empty for the program's default (stderr as snaprelay, stdout as snapserver);
    /// [`crate::log_output::Sink::parse`] reads it.
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
pub(crate) struct StreamingClientConfig {
    /// Volume (percent) given to a client the first time it is seen.
    pub(crate) initial_volume: u8,
}

impl Default for StreamingClientConfig {
    fn default() -> Self {
        Self {
            initial_volume: 100,
        }
    }
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

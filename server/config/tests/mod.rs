//! Tests of loading as a whole: the fixtures (snapserver.conf files under `testdata/`, every
//! key set to a non-default value) and helpers shared by `layers` (where values come from and
//! how layers combine) and `validate` (what values are refused, and how).

mod layers;
mod validate;

use std::io::Write as _;
use std::path::PathBuf;

use super::keys::{self, Status};
use super::sections::{JsonRpcConfig, StreamConfig, StreamingClientConfig, TcpConfig};
use super::*;

/// A typical Debian snapserver 0.26 /etc/snapserver.conf, comments and all.
const DEBIAN_CONF: &str = include_str!("../testdata/debian-snapserver.conf");

/// Values different from every default, as INI lines per key.
const EVERY_KEY_INI: &str = include_str!("../testdata/every-key.conf");

/// The same values as TOML.
const EVERY_KEY_TOML: &str = include_str!("../testdata/every-key.toml");

/// (key, value as text) for every implemented key, matching the EVERY_KEY_* files.
const EVERY_KEY: &[(&str, &str)] = &[
    ("server.datadir", "/var/lib/relay"),
    ("server.threads", "3"),
    ("server.hello_timeout_ms", "2500"),
    ("server.max_clients", "7"),
    ("server.diagnostics_interval_s", "5"),
    ("server.pool_max_bytes", "4096"),
    ("server.mdns_enabled", "false"),
    ("server.pidfile", "/run/relay/pid"),
    ("server.user", "relay"),
    ("server.group", "audio"),
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
    ("stream.plugin_dir", "/opt/plugins"),
    ("stream.publish", "false"),
    ("stream.tcp_enabled", "false"),
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
    ("http.host", "music.local"),
    ("http.url_prefix", "https://music.example.com"),
    ("http.doc_root", "/srv/snapweb"),
    ("http.publish_http", "false"),
    ("http.publish_https", "false"),
    ("http.ssl_enabled", "true"),
    ("http.ssl_bind_to_address", "127.0.0.2"),
    ("http.ssl_port", "1889"),
    ("ssl.certificate", "/etc/relay-https.crt"),
    ("ssl.certificate_key", "/etc/relay-https.key"),
    ("ssl.verify_clients", "true"),
    ("ssl.client_cert", "/etc/clients-ca.pem"),
    ("tcp.enabled", "false"),
    ("tcp.bind_to_address", "127.0.0.1"),
    ("tcp.port", "1805"),
    ("tcp.publish", "false"),
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
            mdns_enabled: false,
            pidfile: "/run/relay/pid".into(),
            user: "relay".into(),
            group: "audio".into(),
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
            plugin_dir: "/opt/plugins".into(),
            publish: false,
            tcp_enabled: false,
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
            host: "music.local".into(),
            url_prefix: "https://music.example.com".into(),
            doc_root: "/srv/snapweb".into(),
            publish_http: false,
            publish_https: false,
            ssl_enabled: true,
            ssl_bind_to_address: vec!["127.0.0.2".into()],
            ssl_port: 1889,
        },
        tcp: TcpConfig {
            enabled: false,
            bind_to_address: vec!["127.0.0.1".into()],
            port: 1805,
            publish: false,
        },
        jsonrpc: JsonRpcConfig {
            http_enabled: false,
            add_stream_schemes: "tcp".into(),
            require_token: true,
        },
        ssl: SslConfig {
            certificate: "/etc/relay-https.crt".into(),
            certificate_key: "/etc/relay-https.key".into(),
            verify_clients: true,
            client_cert: vec!["/etc/clients-ca.pem".into()],
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

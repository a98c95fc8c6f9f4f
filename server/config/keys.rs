//! The one table of every config key snaprelay or snapserver knows (snapcast-protocol.md §6.1).
//!
//! The table drives unknown-key detection, the "not supported yet" notices, aliases and the
//! `-hh` listing. To add a key: add a row here, a field to the struct in `mod.rs` (with its
//! default), and its check in `validate` there; the tests compare every implemented row's
//! default with `Config::default()`.

use std::fmt::Write as _;

use super::SUPPORTED_CODECS;

/// What snaprelay does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Read, validated and honoured.
    Implemented,
    /// An older or alternative name of the key given here; its value is moved there.
    Alias(&'static str),
    /// A newer snapserver name for the key given here; when both are set in the same layer, this
    /// one wins (e.g. `tcp_streaming.port` over `stream.port`).
    Overrides(&'static str),
    /// A switch for something snaprelay always does; `false` is accepted with a notice.
    AlwaysOn,
    /// Known to snapserver but not implemented yet: accepted and ignored with a notice.
    NotYet,
}

/// How a key given more than once (repeated INI lines, repeated `--section.key` flags) combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repeat {
    /// Once only; repeating it in one INI file is an error.
    Once,
    /// Every occurrence is an element of a list (e.g. `source`, `bind_to_address`).
    List,
    /// Occurrences are joined with commas into one string (snapserver does this for
    /// `logging.filter`, see `server/snapserver.cpp`).
    Join,
}

/// One row of the key table.
#[derive(Debug, Clone, Copy)]
pub struct Key {
    /// `section.key`, with `_` in section names (`tcp-streaming` is written `tcp_streaming`).
    pub name: &'static str,
    /// The default as text, as `-hh` shows it.
    pub default: &'static str,
    /// What a valid value looks like, used in error messages after "expected".
    pub allowed: &'static str,
    /// One line for `-hh`.
    pub help: &'static str,
    /// What snaprelay does with it.
    pub status: Status,
    /// How repeated occurrences combine.
    pub repeat: Repeat,
}

const fn key(
    name: &'static str,
    default: &'static str,
    allowed: &'static str,
    help: &'static str,
    status: Status,
    repeat: Repeat,
) -> Key {
    Key {
        name,
        default,
        allowed,
        help,
        status,
        repeat,
    }
}

use Repeat::{Join, List, Once};
use Status::{Alias, AlwaysOn, Implemented, NotYet, Overrides};

/// Allowed-value text of keys we do not read: they are never validated.
const ANY: &str = "any value";

/// Every key, grouped by section in snapserver.conf order.
#[rustfmt::skip] // one row per key reads better than rustfmt's one argument per line
pub const KEYS: &[Key] = &[
    // [server]
    key("server.threads", "-1", "-1 (automatic) or a number from 0 to 256",
        "worker threads; -1 picks 2 to 4 from the core count", Implemented, Once),
    key("server.datadir", "", "a directory path",
        "directory for server.json; empty means $HOME/.config/snapserver or /var/lib/snapserver",
        Implemented, Once),
    key("server.hello_timeout_ms", "10000", "a number of milliseconds from 100 to 300000",
        "a stream client that sends no Hello within this time is dropped (snaprelay)",
        Implemented, Once),
    key("server.max_clients", "1000", "a number from 1 to 100000",
        "most stream clients connected at once; more are refused (snaprelay)", Implemented, Once),
    key("server.pidfile", "/var/run/snapserver/pid", ANY, "pid file when running as a daemon",
        NotYet, Once),
    key("server.user", "snapserver", ANY, "user to run as when daemonised", NotYet, Once),
    key("server.group", "", ANY, "group to run as when daemonised", NotYet, Once),
    key("server.mdns_enabled", "true", ANY, "publish services via mDNS", NotYet, Once),
    // [ssl]
    key("ssl.certificate", "", ANY, "certificate file (PEM)", NotYet, Once),
    key("ssl.certificate_key", "", ANY, "private key file (PEM)", NotYet, Once),
    key("ssl.key_password", "", ANY, "password of an encrypted private key", NotYet, Once),
    key("ssl.verify_clients", "false", ANY, "verify client certificates", NotYet, Once),
    key("ssl.client_cert", "", ANY, "client CA certificate file; repeatable", NotYet, List),
    // [authorization]
    key("authorization.enabled", "false", ANY, "enable authorization", NotYet, Once),
    key("authorization.role", "", ANY, "role:permission,permission; repeatable", NotYet, List),
    key("authorization.user", "", ANY, "user:password:role; repeatable", NotYet, List),
    // [http]
    key("http.enabled", "true", "true or false",
        "serve the HTTP listener (/metrics; JSON-RPC over POST and WebSocket at /jsonrpc)", Implemented, Once),
    key("http.bind_to_address", "0.0.0.0", "an IP address such as 0.0.0.0 or ::",
        "HTTP listen address; repeatable (snapserver's default :: fails where IPv6 is off)",
        Implemented, List),
    key("http.port", "1780", "a port number 0-65535 (0: any free port)", "HTTP port",
        Implemented, Once),
    key("http.metrics", "true", "true or false",
        "serve Prometheus metrics at /metrics on the HTTP listener (snaprelay)", Implemented,
        Once),
    key("http.ssl_enabled", "false", ANY, "HTTPS JSON-RPC and secure websockets", NotYet, Once),
    key("http.ssl_bind_to_address", "::", ANY, "HTTPS listen address; repeatable", NotYet, List),
    key("http.ssl_port", "1788", ANY, "HTTPS port", NotYet, Once),
    key("http.doc_root", "", ANY, "serve a website (snapweb) from this directory", NotYet, Once),
    key("http.host", "<hostname>", ANY, "host name clients use to fetch cover art", NotYet, Once),
    key("http.url_prefix", "", ANY, "URL prefix for cover art URLs", NotYet, Once),
    key("http.publish_http", "true", ANY, "publish the HTTP service via mDNS", NotYet, Once),
    key("http.publish_https", "true", ANY, "publish the HTTPS service via mDNS", NotYet, Once),
    // [tcp] (snapserver < 0.33; now [tcp-control]): the JSON-RPC TCP listener
    key("tcp.enabled", "true", "true or false", "serve JSON-RPC over TCP", Implemented, Once),
    key("tcp.bind_to_address", "0.0.0.0", "an IP address such as 0.0.0.0 or ::",
        "TCP JSON-RPC listen address; repeatable (snapserver's default :: fails where IPv6 is off)",
        Implemented, List),
    key("tcp.port", "1705", "a port number 0-65535 (0: any free port)", "TCP JSON-RPC port",
        Implemented, Once),
    // [tcp-control]: snapserver 0.33+ names of the [tcp] keys
    key("tcp_control.enabled", "true", "true or false", "newer name of tcp.enabled; wins over it",
        Overrides("tcp.enabled"), Once),
    key("tcp_control.bind_to_address", "0.0.0.0", "an IP address such as 0.0.0.0 or ::",
        "newer name of tcp.bind_to_address; wins over it", Overrides("tcp.bind_to_address"), List),
    key("tcp_control.port", "1705", "a port number 0-65535 (0: any free port)",
        "newer name of tcp.port; wins over it", Overrides("tcp.port"), Once),
    key("tcp_control.publish", "true", ANY, "publish the control service via mDNS", NotYet, Once),
    // [jsonrpc] (snaprelay): what the Snapcast JSON-RPC API (TCP, HTTP, websocket) allows
    key("jsonrpc.http_enabled", "true", "true or false",
        "serve JSON-RPC at POST /jsonrpc and websocket /jsonrpc on the HTTP listener (snaprelay)",
        Implemented, Once),
    key("jsonrpc.add_stream_schemes", "pipe,file,tcp,tone",
        "a comma-separated list of pipe, file, tcp, tone, process (or empty)",
        "source schemes Stream.AddStream may start; process is a remote code risk (CVE-2023-36177) (snaprelay)",
        Implemented, Join),
    key("jsonrpc.require_token", "false", "true or false",
        "require the gRPC token (Server.Authenticate or Authorization: Bearer) on JSON-RPC (snaprelay)",
        Implemented, Once),
    // [tcp-streaming]: snapserver 0.33+ names of the stream listener's [stream] keys
    key("tcp_streaming.enabled", "true", "true or false",
        "the stream listener; snaprelay always runs it", AlwaysOn, Once),
    key("tcp_streaming.bind_to_address", "0.0.0.0", "an IP address such as 0.0.0.0 or ::",
        "newer name of stream.bind_to_address; wins over it", Overrides("stream.bind_to_address"),
        List),
    key("tcp_streaming.port", "1704", "a port number 0-65535 (0: any free port)",
        "newer name of stream.port; wins over it", Overrides("stream.port"), Once),
    key("tcp_streaming.publish", "true", ANY, "publish the stream service via mDNS", NotYet, Once),
    // [stream]
    key("stream.bind_to_address", "0.0.0.0", "an IP address such as 0.0.0.0 or ::",
        "address the stream listener binds; repeatable", Implemented, List),
    key("stream.port", "1704", "a port number 0-65535 (0: any free port)", "TCP port snapclients connect to",
        Implemented, Once),
    key("stream.source", "pipe:///tmp/snapfifo?name=default",
        "a source URI such as pipe:///tmp/snapfifo?name=default",
        "source URI (TYPE://host/path?name=NAME&...); repeatable, one stream each",
        Implemented, List),
    key("stream.stream", "", "a source URI such as pipe:///tmp/snapfifo?name=default",
        "old name of stream.source", Alias("stream.source"), List),
    key("stream.sampleformat", "48000:16:2", "rate:bits:channels such as 48000:16:2",
        "default sample format of sources", Implemented, Once),
    key("stream.codec", "flac", "a codec name",
        "default codec[:options]: flac[:LEVEL 0-8], opus[:BITRATE:N,COMPLEXITY:N], ogg[:VBR:Q], pcm",
        Implemented, Once),
    key("stream.chunk_ms", "20", "a number of milliseconds from 10 to 1000",
        "default source read chunk size", Implemented, Once),
    key("stream.stream_buffer", "", "a number of milliseconds from 10 to 1000",
        "old name of stream.chunk_ms", Alias("stream.chunk_ms"), Once),
    key("stream.buffer", "1000", "a number of milliseconds from 20 to 60000",
        "end-to-end latency from capture to playout", Implemented, Once),
    key("stream.send_to_muted", "false", "true or false", "send audio to muted clients",
        Implemented, Once),
    key("stream.zerocopy", "false", "true or false",
        "send large messages with MSG_ZEROCOPY (Linux); -z on the command line", Implemented,
        Once),
    key("stream.zerocopy_threshold", "1024", "a number of bytes from 1 to 1000000",
        "messages at least this large go zerocopy; smaller ones the ordinary way", Implemented,
        Once),
    key("stream.zerocopy_auto_fallback", "true", "true or false",
        "stop zerocopy on a session once the kernel reports it copied anyway", Implemented,
        Once),
    key("stream.send_batch_ms", "60", "a number of milliseconds from 0 to 1000",
        "collect chunks this long per client and send them together (0: at once); at most \
         a tenth of stream.buffer", Implemented, Once),
    key("stream.plugin_dir", "/usr/share/snapserver/plug-ins", ANY, "stream plugin directory",
        NotYet, Once),
    key("stream.sandbox_dir", "/usr/share/snapserver/sandbox", ANY,
        "directory of executable process sources", NotYet, Once),
    // [streaming_client]
    key("server.diagnostics_interval_s", "30", "a number of seconds from 0 (off) to 86400",
        "period of the zerocopy and buffer pool reports in the log", Implemented, Once),
    key("server.pool_max_bytes", "67108864", "a number of bytes from 0 to 4294967296",
        "most bytes the chunk buffer pool keeps in its free lists", Implemented, Once),
    key("streaming_client.initial_volume", "100", "a volume from 0 to 100",
        "volume given to a client the first time it is seen", Implemented, Once),
    // [grpc]: the control API (snaprelay)
    key("grpc.enabled", "true", "true or false", "serve the gRPC control API (snaprelay)",
        Implemented, Once),
    key("grpc.bind_to_address", "127.0.0.1", "an IP address such as 127.0.0.1 or ::",
        "address the gRPC listener binds; non-loopback without a token logs a warning",
        Implemented, Once),
    key("grpc.port", "1710", "a port number 0-65535 (0: any free port)", "gRPC port",
        Implemented, Once),
    key("grpc.token", "", "empty or a token of printable ASCII without spaces",
        "bearer token the API requires (health stays open); prefer token_file or the env",
        Implemented, Once),
    key("grpc.token_file", "", "empty or a readable file holding the token",
        "file whose first line is the bearer token", Implemented, Once),
    key("grpc.tls_cert", "", "empty or a PEM certificate file (with tls_key)",
        "serve the API over TLS with this certificate chain", Implemented, Once),
    key("grpc.tls_key", "", "empty or a PEM private key file (with tls_cert)",
        "private key of tls_cert", Implemented, Once),
    // [logging]
    key("logging.sink", "", "empty, stdout or stderr (null, system and file:<path> later)",
        "where logs go; empty means the default output", Implemented, Once),
    key("logging.filter", "*:info",
        "a filter such as *:info or *:debug,Stream:trace, or a tracing EnvFilter directive",
        "log filter <tag>:<level>[,<tag>:<level>]*; repeatable, joined with commas",
        Implemented, Join),
    key("logging.debug", "false", ANY, "snapserver before 0.26; use logging.filter", NotYet,
        Once),
    key("logging.debug_logfile", "", ANY, "snapserver before 0.26; use logging.sink", NotYet,
        Once),
];

/// The row named `name` (`section.key`, sections already normalised to `_`).
pub fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// What a valid value of `name` looks like, for "expected ..." in error messages.
pub(crate) fn allowed(name: &str) -> String {
    if name == "stream.codec" {
        // Built from the list so that it grows with it.
        return format!("one of: {}", SUPPORTED_CODECS.join(", "));
    }
    find(name).map_or_else(|| ANY.to_owned(), |key| key.allowed.to_owned())
}

/// The closest known key within edit distance 2, for "did you mean ...?".
pub(crate) fn suggest(name: &str) -> Option<&'static str> {
    KEYS.iter()
        .map(|key| (edit_distance(name, key.name), key.name))
        .filter(|(distance, _)| *distance <= 2)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The environment variable that sets `name`: `stream.port` → `SNAPRELAY_STREAM__PORT`.
pub fn env_var(name: &str) -> String {
    format!("SNAPRELAY_{}", name.replacen('.', "__", 1).to_uppercase())
}

/// The "Configuration keys" section of the long help (`-hh`): every key, its default, its
/// environment variable and what it does.
pub fn listing() -> String {
    let mut out = String::from(
        "Configuration keys:\n  \
         Set in the config file ([section] key = value, or TOML), as SNAPRELAY_SECTION__KEY=value\n  \
         in the environment, or with --section.key=value. Later wins: default < file < env < flag.\n",
    );
    let mut section = "";
    for key in KEYS {
        let this_section = key.name.split('.').next().unwrap_or_default();
        if this_section != section {
            section = this_section;
            // snapserver.conf spells [tcp-control] and [tcp-streaming] with '-'.
            let spelled = match section.strip_prefix("tcp_") {
                Some(rest) => format!("tcp-{rest}"),
                None => section.to_owned(),
            };
            let _ = write!(out, "\n  [{spelled}]\n");
        }
        let default = if key.default.is_empty() {
            "\"\"".to_owned()
        } else {
            key.default.to_owned()
        };
        let _ = writeln!(out, "  {} = {}", key.name, default);
        let _ = writeln!(out, "      {}", key.help);
        let note = match key.status {
            Implemented => String::new(),
            Alias(target) => format!("; same as {target}"),
            Overrides(target) => format!("; overrides {target}"),
            AlwaysOn => "; false is ignored".to_owned(),
            NotYet => "; not supported yet, accepted and ignored".to_owned(),
        };
        let _ = writeln!(out, "      env {}{note}", env_var(key.name));
    }
    out
}

/// Levenshtein distance over chars; keys are short so the O(n·m) table is fine.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_well_formed() {
        for (i, key) in KEYS.iter().enumerate() {
            let (section, name) = key.name.split_once('.').expect("section.key");
            assert!(!section.is_empty() && !name.is_empty(), "{}", key.name);
            assert!(!key.name.contains('-'), "{} uses '-'", key.name);
            assert!(
                KEYS[i + 1..].iter().all(|other| other.name != key.name),
                "{} twice",
                key.name
            );
            if let Alias(target) | Overrides(target) = key.status {
                assert_eq!(
                    find(target).map(|t| t.status),
                    Some(Implemented),
                    "{target}"
                );
            }
        }
    }

    #[test]
    fn suggests_close_keys_only() {
        assert_eq!(suggest("stream.buffr"), Some("stream.buffer"));
        assert_eq!(suggest("strem.port"), Some("stream.port"));
        assert_eq!(suggest("stream.colour"), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "ab"), 2);
    }

    #[test]
    fn env_var_form() {
        assert_eq!(env_var("stream.port"), "SNAPRELAY_STREAM__PORT");
        assert_eq!(
            env_var("streaming_client.initial_volume"),
            "SNAPRELAY_STREAMING_CLIENT__INITIAL_VOLUME"
        );
    }

    #[test]
    fn listing_names_every_key_with_default_and_env() {
        let text = listing();
        for key in KEYS {
            assert!(text.contains(&format!("  {} = ", key.name)), "{}", key.name);
            assert!(text.contains(&env_var(key.name)), "{}", key.name);
            assert!(text.contains(key.help), "{}", key.name);
        }
        assert!(text.contains("stream.port = 1704"));
        assert!(text.contains("[tcp-streaming]") && text.contains("[streaming_client]"));
    }
}

//! The one table of every config key snaprelay or snapserver knows (docs/PROTOCOL.md §4.2).
//!
//! The table drives unknown-key detection, the "not supported yet" notices, aliases, the `-hh`
//! listing, and what values are valid: each row's [`Rule`] is what start-up validation and
//! UpdateConfig check and what their messages and `-hh` print, and its `runtime` flag is what
//! UpdateConfig accepts. To add a key: add a row here and a field to its section struct in
//! `sections.rs` (with its default); a key that can change at run time also needs its `Change`
//! in `control/runtime_config.rs`. The tests compare every implemented row's default with
//! `Config::default()` and every runtime row with UpdateConfig.

use std::fmt::Write as _;

use super::log_filter;
use super::rules;
pub(crate) use super::rules::{parse_bool, Rule};

/// What snaprelay does with a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// Read, validated and honoured.
    Implemented,
    /// An older or alternative name of the key given here; its value is moved there.
    Alias(&'static str),
    /// A newer snapserver name for the key given here; when both are set in the same layer, this
    /// one wins (e.g. `tcp_streaming.port` over `stream.port`).
    Overrides(&'static str),
    /// Known to snapserver but not implemented yet: accepted and ignored with a notice.
    NotYet,
    /// Known to snapserver and not implemented yet, where ignoring it would leave open what it
    /// asks to close (client certificates, authorization): any value but its default stops
    /// the start with an error.
    Refused,
}

/// How a key given more than once (repeated INI lines, repeated `--section.key` flags) combines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Repeat {
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
pub(crate) struct Key {
    /// `section.key`, with `_` in section names (`tcp-streaming` is written `tcp_streaming`).
    pub(crate) name: &'static str,
    /// The default as text, as `-hh` shows it.
    pub(crate) default: &'static str,
    /// What a valid value is: checked at start-up and by UpdateConfig, and printed (after
    /// "expected" in error messages, and by `-hh`).
    pub(crate) rule: Rule,
    /// One line for `-hh`.
    pub(crate) help: &'static str,
    /// What snaprelay does with it.
    pub(crate) status: Status,
    /// How repeated occurrences combine.
    pub(crate) repeat: Repeat,
    /// Whether UpdateConfig may change it while the relay runs.
    pub(crate) runtime: bool,
    /// Whether its value is a secret that is never shown (GetConfig, error messages).
    pub(crate) secret: bool,
}

impl Key {
    /// This row, changeable at run time with UpdateConfig.
    const fn runtime(mut self) -> Self {
        self.runtime = true;
        self
    }

    /// This row, with a value that is never shown.
    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}

const fn key(
    name: &'static str,
    default: &'static str,
    rule: Rule,
    help: &'static str,
    status: Status,
    repeat: Repeat,
) -> Key {
    Key {
        name,
        default,
        rule,
        help,
        status,
        repeat,
        runtime: false,
        secret: false,
    }
}

use Repeat::{Join, List, Once};
use Status::{Alias, Implemented, NotYet, Overrides, Refused};

// Rules several rows share, and the texts of number ranges.
const ANY: Rule = Rule::Any;
const BOOL: Rule = Rule::Bool;
const MS: &str = "a number of milliseconds from {min} to {max}";
const BYTES: &str = "a number of bytes from {min} to {max}";
const SECONDS_OFF: &str = "a number of seconds from {min} (off) to {max}";
const PORT: Rule = Rule::int(0, 65_535, "a port number {min}-{max} (0: any free port)");
const IP: Rule = Rule::checked("an IP address such as 0.0.0.0 or ::", rules::ip_address);
const SOURCE: Rule = Rule::checked(
    "a source URI such as pipe:///tmp/snapfifo?name=default",
    rules::non_blank,
);
const CHUNK_MS: Rule = Rule::int(10, 1000, MS);
const THREADS: Rule = Rule::int(-1, 256, "{min} (automatic) or a number from 0 to {max}");
const LOG_FILTER: Rule = Rule::checked(
    "a filter such as *:info or *:debug,Stream:trace, or a tracing EnvFilter directive",
    log_filter::is_valid,
);
const LOG_SINK: Rule = Rule::checked(
    "empty, stdout, stderr, null, system or file:<path>",
    rules::log_sink,
);
const TOKEN: Rule = Rule::checked(
    "empty or a token of printable ASCII without spaces",
    rules::token,
);
const GRPC_IP: Rule = Rule::checked("an IP address such as 127.0.0.1 or ::", rules::ip_address);

/// Every key, grouped by section in snapserver.conf order.
#[rustfmt::skip] // one row per key reads better than rustfmt's one argument per line
pub(crate) const KEYS: &[Key] = &[
    // [server]
    key("server.threads", "-1", THREADS,
        "worker threads; -1 picks 2 to 4 from the core count", Implemented, Once),
    key("server.datadir", "", Rule::text("a directory path"),
        "directory for server.json; empty means $HOME/.config/snapserver or /var/lib/snapserver",
        Implemented, Once),
    key("server.hello_timeout_ms", "10000", Rule::int(100, 300_000, MS),
        "a stream client that sends no Hello within this time is dropped (snaprelay)",
        Implemented, Once),
    key("server.max_clients", "1000", Rule::int(1, 100_000, "a number from {min} to {max}"),
        "most stream clients connected at once; more are refused (snaprelay)", Implemented, Once),
    key("server.pidfile", "/var/run/snapserver/pid", Rule::text("a file path"),
        "pid file written by -d", Implemented, Once),
    key("server.user", "snapserver", Rule::text("a user name, or empty"),
        "user -d switches to when started as root; empty stays root", Implemented, Once),
    key("server.group", "", Rule::text("a group name, or empty"),
        "group -d switches to; empty: the user's own", Implemented, Once),
    key("server.mdns_enabled", "true", BOOL, "publish the services via mDNS / DNS-SD", Implemented, Once),
    // [ssl]
    key("ssl.certificate", "", Rule::text("a file path, or empty"),
        "certificate chain (PEM) of the HTTPS listener", Implemented, Once),
    key("ssl.certificate_key", "", Rule::text("a file path, or empty"),
        "its private key (PEM: PKCS#8, PKCS#1 or SEC1, unencrypted)", Implemented, Once),
    key("ssl.key_password", "", ANY, "password of an encrypted private key", Refused, Once)
        .secret(),
    key("ssl.verify_clients", "false", BOOL,
        "HTTPS clients must present a certificate signed by an ssl.client_cert CA (mutual TLS)",
        Implemented, Once),
    key("ssl.client_cert", "", Rule::text("a PEM file of CA certificates, or empty"),
        "CA certificates (PEM) that sign client certificates; repeatable", Implemented, List),
    // [authorization]
    key("authorization.enabled", "false", ANY, "enable authorization", Refused, Once),
    key("authorization.role", "", ANY, "role:permission,permission; repeatable", NotYet, List),
    key("authorization.user", "", ANY, "user:password:role; repeatable", NotYet, List),
    // [http]
    key("http.enabled", "true", BOOL,
        "serve the HTTP listener (/metrics; JSON-RPC over POST and WebSocket at /jsonrpc)", Implemented, Once),
    key("http.bind_to_address", "::", IP,
        "HTTP listen address; repeatable (::, the default, serves IPv4 too; 0.0.0.0 where IPv6 is off)",
        Implemented, List),
    key("http.port", "1780", PORT, "HTTP port",
        Implemented, Once),
    key("http.metrics", "true", BOOL,
        "serve Prometheus metrics at /metrics on the HTTP listener (snaprelay)", Implemented,
        Once),
    key("http.ssl_enabled", "false", BOOL,
        "serve HTTPS and wss:// too (JSON-RPC, Snapweb, /stream) with [ssl]'s certificate", Implemented, Once),
    key("http.ssl_bind_to_address", "::", IP,
        "HTTPS listen address; repeatable (::, the default, serves IPv4 too; 0.0.0.0 where IPv6 is off)", Implemented, List),
    key("http.ssl_port", "1788", PORT, "HTTPS port", Implemented, Once),
    key("http.doc_root", "", Rule::text("a directory path, or empty"),
        "serve a website (Snapweb) from this directory; empty: /usr/share/snapserver/snapweb if it exists, else a status page",
        Implemented, Once),
    key("http.host", "<hostname>", Rule::text("a host name or IP address; <hostname> for this machine's"),
        "host name in cover art URLs and stream plugins' --snapcast-host", Implemented, Once),
    key("http.url_prefix", "",
        Rule::checked("an http:// or https:// URL such as https://music.example.com, or empty", rules::url_prefix),
        "replaces http://<host>:<port> in cover art URLs", Implemented, Once),
    key("http.publish_http", "true", BOOL, "publish the HTTP service via mDNS", Implemented, Once),
    key("http.publish_https", "true", BOOL, "publish the HTTPS service via mDNS (when HTTPS is on)",
        Implemented, Once),
    // [tcp] (snapserver < 0.33; now [tcp-control]): the JSON-RPC TCP listener
    key("tcp.enabled", "true", BOOL, "serve JSON-RPC over TCP", Implemented, Once),
    key("tcp.bind_to_address", "::", IP,
        "TCP JSON-RPC listen address; repeatable (::, the default, serves IPv4 too; 0.0.0.0 where IPv6 is off)",
        Implemented, List),
    key("tcp.port", "1705", PORT, "TCP JSON-RPC port",
        Implemented, Once),
    key("tcp.publish", "true", BOOL, "publish the control service via mDNS", Implemented, Once),
    // [tcp-control]: snapserver 0.33+ names of the [tcp] keys
    key("tcp_control.enabled", "true", BOOL, "newer name of tcp.enabled; wins over it",
        Overrides("tcp.enabled"), Once),
    key("tcp_control.bind_to_address", "::", IP,
        "newer name of tcp.bind_to_address; wins over it", Overrides("tcp.bind_to_address"), List),
    key("tcp_control.port", "1705", PORT,
        "newer name of tcp.port; wins over it", Overrides("tcp.port"), Once),
    key("tcp_control.publish", "true", BOOL, "newer name of tcp.publish; wins over it",
        Overrides("tcp.publish"), Once),
    // [jsonrpc] (snaprelay): what the Snapcast JSON-RPC API (TCP, HTTP, websocket) allows
    key("jsonrpc.http_enabled", "true", BOOL,
        "serve JSON-RPC at POST /jsonrpc and websocket /jsonrpc on the HTTP listener (snaprelay)",
        Implemented, Once),
    key("jsonrpc.add_stream_schemes", "pipe,file,tcp,tone",
        Rule::Schemes,
        "source schemes Stream.AddStream may start; process is a remote code risk (CVE-2023-36177) (snaprelay)",
        Implemented, Join),
    key("jsonrpc.require_token", "false", BOOL,
        "require the gRPC token (Server.Authenticate or Authorization: Bearer) on JSON-RPC (snaprelay)",
        Implemented, Once),
    // [tcp-streaming]: snapserver 0.33+ names of the stream listener's [stream] keys
    key("tcp_streaming.enabled", "true", BOOL,
        "newer name of stream.tcp_enabled; wins over it", Overrides("stream.tcp_enabled"), Once),
    key("tcp_streaming.bind_to_address", "::", IP,
        "newer name of stream.bind_to_address; wins over it", Overrides("stream.bind_to_address"),
        List),
    key("tcp_streaming.port", "1704", PORT,
        "newer name of stream.port; wins over it", Overrides("stream.port"), Once),
    key("tcp_streaming.publish", "true", BOOL, "newer name of stream.publish; wins over it",
        Overrides("stream.publish"), Once),
    // [stream]
    key("stream.bind_to_address", "::", IP,
        "address the stream listener binds; repeatable", Implemented, List),
    key("stream.port", "1704", PORT, "TCP port snapclients connect to",
        Implemented, Once),
    key("stream.source", "pipe:///tmp/snapfifo?name=default",
        SOURCE,
        "source URI (TYPE://host/path?name=NAME&...); repeatable, one stream each",
        Implemented, List),
    key("stream.stream", "", SOURCE,
        "old name of stream.source", Alias("stream.source"), List),
    key("stream.sampleformat", "48000:16:2", Rule::text("rate:bits:channels such as 48000:16:2"),
        "default sample format of sources", Implemented, Once),
    key("stream.codec", "flac", Rule::Codec,
        "default codec[:options]: flac[:LEVEL 0-8], opus[:BITRATE:N,COMPLEXITY:N], ogg[:VBR:Q], pcm",
        Implemented, Once),
    key("stream.chunk_ms", "20", CHUNK_MS,
        "default source read chunk size", Implemented, Once),
    key("stream.stream_buffer", "", CHUNK_MS,
        "old name of stream.chunk_ms", Alias("stream.chunk_ms"), Once),
    key("stream.buffer", "1000", Rule::int(20, 60_000, MS),
        "end-to-end latency from capture to playout", Implemented, Once).runtime(),
    key("stream.send_to_muted", "false", BOOL, "send audio to muted clients",
        Implemented, Once),
    key("stream.zerocopy", "false", BOOL,
        "send large messages with MSG_ZEROCOPY (Linux); -z on the command line", Implemented,
        Once).runtime(),
    key("stream.zerocopy_threshold", "1024", Rule::int(1, 1_000_000, BYTES),
        "messages at least this large go zerocopy; smaller ones the ordinary way", Implemented,
        Once).runtime(),
    key("stream.zerocopy_auto_fallback", "true", BOOL,
        "stop zerocopy on a session once the kernel reports it copied anyway", Implemented,
        Once),
    key("stream.send_batch_ms", "60", Rule::int(0, 1000, MS),
        "collect chunks this long per client and send them together (0: at once); at most \
         a tenth of stream.buffer", Implemented, Once),
    key("stream.plugin_dir", "/usr/share/snapserver/plug-ins", Rule::text("a directory path"),
        "stream plugins (controlscript): relative paths start here; Stream.AddStream's must be inside",
        Implemented, Once),
    key("stream.publish", "true", BOOL, "publish the stream listener via mDNS (snaprelay's name of tcp_streaming.publish)",
        Implemented, Once),
    key("stream.tcp_enabled", "true", BOOL,
        "serve stream clients over plain TCP; false: only WebSocket /stream clients (HTTP/HTTPS) play (snaprelay's name of tcp_streaming.enabled)",
        Implemented, Once),
    key("stream.sandbox_dir", "/usr/share/snapserver/sandbox", ANY,
        "directory of executable process sources", NotYet, Once),
    // [streaming_client]
    key("server.diagnostics_interval_s", "30", Rule::int(0, 86_400, SECONDS_OFF),
        "period of the zerocopy and buffer pool reports in the log", Implemented, Once).runtime(),
    key("server.pool_max_bytes", "67108864", Rule::int(0, 1 << 32, BYTES),
        "most bytes the chunk buffer pool keeps in its free lists", Implemented, Once),
    key("streaming_client.initial_volume", "100", Rule::int(0, 100, "a volume from {min} to {max}"),
        "volume given to a client the first time it is seen", Implemented, Once),
    // [grpc]: the control API (snaprelay)
    key("grpc.enabled", "true", BOOL, "serve the gRPC control API (snaprelay)",
        Implemented, Once),
    key("grpc.bind_to_address", "127.0.0.1", GRPC_IP,
        "address the gRPC listener binds; non-loopback without a token logs a warning",
        Implemented, Once),
    key("grpc.port", "1710", PORT, "gRPC port",
        Implemented, Once),
    key("grpc.token", "", TOKEN,
        "bearer token the API requires (health stays open); prefer token_file or the env",
        Implemented, Once).secret(),
    key("grpc.token_file", "", Rule::text("empty or a readable file holding the token"),
        "file whose first line is the bearer token", Implemented, Once),
    key("grpc.tls_cert", "", Rule::text("empty or a PEM certificate file (with tls_key)"),
        "serve the API over TLS with this certificate chain", Implemented, Once),
    key("grpc.tls_key", "", Rule::text("empty or a PEM private key file (with tls_cert)"),
        "private key of tls_cert", Implemented, Once),
    // [logging]
    key("logging.sink", "", LOG_SINK,
        "where logs go: stdout, stderr, null, system (syslog) or file:<path>; empty: stderr (stdout when run as snapserver)", Implemented, Once),
    key("logging.filter", "*:info",
        LOG_FILTER,
        "log filter <tag>:<level>[,<tag>:<level>]*; repeatable, joined with commas",
        Implemented, Join).runtime(),
    key("logging.debug", "false", ANY, "snapserver before 0.26; use logging.filter", NotYet,
        Once),
    key("logging.debug_logfile", "", ANY, "snapserver before 0.26; use logging.sink", NotYet,
        Once),
];

/// The row named `name` (`section.key`, sections already normalised to `_`).
pub(crate) fn find(name: &str) -> Option<&'static Key> {
    KEYS.iter().find(|key| key.name == name)
}

/// What a valid value of `name` looks like, for "expected ..." in error messages.
pub(crate) fn allowed(name: &str) -> String {
    find(name).map_or(ANY, |key| key.rule).allowed()
}

/// The rows UpdateConfig accepts, in table order.
pub(crate) fn runtime() -> impl Iterator<Item = &'static Key> {
    KEYS.iter().filter(|key| key.runtime)
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
pub(crate) fn env_var(name: &str) -> String {
    format!("SNAPRELAY_{}", name.replacen('.', "__", 1).to_uppercase())
}

/// The "Configuration keys" section of the long help (`-hh`): every key, its default, what it
/// does, what values it takes (its rule) and whether it can change at run time, and its
/// environment variable.
pub(crate) fn listing() -> String {
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
        if !matches!(key.rule, Rule::Any) {
            let runtime = if key.runtime {
                "; can change at run time (snapctl config set)"
            } else {
                ""
            };
            let _ = writeln!(out, "      allowed: {}{runtime}", key.rule.allowed());
        }
        let note = match key.status {
            Implemented => String::new(),
            Alias(target) => format!("; same as {target}"),
            Overrides(target) => format!("; overrides {target}"),
            NotYet => "; not supported yet, accepted and ignored".to_owned(),
            Refused => "; not supported yet: anything but the default stops the start".to_owned(),
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
    fn every_read_key_has_a_rule_its_default_meets() {
        for key in KEYS {
            let read = !matches!(key.status, NotYet | Refused);
            assert_eq!(!matches!(key.rule, Rule::Any), read, "{}", key.name);
            assert!(
                !key.runtime || key.status == Implemented,
                "{} is runtime but not implemented",
                key.name
            );
            if let Alias(target) | Overrides(target) = key.status {
                // Whatever name a value arrives under, it must meet the same rule.
                assert_eq!(key.rule.allowed(), allowed(target), "{}", key.name);
            }
            if key.status == Implemented {
                assert!(
                    key.rule.accepts(key.default),
                    "{} = {}",
                    key.name,
                    key.default
                );
            }
            if let Rule::Int { min, max, text } = key.rule {
                assert!(min <= max && text.contains("{max}"), "{}", key.name);
            }
        }
        assert_eq!(
            allowed("stream.buffer"),
            "a number of milliseconds from 20 to 60000"
        );
        assert_eq!(allowed("no.such_key"), "any value");
        assert!(find("grpc.token").is_some_and(|key| key.secret));
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
        for key in KEYS.iter().filter(|key| key.status == Implemented) {
            let line = format!("allowed: {}", key.rule.allowed());
            assert!(text.contains(&line), "{}: {line}", key.name);
        }
        assert!(text.contains(
            "allowed: a number of milliseconds from 20 to 60000; can change at run time"
        ));
        assert!(text.contains("allowed: a port number 0-65535 (0: any free port)\n"));
        assert_eq!(
            text.matches("can change at run time").count(),
            runtime().count()
        );
        assert!(text.contains("[tcp-streaming]") && text.contains("[streaming_client]"));
    }
}

//! What values are refused, and how: each message names the key, the value, where it came
//! from and what the key's rule allows.

use super::keys::Rule;
use super::*;

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
        (
            "logging.sink",
            "syslog",
            "stdout, stderr, null, system or file:<path>",
        ),
        (
            "logging.sink",
            "file:",
            "stdout, stderr, null, system or file:<path>",
        ),
        ("logging.filter", "*:loud", "a filter such as *:info"),
        ("logging.filter", "", "a filter such as *:info"),
        ("tcp_streaming.enabled", "perhaps", "true or false"),
        ("ssl.verify_clients", "perhaps", "true or false"),
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
        // A newer snapserver name is reported under the key it sets.
        let shown_key = if *key == "tcp_streaming.enabled" {
            "stream.tcp_enabled"
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
fn empty_datadir_means_none() {
    let loaded = load_file("s.conf", "[server]\ndatadir =\n").unwrap();
    assert_eq!(loaded.config.server.datadir, None);
}

/// Every number key's bounds come from its row: the bounds pass, one past either fails with the
/// row's text, whichever layer the value comes from.
#[test]
fn number_keys_follow_their_rows_bounds() {
    let mut checked = 0;
    for key in keys::KEYS
        .iter()
        .filter(|k| k.status == Status::Implemented)
    {
        let Rule::Int { min, max, .. } = key.rule else {
            continue;
        };
        checked += 1;
        for ok in [min, max] {
            let flag = format!("--{}={ok}", key.name);
            let loaded = load_from(&args(&[&flag]), env(&[]));
            assert!(loaded.is_ok(), "{flag}: {}", error_text(loaded));
        }
        for bad in [min - 1, max + 1] {
            let expected = format!(
                "invalid value '{bad}' for {} (from env {}): expected {}",
                key.name,
                keys::env_var(key.name),
                key.rule.allowed()
            );
            let var = keys::env_var(key.name);
            let error = error_text(load_from(
                &Args::default(),
                env(&[(&var, &bad.to_string())]),
            ));
            assert_eq!(error, expected);
        }
    }
    assert!(checked >= 10, "only {checked} number keys");
}

#[test]
fn a_secret_is_never_shown() {
    let error = error_text(load_from(&args(&["--grpc.token=two words"]), env(&[])));
    assert!(
        error.starts_with("invalid value '(hidden)' for grpc.token"),
        "{error}"
    );
    assert!(!error.contains("words"), "{error}");
}

#[test]
fn tls_needs_both_files_and_schemes_are_named_one_by_one() {
    let error = error_text(load_from(&args(&["--grpc.tls_cert=/c.pem"]), env(&[])));
    assert!(
        error.starts_with("invalid value '' for grpc.tls_key"),
        "{error}"
    );
    let error = error_text(load_from(&args(&["--grpc.tls_key=/k.pem"]), env(&[])));
    assert!(
        error.starts_with("invalid value '' for grpc.tls_cert"),
        "{error}"
    );
    let error = error_text(load_from(
        &args(&["--jsonrpc.add_stream_schemes=pipe, jack"]),
        env(&[]),
    ));
    assert!(
        error.starts_with("invalid value 'jack' for jsonrpc.add_stream_schemes"),
        "{error}"
    );
    let loaded = load_from(&args(&["--jsonrpc.add_stream_schemes="]), env(&[])).unwrap();
    assert!(loaded.config.jsonrpc.schemes().is_empty());
}

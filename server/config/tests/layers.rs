//! Where values come from and how the layers combine: every key from each layer, precedence,
//! snapserver.conf spellings, aliases, repeated keys, unknown keys, malformed files.

use super::*;

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
    assert_eq!(config.stream.bind_to_address, ["::"]);
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
            "--server.mdns_enabled=false",
            "--server.pidfile=/run/relay/pid",
            "--server.user=relay",
            "--server.group=audio",
            "--stream.send_to_muted=true",
            "-z",
            "--stream.zerocopy_threshold=2048",
            "--stream.zerocopy_auto_fallback=false",
            "--stream.send_batch_ms=40",
            "--stream.plugin_dir=/opt/plugins",
            "--stream.publish=false",
            "--stream.tcp_enabled=false",
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
            "--http.host=music.local",
            "--http.url_prefix=https://music.example.com",
            "--http.doc_root=/srv/snapweb",
            "--http.publish_http=false",
            "--http.publish_https=false",
            "--http.ssl_enabled=true",
            "--http.ssl_bind_to_address=127.0.0.2",
            "--http.ssl_port=1889",
            "--ssl.certificate=/etc/relay-https.crt",
            "--ssl.certificate_key=/etc/relay-https.key",
            "--ssl.verify_clients=true",
            "--ssl.client_cert=/etc/clients-ca.pem",
            "--tcp.enabled=false",
            "--tcp.bind_to_address=127.0.0.1",
            "--tcp.port=1805",
            "--tcp.publish=false",
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
    let loaded = load_from(&args(&["--stream.buffer=600", "--buffer", "700"]), env(&[])).unwrap();
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
    let mut expected = Config::default();
    expected.http.doc_root = "/usr/share/snapserver/snapweb".into();
    assert_eq!(loaded.config, expected);
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
}

#[test]
fn snapserver_033_sections_and_aliases() {
    let conf = "[tcp-streaming]\nport = 1900\nbind_to_address = ::1\nenabled = false\n\
                publish = false\n[tcp-control]\nport = 1706\n[tcp]\nport = 1705\n[stream]\n\
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
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    assert!(
        !stream.tcp_enabled,
        "[tcp-streaming] enabled is stream.tcp_enabled"
    );
    assert!(!stream.publish, "[tcp-streaming] publish is stream.publish");
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
    let conf =
        "[stream]\nsource = pipe:///a?name=a\n# second one\nsource = \"tcp://127.0.0.1?name=b\"\n\
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
        b"[logging]\ndebug = true\n[authorization]\nrole = admin:all\n",
    );
    let loaded = load_from(
        &args(&[
            "-c",
            path.to_str().unwrap(),
            "--authorization.user=a:b:admin",
        ]),
        env(&[("SNAPRELAY_STREAM__SANDBOX_DIR", "/p")]),
    )
    .unwrap();
    assert_eq!(
        loaded.notices,
        [
            "config: authorization.role is not supported yet; ignored",
            "config: logging.debug is not supported yet; ignored",
            "config: stream.sandbox_dir is not supported yet; ignored",
            "config: authorization.user is not supported yet; ignored",
        ]
    );
    // HTTPS needs its certificate and key.
    let err = load_from(&args(&["--http.ssl_enabled=true"]), env(&[]))
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("invalid value '' for ssl.certificate (from default): expected a PEM file"),
        "{err}"
    );
    // Every snapserver sink is taken as it is.
    for sink in ["system", "null", "file:/var/log/snap.log", "stdout"] {
        let loaded = load_from(&args(&[&format!("--logging.sink={sink}")]), env(&[])).unwrap();
        assert_eq!(loaded.config.logging.sink, sink);
        assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
    }
}

#[test]
fn garbage_files_fail_with_a_line_number() {
    let error = error_text(load_file(
        "s.conf",
        "[stream]\nport = 1704\nthis line has no equals\n",
    ));
    assert!(
        error.ends_with(
            "s.conf line 3: expected 'key = value' or '[section]', found 'this line has no equals'"
        ),
        "{error}"
    );
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
fn bools_accept_snapserver_spellings() {
    for (text, expected) in [("true", true), ("1", true), ("false", false), ("0", false)] {
        let loaded = load_file("s.conf", &format!("[stream]\nsend_to_muted = {text}\n")).unwrap();
        assert_eq!(loaded.config.stream.send_to_muted, expected, "{text}");
    }
}

/// Keys snaprelay does not implement, where running without them would leave open what they
/// close, stop the start when set to anything but their default; at their default they
/// are accepted. A password is never shown.
#[test]
fn security_keys_not_implemented_stop_the_start_unless_at_their_default() {
    for conf in [
        "[ssl]\nkey_password = hunter2\n",
        "[authorization]\nenabled = true\n",
        "[authorization]\nenabled = yes\n",
    ] {
        let err = load_file("snapserver.conf", conf)
            .expect_err(conf)
            .to_string();
        assert!(
            err.contains("not supported by snaprelay yet") && err.contains("snapserver.conf"),
            "{conf}: {err}"
        );
        assert!(!err.contains("hunter2"), "the password is shown: {err}");
    }
    let err = load_from(&args(&["--authorization.enabled=true"]), env(&[]))
        .expect_err("a flag too")
        .to_string();
    assert!(err.contains("authorization.enabled"), "{err}");
    let loaded = load_file(
        "snapserver.conf",
        "[ssl]\nkey_password =\n[authorization]\nenabled = false\n",
    )
    .unwrap();
    assert!(loaded.notices.is_empty(), "{:?}", loaded.notices);
}

//! `snapctl` end to end: the built binary against the built relay with real snapclients,
//! plus its exit codes, JSON output and signal/pipe behaviour.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::audio::Signal;
use common::{eventually, FifoWriter, Relay, Snapclient};
use serde_json::Value;

fn snapctl(server: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .arg("--server")
        .arg(server)
        .args(args)
        .env_remove("SNAPCTL_SERVER")
        .env_remove("SNAPCTL_TOKEN")
        .stdin(Stdio::null())
        .output()
        .expect("run snapctl")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs snapctl and asserts it succeeded, returning stdout.
fn ok(server: &str, args: &[&str]) -> String {
    let output = snapctl(server, args);
    assert!(
        output.status.success(),
        "snapctl {args:?} failed ({:?}):\n{}{}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

fn json(server: &str, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(server, &all);
    serde_json::from_str(&text).unwrap_or_else(|err| panic!("{args:?}: {err}: {text}"))
}

fn pipe_relay(extra: &[&str]) -> (Relay, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fifo = common::source_fifo(dir.path(), "music");
    let uri = format!("pipe://{}?name=music", fifo.display());
    let mut args = vec!["--source", &uri];
    args.extend_from_slice(extra);
    (Relay::start_in(dir, &args), fifo)
}

#[test]
fn sessions_volume_and_stats_with_real_snapclients() {
    let (relay, fifo) = pipe_relay(&[]);
    let server = relay.grpc_url();
    let _writer = FifoWriter::start(&fifo, Signal::new(440.0, 660.0), 0);
    let kitchen = Snapclient::start(relay.port(), "kitchen", relay.dir.path());
    let _garden = Snapclient::start(relay.port(), "garden", relay.dir.path());

    // `snapctl sessions` shows both clients once they said Hello.
    let table = eventually(
        Duration::from_secs(20),
        "both snapclients in `snapctl sessions`",
        || relay.log(),
        || {
            let table = ok(&server, &["sessions"]);
            (table.contains("kitchen") && table.contains("garden")).then_some(table)
        },
    );
    let header = table.lines().next().unwrap();
    for column in [
        "ID", "CLIENT", "ADDRESS", "STREAM", "SENT", "MODE", "VOLUME",
    ] {
        assert!(header.contains(column), "{header}");
    }
    let listed = json(&server, &["sessions"]);
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listed}");
    let kitchen_session = sessions
        .iter()
        .find(|s| s["client_id"] == "kitchen")
        .unwrap();
    assert_eq!(kitchen_session["stream"], "music");
    assert_eq!(kitchen_session["send_mode"], "regular");
    let id = kitchen_session["session_id"].as_u64().unwrap().to_string();
    let detail = ok(&server, &["session", &id]);
    assert!(
        detail.contains("client:") && detail.contains("kitchen"),
        "{detail}"
    );
    assert!(detail.contains("time sync:"), "{detail}");

    // `snapctl volume` changes what the client itself applies (its ServerSettings log line).
    let answer = ok(&server, &["volume", "kitchen", "42"]);
    assert!(answer.contains("volume 42%"), "{answer}");
    eventually(
        Duration::from_secs(10),
        "snapclient 'kitchen' applying volume 42",
        || kitchen.log(),
        || kitchen.log().contains("volume: 42, muted: 0").then_some(()),
    );
    ok(&server, &["volume", "kitchen", "--mute"]);
    eventually(
        Duration::from_secs(10),
        "snapclient 'kitchen' muting",
        || kitchen.log(),
        || kitchen.log().contains("volume: 42, muted: 1").then_some(()),
    );
    let client = json(&server, &["latency", "kitchen", "-15"]);
    assert_eq!(client["latency_ms"], -15);
    let client = json(&server, &["name", "kitchen", "Kitchen speaker"]);
    assert_eq!(client["name"], "Kitchen speaker");
    let table = ok(&server, &["sessions"]);
    assert!(
        table.contains("Kitchen speaker") && table.contains("42% (muted)"),
        "{table}"
    );

    // `snapctl stats --json` parses and its numbers move while audio flows.
    let sent = |stats: &Value| stats["aggregate"]["bytes_sent"].as_u64().unwrap();
    let first = json(&server, &["stats"]);
    assert_eq!(first["aggregate"]["sessions"], 2);
    assert_eq!(first["streams"][0]["name"], "music");
    assert!(first["pool"].is_object() && first["aggregate"]["zerocopy"].is_object());
    let later = eventually(
        Duration::from_secs(10),
        "bytes_sent growing",
        || first.to_string(),
        || {
            // Both move: a batch sent just after `first` may hold only chunks published
            // before it, so bytes can grow a moment before the chunk count does.
            let later = json(&server, &["stats"]);
            let chunks = |stats: &Value| stats["streams"][0]["chunks"].as_u64();
            (sent(&later) > sent(&first) && chunks(&later) > chunks(&first)).then_some(later)
        },
    );
    assert_eq!(later["streams"][0]["state"], "playing");
    let human = ok(&server, &["stats"]);
    for section in ["Zerocopy", "Buffer pool", "Streams", "kitchen", "music"] {
        assert!(human.contains(section), "{section}: {human}");
    }
    let streams = ok(&server, &["streams"]);
    assert!(
        streams.contains("music") && streams.contains("playing"),
        "{streams}"
    );

    // --watch --json: JSON Lines, each tagged, numbers moving.
    let mut watch = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args([
            "--server",
            &server,
            "--json",
            "stats",
            "--watch",
            "--interval",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut updates = Vec::new();
    for _ in 0..3 {
        let line = lines.next().expect("a line").unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["type"], "stats");
        updates.push(sent(&value));
    }
    assert!(updates[2] > updates[0], "{updates:?}");
    // Ctrl-C during --watch exits 130.
    // SAFETY: kill(2) on our own child.
    unsafe { libc::kill(watch.id() as i32, libc::SIGINT) };
    let status = watch.wait().unwrap();
    assert_eq!(status.code(), Some(130));

    // disconnect: the session goes away.
    let gone = ok(&server, &["disconnect", &id]);
    assert!(
        gone.contains(&format!("disconnected session {id}")),
        "{gone}"
    );
    eventually(
        Duration::from_secs(10),
        "session gone",
        || relay.log(),
        || {
            let output = snapctl(&server, &["session", &id]);
            (output.status.code() == Some(1)).then_some(())
        },
    );
}

#[test]
fn config_health_and_exit_codes() {
    let (relay, _fifo) = pipe_relay(&[]);
    let server = relay.grpc_url();

    let health = ok(&server, &["health"]);
    assert!(health.contains("server: serving"), "{health}");
    assert_eq!(
        json(&server, &["health"])["snaprelay.v1.Control"],
        "serving"
    );

    let config = ok(&server, &["config", "get"]);
    assert!(
        config.contains("stream.buffer") && config.contains("grpc.port"),
        "{config}"
    );
    let buffer = json(&server, &["config", "get", "stream.buffer"]);
    assert_eq!(buffer["entries"][0]["value"], "1000");
    assert_eq!(buffer["entries"][0]["origin"], "default");
    let changed = json(&server, &["config", "set", "stream.buffer", "650"]);
    assert_eq!(changed["entries"][0]["value"], "650");
    assert_eq!(changed["entries"][0]["origin"], "runtime");
    let port = json(&server, &["config", "get", "grpc.port"]);
    assert_eq!(port["entries"][0]["origin"], "flag");
    ok(&server, &["log-level", "*:debug"]);
    assert_eq!(
        json(&server, &["config", "get", "logging.filter"])["entries"][0]["value"],
        "*:debug"
    );

    // 1: refused by the server, with the reason.
    let output = snapctl(&server, &["session", "424242"]);
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "snapctl: error: not found: no session with id 424242"
    );
    let output = snapctl(&server, &["config", "set", "stream.buffer", "1"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("invalid argument: invalid stream.buffer '1'"));
    let output = snapctl(&server, &["volume", "nobody", "10"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("client 'nobody' not found"));
    assert!(stdout(&output).is_empty());

    // 2: usage errors, caught before connecting.
    for args in [
        &["volume", "c", "101"][..],
        &["volume", "c"],
        &["latency", "c", "x"],
        &["session", "abc"],
        &["no-such-command"],
    ] {
        let output = snapctl(&server, args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
    }

    // 3: unreachable.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let output = snapctl(&closed, &["--timeout", "2", "sessions"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).starts_with("snapctl: error: cannot connect to"));
    let output = snapctl("ftp://x", &["sessions"]);
    assert_eq!(output.status.code(), Some(2));

    // Completions need no server.
    let script = ok(&closed, &["completions", "bash"]);
    assert!(script.contains("snapctl") && script.contains("sessions"));
}

#[test]
fn token_is_required_except_for_health() {
    let (relay, _fifo) = pipe_relay(&["--grpc.token=s3cret"]);
    let server = relay.grpc_url();
    let output = snapctl(&server, &["sessions"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("unauthenticated"),
        "{}",
        stderr(&output)
    );
    let output = snapctl(&server, &["--token", "wrong", "sessions"]);
    assert_eq!(output.status.code(), Some(1));
    ok(&server, &["--token", "s3cret", "sessions"]);
    let with_env = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(["--json", "config", "get", "grpc.token"])
        .env("SNAPCTL_SERVER", &server)
        .env("SNAPCTL_TOKEN", "s3cret")
        .output()
        .unwrap();
    assert!(with_env.status.success(), "{}", stderr(&with_env));
    let value: Value = serde_json::from_slice(&with_env.stdout).unwrap();
    assert_eq!(value["entries"][0]["value"], "(set)");
    ok(&server, &["health"]);
}

#[test]
fn closed_pipe_during_watch_exits_zero() {
    let (relay, _fifo) = pipe_relay(&[]);
    let mut watch = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args([
            "--server",
            &relay.grpc_url(),
            "stats",
            "--watch",
            "--interval",
            "100",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(watch.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    assert!(first.starts_with("uptime"), "{first}");
    drop(stdout); // like `| head -1`
    let status = watch.wait().unwrap();
    assert_eq!(status.code(), Some(0));
}

/// A CA and a leaf certificate for 127.0.0.1/localhost, made with the openssl CLI.
fn make_certs(dir: &std::path::Path) {
    let run = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("the TLS test needs the openssl command");
        assert!(
            output.status.success(),
            "openssl {args:?}: {}",
            stderr(&output)
        );
    };
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "1",
        "-subj",
        "/CN=snaprelay test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
    ]);
}

#[test]
fn tls_with_a_trusted_ca_and_refusal_without_it() {
    let certs = tempfile::tempdir().unwrap();
    make_certs(certs.path());
    let cert = format!("--grpc.tls_cert={}", certs.path().join("tls.crt").display());
    let key = format!("--grpc.tls_key={}", certs.path().join("tls.key").display());
    let (relay, _fifo) = pipe_relay(&[&cert, &key]);
    let server = format!("https://localhost:{}", relay.grpc_addr().port());
    let ca = certs.path().join("ca.crt");
    let health = ok(&server, &["--ca-cert", ca.to_str().unwrap(), "health"]);
    assert!(health.contains("server: serving"), "{health}");
    // Without the CA the certificate is not trusted; plain HTTP/2 to the TLS port fails too.
    let output = snapctl(&server, &["--timeout", "3", "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("certificate"),
        "{}",
        stderr(&output)
    );
    let plain = relay.grpc_url();
    let output = snapctl(&plain, &["--timeout", "3", "health"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
}

//! Process lifecycle (issue 8): what SIGTERM does, in the order Kubernetes relies on, and
//! `--check-config` for CI and init containers.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{eventually, Relay};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// A Hello message written from docs/PROTOCOL.md §1.2 and §1.5 (base header + JSON), not by our
/// encoder.
fn hello(host_id: &str) -> Vec<u8> {
    let json = format!(
        r#"{{"Arch":"x86_64","ClientName":"Snapclient","HostName":"test","ID":"{host_id}","Instance":1,"MAC":"00:11:22:33:44:55","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
    );
    let size = u32::try_from(4 + json.len()).unwrap();
    let mut out = Vec::new();
    out.extend_from_slice(&5u16.to_le_bytes()); // type: Hello
    out.extend_from_slice(&1u16.to_le_bytes()); // id
    out.extend_from_slice(&0u16.to_le_bytes()); // refersTo
    out.extend_from_slice(&[0; 16]); // sent, received
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap().to_le_bytes());
    out.extend_from_slice(json.as_bytes());
    out
}

/// How a client's connection ended.
#[derive(Debug, Clone, PartialEq)]
enum Ending {
    /// Still open.
    Open,
    /// The server closed it with a FIN: `read` returned 0.
    Eof,
    /// Anything else (a reset, a timeout).
    Error(String),
}

/// A scripted stream client that says Hello and then reads until the connection ends.
struct Client {
    received: Arc<AtomicU64>,
    ending: Arc<Mutex<Ending>>,
}

impl Client {
    fn connect(addr: SocketAddr, host_id: &str) -> Self {
        let mut stream = TcpStream::connect(addr).expect("connect to the stream port");
        stream.write_all(&hello(host_id)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        let received = Arc::new(AtomicU64::new(0));
        let ending = Arc::new(Mutex::new(Ending::Open));
        let (count, end) = (received.clone(), ending.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            let result = loop {
                match stream.read(&mut buf) {
                    Ok(0) => break Ending::Eof,
                    Ok(n) => {
                        count.fetch_add(n as u64, Ordering::Relaxed);
                    }
                    Err(err) => break Ending::Error(err.to_string()),
                }
            };
            *end.lock().unwrap() = result;
        });
        Self { received, ending }
    }

    fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    fn ending(&self) -> Ending {
        self.ending.lock().unwrap().clone()
    }
}

fn refused(addr: SocketAddr) -> bool {
    matches!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(500)),
        Err(err) if err.kind() == ErrorKind::ConnectionRefused
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_not_serving_refuses_flushes_closes_and_exits_zero() {
    // The state dir outlives the relay (whose own temp dir goes with it).
    let state_root = tempfile::tempdir().unwrap();
    let state_dir = state_root.path().join("state");
    let relay = Relay::start(&[
        "--source",
        "tone:///?name=t&freq=440",
        "--datadir",
        state_dir.to_str().unwrap(),
    ]);
    let stream_addr = relay.addr;
    let http_addr = relay.http_addr();
    let client = Client::connect(stream_addr, "lifecycle-client");
    eventually(
        Duration::from_secs(10),
        "the client receives audio",
        || relay.log(),
        || (client.received() > 10_000).then_some(()),
    );

    let channel = tonic::transport::Endpoint::from_shared(relay.grpc_url())
        .unwrap()
        .connect()
        .await
        .expect("connect to gRPC");
    let mut health = HealthClient::new(channel);
    let mut watch = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health Watch")
        .into_inner();
    let first = watch.message().await.unwrap().expect("first status");
    assert_eq!(first.status(), ServingStatus::Serving);

    let started = Instant::now();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(relay.pid() as i32, libc::SIGTERM) }, 0);

    // 1. Readiness: the Watch sees NOT_SERVING (a kubelet probe's Check sees it too).
    let next = tokio::time::timeout(Duration::from_secs(5), watch.message())
        .await
        .expect("the health Watch answers during shutdown");
    match next {
        Ok(Some(status)) => assert_eq!(status.status(), ServingStatus::NotServing),
        other => panic!("expected NOT_SERVING before the Watch ends, got {other:?}"),
    }

    // 2. New connections are refused: the stream and HTTP listeners are closed.
    let relay_log = || relay.log();
    eventually(
        Duration::from_secs(5),
        "the stream port refuses connections",
        relay_log,
        || refused(stream_addr).then_some(()),
    );
    eventually(
        Duration::from_secs(5),
        "the HTTP port refuses connections",
        relay_log,
        || refused(http_addr).then_some(()),
    );

    // 3. The connected client is closed cleanly (FIN, not a reset).
    let ending = eventually(
        Duration::from_secs(5),
        "the client's connection ends",
        relay_log,
        || Some(client.ending()).filter(|e| *e != Ending::Open),
    );
    assert_eq!(ending, Ending::Eof);
    drop(watch);

    // 4. The state is flushed last, and the process exits 0 within the shutdown bound.
    let relay = tokio::task::spawn_blocking(move || {
        let log = relay.log();
        let status = relay.terminate();
        (status, log)
    });
    let (status, _) = relay.await.unwrap();
    let elapsed = started.elapsed();
    assert!(status.success(), "exit status {status:?}");
    assert!(
        elapsed < Duration::from_secs(8),
        "shutdown took {elapsed:?}"
    );
    let state_file = state_dir.join("server.json");
    let saved = std::fs::read_to_string(&state_file)
        .unwrap_or_else(|err| panic!("{}: {err}", state_file.display()));
    assert!(saved.contains("lifecycle-client"), "{saved}");
}

#[test]
fn shutdown_logs_each_step_in_order() {
    let relay = Relay::start(&["--source", "tone:///?name=t"]);
    relay.grpc_addr();
    relay.http_addr();
    let log_before = relay.log();
    assert!(!log_before.contains("state flushed"), "{log_before}");
    let pid = relay.pid();
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGTERM) }, 0);
    let flushed = relay.wait_for_log(&["state flushed"], Duration::from_secs(10));
    let log = relay.log();
    let position = |needle: &str| {
        log.find(needle)
            .unwrap_or_else(|| panic!("no '{needle}' in\n{log}"))
    };
    assert!(position("shutting down") < position(&flushed));
    assert!(position(&flushed) < position("stopped"));
    assert!(relay.terminate().success());
}

fn snaprelay(args: &[&str]) -> (Option<i32>, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("run snaprelay");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn check_config_validates_without_starting() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_owned()
    };

    // Valid: both streams are named, nothing is bound (port 1 would need root to bind, a
    // port in use would fail: neither matters because nothing listens).
    let good = write(
        "good.toml",
        "[stream]\nport = 1\nsource = [\"pipe:///tmp/never-created?name=a\", \"tone:///?name=b\"]\n\
         [http]\nport = 1\n[grpc]\nport = 1\n",
    );
    let (code, stdout, stderr) = snaprelay(&["--check-config", "-c", &good]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.trim(), "snaprelay: config OK: 2 stream(s): a, b");
    assert!(!stderr.contains("listening"), "{stderr}");
    assert!(!std::path::Path::new("/tmp/never-created").exists());

    // A snapserver.conf (INI) works too, and its notices go to stderr.
    let ini = write(
        "snapserver.conf",
        "[stream]\nsource = tone:///?name=x\nsandbox_dir = /opt/sandbox\n",
    );
    let (code, stdout, stderr) = snaprelay(&["--check-config", "-c", &ini]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.contains("1 stream(s): x"), "{stdout}");
    assert!(stderr.contains("stream.sandbox_dir"), "{stderr}");

    // A security key snaprelay does not implement is an error, not a notice, and the
    // password is not shown.
    let ini = write(
        "locked.conf",
        "[stream]\nsource = tone:///?name=x\n[ssl]\nkey_password = secret\n",
    );
    let (code, _, stderr) = snaprelay(&["--check-config", "-c", &ini]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("ssl.key_password"), "{stderr}");
    assert!(!stderr.contains("secret"), "{stderr}");

    // Each kind of mistake exits 1 with the reason.
    let cases = [
        (
            "[stream]\nsource = \"nope:///x?name=a\"\n",
            "invalid stream.source 'nope:///x?name=a'",
        ),
        (
            "[stream]\nsource = [\"tone:///?name=a\", \"tone:///?name=a\"]\n",
            "two sources are named 'a'",
        ),
        ("[stream]\nbuffer = 5\n", "for stream.buffer"),
        (
            "[http]\nbind_to_address = \"everywhere\"\n",
            "http.bind_to_address",
        ),
        ("[stream]\nbufer = 500\n", "stream.buffer"),
        (
            "[grpc]\ntoken_file = \"/nonexistent/token\"\n",
            "grpc.token_file /nonexistent/token is not readable",
        ),
        (
            "[grpc]\ntoken_file = \"/dev/null\"\n",
            "grpc.token_file /dev/null is empty",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = write(&format!("bad{i}.toml"), text);
        let (code, stdout, stderr) = snaprelay(&["--check-config", "-c", &path]);
        assert_eq!(code, Some(1), "{text}: {stdout}{stderr}");
        assert!(stderr.starts_with("snaprelay: error: "), "{stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
        assert!(stdout.is_empty(), "{stdout}");
    }

    // A missing file is an error too.
    let (code, _, stderr) = snaprelay(&["--check-config", "-c", "/nonexistent/relay.toml"]);
    assert_eq!(code, Some(1));
    assert!(stderr.contains("/nonexistent/relay.toml"), "{stderr}");
}

//! The real Snapweb (0.9.1, built unchanged, `../shared/testdata/snapweb`) served as
//! `http.doc_root` and opened in headless Chromium (Debian's `chromium`), as a user would:
//! it lists the streams and the named clients (the same check passes against Debian's
//! snapserver 0.26), a volume change made on the page reaches `snapctl clients`, its
//! player joins over WebSocket `/stream` as a client like any other and receives audio, and
//! on an edge relay it shows the upstream's now playing with the cover the edge serves.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{jsonrpc_call, snapctl, Relay, Snapclient};
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// Snapweb's built files: test data beside the project (`SNAPWEB_DIR` overrides).
fn snapweb_dir() -> PathBuf {
    let dir = std::env::var_os("SNAPWEB_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/testdata/snapweb"),
        PathBuf::from,
    );
    assert!(
        dir.join("index.html").is_file(),
        "Snapweb's build is missing at {} (set SNAPWEB_DIR)",
        dir.display()
    );
    dir
}

fn chromium() -> Command {
    let binary = Path::new("/usr/bin/chromium");
    assert!(
        binary.exists(),
        "Debian's chromium is missing; run scripts/test.sh or `apt-get install chromium`"
    );
    let mut command = Command::new(binary);
    // Flags that keep a headless Chromium off the network it cannot reach here, as root.
    command.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--autoplay-policy=no-user-gesture-required",
    ]);
    command
}

/// The page's DOM after its scripts ran, once it shows every one of `needles`.
fn rendered_page(url: &str, needles: &[&str]) -> String {
    let profile = tempfile::tempdir().unwrap();
    let mut last = String::new();
    for _ in 0..5 {
        let output = chromium()
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(["--virtual-time-budget=8000", "--dump-dom", url])
            .stderr(Stdio::null())
            .output()
            .expect("run chromium");
        last = String::from_utf8_lossy(&output.stdout).into_owned();
        if needles.iter().all(|n| last.contains(n)) {
            return last;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("the page never showed {needles:?}; last DOM:\n{last}");
}

/// Names the (only) client `name` through JSON-RPC, once the server knows it.
fn name_client(jsonrpc: std::net::SocketAddr, host_id: &str, name: &str) {
    let id = common::eventually(
        Duration::from_secs(20),
        "the client known",
        String::new,
        || {
            let status = jsonrpc_call(jsonrpc, "Server.GetStatus", json!({}));
            status["result"]["server"]["groups"]
                .as_array()?
                .iter()
                .flat_map(|g| g["clients"].as_array().cloned().unwrap_or_default())
                .find(|c| c["host"]["mac"] == host_id || c["id"] == host_id)
                .and_then(|c| c["id"].as_str().map(str::to_owned))
        },
    );
    let reply = jsonrpc_call(jsonrpc, "Client.SetName", json!({"id": id, "name": name}));
    assert_eq!(reply["result"]["name"], name, "{reply}");
}

#[test]
fn snapweb_lists_the_streams_and_named_clients() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("radio");
    let source = format!("pipe://{}?name=Radio&codec=pcm", fifo.display());
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let doc_root = snapweb_dir();
    let relay = Relay::start_in(
        dir,
        &[
            "--source",
            &source,
            "--source",
            "tone:///?name=Chime&freq=880",
            &format!("--http.doc_root={}", doc_root.display()),
        ],
    );
    let _client = Snapclient::start(relay.port(), "kitchen-speaker", &client_dir);
    name_client(relay.jsonrpc_addr(), "kitchen-speaker", "Kitchen");
    let url = format!("http://127.0.0.1:{}/", relay.http_addr().port());
    let page = rendered_page(&url, &["Snapweb", "Radio", "Kitchen"]);
    assert!(page.contains("aria-label=\"Volume\""), "{page}");
    // The stream list holds both streams (the selector's options render when opened; the
    // selected one shows, and both are in the page's data).
    assert!(
        page.contains(">Radio<") || page.contains("value=\"Radio\""),
        "{page}"
    );
}

/// Snapweb served by an edge relay: the group on the edge's stream shows the upstream
/// stream's now playing, and its cover from the edge's own URL (the edge fetched it).
#[test]
fn snapweb_on_an_edge_shows_the_upstreams_now_playing_and_cover() {
    let core = common::stream_plugin::core_with_cover("Upstream Song", "Core Band");
    let upstream = format!(
        "snapcast://127.0.0.1:{}?name=Edge&control_port={}",
        core.port(),
        core.jsonrpc_addr().port()
    );
    let edge_dir = tempfile::tempdir().unwrap();
    let client_dir = edge_dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let edge = Relay::start_in(
        edge_dir,
        &[
            "--source",
            &upstream,
            "--http.host=127.0.0.1",
            &format!("--http.doc_root={}", snapweb_dir().display()),
        ],
    );
    let _client = Snapclient::start(edge.port(), "living-room", &client_dir);
    name_client(edge.jsonrpc_addr(), "living-room", "Living room");
    let edge_http = edge.http_addr().port();
    let our_cover = format!("http://127.0.0.1:{edge_http}/__image_cache?name=");
    let url = format!("http://127.0.0.1:{edge_http}/");
    rendered_page(
        &url,
        &["Living room", "Upstream Song", "Core Band", &our_cover],
    );
}

#[test]
fn snapweb_lists_the_same_against_snapserver_026() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("radio");
    let server = common::Snapserver::start(
        dir.path(),
        &format!("pipe://{}?name=Radio&codec=pcm", fifo.display()),
        &format!("doc_root = {}", snapweb_dir().display()),
    );
    let (port, control, http) = (server.port, server.control, server.http);
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let _client = Snapclient::start(port, "kitchen-speaker", &client_dir);
    name_client(
        ([127, 0, 0, 1], control).into(),
        "kitchen-speaker",
        "Kitchen",
    );
    let page = rendered_page(
        &format!("http://127.0.0.1:{http}/"),
        &["Snapweb", "Radio", "Kitchen"],
    );
    assert!(page.contains("aria-label=\"Volume\""), "{page}");
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A page in a headless Chromium, driven over the DevTools protocol.
struct Browser {
    _process: KillOnDrop,
    _profile: tempfile::TempDir,
    socket: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next_id: u64,
}

impl Browser {
    async fn open(url: &str) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let port = common::free_port();
        let process = KillOnDrop(
            chromium()
                .arg(format!("--user-data-dir={}", profile.path().display()))
                .arg(format!("--remote-debugging-port={port}"))
                .arg(url)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start chromium"),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        let page_socket = loop {
            assert!(
                Instant::now() < deadline,
                "chromium's DevTools never answered"
            );
            if let Ok(Some(pages)) = tokio::task::spawn_blocking(move || devtools_pages(port)).await
            {
                if let Some(ws) = pages.as_array().and_then(|pages| {
                    pages
                        .iter()
                        .find(|p| p["type"] == "page")
                        .and_then(|p| p["webSocketDebuggerUrl"].as_str().map(str::to_owned))
                }) {
                    break ws;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        };
        let (socket, _) = tokio_tungstenite::connect_async(page_socket)
            .await
            .expect("connect to the page");
        Self {
            _process: process,
            _profile: profile,
            socket,
            next_id: 1,
        }
    }

    /// Calls a DevTools method; returns its result.
    async fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"id": id, "method": method, "params": params});
        self.socket
            .send(Message::Text(request.to_string().into()))
            .await
            .unwrap();
        loop {
            let message = tokio::time::timeout(Duration::from_secs(20), self.socket.next())
                .await
                .expect("DevTools answer")
                .expect("DevTools connection open")
                .unwrap();
            if let Message::Text(text) = message {
                let reply: Value = serde_json::from_str(&text).unwrap();
                if reply["id"] == id {
                    assert!(reply.get("error").is_none(), "{method}: {reply}");
                    return reply["result"].clone();
                }
            }
        }
    }

    /// The value of a JavaScript expression in the page.
    async fn eval(&mut self, expression: &str) -> Value {
        let result = self
            .call(
                "Runtime.evaluate",
                json!({"expression": expression, "returnByValue": true, "awaitPromise": true}),
            )
            .await;
        result["result"]["value"].clone()
    }

    /// Waits until a JavaScript expression is true in the page.
    async fn until(&mut self, expression: &str, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.eval(expression).await != json!(true) {
            assert!(
                Instant::now() < deadline,
                "{what}: never true: {expression}\npage: {}",
                self.eval("document.body.innerText").await
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A key press where the focus is.
    async fn press(&mut self, key: &str, code: u32) {
        for kind in ["rawKeyDown", "keyUp"] {
            self.call(
                "Input.dispatchKeyEvent",
                json!({"type": kind, "key": key, "code": key, "windowsVirtualKeyCode": code}),
            )
            .await;
        }
    }
}

/// DevTools' `/json/list` (its HTTP server keeps connections open: read by Content-Length).
fn devtools_pages(port: u16) -> Option<Value> {
    use std::io::{BufRead, BufReader, Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut reader = BufReader::new(stream);
    let mut length = 0;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().ok()?;
            }
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    serde_json::from_slice(&body).ok()
}

/// The volume of the client `name` as `snapctl clients --json` reports it.
fn snapctl_volume(relay: &Relay, name: &str) -> Option<u64> {
    let clients: Value = serde_json::from_str(&snapctl(relay, &["--json", "clients"])).ok()?;
    clients
        .as_array()?
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["volume_percent"].as_u64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapweb_changes_a_volume_and_plays_over_the_stream_websocket() {
    let dir = tempfile::tempdir().unwrap();
    let client_dir = dir.path().join("client");
    std::fs::create_dir_all(&client_dir).unwrap();
    let doc_root = snapweb_dir();
    let relay = Relay::start_in(
        dir,
        &[
            "--source",
            "tone:///?name=Chime&freq=880&codec=opus",
            &format!("--http.doc_root={}", doc_root.display()),
        ],
    );
    let _client = Snapclient::start(relay.port(), "kitchen-speaker", &client_dir);
    let jsonrpc = relay.jsonrpc_addr();
    tokio::task::spawn_blocking(move || name_client(jsonrpc, "kitchen-speaker", "Kitchen"))
        .await
        .unwrap();
    let url = format!("http://127.0.0.1:{}/", relay.http_addr().port());
    let mut page = Browser::open(&url).await;
    page.until(
        "document.body.innerText.includes('Kitchen')",
        "the client listed",
    )
    .await;

    // The volume: keyboard on the client's slider, as a user without a mouse would.
    page.eval("document.querySelector('input[aria-label=\"Volume\"]').focus(); true")
        .await;
    page.press("PageDown", 34).await;
    page.press("PageDown", 34).await;
    let volume = common::eventually(
        Duration::from_secs(10),
        "the page's volume change in snapctl clients",
        || relay.log(),
        || snapctl_volume(&relay, "Kitchen").filter(|v| *v < 100),
    );
    assert_eq!(volume, 80, "two PageDowns are 20 points");

    // The player: Snapweb's play button joins over WebSocket /stream.
    let sessions_before = relay_sessions(&relay).len();
    page.eval("document.querySelectorAll('header button')[1].click(); true")
        .await;
    let browser_session = common::eventually(
        Duration::from_secs(20),
        "the browser's session receiving audio",
        || format!("{:#?}", relay_sessions(&relay)),
        || {
            let sessions = relay_sessions(&relay);
            (sessions.len() > sessions_before)
                .then(|| {
                    sessions.into_iter().find(|s| {
                        s["client_name"] == "snapweb" && s["chunks_sent"].as_u64().unwrap_or(0) > 50
                    })
                })
                .flatten()
        },
    );
    // It is a client like any other: in the groups, with its own volume.
    let status = jsonrpc_call(relay.jsonrpc_addr(), "Server.GetStatus", json!({}));
    let clients: Vec<Value> = status["result"]["server"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["clients"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        clients.iter().any(|c| c["connected"] == true
            && c["config"]["instance"].is_number()
            && c["snapclient"]["name"] == "snapweb"),
        "{browser_session}\n{status}"
    );
}

/// `snapctl sessions --json`.
fn relay_sessions(relay: &Relay) -> Vec<Value> {
    let listing: Value =
        serde_json::from_str(&snapctl(relay, &["--json", "sessions"])).unwrap_or(Value::Null);
    listing["sessions"].as_array().cloned().unwrap_or_default()
}

#[test]
fn doc_root_files_are_served_with_types_and_nothing_outside_it() {
    let dir = tempfile::tempdir().unwrap();
    let doc_root = snapweb_dir();
    let relay = Relay::start_in(
        dir,
        &[
            "--source",
            "tone:///?name=Chime",
            &format!("--http.doc_root={}", doc_root.display()),
        ],
    );
    let http = relay.http_addr();
    let index = common::http_get(http, "/");
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    assert_eq!(
        index.body,
        std::fs::read(doc_root.join("index.html")).unwrap()
    );
    let manifest = common::http_get(http, "/manifest.webmanifest");
    assert_eq!(manifest.status, 200);
    assert_eq!(
        manifest.header("content-type"),
        Some("application/manifest+json")
    );
    assert_eq!(
        common::http_get(http, "/logo.svg").header("content-type"),
        Some("image/svg+xml")
    );
    for outside in [
        "/../README.snaprelay.md",
        "/assets/../../etc/passwd",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/no-such-file.js",
    ] {
        assert_eq!(common::http_get(http, outside).status, 404, "{outside}");
    }
    // The relay's own routes still win over files.
    assert_eq!(common::http_get(http, "/metrics").status, 200);
}

#[test]
fn without_snapweb_the_root_is_a_status_page_of_our_own() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_in(dir, &["--source", "tone:///?name=Chime"]);
    let page = common::http_get(relay.http_addr(), "/");
    assert_eq!(page.status, 200);
    let text = String::from_utf8_lossy(&page.body);
    if Path::new("/usr/share/snapserver/snapweb/index.html").exists() {
        // snapserver's packaged Snapweb is the default doc root where it is installed.
        assert!(text.contains("Snapweb"), "{text}");
    } else {
        assert!(text.contains("<h1>snaprelay"), "{text}");
        assert!(text.contains("<td>Chime</td><td>playing</td>"), "{text}");
        assert!(text.contains("href=\"/metrics\""), "{text}");
        assert!(text.contains("http.doc_root"), "{text}");
    }
    assert_eq!(
        common::http_get(relay.http_addr(), "/favicon.ico").status,
        404
    );
}

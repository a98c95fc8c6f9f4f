//! Issue 7: the Snapcast JSON-RPC control API over TCP, HTTP POST and websocket, against the
//! built relay with a real snapclient, plus the cross-talk with the gRPC front end (snapctl).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, free_port, snapctl, Relay, Snapclient};
use serde_json::{json, Value};

/// A raw TCP control connection: one request per line, as python-snapcast sends them.
struct Control {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    next_id: u64,
    /// Notifications read while waiting for responses.
    notifications: Vec<Value>,
}

impl Control {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect to JSON-RPC");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Self {
            reader: BufReader::new(stream.try_clone().unwrap()),
            writer: stream,
            next_id: 1,
            notifications: Vec::new(),
        }
    }

    fn send_line(&mut self, line: &str) {
        self.writer
            .write_all(format!("{line}\r\n").as_bytes())
            .unwrap();
    }

    /// Reads one message; every line the server sends must end in `\r\n`.
    fn read_message(&mut self) -> Option<Value> {
        let mut line = String::new();
        match self.reader.read_line(&mut line) {
            Ok(0) | Err(_) => None,
            Ok(_) => {
                assert!(line.ends_with("\r\n"), "line without \\r\\n: {line:?}");
                Some(serde_json::from_str(line.trim_end()).expect("JSON from the server"))
            }
        }
    }

    /// Sends raw text and returns the next response (notifications are set aside).
    fn raw(&mut self, line: &str) -> Value {
        self.send_line(line);
        loop {
            let message = self.read_message().expect("a response");
            if message.get("method").is_some() && message.get("id").is_none() {
                self.notifications.push(message);
                continue;
            }
            return message;
        }
    }

    fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let response = self.raw(
            &json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string(),
        );
        assert_eq!(response["id"], id, "{response}");
        response
    }

    fn ok(&mut self, method: &str, params: Value) -> Value {
        let response = self.call(method, params);
        assert!(
            response.get("error").is_none(),
            "{method} failed: {response}"
        );
        response["result"].clone()
    }

    /// Waits for a notification named `method` matching `pred`.
    fn notification(&mut self, method: &str, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .notifications
            .iter()
            .position(|n| n["method"] == method && pred(&n["params"]))
        {
            return self.notifications.remove(i);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(
                Instant::now() < deadline,
                "no {method}; seen {:?}",
                self.notifications
            );
            let message = self.read_message().expect("a notification");
            if message["method"] == method && pred(&message["params"]) {
                return message;
            }
            self.notifications.push(message);
        }
    }

    /// Everything that arrives within `wait`, without a request.
    fn drain(&mut self, wait: Duration) -> Vec<Value> {
        self.writer.set_read_timeout(Some(wait)).unwrap();
        while let Some(message) = self.read_message() {
            self.notifications.push(message);
        }
        self.writer
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        std::mem::take(&mut self.notifications)
    }
}

fn two_streams() -> Relay {
    Relay::start(&[
        "--source",
        "tone:///?name=default&freq=440",
        "--source",
        "tone:///?name=radio&freq=880",
    ])
}

/// Waits until the relay knows `client` as connected and returns its group id.
fn group_of(control: &mut Control, client: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let status = control.ok("Server.GetStatus", json!({}));
        for group in status["server"]["groups"].as_array().unwrap() {
            if group["clients"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["id"] == client && c["connected"] == true)
            {
                return group["id"].as_str().unwrap().to_owned();
            }
        }
        assert!(
            Instant::now() < deadline,
            "{client} never connected: {status}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn issue_7_tcp_methods_notifications_and_grpc_cross_talk() {
    let relay = two_streams();
    let mut a = Control::connect(relay.jsonrpc_addr());
    let mut b = Control::connect(relay.jsonrpc_addr());
    let _client = Snapclient::start(relay.port(), "kitchen", relay.dir.path());
    let group = group_of(&mut a, "kitchen");
    // B learns of the new client through Server.OnUpdate before anything names it.
    b.notification("Server.OnUpdate", |p| {
        p["server"]["groups"].to_string().contains("kitchen")
    });
    // A got the same announcement; start its record afresh.
    a.drain(Duration::from_millis(200));

    let status = a.ok("Server.GetStatus", json!({}));
    let server = &status["server"];
    assert_eq!(server["server"]["snapserver"]["version"], "0.34.0");
    assert!(server["server"]["snapserver"]["snaprelayVersion"].is_string());
    let streams = server["streams"].as_array().unwrap();
    assert_eq!(streams.len(), 2);
    for stream in streams {
        assert_eq!(stream["uri"]["query"]["name"], stream["id"]);
        assert!(["idle", "playing"].contains(&stream["status"].as_str().unwrap()));
        assert_eq!(stream["properties"]["canControl"], false);
    }
    let client = &server["groups"][0]["clients"][0];
    for key in ["host", "snapclient", "config", "lastSeen", "connected"] {
        assert!(client.get(key).is_some(), "client lacks {key}: {client}");
    }
    assert_eq!(
        a.ok("Server.GetRPCVersion", json!({})),
        json!({"major": 23, "minor": 0, "patch": 0})
    );

    // Changes: the requester gets the result, the other connection the notification.
    let volume = a.ok(
        "Client.SetVolume",
        json!({"id": "kitchen", "volume": {"percent": 42}}),
    );
    assert_eq!(volume, json!({"volume": {"muted": false, "percent": 42}}));
    let n = b.notification("Client.OnVolumeChanged", |p| p["id"] == "kitchen");
    assert_eq!(n["params"]["volume"]["percent"], 42);
    assert_eq!(
        a.ok("Client.SetLatency", json!({"id": "kitchen", "latency": 30})),
        json!({"latency": 30})
    );
    b.notification("Client.OnLatencyChanged", |p| p["latency"] == 30);
    assert_eq!(
        a.ok(
            "Group.SetStream",
            json!({"id": group, "stream_id": "radio"})
        ),
        json!({"stream_id": "radio"})
    );
    b.notification("Group.OnStreamChanged", |p| p["stream_id"] == "radio");
    assert_eq!(
        a.ok("Group.SetMute", json!({"id": group, "mute": true})),
        json!({"mute": true})
    );
    b.notification("Group.OnMute", |p| p["mute"] == true);
    assert_eq!(
        a.ok("Group.SetName", json!({"id": group, "name": "Downstairs"})),
        json!({"name": "Downstairs"})
    );
    b.notification("Group.OnNameChanged", |p| p["name"] == "Downstairs");
    let set = a.ok(
        "Group.SetClients",
        json!({"id": group, "clients": ["kitchen"]}),
    );
    assert!(set["server"]["groups"].is_array(), "{set}");
    let got = a.ok("Client.GetStatus", json!({"id": "kitchen"}));
    assert_eq!(got["client"]["config"]["volume"]["percent"], 42);
    let got = a.ok("Group.GetStatus", json!({"id": group}));
    assert_eq!(got["group"]["stream_id"], "radio");
    // The requester saw none of the notifications for its own changes.
    let own: Vec<Value> = a
        .drain(Duration::from_millis(300))
        .into_iter()
        .filter(|n| n["method"] != "Stream.OnUpdate")
        .collect();
    assert!(own.is_empty(), "requester got notifications: {own:?}");

    // JSON-RPC changes show in gRPC, and gRPC changes are notified over JSON-RPC.
    let clients: Value = serde_json::from_str(&snapctl(&relay, &["--json", "clients"])).unwrap();
    let kitchen = clients
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "kitchen")
        .expect("kitchen over gRPC")
        .clone();
    assert_eq!(kitchen["volume_percent"], 42, "{kitchen}");
    snapctl(&relay, &["name", "kitchen", "Kitchen"]);
    for control in [&mut a, &mut b] {
        control.notification("Client.OnNameChanged", |p| {
            p["id"] == "kitchen" && p["name"] == "Kitchen"
        });
    }

    // Errors (docs/JSONRPC.md §2.3).
    let err = a.raw("{not json");
    assert_eq!(
        (err["error"]["code"].clone(), err["id"].clone()),
        (json!(-32700), Value::Null)
    );
    let err = a.raw(r#"{"id":5,"method":"Server.GetStatus"}"#);
    assert_eq!(
        (err["error"]["code"].clone(), err["id"].clone()),
        (json!(-32600), json!(5))
    );
    let err = a.call("Client.Explode", json!({}));
    assert_eq!(err["error"]["code"], -32601);
    let err = a.call("Client.SetVolume", json!({"volume": {"percent": 3}}));
    assert_eq!(err["error"]["code"], -32602);
    assert_eq!(err["error"]["data"], "Parameter 'id' is missing");
    let err = a.call("Client.SetVolume", json!({"id": "kitchen"}));
    assert_eq!(err["error"]["data"], "Parameter 'volume' is missing");
    let err = a.call("Client.GetStatus", json!({"id": "nobody"}));
    assert_eq!(
        err["error"],
        json!({"code": -32603, "message": "Internal error", "data": "Client not found"})
    );
    let err = a.call("Group.SetStream", json!({"id": group, "stream_id": "nope"}));
    assert_eq!(err["error"]["data"], "Stream not found");
    // No stream plugin: every flag is false, and its code says which (as snapserver).
    let err = a.call("Stream.Control", json!({"id": "radio", "command": "next"}));
    assert_eq!(
        err["error"],
        json!({"code": 2, "message": "Stream property canGoNext is false"})
    );
    // Batches: one array of responses; a notification inside gets none; empty lines skipped.
    a.send_line("");
    let batch = a.raw(
        r#"[{"jsonrpc":"2.0","id":"x","method":"Server.GetRPCVersion"},{"jsonrpc":"2.0","method":"Server.GetStatus"},{"jsonrpc":"2.0","id":"y","method":"Nope"}]"#,
    );
    let batch = batch.as_array().expect("a batch reply");
    assert_eq!(batch.len(), 2);
    assert_eq!(batch[0]["result"]["major"], 23);
    assert_eq!(batch[1]["error"]["code"], -32601);

    // Streams added the way Music Assistant does: a tcp server on a port it picks.
    let port = free_port();
    let uri = format!("tcp://127.0.0.1:{port}?name=MA%20-%20player&sampleformat=48000:16:2");
    assert_eq!(
        a.ok("Stream.AddStream", json!({"streamUri": uri})),
        json!({"id": "MA - player"})
    );
    let status = a.ok("Server.GetStatus", json!({}));
    let added = status["server"]["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "MA - player")
        .expect("the added stream is listed")
        .clone();
    assert_eq!(added["uri"]["host"], format!("127.0.0.1:{port}"));
    let taken = a.call(
        "Stream.AddStream",
        json!({"streamUri": format!("tcp://127.0.0.1:{port}?name=other")}),
    );
    assert_eq!(taken["error"]["code"], -32603, "{taken}");
    let refused = a.call(
        "Stream.AddStream",
        json!({"streamUri": "process:///bin/sh?name=evil&params=-c%20id"}),
    );
    assert_eq!(refused["error"]["code"], -32602, "{refused}");
    // Secrets never show.
    a.ok(
        "Stream.AddStream",
        json!({"streamUri": "tone:///?name=secret&freq=300&password=hunter2"}),
    );
    let status = a.ok("Server.GetStatus", json!({})).to_string();
    assert!(!status.contains("hunter2") && status.contains("xxx"));
    // Moving the group onto the added stream, then removing it, moves the group back.
    a.ok(
        "Group.SetStream",
        json!({"id": group, "stream_id": "MA - player"}),
    );
    assert_eq!(
        a.ok("Stream.RemoveStream", json!({"id": "MA - player"})),
        json!({"id": "MA - player"})
    );
    let got = a.ok("Group.GetStatus", json!({"id": group}));
    assert_eq!(got["group"]["stream_id"], "default");
    b.notification("Server.OnUpdate", |p| {
        !p["server"]["streams"].to_string().contains("MA - player")
    });
    // The port is free again.
    eventually(
        Duration::from_secs(5),
        "the removed stream's port to be released",
        || relay.log(),
        || std::net::TcpListener::bind(("127.0.0.1", port)).ok(),
    );
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next text message of a websocket, as JSON.
async fn next_text(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a websocket message")
            .expect("open")
            .expect("no error");
        if let Message::Text(text) = message {
            assert!(!text.ends_with('\n'), "no trailing newline on websocket");
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

/// A whole HTTP/1.1 exchange on a fresh connection: (status line, headers, body).
fn http_post(addr: SocketAddr, path: &str, body: &str) -> (String, String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_lowercase(), body.to_owned())
}

#[test]
fn issue_7_http_post_and_websocket() {
    let relay = two_streams();
    let http = relay.http_addr();
    let _client = Snapclient::start(relay.port(), "attic", relay.dir.path());
    let mut tcp = Control::connect(relay.jsonrpc_addr());
    let group = group_of(&mut tcp, "attic");

    let (status, headers, body) = http_post(
        http,
        "/jsonrpc",
        r#"{"jsonrpc":"2.0","id":1,"method":"Server.GetStatus"}"#,
    );
    assert!(status.contains("200"), "{status}");
    assert!(
        headers.contains("content-type: application/json"),
        "{headers}"
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        reply["result"]["server"]["server"]["snapserver"]["version"],
        "0.34.0"
    );
    // A notification gets an empty 200.
    let (status, _, body) = http_post(
        http,
        "/jsonrpc",
        r#"{"jsonrpc":"2.0","method":"Server.GetStatus"}"#,
    );
    assert!(
        status.contains("200") && body.is_empty(),
        "{status} {body:?}"
    );
    let (_, _, body) = http_post(http, "/jsonrpc", "[1,");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        -32700
    );
    let (_, _, body) = http_post(
        http,
        "/jsonrpc",
        r#"{"jsonrpc":"2.0","id":2,"method":"Client.SetName","params":{"id":"attic"}}"#,
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["error"]["data"], "Parameter 'name' is missing");
    let (status, _, _) = http_post(http, "/elsewhere", "{}");
    assert!(status.contains("404"), "{status}");
    // An HTTP change is notified to the TCP connection.
    let (_, _, body) = http_post(
        http,
        "/jsonrpc",
        r#"{"jsonrpc":"2.0","id":3,"method":"Client.SetVolume","params":{"id":"attic","volume":{"muted":true}}}"#,
    );
    let reply: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(reply["result"]["volume"]["muted"], true, "{reply}");
    tcp.notification("Client.OnVolumeChanged", |p| p["volume"]["muted"] == true);

    // Websocket: the same methods, one message per request, notifications pushed.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/jsonrpc"))
            .await
            .expect("websocket /jsonrpc");
        ws.send(Message::text(
            json!({"jsonrpc":"2.0","id":1,"method":"Client.SetName","params":{"id":"attic","name":"Attic"}}).to_string(),
        ))
        .await
        .unwrap();
        assert_eq!(next_text(&mut ws).await["result"], json!({"name": "Attic"}));
        ws.send(Message::text(r#"{"jsonrpc":"2.0","id":2,"method":"Group.Nope"}"#))
            .await
            .unwrap();
        assert_eq!(next_text(&mut ws).await["error"]["code"], -32601);
        ws.send(Message::text("nonsense")).await.unwrap();
        assert_eq!(next_text(&mut ws).await["error"]["code"], -32700);
        // A change from the TCP connection reaches the websocket.
        tcp.ok("Group.SetMute", json!({"id": group, "mute": true}));
        let n = next_text(&mut ws).await;
        assert_eq!(n["method"], "Group.OnMute", "{n}");
        assert_eq!(n["params"], json!({"id": group, "mute": true}));
    });
    tcp.notification("Client.OnNameChanged", |p| p["name"] == "Attic");
}

#[test]
fn issue_7_idle_control_clients_are_cheap_and_malformed_input_is_harmless() {
    let relay = two_streams();
    let addr = relay.jsonrpc_addr();
    let idle: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let mut control = Control::connect(addr);
    // Garbage, binary and an over-long line: errors, never a dead server.
    let mut rude = TcpStream::connect(addr).unwrap();
    rude.write_all(b"\xff\xfe\r\n").unwrap();
    let mut reader = BufReader::new(rude.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.contains("-32700"), "{line}");
    let long = vec![b'['; (1 << 20) + 10];
    let _ = rude.write_all(&long);
    // The answer, or the connection closing; a notification (a stream going from idle to
    // playing just after start-up, say) may come first.
    loop {
        line.clear();
        let _ = reader.read_line(&mut line);
        if !line.contains("\"method\"") {
            break;
        }
    }
    assert!(line.is_empty() || line.contains("-32700"), "{line}");
    assert_eq!(control.ok("Server.GetRPCVersion", json!({}))["major"], 23);
    drop(idle);
    assert!(control.ok("Server.GetStatus", json!({}))["server"].is_object());
}

/// The python `snapcast` library (Home Assistant's) against the relay: installed by
/// scripts/test.sh; this test fails (never skips) without it.
#[test]
fn issue_7_python_snapcast_library() {
    let relay = two_streams();
    let _client = Snapclient::start(relay.port(), "bedroom", relay.dir.path());
    let mut control = Control::connect(relay.jsonrpc_addr());
    group_of(&mut control, "bedroom");
    let addr = relay.jsonrpc_addr();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/snapcast_ha.py");
    let output = Command::new("python3")
        .arg(script)
        .args([
            addr.ip().to_string(),
            addr.port().to_string(),
            "bedroom".to_owned(),
            env!("CARGO_BIN_EXE_snapctl").to_owned(),
            relay.grpc_url(),
            free_port().to_string(),
        ])
        .output()
        .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("OK"),
        "python snapcast failed:\n{stdout}\n{}\nrelay log:\n{}",
        String::from_utf8_lossy(&output.stderr),
        relay.log()
    );
    // What the library did is what the state holds.
    let client = control.ok("Client.GetStatus", json!({"id": "bedroom"}));
    assert_eq!(client["client"]["config"]["name"], "Loft");
    assert_eq!(client["client"]["config"]["latency"], 15);
}

//! Minimal peers for tests that need one without its full client: a Snapcast client that
//! only says Hello, one JSON-RPC call, and an HTTP/1.1 GET.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::{json, Value};
use snaprelay::protocol::{Header, HEADER_SIZE};

use super::Relay;

/// A Snapcast client at the protocol level: sends Hello and stays connected, so the relay
/// knows the client `host_id` (client ids replace `_` with `-`).
pub fn hello_client(relay: &Relay, host_id: &str) -> TcpStream {
    let mut stream = TcpStream::connect(relay.addr).expect("connect to the stream port");
    let json = format!(
        r#"{{"Arch":"x86_64","ClientName":"Snapclient","HostName":"test","ID":"{host_id}","Instance":1,"MAC":"00:11:22:33:44:55","OS":"Linux","SnapStreamProtocolVersion":2,"Version":"0.26.0"}}"#
    );
    let mut message = Vec::new();
    message.extend_from_slice(&5u16.to_le_bytes()); // Hello
    message.extend_from_slice(&1u16.to_le_bytes());
    message.extend_from_slice(&[0; 18]); // refersTo, sent, received
    message.extend_from_slice(&(4 + json.len() as u32).to_le_bytes());
    message.extend_from_slice(&(json.len() as u32).to_le_bytes());
    message.extend_from_slice(json.as_bytes());
    stream.write_all(&message).unwrap();
    // The ServerSettings reply means the client is recorded.
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = [0u8; HEADER_SIZE];
    stream.read_exact(&mut head).expect("ServerSettings");
    let header = Header::decode(&head).expect("a header");
    assert_eq!(header.type_id, 3, "ServerSettings first");
    stream
}

/// An HTTP response: status, headers (names in lower case) and the body's bytes.
#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`.
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP listener");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).expect("HTTP response");
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&response[..split]).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: response[split + 4..].to_vec(),
    }
}

/// One JSON-RPC call over TCP; returns the response (notifications skipped).
pub fn jsonrpc_call(addr: SocketAddr, method: &str, params: Value) -> Value {
    let stream = TcpStream::connect(addr).expect("connect to JSON-RPC");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = json!({"jsonrpc": "2.0", "id": 7, "method": method, "params": params});
    writer
        .write_all(format!("{request}\r\n").as_bytes())
        .unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "no response");
        let message: Value = serde_json::from_str(line.trim_end()).unwrap();
        if message.get("id") == Some(&json!(7)) {
            return message;
        }
    }
}

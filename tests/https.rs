//! HTTPS on the HTTP listener's TLS port (issue 18), with a certificate made at test time
//! (rcgen): JSON-RPC over HTTPS POST and over `wss://`, the stream protocol over `wss://
//! /stream`, plain HTTP refused on the TLS port, and unusable certificates or keys stopping
//! the start with the file named.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::Relay;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;
use tokio_tungstenite::tungstenite::Message;

/// A self-signed certificate for localhost and 127.0.0.1, written as PEM files in `dir`.
fn certificate(dir: &Path) -> (CertificateDer<'static>, String, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let cert = dir.join("relay.crt");
    let key = dir.join("relay.key");
    std::fs::write(&cert, made.cert.pem()).unwrap();
    std::fs::write(&key, made.signing_key.serialize_pem()).unwrap();
    (
        made.cert.der().clone(),
        cert.display().to_string(),
        key.display().to_string(),
    )
}

fn start_https_relay() -> (Relay, CertificateDer<'static>, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = certificate(dir.path());
    let relay = Relay::start_in(
        dir,
        &[
            "--source",
            "tone:///?name=Chime&codec=pcm",
            "--http.ssl_enabled=true",
            "--http.ssl_bind_to_address=127.0.0.1",
            "--http.ssl_port=0",
            &format!("--ssl.certificate={cert}"),
            &format!("--ssl.certificate_key={key}"),
        ],
    );
    let line = relay.wait_for_log(&["listening for HTTPS"], Duration::from_secs(10));
    let addr: SocketAddr = line
        .split("addr=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line}"));
    (relay, der, addr)
}

async fn tls_connect(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the relay's certificate")
}

#[tokio::test]
async fn json_rpc_over_https_and_wss_and_the_stream_over_wss() {
    let (relay, der, addr) = start_https_relay();

    // POST /jsonrpc over HTTPS.
    let mut tls = tls_connect(addr, &der).await;
    let body = json!({"id": 1, "jsonrpc": "2.0", "method": "Server.GetRPCVersion"}).to_string();
    let request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let json_body: Value = serde_json::from_str(text.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert!(json_body["result"]["major"].is_number(), "{json_body}");

    // wss:// JSON-RPC, with a notification-free request and answer.
    let tls = tls_connect(addr, &der).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/jsonrpc", tls)
        .await
        .expect("wss upgrade");
    ws.send(Message::Text(
        json!({"id": 2, "jsonrpc": "2.0", "method": "Server.GetStatus"})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let answer = loop {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("an answer")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            let value: Value = serde_json::from_str(&text).unwrap();
            if value["id"] == 2 {
                break value;
            }
        }
    };
    assert_eq!(
        answer["result"]["server"]["streams"][0]["id"], "Chime",
        "{answer}"
    );

    // wss:// /stream: a Hello brings ServerSettings, then the CodecHeader, then chunks.
    let tls = tls_connect(addr, &der).await;
    let (mut ws, _) = tokio_tungstenite::client_async("wss://localhost/stream", tls)
        .await
        .expect("wss upgrade");
    ws.send(Message::Binary(hello_message().into()))
        .await
        .unwrap();
    let mut types = Vec::new();
    while types.len() < 4 {
        let message = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("stream messages")
            .unwrap()
            .unwrap();
        if let Message::Binary(frame) = message {
            assert!(frame.len() >= 26);
            let size = u32::from_le_bytes([frame[22], frame[23], frame[24], frame[25]]);
            assert_eq!(size as usize, frame.len() - 26, "one message per frame");
            types.push(u16::from_le_bytes([frame[0], frame[1]]));
        }
    }
    // ServerSettings (3), CodecHeader (1), WireChunks (2).
    assert_eq!(types, [3, 1, 2, 2], "{}", relay.log());

    // The plain HTTP port still serves plain HTTP.
    assert_eq!(common::http_get(relay.http_addr(), "/metrics").status, 200);
}

/// A Hello as Snapweb's player sends it (id 1).
fn hello_message() -> Vec<u8> {
    let hello = json!({
        "MAC": "00:00:00:00:00:00", "HostName": "browser", "Version": "0.9.1",
        "ClientName": "test", "OS": "test", "Arch": "web", "Instance": 1,
        "ID": "https-test", "SnapStreamProtocolVersion": 2
    })
    .to_string();
    let mut message = Vec::new();
    message.extend_from_slice(&5u16.to_le_bytes());
    message.extend_from_slice(&1u16.to_le_bytes());
    message.extend_from_slice(&0u16.to_le_bytes());
    message.extend_from_slice(&[0; 16]);
    message.extend_from_slice(&((hello.len() + 4) as u32).to_le_bytes());
    message.extend_from_slice(&(hello.len() as u32).to_le_bytes());
    message.extend_from_slice(hello.as_bytes());
    message
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_no_http_answer() {
    let (_relay, der, addr) = start_https_relay();
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut response)).await;
    assert!(
        !response.starts_with(b"HTTP/"),
        "plain HTTP was answered on the TLS port: {}",
        String::from_utf8_lossy(&response)
    );
    // The relay goes on serving TLS.
    let mut tls = tls_connect(addr, &der).await;
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    assert!(response.starts_with(b"HTTP/1.1 200"));
}

/// A start that must fail; returns its stderr.
fn start_up_error(args: &[String]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .arg("--datadir")
        .arg(dir.path())
        .args([
            "--port=0",
            "--tcp.port=0",
            "--http.port=0",
            "--grpc.port=0",
            "--http.ssl_port=0",
            "--server.mdns_enabled=false",
            "--http.ssl_enabled=true",
        ])
        .args(args)
        .output()
        .unwrap();
    assert!(!output.status.success());
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn unusable_certificates_and_keys_stop_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(dir.path());
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let other = tempfile::tempdir().unwrap();
    let (_, _, other_key) = certificate(other.path());

    let missing = start_up_error(&[
        "--ssl.certificate=/nonexistent/relay.crt".into(),
        format!("--ssl.certificate_key={key}"),
    ]);
    assert!(
        missing.contains("HTTPS: /nonexistent/relay.crt:"),
        "{missing}"
    );
    let not_pem = start_up_error(&[
        format!("--ssl.certificate={}", garbage.display()),
        format!("--ssl.certificate_key={key}"),
    ]);
    assert!(
        not_pem.contains(&format!("HTTPS: {}: no PEM certificate", garbage.display())),
        "{not_pem}"
    );
    let bad_key = start_up_error(&[
        format!("--ssl.certificate={cert}"),
        format!("--ssl.certificate_key={}", garbage.display()),
    ]);
    assert!(
        bad_key.contains(&format!("HTTPS: {}:", garbage.display())),
        "{bad_key}"
    );
    let mismatch = start_up_error(&[
        format!("--ssl.certificate={cert}"),
        format!("--ssl.certificate_key={other_key}"),
    ]);
    assert!(
        mismatch.contains("does not fit the certificate"),
        "{mismatch}"
    );
    let none = start_up_error(&[]);
    assert!(none.contains("ssl.certificate"), "{none}");
}

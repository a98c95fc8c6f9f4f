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
    start_https_relay_with(&[])
}

/// [`start_https_relay`] with `extra` flags.
fn start_https_relay_with(extra: &[&str]) -> (Relay, CertificateDer<'static>, SocketAddr) {
    let dir = tempfile::tempdir().unwrap();
    let (der, cert, key) = certificate(dir.path());
    let cert = format!("--ssl.certificate={cert}");
    let key = format!("--ssl.certificate_key={key}");
    let mut args = vec![
        "--source",
        "tone:///?name=Chime&codec=pcm",
        "--http.ssl_enabled=true",
        "--http.ssl_bind_to_address=127.0.0.1",
        "--http.ssl_port=0",
        &cert,
        &key,
    ];
    args.extend_from_slice(extra);
    let relay = Relay::start_in(dir, &args);
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

    assert_wss_stream_plays(addr, &der, &relay).await;

    // The plain HTTP port still serves plain HTTP.
    assert_eq!(common::http_get(relay.http_addr(), "/metrics").status, 200);
}

/// `[tcp-streaming] enabled = false` (snapserver 0.33: stream clients over WSS only):
/// nothing listens on the stream port, and a `wss:///stream` client still plays.
#[tokio::test]
async fn with_tcp_streaming_off_the_stream_port_is_closed_and_wss_stream_plays() {
    let port = common::free_port().to_string();
    let (relay, der, addr) =
        start_https_relay_with(&["--port", &port, "--tcp-streaming.enabled=false"]);
    relay.wait_for_log(
        &["stream clients over TCP are off"],
        Duration::from_secs(10),
    );
    let refused = tokio::net::TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).await;
    assert!(
        refused.is_err(),
        "something listens on the stream port with TCP streaming off"
    );
    assert!(
        !relay.log().contains("listening for stream clients"),
        "{}",
        relay.log()
    );
    assert_wss_stream_plays(addr, &der, &relay).await;
}

/// wss:// /stream: a Hello brings ServerSettings, then the CodecHeader, then chunks.
async fn assert_wss_stream_plays(addr: SocketAddr, der: &CertificateDer<'static>, relay: &Relay) {
    let tls = tls_connect(addr, der).await;
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

/// A CA, and a client certificate it signed, for mutual TLS.
struct ClientPki {
    ca_pem: String,
    client_chain: Vec<CertificateDer<'static>>,
    client_key: rustls_pki_types::PrivateKeyDer<'static>,
}

fn client_pki() -> ClientPki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test client CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client_params = rcgen::CertificateParams::new(vec!["kitchen".to_owned()]).unwrap();
    let client = client_params.signed_by(&client_key, &ca).unwrap();
    ClientPki {
        ca_pem: ca.pem(),
        client_chain: vec![client.der().clone()],
        client_key: rustls_pki_types::PrivatePkcs8KeyDer::from(client_key.serialize_der()).into(),
    }
}

/// POST Server.GetRPCVersion over TLS with `client_auth` (chain and key) or none; the HTTP
/// status line, or what went wrong.
async fn rpc_version_over_tls(
    addr: SocketAddr,
    trusted: &CertificateDer<'static>,
    client_auth: Option<(
        Vec<CertificateDer<'static>>,
        rustls_pki_types::PrivateKeyDer<'static>,
    )>,
) -> Result<String, String> {
    let mut roots = RootCertStore::empty();
    roots.add(trusted.clone()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match client_auth {
        Some((chain, key)) => builder.with_client_auth_cert(chain, key).unwrap(),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let mut tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    let body = json!({"id": 1, "jsonrpc": "2.0", "method": "Server.GetRPCVersion"}).to_string();
    let request = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut response))
        .await
        .map_err(|_| "no answer in 10 s".to_owned())?
        .map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&response);
    Ok(text.lines().next().unwrap_or("").to_owned())
}

/// Mutual TLS (`ssl.verify_clients` with `ssl.client_cert`, snapserver 0.32): a client whose
/// certificate the CA signed is answered; one with no certificate, or one the CA did not
/// sign, is refused in the handshake.
#[tokio::test]
async fn mutual_tls_answers_only_clients_whose_certificate_the_ca_signed() {
    let pki = client_pki();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca_file = ca_dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, &pki.ca_pem).unwrap();
    let ca_flag = format!("--ssl.client_cert={}", ca_file.display());
    let (relay, der, addr) = start_https_relay_with(&["--ssl.verify_clients=true", &ca_flag]);

    let signed = rpc_version_over_tls(
        addr,
        &der,
        Some((pki.client_chain.clone(), pki.client_key.clone_key())),
    )
    .await;
    assert_eq!(
        signed.as_deref(),
        Ok("HTTP/1.1 200 OK"),
        "a client the CA signed; {}",
        relay.log()
    );
    let anonymous = rpc_version_over_tls(addr, &der, None).await;
    assert!(
        !matches!(&anonymous, Ok(status) if status.starts_with("HTTP/")),
        "a client without a certificate was answered: {anonymous:?}"
    );
    let stranger = client_pki();
    let unsigned = rpc_version_over_tls(
        addr,
        &der,
        Some((stranger.client_chain, stranger.client_key)),
    )
    .await;
    assert!(
        !matches!(&unsigned, Ok(status) if status.starts_with("HTTP/")),
        "a client the CA did not sign was answered: {unsigned:?}"
    );
}

/// `ssl.verify_clients` without a CA to check against stops the start, naming the key.
#[test]
fn verifying_clients_without_a_ca_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = certificate(dir.path());
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_snaprelay"))
        .args([
            "--check-config",
            "--http.ssl_enabled=true",
            &format!("--ssl.certificate={cert}"),
            &format!("--ssl.certificate_key={key}"),
            "--ssl.verify_clients=true",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("ssl.client_cert"), "{stderr}");
}

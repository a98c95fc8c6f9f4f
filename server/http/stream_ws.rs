//! WebSocket `/stream`: the binary Snapcast protocol for browser players (Snapweb's), one
//! protocol message per binary frame each way, as snapserver serves it.
//!
//! The browser becomes a stream client like any other (its Hello, groups, volume, stats) by
//! joining the relay's own stream listener over loopback: this task only re-frames, so every
//! session rule (handshake, time sync, the send path, slow-client policy) stays in one place.
//! The cost is one loopback hop per browser; browsers are few next to real clients.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};

use crate::protocol::{HEADER_SIZE, MAX_PAYLOAD_SIZE};

/// Where browser players join the stream listener.
#[derive(Debug, Clone)]
pub(crate) struct StreamBridge {
    /// A stream listener's address, reachable from this host.
    pub(crate) target: Option<SocketAddr>,
}

impl StreamBridge {
    /// The first of the stream listeners, as reached from this host (a wildcard address is
    /// reached over loopback).
    pub(crate) fn new(stream_addresses: &[SocketAddr]) -> Self {
        let target = stream_addresses.first().map(|addr| {
            let ip = match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            SocketAddr::new(ip, addr.port())
        });
        Self { target }
    }
}

/// `GET /stream` (WebSocket upgrade).
pub(crate) async fn upgrade(State(bridge): State<StreamBridge>, ws: WebSocketUpgrade) -> Response {
    let Some(target) = bridge.target else {
        return (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "no stream listener\n",
        )
            .into_response();
    };
    ws.max_message_size(HEADER_SIZE + MAX_PAYLOAD_SIZE)
        .on_upgrade(move |socket| async move {
            if let Err(err) = bridge_session(socket, target).await {
                debug!(error = %err, "browser stream client ended");
            }
        })
}

#[derive(Debug, thiserror::Error)]
enum BridgeError {
    #[error("stream listener: {0}")]
    Io(#[from] std::io::Error),
    #[error("websocket: {0}")]
    WebSocket(#[from] axum::Error),
    #[error("a message of {0} bytes is over the protocol's limit")]
    TooLarge(usize),
    #[error("a binary frame of {0} bytes is not a whole protocol message")]
    NotAMessage(usize),
}

async fn bridge_session(socket: WebSocket, target: SocketAddr) -> Result<(), BridgeError> {
    let tcp = TcpStream::connect(target).await?;
    tcp.set_nodelay(true)?;
    let (mut tcp_read, mut tcp_write) = tcp.into_split();
    let (mut ws_write, mut ws_read) = socket.split();

    let browser_to_relay = async {
        while let Some(message) = ws_read.next().await {
            match message? {
                Message::Binary(frame) => {
                    if frame.len() < HEADER_SIZE {
                        return Err(BridgeError::NotAMessage(frame.len()));
                    }
                    // The frame is the message: its size comes from the frame, as snapserver
                    // takes it. Snapweb writes header + payload into the header's size field.
                    let mut message = Vec::from(frame);
                    let size = u32::try_from(message.len() - HEADER_SIZE)
                        .map_err(|_| BridgeError::TooLarge(message.len()))?;
                    message[22..26].copy_from_slice(&size.to_le_bytes());
                    tcp_write.write_all(&message).await?;
                }
                Message::Close(_) => break,
                // Pings are answered by axum; text has no meaning here.
                _ => {}
            }
        }
        Ok::<(), BridgeError>(())
    };
    let relay_to_browser = async {
        let mut header = [0u8; HEADER_SIZE];
        loop {
            match tcp_read.read_exact(&mut header).await {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(err) => return Err(err.into()),
            }
            let size = u32::from_le_bytes([header[22], header[23], header[24], header[25]]);
            let size = size as usize;
            if size > MAX_PAYLOAD_SIZE {
                return Err(BridgeError::TooLarge(size));
            }
            let mut message = Vec::with_capacity(HEADER_SIZE + size);
            message.extend_from_slice(&header);
            message.resize(HEADER_SIZE + size, 0);
            tcp_read.read_exact(&mut message[HEADER_SIZE..]).await?;
            ws_write.send(Message::Binary(Bytes::from(message))).await?;
        }
        let _ = ws_write.close().await;
        Ok::<(), BridgeError>(())
    };
    let result = tokio::select! {
        result = browser_to_relay => result,
        result = relay_to_browser => result,
    };
    if let Err(err) = &result {
        if !matches!(err, BridgeError::Io(_) | BridgeError::WebSocket(_)) {
            warn!(error = %err, "browser stream client dropped");
        }
    }
    result
}

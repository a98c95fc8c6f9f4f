//! JSON-RPC on the HTTP listener (docs/JSONRPC.md §1): `POST /jsonrpc` (one request or
//! batch per body; 200 with the response, an empty body when there is none; no notifications)
//! and the `/jsonrpc` websocket (one request or batch per message; responses and
//! notifications come back as text messages without a trailing newline).
//!
//! Other paths get axum's 404 rather than snapserver's 400: nothing is served besides these
//! and `/metrics`, and 404 says so more precisely (docs/JSONRPC.md).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tracing::debug;

use super::protocol::{self, RpcError, MAX_REQUEST_BYTES};
use super::{Answers, Rpc};

/// `POST /jsonrpc`. A required token may come as `Authorization: Bearer <token>`, since an
/// HTTP caller has no connection to authenticate once.
pub(crate) async fn post(State(rpc): State<Arc<Rpc>>, headers: HeaderMap, body: Bytes) -> Response {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let authenticated = rpc.open() || bearer.is_some_and(|t| rpc.token_matches(t));
    let caller = rpc.hub.transient(authenticated);
    let reply = if body.len() > MAX_REQUEST_BYTES {
        Some(error_text(RpcError::parse(format!(
            "request longer than {MAX_REQUEST_BYTES} bytes"
        ))))
    } else {
        match std::str::from_utf8(&body) {
            Ok(text) => rpc.handle(text, &caller).await,
            Err(_) => Some(error_text(RpcError::parse("not UTF-8"))),
        }
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        reply.unwrap_or_default(),
    )
        .into_response()
}

/// `GET /jsonrpc` with an upgrade: a websocket control connection.
pub(crate) async fn websocket(State(rpc): State<Arc<Rpc>>, upgrade: WebSocketUpgrade) -> Response {
    upgrade
        .max_message_size(MAX_REQUEST_BYTES)
        .on_upgrade(move |socket| connection(socket, rpc))
}

async fn connection(mut socket: WebSocket, rpc: Arc<Rpc>) {
    let mut registration = rpc.hub.register(rpc.open());
    let id = registration.caller.id;
    debug!(connection = id, "JSON-RPC websocket client connected");
    let cancel = rpc.relay.cancel.clone();
    let mut answers = Answers::default();
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            () = registration.kicked.cancelled() => break,
            notification = registration.notifications.recv() => {
                let Some(text) = notification else { break };
                if socket.send(Message::Text(text.as_ref().into())).await.is_err() {
                    break;
                }
            }
            reply = answers.finished() => {
                if socket.send(Message::Text(reply.into())).await.is_err() {
                    break;
                }
            }
            message = socket.recv() => {
                let text = match message {
                    Some(Ok(Message::Text(text))) => text.as_str().to_owned(),
                    Some(Ok(Message::Binary(bytes))) => match String::from_utf8(bytes.to_vec()) {
                        Ok(text) => text,
                        Err(_) => {
                            let reply = error_text(RpcError::parse("not UTF-8"));
                            if socket.send(Message::Text(reply.into())).await.is_err() {
                                break;
                            }
                            continue;
                        }
                    },
                    // Pings are answered by axum; pongs need nothing.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                };
                if let Some(reply) = answers.answer(&rpc, text, &registration.caller).await {
                    if socket.send(Message::Text(reply.into())).await.is_err() {
                        break;
                    }
                }
            }
        }
    }
    let authenticated = registration.caller.authenticated.load(Ordering::Relaxed);
    debug!(
        connection = id,
        authenticated, "JSON-RPC websocket client gone"
    );
}

fn error_text(err: RpcError) -> String {
    protocol::error(Value::Null, &err).to_string()
}

//! The Snapcast JSON-RPC control API (docs/JSONRPC.md; issue 7): what Home Assistant,
//! Music Assistant (python `snapcast` over TCP 1705), Snapweb (websocket `/jsonrpc` on 1780)
//! and curl users (HTTP `POST /jsonrpc`) speak. It is a second front end over the same
//! `state/` model as gRPC: every change goes through `Relay::change`, and every
//! notification comes from the state's announcements, so a change made through either front
//! end reaches the listeners of both.
//!
//! - `protocol`: JSON-RPC framing and error objects, no I/O.
//! - `methods`: the method table.
//! - `objects`: the Server/Stream objects.
//! - `hub`: the connected control clients and the notification fan-out.
//! - `tcp`: the TCP listener; `web`: the HTTP POST and websocket handlers.

mod hub;
mod methods;
mod objects;
pub use objects::SNAPSERVER_VERSION;
mod protocol;
mod tcp;
pub(crate) mod web;

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use serde_json::Value;
use subtle::ConstantTimeEq;
use tokio::net::TcpListener;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::relay::Relay;
pub(crate) use hub::Hub;
use protocol::{Incoming, RpcError};
pub(crate) use tcp::serve;

/// Parses one JSON-RPC message exactly as every transport does, returning how many entries
/// it held and how many of those were well-formed requests. For fuzzing and tests: the
/// parser must turn any input into requests or JSON-RPC errors, never a panic.
pub fn parse_summary(text: &str) -> (usize, usize) {
    match protocol::parse(text) {
        Incoming::Broken(_) => (0, 0),
        Incoming::Single(entry) => (1, usize::from(entry.is_ok())),
        Incoming::Batch(entries) => (
            entries.len(),
            entries.iter().filter(|entry| entry.is_ok()).count(),
        ),
    }
}

/// Why the JSON-RPC API could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum JsonRpcError {
    /// A bind address is not an IP address.
    #[error("invalid tcp.bind_to_address '{0}': expected an IP address such as 0.0.0.0 or ::")]
    BadAddress(String),
    /// An address could not be bound.
    #[error("cannot listen for JSON-RPC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// `jsonrpc.require_token` without a gRPC token to require.
    #[error(
        "jsonrpc.require_token is set but neither grpc.token nor grpc.token_file gives a token"
    )]
    NoToken,
    /// The token file could not be read.
    #[error("grpc.token_file {path}: {source}")]
    TokenFile {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

/// The bound JSON-RPC TCP listeners; made by [`bind`], served by the relay.
#[derive(Debug)]
pub struct JsonRpcListener {
    listeners: Vec<TcpListener>,
}

impl JsonRpcListener {
    /// The port it listens on (as bound: `tcp.port = 0` picks one).
    pub(crate) fn port(&self) -> Option<u16> {
        self.listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }
}

/// Binds every `tcp.bind_to_address` on `tcp.port`; `Ok(None)` when `tcp.enabled` is false.
///
/// # Errors
///
/// A bind address that is not an IP address, or one that cannot be bound.
pub async fn bind(config: &Config) -> Result<Option<JsonRpcListener>, JsonRpcError> {
    let tcp = &config.tcp;
    if !tcp.enabled {
        return Ok(None);
    }
    let mut listeners = Vec::new();
    for text in &tcp.bind_to_address {
        let ip: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| JsonRpcError::BadAddress(text.clone()))?;
        let addr = SocketAddr::new(ip, tcp.port);
        let listener =
            crate::net::listen(addr).map_err(|source| JsonRpcError::Bind { addr, source })?;
        listeners.push(listener);
    }
    Ok(Some(JsonRpcListener { listeners }))
}

/// The token JSON-RPC callers must present, when `jsonrpc.require_token` is set: the gRPC
/// plane's token (the token file wins, as there), so one secret guards both front ends.
///
/// # Errors
///
/// An unreadable token file, or no token at all although one is required.
pub(crate) fn token(config: &Config) -> Result<Option<String>, JsonRpcError> {
    use crate::config::TokenFileError;
    if !config.jsonrpc.require_token {
        return Ok(None);
    }
    match config.grpc.resolve_token() {
        Ok(Some(token)) => Ok(Some(token)),
        Ok(None) | Err(TokenFileError::Empty(_)) => Err(JsonRpcError::NoToken),
        Err(TokenFileError::Read { path, source }) => Err(JsonRpcError::TokenFile {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Creates the API over `relay` and starts its notification task (subscribed before any
/// listener accepts, so no change goes unannounced).
pub(crate) fn start(relay: Arc<Relay>, token: Option<String>, tracker: &TaskTracker) -> Arc<Rpc> {
    let events = relay.state.subscribe();
    let rpc = Arc::new(Rpc::new(relay, token));
    tracker.spawn(hub::run(rpc.clone(), events));
    rpc
}

/// Everything a JSON-RPC request may touch; one per relay, shared by every transport.
#[derive(Debug)]
pub(crate) struct Rpc {
    pub(crate) relay: Arc<Relay>,
    pub(crate) hub: Hub,
    /// Required token, if any (never logged).
    token: Option<String>,
}

/// Per-connection facts a request needs.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    /// The hub id; changes made by this caller are not notified back to it.
    pub(crate) id: u64,
    /// Whether the caller has authenticated (always true without a required token).
    pub(crate) authenticated: Arc<AtomicBool>,
}

impl Rpc {
    pub(crate) fn new(relay: Arc<Relay>, token: Option<String>) -> Self {
        Self {
            relay,
            hub: Hub::new(),
            token,
        }
    }

    /// Whether callers start out authenticated.
    pub(crate) fn open(&self) -> bool {
        self.token.is_none()
    }

    /// Whether `given` is the required token (constant time; true when none is required).
    pub(crate) fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            None => true,
            Some(expected) => bool::from(given.as_bytes().ct_eq(expected.as_bytes())),
        }
    }

    /// Answers one message (a request, a notification or a batch). `None` when there is
    /// nothing to send back (only notifications).
    pub(crate) async fn handle(&self, text: &str, caller: &Caller) -> Option<String> {
        let reply = match protocol::parse(text) {
            Incoming::Broken(err) => Some(protocol::error(Value::Null, &err)),
            Incoming::Single(entry) => self.entry(entry, caller).await,
            Incoming::Batch(entries) => {
                let mut replies = Vec::with_capacity(entries.len());
                for entry in entries {
                    if let Some(reply) = self.entry(entry, caller).await {
                        replies.push(reply);
                    }
                }
                (!replies.is_empty()).then_some(Value::Array(replies))
            }
        };
        reply.map(|v| v.to_string())
    }

    async fn entry(
        &self,
        entry: Result<protocol::Request, (Value, RpcError)>,
        caller: &Caller,
    ) -> Option<Value> {
        let request = match entry {
            Ok(request) => request,
            Err((id, err)) => return Some(protocol::error(id, &err)),
        };
        // A notification from a client (no id) is accepted and ignored (§2.1).
        let id = request.id?;
        let outcome = if caller.authenticated.load(Ordering::Relaxed)
            || methods::open_without_auth(&request.method)
        {
            methods::call(self, &request.method, &request.params, caller).await
        } else {
            Err(RpcError::unauthorized(
                "this server requires authentication: call Server.Authenticate first",
            ))
        };
        Some(match outcome {
            Ok(result) => protocol::result(id, result),
            Err(err) => protocol::error(id, &err),
        })
    }
}

/// The answers of one connection (TCP, websocket). A request answered at once is answered in
/// order; one that has to wait (`Stream.Control` and `Stream.SetProperty` wait for the
/// stream's plugin, up to its deadline) finishes in the background, so the connection goes
/// on reading requests and receiving notifications meanwhile, as with snapserver.
#[derive(Debug, Default)]
pub(crate) struct Answers {
    waiting: tokio::task::JoinSet<Option<String>>,
}

impl Answers {
    /// Answers waiting at most per connection; beyond this the connection waits for the next.
    const MAX_WAITING: usize = 16;

    /// The reply to `text` when it is ready at once; `None` when there is none (a
    /// notification) or it will come from [`Answers::finished`].
    pub(crate) async fn answer(
        &mut self,
        rpc: &Arc<Rpc>,
        text: String,
        caller: &Caller,
    ) -> Option<String> {
        let (rpc, caller) = (rpc.clone(), caller.clone());
        let mut reply = Box::pin(async move { rpc.handle(&text, &caller).await });
        let first = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(std::future::Future::poll(reply.as_mut(), cx))
        })
        .await;
        match first {
            std::task::Poll::Ready(reply) => reply,
            std::task::Poll::Pending if self.waiting.len() >= Self::MAX_WAITING => reply.await,
            std::task::Poll::Pending => {
                self.waiting.spawn(reply);
                None
            }
        }
    }

    /// The next reply that finished in the background; never resolves while none waits, so
    /// it can sit in a `select!` (cancel safe).
    pub(crate) async fn finished(&mut self) -> String {
        loop {
            match self.waiting.join_next().await {
                None => std::future::pending::<()>().await,
                Some(Ok(Some(reply))) => return reply,
                Some(Ok(None) | Err(_)) => {}
            }
        }
    }
}

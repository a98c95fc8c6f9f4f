//! Running the relay: the one place that knows every listener. [`Listeners::bind`] binds
//! them all before anything starts, so a port in use or a bad address fails start-up with the
//! key to fix. [`run()`] then starts the relay core (`Relay`), serves each listener over it
//! (stream clients, gRPC, JSON-RPC, HTTP) plus the periodic log, and runs the shutdown
//! sequence. Nothing in the library imports this module; `main` calls it.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Origin};
use crate::control::GrpcListener;
use crate::net::listen;
use crate::relay::Relay;
use crate::settings::LogReload;
use crate::source::{SourceError, SourceSpec};
pub use crate::stream::StreamError;

/// How long shutdown waits for tasks before giving up on them.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A `source` entry is invalid.
    #[error("invalid stream.source '{uri}': {source}")]
    Source {
        /// The entry.
        uri: String,
        /// Why.
        source: SourceError,
    },
    /// A meta stream names an input that is not a stream defined before it.
    #[error(
        "stream '{name}': meta input '{input}' is not a stream defined before it (list its \
         inputs' sources first)"
    )]
    MetaInput {
        /// The meta stream.
        name: String,
        /// The input it names.
        input: String,
    },
    /// Every stream has `codec=null`: clients would have nothing to play.
    #[error("every stream has codec=null; at least one must be playable by clients")]
    NoPlayableStream,
    /// Two sources share a name.
    #[error("two sources are named '{0}'; stream names must be unique")]
    DuplicateStream(String),
    /// A stream failed to start.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// A listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A bind address is not an IP address.
    #[error("invalid stream.bind_to_address '{0}': expected an IP address such as 0.0.0.0 or ::")]
    BadAddress(String),
    /// The JSON-RPC API could not be set up (its token, its listener).
    #[error(transparent)]
    JsonRpc(#[from] crate::jsonrpc::JsonRpcError),
    /// The gRPC listener could not be set up.
    #[error(transparent)]
    Grpc(#[from] crate::control::GrpcError),
    /// The HTTP listener could not be set up.
    #[error(transparent)]
    Http(#[from] crate::http::HttpError),
}

/// Parses every configured source, so bad ones fail start-up with the offending value.
pub fn source_specs(config: &Config) -> Result<Vec<SourceSpec>, RunError> {
    let defaults = config.source_defaults();
    let mut specs: Vec<SourceSpec> = Vec::new();
    for uri in &config.stream.source {
        let spec = SourceSpec::parse(uri, &defaults).map_err(|source| RunError::Source {
            uri: crate::source::redacted_uri_string(uri),
            source,
        })?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(RunError::DuplicateStream(spec.name));
        }
        if let crate::source::SourceKind::Meta { inputs } = &spec.kind {
            if let Some(input) = inputs.iter().find(|i| !specs.iter().any(|s| &&s.name == i)) {
                return Err(RunError::MetaInput {
                    name: spec.name,
                    input: input.clone(),
                });
            }
        }
        specs.push(spec);
    }
    if specs.iter().all(|s| s.codec == crate::encoder::NULL_CODEC) {
        return Err(RunError::NoPlayableStream);
    }
    Ok(specs)
}

/// Binds the stream listeners the config asks for (none with TCP streaming off).
async fn bind_stream(config: &Config) -> Result<Vec<TcpListener>, RunError> {
    let mut listeners = Vec::new();
    if !config.stream.tcp_enabled {
        return Ok(listeners);
    }
    for text in &config.stream.bind_to_address {
        let ip: IpAddr = text
            .trim()
            .parse()
            .map_err(|_| RunError::BadAddress(text.clone()))?;
        let addr = SocketAddr::new(ip, config.stream.port);
        let listener = listen(addr).map_err(|source| RunError::Bind { addr, source })?;
        listeners.push(listener);
    }
    Ok(listeners)
}

/// Every listener the config asks for, bound before anything starts, so a port in use or a
/// bad address fails start-up naming the key to fix. Each is `None` (or empty) when the
/// config turns it off.
#[derive(Debug)]
pub struct Listeners {
    /// Stream clients (`stream.bind_to_address` × `stream.port`); none with
    /// `stream.tcp_enabled` off.
    pub(crate) stream: Vec<TcpListener>,
    /// With TCP streaming off, where WebSocket `/stream` clients join the stream sessions:
    /// loopback, a free port, never published.
    pub(crate) stream_bridge: Option<TcpListener>,
    /// The gRPC control API.
    pub(crate) grpc: Option<GrpcListener>,
    /// HTTP: `/metrics`, JSON-RPC over HTTP and WebSocket.
    pub(crate) http: Option<crate::http::HttpListener>,
    /// JSON-RPC over TCP (HTTP JSON-RPC follows `jsonrpc.http_enabled` on the HTTP listener).
    pub(crate) jsonrpc: Option<crate::jsonrpc::JsonRpcListener>,
}

impl Listeners {
    /// Binds every listener of `config`.
    ///
    /// # Errors
    ///
    /// The first listener that cannot be bound, naming its address.
    pub async fn bind(config: &Config) -> Result<Self, RunError> {
        let stream = bind_stream(config).await?;
        let http = crate::http::bind(config).await?;
        let stream_bridge = if !config.stream.tcp_enabled && http.is_some() {
            let addr = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, 0));
            Some(listen(addr).map_err(|source| RunError::Bind { addr, source })?)
        } else {
            None
        };
        Ok(Self {
            stream,
            stream_bridge,
            grpc: crate::control::bind(&config.grpc).await?,
            http,
            jsonrpc: crate::jsonrpc::bind(config).await?,
        })
    }
}

/// What `run` needs beyond the config and the listeners.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// Hook that swaps the process's log filter, for `UpdateConfig logging.filter`.
    pub log_reload: Option<LogReload>,
    /// `(key, value, origin)` of every config key as loaded ([`crate::config::Loaded::effective`]),
    /// what `GetConfig` reports.
    pub config_sources: Vec<(String, String, Origin)>,
}

/// How long after start the start-up code pages are given back: long enough for the
/// listeners, control plane and sources to have started (startup_pages.rs).
const STARTUP_SETTLE: Duration = Duration::from_secs(5);

/// Gives back the pages of the binary only start-up touched, once it has settled.
async fn release_startup_pages(cancel: CancellationToken) {
    tokio::select! {
        () = tokio::time::sleep(STARTUP_SETTLE) => {}
        () = cancel.cancelled() => return,
    }
    match crate::startup_pages::release() {
        Ok(bytes) => debug!(mapped_kib = bytes / 1024, "start-up pages released"),
        Err(err) => debug!(error = %err, "start-up pages not released"),
    }
}

/// Runs the relay on already-bound `listeners` until `shutdown` completes: the relay core,
/// then a front end on each listener (stream clients, gRPC, JSON-RPC, HTTP) and the periodic
/// log; then the shutdown sequence.
///
/// # Errors
///
/// A source that does not parse or start, or an unusable JSON-RPC token.
pub async fn run(
    config: &Config,
    listeners: Listeners,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let Listeners {
        stream: listeners,
        stream_bridge,
        grpc,
        http,
        jsonrpc,
    } = listeners;
    let specs = source_specs(config)?;
    let jsonrpc_token = crate::jsonrpc::token(config)?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let http_port = http
        .as_ref()
        .and_then(crate::http::HttpListener::port)
        .unwrap_or(config.http.port);
    let relay = Relay::start(
        config,
        specs,
        options.log_reload,
        http_port,
        cancel.clone(),
        tracker.clone(),
    )?;
    let zerocopy_setting = if config.stream.zerocopy {
        "enabled"
    } else {
        "disabled"
    };
    info!("ZeroCopy setting: {zerocopy_setting}");
    let limit = Arc::new(Semaphore::new(config.server.max_clients));
    let stream_addresses: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    let published = if config.server.mdns_enabled {
        let ports = crate::discovery::Listeners {
            stream: stream_addresses
                .first()
                .map(SocketAddr::port)
                .filter(|_| config.stream.publish),
            control: jsonrpc
                .as_ref()
                .and_then(crate::jsonrpc::JsonRpcListener::port)
                .filter(|_| config.tcp.publish),
            http: http
                .as_ref()
                .and_then(crate::http::HttpListener::port)
                .filter(|_| config.http.publish_http),
            https: http
                .as_ref()
                .and_then(crate::http::HttpListener::tls_port)
                .filter(|_| config.http.publish_https),
            grpc: grpc.as_ref().and_then(crate::control::GrpcListener::addr),
        };
        let services = ports.services();
        tokio::task::spawn_blocking(move || {
            crate::discovery::publish(&services, &crate::host::name())
        })
        .await
        .ok()
        .flatten()
    } else {
        None
    };
    if let Some(grpc) = grpc {
        tracker.spawn(crate::control::serve(
            grpc,
            relay.clone(),
            stream_addresses.clone(),
            options.config_sources,
        ));
    }
    let http_jsonrpc = http.is_some() && config.jsonrpc.http_enabled;
    let rpc = (jsonrpc.is_some() || http_jsonrpc)
        .then(|| crate::jsonrpc::start(relay.clone(), jsonrpc_token, &tracker));
    if let (Some(listener), Some(rpc)) = (jsonrpc, &rpc) {
        tracker.spawn(crate::jsonrpc::serve(
            listener,
            rpc.clone(),
            tracker.clone(),
        ));
    }
    if let Some(http) = http {
        let rpc = rpc.filter(|_| http_jsonrpc);
        // Browsers join the public stream listener, or with TCP streaming off the bridge's.
        let stream_addresses = match &stream_bridge {
            Some(bridge) => bridge.local_addr().into_iter().collect(),
            None => stream_addresses.clone(),
        };
        let relay = relay.clone();
        tracker.spawn(async move {
            crate::http::serve(http, relay, rpc, &stream_addresses).await;
        });
    }
    tracker.spawn(crate::diagnostics::run(relay.clone()));
    tracker.spawn(release_startup_pages(cancel.clone()));
    if listeners.is_empty() {
        match stream_bridge.as_ref().and_then(|l| l.local_addr().ok()) {
            Some(addr) => info!(
                %addr,
                "stream clients over TCP are off (tcp_streaming.enabled = false); WebSocket /stream clients join on loopback"
            ),
            None => warn!(
                "no stream client can connect: TCP streaming (tcp_streaming.enabled) and HTTP are both off"
            ),
        }
    }
    for addr in listeners.iter().filter_map(|l| l.local_addr().ok()) {
        info!(%addr, "listening for stream clients");
    }
    for listener in listeners.into_iter().chain(stream_bridge) {
        tracker.spawn(accept_loop(
            listener,
            relay.clone(),
            limit.clone(),
            tracker.clone(),
        ));
    }

    tokio::select! {
        () = shutdown => info!("shutting down"),
        () = cancel.cancelled() => {}
    }
    // The shutdown sequence (issue 8). One cancel does the first three steps at once:
    // health turns NOT_SERVING before the gRPC server stops (control::serve), the accept loops
    // return and drop their listeners so new connections are refused, and every session ends
    // its task, which closes its socket with a FIN. Then wait, bounded, and save the state last
    // (once, off the runtime's workers) so that it includes the departures of the sessions
    // that just closed.
    cancel.cancel();
    if let Some(published) = published {
        // Goodbyes first, so browsers forget the services before the listeners close.
        let _ = tokio::task::spawn_blocking(move || published.withdraw()).await;
    }
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    relay.flush_state().await;
    Ok(())
}

async fn accept_loop(
    listener: TcpListener,
    relay: Arc<Relay>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = relay.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(10);
                admit(socket, peer, &relay, &limit, &tracker);
            }
            Err(err) => {
                // EMFILE and friends: back off and keep serving those already connected.
                error!(error = %err, "accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

fn admit(
    socket: TcpStream,
    peer: SocketAddr,
    relay: &Arc<Relay>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        relay
            .sessions
            .drops
            .refused_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        warn!(%peer, "connection refused: client limit reached");
        return;
    };
    // Spawned as it is, not wrapped in another async block: a future captured and awaited
    // is stored twice in the task's state (measured: ~2 KiB more per client).
    tracker.spawn(relay.serve_session(socket, peer, permit));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What one client's task stores for its whole life, bytes (docs/PERFORMANCE.md, "Memory
    /// per client"): at thousands of clients every byte here counts thousands of times.
    const SESSION_FUTURE_BUDGET: usize = 1_536;

    #[tokio::test]
    async fn a_session_task_stays_within_its_memory_budget() {
        let datadir = tempfile::tempdir().unwrap();
        let mut config = Config::default();
        config.server.datadir = Some(datadir.path().to_owned());
        config.stream.source = vec!["tone:///?name=tone".into()];
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let relay = Relay::start(
            &config,
            source_specs(&config).unwrap(),
            None,
            1780,
            cancel.clone(),
            tracker.clone(),
        )
        .unwrap();
        let listener = listen("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = listener.local_addr().unwrap();
        let (client, _) = tokio::join!(TcpStream::connect(addr), listener.accept());
        let permit = Arc::new(Semaphore::new(1)).try_acquire_owned().unwrap();
        let session = relay.serve_session(client.unwrap(), addr, permit);
        let size = std::mem::size_of_val(&session);
        drop(session);
        eprintln!("session future: {size} bytes");
        assert!(
            size <= SESSION_FUTURE_BUDGET,
            "a session's future is {size} bytes, over the budget of {SESSION_FUTURE_BUDGET}"
        );
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
    }
}

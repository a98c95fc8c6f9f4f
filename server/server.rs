//! The relay as a whole: binds the stream port, starts every stream, accepts clients, and
//! shuts everything down when told to.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::config::{Config, Origin};
use crate::control::GrpcListener;
use crate::pool::BufferPool;
use crate::session::{self, SessionInfo};
use crate::settings::{LiveSettings, LogReload};
use crate::source::{SourceDefaults, SourceError, SourceSpec};
use crate::state::{State, Store};
use crate::stream::{Stream, StreamError};
use crate::streams::Streams;

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
    /// The JSON-RPC API could not be set up (its token).
    #[error(transparent)]
    JsonRpc(#[from] crate::jsonrpc::JsonRpcError),
}

/// The settings sessions need, copied out of the config once.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) initial_volume: u16,
    pub(crate) hello_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) zerocopy_auto_fallback: bool,
    pub(crate) send_to_muted: bool,
    /// How long a session collects chunks before sending them in one go.
    pub(crate) send_batch: Duration,
}

/// State shared by every task of the relay.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: SessionSettings,
    /// Buffers for serialized chunks, shared by every stream.
    pub(crate) pool: BufferPool,
    /// Settings the control API can change while running (buffer, zerocopy, log filter...).
    pub(crate) live: LiveSettings,
    /// Streams in configuration order, then those added over JSON-RPC; the first is the
    /// default stream.
    pub(crate) streams: Streams,
    /// Clients and groups, persisted in the data dir.
    pub(crate) state: Arc<State>,
    pub(crate) sessions: DashMap<u64, Arc<SessionInfo>>,
    /// Sessions dropped and connections refused by policy (issue 10).
    pub(crate) drops: session::PolicyDrops,
    pub(crate) next_session_id: AtomicU64,
    pub(crate) cancel: CancellationToken,
}

impl Shared {
    /// The stream with this id.
    pub(crate) fn stream(&self, name: &str) -> Option<Stream> {
        self.streams.get(name)
    }
}

/// Parses every configured source, so bad ones fail start-up with the offending value.
pub fn source_specs(config: &Config) -> Result<Vec<SourceSpec>, RunError> {
    let defaults = SourceDefaults {
        sample_format: config.stream.sampleformat,
        codec: config.stream.codec.clone(),
        chunk_ms: config.stream.chunk_ms,
    };
    let mut specs: Vec<SourceSpec> = Vec::new();
    for uri in &config.stream.source {
        let spec = SourceSpec::parse(uri, &defaults).map_err(|source| RunError::Source {
            uri: uri.to_string(),
            source,
        })?;
        if specs.iter().any(|s| s.name == spec.name) {
            return Err(RunError::DuplicateStream(spec.name));
        }
        specs.push(spec);
    }
    Ok(specs)
}

/// Binds the stream listeners the config asks for.
pub async fn bind(config: &Config) -> Result<Vec<TcpListener>, RunError> {
    let mut listeners = Vec::new();
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

/// Binds a TCP listener the way every relay listener should be bound (stream, HTTP).
pub(crate) fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    // Restarting must not wait for TIME_WAIT sockets of the previous run.
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        // `::` alone should serve IPv4 clients too, as snapserver's default does.
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    TcpListener::from_std(socket.into())
}

/// What `run_with` needs beyond the config and the stream listeners; all optional, so tests
/// and embeddings pass only what they use.
#[derive(Debug, Default)]
pub struct RunOptions {
    /// The bound gRPC control listener ([`crate::control::bind`]); `None` serves no API.
    pub grpc: Option<GrpcListener>,
    /// Hook that swaps the process's log filter, for `UpdateConfig logging.filter`.
    pub log_reload: Option<LogReload>,
    /// `(key, value, origin)` of every config key as loaded ([`crate::config::Loaded::effective`]),
    /// what `GetConfig` reports.
    pub config_sources: Vec<(String, String, Origin)>,
    /// The bound HTTP listener ([`crate::http::bind`]) for `/metrics`; `None` serves no HTTP.
    pub http: Option<crate::http::HttpListener>,
    /// The bound JSON-RPC TCP listener ([`crate::jsonrpc::bind`]); `None` serves no TCP
    /// JSON-RPC (HTTP JSON-RPC follows `jsonrpc.http_enabled` on the HTTP listener).
    pub jsonrpc: Option<crate::jsonrpc::JsonRpcListener>,
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

/// Runs the relay on already-bound listeners until `shutdown` completes.
pub async fn run(
    config: &Config,
    listeners: Vec<TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    run_with(config, listeners, RunOptions::default(), shutdown).await
}

/// [`run`], plus the control API and run-time settings described by `options`.
pub async fn run_with(
    config: &Config,
    listeners: Vec<TcpListener>,
    options: RunOptions,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    let specs = source_specs(config)?;
    let jsonrpc_token = crate::jsonrpc::token(config)?;
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let buffer_ms = config.stream.buffer;
    let pool = BufferPool::new(config.server.pool_max_bytes);
    let mut streams = Vec::new();
    for spec in specs {
        let stream_cancel = cancel.child_token();
        let stream = Stream::start(
            spec,
            buffer_ms,
            pool.clone(),
            stream_cancel.clone(),
            &tracker,
        )?;
        streams.push((stream, stream_cancel));
    }
    let datadir = config
        .server
        .datadir
        .clone()
        .unwrap_or_else(crate::state::default_datadir);
    let (store, model) = Store::open(&datadir);
    let state = Arc::new(State::new(store, model));
    tracker.spawn(state.clone().run_persistence(cancel.child_token()));
    let zerocopy_setting = if config.stream.zerocopy {
        "enabled"
    } else {
        "disabled"
    };
    info!("ZeroCopy setting: {zerocopy_setting}");
    let shared = Arc::new(Shared {
        settings: SessionSettings {
            initial_volume: u16::from(config.streaming_client.initial_volume),
            hello_timeout: Duration::from_millis(config.server.hello_timeout_ms),
            // A client that cannot take one message in this long has stopped reading; by
            // then its buffer has run dry anyway.
            send_timeout: Duration::from_millis(u64::from(buffer_ms).max(2000)),
            zerocopy_auto_fallback: config.stream.zerocopy_auto_fallback,
            send_to_muted: config.stream.send_to_muted,
            // At most a tenth of the buffer, so a client keeps ~90 % of its headroom.
            send_batch: Duration::from_millis(u64::from(
                config.stream.send_batch_ms.min(buffer_ms / 10),
            )),
        },
        pool,
        live: LiveSettings::new(config, options.log_reload),
        streams: Streams::new(streams),
        state: state.clone(),
        sessions: DashMap::new(),
        drops: session::PolicyDrops::default(),
        next_session_id: AtomicU64::new(1),
        cancel: cancel.clone(),
    });
    let limit = Arc::new(Semaphore::new(config.server.max_clients));
    let stream_addresses: Vec<SocketAddr> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .collect();
    if let Some(grpc) = options.grpc {
        tracker.spawn(crate::control::serve(
            grpc,
            shared.clone(),
            stream_addresses.clone(),
            options.config_sources,
            cancel.clone(),
        ));
    }
    for stream in shared.streams.iter() {
        stream.report_state_to(state.clone());
    }
    let http_jsonrpc = options.http.is_some() && config.jsonrpc.http_enabled;
    let rpc = (options.jsonrpc.is_some() || http_jsonrpc)
        .then(|| crate::jsonrpc::start(shared.clone(), config, jsonrpc_token, &tracker));
    if let (Some(listener), Some(rpc)) = (options.jsonrpc, &rpc) {
        tracker.spawn(crate::jsonrpc::serve(
            listener,
            rpc.clone(),
            tracker.clone(),
        ));
    }
    if let Some(http) = options.http {
        let rpc = rpc.filter(|_| http_jsonrpc);
        tracker.spawn(crate::http::serve(
            http,
            shared.clone(),
            rpc,
            cancel.clone(),
        ));
    }
    tracker.spawn(crate::diagnostics::run(shared.clone()));
    tracker.spawn(release_startup_pages(cancel.clone()));
    for listener in listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening for stream clients");
        }
        tracker.spawn(accept_loop(
            listener,
            shared.clone(),
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
    // so that it includes the departures of the sessions that just closed.
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    flush_state(&shared).await;
    Ok(())
}

/// The shutdown sequence's state flush: after every session has closed, the persisted state
/// (server.json in `server.datadir`) is written one last time, bounded by [`SHUTDOWN_GRACE`]
/// so a hung disk cannot keep the process from exiting.
async fn flush_state(shared: &Arc<Shared>) {
    let state = shared.state.clone();
    let save = tokio::task::spawn_blocking(move || state.flush());
    match tokio::time::timeout(SHUTDOWN_GRACE, save).await {
        Ok(Ok(Ok(()))) => info!("state flushed"),
        Ok(Ok(Err(err))) => error!(error = %err, "cannot save the state at shutdown"),
        Ok(Err(err)) => error!(error = %err, "state save task failed"),
        Err(_) => warn!("saving the state did not finish within {SHUTDOWN_GRACE:?}"),
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
) {
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = shared.cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(10);
                admit(socket, peer, &shared, &limit, &tracker);
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
    shared: &Arc<Shared>,
    limit: &Arc<Semaphore>,
    tracker: &TaskTracker,
) {
    let Ok(permit) = limit.clone().try_acquire_owned() else {
        shared
            .drops
            .refused_connections
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        warn!(%peer, "connection refused: client limit reached");
        return;
    };
    let shared = shared.clone();
    tracker.spawn(async move {
        session::serve(socket, peer, shared).await;
        drop(permit);
    });
}

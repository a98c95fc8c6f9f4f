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
use tracing::{error, info, warn};

use crate::config::{Config, Origin};
use crate::control::GrpcListener;
use crate::pool::BufferPool;
use crate::session::{self, SessionInfo};
use crate::settings::{LiveSettings, LogReload};
use crate::source::{SourceDefaults, SourceError, SourceSpec};
use crate::stream::{Stream, StreamError};

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
}

/// The settings sessions need, copied out of the config once.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub(crate) initial_volume: u16,
    pub(crate) hello_timeout: Duration,
    pub(crate) send_timeout: Duration,
    pub(crate) zerocopy_auto_fallback: bool,
}

/// State shared by every task of the relay.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) settings: SessionSettings,
    /// Buffers for serialized chunks, shared by every stream.
    pub(crate) pool: BufferPool,
    /// Settings the control API can change while running (buffer, zerocopy, log filter...).
    pub(crate) live: LiveSettings,
    /// Streams in configuration order; the first is the default stream.
    pub(crate) streams: Vec<Stream>,
    pub(crate) sessions: DashMap<u64, Arc<SessionInfo>>,
    pub(crate) next_session_id: AtomicU64,
    pub(crate) cancel: CancellationToken,
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

fn listen(addr: SocketAddr) -> std::io::Result<TcpListener> {
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
    let cancel = CancellationToken::new();
    let tracker = TaskTracker::new();
    let buffer_ms = config.stream.buffer;
    let pool = BufferPool::new(config.server.pool_max_bytes);
    let mut streams = Vec::new();
    for spec in specs {
        streams.push(Stream::start(
            spec,
            buffer_ms,
            pool.clone(),
            cancel.child_token(),
            &tracker,
        )?);
    }
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
        },
        pool,
        live: LiveSettings::new(config, options.log_reload),
        streams,
        sessions: DashMap::new(),
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
    tracker.spawn(crate::diagnostics::run(shared.clone()));
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
    cancel.cancel();
    tracker.close();
    if tokio::time::timeout(SHUTDOWN_GRACE, tracker.wait())
        .await
        .is_err()
    {
        warn!("some tasks did not stop within {SHUTDOWN_GRACE:?}");
    }
    Ok(())
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
        warn!(%peer, "connection refused: client limit reached");
        return;
    };
    let shared = shared.clone();
    tracker.spawn(async move {
        session::serve(socket, peer, shared).await;
        drop(permit);
    });
}

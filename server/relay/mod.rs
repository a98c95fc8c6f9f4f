//! The relay core: one handle ([`Relay`]) over the streams, the session registry, the
//! clients-and-groups state, the buffer pool and the live settings, with the operations every
//! front end shares: the change path ([`Relay::change`]), client sync, adding and removing
//! streams, and the stats [`Snapshot`].
//!
//! Nothing here knows a listener or a wire format of a control API: gRPC, JSON-RPC, HTTP and
//! the periodic log are front ends over this handle (`run` starts them).

mod changes;
mod snapshot;
mod streams;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

pub(crate) use snapshot::{PluginView, SessionView, Snapshot, StreamView, UpstreamView};
pub(crate) use streams::{AddStreamError, RemoveStreamError};

use crate::config::Config;
use crate::image_cache::ImageCache;
use crate::plugin::{PluginEnv, REQUEST_TIMEOUT, RESTART_BACKOFF};
use crate::pool::BufferPool;
use crate::session::{self, SessionEnv, SessionRegistry};
use crate::settings::{LiveSettings, LogReload};
use crate::source::{SourceDefaults, SourceSpec};
use crate::state::{Event, State, Store};
use crate::stream::{Stream, StreamError, StreamList};

/// How long the final state save may take at shutdown.
const FLUSH_GRACE: Duration = Duration::from_secs(5);

/// Counters kept by front ends that belong in the relay's one snapshot.
#[derive(Debug, Default)]
pub(crate) struct FrontEndCounters {
    /// JSON-RPC connections dropped because they stopped reading their notifications.
    pub(crate) jsonrpc_slow_disconnects: AtomicU64,
}

/// The relay core; one per process, shared by every task as `Arc<Relay>`.
#[derive(Debug)]
pub(crate) struct Relay {
    /// Live settings (buffer, zerocopy, send timing, log filter).
    pub(crate) settings: Arc<LiveSettings>,
    /// Buffers for serialized chunks, shared by every stream.
    pub(crate) pool: BufferPool,
    /// Streams in configuration order, then those added at run time; the first is the
    /// default stream.
    pub(crate) streams: Arc<StreamList>,
    /// Clients and groups, persisted in the data dir.
    pub(crate) state: Arc<State>,
    /// Every live session, and the counters that outlive them.
    pub(crate) sessions: Arc<SessionRegistry>,
    /// Counters front ends keep on the relay's behalf.
    pub(crate) counters: FrontEndCounters,
    /// Cover art stream plugins sent, served over HTTP.
    pub(crate) images: Arc<ImageCache>,
    /// What stream plugins are told, and where their cover art goes.
    plugins: Arc<PluginEnv>,
    /// `stream.plugin_dir`: where plugins of streams added at run time must live.
    plugin_dir: PathBuf,
    /// `[stream]` defaults for source URIs of streams added at run time.
    source_defaults: SourceDefaults,
    /// `jsonrpc.add_stream_schemes`: what a control API may start.
    add_stream_schemes: Vec<String>,
    /// Fires at shutdown.
    pub(crate) cancel: CancellationToken,
    /// Where the relay's tasks run, so shutdown can wait for them.
    tracker: TaskTracker,
    session_env: Arc<SessionEnv>,
    started_at: SystemTime,
    started: Instant,
    /// The latest snapshot, reused by callers that accept one up to a given age.
    latest: Mutex<Option<Arc<Snapshot>>>,
}

impl Relay {
    /// Starts every configured stream and opens the state; tasks run on `tracker` until
    /// `cancel` fires. `http_port` is the HTTP listener's port as bound (stream plugins are
    /// told it, cover art is served there).
    ///
    /// # Errors
    ///
    /// A stream whose source, encoder or plugin cannot start.
    pub(crate) fn start(
        config: &Config,
        specs: Vec<SourceSpec>,
        log_reload: Option<LogReload>,
        http_port: u16,
        cancel: CancellationToken,
        tracker: TaskTracker,
    ) -> Result<Arc<Self>, StreamError> {
        let settings = Arc::new(LiveSettings::new(config, log_reload));
        let pool = BufferPool::new(config.server.pool_max_bytes);
        let images = Arc::new(ImageCache::default());
        let plugins = Arc::new(plugin_env(config, http_port, images.clone()));
        let mut streams: Vec<(Stream, CancellationToken)> = Vec::new();
        for spec in specs {
            let stream_cancel = cancel.child_token();
            // A meta stream's inputs are the streams started before it.
            let earlier: Vec<Stream> = streams.iter().map(|(s, _)| s.clone()).collect();
            let live = settings.clone();
            let started = Stream::start(
                spec,
                Arc::new(move || live.buffer_ms()),
                pool.clone(),
                &plugins,
                &earlier,
                stream_cancel.clone(),
                &tracker,
            );
            match started {
                Ok(stream) => streams.push((stream, stream_cancel)),
                Err(err) => {
                    // Those already running stop with it (their plugins, their feeders).
                    for (_, cancel) in &streams {
                        cancel.cancel();
                    }
                    return Err(err);
                }
            }
        }
        let datadir = config
            .server
            .datadir
            .clone()
            .unwrap_or_else(crate::state::default_datadir);
        let (store, model) = Store::open(&datadir);
        let state = Arc::new(State::new(store, model));
        tracker.spawn(state.clone().run_persistence(cancel.child_token()));
        let streams = Arc::new(StreamList::new(streams));
        let sessions = Arc::new(SessionRegistry::default());
        let session_env = Arc::new(SessionEnv {
            settings: settings.clone(),
            streams: streams.clone(),
            state: state.clone(),
            registry: sessions.clone(),
            cancel: cancel.clone(),
        });
        let relay = Arc::new(Self {
            settings,
            pool,
            streams,
            state,
            sessions,
            counters: FrontEndCounters::default(),
            images,
            plugins,
            plugin_dir: config.stream.plugin_dir.clone(),
            source_defaults: config.source_defaults(),
            add_stream_schemes: config.jsonrpc.schemes(),
            cancel,
            tracker,
            session_env,
            started_at: SystemTime::now(),
            started: Instant::now(),
            latest: Mutex::new(None),
        });
        for stream in relay.streams.iter() {
            relay.announce_changes(&stream);
        }
        Ok(relay)
    }

    /// The stream with this id.
    pub(crate) fn stream(&self, name: &str) -> Option<Stream> {
        self.streams.get(name)
    }

    /// When the relay started.
    pub(crate) fn started_at(&self) -> SystemTime {
        self.started_at
    }

    /// How long the relay has run.
    pub(crate) fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// Sets up one stream client connection; the future it returns serves it to its end,
    /// holding `slot` (the client limit) until then.
    pub(crate) fn serve_session(
        &self,
        socket: TcpStream,
        peer: SocketAddr,
        slot: tokio::sync::OwnedSemaphorePermit,
    ) -> impl std::future::Future<Output = ()> + Send + 'static {
        session::serve(socket, peer, self.session_env.clone(), slot)
    }

    /// Forwards the stream's idle/playing changes (`Stream.OnUpdate`) and property changes
    /// (`Stream.OnProperties`) to the state's events, until the stream ends or the relay
    /// stops.
    fn announce_changes(&self, stream: &Stream) {
        let mut playing = stream.watch_playing();
        let mut properties = stream.control().subscribe();
        let state = self.state.clone();
        let name = stream.name().to_owned();
        let cancel = self.cancel.clone();
        let stopped = stream.stopped();
        self.tracker.spawn(async move {
            tokio::pin!(stopped);
            loop {
                let event = tokio::select! {
                    () = cancel.cancelled() => return,
                    () = &mut stopped => return,
                    changed = playing.changed() => match changed {
                        Ok(()) => Event::StreamState(name.clone()),
                        Err(_) => return, // the stream is gone
                    },
                    changed = properties.changed() => match changed {
                        Ok(()) => Event::StreamProperties(name.clone()),
                        Err(_) => return,
                    },
                };
                state.announce(event, None);
            }
        });
    }

    /// Saves the state one last time (shutdown), off the runtime's workers and bounded, so a
    /// hung disk cannot keep the process from exiting.
    pub(crate) async fn flush_state(&self) {
        let state = self.state.clone();
        let save = tokio::task::spawn_blocking(move || state.flush());
        match tokio::time::timeout(FLUSH_GRACE, save).await {
            Ok(Ok(Ok(()))) => info!("state flushed"),
            Ok(Ok(Err(err))) => error!(error = %err, "cannot save the state at shutdown"),
            Ok(Err(err)) => error!(error = %err, "state save task failed"),
            Err(_) => warn!("saving the state did not finish within {FLUSH_GRACE:?}"),
        }
    }
}

/// What stream plugins are told (snapserver's `--snapcast-host` is `http.host`, with
/// `<hostname>` replaced) and the base of cover art URLs (`http.url_prefix`, or
/// `http://<host>:<port>`).
fn plugin_env(config: &Config, http_port: u16, images: Arc<ImageCache>) -> PluginEnv {
    let host = match config.http.host.trim() {
        "" | "<hostname>" => crate::host::name(),
        host => host.replace("<hostname>", &crate::host::name()),
    };
    let prefix = config.http.url_prefix.trim().trim_end_matches('/');
    let art_url_base = if prefix.is_empty() {
        format!("http://{host}:{http_port}")
    } else {
        prefix.replace("<hostname>", &host)
    };
    PluginEnv {
        http_enabled: config.http.enabled,
        http_host: host,
        http_port,
        art_url_base,
        images,
        request_timeout: REQUEST_TIMEOUT,
        restart_backoff: RESTART_BACKOFF,
    }
}

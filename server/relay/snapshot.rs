//! One snapshot of the relay's figures, the only place they are computed: gRPC converts it
//! to protobuf, `/metrics` renders it as Prometheus text, the periodic log diffs two of them.
//!
//! Counters are monotonic since start everywhere (closed sessions' figures stay in the
//! totals, per-stream late/dropped counters live on the stream), so every consumer sees the
//! same meaning. Secrets in source URIs are redacted here, once, for every output.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use super::Relay;
use crate::net::SendMode;
use crate::pool::PoolStats;
use crate::properties::Properties;
use crate::session::{PolicyDropCounts, SessionInfo, SessionTotals};
use crate::stream::Stream;

/// The relay's figures at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    /// When it was taken.
    pub(crate) taken_at: SystemTime,
    /// When the relay started.
    pub(crate) started_at: SystemTime,
    /// How long the relay had run.
    pub(crate) uptime: Duration,
    /// Stream client connections accepted since start.
    pub(crate) connections_accepted: u64,
    /// Per-session counters summed over every session since start.
    pub(crate) totals: SessionTotals,
    /// Sessions ended and connections refused by policy since start.
    pub(crate) policy_drops: PolicyDropCounts,
    /// JSON-RPC connections dropped for not reading their notifications, since start.
    pub(crate) jsonrpc_slow_disconnects: u64,
    /// Live sessions, by id.
    pub(crate) sessions: Vec<SessionView>,
    /// Streams, in list order.
    pub(crate) streams: Vec<StreamView>,
    /// The buffer pool.
    pub(crate) pool: PoolStats,
    /// Cover art cached for stream plugins: (images, bytes).
    pub(crate) cover_art: (usize, usize),
}

/// One live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionView {
    /// Server-unique session number.
    pub(crate) id: u64,
    /// Remote address.
    pub(crate) peer: SocketAddr,
    /// When the connection was accepted.
    pub(crate) connected_at: SystemTime,
    /// Its counters since it connected.
    pub(crate) figures: SessionTotals,
    /// Control messages waiting for its writer.
    pub(crate) queue_depth: usize,
    /// How its socket sends now.
    pub(crate) send_mode: SendMode,
    /// Latest time-sync request: server receive time minus client send time, µs.
    pub(crate) last_time_offset_us: i64,
    /// When the latest time-sync request arrived, µs since the epoch (0: none yet).
    pub(crate) last_time_at_us: i64,
    /// Who the client is, once it said Hello.
    pub(crate) client: Option<ClientView>,
}

/// The client behind a session, from its Hello and the state.
#[derive(Debug, Clone, Default)]
pub(crate) struct ClientView {
    /// Unique client id.
    pub(crate) client_id: String,
    /// The Hello's host id (its MAC when it sent no id).
    pub(crate) host_id: String,
    /// Host name from the Hello.
    pub(crate) host_name: String,
    /// Name set by the user (state).
    pub(crate) name: String,
    /// Volume, percent (state).
    pub(crate) volume_percent: u16,
    /// Muted (state).
    pub(crate) muted: bool,
    /// Extra latency, ms (state).
    pub(crate) latency_ms: i32,
    /// Client software name, version, OS and architecture from the Hello.
    pub(crate) client_name: String,
    /// Client software version.
    pub(crate) client_version: String,
    /// Operating system.
    pub(crate) os: String,
    /// CPU architecture.
    pub(crate) arch: String,
    /// Stream it plays.
    pub(crate) stream: String,
    /// That stream's codec.
    pub(crate) codec: String,
}

/// One stream.
#[derive(Debug, Clone)]
pub(crate) struct StreamView {
    /// Stream id.
    pub(crate) name: String,
    /// Source URI with secrets redacted.
    pub(crate) uri: String,
    /// Codec name.
    pub(crate) codec: String,
    /// `rate:bits:channels`.
    pub(crate) sample_format: String,
    /// Whether audio flows.
    pub(crate) playing: bool,
    /// Sessions receiving it now.
    pub(crate) clients: usize,
    /// Chunk duration, ms.
    pub(crate) chunk_ms: u32,
    /// Chunks published.
    pub(crate) chunks: u64,
    /// Message bytes published (once per chunk).
    pub(crate) bytes: u64,
    /// Chunks its sessions skipped as too late (monotonic).
    pub(crate) chunks_late: u64,
    /// Chunks its sessions lost by lagging (monotonic).
    pub(crate) chunks_dropped: u64,
    /// Times its source went idle.
    pub(crate) stalls: u64,
    /// Times its time base was re-based.
    pub(crate) resyncs: u64,
    /// How far ahead of real time its writer keeps its data, µs.
    pub(crate) source_lead_us: i64,
    /// PCM chunks dropped because its encoder was behind.
    pub(crate) encoder_overruns: u64,
    /// Times its input was started again (source process, capture device).
    pub(crate) source_restarts: u64,
    /// Capture overruns of its input (ALSA xruns).
    pub(crate) source_overruns: u64,
    /// Captured frames dropped to catch up with its device.
    pub(crate) source_frames_dropped: u64,
    /// What its player reports (its stream plugin), metadata included.
    pub(crate) properties: Arc<Properties>,
    /// Its stream plugin, when it has one.
    pub(crate) plugin: Option<PluginView>,
    /// Its upstream link, when it relays an upstream server's stream.
    pub(crate) upstream: Option<UpstreamView>,
}

/// A relayed stream's link to its upstream server.
#[derive(Debug, Clone)]
pub(crate) struct UpstreamView {
    /// `host:port` of the upstream.
    pub(crate) address: String,
    /// Connected and through the handshake.
    pub(crate) connected: bool,
    /// Upstream clock minus ours, µs.
    pub(crate) offset_us: i64,
    /// Spread of the offset estimates, µs.
    pub(crate) jitter_us: i64,
    /// Median Time round trip, µs.
    pub(crate) rtt_us: i64,
    /// The upstream's buffer, ms.
    pub(crate) buffer_ms: i64,
    /// Chunks received.
    pub(crate) chunks: u64,
    /// Chunks dropped before the clock was known.
    pub(crate) chunks_dropped: u64,
    /// Chunks that arrived too late to play.
    pub(crate) chunks_late: u64,
    /// Connections after the first.
    pub(crate) reconnects: u64,
}

/// A stream's plugin process.
#[derive(Debug, Clone)]
pub(crate) struct PluginView {
    /// The script as started.
    pub(crate) script: String,
    /// Whether it runs now.
    pub(crate) running: bool,
    /// Times it ended and was started again.
    pub(crate) restarts: u64,
    /// Lines from it that were dropped as not understood.
    pub(crate) bad_lines: u64,
    /// Requests it refused or did not answer in time.
    pub(crate) failed_requests: u64,
}

impl StreamView {
    /// The stream's figures now.
    pub(crate) fn of(stream: &Stream) -> Self {
        let stats = stream.stats();
        let spec = stream.spec();
        let control = stream.control();
        let plugin = control.script().map(|script| {
            let stats = control.stats();
            PluginView {
                script: script.path.display().to_string(),
                running: stats.running.load(Ordering::Relaxed),
                restarts: stats.restarts.load(Ordering::Relaxed),
                bad_lines: stats.bad_lines.load(Ordering::Relaxed),
                failed_requests: stats.failed_requests.load(Ordering::Relaxed),
            }
        });
        Self {
            name: stream.name().to_owned(),
            uri: spec.uri.redacted().to_uri_string(),
            codec: stream.codec().to_owned(),
            sample_format: stream.shown_sample_format().to_string(),
            playing: stats.playing.load(Ordering::Relaxed),
            clients: stream.receivers(),
            chunk_ms: spec.chunk_ms,
            chunks: stats.chunks.load(Ordering::Relaxed),
            bytes: stats.bytes.load(Ordering::Relaxed),
            chunks_late: stats.chunks_late.load(Ordering::Relaxed),
            chunks_dropped: stats.chunks_dropped.load(Ordering::Relaxed),
            stalls: stats.stalls.load(Ordering::Relaxed),
            resyncs: stats.resyncs.load(Ordering::Relaxed),
            source_lead_us: stats.source_lead_us.load(Ordering::Relaxed),
            encoder_overruns: stats.encoder_overruns.load(Ordering::Relaxed),
            source_restarts: stats.source.restarts.load(Ordering::Relaxed),
            source_overruns: stats.source.overruns.load(Ordering::Relaxed),
            source_frames_dropped: stats.source.frames_dropped.load(Ordering::Relaxed),
            properties: control.properties(),
            plugin,
            upstream: stream.upstream().map(|link| {
                let address = match &spec.kind {
                    crate::source::SourceKind::Upstream(upstream) => {
                        format!("{}:{}", upstream.host, upstream.port)
                    }
                    _ => String::new(),
                };
                UpstreamView {
                    address,
                    connected: link.connected.load(Ordering::Relaxed),
                    offset_us: link.offset_us.load(Ordering::Relaxed),
                    jitter_us: link.jitter_us.load(Ordering::Relaxed),
                    rtt_us: link.rtt_us.load(Ordering::Relaxed),
                    buffer_ms: link.buffer_ms.load(Ordering::Relaxed),
                    chunks: link.chunks.load(Ordering::Relaxed),
                    chunks_dropped: link.chunks_dropped.load(Ordering::Relaxed),
                    chunks_late: link.chunks_late.load(Ordering::Relaxed),
                    reconnects: link.reconnects.load(Ordering::Relaxed),
                }
            }),
        }
    }
}

impl Relay {
    /// The relay's figures now.
    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        let (totals, live) = self.sessions.totals();
        let streams: Vec<StreamView> = self.streams.iter().map(|s| StreamView::of(&s)).collect();
        let snapshot = Arc::new(Snapshot {
            taken_at: SystemTime::now(),
            started_at: self.started_at,
            uptime: self.uptime(),
            connections_accepted: self.sessions.accepted(),
            totals,
            policy_drops: self.sessions.drops.counts(),
            jsonrpc_slow_disconnects: self
                .counters
                .jsonrpc_slow_disconnects
                .load(Ordering::Relaxed),
            sessions: live
                .iter()
                .map(|info| self.session_view(info, &streams))
                .collect(),
            streams,
            pool: self.pool.stats(),
            cover_art: self.images.usage(),
        });
        *self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(snapshot.clone());
        snapshot
    }

    /// The latest snapshot if it is at most `max_age` old, else a new one: many watchers on
    /// one interval share one walk over the sessions.
    pub(crate) fn snapshot_within(&self, max_age: Duration) -> Arc<Snapshot> {
        let latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        match latest {
            Some(snapshot) if snapshot.taken_at.elapsed().is_ok_and(|age| age <= max_age) => {
                snapshot
            }
            _ => self.snapshot(),
        }
    }

    /// One session's view now (`GetSession`).
    pub(crate) fn session_view_now(&self, info: &SessionInfo) -> SessionView {
        let streams: Vec<StreamView> = self.streams.iter().map(|s| StreamView::of(&s)).collect();
        self.session_view(info, &streams)
    }

    fn session_view(&self, info: &SessionInfo, streams: &[StreamView]) -> SessionView {
        let stats = &info.stats;
        let client = info.client().map(|client| {
            let codec = streams
                .iter()
                .find(|s| s.name == client.stream)
                .map(|s| s.codec.clone())
                .unwrap_or_default();
            let mut view = ClientView {
                host_id: if client.hello.id.is_empty() {
                    client.hello.mac.clone()
                } else {
                    client.hello.id.clone()
                },
                host_name: client.hello.host_name.clone(),
                client_name: client.hello.client_name.clone(),
                client_version: client.hello.version.clone(),
                os: client.hello.os.clone(),
                arch: client.hello.arch.clone(),
                codec,
                ..ClientView::default()
            };
            if let Some(saved) = self
                .state
                .read(|model| model.client(&client.client_id).cloned())
            {
                view.name = saved.config.name;
                view.volume_percent = saved.config.volume.percent;
                view.muted = saved.config.volume.muted;
                view.latency_ms = saved.config.latency;
            }
            view.client_id = client.client_id;
            view.stream = client.stream;
            view
        });
        SessionView {
            id: info.id,
            peer: info.peer,
            connected_at: info.connected_at,
            figures: SessionTotals::of(info),
            queue_depth: info.queue_depth(),
            send_mode: info.send_stats.mode(),
            last_time_offset_us: stats.last_time_offset_us.load(Ordering::Relaxed),
            last_time_at_us: stats.last_time_at_us.load(Ordering::Relaxed),
            client,
        }
    }
}

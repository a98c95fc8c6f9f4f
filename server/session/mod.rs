//! One stream client connection: the handshake, time sync, and the writer that owns the
//! socket's write side (docs/PROTOCOL.md §2).
//!
//! A session is one task: its reader and writer are two futures raced in one `select!`, so
//! a misbehaving client ends only its own task, with a warning naming the peer.

mod mailbox;
mod reader;
mod registry;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use std::future::Future;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn, Instrument};

pub(crate) use registry::{SessionRegistry, SessionTotals};

use crate::net::SendStats;
use crate::protocol::{DecodeError, Hello, ServerSettings, Tv};
use crate::settings::LiveSettings;
use crate::state::{Event, State};
use crate::stream::{Stream, StreamList};

/// What a session needs from the relay around it: the parts of the relay core below the
/// session layer, so sessions never reach up into the core or a front end.
#[derive(Debug, Clone)]
pub(crate) struct SessionEnv {
    /// Live settings (buffer, zerocopy, send timing).
    pub(crate) settings: Arc<LiveSettings>,
    /// The running streams; the first is the default.
    pub(crate) streams: Arc<StreamList>,
    /// Clients and groups.
    pub(crate) state: Arc<State>,
    /// Every live session.
    pub(crate) registry: Arc<SessionRegistry>,
    /// Fires at shutdown; each session runs under a child token.
    pub(crate) cancel: CancellationToken,
}

/// Non-audio messages queued for a session's writer. They always go before audio.
#[derive(Debug)]
pub(crate) enum Outbound {
    /// Answer a Time request: stamped with the send time by the writer, as late as possible.
    TimeReply {
        /// The request's id, echoed in `id` and `refersTo`.
        request_id: u16,
        /// Server receive time minus the request's `sent`.
        latency: Tv,
    },
    /// The reply to Hello: ServerSettings (refersTo = Hello id), then the stream's
    /// CodecHeader, then its chunks, in exactly that order (§2.1).
    Welcome {
        /// The Hello's id.
        hello_id: u16,
        /// Settings for this client.
        settings: ServerSettings,
        /// The stream to play.
        stream: Stream,
    },
    /// Unsolicited settings after a change (refersTo = 0).
    Settings(ServerSettings),
    /// Play another stream: its CodecHeader, then its chunks, no reconnect (§2.6).
    SwitchStream(Stream),
}

/// Control messages a session may have queued; Time floods wait on the client's socket
/// rather than grow memory.
const OUTBOUND_CAPACITY: usize = 64;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SessionError {
    /// Socket I/O failed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent something that is not a valid message.
    #[error("bad message: {0}")]
    Decode(#[from] DecodeError),
    /// The connection closed in the middle of a message.
    #[error("disconnected mid-message")]
    Truncated,
    /// A client message larger than any client message can be.
    #[error("client message of {size} bytes exceeds the limit of {max}")]
    MessageTooLarge {
        /// Announced size.
        size: usize,
        /// Our limit for client messages.
        max: usize,
    },
    /// No Hello within the configured time.
    #[error("no Hello within {0:?}")]
    HandshakeTimedOut(Duration),
    /// The client stopped reading: one send could not finish in time.
    #[error("send stalled for {0:?}; client is not reading")]
    SendTimedOut(Duration),
    /// The client sent Time requests faster than any snapclient does.
    #[error("time request flood: more than {rate_per_s} per second after the initial burst")]
    TimeFlood {
        /// The sustained rate allowed.
        rate_per_s: u32,
    },
}

/// Sessions and connections the relay ended or refused by policy rather than because the
/// peer left (issue 10), counted server-wide since start so they outlive the sessions;
/// reported in `GetStats` (`AggregateStats.policy_drops`) and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct PolicyDrops {
    /// No Hello within `server.hello_timeout_ms`.
    pub(crate) handshake_timeouts: AtomicU64,
    /// The client stopped reading: one send stalled past the send timeout.
    pub(crate) send_stalls: AtomicU64,
    /// Oversized, unknown, truncated or unparsable client messages.
    pub(crate) bad_messages: AtomicU64,
    /// Connections refused at accept because `server.max_clients` sessions were live.
    pub(crate) refused_connections: AtomicU64,
    /// Time requests faster than the per-session budget.
    pub(crate) time_floods: AtomicU64,
}

/// [`PolicyDrops`] read at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PolicyDropCounts {
    /// No Hello in time.
    pub(crate) handshake_timeouts: u64,
    /// Send stalled past the send timeout.
    pub(crate) send_stalls: u64,
    /// Bad client messages.
    pub(crate) bad_messages: u64,
    /// Connections refused at the client limit.
    pub(crate) refused_connections: u64,
    /// Time request floods.
    pub(crate) time_floods: u64,
}

impl PolicyDrops {
    /// The counters now.
    pub(crate) fn counts(&self) -> PolicyDropCounts {
        PolicyDropCounts {
            handshake_timeouts: self.handshake_timeouts.load(Ordering::Relaxed),
            send_stalls: self.send_stalls.load(Ordering::Relaxed),
            bad_messages: self.bad_messages.load(Ordering::Relaxed),
            refused_connections: self.refused_connections.load(Ordering::Relaxed),
            time_floods: self.time_floods.load(Ordering::Relaxed),
        }
    }

    /// Counts the session's end if it was a policy drop.
    fn record(&self, result: &Result<(), SessionError>) {
        let counter = match result {
            Err(SessionError::HandshakeTimedOut(_)) => &self.handshake_timeouts,
            Err(SessionError::SendTimedOut(_)) => &self.send_stalls,
            Err(SessionError::Decode(_) | SessionError::MessageTooLarge { .. }) => {
                &self.bad_messages
            }
            Err(SessionError::TimeFlood { .. }) => &self.time_floods,
            // A truncated message is a peer that went away mid-write, not a policy decision.
            Ok(()) | Err(SessionError::Io(_) | SessionError::Truncated) => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Per-session counters.
#[derive(Debug, Default)]
pub(crate) struct SessionStats {
    /// Audio chunks written.
    pub(crate) chunks_sent: AtomicU64,
    /// Chunks skipped because they were already too old to play (§2.4).
    pub(crate) chunks_late: AtomicU64,
    /// Chunks lost because the session fell more than the stream's queue behind.
    pub(crate) chunks_dropped: AtomicU64,
    /// Time requests answered.
    pub(crate) time_replies: AtomicU64,
    /// Server receive time minus the client's send time of the latest Time request, µs
    /// (clock offset plus one-way delay): what `snapctl session` shows as time sync.
    pub(crate) last_time_offset_us: AtomicI64,
    /// When the latest Time request arrived, µs since the Unix epoch; 0 before the first.
    pub(crate) last_time_at_us: AtomicI64,
}

/// Who the client is, from its Hello, and what it is playing. Volume, mute, latency and
/// name live in the shared state (`state::Model`), keyed by `client_id`.
#[derive(Debug, Clone)]
pub(crate) struct ClientDetails {
    /// Unique client id (`ID` or `ID#instance`).
    pub(crate) client_id: String,
    /// The Hello as received.
    pub(crate) hello: Hello,
    /// Stream the session plays.
    pub(crate) stream: String,
}

/// A live session as the rest of the server sees it.
#[derive(Debug)]
pub(crate) struct SessionInfo {
    /// Server-unique session number.
    pub(crate) id: u64,
    /// Remote address.
    pub(crate) peer: SocketAddr,
    /// When the connection was accepted.
    pub(crate) connected_at: SystemTime,
    /// Counters.
    pub(crate) stats: SessionStats,
    /// How this session's socket sends: mode and zerocopy counters.
    pub(crate) send_stats: Arc<SendStats>,
    hello_received: AtomicBool,
    /// Client muted or its group muted: no audio is sent unless `send_to_muted`.
    muted: AtomicBool,
    client: Mutex<Option<ClientDetails>>,
    mailbox: mailbox::Mailbox,
    cancel: CancellationToken,
}

impl SessionInfo {
    /// The client's details, once it said Hello.
    pub(crate) fn client(&self) -> Option<ClientDetails> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// The client id from its Hello, once it said Hello.
    pub(crate) fn client_id(&self) -> Option<String> {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(|c| c.client_id.clone())
    }

    /// Whether this session belongs to `client_id` (compared under the lock, no copy).
    pub(crate) fn is_client(&self, client_id: &str) -> bool {
        self.client
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .is_some_and(|c| c.client_id == client_id)
    }

    /// Ends the session.
    pub(crate) fn disconnect(&self) {
        self.cancel.cancel();
    }

    /// Queues new settings for the client; false if the session is gone or congested.
    pub(crate) fn push_settings(&self, settings: ServerSettings) -> bool {
        self.mailbox.try_send(Outbound::Settings(settings)).is_ok()
    }

    /// Control messages waiting for this session's writer.
    pub(crate) fn queue_depth(&self) -> usize {
        self.mailbox.len()
    }

    /// Message bytes the kernel accepted for this client, zerocopy and ordinary together
    /// (derived from the sender's counters rather than kept twice).
    pub(crate) fn bytes_sent(&self) -> u64 {
        let sent = self.send_stats.snapshot();
        sent.zerocopy_bytes + sent.regular_bytes
    }

    /// Whether the client (or its group) is muted.
    pub(crate) fn is_muted(&self) -> bool {
        self.muted.load(Ordering::Relaxed)
    }

    /// Records the client's (or its group's) mute; the writer stops or resumes audio.
    pub(crate) fn set_muted(&self, muted: bool) {
        self.muted.store(muted, Ordering::Relaxed);
    }

    /// Switches the session to `stream` live (its CodecHeader, then its chunks) unless it
    /// plays it already. A session too congested to take a control message is past saving:
    /// it is disconnected.
    pub(crate) fn switch_stream(&self, stream: &Stream) {
        let mut current = None;
        self.update_client(|client| {
            if let Some(client) = client {
                current = Some(std::mem::replace(
                    &mut client.stream,
                    stream.name().to_owned(),
                ));
            }
        });
        if current.is_none_or(|name| name == stream.name()) {
            return;
        }
        if self
            .mailbox
            .try_send(Outbound::SwitchStream(stream.clone()))
            .is_err()
        {
            warn!(
                session = self.id,
                "cannot switch stream: session congested; disconnecting"
            );
            self.disconnect();
        }
    }

    fn update_client(&self, update: impl FnOnce(&mut Option<ClientDetails>)) {
        update(
            &mut self
                .client
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
    }
}

/// The ServerSettings a client of `playback` gets now (on Hello and after every change).
pub(crate) fn server_settings(
    settings: &LiveSettings,
    playback: &crate::state::Playback,
) -> ServerSettings {
    ServerSettings {
        buffer_ms: i32::try_from(settings.buffer_ms()).unwrap_or(i32::MAX),
        latency: playback.latency,
        muted: playback.muted,
        volume: playback.volume,
    }
}

/// Microseconds since the Unix epoch (0 for times before it), the form the control API
/// reports wall-clock times in.
pub(crate) fn unix_micros(time: SystemTime) -> i64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Removes the session from the registry however the task ends.
struct RegistryEntry {
    registry: Arc<SessionRegistry>,
    id: u64,
}

impl Drop for RegistryEntry {
    fn drop(&mut self) {
        self.registry.remove(self.id);
    }
}

/// Sets up one client connection and returns the future that serves it to its end; `slot`
/// (the relay's client limit) is held until then.
///
/// The set-up is done here, not in the future, and the future is spawned as it is: a task
/// stores every argument of an async fn and every future it awaits for its whole life, so
/// this keeps one session's task to what it needs (docs/PERFORMANCE.md, "Memory per
/// client"; `run::tests` guards the size).
pub(crate) fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    env: Arc<SessionEnv>,
    slot: OwnedSemaphorePermit,
) -> impl Future<Output = ()> + Send + 'static {
    // Chunks and time replies are small and latency-sensitive (§2.3).
    if let Err(err) = socket.set_nodelay(true) {
        warn!(%peer, error = %err, "cannot set TCP_NODELAY");
    }
    let id = env.registry.next_id();
    let cancel = env.cancel.child_token();
    let info = Arc::new(SessionInfo {
        id,
        peer,
        connected_at: SystemTime::now(),
        stats: SessionStats::default(),
        send_stats: Arc::new(SendStats::default()),
        hello_received: AtomicBool::new(false),
        muted: AtomicBool::new(false),
        client: Mutex::new(None),
        mailbox: mailbox::Mailbox::new(OUTBOUND_CAPACITY),
        cancel: cancel.clone(),
    });
    env.registry.insert(info.clone());
    let registered = RegistryEntry {
        registry: env.registry.clone(),
        id,
    };
    let span = tracing::info_span!("session", id, %peer);
    let (read_half, write_half) = socket.into_split();
    async move {
        let result = tokio::select! {
            result = reader::run(read_half, &env, &info) => result,
            result = writer::run(write_half, &env, &info) => result,
            () = cancel.cancelled() => Ok(()),
        };
        // Settings pushed from now on are refused rather than queued for nobody.
        info.mailbox.close();
        env.registry.drops.record(&result);
        let details = info.client();
        if let Some(details) = &details {
            // §2.7: only the last session of a client id marks it disconnected.
            if !env.registry.has_other_session(&details.client_id, id) {
                let now = unix_micros(SystemTime::now());
                let _ = env.state.update(
                    |model| {
                        model.depart(&details.client_id, now);
                        Ok::<_, std::convert::Infallible>(())
                    },
                    |()| Some(Event::ClientDisconnected(details.client_id.clone())),
                );
            }
        }
        let client = details.map_or_else(|| "-".to_owned(), |c| c.client_id);
        match result {
            Ok(()) => info!(%client, "client disconnected"),
            Err(err) => warn!(%client, error = %err, "session closed"),
        }
        drop(registered);
        drop(slot);
    }
    .instrument(span)
}

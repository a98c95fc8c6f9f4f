//! The read side of a session (docs/PROTOCOL.md §2): frames in, Time replies and the Welcome
//! queued to the writer.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tracing::{debug, info, warn};

use super::SessionEnv;
use super::{ClientDetails, Outbound, SessionError, SessionInfo};
use crate::clock;
use crate::protocol::Hello;
use crate::protocol::{self, DecodeError, Header, Message, ServerSettings, Tv, HEADER_SIZE};
use crate::state::{model, Event};
use crate::stream::Stream;

/// Clients only send Hello, Time and ClientInfo, all far below this; a larger announced size
/// is hostile or broken, and refusing it caps what one connection can make us allocate.
const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

/// Payload capacity a session keeps between messages: a Time request's or a ClientInfo's.
const STEADY_PAYLOAD: usize = 64;

/// Time requests a client may send back to back: snapclient's 50 quick syncs at connect
/// (§2.3) twice over, so a reconnecting client never comes near it.
const TIME_BURST: f64 = 100.0;

/// Sustained Time requests per second allowed after the burst: snapclient sends one a
/// second (§2.3). A client well above this is flooding, and each request costs a reply
/// write that competes with audio for the same cores, so the session is dropped (issue 10).
const TIME_RATE_PER_S: f64 = 20.0;

/// A token bucket over Time requests: [`TIME_BURST`] tokens, refilled at [`TIME_RATE_PER_S`].
/// It takes the time as an argument and reads no clock, so its rule is tested without one.
struct TimeBudget {
    tokens: f64,
    refilled_at: std::time::Instant,
}

impl TimeBudget {
    fn new(now: std::time::Instant) -> Self {
        Self {
            tokens: TIME_BURST,
            refilled_at: now,
        }
    }

    /// Takes one token for a request arriving at `now`; false when the client has exhausted
    /// its budget.
    fn take(&mut self, now: std::time::Instant) -> bool {
        let earned = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64()
            * TIME_RATE_PER_S;
        self.tokens = (self.tokens + earned).min(TIME_BURST);
        self.refilled_at = self.refilled_at.max(now);
        if self.tokens < 1.0 {
            return false;
        }
        self.tokens -= 1.0;
        true
    }
}

pub(super) async fn run(
    mut socket: OwnedReadHalf,
    env: &SessionEnv,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    let mut payload = Vec::new();
    let mut time_budget = TimeBudget::new(std::time::Instant::now());
    let hello_timeout = env.settings.hello_timeout;
    let hello_by = tokio::time::Instant::now() + hello_timeout;
    loop {
        // A client has `server.hello_timeout_ms` from its connection to say Hello, however
        // it spends them (silence, half a frame, Time requests).
        let frame = if info.hello_received.load(Ordering::Relaxed) {
            read_frame(&mut socket, &mut payload).await
        } else {
            tokio::time::timeout_at(hello_by, read_frame(&mut socket, &mut payload))
                .await
                .map_err(|_| SessionError::HandshakeTimedOut(hello_timeout))?
        };
        let Some(header) = frame? else {
            return Ok(());
        };
        // §2.3: the server stamps its receive time after reading the whole message.
        let received = clock::now();
        let message = Message::decode(&header, &payload)?;
        // Decided without awaiting, so only the reply is kept across the wait for the
        // writer's mailbox, not the decoded message (it is part of every session's task).
        let reply = match message {
            Message::Time(_) => {
                if !time_budget.take(std::time::Instant::now()) {
                    return Err(SessionError::TimeFlood {
                        rate_per_s: TIME_RATE_PER_S as u32,
                    });
                }
                let offset_us = received.as_micros() - header.sent.as_micros();
                info.stats
                    .last_time_offset_us
                    .store(offset_us, Ordering::Relaxed);
                info.stats
                    .last_time_at_us
                    .store(super::unix_micros(SystemTime::now()), Ordering::Relaxed);
                Some(Outbound::TimeReply {
                    request_id: header.id,
                    latency: Tv::from_micros(offset_us),
                })
            }
            Message::Hello(hello) => {
                if info.hello_received.swap(true, Ordering::Relaxed) {
                    warn!("second Hello ignored");
                    None
                } else {
                    let Some(welcome) = accept_hello(env, info, hello, header.id) else {
                        return Ok(());
                    };
                    Some(welcome)
                }
            }
            Message::ClientInfo(report) => {
                debug!(
                    volume = report.volume,
                    muted = report.muted,
                    "client mixer changed"
                );
                // §2.5: recorded and announced, not echoed back as ServerSettings.
                if let Some(client) = info.client() {
                    let id = client.client_id;
                    let recorded = env.state.update(
                        |model| {
                            model.set_volume(
                                &id,
                                Some(i64::from(report.volume.min(100))),
                                Some(report.muted),
                            )
                        },
                        |_| Some(Event::ClientVolume(id.clone())),
                    );
                    if let Err(err) = recorded {
                        debug!(error = %err, "client mixer report not recorded");
                    }
                }
                None
            }
            other => {
                // Upstream skips types it does not act on (§1.3); so do we.
                debug!(kind = ?other.message_type(), "ignored message from client");
                None
            }
        };
        if let Some(reply) = reply {
            if info.mailbox.send(reply).await.is_err() {
                return Ok(());
            }
        }
        // The Hello (a few hundred bytes) is the largest message a client sends; every
        // connected client would keep that much capacity for Time requests of 8 bytes.
        payload.shrink_to(STEADY_PAYLOAD);
    }
}

/// Reads one message into `payload`. `Ok(None)` is a clean close between messages.
async fn read_frame(
    socket: &mut OwnedReadHalf,
    payload: &mut Vec<u8>,
) -> Result<Option<Header>, SessionError> {
    let mut head = [0u8; HEADER_SIZE];
    let mut filled = 0;
    while filled < HEADER_SIZE {
        match socket.read(&mut head[filled..]).await? {
            0 if filled == 0 => return Ok(None),
            0 => return Err(SessionError::Truncated),
            n => filled += n,
        }
    }
    let header = protocol::check_incoming(&head, MAX_CLIENT_PAYLOAD).map_err(|err| match err {
        DecodeError::MessageTooLarge { size, max } => SessionError::MessageTooLarge { size, max },
        other => other.into(),
    })?;
    payload.resize(header.size as usize, 0);
    socket
        .read_exact(payload)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::UnexpectedEof => SessionError::Truncated,
            _ => SessionError::Io(err),
        })?;
    Ok(Some(header))
}

/// Takes the client's Hello: records it and returns the Welcome for the writer; `None`
/// when the relay has no stream to play.
fn accept_hello(
    env: &SessionEnv,
    info: &SessionInfo,
    hello: Hello,
    hello_id: u16,
) -> Option<Outbound> {
    let (settings, stream, client_id) = welcome(env, info, &hello)?;
    info!(
        client = %client_id,
        version = %hello.version,
        host = %hello.host_name,
        stream = %stream.name(),
        "client connected"
    );
    info.update_client(|client| {
        *client = Some(ClientDetails {
            client_id,
            hello,
            stream: stream.name().to_owned(),
        });
    });
    Some(Outbound::Welcome {
        hello_id,
        settings,
        stream,
    })
}

/// Records the client's arrival in the state and works out what it gets: its settings, its
/// group's stream (the default stream when that one is gone), and its id.
fn welcome(
    env: &SessionEnv,
    info: &SessionInfo,
    hello: &Hello,
) -> Option<(ServerSettings, Stream, String)> {
    let default = env.streams.first()?;
    let host_id = if hello.id.is_empty() {
        &hello.mac
    } else {
        &hello.id
    };
    let client_id = model::client_id(host_id, hello.instance);
    let arrival = model::Arrival {
        id: client_id.clone(),
        host: model::Host {
            arch: hello.arch.clone(),
            ip: info.peer.ip().to_string(),
            mac: hello.mac.clone(),
            name: hello.host_name.clone(),
            os: hello.os.clone(),
        },
        snapclient: model::Snapclient {
            name: hello.client_name.clone(),
            protocol_version: hello.protocol_version,
            version: hello.version.clone(),
        },
        instance: hello.instance,
        now_us: super::unix_micros(SystemTime::now()),
    };
    let names = env.streams.names();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    let new_group = env
        .state
        .update(
            |model| {
                Ok::<_, std::convert::Infallible>(model.arrive(
                    arrival,
                    &names,
                    default.name(),
                    env.settings.initial_volume,
                ))
            },
            |new_group| {
                Some(Event::ClientConnected {
                    id: client_id.clone(),
                    new_group: *new_group,
                })
            },
        )
        .unwrap_or_else(|never| match never {});
    let playback = env.state.read(|model| model.playback(&client_id))?;
    let stream = env
        .streams
        .get(&playback.stream_id)
        .unwrap_or(default)
        .clone();
    info.muted.store(playback.muted, Ordering::Relaxed);
    debug!(client = %client_id, new_group, "client recorded");
    Some((
        super::server_settings(&env.settings, &playback),
        stream,
        client_id,
    ))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn time_requests_get_a_burst_then_the_sustained_rate() {
        let start = Instant::now();
        let mut budget = TimeBudget::new(start);
        // snapclient's quick syncs at connect, twice over, back to back.
        for request in 0..TIME_BURST as usize {
            assert!(budget.take(start), "request {request} of the burst");
        }
        assert!(!budget.take(start), "one past the burst");
        // A second later the sustained rate has earned its tokens back, no more.
        let later = start + Duration::from_secs(1);
        for request in 0..TIME_RATE_PER_S as usize {
            assert!(budget.take(later), "request {request} a second later");
        }
        assert!(!budget.take(later), "one past the sustained rate");
    }

    #[test]
    fn a_quiet_client_earns_back_no_more_than_the_burst() {
        let start = Instant::now();
        let mut budget = TimeBudget::new(start);
        assert!(budget.take(start));
        let much_later = start + Duration::from_secs(3600);
        let allowed = (0..1000).filter(|_| budget.take(much_later)).count();
        assert_eq!(allowed, TIME_BURST as usize);
    }

    #[test]
    fn a_time_before_the_last_one_earns_nothing_and_does_not_panic() {
        let start = Instant::now() + Duration::from_secs(10);
        let mut budget = TimeBudget::new(start);
        for _ in 0..TIME_BURST as usize {
            assert!(budget.take(start));
        }
        assert!(!budget.take(start - Duration::from_secs(5)));
    }
}

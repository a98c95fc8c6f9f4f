//! The read side of a session: frames in, Time replies and the Welcome queued to the writer.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

use super::{ClientDetails, Outbound, SessionError, SessionInfo};
use crate::clock;
use crate::protocol::{Header, Message, ServerSettings, Tv, HEADER_SIZE};
use crate::server::Shared;

/// Clients only send Hello, Time and ClientInfo, all far below this; a larger announced size
/// is hostile or broken, and refusing it caps what one connection can make us allocate.
const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

pub(super) async fn run(
    mut socket: OwnedReadHalf,
    outbound: mpsc::Sender<Outbound>,
    shared: &Shared,
    info: &SessionInfo,
) -> Result<(), SessionError> {
    let mut payload = Vec::new();
    loop {
        let Some(header) = read_frame(&mut socket, &mut payload).await? else {
            return Ok(());
        };
        // §2.3: the server stamps its receive time after reading the whole message.
        let received = clock::now();
        let message = Message::decode(&header, &payload)?;
        let closed = match message {
            Message::Time(_) => {
                let offset_us = received.as_micros() - header.sent.as_micros();
                info.stats
                    .last_time_offset_us
                    .store(offset_us, Ordering::Relaxed);
                info.stats
                    .last_time_at_us
                    .store(super::unix_micros(SystemTime::now()), Ordering::Relaxed);
                outbound
                    .send(Outbound::TimeReply {
                        request_id: header.id,
                        latency: Tv::from_micros(offset_us),
                    })
                    .await
                    .is_err()
            }
            Message::Hello(hello) => {
                if info.hello_received.swap(true, Ordering::Relaxed) {
                    warn!("second Hello ignored");
                    continue;
                }
                let client_id = hello.client_id();
                let Some(stream) = shared.streams.first().cloned() else {
                    return Ok(());
                };
                info!(
                    client = %client_id,
                    version = %hello.version,
                    host = %hello.host_name,
                    stream = %stream.name(),
                    "client connected"
                );
                let settings = ServerSettings {
                    buffer_ms: shared.live.buffer_ms() as i32,
                    latency: 0,
                    muted: false,
                    volume: shared.settings.initial_volume,
                };
                info.update_client(|client| {
                    *client = Some(ClientDetails {
                        client_id,
                        hello,
                        volume: settings.volume,
                        muted: settings.muted,
                        stream: stream.name().to_owned(),
                        latency_ms: 0,
                        name: None,
                    });
                });
                outbound
                    .send(Outbound::Welcome {
                        hello_id: header.id,
                        settings,
                        stream,
                    })
                    .await
                    .is_err()
            }
            Message::ClientInfo(report) => {
                debug!(
                    volume = report.volume,
                    muted = report.muted,
                    "client mixer changed"
                );
                info.update_client(|client| {
                    if let Some(client) = client {
                        client.volume = report.volume;
                        client.muted = report.muted;
                    }
                });
                false
            }
            other => {
                // Upstream skips types it does not act on (§1.3); so do we.
                debug!(kind = ?other.message_type(), "ignored message from client");
                false
            }
        };
        if closed {
            return Ok(());
        }
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
    let header = Header::decode(&head)?;
    header.message_type()?;
    let size = header.size as usize;
    if size > MAX_CLIENT_PAYLOAD {
        return Err(SessionError::MessageTooLarge {
            size,
            max: MAX_CLIENT_PAYLOAD,
        });
    }
    payload.resize(size, 0);
    socket
        .read_exact(payload)
        .await
        .map_err(|err| match err.kind() {
            std::io::ErrorKind::UnexpectedEof => SessionError::Truncated,
            _ => SessionError::Io(err),
        })?;
    Ok(Some(header))
}

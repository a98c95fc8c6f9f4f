//! JSON-RPC over raw TCP (docs/JSONRPC.md §1): requests split on `\n` (a trailing `\r`
//! stripped, empty lines skipped), every message sent ends in `\r\n` — python-snapcast only
//! parses input that ends in `\r\n` (§7.1).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::protocol::{self, RpcError, MAX_REQUEST_BYTES};
use super::{Answers, JsonRpcListener, Rpc};

/// Serves every listener until the relay stops.
pub(crate) async fn serve(listener: JsonRpcListener, rpc: Arc<Rpc>, tracker: TaskTracker) {
    let mut loops = tokio::task::JoinSet::new();
    for listener in listener.listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, "listening for JSON-RPC");
        }
        loops.spawn(accept_loop(listener, rpc.clone(), tracker.clone()));
    }
    while loops.join_next().await.is_some() {}
}

async fn accept_loop(listener: TcpListener, rpc: Arc<Rpc>, tracker: TaskTracker) {
    let cancel = rpc.relay.cancel.clone();
    let mut backoff = Duration::from_millis(10);
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((socket, peer)) => {
                backoff = Duration::from_millis(10);
                let rpc = rpc.clone();
                tracker.spawn(async move { connection(socket, peer, &rpc).await });
            }
            Err(err) => {
                // EMFILE and friends: back off and keep serving those already connected.
                error!(error = %err, "JSON-RPC accept failed; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}

/// One control connection: reads requests and answers them (in order, but for those that
/// wait for a stream plugin: see [`Answers`]), and writes the notifications the hub queues
/// for it. One task, no timers: an idle connection sleeps in `select!` on its socket and its
/// queue.
async fn connection(mut socket: TcpStream, peer: SocketAddr, rpc: &Arc<Rpc>) {
    let _ = socket.set_nodelay(true);
    let mut registration = rpc.hub.register(rpc.open());
    let id = registration.caller.id;
    debug!(%peer, connection = id, "JSON-RPC control client connected");
    let cancel = rpc.relay.cancel.clone();
    let mut input = BytesMut::with_capacity(1024);
    let mut answers = Answers::default();
    let reason = loop {
        // Every branch is cancel safe: `read_buf` keeps partial input in `input`, `recv`
        // loses nothing.
        tokio::select! {
            () = cancel.cancelled() => break "shutdown",
            () = registration.kicked.cancelled() => break "too slow reading notifications",
            notification = registration.notifications.recv() => {
                let Some(text) = notification else { break "hub closed" };
                if send(&mut socket, &text).await.is_err() {
                    break "write failed";
                }
            }
            reply = answers.finished() => {
                if send(&mut socket, &reply).await.is_err() {
                    break "write failed";
                }
            }
            read = socket.read_buf(&mut input) => match read {
                Ok(0) | Err(_) => break "closed",
                Ok(_) => {
                    let caller = &registration.caller;
                    match answer_lines(&mut input, rpc, caller, &mut answers, &mut socket).await {
                        Ok(()) => {}
                        Err(reason) => break reason,
                    }
                }
            }
        }
    };
    debug!(%peer, connection = id, reason, "JSON-RPC control client gone");
}

/// Answers every complete line in `input`; a line longer than the limit gets a parse error
/// and ends the connection (there is no way to find where the next request starts).
async fn answer_lines(
    input: &mut BytesMut,
    rpc: &Arc<Rpc>,
    caller: &super::Caller,
    answers: &mut Answers,
    socket: &mut TcpStream,
) -> Result<(), &'static str> {
    while let Some(end) = input.iter().position(|b| *b == b'\n') {
        let line = input.split_to(end + 1);
        let mut line = &line[..end];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let reply = match std::str::from_utf8(line) {
            Ok(text) => answers.answer(rpc, text.to_owned(), caller).await,
            Err(_) => Some(
                protocol::error(serde_json::Value::Null, &RpcError::parse("not UTF-8")).to_string(),
            ),
        };
        if let Some(reply) = reply {
            send(socket, &reply).await.map_err(|_| "write failed")?;
        }
    }
    if input.len() > MAX_REQUEST_BYTES {
        warn!(
            connection = caller.id,
            limit = MAX_REQUEST_BYTES,
            "JSON-RPC request line too long; closing the connection"
        );
        let err = RpcError::parse(format!("request longer than {MAX_REQUEST_BYTES} bytes"));
        let _ = send(
            socket,
            &protocol::error(serde_json::Value::Null, &err).to_string(),
        )
        .await;
        input.advance(input.len());
        return Err("request too long");
    }
    Ok(())
}

/// How long one message may take to write. A client that does not read for this long is
/// dropped; the timer exists only while a write is pending, never on an idle connection.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

async fn send(socket: &mut TcpStream, text: &str) -> std::io::Result<()> {
    // One write per message: the text and its `\r\n` in one buffer, so a message never
    // leaves in two segments that a client might parse separately.
    let mut line = Vec::with_capacity(text.len() + 2);
    line.extend_from_slice(text.as_bytes());
    line.extend_from_slice(b"\r\n");
    tokio::time::timeout(WRITE_TIMEOUT, socket.write_all(&line))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))?
}

//! What the relay asks of its upstream through the upstream's JSON-RPC API (TCP, which
//! snaprelay and snapserver both speak): play the chosen stream to us, and keep us at volume
//! 100, unmuted, so the upstream never withholds audio from us (a muted client gets none)
//! and volume is applied once, by the clients at the edge. Both are held: a change made on
//! the upstream (Snapweb, Home Assistant) is set back.
//!
//! The same connection makes the relayed stream look like the upstream's: the properties of
//! the stream the upstream plays to us (now playing, playback status, what can be
//! controlled) are shown on ours as they change, and `Stream.Control` / `Stream.SetProperty`
//! on ours are carried out on it, with the upstream's answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::{FramedRead, LinesCodec};
use tracing::{debug, info, warn};

use super::{art, Upstream};
use crate::plugin::{wire, Request, StreamControl};
use crate::properties::ControlError;

/// How long a request may take, and how long to wait between attempts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(5);
/// How often a quiet JSON-RPC link is asked something, to notice it is gone.
const PROBE_INTERVAL: Duration = Duration::from_secs(15);
/// A cover that could not be fetched is tried again after this long, if still shown.
const ART_RETRY: Duration = Duration::from_secs(60);
/// The longest line taken from the upstream: a status of thousands of clients fits, an
/// upstream that never ends a line does not grow us without bound.
const MAX_LINE: usize = 16 * 1024 * 1024;

/// The upstream's JSON-RPC messages, one per line.
type Lines = FramedRead<OwnedReadHalf, LinesCodec>;

/// The next line, or why there is none.
async fn next_line(lines: &mut Lines) -> Result<String, String> {
    match lines.next().await {
        Some(Ok(line)) => Ok(line),
        Some(Err(err)) => Err(format!("the upstream's JSON-RPC: {err}")),
        None => Err("the upstream's JSON-RPC closed".to_owned()),
    }
}

/// Holds the stream choice and the volume, mirrors the stream's properties and carries out
/// `requests`, for as long as it is polled (its connection's lifetime).
pub(super) async fn hold(
    name: &str,
    upstream: &Upstream,
    id: &str,
    control: &Arc<StreamControl>,
    requests: &mut mpsc::Receiver<Request>,
) {
    let mut warned = false;
    loop {
        if let Err(err) = session(upstream, id, control, requests).await {
            if warned {
                debug!(stream = %name, error = %err, "upstream control");
            } else {
                warn!(stream = %name, port = upstream.control_port, error = %err, "cannot hold the stream and volume on the upstream's JSON-RPC; retrying");
                warned = true;
            }
        }
        control.forget_upstream();
        let retry = tokio::time::sleep(RETRY);
        tokio::pin!(retry);
        loop {
            tokio::select! {
                () = &mut retry => break,
                Some(request) = requests.recv() => refuse(request),
            }
        }
    }
}

/// Answers a request that cannot reach the upstream now.
pub(super) fn refuse(request: Request) {
    let _ = request.reply.send(Err(ControlError::Unavailable(
        "its upstream is not connected",
    )));
}

/// What an answer from the upstream is for.
enum Pending {
    /// Our own holding calls: a refusal ends the session.
    Hold,
    /// A `Server.GetStatus`, for the properties of the stream we now get.
    Status,
    /// A control request from one of our callers.
    Caller(oneshot::Sender<Result<(), ControlError>>),
}

/// The writing side of the JSON-RPC connection and what is waiting for an answer, since
/// when.
struct Rpc {
    write: OwnedWriteHalf,
    next_id: u64,
    pending: HashMap<u64, (Pending, Instant)>,
}

impl Rpc {
    async fn call(&mut self, method: &str, params: Value, pending: Pending) -> Result<(), String> {
        let id = self.next_id;
        self.next_id += 1;
        let request = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        self.pending.insert(id, (pending, Instant::now()));
        let line = format!("{request}\r\n");
        tokio::time::timeout(REQUEST_TIMEOUT, self.write.write_all(line.as_bytes()))
            .await
            .map_err(|_| {
                format!("the upstream's JSON-RPC took no request for {REQUEST_TIMEOUT:?}")
            })?
            .map_err(|err| err.to_string())
    }

    /// The answer to request `id`, if it is one of ours.
    fn answered(&mut self, id: u64) -> Option<Pending> {
        self.pending.remove(&id).map(|(pending, _)| pending)
    }

    /// Whether a request has waited longer than an answer may take: the link is gone even
    /// if TCP has not noticed (a firewall that drops an idle connection).
    fn overdue(&self) -> bool {
        self.pending
            .values()
            .any(|(_, since)| since.elapsed() > REQUEST_TIMEOUT)
    }
}

/// What this relay holds on the upstream and sees of it.
struct Held<'a> {
    upstream: &'a Upstream,
    id: &'a str,
    control: &'a Arc<StreamControl>,
    /// The upstream group we are in.
    group: String,
    /// The upstream stream that group plays (to us).
    playing: Option<String>,
    /// The cover being fetched or last tried: one at a time, ended with the session.
    art: Option<ArtFetch>,
}

/// A cover fetch.
struct ArtFetch {
    /// The upstream's URL of the image.
    url: String,
    started: Instant,
    _task: AbortOnDrop,
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Held<'_> {
    /// Sets volume 100, unmuted, and the chosen stream.
    async fn apply(&self, rpc: &mut Rpc) -> Result<(), String> {
        rpc.call(
            "Client.SetVolume",
            json!({"id": self.id, "volume": {"muted": false, "percent": 100}}),
            Pending::Hold,
        )
        .await?;
        if let Some(stream) = &self.upstream.stream {
            rpc.call(
                "Group.SetStream",
                json!({"id": self.group, "stream_id": stream}),
                Pending::Hold,
            )
            .await?;
        }
        Ok(())
    }

    /// Takes a server object (a `Server.GetStatus` result's or a `Server.OnUpdate`'s
    /// `server`): our group, its stream and that stream's properties. Whether we are in a
    /// group now that differs from the one we held.
    fn take_status(&mut self, server: &Value) -> bool {
        let Some((group, playing)) = group_of(server, self.id) else {
            // Not (or no longer) a client there: no stream of theirs to show.
            self.playing = None;
            self.show(&Value::Null);
            return false;
        };
        let moved = group != self.group;
        self.group = group;
        self.playing = playing;
        let properties = self.playing.as_ref().map_or(Value::Null, |stream| {
            server["streams"]
                .as_array()
                .and_then(|streams| streams.iter().find(|s| s["id"] == stream.as_str()))
                .map_or(Value::Null, |s| s["properties"].clone())
        });
        self.show(&properties);
        moved
    }

    /// Whether `stream` (an id in a notification) is the one the upstream plays to us.
    fn plays(&self, stream: &Value) -> bool {
        self.playing
            .as_deref()
            .is_some_and(|playing| stream == playing)
    }

    /// Shows the upstream stream's properties on ours (none: an empty player), and fetches a
    /// cover we do not serve yet: once per image, again after [`ART_RETRY`] if that failed.
    fn show(&mut self, properties: &Value) {
        if !properties.is_object() {
            self.control.forget_upstream();
            self.art = None;
            return;
        }
        let Some(url) = self.control.mirror_upstream(properties) else {
            return;
        };
        if self
            .art
            .as_ref()
            .is_some_and(|art| art.url == url && art.started.elapsed() < ART_RETRY)
        {
            return; // being fetched, or just failed
        }
        let control = self.control.clone();
        let host = self.upstream.host.clone();
        let fetching = url.clone();
        let task = tokio::spawn(async move {
            let served = art::fetch(&host, &fetching)
                .await
                .and_then(|(image, extension)| {
                    control.serve_upstream_art(&fetching, image, &extension)
                });
            if let Err(err) = served {
                debug!(url = %fetching, error = %err, "the upstream's cover art is shown at its own URL");
            }
        });
        self.art = Some(ArtFetch {
            url,
            started: Instant::now(),
            _task: AbortOnDrop(task),
        });
    }

    /// The upstream call for one of our callers' requests, on the stream it plays to us.
    fn forward(&self, request: &Request) -> Result<(&'static str, Value), ControlError> {
        let stream = self.playing.as_deref().ok_or(ControlError::Unavailable(
            "its upstream plays no stream to us",
        ))?;
        let params = &request.params;
        if request.method == wire::CONTROL {
            let mut call = json!({"id": stream, "command": params["command"]});
            if let Some(extra) = params.get("params") {
                call["params"] = extra.clone();
            }
            return Ok(("Stream.Control", call));
        }
        let (property, value) = params
            .as_object()
            .and_then(|change| change.iter().next())
            .ok_or_else(|| ControlError::InvalidParams("no property to set".to_owned()))?;
        Ok((
            "Stream.SetProperty",
            json!({"id": stream, "property": property, "value": value}),
        ))
    }
}

/// One JSON-RPC connection: sets what is wanted, then watches notifications, sets it back
/// whenever someone changes it, follows the stream's properties and forwards requests.
async fn session(
    upstream: &Upstream,
    id: &str,
    control: &Arc<StreamControl>,
    requests: &mut mpsc::Receiver<Request>,
) -> Result<(), String> {
    let socket = tokio::time::timeout(
        REQUEST_TIMEOUT,
        TcpStream::connect((upstream.host.as_str(), upstream.control_port)),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|err| err.to_string())?;
    let (read, write) = socket.into_split();
    let mut lines = FramedRead::new(read, LinesCodec::new_with_max_length(MAX_LINE));
    let mut rpc = Rpc {
        write,
        next_id: 1,
        pending: HashMap::new(),
    };
    let mut held = Held {
        upstream,
        id,
        control,
        group: String::new(),
        playing: None,
        art: None,
    };
    // Wait until the upstream knows us (our Hello may still be on its way).
    loop {
        rpc.call("Server.GetStatus", json!({}), Pending::Hold)
            .await?;
        rpc.pending.clear(); // its answer is read right here
        let status = answer(&mut lines).await?;
        held.take_status(&status["server"]);
        if !held.group.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    held.apply(&mut rpc).await?;
    info!(upstream = %upstream.host, client = id, stream = ?upstream.stream, "holding the stream and volume 100 on the upstream");
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_probe = Instant::now();
    loop {
        let line = tokio::select! {
            line = next_line(&mut lines) => line?,
            Some(request) = requests.recv() => {
                if request.reply.is_closed() {
                    continue; // its caller gave up: a late `next` would surprise everyone
                }
                match held.forward(&request) {
                    Ok((method, params)) => rpc.call(method, params, Pending::Caller(request.reply)).await?,
                    Err(err) => { let _ = request.reply.send(Err(err)); }
                }
                continue;
            }
            _ = tick.tick() => {
                if rpc.overdue() {
                    return Err(format!("no answer from the upstream within {REQUEST_TIMEOUT:?}"));
                }
                // A quiet link is asked something now and then, so a dead one is noticed.
                if last_probe.elapsed() >= PROBE_INTERVAL {
                    last_probe = Instant::now();
                    rpc.call("Server.GetRPCVersion", json!({}), Pending::Hold).await?;
                }
                continue;
            }
        };
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(answered) = message.get("id").and_then(Value::as_u64) {
            match rpc.answered(answered) {
                Some(Pending::Caller(reply)) => {
                    let _ = reply.send(outcome(&message));
                }
                Some(Pending::Status) => {
                    let moved = held.take_status(&message["result"]["server"]);
                    if moved {
                        held.apply(&mut rpc).await?;
                    }
                }
                Some(Pending::Hold) => {
                    if let Some(error) = message.get("error") {
                        return Err(format!("the upstream refused: {error}"));
                    }
                }
                None => {}
            }
            continue;
        }
        let params = &message["params"];
        let changed = match message["method"].as_str() {
            Some("Client.OnVolumeChanged") => {
                params["id"] == id
                    && (params["volume"]["muted"] != false || params["volume"]["percent"] != 100)
            }
            Some("Group.OnStreamChanged") if params["id"] == held.group.as_str() => {
                // Our group plays another stream now: its properties are needed.
                held.playing = params["stream_id"].as_str().map(str::to_owned);
                rpc.call("Server.GetStatus", json!({}), Pending::Status)
                    .await?;
                upstream
                    .stream
                    .as_deref()
                    .is_some_and(|stream| params["stream_id"] != stream)
            }
            // Groups may have been rearranged: follow ours.
            Some("Server.OnUpdate") => held.take_status(&params["server"]),
            Some("Stream.OnProperties") if held.plays(&params["id"]) => {
                held.show(&params["properties"]);
                false
            }
            Some("Stream.OnUpdate") if held.plays(&params["id"]) => {
                held.show(&params["stream"]["properties"]);
                false
            }
            _ => false,
        };
        if changed {
            held.apply(&mut rpc).await?;
        }
    }
}

/// What the upstream answered to a forwarded request, as our callers see it: its error
/// code, and its words (`data` when it gave some).
fn outcome(message: &Value) -> Result<(), ControlError> {
    let Some(error) = message.get("error") else {
        return Ok(());
    };
    let code = error["code"].as_i64().unwrap_or(-32603);
    let words = match &error["data"] {
        Value::String(data) => data.clone(),
        Value::Null => error["message"].as_str().unwrap_or("refused").to_owned(),
        other => other.to_string(),
    };
    if code == -32602 {
        return Err(ControlError::InvalidParams(words));
    }
    Err(ControlError::Plugin {
        code,
        message: words,
    })
}

/// The next answer (a message with an id), skipping notifications.
async fn answer(lines: &mut Lines) -> Result<Value, String> {
    loop {
        let line = tokio::time::timeout(REQUEST_TIMEOUT, next_line(lines))
            .await
            .map_err(|_| "no answer".to_owned())??;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if message.get("id").is_some_and(|id| !id.is_null()) {
            if let Some(error) = message.get("error") {
                return Err(format!("the upstream refused: {error}"));
            }
            return Ok(message["result"].clone());
        }
    }
}

/// The group holding client `id` in a `Server.GetStatus` result's `server`, and the stream
/// that group plays.
fn group_of(server: &Value, id: &str) -> Option<(String, Option<String>)> {
    server["groups"].as_array()?.iter().find_map(|group| {
        group["clients"]
            .as_array()?
            .iter()
            .any(|client| client["id"] == id)
            .then(|| {
                let stream = group["stream_id"].as_str().map(str::to_owned);
                group["id"].as_str().map(|g| (g.to_owned(), stream))
            })
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_group_and_its_stream_are_found_in_a_status() {
        // A server object as GetStatus and Server.OnUpdate carry it: its own `server` key
        // holds the host, not the groups.
        let server = json!({"groups": [
            {"id": "g1", "stream_id": "A", "clients": [{"id": "kitchen"}]},
            {"id": "g2", "clients": [{"id": "other"}, {"id": "snaprelay-a-b"}]},
        ], "server": {"host": {"name": "core"}}, "streams": []});
        assert_eq!(
            group_of(&server, "snaprelay-a-b"),
            Some(("g2".to_owned(), None))
        );
        assert_eq!(
            group_of(&server, "kitchen"),
            Some(("g1".to_owned(), Some("A".to_owned())))
        );
        assert_eq!(group_of(&server, "nobody"), None);
        assert_eq!(group_of(&json!({"groups": 3}), "kitchen"), None);
    }

    #[test]
    fn upstream_refusals_keep_their_code_and_words() {
        assert_eq!(outcome(&json!({"id": 1, "result": "ok"})), Ok(()));
        assert_eq!(
            outcome(
                &json!({"id": 1, "error": {"code": 2, "message": "Stream property canGoNext is false"}})
            ),
            Err(ControlError::Plugin {
                code: 2,
                message: "Stream property canGoNext is false".to_owned()
            })
        );
        assert_eq!(
            outcome(
                &json!({"id": 1, "error": {"code": -32602, "message": "Invalid params", "data": "Command 'jump' not supported"}})
            ),
            Err(ControlError::InvalidParams(
                "Command 'jump' not supported".to_owned()
            ))
        );
        assert_eq!(
            outcome(&json!({"id": 1, "error": "garbage"})),
            Err(ControlError::Plugin {
                code: -32603,
                message: "refused".to_owned()
            })
        );
    }
}

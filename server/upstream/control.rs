//! What the relay asks of its upstream through the upstream's JSON-RPC API (TCP, which
//! snaprelay and snapserver both speak): play the chosen stream to us, and keep us at volume
//! 100, unmuted, so the upstream never withholds audio from us (a muted client gets none)
//! and volume is applied once, by the clients at the edge. Both are held: a change made on
//! the upstream (Snapweb, Home Assistant) is set back.

use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Upstream;

/// How long a request may take, and how long to wait between attempts.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(5);

/// Holds the stream choice and the volume until `cancel` fires (the connection ended).
pub(super) async fn hold(name: String, upstream: Upstream, id: String, cancel: CancellationToken) {
    let mut warned = false;
    loop {
        let result = tokio::select! {
            () = cancel.cancelled() => return,
            result = session(&upstream, &id) => result,
        };
        if let Err(err) = result {
            if warned {
                debug!(stream = %name, error = %err, "upstream control");
            } else {
                warn!(stream = %name, port = upstream.control_port, error = %err, "cannot hold the stream and volume on the upstream's JSON-RPC; retrying");
                warned = true;
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RETRY) => {}
        }
    }
}

/// One JSON-RPC connection: sets what is wanted, then watches notifications and sets it
/// back whenever someone changes it.
async fn session(upstream: &Upstream, id: &str) -> Result<(), String> {
    let socket = tokio::time::timeout(
        REQUEST_TIMEOUT,
        TcpStream::connect((upstream.host.as_str(), upstream.control_port)),
    )
    .await
    .map_err(|_| "connect timed out".to_owned())?
    .map_err(|err| err.to_string())?;
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut next_id = 1u64;
    let mut call = |method: &str, params: Value| {
        let request = json!({"jsonrpc": "2.0", "id": next_id, "method": method, "params": params});
        next_id += 1;
        format!("{request}\r\n")
    };
    // Wait until the upstream knows us (our Hello may still be on its way).
    let group = loop {
        write
            .write_all(call("Server.GetStatus", json!({})).as_bytes())
            .await
            .map_err(|err| err.to_string())?;
        let status = answer(&mut lines).await?;
        if let Some(group) = group_of(&status, id) {
            break group;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut wanted_group = group;
    let mut apply = |group: &str| {
        let mut requests = call(
            "Client.SetVolume",
            json!({"id": id, "volume": {"muted": false, "percent": 100}}),
        );
        if let Some(stream) = &upstream.stream {
            requests.push_str(&call(
                "Group.SetStream",
                json!({"id": group, "stream_id": stream}),
            ));
        }
        requests
    };
    write
        .write_all(apply(&wanted_group).as_bytes())
        .await
        .map_err(|err| err.to_string())?;
    info!(upstream = %upstream.host, client = id, stream = ?upstream.stream, "holding the stream and volume 100 on the upstream");
    loop {
        let line = lines
            .next_line()
            .await
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "the upstream's JSON-RPC closed".to_owned())?;
        let Ok(message) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if let Some(error) = message.get("error") {
            return Err(format!("the upstream refused: {error}"));
        }
        let params = &message["params"];
        let changed = match message["method"].as_str() {
            Some("Client.OnVolumeChanged") => {
                params["id"] == id
                    && (params["volume"]["muted"] != false || params["volume"]["percent"] != 100)
            }
            Some("Group.OnStreamChanged") => {
                params["id"] == wanted_group.as_str()
                    && upstream
                        .stream
                        .as_deref()
                        .is_some_and(|stream| params["stream_id"] != stream)
            }
            Some("Server.OnUpdate") => {
                // Groups may have been rearranged: follow ours.
                match group_of(&params["server"], id) {
                    Some(group) if group != wanted_group => {
                        wanted_group = group;
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        };
        if changed {
            write
                .write_all(apply(&wanted_group).as_bytes())
                .await
                .map_err(|err| err.to_string())?;
        }
    }
}

/// The next answer (a message with an id), skipping notifications.
async fn answer(
    lines: &mut tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
) -> Result<Value, String> {
    loop {
        let line = tokio::time::timeout(REQUEST_TIMEOUT, lines.next_line())
            .await
            .map_err(|_| "no answer".to_owned())?
            .map_err(|err| err.to_string())?
            .ok_or_else(|| "the upstream's JSON-RPC closed".to_owned())?;
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

/// The id of the group holding client `id` in a `Server.GetStatus` result (or its `server`).
fn group_of(status: &Value, id: &str) -> Option<String> {
    let server = if status.get("server").is_some() {
        &status["server"]
    } else {
        status
    };
    server["groups"].as_array()?.iter().find_map(|group| {
        group["clients"]
            .as_array()?
            .iter()
            .any(|client| client["id"] == id)
            .then(|| group["id"].as_str().map(str::to_owned))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_group_is_found_in_a_status() {
        let status = json!({"server": {"groups": [
            {"id": "g1", "clients": [{"id": "kitchen"}]},
            {"id": "g2", "clients": [{"id": "other"}, {"id": "snaprelay-a-b"}]},
        ]}});
        assert_eq!(group_of(&status, "snaprelay-a-b").as_deref(), Some("g2"));
        assert_eq!(
            group_of(&status["server"], "kitchen").as_deref(),
            Some("g1")
        );
        assert_eq!(group_of(&status, "nobody"), None);
    }
}

//! The JSON objects the API reports (docs/JSONRPC.md §3): Server, Stream and the host
//! facts. Clients and groups serialize straight from the state model, whose serde objects are
//! snapserver's. Secrets in source URIs never leave here unmasked.

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};

use crate::relay::Relay;
use crate::stream::Stream;

/// The snapserver version reported to control clients. python-snapcast (Home Assistant, Music
/// Assistant) parses it with PEP 440 and refuses Stream.Control/SetProperty below 0.26
/// (§7.1), so it is a plain snapserver release number; snaprelay's own
/// version goes in `snaprelayVersion` next to it.
pub const SNAPSERVER_VERSION: &str = "0.34.0";

/// `{"groups", "server", "streams"}`: the value of `result.server` (Server.GetStatus,
/// Group.SetClients, Server.DeleteClient) and `params.server` (Server.OnUpdate).
pub(crate) fn server(relay: &Relay) -> Value {
    let groups = relay
        .state
        .read(|model| serde_json::to_value(&model.groups).unwrap_or(Value::Array(Vec::new())));
    let streams: Vec<Value> = relay
        .streams
        .iter()
        .filter(crate::stream::Stream::playable)
        .map(|s| stream(&s))
        .collect();
    json!({
        "groups": groups,
        "server": {
            "host": host(),
            "snapserver": {
                "controlProtocolVersion": 1,
                "name": "Snapserver",
                "protocolVersion": 1,
                "snaprelayVersion": env!("CARGO_PKG_VERSION"),
                "version": SNAPSERVER_VERSION,
            },
        },
        "streams": streams,
    })
}

/// The Stream object: id, status, uri (secrets masked) and its properties (what its stream
/// plugin reports; without one, the six `can*` flags, all false).
pub(crate) fn stream(stream: &Stream) -> Value {
    let status = if stream.stats().playing.load(Ordering::Relaxed) {
        "playing"
    } else {
        "idle"
    };
    let uri = stream.spec().uri.redacted();
    let query: Map<String, Value> = uri
        .query
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "id": stream.name(),
        "properties": stream.control().properties().to_json(),
        "status": status,
        "uri": {
            "fragment": uri.fragment,
            "host": uri.host,
            "path": uri.path,
            "query": query,
            "raw": uri.to_uri_string(),
            "scheme": uri.scheme,
        },
    })
}

/// `server.host`: this machine as snapserver describes it (ip and mac empty, as upstream).
fn host() -> Value {
    json!({
        "arch": std::env::consts::ARCH,
        "ip": "",
        "mac": "",
        "name": crate::host::name(),
        "os": std::env::consts::OS,
    })
}

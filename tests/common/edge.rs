//! Edge relays for the relay-chaining tests: started against an upstream, and read back
//! through their `/metrics`.

use std::time::Duration;

use serde_json::{json, Value};

use super::relay::Relay;

/// An edge relaying the upstream at `port` as stream `name`; `control` is the upstream's
/// JSON-RPC port when it is not the default (tests put a proxy in front of the stream port).
pub fn edge_named(name: &str, port: u16, control: Option<u16>, extra: &[&str]) -> Relay {
    let dir = tempfile::tempdir().unwrap();
    let control = control.map_or_else(String::new, |p| format!("&control_port={p}"));
    let source = format!("snapcast://127.0.0.1:{port}?name={name}{control}");
    let mut args = vec!["--source", source.as_str()];
    args.extend_from_slice(extra);
    Relay::start_in(dir, &args)
}

/// The group and the client status of the edge relaying stream `Edge` from `core`, as the
/// core's `Server.GetStatus` shows them.
pub fn edge_on(core: &Relay) -> Option<(String, Value)> {
    let status = super::jsonrpc_call(core.jsonrpc_addr(), "Server.GetStatus", json!({}));
    status["result"]["server"]["groups"]
        .as_array()?
        .iter()
        .find_map(|group| {
            let client = group["clients"].as_array()?.iter().find(|c| {
                c["id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("snaprelay-") && id.ends_with("-Edge"))
            })?;
            Some((group["id"].as_str()?.to_owned(), client.clone()))
        })
}

/// The relayed stream Edge's sample of the `/metrics` family `family`.
pub fn edge_metric(relay: &Relay, family: &str) -> Option<f64> {
    stream_metric(relay, "Edge", family)
}

/// Stream `stream`'s sample of the `/metrics` family `family`.
pub fn stream_metric(relay: &Relay, stream: &str, family: &str) -> Option<f64> {
    let body = super::http_get(relay.http_addr(), "/metrics").body;
    let text = String::from_utf8_lossy(&body).into_owned();
    let prefix = format!("{family}{{stream=\"{stream}\",");
    text.lines()
        .find(|l| l.starts_with(&prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Waits up to `timeout` until the edge's stream Edge shows its upstream link `connected`
/// or not.
pub fn wait_for_link(edge: &Relay, connected: bool, timeout: Duration) {
    let (what, shown) = if connected {
        ("the edge connected to its upstream", 1.0)
    } else {
        ("the edge noticing its upstream is gone", 0.0)
    };
    super::eventually(
        timeout,
        what,
        || edge.log(),
        || (edge_metric(edge, "snaprelay_upstream_connected") == Some(shown)).then_some(()),
    );
}

/// Waits up to `timeout` until the edge's stream Edge has reconnected at least once and is
/// connected.
pub fn wait_for_reconnect(edge: &Relay, timeout: Duration) {
    super::eventually(
        timeout,
        "the edge reconnected",
        || edge.log(),
        || {
            (edge_metric(edge, "snaprelay_upstream_reconnects_total").is_some_and(|n| n >= 1.0)
                && edge_metric(edge, "snaprelay_upstream_connected") == Some(1.0))
            .then_some(())
        },
    );
}

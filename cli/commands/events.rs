//! `snapctl events`: every change as it happens (WatchEvents), one line each; with `--json`
//! one object per line (`{"type":"event","event":"<kind>","at_us":…,"data":…}`).

use snaprelay::pb;
use snaprelay::pb::event::Kind;

use super::streams::{now_playing, player_state, position};
use super::time_utc;
use crate::client::Control;
use crate::exit::CliError;
use crate::output::Output;

pub async fn run(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let mut events = control
        .watch_events(pb::WatchEventsRequest {})
        .await?
        .into_inner();
    // One Ctrl-C future for the whole run, so a press while a line is printed is not lost.
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    loop {
        let next = tokio::select! {
            next = events.message() => next?,
            _ = &mut interrupted => return Err(CliError::Interrupted),
        };
        let Some(event) = next else {
            return Ok(()); // the server ended the stream (shutting down)
        };
        let Some(kind) = &event.kind else { continue };
        if out.json {
            out.json(&serde_json::json!({
                "type": "event",
                "event": name(kind),
                "at_us": event.at_us,
                "data": data(kind)?,
            }))?;
        } else {
            out.line(&format!(
                "{} {:<17} {}",
                time_utc(event.at_us),
                name(kind),
                describe(kind)
            ))?;
        }
    }
}

/// The event's name, as its protobuf field.
fn name(kind: &Kind) -> &'static str {
    match kind {
        Kind::ClientConnected(_) => "client_connected",
        Kind::ClientDisconnected(_) => "client_disconnected",
        Kind::ClientVolume(_) => "client_volume",
        Kind::ClientLatency(_) => "client_latency",
        Kind::ClientName(_) => "client_name",
        Kind::GroupMute(_) => "group_mute",
        Kind::GroupStream(_) => "group_stream",
        Kind::GroupName(_) => "group_name",
        Kind::Topology(_) => "topology",
        Kind::StreamState(_) => "stream_state",
        Kind::StreamProperties(_) => "stream_properties",
        Kind::StreamAdded(_) => "stream_added",
        Kind::StreamRemoved(_) => "stream_removed",
        Kind::Missed(_) => "missed",
    }
}

fn data(kind: &Kind) -> Result<serde_json::Value, CliError> {
    let value = match kind {
        Kind::ClientConnected(c)
        | Kind::ClientDisconnected(c)
        | Kind::ClientVolume(c)
        | Kind::ClientLatency(c)
        | Kind::ClientName(c) => serde_json::to_value(c),
        Kind::GroupMute(g) | Kind::GroupStream(g) | Kind::GroupName(g) => serde_json::to_value(g),
        Kind::Topology(t) => serde_json::to_value(t),
        Kind::StreamState(s) | Kind::StreamAdded(s) => serde_json::to_value(s),
        Kind::StreamProperties(p) => serde_json::to_value(p),
        Kind::StreamRemoved(name) => Ok(serde_json::json!({"stream": name})),
        Kind::Missed(missed) => Ok(serde_json::json!({"missed": missed})),
    };
    value.map_err(|err| CliError::Output(std::io::Error::other(err)))
}

/// One human line.
fn describe(kind: &Kind) -> String {
    let yes_no = |on: bool| if on { "yes" } else { "no" };
    match kind {
        Kind::ClientConnected(c) => format!("{} ({}) in group {}", c.client_id, c.ip, c.group_id),
        Kind::ClientDisconnected(c) => c.client_id.clone(),
        Kind::ClientVolume(c) => format!(
            "{} volume {}% muted {}",
            c.client_id,
            c.volume_percent,
            yes_no(c.muted)
        ),
        Kind::ClientLatency(c) => format!("{} latency {} ms", c.client_id, c.latency_ms),
        Kind::ClientName(c) => format!("{} name '{}'", c.client_id, c.name),
        Kind::GroupMute(g) => format!("{} muted {}", g.group_id, yes_no(g.muted)),
        Kind::GroupStream(g) => format!("{} stream {}", g.group_id, g.stream),
        Kind::GroupName(g) => format!("{} name '{}'", g.group_id, g.name),
        Kind::Topology(t) => format!("{} group(s)", t.groups.len()),
        Kind::StreamState(s) => format!(
            "{} {}",
            s.name,
            match s.state() {
                pb::StreamState::Playing => "playing",
                _ => "idle",
            }
        ),
        Kind::StreamProperties(p) => {
            let properties = p.properties.clone().unwrap_or_default();
            format!(
                "{} {} {} {}",
                p.stream,
                player_state(&properties),
                now_playing(&properties),
                position(&properties)
            )
        }
        Kind::StreamAdded(s) => format!("{} {}", s.name, s.uri),
        Kind::StreamRemoved(name) => name.clone(),
        Kind::Missed(missed) => format!("{missed} event(s) missed: re-read the state"),
    }
}

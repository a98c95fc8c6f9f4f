//! `snapctl sessions`, `session ID` and `disconnect ID`.

use snaprelay::pb;

use super::time_utc;
use crate::client::Control;
use crate::exit::CliError;
use crate::output::{bytes, fields, Output, Table};

pub async fn list(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let sessions = control
        .list_sessions(pb::ListSessionsRequest {})
        .await?
        .into_inner()
        .sessions;
    if out.json {
        return out.json(&serde_json::json!({ "sessions": sessions }));
    }
    if sessions.is_empty() {
        return out.line("no sessions");
    }
    let mut table = Table::new(&[
        "ID", "CLIENT", "NAME", "VERSION", "ADDRESS", "STREAM", "SENT", "CHUNKS", "QUEUE", "LATE",
        "DROPPED", "MODE", "VOLUME",
    ]);
    for s in &sessions {
        table.row(vec![
            s.session_id.to_string(),
            or_dash(&s.client_id),
            or_dash(&s.name),
            or_dash(&s.client_version),
            s.address.clone(),
            or_dash(&s.stream),
            bytes(s.bytes_sent),
            s.chunks_sent.to_string(),
            s.queue_depth.to_string(),
            s.chunks_late.to_string(),
            s.chunks_dropped.to_string(),
            mode(s),
            volume(s),
        ]);
    }
    out.line(&table.render())
}

pub async fn show(control: &mut Control, out: &Output, id: u64) -> Result<(), CliError> {
    let s = control
        .get_session(pb::GetSessionRequest { session_id: id })
        .await?
        .into_inner();
    if out.json {
        return out.json(&s);
    }
    let zerocopy = s.zerocopy.unwrap_or_default();
    let sync = s.time_sync.unwrap_or_default();
    out.line(&fields(&[
        ("session", s.session_id.to_string()),
        ("client", or_dash(&s.client_id)),
        ("name", or_dash(&s.name)),
        (
            "host",
            format!("{} ({})", or_dash(&s.host_name), or_dash(&s.host_id)),
        ),
        (
            "client version",
            format!("{} {} {} {}", s.client_name, s.client_version, s.os, s.arch),
        ),
        ("address", s.address.clone()),
        ("connected since", time_utc(s.connected_at_us)),
        (
            "stream",
            format!("{} ({})", or_dash(&s.stream), or_dash(&s.codec)),
        ),
        ("volume", volume(&s)),
        ("latency", format!("{} ms", s.latency_ms)),
        (
            "sent",
            format!("{} in {} chunks", bytes(s.bytes_sent), s.chunks_sent),
        ),
        ("queue depth", s.queue_depth.to_string()),
        ("late chunks", s.chunks_late.to_string()),
        ("dropped chunks", s.chunks_dropped.to_string()),
        ("send mode", mode(&s)),
        (
            "zerocopy",
            format!(
                "{} attempts, {} ok, {} bytes, {} regular ({}), {} outstanding, {:.1}%",
                zerocopy.attempts,
                zerocopy.successful,
                zerocopy.bytes,
                zerocopy.regular_sends,
                bytes(zerocopy.regular_bytes),
                zerocopy.outstanding,
                zerocopy.zerocopy_percent
            ),
        ),
        (
            "time sync",
            format!(
                "{} replies, last offset {} us at {}",
                sync.replies,
                sync.last_offset_us,
                time_utc(sync.last_at_us)
            ),
        ),
    ]))
}

pub async fn disconnect(control: &mut Control, out: &Output, id: u64) -> Result<(), CliError> {
    control
        .disconnect_session(pb::DisconnectSessionRequest { session_id: id })
        .await?;
    if out.json {
        return out.json(&serde_json::json!({ "disconnected": id }));
    }
    out.line(&format!("disconnected session {id}"))
}

pub fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".to_owned()
    } else {
        text.to_owned()
    }
}

fn mode(s: &pb::Session) -> String {
    match s.send_mode() {
        pb::SendMode::Zerocopy => "zerocopy",
        _ => "regular",
    }
    .to_owned()
}

fn volume(s: &pb::Session) -> String {
    if s.muted {
        format!("{}% (muted)", s.volume_percent)
    } else {
        format!("{}%", s.volume_percent)
    }
}

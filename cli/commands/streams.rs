//! `snapctl streams`.

use snaprelay::pb;

use crate::client::Control;
use crate::exit::CliError;
use crate::output::{bytes, with_id, Output, Table};

pub async fn run(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let streams = control
        .list_streams(pb::ListStreamsRequest {})
        .await?
        .into_inner()
        .streams;
    if out.json {
        // Lists print an array of objects with an `id` (the stream name), like groups.
        let items = streams
            .iter()
            .map(|s| with_id(&s.name, s))
            .collect::<Result<Vec<_>, _>>()?;
        return out.json(&items);
    }
    out.line(&table(&streams))
}

/// The streams table, shared with `stats`.
pub fn table(streams: &[pb::StreamStats]) -> String {
    let mut table = Table::new(&[
        "STREAM",
        "STATE",
        "PLAYER",
        "NOW PLAYING",
        "POSITION",
        "CODEC",
        "FORMAT",
        "CLIENTS",
        "CHUNKS",
        "BYTES",
        "LATE",
        "DROPPED",
        "STALLS",
        "OVERRUNS",
        "UPSTREAM",
        "URI",
    ]);
    for s in streams {
        let properties = s.properties.clone().unwrap_or_default();
        table.row(vec![
            s.name.clone(),
            match s.state() {
                pb::StreamState::Playing => "playing",
                _ => "idle",
            }
            .to_owned(),
            player_state(&properties),
            now_playing(&properties),
            position(&properties),
            s.codec.clone(),
            s.sample_format.clone(),
            s.clients.to_string(),
            s.chunks.to_string(),
            bytes(s.bytes),
            s.chunks_late.to_string(),
            s.chunks_dropped.to_string(),
            s.stalls.to_string(),
            s.encoder_overruns.to_string(),
            upstream(s.upstream.as_ref()),
            s.uri.clone(),
        ]);
    }
    table.render()
}

/// A relayed stream's link in a few words (`-` for other streams): connected with its round
/// trip, or reconnecting.
fn upstream(link: Option<&pb::UpstreamLink>) -> String {
    match link {
        None => "-".to_owned(),
        Some(link) if link.connected => {
            format!("ok, rtt {:.1} ms", link.rtt_us as f64 / 1000.0)
        }
        Some(link) => format!("reconnecting ({})", link.reconnects),
    }
}

/// The player's playback status, or `-` when it reports none.
pub fn player_state(properties: &pb::StreamProperties) -> String {
    match properties.playback_status() {
        pb::PlaybackStatus::Playing => "playing",
        pb::PlaybackStatus::Paused => "paused",
        pb::PlaybackStatus::Stopped => "stopped",
        pb::PlaybackStatus::Unspecified => "-",
    }
    .to_owned()
}

/// `artist – title` (whichever is known), or `-`.
pub fn now_playing(properties: &pb::StreamProperties) -> String {
    let Some(metadata) = &properties.metadata else {
        return "-".to_owned();
    };
    let artist = metadata.artist.join(", ");
    match (artist.is_empty(), metadata.title.is_empty()) {
        (false, false) => format!("{artist} – {}", metadata.title),
        (false, true) => artist,
        (true, false) => metadata.title.clone(),
        (true, true) => "-".to_owned(),
    }
}

/// `m:ss` into the track, with `/ m:ss` of its length when known; `-` when unknown.
pub fn position(properties: &pb::StreamProperties) -> String {
    let clock = |seconds: f64| {
        let seconds = seconds.max(0.0).round() as u64;
        format!("{}:{:02}", seconds / 60, seconds % 60)
    };
    let duration = properties.metadata.as_ref().and_then(|m| m.duration_s);
    match (properties.position_s, duration) {
        (Some(at), Some(length)) => format!("{} / {}", clock(at), clock(length)),
        (Some(at), None) => clock(at),
        (None, _) => "-".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_playing_and_position_read_like_a_player() {
        let mut properties = pb::StreamProperties {
            position_s: Some(75.4),
            playback_status: pb::PlaybackStatus::Paused as i32,
            metadata: Some(pb::StreamMetadata {
                title: "Song".into(),
                artist: vec!["A".into(), "B".into()],
                duration_s: Some(200.0),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(now_playing(&properties), "A, B – Song");
        assert_eq!(position(&properties), "1:15 / 3:20");
        assert_eq!(player_state(&properties), "paused");
        properties.metadata = None;
        properties.position_s = None;
        assert_eq!(now_playing(&properties), "-");
        assert_eq!(position(&properties), "-");
    }
}

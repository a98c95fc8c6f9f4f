//! `snapctl stream …`: one stream's details, its player's controls (through its stream
//! plugin) and adding or removing streams.

use snaprelay::pb;

use super::streams::{now_playing, player_state, position};
use crate::args::{PlayerCommand, PropertyArg};
use crate::client::Control;
use crate::exit::CliError;
use crate::output::{with_id, Output};

pub async fn show(control: &mut Control, out: &Output, stream: String) -> Result<(), CliError> {
    let stats = control
        .get_stream(pb::GetStreamRequest { stream })
        .await?
        .into_inner();
    if out.json {
        return out.json(&with_id(&stats.name, &stats)?);
    }
    let properties = stats.properties.clone().unwrap_or_default();
    let mut lines = vec![
        format!("stream       {}", stats.name),
        format!(
            "state        {}",
            match stats.state() {
                pb::StreamState::Playing => "playing",
                _ => "idle",
            }
        ),
        format!("uri          {}", stats.uri),
        format!("player       {}", player_state(&properties)),
        format!("now playing  {}", now_playing(&properties)),
        format!("position     {}", position(&properties)),
    ];
    let flags = [
        ("play", properties.can_play),
        ("pause", properties.can_pause),
        ("next", properties.can_go_next),
        ("previous", properties.can_go_previous),
        ("seek", properties.can_seek),
        ("control", properties.can_control),
    ];
    let can: Vec<&str> = flags
        .iter()
        .filter(|(_, on)| *on)
        .map(|(n, _)| *n)
        .collect();
    lines.push(format!(
        "can          {}",
        if can.is_empty() {
            "-".to_owned()
        } else {
            can.join(", ")
        }
    ));
    if let Some(metadata) = &properties.metadata {
        if !metadata.album.is_empty() {
            lines.push(format!("album        {}", metadata.album));
        }
        if !metadata.art_url.is_empty() {
            lines.push(format!("cover art    {}", metadata.art_url));
        }
    }
    lines.push(format!(
        "input        {} restarts, {} overruns, {} frames dropped",
        stats.source_restarts, stats.source_overruns, stats.source_frames_dropped
    ));
    if let Some(link) = &stats.upstream {
        lines.push(format!(
            "upstream     {} ({}, clock offset {:.3} ms ± {:.3}, round trip {:.3} ms, buffer {} ms, \
             {} chunks, {} late, {} dropped, {} reconnects)",
            link.address,
            if link.connected {
                "connected"
            } else {
                "reconnecting"
            },
            link.clock_offset_us as f64 / 1000.0,
            link.clock_jitter_us as f64 / 1000.0,
            link.rtt_us as f64 / 1000.0,
            link.upstream_buffer_ms,
            link.chunks_received,
            link.chunks_late,
            link.chunks_dropped,
            link.reconnects
        ));
    }
    if let Some(plugin) = &stats.plugin {
        lines.push(format!(
            "plugin       {} ({}, {} restarts)",
            plugin.script,
            if plugin.running {
                "running"
            } else {
                "restarting"
            },
            plugin.restarts
        ));
    }
    out.line(&lines.join("\n"))
}

pub async fn control_player(
    control: &mut Control,
    out: &Output,
    stream: String,
    command: PlayerCommand,
) -> Result<(), CliError> {
    use pb::StreamCommand as C;
    let (command, offset_s, position_s) = match command {
        PlayerCommand::Play => (C::Play, None, None),
        PlayerCommand::Pause => (C::Pause, None, None),
        PlayerCommand::PlayPause => (C::PlayPause, None, None),
        PlayerCommand::Stop => (C::Stop, None, None),
        PlayerCommand::Next => (C::Next, None, None),
        PlayerCommand::Previous => (C::Previous, None, None),
        PlayerCommand::Seek { seconds } => (C::Seek, Some(seconds), None),
        PlayerCommand::Position { seconds } => (C::SetPosition, None, Some(seconds)),
    };
    let response = control
        .control_stream(pb::ControlStreamRequest {
            stream: stream.clone(),
            command: command as i32,
            offset_s,
            position_s,
        })
        .await?
        .into_inner();
    done(out, &stream, &response)
}

pub async fn set_property(
    control: &mut Control,
    out: &Output,
    stream: String,
    property: PropertyArg,
    value: String,
) -> Result<(), CliError> {
    use pb::set_stream_property_request::Value;
    let bad = |allowed: &str| {
        CliError::Usage(format!(
            "invalid value '{value}' for {property}: expected {allowed}"
        ))
    };
    let on_off = || match value.as_str() {
        "true" | "on" | "yes" | "1" => Ok(true),
        "false" | "off" | "no" | "0" => Ok(false),
        _ => Err(bad("true or false")),
    };
    let value = match property {
        PropertyArg::Shuffle => Value::Shuffle(on_off()?),
        PropertyArg::Mute => Value::Mute(on_off()?),
        PropertyArg::Volume => Value::Volume(
            value
                .parse::<u32>()
                .ok()
                .filter(|v| *v <= 100)
                .ok_or_else(|| bad("0 to 100"))?,
        ),
        PropertyArg::Rate => Value::Rate(
            value
                .parse::<f64>()
                .ok()
                .filter(|r| r.is_finite() && *r > 0.0)
                .ok_or_else(|| bad("a positive number"))?,
        ),
        PropertyArg::Loop => Value::LoopStatus(match value.as_str() {
            "none" => pb::LoopStatus::None,
            "track" => pb::LoopStatus::Track,
            "playlist" => pb::LoopStatus::Playlist,
            _ => return Err(bad("none, track or playlist")),
        } as i32),
    };
    let response = control
        .set_stream_property(pb::SetStreamPropertyRequest {
            stream: stream.clone(),
            value: Some(value),
        })
        .await?
        .into_inner();
    done(out, &stream, &response)
}

fn done(out: &Output, stream: &str, response: &pb::ControlStreamResponse) -> Result<(), CliError> {
    if out.json {
        return out.json(&with_id(stream, response)?);
    }
    out.line(&format!("{stream}: ok"))
}

pub async fn add(control: &mut Control, out: &Output, uri: String) -> Result<(), CliError> {
    let stats = control
        .add_stream(pb::AddStreamRequest { uri })
        .await?
        .into_inner();
    if out.json {
        return out.json(&with_id(&stats.name, &stats)?);
    }
    out.line(&format!("stream {} added", stats.name))
}

pub async fn remove(control: &mut Control, out: &Output, stream: String) -> Result<(), CliError> {
    let moved = control
        .remove_stream(pb::RemoveStreamRequest {
            stream: stream.clone(),
        })
        .await?
        .into_inner()
        .moved_client_ids;
    if out.json {
        return out.json(&serde_json::json!({"id": stream, "moved_client_ids": moved}));
    }
    out.line(&format!(
        "stream {stream} removed; {} client(s) moved to the first stream",
        moved.len()
    ))
}

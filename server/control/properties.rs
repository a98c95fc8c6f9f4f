//! Stream properties and metadata as protobuf, and the gRPC shapes of control requests.

use crate::pb;
use crate::properties::{
    Command, LoopStatus, Metadata, PlaybackStatus, Properties, PropertyChange,
};

impl From<&Properties> for pb::StreamProperties {
    fn from(properties: &Properties) -> Self {
        pb::StreamProperties {
            playback_status: match properties.playback_status {
                None => pb::PlaybackStatus::Unspecified,
                Some(PlaybackStatus::Playing) => pb::PlaybackStatus::Playing,
                Some(PlaybackStatus::Paused) => pb::PlaybackStatus::Paused,
                Some(PlaybackStatus::Stopped) => pb::PlaybackStatus::Stopped,
            } as i32,
            loop_status: properties
                .loop_status
                .map_or(pb::LoopStatus::Unspecified, loop_status) as i32,
            shuffle: properties.shuffle,
            volume: properties.volume.and_then(|v| i32::try_from(v).ok()),
            mute: properties.mute,
            rate: properties.rate,
            position_s: properties.position,
            minimum_rate: properties.minimum_rate,
            maximum_rate: properties.maximum_rate,
            can_go_next: properties.can_go_next,
            can_go_previous: properties.can_go_previous,
            can_play: properties.can_play,
            can_pause: properties.can_pause,
            can_seek: properties.can_seek,
            can_control: properties.can_control,
            metadata: properties.metadata.as_ref().map(metadata),
        }
    }
}

fn loop_status(status: LoopStatus) -> pb::LoopStatus {
    match status {
        LoopStatus::None => pb::LoopStatus::None,
        LoopStatus::Track => pb::LoopStatus::Track,
        LoopStatus::Playlist => pb::LoopStatus::Playlist,
    }
}

/// Every tag, typed (the inline image is served by URL: `art_url`).
fn metadata(metadata: &Metadata) -> pb::StreamMetadata {
    let text = |tag: &str| metadata.text(tag).unwrap_or_default().to_owned();
    let texts = |tag: &str| metadata.texts(tag).into_iter().map(str::to_owned).collect();
    pb::StreamMetadata {
        title: text("title"),
        album: text("album"),
        art_url: text("artUrl"),
        date: text("date"),
        url: text("url"),
        track_id: text("trackId"),
        name: text("name"),
        album_sort: text("albumSort"),
        original_date: text("originalDate"),
        performer: text("performer"),
        conductor: text("conductor"),
        work: text("work"),
        grouping: text("grouping"),
        label: text("label"),
        musicbrainz_artist_id: text("musicbrainzArtistId"),
        musicbrainz_album_id: text("musicbrainzAlbumId"),
        musicbrainz_album_artist_id: text("musicbrainzAlbumArtistId"),
        musicbrainz_track_id: text("musicbrainzTrackId"),
        musicbrainz_release_track_id: text("musicbrainzReleaseTrackId"),
        musicbrainz_work_id: text("musicbrainzWorkId"),
        lyrics: text("lyrics"),
        content_created: text("contentCreated"),
        first_used: text("firstUsed"),
        last_used: text("lastUsed"),
        spotify_artist_id: text("spotifyArtistId"),
        spotify_track_id: text("spotifyTrackId"),
        artist: texts("artist"),
        album_artist: texts("albumArtist"),
        genre: texts("genre"),
        composer: texts("composer"),
        artist_sort: texts("artistSort"),
        album_artist_sort: texts("albumArtistSort"),
        comment: texts("comment"),
        lyricist: texts("lyricist"),
        duration_s: metadata.number("duration"),
        auto_rating: metadata.number("autoRating"),
        user_rating: metadata.number("userRating"),
        track_number: metadata.count("trackNumber").map(u32::from),
        disc_number: metadata.count("discNumber").map(u32::from),
        bpm: metadata.count("bpm").map(u32::from),
        use_count: metadata.count("useCount").map(u32::from),
    }
}

/// The command a `ControlStreamRequest` asks for.
///
/// # Errors
///
/// No command, or a seek or position without its number: (field, value, what is allowed).
pub(crate) fn command(
    request: &pb::ControlStreamRequest,
) -> Result<Command, (&'static str, String, &'static str)> {
    use pb::StreamCommand as C;
    let number = |value: Option<f64>, field: &'static str| {
        value
            .filter(|v| v.is_finite())
            .ok_or((field, format!("{value:?}"), "a number of seconds"))
    };
    Ok(
        match C::try_from(request.command).unwrap_or(C::Unspecified) {
            C::Unspecified => {
                return Err((
                    "command",
                    request.command.to_string(),
                    "PLAY, PAUSE, PLAY_PAUSE, STOP, NEXT, PREVIOUS, SEEK or SET_POSITION",
                ))
            }
            C::Play => Command::Play,
            C::Pause => Command::Pause,
            C::PlayPause => Command::PlayPause,
            C::Stop => Command::Stop,
            C::Next => Command::Next,
            C::Previous => Command::Previous,
            C::Seek => Command::Seek {
                offset_s: number(request.offset_s, "offset_s")?,
            },
            C::SetPosition => Command::SetPosition {
                position_s: number(request.position_s, "position_s")?,
            },
        },
    )
}

/// The change a `SetStreamPropertyRequest` asks for.
///
/// # Errors
///
/// No value, or one out of range: (field, value, what is allowed).
pub(crate) fn property_change(
    request: &pb::SetStreamPropertyRequest,
) -> Result<PropertyChange, (&'static str, String, &'static str)> {
    use pb::set_stream_property_request::Value;
    Ok(match request.value {
        None => {
            return Err((
                "value",
                "(unset)".into(),
                "one of loop_status, shuffle, volume, mute, rate",
            ))
        }
        Some(Value::LoopStatus(status)) => {
            PropertyChange::LoopStatus(match pb::LoopStatus::try_from(status) {
                Ok(pb::LoopStatus::None) => LoopStatus::None,
                Ok(pb::LoopStatus::Track) => LoopStatus::Track,
                Ok(pb::LoopStatus::Playlist) => LoopStatus::Playlist,
                _ => {
                    return Err((
                        "loop_status",
                        status.to_string(),
                        "LOOP_STATUS_NONE, LOOP_STATUS_TRACK or LOOP_STATUS_PLAYLIST",
                    ))
                }
            })
        }
        Some(Value::Shuffle(on)) => PropertyChange::Shuffle(on),
        Some(Value::Mute(on)) => PropertyChange::Mute(on),
        Some(Value::Volume(percent)) if percent <= 100 => {
            PropertyChange::Volume(i64::from(percent))
        }
        Some(Value::Volume(percent)) => return Err(("volume", percent.to_string(), "0 to 100")),
        Some(Value::Rate(rate)) if rate.is_finite() && rate > 0.0 => PropertyChange::Rate(rate),
        Some(Value::Rate(rate)) => return Err(("rate", rate.to_string(), "a positive number")),
    })
}

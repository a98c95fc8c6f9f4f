//! Stream properties and metadata as protobuf, and the gRPC shapes of control requests.

use serde_json::{json, Value};

use crate::pb;
use crate::properties::{
    Command, ControlError, LoopStatus, Metadata, PlaybackStatus, Properties, PropertyChange,
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

/// Why a control request is refused before it reaches the stream: (field, value, allowed)
/// for a missing choice, or the stream rules' own refusal (the same words as JSON-RPC).
#[derive(Debug)]
pub(crate) enum BadRequest {
    /// Nothing chosen.
    Missing(&'static str, &'static str),
    /// Refused by the rules every control API shares.
    Rule(ControlError),
}

/// The command a `ControlStreamRequest` asks for, read by the same rules as `Stream.Control`.
///
/// # Errors
///
/// No command, or a seek or position without its number.
pub(crate) fn command(request: &pb::ControlStreamRequest) -> Result<Command, BadRequest> {
    use pb::StreamCommand as C;
    let (name, params) = match C::try_from(request.command).unwrap_or(C::Unspecified) {
        C::Unspecified => {
            return Err(BadRequest::Missing(
                "command",
                "PLAY, PAUSE, PLAY_PAUSE, STOP, NEXT, PREVIOUS, SEEK or SET_POSITION",
            ))
        }
        C::Play => ("play", None),
        C::Pause => ("pause", None),
        C::PlayPause => ("playPause", None),
        C::Stop => ("stop", None),
        C::Next => ("next", None),
        C::Previous => ("previous", None),
        C::Seek => ("seek", request.offset_s.map(|s| json!({"offset": s}))),
        C::SetPosition => (
            "setPosition",
            request.position_s.map(|s| json!({"position": s})),
        ),
    };
    Command::parse(name, params.as_ref()).map_err(BadRequest::Rule)
}

/// The change a `SetStreamPropertyRequest` asks for, read by the same rules as
/// `Stream.SetProperty`.
///
/// # Errors
///
/// No value, or one out of range.
pub(crate) fn property_change(
    request: &pb::SetStreamPropertyRequest,
) -> Result<PropertyChange, BadRequest> {
    use pb::set_stream_property_request::Value as V;
    let (name, value) = match request.value {
        None => {
            return Err(BadRequest::Missing(
                "value",
                "one of loop_status, shuffle, volume, mute, rate",
            ))
        }
        Some(V::LoopStatus(status)) => (
            "loopStatus",
            Value::from(match pb::LoopStatus::try_from(status) {
                Ok(pb::LoopStatus::None) => LoopStatus::None.as_str(),
                Ok(pb::LoopStatus::Track) => LoopStatus::Track.as_str(),
                Ok(pb::LoopStatus::Playlist) => LoopStatus::Playlist.as_str(),
                _ => "unspecified",
            }),
        ),
        Some(V::Shuffle(on)) => ("shuffle", Value::from(on)),
        Some(V::Mute(on)) => ("mute", Value::from(on)),
        Some(V::Volume(percent)) => ("volume", Value::from(percent)),
        Some(V::Rate(rate)) => ("rate", Value::from(rate)),
    };
    PropertyChange::parse(name, &value).map_err(BadRequest::Rule)
}

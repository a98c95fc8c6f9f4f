//! Stream properties as snapserver reports them (docs/SOURCES.md §4.1): the player state
//! a stream plugin describes (playback and loop status, shuffle, volume, position, the `can*`
//! flags, now-playing [`Metadata`]), read leniently per key as snapserver does (a wrongly
//! typed key is dropped with a warning, the rest kept) and written as the `properties` object
//! of every stream in the control APIs. [`control`] holds the commands and property changes
//! a caller may ask of a plugin, and the rules that refuse them. No I/O here.

pub(crate) mod control;
mod metadata;

use serde_json::{Map, Value};

pub(crate) use control::{Command, ControlError, Flag, PropertyChange};
pub(crate) use metadata::Metadata;

/// `playbackStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlaybackStatus {
    /// `playing`.
    Playing,
    /// `paused`.
    Paused,
    /// `stopped`.
    Stopped,
}

impl PlaybackStatus {
    /// The JSON value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Playing => "playing",
            Self::Paused => "paused",
            Self::Stopped => "stopped",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        [Self::Playing, Self::Paused, Self::Stopped]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// `loopStatus`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LoopStatus {
    /// `none`.
    None,
    /// `track`.
    Track,
    /// `playlist`.
    Playlist,
}

impl LoopStatus {
    /// The JSON value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Track => "track",
            Self::Playlist => "playlist",
        }
    }

    /// The status this JSON value names.
    pub(crate) fn parse(text: &str) -> Option<Self> {
        [Self::None, Self::Track, Self::Playlist]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// A stream's properties. Without a plugin every flag is false and nothing else is known.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Properties {
    pub(crate) playback_status: Option<PlaybackStatus>,
    pub(crate) loop_status: Option<LoopStatus>,
    pub(crate) shuffle: Option<bool>,
    /// 0..=100.
    pub(crate) volume: Option<i64>,
    pub(crate) mute: Option<bool>,
    pub(crate) rate: Option<f64>,
    /// Seconds into the track.
    pub(crate) position: Option<f64>,
    pub(crate) minimum_rate: Option<f64>,
    pub(crate) maximum_rate: Option<f64>,
    pub(crate) can_go_next: bool,
    pub(crate) can_go_previous: bool,
    pub(crate) can_play: bool,
    pub(crate) can_pause: bool,
    pub(crate) can_seek: bool,
    pub(crate) can_control: bool,
    pub(crate) metadata: Option<Metadata>,
}

/// Every key a properties object may carry.
const KEYS: &[&str] = &[
    "playbackStatus",
    "loopStatus",
    "shuffle",
    "volume",
    "mute",
    "rate",
    "position",
    "minimumRate",
    "maximumRate",
    "canGoNext",
    "canGoPrevious",
    "canPlay",
    "canPause",
    "canSeek",
    "canControl",
    "metadata",
];

impl Properties {
    /// Reads a properties object as a plugin sends it; `problems` collects every key dropped
    /// and why. A flag that is absent (or unreadable) is false, as in snapserver.
    ///
    /// # Errors
    ///
    /// `value` is not an object.
    pub(crate) fn from_json(value: &Value, problems: &mut Vec<String>) -> Result<Self, String> {
        let Some(object) = value.as_object() else {
            return Err(format!("properties must be an object, got {value}"));
        };
        for key in object.keys() {
            if !KEYS.contains(&key.as_str()) {
                problems.push(format!("property '{key}' is not supported"));
            }
        }
        let mut read = Reader { object, problems };
        Ok(Self {
            playback_status: read.parsed(
                "playbackStatus",
                "one of playing, paused, stopped",
                |v| v.as_str().and_then(PlaybackStatus::parse),
            ),
            loop_status: read.parsed("loopStatus", "one of none, track, playlist", |v| {
                v.as_str().and_then(LoopStatus::parse)
            }),
            shuffle: read.parsed("shuffle", "a boolean", Value::as_bool),
            volume: read.parsed("volume", "a whole number from 0 to 100", |v| {
                whole(v).filter(|p| (0..=100).contains(p))
            }),
            mute: read.parsed("mute", "a boolean", Value::as_bool),
            rate: read.parsed("rate", "a number", finite),
            position: read.parsed("position", "a number", finite),
            minimum_rate: read.parsed("minimumRate", "a number", finite),
            maximum_rate: read.parsed("maximumRate", "a number", finite),
            can_go_next: read.flag("canGoNext"),
            can_go_previous: read.flag("canGoPrevious"),
            can_play: read.flag("canPlay"),
            can_pause: read.flag("canPause"),
            can_seek: read.flag("canSeek"),
            can_control: read.flag("canControl"),
            metadata: match object.get("metadata") {
                None => None,
                Some(value) => {
                    let metadata = Metadata::from_json(value, read.problems);
                    if metadata.is_none() {
                        read.problems.push(format!(
                            "property 'metadata' must be an object, got {value}"
                        ));
                    }
                    metadata
                }
            },
        })
    }

    /// The `properties` object of a stream in every JSON-RPC answer and notification.
    pub(crate) fn to_json(&self) -> Value {
        let mut object = Map::new();
        let mut put = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                object.insert(key.to_owned(), value);
            }
        };
        put(
            "playbackStatus",
            self.playback_status.map(|s| s.as_str().into()),
        );
        put("loopStatus", self.loop_status.map(|s| s.as_str().into()));
        put("shuffle", self.shuffle.map(Value::from));
        put("volume", self.volume.map(Value::from));
        put("mute", self.mute.map(Value::from));
        put("rate", self.rate.map(Value::from));
        put("position", self.position.map(Value::from));
        put("minimumRate", self.minimum_rate.map(Value::from));
        put("maximumRate", self.maximum_rate.map(Value::from));
        put("canGoNext", Some(self.can_go_next.into()));
        put("canGoPrevious", Some(self.can_go_previous.into()));
        put("canPlay", Some(self.can_play.into()));
        put("canPause", Some(self.can_pause.into()));
        put("canSeek", Some(self.can_seek.into()));
        put("canControl", Some(self.can_control.into()));
        put("metadata", self.metadata.as_ref().map(Metadata::to_json));
        Value::Object(object)
    }

    /// Whether the flag `flag` names is set.
    pub(crate) fn allows(&self, flag: Flag) -> bool {
        match flag {
            Flag::GoNext => self.can_go_next,
            Flag::GoPrevious => self.can_go_previous,
            Flag::Play => self.can_play,
            Flag::Pause => self.can_pause,
            Flag::Seek => self.can_seek,
            Flag::Control => self.can_control,
        }
    }
}

fn finite(value: &Value) -> Option<f64> {
    value.as_f64().filter(|f| f.is_finite())
}

/// An integer, also when written as a float with nothing after the point (`40.0`), as
/// snapserver's JSON library reads it.
pub(crate) fn whole(value: &Value) -> Option<i64> {
    value.as_i64().or_else(|| {
        value
            .as_f64()
            .filter(|f| f.fract() == 0.0 && f.abs() < 1e15)
            .map(|f| f as i64)
    })
}

/// Reads one key at a time, noting every value of the wrong type.
struct Reader<'a> {
    object: &'a Map<String, Value>,
    problems: &'a mut Vec<String>,
}

impl Reader<'_> {
    fn parsed<T>(
        &mut self,
        key: &str,
        expected: &str,
        parse: impl Fn(&Value) -> Option<T>,
    ) -> Option<T> {
        let value = self.object.get(key)?;
        let parsed = parse(value);
        if parsed.is_none() {
            self.problems
                .push(format!("property '{key}' must be {expected}, got {value}"));
        }
        parsed
    }

    fn flag(&mut self, key: &str) -> bool {
        self.parsed(key, "a boolean", Value::as_bool)
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn without_a_plugin_only_the_six_flags_show_all_false() {
        assert_eq!(
            Properties::default().to_json(),
            json!({
                "canControl": false, "canGoNext": false, "canGoPrevious": false,
                "canPause": false, "canPlay": false, "canSeek": false,
            })
        );
    }

    #[test]
    fn a_full_object_reads_and_writes_back_unchanged() {
        let input = json!({
            "playbackStatus": "playing", "loopStatus": "track", "shuffle": true,
            "volume": 42, "mute": false, "rate": 1.0, "position": 12.5,
            "minimumRate": 1.0, "maximumRate": 1.0,
            "canGoNext": true, "canGoPrevious": false, "canPlay": true, "canPause": true,
            "canSeek": false, "canControl": true,
            "metadata": {"title": "T", "artist": ["A"]},
        });
        let mut problems = Vec::new();
        let properties = Properties::from_json(&input, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(properties.to_json(), input);
        assert!(properties.allows(Flag::GoNext));
        assert!(!properties.allows(Flag::Seek));
    }

    #[test]
    fn wrong_types_are_dropped_one_key_at_a_time() {
        let input = json!({
            "playbackStatus": "rewinding", "shuffle": "yes", "volume": 101.0, "canGoNext": 1,
            "canPlay": true, "position": "x", "speed": 2, "metadata": "T",
        });
        let mut problems = Vec::new();
        let properties = Properties::from_json(&input, &mut problems).unwrap();
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(properties.can_play && !properties.can_go_next);
        assert_eq!(properties.playback_status, None);
        assert_eq!(properties.shuffle, None);
        assert_eq!(properties.volume, None);
        assert_eq!(properties.metadata, None);
        assert!(Properties::from_json(&json!("x"), &mut problems).is_err());
        let volume = Properties::from_json(&json!({"volume": 40.0}), &mut problems).unwrap();
        assert_eq!(volume.volume, Some(40));
    }
}

//! What a caller may ask of a stream's player (docs/SOURCES.md §5): the `Stream.Control`
//! commands and `Stream.SetProperty` changes, read from their JSON with snapserver's
//! messages, the `can*` flag each one needs, their form on the plugin's wire, and the one
//! error type every control front end maps to its own shape.

use serde_json::{json, Value};

use super::LoopStatus;

/// A `can*` flag, with snapserver's error code for a request it refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flag {
    GoNext,
    GoPrevious,
    Play,
    Pause,
    Seek,
    Control,
}

impl Flag {
    /// The property's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::GoNext => "canGoNext",
            Self::GoPrevious => "canGoPrevious",
            Self::Play => "canPlay",
            Self::Pause => "canPause",
            Self::Seek => "canSeek",
            Self::Control => "canControl",
        }
    }

    /// snapserver's error code when the flag is false.
    pub(crate) fn code(self) -> i64 {
        match self {
            Self::GoNext => 2,
            Self::GoPrevious => 3,
            Self::Play => 4,
            Self::Pause => 5,
            Self::Seek => 6,
            Self::Control => 7,
        }
    }
}

/// A `Stream.Control` command.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Command {
    Play,
    Pause,
    PlayPause,
    Stop,
    Next,
    Previous,
    /// Move by this many seconds (negative: back).
    Seek {
        offset_s: f64,
    },
    /// Move to this many seconds into the track.
    SetPosition {
        position_s: f64,
    },
}

impl Command {
    /// Reads `command` and its `params` as `Stream.Control` carries them.
    ///
    /// # Errors
    ///
    /// An unknown command or a missing or non-numeric seek offset or position.
    pub(crate) fn parse(command: &str, params: Option<&Value>) -> Result<Self, ControlError> {
        let number = |key: &str, missing: &str| match params.and_then(|p| p.get(key)) {
            None => Err(ControlError::InvalidParams(missing.to_owned())),
            Some(value) => value.as_f64().filter(|f| f.is_finite()).ok_or_else(|| {
                ControlError::InvalidParams(format!(
                    "Parameter '{key}' of {command} must be a number of seconds"
                ))
            }),
        };
        Ok(match command {
            "play" => Self::Play,
            "pause" => Self::Pause,
            "playPause" => Self::PlayPause,
            "stop" => Self::Stop,
            "next" => Self::Next,
            "previous" => Self::Previous,
            "seek" => Self::Seek {
                offset_s: number("offset", "Seek requires parameter 'offset'")?,
            },
            "setPosition" => Self::SetPosition {
                position_s: number("position", "setPosition requires parameter 'position'")?,
            },
            other => {
                return Err(ControlError::InvalidParams(format!(
                    "Command '{other}' not supported"
                )))
            }
        })
    }

    /// The command's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Play => "play",
            Self::Pause => "pause",
            Self::PlayPause => "playPause",
            Self::Stop => "stop",
            Self::Next => "next",
            Self::Previous => "previous",
            Self::Seek { .. } => "seek",
            Self::SetPosition { .. } => "setPosition",
        }
    }

    /// The flag that must be true (snapserver's `pcm_stream.cpp`: stop needs canControl,
    /// playPause canPause).
    pub(crate) fn flag(self) -> Flag {
        match self {
            Self::Play => Flag::Play,
            Self::Pause | Self::PlayPause => Flag::Pause,
            Self::Stop => Flag::Control,
            Self::Next => Flag::GoNext,
            Self::Previous => Flag::GoPrevious,
            Self::Seek { .. } | Self::SetPosition { .. } => Flag::Seek,
        }
    }

    /// The params of `Plugin.Stream.Player.Control`.
    pub(crate) fn plugin_params(self) -> Value {
        match self {
            Self::Seek { offset_s } => {
                json!({"command": "seek", "params": {"offset": offset_s}})
            }
            Self::SetPosition { position_s } => {
                json!({"command": "setPosition", "params": {"position": position_s}})
            }
            other => json!({"command": other.name()}),
        }
    }
}

/// A `Stream.SetProperty` change.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum PropertyChange {
    LoopStatus(LoopStatus),
    Shuffle(bool),
    /// 0..=100.
    Volume(i64),
    Mute(bool),
    Rate(f64),
}

impl PropertyChange {
    /// Reads `property` and `value` as `Stream.SetProperty` carries them, with snapserver's
    /// messages for a value of the wrong type.
    ///
    /// # Errors
    ///
    /// An unknown property or a value of the wrong type or range.
    pub(crate) fn parse(property: &str, value: &Value) -> Result<Self, ControlError> {
        let invalid = |message: &str| ControlError::InvalidParams(message.to_owned());
        Ok(match property {
            "loopStatus" => {
                Self::LoopStatus(value.as_str().and_then(LoopStatus::parse).ok_or_else(|| {
                    invalid("Value for loopStatus must be one of 'none', 'track', 'playlist'")
                })?)
            }
            "shuffle" => Self::Shuffle(
                value
                    .as_bool()
                    .ok_or_else(|| invalid("Value for shuffle must be bool"))?,
            ),
            "volume" => Self::Volume(
                value
                    .as_i64()
                    .filter(|v| (0..=100).contains(v))
                    .ok_or_else(|| invalid("Value for volume must be an int from 0 to 100"))?,
            ),
            "mute" => Self::Mute(
                value
                    .as_bool()
                    .ok_or_else(|| invalid("Value for mute must be bool"))?,
            ),
            // snapserver takes only a JSON float here; any positive number is a rate.
            "rate" => Self::Rate(
                value
                    .as_f64()
                    .filter(|r| r.is_finite() && *r > 0.0)
                    .ok_or_else(|| invalid("Value for rate must be float"))?,
            ),
            other => return Err(invalid(&format!("Property '{other}' not supported"))),
        })
    }

    /// The property's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LoopStatus(_) => "loopStatus",
            Self::Shuffle(_) => "shuffle",
            Self::Volume(_) => "volume",
            Self::Mute(_) => "mute",
            Self::Rate(_) => "rate",
        }
    }

    /// The value as JSON.
    pub(crate) fn value(self) -> Value {
        match self {
            Self::LoopStatus(status) => status.as_str().into(),
            Self::Shuffle(on) | Self::Mute(on) => on.into(),
            Self::Volume(percent) => percent.into(),
            Self::Rate(rate) => rate.into(),
        }
    }

    /// The params of `Plugin.Stream.Player.SetProperty`: `{"<property>": value}`.
    pub(crate) fn plugin_params(self) -> Value {
        json!({ self.name(): self.value() })
    }
}

/// Why a control request did not happen. Each front end maps it to its own shape
/// (JSON-RPC: [`ControlError::code`] and [`ControlError::message`], snapserver's).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub(crate) enum ControlError {
    /// The request itself is wrong (JSON-RPC -32602).
    #[error("{0}")]
    InvalidParams(String),
    /// The stream's player does not allow it now.
    #[error("Stream property {} is false", .0.name())]
    NotAllowed(Flag),
    /// The stream has no plugin, or none that can take a request now (code 1).
    #[error("Stream can not be controlled: {0}")]
    Unavailable(&'static str),
    /// The plugin answered with an error; its code and message, unchanged.
    #[error("{message}")]
    Plugin {
        /// The plugin's error code.
        code: i64,
        /// The plugin's message (and `data`, when it sent one).
        message: String,
    },
    /// The plugin did not answer in time (ms).
    #[error("the stream plugin did not answer within {0} ms")]
    Timeout(u64),
}

/// snapserver's text for a control error code (its `control_error.cpp`), which it puts in
/// front of a plugin's error `data`.
pub(crate) fn code_text(code: i64) -> &'static str {
    match code {
        0 => "Success",
        1 => "Stream can not be controlled",
        2 => "Stream property canGoNext is false",
        3 => "Stream property canGoPrevious is false",
        4 => "Stream property canPlay is false",
        5 => "Stream property canPause is false",
        6 => "Stream property canSeek is false",
        7 => "Stream property canControl is false",
        -32700 => "Parse error",
        -32600 => "Invalid request",
        -32601 => "Method not found",
        -32602 => "Invalid params",
        -32603 => "Internal error",
        _ => "Unknown",
    }
}

impl ControlError {
    /// The JSON-RPC error code snapserver uses.
    pub(crate) fn code(&self) -> i64 {
        match self {
            Self::InvalidParams(_) => -32602,
            Self::NotAllowed(flag) => flag.code(),
            Self::Unavailable(_) => 1,
            Self::Plugin { code, .. } => *code,
            Self::Timeout(_) => -32603,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn commands_read_with_their_flags_and_plugin_form() {
        for name in [
            "play",
            "pause",
            "playPause",
            "stop",
            "next",
            "previous",
            "seek",
            "setPosition",
        ] {
            let params = json!({"offset": 1.5, "position": 30});
            let command = Command::parse(name, Some(&params)).unwrap();
            assert_eq!(command.name(), name);
        }
        let seek = Command::parse("seek", Some(&json!({"offset": -10}))).unwrap();
        assert_eq!(seek.flag(), Flag::Seek);
        assert_eq!(
            seek.plugin_params(),
            json!({"command": "seek", "params": {"offset": -10.0}})
        );
        assert_eq!(Command::Stop.flag(), Flag::Control);
        assert_eq!(Command::PlayPause.flag(), Flag::Pause);
        assert_eq!(Command::Next.plugin_params(), json!({"command": "next"}));
    }

    #[test]
    fn bad_commands_get_snapservers_messages() {
        let message =
            |c: &str, p: Option<Value>| Command::parse(c, p.as_ref()).unwrap_err().to_string();
        assert_eq!(message("jump", None), "Command 'jump' not supported");
        assert_eq!(message("seek", None), "Seek requires parameter 'offset'");
        assert_eq!(
            message("setPosition", Some(json!({}))),
            "setPosition requires parameter 'position'"
        );
        assert!(message("seek", Some(json!({"offset": "x"}))).contains("must be a number"));
        assert_eq!(Command::parse("jump", None).unwrap_err().code(), -32602);
    }

    #[test]
    fn property_changes_check_their_value_type() {
        assert_eq!(
            PropertyChange::parse("shuffle", &json!(true))
                .unwrap()
                .plugin_params(),
            json!({"shuffle": true})
        );
        assert_eq!(
            PropertyChange::parse("loopStatus", &json!("playlist")).unwrap(),
            PropertyChange::LoopStatus(LoopStatus::Playlist)
        );
        assert_eq!(
            PropertyChange::parse("rate", &json!(1)).unwrap(),
            PropertyChange::Rate(1.0)
        );
        let message = |p: &str, v: Value| PropertyChange::parse(p, &v).unwrap_err().to_string();
        assert_eq!(
            message("shuffle", json!(1)),
            "Value for shuffle must be bool"
        );
        assert_eq!(message("mute", json!("on")), "Value for mute must be bool");
        assert!(message("volume", json!(1.5)).starts_with("Value for volume must be an int"));
        assert!(message("volume", json!(101)).starts_with("Value for volume must be an int"));
        assert_eq!(
            message("rate", json!("fast")),
            "Value for rate must be float"
        );
        assert_eq!(
            message("loopStatus", json!("all")),
            "Value for loopStatus must be one of 'none', 'track', 'playlist'"
        );
        assert_eq!(
            message("colour", json!(1)),
            "Property 'colour' not supported"
        );
        for name in ["loopStatus", "shuffle", "volume", "mute", "rate"] {
            assert!(
                !message(name, json!(null)).contains("not supported"),
                "{name}"
            );
        }
    }

    #[test]
    fn code_texts_are_snapservers() {
        assert_eq!(code_text(-32603), "Internal error");
        assert_eq!(code_text(5), "Stream property canPause is false");
        assert_eq!(code_text(1234), "Unknown");
    }

    #[test]
    fn refusals_carry_snapservers_codes_and_messages() {
        let error = ControlError::NotAllowed(Flag::GoNext);
        assert_eq!(
            (error.code(), error.to_string().as_str()),
            (2, "Stream property canGoNext is false")
        );
        let codes: Vec<i64> = [
            Flag::GoNext,
            Flag::GoPrevious,
            Flag::Play,
            Flag::Pause,
            Flag::Seek,
            Flag::Control,
        ]
        .iter()
        .map(|f| ControlError::NotAllowed(*f).code())
        .collect();
        assert_eq!(codes, [2, 3, 4, 5, 6, 7]);
    }
}

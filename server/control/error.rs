//! The one mapping from control-plane failures to gRPC status codes.

use tonic::{Code, Status};

use crate::config::did_you_mean;
use crate::properties::ControlError as StreamControlError;
use crate::relay::{AddStreamError, RemoveStreamError};
use crate::state::StateError;

/// Why a control request was refused. Every variant maps to exactly one gRPC code in
/// `From<ControlError> for Status`; messages name the field and what is allowed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ControlError {
    /// No live session has this id.
    #[error("no session with id {0}")]
    SessionNotFound(u64),
    /// No client has this id.
    #[error("no client with id '{0}'")]
    ClientNotFound(String),
    /// GetConfig for a key that does not exist.
    #[error("no config key '{key}'{}", did_you_mean(.suggestion))]
    ConfigKeyNotFound {
        /// The key asked for.
        key: String,
        /// A close key, if any.
        suggestion: Option<&'static str>,
    },
    /// A request field has a value outside what is allowed.
    #[error("invalid {field} '{value}': expected {allowed}")]
    InvalidArgument {
        /// The request field (or config key).
        field: String,
        /// The value as received.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// UpdateConfig for a key that only changes with a restart.
    #[error("config key '{key}' cannot change at run time; keys that can: {updatable}")]
    NotUpdatable {
        /// The key.
        key: String,
        /// Every key UpdateConfig accepts, comma-separated.
        updatable: String,
    },
    /// The request is valid but the server cannot act on it in its current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// A token is configured and the call did not carry it.
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// The clients/groups model refused a change.
    #[error(transparent)]
    State(#[from] StateError),
    /// No stream has this name.
    #[error("no stream named '{0}'")]
    StreamNotFound(String),
    /// A stream's player refused or could not carry out a control request.
    #[error(transparent)]
    StreamControl(#[from] StreamControlError),
    /// A stream could not be added.
    #[error(transparent)]
    AddStream(#[from] AddStreamError),
    /// A stream could not be removed.
    #[error(transparent)]
    RemoveStream(#[from] RemoveStreamError),
}

impl ControlError {
    /// The gRPC code this error maps to.
    pub(crate) fn code(&self) -> Code {
        match self {
            ControlError::SessionNotFound(_)
            | ControlError::ClientNotFound(_)
            | ControlError::ConfigKeyNotFound { .. } => Code::NotFound,
            ControlError::InvalidArgument { .. } | ControlError::NotUpdatable { .. } => {
                Code::InvalidArgument
            }
            ControlError::FailedPrecondition(_) => Code::FailedPrecondition,
            ControlError::Unauthenticated(_) => Code::Unauthenticated,
            ControlError::State(err) => state_code(err),
            ControlError::StreamNotFound(_) => Code::NotFound,
            ControlError::StreamControl(err) => match err {
                StreamControlError::InvalidParams(_) => Code::InvalidArgument,
                // The server is up; the stream's player is what cannot act (UNAVAILABLE and
                // DEADLINE_EXCEEDED would read as an unreachable server).
                StreamControlError::NotAllowed(_) | StreamControlError::Unavailable(_) => {
                    Code::FailedPrecondition
                }
                StreamControlError::Plugin { .. } | StreamControlError::Timeout(_) => Code::Aborted,
            },
            ControlError::AddStream(err) => match err {
                AddStreamError::Uri(_)
                | AddStreamError::Scheme { .. }
                | AddStreamError::ControlScriptOutside(_) => Code::InvalidArgument,
                AddStreamError::Exists(_) => Code::AlreadyExists,
                AddStreamError::Start(_) => Code::FailedPrecondition,
            },
            ControlError::RemoveStream(err) => match err {
                RemoveStreamError::NotFound => Code::NotFound,
                RemoveStreamError::Last => Code::FailedPrecondition,
                RemoveStreamError::State(err) => state_code(err),
            },
        }
    }

    /// Shorthand for [`ControlError::InvalidArgument`].
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: impl ToString,
        allowed: impl Into<String>,
    ) -> Self {
        ControlError::InvalidArgument {
            field: field.into(),
            value: value.to_string(),
            allowed: allowed.into(),
        }
    }
}

fn state_code(err: &StateError) -> Code {
    match err {
        StateError::ClientNotFound(_)
        | StateError::GroupNotFound(_)
        | StateError::StreamNotFound(_) => Code::NotFound,
        StateError::ClientConnected(_) => Code::FailedPrecondition,
        StateError::Invalid { .. } => Code::InvalidArgument,
    }
}

impl From<ControlError> for Status {
    fn from(error: ControlError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_messages() {
        let status = Status::from(ControlError::SessionNotFound(7));
        assert_eq!(status.code(), Code::NotFound);
        assert_eq!(status.message(), "no session with id 7");
        let status = Status::from(ControlError::invalid("percent", 150, "0 to 100"));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert_eq!(status.message(), "invalid percent '150': expected 0 to 100");
        let status = Status::from(ControlError::ConfigKeyNotFound {
            key: "stream.buffr".into(),
            suggestion: Some("stream.buffer"),
        });
        assert!(status.message().ends_with("did you mean 'stream.buffer'?"));
        assert_eq!(
            Status::from(ControlError::Unauthenticated("missing token")).code(),
            Code::Unauthenticated
        );
        let status = Status::from(ControlError::from(StreamControlError::NotAllowed(
            crate::properties::Flag::GoNext,
        )));
        assert_eq!(status.code(), Code::FailedPrecondition);
        assert_eq!(status.message(), "Stream property canGoNext is false");
        assert_eq!(
            Status::from(ControlError::from(StreamControlError::Timeout(5000))).code(),
            Code::Aborted
        );
        assert_eq!(
            Status::from(ControlError::from(RemoveStreamError::Last)).code(),
            Code::FailedPrecondition
        );
    }
}

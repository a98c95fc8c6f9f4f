//! Why a source URI was refused.

use crate::sample_format::SampleFormatError;

/// Why a source URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not `scheme://…`.
    #[error("'{0}' is not a source URI of the form scheme:///path?name=NAME")]
    Syntax(String),
    /// No `name=` parameter.
    #[error("source '{0}' has no name= parameter (it is the stream's id)")]
    MissingName(String),
    /// A scheme snapserver knows but we do not serve yet.
    #[error(
        "source scheme '{scheme}' is not supported yet (supported: {})",
        super::SCHEMES.join(", ")
    )]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
    },
    /// A scheme nobody knows.
    #[error(
        "unknown source scheme '{scheme}' (supported: {})",
        super::SCHEMES.join(", ")
    )]
    UnknownScheme {
        /// The scheme.
        scheme: String,
    },
    /// A parameter with a value outside what is allowed.
    #[error("invalid {key}='{value}' in source '{name}': {allowed}")]
    InvalidParam {
        /// The stream name.
        name: String,
        /// Parameter key.
        key: &'static str,
        /// Offending value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A bad `sampleformat=`.
    #[error("invalid sampleformat in source '{name}': {source}")]
    SampleFormat {
        /// The stream name.
        name: String,
        /// Why.
        source: SampleFormatError,
    },
}

impl SourceError {
    /// [`SourceError::InvalidParam`] for stream `name`.
    pub(super) fn invalid(name: &str, key: &'static str, value: &str, allowed: &str) -> Self {
        Self::InvalidParam {
            name: name.to_owned(),
            key,
            value: value.to_owned(),
            allowed: allowed.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_errors_list_the_supported_schemes() {
        let unknown = SourceError::UnknownScheme {
            scheme: "gopher".into(),
        };
        assert_eq!(
            unknown.to_string(),
            "unknown source scheme 'gopher' (supported: pipe, file, tcp, process, tone, librespot, \
             spotify, airplay, meta)"
        );
        let unsupported = SourceError::UnsupportedScheme {
            scheme: "alsa".into(),
        };
        assert_eq!(
            unsupported.to_string(),
            "source scheme 'alsa' is not supported yet (supported: pipe, file, tcp, process, tone, \
             librespot, spotify, airplay, meta)"
        );
    }
}

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
    /// A scheme this build leaves out (a cargo feature that links a system library).
    #[error(
        "source scheme '{scheme}' needs snaprelay built with the '{feature}' feature \
         (cargo build --release --features {feature})"
    )]
    NotBuilt {
        /// The scheme.
        scheme: String,
        /// The cargo feature that adds it.
        feature: &'static str,
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
        assert!(unknown.to_string().starts_with(
            "unknown source scheme 'gopher' (supported: pipe, file, tcp, process, tone, librespot, \
             spotify, airplay, meta"
        ));
        let unsupported = SourceError::UnsupportedScheme {
            scheme: "jack".into(),
        };
        assert!(unsupported
            .to_string()
            .starts_with("source scheme 'jack' is not supported yet (supported: pipe, file, tcp, process, tone, \
             librespot, spotify, airplay, meta"));
        let not_built = SourceError::NotBuilt {
            scheme: "alsa".into(),
            feature: "alsa",
        };
        assert_eq!(
            not_built.to_string(),
            "source scheme 'alsa' needs snaprelay built with the 'alsa' feature (cargo build \
             --release --features alsa)"
        );
    }
}

//! Server configuration: figment layers (built-in defaults → config file → `SNAPRELAY_*`
//! environment → command-line flags), snapserver.conf compatibility and validation
//! (docs/ARCHITECTURE.md, layer 4; docs/PROTOCOL.md §4).
//!
//! Every layer goes through the key table in `keys`: unknown keys are errors, keys snapserver
//! knows but we do not implement yet become [`Loaded::notices`], aliases are folded into their
//! canonical key. Only then are the layers merged and extracted, and every value checked
//! against its row's rule. This module reads the config file; it never logs (tracing is not
//! set up yet when it runs).
//!
//! Files: `sections` (the structs and defaults), `keys` and `rules` (the key table and what
//! each key accepts), `layers` and `load` (figment layering), `provenance` (where a value came from), `validate`, `log_filter`
//! (snapserver filters), `token` (the token file), `args` and `ini` (flags, snapserver.conf).

mod args;
mod error;
mod ini;
pub(crate) mod keys;
mod layers;
mod load;
mod log_filter;
mod provenance;
mod rules;
mod sections;
mod token;
mod validate;

#[cfg(test)]
mod tests;

pub use args::{print_help, Args, Personality, SNAPSERVER_CONFIG};
pub(crate) use error::did_you_mean;
pub use error::ConfigError;
pub use load::{load, load_from, Loaded, Origin};
pub(crate) use log_filter::filter_directive;
pub use sections::{
    Config, GrpcConfig, HttpConfig, LoggingConfig, ServerConfig, SslConfig, ANY_ADDRESS,
};
pub use token::{read_token, TokenFileError};

/// Codecs the stream encoder can produce: the encoder's own list, so adding a codec there is
/// all the config needs (the error message and `-hh` are built from it).
pub(crate) use crate::encoder::SUPPORTED_CODECS;

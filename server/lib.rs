//! snaprelay: a Snapcast-compatible, multi-stream audio relay.
//!
//! Layout:
//! - [`protocol`]: Snapcast wire messages, bytes in and out, no I/O.
//! - `source`: stream inputs (pipe, file, tone) and the pacer that timestamps PCM chunks.
//! - `encoder`: PCM chunk to encoded units (pcm for now).
//! - [`stream`]: one source + encoder, fanning serialized chunks out to sessions.
//! - `session`: one client connection (handshake, time sync, its single writer).
//! - [`server`]: listeners, start-up and shutdown.
//! - [`config`]: figment layering of defaults, file, environment and flags.
//! - [`settings`]: the settings that can change at run time.
//! - [`control`]: the gRPC control API over the server's state; [`pb`]: its generated code.
//! - [`http`]: the HTTP listener: Prometheus `/metrics`, JSON-RPC over HTTP and websockets.
//! - [`jsonrpc`]: the Snapcast JSON-RPC control API (TCP 1705, HTTP/WS 1780) over the same
//!   state as gRPC; `ops`: the change path both front ends share.
#![warn(missing_docs)]

#[cfg(test)]
mod alloc_counter;
pub mod clock;
pub mod config;
pub mod control;
mod diagnostics;
pub mod encoder;
pub mod http;
pub mod jsonrpc;
pub mod net;
pub mod pb;
pub mod pool;
pub mod protocol;
pub mod sample_format;
pub mod relay;
pub mod run;
pub mod session;
pub mod settings;
pub mod source;
mod startup_pages;
pub mod state;
pub mod stream;

pub use run::{bind, run, run_with, Listeners, RunError, RunOptions};

/// Default port for Snapcast stream clients (snapcast-protocol.md §6.2).
pub const DEFAULT_STREAM_PORT: u16 = 1704;

/// Default port of the gRPC control API (design.md "Ports"); `snapctl` connects here.
pub const DEFAULT_GRPC_PORT: u16 = 1710;

/// Default port of the HTTP listener: snapserver's JSON-RPC/HTTP port (snapcast-protocol.md
/// §6.1), where `/metrics` is served too rather than on a separate node_exporter-style 9100
/// (integrations.md §6).
pub const DEFAULT_HTTP_PORT: u16 = 1780;

/// Default port of the Snapcast JSON-RPC TCP control API (snapcast-protocol.md §5.1, §6.2).
pub const DEFAULT_JSONRPC_PORT: u16 = 1705;

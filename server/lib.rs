//! snaprelay: a Snapcast-compatible, multi-stream audio relay.
//!
//! Layers, lowest first; a module uses its own layer or lower ones, never a higher one, and
//! no two modules import each other in a circle (checked by `tests/layering.rs`):
//!
//! 1. Foundation: [`protocol`] (Snapcast wire messages, bytes in and out, no I/O), `net`
//!    (binding listeners, the per-session sender with MSG_ZEROCOPY), `pool` (pooled chunk
//!    buffers), [`clock`], [`sample_format`], `state` (clients and groups, their rules and
//!    persistence), `properties` (stream properties, metadata and the control rules),
//!    `image_cache` (cover art), [`pb`] (generated gRPC code), [`heap`] (malloc settings),
//!    [`calendar`] (dates people read), `child` (child processes that end with the relay),
//!    `host` (facts about this machine), `startup_pages` (giving back start-up code pages),
//!    `alloc_counter` (tests only: allocations counted per thread), [`log_output`] (where
//!    log lines go and in which format), [`daemon`] (`-d`: detaching, pid file, user).
//! 2. [`source`] (pipe, file, tcp, process, tone inputs and the pacer), [`encoder`]
//!    (pcm, flac, opus, ogg), [`plugin`] (stream plugins: a stream's properties and
//!    control) and `upstream` (another Snapcast server as a stream's input).
//! 3. `stream`: one source + encoder, fanning each serialized chunk out to its sessions;
//!    the list of running streams.
//! 4. [`config`] (figment layering of defaults, file, environment and flags; the keys table)
//!    and [`settings`] (the live values the running code reads).
//! 5. `session`: one client connection (handshake, time sync, its single writer) and the
//!    registry of live sessions.
//! 6. `relay`: the core handle over all of the above: the change path, client sync,
//!    adding/removing streams, the one stats snapshot.
//! 7. Front ends over the core: [`control`] (gRPC), [`jsonrpc`] (Snapcast JSON-RPC over TCP,
//!    HTTP and WebSocket), [`http`] (`/metrics` and the JSON-RPC routes), `diagnostics` (the
//!    periodic log), `discovery` (mDNS publishing of the listeners).
//! 8. [`run`](mod@run): the one place that knows every listener: [`Listeners::bind`] binds them all,
//!    [`run()`] starts the core and a front end on each, and runs the shutdown sequence.
//!    `main.rs` only parses flags, sets up logging and the runtime, and calls those two.
//!
//! The public surface is what the binaries (`snaprelay`, `snapctl`), the integration tests,
//! the benches and the fuzz targets use; everything else is `pub(crate)`, and
//! `unreachable_pub` keeps it that way.
#![warn(missing_docs)]
#![warn(unreachable_pub)]

#[cfg(test)]
mod alloc_counter;
pub mod calendar;
mod child;
pub mod clock;
pub mod config;
pub mod control;
pub mod daemon;
mod diagnostics;
mod discovery;
pub mod encoder;
pub mod heap;
mod host;
pub mod http;
pub(crate) mod image_cache;
pub mod jsonrpc;
pub mod log_output;
pub(crate) mod net;
pub mod pb;
pub mod plugin;
pub(crate) mod pool;
pub(crate) mod properties;
pub mod protocol;
pub(crate) mod relay;
pub mod run;
pub mod sample_format;
pub(crate) mod session;
pub mod settings;
pub mod source;
mod startup_pages;
pub(crate) mod state;
pub(crate) mod stream;
pub(crate) mod upstream;

pub use run::{run, Listeners, RunError, RunOptions};

/// Default port for Snapcast stream clients (docs/PROTOCOL.md §4.3).
pub(crate) const DEFAULT_STREAM_PORT: u16 = 1704;

/// Default port of the gRPC control API (docs/DEPLOY.md, ports); `snapctl` connects here.
pub const DEFAULT_GRPC_PORT: u16 = 1710;

/// Default port of the HTTP listener: snapserver's JSON-RPC/HTTP port (docs/PROTOCOL.md
/// §4.3), where `/metrics` is served too rather than on a separate node_exporter-style 9100
/// (docs/DEPLOY.md, "Metrics").
pub(crate) const DEFAULT_HTTP_PORT: u16 = 1780;
/// snapserver's HTTPS port.
pub(crate) const DEFAULT_HTTPS_PORT: u16 = 1788;

/// Default port of the Snapcast JSON-RPC TCP control API (docs/PROTOCOL.md §4.3).
pub(crate) const DEFAULT_JSONRPC_PORT: u16 = 1705;

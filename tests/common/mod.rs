//! Test harness: the built `snaprelay` and real Debian `snapclient`s as child processes
//! (killed on drop), a test signal written into the relay's FIFO, and the analysis of what
//! each client played. This file only declares the parts and re-exports what tests use.
#![allow(dead_code)] // each test binary uses a different part of the harness

pub mod audio;
pub mod edge;
pub mod heard;
pub mod matching;
mod peers;
mod playback;
mod ports;
mod proxy;
mod relay;
pub mod retry;
mod snapclient;
mod snapctl;
mod snapserver;
mod source;
pub mod stream_plugin;
mod wait;

// Each test binary uses a different part of these, so an unused re-export is no warning.
#[allow(unused_imports)]
pub use peers::{hello_client, http_get, jsonrpc_call, HttpResponse};
#[allow(unused_imports)]
pub use playback::{
    assert_continuous, assert_hears_the_signal, once_more_if_apart, recent_frequency,
    steady_frames, sync_offset_ms, SECOND,
};
#[allow(unused_imports)]
pub use ports::free_port;
#[allow(unused_imports)]
pub use proxy::DelayProxy;
#[allow(unused_imports)]
pub use relay::Relay;
#[allow(unused_imports)]
pub use snapclient::{snapclient_binary, Arrival, Snapclient};
#[allow(unused_imports)]
pub use snapctl::snapctl;
#[allow(unused_imports)]
pub use snapserver::Snapserver;
#[allow(unused_imports)]
pub use source::{source_fifo, FifoWriter, Lead, LiveWriter, RealTimeWriter, WriterPlan};
#[allow(unused_imports)]
pub use wait::eventually;

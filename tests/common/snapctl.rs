//! The built `snapctl`, run against a relay's control API.

use std::process::Command;

use super::relay::Relay;

/// Runs `snapctl --server <relay> ARGS`; returns stdout, failing the test on a non-zero exit.
pub fn snapctl(relay: &Relay, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_snapctl"))
        .args(["--server", &relay.grpc_url()])
        .args(args)
        .output()
        .expect("run snapctl");
    assert!(
        output.status.success(),
        "snapctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

//! Compiles the control API in `proto/` with protox (pure Rust, so no system `protoc`) and
//! tonic-prost-build, and writes the descriptor set that server reflection serves.

use std::path::PathBuf;

use protox::prost::Message as _;

const PROTOS: &[&str] = &["snaprelay/v1/control.proto", "snaprelay/v1/stats.proto"];

/// Enum fields, serialized by name rather than number in `snapctl --json`.
const ENUM_FIELDS: &[(&str, &str)] = &[
    (".snaprelay.v1.ConfigEntry.origin", "config_origin"),
    (".snaprelay.v1.Session.send_mode", "send_mode"),
    (".snaprelay.v1.StreamStats.state", "stream_state"),
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Rebuild only when the API changes, not on every edit of the crate.
    println!("cargo:rerun-if-changed=proto");
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    let fds = protox::compile(PROTOS, ["proto"])?;
    std::fs::write(
        out_dir.join("snaprelay_v1_descriptor.bin"),
        fds.encode_to_vec(),
    )?;
    let mut builder = tonic_prost_build::configure()
        .emit_rerun_if_changed(false)
        .type_attribute(".snaprelay.v1", "#[derive(serde::Serialize)]");
    for (field, with) in ENUM_FIELDS {
        builder = builder.field_attribute(
            field,
            format!("#[serde(serialize_with = \"crate::pb::enum_names::{with}\")]"),
        );
    }
    builder.compile_fds(fds)?;
    Ok(())
}

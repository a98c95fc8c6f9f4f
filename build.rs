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
    (
        ".snaprelay.v1.StreamProperties.playback_status",
        "playback_status",
    ),
    (".snaprelay.v1.StreamProperties.loop_status", "loop_status"),
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
    link_layout(&out_dir)?;
    Ok(())
}

/// Release builds of the server lay out its code so a running relay touches few pages:
/// `server/hot-text.txt` (made by `scripts/hot-text.sh` from profiles of a running relay)
/// lists the functions it executes, and a linker script puts them next to each other ahead
/// of all others; otherwise the kernel maps 64 KiB around every scattered hot function.
/// Relative relocations are packed (DT_RELR, glibc >= 2.36): they are read once at start and
/// then only take memory. Both work with lld and GNU ld; docs/PERFORMANCE.md has the numbers.
fn link_layout(out_dir: &std::path::Path) -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=server/hot-text.txt");
    let release = std::env::var("PROFILE").is_ok_and(|p| p == "release");
    let linux_gnu = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux")
        && std::env::var("CARGO_CFG_TARGET_ENV").is_ok_and(|env| env == "gnu");
    if !(release && linux_gnu) {
        return Ok(());
    }
    let list = std::fs::read_to_string("server/hot-text.txt")?;
    let mut script = String::from("SECTIONS {\n  .text.hot : {\n");
    for symbol in list
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
    {
        // LLVM puts functions it deems cold in `.text.unlikely.<symbol>`.
        script.push_str(&format!("    *(.text.{symbol} .text.unlikely.{symbol})\n"));
    }
    script.push_str("  }\n} INSERT BEFORE .text;\n");
    let path = out_dir.join("hot-text.ld");
    std::fs::write(&path, script)?;
    println!(
        "cargo:rustc-link-arg-bin=snaprelay=-Wl,-T,{}",
        path.display()
    );
    println!("cargo:rustc-link-arg-bin=snaprelay=-Wl,-z,pack-relative-relocs");
    Ok(())
}

//! The whole config loader (`config::load_from`) on an arbitrary file, in both forms it
//! accepts: TOML (`.toml`) and snapserver.conf INI (anything else). The first input byte
//! picks the form. Errors are expected; a panic or a hang is a bug.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use snaprelay::config::{load_from, Args};

fn dir() -> &'static std::path::Path {
    static DIR: OnceLock<std::path::PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // One private directory per fuzzing process (libFuzzer may run several with -jobs).
        let dir = std::env::temp_dir().join(format!("snaprelay-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&form, text)) = data.split_first() else {
        return;
    };
    let name = if form & 1 == 0 {
        "fuzz.toml"
    } else {
        "fuzz.conf"
    };
    let path = dir().join(name);
    let mut file = std::fs::File::create(&path).expect("create the config file");
    file.write_all(text).expect("write the config file");
    drop(file);
    let Ok(args) = Args::try_parse_from(["snaprelay", "-c", path.to_str().expect("utf-8 path")])
    else {
        return;
    };
    let _ = load_from(&args, std::iter::empty());
});

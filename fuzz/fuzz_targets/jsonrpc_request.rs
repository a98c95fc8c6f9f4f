//! JSON-RPC requests as a control client sends them (docs/JSONRPC.md §2): any text
//! becomes requests or JSON-RPC errors, never a panic, and a batch never reports more
//! well-formed requests than entries.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The TCP transport splits on newlines and strips a trailing CR before parsing.
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        let (entries, requests) = snaprelay::jsonrpc::parse_summary(line);
        assert!(requests <= entries);
    }
});

//! Lines from a stream plugin (docs/SOURCES.md §6.2) as the relay reads them: any text is
//! understood or refused, never a panic, and properties read from it write back into JSON
//! that reads the same (what every control API shows is what the plugin said).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.split('\n') {
        if let Some(round_trip) = snaprelay::plugin::read_line_summary(line) {
            assert!(round_trip, "properties do not read back the same: {line}");
        }
    }
});

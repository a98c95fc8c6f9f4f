//! Stream source URIs (`SourceSpec::parse`, docs/SOURCES.md §1.1) and sample formats
//! (`rate:bits:channels`, docs/PROTOCOL.md §3.1) from arbitrary text. Beyond "never panics":
//! a sample format that parses prints back to text that parses to the same format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snaprelay::sample_format::SampleFormat;
use snaprelay::source::{SourceDefaults, SourceSpec};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let defaults = SourceDefaults {
        sample_format: SampleFormat::default(),
        codec: "pcm".to_owned(),
        chunk_ms: 20,
        ..SourceDefaults::default()
    };
    if let Ok(spec) = SourceSpec::parse(text, &defaults) {
        // What status reports show must itself be printable.
        let _ = spec.uri.to_uri_string();
    }
    if let Ok(format) = text.parse::<SampleFormat>() {
        let again: SampleFormat = format.to_string().parse().expect("printed format parses");
        assert_eq!(again, format);
    }
});

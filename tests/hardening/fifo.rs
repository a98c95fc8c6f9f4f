//! Faults in a pipe source: a FIFO deleted under the relay is recreated and plays again.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::common::{self, eventually, Relay};
use crate::metrics;

#[test]
fn a_fifo_deleted_under_the_relay_is_recreated_and_plays_again() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = common::source_fifo(dir.path(), "vanishing");
    let uri = format!("pipe://{}?name=vanishing&mode=create", fifo.display());
    let relay = Relay::start(&["--source", &uri]);
    let is_fifo = |path: &Path| {
        use std::os::unix::fs::FileTypeExt;
        std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
    };
    eventually(
        Duration::from_secs(5),
        "the FIFO created",
        || relay.log(),
        || is_fifo(&fifo).then_some(()),
    );
    let chunks_total = || {
        metrics(&relay)
            .get("snaprelay_stream_chunks_total{stream=\"vanishing\"}")
            .copied()
            .unwrap_or(0.0)
    };
    let write_second = |path: &Path| {
        let mut writer = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        // One second of 48000:16:2 silence-free ramp.
        let bytes: Vec<u8> = (0..48_000 * 4).map(|i| (i % 251) as u8).collect();
        writer.write_all(&bytes).unwrap();
    };
    write_second(&fifo);
    let before = eventually(
        Duration::from_secs(5),
        "chunks from the first writer",
        || relay.log(),
        || Some(chunks_total()).filter(|&c| c >= 40.0),
    );

    // The writer is gone and so is the FIFO: the relay must notice and make a new one.
    std::fs::remove_file(&fifo).unwrap();
    relay.wait_for_log(&["FIFO vanished"], Duration::from_secs(10));
    eventually(
        Duration::from_secs(10),
        "the FIFO recreated",
        || relay.log(),
        || is_fifo(&fifo).then_some(()),
    );
    write_second(&fifo);
    eventually(
        Duration::from_secs(5),
        "chunks from the writer that came back",
        || relay.log(),
        || (chunks_total() >= before + 40.0).then_some(()),
    );
}

//! Reads shairport-sync's metadata pipe for the stream's whole life: the pipe of the current
//! port (reopened when shairport-sync moves to another), its items parsed into metadata for
//! the stream's properties. The pipe is held open read-write, so a shairport-sync that
//! restarts never makes it report EOF; snapserver removes it when the stream stops, and so
//! does this.

use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, warn};

use super::airplay::{MetadataParser, Ports};
use super::pipe::PipeReader;
use crate::plugin::StreamControl;

/// How often the pipe's path is checked against the current port while nothing arrives.
const RECHECK: Duration = Duration::from_millis(2500);

/// Runs until the stream stops.
pub(super) async fn run(stream: String, ports: Arc<Ports>, control: Arc<StreamControl>) {
    let stopped = control.stopped();
    let mut path = ports.pipe();
    let mut reader = PipeReader::new(path.clone(), false);
    let mut parser = MetadataParser::default();
    let mut buf = vec![0u8; 64 << 10];
    let mut logged_bad = 0;
    loop {
        let read = tokio::select! {
            () = stopped.cancelled() => break,
            read = tokio::time::timeout(RECHECK, reader.read(&mut buf)) => read,
        };
        if ports.pipe() != path {
            path = ports.pipe();
            debug!(stream = %stream, pipe = %path.display(), "following shairport-sync to its new metadata pipe");
            reader = PipeReader::new(path.clone(), false);
            parser = MetadataParser::default();
            continue;
        }
        match read {
            Err(_) => {}
            Ok(Err(err)) => {
                warn!(stream = %stream, error = %err, "metadata pipe read failed");
                tokio::time::sleep(RECHECK).await;
            }
            Ok(Ok(n)) => {
                let text = String::from_utf8_lossy(&buf[..n]);
                for metadata in parser.feed(&text) {
                    // Off the runtime's workers: the cover is decoded and hashed there.
                    let control = control.clone();
                    let _ = tokio::task::spawn_blocking(move || control.report_metadata(metadata))
                        .await;
                }
                if parser.bad_items > logged_bad {
                    logged_bad = parser.bad_items;
                    warn!(stream = %stream, bad_items = logged_bad, "unreadable items on the metadata pipe; skipped");
                }
            }
        }
    }
    let _ = std::fs::remove_file(&path);
}

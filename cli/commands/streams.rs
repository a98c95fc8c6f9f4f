//! `snapctl streams`.

use snaprelay::pb;

use crate::client::Control;
use crate::exit::CliError;
use crate::output::{bytes, with_id, Output, Table};

pub async fn run(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let streams = control
        .list_streams(pb::ListStreamsRequest {})
        .await?
        .into_inner()
        .streams;
    if out.json {
        // Lists print an array of objects with an `id` (the stream name), like groups.
        let items = streams
            .iter()
            .map(|s| with_id(&s.name, s))
            .collect::<Result<Vec<_>, _>>()?;
        return out.json(&items);
    }
    out.line(&table(&streams))
}

/// The streams table, shared with `stats`.
pub fn table(streams: &[pb::StreamStats]) -> String {
    let mut table = Table::new(&[
        "STREAM", "STATE", "CODEC", "FORMAT", "CLIENTS", "CHUNKS", "BYTES", "LATE", "DROPPED",
        "STALLS", "OVERRUNS", "URI",
    ]);
    for s in streams {
        table.row(vec![
            s.name.clone(),
            match s.state() {
                pb::StreamState::Playing => "playing",
                _ => "idle",
            }
            .to_owned(),
            s.codec.clone(),
            s.sample_format.clone(),
            s.clients.to_string(),
            s.chunks.to_string(),
            bytes(s.bytes),
            s.chunks_late.to_string(),
            s.chunks_dropped.to_string(),
            s.stalls.to_string(),
            s.encoder_overruns.to_string(),
            s.uri.clone(),
        ]);
    }
    table.render()
}

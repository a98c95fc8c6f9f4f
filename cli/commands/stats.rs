//! `snapctl stats [--watch]`: zerocopy, buffer pool and stream figures.

use snaprelay::pb;

use super::streams;
use crate::args::StatsArgs;
use crate::client::Control;
use crate::exit::CliError;
use crate::output::{bytes, uptime, Output, Table};

pub async fn run(control: &mut Control, out: &Output, args: &StatsArgs) -> Result<(), CliError> {
    if !args.watch {
        let stats = control
            .get_stats(pb::GetStatsRequest {})
            .await?
            .into_inner();
        return if out.json {
            out.json(&stats)
        } else {
            out.line(&render(&stats))
        };
    }
    let mut updates = control
        .watch_stats(pb::WatchStatsRequest {
            interval_ms: args.interval,
        })
        .await?
        .into_inner();
    loop {
        let next = tokio::select! {
            next = updates.message() => next?,
            _ = tokio::signal::ctrl_c() => return Err(CliError::Interrupted),
        };
        let Some(stats) = next else {
            return Ok(()); // the server ended the stream (shutting down)
        };
        if out.json {
            // JSON Lines: one object per update, tagged like ripgrep's messages.
            let mut value = serde_json::to_value(&stats)
                .map_err(|err| CliError::Output(std::io::Error::other(err)))?;
            if let Some(object) = value.as_object_mut() {
                object.insert("type".to_owned(), "stats".into());
            }
            out.json(&value)?;
        } else {
            // Clear the screen between tables when a person is watching.
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                out.line("\x1b[2J\x1b[H")?;
            }
            out.line(&render(&stats))?;
            out.line("")?;
        }
    }
}

fn render(stats: &pb::Stats) -> String {
    let aggregate = stats.aggregate.unwrap_or_default();
    let drops = aggregate.policy_drops.unwrap_or_default();
    let mut text = format!(
        "uptime {}, {} session(s), {} sent in {} chunks, {} late, {} dropped\n\
         since start: {} connection(s), {} time replies; dropped by policy: {} handshake \
         timeout(s), {} send stall(s), {} bad message(s), {} refused, {} time flood(s); \
         {} JSON-RPC client(s) dropped as too slow\n\n",
        uptime(stats.uptime_ms),
        aggregate.sessions,
        bytes(aggregate.bytes_sent),
        aggregate.chunks_sent,
        aggregate.chunks_late,
        aggregate.chunks_dropped,
        aggregate.connections_accepted,
        aggregate.time_replies,
        drops.handshake_timeouts,
        drops.send_stalls,
        drops.bad_messages,
        drops.refused_connections,
        drops.time_floods,
        aggregate.jsonrpc_slow_disconnects,
    );
    let mut zerocopy = Table::new(&[
        "SESSION",
        "CLIENT",
        "MODE",
        "ATTEMPTS",
        "OK",
        "ZC BYTES",
        "REGULAR",
        "REG BYTES",
        "COORD FB",
        "ENOBUFS",
        "COPIED",
        "OUTSTANDING",
        "ZC %",
    ]);
    let mut row = |id: String, client: String, mode: &str, z: &pb::ZerocopyStats| {
        zerocopy.row(vec![
            id,
            client,
            mode.to_owned(),
            z.attempts.to_string(),
            z.successful.to_string(),
            bytes(z.bytes),
            z.regular_sends.to_string(),
            bytes(z.regular_bytes),
            z.coordination_fallbacks.to_string(),
            z.enobufs_fallbacks.to_string(),
            z.copied_completions.to_string(),
            z.outstanding.to_string(),
            format!("{:.1}", z.zerocopy_percent),
        ]);
    };
    for s in &stats.sessions {
        let mode = match s.send_mode() {
            pb::SendMode::Zerocopy => "zerocopy",
            _ => "regular",
        };
        row(
            s.session_id.to_string(),
            super::sessions::or_dash(&s.client_id),
            mode,
            &s.zerocopy.unwrap_or_default(),
        );
    }
    row(
        "total".to_owned(),
        String::new(),
        "",
        &aggregate.zerocopy.unwrap_or_default(),
    );
    text.push_str("Zerocopy\n");
    text.push_str(&zerocopy.render());
    let pool = stats.pool.unwrap_or_default();
    let mut pool_table = Table::new(&[
        "BUFFERS",
        "AVAILABLE",
        "ALLOCATED",
        "CREATED",
        "REUSED",
        "CLEANUPS",
    ]);
    pool_table.row(vec![
        pool.total_buffers.to_string(),
        pool.available_buffers.to_string(),
        bytes(pool.bytes_allocated),
        pool.buffers_created.to_string(),
        pool.buffers_reused.to_string(),
        pool.cleanups.to_string(),
    ]);
    text.push_str("\n\nBuffer pool\n");
    text.push_str(&pool_table.render());
    text.push_str("\n\nStreams\n");
    text.push_str(&streams::table(&stats.streams));
    text
}

//! Prometheus metrics (issue 8, docs/DEPLOY.md "Metrics"): the relay core's [`Snapshot`]
//! rendered in the text exposition format 0.0.4, names prefixed `snaprelay_`, base units,
//! counters ending `_total`.
//!
//! Every counter is monotonic since start (the snapshot keeps closed sessions' figures).
//! Labels are bounded: the only label with configured values is `stream`; no per-client label
//! exists.

use std::time::SystemTime;

use super::exposition::{Exposition, Kind};
use crate::net::SendMode;
use crate::relay::{PluginView, Snapshot, StreamView, UpstreamView};

/// The whole exposition, as `GET /metrics` returns it.
pub(crate) fn render(snapshot: &Snapshot) -> String {
    let mut out = Exposition::default();
    process(&mut out, snapshot);
    sessions(&mut out, snapshot);
    sends(&mut out, snapshot);
    pool(&mut out, snapshot);
    streams(&mut out, snapshot);
    out.text
}

fn process(out: &mut Exposition, snapshot: &Snapshot) {
    out.family(
        "snaprelay_build_info",
        Kind::Gauge,
        "Always 1; the version label names the running build.",
    );
    out.sample(
        "snaprelay_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );
    let started = snapshot
        .started_at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    out.gauge(
        "snaprelay_start_time_seconds",
        "When the relay started, in seconds since the Unix epoch.",
        started,
    );
    out.counter(
        "snaprelay_jsonrpc_slow_disconnects_total",
        "JSON-RPC connections dropped because they stopped reading their notifications.",
        snapshot.jsonrpc_slow_disconnects,
    );
}

fn sessions(out: &mut Exposition, snapshot: &Snapshot) {
    let live = &snapshot.sessions;
    let clients = live.iter().filter(|s| s.client.is_some()).count();
    out.gauge(
        "snaprelay_clients_connected",
        "Stream clients connected that have completed the Hello handshake.",
        clients,
    );
    let zerocopy_sessions = live
        .iter()
        .filter(|s| s.send_mode == SendMode::Zerocopy)
        .count();
    out.family(
        "snaprelay_sessions",
        Kind::Gauge,
        "Open stream client connections by send mode (a session that fell back to \
         ordinary sends counts as regular).",
    );
    out.sample(
        "snaprelay_sessions",
        &[("mode", "zerocopy")],
        zerocopy_sessions,
    );
    out.sample(
        "snaprelay_sessions",
        &[("mode", "regular")],
        live.len() - zerocopy_sessions,
    );
    out.counter(
        "snaprelay_client_connections_total",
        "Stream client connections accepted.",
        snapshot.connections_accepted,
    );

    // Policy drops (issue 10): what the relay did about clients that misbehaved.
    let drops = &snapshot.policy_drops;
    out.family(
        "snaprelay_policy_drops_total",
        Kind::Counter,
        "Sessions ended or connections refused by policy, by reason.",
    );
    for (reason, value) in [
        ("handshake_timeout", drops.handshake_timeouts),
        ("send_stall", drops.send_stalls),
        ("bad_message", drops.bad_messages),
        ("connection_limit", drops.refused_connections),
        ("time_flood", drops.time_floods),
    ] {
        out.sample("snaprelay_policy_drops_total", &[("reason", reason)], value);
    }
}

fn sends(out: &mut Exposition, snapshot: &Snapshot) {
    let totals = &snapshot.totals;
    out.counter(
        "snaprelay_sent_bytes_total",
        "Message bytes written to stream client sockets.",
        totals.bytes_sent,
    );
    out.counter(
        "snaprelay_sent_chunks_total",
        "Audio chunks written to stream clients.",
        totals.chunks_sent,
    );
    out.counter(
        "snaprelay_late_chunks_total",
        "Audio chunks skipped because they were already too late to play.",
        totals.chunks_late,
    );
    out.counter(
        "snaprelay_dropped_chunks_total",
        "Audio chunks lost because a session fell a whole queue behind its stream.",
        totals.chunks_dropped,
    );
    out.counter(
        "snaprelay_time_sync_replies_total",
        "Time sync requests answered.",
        totals.time_replies,
    );

    // Zerocopy (docs/ZEROCOPY.md, "Statistics", defines each figure).
    let z = &totals.sends;
    out.counter(
        "snaprelay_zerocopy_attempts_total",
        "Messages offered to sendmsg with MSG_ZEROCOPY.",
        z.zerocopy_attempts,
    );
    out.counter(
        "snaprelay_zerocopy_successes_total",
        "MSG_ZEROCOPY sends the kernel accepted.",
        z.zerocopy_successful,
    );
    out.counter(
        "snaprelay_zerocopy_sent_bytes_total",
        "Bytes sent with MSG_ZEROCOPY.",
        z.zerocopy_bytes,
    );
    out.counter(
        "snaprelay_zerocopy_copied_total",
        "Zerocopy completions where the kernel reported it copied the data anyway.",
        z.copied_completions,
    );
    out.family(
        "snaprelay_zerocopy_fallbacks_total",
        Kind::Counter,
        "Messages sent the ordinary way although zerocopy was on, by reason.",
    );
    out.sample(
        "snaprelay_zerocopy_fallbacks_total",
        &[("reason", "enobufs")],
        z.enobufs_fallbacks,
    );
    out.sample(
        "snaprelay_zerocopy_fallbacks_total",
        &[("reason", "coordination")],
        z.coordination_fallbacks,
    );
    out.gauge(
        "snaprelay_zerocopy_outstanding",
        "Zerocopy sends whose kernel completion has not arrived yet.",
        z.outstanding,
    );
    out.counter(
        "snaprelay_regular_sends_total",
        "Messages sent the ordinary way (copied into the socket buffer).",
        z.regular_sends,
    );
    out.counter(
        "snaprelay_regular_sent_bytes_total",
        "Bytes sent the ordinary way.",
        z.regular_bytes,
    );
}

fn pool(out: &mut Exposition, snapshot: &Snapshot) {
    let pool = &snapshot.pool;
    out.family(
        "snaprelay_pool_buffers",
        Kind::Gauge,
        "Chunk buffers that exist, by state.",
    );
    out.sample(
        "snaprelay_pool_buffers",
        &[("state", "in_use")],
        pool.total_buffers.saturating_sub(pool.available_buffers),
    );
    out.sample(
        "snaprelay_pool_buffers",
        &[("state", "available")],
        pool.available_buffers,
    );
    out.gauge(
        "snaprelay_pool_bytes",
        "Capacity of every existing chunk buffer, in bytes.",
        pool.bytes_allocated,
    );
    out.counter(
        "snaprelay_pool_buffers_created_total",
        "Chunk buffers allocated.",
        pool.buffers_created,
    );
    out.counter(
        "snaprelay_pool_buffers_reused_total",
        "Chunk buffer requests served from a free list.",
        pool.buffers_reused,
    );
    out.counter(
        "snaprelay_pool_cleanups_total",
        "Pool cleanup passes that freed at least one idle buffer.",
        pool.cleanup_operations,
    );
}

fn streams(out: &mut Exposition, snapshot: &Snapshot) {
    let streams = &snapshot.streams;
    let playing_count = streams.iter().filter(|s| s.playing).count();
    out.family(
        "snaprelay_streams",
        Kind::Gauge,
        "Configured streams by state.",
    );
    out.sample("snaprelay_streams", &[("state", "playing")], playing_count);
    out.sample(
        "snaprelay_streams",
        &[("state", "idle")],
        streams.len() - playing_count,
    );
    type StreamFigure = fn(&StreamView) -> f64;
    let per_stream: [(&str, Kind, &str, StreamFigure); 14] = [
        (
            "snaprelay_stream_playing",
            Kind::Gauge,
            "1 while audio flows from the stream's source, 0 while it is idle.",
            |s| f64::from(u8::from(s.playing)),
        ),
        (
            "snaprelay_stream_clients",
            Kind::Gauge,
            "Sessions currently receiving the stream.",
            |s| s.clients as f64,
        ),
        (
            "snaprelay_stream_chunks_total",
            Kind::Counter,
            "Chunks read from the stream's source and published to its sessions.",
            |s| s.chunks as f64,
        ),
        (
            "snaprelay_stream_input_seconds_total",
            Kind::Counter,
            "Seconds of audio read from the stream's source; its rate is 1 while the \
             source keeps real time.",
            |s| s.chunks as f64 * f64::from(s.chunk_ms) / 1000.0,
        ),
        (
            "snaprelay_stream_published_bytes_total",
            Kind::Counter,
            "Encoded chunk message bytes published (once per chunk, not per client).",
            |s| s.bytes as f64,
        ),
        (
            "snaprelay_stream_late_chunks_total",
            Kind::Counter,
            "Chunks of the stream its sessions skipped as too late to play.",
            |s| s.chunks_late as f64,
        ),
        (
            "snaprelay_stream_dropped_chunks_total",
            Kind::Counter,
            "Chunks of the stream its sessions lost by falling a whole queue behind.",
            |s| s.chunks_dropped as f64,
        ),
        (
            "snaprelay_stream_stalls_total",
            Kind::Counter,
            "Source pauses of the stream, each bridged with silence where it happened.",
            |s| s.stalls as f64,
        ),
        (
            "snaprelay_stream_resyncs_total",
            Kind::Counter,
            "Times the stream's timeline restarted after the source was away longer than clients buffer.",
            |s| s.resyncs as f64,
        ),
        (
            "snaprelay_stream_source_lead_seconds",
            Kind::Gauge,
            "How far ahead of real time the stream's writer keeps its data (a full pipe, a player's queue), as the relay learned it.",
            |s| s.source_lead_us as f64 / 1e6,
        ),
        (
            "snaprelay_stream_encoder_overruns_total",
            Kind::Counter,
            "PCM chunks dropped because the stream's encoder was still busy with earlier ones.",
            |s| s.encoder_overruns as f64,
        ),
        (
            "snaprelay_stream_source_restarts_total",
            Kind::Counter,
            "Times the stream's input was started again (a source process that ended, a capture device reopened).",
            |s| s.source_restarts as f64,
        ),
        (
            "snaprelay_stream_source_overruns_total",
            Kind::Counter,
            "Capture overruns of the stream's input (the ALSA device's buffer filled before it was read).",
            |s| s.source_overruns as f64,
        ),
        (
            "snaprelay_stream_source_dropped_frames_total",
            Kind::Counter,
            "Captured frames dropped to catch up when the capture fell behind its device.",
            |s| s.source_frames_dropped as f64,
        ),
    ];
    for (name, kind, help, figure) in per_stream {
        out.family(name, kind, help);
        for stream in streams {
            out.sample(name, &[("stream", &stream.name)], figure(stream));
        }
    }
    plugins(out, snapshot);
    upstreams(out, snapshot);
}

/// Stream plugins (only streams that have one get samples) and the cover art they sent.
fn plugins(out: &mut Exposition, snapshot: &Snapshot) {
    type PluginFigure = fn(&PluginView) -> f64;
    let per_plugin: [(&str, Kind, &str, PluginFigure); 4] = [
        (
            "snaprelay_stream_plugin_running",
            Kind::Gauge,
            "1 while the stream's plugin (controlscript) runs, 0 while it is restarted.",
            |p| f64::from(u8::from(p.running)),
        ),
        (
            "snaprelay_stream_plugin_restarts_total",
            Kind::Counter,
            "Times the stream's plugin ended and was started again.",
            |p| p.restarts as f64,
        ),
        (
            "snaprelay_stream_plugin_bad_lines_total",
            Kind::Counter,
            "Lines from the stream's plugin that were not understood and were dropped.",
            |p| p.bad_lines as f64,
        ),
        (
            "snaprelay_stream_plugin_failed_requests_total",
            Kind::Counter,
            "Control requests the stream's plugin refused or did not answer in time.",
            |p| p.failed_requests as f64,
        ),
    ];
    // Families only when a stream has a plugin: an exposition has no empty families.
    let with_plugins: Vec<(&str, &PluginView)> = snapshot
        .streams
        .iter()
        .filter_map(|s| s.plugin.as_ref().map(|p| (s.name.as_str(), p)))
        .collect();
    for (name, kind, help, figure) in per_plugin {
        if with_plugins.is_empty() {
            break;
        }
        out.family(name, kind, help);
        for (stream, plugin) in &with_plugins {
            out.sample(name, &[("stream", stream)], figure(plugin));
        }
    }
    out.gauge(
        "snaprelay_cover_art_images",
        "Cover art images stream plugins sent inline, served at /__image_cache.",
        snapshot.cover_art.0,
    );
    out.gauge(
        "snaprelay_cover_art_bytes",
        "Bytes of those images.",
        snapshot.cover_art.1,
    );
}

/// Per-stream families of relayed streams' upstream links, when there are any.
fn upstreams(out: &mut Exposition, snapshot: &Snapshot) {
    type LinkFigure = fn(&UpstreamView) -> f64;
    let per_link: [(&str, Kind, &str, LinkFigure); 9] = [
        (
            "snaprelay_upstream_connected",
            Kind::Gauge,
            "1 while the relayed stream is connected to its upstream server.",
            |u| f64::from(u8::from(u.connected)),
        ),
        (
            "snaprelay_upstream_clock_offset_seconds",
            Kind::Gauge,
            "The upstream's clock minus ours (median of Time round trips).",
            |u| u.offset_us as f64 / 1e6,
        ),
        (
            "snaprelay_upstream_clock_jitter_seconds",
            Kind::Gauge,
            "Spread of the clock offset estimates (median absolute deviation).",
            |u| u.jitter_us as f64 / 1e6,
        ),
        (
            "snaprelay_upstream_rtt_seconds",
            Kind::Gauge,
            "Median Time round trip to the upstream.",
            |u| u.rtt_us as f64 / 1e6,
        ),
        (
            "snaprelay_upstream_buffer_seconds",
            Kind::Gauge,
            "The upstream's buffer.",
            |u| u.buffer_ms as f64 / 1e3,
        ),
        (
            "snaprelay_upstream_chunks_total",
            Kind::Counter,
            "Chunks received from the upstream.",
            |u| u.chunks as f64,
        ),
        (
            "snaprelay_upstream_dropped_chunks_total",
            Kind::Counter,
            "Upstream chunks dropped before the clock offset settled (too many waiting, or a new codec).",
            |u| u.chunks_dropped as f64,
        ),
        (
            "snaprelay_upstream_late_chunks_total",
            Kind::Counter,
            "Upstream chunks that arrived after their moment to play (dropped, never played late).",
            |u| u.chunks_late as f64,
        ),
        (
            "snaprelay_upstream_reconnects_total",
            Kind::Counter,
            "Connections to the upstream made after the first.",
            |u| u.reconnects as f64,
        ),
    ];
    let links: Vec<(&str, &UpstreamView)> = snapshot
        .streams
        .iter()
        .filter_map(|s| s.upstream.as_ref().map(|u| (s.name.as_str(), u)))
        .collect();
    if links.is_empty() {
        return;
    }
    for (name, kind, help, figure) in per_link {
        out.family(name, kind, help);
        for (stream, link) in &links {
            out.sample(
                name,
                &[("stream", stream), ("upstream", &link.address)],
                figure(link),
            );
        }
    }
}

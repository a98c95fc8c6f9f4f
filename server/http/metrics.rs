//! Prometheus metrics (issue 8, integrations.md §6): the relay's figures in the text
//! exposition format 0.0.4, names prefixed `snaprelay_`, base units, counters ending `_total`.
//!
//! The figures are read from the same atomics the gRPC `GetStats` snapshot reads
//! (`control/stats.rs`): per-session [`SessionStats`] and zerocopy counters, each stream's
//! [`StreamStats`](crate::stream::StreamStats), the buffer pool. Labels are bounded: the only
//! label with configured values is `stream`; no per-client label exists.

use std::collections::{HashMap, HashSet};
use std::fmt::{Display, Write as _};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::control::zerocopy_stats_for;
use crate::net::{SendMode, ZerocopyStatsSnapshot};
use crate::server::Shared;
use crate::session::SessionInfo;

/// Cumulative per-session figures, summed over sessions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SessionTotals {
    /// Message bytes written to client sockets.
    pub(crate) bytes_sent: u64,
    /// Audio chunks written.
    pub(crate) chunks_sent: u64,
    /// Chunks skipped as too old to play.
    pub(crate) chunks_late: u64,
    /// Chunks lost because a session fell a whole queue behind.
    pub(crate) chunks_dropped: u64,
    /// Time requests answered.
    pub(crate) time_replies: u64,
    /// Zerocopy and regular send counters; `outstanding` is only ever summed over live
    /// sessions (a closed session has nothing in flight that the relay still waits for).
    pub(crate) zerocopy: ZerocopyStatsSnapshot,
}

impl SessionTotals {
    /// One session's figures now.
    fn of(info: &SessionInfo) -> Self {
        let stats = &info.stats;
        Self {
            bytes_sent: info.bytes_sent(),
            chunks_sent: stats.chunks_sent.load(Ordering::Relaxed),
            chunks_late: stats.chunks_late.load(Ordering::Relaxed),
            chunks_dropped: stats.chunks_lagged.load(Ordering::Relaxed),
            time_replies: stats.time_replies.load(Ordering::Relaxed),
            zerocopy: zerocopy_stats_for(info),
        }
    }

    fn add(&mut self, other: &Self) {
        self.bytes_sent += other.bytes_sent;
        self.chunks_sent += other.chunks_sent;
        self.chunks_late += other.chunks_late;
        self.chunks_dropped += other.chunks_dropped;
        self.time_replies += other.time_replies;
        self.zerocopy.add(&other.zerocopy);
    }
}

/// Sessions seen so far and the final figures of those that closed.
///
/// Prometheus counters must never go down, but a session's counters leave the registry with
/// it. So the ledger keeps each seen session's `Arc` until it notices the session is gone,
/// then adds its final figures (nothing updates them any more) to `retired`.
#[derive(Debug, Default)]
struct Ledger {
    seen: HashMap<u64, Arc<SessionInfo>>,
    retired: SessionTotals,
}

/// The metrics endpoint's own state: when the process started and the session ledger.
#[derive(Debug)]
pub(crate) struct Metrics {
    started_at: SystemTime,
    ledger: Mutex<Ledger>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh ledger; `snaprelay_start_time_seconds` is now.
    pub(crate) fn new() -> Self {
        Self {
            started_at: SystemTime::now(),
            ledger: Mutex::new(Ledger::default()),
        }
    }

    /// Brings the ledger up to date with the live sessions and returns every session's
    /// figures, closed ones included, plus the live sessions.
    ///
    /// Called on every scrape and once a second by the HTTP task, so only a session that opens
    /// and closes within one second without a scrape is missed.
    pub(crate) fn observe(&self, shared: &Shared) -> (SessionTotals, Vec<Arc<SessionInfo>>) {
        // Clone the Arcs first: no DashMap guard is held while the ledger is locked.
        let mut live: Vec<Arc<SessionInfo>> =
            shared.sessions.iter().map(|e| e.value().clone()).collect();
        live.sort_by_key(|info| info.id);
        let live_ids: HashSet<u64> = live.iter().map(|info| info.id).collect();
        let mut ledger = self
            .ledger
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Ledger { seen, retired } = &mut *ledger;
        seen.retain(|id, info| {
            if live_ids.contains(id) {
                return true;
            }
            let mut last = SessionTotals::of(info);
            last.zerocopy.outstanding = 0;
            retired.add(&last);
            false
        });
        for info in &live {
            seen.entry(info.id).or_insert_with(|| info.clone());
        }
        let mut totals = retired.clone();
        drop(ledger);
        for info in &live {
            totals.add(&SessionTotals::of(info));
        }
        (totals, live)
    }

    /// The whole exposition, as `GET /metrics` returns it.
    pub(crate) fn render(&self, shared: &Shared) -> String {
        let (totals, live) = self.observe(shared);
        let mut out = Exposition::default();

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
        let started = self
            .started_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        out.gauge(
            "snaprelay_start_time_seconds",
            "When the relay started, in seconds since the Unix epoch.",
            started,
        );

        // Sessions and clients.
        let clients = live.iter().filter(|info| info.client().is_some()).count();
        out.gauge(
            "snaprelay_clients_connected",
            "Stream clients connected that have completed the Hello handshake.",
            clients,
        );
        let zerocopy_sessions = live
            .iter()
            .filter(|info| info.send_stats.mode() == SendMode::Zerocopy)
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
        // Session ids start at 1 and are taken once per accepted connection.
        let accepted = shared
            .next_session_id
            .load(Ordering::Relaxed)
            .saturating_sub(1);
        out.counter(
            "snaprelay_client_connections_total",
            "Stream client connections accepted.",
            accepted,
        );

        // Policy drops (issue 10): what the relay did about clients that misbehaved.
        let drops = &shared.drops;
        out.family(
            "snaprelay_policy_drops_total",
            Kind::Counter,
            "Sessions ended or connections refused by policy, by reason.",
        );
        for (reason, value) in [
            (
                "handshake_timeout",
                drops.handshake_timeouts.load(Ordering::Relaxed),
            ),
            ("send_stall", drops.send_stalls.load(Ordering::Relaxed)),
            ("bad_message", drops.bad_messages.load(Ordering::Relaxed)),
            (
                "connection_limit",
                drops.refused_connections.load(Ordering::Relaxed),
            ),
            ("time_flood", drops.time_floods.load(Ordering::Relaxed)),
        ] {
            out.sample("snaprelay_policy_drops_total", &[("reason", reason)], value);
        }

        // What was sent.
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

        // Zerocopy (design.md "Zerocopy sender" defines each figure).
        let z = &totals.zerocopy;
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
        let outstanding: u64 = live
            .iter()
            .map(|info| zerocopy_stats_for(info).outstanding)
            .sum();
        out.gauge(
            "snaprelay_zerocopy_outstanding",
            "Zerocopy sends whose kernel completion has not arrived yet.",
            outstanding,
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

        // Buffer pool.
        let pool = shared.pool.stats();
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

        // Streams.
        let playing =
            |stream: &crate::stream::Stream| stream.stats().playing.load(Ordering::Relaxed);
        let playing_count = shared.streams.iter().filter(|s| playing(s)).count();
        out.family(
            "snaprelay_streams",
            Kind::Gauge,
            "Configured streams by state.",
        );
        out.sample("snaprelay_streams", &[("state", "playing")], playing_count);
        out.sample(
            "snaprelay_streams",
            &[("state", "idle")],
            shared.streams.len() - playing_count,
        );
        out.family(
            "snaprelay_stream_playing",
            Kind::Gauge,
            "1 while audio flows from the stream's source, 0 while it is idle.",
        );
        for stream in &shared.streams {
            out.sample(
                "snaprelay_stream_playing",
                &[("stream", stream.name())],
                u8::from(playing(&stream)),
            );
        }
        type StreamFigure = fn(&crate::stream::Stream) -> f64;
        let per_stream: [(&str, Kind, &str, StreamFigure); 6] = [
            (
                "snaprelay_stream_clients",
                Kind::Gauge,
                "Sessions currently receiving the stream.",
                |s| s.receivers() as f64,
            ),
            (
                "snaprelay_stream_chunks_total",
                Kind::Counter,
                "Chunks read from the stream's source and published to its sessions.",
                |s| s.stats().chunks.load(Ordering::Relaxed) as f64,
            ),
            (
                "snaprelay_stream_input_seconds_total",
                Kind::Counter,
                "Seconds of audio read from the stream's source; its rate is 1 while the \
                 source keeps real time.",
                |s| {
                    s.stats().chunks.load(Ordering::Relaxed) as f64 * f64::from(s.spec().chunk_ms)
                        / 1000.0
                },
            ),
            (
                "snaprelay_stream_published_bytes_total",
                Kind::Counter,
                "Encoded chunk message bytes published (once per chunk, not per client).",
                |s| s.stats().bytes.load(Ordering::Relaxed) as f64,
            ),
            (
                "snaprelay_stream_stalls_total",
                Kind::Counter,
                "Times the stream's source stopped delivering and the stream went idle.",
                |s| s.stats().stalls.load(Ordering::Relaxed) as f64,
            ),
            (
                "snaprelay_stream_resyncs_total",
                Kind::Counter,
                "Times the stream's time base was re-based.",
                |s| s.stats().resyncs.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, figure) in per_stream {
            out.family(name, kind, help);
            for stream in &shared.streams {
                out.sample(name, &[("stream", stream.name())], figure(&stream));
            }
        }
        out.text
    }
}

/// Prometheus metric types used here.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// A text exposition (format 0.0.4) being written: `# HELP` and `# TYPE` once per family,
/// then its samples.
#[derive(Debug, Default)]
struct Exposition {
    text: String,
}

impl Exposition {
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        // HELP text escapes only backslash and newline (exposition format spec).
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl Display) {
        self.text.push_str(name);
        if !labels.is_empty() {
            self.text.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.text.push(',');
                }
                let _ = write!(self.text, "{label}=\"{}\"", escape_label(value));
            }
            self.text.push('}');
        }
        let _ = writeln!(self.text, " {value}");
    }

    fn gauge(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Gauge, help);
        self.sample(name, &[], value);
    }

    fn counter(&mut self, name: &str, help: &str, value: impl Display) {
        self.family(name, Kind::Counter, help);
        self.sample(name, &[], value);
    }
}

/// Label values escape backslash, double quote and newline (exposition format spec); stream
/// names come from config and may contain any of them.
fn escape_label(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_have_help_and_type_and_labels_are_escaped() {
        let mut out = Exposition::default();
        out.family("snaprelay_x_total", Kind::Counter, "a\\b\nc");
        out.sample("snaprelay_x_total", &[("stream", "a\"b\\c\nd")], 3);
        out.gauge("snaprelay_y", "y", 1.5);
        assert_eq!(
            out.text,
            "# HELP snaprelay_x_total a\\\\b\\nc\n# TYPE snaprelay_x_total counter\n\
             snaprelay_x_total{stream=\"a\\\"b\\\\c\\nd\"} 3\n\
             # HELP snaprelay_y y\n# TYPE snaprelay_y gauge\nsnaprelay_y 1.5\n"
        );
    }

    #[test]
    fn totals_add_every_field() {
        let one = SessionTotals {
            bytes_sent: 1,
            chunks_sent: 2,
            chunks_late: 3,
            chunks_dropped: 4,
            time_replies: 5,
            zerocopy: ZerocopyStatsSnapshot {
                zerocopy_attempts: 6,
                ..Default::default()
            },
        };
        let mut sum = one.clone();
        sum.add(&one);
        assert_eq!(
            (
                sum.bytes_sent,
                sum.chunks_sent,
                sum.chunks_late,
                sum.chunks_dropped,
                sum.time_replies,
                sum.zerocopy.zerocopy_attempts
            ),
            (2, 4, 6, 8, 10, 12)
        );
    }
}

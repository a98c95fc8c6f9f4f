//! The relay's [`Snapshot`] in its API form. The figures are computed once, in the relay core
//! (`relay/snapshot.rs`); this module only converts them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::net::{SendMode, SendStatsSnapshot};
use crate::pb;
use crate::pool::PoolStats;
use crate::relay::{SessionView, Snapshot, StreamView};
use crate::session::{unix_micros, PolicyDropCounts};

/// Whether this kernel accepts `SO_ZEROCOPY` on a TCP socket, and why not when it does not.
pub(crate) fn zerocopy_availability() -> (bool, String) {
    match crate::net::zerocopy_probe() {
        Ok(()) => (true, String::new()),
        Err(err) => (false, format!("the kernel refuses SO_ZEROCOPY: {err}")),
    }
}

/// The protobuf form of the latest snapshot, converted once however many `WatchStats`
/// callers read it.
#[derive(Debug, Default)]
pub(crate) struct SharedConversion {
    latest: Mutex<Option<(Arc<Snapshot>, Arc<pb::Stats>)>>,
}

impl SharedConversion {
    /// `snapshot` as protobuf, reusing the last conversion when it is of the same snapshot.
    pub(crate) fn convert(&self, snapshot: Arc<Snapshot>) -> Arc<pb::Stats> {
        let mut latest = self
            .latest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((seen, converted)) = &*latest {
            if Arc::ptr_eq(seen, &snapshot) {
                return converted.clone();
            }
        }
        let converted = Arc::new(pb::Stats::from(&*snapshot));
        *latest = Some((snapshot, converted.clone()));
        converted
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl From<SendStatsSnapshot> for pb::ZerocopyStats {
    fn from(z: SendStatsSnapshot) -> Self {
        pb::ZerocopyStats {
            attempts: z.zerocopy_attempts,
            successful: z.zerocopy_successful,
            bytes: z.zerocopy_bytes,
            regular_sends: z.regular_sends,
            regular_bytes: z.regular_bytes,
            coordination_fallbacks: z.coordination_fallbacks,
            outstanding: z.outstanding,
            copied_completions: z.copied_completions,
            enobufs_fallbacks: z.enobufs_fallbacks,
            zerocopy_percent: z.zerocopy_percent(),
        }
    }
}

impl From<PoolStats> for pb::BufferPoolStats {
    fn from(p: PoolStats) -> Self {
        pb::BufferPoolStats {
            total_buffers: p.total_buffers,
            available_buffers: p.available_buffers,
            bytes_allocated: p.bytes_allocated,
            buffers_created: p.buffers_created,
            buffers_reused: p.buffers_reused,
            cleanups: p.cleanup_operations,
        }
    }
}

impl From<PolicyDropCounts> for pb::PolicyDrops {
    fn from(d: PolicyDropCounts) -> Self {
        pb::PolicyDrops {
            handshake_timeouts: d.handshake_timeouts,
            send_stalls: d.send_stalls,
            bad_messages: d.bad_messages,
            refused_connections: d.refused_connections,
            time_floods: d.time_floods,
        }
    }
}

impl From<&SessionView> for pb::Session {
    fn from(view: &SessionView) -> Self {
        let figures = &view.figures;
        let mut out = pb::Session {
            session_id: view.id,
            address: view.peer.to_string(),
            connected_at_us: unix_micros(view.connected_at),
            bytes_sent: figures.bytes_sent,
            chunks_sent: figures.chunks_sent,
            queue_depth: u32::try_from(view.queue_depth).unwrap_or(u32::MAX),
            chunks_late: figures.chunks_late,
            chunks_dropped: figures.chunks_dropped,
            send_mode: match view.send_mode {
                SendMode::Zerocopy => pb::SendMode::Zerocopy,
                SendMode::Regular | SendMode::FellBack => pb::SendMode::Regular,
            } as i32,
            zerocopy: Some(figures.sends.into()),
            time_sync: Some(pb::TimeSync {
                replies: figures.time_replies,
                last_offset_us: view.last_time_offset_us,
                last_at_us: view.last_time_at_us,
            }),
            ..Default::default()
        };
        if let Some(client) = &view.client {
            out.client_id = client.client_id.clone();
            out.host_id = client.host_id.clone();
            out.host_name = client.host_name.clone();
            out.name = client.name.clone();
            out.volume_percent = u32::from(client.volume_percent);
            out.muted = client.muted;
            out.latency_ms = client.latency_ms;
            out.client_name = client.client_name.clone();
            out.client_version = client.client_version.clone();
            out.os = client.os.clone();
            out.arch = client.arch.clone();
            out.stream = client.stream.clone();
            out.codec = client.codec.clone();
        }
        out
    }
}

impl From<&StreamView> for pb::StreamStats {
    fn from(view: &StreamView) -> Self {
        pb::StreamStats {
            name: view.name.clone(),
            uri: view.uri.clone(),
            codec: view.codec.clone(),
            sample_format: view.sample_format.clone(),
            state: if view.playing {
                pb::StreamState::Playing
            } else {
                pb::StreamState::Idle
            } as i32,
            clients: u32::try_from(view.clients).unwrap_or(u32::MAX),
            chunks: view.chunks,
            bytes: view.bytes,
            chunks_late: view.chunks_late,
            chunks_dropped: view.chunks_dropped,
            stalls: view.stalls,
            resyncs: view.resyncs,
            encoder_overruns: view.encoder_overruns,
            source_restarts: view.source_restarts,
            source_overruns: view.source_overruns,
            source_frames_dropped: view.source_frames_dropped,
            upstream: view.upstream.as_ref().map(|link| pb::UpstreamLink {
                address: link.address.clone(),
                connected: link.connected,
                clock_offset_us: link.offset_us,
                clock_jitter_us: link.jitter_us,
                rtt_us: link.rtt_us,
                upstream_buffer_ms: link.buffer_ms,
                chunks_received: link.chunks,
                chunks_dropped: link.chunks_dropped,
                chunks_late: link.chunks_late,
                reconnects: link.reconnects,
            }),
            properties: Some(pb::StreamProperties::from(&*view.properties)),
            plugin: view.plugin.as_ref().map(|plugin| pb::StreamPlugin {
                script: plugin.script.clone(),
                running: plugin.running,
                restarts: plugin.restarts,
                bad_lines: plugin.bad_lines,
                failed_requests: plugin.failed_requests,
            }),
        }
    }
}

impl From<&Snapshot> for pb::Stats {
    fn from(snapshot: &Snapshot) -> Self {
        let totals = &snapshot.totals;
        let aggregate = pb::AggregateStats {
            sessions: u32::try_from(snapshot.sessions.len()).unwrap_or(u32::MAX),
            bytes_sent: totals.bytes_sent,
            chunks_sent: totals.chunks_sent,
            chunks_late: totals.chunks_late,
            chunks_dropped: totals.chunks_dropped,
            zerocopy: Some(totals.sends.into()),
            policy_drops: Some(snapshot.policy_drops.into()),
            connections_accepted: snapshot.connections_accepted,
            time_replies: totals.time_replies,
            jsonrpc_slow_disconnects: snapshot.jsonrpc_slow_disconnects,
        };
        pb::Stats {
            taken_at_us: unix_micros(snapshot.taken_at),
            uptime_ms: millis(snapshot.uptime),
            aggregate: Some(aggregate),
            streams: snapshot.streams.iter().map(pb::StreamStats::from).collect(),
            sessions: snapshot.sessions.iter().map(pb::Session::from).collect(),
            pool: Some(snapshot.pool.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn empty_snapshot() -> Arc<Snapshot> {
        Arc::new(Snapshot {
            taken_at: std::time::SystemTime::now(),
            started_at: std::time::SystemTime::now(),
            uptime: Duration::from_secs(3),
            connections_accepted: 2,
            totals: crate::session::SessionTotals::default(),
            policy_drops: PolicyDropCounts::default(),
            jsonrpc_slow_disconnects: 1,
            sessions: Vec::new(),
            streams: Vec::new(),
            pool: PoolStats::default(),
            cover_art: (0, 0),
        })
    }

    #[test]
    fn watchers_share_one_conversion_per_snapshot() {
        let shared = SharedConversion::default();
        let snapshot = empty_snapshot();
        let first = shared.convert(snapshot.clone());
        let second = shared.convert(snapshot);
        assert!(Arc::ptr_eq(&first, &second), "converted twice");
        let aggregate = first.aggregate.unwrap_or_default();
        assert_eq!(
            (
                aggregate.connections_accepted,
                aggregate.jsonrpc_slow_disconnects
            ),
            (2, 1)
        );
        assert_eq!(first.uptime_ms, 3000);
        // A new snapshot is converted anew.
        let third = shared.convert(empty_snapshot());
        assert!(!Arc::ptr_eq(&first, &third));
    }

    #[test]
    fn percent_is_of_bytes_and_zero_without_sends() {
        assert_eq!(SendStatsSnapshot::default().zerocopy_percent(), 0.0);
        let z = SendStatsSnapshot {
            zerocopy_successful: 3,
            zerocopy_bytes: 3000,
            regular_sends: 1,
            regular_bytes: 1000,
            ..Default::default()
        };
        assert_eq!(z.zerocopy_percent(), 75.0);
        let api = pb::ZerocopyStats::from(z);
        assert_eq!(
            (api.zerocopy_percent, api.successful, api.bytes),
            (75.0, 3, 3000)
        );
    }
}

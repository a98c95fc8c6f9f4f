//! Snapshots of the relay's figures, read from the live atomics, and their API form.
//!
//! Zerocopy figures come from each session's sender (`net::sender`), pool figures from the
//! shared buffer pool (`pool`).

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::net::{SendMode, ZerocopyStatsSnapshot};
use crate::pb;
use crate::pool::PoolStats;
use crate::server::Shared;
use crate::session::{unix_micros, SessionInfo};

/// Zerocopy figures of `session`, cumulative since it connected.
pub fn zerocopy_stats_for(session: &SessionInfo) -> ZerocopyStatsSnapshot {
    session.send_stats.snapshot()
}

/// The buffer pool's figures.
pub(crate) fn pool_stats(shared: &Shared) -> PoolStats {
    shared.pool.stats()
}

/// Whether this kernel accepts `SO_ZEROCOPY` on a TCP socket, and why not when it does not.
pub fn zerocopy_availability() -> (bool, String) {
    match crate::net::zerocopy_probe() {
        Ok(()) => (true, String::new()),
        Err(err) => (false, format!("the kernel refuses SO_ZEROCOPY: {err}")),
    }
}

impl From<ZerocopyStatsSnapshot> for pb::ZerocopyStats {
    fn from(z: ZerocopyStatsSnapshot) -> Self {
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

/// One session in its API form.
pub(crate) fn session(shared: &Shared, info: &SessionInfo) -> pb::Session {
    let client = info.client();
    let stats = &info.stats;
    let zerocopy = zerocopy_stats_for(info);
    let mut out = pb::Session {
        session_id: info.id,
        address: info.peer.to_string(),
        connected_at_us: unix_micros(info.connected_at),
        bytes_sent: info.bytes_sent(),
        chunks_sent: stats.chunks_sent.load(Ordering::Relaxed),
        queue_depth: u32::try_from(info.queue_depth()).unwrap_or(u32::MAX),
        chunks_late: stats.chunks_late.load(Ordering::Relaxed),
        chunks_dropped: stats.chunks_lagged.load(Ordering::Relaxed),
        send_mode: match info.send_stats.mode() {
            SendMode::Zerocopy => pb::SendMode::Zerocopy,
            SendMode::Regular | SendMode::FellBack => pb::SendMode::Regular,
        } as i32,
        zerocopy: Some(zerocopy.into()),
        time_sync: Some(pb::TimeSync {
            replies: stats.time_replies.load(Ordering::Relaxed),
            last_offset_us: stats.last_time_offset_us.load(Ordering::Relaxed),
            last_at_us: stats.last_time_at_us.load(Ordering::Relaxed),
        }),
        ..Default::default()
    };
    if let Some(client) = client {
        out.codec = shared
            .streams
            .iter()
            .find(|s| s.name() == client.stream)
            .map(|s| s.codec().to_owned())
            .unwrap_or_default();
        out.client_id = client.client_id.clone();
        out.host_id = if client.hello.id.is_empty() {
            client.hello.mac.clone()
        } else {
            client.hello.id.clone()
        };
        out.host_name = client.hello.host_name;
        if let Some(settings) = shared
            .state
            .read(|model| model.client(&client.client_id).cloned())
        {
            out.name = settings.config.name;
            out.volume_percent = u32::from(settings.config.volume.percent);
            out.muted = settings.config.volume.muted;
            out.latency_ms = settings.config.latency;
        }
        out.client_name = client.hello.client_name;
        out.client_version = client.hello.version;
        out.os = client.hello.os;
        out.arch = client.hello.arch;
        out.stream = client.stream;
    }
    out
}

/// Every live session, by id.
pub(crate) fn sessions(shared: &Shared) -> Vec<pb::Session> {
    // Clone the Arcs first: no DashMap guard is held while building the answer.
    let mut infos: Vec<_> = shared.sessions.iter().map(|e| e.value().clone()).collect();
    infos.sort_by_key(|info| info.id);
    infos.iter().map(|info| session(shared, info)).collect()
}

/// Every stream, with late/dropped chunks summed over its sessions.
pub(crate) fn streams(shared: &Shared, sessions: &[pb::Session]) -> Vec<pb::StreamStats> {
    shared
        .streams
        .iter()
        .map(|stream| {
            let stats = stream.stats();
            let mine = sessions.iter().filter(|s| s.stream == stream.name());
            let (late, dropped) = mine.fold((0, 0), |(late, dropped), s| {
                (late + s.chunks_late, dropped + s.chunks_dropped)
            });
            pb::StreamStats {
                name: stream.name().to_owned(),
                uri: stream.spec().uri.to_uri_string(),
                codec: stream.codec().to_owned(),
                sample_format: stream.sample_format().to_string(),
                state: if stats.playing.load(Ordering::Relaxed) {
                    pb::StreamState::Playing
                } else {
                    pb::StreamState::Idle
                } as i32,
                clients: u32::try_from(stream.receivers()).unwrap_or(u32::MAX),
                chunks: stats.chunks.load(Ordering::Relaxed),
                bytes: stats.bytes.load(Ordering::Relaxed),
                chunks_late: late,
                chunks_dropped: dropped,
                stalls: stats.stalls.load(Ordering::Relaxed),
                resyncs: stats.resyncs.load(Ordering::Relaxed),
            }
        })
        .collect()
}

/// Sessions dropped and connections refused by policy since start (issue 10).
pub(crate) fn policy_drops(shared: &Shared) -> pb::PolicyDrops {
    let drops = &shared.drops;
    pb::PolicyDrops {
        handshake_timeouts: drops.handshake_timeouts.load(Ordering::Relaxed),
        send_stalls: drops.send_stalls.load(Ordering::Relaxed),
        bad_messages: drops.bad_messages.load(Ordering::Relaxed),
        refused_connections: drops.refused_connections.load(Ordering::Relaxed),
        time_floods: drops.time_floods.load(Ordering::Relaxed),
    }
}

/// The whole snapshot: aggregate, sessions, streams, pool.
pub(crate) fn snapshot(shared: &Shared, uptime_ms: u64) -> pb::Stats {
    let infos: Vec<_> = shared.sessions.iter().map(|e| e.value().clone()).collect();
    let mut zerocopy = ZerocopyStatsSnapshot::default();
    for info in &infos {
        zerocopy.add(&zerocopy_stats_for(info));
    }
    let sessions = sessions(shared);
    let aggregate = pb::AggregateStats {
        sessions: u32::try_from(sessions.len()).unwrap_or(u32::MAX),
        bytes_sent: sessions.iter().map(|s| s.bytes_sent).sum(),
        chunks_sent: sessions.iter().map(|s| s.chunks_sent).sum(),
        chunks_late: sessions.iter().map(|s| s.chunks_late).sum(),
        chunks_dropped: sessions.iter().map(|s| s.chunks_dropped).sum(),
        zerocopy: Some(zerocopy.into()),
        policy_drops: Some(policy_drops(shared)),
    };
    pb::Stats {
        taken_at_us: unix_micros(SystemTime::now()),
        uptime_ms,
        aggregate: Some(aggregate),
        streams: streams(shared, &sessions),
        sessions,
        pool: Some(pool_stats(shared).into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_is_of_bytes_and_zero_without_sends() {
        assert_eq!(ZerocopyStatsSnapshot::default().zerocopy_percent(), 0.0);
        let z = ZerocopyStatsSnapshot {
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

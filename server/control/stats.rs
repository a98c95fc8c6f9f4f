//! Snapshots of the relay's figures, read from the live atomics, and their API form.
//!
//! Zerocopy and buffer-pool figures come from [`zerocopy_stats_for`] and [`pool_stats`]: the
//! zerocopy sender and the pool (issue 3) are not wired in yet, so these report zeros and
//! "regular" until they are. They are the only two places to change when they land.

use std::sync::atomic::Ordering;
use std::time::SystemTime;

use crate::pb;
use crate::server::Shared;
use crate::session::{unix_micros, SessionInfo};

/// One session's zerocopy sender figures (meanings as in issue 3 and `ZerocopyStats` in
/// stats.proto).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ZerocopySnapshot {
    /// Whether the session sends with MSG_ZEROCOPY at all.
    pub enabled: bool,
    /// Sends tried with MSG_ZEROCOPY.
    pub attempts: u64,
    /// Of those, accepted by the kernel.
    pub successful: u64,
    /// Bytes sent with MSG_ZEROCOPY.
    pub bytes: u64,
    /// Sends done the ordinary way.
    pub regular_sends: u64,
    /// Bytes sent the ordinary way.
    pub regular_bytes: u64,
    /// Messages sent the ordinary way because ordinary writes were queued ahead of them.
    pub coordination_fallbacks: u64,
    /// Zerocopy sends not yet completed by the kernel.
    pub outstanding: u64,
    /// Completions where the kernel copied anyway.
    pub copied_completions: u64,
    /// Messages sent the ordinary way after ENOBUFS.
    pub enobufs_fallbacks: u64,
}

impl ZerocopySnapshot {
    /// Share of sends that went zerocopy, in percent; 0 with no sends.
    pub fn zerocopy_percent(&self) -> f64 {
        let total = self.successful + self.regular_sends;
        if total == 0 {
            0.0
        } else {
            self.successful as f64 * 100.0 / total as f64
        }
    }

    fn add(&mut self, other: &ZerocopySnapshot) {
        self.attempts += other.attempts;
        self.successful += other.successful;
        self.bytes += other.bytes;
        self.regular_sends += other.regular_sends;
        self.regular_bytes += other.regular_bytes;
        self.coordination_fallbacks += other.coordination_fallbacks;
        self.outstanding += other.outstanding;
        self.copied_completions += other.copied_completions;
        self.enobufs_fallbacks += other.enobufs_fallbacks;
    }
}

/// The buffer pool's figures (issue 3).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSnapshot {
    /// Buffers the pool owns (lent out or free).
    pub total_buffers: u64,
    /// Free buffers.
    pub available_buffers: u64,
    /// Bytes held by the pool's buffers.
    pub bytes_allocated: u64,
    /// Buffers ever allocated.
    pub buffers_created: u64,
    /// Requests served by reusing a free buffer.
    pub buffers_reused: u64,
    /// Idle-buffer cleanup passes.
    pub cleanups: u64,
}

/// Zerocopy figures of `session`.
///
/// Stub until the zerocopy sender (issue 3) exposes its per-session counters: every session
/// sends the regular way today, so this reports "not enabled" and zeros, never made-up
/// numbers.
pub fn zerocopy_stats_for(_session: &SessionInfo) -> ZerocopySnapshot {
    ZerocopySnapshot::default()
}

/// The buffer pool's figures.
///
/// Stub until the pool (issue 3) lands: chunks are plain `Bytes` today, so there is no pool to
/// report and every figure is zero.
pub(crate) fn pool_stats(_shared: &Shared) -> PoolSnapshot {
    PoolSnapshot::default()
}

/// Whether this kernel accepts `SO_ZEROCOPY` on a TCP socket, and why not when it does not.
/// Asked of the kernel itself, once per call; cheap (one socket).
pub fn zerocopy_availability() -> (bool, String) {
    #[cfg(target_os = "linux")]
    {
        let socket = match socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
        {
            Ok(socket) => socket,
            Err(err) => return (false, format!("cannot create a probe socket: {err}")),
        };
        let one: libc::c_int = 1;
        // SAFETY: a valid socket fd, a pointer to a live c_int and its exact size.
        let rc = unsafe {
            libc::setsockopt(
                std::os::fd::AsRawFd::as_raw_fd(&socket),
                libc::SOL_SOCKET,
                libc::SO_ZEROCOPY,
                std::ptr::addr_of!(one).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            (true, String::new())
        } else {
            let err = std::io::Error::last_os_error();
            (false, format!("the kernel refuses SO_ZEROCOPY: {err}"))
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        (false, "MSG_ZEROCOPY is Linux-only".to_owned())
    }
}

impl From<ZerocopySnapshot> for pb::ZerocopyStats {
    fn from(z: ZerocopySnapshot) -> Self {
        pb::ZerocopyStats {
            attempts: z.attempts,
            successful: z.successful,
            bytes: z.bytes,
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

impl From<PoolSnapshot> for pb::BufferPoolStats {
    fn from(p: PoolSnapshot) -> Self {
        pb::BufferPoolStats {
            total_buffers: p.total_buffers,
            available_buffers: p.available_buffers,
            bytes_allocated: p.bytes_allocated,
            buffers_created: p.buffers_created,
            buffers_reused: p.buffers_reused,
            cleanups: p.cleanups,
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
        bytes_sent: stats.bytes_sent.load(Ordering::Relaxed),
        chunks_sent: stats.chunks_sent.load(Ordering::Relaxed),
        queue_depth: u32::try_from(info.queue_depth()).unwrap_or(u32::MAX),
        chunks_late: stats.chunks_late.load(Ordering::Relaxed),
        chunks_dropped: stats.chunks_lagged.load(Ordering::Relaxed),
        send_mode: if zerocopy.enabled {
            pb::SendMode::Zerocopy
        } else {
            pb::SendMode::Regular
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
        out.client_id = client.client_id;
        out.host_id = if client.hello.id.is_empty() {
            client.hello.mac.clone()
        } else {
            client.hello.id.clone()
        };
        out.host_name = client.hello.host_name;
        out.name = client.name.unwrap_or_default();
        out.client_name = client.hello.client_name;
        out.client_version = client.hello.version;
        out.os = client.hello.os;
        out.arch = client.hello.arch;
        out.stream = client.stream;
        out.volume_percent = u32::from(client.volume);
        out.muted = client.muted;
        out.latency_ms = client.latency_ms;
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

/// The whole snapshot: aggregate, sessions, streams, pool.
pub(crate) fn snapshot(shared: &Shared, uptime_ms: u64) -> pb::Stats {
    let infos: Vec<_> = shared.sessions.iter().map(|e| e.value().clone()).collect();
    let mut zerocopy = ZerocopySnapshot::default();
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
    fn percent_is_zero_without_sends() {
        assert_eq!(ZerocopySnapshot::default().zerocopy_percent(), 0.0);
        let z = ZerocopySnapshot {
            successful: 3,
            regular_sends: 1,
            ..Default::default()
        };
        assert_eq!(z.zerocopy_percent(), 75.0);
        assert_eq!(pb::ZerocopyStats::from(z).zerocopy_percent, 75.0);
    }
}

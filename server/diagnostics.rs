//! Periodic reports in the log, a front end over the relay core's [`Snapshot`]: per-session
//! zerocopy status while clients are connected, and the buffer pool's figures; also the
//! pool's idle-buffer cleanup.
//!
//! "Reset every counter except outstanding" is done by diffing the snapshot against the
//! previous report's: the counters themselves stay cumulative, so the gRPC API and metrics see
//! monotonic values while each report shows its own period.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use tracing::info;

use crate::net::SendStatsSnapshot;
use crate::pool::IDLE_LIMIT;
use crate::relay::{Relay, Snapshot};

/// How often idle pool buffers are looked for.
const CLEANUP_INTERVAL: Duration = Duration::from_secs(60);

/// Runs until the relay shuts down.
pub(crate) async fn run(relay: Arc<Relay>) {
    let mut interval_rx = relay.settings.watch_diagnostics_interval();
    let mut previous: HashMap<u64, SendStatsSnapshot> = HashMap::new();
    let mut cleanup = tokio::time::interval(CLEANUP_INTERVAL);
    cleanup.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let period = *interval_rx.borrow_and_update();
        let report = async {
            if period.is_zero() {
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(period).await;
        };
        tokio::select! {
            () = relay.cancel.cancelled() => return,
            changed = interval_rx.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = cleanup.tick() => {
                relay.pool.cleanup(IDLE_LIMIT);
            }
            () = report => {
                let snapshot = relay.snapshot();
                if let Some(text) = zerocopy_report(&snapshot, &mut previous) {
                    info!("{text}");
                }
                info!("{}", pool_report(&snapshot));
            }
        }
    }
}

/// The per-session report, or `None` with no clients connected.
fn zerocopy_report(
    snapshot: &Snapshot,
    previous: &mut HashMap<u64, SendStatsSnapshot>,
) -> Option<String> {
    let mut text = String::from("=== Periodic ZeroCopy Status ===");
    let mut current = HashMap::new();
    for session in &snapshot.sessions {
        let now = session.figures.sends;
        let period = now.since(&previous.get(&session.id).copied().unwrap_or_default());
        current.insert(session.id, now);
        let _ = write!(
            text,
            "\nsession {} {}: mode={} attempts={} successful={} success_rate={:.1}% \
             zerocopy_bytes={} regular_sends={} regular_bytes={} coordination_fallbacks={} \
             outstanding={} copied_completions={} enobufs_fallbacks={} zerocopy_percent={:.1}%",
            session.id,
            session.peer,
            session.send_mode.as_str(),
            period.zerocopy_attempts,
            period.zerocopy_successful,
            period.success_rate(),
            period.zerocopy_bytes,
            period.regular_sends,
            period.regular_bytes,
            period.coordination_fallbacks,
            period.outstanding,
            period.copied_completions,
            period.enobufs_fallbacks,
            period.zerocopy_percent(),
        );
    }
    *previous = current;
    (!previous.is_empty()).then_some(text)
}

fn pool_report(snapshot: &Snapshot) -> String {
    let stats = &snapshot.pool;
    format!(
        "=== Buffer Pool Stats ===\ntotal_buffers={} available={} bytes_allocated={} \
         buffers_created={} buffers_reused={} cleanup_operations={}",
        stats.total_buffers,
        stats.available_buffers,
        stats.bytes_allocated,
        stats.buffers_created,
        stats.buffers_reused,
        stats.cleanup_operations,
    )
}

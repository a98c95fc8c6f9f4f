//! `ControlService`: the `snaprelay.v1.Control` RPCs over the server's shared state.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::runtime_config::{self, Change};
use super::{stats, ControlContext, ControlError};
use crate::pb;
use crate::pb::control_server::Control;
use crate::protocol::ServerSettings;
use crate::session::{unix_micros, ClientDetails, SessionInfo};

/// Fastest WatchStats interval a caller may ask for: each snapshot walks every session.
pub const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Slowest WatchStats interval.
pub const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(60);
/// WatchStats interval when the caller gives none.
pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The control API implementation; cheap to clone.
#[derive(Debug, Clone)]
pub struct ControlService {
    ctx: Arc<ControlContext>,
}

impl ControlService {
    pub(crate) fn new(ctx: Arc<ControlContext>) -> Self {
        Self { ctx }
    }

    fn session(&self, id: u64) -> Result<Arc<SessionInfo>, ControlError> {
        self.ctx
            .shared
            .sessions
            .get(&id)
            .map(|entry| entry.value().clone())
            .ok_or(ControlError::SessionNotFound(id))
    }

    /// Every live session of `client_id` that has said Hello.
    fn client_sessions(&self, client_id: &str) -> Result<Vec<Arc<SessionInfo>>, ControlError> {
        if client_id.is_empty() {
            return Err(ControlError::invalid(
                "client_id",
                "",
                "a client id as `snapctl sessions` lists it",
            ));
        }
        let mut found: Vec<_> = self
            .ctx
            .shared
            .sessions
            .iter()
            .map(|entry| entry.value().clone())
            .filter(|info| info.client().is_some_and(|c| c.client_id == client_id))
            .collect();
        if found.is_empty() {
            return Err(ControlError::ClientNotFound(client_id.to_owned()));
        }
        found.sort_by_key(|info| info.id);
        Ok(found)
    }

    /// Applies `modify` to each session of the client, pushing ServerSettings when `push`.
    fn update_client(
        &self,
        client_id: &str,
        push: bool,
        modify: impl Fn(&mut ClientDetails),
    ) -> Result<pb::Client, ControlError> {
        let sessions = self.client_sessions(client_id)?;
        let mut last = None;
        let mut notified = 0;
        for info in &sessions {
            if let Some(details) = info.modify_client(&modify) {
                if push && info.push_settings(self.settings_for(&details)) {
                    notified += 1;
                }
                last = Some(details);
            }
        }
        let details = last.ok_or_else(|| ControlError::ClientNotFound(client_id.to_owned()))?;
        Ok(pb::Client {
            client_id: details.client_id,
            name: details.name.unwrap_or_default(),
            volume_percent: u32::from(details.volume),
            muted: details.muted,
            latency_ms: details.latency_ms,
            session_ids: sessions.iter().map(|s| s.id).collect(),
            sessions_notified: notified,
        })
    }

    fn settings_for(&self, client: &ClientDetails) -> ServerSettings {
        ServerSettings {
            buffer_ms: i32::try_from(self.ctx.shared.live.buffer_ms()).unwrap_or(i32::MAX),
            latency: client.latency_ms,
            muted: client.muted,
            volume: client.volume,
        }
    }

    fn apply(&self, key: &str, value: &str, change: Change) -> Result<u32, ControlError> {
        let live = &self.ctx.shared.live;
        let mut notified = 0;
        match change {
            Change::BufferMs(ms) => {
                live.set_buffer_ms(ms);
                let infos: Vec<_> = self
                    .ctx
                    .shared
                    .sessions
                    .iter()
                    .map(|e| e.value().clone())
                    .collect();
                for info in infos {
                    if let Some(client) = info.client() {
                        if info.push_settings(self.settings_for(&client)) {
                            notified += 1;
                        }
                    }
                }
            }
            Change::LogFilter { filter, directive } => live
                .set_log_filter(&filter, &directive)
                .map_err(ControlError::FailedPrecondition)?,
            Change::Zerocopy(on) => live.set_zerocopy_enabled(on),
            Change::ZerocopyThreshold(bytes) => live.set_zerocopy_threshold(bytes),
            Change::DiagnosticsInterval(interval) => live.set_diagnostics_interval(interval),
        }
        self.ctx.config.mark_changed(key, value);
        info!(key, value = %runtime_config::current(live, key), "config changed at run time");
        Ok(notified)
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl Control for ControlService {
    async fn get_server_info(
        &self,
        _request: Request<pb::GetServerInfoRequest>,
    ) -> Result<Response<pb::ServerInfo>, Status> {
        let ctx = &self.ctx;
        let (available, reason) = stats::zerocopy_availability();
        Ok(Response::new(pb::ServerInfo {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_ms: ctx.uptime_ms(),
            started_at_us: unix_micros(ctx.started_at),
            stream_addresses: ctx
                .stream_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            grpc_addresses: ctx.grpc_addresses.iter().map(ToString::to_string).collect(),
            zerocopy_available: available,
            zerocopy_unavailable_reason: reason,
            zerocopy_enabled: ctx.shared.live.zerocopy_enabled(),
            auth_required: ctx.auth_required,
            tls: ctx.tls,
        }))
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let key = request.into_inner().key;
        let entries = self.ctx.config.entries(&self.ctx.shared.live, key.trim())?;
        Ok(Response::new(pb::GetConfigResponse { entries }))
    }

    async fn update_config(
        &self,
        request: Request<pb::UpdateConfigRequest>,
    ) -> Result<Response<pb::UpdateConfigResponse>, Status> {
        let changes = request.into_inner().changes;
        if changes.is_empty() {
            return Err(
                ControlError::invalid("changes", "[]", "at least one key and value").into(),
            );
        }
        // Validate everything first, so a bad change leaves nothing half-applied.
        let parsed = changes
            .iter()
            .map(|c| runtime_config::parse(c.key.trim(), &c.value))
            .collect::<Result<Vec<_>, _>>()?;
        let mut notified = 0;
        let mut keys = Vec::new();
        for (change, parsed) in changes.iter().zip(parsed) {
            notified += self.apply(change.key.trim(), change.value.trim(), parsed)?;
            keys.push(change.key.trim().to_owned());
        }
        let entries = keys
            .iter()
            .map(|key| self.ctx.config.entries(&self.ctx.shared.live, key))
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        Ok(Response::new(pb::UpdateConfigResponse {
            entries,
            sessions_notified: notified,
        }))
    }

    async fn get_stats(
        &self,
        _request: Request<pb::GetStatsRequest>,
    ) -> Result<Response<pb::Stats>, Status> {
        Ok(Response::new(stats::snapshot(
            &self.ctx.shared,
            self.ctx.uptime_ms(),
        )))
    }

    type WatchStatsStream = StatsStream;

    async fn watch_stats(
        &self,
        request: Request<pb::WatchStatsRequest>,
    ) -> Result<Response<Self::WatchStatsStream>, Status> {
        let interval = match request.into_inner().interval_ms {
            0 => DEFAULT_WATCH_INTERVAL,
            ms => {
                Duration::from_millis(u64::from(ms)).clamp(MIN_WATCH_INTERVAL, MAX_WATCH_INTERVAL)
            }
        };
        // Capacity 1: a slow reader holds up the next snapshot rather than queueing old ones,
        // so each watcher costs one snapshot of memory at most.
        let (tx, rx) = mpsc::channel(1);
        let ctx = self.ctx.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = tx.closed() => return,
                    () = ctx.shared.cancel.cancelled() => return,
                }
                let snapshot = stats::snapshot(&ctx.shared, ctx.uptime_ms());
                if tx.send(Ok(snapshot)).await.is_err() {
                    return; // the caller went away
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_sessions(
        &self,
        _request: Request<pb::ListSessionsRequest>,
    ) -> Result<Response<pb::ListSessionsResponse>, Status> {
        Ok(Response::new(pb::ListSessionsResponse {
            sessions: stats::sessions(&self.ctx.shared),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let info = self.session(request.into_inner().session_id)?;
        Ok(Response::new(stats::session(&self.ctx.shared, &info)))
    }

    async fn disconnect_session(
        &self,
        request: Request<pb::DisconnectSessionRequest>,
    ) -> Result<Response<pb::DisconnectSessionResponse>, Status> {
        let info = self.session(request.into_inner().session_id)?;
        info!(session = info.id, peer = %info.peer, "disconnecting session on request");
        info.disconnect();
        Ok(Response::new(pb::DisconnectSessionResponse {}))
    }

    async fn list_streams(
        &self,
        _request: Request<pb::ListStreamsRequest>,
    ) -> Result<Response<pb::ListStreamsResponse>, Status> {
        let sessions = stats::sessions(&self.ctx.shared);
        Ok(Response::new(pb::ListStreamsResponse {
            streams: stats::streams(&self.ctx.shared, &sessions),
        }))
    }

    async fn set_client_volume(
        &self,
        request: Request<pb::SetClientVolumeRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let request = request.into_inner();
        if request.percent.is_none() && request.muted.is_none() {
            return Err(ControlError::invalid(
                "percent",
                "(unset)",
                "a percent from 0 to 100, or muted set",
            )
            .into());
        }
        let percent = match request.percent {
            Some(p) if p > 100 => {
                return Err(ControlError::invalid("percent", p, "0 to 100").into())
            }
            Some(p) => Some(p as u16),
            None => None,
        };
        let client = self.update_client(&request.client_id, true, |details| {
            if let Some(percent) = percent {
                details.volume = percent;
            }
            if let Some(muted) = request.muted {
                details.muted = muted;
            }
        })?;
        info!(client = %client.client_id, volume = client.volume_percent, muted = client.muted, "client volume set");
        Ok(Response::new(client))
    }

    async fn set_client_latency(
        &self,
        request: Request<pb::SetClientLatencyRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let request = request.into_inner();
        if !(-10_000..=10_000).contains(&request.latency_ms) {
            return Err(
                ControlError::invalid("latency_ms", request.latency_ms, "-10000 to 10000").into(),
            );
        }
        let client = self.update_client(&request.client_id, true, |details| {
            details.latency_ms = request.latency_ms;
        })?;
        info!(client = %client.client_id, latency_ms = client.latency_ms, "client latency set");
        Ok(Response::new(client))
    }

    async fn set_client_name(
        &self,
        request: Request<pb::SetClientNameRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let request = request.into_inner();
        let name = request.name.trim();
        let length = name.chars().count();
        if length == 0 || length > 100 || name.chars().any(char::is_control) {
            return Err(ControlError::invalid(
                "name",
                &request.name,
                "1 to 100 characters, no control characters",
            )
            .into());
        }
        let client = self.update_client(&request.client_id, false, |details| {
            details.name = Some(name.to_owned());
        })?;
        info!(client = %client.client_id, name, "client renamed");
        Ok(Response::new(client))
    }
}

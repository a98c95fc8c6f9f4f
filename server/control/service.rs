//! `ControlService`: the `snaprelay.v1.Control` RPCs over the relay core.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};
use tracing::info;

use super::runtime_config::{self, Change};
use super::{events, properties, topology};
use super::{stats, ControlContext, ControlError};
use crate::pb;
use crate::pb::control_server::Control;
use crate::relay::StreamView;
use crate::session::{unix_micros, SessionInfo};
use crate::state::{Event, Model, StateError};

/// Fastest WatchStats interval a caller may ask for: each snapshot walks every session.
pub(crate) const MIN_WATCH_INTERVAL: Duration = Duration::from_millis(100);
/// Slowest WatchStats interval.
pub(crate) const MAX_WATCH_INTERVAL: Duration = Duration::from_secs(60);
/// WatchStats interval when the caller gives none.
pub(crate) const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// The control API implementation; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ControlService {
    ctx: Arc<ControlContext>,
}

impl ControlService {
    pub(crate) fn new(ctx: Arc<ControlContext>) -> Self {
        Self { ctx }
    }

    fn stream(&self, name: &str) -> Result<crate::stream::Stream, ControlError> {
        self.ctx
            .relay
            .stream(name)
            .ok_or_else(|| ControlError::StreamNotFound(name.to_owned()))
    }

    fn session(&self, id: u64) -> Result<Arc<SessionInfo>, ControlError> {
        self.ctx
            .relay
            .sessions
            .get(id)
            .ok_or(ControlError::SessionNotFound(id))
    }

    /// Changes the state, then brings the affected clients' sessions in line with it.
    fn change<R>(
        &self,
        change: impl FnOnce(&mut Model) -> Result<R, StateError>,
        event: impl FnOnce(&R) -> Option<Event>,
        affected: impl FnOnce(&R) -> Vec<String>,
    ) -> Result<(R, u32), ControlError> {
        let (result, notified) = self.ctx.relay.change(None, change, event, affected)?;
        Ok((result, u32::try_from(notified).unwrap_or(u32::MAX)))
    }

    /// The client as it is now, with how many sessions were notified.
    fn client_view(&self, id: &str, notified: u32) -> Result<pb::Client, ControlError> {
        let relay = &self.ctx.relay;
        let mut client = relay
            .state
            .read(|model| topology::find_client(relay, model, id))
            .ok_or_else(|| ControlError::ClientNotFound(id.to_owned()))?;
        client.sessions_notified = notified;
        Ok(client)
    }

    fn group_view(&self, id: &str) -> Result<pb::Group, ControlError> {
        let relay = &self.ctx.relay;
        relay
            .state
            .read(|model| model.group(id).map(|g| topology::group(relay, g)))
            .ok_or_else(|| StateError::GroupNotFound(id.to_owned()).into())
    }

    fn groups(&self) -> pb::ListGroupsResponse {
        let relay = &self.ctx.relay;
        pb::ListGroupsResponse {
            groups: relay.state.read(|model| {
                model
                    .groups
                    .iter()
                    .map(|g| topology::group(relay, g))
                    .collect()
            }),
        }
    }

    fn apply(&self, key: &str, value: &str, change: Change) -> Result<u32, ControlError> {
        let live = &self.ctx.relay.settings;
        let mut notified = 0;
        match change {
            Change::BufferMs(ms) => {
                live.set_buffer_ms(ms);
                notified = u32::try_from(self.ctx.relay.sync_all_clients()).unwrap_or(u32::MAX);
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

/// A stream control request refused before it reached the stream.
fn bad_request(bad: properties::BadRequest) -> ControlError {
    match bad {
        properties::BadRequest::Missing(field, allowed) => {
            ControlError::invalid(field, "(unset)", allowed)
        }
        properties::BadRequest::Rule(err) => err.into(),
    }
}

type StatsStream = Pin<Box<dyn Stream<Item = Result<pb::Stats, Status>> + Send + 'static>>;
type EventStream = Pin<Box<dyn Stream<Item = Result<pb::Event, Status>> + Send + 'static>>;

/// Events a WatchEvents caller may have waiting before it counts as behind (it then gets a
/// `missed` event rather than an ever longer queue).
const EVENT_QUEUE: usize = 64;

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
            uptime_ms: u64::try_from(ctx.relay.uptime().as_millis()).unwrap_or(u64::MAX),
            started_at_us: unix_micros(ctx.relay.started_at()),
            stream_addresses: ctx
                .stream_addresses
                .iter()
                .map(ToString::to_string)
                .collect(),
            grpc_addresses: ctx.grpc_addresses.iter().map(ToString::to_string).collect(),
            zerocopy_available: available,
            zerocopy_unavailable_reason: reason,
            zerocopy_enabled: ctx.relay.settings.zerocopy_enabled(),
            auth_required: ctx.auth_required,
            tls: ctx.tls,
        }))
    }

    async fn get_config(
        &self,
        request: Request<pb::GetConfigRequest>,
    ) -> Result<Response<pb::GetConfigResponse>, Status> {
        let key = request.into_inner().key;
        let entries = self
            .ctx
            .config
            .entries(&self.ctx.relay.settings, key.trim())?;
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
            .map(|key| self.ctx.config.entries(&self.ctx.relay.settings, key))
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
        let snapshot = self.ctx.relay.snapshot();
        Ok(Response::new(pb::Stats::from(&*snapshot)))
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
                    () = ctx.relay.cancel.cancelled() => return,
                }
                // Watchers share one snapshot (and its conversion) per shortest interval.
                let snapshot = ctx.relay.snapshot_within(MIN_WATCH_INTERVAL / 2);
                let stats = ctx.watched.convert(snapshot);
                if tx.send(Ok((*stats).clone())).await.is_err() {
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
            sessions: self
                .ctx
                .relay
                .snapshot()
                .sessions
                .iter()
                .map(pb::Session::from)
                .collect(),
        }))
    }

    async fn get_session(
        &self,
        request: Request<pb::GetSessionRequest>,
    ) -> Result<Response<pb::Session>, Status> {
        let info = self.session(request.into_inner().session_id)?;
        let view = self.ctx.relay.session_view_now(&info);
        Ok(Response::new(pb::Session::from(&view)))
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
        let snapshot = self.ctx.relay.snapshot();
        Ok(Response::new(pb::ListStreamsResponse {
            streams: snapshot.streams.iter().map(pb::StreamStats::from).collect(),
        }))
    }

    async fn get_stream(
        &self,
        request: Request<pb::GetStreamRequest>,
    ) -> Result<Response<pb::StreamStats>, Status> {
        let name = request.into_inner().stream;
        let stream = self.stream(&name)?;
        Ok(Response::new(pb::StreamStats::from(&StreamView::of(
            &stream,
        ))))
    }

    async fn add_stream(
        &self,
        request: Request<pb::AddStreamRequest>,
    ) -> Result<Response<pb::StreamStats>, Status> {
        let uri = request.into_inner().uri;
        let stream = self
            .ctx
            .relay
            .add_stream(uri.trim())
            .map_err(ControlError::from)?;
        Ok(Response::new(pb::StreamStats::from(&StreamView::of(
            &stream,
        ))))
    }

    async fn remove_stream(
        &self,
        request: Request<pb::RemoveStreamRequest>,
    ) -> Result<Response<pb::RemoveStreamResponse>, Status> {
        let name = request.into_inner().stream;
        let moved = self
            .ctx
            .relay
            .remove_stream(&name, None)
            .map_err(ControlError::from)?;
        Ok(Response::new(pb::RemoveStreamResponse {
            moved_client_ids: moved,
        }))
    }

    async fn control_stream(
        &self,
        request: Request<pb::ControlStreamRequest>,
    ) -> Result<Response<pb::ControlStreamResponse>, Status> {
        let request = request.into_inner();
        let stream = self.stream(&request.stream)?;
        let command = properties::command(&request).map_err(bad_request)?;
        stream
            .control()
            .control(command)
            .await
            .map_err(ControlError::from)?;
        info!(stream = %request.stream, command = command.name(), "stream controlled");
        Ok(Response::new(pb::ControlStreamResponse {
            properties: Some(pb::StreamProperties::from(&*stream.control().properties())),
        }))
    }

    async fn set_stream_property(
        &self,
        request: Request<pb::SetStreamPropertyRequest>,
    ) -> Result<Response<pb::ControlStreamResponse>, Status> {
        let request = request.into_inner();
        let stream = self.stream(&request.stream)?;
        let change = properties::property_change(&request).map_err(bad_request)?;
        stream
            .control()
            .set_property(change)
            .await
            .map_err(ControlError::from)?;
        info!(stream = %request.stream, property = change.name(), value = %change.value(), "stream property set");
        Ok(Response::new(pb::ControlStreamResponse {
            properties: Some(pb::StreamProperties::from(&*stream.control().properties())),
        }))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        _request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        // Subscribed before the call returns: nothing after it is missed.
        let mut announcements = self.ctx.relay.state.subscribe();
        let (tx, rx) = mpsc::channel(EVENT_QUEUE);
        let relay = self.ctx.relay.clone();
        tokio::spawn(async move {
            loop {
                let received = tokio::select! {
                    () = tx.closed() => return,
                    () = relay.cancel.cancelled() => return,
                    received = announcements.recv() => received,
                };
                let kinds = match received {
                    Ok(announcement) => events::kinds(&relay, &announcement.event),
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        vec![pb::event::Kind::Missed(missed)]
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                for kind in kinds {
                    if tx.send(Ok(events::stamped(kind))).await.is_err() {
                        return; // the caller went away
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
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
        // The range is the model's rule (state::rules), checked there for both APIs.
        let percent = request.percent.map(i64::from);
        let id = request.client_id;
        let (volume, notified) = self.change(
            |model| model.set_volume(&id, percent, request.muted),
            |_| Some(Event::ClientVolume(id.clone())),
            |_| vec![id.clone()],
        )?;
        info!(client = %id, volume = volume.percent, muted = volume.muted, "client volume set");
        Ok(Response::new(self.client_view(&id, notified)?))
    }

    async fn set_client_latency(
        &self,
        request: Request<pb::SetClientLatencyRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let request = request.into_inner();
        let id = request.client_id;
        let buffer_ms = self.ctx.relay.settings.buffer_ms();
        let (latency, notified) = self.change(
            |model| model.set_latency(&id, i64::from(request.latency_ms), buffer_ms),
            |_| Some(Event::ClientLatency(id.clone())),
            |_| vec![id.clone()],
        )?;
        info!(client = %id, latency_ms = latency, "client latency set");
        Ok(Response::new(self.client_view(&id, notified)?))
    }

    async fn set_client_name(
        &self,
        request: Request<pb::SetClientNameRequest>,
    ) -> Result<Response<pb::Client>, Status> {
        let request = request.into_inner();
        let id = request.client_id;
        let (name, _) = self.change(
            |model| model.set_client_name(&id, &request.name),
            |_| Some(Event::ClientName(id.clone())),
            |_| Vec::new(),
        )?;
        info!(client = %id, name, "client renamed");
        Ok(Response::new(self.client_view(&id, 0)?))
    }

    async fn list_clients(
        &self,
        _request: Request<pb::ListClientsRequest>,
    ) -> Result<Response<pb::ListClientsResponse>, Status> {
        let relay = &self.ctx.relay;
        let mut clients: Vec<pb::Client> = relay.state.read(|model| {
            model
                .groups
                .iter()
                .flat_map(|g| g.clients.iter().map(move |c| (g, c)))
                .map(|(g, c)| topology::client(relay, g, c))
                .collect()
        });
        clients.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        Ok(Response::new(pb::ListClientsResponse { clients }))
    }

    async fn delete_client(
        &self,
        request: Request<pb::DeleteClientRequest>,
    ) -> Result<Response<pb::DeleteClientResponse>, Status> {
        let id = request.into_inner().client_id;
        self.change(
            |model| model.delete_client(&id),
            |_| Some(Event::Topology),
            |_| Vec::new(),
        )?;
        info!(client = %id, "client deleted");
        Ok(Response::new(pb::DeleteClientResponse {}))
    }

    async fn list_groups(
        &self,
        _request: Request<pb::ListGroupsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        Ok(Response::new(self.groups()))
    }

    async fn set_group_stream(
        &self,
        request: Request<pb::SetGroupStreamRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let request = request.into_inner();
        let names = self.ctx.relay.streams.names();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let group_id = request.group_id;
        self.change(
            |model| model.set_group_stream(&group_id, &request.stream, &names),
            |_| Some(Event::GroupStream(group_id.clone())),
            Clone::clone,
        )?;
        info!(group = %group_id, stream = %request.stream, "group stream set");
        Ok(Response::new(self.group_view(&group_id)?))
    }

    async fn set_group_clients(
        &self,
        request: Request<pb::SetGroupClientsRequest>,
    ) -> Result<Response<pb::ListGroupsResponse>, Status> {
        let request = request.into_inner();
        let group_id = request.group_id;
        self.change(
            |model| model.set_group_clients(&group_id, &request.client_ids),
            |_| Some(Event::Topology),
            Clone::clone,
        )?;
        info!(group = %group_id, clients = ?request.client_ids, "group members set");
        Ok(Response::new(self.groups()))
    }

    async fn set_group_mute(
        &self,
        request: Request<pb::SetGroupMuteRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let request = request.into_inner();
        let group_id = request.group_id;
        self.change(
            |model| model.set_group_mute(&group_id, request.muted),
            |_| Some(Event::GroupMute(group_id.clone())),
            Clone::clone,
        )?;
        info!(group = %group_id, muted = request.muted, "group mute set");
        Ok(Response::new(self.group_view(&group_id)?))
    }

    async fn set_group_name(
        &self,
        request: Request<pb::SetGroupNameRequest>,
    ) -> Result<Response<pb::Group>, Status> {
        let request = request.into_inner();
        let group_id = request.group_id;
        self.change(
            |model| model.set_group_name(&group_id, request.name.trim()),
            |_| Some(Event::GroupName(group_id.clone())),
            |_| Vec::new(),
        )?;
        Ok(Response::new(self.group_view(&group_id)?))
    }
}

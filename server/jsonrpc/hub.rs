//! The connected control clients (TCP and websocket) and the notification fan-out
//! (docs/JSONRPC.md §5): one task turns each state announcement into one notification
//! text and offers it to every other connection's bounded queue.
//!
//! A connection costs its task and an idle queue: no timers, no polling. A connection whose
//! queue is full is not read fast enough; it is dropped (counted and logged) rather than
//! allowed to hold up the others or grow memory.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use dashmap::DashMap;
use serde_json::{json, Value};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::{objects, protocol, Caller, Rpc};
use crate::state::{Announcement, Event};

/// Notifications a connection may have waiting; far more than any burst of changes (a
/// Group.SetClients produces one), so only a connection that stopped reading overflows it.
const QUEUE: usize = 512;

#[derive(Debug)]
struct Peer {
    tx: mpsc::Sender<Arc<str>>,
    kick: CancellationToken,
    authenticated: Arc<AtomicBool>,
}

/// The registry of connections that receive notifications.
#[derive(Debug)]
pub(crate) struct Hub {
    peers: DashMap<u64, Peer>,
    next_id: AtomicU64,
}

/// A registered connection: its identity, its notifications, and the signal that it was
/// dropped for being slow. Dropping it unregisters.
#[derive(Debug)]
pub(crate) struct Registration<'a> {
    hub: &'a Hub,
    pub(crate) caller: Caller,
    pub(crate) notifications: mpsc::Receiver<Arc<str>>,
    pub(crate) kicked: CancellationToken,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        self.hub.peers.remove(&self.caller.id);
    }
}

impl Hub {
    pub(crate) fn new() -> Self {
        Self {
            peers: DashMap::new(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A caller that gets no notifications (an HTTP POST).
    pub(crate) fn transient(&self, authenticated: bool) -> Caller {
        Caller {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            authenticated: Arc::new(AtomicBool::new(authenticated)),
        }
    }

    /// Registers a connection that receives notifications (TCP, websocket).
    pub(crate) fn register(&self, authenticated: bool) -> Registration<'_> {
        let caller = self.transient(authenticated);
        let (tx, notifications) = mpsc::channel(QUEUE);
        let kicked = CancellationToken::new();
        self.peers.insert(
            caller.id,
            Peer {
                tx,
                kick: kicked.clone(),
                authenticated: caller.authenticated.clone(),
            },
        );
        Registration {
            hub: self,
            caller,
            notifications,
            kicked,
        }
    }

    /// Connected control clients.
    pub(crate) fn len(&self) -> usize {
        self.peers.len()
    }

    /// Offers `text` to every authenticated connection except `except`.
    /// Connections whose queue overflowed are dropped and counted in `slow_disconnects`.
    fn broadcast(&self, text: &Arc<str>, except: Option<u64>, slow_disconnects: &AtomicU64) {
        let mut slow = Vec::new();
        for peer in self.peers.iter() {
            if Some(*peer.key()) == except || !peer.authenticated.load(Ordering::Relaxed) {
                continue;
            }
            if let Err(mpsc::error::TrySendError::Full(_)) = peer.tx.try_send(text.clone()) {
                slow.push(*peer.key());
            }
        }
        // Removed outside the iteration: DashMap must not be written while a shard is read.
        for id in slow {
            if let Some((_, peer)) = self.peers.remove(&id) {
                peer.kick.cancel();
                let total = slow_disconnects.fetch_add(1, Ordering::Relaxed) + 1;
                warn!(
                    connection = id,
                    dropped_total = total,
                    "JSON-RPC control client dropped: it stopped reading its notifications"
                );
            }
        }
    }
}

/// Turns state announcements into notifications until the relay stops. `events` is
/// subscribed before any listener accepts, so no change is missed.
pub(crate) async fn run(rpc: Arc<Rpc>, mut events: broadcast::Receiver<Announcement>) {
    let cancel = rpc.relay.cancel.clone();
    loop {
        let announcement = tokio::select! {
            () = cancel.cancelled() => return,
            received = events.recv() => received,
        };
        let (event, origin) = match announcement {
            Ok(Announcement { event, origin }) => (event, origin),
            Err(broadcast::error::RecvError::Lagged(missed)) => {
                // Whatever was missed, the full picture covers it.
                debug!(
                    missed,
                    "notification backlog; sending the whole server instead"
                );
                (Event::Topology, None)
            }
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if rpc.hub.len() == 0 {
            continue;
        }
        if let Some(notification) = notification(&rpc, &event) {
            let text: Arc<str> = Arc::from(notification.to_string());
            rpc.hub
                .broadcast(&text, origin, &rpc.relay.counters.jsonrpc_slow_disconnects);
        }
    }
}

/// The notification for `event` (§5), read from the state as it is now; `None` when what
/// it names is already gone.
fn notification(rpc: &Rpc, event: &Event) -> Option<Value> {
    let relay = &rpc.relay;
    let server =
        || protocol::notification("Server.OnUpdate", json!({"server": objects::server(relay)}));
    let client = |id: &str| relay.state.read(|m| m.client(id).cloned());
    let group = |id: &str| relay.state.read(|m| m.group(id).cloned());
    Some(match event {
        // A client in a new group is announced with the whole server, so listeners never
        // see an id they do not know (§7.1).
        Event::ClientConnected {
            new_group: true, ..
        }
        | Event::Topology => server(),
        Event::ClientConnected { id, .. } => {
            let client = client(id)?;
            protocol::notification("Client.OnConnect", json!({"id": id, "client": client}))
        }
        Event::ClientDisconnected(id) => {
            let client = client(id)?;
            protocol::notification("Client.OnDisconnect", json!({"id": id, "client": client}))
        }
        Event::ClientVolume(id) => {
            let volume = client(id)?.config.volume;
            protocol::notification(
                "Client.OnVolumeChanged",
                json!({"id": id, "volume": volume}),
            )
        }
        Event::ClientLatency(id) => {
            let latency = client(id)?.config.latency;
            protocol::notification(
                "Client.OnLatencyChanged",
                json!({"id": id, "latency": latency}),
            )
        }
        Event::ClientName(id) => {
            let name = client(id)?.config.name;
            protocol::notification("Client.OnNameChanged", json!({"id": id, "name": name}))
        }
        Event::GroupMute(id) => {
            let mute = group(id)?.muted;
            protocol::notification("Group.OnMute", json!({"id": id, "mute": mute}))
        }
        Event::GroupStream(id) => {
            let stream_id = group(id)?.stream_id;
            protocol::notification(
                "Group.OnStreamChanged",
                json!({"id": id, "stream_id": stream_id}),
            )
        }
        Event::GroupName(id) => {
            let name = group(id)?.name;
            protocol::notification("Group.OnNameChanged", json!({"id": id, "name": name}))
        }
        Event::StreamState(name) => {
            // codec=null streams are hidden from control clients, as by snapserver.
            let stream = relay.stream(name).filter(crate::stream::Stream::playable)?;
            protocol::notification(
                "Stream.OnUpdate",
                json!({"id": name, "stream": objects::stream(&stream)}),
            )
        }
        // No notification of their own (snapserver has none); moved groups come as
        // Server.OnUpdate.
        Event::StreamAdded(_) | Event::StreamRemoved(_) => return None,
        // `params.properties`, as snapserver sends it and python-snapcast and Snapweb read it.
        Event::StreamProperties(name) => {
            let stream = relay.stream(name).filter(crate::stream::Stream::playable)?;
            protocol::notification(
                "Stream.OnProperties",
                json!({"id": name, "properties": stream.control().properties().to_json()}),
            )
        }
    })
}

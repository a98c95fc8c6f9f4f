//! The relay's persistent model (clients, groups) behind one lock, its debounced
//! persistence, and the events other front ends listen to. Front ends (gRPC, JSON-RPC) change
//! state only through [`State::update`], so they all see the same model.

pub(crate) mod model;
pub(crate) mod persist;
pub(crate) mod records;
pub(crate) mod rules;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{broadcast, Notify};
use tokio_util::sync::CancellationToken;
use tracing::error;

pub(crate) use model::{Playback, StateError};
pub(crate) use persist::{default_datadir, Store};
pub(crate) use records::{Client, Group, Model};

/// Changes are written this long after the last one (snapserver: 2 s; docs/PROTOCOL.md §4.4).
const SAVE_DEBOUNCE: Duration = Duration::from_secs(2);

/// What changed, for listeners such as the JSON-RPC notifications.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// A client said Hello; `new_group` when it landed in a new group.
    ClientConnected {
        /// Client id.
        id: String,
        /// Whether the topology changed (a new group).
        new_group: bool,
    },
    /// A client's last session ended.
    ClientDisconnected(String),
    /// Volume or mute of a client changed.
    ClientVolume(String),
    /// Latency of a client changed.
    ClientLatency(String),
    /// Name of a client changed.
    ClientName(String),
    /// A group's mute changed.
    GroupMute(String),
    /// A group's stream changed.
    GroupStream(String),
    /// A group's name changed.
    GroupName(String),
    /// Membership changed or a client was deleted: the whole topology.
    Topology,
    /// A stream went idle or started playing (docs/SOURCES.md §3).
    StreamState(String),
    /// A stream's properties or metadata changed (`Stream.OnProperties`).
    StreamProperties(String),
    /// A stream was added at run time.
    StreamAdded(String),
    /// A stream was removed at run time.
    StreamRemoved(String),
}

/// An [`Event`] and the JSON-RPC control connection whose request caused it, so that
/// connection gets the response only and every other one the notification
/// (docs/JSONRPC.md §2.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Announcement {
    /// What changed.
    pub(crate) event: Event,
    /// The control connection that asked for it; `None` for gRPC and the relay itself.
    pub(crate) origin: Option<u64>,
}

/// The model, its store and its listeners.
#[derive(Debug)]
pub(crate) struct State {
    model: Mutex<Model>,
    store: Store,
    changed: Notify,
    events: broadcast::Sender<Announcement>,
}

impl State {
    /// A state backed by `store`, starting from `model`.
    pub(crate) fn new(store: Store, model: Model) -> Self {
        Self {
            model: Mutex::new(model),
            store,
            changed: Notify::new(),
            events: broadcast::channel(256).0,
        }
    }

    /// Reads the model. The lock is a std mutex: nothing awaits while holding it.
    pub(crate) fn read<R>(&self, read: impl FnOnce(&Model) -> R) -> R {
        read(&self.lock())
    }

    /// Changes the model, schedules a save and announces `event` (when the change worked).
    pub(crate) fn update<R, E>(
        &self,
        change: impl FnOnce(&mut Model) -> Result<R, E>,
        event: impl FnOnce(&R) -> Option<Event>,
    ) -> Result<R, E> {
        self.update_from(None, change, event)
    }

    /// [`State::update`] on behalf of a JSON-RPC control connection (`origin`).
    pub(crate) fn update_from<R, E>(
        &self,
        origin: Option<u64>,
        change: impl FnOnce(&mut Model) -> Result<R, E>,
        event: impl FnOnce(&R) -> Option<Event>,
    ) -> Result<R, E> {
        let result = change(&mut self.lock())?;
        self.changed.notify_one();
        if let Some(event) = event(&result) {
            self.announce(event, origin);
        }
        Ok(result)
    }

    /// Announces something that is not a model change (e.g. a stream's state).
    pub(crate) fn announce(&self, event: Event, origin: Option<u64>) {
        // No listener is fine.
        let _ = self.events.send(Announcement { event, origin });
    }

    /// Listens to changes.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Announcement> {
        self.events.subscribe()
    }

    /// A copy of the whole model.
    pub(crate) fn snapshot(&self) -> Model {
        self.lock().clone()
    }

    /// Writes the state now.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        let model = self.snapshot();
        self.store.save(&model)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Saves changes, debounced, until `cancel`. The final save is the shutdown sequence's
    /// (after every session has left, so it includes their departures), made once and off the
    /// runtime's workers: this task does not save again when cancelled.
    pub(crate) async fn run_persistence(self: Arc<Self>, cancel: CancellationToken) {
        if self.store.path().is_none() {
            cancel.cancelled().await;
            return;
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                () = self.changed.notified() => {}
            }
            // Gather a burst of changes into one write.
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(SAVE_DEBOUNCE) => {}
            }
            let state = self.clone();
            match tokio::task::spawn_blocking(move || state.flush()).await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    error!(error = %err, "cannot save the state; will retry on the next change")
                }
                Err(err) => error!(error = %err, "state save task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The final save is the shutdown sequence's (once, off the runtime): the persistence
    /// task must not write again when cancelled.
    #[tokio::test]
    async fn the_persistence_task_leaves_the_final_save_to_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (store, model) = Store::open(dir.path());
        let file = store.path().expect("a writable data dir").to_owned();
        let state = Arc::new(State::new(store, model));
        let cancel = CancellationToken::new();
        let task = tokio::spawn(state.clone().run_persistence(cancel.clone()));
        cancel.cancel();
        task.await.unwrap();
        assert!(!file.exists(), "the persistence task saved at cancel");
        state.flush().unwrap();
        assert!(file.exists(), "the shutdown flush saves");
    }
}

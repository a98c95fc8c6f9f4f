//! The one change path both control front ends (gRPC and Snapcast JSON-RPC) use: change the
//! model through [`State`](crate::state::State), then bring the affected clients' sessions in
//! line with it. A volume set over either API has exactly the same effect on the wire.

use crate::session;
use crate::state::{Event, Model, StateError};

use super::Relay;

impl Relay {
    /// Changes the state on behalf of `origin` (a JSON-RPC connection id, `None` for gRPC),
    /// then pushes the new settings or stream to every session of each client `affected`
    /// names.
    ///
    /// # Returns
    ///
    /// The change's result and how many sessions were told.
    ///
    /// # Errors
    ///
    /// Whatever the model refused.
    pub(crate) fn change<R>(
        &self,
        origin: Option<u64>,
        change: impl FnOnce(&mut Model) -> Result<R, StateError>,
        event: impl FnOnce(&R) -> Option<Event>,
        affected: impl FnOnce(&R) -> Vec<String>,
    ) -> Result<(R, usize), StateError> {
        let result = self.state.update_from(origin, change, event)?;
        let notified = affected(&result)
            .iter()
            .map(|id| self.sync_client(id))
            .sum();
        Ok((result, notified))
    }

    /// Brings every live session of `client_id` in line with the state: new ServerSettings,
    /// the mute flag, and a live stream switch when its group's stream changed. Returns how
    /// many sessions took the new settings.
    pub(crate) fn sync_client(&self, client_id: &str) -> usize {
        let Some(playback) = self.state.read(|model| model.playback(client_id)) else {
            return 0;
        };
        let settings = session::server_settings(&self.settings, &playback);
        let stream = self.stream(&playback.stream_id);
        let mut notified = 0;
        for session in self.sessions.of_client(client_id) {
            session.set_muted(playback.muted);
            if session.push_settings(settings) {
                notified += 1;
            }
            if let Some(stream) = &stream {
                session.switch_stream(stream);
            }
        }
        notified
    }

    /// Pushes the current settings to every connected client (after a buffer change).
    pub(crate) fn sync_all_clients(&self) -> usize {
        let mut ids: Vec<String> = self
            .sessions
            .all()
            .iter()
            .filter_map(|s| s.client_id())
            .collect();
        ids.sort();
        ids.dedup();
        ids.iter().map(|id| self.sync_client(id)).sum()
    }
}

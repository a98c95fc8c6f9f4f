//! The one change path both control front ends (gRPC in `control/`, Snapcast JSON-RPC in
//! `jsonrpc/`) use: change the model through [`crate::state::State`], then bring the affected
//! clients' sessions in line with it. Keeping it here means a volume set over either API has
//! exactly the same effect on the wire.

use crate::server::Shared;
use crate::session;
use crate::state::{Event, Model, StateError};

/// Changes the state on behalf of `origin` (a JSON-RPC connection id, `None` for gRPC), then
/// pushes the new settings or stream to every session of each client `affected` names.
///
/// # Returns
///
/// The change's result and how many sessions were told.
///
/// # Errors
///
/// Whatever the model refused.
pub(crate) fn change<R>(
    shared: &Shared,
    origin: Option<u64>,
    change: impl FnOnce(&mut Model) -> Result<R, StateError>,
    event: impl FnOnce(&R) -> Option<Event>,
    affected: impl FnOnce(&R) -> Vec<String>,
) -> Result<(R, usize), StateError> {
    let result = shared.state.update_from(origin, change, event)?;
    let notified = affected(&result)
        .iter()
        .map(|id| session::sync_client(shared, id))
        .sum();
    Ok((result, notified))
}

//! The method table (docs/JSONRPC.md §4) with the result objects python-snapcast and Music
//! Assistant read back (§7.1, §7.2; where upstream's doc and code disagree, the code wins:
//! AddStream/RemoveStream return `{"id"}`).

use std::sync::atomic::Ordering;

use serde_json::{json, Map, Value};
use tracing::info;

use super::protocol::RpcError;
use super::{objects, Caller, Rpc};
use crate::properties::{Command, ControlError, PropertyChange};
use crate::relay::{AddStreamError, RemoveStreamError};
use crate::state::{Event, StateError};
use crate::stream::Stream;

type Params = Map<String, Value>;

/// Every method, for `General.GetRPCCommands`: (name, description).
const COMMANDS: &[(&str, &str)] = &[
    ("Client.GetStatus", "Get the status of a client"),
    (
        "Client.SetVolume",
        "Set the volume and/or mute state of a client",
    ),
    ("Client.SetLatency", "Set the extra latency of a client"),
    ("Client.SetName", "Set the name of a client"),
    ("Group.GetStatus", "Get the status of a group"),
    ("Group.SetName", "Set the name of a group"),
    ("Group.SetMute", "Mute or unmute a group"),
    ("Group.SetStream", "Set the stream of a group"),
    ("Group.SetClients", "Set the clients of a group"),
    ("Server.GetRPCVersion", "Get the JSON-RPC protocol version"),
    (
        "Server.GetStatus",
        "Get the status of the server: groups, clients and streams",
    ),
    ("Server.DeleteClient", "Delete a disconnected client"),
    (
        "Server.Authenticate",
        "Authenticate with the token (scheme Bearer or Plain)",
    ),
    ("General.GetRPCCommands", "List the available methods"),
    (
        "Stream.Control",
        "Control a stream (play, pause, playPause, stop, next, previous, seek, setPosition)",
    ),
    (
        "Stream.SetProperty",
        "Set a stream property (loopStatus, shuffle, volume, mute, rate)",
    ),
    (
        "Stream.AddStream",
        "Add and start a stream (whitelisted source schemes only)",
    ),
    ("Stream.RemoveStream", "Stop and remove a stream"),
];

/// Methods a caller may use before authenticating.
pub(crate) fn open_without_auth(method: &str) -> bool {
    matches!(
        method,
        "Server.Authenticate" | "Server.GetRPCVersion" | "General.GetRPCCommands"
    )
}

/// Runs one method.
pub(crate) async fn call(
    rpc: &Rpc,
    method: &str,
    params: &Params,
    caller: &Caller,
) -> Result<Value, RpcError> {
    let relay = &rpc.relay;
    let origin = Some(caller.id);
    match method {
        "Client.GetStatus" => {
            let id = string(params, "id")?;
            let client = relay
                .state
                .read(|m| m.client(id).cloned())
                .ok_or_else(|| RpcError::internal("Client not found"))?;
            Ok(json!({"client": client}))
        }
        "Client.SetVolume" => {
            let id = string(params, "id")?;
            let volume = params
                .get("volume")
                .and_then(Value::as_object)
                .ok_or_else(|| missing_or_bad("volume", params, "an object"))?;
            // Partial updates allowed (§4). A fractional percent is rounded; the range is
            // the model's rule (state::rules), the same for gRPC.
            let percent = match volume.get("percent") {
                None => None,
                Some(v) => Some(
                    v.as_f64()
                        .filter(|p| p.is_finite())
                        .map(|p| p.round() as i64)
                        .ok_or_else(|| {
                            RpcError::invalid_params("Parameter 'volume.percent' must be a number")
                        })?,
                ),
            };
            let muted = match volume.get("muted") {
                None => None,
                Some(v) => Some(v.as_bool().ok_or_else(|| {
                    RpcError::invalid_params("Parameter 'volume.muted' must be a boolean")
                })?),
            };
            if percent.is_none() && muted.is_none() {
                return Err(RpcError::invalid_params(
                    "Parameter 'volume' needs 'percent' and/or 'muted'",
                ));
            }
            let (volume, _) = relay
                .change(
                    origin,
                    |m| m.set_volume(id, percent, muted),
                    |_| Some(Event::ClientVolume(id.to_owned())),
                    |_| vec![id.to_owned()],
                )
                .map_err(state_error)?;
            info!(
                client = id,
                volume = volume.percent,
                muted = volume.muted,
                "client volume set (JSON-RPC)"
            );
            Ok(json!({"volume": volume}))
        }
        "Client.SetLatency" => {
            let id = string(params, "id")?;
            let latency = integer(params, "latency")?;
            let buffer_ms = relay.settings.buffer_ms();
            let (latency, _) = relay
                .change(
                    origin,
                    |m| m.set_latency(id, latency, buffer_ms),
                    |_| Some(Event::ClientLatency(id.to_owned())),
                    |_| vec![id.to_owned()],
                )
                .map_err(state_error)?;
            Ok(json!({"latency": latency}))
        }
        "Client.SetName" => {
            let id = string(params, "id")?;
            let name = string(params, "name")?;
            let (name, _) = relay
                .change(
                    origin,
                    |m| m.set_client_name(id, name),
                    |_| Some(Event::ClientName(id.to_owned())),
                    |_| Vec::new(),
                )
                .map_err(state_error)?;
            Ok(json!({"name": name}))
        }
        "Group.GetStatus" => {
            let id = string(params, "id")?;
            let group = relay
                .state
                .read(|m| m.group(id).cloned())
                .ok_or_else(|| RpcError::internal("Group not found"))?;
            Ok(json!({"group": group}))
        }
        "Group.SetName" => {
            let id = string(params, "id")?;
            let name = string(params, "name")?;
            let (name, _) = relay
                .change(
                    origin,
                    |m| m.set_group_name(id, name),
                    |_| Some(Event::GroupName(id.to_owned())),
                    |_| Vec::new(),
                )
                .map_err(state_error)?;
            Ok(json!({"name": name}))
        }
        "Group.SetMute" => {
            let id = string(params, "id")?;
            let mute = boolean(params, "mute")?;
            relay
                .change(
                    origin,
                    |m| m.set_group_mute(id, mute),
                    |_| Some(Event::GroupMute(id.to_owned())),
                    Clone::clone,
                )
                .map_err(state_error)?;
            Ok(json!({"mute": mute}))
        }
        "Group.SetStream" => {
            let id = string(params, "id")?;
            let stream_id = string(params, "stream_id")?;
            let names = relay.streams.names();
            let names: Vec<&str> = names.iter().map(String::as_str).collect();
            relay
                .change(
                    origin,
                    |m| m.set_group_stream(id, stream_id, &names),
                    |_| Some(Event::GroupStream(id.to_owned())),
                    Clone::clone,
                )
                .map_err(state_error)?;
            info!(
                group = id,
                stream = stream_id,
                "group stream set (JSON-RPC)"
            );
            Ok(json!({"stream_id": stream_id}))
        }
        "Group.SetClients" => {
            let id = string(params, "id")?;
            let clients = params
                .get("clients")
                .and_then(Value::as_array)
                .ok_or_else(|| missing_or_bad("clients", params, "an array of client ids"))?
                .iter()
                .map(|c| c.as_str().map(str::to_owned))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| {
                    RpcError::invalid_params("Parameter 'clients' must be an array of strings")
                })?;
            relay
                .change(
                    origin,
                    |m| m.set_group_clients(id, &clients),
                    |_| Some(Event::Topology),
                    Clone::clone,
                )
                .map_err(state_error)?;
            Ok(json!({"server": objects::server(relay)}))
        }
        "Server.GetRPCVersion" => {
            // What snapserver 0.30+ (and so the 0.34.0 we report) answers (§4).
            Ok(json!({"major": 23, "minor": 0, "patch": 0}))
        }
        "Server.GetStatus" => Ok(json!({"server": objects::server(relay)})),
        "Server.DeleteClient" => {
            let id = string(params, "id")?;
            relay
                .change(
                    origin,
                    |m| m.delete_client(id),
                    |_| Some(Event::Topology),
                    |_| Vec::new(),
                )
                .map_err(state_error)?;
            Ok(json!({"server": objects::server(relay)}))
        }
        "Server.Authenticate" => {
            let scheme = string(params, "scheme")?;
            let param = string(params, "param")?;
            if !matches!(scheme, "Bearer" | "Plain") {
                return Err(RpcError::invalid_params(
                    "Parameter 'scheme' must be Bearer or Plain",
                ));
            }
            if !rpc.token_matches(param) {
                return Err(RpcError::unauthorized("invalid token"));
            }
            caller.authenticated.store(true, Ordering::Relaxed);
            Ok(json!("ok"))
        }
        "General.GetRPCCommands" => {
            let authenticated = caller.authenticated.load(Ordering::Relaxed);
            let commands: Vec<Value> = COMMANDS
                .iter()
                .map(|(method, description)| {
                    let needs_auth = !rpc.open() && !open_without_auth(method);
                    json!({
                        "description": description,
                        "hasPermission": authenticated || !needs_auth,
                        "method": method,
                        "requires": {"authentication": needs_auth, "authorization": false},
                    })
                })
                .collect();
            Ok(json!({"commands": commands}))
        }
        "Stream.Control" => {
            let id = string(params, "id")?;
            let command = string(params, "command")?;
            let stream = known_stream(rpc, id)?;
            let command = Command::parse(command, params.get("params")).map_err(control_error)?;
            stream
                .control()
                .control(command)
                .await
                .map_err(control_error)?;
            info!(
                stream = id,
                command = command.name(),
                "stream controlled (JSON-RPC)"
            );
            Ok(json!("ok"))
        }
        "Stream.SetProperty" => {
            let id = string(params, "id")?;
            let property = string(params, "property")?;
            let Some(value) = params.get("value") else {
                return Err(RpcError::invalid_params("Parameter 'value' is missing"));
            };
            let stream = known_stream(rpc, id)?;
            let change = PropertyChange::parse(property, value).map_err(control_error)?;
            stream
                .control()
                .set_property(change)
                .await
                .map_err(control_error)?;
            info!(stream = id, property, value = %change.value(), "stream property set (JSON-RPC)");
            Ok(json!("ok"))
        }
        "Stream.AddStream" => add_stream(rpc, params),
        "Stream.RemoveStream" => remove_stream(rpc, params, origin),
        other => Err(RpcError::method_not_found(other)),
    }
}

/// `Stream.AddStream {streamUri}` → `{id}` (the relay core's rules: whitelisted schemes,
/// plugins only from the plugin directory).
fn add_stream(rpc: &Rpc, params: &Params) -> Result<Value, RpcError> {
    let uri = string(params, "streamUri")?;
    let stream = rpc.relay.add_stream(uri).map_err(|err| match err {
        AddStreamError::Uri(_) | AddStreamError::Scheme { .. } => {
            RpcError::invalid_params(err.to_string())
        }
        AddStreamError::ControlScriptOutside(_) => RpcError::invalid_params(err.to_string()),
        AddStreamError::Exists(_) | AddStreamError::Start(_) => {
            RpcError::internal(format!("Stream not created: {err}"))
        }
    })?;
    Ok(json!({"id": stream.name()}))
}

/// `Stream.RemoveStream {id}` → `{id}`: stops the stream; its groups move to the default
/// stream (their clients switch at once). Silent for an unknown id, as snapserver.
fn remove_stream(rpc: &Rpc, params: &Params, origin: Option<u64>) -> Result<Value, RpcError> {
    let id = string(params, "id")?;
    match rpc.relay.remove_stream(id, origin) {
        Ok(_) | Err(RemoveStreamError::NotFound) => Ok(json!({"id": id})),
        Err(RemoveStreamError::Last) => Err(RpcError::internal(
            "Stream not removed: the relay needs at least one stream",
        )),
        Err(RemoveStreamError::State(err)) => Err(state_error(err)),
    }
}

fn known_stream(rpc: &Rpc, id: &str) -> Result<Stream, RpcError> {
    rpc.relay
        .stream(id)
        .ok_or_else(|| RpcError::internal("Stream not found"))
}

/// A control refusal with snapserver's code and message.
fn control_error(err: ControlError) -> RpcError {
    match err {
        ControlError::InvalidParams(message) => RpcError::invalid_params(message),
        other => RpcError::stream_control(other.code(), &other.to_string()),
    }
}

/// The model's refusals as snapserver words them (§2.3).
fn state_error(err: StateError) -> RpcError {
    match err {
        StateError::ClientNotFound(_) => RpcError::internal("Client not found"),
        StateError::GroupNotFound(_) => RpcError::internal("Group not found"),
        StateError::StreamNotFound(_) => RpcError::internal("Stream not found"),
        StateError::ClientConnected(_) => {
            RpcError::internal("Client is connected; only disconnected clients can be deleted")
        }
        StateError::Invalid {
            field,
            value,
            allowed,
        } => RpcError::invalid_params(format!(
            "Parameter '{field}' invalid: '{value}'; expected {allowed}"
        )),
    }
}

fn missing_or_bad(name: &str, params: &Params, what: &str) -> RpcError {
    if params.contains_key(name) {
        RpcError::invalid_params(format!("Parameter '{name}' must be {what}"))
    } else {
        RpcError::invalid_params(format!("Parameter '{name}' is missing"))
    }
}

fn string<'a>(params: &'a Params, name: &str) -> Result<&'a str, RpcError> {
    params
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| missing_or_bad(name, params, "a string"))
}

fn integer(params: &Params, name: &str) -> Result<i64, RpcError> {
    params
        .get(name)
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f.round() as i64)))
        .ok_or_else(|| missing_or_bad(name, params, "a number"))
}

fn boolean(params: &Params, name: &str) -> Result<bool, RpcError> {
    params
        .get(name)
        .and_then(Value::as_bool)
        .ok_or_else(|| missing_or_bad(name, params, "a boolean"))
}

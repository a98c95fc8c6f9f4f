//! The stream plugin protocol (docs/SOURCES.md §6.2): newline-delimited JSON-RPC 2.0 on
//! the plugin's stdin and stdout. What a plugin's line means, and the lines sent to it. No
//! I/O here.

use serde_json::{json, Value};

use crate::properties::control::code_text;

/// Method a plugin calls when it is ready; the server then asks for its properties.
pub(crate) const READY: &str = "Plugin.Stream.Ready";
/// Method of a plugin's properties notification.
pub(crate) const PROPERTIES: &str = "Plugin.Stream.Player.Properties";
/// Method of a plugin's log line.
pub(crate) const LOG: &str = "Plugin.Stream.Log";
/// Request for the player's properties.
pub(crate) const GET_PROPERTIES: &str = "Plugin.Stream.Player.GetProperties";
/// Request to carry out a `Stream.Control` command.
pub(crate) const CONTROL: &str = "Plugin.Stream.Player.Control";
/// Request to carry out a `Stream.SetProperty` change.
pub(crate) const SET_PROPERTY: &str = "Plugin.Stream.Player.SetProperty";

/// How loud a plugin's log line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Severity {
    Trace,
    Debug,
    Info,
    Warning,
    Error,
}

impl Severity {
    /// snapserver's names (Trace, Debug, Info, Notice, Warning, Error, Fatal), any case.
    fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "trace" => Self::Trace,
            "debug" => Self::Debug,
            "warning" | "warn" => Self::Warning,
            "error" | "fatal" => Self::Error,
            _ => Self::Info,
        }
    }
}

/// One line from a plugin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum FromPlugin {
    /// `Plugin.Stream.Ready`.
    Ready,
    /// `Plugin.Stream.Player.Properties`, its params (a properties object).
    Properties(Value),
    /// `Plugin.Stream.Log`.
    Log { severity: Severity, message: String },
    /// The answer to request `id`: its result, or its error's code and message.
    Response {
        id: u64,
        outcome: Result<Value, (i64, String)>,
    },
    /// A method this server does not know; `id` when the plugin waits for an answer.
    UnknownMethod { method: String, id: Option<Value> },
}

/// Reads one line.
///
/// # Errors
///
/// What is wrong with it, for the log.
pub(crate) fn parse(line: &str) -> Result<FromPlugin, String> {
    let value: Value =
        serde_json::from_str(line.trim()).map_err(|err| format!("not JSON ({err})"))?;
    let Some(object) = value.as_object() else {
        return Err("not a JSON-RPC object".to_owned());
    };
    if let Some(method) = object.get("method") {
        let method = method
            .as_str()
            .ok_or_else(|| "'method' is not a string".to_owned())?;
        let params = object.get("params").cloned().unwrap_or(Value::Null);
        return Ok(match method {
            READY => FromPlugin::Ready,
            PROPERTIES => FromPlugin::Properties(params),
            LOG => FromPlugin::Log {
                severity: Severity::parse(
                    params.get("severity").and_then(Value::as_str).unwrap_or(""),
                ),
                message: params
                    .get("message")
                    .and_then(Value::as_str)
                    .ok_or_else(|| "Plugin.Stream.Log without a 'message' string".to_owned())?
                    .to_owned(),
            },
            other => FromPlugin::UnknownMethod {
                method: other.to_owned(),
                id: object.get("id").cloned(),
            },
        });
    }
    let id = object
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| "neither a method nor a response to one of our requests".to_owned())?;
    let outcome = if let Some(error) = object.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(-32603);
        if code == 0 {
            // snapserver takes an error with code 0 as success.
            return Ok(FromPlugin::Response {
                id,
                outcome: Ok(Value::Null),
            });
        }
        // snapserver's caller sees its own text for the code, then the plugin's `data`; it
        // drops the plugin's `message`, and never answers when there is no string `data`.
        // Here the plugin's message stands in for missing data.
        let message = match error.get("data") {
            Some(Value::String(data)) => format!("{}: {data}", code_text(code)),
            Some(Value::Null) | None => error
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or_else(|| code_text(code))
                .to_owned(),
            Some(data) => format!("{}: {data}", code_text(code)),
        };
        Err((code, message))
    } else if let Some(result) = object.get("result") {
        Ok(result.clone())
    } else {
        return Err(format!("response {id} has neither 'result' nor 'error'"));
    };
    Ok(FromPlugin::Response { id, outcome })
}

/// A request line (newline included).
pub(crate) fn request(id: u64, method: &str, params: Option<Value>) -> String {
    let mut message = json!({"jsonrpc": "2.0", "id": id, "method": method});
    if let Some(params) = params {
        message["params"] = params;
    }
    format!("{message}\n")
}

/// The error answer to a plugin's request for a method this server does not have.
pub(crate) fn method_not_found(id: &Value, method: &str) -> String {
    let message = json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {"code": -32601, "message": "Method not found", "data": method},
    });
    format!("{message}\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_lines_read_as_snapserver_reads_them() {
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","method":"Plugin.Stream.Ready"}"#),
            Ok(FromPlugin::Ready)
        );
        assert_eq!(
            parse("{\"jsonrpc\":\"2.0\",\"method\":\"Plugin.Stream.Player.Properties\",\"params\":{\"canPlay\":true}}\r"),
            Ok(FromPlugin::Properties(json!({"canPlay": true})))
        );
        assert_eq!(
            parse(
                r#"{"jsonrpc":"2.0","method":"Plugin.Stream.Log","params":{"severity":"Warning","message":"hi"}}"#
            ),
            Ok(FromPlugin::Log {
                severity: Severity::Warning,
                message: "hi".into()
            })
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":3,"result":"ok"}"#),
            Ok(FromPlugin::Response {
                id: 3,
                outcome: Ok(json!("ok"))
            })
        );
        assert_eq!(
            parse(
                r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32603,"message":"Oops","data":"player gone"}}"#
            ),
            Ok(FromPlugin::Response {
                id: 4,
                outcome: Err((-32603, "Internal error: player gone".into()))
            })
        );
        assert_eq!(
            parse(
                r#"{"jsonrpc":"2.0","id":5,"error":{"code":-32601,"message":"Method not found"}}"#
            ),
            Ok(FromPlugin::Response {
                id: 5,
                outcome: Err((-32601, "Method not found".into()))
            })
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":6,"error":{"code":0,"message":"fine"}}"#),
            Ok(FromPlugin::Response {
                id: 6,
                outcome: Ok(Value::Null)
            })
        );
        assert_eq!(
            parse(r#"{"jsonrpc":"2.0","id":7,"method":"Plugin.Stream.Other"}"#),
            Ok(FromPlugin::UnknownMethod {
                method: "Plugin.Stream.Other".into(),
                id: Some(json!(7))
            })
        );
    }

    #[test]
    fn malformed_lines_are_errors_not_panics() {
        for line in [
            "",
            "garbage",
            "[1,2]",
            r#"{"method": 5}"#,
            r#"{"id": "x", "result": 1}"#,
            r#"{"id": 1}"#,
            r#"{"method":"Plugin.Stream.Log","params":{}}"#,
            r#"{"jsonrpc":"2.0"}"#,
        ] {
            assert!(parse(line).is_err(), "{line}");
        }
    }

    #[test]
    fn requests_are_one_line_each() {
        let line = request(9, CONTROL, Some(json!({"command": "next"})));
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1);
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            value,
            json!({"jsonrpc": "2.0", "id": 9, "method": CONTROL, "params": {"command": "next"}})
        );
        let value: Value = serde_json::from_str(&request(1, GET_PROPERTIES, None)).unwrap();
        assert!(value.get("params").is_none());
        let value: Value = serde_json::from_str(&method_not_found(&json!(7), "X")).unwrap();
        assert_eq!(value["error"]["code"], -32601);
    }
}

//! JSON-RPC 2.0 framing as snapserver speaks it (docs/JSONRPC.md §2): one request,
//! notification or batch per message in, responses out. No I/O and no knowledge of methods.

use serde_json::{json, Map, Value};

/// Longest request line (TCP) or message (HTTP, websocket) a control client may send. Real
/// requests are well under a kilobyte; the bound keeps a client from growing our buffers.
pub(crate) const MAX_REQUEST_BYTES: usize = 1 << 20;

/// An error object: standard codes (§2.3), snapserver's stream-control codes 1..7 and the auth
/// codes 401/403, with the detail in `data` as snapserver's code does.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message} ({code}): {data:?}")]
pub(crate) struct RpcError {
    /// The JSON-RPC error code.
    pub(crate) code: i64,
    /// The standard message for `code`.
    pub(crate) message: String,
    /// The detail, e.g. "Client not found".
    pub(crate) data: Option<String>,
}

impl RpcError {
    fn new(code: i64, message: &str, data: Option<String>) -> Self {
        Self {
            code,
            message: message.to_owned(),
            data,
        }
    }

    /// −32700: the input is not JSON.
    pub(crate) fn parse(detail: impl Into<String>) -> Self {
        Self::new(-32700, "Parse error", Some(detail.into()))
    }

    /// −32600: JSON, but not a request.
    pub(crate) fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(-32600, "Invalid request", Some(detail.into()))
    }

    /// −32601.
    pub(crate) fn method_not_found(method: &str) -> Self {
        Self::new(-32601, "Method not found", Some(method.to_owned()))
    }

    /// −32602, naming the parameter as snapserver does ("Parameter 'volume' is missing").
    pub(crate) fn invalid_params(detail: impl Into<String>) -> Self {
        Self::new(-32602, "Invalid params", Some(detail.into()))
    }

    /// −32603 with a detail such as "Client not found".
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(-32603, "Internal error", Some(detail.into()))
    }

    /// A stream-control error (§4.1): code 1..7 with the detail as the message.
    pub(crate) fn stream_control(code: i64, message: &str) -> Self {
        Self::new(code, message, None)
    }

    /// 401: authentication is required and missing or wrong.
    pub(crate) fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(401, "Unauthorized", Some(detail.into()))
    }

    fn to_value(&self) -> Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(data) = &self.data {
            error["data"] = Value::String(data.clone());
        }
        error
    }
}

/// One well-formed request.
#[derive(Debug)]
pub(crate) struct Request {
    /// Echoed back unchanged; `None` for a notification (no reply).
    pub(crate) id: Option<Value>,
    pub(crate) method: String,
    /// The params object (empty when absent).
    pub(crate) params: Map<String, Value>,
}

/// What one incoming message holds.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// A single entry.
    Single(Result<Request, (Value, RpcError)>),
    /// A batch array (never empty).
    Batch(Vec<Result<Request, (Value, RpcError)>>),
    /// Unparseable input: answered with this error and a `null` id.
    Broken(RpcError),
}

/// Splits a message into requests.
pub(crate) fn parse(text: &str) -> Incoming {
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(err) => return Incoming::Broken(RpcError::parse(err.to_string())),
    };
    match value {
        Value::Array(items) if items.is_empty() => {
            Incoming::Broken(RpcError::invalid_request("empty batch"))
        }
        Value::Array(items) => Incoming::Batch(items.into_iter().map(request).collect()),
        other => Incoming::Single(request(other)),
    }
}

/// Checks one entry; an invalid one comes back with the id to answer under.
fn request(value: Value) -> Result<Request, (Value, RpcError)> {
    let Value::Object(mut object) = value else {
        return Err((Value::Null, RpcError::invalid_request("not an object")));
    };
    let id = object.remove("id");
    let reply_id = id.clone().unwrap_or(Value::Null);
    let fail = |detail: &str| Err((reply_id.clone(), RpcError::invalid_request(detail)));
    match &id {
        None | Some(Value::Number(_) | Value::String(_) | Value::Null) => {}
        Some(_) => return fail("'id' must be a number or a string"),
    }
    if object.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return fail("'jsonrpc' must be \"2.0\"");
    }
    let method = match object.remove("method") {
        Some(Value::String(method)) => method,
        _ => return fail("'method' must be a string"),
    };
    let params = match object.remove("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(params)) => params,
        Some(_) => {
            return Err((
                reply_id,
                RpcError::invalid_params("'params' must be an object"),
            ))
        }
    };
    Ok(Request { id, method, params })
}

/// A success response.
pub(crate) fn result(id: Value, result: Value) -> Value {
    json!({"id": id, "jsonrpc": "2.0", "result": result})
}

/// An error response.
pub(crate) fn error(id: Value, error: &RpcError) -> Value {
    json!({"error": error.to_value(), "id": id, "jsonrpc": "2.0"})
}

/// A notification (server → client, no id).
pub(crate) fn notification(method: &str, params: Value) -> Value {
    json!({"jsonrpc": "2.0", "method": method, "params": params})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_classified() {
        assert!(matches!(parse("{"), Incoming::Broken(e) if e.code == -32700));
        assert!(matches!(parse("[]"), Incoming::Broken(e) if e.code == -32600));
        assert!(matches!(parse("5"), Incoming::Single(Err((_, e))) if e.code == -32600));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1}"#),
            Incoming::Single(Err((Value::Number(_), e))) if e.code == -32600
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#),
            Incoming::Single(Err((_, e))) if e.code == -32602
        ));
        assert!(matches!(
            parse(r#"{"jsonrpc":"2.0","id":{},"method":"x"}"#),
            Incoming::Single(Err((Value::Object(_), e))) if e.code == -32600
        ));
    }

    #[test]
    fn requests_and_batches_parse() {
        let Incoming::Batch(items) = parse(
            r#"[{"jsonrpc":"2.0","id":"a","method":"M","params":{"x":1}},{"jsonrpc":"2.0","method":"N"}]"#,
        ) else {
            panic!("batch expected");
        };
        let first = items[0].as_ref().unwrap();
        assert_eq!(
            (first.id.clone(), first.method.as_str()),
            (Some(json!("a")), "M")
        );
        assert_eq!(first.params["x"], 1);
        assert!(items[1].as_ref().unwrap().id.is_none(), "a notification");
    }

    #[test]
    fn errors_carry_the_detail_in_data() {
        let value = error(json!(3), &RpcError::internal("Client not found"));
        assert_eq!(
            value,
            json!({"error":{"code":-32603,"data":"Client not found","message":"Internal error"},"id":3,"jsonrpc":"2.0"})
        );
    }
}

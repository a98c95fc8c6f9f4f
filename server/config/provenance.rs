//! Where a merged config value came from and how it reads in messages: the names of the
//! layers (defaults, file, environment, flags), a value as the user typed it, and a key's
//! origin. Shared by the layers that record it, the loader and the validator.

use figment::value::Value;
use figment::{Figment, Metadata, Profile};

// Metadata names of the layers; `Loaded::origin` maps them back to `Origin`.
pub(super) const LAYER_DEFAULT: &str = "default";
pub(super) const LAYER_FILE: &str = "config file";
pub(super) const LAYER_ENV: &str = "environment";
pub(super) const LAYER_FLAG: &str = "command line";

/// The place `metadata`'s interpolater names for `key` (a file line, a variable, a flag).
pub(super) fn interpolate(metadata: &Metadata, key: &str) -> String {
    let parts: Vec<&str> = key.split('.').collect();
    metadata.interpolate(&Profile::Default, &parts)
}

/// A value as the user would have typed it.
pub(super) fn render(value: &Value) -> String {
    match value {
        Value::String(_, text) => text.clone(),
        Value::Char(_, c) => c.to_string(),
        Value::Bool(_, b) => b.to_string(),
        Value::Num(_, n) => n
            .to_u128()
            .map(|n| n.to_string())
            .or_else(|| n.to_i128().map(|n| n.to_string()))
            .or_else(|| n.to_f64().map(|n| n.to_string()))
            .unwrap_or_default(),
        Value::Empty(..) => String::new(),
        Value::Array(_, items) => items.iter().map(render).collect::<Vec<_>>().join(", "),
        Value::Dict(_, entries) => {
            let entries: Vec<String> = entries
                .iter()
                .map(|(key, value)| format!("{key} = {}", render(value)))
                .collect();
            format!("{{{}}}", entries.join(", "))
        }
    }
}

/// Where the effective value of `key` came from, as text for error messages.
pub(super) fn describe(figment: &Figment, key: &str) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "default".to_owned();
    };
    let name = interpolate(metadata, key);
    match metadata.name.as_ref() {
        LAYER_ENV => format!("env {name}"),
        LAYER_FLAG => format!("flag {name}"),
        _ => name,
    }
}

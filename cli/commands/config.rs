//! `snapctl config get [KEY]`, `config set KEY VALUE` and `log-level FILTER`.

use snaprelay::pb;

use crate::client::Control;
use crate::exit::CliError;
use crate::output::{Output, Table};

pub async fn get(control: &mut Control, out: &Output, key: Option<String>) -> Result<(), CliError> {
    let entries = control
        .get_config(pb::GetConfigRequest {
            key: key.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .entries;
    if out.json {
        return out.json(&serde_json::json!({ "entries": entries }));
    }
    out.line(&table(&entries))
}

pub async fn set(
    control: &mut Control,
    out: &Output,
    key: String,
    value: String,
) -> Result<(), CliError> {
    let response = control
        .update_config(pb::UpdateConfigRequest {
            changes: vec![pb::ConfigChange { key, value }],
        })
        .await?
        .into_inner();
    if out.json {
        return out.json(&response);
    }
    out.line(&table(&response.entries))?;
    if response.sessions_notified > 0 {
        out.line(&format!(
            "sent new settings to {} session(s)",
            response.sessions_notified
        ))?;
    }
    Ok(())
}

fn table(entries: &[pb::ConfigEntry]) -> String {
    let mut table = Table::new(&["KEY", "VALUE", "ORIGIN", "RUNTIME"]);
    for e in entries {
        let origin = match e.origin() {
            pb::ConfigOrigin::File => format!("file {}", e.origin_detail),
            pb::ConfigOrigin::Env => format!("env {}", e.origin_detail),
            pb::ConfigOrigin::Flag => "flag".to_owned(),
            pb::ConfigOrigin::Runtime => "runtime".to_owned(),
            _ => "default".to_owned(),
        };
        let value = if e.value.is_empty() {
            "\"\"".to_owned()
        } else {
            e.value.clone()
        };
        let runtime = if e.runtime_updatable { "yes" } else { "-" };
        table.row(vec![e.key.clone(), value, origin, runtime.to_owned()]);
    }
    table.render()
}

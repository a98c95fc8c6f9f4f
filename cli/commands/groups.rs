//! `snapctl groups`, `clients`, `group …` and `client delete`: the persistent topology.
//! With `--json`, lists print a JSON array of objects, each with an `id` field.

use snaprelay::pb;

use super::sessions::or_dash;
use super::time_utc;
use crate::client::Control;
use crate::exit::CliError;
use crate::output::{with_id, Output, Table};

fn groups_json(out: &Output, groups: &[pb::Group]) -> Result<(), CliError> {
    let items = groups
        .iter()
        .map(|g| with_id(&g.group_id, g))
        .collect::<Result<Vec<_>, _>>()?;
    out.json(&items)
}

fn groups_table(groups: &[pb::Group]) -> String {
    let mut table = Table::new(&["GROUP", "NAME", "STREAM", "MUTED", "CLIENTS"]);
    for g in groups {
        let members: Vec<String> = g
            .clients
            .iter()
            .map(|c| {
                let state = if c.connected { "" } else { " (offline)" };
                format!("{}{state}", c.client_id)
            })
            .collect();
        table.row(vec![
            g.group_id.clone(),
            or_dash(&g.name).to_owned(),
            g.stream.clone(),
            if g.muted { "yes" } else { "no" }.to_owned(),
            members.join(", "),
        ]);
    }
    table.render()
}

pub async fn list(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let groups = control
        .list_groups(pb::ListGroupsRequest {})
        .await?
        .into_inner()
        .groups;
    show_groups(out, &groups)
}

fn show_groups(out: &Output, groups: &[pb::Group]) -> Result<(), CliError> {
    if out.json {
        return groups_json(out, groups);
    }
    out.line(&groups_table(groups))
}

pub async fn clients(control: &mut Control, out: &Output) -> Result<(), CliError> {
    let clients = control
        .list_clients(pb::ListClientsRequest {})
        .await?
        .into_inner()
        .clients;
    if out.json {
        let items = clients
            .iter()
            .map(|c| with_id(&c.client_id, c))
            .collect::<Result<Vec<_>, _>>()?;
        return out.json(&items);
    }
    let mut table = Table::new(&[
        "CLIENT",
        "NAME",
        "CONNECTED",
        "VOLUME",
        "LATENCY",
        "GROUP",
        "STREAM",
        "HOST",
        "VERSION",
        "LAST SEEN",
    ]);
    for c in &clients {
        let muted = if c.muted { " muted" } else { "" };
        table.row(vec![
            c.client_id.clone(),
            or_dash(&c.name).to_owned(),
            if c.connected { "yes" } else { "no" }.to_owned(),
            format!("{}%{muted}", c.volume_percent),
            format!("{} ms", c.latency_ms),
            c.group_id.clone(),
            c.stream.clone(),
            or_dash(&c.host_name).to_owned(),
            or_dash(&c.client_version).to_owned(),
            time_utc(c.last_seen_us),
        ]);
    }
    out.line(&table.render())
}

fn show_group(out: &Output, group: &pb::Group) -> Result<(), CliError> {
    if out.json {
        return out.json(&with_id(&group.group_id, group)?);
    }
    out.line(&groups_table(std::slice::from_ref(group)))
}

pub async fn set_stream(
    control: &mut Control,
    out: &Output,
    group_id: String,
    stream: String,
) -> Result<(), CliError> {
    let group = control
        .set_group_stream(pb::SetGroupStreamRequest { group_id, stream })
        .await?
        .into_inner();
    show_group(out, &group)
}

pub async fn set_clients(
    control: &mut Control,
    out: &Output,
    group_id: String,
    client_ids: Vec<String>,
) -> Result<(), CliError> {
    let groups = control
        .set_group_clients(pb::SetGroupClientsRequest {
            group_id,
            client_ids,
        })
        .await?
        .into_inner()
        .groups;
    show_groups(out, &groups)
}

pub async fn set_mute(
    control: &mut Control,
    out: &Output,
    group_id: String,
    muted: bool,
) -> Result<(), CliError> {
    let group = control
        .set_group_mute(pb::SetGroupMuteRequest { group_id, muted })
        .await?
        .into_inner();
    show_group(out, &group)
}

pub async fn set_name(
    control: &mut Control,
    out: &Output,
    group_id: String,
    name: String,
) -> Result<(), CliError> {
    let group = control
        .set_group_name(pb::SetGroupNameRequest { group_id, name })
        .await?
        .into_inner();
    show_group(out, &group)
}

pub async fn delete_client(
    control: &mut Control,
    out: &Output,
    client_id: String,
) -> Result<(), CliError> {
    control
        .delete_client(pb::DeleteClientRequest {
            client_id: client_id.clone(),
        })
        .await?;
    if out.json {
        return out.json(&serde_json::json!({ "id": client_id, "deleted": true }));
    }
    out.line(&format!("client {client_id} deleted"))
}

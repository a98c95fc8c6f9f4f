//! `snapctl volume`, `latency` and `name`: changes to one client (all its sessions).

use snaprelay::pb;

use super::sessions::or_dash;
use crate::client::Control;
use crate::exit::CliError;
use crate::output::Output;

pub async fn volume(
    control: &mut Control,
    out: &Output,
    client_id: String,
    percent: Option<u32>,
    muted: Option<bool>,
) -> Result<(), CliError> {
    let client = control
        .set_client_volume(pb::SetClientVolumeRequest {
            client_id,
            percent,
            muted,
        })
        .await?
        .into_inner();
    show(out, &client)
}

pub async fn latency(
    control: &mut Control,
    out: &Output,
    client_id: String,
    latency_ms: i32,
) -> Result<(), CliError> {
    let client = control
        .set_client_latency(pb::SetClientLatencyRequest {
            client_id,
            latency_ms,
        })
        .await?
        .into_inner();
    show(out, &client)
}

pub async fn name(
    control: &mut Control,
    out: &Output,
    client_id: String,
    name: String,
) -> Result<(), CliError> {
    let client = control
        .set_client_name(pb::SetClientNameRequest { client_id, name })
        .await?
        .into_inner();
    show(out, &client)
}

fn show(out: &Output, c: &pb::Client) -> Result<(), CliError> {
    if out.json {
        return out.json(c);
    }
    let muted = if c.muted { " (muted)" } else { "" };
    out.line(&format!(
        "{}: name {}, volume {}%{muted}, latency {} ms, {} session(s), {} notified",
        c.client_id,
        or_dash(&c.name),
        c.volume_percent,
        c.latency_ms,
        c.session_ids.len(),
        c.sessions_notified
    ))
}

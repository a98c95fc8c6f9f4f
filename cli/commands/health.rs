//! `snapctl health`: grpc.health.v1 Check of the server and of the control service.

use tonic::transport::Channel;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::exit::CliError;
use crate::output::Output;

/// The control service's full name, as health reports it.
const CONTROL_SERVICE: &str = "snaprelay.v1.Control";

pub async fn run(channel: &Channel, out: &Output) -> Result<(), CliError> {
    let mut health = HealthClient::new(channel.clone());
    let mut results = Vec::new();
    for service in ["", CONTROL_SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await?
            .into_inner()
            .status();
        results.push((service, status));
    }
    if out.json {
        let map: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|(service, status)| {
                let name = if service.is_empty() {
                    "server"
                } else {
                    service
                };
                (name.to_owned(), status_text(*status).into())
            })
            .collect();
        out.json(&map)?;
    } else {
        for (service, status) in &results {
            let name = if service.is_empty() {
                "server"
            } else {
                service
            };
            out.line(&format!("{name}: {}", status_text(*status)))?;
        }
    }
    if results.iter().all(|(_, s)| *s == ServingStatus::Serving) {
        Ok(())
    } else {
        Err(CliError::Status(tonic::Status::unavailable(
            "the server is not serving",
        )))
    }
}

fn status_text(status: ServingStatus) -> &'static str {
    match status {
        ServingStatus::Serving => "serving",
        ServingStatus::NotServing => "not serving",
        ServingStatus::ServiceUnknown => "unknown service",
        ServingStatus::Unknown => "unknown",
    }
}

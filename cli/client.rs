//! Connecting to the server: the channel (with TLS for https://) and the token interceptor.

use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Request, Status};

use snaprelay::pb::control_client::ControlClient;

use crate::args::GlobalArgs;
use crate::exit::{chain, CliError};

/// The control client with the bearer token attached to every call.
pub type Control = ControlClient<InterceptedService<Channel, BearerToken>>;

/// Adds `authorization: Bearer <token>` when a token was given.
#[derive(Clone)]
pub struct BearerToken(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for BearerToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.0 {
            request
                .metadata_mut()
                .insert("authorization", value.clone());
        }
        Ok(request)
    }
}

/// Opens a channel to `--server`, failing fast (within `--timeout`) when nothing answers.
pub async fn connect(global: &GlobalArgs) -> Result<Channel, CliError> {
    let usage =
        |why: String| CliError::Usage(format!("invalid --server '{}': {why}", global.server));
    let mut endpoint = Endpoint::from_shared(global.server.clone())
        .map_err(|err| usage(chain(&err)))?
        .connect_timeout(global.timeout)
        .timeout(global.timeout);
    if global.server.starts_with("https://") {
        let mut tls = ClientTlsConfig::new();
        if let Some(path) = &global.ca_cert {
            let pem = std::fs::read(path).map_err(|err| {
                CliError::Usage(format!("cannot read --ca-cert {}: {err}", path.display()))
            })?;
            tls = tls.ca_certificate(Certificate::from_pem(pem));
        }
        endpoint = endpoint.tls_config(tls).map_err(|err| usage(chain(&err)))?;
    } else if !global.server.starts_with("http://") {
        return Err(usage("expected an http:// or https:// URL".to_owned()));
    }
    endpoint.connect().await.map_err(|err| CliError::Connect {
        server: global.server.clone(),
        cause: chain(&err),
    })
}

/// The control client over `channel`.
pub fn control(channel: Channel, global: &GlobalArgs) -> Result<Control, CliError> {
    let token = match &global.token {
        Some(token) => Some(
            format!("Bearer {}", token.trim())
                .parse()
                .map_err(|_| CliError::Usage("--token must be printable ASCII".to_owned()))?,
        ),
        None => None,
    };
    Ok(ControlClient::with_interceptor(channel, BearerToken(token)))
}

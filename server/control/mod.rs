//! The gRPC control plane (issue 4; the API as users see it: README.md, "Control plane (gRPC)
//! and snapctl"): `snaprelay.v1.Control` plus grpc.health.v1 and server reflection, on its own
//! listener.
//!
//! This module is the only part of the server that knows the generated [`pb`](crate::pb)
//! types: it reads the shared state and the live settings and converts at the edge. Health
//! and reflection stay open when a bearer token protects the control service, so probes and
//! generic tools work without the secret.

mod auth;
mod error;
mod events;
mod properties;
mod runtime_config;
mod service;
mod stats;
mod topology;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tracing::{error, info, warn};

pub(crate) use error::ControlError;
pub(crate) use service::ControlService;

use crate::config::{GrpcConfig, Origin};
use crate::pb::control_server::ControlServer;
use crate::relay::Relay;

/// Why the gRPC listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum GrpcError {
    /// The bind address is not an IP address.
    #[error("invalid grpc.bind_to_address '{0}': expected an IP address such as 127.0.0.1 or ::")]
    BadAddress(String),
    /// The address could not be bound.
    #[error("cannot listen for gRPC on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A token, certificate or key file could not be read.
    #[error("cannot read {key} file {}: {source}", .path.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The token file is unreadable or empty.
    #[error(transparent)]
    Token(#[from] crate::config::TokenFileError),
    /// The certificate or key is unusable.
    #[error("invalid grpc.tls_cert/tls_key: {0}")]
    Tls(String),
}

/// A bound gRPC listener plus how it is protected; made by [`bind`], served by `run`.
pub struct GrpcListener {
    listener: TcpListener,
    token: Option<String>,
    tls: Option<ServerTlsConfig>,
}

impl GrpcListener {
    /// The address it listens on.
    pub(crate) fn addr(&self) -> Option<std::net::SocketAddr> {
        self.listener.local_addr().ok()
    }
}

impl std::fmt::Debug for GrpcListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcListener")
            .field("addr", &self.listener.local_addr().ok())
            .field("token", &self.token.is_some())
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, GrpcError> {
    std::fs::read(path).map_err(|source| GrpcError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Binds the gRPC listener the config asks for and loads its token and TLS files, so every
/// problem shows at start-up. `Ok(None)` when `grpc.enabled` is false.
///
/// # Errors
///
/// A bad address, a port in use, an unreadable token/cert/key file, an unusable certificate.
pub async fn bind(config: &GrpcConfig) -> Result<Option<GrpcListener>, GrpcError> {
    if !config.enabled {
        return Ok(None);
    }
    let ip: IpAddr = config
        .bind_to_address
        .trim()
        .parse()
        .map_err(|_| GrpcError::BadAddress(config.bind_to_address.clone()))?;
    // The token file wins: it keeps the secret out of the process's argv and environment.
    let token = config.resolve_token()?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => {
            let identity =
                Identity::from_pem(read("grpc.tls_cert", cert)?, read("grpc.tls_key", key)?);
            let tls = ServerTlsConfig::new().identity(identity);
            // Building a server parses the PEM now, rather than failing on the first client.
            Server::builder()
                .tls_config(tls.clone())
                .map_err(|err| GrpcError::Tls(error_chain(&err)))?;
            Some(tls)
        }
        _ => None,
    };
    let addr = SocketAddr::new(ip, config.port);
    let listener = crate::net::listen(addr).map_err(|source| GrpcError::Bind { addr, source })?;
    if !ip.is_loopback() && token.is_none() {
        warn!(
            %addr,
            "the gRPC control API listens on a non-loopback address without a token: anyone \
             who can reach it can control the relay; set grpc.token_file or grpc.token"
        );
    }
    Ok(Some(GrpcListener {
        listener,
        token,
        tls,
    }))
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// What the control service reads: the relay core plus facts fixed at start-up.
#[derive(Debug)]
pub(crate) struct ControlContext {
    pub(crate) relay: Arc<Relay>,
    /// The latest snapshot in its protobuf form, shared by every `WatchStats` caller.
    pub(crate) watched: stats::SharedConversion,
    pub(crate) stream_addresses: Vec<SocketAddr>,
    pub(crate) grpc_addresses: Vec<SocketAddr>,
    pub(crate) config: runtime_config::ConfigView,
    pub(crate) auth_required: bool,
    pub(crate) tls: bool,
}

/// Serves the control API on `grpc` until the relay shuts down; health turns NOT_SERVING
/// first so probes see the shutdown coming.
pub(crate) async fn serve(
    grpc: GrpcListener,
    relay: Arc<Relay>,
    stream_addresses: Vec<SocketAddr>,
    loaded_config: Vec<(String, String, Origin)>,
) {
    let cancel = relay.cancel.clone();
    let GrpcListener {
        listener,
        token,
        tls,
    } = grpc;
    let addr = listener.local_addr().ok();
    let ctx = Arc::new(ControlContext {
        relay,
        watched: stats::SharedConversion::default(),
        stream_addresses,
        grpc_addresses: addr.into_iter().collect(),
        config: runtime_config::ConfigView::new(loaded_config),
        auth_required: token.is_some(),
        tls: tls.is_some(),
    });
    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<ControlServer<ControlService>>().await;
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let (reflection_v1, reflection_v1alpha) =
        match (reflection().build_v1(), reflection().build_v1alpha()) {
            (Ok(v1), Ok(v1alpha)) => (v1, v1alpha),
            (Err(err), _) | (_, Err(err)) => {
                // Only a broken embedded descriptor set gets here: a build bug.
                error!(error = %err, "cannot build gRPC reflection; control API not served");
                return;
            }
        };
    let control = ControlServer::with_interceptor(
        ControlService::new(ctx.clone()),
        auth::TokenCheck::new(token),
    );
    let mut builder = Server::builder();
    if let Some(tls) = tls {
        builder = match builder.tls_config(tls) {
            Ok(builder) => builder,
            Err(err) => {
                error!(error = %error_chain(&err), "invalid TLS settings; control API not served");
                return;
            }
        };
    }
    let router = builder
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(control);
    if let Some(addr) = addr {
        info!(%addr, tls = ctx.tls, token = ctx.auth_required, "listening for gRPC");
    }
    let shutdown = async {
        cancel.cancelled().await;
        health
            .set_not_serving::<ControlServer<ControlService>>()
            .await;
        // The whole server ("") too: a Kubernetes gRPC probe asks for service "" unless told
        // otherwise, and readiness must fail before the listeners close (issue 8).
        health
            .set_service_status("", tonic_health::ServingStatus::NotServing)
            .await;
    };
    if let Err(err) = router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
    {
        error!(error = %error_chain(&err), "gRPC server failed");
    }
}

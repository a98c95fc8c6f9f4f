//! The HTTP listener (snapserver's port 1780, `[http]` keys): Prometheus `/metrics`, the
//! Snapcast JSON-RPC over HTTP POST and WebSocket at `/jsonrpc`, the stream protocol over
//! WebSocket at `/stream` (browser players), stream plugins' cover art at `/__image_cache`,
//! and static files from `http.doc_root` (Snapweb) for everything else; the same routes over
//! TLS on `http.ssl_port` when `http.ssl_enabled` (`tls.rs`).
//!
//! `router` is the one place routes are added. `/metrics` renders the relay core's one
//! `relay::Snapshot`; the JSON-RPC routes hand over to `jsonrpc::web`.

mod exposition;
mod files;
mod metrics;
mod stream_ws;
mod tls;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::config::Config;
use crate::relay::Relay;

/// The content type of the Prometheus text exposition format, version 0.0.4.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Why the HTTP listener could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// A bind address is not an IP address.
    #[error("invalid http.bind_to_address '{0}': expected an IP address such as 0.0.0.0 or ::")]
    BadAddress(String),
    /// An address could not be bound.
    #[error("cannot listen for HTTP on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The HTTPS certificate or key is unusable.
    #[error("HTTPS: {}: {reason}", .path.display())]
    Tls {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}

/// The bound HTTP listeners and what to serve on them; made by [`bind`], served by `run`.
pub struct HttpListener {
    listeners: Vec<TcpListener>,
    /// The HTTPS listeners and their certificate, when `http.ssl_enabled`.
    tls: Option<(Vec<TcpListener>, tokio_rustls::TlsAcceptor)>,
    metrics: bool,
    doc_root: files::DocRoot,
}

impl HttpListener {
    /// The port it listens on (as bound: `http.port = 0` picks one).
    pub(crate) fn port(&self) -> Option<u16> {
        self.listeners
            .first()
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }

    /// The HTTPS port, when HTTPS is on.
    pub(crate) fn tls_port(&self) -> Option<u16> {
        self.tls
            .as_ref()
            .and_then(|(listeners, _)| listeners.first())
            .and_then(|l| l.local_addr().ok())
            .map(|a| a.port())
    }
}

impl std::fmt::Debug for HttpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpListener")
            .field("listeners", &self.listeners)
            .field("tls", &self.tls.as_ref().map(|(l, _)| l))
            .field("metrics", &self.metrics)
            .field("doc_root", &self.doc_root)
            .finish()
    }
}

/// Binds every `http.bind_to_address` on `http.port` (and with `http.ssl_enabled` every
/// `http.ssl_bind_to_address` on `http.ssl_port`, with `[ssl]`'s certificate read now), so a
/// port in use or a bad certificate fails start-up rather than the first request.
/// `Ok(None)` when `http.enabled` is false.
///
/// # Errors
///
/// A bind address that is not an IP address, one that cannot be bound, or an unusable
/// certificate or key (named).
pub async fn bind(config: &Config) -> Result<Option<HttpListener>, HttpError> {
    let ssl = &config.ssl;
    let config = &config.http;
    if !config.enabled {
        return Ok(None);
    }
    let listeners = bind_all(&config.bind_to_address, config.port)?;
    let tls = if config.ssl_enabled {
        // The CAs that sign client certificates, when they are checked at all.
        let client_cas: Vec<&std::path::Path> = if ssl.verify_clients {
            ssl.client_cert
                .iter()
                .map(|path| std::path::Path::new(path.trim()))
                .filter(|path| !path.as_os_str().is_empty())
                .collect()
        } else {
            Vec::new()
        };
        let acceptor = tls::acceptor(
            std::path::Path::new(ssl.certificate.trim()),
            std::path::Path::new(ssl.certificate_key.trim()),
            &client_cas,
        )?;
        Some((
            bind_all(&config.ssl_bind_to_address, config.ssl_port)?,
            acceptor,
        ))
    } else {
        None
    };
    let (doc_root, warning) = files::DocRoot::new(&config.doc_root);
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
    Ok(Some(HttpListener {
        listeners,
        tls,
        metrics: config.metrics,
        doc_root,
    }))
}

/// A listener on `port` at each of `addresses`.
fn bind_all(addresses: &[String], port: u16) -> Result<Vec<TcpListener>, HttpError> {
    addresses
        .iter()
        .map(|text| {
            let ip: IpAddr = text
                .trim()
                .parse()
                .map_err(|_| HttpError::BadAddress(text.clone()))?;
            let addr = SocketAddr::new(ip, port);
            crate::net::listen(addr).map_err(|source| HttpError::Bind { addr, source })
        })
        .collect()
}

/// What every HTTP handler can read.
#[derive(Debug, Clone)]
pub(crate) struct HttpState {
    pub(crate) relay: Arc<Relay>,
    /// False when `http.metrics` is false: `/metrics` is then not routed at all (404).
    pub(crate) metrics: bool,
    /// Where static files come from.
    pub(crate) doc_root: files::DocRoot,
}

/// Every route of the HTTP listener: `/metrics`, `/__image_cache`, websocket `/stream` to
/// `bridge`, with `rpc` the Snapcast JSON-RPC's `POST /jsonrpc` and websocket `/jsonrpc`
/// (issue 7), and the doc root's files for any other GET.
pub(crate) fn router(
    state: HttpState,
    rpc: Option<Arc<crate::jsonrpc::Rpc>>,
    bridge: stream_ws::StreamBridge,
) -> Router {
    let mut router = Router::new()
        .route("/__image_cache", get(serve_image))
        .fallback(files::serve);
    if state.metrics {
        router = router.route("/metrics", get(serve_metrics));
    }
    let mut app = router.with_state(state).merge(
        Router::new()
            .route("/stream", get(stream_ws::upgrade))
            .with_state(bridge),
    );
    if let Some(rpc) = rpc {
        use crate::jsonrpc::web;
        app = app.merge(
            Router::new()
                .route(
                    "/jsonrpc",
                    axum::routing::post(web::post).get(web::websocket),
                )
                .with_state(rpc),
        );
    }
    app
}

/// `GET /metrics`: the Prometheus text exposition of [`metrics::render`].
async fn serve_metrics(State(state): State<HttpState>) -> impl IntoResponse {
    let body = metrics::render(&state.relay.snapshot());
    ([(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)], body)
}

/// `GET /__image_cache?name=<md5>.<ext>`: cover art a stream plugin sent inline, under the
/// name the cache gave it (the stream's `artUrl`); any other name is 404.
async fn serve_image(State(state): State<HttpState>, uri: axum::http::Uri) -> Response {
    let name = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("name="));
    match name.and_then(|name| state.relay.images.get(name)) {
        Some(image) => (
            [
                (header::CONTENT_TYPE, image.content_type),
                (header::CACHE_CONTROL, "max-age=86400"),
            ],
            image.data,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no such image\n").into_response(),
    }
}

/// Serves `http` until the relay shuts down: then every listener stops accepting at once and
/// open requests are let finish (the relay's shutdown grace bounds how long).
/// Browser players on `/stream` join the stream listener at the first of `stream_addresses`.
pub(crate) async fn serve(
    http: HttpListener,
    relay: Arc<Relay>,
    rpc: Option<Arc<crate::jsonrpc::Rpc>>,
    stream_addresses: &[SocketAddr],
) {
    let cancel = relay.cancel.clone();
    let state = HttpState {
        relay,
        metrics: http.metrics,
        doc_root: http.doc_root,
    };
    let jsonrpc = rpc.is_some();
    let app = router(state, rpc, stream_ws::StreamBridge::new(stream_addresses));
    let mut servers = JoinSet::new();
    if let Some((listeners, acceptor)) = http.tls {
        for listener in listeners {
            if let Ok(addr) = listener.local_addr() {
                info!(%addr, "listening for HTTPS");
            }
            servers.spawn(tls::serve(
                listener,
                acceptor.clone(),
                app.clone(),
                cancel.clone(),
            ));
        }
    }
    for listener in http.listeners {
        if let Ok(addr) = listener.local_addr() {
            info!(%addr, metrics = http.metrics, jsonrpc, "listening for HTTP");
        }
        let server = axum::serve(listener, app.clone())
            .with_graceful_shutdown(cancel.clone().cancelled_owned());
        servers.spawn(async move {
            if let Err(err) = server.await {
                error!(error = %err, "HTTP server failed");
            }
        });
    }
    while servers.join_next().await.is_some() {}
}

//! HTTPS on the TLS port (`http.ssl_enabled`, snapserver's 1788): the same routes as plain
//! HTTP (JSON-RPC, `wss://` JSON-RPC and `/stream`, Snapweb, `/metrics`) behind rustls.
//!
//! The certificate and key are read at start-up, so a missing or malformed file stops the
//! start with an error naming it. A client that does not finish its handshake in time, or
//! speaks plain HTTP to this port, only loses its own connection.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::HttpError;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The acceptor for `certificate` and its `key` (PEM files); with `client_cas` (PEM files of
/// CA certificates) clients must present a certificate one of them signed (mutual TLS,
/// `ssl.verify_clients`), else the handshake fails.
///
/// # Errors
///
/// A file that cannot be read or holds no usable certificate or key, named; a key that
/// does not belong to the certificate.
pub(crate) fn acceptor(
    certificate: &Path,
    key: &Path,
    client_cas: &[&Path],
) -> Result<TlsAcceptor, HttpError> {
    let bad = |path: &Path, reason: String| HttpError::Tls {
        path: path.to_owned(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(certificate)
        .map_err(|err| bad(certificate, err.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|err| bad(certificate, err.to_string()))?;
    if chain.is_empty() {
        return Err(bad(certificate, "no PEM certificate in it".to_owned()));
    }
    let private_key = PrivateKeyDer::from_pem_file(key).map_err(|err| {
        bad(
            key,
            format!("{err} (expected an unencrypted PKCS#8, PKCS#1 or SEC1 PEM key)"),
        )
    })?;
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|err| bad(certificate, err.to_string()))?;
    let builder = match client_cas {
        [] => builder.with_no_client_auth(),
        [first, ..] => {
            let mut roots = RootCertStore::empty();
            for path in client_cas {
                for ca in
                    CertificateDer::pem_file_iter(path).map_err(|err| bad(path, err.to_string()))?
                {
                    let ca = ca.map_err(|err| bad(path, err.to_string()))?;
                    roots
                        .add(ca)
                        .map_err(|err| bad(path, format!("not a usable CA certificate: {err}")))?;
                }
            }
            if roots.is_empty() {
                return Err(bad(first, "no PEM certificate in it".to_owned()));
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|err| bad(first, err.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(chain, private_key)
        .map_err(|err| bad(key, format!("does not fit the certificate: {err}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Serves `app` over TLS on `listener` until `cancel` fires; open connections end then too.
pub(crate) async fn serve(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "HTTPS accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (acceptor, app, cancel) = (acceptor.clone(), app.clone(), cancel.clone());
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(err)) => {
                    debug!(%peer, error = %err, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    debug!(%peer, "TLS handshake timed out");
                    return;
                }
            };
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(app))
                .with_upgrades();
            tokio::select! {
                result = connection => {
                    if let Err(err) = result {
                        debug!(%peer, error = %err, "HTTPS connection ended");
                    }
                }
                () = cancel.cancelled() => {}
            }
        });
    }
}

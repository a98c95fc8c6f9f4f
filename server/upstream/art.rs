//! Cover art of an upstream stream, fetched from the upstream's HTTP server (a snaprelay's or
//! snapserver's `/__image_cache`) so that the edge serves it itself: the edge's clients, on
//! another network or site, need not reach the upstream. Plain `http://` only; one GET with
//! a deadline and the image cache's size cap.
//!
//! The request goes to the upstream host the edge is connected to, on the URL's port and
//! path, whatever host name the URL gives: the upstream names itself as its own clients
//! reach it (`http.host`), which the edge may not resolve, and an upstream cannot send the
//! edge to fetch from any other machine.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::image_cache::{extension_for, MAX_IMAGE_BYTES};

/// How long one fetch may take, connection included.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// The image at `url`, asked of `upstream_host`, and the extension to serve it under.
pub(super) async fn fetch(upstream_host: &str, url: &str) -> Result<(Vec<u8>, String), String> {
    tokio::time::timeout(FETCH_TIMEOUT, get(upstream_host, url))
        .await
        .map_err(|_| format!("no image within {FETCH_TIMEOUT:?}"))?
}

async fn get(upstream_host: &str, url: &str) -> Result<(Vec<u8>, String), String> {
    let target = Target::parse(url).ok_or("not an http:// URL this relay fetches")?;
    let socket = TcpStream::connect((upstream_host, target.port))
        .await
        .map_err(|err| format!("cannot connect: {err}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(socket))
        .await
        .map_err(|err| err.to_string())?;
    let request = hyper::Request::get(target.path.as_str())
        .header(hyper::header::HOST, target.authority.as_str())
        .body(Empty::<Bytes>::new())
        .map_err(|err| err.to_string())?;
    let exchange = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|err| err.to_string())?;
        if !response.status().is_success() {
            return Err(format!("HTTP {}", response.status()));
        }
        let content_type = response
            .headers()
            .get(hyper::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(extension_for);
        let body = Limited::new(response.into_body(), MAX_IMAGE_BYTES)
            .collect()
            .await
            .map_err(|err| format!("the image: {err}"))?
            .to_bytes();
        let extension = content_type
            .or_else(|| extension_in(&target.path))
            .ok_or("neither its content type nor its name says an image type served here")?;
        Ok((body.to_vec(), extension.to_owned()))
    };
    // The connection must be driven while the exchange runs. It may end (the server closed)
    // before the exchange has read the last of the body, so the exchange decides; a
    // connection that failed shows as the exchange's error.
    tokio::pin!(exchange);
    tokio::select! {
        result = &mut exchange => return result,
        _ = connection => {}
    }
    exchange.await
}

/// The extension at the end of a URL's path or `name=` (`...?name=<md5>.png`), if this relay
/// serves it.
fn extension_in(path: &str) -> Option<&'static str> {
    let (_, extension) = path.rsplit_once('.')?;
    let extension = extension.split(['&', '#']).next()?;
    let content_type = crate::image_cache::content_type_of(extension)?;
    extension_for(content_type)
}

/// Where an `http://` URL points.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    /// `host[:port]` as written, for the Host header.
    authority: String,
    /// Path and query, at least `/`.
    path: String,
}

impl Target {
    fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let (authority, path) = match rest.find(['/', '?']) {
            Some(at) if rest[at..].starts_with('/') => (&rest[..at], &rest[at..]),
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, "/"),
        };
        if authority.is_empty() || authority.contains('@') {
            return None; // no credentials are sent anywhere
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(bracketed) => {
                let (host, after) = bracketed.split_once(']')?;
                match after {
                    "" => (host, 80),
                    port => (host, port.strip_prefix(':')?.parse().ok()?),
                }
            }
            None => match authority.rsplit_once(':') {
                Some((host, port)) => (host, port.parse().ok()?),
                None => (authority, 80),
            },
        };
        if host.is_empty() {
            return None;
        }
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_owned()
        };
        Some(Self {
            host: host.to_owned(),
            port,
            authority: authority.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, authority: &str, path: &str) -> Option<Target> {
        Some(Target {
            host: host.into(),
            port,
            authority: authority.into(),
            path: path.into(),
        })
    }

    #[test]
    fn urls_are_read_as_a_client_would() {
        assert_eq!(
            Target::parse("http://core.local:1780/__image_cache?name=ab.png"),
            target(
                "core.local",
                1780,
                "core.local:1780",
                "/__image_cache?name=ab.png"
            )
        );
        assert_eq!(
            Target::parse("http://core"),
            target("core", 80, "core", "/")
        );
        assert_eq!(
            Target::parse("http://[fd00::1]:8080/a.jpg"),
            target("fd00::1", 8080, "[fd00::1]:8080", "/a.jpg")
        );
        assert_eq!(
            Target::parse("http://h?name=x.png"),
            target("h", 80, "h", "/?name=x.png")
        );
        for refused in [
            "https://core/a.png",
            "http://",
            "http://:80/a",
            "http://user:pw@core/a.png",
            "http://core:99999/a.png",
            "http://[::1/a.png",
            "file:///etc/passwd",
        ] {
            assert_eq!(Target::parse(refused), None, "{refused}");
        }
    }

    #[test]
    fn the_type_comes_from_the_content_type_or_the_name() {
        assert_eq!(extension_for("image/png"), Some("png"));
        assert_eq!(extension_for("image/jpeg; charset=binary"), Some("jpg"));
        assert_eq!(extension_for("text/html"), None);
        assert_eq!(extension_in("/__image_cache?name=0a1b.png"), Some("png"));
        assert_eq!(extension_in("/cover.JPEG"), Some("jpg"));
        assert_eq!(extension_in("/cover.exe"), None);
        assert_eq!(extension_in("/cover"), None);
    }
}

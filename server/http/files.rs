//! Static files from `http.doc_root` (Snapweb), as snapserver serves them: `index.html` for a
//! directory, a content type by extension, and nothing outside the root (`..`, and symlinks
//! that lead out, are refused). Without a doc root, `/` is a small page of our own: what runs,
//! its streams, and where to go next.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{Html, IntoResponse, Response};
use tracing::debug;

use super::HttpState;

/// snapserver's packaged Snapweb location, used when `http.doc_root` is empty and it exists.
pub(crate) const DEFAULT_DOC_ROOT: &str = "/usr/share/snapserver/snapweb";

/// Files larger than this are not served (a doc root holds a web UI, not media).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// Where static files come from.
#[derive(Debug, Clone)]
pub(crate) enum DocRoot {
    /// This directory (canonical).
    Dir(Arc<PathBuf>),
    /// None: `/` is our own status page.
    Builtin,
}

impl DocRoot {
    /// `configured` (`http.doc_root`), or snapserver's Snapweb path when that is empty and
    /// exists. A configured directory that is not there serves our own page, with a warning
    /// naming it (snapserver starts too, and 404s): Debian's `snapserver.conf` names
    /// Snapweb's path even where it is not installed.
    pub(crate) fn new(configured: &str) -> (Self, Option<String>) {
        if configured.trim().is_empty() {
            let root = match Path::new(DEFAULT_DOC_ROOT).canonicalize() {
                Ok(dir) if dir.is_dir() => Self::Dir(Arc::new(dir)),
                _ => Self::Builtin,
            };
            return (root, None);
        }
        match Path::new(configured).canonicalize() {
            Ok(dir) if dir.is_dir() => (Self::Dir(Arc::new(dir)), None),
            Ok(_) => (
                Self::Builtin,
                Some(format!(
                    "http.doc_root '{configured}' is not a directory; serving the status page"
                )),
            ),
            Err(err) => (
                Self::Builtin,
                Some(format!(
                    "http.doc_root '{configured}': {err}; serving the status page"
                )),
            ),
        }
    }
}

/// The file `path` (a URL path, still percent-encoded) names under `root`, if it is one
/// that may be served: no `..`, no hidden trick, and after resolving symlinks still inside.
fn resolve(root: &Path, path: &str) -> Option<PathBuf> {
    let decoded = percent_decode(path)?;
    let mut candidate = root.to_path_buf();
    for component in Path::new(decoded.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => candidate.push(part),
            Component::CurDir => {}
            // `..`, a second root or a prefix: never.
            _ => return None,
        }
    }
    let mut resolved = candidate.canonicalize().ok()?;
    if !resolved.starts_with(root) {
        return None; // a symlink that leads out
    }
    if resolved.is_dir() {
        resolved = resolved.join("index.html").canonicalize().ok()?;
        if !resolved.starts_with(root) {
            return None;
        }
    }
    resolved.is_file().then_some(resolved)
}

/// `%XX` decoding of a URL path; `None` for a bad escape, a NUL or invalid UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    if out.contains(&0) {
        return None;
    }
    String::from_utf8(out).ok()
}

/// The content type for a file name's extension.
fn content_type(path: &Path) -> &'static str {
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match extension.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "ico" => "image/vnd.microsoft.icon",
        "webp" => "image/webp",
        "woff" => "font/woff",
        "woff2" => "font/woff2",
        "ttf" => "font/ttf",
        "wasm" => "application/wasm",
        "txt" | "md" => "text/plain; charset=utf-8",
        "xml" => "application/xml",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

/// Every request no other route took: for GET (and HEAD) a file of the doc root, or our own
/// page at `/`; anything else is 404, as for a path nobody serves.
pub(crate) async fn serve(
    State(state): State<HttpState>,
    method: Method,
    uri: Uri,
    request_headers: HeaderMap,
) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return not_found();
    }
    let root = match &state.doc_root {
        DocRoot::Dir(root) => root.clone(),
        DocRoot::Builtin if uri.path() == "/" || uri.path() == "/index.html" => {
            return builtin_page(&state).into_response();
        }
        DocRoot::Builtin => return not_found(),
    };
    let path = uri.path().to_owned();
    let Some(file) = tokio::task::spawn_blocking(move || resolve(&root, &path))
        .await
        .ok()
        .flatten()
    else {
        debug!(path = uri.path(), "no such file under the doc root");
        return not_found();
    };
    let metadata = match tokio::fs::metadata(&file).await {
        Ok(metadata) if metadata.len() <= MAX_FILE_BYTES => metadata,
        _ => return not_found(),
    };
    let modified = metadata.modified().ok().map(httpdate);
    if let (Some(modified), Some(since)) =
        (&modified, request_headers.get(header::IF_MODIFIED_SINCE))
    {
        if since.as_bytes() == modified.as_bytes() {
            return StatusCode::NOT_MODIFIED.into_response();
        }
    }
    let Ok(body) = tokio::fs::read(&file).await else {
        return not_found();
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&file)),
    );
    // Pages are checked again each time (a new Snapweb build shows at once); Vite's assets
    // carry a content hash in their names, so they may be kept.
    let cache = if file.extension().is_some_and(|e| e == "html") {
        "no-cache"
    } else {
        "max-age=3600"
    };
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    if let Some(value) = modified.and_then(|m| HeaderValue::from_str(&m).ok()) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    response
}

fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// Our own `/` when no doc root is set: what runs, its streams, where to go next.
fn builtin_page(state: &HttpState) -> Html<String> {
    let snapshot = state.relay.snapshot();
    let mut rows = String::new();
    for stream in &snapshot.streams {
        rows.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            escape(&stream.name),
            if stream.playing { "playing" } else { "idle" },
            escape(&stream.codec),
            escape(&stream.sample_format),
            stream.clients,
        ));
    }
    let metrics = if state.metrics {
        "<li><a href=\"/metrics\">/metrics</a>: Prometheus metrics</li>"
    } else {
        ""
    };
    Html(format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>snaprelay</title></head>\n\
         <body>\n<h1>snaprelay {version}</h1>\n<p>A Snapcast-compatible audio relay, up {uptime} s, \
         {clients} stream clients.</p>\n\
         <table>\n<tr><th>stream</th><th>state</th><th>codec</th><th>format</th><th>clients</th></tr>\n\
         {rows}</table>\n<ul>\n{metrics}\n\
         <li><code>/jsonrpc</code>: Snapcast JSON-RPC (HTTP POST and WebSocket)</li>\n\
         <li><code>/stream</code>: the stream protocol over WebSocket (browser players)</li>\n</ul>\n\
         <p>To serve a web UI here (Snapweb), set <code>http.doc_root</code> to its directory.</p>\n\
         </body></html>\n",
        version = env!("CARGO_PKG_VERSION"),
        uptime = snapshot.uptime.as_secs(),
        clients = snapshot.sessions.len(),
    ))
}

/// Text made safe to place in HTML.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// An HTTP date (RFC 9110 IMF-fixdate), e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
fn httpdate(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = secs / 86_400;
    let (hour, minute, second) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    const WEEKDAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (year, month, day) = crate::calendar::civil_from_days(days as i64);
    format!(
        "{}, {day:02} {} {year} {hour:02}:{minute:02}:{second:02} GMT",
        WEEKDAYS[(days % 7) as usize],
        MONTHS[(month - 1) as usize],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_resolve_inside_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("index.html"), "<p>hi</p>").unwrap();
        std::fs::create_dir(root.join("assets")).unwrap();
        std::fs::write(root.join("assets/app 1.js"), "x").unwrap();
        std::fs::create_dir(root.join("empty")).unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), root.join("leak")).unwrap();
        std::os::unix::fs::symlink(root.join("index.html"), root.join("alias.html")).unwrap();

        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/index.html"), Some(root.join("index.html")));
        assert_eq!(
            resolve(&root, "/assets/app%201.js"),
            Some(root.join("assets/app 1.js"))
        );
        assert_eq!(resolve(&root, "/alias.html"), Some(root.join("index.html")));
        for refused in [
            "/../etc/passwd",
            "/assets/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/leak",
            "/empty",
            "/nothing",
            "/a%00b",
            "/%zz",
        ] {
            assert_eq!(resolve(&root, refused), None, "{refused}");
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(
            content_type(Path::new("a.HTML")),
            "text/html; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("x/app.js")),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(
            content_type(Path::new("manifest.webmanifest")),
            "application/manifest+json"
        );
        assert_eq!(content_type(Path::new("logo.svg")), "image/svg+xml");
        assert_eq!(content_type(Path::new("blob")), "application/octet-stream");
    }

    #[test]
    fn http_dates_are_imf_fixdates() {
        let time = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(784_111_777);
        assert_eq!(httpdate(time), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(
            httpdate(SystemTime::UNIX_EPOCH),
            "Thu, 01 Jan 1970 00:00:00 GMT"
        );
    }

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }

    #[test]
    fn a_configured_doc_root_that_is_no_directory_is_named_and_replaced_by_the_page() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            DocRoot::new(dir.path().to_str().unwrap()),
            (DocRoot::Dir(_), None)
        ));
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        let (root, warning) = DocRoot::new(file.to_str().unwrap());
        assert!(matches!(root, DocRoot::Builtin));
        assert!(warning.unwrap().contains("is not a directory"));
        let (root, warning) = DocRoot::new("/nonexistent/snapweb");
        assert!(matches!(root, DocRoot::Builtin));
        assert!(warning.unwrap().contains("/nonexistent/snapweb"));
    }
}

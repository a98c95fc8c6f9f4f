//! Adding and removing streams at run time, for every control API (`Stream.AddStream`,
//! `Stream.RemoveStream`, gRPC `AddStream`, `RemoveStream`): one set of rules, so a URI
//! refused over JSON-RPC is refused over gRPC with the same reason.

use std::path::{Path, PathBuf};

use tracing::info;

use super::Relay;
use crate::source::{SourceError, SourceSpec};
use crate::state::{Event, StateError};
use crate::stream::{Removal, Stream, StreamError};

/// Why a stream could not be added at run time.
#[derive(Debug, thiserror::Error)]
pub(crate) enum AddStreamError {
    /// The URI does not parse.
    #[error("Parameter 'streamUri' invalid: {0}")]
    Uri(#[from] SourceError),
    /// Its scheme is not in `jsonrpc.add_stream_schemes`.
    #[error("Parameter 'streamUri' invalid: scheme '{scheme}' is not allowed; allowed: {allowed}")]
    Scheme {
        /// The scheme asked for.
        scheme: String,
        /// The allowed ones, comma-separated.
        allowed: String,
    },
    /// Its `controlscript` is not a file inside `stream.plugin_dir` (no process execution
    /// from the network).
    #[error("controlscript must be located in '{}'", .0.display())]
    ControlScriptOutside(PathBuf),
    /// A stream with this name runs already.
    #[error("a stream named '{0}' exists")]
    Exists(String),
    /// Its source or encoder did not start.
    #[error(transparent)]
    Start(#[from] StreamError),
}

/// Why a stream could not be removed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RemoveStreamError {
    /// No stream has this name.
    #[error("Stream not found")]
    NotFound,
    /// It is the only stream.
    #[error("Stream not removed: the relay needs at least one stream")]
    Last,
    /// Moving its groups failed.
    #[error(transparent)]
    State(#[from] StateError),
}

impl Relay {
    /// Starts a stream from a source URI a control API was given, and adds it to the list. A
    /// tcp source binds its port now, so a taken port is an error the caller sees (Music
    /// Assistant retries another port). Its scheme must be in `jsonrpc.add_stream_schemes`
    /// and its stream plugin inside `stream.plugin_dir`: a caller on the network must not
    /// pick a program to run.
    ///
    /// # Errors
    ///
    /// The URI, scheme or plugin is refused, the name is taken, or the stream did not start.
    pub(crate) fn add_stream(&self, uri: &str) -> Result<Stream, AddStreamError> {
        let mut spec = SourceSpec::parse(uri, &self.source_defaults)?;
        let scheme = &spec.uri.scheme;
        if !self.add_stream_schemes.contains(scheme) {
            return Err(AddStreamError::Scheme {
                scheme: scheme.clone(),
                allowed: self.add_stream_schemes.join(", "),
            });
        }
        let name = spec.name.clone();
        if self.stream(&name).is_some() {
            return Err(AddStreamError::Exists(name));
        }
        if let Some(script) = spec.control_script.as_mut() {
            script.path = inside(&script.path, &self.plugin_dir)
                .ok_or_else(|| AddStreamError::ControlScriptOutside(self.plugin_dir.clone()))?;
        }
        let shown = spec.uri.redacted().to_uri_string();
        let cancel = self.cancel.child_token();
        let earlier: Vec<Stream> = self.streams.iter().collect();
        let live = self.settings.clone();
        let stream = Stream::start(
            spec,
            std::sync::Arc::new(move || live.buffer_ms()),
            self.pool.clone(),
            &self.plugins,
            &earlier,
            cancel.clone(),
            &self.tracker,
        )?;
        if let Err((_, cancel)) = self.streams.insert(stream.clone(), cancel) {
            // Lost a race with another addition of the same name.
            cancel.cancel();
            return Err(AddStreamError::Exists(name));
        }
        self.announce_changes(&stream);
        self.state.announce(Event::StreamAdded(name.clone()), None);
        info!(stream = %name, uri = %shown, "stream added");
        Ok(stream)
    }

    /// Stops a stream and takes it off the list; its groups move to the first stream (their
    /// clients switch at once). `origin` is the JSON-RPC connection that asked, if any.
    ///
    /// # Returns
    ///
    /// The clients whose group moved.
    ///
    /// # Errors
    ///
    /// No such stream, or it is the last one.
    pub(crate) fn remove_stream(
        &self,
        id: &str,
        origin: Option<u64>,
    ) -> Result<Vec<String>, RemoveStreamError> {
        self.streams.remove(id).map_err(|removal| match removal {
            Removal::NotFound => RemoveStreamError::NotFound,
            Removal::Last => RemoveStreamError::Last,
        })?;
        self.state
            .announce(Event::StreamRemoved(id.to_owned()), origin);
        let names = self.streams.names();
        let Some(default) = names.first().cloned() else {
            return Ok(Vec::new());
        };
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let moved = self
            .change(
                origin,
                |m| {
                    let orphans: Vec<String> = m
                        .groups
                        .iter()
                        .filter(|g| g.stream_id == id)
                        .map(|g| g.id.clone())
                        .collect();
                    let mut clients = Vec::new();
                    for group in orphans {
                        clients.extend(m.set_group_stream(&group, &default, &refs)?);
                    }
                    Ok(clients)
                },
                // Others learn of the moved groups through the whole server (adding or
                // removing a stream has no JSON-RPC notification of its own).
                |clients| (!clients.is_empty()).then_some(Event::Topology),
                Clone::clone,
            )?
            .0;
        info!(stream = id, clients_moved = moved.len(), "stream removed");
        Ok(moved)
    }
}

/// `path` when it names an existing file inside `dir` (after resolving links and `..`).
fn inside(path: &Path, dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    let path = path.canonicalize().ok()?;
    (path.starts_with(&dir) && path.is_file()).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_files_inside_the_plugin_dir_pass() {
        let dir = tempfile::tempdir().unwrap();
        let plugins = dir.path().join("plug-ins");
        std::fs::create_dir(&plugins).unwrap();
        std::fs::write(plugins.join("ok.py"), "").unwrap();
        std::fs::write(dir.path().join("outside.py"), "").unwrap();
        assert!(inside(&plugins.join("ok.py"), &plugins).is_some());
        assert!(inside(&plugins.join("../outside.py"), &plugins).is_none());
        assert!(inside(&dir.path().join("outside.py"), &plugins).is_none());
        assert!(inside(&plugins.join("missing.py"), &plugins).is_none());
        assert!(
            inside(&plugins, &plugins).is_none(),
            "a directory is no script"
        );
        std::os::unix::fs::symlink(dir.path().join("outside.py"), plugins.join("link.py")).unwrap();
        assert!(
            inside(&plugins.join("link.py"), &plugins).is_none(),
            "links are followed"
        );
    }
}

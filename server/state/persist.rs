//! The state file, `server.json` in the data dir, in snapserver's format (docs/PROTOCOL.md
//! §4.4).
//!
//! Writes are atomic: a temp file in the same directory is written and fsynced, renamed over
//! the old file, and the directory fsynced, so a crash at any moment leaves either the old or
//! the new file, both complete. A file that does not parse is moved aside with a loud warning
//! and the server starts clean: never a crash, never silent loss. A data dir that cannot be
//! written is reported and the server runs without persistence.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{error, info, warn};

use super::records::Model;

/// The state file's name, as snapserver names it.
pub(crate) const STATE_FILE: &str = "server.json";

/// snapserver's data dir when none is configured: `$HOME/.config/snapserver/`, else
/// `/var/lib/snapserver/` (docs/PROTOCOL.md §4.4).
pub(crate) fn default_datadir() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => Path::new(&home).join(".config").join("snapserver"),
        None => PathBuf::from("/var/lib/snapserver"),
    }
}

#[derive(Serialize, Deserialize)]
struct FileFormat {
    #[serde(rename = "ConfigVersion", default)]
    config_version: u32,
    #[serde(flatten)]
    model: Model,
}

/// Where the state lives; `None` path means persistence is off.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    path: Option<PathBuf>,
}

impl Store {
    /// Opens the data dir: creates it, checks it is writable, and loads the state file.
    /// Problems are logged and degrade to "no persistence" or "start clean", never an error.
    pub(crate) fn open(dir: &Path) -> (Self, Model) {
        if let Err(err) = std::fs::create_dir_all(dir) {
            error!(dir = %dir.display(), error = %err, "cannot create the data dir; running without persistence");
            return (Self { path: None }, Model::default());
        }
        let path = dir.join(STATE_FILE);
        let model = load(&path);
        if let Err(err) = probe_writable(dir) {
            error!(dir = %dir.display(), error = %err, "the data dir is not writable; running without persistence (changes will be lost at restart)");
            return (Self { path: None }, model);
        }
        info!(path = %path.display(), clients = model.groups.iter().map(|g| g.clients.len()).sum::<usize>(), "state loaded");
        (Self { path: Some(path) }, model)
    }

    /// The state file, when persistence is on.
    pub(crate) fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Writes `model` atomically. A no-op without persistence.
    pub(crate) fn save(&self, model: &Model) -> io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let text = serde_json::to_vec(&FileFormat {
            config_version: 2,
            model: model.clone(),
        })
        .map_err(io::Error::other)?;
        write_atomically(path, &text)
    }
}

fn load(path: &Path) -> Model {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Model::default(),
        Err(err) => {
            error!(path = %path.display(), error = %err, "cannot read the state file; starting with an empty state");
            return Model::default();
        }
    };
    match serde_json::from_slice::<FileFormat>(&bytes) {
        Ok(file) => {
            let mut model = file.model;
            model.mark_all_disconnected();
            model.groups.retain(|g| !g.clients.is_empty());
            model
        }
        Err(err) => {
            let aside = path.with_extension(format!(
                "json.corrupt-{}",
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs())
            ));
            match std::fs::rename(path, &aside) {
                Ok(()) => error!(
                    path = %path.display(),
                    moved_to = %aside.display(),
                    error = %err,
                    "STATE FILE IS CORRUPT: moved it aside and starting with an empty state"
                ),
                Err(rename_err) => error!(
                    path = %path.display(),
                    error = %err,
                    rename_error = %rename_err,
                    "STATE FILE IS CORRUPT and could not be moved aside; starting with an empty state and leaving it untouched until the next save"
                ),
            }
            Model::default()
        }
    }
}

fn probe_writable(dir: &Path) -> io::Result<()> {
    let probe = dir.join(".snaprelay-write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = path.with_extension("json.tmp");
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&tmp, path)?;
        // The rename itself must reach the disk too.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
        warn!(path = %path.display(), "state write failed; the previous state file is intact");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::model::{Arrival, Model};

    fn sample() -> Model {
        let mut model = Model::default();
        model.arrive(
            Arrival {
                id: "kitchen".into(),
                instance: 1,
                ..Arrival::default()
            },
            &["default"],
            "default",
            55,
        );
        model
    }

    #[test]
    fn saves_and_loads_in_snapserver_format() {
        let dir = tempfile::tempdir().unwrap();
        let (store, empty) = Store::open(dir.path());
        assert!(empty.groups.is_empty());
        let model = sample();
        store.save(&model).unwrap();
        let text = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
        assert!(
            text.starts_with(r#"{"ConfigVersion":2,"Groups":["#),
            "{text}"
        );
        let (_, loaded) = Store::open(dir.path());
        let client = loaded.client("kitchen").unwrap();
        assert_eq!(client.config.volume.percent, 55);
        assert!(!client.connected, "loaded clients are disconnected");
    }

    #[test]
    fn a_corrupt_file_is_moved_aside_and_the_state_starts_clean() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(STATE_FILE), b"{\"Groups\": [garbage").unwrap();
        let (store, model) = Store::open(dir.path());
        assert!(model.groups.is_empty());
        let aside: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains("corrupt"))
            .collect();
        assert_eq!(aside.len(), 1, "the corrupt file is kept for the user");
        assert_eq!(
            std::fs::read(aside[0].path()).unwrap(),
            b"{\"Groups\": [garbage"
        );
        assert!(store.path().is_some(), "persistence stays on");
    }

    #[test]
    fn a_read_only_dir_runs_without_persistence() {
        let dir = tempfile::tempdir().unwrap();
        Store::open(dir.path()).0.save(&sample()).unwrap();
        let mut perms = std::fs::metadata(dir.path()).unwrap().permissions();
        use std::os::unix::fs::PermissionsExt;
        perms.set_mode(0o555);
        std::fs::set_permissions(dir.path(), perms.clone()).unwrap();
        let (store, model) = Store::open(dir.path());
        let writable = probe_writable(dir.path()).is_ok(); // root may write anyway
        perms.set_mode(0o755);
        std::fs::set_permissions(dir.path(), perms).unwrap();
        assert!(
            model.client("kitchen").is_some(),
            "the old state still loads"
        );
        assert_eq!(store.path().is_some(), writable);
    }

    #[test]
    fn a_failed_write_leaves_the_previous_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(dir.path());
        store.save(&sample()).unwrap();
        let before = std::fs::read(dir.path().join(STATE_FILE)).unwrap();
        // A directory where the temp file should go makes the write fail.
        std::fs::create_dir(dir.path().join("server.json.tmp")).unwrap();
        assert!(store.save(&Model::default()).is_err());
        assert_eq!(std::fs::read(dir.path().join(STATE_FILE)).unwrap(), before);
    }
}

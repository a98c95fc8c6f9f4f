//! FIFO input (docs/SOURCES.md §2.1): opened non-blocking through tokio so no
//! runtime worker ever blocks on it, created when missing (`mode=create`), and reopened when
//! the path is replaced or vanishes.
//!
//! The FIFO is held open read-write (Linux defines this for FIFOs), so it never reports EOF:
//! a writer that goes away is just silence, and the next writer's bytes are read at once.
//! Closing and reopening on each writer's exit, as snapserver does, has a window in which a
//! new writer's first bytes are discarded with the last read end; holding it open has none.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tracing::{debug, info, warn};

/// How often a FIFO that cannot be opened is retried (snapserver: 200 ms).
const REOPEN_DELAY: Duration = Duration::from_millis(200);

/// While no data flows, how often we check that the path still names the FIFO we hold open,
/// so a FIFO deleted and recreated under us is picked up.
const PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Reads PCM from a named pipe, surviving writers that come and go.
#[derive(Debug)]
pub(crate) struct PipeReader {
    path: PathBuf,
    create: bool,
    open: Option<(pipe::Receiver, u64)>,
    /// Last open error, so a persistent failure is logged once rather than 5 times a second.
    last_error: Option<io::ErrorKind>,
}

impl PipeReader {
    pub(crate) fn new(path: PathBuf, create: bool) -> Self {
        Self {
            path,
            create,
            open: None,
            last_error: None,
        }
    }

    /// Makes the FIFO if asked to and it is missing; refuses a path that is something else.
    pub(crate) fn prepare(&self) -> io::Result<()> {
        match std::fs::metadata(&self.path) {
            Ok(meta) if meta.file_type().is_fifo() => Ok(()),
            Ok(_) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} exists and is not a FIFO", self.path.display()),
            )),
            Err(err) if err.kind() == io::ErrorKind::NotFound && self.create => {
                make_fifo(&self.path)
            }
            Err(err) => Err(err),
        }
    }

    /// Reads some bytes, waiting as long as it takes for a writer; never returns 0.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some((receiver, inode)) = self.open.as_mut() else {
                match self.try_open() {
                    Ok(()) => continue,
                    Err(err) => {
                        if self.last_error != Some(err.kind()) {
                            warn!(path = %self.path.display(), error = %err, "cannot open FIFO; retrying");
                            self.last_error = Some(err.kind());
                        }
                        tokio::time::sleep(REOPEN_DELAY).await;
                        continue;
                    }
                }
            };
            let inode = *inode;
            tokio::select! {
                // `read` on a tokio pipe is cancel safe: no bytes are lost if the timer wins.
                result = receiver.read(buf) => match result {
                    Ok(0) => {
                        // Cannot happen while we hold a write end too; reopen defensively.
                        debug!(path = %self.path.display(), "FIFO reported EOF; reopening");
                        self.open = None;
                    }
                    Ok(n) => return Ok(n),
                    Err(err) => {
                        warn!(path = %self.path.display(), error = %err, "FIFO read failed; reopening");
                        self.open = None;
                        tokio::time::sleep(REOPEN_DELAY).await;
                    }
                },
                () = tokio::time::sleep(PATH_CHECK_INTERVAL) => {
                    if !same_fifo(&self.path, inode) {
                        warn!(path = %self.path.display(), "FIFO vanished or was replaced; reopening");
                        self.open = None;
                    }
                }
            }
        }
    }

    /// Bytes waiting in the FIFO (see `Reader::pending_bytes`).
    pub(crate) fn pending_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        self.open
            .as_ref()
            .map_or(0, |(receiver, _)| super::queued_bytes(receiver.as_raw_fd()))
    }

    fn try_open(&mut self) -> io::Result<()> {
        self.prepare()?;
        let receiver = pipe::OpenOptions::new()
            .read_write(true)
            .open_receiver(&self.path)?;
        let inode = std::fs::metadata(&self.path)?.ino();
        if self.last_error.take().is_some() {
            info!(path = %self.path.display(), "FIFO open again");
        }
        self.open = Some((receiver, inode));
        Ok(())
    }
}

fn same_fifo(path: &Path, inode: u64) -> bool {
    std::fs::metadata(path).is_ok_and(|meta| meta.file_type().is_fifo() && meta.ino() == inode)
}

fn make_fifo(path: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "FIFO path contains NUL"))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o666) };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::AlreadyExists {
            return Err(err);
        }
    }
    // mkfifo honours the umask; snapserver makes its FIFO writable by any local player.
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o666))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn creates_fifo_and_reads_successive_writers() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fifo");
        let mut reader = PipeReader::new(path.clone(), true);
        reader.prepare().unwrap();
        assert!(std::fs::metadata(&path).unwrap().file_type().is_fifo());

        let mut buf = [0u8; 16];
        for round in 0..3u8 {
            let writer_path = path.clone();
            let writer = std::thread::spawn(move || {
                let mut fifo = std::fs::OpenOptions::new()
                    .write(true)
                    .open(writer_path)
                    .unwrap();
                fifo.write_all(&[round; 4]).unwrap();
            });
            let n = tokio::time::timeout(Duration::from_secs(5), reader.read(&mut buf))
                .await
                .expect("data from the writer")
                .unwrap();
            assert_eq!(&buf[..n], &[round; 4][..n]);
            writer.join().unwrap();
        }
    }

    #[test]
    fn refuses_a_regular_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let reader = PipeReader::new(file.path().into(), true);
        assert_eq!(
            reader.prepare().unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }

    #[test]
    fn read_mode_does_not_create() {
        let dir = tempfile::tempdir().unwrap();
        let reader = PipeReader::new(dir.path().join("missing"), false);
        assert_eq!(
            reader.prepare().unwrap_err().kind(),
            io::ErrorKind::NotFound
        );
    }
}

//! Raw PCM file input (docs/SOURCES.md §2.2): no WAV parsing, looped at its end
//! like snapserver. Pacing to real time is the [`super::pacer`]'s job.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use tokio::fs::File;
use tokio::io::AsyncReadExt;
use tracing::warn;

/// Delay before reopening at EOF or after an error (snapserver: 100 ms).
const REOPEN_DELAY: Duration = Duration::from_millis(100);

/// Reads a raw PCM file over and over.
#[derive(Debug)]
pub(crate) struct FileReader {
    path: PathBuf,
    file: Option<File>,
    /// Bytes read since the last open: an empty file must not make us spin.
    read_since_open: u64,
    last_error: Option<io::ErrorKind>,
}

impl FileReader {
    pub(crate) fn new(path: PathBuf) -> Self {
        Self {
            path,
            file: None,
            read_since_open: 0,
            last_error: None,
        }
    }

    /// Reads some bytes; at EOF starts again from the beginning. Never returns 0.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some(file) = self.file.as_mut() else {
                match File::open(&self.path).await {
                    Ok(file) => {
                        self.file = Some(file);
                        self.read_since_open = 0;
                        self.last_error = None;
                    }
                    Err(err) => {
                        if self.last_error != Some(err.kind()) {
                            warn!(path = %self.path.display(), error = %err, "cannot open source file; retrying");
                            self.last_error = Some(err.kind());
                        }
                        tokio::time::sleep(REOPEN_DELAY * 10).await;
                    }
                }
                continue;
            };
            match file.read(buf).await {
                Ok(0) => {
                    let was_empty = self.read_since_open == 0;
                    self.file = None;
                    if was_empty {
                        tokio::time::sleep(REOPEN_DELAY).await;
                    }
                }
                Ok(n) => {
                    self.read_since_open += n as u64;
                    return Ok(n);
                }
                Err(err) => {
                    warn!(path = %self.path.display(), error = %err, "source file read failed; reopening");
                    self.file = None;
                    tokio::time::sleep(REOPEN_DELAY).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loops_at_end_of_file() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [1u8, 2, 3]).unwrap();
        let mut reader = FileReader::new(file.path().into());
        let mut collected = Vec::new();
        let mut buf = [0u8; 2];
        while collected.len() < 7 {
            let n = reader.read(&mut buf).await.unwrap();
            collected.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&collected[..7], &[1, 2, 3, 1, 2, 3, 1]);
    }
}

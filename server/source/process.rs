//! Process input (snapcast-protocol.md §4.3 `process`): runs a command and reads raw PCM
//! from its stdout; its stderr goes to our log; when it exits it is restarted with backoff.
//! Process sources come only from the config file (never from the network).

use std::io;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tracing::{info, warn};

/// First restart delay; doubles up to [`MAX_BACKOFF`] while the process keeps dying fast.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A process that ran this long is considered healthy: the backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(10);

/// Spawns and respawns the command.
#[derive(Debug)]
pub(crate) struct ProcessReader {
    name: String,
    path: PathBuf,
    args: Vec<String>,
    running: Option<(Child, ChildStdout, Instant)>,
    backoff: Duration,
    /// Starts, for tests and logs.
    starts: u64,
}

impl ProcessReader {
    pub(crate) fn new(name: &str, path: PathBuf, args: Vec<String>) -> Self {
        Self {
            name: name.to_owned(),
            path,
            args,
            running: None,
            backoff: MIN_BACKOFF,
            starts: 0,
        }
    }

    fn spawn(&mut self) -> io::Result<()> {
        let mut child = crate::child::end_with_relay(&mut Command::new(&self.path))
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child has no stdout"))?;
        if let Some(stderr) = child.stderr.take() {
            let name = self.name.clone();
            // Ends by itself when the child's stderr closes.
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    info!(stream = %name, "process: {line}");
                }
            });
        }
        self.starts += 1;
        info!(stream = %self.name, path = %self.path.display(), pid = child.id(), starts = self.starts, "source process started");
        self.running = Some((child, stdout, Instant::now()));
        Ok(())
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let Some((child, stdout, started)) = self.running.as_mut() else {
                if let Err(err) = self.spawn() {
                    warn!(stream = %self.name, path = %self.path.display(), error = %err, retry_in = ?self.backoff, "cannot start source process");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            };
            match stdout.read(buf).await {
                Ok(n) if n > 0 => return Ok(n),
                result => {
                    let ran = started.elapsed();
                    // Reap it so no zombie (or fd) is left behind.
                    let status = child.wait().await;
                    warn!(stream = %self.name, status = ?status.ok(), error = ?result.err(), ran = ?ran, restart_in = ?self.backoff, "source process ended; restarting");
                    self.running = None;
                    if ran >= HEALTHY_RUN {
                        self.backoff = MIN_BACKOFF;
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reads_stdout_and_restarts_a_process_that_exits() {
        let mut reader = ProcessReader::new(
            "t",
            "/bin/sh".into(),
            vec!["-c".into(), "printf abc; echo oops >&2".into()],
        );
        let mut seen = Vec::new();
        while seen.len() < 6 {
            let mut buf = [0u8; 16];
            let n = tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
            seen.extend_from_slice(&buf[..n]);
        }
        assert_eq!(&seen[..6], b"abcabc");
        assert!(reader.starts >= 2);
    }

    #[tokio::test]
    async fn a_missing_program_is_retried_not_fatal() {
        let mut reader = ProcessReader::new("t", "/nonexistent/player".into(), Vec::new());
        let mut buf = [0u8; 4];
        let attempt = tokio::time::timeout(Duration::from_millis(700), reader.read(&mut buf)).await;
        assert!(attempt.is_err(), "keeps retrying instead of failing");
        assert_eq!(reader.starts, 0);
    }
}

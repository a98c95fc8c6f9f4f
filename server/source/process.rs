//! Process input (docs/SOURCES.md §2.4, and the players of §2.5 and §2.6):
//! runs a command and reads raw PCM from its stdout; each stderr line goes to our log and to
//! an optional handler (a player's log says what it plays); when it exits it is restarted
//! with backoff. A watchdog can restart it when its log stays silent too long (`wd_timeout`,
//! of librespot and of `process://`), and `killall` can end stray instances before the first start. Process
//! sources come only from the config file (never from the network).

use std::io;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};
use tracing::{debug, info, warn};

use super::stats::SourceStats;

/// A player's program as its source URI names it: the path, or `default` (looked up on
/// `PATH`) when the URI names none.
pub(crate) fn program_path(uri_path: &str, default: &str) -> PathBuf {
    if uri_path.is_empty() || uri_path == "/" {
        PathBuf::from(default)
    } else {
        PathBuf::from(uri_path)
    }
}

/// The program at `path`, else the one of that file name on `PATH`, else `fallback` on
/// `PATH`, as snapserver looks for its players.
///
/// # Errors
///
/// None of them exists (`NotFound`, naming both).
pub(crate) fn find_program(path: &Path, fallback: &str) -> io::Result<PathBuf> {
    if path.is_absolute() && path.is_file() {
        return Ok(path.to_path_buf());
    }
    let on_path = |name: &std::ffi::OsStr| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|candidate| candidate.is_file())
        })
    };
    path.file_name()
        .and_then(on_path)
        .or_else(|| on_path(std::ffi::OsStr::new(fallback)))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "{fallback} not found ({} nor {fallback} on PATH)",
                    path.display()
                ),
            )
        })
}

/// What a `wd_timeout` value may be, as error messages say it.
pub(crate) const WATCHDOG_ALLOWED: &str = "1 to 604800 seconds";

/// A `wd_timeout` value (whole seconds, 1 to a week); `None` when it is not one.
pub(crate) fn parse_watchdog(seconds: &str) -> Option<Duration> {
    seconds
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=86_400 * 7).contains(s))
        .map(Duration::from_secs)
}

/// What is done with each line the process writes to stderr (besides logging it).
#[derive(Clone)]
pub(crate) struct OnStderr(pub(crate) Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for OnStderr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("OnStderr")
    }
}

/// The command line for each start, when it can change between starts (shairport-sync's
/// port moves on when another instance holds it).
#[derive(Clone)]
pub(crate) struct ArgsOf(pub(crate) Arc<dyn Fn() -> Vec<String> + Send + Sync>);

impl std::fmt::Debug for ArgsOf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ArgsOf")
    }
}

/// How a process is run beyond its command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Supervision {
    /// Its arguments at each start, instead of the fixed ones.
    pub(crate) args_of: Option<ArgsOf>,
    /// Called with every stderr line.
    pub(crate) on_stderr: Option<OnStderr>,
    /// Restart it when stderr has been silent this long.
    pub(crate) watchdog: Option<Duration>,
    /// `killall <program>` before the first start.
    pub(crate) killall: bool,
    /// Log its stderr lines at debug level rather than info (`process://`'s `log_stderr`
    /// off, snapserver's default).
    pub(crate) quiet_stderr: bool,
}

/// First restart delay; doubles up to [`MAX_BACKOFF`] while the process keeps dying fast.
const MIN_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// Longest stderr line taken whole; longer ones are cut there.
const MAX_STDERR_LINE: u64 = 64 << 10;
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
    supervision: Supervision,
    /// When stderr last said something, ms after `epoch`.
    last_stderr_ms: Arc<AtomicU64>,
    epoch: Instant,
    /// The stream's input counters (restarts).
    stats: Arc<SourceStats>,
}

impl ProcessReader {
    /// A reader with no supervision beyond restarts (tests).
    #[cfg(test)]
    pub(crate) fn new(name: &str, path: PathBuf, args: Vec<String>) -> Self {
        Self::supervised(name, path, args, Supervision::default())
    }

    pub(crate) fn supervised(
        name: &str,
        path: PathBuf,
        args: Vec<String>,
        supervision: Supervision,
    ) -> Self {
        Self {
            name: name.to_owned(),
            path,
            args,
            running: None,
            backoff: MIN_BACKOFF,
            starts: 0,
            supervision,
            last_stderr_ms: Arc::default(),
            epoch: Instant::now(),
            stats: Arc::default(),
        }
    }

    /// Counts its restarts in `stats` (the stream's).
    pub(crate) fn counting(mut self, stats: Arc<SourceStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Ends stray instances of the program (snapserver's `killall=true`); a missing
    /// `killall` or none running is fine.
    async fn kill_strays(&self) {
        let Some(program) = self.path.file_name() else {
            return;
        };
        match Command::new("killall").arg(program).output().await {
            Ok(_) => {
                info!(stream = %self.name, program = ?program, "killall before the first start")
            }
            Err(err) => warn!(stream = %self.name, error = %err, "killall not run"),
        }
    }

    fn note_stderr(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_stderr_ms.store(now, Ordering::Relaxed);
    }

    fn spawn(&mut self) -> io::Result<()> {
        let args = match &self.supervision.args_of {
            Some(ArgsOf(args_of)) => args_of(),
            None => self.args.clone(),
        };
        let mut child = crate::child::end_with_relay(&mut Command::new(&self.path))
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| io::Error::other("child has no stdout"))?;
        self.note_stderr();
        if let Some(stderr) = child.stderr.take() {
            let name = self.name.clone();
            let on_stderr = self.supervision.on_stderr.clone();
            let quiet = self.supervision.quiet_stderr;
            let (last, epoch) = (self.last_stderr_ms.clone(), self.epoch);
            // Ends by itself when the child's stderr closes.
            tokio::spawn(async move {
                // Byte lines, capped and read lossily: one bad byte or a huge line must not
                // end the reading (the child would get SIGPIPE, the watchdog go hungry).
                let mut stderr = BufReader::new(stderr);
                let mut raw = Vec::new();
                loop {
                    raw.clear();
                    match (&mut stderr)
                        .take(MAX_STDERR_LINE)
                        .read_until(b'\n', &mut raw)
                        .await
                    {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                    let text = String::from_utf8_lossy(&raw);
                    let line = text.trim_end_matches(['\n', '\r']);
                    let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
                    last.store(now, Ordering::Relaxed);
                    if quiet {
                        debug!(stream = %name, "process: {line}");
                    } else {
                        info!(stream = %name, "process: {line}");
                    }
                    if let Some(OnStderr(handle)) = &on_stderr {
                        handle(line);
                    }
                }
            });
        }
        self.starts += 1;
        info!(stream = %self.name, path = %self.path.display(), pid = child.id(), starts = self.starts, "source process started");
        self.running = Some((child, stdout, Instant::now()));
        Ok(())
    }

    /// Bytes the process wrote that wait in its stdout pipe.
    pub(crate) fn pending_bytes(&self) -> usize {
        use std::os::fd::AsRawFd;
        self.running
            .as_ref()
            .map_or(0, |(_, stdout, _)| super::queued_bytes(stdout.as_raw_fd()))
    }

    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.supervision.killall && self.starts == 0 {
            self.supervision.killall = false;
            self.kill_strays().await;
        }
        loop {
            let watchdog_due = self.supervision.watchdog.map(|limit| {
                let last = Duration::from_millis(self.last_stderr_ms.load(Ordering::Relaxed));
                tokio::time::Instant::from_std(self.epoch + last + limit)
            });
            let Some((child, stdout, started)) = self.running.as_mut() else {
                if let Err(err) = self.spawn() {
                    warn!(stream = %self.name, path = %self.path.display(), error = %err, retry_in = ?self.backoff, "cannot start source process");
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
                continue;
            };
            let read = match watchdog_due {
                None => stdout.read(buf).await,
                Some(due) => tokio::select! {
                    read = stdout.read(buf) => read,
                    () = tokio::time::sleep_until(due) => {
                        let last = Duration::from_millis(self.last_stderr_ms.load(Ordering::Relaxed));
                        if self.epoch + last + self.supervision.watchdog.unwrap_or_default() > Instant::now() {
                            continue; // it spoke meanwhile
                        }
                        warn!(stream = %self.name, silent_for = ?self.supervision.watchdog, "the source process went silent on stderr; restarting it (wd_timeout)");
                        let _ = child.start_kill();
                        Err(io::Error::new(io::ErrorKind::TimedOut, "watchdog"))
                    }
                },
            };
            match read {
                Ok(n) if n > 0 => return Ok(n),
                result => {
                    let ran = started.elapsed();
                    // Reap it so no zombie (or fd) is left behind.
                    let status = child.wait().await;
                    warn!(stream = %self.name, status = ?status.ok(), error = ?result.err(), ran = ?ran, restart_in = ?self.backoff, "source process ended; restarting");
                    self.running = None;
                    self.stats.count_restart();
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

    /// Every stderr line a process started by [`recording`] wrote.
    type Lines = Arc<std::sync::Mutex<Vec<String>>>;

    /// A reader of `sh -c script` that records its stderr lines, with `watchdog`.
    fn recording(script: &str, watchdog: Option<Duration>) -> (ProcessReader, Lines) {
        let lines = Lines::default();
        let seen = lines.clone();
        let reader = ProcessReader::supervised(
            "t",
            "/bin/sh".into(),
            vec!["-c".into(), script.into()],
            Supervision {
                on_stderr: Some(OnStderr(Arc::new(move |line: &str| {
                    seen.lock().unwrap().push(line.to_owned());
                }))),
                watchdog,
                ..Supervision::default()
            },
        );
        (reader, lines)
    }

    #[tokio::test]
    async fn a_process_whose_log_goes_silent_is_restarted_by_the_watchdog() {
        let (mut reader, lines) = recording(
            "echo started >&2; while :; do printf abcd; sleep 0.05; done",
            Some(Duration::from_millis(700)),
        );
        let started = Instant::now();
        let mut buf = [0u8; 64];
        // Audio keeps coming, but the log is silent: restarted about every 0.7 s (plus the
        // restart backoff).
        while reader.starts < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "no watchdog restart"
            );
            tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
        }
        assert!(started.elapsed() >= Duration::from_millis(700));
        assert!(lines.lock().unwrap().iter().all(|l| l == "started"));
        assert!(!lines.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn stderr_lines_are_read_on_past_bytes_that_are_not_utf8() {
        let (mut reader, lines) = recording(
            r"printf 'bad \377 byte\nnext line\n' >&2; while :; do printf ab; sleep 0.05; done",
            None,
        );
        let mut buf = [0u8; 16];
        let started = Instant::now();
        while lines.lock().unwrap().len() < 2 {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "{:?}",
                lines.lock().unwrap()
            );
            tokio::time::timeout(Duration::from_secs(10), reader.read(&mut buf))
                .await
                .unwrap()
                .unwrap();
        }
        let lines = lines.lock().unwrap();
        assert_eq!(lines[0], "bad \u{fffd} byte");
        assert_eq!(lines[1], "next line");
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

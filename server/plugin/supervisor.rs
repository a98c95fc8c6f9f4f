//! Runs a stream's plugin process: starts it with snapserver's arguments, speaks the plugin
//! protocol over its stdin and stdout, logs its stderr, and starts it again with backoff
//! when it ends.

use std::collections::HashMap;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::StreamExt as _;
use tokio_util::codec::{FramedRead, LinesCodec, LinesCodecError};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, trace, warn};

use super::wire::{self, FromPlugin, Severity};
use super::{ControlScript, Request, StreamControl};
use crate::properties::ControlError;

/// Longest restart delay; the first is the environment's `restart_backoff`, doubling while
/// the plugin keeps ending fast.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A plugin that ran this long was healthy: the backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
/// Longest line read from a plugin: a properties object with inline cover art fits.
const MAX_LINE: usize = 16 << 20;
/// Longest stderr line logged.
const MAX_STDERR_LINE: usize = 8 << 10;
/// Lines waiting to be written to the plugin; beyond this it is not reading.
const STDIN_QUEUE: usize = 32;
/// Bad lines logged at warn per plugin run; later ones at debug (counted either way).
const LOUD_BAD_LINES: u64 = 10;
/// How long a plugin whose stdout closed gets to exit before it is killed.
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Supervises the plugin until `cancel` fires.
pub(super) async fn run(
    control: Arc<StreamControl>,
    script: ControlScript,
    mut requests: mpsc::Receiver<Request>,
    cancel: CancellationToken,
) {
    let first_backoff = control.env.restart_backoff;
    let mut backoff = first_backoff;
    loop {
        let started = Instant::now();
        let mut ran = false;
        match spawn(&control, &script) {
            Ok(child) => {
                ran = true;
                control.stats.running.store(true, Ordering::Relaxed);
                let outcome = Run::new(control.clone(), child)
                    .serve(&mut requests, &cancel)
                    .await;
                control.stats.running.store(false, Ordering::Relaxed);
                if cancel.is_cancelled() {
                    control.forget_player();
                    return;
                }
                warn!(stream = %control.stream, status = %describe(outcome), ran = ?started.elapsed(), restart_in = ?backoff, "stream plugin ended; restarting");
            }
            Err(err) => {
                error!(stream = %control.stream, script = %script.path.display(), error = %err, retry_in = ?backoff, "cannot start stream plugin");
            }
        }
        control.forget_player();
        if started.elapsed() >= HEALTHY_RUN {
            backoff = first_backoff;
        }
        // While it is down, callers get an answer at once rather than a timeout.
        let pause = tokio::time::sleep(backoff);
        tokio::pin!(pause);
        loop {
            tokio::select! {
                () = &mut pause => break,
                () = cancel.cancelled() => return,
                Some(request) = requests.recv() => {
                    let _ = request.reply.send(Err(ControlError::Unavailable("its plugin is restarting")));
                }
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        if ran {
            control.stats.restarts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn describe(status: Option<ExitStatus>) -> String {
    status.map_or_else(|| "unknown".to_owned(), |s| s.to_string())
}

/// Starts the script as snapserver does:
/// `<script> [controlscriptparams] --stream=<id> --snapcast-port=<port> --snapcast-host=<host>`
/// (the last two only when the HTTP listener runs).
fn spawn(control: &StreamControl, script: &ControlScript) -> std::io::Result<Child> {
    let env = &control.env;
    let mut command = Command::new(&script.path);
    command
        .args(&script.params)
        .arg(format!("--stream={}", control.stream));
    if env.http_enabled {
        command
            .arg(format!("--snapcast-port={}", env.http_port))
            .arg(format!("--snapcast-host={}", env.http_host));
    }
    let child = crate::child::end_with_relay(&mut command)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    info!(stream = %control.stream, script = %script.path.display(), pid = child.id(), "stream plugin started");
    Ok(child)
}

/// What a request in flight is waiting for.
enum Pending {
    /// A caller's Control or SetProperty.
    Caller(oneshot::Sender<Result<(), ControlError>>),
    /// Our GetProperties after the plugin said it is ready.
    Properties,
}

/// One run of the plugin process.
struct Run {
    control: Arc<StreamControl>,
    child: Child,
    pending: HashMap<u64, Pending>,
    next_id: u64,
    bad_lines: u64,
}

impl Run {
    fn new(control: Arc<StreamControl>, child: Child) -> Self {
        Self {
            control,
            child,
            pending: HashMap::new(),
            next_id: 1,
            bad_lines: 0,
        }
    }

    /// Serves the process until it ends (its exit status) or `cancel` fires.
    async fn serve(
        mut self,
        requests: &mut mpsc::Receiver<Request>,
        cancel: &CancellationToken,
    ) -> Option<ExitStatus> {
        let (Some(stdin), Some(stdout), Some(stderr)) = (
            self.child.stdin.take(),
            self.child.stdout.take(),
            self.child.stderr.take(),
        ) else {
            return None;
        };
        let (lines_out, lines_in) = mpsc::channel(STDIN_QUEUE);
        let writer = tokio::spawn(write_lines(stdin, lines_in));
        let mut stdout = FramedRead::new(stdout, LinesCodec::new_with_max_length(MAX_LINE));
        let mut stderr = FramedRead::new(stderr, LinesCodec::new_with_max_length(MAX_STDERR_LINE));
        let mut stderr_open = true;
        // Answers whose caller gave up are dropped now and then.
        let mut sweep = tokio::time::interval(Duration::from_secs(1));
        let status = loop {
            tokio::select! {
                () = cancel.cancelled() => break None,
                status = self.child.wait() => {
                    // What it wrote just before it ended is still worth reading (an answer,
                    // its last properties).
                    let drain = async {
                        while let Some(Ok(line)) = stdout.next().await {
                            self.line(&line, &lines_out).await;
                        }
                    };
                    let _ = tokio::time::timeout(EXIT_GRACE, drain).await;
                    break status.ok();
                }
                line = stdout.next() => match line {
                    Some(Ok(line)) => self.line(&line, &lines_out).await,
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {
                        self.bad_line(&format!("a line over {MAX_LINE} bytes"));
                    }
                    Some(Err(LinesCodecError::Io(_))) | None => {
                        // stdout closed: it is on its way out.
                        break tokio::time::timeout(EXIT_GRACE, self.child.wait())
                            .await
                            .ok()
                            .and_then(Result::ok);
                    }
                },
                line = stderr.next(), if stderr_open => match line {
                    Some(Ok(line)) => info!(stream = %self.control.stream, "stream plugin: {line}"),
                    Some(Err(LinesCodecError::MaxLineLengthExceeded)) => {}
                    Some(Err(LinesCodecError::Io(_))) | None => stderr_open = false,
                },
                Some(request) = requests.recv() => self.send(request, &lines_out),
                _ = sweep.tick() => self.pending.retain(|_, p| match p {
                    Pending::Caller(reply) => !reply.is_closed(),
                    Pending::Properties => true,
                }),
            }
        };
        writer.abort();
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        for (_, pending) in self.pending.drain() {
            if let Pending::Caller(reply) = pending {
                let _ = reply.send(Err(ControlError::Unavailable("its plugin ended")));
            }
        }
        status
    }

    fn send(&mut self, request: Request, lines: &mpsc::Sender<String>) {
        if request.reply.is_closed() {
            return; // its caller gave up waiting: do not carry it out late
        }
        let id = self.take_id();
        let line = wire::request(id, request.method, Some(request.params));
        if lines.try_send(line).is_err() {
            let _ = request.reply.send(Err(ControlError::Unavailable(
                "its plugin is not reading its input",
            )));
            return;
        }
        self.pending.insert(id, Pending::Caller(request.reply));
    }

    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    async fn line(&mut self, line: &str, lines: &mpsc::Sender<String>) {
        if line.trim().is_empty() {
            return;
        }
        trace!(stream = %self.control.stream, "stream plugin says: {line}");
        let message = match wire::parse(line) {
            Ok(message) => message,
            Err(err) => return self.bad_line(&err),
        };
        let stream = &self.control.stream;
        match message {
            FromPlugin::Ready => {
                if self
                    .pending
                    .values()
                    .any(|p| matches!(p, Pending::Properties))
                {
                    return; // one request for its properties at a time
                }
                let id = self.take_id();
                if lines
                    .try_send(wire::request(id, wire::GET_PROPERTIES, None))
                    .is_ok()
                {
                    self.pending.insert(id, Pending::Properties);
                }
            }
            FromPlugin::Properties(params) => self.apply(params).await,
            FromPlugin::Log { severity, message } => match severity {
                Severity::Trace => trace!(stream = %stream, "stream plugin: {message}"),
                Severity::Debug => debug!(stream = %stream, "stream plugin: {message}"),
                Severity::Info => info!(stream = %stream, "stream plugin: {message}"),
                Severity::Warning => warn!(stream = %stream, "stream plugin: {message}"),
                Severity::Error => error!(stream = %stream, "stream plugin: {message}"),
            },
            FromPlugin::Response { id, outcome } => match (self.pending.remove(&id), outcome) {
                (Some(Pending::Caller(reply)), outcome) => {
                    let _ = reply.send(
                        outcome
                            .map(|_| ())
                            .map_err(|(code, message)| ControlError::Plugin { code, message }),
                    );
                }
                (Some(Pending::Properties), Ok(properties)) => self.apply(properties).await,
                (Some(Pending::Properties), Err((code, message))) => {
                    warn!(stream = %stream, code, "stream plugin refused GetProperties: {message}");
                }
                (None, _) => {
                    self.bad_line(&format!("an answer to request {id}, which is not waiting"))
                }
            },
            FromPlugin::UnknownMethod { method, id } => {
                self.bad_line(&format!("unknown method '{method}'"));
                if let Some(id) = id {
                    let _ = lines.try_send(wire::method_not_found(&id, &method));
                }
            }
        }
    }

    /// Takes a properties object, off the runtime's workers: decoding and hashing inline
    /// cover art (up to megabytes) must not hold up the sessions' time-sync replies. One at
    /// a time, so they apply in the plugin's order.
    async fn apply(&self, properties: serde_json::Value) {
        let control = self.control.clone();
        if let Err(err) = tokio::task::spawn_blocking(move || control.apply(&properties)).await {
            error!(stream = %self.control.stream, error = %err, "applying plugin properties failed");
        }
    }

    fn bad_line(&mut self, what: &str) {
        self.bad_lines += 1;
        self.control.stats.bad_lines.fetch_add(1, Ordering::Relaxed);
        if self.bad_lines <= LOUD_BAD_LINES {
            warn!(stream = %self.control.stream, "stream plugin sent {what}; ignored");
        } else {
            debug!(stream = %self.control.stream, "stream plugin sent {what}; ignored");
        }
    }
}

/// Writes queued lines to the plugin's stdin until it closes or the queue ends.
async fn write_lines(mut stdin: ChildStdin, mut lines: mpsc::Receiver<String>) {
    while let Some(line) = lines.recv().await {
        if stdin.write_all(line.as_bytes()).await.is_err() || stdin.flush().await.is_err() {
            return;
        }
    }
}

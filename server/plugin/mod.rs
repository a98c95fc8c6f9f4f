//! Stream plugins (snapserver's `controlscript`, docs/SOURCES.md §6): a process beside
//! the stream that reports its player's properties and metadata and carries out
//! `Stream.Control` and `Stream.SetProperty`.
//!
//! [`StreamControl`] is a stream's control side, with or without a plugin: its current
//! [`Properties`] on a `watch` channel (the relay core announces changes) and the two
//! requests. A supervisor task runs the plugin and restarts it with backoff when it ends.
//! Nothing a plugin does can hold up the stream or a control API: its stdin is written by its
//! own task through a bounded queue (a plugin that stops reading gets requests refused, not
//! queued), every request has a deadline, its lines are length-bounded, and malformed lines
//! are logged and dropped.

mod supervisor;
pub(crate) mod wire;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::warn;

use crate::image_cache::{ImageCache, Owner};
use crate::properties::{Command, ControlError, Properties, PropertyChange};

/// How long a caller waits for the plugin's answer.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// First restart delay of a plugin that ended; doubles up to 30 s while it keeps ending fast.
pub(crate) const RESTART_BACKOFF: Duration = Duration::from_secs(1);

/// A stream's `controlscript` and its arguments, as the source URI gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlScript {
    /// The script; a relative path was resolved under the plugin directory.
    pub path: PathBuf,
    /// `controlscriptparams`, split like a shell would on spaces and double quotes.
    pub params: Vec<String>,
}

/// What plugins need to know of the relay: where its HTTP server is (plugins are told, and
/// cover art is served there) and the cover art cache.
#[derive(Debug)]
pub(crate) struct PluginEnv {
    /// Whether the HTTP listener runs: plugins are told where it is only then, as by
    /// snapserver.
    pub(crate) http_enabled: bool,
    /// `--snapcast-host`.
    pub(crate) http_host: String,
    /// `--snapcast-port`: the HTTP port (JSON-RPC over HTTP and WebSocket).
    pub(crate) http_port: u16,
    /// `http://host:port` or `http.url_prefix`; cover art URLs start with it.
    pub(crate) art_url_base: String,
    /// Where inline cover art goes.
    pub(crate) images: Arc<ImageCache>,
    /// How long a caller waits for the plugin's answer ([`REQUEST_TIMEOUT`]).
    pub(crate) request_timeout: Duration,
    /// First restart delay ([`RESTART_BACKOFF`]).
    pub(crate) restart_backoff: Duration,
}

impl PluginEnv {
    /// An environment for tests and relays without HTTP: art URLs on localhost.
    #[cfg(test)]
    pub(crate) fn local() -> Arc<Self> {
        Arc::new(Self {
            http_enabled: true,
            http_host: "127.0.0.1".into(),
            http_port: 1780,
            art_url_base: "http://127.0.0.1:1780".into(),
            images: Arc::default(),
            request_timeout: REQUEST_TIMEOUT,
            restart_backoff: RESTART_BACKOFF,
        })
    }
}

/// A request for the plugin (or for the upstream a relayed stream's control forwards to),
/// with where its answer goes.
#[derive(Debug)]
pub(crate) struct Request {
    /// [`wire::CONTROL`] or [`wire::SET_PROPERTY`].
    pub(crate) method: &'static str,
    /// The plugin's params (`Command::plugin_params`, `PropertyChange::plugin_params`).
    pub(crate) params: Value,
    pub(crate) reply: oneshot::Sender<Result<(), ControlError>>,
}

/// Live figures of a stream's plugin.
#[derive(Debug, Default)]
pub(crate) struct PluginStats {
    /// Whether the plugin process runs now.
    pub(crate) running: AtomicBool,
    /// Times it ended and was started again.
    pub(crate) restarts: AtomicU64,
    /// Lines from it that were not understood (dropped).
    pub(crate) bad_lines: AtomicU64,
    /// Requests it answered with an error or not in time.
    pub(crate) failed_requests: AtomicU64,
}

/// One input of a meta stream, as its control sees it.
#[derive(Debug, Clone)]
pub(crate) struct MetaInput {
    /// The input's control side.
    pub(crate) control: Arc<StreamControl>,
    /// Whether it plays now.
    pub(crate) playing: watch::Receiver<bool>,
}

/// An upstream's cover as we serve it.
#[derive(Debug)]
struct UpstreamArt {
    /// The upstream's URL for it.
    theirs: String,
    /// Its name in our image cache.
    name: String,
    /// Our URL for it.
    ours: String,
}

/// A stream's control side.
#[derive(Debug)]
pub(crate) struct StreamControl {
    stream: String,
    properties: watch::Sender<Arc<Properties>>,
    /// To the supervisor; `None` when the stream has no plugin.
    requests: Option<mpsc::Sender<Request>>,
    /// To the upstream connection of a relayed stream, which carries requests out on the
    /// upstream's stream ([`StreamControl::forward_requests`]).
    upstream: std::sync::OnceLock<mpsc::Sender<Request>>,
    /// A relayed stream's cover, once fetched ([`StreamControl::serve_upstream_art`]). Its
    /// lock is held while properties that show it are sent, so a fetch that completes
    /// meanwhile is never overwritten by the upstream's URL.
    upstream_art: std::sync::Mutex<Option<UpstreamArt>>,
    script: Option<ControlScript>,
    stats: PluginStats,
    env: Arc<PluginEnv>,
    /// Its cover art in the image cache.
    image_owner: Owner,
    /// Where control requests go instead of a plugin: a meta stream's active input.
    delegate: std::sync::Mutex<Option<Arc<StreamControl>>>,
    /// A meta stream's inputs and whether each plays, in order: `play` may go to another
    /// input than the shown one (snapserver's rule, [`StreamControl::route`]).
    inputs: std::sync::OnceLock<Vec<MetaInput>>,
    /// Fires when the stream stops; nothing is cached for it after that.
    stopped: CancellationToken,
}

impl StreamControl {
    /// The control side of stream `stream`; starts its plugin on `tracker` when it has one,
    /// until `cancel` fires.
    pub(crate) fn start(
        stream: &str,
        script: Option<ControlScript>,
        env: Arc<PluginEnv>,
        cancel: CancellationToken,
        tracker: &TaskTracker,
    ) -> Arc<Self> {
        let (requests, receiver) = match script {
            Some(_) => {
                // A few callers at once at most; more means the plugin is stuck.
                let (tx, rx) = mpsc::channel(16);
                (Some(tx), Some(rx))
            }
            None => (None, None),
        };
        let control = Arc::new(Self {
            stream: stream.to_owned(),
            properties: watch::Sender::new(Arc::new(Properties::default())),
            requests,
            upstream: std::sync::OnceLock::new(),
            upstream_art: std::sync::Mutex::new(None),
            script,
            stats: PluginStats::default(),
            image_owner: env.images.owner(),
            delegate: std::sync::Mutex::new(None),
            inputs: std::sync::OnceLock::new(),
            env,
            stopped: cancel.clone(),
        });
        if let (Some(script), Some(receiver)) = (control.script.clone(), receiver) {
            tracker.spawn(supervisor::run(control.clone(), script, receiver, cancel));
        }
        control
    }

    /// The properties as they are now.
    pub(crate) fn properties(&self) -> Arc<Properties> {
        self.properties.borrow().clone()
    }

    /// Property changes, for whoever announces them (`Stream.OnProperties`).
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<Properties>> {
        self.properties.subscribe()
    }

    /// The plugin, when the stream has one.
    pub(crate) fn script(&self) -> Option<&ControlScript> {
        self.script.as_ref()
    }

    /// The plugin's figures.
    pub(crate) fn stats(&self) -> &PluginStats {
        &self.stats
    }

    /// Carries out a `Stream.Control` command: refused unless its flag is set, then asked of
    /// the plugin, whose answer (or silence) is the result; a meta stream passes it to its
    /// active input.
    pub(crate) async fn control(&self, command: Command) -> Result<(), ControlError> {
        if let Some(delegate) = self.delegate() {
            let (target, command) = self.route(delegate, command);
            return Box::pin(target.control(command)).await;
        }
        let flag = command.flag();
        if !self.properties().allows(flag) {
            return Err(ControlError::NotAllowed(flag));
        }
        self.ask(wire::CONTROL, command.plugin_params()).await
    }

    /// Carries out a `Stream.SetProperty` change (needs `canControl`).
    pub(crate) async fn set_property(&self, change: PropertyChange) -> Result<(), ControlError> {
        if let Some(delegate) = self.delegate() {
            return Box::pin(delegate.set_property(change)).await;
        }
        let flag = crate::properties::Flag::Control;
        if !self.properties().allows(flag) {
            return Err(ControlError::NotAllowed(flag));
        }
        self.ask(wire::SET_PROPERTY, change.plugin_params()).await
    }

    async fn ask(&self, method: &'static str, params: Value) -> Result<(), ControlError> {
        let (requests, busy, ended) = match (&self.requests, self.upstream.get()) {
            (Some(requests), _) => (
                requests,
                "its plugin is busy or not running",
                "its plugin ended",
            ),
            (None, Some(requests)) => (
                requests,
                "its upstream is busy or not connected",
                "its upstream connection ended",
            ),
            (None, None) => return Err(ControlError::Unavailable("it has no stream plugin")),
        };
        let (reply, answer) = oneshot::channel();
        requests
            .try_send(Request {
                method,
                params,
                reply,
            })
            .map_err(|_| ControlError::Unavailable(busy))?;
        let timeout = self.env.request_timeout;
        let result = match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(ControlError::Unavailable(ended)),
            Err(_) => Err(ControlError::Timeout(timeout.as_millis() as u64)),
        };
        if matches!(
            result,
            Err(ControlError::Plugin { .. } | ControlError::Timeout(_))
        ) {
            self.stats.failed_requests.fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    /// Where a meta stream sends `command`, as snapserver does: `playPause` while the shown
    /// input is idle means `play`; `play` goes to the shown input when it can play and is not
    /// playing, else to the first idle input that can play, else to the shown one (whose
    /// answer is the result). Everything else goes to the shown input.
    fn route(&self, shown: Arc<StreamControl>, command: Command) -> (Arc<StreamControl>, Command) {
        let Some(inputs) = self.inputs.get() else {
            return (shown, command);
        };
        let plays = |control: &Arc<StreamControl>| {
            inputs
                .iter()
                .find(|input| Arc::ptr_eq(&input.control, control))
                .is_some_and(|input| *input.playing.borrow())
        };
        let command = match command {
            Command::PlayPause if !plays(&shown) => Command::Play,
            other => other,
        };
        if command != Command::Play {
            return (shown, command);
        }
        let properties = shown.properties();
        if properties.can_play
            && properties.playback_status != Some(crate::properties::PlaybackStatus::Playing)
        {
            return (shown, command);
        }
        let idle_player = inputs
            .iter()
            .find(|input| !*input.playing.borrow() && input.control.properties().can_play);
        match idle_player {
            Some(input) => (input.control.clone(), command),
            None => (shown, command),
        }
    }

    /// Makes this a relayed stream's control: `Stream.Control` and `Stream.SetProperty` (still
    /// checked against the flags shown, which are the upstream's) come out of the returned
    /// queue, for the upstream connection to carry out. `None` if it was done before.
    pub(crate) fn forward_requests(&self) -> Option<mpsc::Receiver<Request>> {
        let (tx, rx) = mpsc::channel(16);
        self.upstream.set(tx).ok().map(|()| rx)
    }

    /// Shows an upstream stream's properties, as its server reports them. Unreadable keys are
    /// dropped; no `metadata` means none. Its cover is shown at our URL once we serve it;
    /// the upstream's cover URL that we do not serve yet is returned, for fetching.
    pub(crate) fn mirror_upstream(&self, value: &Value) -> Option<String> {
        let mut problems = Vec::new();
        let mut properties = match Properties::from_json(value, &mut problems) {
            Ok(properties) => properties,
            Err(err) => {
                warn!(stream = %self.stream, "the upstream sent bad stream properties: {err}");
                return None;
            }
        };
        for problem in problems {
            tracing::debug!(stream = %self.stream, "upstream stream properties: {problem}");
        }
        let mut fetch = None;
        let art = self.upstream_art();
        if let Some(metadata) = properties.metadata.as_mut() {
            metadata.drop_art_data(); // an upstream shows URLs; bytes here are not ours to serve
            if let Some(theirs) = metadata.text("artUrl").map(str::to_owned) {
                match &*art {
                    // Still ours to serve (the cache may have dropped it for newer ones).
                    Some(known)
                        if known.theirs == theirs && self.env.images.get(&known.name).is_some() =>
                    {
                        metadata.set_art_url(known.ours.clone());
                    }
                    _ => fetch = Some(theirs),
                }
            }
        }
        self.mirror(Arc::new(properties));
        drop(art);
        fetch
    }

    fn upstream_art(&self) -> std::sync::MutexGuard<'_, Option<UpstreamArt>> {
        self.upstream_art
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves `image`, fetched from the upstream's `upstream_url`, from our own image cache,
    /// and shows our URL for it wherever the upstream's is shown.
    pub(crate) fn serve_upstream_art(
        &self,
        upstream_url: &str,
        image: Vec<u8>,
        extension: &str,
    ) -> Result<(), String> {
        if self.stopped.is_cancelled() {
            return Ok(()); // the stream is gone: nothing to cache
        }
        let mut art = self.upstream_art();
        let name = self
            .env
            .images
            .put(self.image_owner, &self.stream, image, extension)
            .map_err(|err| err.to_string())?;
        let ours = format!("{}/__image_cache?name={name}", self.env.art_url_base);
        *art = Some(UpstreamArt {
            theirs: upstream_url.to_owned(),
            name,
            ours: ours.clone(),
        });
        self.properties.send_if_modified(|current| {
            let shown = current.metadata.as_ref().and_then(|m| m.text("artUrl"));
            if shown != Some(upstream_url) {
                return false;
            }
            let mut properties = (**current).clone();
            if let Some(metadata) = properties.metadata.as_mut() {
                metadata.set_art_url(ours);
            }
            *current = Arc::new(properties);
            true
        });
        drop(art);
        if self.stopped.is_cancelled() {
            self.env.images.clear(self.image_owner);
        }
        Ok(())
    }

    /// The upstream link is down: no player to show, no cover to serve.
    pub(crate) fn forget_upstream(&self) {
        *self.upstream_art() = None;
        self.forget_player();
    }

    /// Makes this a meta stream's control over `inputs` (in order); set once.
    pub(crate) fn set_meta_inputs(&self, inputs: Vec<MetaInput>) {
        let _ = self.inputs.set(inputs);
    }

    fn delegate(&self) -> Option<Arc<StreamControl>> {
        self.delegate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Makes this stream show `source`'s properties and pass control requests to it (a meta
    /// stream's active input; `None`: back to its own).
    pub(crate) fn follow(&self, source: Option<Arc<StreamControl>>) {
        let properties = source
            .as_ref()
            .map_or_else(|| Arc::new(Properties::default()), |s| s.properties());
        *self
            .delegate
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = source;
        self.mirror(properties);
    }

    /// Shows `properties` as they are (a meta stream's active input's).
    pub(crate) fn mirror(&self, properties: Arc<Properties>) {
        self.properties.send_if_modified(|current| {
            if *current == properties {
                return false;
            }
            *current = properties;
            true
        });
    }

    /// Fires when the stream stops.
    pub(crate) fn stopped(&self) -> CancellationToken {
        self.stopped.clone()
    }

    /// Takes the metadata a stream's source reports (librespot's log, shairport-sync's
    /// metadata pipe): it replaces the metadata, and every other property stays (a plugin of
    /// the same stream keeps its flags).
    pub(crate) fn report_metadata(&self, metadata: Value) {
        let mut properties = self.properties().to_json();
        properties["metadata"] = metadata;
        self.apply(&properties);
    }

    /// Takes a properties object from the plugin: unreadable keys are logged and dropped,
    /// no `metadata` keeps the current metadata, inline cover art is cached and replaced by
    /// its URL. Announced only when something changed.
    fn apply(&self, value: &Value) {
        if self.stopped.is_cancelled() {
            return; // the stream is gone: nothing to show, nothing to cache
        }
        let mut problems = Vec::new();
        let mut properties = match Properties::from_json(value, &mut problems) {
            Ok(properties) => properties,
            Err(err) => {
                warn!(stream = %self.stream, "stream plugin sent bad properties: {err}");
                return;
            }
        };
        for problem in problems {
            warn!(stream = %self.stream, "stream plugin properties: {problem}");
        }
        match properties.metadata.as_mut() {
            None => properties.metadata = self.properties().metadata.clone(),
            Some(metadata) => match metadata.art_data() {
                Some(art) if metadata.text("artUrl").is_none() => {
                    let cached = base64::engine::general_purpose::STANDARD
                        .decode(art.data.trim())
                        .map_err(|err| format!("artData is not base64: {err}"))
                        .and_then(|bytes| {
                            self.env
                                .images
                                .put(self.image_owner, &self.stream, bytes, &art.extension)
                                .map_err(|err| err.to_string())
                        });
                    match cached {
                        Ok(name) => metadata.set_art_url(format!(
                            "{}/__image_cache?name={name}",
                            self.env.art_url_base
                        )),
                        Err(err) => {
                            warn!(stream = %self.stream, "stream plugin cover art dropped: {err}");
                            self.env.images.clear(self.image_owner);
                            metadata.drop_art_data();
                        }
                    }
                }
                _ => {
                    self.env.images.clear(self.image_owner);
                    metadata.drop_art_data();
                }
            },
        }
        self.properties.send_if_modified(|current| {
            if **current == properties {
                return false;
            }
            *current = Arc::new(properties);
            true
        });
        if self.stopped.is_cancelled() {
            // Stopped while this ran: what it cached goes with the stream.
            self.env.images.clear(self.image_owner);
        }
    }

    /// The plugin is gone: its player's state with it.
    fn forget_player(&self) {
        self.env.images.clear(self.image_owner);
        self.properties.send_if_modified(|current| {
            if **current == Properties::default() {
                return false;
            }
            *current = Arc::new(Properties::default());
            true
        });
    }
}

/// Reads one line from a plugin as the supervisor does, and the properties in it as a
/// stream takes them. For fuzzing and tests: any input is an answer, never a panic.
///
/// # Returns
///
/// `None` when the line is not understood; otherwise whether every properties object in it
/// (if any) reads back the same from the JSON it is shown as.
pub fn read_line_summary(line: &str) -> Option<bool> {
    let properties = match wire::parse(line).ok()? {
        wire::FromPlugin::Properties(params) => params,
        wire::FromPlugin::Response {
            outcome: Ok(result),
            ..
        } => result,
        _ => return Some(true),
    };
    let Ok(read) = Properties::from_json(&properties, &mut Vec::new()) else {
        return Some(true);
    };
    let mut problems = Vec::new();
    let again = Properties::from_json(&read.to_json(), &mut problems);
    Some(problems.is_empty() && again.is_ok_and(|again| again == read))
}

#[cfg(test)]
mod tests;

//! The relay's settings as the running code reads them: the one live place for every value
//! that can change while the relay runs (through the control API), plus the fixed start-up
//! values sessions need. Start-up values come from the validated
//! [`Config`].
//!
//! Values derived from a live value (the send batch window and the send timeout follow the
//! buffer) are computed on each read, never copied at start-up, so `UpdateConfig
//! stream.buffer` reaches them too. Live values are atomics (read on hot paths without locks)
//! or a `watch` channel where a task must wake up on a change (the diagnostics interval).

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;

/// Applies a new log filter directive (a tracing `EnvFilter` string) to the running
/// subscriber. `main` builds it around a `tracing_subscriber::reload` handle; the library
/// stays independent of how the subscriber is assembled.
#[derive(Clone)]
pub struct LogReload(Arc<ApplyFilter>);

/// Installs a filter directive or says why not.
type ApplyFilter = dyn Fn(&str) -> Result<(), String> + Send + Sync;

impl LogReload {
    /// Wraps `apply`, which must install `directive` or say why it cannot.
    pub fn new(apply: impl Fn(&str) -> Result<(), String> + Send + Sync + 'static) -> Self {
        Self(Arc::new(apply))
    }

    /// Installs `directive`.
    ///
    /// # Errors
    ///
    /// The reason the subscriber refused it.
    pub(crate) fn apply(&self, directive: &str) -> Result<(), String> {
        (self.0)(directive)
    }
}

impl fmt::Debug for LogReload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogReload")
    }
}

/// The live values; one per relay, shared by every task.
#[derive(Debug)]
pub(crate) struct LiveSettings {
    /// Volume (percent) of a client seen for the first time.
    pub(crate) initial_volume: u16,
    /// How long a new connection may take to say Hello.
    pub(crate) hello_timeout: Duration,
    /// Whether a session falls back to ordinary sends once the kernel copies zerocopy sends.
    pub(crate) zerocopy_auto_fallback: bool,
    /// Whether muted clients still receive audio.
    pub(crate) send_to_muted: bool,
    /// `stream.send_batch_ms` as configured; the window used is [`Self::send_batch`].
    send_batch_ms: u32,
    buffer_ms: AtomicU32,
    zerocopy_enabled: AtomicBool,
    zerocopy_threshold: AtomicUsize,
    diagnostics_interval: watch::Sender<Duration>,
    /// The filter as the user wrote it (snapserver or EnvFilter form).
    log_filter: Mutex<String>,
    log_reload: Option<LogReload>,
}

impl LiveSettings {
    /// Start-up values from `config`; `log_reload` is `None` when the log filter cannot be
    /// changed at run time (e.g. an embedding that owns its own subscriber).
    pub(crate) fn new(config: &Config, log_reload: Option<LogReload>) -> Self {
        Self {
            initial_volume: u16::from(config.streaming_client.initial_volume),
            hello_timeout: Duration::from_millis(config.server.hello_timeout_ms),
            zerocopy_auto_fallback: config.stream.zerocopy_auto_fallback,
            send_to_muted: config.stream.send_to_muted,
            send_batch_ms: config.stream.send_batch_ms,
            buffer_ms: AtomicU32::new(config.stream.buffer),
            zerocopy_enabled: AtomicBool::new(config.stream.zerocopy),
            zerocopy_threshold: AtomicUsize::new(config.stream.zerocopy_threshold),
            diagnostics_interval: watch::Sender::new(Duration::from_secs(
                config.server.diagnostics_interval_s,
            )),
            log_filter: Mutex::new(config.logging.filter.clone()),
            log_reload,
        }
    }

    /// End-to-end latency clients are told to use, in milliseconds.
    pub(crate) fn buffer_ms(&self) -> u32 {
        self.buffer_ms.load(Ordering::Relaxed)
    }

    /// How long a session collects chunks before sending them in one go: the configured
    /// window, but at most a tenth of the current buffer, so a client keeps ~90 % of its
    /// headroom.
    pub(crate) fn send_batch(&self) -> Duration {
        Duration::from_millis(u64::from(self.send_batch_ms.min(self.buffer_ms() / 10)))
    }

    /// How long one send may stall before the client counts as not reading: the current
    /// buffer, at least 2 s (by then its buffer has run dry anyway).
    pub(crate) fn send_timeout(&self) -> Duration {
        Duration::from_millis(u64::from(self.buffer_ms()).max(2000))
    }

    /// Sets the buffer for sessions from now on; the caller pushes it to connected clients.
    pub(crate) fn set_buffer_ms(&self, buffer_ms: u32) {
        self.buffer_ms.store(buffer_ms, Ordering::Relaxed);
    }

    /// Whether new sessions should try zerocopy sends.
    pub(crate) fn zerocopy_enabled(&self) -> bool {
        self.zerocopy_enabled.load(Ordering::Relaxed)
    }

    /// Switches zerocopy on or off for sessions created from now on.
    pub(crate) fn set_zerocopy_enabled(&self, enabled: bool) {
        self.zerocopy_enabled.store(enabled, Ordering::Relaxed);
    }

    /// Messages of at least this many bytes are sent with zerocopy (when enabled).
    pub(crate) fn zerocopy_threshold(&self) -> usize {
        self.zerocopy_threshold.load(Ordering::Relaxed)
    }

    /// Sets the zerocopy size threshold.
    pub(crate) fn set_zerocopy_threshold(&self, bytes: usize) {
        self.zerocopy_threshold.store(bytes, Ordering::Relaxed);
    }

    /// Time between periodic diagnostics reports.
    pub(crate) fn diagnostics_interval(&self) -> Duration {
        *self.diagnostics_interval.borrow()
    }

    /// A receiver that sees every change of the diagnostics interval, so a reporting task can
    /// re-arm its timer at once.
    pub(crate) fn watch_diagnostics_interval(&self) -> watch::Receiver<Duration> {
        self.diagnostics_interval.subscribe()
    }

    /// Sets the diagnostics interval and wakes whoever watches it.
    pub(crate) fn set_diagnostics_interval(&self, interval: Duration) {
        self.diagnostics_interval.send_replace(interval);
    }

    /// The log filter as last set (config or control API).
    pub(crate) fn log_filter(&self) -> String {
        self.log_filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Installs `filter` (as written) whose EnvFilter form is `directive`.
    ///
    /// # Errors
    ///
    /// No reload hook, or the subscriber refused the directive.
    pub(crate) fn set_log_filter(&self, filter: &str, directive: &str) -> Result<(), String> {
        let reload = self
            .log_reload
            .as_ref()
            .ok_or_else(|| "this process cannot change its log filter".to_owned())?;
        reload.apply(directive)?;
        *self
            .log_filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = filter.to_owned();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_from_config_and_changes_live() {
        let mut config = Config::default();
        config.stream.buffer = 750;
        let live = LiveSettings::new(&config, None);
        assert_eq!(live.buffer_ms(), 750);
        assert_eq!(live.send_batch(), Duration::from_millis(60));
        live.set_buffer_ms(300);
        assert_eq!(live.buffer_ms(), 300);
        // Derived values follow the live buffer, not the start-up one.
        assert_eq!(live.send_batch(), Duration::from_millis(30));
        assert_eq!(live.send_timeout(), Duration::from_secs(2));
        live.set_buffer_ms(5000);
        assert_eq!(live.send_timeout(), Duration::from_secs(5));
        let mut interval = live.watch_diagnostics_interval();
        live.set_diagnostics_interval(Duration::from_secs(5));
        assert!(interval.has_changed().unwrap());
        assert_eq!(*interval.borrow_and_update(), Duration::from_secs(5));
        assert!(live.set_log_filter("debug", "debug").is_err());
        assert_eq!(live.log_filter(), "*:info");
    }

    #[test]
    fn log_filter_goes_through_the_hook() {
        let seen = Arc::new(Mutex::new(String::new()));
        let sink = seen.clone();
        let live = LiveSettings::new(
            &Config::default(),
            Some(LogReload::new(move |d| {
                *sink.lock().unwrap() = d.to_owned();
                Ok(())
            })),
        );
        live.set_log_filter("*:debug", "debug").unwrap();
        assert_eq!(*seen.lock().unwrap(), "debug");
        assert_eq!(live.log_filter(), "*:debug");
    }
}

//! Settings that can change while the relay runs (through the control API): each is read
//! live by the code it steers, so a change needs no restart. Start-up values come from the
//! validated [`Config`](crate::config::Config).
//!
//! Values are atomics (read on hot paths without locks) or a `watch` channel where a task must
//! wake up on a change (the diagnostics interval).

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
    pub fn apply(&self, directive: &str) -> Result<(), String> {
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
pub struct LiveSettings {
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
    pub fn new(config: &Config, log_reload: Option<LogReload>) -> Self {
        Self {
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
    pub fn buffer_ms(&self) -> u32 {
        self.buffer_ms.load(Ordering::Relaxed)
    }

    /// Sets the buffer for sessions from now on; the caller pushes it to connected clients.
    pub fn set_buffer_ms(&self, buffer_ms: u32) {
        self.buffer_ms.store(buffer_ms, Ordering::Relaxed);
    }

    /// Whether new sessions should try zerocopy sends.
    pub fn zerocopy_enabled(&self) -> bool {
        self.zerocopy_enabled.load(Ordering::Relaxed)
    }

    /// Switches zerocopy on or off for sessions created from now on.
    pub fn set_zerocopy_enabled(&self, enabled: bool) {
        self.zerocopy_enabled.store(enabled, Ordering::Relaxed);
    }

    /// Messages of at least this many bytes are sent with zerocopy (when enabled).
    pub fn zerocopy_threshold(&self) -> usize {
        self.zerocopy_threshold.load(Ordering::Relaxed)
    }

    /// Sets the zerocopy size threshold.
    pub fn set_zerocopy_threshold(&self, bytes: usize) {
        self.zerocopy_threshold.store(bytes, Ordering::Relaxed);
    }

    /// Time between periodic diagnostics reports.
    pub fn diagnostics_interval(&self) -> Duration {
        *self.diagnostics_interval.borrow()
    }

    /// A receiver that sees every change of the diagnostics interval, so a reporting task can
    /// re-arm its timer at once.
    pub fn watch_diagnostics_interval(&self) -> watch::Receiver<Duration> {
        self.diagnostics_interval.subscribe()
    }

    /// Sets the diagnostics interval and wakes whoever watches it.
    pub fn set_diagnostics_interval(&self, interval: Duration) {
        self.diagnostics_interval.send_replace(interval);
    }

    /// The log filter as last set (config or control API).
    pub fn log_filter(&self) -> String {
        self.log_filter
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Whether [`set_log_filter`](Self::set_log_filter) can work in this process.
    pub fn can_reload_log_filter(&self) -> bool {
        self.log_reload.is_some()
    }

    /// Installs `filter` (as written) whose EnvFilter form is `directive`.
    ///
    /// # Errors
    ///
    /// No reload hook, or the subscriber refused the directive.
    pub fn set_log_filter(&self, filter: &str, directive: &str) -> Result<(), String> {
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
        live.set_buffer_ms(300);
        assert_eq!(live.buffer_ms(), 300);
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

//! Where the server's log lines go (`logging.sink`) and what they look like: snaprelay's own
//! format, or snapserver's (`2026-12-07 23-40-00.123 [Info] (pacer) message`) when the binary
//! runs as `snapserver`, for the programs that read a snapserver's output (docs/DROP_IN.md).

use std::ffi::CString;
use std::fmt;
use std::fs::OpenOptions;
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::OnceLock;

use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// Where log lines go: snapserver's `logging.sink` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Nowhere.
    Null,
    /// Appended to this file.
    File(PathBuf),
    /// The system log (syslog; journald reads it), one message per line.
    System,
}

impl Sink {
    /// Parses a `logging.sink` value; `default` stands for the empty one.
    ///
    /// # Errors
    ///
    /// A value that is none of `stdout`, `stderr`, `null`, `system`, `file:<path>`.
    pub fn parse(value: &str, default: Sink) -> Result<Self, String> {
        match value.trim() {
            "" => Ok(default),
            "stdout" => Ok(Self::Stdout),
            "stderr" => Ok(Self::Stderr),
            "null" => Ok(Self::Null),
            "system" => Ok(Self::System),
            other => match other.strip_prefix("file:") {
                Some(path) if !path.trim().is_empty() => Ok(Self::File(PathBuf::from(path.trim()))),
                _ => Err(format!(
                    "logging.sink '{other}': expected stdout, stderr, null, system or file:<path>"
                )),
            },
        }
    }

    /// A writer for the fmt layer; `program` names the process in the system log.
    ///
    /// # Errors
    ///
    /// A log file that cannot be opened for appending.
    pub fn make_writer(&self, program: &str) -> io::Result<BoxMakeWriter> {
        Ok(match self {
            Self::Stdout => BoxMakeWriter::new(io::stdout),
            Self::Stderr => BoxMakeWriter::new(io::stderr),
            Self::Null => BoxMakeWriter::new(io::sink),
            Self::File(path) => {
                let file = OpenOptions::new().create(true).append(true).open(path)?;
                BoxMakeWriter::new(std::sync::Mutex::new(file))
            }
            Self::System => BoxMakeWriter::new(SystemLog::open(program)),
        })
    }

    /// Whether lines carry their own time stamp (the system log adds its own).
    pub fn stamps_time(&self) -> bool {
        !matches!(self, Self::System)
    }

    /// Whether this is a terminal worth colouring.
    pub fn is_terminal(&self) -> bool {
        use std::io::IsTerminal;
        match self {
            Self::Stdout => io::stdout().is_terminal(),
            Self::Stderr => io::stderr().is_terminal(),
            _ => false,
        }
    }
}

/// The system log through libc's `syslog(3)`.
#[derive(Debug, Clone, Copy)]
struct SystemLog;

impl SystemLog {
    /// Opens the log under `program`'s name (once per process; libc keeps the name).
    fn open(program: &str) -> Self {
        static IDENT: OnceLock<CString> = OnceLock::new();
        let ident = IDENT
            .get_or_init(|| CString::new(program).unwrap_or_else(|_| CString::from(c"snaprelay")));
        // SAFETY: `ident` lives in a static for the rest of the process, as openlog(3)
        // requires (it keeps the pointer); the flags are plain constants.
        unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
        Self
    }
}

/// One log line on its way to the system log, sent when dropped.
struct SystemLogLine {
    priority: libc::c_int,
    line: Vec<u8>,
}

impl Write for SystemLogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SystemLogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end().replace('\0', " ");
        if text.is_empty() {
            return;
        }
        if let Ok(message) = CString::new(text) {
            // SAFETY: the format is a literal "%s" and its one argument a NUL-terminated
            // string that outlives the call.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), message.as_ptr()) };
        }
    }
}

impl<'a> MakeWriter<'a> for SystemLog {
    type Writer = SystemLogLine;

    fn make_writer(&'a self) -> Self::Writer {
        SystemLogLine {
            priority: libc::LOG_INFO,
            line: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let priority = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            Level::DEBUG | Level::TRACE => libc::LOG_DEBUG,
        };
        SystemLogLine {
            priority,
            line: Vec::new(),
        }
    }
}

/// snapserver's line format: `2026-12-07 23-40-00.123 [Info] (Tag) message`, the tag being the
/// last part of the module that logged.
#[derive(Debug, Clone, Copy)]
pub struct SnapserverFormat {
    /// Whether to start lines with the local time (not for the system log).
    pub time: bool,
}

impl<S, N> FormatEvent<S, N> for SnapserverFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if self.time {
            write!(writer, "{} ", local_time())?;
        }
        let tag = meta.target().rsplit("::").next().unwrap_or("snaprelay");
        write!(writer, "[{}] ({tag}) ", level_name(*meta.level()))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// snapserver's name of a level.
pub fn level_name(level: Level) -> &'static str {
    match level {
        Level::ERROR => "Error",
        Level::WARN => "Warning",
        Level::INFO => "Info",
        Level::DEBUG => "Debug",
        Level::TRACE => "Trace",
    }
}

/// The local time as snapserver prints it: `2026-12-07 23-40-00.123`.
pub fn local_time() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let seconds = libc::time_t::try_from(now.as_secs()).unwrap_or(0);
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct; localtime_r fills it
    // from `seconds` and touches nothing else (the reentrant variant, no static buffer).
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        libc::localtime_r(&seconds, &mut tm);
        tm
    };
    format!(
        "{:04}-{:02}-{:02} {:02}-{:02}-{:02}.{:03}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        now.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sinks_parse_as_snapserver_names_them() {
        assert_eq!(Sink::parse("", Sink::Stderr), Ok(Sink::Stderr));
        assert_eq!(Sink::parse(" stdout ", Sink::Stderr), Ok(Sink::Stdout));
        assert_eq!(Sink::parse("null", Sink::Stderr), Ok(Sink::Null));
        assert_eq!(Sink::parse("system", Sink::Stderr), Ok(Sink::System));
        assert_eq!(
            Sink::parse("file:/var/log/snapserver.log", Sink::Stderr),
            Ok(Sink::File("/var/log/snapserver.log".into()))
        );
        assert!(Sink::parse("file:", Sink::Stderr).is_err());
        assert!(Sink::parse("syslog", Sink::Stderr).is_err());
    }

    #[test]
    fn local_time_has_snapserver_shape() {
        let time = local_time();
        // 2026-12-07 23-40-00.123
        assert_eq!(time.len(), 23, "{time}");
        assert_eq!(&time[4..5], "-");
        assert_eq!(&time[10..11], " ");
        assert_eq!(&time[13..14], "-");
        assert_eq!(&time[19..20], ".");
    }
}

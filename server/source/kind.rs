//! What kind of input a stream reads ([`SourceKind`]), as the scheme modules make it from a
//! source URI (`schemes.rs` and the player sources) and `source::open` runs it.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Which player a player source runs, for what its log and metadata mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Player {
    /// librespot.
    Librespot,
    /// shairport-sync, first tried on this port.
    Airplay {
        /// `port=` (default 5000).
        port: u16,
    },
}

/// What kind of input a stream reads.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum SourceKind {
    /// A named pipe; `create` makes it when missing (`mode=create`, the default).
    Pipe {
        /// FIFO path.
        path: PathBuf,
        /// Create the FIFO if it does not exist.
        create: bool,
    },
    /// A raw PCM file, read at real-time pace and looped at its end.
    File {
        /// File path.
        path: PathBuf,
    },
    /// Listens for one PCM producer at a time.
    TcpServer {
        /// Listen address.
        addr: SocketAddr,
    },
    /// Connects to a PCM producer, reconnecting with backoff.
    TcpClient {
        /// Producer address.
        addr: SocketAddr,
    },
    /// Runs a command and reads its stdout (config file only, never from the network).
    Process {
        /// Executable.
        path: PathBuf,
        /// Its arguments (`params=`, split like a shell would on spaces and double quotes).
        args: Vec<String>,
        /// `wd_timeout`: restart it when its stderr has been silent this long.
        watchdog: Option<std::time::Duration>,
        /// `log_stderr`: its stderr lines go to the log at info level (else debug).
        log_stderr: bool,
    },
    /// A player program (librespot, shairport-sync) run as snapserver runs it: PCM on its stdout, what it
    /// plays in its log (config file only, never from the network).
    Player {
        /// Executable (found on `PATH` when not absolute).
        path: PathBuf,
        /// Its arguments, as snapserver builds them from the URI.
        args: Vec<String>,
        /// `killall` running instances of it before the first start.
        killall: bool,
        /// Restart it when its log has been silent this long.
        watchdog: Option<std::time::Duration>,
        /// Which player, for what its log means.
        player: Player,
    },
    /// Plays the first of its inputs (streams defined before it) that is playing.
    Meta {
        /// The input streams' names, in order of preference.
        inputs: Vec<String>,
    },
    /// Re-serves a stream of an upstream Snapcast server, encoded chunks unchanged.
    Upstream(crate::upstream::Upstream),
    /// Captures from an ALSA device (built with the `alsa` feature).
    Alsa {
        /// ALSA device name (`device=`, default `hw:0`).
        device: String,
    },
    /// A built-in sine generator; one frequency per channel (the last repeats).
    Tone {
        /// Frequencies in Hz.
        frequencies: Vec<f64>,
        /// Peak amplitude as a fraction of full scale.
        amplitude: f64,
    },
}

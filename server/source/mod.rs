//! Stream inputs: readers for each source kind, and the pacer that turns their bytes into
//! timestamped PCM chunks. Readers never block a runtime worker and never return EOF: they
//! reopen on their own and simply wait while no data flows.

mod airplay;
mod airplay_metadata;
#[cfg(feature = "alsa")]
mod alsa;
mod channel;
mod error;
mod file;
mod kind;
mod librespot;
pub(crate) mod pacer;
mod pipe;
mod process;
mod redact;
mod schemes;
mod spec;
mod stats;
mod tcp;
mod tone;
mod uri;

use std::io;
use std::sync::Arc;

use crate::plugin::StreamControl;

pub use error::SourceError;
pub(crate) use kind::{Player, SourceKind};
pub(crate) use redact::redacted_uri_string;
pub(crate) use schemes::SCHEMES;
pub use spec::{SourceDefaults, SourceSpec, DEFAULT_PLUGIN_DIR};
pub(crate) use stats::SourceStats;
pub use uri::SourceUri;

/// Bytes queued for reading on `fd` (FIONREAD; pipes and sockets), 0 when it cannot be told.
fn queued_bytes(fd: std::os::fd::RawFd) -> usize {
    let mut queued: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(fd, libc::FIONREAD, &mut queued as *mut libc::c_int) };
    if rc == 0 {
        usize::try_from(queued).unwrap_or(0)
    } else {
        0
    }
}

/// A source of raw PCM bytes.
#[derive(Debug)]
pub(crate) enum Reader {
    Pipe(pipe::PipeReader),
    File(file::FileReader),
    TcpServer(tcp::TcpServerReader),
    TcpClient(tcp::TcpClientReader),
    /// Boxed: a supervised process carries more than the other readers.
    Process(Box<process::ProcessReader>),
    Tone(tone::ToneReader),
    /// PCM handed over by another task (a meta stream's active input).
    Channel(channel::ChannelReader),
}

impl Reader {
    /// The reader a spec asks for. Pipes are created, tcp servers bound and players looked
    /// up now, so that a bad path, a taken port or a missing player is a start-up error
    /// rather than a log line. What a player's log says about the track goes to `control`
    /// (the stream's properties); restarts and overruns to `stats`. Must run inside the tokio
    /// runtime (tcp listeners register with it).
    pub(crate) fn open(
        spec: &SourceSpec,
        control: &Arc<StreamControl>,
        stats: &Arc<SourceStats>,
    ) -> io::Result<Self> {
        Ok(match &spec.kind {
            SourceKind::Pipe { path, create } => {
                let reader = pipe::PipeReader::new(path.clone(), *create);
                if *create {
                    reader.prepare()?;
                }
                Self::Pipe(reader)
            }
            SourceKind::File { path } => Self::File(file::FileReader::new(path.clone())),
            SourceKind::TcpServer { addr } => {
                Self::TcpServer(tcp::TcpServerReader::bind(&spec.name, *addr)?)
            }
            SourceKind::TcpClient { addr } => {
                Self::TcpClient(tcp::TcpClientReader::new(&spec.name, *addr))
            }
            SourceKind::Process {
                path,
                args,
                watchdog,
                log_stderr,
            } => Self::Process(Box::new(
                process::ProcessReader::supervised(
                    &spec.name,
                    path.clone(),
                    args.clone(),
                    process::Supervision {
                        watchdog: *watchdog,
                        quiet_stderr: !log_stderr,
                        ..process::Supervision::default()
                    },
                )
                .counting(stats.clone()),
            )),
            SourceKind::Player {
                path,
                args,
                killall,
                watchdog,
                player: Player::Librespot,
            } => {
                let program = process::find_program(path, "librespot")?;
                let control = control.clone();
                let on_stderr = process::OnStderr(Arc::new(move |line: &str| {
                    // Small (a title and a small SVG mark): cheap enough for this task.
                    if let Some(metadata) = librespot::track_metadata(line) {
                        control.report_metadata(metadata);
                    }
                }));
                Self::Process(Box::new(
                    process::ProcessReader::supervised(
                        &spec.name,
                        program,
                        args.clone(),
                        process::Supervision {
                            on_stderr: Some(on_stderr),
                            watchdog: *watchdog,
                            killall: *killall,
                            args_of: None,
                            quiet_stderr: false,
                        },
                    )
                    .counting(stats.clone()),
                ))
            }
            SourceKind::Player {
                path,
                args,
                player: Player::Airplay { port },
                ..
            } => {
                let program = process::find_program(path, "shairport-sync")?;
                let ports = airplay::Ports::new(*port, args.clone());
                tokio::spawn(airplay_metadata::run(
                    spec.name.clone(),
                    ports.clone(),
                    control.clone(),
                ));
                let (name, on_port) = (spec.name.clone(), ports.clone());
                let on_stderr = process::OnStderr(Arc::new(move |line: &str| {
                    if on_port.on_stderr(line) {
                        tracing::error!(stream = %name, port = on_port.port(), "another shairport-sync holds the port; moving to this one");
                    } else if line.contains("Invalid audio output specified") {
                        tracing::error!(stream = %name, "shairport-sync was built without the stdout backend (--with-stdout)");
                    }
                }));
                let args_of = process::ArgsOf(Arc::new(move || ports.args()));
                Self::Process(Box::new(
                    process::ProcessReader::supervised(
                        &spec.name,
                        program,
                        Vec::new(),
                        process::Supervision {
                            on_stderr: Some(on_stderr),
                            watchdog: None,
                            killall: false,
                            args_of: Some(args_of),
                            quiet_stderr: false,
                        },
                    )
                    .counting(stats.clone()),
                ))
            }
            #[cfg(feature = "alsa")]
            SourceKind::Alsa { device } => Self::Channel(alsa::start(
                &spec.name,
                device,
                spec.sample_format,
                spec.chunk_ms,
                stats.clone(),
            )?),
            #[cfg(not(feature = "alsa"))]
            SourceKind::Alsa { .. } => {
                // Refused when the URI is parsed; kept for the match.
                return Err(io::Error::other("snaprelay was built without ALSA support"));
            }
            SourceKind::Meta { .. } => {
                // Fed by the stream layer, which knows the inputs ([`Reader::channel`]).
                return Err(io::Error::other(
                    "a meta stream's reader is made by its stream",
                ));
            }
            SourceKind::Upstream(_) => {
                // Encoded chunks, not PCM: the stream layer runs the upstream connection.
                return Err(io::Error::other(
                    "an upstream stream has no PCM reader; its stream relays it",
                ));
            }
            SourceKind::Tone {
                frequencies,
                amplitude,
            } => Self::Tone(tone::ToneReader::new(
                spec.sample_format,
                frequencies.clone(),
                *amplitude,
            )),
        })
    }

    /// A reader of PCM blocks sent on `blocks` (a meta stream's input).
    pub(crate) fn channel(blocks: tokio::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        Self::Channel(channel::ChannelReader::new(blocks))
    }

    /// Whether a read that has to wait means data produced in real time, just now (a writer
    /// or a process feeding us), rather than I/O latency (a file) or nothing (the tone).
    pub(crate) fn is_live(&self) -> bool {
        match self {
            Self::Pipe(_)
            | Self::TcpServer(_)
            | Self::TcpClient(_)
            | Self::Process(_)
            | Self::Channel(_) => true,
            Self::File(_) | Self::Tone(_) => false,
        }
    }

    /// Bytes the writer has already handed over but we have not read yet (a pipe's or a
    /// socket's kernel queue; a meta input's current block): how far ahead of us the writer
    /// is. 0 where that cannot be seen.
    pub(crate) fn pending_bytes(&self) -> usize {
        match self {
            Self::Pipe(pipe) => pipe.pending_bytes(),
            Self::TcpServer(tcp) => tcp.pending_bytes(),
            Self::TcpClient(tcp) => tcp.pending_bytes(),
            Self::Process(process) => process.pending_bytes(),
            Self::Channel(channel) => channel.pending_bytes(),
            Self::File(_) | Self::Tone(_) => 0,
        }
    }

    /// Reads at least one byte, waiting as long as needed.
    pub(crate) async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Pipe(pipe) => pipe.read(buf).await,
            Self::File(file) => file.read(buf).await,
            Self::TcpServer(tcp) => tcp.read(buf).await,
            Self::TcpClient(tcp) => tcp.read(buf).await,
            Self::Process(process) => process.read(buf).await,
            Self::Tone(tone) => Ok(tone.read(buf)),
            Self::Channel(channel) => channel.read(buf).await,
        }
    }
}

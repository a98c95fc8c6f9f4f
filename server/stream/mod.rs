//! One stream: its source task, its encoder, and the fan-out of its serialized chunks.
//!
//! Each encoded unit is serialized into a WireChunk message exactly once and published as
//! `Bytes`; every session of the stream sends those same bytes (no per-client copy).
//!
//! Reading and pacing the source stay on the runtime; encoding and publishing run on a
//! dedicated thread per stream, fed through a bounded channel, so a slow encoder can never
//! delay a time-sync reply (issue 6). The runtime side never blocks on that channel: when it
//! is full the encoder is behind, and the chunk is dropped and counted.
//!
//! A stream reports playing/idle on a `watch` channel ([`Stream::watch_playing`]); the relay
//! core forwards changes to the state, so this layer never calls up into it.

mod list;
mod meta;
mod relayed;

pub(crate) use list::{Removal, StreamList};

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::clock;
use crate::encoder::{self, Encoder, Unit};
use crate::plugin::{PluginEnv, StreamControl};
use crate::pool::BufferPool;
use crate::protocol::{CodecHeader, Message, Tv, WireChunk};
use crate::sample_format::SampleFormat;
use crate::source::pacer::{self, Paced, Pacer};
use crate::source::{Reader, SourceKind, SourceSpec, SourceStats};

/// A serialized WireChunk, shared by every session of its stream.
#[derive(Debug, Clone)]
pub(crate) struct Chunk {
    /// Capture time of the first sample, µs on the server clock.
    pub(crate) timestamp_us: i64,
    /// The whole message, header included.
    pub(crate) message: Bytes,
    /// The timestamp to send instead to a client whose decoder starts with this chunk, when
    /// the codec's fresh decoder plays less of it (see [`crate::encoder::Unit`]).
    pub(crate) fresh_decoder_timestamp_us: Option<i64>,
    /// A new codec: not audio, but the CodecHeader message every session sends before the
    /// chunks that follow (an upstream's codec changed). In the chunk channel, so no
    /// session can see a chunk of the new codec before its header.
    pub(crate) codec_header: Option<Bytes>,
}

/// The relay's buffer as it is now (`UpdateConfig stream.buffer` changes it), in ms.
pub(crate) type LiveBuffer = Arc<dyn Fn() -> u32 + Send + Sync>;

/// Live figures of one stream.
#[derive(Debug, Default)]
pub(crate) struct StreamStats {
    /// Chunks published.
    pub(crate) chunks: AtomicU64,
    /// Message bytes published (once per chunk, not per client).
    pub(crate) bytes: AtomicU64,
    /// Source pauses, each bridged with silence on the stream's timeline.
    pub(crate) stalls: AtomicU64,
    /// Times the timeline restarted: the source was away longer than clients buffer.
    pub(crate) resyncs: AtomicU64,
    /// How far ahead of real time its writer keeps its data, µs (the pacer's learned lead).
    pub(crate) source_lead_us: std::sync::atomic::AtomicI64,
    /// PCM chunks dropped because the encoder thread was still busy with earlier ones.
    pub(crate) encoder_overruns: AtomicU64,
    /// Whether data is flowing.
    pub(crate) playing: AtomicBool,
    /// Chunks its sessions skipped as too late to play, over every session it ever had.
    pub(crate) chunks_late: AtomicU64,
    /// Chunks its sessions lost by falling a whole queue behind, over every session.
    pub(crate) chunks_dropped: AtomicU64,
    /// What its input did (restarts, capture overruns).
    pub(crate) source: Arc<SourceStats>,
}

/// Why a stream could not start.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The codec is unusable with this source.
    #[error("stream '{name}': {source}")]
    Encoder {
        /// Stream name.
        name: String,
        /// Why.
        source: encoder::EncoderError,
    },
    /// The encoder thread could not be spawned.
    #[error("stream '{name}': cannot start the encoder thread: {source}")]
    EncoderThread {
        /// Stream name.
        name: String,
        /// Why.
        source: std::io::Error,
    },
    /// A meta stream's input is not a stream started before it, or cannot feed it.
    #[error("stream '{name}': meta input {reason}")]
    MetaInput {
        /// Stream name.
        name: String,
        /// Which input and why.
        reason: String,
    },
    /// Its stream plugin (`controlscript`) is not there.
    #[error("stream '{name}': control script not found: {}", .path.display())]
    ControlScript {
        /// Stream name.
        name: String,
        /// Where it was looked for.
        path: std::path::PathBuf,
    },
    /// The input could not be prepared (e.g. the FIFO cannot be created).
    #[error("stream '{name}': cannot open {uri}: {source}")]
    Open {
        /// Stream name.
        name: String,
        /// The source URI.
        uri: String,
        /// Why.
        source: std::io::Error,
    },
}

/// A running stream, cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    spec: SourceSpec,
    /// Its codec's name; an upstream's changes with the upstream.
    codec: std::sync::RwLock<&'static str>,
    /// The sample format it shows: the source's, or what an upstream's codec header says.
    shown_format: std::sync::RwLock<SampleFormat>,
    /// The CodecHeader message, serialized once and sent to every joiner (docs/PROTOCOL.md
    /// §2.6); `None` while an upstream has not said its codec yet.
    codec_header: std::sync::RwLock<Option<Bytes>>,
    /// Its upstream link, when it relays an upstream server's stream.
    upstream: Option<Arc<crate::upstream::UpstreamStats>>,
    chunk_tx: broadcast::Sender<Chunk>,
    stats: StreamStats,
    /// Buffers for serialized chunks; each returns when the last session and the kernel
    /// are done with it.
    pool: BufferPool,
    /// Idle/playing changes, for whoever announces them (`Stream.OnUpdate`,
    /// docs/SOURCES.md §3).
    playing_tx: watch::Sender<bool>,
    /// Properties, metadata and control (its stream plugin, when it has one).
    control: Arc<StreamControl>,
    /// Fires when the stream stops (removed, or the relay shuts down).
    cancel: CancellationToken,
    /// Its PCM chunks, for meta streams that play it (sent only while one listens).
    pcm_tx: broadcast::Sender<Arc<[u8]>>,
}

impl Stream {
    /// Opens the source and starts its task; the task ends when `cancel` fires.
    pub(crate) fn start(
        spec: SourceSpec,
        buffer: LiveBuffer,
        pool: BufferPool,
        plugins: &Arc<PluginEnv>,
        earlier: &[Stream],
        cancel: CancellationToken,
        tracker: &tokio_util::task::TaskTracker,
    ) -> Result<Self, StreamError> {
        if let Some(script) = &spec.control_script {
            if !script.path.is_file() {
                return Err(StreamError::ControlScript {
                    name: spec.name.clone(),
                    path: script.path.clone(),
                });
            }
        }
        let control = StreamControl::start(
            &spec.name,
            spec.control_script.clone(),
            plugins.clone(),
            cancel.clone(),
            tracker,
        );
        if let SourceKind::Upstream(upstream) = &spec.kind {
            let upstream = upstream.clone();
            return Ok(relayed::start(
                spec, upstream, buffer, pool, control, cancel, tracker,
            ));
        }
        let buffer_ms = buffer();
        let encoder = encoder::new_encoder(&spec.codec, &spec.codec_options, spec.sample_format)
            .map_err(|source| {
                cancel.cancel(); // its plugin, if it started
                StreamError::Encoder {
                    name: spec.name.clone(),
                    source,
                }
            })?;
        // A meta stream reads what its feeder hands over from the active input.
        let mut meta_feed = None;
        let stats = StreamStats::default();
        let reader = if let SourceKind::Meta { inputs } = &spec.kind {
            let inputs = meta_inputs(&spec, inputs, earlier).inspect_err(|_| cancel.cancel())?;
            let (blocks_tx, blocks_rx) = tokio::sync::mpsc::channel(64);
            meta_feed = Some((inputs, blocks_tx));
            Reader::channel(blocks_rx)
        } else {
            Reader::open(&spec, &control, &stats.source).map_err(|source| {
                cancel.cancel(); // its plugin, if it started
                StreamError::Open {
                    name: spec.name.clone(),
                    uri: spec.uri.redacted().to_uri_string(),
                    source,
                }
            })?
        };
        let codec_header = Bytes::from(
            Message::CodecHeader(CodecHeader {
                codec: encoder.name().to_owned(),
                header: Bytes::copy_from_slice(encoder.header()),
            })
            .encode(0, 0, Tv::default()),
        );
        // Enough chunks for a whole client buffer, and for the longest burst the pacer makes
        // (a pause's hole filled with silence at once); a session further behind than that is
        // past saving and skips ahead (counted as lagged).
        let buffer_chunks = (buffer_ms / spec.chunk_ms.max(1)) as usize;
        let capacity = buffer_chunks.max(pacer::max_burst_chunks(spec.chunk_ms, buffer_ms)) + 16;
        let (chunk_tx, _) = broadcast::channel(capacity);
        let stream = Self {
            inner: Arc::new(Inner {
                codec: std::sync::RwLock::new(encoder.name()),
                shown_format: std::sync::RwLock::new(spec.sample_format),
                spec,
                codec_header: std::sync::RwLock::new(Some(codec_header)),
                upstream: None,
                chunk_tx,
                stats,
                pool,
                playing_tx: watch::Sender::new(false),
                control,
                cancel: cancel.clone(),
                pcm_tx: broadcast::channel(32).0,
            }),
        };
        // Room for the longest burst the pacer makes (a source pause's hole filled with
        // silence at once, up to a client buffer); in steady state one or two chunks wait.
        let queue = pacer::max_burst_chunks(stream.inner.spec.chunk_ms, buffer_ms);
        let (pcm_tx, pcm_rx) = mpsc::sync_channel::<PcmBlock>(queue);
        // Buffers travel back for reuse, so steady state allocates nothing per chunk.
        let (recycle_tx, recycle_rx) = mpsc::sync_channel::<Vec<u8>>(queue + 2);
        let publisher = stream.clone();
        std::thread::Builder::new()
            .name(format!("encode-{}", stream.name()))
            .spawn(move || publisher.encode_loop(encoder, pcm_rx, recycle_tx))
            .map_err(|source| {
                cancel.cancel(); // its plugin, if it started
                StreamError::EncoderThread {
                    name: stream.name().to_owned(),
                    source,
                }
            })?;
        if let Some((inputs, blocks)) = meta_feed {
            tracker.spawn(meta::feed(
                stream.name().to_owned(),
                stream.sample_format(),
                inputs,
                stream.control().clone(),
                blocks,
                cancel.clone(),
            ));
        }
        let task = stream.clone();
        let after = stream.clone();
        tracker.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = task.run(reader, buffer_ms, pcm_tx, recycle_rx) => {}
            }
            // Dropping the sender (with the `run` future) closes the channel: the encoder
            // thread finishes what is queued and ends.
            // Stopped: whoever watches (a meta stream, the notifications) sees it idle.
            if after.stats().playing.swap(false, Ordering::Relaxed) {
                after.announce_state(false);
            }
        });
        Ok(stream)
    }

    /// Stream id (the source's `name`).
    pub(crate) fn name(&self) -> &str {
        &self.inner.spec.name
    }

    /// Whether clients can play it: a `codec=null` stream only feeds meta streams.
    pub(crate) fn playable(&self) -> bool {
        self.codec() != crate::encoder::NULL_CODEC
    }

    /// Its PCM chunks from now on (for a meta stream playing it).
    pub(crate) fn pcm(&self) -> broadcast::Receiver<Arc<[u8]>> {
        self.inner.pcm_tx.subscribe()
    }

    /// Fires when the stream stops (removed, or the relay shuts down).
    pub(crate) fn stopped(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.inner.cancel.clone().cancelled_owned()
    }

    /// Its properties, metadata and control.
    pub(crate) fn control(&self) -> &Arc<StreamControl> {
        &self.inner.control
    }

    /// Its input's PCM format (fixed; meta streams convert from it per block).
    pub(crate) fn sample_format(&self) -> SampleFormat {
        self.inner.spec.sample_format
    }

    /// The format it shows: its input's, or what a relayed upstream's codec header says.
    pub(crate) fn shown_sample_format(&self) -> SampleFormat {
        *self
            .inner
            .shown_format
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Codec name.
    pub(crate) fn codec(&self) -> &'static str {
        *self
            .inner
            .codec
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Its upstream link, when it relays an upstream server's stream.
    pub(crate) fn upstream(&self) -> Option<&Arc<crate::upstream::UpstreamStats>> {
        self.inner.upstream.as_ref()
    }

    /// The source as configured, defaults filled in.
    pub(crate) fn spec(&self) -> &SourceSpec {
        &self.inner.spec
    }

    /// Sees every idle/playing change of this stream (true while playing).
    pub(crate) fn watch_playing(&self) -> watch::Receiver<bool> {
        self.inner.playing_tx.subscribe()
    }

    fn announce_state(&self, playing: bool) {
        self.inner.playing_tx.send_replace(playing);
    }

    /// Live figures.
    pub(crate) fn stats(&self) -> &StreamStats {
        &self.inner.stats
    }

    /// Sessions currently receiving this stream.
    pub(crate) fn receivers(&self) -> usize {
        self.inner.chunk_tx.receiver_count()
    }

    /// The serialized CodecHeader message.
    pub(crate) fn codec_header(&self) -> Option<Bytes> {
        self.inner
            .codec_header
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// A receiver of chunks published from now on.
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Chunk> {
        self.inner.chunk_tx.subscribe()
    }

    async fn run(
        self,
        mut reader: Reader,
        buffer_ms: u32,
        pcm_tx: SyncSender<PcmBlock>,
        recycle_rx: Receiver<Vec<u8>>,
    ) {
        let spec = &self.inner.spec;
        let stats = &self.inner.stats;
        // Pauses are bridged with silence for as long as clients buffer (see the pacer).
        let mut pacer = Pacer::new(
            spec.sample_format,
            spec.chunk_ms,
            buffer_ms,
            reader.is_live(),
        );
        info!(stream = %spec.name, uri = %spec.uri.redacted().to_uri_string(), "stream started");
        let mut silent_ms: u32 = 0;
        loop {
            match pacer.next(&mut reader).await {
                Ok(Paced::Chunk(chunk)) => {
                    // Silence (exact zeros, or below silence_threshold_percent) for
                    // idle_threshold also counts as idle (docs/SOURCES.md §3, snapserver
                    // 0.28+); the silence is still sent unless send_silence=false.
                    let silent = spec
                        .sample_format
                        .is_silent(chunk.data, spec.silence_threshold_percent);
                    silent_ms = if silent {
                        silent_ms.saturating_add(spec.chunk_ms)
                    } else {
                        0
                    };
                    let playing = silent_ms < spec.idle_threshold_ms;
                    if stats.playing.swap(playing, Ordering::Relaxed) != playing {
                        self.announce_state(playing);
                        if playing {
                            info!(stream = %spec.name, "stream playing");
                        } else {
                            info!(stream = %spec.name, "stream idle: digital silence");
                        }
                    }
                    if !playing && !spec.send_silence {
                        continue; // idle, and asked not to send silence
                    }
                    if self.inner.pcm_tx.receiver_count() > 0 {
                        let _ = self.inner.pcm_tx.send(Arc::from(chunk.data));
                    }
                    let mut data = recycle_rx.try_recv().unwrap_or_default();
                    data.clear();
                    data.extend_from_slice(chunk.data);
                    let block = PcmBlock {
                        timestamp_us: chunk.timestamp_us,
                        data,
                    };
                    // Never block a runtime worker on the encoder.
                    match pcm_tx.try_send(block) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            let overruns = stats.encoder_overruns.fetch_add(1, Ordering::Relaxed);
                            // Log the first and then every 100th, not every chunk.
                            if overruns.is_multiple_of(100) {
                                warn!(
                                    stream = %spec.name,
                                    dropped = overruns + 1,
                                    "encoder is behind: PCM chunk dropped"
                                );
                            }
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            error!(stream = %spec.name, "encoder thread ended; stream stopped");
                            return;
                        }
                    }
                    stats.stalls.store(pacer.pauses(), Ordering::Relaxed);
                    stats.resyncs.store(pacer.resyncs(), Ordering::Relaxed);
                    stats
                        .source_lead_us
                        .store(pacer.lead_us(), Ordering::Relaxed);
                }
                Ok(Paced::Stalled) => {
                    if stats.playing.swap(false, Ordering::Relaxed) {
                        self.announce_state(false);
                        info!(stream = %spec.name, "stream idle: no input");
                    }
                }
                Err(err) => {
                    // Readers handle their own reopening; an error here is unexpected. Keep
                    // the stream alive and try again shortly rather than spin.
                    warn!(stream = %spec.name, error = %err, "source read failed");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            }
        }
    }

    /// The encoder thread: encodes each PCM block and publishes what comes out, until the
    /// runtime side drops its sender (stream cancelled or shut down).
    fn encode_loop(
        self,
        mut encoder: Box<dyn Encoder>,
        pcm_rx: Receiver<PcmBlock>,
        recycle_tx: SyncSender<Vec<u8>>,
    ) {
        while let Ok(block) = pcm_rx.recv() {
            encoder.encode(block.timestamp_us, &block.data, &mut |unit| {
                self.publish(unit)
            });
            // A full recycle queue only means the buffer is freed instead of reused.
            let _ = recycle_tx.try_send(block.data);
        }
    }

    fn publish(&self, unit: Unit<'_>) {
        let (timestamp_us, data) = (unit.timestamp_us, unit.data);
        if data.is_empty() {
            return; // docs/PROTOCOL.md §1.4: skip empty chunks
        }
        // Serialized once, into a pooled buffer that every session shares.
        let mut message = self.inner.pool.get(WireChunk::message_len(data.len()));
        WireChunk::encode_message(
            message.vec(),
            clock::now(),
            Tv::from_micros(timestamp_us),
            data,
        );
        let stats = &self.inner.stats;
        stats.chunks.fetch_add(1, Ordering::Relaxed);
        stats
            .bytes
            .fetch_add(message.as_ref().len() as u64, Ordering::Relaxed);
        let chunk = Chunk {
            timestamp_us,
            message: Bytes::from_owner(message),
            fresh_decoder_timestamp_us: unit.fresh_decoder_timestamp_us,
            codec_header: None,
        };
        // An error only means no session listens right now; the chunk is simply dropped.
        let _ = self.inner.chunk_tx.send(chunk);
    }
}

/// One PCM chunk on its way from the source task to the encoder thread.
struct PcmBlock {
    /// Capture time of its first frame, µs on the server clock.
    timestamp_us: i64,
    /// Interleaved frames (a reused buffer).
    data: Vec<u8>,
}

#[cfg(test)]
mod tests;

/// A meta stream's inputs: streams started before it, each able to feed its format.
fn meta_inputs(
    spec: &SourceSpec,
    names: &[String],
    earlier: &[Stream],
) -> Result<Vec<Stream>, StreamError> {
    let invalid = |reason: String| StreamError::MetaInput {
        name: spec.name.clone(),
        reason,
    };
    let inputs = names
        .iter()
        .map(|input| {
            earlier
                .iter()
                .find(|s| s.name() == input)
                .cloned()
                .ok_or_else(|| invalid(format!("'{input}' is not a stream defined before it")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(relayed) = inputs.iter().find(|input| input.upstream().is_some()) {
        return Err(invalid(format!(
            "'{}' relays an upstream's encoded chunks: it has no PCM to mix",
            relayed.name()
        )));
    }
    meta::check_inputs(&inputs, spec.sample_format).map_err(invalid)?;
    Ok(inputs)
}

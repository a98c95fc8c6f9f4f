//! A stream relaying an upstream Snapcast server's stream (`snapcast://`, issue 19): no
//! reader, pacer or encoder. The upstream connection (`crate::upstream`) hands over encoded
//! chunks stamped on our clock; each is serialized once, as every other stream's, and fanned
//! out unchanged. The codec is the upstream's: a CodecHeader from it (at every connection)
//! that differs from the current one goes to every session in the chunk channel, ahead of
//! the chunks it decodes.
//!
//! Timing: the upstream's clients play a chunk at its capture time plus the upstream's
//! buffer; ours play it at its stamp plus our buffer. So the stamp is the capture time on
//! our clock plus the difference of the two buffers, and both play the same sample at the
//! same instant whatever each relay's buffer. A chunk whose moment has passed when it
//! arrives is dropped and counted.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use super::{Chunk, Inner, LiveBuffer, Stream, StreamStats};
use crate::clock;
use crate::encoder::{self, Unit};
use crate::plugin::StreamControl;
use crate::pool::BufferPool;
use crate::protocol::{CodecHeader, Message, Tv};
use crate::source::SourceSpec;
use crate::upstream::{self, Event, Upstream, UpstreamStats};

/// Starts relaying `upstream` as the stream `spec` names; runs until `cancel` fires.
pub(super) fn start(
    spec: SourceSpec,
    upstream: Upstream,
    buffer: LiveBuffer,
    pool: BufferPool,
    control: Arc<StreamControl>,
    cancel: CancellationToken,
    tracker: &TaskTracker,
) -> Stream {
    let stats = Arc::new(UpstreamStats::default());
    // A client buffer's worth of the shortest chunks upstreams send (10 ms), and some.
    let capacity = (buffer() / 10) as usize + 64;
    let (chunk_tx, _) = broadcast::channel(capacity);
    let name = spec.name.clone();
    let stream = Stream {
        inner: Arc::new(Inner {
            codec: std::sync::RwLock::new("-"),
            shown_format: std::sync::RwLock::new(spec.sample_format),
            spec,
            codec_header: std::sync::RwLock::new(None),
            upstream: Some(stats.clone()),
            chunk_tx,
            stats: StreamStats::default(),
            pool,
            playing_tx: watch::Sender::new(false),
            control: control.clone(),
            cancel: cancel.clone(),
            // Relayed chunks are encoded: there is no PCM for meta streams.
            pcm_tx: broadcast::channel(1).0,
        }),
    };
    let (events_tx, events_rx) = mpsc::channel(256);
    // Its control requests are carried out on the upstream's stream.
    let requests = control
        .forward_requests()
        .unwrap_or_else(|| mpsc::channel(1).1);
    tracker.spawn(upstream::run(
        upstream::Link {
            name: name.clone(),
            upstream: upstream.clone(),
            stats,
            events: events_tx,
            control: control.clone(),
            cancel: cancel.clone(),
        },
        requests,
    ));
    info!(stream = %name, host = %upstream.host, port = upstream.port, "stream started: relaying an upstream");
    let task = stream.clone();
    tracker.spawn(async move {
        tokio::select! {
            () = cancel.cancelled() => {}
            () = task.clone().relay(events_rx, buffer) => {}
        }
        if task.stats().playing.swap(false, Ordering::Relaxed) {
            task.announce_state(false);
        }
    });
    stream
}

impl Stream {
    async fn relay(self, mut events: mpsc::Receiver<Event>, buffer: LiveBuffer) {
        while let Some(event) = events.recv().await {
            match event {
                Event::Header(header) => self.set_codec(header),
                Event::Chunk {
                    timestamp_us,
                    upstream_buffer_ms,
                    data,
                } => {
                    let buffer_us = i64::from(buffer()) * 1000;
                    let stamp = timestamp_us + upstream_buffer_ms * 1000 - buffer_us;
                    if stamp + buffer_us < clock::now_micros() {
                        if let Some(upstream) = self.upstream() {
                            upstream.chunks_late.fetch_add(1, Ordering::Relaxed);
                        }
                        continue; // its moment passed on the way
                    }
                    self.set_playing(true);
                    self.publish(Unit {
                        timestamp_us: stamp,
                        data: &data,
                        fresh_decoder_timestamp_us: None,
                    });
                }
                Event::Disconnected => self.set_playing(false),
            }
        }
    }

    fn set_playing(&self, playing: bool) {
        if self.stats().playing.swap(playing, Ordering::Relaxed) != playing {
            self.announce_state(playing);
            info!(stream = %self.name(), playing, "relayed stream {}", if playing { "playing" } else { "idle" });
        }
    }

    /// Takes the upstream's codec; a new one goes to every session ahead of its chunks.
    fn set_codec(&self, header: CodecHeader) {
        let name = codec_name(&header.codec);
        let format = encoder::header_format(&header.codec, &header.header);
        let message = Bytes::from(Message::CodecHeader(header).encode(0, 0, Tv::default()));
        {
            let mut current = self
                .inner
                .codec_header
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if current.as_ref() == Some(&message) {
                return; // the same codec after a reconnect: clients carry on
            }
            *current = Some(message.clone());
        }
        *self
            .inner
            .codec
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        let format = format.unwrap_or_else(|| {
            warn!(stream = %self.name(), codec = name, "the upstream's codec header does not say its sample format; showing our own default");
            self.inner.spec.sample_format
        });
        *self
            .inner
            .shown_format
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = format;
        let _ = self.inner.chunk_tx.send(Chunk {
            timestamp_us: 0,
            message: Bytes::new(),
            fresh_decoder_timestamp_us: None,
            codec_header: Some(message),
        });
    }
}

/// The codec's name as every view shows it.
fn codec_name(codec: &str) -> &'static str {
    match codec {
        "pcm" => "pcm",
        "flac" => "flac",
        "ogg" => "ogg",
        "opus" => "opus",
        _ => "other",
    }
}

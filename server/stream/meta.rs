//! Meta streams (`meta:///A/B?name=Mix`, docs/SOURCES.md §2.8): the first of the inputs
//! that is playing is the active one; its PCM feeds the meta stream's pacer (converted to the
//! meta's sample format when it differs), its properties are the meta stream's, and control
//! requests go to it. When none plays, nothing is fed: the meta stream bridges with silence,
//! then goes idle, showing the first input's properties. Switches happen live, as inputs
//! start and stop; clients of the meta stream never reconnect.

use std::future::Future as _;
use std::sync::Arc;

use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Stream;
use crate::encoder::PcmResampler;
use crate::plugin::{MetaInput, StreamControl};
use crate::properties::Properties;
use crate::sample_format::SampleFormat;

/// How an input's PCM becomes the meta stream's.
enum Conversion {
    /// Same format: as is.
    None,
    /// Another rate, depth or channel count: resampled to the meta's (16-bit) format.
    Resample(Box<PcmResampler>),
}

impl Conversion {
    /// For `from` into `to`.
    ///
    /// # Errors
    ///
    /// What cannot be converted (the meta's format is not 16-bit, or channels other than
    /// the same, from mono or to mono).
    pub(super) fn new(from: SampleFormat, to: SampleFormat) -> Result<Self, String> {
        if from == to {
            return Ok(Self::None);
        }
        if to.bits != 16 {
            return Err(format!(
                "{from} cannot be converted to {to} (a meta stream of another rate, depth or \
                 channel count must be 16-bit)"
            ));
        }
        let resampler = PcmResampler::new(from, to.rate, to.channels)
            .map_err(|why| format!("{from} cannot be converted to {to}: {why}"))?;
        Ok(Self::Resample(Box::new(resampler)))
    }
}

/// Checks that every input can feed a meta stream of `format`.
///
/// # Errors
///
/// The first input that cannot, and why.
pub(super) fn check_inputs(inputs: &[Stream], format: SampleFormat) -> Result<(), String> {
    for input in inputs {
        Conversion::new(input.sample_format(), format)
            .map_err(|why| format!("input '{}': {why}", input.name()))?;
    }
    Ok(())
}

/// Feeds the meta stream until `cancel` fires.
pub(super) async fn feed(
    name: String,
    format: SampleFormat,
    inputs: Vec<Stream>,
    control: Arc<StreamControl>,
    blocks: mpsc::Sender<Vec<u8>>,
    cancel: CancellationToken,
) {
    let mut playing: Vec<watch::Receiver<bool>> =
        inputs.iter().map(Stream::watch_playing).collect();
    control.set_meta_inputs(
        inputs
            .iter()
            .map(|input| MetaInput {
                control: input.control().clone(),
                playing: input.watch_playing(),
            })
            .collect(),
    );
    let mut gone = vec![false; inputs.len()];
    // An input removed from the relay is gone for good (its state would stay as it was).
    let (removed_tx, mut removed_rx) = mpsc::unbounded_channel();
    for (i, input) in inputs.iter().enumerate() {
        let (stopped, removed) = (input.stopped(), removed_tx.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = stopped => { let _ = removed.send(i); }
                () = cancel.cancelled() => {}
            }
        });
    }
    let mut active: Option<Option<usize>> = None; // None: not decided yet
    let mut pcm: Option<broadcast::Receiver<Arc<[u8]>>> = None;
    let mut properties: Option<watch::Receiver<Arc<Properties>>> = None;
    let mut conversion = Conversion::None;
    let mut converted = Vec::new();
    // The resampler needs a timeline: the forwarded input's frames.
    let mut fed_frames: u64 = 0;
    loop {
        let now_active = (0..inputs.len()).find(|&i| !gone[i] && *playing[i].borrow());
        if active != Some(now_active) {
            active = Some(now_active);
            // Properties and control follow the active input, or the first when none plays.
            let shown = &inputs[now_active.unwrap_or(0)];
            // Subscribed first, so no change between reading and watching is missed.
            properties = Some(shown.control().subscribe());
            control.follow(Some(shown.control().clone()));
            pcm = now_active.map(|i| inputs[i].pcm());
            conversion = match now_active {
                Some(i) => {
                    Conversion::new(inputs[i].sample_format(), format).unwrap_or_else(|why| {
                        warn!(stream = %name, "{why}");
                        Conversion::None
                    })
                }
                None => Conversion::None,
            };
            match now_active {
                Some(i) => {
                    info!(stream = %name, input = %inputs[i].name(), "meta stream plays this input");
                }
                None => info!(stream = %name, "meta stream: no input plays"),
            }
        }
        let next_pcm = async {
            match pcm.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let properties_changed = async {
            match properties.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => return,
            Some(index) = removed_rx.recv() => {
                gone[index] = true;
                warn!(stream = %name, input = %inputs[index].name(), "meta input removed");
            }
            (index, alive) = any_changed(&mut playing, &gone) => {
                if !alive {
                    gone[index] = true;
                }
            }
            alive = properties_changed => {
                if alive {
                    let shown = &inputs[now_active.unwrap_or(0)];
                    control.mirror(shown.control().properties());
                } else {
                    properties = None;
                }
            }
            block = next_pcm => match block {
                Ok(block) => {
                    match &mut conversion {
                        Conversion::None => {
                            let _ = blocks.try_send(block.to_vec());
                        }
                        Conversion::Resample(resampler) => {
                            converted.clear();
                            let at = fed_frames as i128 * 1_000_000
                                / i128::from(now_active.map_or(48_000, |i| inputs[i].sample_format().rate));
                            resampler.process(at as i64, &block, &mut |_, out| {
                                converted.extend_from_slice(out);
                            });
                            if !converted.is_empty() {
                                let _ = blocks.try_send(converted.clone());
                            }
                        }
                    }
                    if let Some(i) = now_active {
                        let frames = block.len() / inputs[i].sample_format().frame_size().max(1);
                        fed_frames += frames as u64;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => pcm = None,
            },
        }
    }
}

/// Which input's playing state changed (index, and whether its stream is still there).
async fn any_changed(receivers: &mut [watch::Receiver<bool>], gone: &[bool]) -> (usize, bool) {
    let mut changes: Vec<_> = receivers
        .iter_mut()
        .enumerate()
        .filter(|(i, _)| !gone[*i])
        .map(|(i, r)| (i, Box::pin(r.changed())))
        .collect();
    std::future::poll_fn(move |cx| {
        for (i, change) in &mut changes {
            if let std::task::Poll::Ready(result) = change.as_mut().poll(cx) {
                return std::task::Poll::Ready((*i, result.is_ok()));
            }
        }
        std::task::Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conversion(from: &str, to: &str) -> Result<Conversion, String> {
        Conversion::new(from.parse().unwrap(), to.parse().unwrap())
    }

    #[test]
    fn inputs_are_converted_to_the_meta_format_where_that_is_sound() {
        assert!(matches!(
            conversion("48000:16:2", "48000:16:2"),
            Ok(Conversion::None)
        ));
        for from in ["44100:16:2", "48000:24:2", "48000:16:1", "44100:32:1"] {
            assert!(
                matches!(conversion(from, "48000:16:2"), Ok(Conversion::Resample(_))),
                "{from}"
            );
        }
        assert!(matches!(
            conversion("48000:16:2", "48000:16:1"),
            Ok(Conversion::Resample(_))
        ));
        let why = conversion("48000:16:4", "48000:16:2").err().unwrap();
        assert!(why.contains("only from or to mono"), "{why}");
        let why = conversion("44100:16:2", "48000:24:2").err().unwrap();
        assert!(why.contains("must be 16-bit"), "{why}");
    }
}

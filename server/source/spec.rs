//! Source URIs checked into a [`SourceSpec`] at start-up (docs/SOURCES.md §1.2): the
//! stream's name, PCM layout, codec and chunking, with `[stream]` defaults for what a URI
//! leaves out, plus the [`SourceKind`] its scheme describes.

use std::path::{Path, PathBuf};

use super::{SourceError, SourceKind, SourceUri};
use crate::plugin::ControlScript;
use crate::sample_format::SampleFormat;

/// snapserver's plugin directory (Debian's package ships `meta_mpd.py` there).
pub const DEFAULT_PLUGIN_DIR: &str = "/usr/share/snapserver/plug-ins";

/// Defaults the `[stream]` section supplies for parameters a URI leaves out (§1.2).
#[derive(Debug, Clone)]
pub struct SourceDefaults {
    /// `[stream] sampleformat`.
    pub sample_format: SampleFormat,
    /// `[stream] codec`.
    pub codec: String,
    /// `[stream] chunk_ms`.
    pub chunk_ms: u32,
    /// `[stream] plugin_dir`: where a relative `controlscript` is looked up.
    pub plugin_dir: PathBuf,
}

impl Default for SourceDefaults {
    fn default() -> Self {
        Self {
            sample_format: SampleFormat::default(),
            codec: crate::encoder::DEFAULT_CODEC.into(),
            chunk_ms: 20,
            plugin_dir: PathBuf::from(DEFAULT_PLUGIN_DIR),
        }
    }
}

/// A fully resolved source: the stream it feeds and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Stream id (`name=`).
    pub name: String,
    /// How to read it.
    pub(crate) kind: SourceKind,
    /// PCM layout of the input.
    pub(crate) sample_format: SampleFormat,
    /// Codec name (without options).
    pub(crate) codec: String,
    /// Codec options (after the first `:` of `codec=`).
    pub(crate) codec_options: String,
    /// Chunk duration in ms.
    pub(crate) chunk_ms: u32,
    /// No input for this long (plus one chunk) marks the stream idle (§1.2, §3; default 100).
    pub(crate) idle_threshold_ms: u32,
    /// Samples at most this % of full scale count as silence (`silence_threshold_percent`,
    /// default 0: exact zeros).
    pub(crate) silence_threshold_percent: f64,
    /// Whether chunks are sent while the stream is idle (`send_silence`, default true; false
    /// for `alsa`, as in snapserver).
    pub(crate) send_silence: bool,
    /// The stream plugin (`controlscript`, `controlscriptparams`).
    pub(crate) control_script: Option<ControlScript>,
    /// The parsed URI with defaults filled in, as status reports show it.
    pub uri: SourceUri,
}

impl SourceSpec {
    /// Parses a source URI, filling unset parameters from `defaults` (§1.2).
    pub fn parse(text: &str, defaults: &SourceDefaults) -> Result<Self, SourceError> {
        let mut uri = SourceUri::parse(text)?;
        let name = uri
            .query
            .get("name")
            .filter(|n| !n.is_empty())
            .cloned()
            .ok_or_else(|| SourceError::MissingName(super::redacted_uri_string(text)))?;
        if matches!(uri.scheme.as_str(), "librespot" | "spotify" | "airplay") {
            // The player writes this and nothing else; snapserver forces it too.
            uri.query.insert(
                "sampleformat".into(),
                super::librespot::SAMPLE_FORMAT.to_owned(),
            );
        }
        uri.query
            .entry("sampleformat".into())
            .or_insert_with(|| defaults.sample_format.to_string());
        uri.query
            .entry("codec".into())
            .or_insert_with(|| defaults.codec.clone());
        uri.query
            .entry("chunk_ms".into())
            .or_insert_with(|| defaults.chunk_ms.to_string());

        let invalid = |key: &'static str, value: &str, allowed: &str| {
            SourceError::invalid(&name, key, value, allowed)
        };
        let sample_format: SampleFormat =
            uri.query["sampleformat"]
                .parse()
                .map_err(|source| SourceError::SampleFormat {
                    name: name.clone(),
                    source,
                })?;
        let codec_text = uri.query["codec"].clone();
        let (codec, codec_options) = codec_text.split_once(':').unwrap_or((&codec_text, ""));
        if !crate::encoder::SUPPORTED_CODECS.contains(&codec) && codec != crate::encoder::NULL_CODEC
        {
            return Err(invalid(
                "codec",
                codec,
                &format!(
                    "one of {}, or null (a meta stream's input only)",
                    crate::encoder::SUPPORTED_CODECS.join(", ")
                ),
            ));
        }
        let chunk_ms = parse_ranged(&uri.query["chunk_ms"], 10, 1000)
            .ok_or_else(|| invalid("chunk_ms", &uri.query["chunk_ms"], "10 to 1000"))?;
        let idle_threshold_ms = match uri.query.get("idle_threshold") {
            Some(value) => parse_ranged(value, 10, 600_000)
                .ok_or_else(|| invalid("idle_threshold", value, "10 to 600000 ms"))?,
            None => 100,
        };
        let silence_threshold_percent = match uri.query.get("silence_threshold_percent") {
            Some(value) => value
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| invalid("silence_threshold_percent", value, "0 to 100"))?,
            None => 0.0,
        };
        let send_silence = match uri.query.get("send_silence").map(String::as_str) {
            // A capture device is silent most of the day; snapserver sends nothing then.
            None => uri.scheme != "alsa",
            Some("true") => true,
            Some("false") => false,
            Some(other) => return Err(invalid("send_silence", other, "true or false")),
        };
        let kind = SourceKind::parse(&uri, text, &name, sample_format)?;
        let control_script = control_script(&uri, &defaults.plugin_dir, &name)?;
        Ok(Self {
            name,
            kind,
            sample_format,
            codec: codec.to_owned(),
            codec_options: codec_options.to_owned(),
            chunk_ms,
            idle_threshold_ms,
            silence_threshold_percent,
            send_silence,
            control_script,
            uri,
        })
    }
}

/// `controlscript=` (a relative path is under `plugin_dir`, as in snapserver) and
/// `controlscriptparams=`.
fn control_script(
    uri: &SourceUri,
    plugin_dir: &Path,
    name: &str,
) -> Result<Option<ControlScript>, SourceError> {
    let Some(script) = uri.query.get("controlscript").map(|s| s.trim()) else {
        if let Some(params) = uri.query.get("controlscriptparams") {
            return Err(SourceError::invalid(
                name,
                "controlscriptparams",
                params,
                "only together with controlscript",
            ));
        }
        return Ok(None);
    };
    if script.is_empty() {
        return Err(SourceError::invalid(
            name,
            "controlscript",
            script,
            "the path of a stream plugin",
        ));
    }
    let path = Path::new(script);
    let path = if path.is_absolute() {
        path.to_path_buf()
    } else {
        plugin_dir.join(path)
    };
    let params = uri
        .query
        .get("controlscriptparams")
        .map(|p| super::uri::split_params(p))
        .unwrap_or_default();
    Ok(Some(ControlScript { path, params }))
}

fn parse_ranged(text: &str, min: u32, max: u32) -> Option<u32> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SourceSpec, SourceError> {
        SourceSpec::parse(text, &SourceDefaults::default())
    }

    #[test]
    fn snapserver_default_source() {
        let spec = parse("pipe:///tmp/snapfifo?name=default").unwrap();
        assert_eq!(spec.name, "default");
        assert_eq!(
            spec.kind,
            SourceKind::Pipe {
                path: "/tmp/snapfifo".into(),
                create: true
            }
        );
        assert_eq!(spec.sample_format, SampleFormat::default());
        assert_eq!(spec.chunk_ms, 20);
        assert_eq!(spec.codec, "flac");
        assert_eq!(spec.idle_threshold_ms, 100);
        assert_eq!(
            spec.uri.to_uri_string(),
            "pipe:///tmp/snapfifo?chunk_ms=20&codec=flac&name=default&sampleformat=48000:16:2"
        );
    }

    #[test]
    fn full_pipe_uri_with_quotes_and_escapes() {
        let spec = parse(
            "\"pipe:///tmp/my%20fifo?name=Living%20Room&sampleformat=44100:24:2&codec=pcm&chunk_ms=40&mode=read&idle_threshold=500\"",
        )
        .unwrap();
        assert_eq!(spec.name, "Living Room");
        assert_eq!(
            spec.kind,
            SourceKind::Pipe {
                path: "/tmp/my fifo".into(),
                create: false
            }
        );
        assert_eq!(spec.sample_format.to_string(), "44100:24:2");
        assert_eq!(spec.chunk_ms, 40);
        assert_eq!(spec.idle_threshold_ms, 500);
        assert_eq!(spec.silence_threshold_percent, 0.0);
        assert!(spec.send_silence);
        let quiet =
            parse("pipe:///tmp/f?name=a&silence_threshold_percent=0.5&send_silence=false").unwrap();
        assert_eq!(quiet.silence_threshold_percent, 0.5);
        assert!(!quiet.send_silence);
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&silence_threshold_percent=101"),
            Err(SourceError::InvalidParam {
                key: "silence_threshold_percent",
                ..
            })
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&send_silence=maybe"),
            Err(SourceError::InvalidParam {
                key: "send_silence",
                ..
            })
        ));
    }

    #[test]
    fn rejects_bad_sources_naming_the_problem() {
        assert!(matches!(parse("/tmp/fifo"), Err(SourceError::Syntax(_))));
        assert!(matches!(
            parse("pipe:///tmp/f"),
            Err(SourceError::MissingName(_))
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&sampleformat=1:2:3"),
            Err(SourceError::SampleFormat { .. })
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&codec=mp3"),
            Err(SourceError::InvalidParam { key: "codec", .. })
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&chunk_ms=5"),
            Err(SourceError::InvalidParam {
                key: "chunk_ms",
                ..
            })
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&idle_threshold=5"),
            Err(SourceError::InvalidParam {
                key: "idle_threshold",
                ..
            })
        ));
        let message = parse("pipe:///tmp/f?name=a&chunk_ms=abc")
            .unwrap_err()
            .to_string();
        assert!(message.contains("chunk_ms='abc'") && message.contains("10 to 1000"));
    }

    #[test]
    fn control_scripts_resolve_under_the_plugin_dir() {
        let spec = parse(
            "pipe:///tmp/f?name=a&controlscript=meta_mpd.py&controlscriptparams=--mpd-host%3D127.0.0.1%20%22--x%20y%22",
        )
        .unwrap();
        assert_eq!(
            spec.control_script,
            Some(ControlScript {
                path: PathBuf::from(DEFAULT_PLUGIN_DIR).join("meta_mpd.py"),
                params: vec!["--mpd-host=127.0.0.1".into(), "--x y".into()],
            })
        );
        let absolute = parse("pipe:///tmp/f?name=a&controlscript=/opt/p.py").unwrap();
        assert_eq!(
            absolute.control_script.unwrap().path,
            PathBuf::from("/opt/p.py")
        );
        assert_eq!(parse("pipe:///tmp/f?name=a").unwrap().control_script, None);
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&controlscript="),
            Err(SourceError::InvalidParam {
                key: "controlscript",
                ..
            })
        ));
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&controlscriptparams=-v"),
            Err(SourceError::InvalidParam {
                key: "controlscriptparams",
                ..
            })
        ));
    }

    #[test]
    fn codec_options_split_off() {
        let spec = parse("pipe:///tmp/f?name=a&codec=pcm:opt").unwrap();
        assert_eq!(spec.codec, "pcm");
        assert_eq!(spec.codec_options, "opt");
    }
}

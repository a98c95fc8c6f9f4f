//! Source URIs in snapserver's form (snapcast-protocol.md §4.1–4.3), e.g.
//! `pipe:///tmp/snapfifo?name=default&sampleformat=48000:16:2&codec=pcm&chunk_ms=20`, parsed
//! and checked into a [`SourceSpec`] at start-up.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::sample_format::{SampleFormat, SampleFormatError};

/// Generic `scheme://host/path?query#fragment`, every part percent-decoded (§4.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUri {
    /// e.g. `pipe`.
    pub scheme: String,
    /// Host (and port) part; often empty.
    pub host: String,
    /// Path part, starting with `/` when present.
    pub path: String,
    /// Query parameters (the last of repeated keys wins).
    pub query: BTreeMap<String, String>,
    /// Fragment, without `#`.
    pub fragment: String,
}

/// Why a source URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// Not `scheme://…`.
    #[error("'{0}' is not a source URI of the form scheme:///path?name=NAME")]
    Syntax(String),
    /// No `name=` parameter.
    #[error("source '{0}' has no name= parameter (it is the stream's id)")]
    MissingName(String),
    /// A scheme snapserver knows but we do not serve yet.
    #[error(
        "source scheme '{scheme}' is not supported yet (supported: pipe, file, tcp, process, tone)"
    )]
    UnsupportedScheme {
        /// The scheme.
        scheme: String,
    },
    /// A scheme nobody knows.
    #[error("unknown source scheme '{scheme}' (supported: pipe, file, tcp, process, tone)")]
    UnknownScheme {
        /// The scheme.
        scheme: String,
    },
    /// A parameter with a value outside what is allowed.
    #[error("invalid {key}='{value}' in source '{name}': {allowed}")]
    InvalidParam {
        /// The stream name.
        name: String,
        /// Parameter key.
        key: &'static str,
        /// Offending value.
        value: String,
        /// What is allowed.
        allowed: String,
    },
    /// A bad `sampleformat=`.
    #[error("invalid sampleformat in source '{name}': {source}")]
    SampleFormat {
        /// The stream name.
        name: String,
        /// Why.
        source: SampleFormatError,
    },
}

/// Defaults the `[stream]` section supplies for parameters a URI leaves out (§4.2).
#[derive(Debug, Clone)]
pub struct SourceDefaults {
    /// `[stream] sampleformat`.
    pub sample_format: SampleFormat,
    /// `[stream] codec`.
    pub codec: String,
    /// `[stream] chunk_ms`.
    pub chunk_ms: u32,
}

impl Default for SourceDefaults {
    fn default() -> Self {
        Self {
            sample_format: SampleFormat::default(),
            codec: crate::encoder::DEFAULT_CODEC.into(),
            chunk_ms: 20,
        }
    }
}

/// What kind of input a stream reads.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
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
        addr: std::net::SocketAddr,
    },
    /// Connects to a PCM producer, reconnecting with backoff.
    TcpClient {
        /// Producer address.
        addr: std::net::SocketAddr,
    },
    /// Runs a command and reads its stdout (config file only, never from the network).
    Process {
        /// Executable.
        path: PathBuf,
        /// Its arguments (`params=`, split like a shell would on spaces and double quotes).
        args: Vec<String>,
    },
    /// A built-in sine generator; one frequency per channel (the last repeats).
    Tone {
        /// Frequencies in Hz.
        frequencies: Vec<f64>,
        /// Peak amplitude as a fraction of full scale.
        amplitude: f64,
    },
}

/// A fully resolved source: the stream it feeds and how to read it.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceSpec {
    /// Stream id (`name=`).
    pub name: String,
    /// How to read it.
    pub kind: SourceKind,
    /// PCM layout of the input.
    pub sample_format: SampleFormat,
    /// Codec name (without options).
    pub codec: String,
    /// Codec options (after the first `:` of `codec=`).
    pub codec_options: String,
    /// Chunk duration in ms.
    pub chunk_ms: u32,
    /// No input for this long (plus one chunk) marks the stream idle (§4.2, default 100).
    pub idle_threshold_ms: u32,
    /// The parsed URI with defaults filled in, as status reports show it.
    pub uri: SourceUri,
}

impl SourceUri {
    /// Parses `scheme://host/path?query#fragment`, stripping surrounding quotes.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let syntax = || SourceError::Syntax(text.to_owned());
        let trimmed = text.trim().trim_matches('"');
        let (scheme, rest) = trimmed.split_once("://").ok_or_else(syntax)?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
        {
            return Err(syntax());
        }
        let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
        let (rest, query_text) = rest.split_once('?').unwrap_or((rest, ""));
        let (host, path) = match rest.find('/') {
            Some(at) => rest.split_at(at),
            None => (rest, ""),
        };
        let mut query = BTreeMap::new();
        for pair in query_text.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            query.insert(percent_decode(key), percent_decode(value));
        }
        Ok(Self {
            scheme: percent_decode(scheme).to_ascii_lowercase(),
            host: percent_decode(host),
            path: percent_decode(path),
            query,
            fragment: percent_decode(fragment),
        })
    }

    /// Re-serialises the URI with the query sorted by key (as snapserver reports it).
    pub fn to_uri_string(&self) -> String {
        let mut out = format!("{}://{}{}", self.scheme, self.host, self.path);
        for (i, (key, value)) in self.query.iter().enumerate() {
            out.push(if i == 0 { '?' } else { '&' });
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
        if !self.fragment.is_empty() {
            out.push('#');
            out.push_str(&self.fragment);
        }
        out
    }
}

impl SourceSpec {
    /// Parses a source URI, filling unset parameters from `defaults` (§4.2).
    pub fn parse(text: &str, defaults: &SourceDefaults) -> Result<Self, SourceError> {
        let mut uri = SourceUri::parse(text)?;
        let name = uri
            .query
            .get("name")
            .filter(|n| !n.is_empty())
            .cloned()
            .ok_or_else(|| SourceError::MissingName(text.to_owned()))?;
        uri.query
            .entry("sampleformat".into())
            .or_insert_with(|| defaults.sample_format.to_string());
        uri.query
            .entry("codec".into())
            .or_insert_with(|| defaults.codec.clone());
        uri.query
            .entry("chunk_ms".into())
            .or_insert_with(|| defaults.chunk_ms.to_string());

        let invalid = |key: &'static str, value: &str, allowed: &str| SourceError::InvalidParam {
            name: name.clone(),
            key,
            value: value.to_owned(),
            allowed: allowed.to_owned(),
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
        if !crate::encoder::SUPPORTED_CODECS.contains(&codec) {
            return Err(invalid(
                "codec",
                codec,
                &format!("one of {}", crate::encoder::SUPPORTED_CODECS.join(", ")),
            ));
        }
        let chunk_ms = parse_ranged(&uri.query["chunk_ms"], 10, 1000)
            .ok_or_else(|| invalid("chunk_ms", &uri.query["chunk_ms"], "10 to 1000"))?;
        let idle_threshold_ms = match uri.query.get("idle_threshold") {
            Some(value) => parse_ranged(value, 10, 600_000)
                .ok_or_else(|| invalid("idle_threshold", value, "10 to 600000 ms"))?,
            None => 100,
        };

        let kind = match uri.scheme.as_str() {
            "pipe" => {
                let mode = uri.query.get("mode").map_or("create", String::as_str);
                let create = match mode {
                    "create" => true,
                    "read" => false,
                    other => return Err(invalid("mode", other, "create or read")),
                };
                SourceKind::Pipe {
                    path: require_path(&uri, text)?,
                    create,
                }
            }
            "file" => SourceKind::File {
                path: require_path(&uri, text)?,
            },
            "tone" => {
                let freq_text = uri.query.get("freq").map_or("440", String::as_str);
                let frequencies = freq_text
                    .split(',')
                    .map(|f| f.trim().parse::<f64>().ok())
                    .collect::<Option<Vec<_>>>()
                    .filter(|fs| {
                        fs.iter()
                            .all(|f| *f > 0.0 && *f < f64::from(sample_format.rate) / 2.0)
                    })
                    .ok_or_else(|| {
                        invalid(
                            "freq",
                            freq_text,
                            "comma-separated frequencies in Hz below half the sample rate",
                        )
                    })?;
                let amp_text = uri.query.get("amplitude").map_or("0.5", String::as_str);
                let amplitude = amp_text
                    .parse::<f64>()
                    .ok()
                    .filter(|a| (0.0..=1.0).contains(a))
                    .ok_or_else(|| invalid("amplitude", amp_text, "0.0 to 1.0"))?;
                SourceKind::Tone {
                    frequencies,
                    amplitude,
                }
            }
            "tcp" => {
                let mode = uri.query.get("mode").map_or("server", String::as_str);
                let addr = tcp_address(&uri).ok_or_else(|| {
                    invalid(
                        "host",
                        &uri.host,
                        "a literal IP address with an optional :port (default 4953)",
                    )
                })?;
                match mode {
                    "server" => SourceKind::TcpServer { addr },
                    "client" => SourceKind::TcpClient { addr },
                    other => return Err(invalid("mode", other, "server or client")),
                }
            }
            "process" => SourceKind::Process {
                path: require_path(&uri, text)?,
                args: split_params(uri.query.get("params").map_or("", String::as_str)),
            },
            "alsa" | "jack" | "pipewire" | "librespot" | "spotify" | "airplay" | "meta" => {
                return Err(SourceError::UnsupportedScheme {
                    scheme: uri.scheme.clone(),
                })
            }
            _ => {
                return Err(SourceError::UnknownScheme {
                    scheme: uri.scheme.clone(),
                })
            }
        };
        Ok(Self {
            name,
            kind,
            sample_format,
            codec: codec.to_owned(),
            codec_options: codec_options.to_owned(),
            chunk_ms,
            idle_threshold_ms,
            uri,
        })
    }
}

fn require_path(uri: &SourceUri, text: &str) -> Result<PathBuf, SourceError> {
    if uri.path.is_empty() || uri.path == "/" {
        return Err(SourceError::Syntax(text.to_owned()));
    }
    Ok(PathBuf::from(&uri.path))
}

/// Default port of `tcp://` sources (§6.2).
const DEFAULT_TCP_SOURCE_PORT: u16 = 4953;

/// `host[:port]`, or `port=` in the query, as a socket address; the host must be an IP.
fn tcp_address(uri: &SourceUri) -> Option<std::net::SocketAddr> {
    let host = uri.host.trim();
    let (ip_text, port_text) = if let Some(rest) = host.strip_prefix('[') {
        let (ip, after) = rest.split_once(']')?;
        (ip, after.strip_prefix(':'))
    } else {
        match host.rsplit_once(':') {
            Some((ip, port)) if !ip.contains(':') => (ip, Some(port)),
            _ => (host, None),
        }
    };
    let ip: std::net::IpAddr = if ip_text.is_empty() {
        std::net::Ipv4Addr::UNSPECIFIED.into()
    } else {
        ip_text.parse().ok()?
    };
    let port = match uri.query.get("port").map(String::as_str).or(port_text) {
        Some(text) => text.parse().ok()?,
        None => DEFAULT_TCP_SOURCE_PORT,
    };
    Some(std::net::SocketAddr::new(ip, port))
}

/// Splits `params=` into arguments on spaces, keeping double-quoted runs together.
fn split_params(text: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    let mut any = false;
    for c in text.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                any = true;
            }
            c if c.is_whitespace() && !quoted => {
                if any {
                    args.push(std::mem::take(&mut current));
                    any = false;
                }
            }
            c => {
                current.push(c);
                any = true;
            }
        }
    }
    if any {
        args.push(current);
    }
    args
}

fn parse_ranged(text: &str, min: u32, max: u32) -> Option<u32> {
    text.trim()
        .parse::<u32>()
        .ok()
        .filter(|v| (min..=max).contains(v))
}

/// Decodes `%XX` escapes (and leaves malformed ones as they are).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            if let Some(byte) = hex {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
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
        assert_eq!(
            spec.uri.to_uri_string(),
            "pipe:///tmp/snapfifo?chunk_ms=20&codec=flac&name=default&sampleformat=48000:16:2"
        );
    }

    #[test]
    fn full_pipe_uri_with_quotes_and_escapes() {
        let spec = parse(
            "\"pipe:///tmp/my%20fifo?name=Living%20Room&sampleformat=44100:24:2&codec=pcm&chunk_ms=40&mode=read\"",
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
    }

    #[test]
    fn file_and_tone_sources() {
        let file = parse("file:///music/a.raw?name=f").unwrap();
        assert_eq!(
            file.kind,
            SourceKind::File {
                path: "/music/a.raw".into()
            }
        );
        let tone = parse("tone:///?name=test&freq=440,660&amplitude=0.25").unwrap();
        assert_eq!(
            tone.kind,
            SourceKind::Tone {
                frequencies: vec![440.0, 660.0],
                amplitude: 0.25
            }
        );
        let default_tone = parse("tone:///?name=t").unwrap();
        assert!(
            matches!(default_tone.kind, SourceKind::Tone { ref frequencies, .. } if frequencies == &[440.0])
        );
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
            parse("pipe:///tmp/f?name=a&mode=write"),
            Err(SourceError::InvalidParam { key: "mode", .. })
        ));
        assert!(matches!(
            parse("pipe://?name=a"),
            Err(SourceError::Syntax(_))
        ));
        assert!(matches!(
            parse("tone:///?name=a&freq=30000"),
            Err(SourceError::InvalidParam { key: "freq", .. })
        ));
        assert!(matches!(
            parse("tone:///?name=a&amplitude=2"),
            Err(SourceError::InvalidParam {
                key: "amplitude",
                ..
            })
        ));
        assert!(matches!(
            parse("alsa:///?name=a"),
            Err(SourceError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse("tcp://localhost:5000?name=a"),
            Err(SourceError::InvalidParam { key: "host", .. })
        ));
        assert!(matches!(
            parse("tcp://127.0.0.1?name=a&mode=both"),
            Err(SourceError::InvalidParam { key: "mode", .. })
        ));
        assert!(matches!(
            parse("gopher:///x?name=a"),
            Err(SourceError::UnknownScheme { .. })
        ));
        let message = parse("pipe:///tmp/f?name=a&chunk_ms=abc")
            .unwrap_err()
            .to_string();
        assert!(message.contains("chunk_ms='abc'") && message.contains("10 to 1000"));
    }

    #[test]
    fn tcp_and_process_sources() {
        let server = parse("tcp://0.0.0.0?name=t").unwrap();
        assert_eq!(
            server.kind,
            SourceKind::TcpServer {
                addr: "0.0.0.0:4953".parse().unwrap()
            }
        );
        let with_port = parse("tcp://127.0.0.1:5000?name=t&mode=server").unwrap();
        assert_eq!(
            with_port.kind,
            SourceKind::TcpServer {
                addr: "127.0.0.1:5000".parse().unwrap()
            }
        );
        let query_port = parse("tcp://[::1]?name=t&mode=client&port=6000").unwrap();
        assert_eq!(
            query_port.kind,
            SourceKind::TcpClient {
                addr: "[::1]:6000".parse().unwrap()
            }
        );
        let process =
            parse("process:///usr/bin/player?name=p&params=--out%20-%20%22my%20file%22").unwrap();
        assert_eq!(
            process.kind,
            SourceKind::Process {
                path: "/usr/bin/player".into(),
                args: vec!["--out".into(), "-".into(), "my file".into()],
            }
        );
    }

    #[test]
    fn codec_options_split_off() {
        let spec = parse("pipe:///tmp/f?name=a&codec=pcm:opt").unwrap();
        assert_eq!(spec.codec, "pcm");
        assert_eq!(spec.codec_options, "opt");
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

//! What each source scheme means (docs/SOURCES.md §2): the one list of schemes
//! snaprelay serves, and the [`SourceKind`] each one's URI parameters make.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use super::{SourceError, SourceKind, SourceUri};
use crate::sample_format::SampleFormat;

/// Every scheme this code knows; `alsa` last, since a build without the `alsa` feature
/// leaves it out of [`SCHEMES`].
const ALL_SCHEMES: [&str; 11] = [
    "pipe",
    "file",
    "tcp",
    "process",
    "tone",
    "librespot",
    "spotify",
    "airplay",
    "meta",
    "snapcast",
    "alsa",
];

/// Every source scheme snaprelay serves, in the order messages list them.
pub(crate) const SCHEMES: &[&str] = if cfg!(feature = "alsa") {
    ALL_SCHEMES.as_slice()
} else {
    match ALL_SCHEMES.as_slice().split_last() {
        Some((_, served)) => served,
        None => &[],
    }
};

/// Schemes snapserver serves that snaprelay does not (yet): refused as unsupported rather
/// than unknown.
const SNAPSERVER_ONLY_SCHEMES: &[&str] = &["jack", "pipewire"];

/// snapserver's ALSA capture device when the URI names none.
const DEFAULT_ALSA_DEVICE: &str = "hw:0";

/// Default port of `tcp://` sources (§2.3).
const DEFAULT_TCP_SOURCE_PORT: u16 = 4953;

impl SourceKind {
    /// The kind `uri`'s scheme and parameters describe, for the stream `name`. `text` is the
    /// URI as written (for syntax errors); `sample_format` bounds tone frequencies.
    pub(super) fn parse(
        uri: &SourceUri,
        text: &str,
        name: &str,
        sample_format: SampleFormat,
    ) -> Result<Self, SourceError> {
        let invalid = |key: &'static str, value: &str, allowed: &str| {
            SourceError::invalid(name, key, value, allowed)
        };
        Ok(match uri.scheme.as_str() {
            "pipe" => {
                let create = match param(uri, "mode", "create") {
                    "create" => true,
                    "read" => false,
                    other => return Err(invalid("mode", other, "create or read")),
                };
                Self::Pipe {
                    path: require_path(uri, text)?,
                    create,
                }
            }
            "file" => Self::File {
                path: require_path(uri, text)?,
            },
            "tone" => tone(uri, sample_format, invalid)?,
            "tcp" => {
                let addr = tcp_address(uri).ok_or_else(|| {
                    invalid(
                        "host",
                        // `user:password@host` is no address, but its password stays hidden.
                        &uri.redacted().host,
                        "a literal IP address with an optional :port (default 4953)",
                    )
                })?;
                match param(uri, "mode", "server") {
                    "server" => Self::TcpServer { addr },
                    "client" => Self::TcpClient { addr },
                    other => return Err(invalid("mode", other, "server or client")),
                }
            }
            "process" => {
                let watchdog = match param(uri, "wd_timeout", "") {
                    "" => None,
                    seconds => Some(super::process::parse_watchdog(seconds).ok_or_else(|| {
                        invalid("wd_timeout", seconds, super::process::WATCHDOG_ALLOWED)
                    })?),
                };
                let log_stderr = match param(uri, "log_stderr", "false") {
                    "true" => true,
                    "false" => false,
                    other => return Err(invalid("log_stderr", other, "true or false")),
                };
                Self::Process {
                    path: require_path(uri, text)?,
                    args: super::uri::split_params(param(uri, "params", "")),
                    watchdog,
                    log_stderr,
                }
            }
            "librespot" | "spotify" => super::librespot::kind(uri, name)?,
            "airplay" => super::airplay::kind(uri, name)?,
            "meta" => {
                let inputs: Vec<String> = uri
                    .path
                    .split('/')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect();
                if inputs.is_empty() {
                    return Err(invalid(
                        "path",
                        &uri.path,
                        "the input streams, e.g. meta:///Spotify/AirPlay?name=Mix",
                    ));
                }
                Self::Meta { inputs }
            }
            "snapcast" => upstream(uri, invalid)?,
            "alsa" if cfg!(feature = "alsa") => Self::Alsa {
                device: param(uri, "device", DEFAULT_ALSA_DEVICE).to_owned(),
            },
            "alsa" => {
                return Err(SourceError::NotBuilt {
                    scheme: "alsa".into(),
                    feature: "alsa",
                })
            }
            other => {
                let scheme = other.to_owned();
                return Err(if SNAPSERVER_ONLY_SCHEMES.contains(&other) {
                    SourceError::UnsupportedScheme { scheme }
                } else {
                    SourceError::UnknownScheme { scheme }
                });
            }
        })
    }
}

/// `snapcast://HOST[:PORT]`: `stream=` (the upstream stream to play; default whatever it
/// plays to us) and `control_port=` (its JSON-RPC port, default 1705).
fn upstream(
    uri: &SourceUri,
    invalid: impl Fn(&'static str, &str, &str) -> SourceError,
) -> Result<SourceKind, SourceError> {
    let host_text = uri.redacted().host;
    let (host, port) = match uri.host.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') || host.ends_with(']') => (
            host.trim_start_matches('[').trim_end_matches(']'),
            port.parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or_else(|| invalid("port", port, "a port number 1-65535"))?,
        ),
        _ => (
            uri.host.trim_start_matches('[').trim_end_matches(']'),
            crate::upstream::DEFAULT_PORT,
        ),
    };
    if host.is_empty() {
        return Err(invalid(
            "host",
            &host_text,
            "the upstream server, e.g. snapcast://core.local:1704?name=Edge",
        ));
    }
    let control_port = match uri.query.get("control_port") {
        Some(text) => text
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| invalid("control_port", text, "a port number 1-65535"))?,
        None => crate::upstream::DEFAULT_CONTROL_PORT,
    };
    if let Some(script) = uri.query.get("controlscript") {
        // Its player is the upstream stream's, controlled through the upstream.
        return Err(invalid(
            "controlscript",
            script,
            "nothing on snapcast:// (the upstream's stream plugin is used through the upstream)",
        ));
    }
    let stream = uri.query.get("stream").filter(|s| !s.is_empty()).cloned();
    Ok(SourceKind::Upstream(crate::upstream::Upstream {
        host: host.to_owned(),
        port,
        control_port,
        stream,
    }))
}

/// `tone://`: `freq=` (comma-separated, default 440) and `amplitude=` (default 0.5).
fn tone(
    uri: &SourceUri,
    sample_format: SampleFormat,
    invalid: impl Fn(&'static str, &str, &str) -> SourceError,
) -> Result<SourceKind, SourceError> {
    let freq_text = param(uri, "freq", "440");
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
    let amp_text = param(uri, "amplitude", "0.5");
    let amplitude = amp_text
        .parse::<f64>()
        .ok()
        .filter(|a| (0.0..=1.0).contains(a))
        .ok_or_else(|| invalid("amplitude", amp_text, "0.0 to 1.0"))?;
    Ok(SourceKind::Tone {
        frequencies,
        amplitude,
    })
}

/// Query parameter `key`, or `default` when absent.
fn param<'a>(uri: &'a SourceUri, key: &str, default: &'a str) -> &'a str {
    uri.query.get(key).map_or(default, String::as_str)
}

fn require_path(uri: &SourceUri, text: &str) -> Result<PathBuf, SourceError> {
    if uri.path.is_empty() || uri.path == "/" {
        return Err(SourceError::Syntax(super::redacted_uri_string(text)));
    }
    Ok(PathBuf::from(&uri.path))
}

/// `host[:port]`, or `port=` in the query, as a socket address; the host must be an IP.
fn tcp_address(uri: &SourceUri) -> Option<SocketAddr> {
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
    let ip: IpAddr = if ip_text.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        ip_text.parse().ok()?
    };
    let port = match uri.query.get("port").map(String::as_str).or(port_text) {
        Some(text) => text.parse().ok()?,
        None => DEFAULT_TCP_SOURCE_PORT,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceDefaults, SourceSpec};

    fn parse(text: &str) -> Result<SourceSpec, SourceError> {
        SourceSpec::parse(text, &SourceDefaults::default())
    }

    #[test]
    fn every_listed_scheme_is_parsed_and_no_other() {
        for scheme in SCHEMES {
            let result = parse(&format!("{scheme}://127.0.0.1/x?name=a"));
            assert!(result.is_ok(), "{scheme}: {result:?}");
        }
        for scheme in SNAPSERVER_ONLY_SCHEMES {
            assert!(!SCHEMES.contains(scheme), "{scheme}");
        }
    }

    #[cfg(feature = "alsa")]
    #[test]
    fn alsa_device_defaults_to_snapservers() {
        let spec = parse("alsa:///?name=LineIn").unwrap();
        assert_eq!(
            spec.kind,
            SourceKind::Alsa {
                device: "hw:0".into()
            }
        );
        // snapserver's default for a capture: nothing is sent while it is silent.
        assert!(!spec.send_silence);
        let spec = parse("alsa:///?name=LineIn&device=hw:1,0&send_silence=true").unwrap();
        assert_eq!(
            spec.kind,
            SourceKind::Alsa {
                device: "hw:1,0".into()
            }
        );
        assert!(spec.send_silence);
    }

    #[cfg(not(feature = "alsa"))]
    #[test]
    fn alsa_without_the_feature_says_how_to_build_it() {
        let err = parse("alsa:///?name=LineIn").unwrap_err();
        assert!(matches!(
            err,
            SourceError::NotBuilt {
                feature: "alsa",
                ..
            }
        ));
    }

    #[test]
    fn upstream_sources_name_a_server() {
        let spec = parse("snapcast://core.local?name=Edge").unwrap();
        assert_eq!(
            spec.kind,
            SourceKind::Upstream(crate::upstream::Upstream {
                host: "core.local".into(),
                port: 1704,
                control_port: 1705,
                stream: None,
            })
        );
        let spec =
            parse("snapcast://10.0.0.2:1804?name=Edge&stream=Radio&control_port=1805").unwrap();
        assert_eq!(
            spec.kind,
            SourceKind::Upstream(crate::upstream::Upstream {
                host: "10.0.0.2".into(),
                port: 1804,
                control_port: 1805,
                stream: Some("Radio".into()),
            })
        );
        let spec = parse("snapcast://[::1]:1704?name=Edge").unwrap();
        assert!(matches!(spec.kind, SourceKind::Upstream(ref u) if u.host == "::1"));
        for bad in [
            "snapcast://?name=Edge",
            "snapcast://core:0?name=Edge",
            "snapcast://core:x?name=Edge",
            "snapcast://core?name=Edge&control_port=99999",
            "snapcast://core?name=Edge&controlscript=meta_mpd.py",
        ] {
            assert!(
                matches!(parse(bad), Err(SourceError::InvalidParam { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn pipe_modes() {
        let spec = parse("pipe:///tmp/f?name=a&mode=read").unwrap();
        assert_eq!(
            spec.kind,
            SourceKind::Pipe {
                path: "/tmp/f".into(),
                create: false
            }
        );
        assert!(matches!(
            parse("pipe:///tmp/f?name=a&mode=write"),
            Err(SourceError::InvalidParam { key: "mode", .. })
        ));
        assert!(matches!(
            parse("pipe://?name=a"),
            Err(SourceError::Syntax(_))
        ));
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
        assert!(matches!(
            parse("tcp://localhost:5000?name=a"),
            Err(SourceError::InvalidParam { key: "host", .. })
        ));
        assert!(matches!(
            parse("tcp://127.0.0.1?name=a&mode=both"),
            Err(SourceError::InvalidParam { key: "mode", .. })
        ));
        let process =
            parse("process:///usr/bin/player?name=p&params=--out%20-%20%22my%20file%22").unwrap();
        assert_eq!(
            process.kind,
            SourceKind::Process {
                path: "/usr/bin/player".into(),
                args: vec!["--out".into(), "-".into(), "my file".into()],
                watchdog: None,
                log_stderr: false,
            }
        );
        let watched = parse("process:///bin/p?name=p&wd_timeout=30&log_stderr=true").unwrap();
        assert_eq!(
            watched.kind,
            SourceKind::Process {
                path: "/bin/p".into(),
                args: Vec::new(),
                watchdog: Some(std::time::Duration::from_secs(30)),
                log_stderr: true,
            }
        );
        for (uri, key) in [
            ("process:///bin/p?name=p&wd_timeout=0", "wd_timeout"),
            ("process:///bin/p?name=p&wd_timeout=soon", "wd_timeout"),
            ("process:///bin/p?name=p&log_stderr=yes", "log_stderr"),
        ] {
            assert!(
                matches!(parse(uri), Err(SourceError::InvalidParam { key: k, .. }) if k == key),
                "{uri}"
            );
        }
    }

    #[test]
    fn unserved_schemes_are_unsupported_or_unknown() {
        assert!(matches!(
            parse("jack:///?name=a"),
            Err(SourceError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            parse("gopher:///x?name=a"),
            Err(SourceError::UnknownScheme { .. })
        ));
    }
}

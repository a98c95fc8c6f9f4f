//! `librespot://` (and snapserver's alias `spotify://`) sources (docs/SOURCES.md §2.5): the
//! Spotify Connect player librespot, run as a process writing 44100:16:2 PCM to stdout. Here:
//! the command line snapserver builds from the URI, and what its log says about the track.
//! The process itself is run by the process reader (restart, watchdog, `killall`).

use serde_json::{json, Value};

use super::{SourceError, SourceKind, SourceUri};

/// Sample format librespot writes; snapserver forces it for these sources.
pub(crate) const SAMPLE_FORMAT: &str = "44100:16:2";

/// snapserver's default watchdog: restart librespot when its log has been silent this long
/// (130 min).
const DEFAULT_WATCHDOG_S: u64 = 7800;

/// The player's command line as snapserver builds it, in its order:
/// `[params] --name <devicename> [--username u --password p] --bitrate <b> --backend pipe
/// [--cache d] [--disable-audio-cache] [--initial-volume v] [--onevent s]
/// [--enable-volume-normalisation] [--autoplay on] --verbose`.
pub(super) fn kind(uri: &SourceUri, name: &str) -> Result<SourceKind, SourceError> {
    let invalid = |key: &'static str, value: &str, allowed: &str| {
        SourceError::invalid(name, key, value, allowed)
    };
    let get = |key: &str, default: &str| {
        uri.query
            .get(key)
            .map_or_else(|| default.to_owned(), String::clone)
    };
    let flag = |key: &'static str| match get(key, "false").as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(invalid(key, other, "true or false")),
    };
    let mut args = super::uri::split_params(&get("params", ""));
    if args.iter().any(|a| a.starts_with("--onevent")) {
        return Err(invalid(
            "params",
            "--onevent",
            "no --onevent inside params; use onevent=",
        ));
    }
    let (username, password) = (get("username", ""), get("password", ""));
    if username.is_empty() != password.is_empty() {
        return Err(invalid(
            if username.is_empty() {
                "username"
            } else {
                "password"
            },
            "",
            "username and password together, or neither",
        ));
    }
    let bitrate = get("bitrate", "320");
    if !matches!(bitrate.as_str(), "96" | "160" | "320") {
        return Err(invalid("bitrate", &bitrate, "96, 160 or 320"));
    }
    let volume = get("volume", "100");
    if !volume.is_empty() && volume.parse::<u8>().map_or(true, |v| v > 100) {
        return Err(invalid("volume", &volume, "0 to 100"));
    }
    args.extend(["--name".to_owned(), get("devicename", "Snapcast")]);
    if !username.is_empty() {
        args.extend([
            "--username".to_owned(),
            username,
            "--password".to_owned(),
            password,
        ]);
    }
    args.extend([
        "--bitrate".to_owned(),
        bitrate,
        "--backend".into(),
        "pipe".into(),
    ]);
    let cache = get("cache", "");
    if !cache.is_empty() {
        args.extend(["--cache".to_owned(), cache]);
    }
    if flag("disable_audio_cache")? {
        args.push("--disable-audio-cache".into());
    }
    if !volume.is_empty() {
        args.extend(["--initial-volume".to_owned(), volume]);
    }
    let onevent = get("onevent", "");
    if !onevent.is_empty() {
        args.extend(["--onevent".to_owned(), onevent]);
    }
    if flag("normalize")? {
        args.push("--enable-volume-normalisation".into());
    }
    if flag("autoplay")? {
        args.extend(["--autoplay".to_owned(), "on".to_owned()]);
    }
    args.push("--verbose".into());
    let watchdog_text = get("wd_timeout", &DEFAULT_WATCHDOG_S.to_string());
    let watchdog = super::process::parse_watchdog(&watchdog_text).ok_or_else(|| {
        invalid(
            "wd_timeout",
            &watchdog_text,
            super::process::WATCHDOG_ALLOWED,
        )
    })?;
    Ok(SourceKind::Player {
        path: super::process::program_path(&uri.path, "librespot"),
        args,
        killall: flag("killall")?,
        watchdog: Some(watchdog),
        player: super::Player::Librespot,
    })
}

/// What one line of librespot's log says about the track: its `metadata` object, with
/// Spotify's logo as the cover. Lines `… <Title> (N ms) loaded` (plain librespot) and
/// `metadata:{"ARTIST": …, "TITLE": …}` (snapserver's librespot patch).
pub(crate) fn track_metadata(line: &str) -> Option<Value> {
    let logo = json!({"data": spotify_logo(), "extension": "svg"});
    if let Some((_, patched)) = line.split_once("metadata:") {
        let value: Value = serde_json::from_str(patched.trim()).ok()?;
        let artist = value.get("ARTIST")?.as_str()?;
        let title = value.get("TITLE")?.as_str()?;
        return Some(json!({"artist": [artist], "title": title, "artData": logo}));
    }
    let rest = line.strip_suffix(" loaded")?;
    let (head, ms) = rest.rsplit_once(" (")?;
    let ms: f64 = ms.strip_suffix(" ms)")?.trim().parse().ok()?;
    let start = head.find(" <")?;
    let title = head[start + 2..].strip_suffix('>')?;
    Some(json!({"title": title, "duration": ms / 1000.0, "artData": logo}))
}

/// A small Spotify-green mark, base64, as the cover of librespot streams (snapserver shows
/// Spotify's logo there).
fn spotify_logo() -> String {
    use base64::Engine as _;
    const SVG: &str = r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 168 168" width="168" height="168"><circle cx="84" cy="84" r="84" fill="#1ED760"/><path d="M40 62c30-9 62-6 88 8M44 86c26-7 52-4 74 8M48 108c21-5 41-3 58 6" stroke="#000" stroke-width="10" stroke-linecap="round" fill="none"/></svg>"##;
    base64::engine::general_purpose::STANDARD.encode(SVG)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceDefaults, SourceSpec};

    fn parse(text: &str) -> Result<SourceSpec, SourceError> {
        SourceSpec::parse(text, &SourceDefaults::default())
    }

    fn args(text: &str) -> Vec<String> {
        match parse(text).unwrap().kind {
            SourceKind::Player { args, .. } => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_command_line_is_snapservers() {
        assert_eq!(
            args("librespot:///usr/bin/librespot?name=Spotify"),
            [
                "--name",
                "Snapcast",
                "--bitrate",
                "320",
                "--backend",
                "pipe",
                "--initial-volume",
                "100",
                "--verbose"
            ]
        );
        assert_eq!(
            args(
                "librespot:///usr/bin/librespot?name=Spotify&devicename=Kitchen&bitrate=160&volume=42\
                 &username=me&password=pw&cache=/var/cache/ls&disable_audio_cache=true\
                 &onevent=/bin/ev&normalize=true&autoplay=true&params=--zeroconf-port%3D5354"
            ),
            [
                "--zeroconf-port=5354", "--name", "Kitchen", "--username", "me", "--password",
                "pw", "--bitrate", "160", "--backend", "pipe", "--cache", "/var/cache/ls",
                "--disable-audio-cache", "--initial-volume", "42", "--onevent", "/bin/ev",
                "--enable-volume-normalisation", "--autoplay", "on", "--verbose"
            ]
        );
        let spec =
            parse("spotify:///librespot?name=S&sampleformat=48000:16:2&killall=true&wd_timeout=60")
                .unwrap();
        assert_eq!(
            spec.sample_format.to_string(),
            SAMPLE_FORMAT,
            "forced, as snapserver"
        );
        assert!(matches!(
            spec.kind,
            SourceKind::Player { killall: true, watchdog: Some(w), .. } if w == std::time::Duration::from_secs(60)
        ));
        // Credentials never show.
        let shown = spec.uri.redacted().to_uri_string();
        let with_login = parse("librespot:///l?name=S&username=me&password=pw").unwrap();
        let shown_login = with_login.uri.redacted().to_uri_string();
        assert!(
            !shown.contains("pw") && !shown_login.contains("=me") && !shown_login.contains("pw"),
            "{shown_login}"
        );
    }

    #[test]
    fn bad_parameters_are_refused_naming_them() {
        let key = |text: &str| match parse(text) {
            Err(SourceError::InvalidParam { key, .. }) => key,
            other => panic!("{other:?}"),
        };
        assert_eq!(key("librespot:///l?name=S&username=me"), "password");
        assert_eq!(key("librespot:///l?name=S&password=pw"), "username");
        assert_eq!(key("librespot:///l?name=S&params=--onevent%20x"), "params");
        assert_eq!(key("librespot:///l?name=S&bitrate=999"), "bitrate");
        assert_eq!(key("librespot:///l?name=S&volume=150"), "volume");
        assert_eq!(key("librespot:///l?name=S&autoplay=maybe"), "autoplay");
        assert_eq!(key("librespot:///l?name=S&wd_timeout=0"), "wd_timeout");
    }

    #[test]
    fn track_lines_become_metadata() {
        let loaded =
            "[2021-06-04T07:20:47Z INFO  librespot_playback::player] <Tunnel> (310573 ms) loaded";
        let metadata = track_metadata(loaded).unwrap();
        assert_eq!(metadata["title"], "Tunnel");
        assert_eq!(metadata["duration"], 310.573);
        assert_eq!(metadata["artData"]["extension"], "svg");
        let patched =
            r#"[2021-06-04T07:20:47Z INFO  librespot] metadata:{"ARTIST":"Artist","TITLE":"Song"}"#;
        let metadata = track_metadata(patched).unwrap();
        assert_eq!(
            (metadata["artist"][0].as_str(), metadata["title"].as_str()),
            (Some("Artist"), Some("Song"))
        );
        for other in [
            "[2021-05-09T07:25:48Z INFO  librespot_playback::player] Loading <Big Gangsta>",
            "metadata:{not json",
            "<x> (abc ms) loaded",
            "",
        ] {
            assert_eq!(track_metadata(other), None, "{other}");
        }
    }
}

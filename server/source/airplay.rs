//! `airplay://` sources (docs/SOURCES.md §2.6): shairport-sync run as a process writing
//! 44100:16:2 PCM to stdout, with its metadata (album, artist, title, cover) read from the
//! pipe it is told to write to. Here: the command line snapserver builds, the port it moves
//! to when another instance holds it, and the parser of the metadata pipe's XML items.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::{SourceError, SourceKind, SourceUri};

/// What shairport-sync says when its port is taken; snapserver then tries the next port.
pub(crate) const PORT_TAKEN: &str = "Is another instance of Shairport Sync running on this device";

/// Longest metadata text kept while waiting for the end of an item (a cover is a few
/// hundred KiB of base64); beyond it the buffer is dropped as garbage.
const MAX_PENDING: usize = 16 << 20;

/// The fixed part of the command line, as snapserver builds it:
/// `--name=<devicename> --output=stdout --get-coverart [--password <pw>] [params]`; the pipe
/// and the port follow ([`Ports::args`]).
pub(super) fn kind(uri: &SourceUri, name: &str) -> Result<SourceKind, SourceError> {
    let get = |key: &str, default: &str| {
        uri.query
            .get(key)
            .map_or_else(|| default.to_owned(), String::clone)
    };
    let mut args = vec![
        format!("--name={}", get("devicename", "Snapcast")),
        "--output=stdout".to_owned(),
        "--get-coverart".to_owned(),
    ];
    let password = get("password", "");
    if !password.is_empty() {
        args.extend(["--password".to_owned(), password]);
    }
    args.extend(super::uri::split_params(&get("params", "")));
    let port_text = get("port", "5000");
    let port = port_text
        .parse::<u16>()
        .ok()
        .filter(|p| *p > 0 && *p < u16::MAX)
        .ok_or_else(|| SourceError::invalid(name, "port", &port_text, "1 to 65534"))?;
    Ok(SourceKind::Player {
        path: super::process::program_path(&uri.path, "shairport-sync"),
        args,
        killall: false,
        watchdog: None,
        player: super::Player::Airplay { port },
    })
}

/// The port shairport-sync listens on, moved up by one each time it says another instance
/// has it, and the metadata pipe that goes with it (snapserver's
/// `/tmp/shairmeta.<pid>.<port>`).
#[derive(Debug)]
pub(crate) struct Ports {
    port: AtomicU16,
    base_args: Vec<String>,
}

impl Ports {
    pub(crate) fn new(port: u16, base_args: Vec<String>) -> Arc<Self> {
        Arc::new(Self {
            port: AtomicU16::new(port),
            base_args,
        })
    }

    /// The metadata pipe for the current port.
    pub(crate) fn pipe(&self) -> PathBuf {
        let port = self.port.load(Ordering::Relaxed);
        PathBuf::from(format!("/tmp/shairmeta.{}.{port}", std::process::id()))
    }

    /// The whole command line for the next start.
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = self.base_args.clone();
        args.push(format!("--metadata-pipename={}", self.pipe().display()));
        args.push(format!("--port={}", self.port.load(Ordering::Relaxed)));
        args
    }

    /// Reads one stderr line; `true` when it moved the port.
    pub(crate) fn on_stderr(&self, line: &str) -> bool {
        if line.contains(PORT_TAKEN) {
            self.port.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// The current port.
    pub(crate) fn port(&self) -> u16 {
        self.port.load(Ordering::Relaxed)
    }
}

/// Reads the metadata pipe's stream of `<item>` records and gathers album, artist, title and
/// cover; a batch is complete at `ssnc/mden` (metadata end) or `ssnc/pcen` (picture end),
/// when it has changed (snapserver's rule).
#[derive(Debug, Default)]
pub(crate) struct MetadataParser {
    pending: String,
    metadata: Map<String, Value>,
    dirty: bool,
    /// Items that could not be read, for the log.
    pub(crate) bad_items: u64,
}

impl MetadataParser {
    /// Takes more text from the pipe; returns the metadata object each time a batch is
    /// complete and changed.
    pub(crate) fn feed(&mut self, text: &str) -> Vec<Value> {
        self.pending.push_str(text);
        let mut complete = Vec::new();
        while let Some(end) = self.pending.find("</item>") {
            let item: String = self.pending.drain(..end + "</item>".len()).collect();
            let start = item.rfind("<item>");
            // Anything but white space between items is garbage.
            if !item[..start.unwrap_or(0)].trim().is_empty() {
                self.bad_items += 1;
            }
            match start.map(|start| parse_item(&item[start..])) {
                Some(Some(item)) => {
                    if let Some(metadata) = self.take(item) {
                        complete.push(metadata);
                    }
                }
                _ => self.bad_items += 1,
            }
        }
        if self.pending.len() > MAX_PENDING {
            self.pending.clear();
            self.bad_items += 1;
        }
        complete
    }

    fn take(&mut self, item: Item) -> Option<Value> {
        let mut set = |key: &str, value: Value| {
            if self.metadata.get(key) != Some(&value) {
                self.metadata.insert(key.to_owned(), value);
                self.dirty = true;
            }
        };
        let text = || {
            base64::engine::general_purpose::STANDARD
                .decode(item.data.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok())
        };
        match (item.kind.as_str(), item.code.as_str()) {
            ("core", "asal") => set("album", text()?.into()),
            ("core", "asar") => set("artist", json!([text()?])),
            ("core", "minm") => set("title", text()?.into()),
            ("ssnc", "PICT") if !item.data.trim().is_empty() => set(
                "artData",
                json!({"data": item.data.split_whitespace().collect::<String>(), "extension": "jpg"}),
            ),
            ("ssnc", "mden" | "pcen") if self.dirty => {
                self.dirty = false;
                return Some(Value::Object(self.metadata.clone()));
            }
            _ => {}
        }
        None
    }
}

/// One record: its type and code (four characters each, written in hex) and its data (base64,
/// as written).
#[derive(Debug, PartialEq, Eq)]
struct Item {
    kind: String,
    code: String,
    data: String,
}

fn parse_item(item: &str) -> Option<Item> {
    let field = |tag: &str| {
        let start = item.find(&format!("<{tag}"))?;
        let open_end = item[start..].find('>')? + start + 1;
        let close = item[open_end..].find(&format!("</{tag}>"))? + open_end;
        Some(item[open_end..close].trim().to_owned())
    };
    let four = |hex: String| {
        let bytes = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
            .collect::<Option<Vec<u8>>>()?;
        (bytes.len() == 4).then(|| String::from_utf8(bytes).ok())?
    };
    Some(Item {
        kind: four(field("type")?)?,
        code: four(field("code")?)?,
        data: field("data").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceDefaults, SourceSpec};

    fn item(kind: &str, code: &str, data: Option<&[u8]>) -> String {
        let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
        let data = data.map_or(String::new(), |d| {
            format!(
                "\n<data encoding=\"base64\">\n{}</data>",
                base64::engine::general_purpose::STANDARD.encode(d)
            )
        });
        format!(
            "<item><type>{}</type><code>{}</code><length>{}</length>{data}</item>\n",
            hex(kind),
            hex(code),
            data.len()
        )
    }

    #[test]
    fn the_command_line_is_snapservers_and_the_port_moves_on() {
        let spec = SourceSpec::parse(
            "airplay:///usr/bin/shairport-sync?name=AirPlay&devicename=Living%20Room&password=pw&port=5010&params=-v",
            &SourceDefaults::default(),
        )
        .unwrap();
        assert_eq!(spec.sample_format.to_string(), "44100:16:2");
        let SourceKind::Player { args, player, .. } = spec.kind else {
            panic!("a player");
        };
        assert_eq!(
            args,
            [
                "--name=Living Room",
                "--output=stdout",
                "--get-coverart",
                "--password",
                "pw",
                "-v"
            ]
        );
        let super::super::Player::Airplay { port } = player else {
            panic!("airplay");
        };
        let ports = Ports::new(port, args);
        let pipe = format!("/tmp/shairmeta.{}.5010", std::process::id());
        assert_eq!(
            &ports.args()[6..],
            [
                format!("--metadata-pipename={pipe}"),
                "--port=5010".to_owned()
            ]
        );
        assert!(!ports.on_stderr("fatal error: something else"));
        assert!(ports.on_stderr(&format!("warning: {PORT_TAKEN}?")));
        assert_eq!(ports.port(), 5011);
        assert!(ports.args().last().unwrap().ends_with("5011"));
        assert!(!spec.uri.redacted().to_uri_string().contains("pw"));
    }

    #[test]
    fn metadata_items_make_a_batch_at_its_end() {
        let mut parser = MetadataParser::default();
        let mut text = item("ssnc", "mdst", None);
        text += &item("core", "asal", Some(b"Album"));
        text += &item("core", "asar", Some("Ärtist".as_bytes()));
        text += &item("core", "minm", Some(b"Title"));
        // Split anywhere: items may arrive in pieces.
        let (a, b) = text.split_at(text.len() / 2);
        assert!(parser.feed(a).is_empty());
        assert!(parser.feed(b).is_empty());
        let done = parser.feed(&item("ssnc", "mden", None));
        assert_eq!(
            done,
            [json!({"album": "Album", "artist": ["Ärtist"], "title": "Title"})]
        );
        // The same again: nothing new.
        assert!(parser
            .feed(&(item("core", "minm", Some(b"Title")) + &item("ssnc", "mden", None)))
            .is_empty());
        // A cover, complete at picture end.
        let cover = item("ssnc", "PICT", Some(b"\xff\xd8jpeg"));
        let done = parser.feed(&(cover + &item("ssnc", "pcen", None)));
        assert_eq!(done[0]["artData"]["extension"], "jpg");
        assert_eq!(done[0]["title"], "Title");
    }

    #[test]
    fn garbage_on_the_pipe_is_counted_and_skipped() {
        let mut parser = MetadataParser::default();
        assert!(parser
            .feed("garbage\n<item><type>zz</type></item>\n")
            .is_empty());
        assert_eq!(
            parser.bad_items, 2,
            "the text before the item, and the item"
        );
        let good = item("core", "minm", Some(b"T")) + &item("ssnc", "mden", None);
        assert_eq!(parser.feed(&good), [json!({"title": "T"})]);
        assert!(parser.feed(&"x".repeat(MAX_PENDING + 1)).is_empty());
        assert_eq!(parser.bad_items, 3);
    }
}

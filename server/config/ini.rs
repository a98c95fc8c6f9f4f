//! snapserver.conf's INI form (docs/PROTOCOL.md §4.1), read the way snapserver's `popl` reads
//! it: `[section]` headers, `key = value` lines split at the first `=`, full-line `#`/`;`
//! comments. Unlike popl, a line we cannot read is an error, not silently skipped.
//! Pure text in, a figment [`Dict`] out: no I/O.

use std::collections::BTreeMap;

use figment::value::{Dict, Value};

use super::keys::Repeat;

/// One `key = value` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    /// 1-based line number.
    pub(crate) line: usize,
    /// `section.key`, with `-` in the section name turned into `_`.
    pub(crate) name: String,
    /// The value, trimmed, with one pair of surrounding double quotes removed.
    pub(crate) value: String,
}

/// A line the parser cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub(crate) struct IniError {
    /// 1-based line number.
    pub(crate) line: usize,
    /// What is wrong with it.
    pub(crate) message: String,
}

/// Splits `text` into entries, in file order.
pub(crate) fn parse(text: &str) -> Result<Vec<Entry>, IniError> {
    let mut entries = Vec::new();
    let mut section: Option<String> = None;
    // A UTF-8 byte order mark is harmless; editors on other systems add one.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let error = |message: String| IniError { line, message };
        if raw.chars().any(|c| c.is_control() && c != '\t') {
            return Err(error(
                "unexpected control character (is this a text file?)".to_owned(),
            ));
        }
        let trimmed = raw.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') || trimmed.starts_with(';') {
            continue;
        }
        if let Some(header) = trimmed.strip_prefix('[') {
            let name = header
                .strip_suffix(']')
                .map(str::trim)
                .filter(|name| is_name(name))
                .ok_or_else(|| error(format!("malformed section header '{}'", shorten(trimmed))))?;
            section = Some(name.replace('-', "_"));
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            return Err(error(format!(
                "expected 'key = value' or '[section]', found '{}'",
                shorten(trimmed)
            )));
        };
        let key = key.trim();
        if !is_name(key) {
            return Err(error(format!("'{}' is not a valid key name", shorten(key))));
        }
        let Some(section) = &section else {
            return Err(error(format!(
                "key '{key}' is outside any section; put it under a [section] header"
            )));
        };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        entries.push(Entry {
            line,
            name: format!("{section}.{key}"),
            value: value.to_owned(),
        });
    }
    Ok(entries)
}

/// Groups entries into `{section: {key: value}}`. A key that `repeat` says may repeat collects
/// its values into an array in file order; repeating any other key is an error (snapserver's
/// popl refuses it too). `repeat` returns `None` for keys it does not know: those are reported
/// later as unknown, so they must not fail here first.
pub(crate) fn to_dict(
    entries: &[Entry],
    repeat: impl Fn(&str) -> Option<Repeat>,
) -> Result<Dict, IniError> {
    let mut first_line: BTreeMap<&str, usize> = BTreeMap::new();
    let mut values: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for entry in entries {
        if let Some(first) = first_line.get(entry.name.as_str()) {
            if repeat(&entry.name) == Some(Repeat::Once) {
                return Err(IniError {
                    line: entry.line,
                    message: format!(
                        "{} is already set on line {first} and can be given only once",
                        entry.name
                    ),
                });
            }
        } else {
            first_line.insert(&entry.name, entry.line);
        }
        values.entry(&entry.name).or_default().push(&entry.value);
    }
    let mut dict = Dict::new();
    for (name, mut list) in values {
        let (section, key) = name
            .split_once('.')
            .expect("parse builds section.key names");
        let value = if list.len() == 1 {
            Value::from(list.remove(0))
        } else {
            Value::from(list)
        };
        if let Value::Dict(_, keys) = dict
            .entry(section.to_owned())
            .or_insert_with(|| Value::from(Dict::new()))
        {
            keys.insert(key.to_owned(), value);
        }
    }
    Ok(dict)
}

/// Section and key names: what snapserver's names use, so a typo'd line fails loudly.
fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// Keeps error messages one line long when a "line" is a screenful of junk.
fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_owned()
    } else {
        format!("{}...", text.chars().take(MAX).collect::<String>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, name: &str, value: &str) -> Entry {
        Entry {
            line,
            name: name.into(),
            value: value.into(),
        }
    }

    #[test]
    fn reads_sections_comments_quotes_and_equals_in_values() {
        let text = "# comment\n; other comment\n\n[stream]\n  source = pipe:///tmp/snapfifo?name=default  \n\
                    codec = \"pcm\"\n[tcp-streaming]\nport=1800\n[http]\ndoc_root =\n";
        assert_eq!(
            parse(text).unwrap(),
            vec![
                entry(5, "stream.source", "pipe:///tmp/snapfifo?name=default"),
                entry(6, "stream.codec", "pcm"),
                entry(8, "tcp_streaming.port", "1800"),
                entry(10, "http.doc_root", ""),
            ]
        );
    }

    #[test]
    fn strips_only_one_pair_of_quotes_and_keeps_fragments() {
        let entries = parse("[s]\na = \"\"x\"\"\nb = \"open\nc = tcp://h?name=a#frag\n").unwrap();
        assert_eq!(entries[0].value, "\"x\"");
        assert_eq!(entries[1].value, "\"open");
        assert_eq!(entries[2].value, "tcp://h?name=a#frag");
    }

    #[test]
    fn rejects_bad_lines_with_their_number() {
        let error = |text: &str| parse(text).unwrap_err();
        assert_eq!(error("[s]\nok = 1\ngarbage\n").line, 3);
        assert!(error("[s]\ngarbage\n").message.contains("'garbage'"));
        let outside = error("# top\nport = 1704\n");
        assert_eq!(outside.line, 2);
        assert!(outside.message.contains("outside any section"), "{outside}");
        assert_eq!(error("[stream\n").line, 1);
        assert_eq!(error("[]\n").line, 1);
        assert_eq!(error("[s]\nbad key = 1\n").line, 2);
        let junk = error("[s]\n\u{1}\u{2}\u{3}=\u{7f}\n");
        assert_eq!(junk.line, 2);
        assert!(junk.message.contains("control character"), "{junk}");
    }

    #[test]
    fn groups_repeatable_keys_and_rejects_other_repeats() {
        let entries = parse("[stream]\nsource = a\nport = 1\nsource = b\n").unwrap();
        let repeat = |name: &str| match name {
            "stream.source" => Some(Repeat::List),
            _ => Some(Repeat::Once),
        };
        let dict = to_dict(&entries, repeat).unwrap();
        let stream = dict["stream"].as_dict().unwrap();
        assert_eq!(stream["source"], Value::from(vec!["a", "b"]));
        assert_eq!(stream["port"], Value::from("1"));

        let entries = parse("[stream]\nport = 1\n\nport = 2\n").unwrap();
        let error = to_dict(&entries, repeat).unwrap_err();
        assert_eq!(error.line, 4);
        assert!(error.message.contains("line 2"), "{error}");
    }

    #[test]
    fn unknown_keys_may_repeat_here() {
        let entries = parse("[x]\ny = 1\ny = 2\n").unwrap();
        let dict = to_dict(&entries, |_| None).unwrap();
        assert_eq!(
            dict["x"].as_dict().unwrap()["y"],
            Value::from(vec!["1", "2"])
        );
    }
}

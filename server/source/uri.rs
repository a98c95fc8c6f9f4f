//! The generic source URI of snapserver's form (docs/SOURCES.md §1.1): parsed into its
//! parts, percent-decoded, and written back, and the `params=` argument list the process and
//! player schemes share. What each scheme means is `schemes.rs`'s business.

use std::collections::BTreeMap;

use super::SourceError;

/// Generic `scheme://host/path?query#fragment`, every part percent-decoded (§1.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceUri {
    /// e.g. `pipe`.
    pub(crate) scheme: String,
    /// Host (and port) part; often empty.
    pub(crate) host: String,
    /// Path part, starting with `/` when present.
    pub(crate) path: String,
    /// Query parameters (the last of repeated keys wins).
    pub(crate) query: BTreeMap<String, String>,
    /// Fragment, without `#`.
    pub(crate) fragment: String,
}

impl SourceUri {
    /// Parses `scheme://host/path?query#fragment`, stripping surrounding quotes.
    pub(crate) fn parse(text: &str) -> Result<Self, SourceError> {
        let syntax = || SourceError::Syntax(super::redact::redacted_unparsed(text));
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

/// Splits `params=` into arguments on spaces, keeping double-quoted runs together.
pub(super) fn split_params(text: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_decoded_and_written_back_sorted() {
        let uri = SourceUri::parse("\"PIPE://h:1/tmp/my%20fifo?b=2&a=x%26y&flag#frag\"").unwrap();
        assert_eq!(uri.scheme, "pipe");
        assert_eq!(uri.host, "h:1");
        assert_eq!(uri.path, "/tmp/my fifo");
        assert_eq!(uri.query["a"], "x&y");
        assert_eq!(uri.query["flag"], "");
        assert_eq!(uri.fragment, "frag");
        assert_eq!(
            uri.to_uri_string(),
            "pipe://h:1/tmp/my fifo?a=x&y&b=2&flag=#frag"
        );
    }

    #[test]
    fn not_a_uri_is_a_syntax_error() {
        for text in ["/tmp/fifo", "://x", "pi pe:///x"] {
            assert!(
                matches!(SourceUri::parse(text), Err(SourceError::Syntax(_))),
                "{text}"
            );
        }
    }

    #[test]
    fn percent_decoding_keeps_malformed_escapes() {
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}

//! Secrets in source URIs, masked wherever a URI is shown (status reports, logs, replies):
//! the password of `user:password@` in the authority, and the value of every query parameter
//! whose key names a password, token or secret (librespot's `password`, for instance), and
//! the `username` of an account (librespot's; snapserver masks it too).

use super::SourceUri;

/// What replaces a secret, as snapserver masks passwords.
const MASK: &str = "xxx";

/// Key fragments (matched case-insensitively) whose query values are secrets.
const SECRET_KEYS: &[&str] = &["password", "secret", "token", "passwd"];

/// Whether the query key `key` holds a secret: its name contains `password`, `passwd`,
/// `token` or `secret`, in any case, or it is `username`.
pub(crate) fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key == "username" || SECRET_KEYS.iter().any(|s| key.contains(s))
}

/// `uri` with every secret replaced by `xxx`: the password of `user:password@` in the host
/// (the user stays) and the value of each query key [`is_secret_key`] names.
pub(crate) fn redact(uri: &SourceUri) -> SourceUri {
    let mut uri = uri.clone();
    if let Some((userinfo, rest)) = uri.host.rsplit_once('@') {
        let user = userinfo.split(':').next().unwrap_or_default();
        uri.host = if userinfo.contains(':') {
            format!("{user}:{MASK}@{rest}")
        } else {
            format!("{user}@{rest}")
        };
    }
    for (key, value) in &mut uri.query {
        if is_secret_key(key) {
            *value = MASK.to_owned();
        }
    }
    uri
}

impl SourceUri {
    /// This URI with its secrets masked; see [`redact`].
    pub(crate) fn redacted(&self) -> SourceUri {
        redact(self)
    }
}

/// A source URI given as text, secrets masked: as written when it holds no secret, else
/// written back as [`SourceUri::to_uri_string`] does (decoded, query sorted). Text that does
/// not parse as a URI comes back whole unless it holds an `@` or a secret-looking word, in
/// which case all of it is masked.
pub(crate) fn redacted_uri_string(text: &str) -> String {
    match SourceUri::parse(text) {
        Ok(uri) => {
            let masked = redact(&uri);
            if masked == uri {
                text.to_owned()
            } else {
                masked.to_uri_string()
            }
        }
        Err(_) => redacted_unparsed(text),
    }
}

/// Text that is not a URI (for an error message about it): whole unless it holds an `@` or a
/// secret-looking word, then masked entirely. Never parses, so the parser's own errors can
/// use it.
pub(crate) fn redacted_unparsed(text: &str) -> String {
    if text.contains('@') || is_secret_key(text) {
        MASK.to_owned()
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(text: &str) -> String {
        SourceUri::parse(text).unwrap().redacted().to_uri_string()
    }

    #[test]
    fn passwords_are_masked() {
        let uri = SourceUri::parse(
            "librespot://bob:hunter2@host:4000/usr/bin/librespot?name=s&password=hunter2&username=bob",
        )
        .unwrap();
        let text = redact(&uri).to_uri_string();
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("bob:xxx@host:4000") && text.contains("password=xxx"),
            "{text}"
        );
        // The account name too, as snapserver shows librespot's.
        assert!(text.contains("username=xxx"), "{text}");
    }

    #[test]
    fn tokens_and_secrets_in_any_case_are_masked() {
        assert_eq!(
            shown("spotify:///x?name=s&Token=abc&client_secret=def&PASSWD=ghi&access_TOKEN=j"),
            "spotify:///x?PASSWD=xxx&Token=xxx&access_TOKEN=xxx&client_secret=xxx&name=s"
        );
    }

    #[test]
    fn userinfo_password_is_masked_and_the_user_kept() {
        assert_eq!(
            shown("tcp://bob:pw@10.0.0.1:4953?name=t"),
            "tcp://bob:xxx@10.0.0.1:4953?name=t"
        );
        assert_eq!(
            shown("tcp://bob@10.0.0.1?name=t"),
            "tcp://bob@10.0.0.1?name=t"
        );
    }

    #[test]
    fn a_uri_without_secrets_is_unchanged() {
        let uri = SourceUri::parse("pipe:///tmp/snapfifo?name=default&codec=flac#f").unwrap();
        assert_eq!(uri.redacted(), uri);
    }

    #[test]
    fn text_is_redacted_too() {
        assert_eq!(
            redacted_uri_string("pipe:///tmp/f?password=hunter2&name=a"),
            "pipe:///tmp/f?name=a&password=xxx"
        );
        assert_eq!(
            redacted_uri_string("pipe:///tmp/f?name=a&codec=pcm"),
            "pipe:///tmp/f?name=a&codec=pcm"
        );
        assert_eq!(redacted_uri_string("/tmp/fifo"), "/tmp/fifo");
        assert_eq!(redacted_uri_string("not a uri password=x"), "xxx");
        assert_eq!(redacted_uri_string("bob:pw@host"), "xxx");
    }

    #[test]
    fn errors_about_a_bad_uri_do_not_repeat_its_secrets() {
        let defaults = crate::source::SourceDefaults::default();
        for text in [
            "pipe:///tmp/f?password=hunter2",
            "bogus password=hunter2",
            "tcp://bob:hunter2@host:4953",
            "tcp://bob:hunter2@127.0.0.1:4953?name=a",
        ] {
            let err = crate::source::SourceSpec::parse(text, &defaults)
                .expect_err(text)
                .to_string();
            assert!(!err.contains("hunter2"), "{text}: {err}");
        }
    }
}

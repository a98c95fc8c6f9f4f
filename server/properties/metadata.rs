//! A stream's now-playing metadata with snapserver's keys and types (its `metadata.cpp`):
//! read per key, so one wrongly typed tag is dropped (with a warning) and the rest kept, as
//! snapserver does; unknown tags are dropped too.

use serde_json::{Map, Value};

/// The JSON type a tag must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A string.
    Text,
    /// An array of strings.
    TextList,
    /// Any number (snapserver's `float`).
    Number,
    /// A whole number from 0 to 65535 (snapserver's `uint16_t`).
    Count,
    /// `{"data": base64, "extension": "png"}`: an image the server caches (`artData`).
    Art,
}

/// Every tag snapserver knows, with its type.
const TAGS: &[(&str, Kind)] = &[
    ("trackId", Kind::Text),
    ("duration", Kind::Number),
    ("artist", Kind::TextList),
    ("artistSort", Kind::TextList),
    ("album", Kind::Text),
    ("albumSort", Kind::Text),
    ("albumArtist", Kind::TextList),
    ("albumArtistSort", Kind::TextList),
    ("name", Kind::Text),
    ("date", Kind::Text),
    ("originalDate", Kind::Text),
    ("performer", Kind::Text),
    ("conductor", Kind::Text),
    ("work", Kind::Text),
    ("grouping", Kind::Text),
    ("label", Kind::Text),
    ("musicbrainzArtistId", Kind::Text),
    ("musicbrainzAlbumId", Kind::Text),
    ("musicbrainzAlbumArtistId", Kind::Text),
    ("musicbrainzTrackId", Kind::Text),
    ("musicbrainzReleaseTrackId", Kind::Text),
    ("musicbrainzWorkId", Kind::Text),
    ("lyrics", Kind::Text),
    ("bpm", Kind::Count),
    ("autoRating", Kind::Number),
    ("comment", Kind::TextList),
    ("composer", Kind::TextList),
    ("contentCreated", Kind::Text),
    ("discNumber", Kind::Count),
    ("firstUsed", Kind::Text),
    ("genre", Kind::TextList),
    ("lastUsed", Kind::Text),
    ("lyricist", Kind::TextList),
    ("title", Kind::Text),
    ("trackNumber", Kind::Count),
    ("url", Kind::Text),
    ("artUrl", Kind::Text),
    ("artData", Kind::Art),
    ("useCount", Kind::Count),
    ("userRating", Kind::Number),
    ("spotifyArtistId", Kind::Text),
    ("spotifyTrackId", Kind::Text),
];

/// Now-playing metadata: only known tags, each of its type.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metadata {
    tags: Map<String, Value>,
}

/// The image a plugin sent inline (`artData`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ArtData {
    /// Base64 of the image bytes.
    pub(crate) data: String,
    /// File extension without the dot (`png`, `jpg`).
    pub(crate) extension: String,
}

impl Metadata {
    /// Reads a metadata object; `problems` collects every tag dropped and why. `None` when
    /// `value` is not an object at all.
    pub(crate) fn from_json(value: &Value, problems: &mut Vec<String>) -> Option<Self> {
        let object = value.as_object()?;
        let mut tags = Map::new();
        for (tag, value) in object {
            let Some(kind) = kind_of(tag) else {
                problems.push(format!("metadata tag '{tag}' is not supported"));
                continue;
            };
            match checked(kind, value) {
                Some(value) => {
                    tags.insert(tag.clone(), value);
                }
                None => problems.push(format!(
                    "metadata tag '{tag}' must be {}, got {value}",
                    describe(kind)
                )),
            }
        }
        Some(Self { tags })
    }

    /// The object control APIs show.
    pub(crate) fn to_json(&self) -> Value {
        Value::Object(self.tags.clone())
    }

    /// A string tag (`title`, `album`, ...).
    pub(crate) fn text(&self, tag: &str) -> Option<&str> {
        self.tags.get(tag).and_then(Value::as_str)
    }

    /// A string-list tag (`artist`, `genre`, ...); empty when unset.
    pub(crate) fn texts(&self, tag: &str) -> Vec<&str> {
        self.tags
            .get(tag)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    /// A number tag (`duration`, `userRating`, ...).
    pub(crate) fn number(&self, tag: &str) -> Option<f64> {
        self.tags.get(tag).and_then(Value::as_f64)
    }

    /// A count tag (`trackNumber`, `discNumber`, ...).
    pub(crate) fn count(&self, tag: &str) -> Option<u16> {
        self.tags
            .get(tag)
            .and_then(Value::as_u64)
            .and_then(|n| u16::try_from(n).ok())
    }

    /// The inline image, when the plugin sent one.
    pub(crate) fn art_data(&self) -> Option<ArtData> {
        let art = self.tags.get("artData")?;
        Some(ArtData {
            data: art.get("data")?.as_str()?.to_owned(),
            extension: art.get("extension")?.as_str()?.to_owned(),
        })
    }

    /// Replaces the inline image with the URL it is served at. Every API then shows the URL
    /// only, rather than the image's base64 in each notification.
    pub(crate) fn set_art_url(&mut self, url: String) {
        self.tags.remove("artData");
        self.tags.insert("artUrl".to_owned(), Value::String(url));
    }

    /// Drops the inline image (it could not be cached).
    pub(crate) fn drop_art_data(&mut self) {
        self.tags.remove("artData");
    }
}

fn kind_of(tag: &str) -> Option<Kind> {
    TAGS.iter().find(|(name, _)| *name == tag).map(|(_, k)| *k)
}

/// `value` when it has the kind's type (a count as an integer), else `None`.
fn checked(kind: Kind, value: &Value) -> Option<Value> {
    let ok = match kind {
        Kind::Text => value.is_string(),
        Kind::TextList => value
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
        Kind::Number => value.as_f64().is_some_and(f64::is_finite),
        Kind::Count => {
            return super::whole(value)
                .filter(|n| (0..=i64::from(u16::MAX)).contains(n))
                .map(Value::from)
        }
        Kind::Art => {
            value.get("data").is_some_and(Value::is_string)
                && value.get("extension").is_some_and(Value::is_string)
        }
    };
    ok.then(|| value.clone())
}

fn describe(kind: Kind) -> &'static str {
    match kind {
        Kind::Text => "a string",
        Kind::TextList => "an array of strings",
        Kind::Number => "a number",
        Kind::Count => "a whole number from 0 to 65535",
        Kind::Art => "an object {\"data\": base64, \"extension\": text}",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_snapserver_tag_of_its_type_is_kept() {
        let input: Value = serde_json::from_str(
            r#"{
            "trackId": "t1", "duration": 215.5, "artist": ["A", "B"], "artistSort": ["A"],
            "album": "Al", "albumSort": "Al", "albumArtist": ["AA"], "albumArtistSort": ["AA"],
            "name": "n", "date": "2020", "originalDate": "2019", "performer": "p",
            "conductor": "c", "work": "w", "grouping": "g", "label": "l",
            "musicbrainzArtistId": "m1", "musicbrainzAlbumId": "m2",
            "musicbrainzAlbumArtistId": "m3", "musicbrainzTrackId": "m4",
            "musicbrainzReleaseTrackId": "m5", "musicbrainzWorkId": "m6", "lyrics": "la",
            "bpm": 120, "autoRating": 0.5, "comment": ["x"], "composer": ["y"],
            "contentCreated": "2021", "discNumber": 1, "firstUsed": "f", "genre": ["Jazz"],
            "lastUsed": "u", "lyricist": ["z"], "title": "T", "trackNumber": 7, "url": "file:a",
            "artUrl": "http://x/a.png", "artData": {"data": "aGk=", "extension": "png"},
            "useCount": 3, "userRating": 0.9, "spotifyArtistId": "s1", "spotifyTrackId": "s2"
            }"#,
        )
        .unwrap();
        let mut problems = Vec::new();
        let metadata = Metadata::from_json(&input, &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(metadata.to_json(), input);
        assert_eq!(TAGS.len(), input.as_object().unwrap().len());
        assert_eq!(metadata.text("title"), Some("T"));
        assert_eq!(metadata.texts("artist"), ["A", "B"]);
        assert_eq!(metadata.number("duration"), Some(215.5));
        assert_eq!(metadata.count("trackNumber"), Some(7));
        assert_eq!(
            metadata.art_data(),
            Some(ArtData {
                data: "aGk=".into(),
                extension: "png".into()
            })
        );
    }

    #[test]
    fn a_count_written_as_a_whole_float_is_a_count() {
        let metadata = Metadata::from_json(&json!({"trackNumber": 3.0}), &mut Vec::new()).unwrap();
        assert_eq!(metadata.to_json(), json!({"trackNumber": 3}));
    }

    #[test]
    fn a_wrongly_typed_or_unknown_tag_is_dropped_and_the_rest_kept() {
        let input = json!({
            "title": "T", "artist": "not a list", "trackNumber": -1, "bpm": 70000,
            "duration": "long", "artData": {"data": 1}, "colour": "red", "genre": ["a", 2],
        });
        let mut problems = Vec::new();
        let metadata = Metadata::from_json(&input, &mut problems).unwrap();
        assert_eq!(metadata.to_json(), json!({"title": "T"}));
        assert_eq!(problems.len(), 7, "{problems:?}");
        assert!(problems
            .iter()
            .any(|p| p.contains("'artist' must be an array of strings")));
        assert!(problems
            .iter()
            .any(|p| p.contains("'colour' is not supported")));
        assert!(Metadata::from_json(&json!([1]), &mut problems).is_none());
    }

    #[test]
    fn the_cached_image_replaces_the_inline_one() {
        let input = json!({"title": "T", "artData": {"data": "aGk=", "extension": "png"}});
        let mut metadata = Metadata::from_json(&input, &mut Vec::new()).unwrap();
        metadata.set_art_url("http://h:1780/__image_cache?name=x.png".into());
        assert_eq!(
            metadata.to_json(),
            json!({"title": "T", "artUrl": "http://h:1780/__image_cache?name=x.png"})
        );
        assert!(metadata.art_data().is_none());
    }
}

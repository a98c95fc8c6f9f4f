//! Cover art a stream plugin sent inline (`artData`), kept in memory and served over HTTP at
//! `/__image_cache?name=<md5>.<ext>` (snapserver-streams.md §1). One image per stream: a new
//! one replaces the stream's old one, so the cache is bounded by the number of streams times
//! [`MAX_IMAGE_BYTES`], and by [`MAX_TOTAL_BYTES`] over all of them. Only names this cache
//! made are ever served.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;

use bytes::Bytes;
use md5::{Digest, Md5};

/// Largest image accepted.
pub(crate) const MAX_IMAGE_BYTES: usize = 8 << 20;
/// Most bytes all streams' images may take together; the oldest are dropped beyond it.
pub(crate) const MAX_TOTAL_BYTES: usize = 32 << 20;

/// File types served, by extension, with their content type.
const TYPES: &[(&str, &str)] = &[
    ("jpg", "image/jpeg"),
    ("jpeg", "image/jpeg"),
    ("png", "image/png"),
    ("gif", "image/gif"),
    ("webp", "image/webp"),
    ("bmp", "image/bmp"),
    ("svg", "image/svg+xml"),
    ("ico", "image/x-icon"),
];

/// Why an image was not cached.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ImageError {
    /// Nothing to store.
    #[error("the image is empty")]
    Empty,
    /// Over [`MAX_IMAGE_BYTES`].
    #[error("the image has {0} bytes; at most {MAX_IMAGE_BYTES} are cached")]
    TooLarge(usize),
    /// Not an image type this cache serves.
    #[error("image extension '{0}' is not one of jpg, jpeg, png, gif, webp, bmp, svg, ico")]
    Extension(String),
}

/// A cached image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Image {
    /// `Content-Type` to serve it with.
    pub(crate) content_type: &'static str,
    /// The image.
    pub(crate) data: Bytes,
}

#[derive(Debug, Default)]
struct Entries {
    /// Stream id → its image's name.
    by_stream: HashMap<String, String>,
    /// Name → (image, when it was stored).
    images: HashMap<String, (Image, u64)>,
    bytes: usize,
    stored: u64,
}

/// The cache; one per relay.
#[derive(Debug, Default)]
pub(crate) struct ImageCache {
    entries: Mutex<Entries>,
}

impl ImageCache {
    /// Stores `data` as `stream`'s image, replacing its previous one; returns the name it is
    /// served under (`<md5 of stream id and image>.<ext>`).
    ///
    /// # Errors
    ///
    /// The image is empty, too large, or of a type not served.
    pub(crate) fn put(
        &self,
        stream: &str,
        data: Vec<u8>,
        extension: &str,
    ) -> Result<String, ImageError> {
        let extension = extension.trim_start_matches('.').to_ascii_lowercase();
        let content_type = TYPES
            .iter()
            .find(|(ext, _)| *ext == extension)
            .map(|(_, t)| *t)
            .ok_or_else(|| ImageError::Extension(extension.clone()))?;
        if data.is_empty() {
            return Err(ImageError::Empty);
        }
        if data.len() > MAX_IMAGE_BYTES {
            return Err(ImageError::TooLarge(data.len()));
        }
        let mut hash = Md5::new();
        hash.update(stream.as_bytes());
        hash.update(&data);
        let mut name = String::with_capacity(40);
        for byte in hash.finalize() {
            let _ = write!(name, "{byte:02x}");
        }
        name.push('.');
        name.push_str(&extension);

        let mut entries = self.lock();
        entries.remove_stream(stream);
        entries.stored += 1;
        let stored = entries.stored;
        entries.bytes += data.len();
        let image = Image {
            content_type,
            data: Bytes::from(data),
        };
        entries.images.insert(name.clone(), (image, stored));
        entries.by_stream.insert(stream.to_owned(), name.clone());
        while entries.bytes > MAX_TOTAL_BYTES {
            let Some(oldest) = entries
                .by_stream
                .iter()
                .filter(|(s, _)| s.as_str() != stream)
                .min_by_key(|(_, n)| entries.images.get(*n).map_or(0, |(_, at)| *at))
                .map(|(s, _)| s.clone())
            else {
                break;
            };
            entries.remove_stream(&oldest);
        }
        Ok(name)
    }

    /// Forgets `stream`'s image.
    pub(crate) fn clear(&self, stream: &str) {
        self.lock().remove_stream(stream);
    }

    /// The image served under `name`, if this cache made that name.
    pub(crate) fn get(&self, name: &str) -> Option<Image> {
        self.lock().images.get(name).map(|(image, _)| image.clone())
    }

    /// (images, bytes) held now.
    pub(crate) fn usage(&self) -> (usize, usize) {
        let entries = self.lock();
        (entries.images.len(), entries.bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Entries {
    fn remove_stream(&mut self, stream: &str) {
        if let Some(name) = self.by_stream.remove(stream) {
            if let Some((image, _)) = self.images.remove(&name) {
                self.bytes -= image.data.len();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_is_served_under_its_name_with_its_type_until_replaced() {
        let cache = ImageCache::default();
        let name = cache.put("radio", b"\x89PNG".to_vec(), ".PNG").unwrap();
        assert!(name.ends_with(".png") && name.len() == 36, "{name}");
        let image = cache.get(&name).unwrap();
        assert_eq!(image.content_type, "image/png");
        assert_eq!(&image.data[..], b"\x89PNG");
        assert_eq!(cache.get("0123.png"), None);
        assert_eq!(cache.get("../etc/passwd"), None);

        let newer = cache.put("radio", b"jpeg bytes".to_vec(), "jpg").unwrap();
        assert_ne!(newer, name);
        assert_eq!(cache.get(&name), None, "the stream's old image is gone");
        assert_eq!(cache.get(&newer).unwrap().content_type, "image/jpeg");
        assert_eq!(cache.usage(), (1, 10));
        cache.clear("radio");
        assert_eq!(cache.get(&newer), None);
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn the_same_image_on_two_streams_has_two_names() {
        let cache = ImageCache::default();
        let a = cache.put("a", b"img".to_vec(), "png").unwrap();
        let b = cache.put("b", b"img".to_vec(), "png").unwrap();
        assert_ne!(a, b);
        cache.clear("a");
        assert!(cache.get(&b).is_some());
    }

    #[test]
    fn bad_images_are_refused_and_the_total_is_bounded() {
        let cache = ImageCache::default();
        assert_eq!(cache.put("a", Vec::new(), "png"), Err(ImageError::Empty));
        assert!(matches!(
            cache.put("a", vec![0; MAX_IMAGE_BYTES + 1], "png"),
            Err(ImageError::TooLarge(_))
        ));
        assert!(matches!(
            cache.put("a", b"x".to_vec(), "html"),
            Err(ImageError::Extension(_))
        ));
        let streams = MAX_TOTAL_BYTES / MAX_IMAGE_BYTES + 2;
        let mut names = Vec::new();
        for i in 0..streams {
            names.push(
                cache
                    .put(&format!("s{i}"), vec![i as u8; MAX_IMAGE_BYTES], "png")
                    .unwrap(),
            );
        }
        let (count, bytes) = cache.usage();
        assert!(bytes <= MAX_TOTAL_BYTES && count == MAX_TOTAL_BYTES / MAX_IMAGE_BYTES);
        assert!(cache.get(&names[0]).is_none(), "the oldest went first");
        assert!(cache.get(names.last().unwrap()).is_some());
    }
}

//! Cover art a stream plugin sent inline (`artData`), kept in memory and served over HTTP at
//! `/__image_cache?name=<md5>.<ext>` (docs/SOURCES.md §4.3). One image per owner (a
//! stream's control side; a stream removed and added again under its name is a new owner, so
//! the old one can never touch the new one's image): a new one replaces the owner's old one,
//! so the cache is bounded by the number of streams times [`MAX_IMAGE_BYTES`], and by
//! [`MAX_TOTAL_BYTES`] over all of them. Only names this cache made are ever served.

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

/// The content type a file of `extension` is served with, if this cache serves it.
pub(crate) fn content_type_of(extension: &str) -> Option<&'static str> {
    TYPES
        .iter()
        .find(|(ext, _)| ext.eq_ignore_ascii_case(extension))
        .map(|(_, t)| *t)
}

/// The extension this cache serves `content_type` (`image/png; ...`) under, if it does.
pub(crate) fn extension_for(content_type: &str) -> Option<&'static str> {
    let essence = content_type.split(';').next()?.trim();
    TYPES
        .iter()
        .find(|(_, t)| t.eq_ignore_ascii_case(essence))
        .map(|(ext, _)| *ext)
}

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

/// Who an image belongs to: one per stream control side ([`ImageCache::owner`]).
pub(crate) type Owner = u64;

#[derive(Debug, Default)]
struct Entries {
    /// Owner → its image's name.
    by_owner: HashMap<Owner, String>,
    /// Name → (image, its owner, when it was stored).
    images: HashMap<String, (Image, Owner, u64)>,
    bytes: usize,
    stored: u64,
    owners: u64,
}

/// The cache; one per relay.
#[derive(Debug, Default)]
pub(crate) struct ImageCache {
    entries: Mutex<Entries>,
}

impl ImageCache {
    /// A new owner, for one stream's control side.
    pub(crate) fn owner(&self) -> Owner {
        let mut entries = self.lock();
        entries.owners += 1;
        entries.owners
    }

    /// Stores `data` as `owner`'s image (of stream `stream`), replacing its previous one;
    /// returns the name it is served under: `<md5 of stream id and image>.<ext>`, the name
    /// snapserver gives it (the extension keeps its case).
    ///
    /// # Errors
    ///
    /// The image is empty, too large, or of a type not served.
    pub(crate) fn put(
        &self,
        owner: Owner,
        stream: &str,
        data: Vec<u8>,
        extension: &str,
    ) -> Result<String, ImageError> {
        let extension = extension.strip_prefix('.').unwrap_or(extension);
        let content_type = content_type_of(extension)
            .ok_or_else(|| ImageError::Extension(extension.to_owned()))?;
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
        name.push_str(extension);

        let mut entries = self.lock();
        entries.remove_owner(owner);
        // The same image on a stream of the same name (removed and added again): the
        // newest owner has it.
        if let Some((image, previous, _)) = entries.images.remove(&name) {
            entries.bytes -= image.data.len();
            entries.by_owner.remove(&previous);
        }
        entries.stored += 1;
        let stored = entries.stored;
        entries.bytes += data.len();
        let image = Image {
            content_type,
            data: Bytes::from(data),
        };
        entries.images.insert(name.clone(), (image, owner, stored));
        entries.by_owner.insert(owner, name.clone());
        while entries.bytes > MAX_TOTAL_BYTES {
            let Some(oldest) = entries
                .images
                .values()
                .filter(|(_, o, _)| *o != owner)
                .min_by_key(|(_, _, at)| *at)
                .map(|(_, o, _)| *o)
            else {
                break;
            };
            entries.remove_owner(oldest);
        }
        Ok(name)
    }

    /// Forgets `owner`'s image.
    pub(crate) fn clear(&self, owner: Owner) {
        self.lock().remove_owner(owner);
    }

    /// The image served under `name`, if this cache made that name.
    pub(crate) fn get(&self, name: &str) -> Option<Image> {
        self.lock()
            .images
            .get(name)
            .map(|(image, ..)| image.clone())
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
    fn remove_owner(&mut self, owner: Owner) {
        if let Some(name) = self.by_owner.remove(&owner) {
            if self.images.get(&name).is_some_and(|(_, o, _)| *o == owner) {
                if let Some((image, ..)) = self.images.remove(&name) {
                    self.bytes -= image.data.len();
                }
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
        let radio = cache.owner();
        let name = cache
            .put(radio, "radio", b"\x89PNG".to_vec(), ".PNG")
            .unwrap();
        assert!(name.ends_with(".PNG") && name.len() == 36, "{name}");
        let image = cache.get(&name).unwrap();
        assert_eq!(image.content_type, "image/png");
        assert_eq!(&image.data[..], b"\x89PNG");
        assert_eq!(cache.get("0123.png"), None);
        assert_eq!(cache.get("../etc/passwd"), None);

        let newer = cache
            .put(radio, "radio", b"jpeg bytes".to_vec(), "jpg")
            .unwrap();
        assert_ne!(newer, name);
        assert_eq!(cache.get(&name), None, "the stream's old image is gone");
        assert_eq!(cache.get(&newer).unwrap().content_type, "image/jpeg");
        assert_eq!(cache.usage(), (1, 10));
        cache.clear(radio);
        assert_eq!(cache.get(&newer), None);
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn the_same_image_on_two_streams_has_two_names() {
        let cache = ImageCache::default();
        let (a, b) = (cache.owner(), cache.owner());
        let on_a = cache.put(a, "a", b"img".to_vec(), "png").unwrap();
        let on_b = cache.put(b, "b", b"img".to_vec(), "png").unwrap();
        assert_ne!(on_a, on_b);
        cache.clear(a);
        assert!(cache.get(&on_b).is_some());
    }

    #[test]
    fn a_stream_added_again_under_its_name_keeps_its_image_from_the_old_one() {
        let cache = ImageCache::default();
        let (old, new) = (cache.owner(), cache.owner());
        let first = cache.put(old, "radio", b"img".to_vec(), "png").unwrap();
        let second = cache.put(new, "radio", b"img".to_vec(), "png").unwrap();
        assert_eq!(
            first, second,
            "the name depends on stream id and image only"
        );
        cache.clear(old);
        assert!(
            cache.get(&second).is_some(),
            "the old owner cannot clear it"
        );
        assert_eq!(cache.usage(), (1, 3));
        cache.clear(new);
        assert_eq!(cache.usage(), (0, 0));
    }

    #[test]
    fn bad_images_are_refused_and_the_total_is_bounded() {
        let cache = ImageCache::default();
        let a = cache.owner();
        assert_eq!(cache.put(a, "a", Vec::new(), "png"), Err(ImageError::Empty));
        assert!(matches!(
            cache.put(a, "a", vec![0; MAX_IMAGE_BYTES + 1], "png"),
            Err(ImageError::TooLarge(_))
        ));
        assert!(matches!(
            cache.put(a, "a", b"x".to_vec(), "html"),
            Err(ImageError::Extension(_))
        ));
        let streams = MAX_TOTAL_BYTES / MAX_IMAGE_BYTES + 2;
        let mut names = Vec::new();
        for i in 0..streams {
            let owner = cache.owner();
            let image = vec![i as u8; MAX_IMAGE_BYTES];
            names.push(cache.put(owner, &format!("s{i}"), image, "png").unwrap());
        }
        let (count, bytes) = cache.usage();
        assert!(bytes <= MAX_TOTAL_BYTES && count == MAX_TOTAL_BYTES / MAX_IMAGE_BYTES);
        assert!(cache.get(&names[0]).is_none(), "the oldest went first");
        assert!(cache.get(names.last().unwrap()).is_some());
    }
}

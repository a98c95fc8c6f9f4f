//! The protocol's primitives (docs/PROTOCOL.md §1.2): the `(sec, usec)` time value,
//! little-endian fields read through a bounds-checked cursor, and u32-length-prefixed blobs.

use super::DecodeError;

/// A `(seconds, microseconds)` time value as the protocol carries it (§1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Tv {
    /// Whole seconds; may be negative in a Time reply's latency.
    pub sec: i32,
    /// Microseconds, normalised into 0..1_000_000.
    pub usec: i32,
}

impl Tv {
    /// Builds a normalised value from signed microseconds, saturating at the i32 range.
    pub fn from_micros(micros: i64) -> Self {
        let sec = micros.div_euclid(1_000_000);
        let usec = micros.rem_euclid(1_000_000);
        Self {
            sec: sec.clamp(i64::from(i32::MIN), i64::from(i32::MAX)) as i32,
            usec: usec as i32,
        }
    }

    /// Signed microseconds.
    pub fn as_micros(self) -> i64 {
        i64::from(self.sec) * 1_000_000 + i64::from(self.usec)
    }

    pub(super) fn encode(self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.sec.to_le_bytes());
        out.extend_from_slice(&self.usec.to_le_bytes());
    }
}

/// A bounds-checked little-endian cursor over peer bytes.
pub(super) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(super) fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < len {
            return Err(DecodeError::Truncated {
                needed: len - self.buf.len(),
            });
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let bytes = self.take(N)?;
        let mut out = [0; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    pub(super) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub(super) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub(super) fn tv(&mut self) -> Result<Tv, DecodeError> {
        Ok(Tv {
            sec: self.i32()?,
            usec: self.i32()?,
        })
    }

    /// A u32-length-prefixed blob; the length is checked against what is actually there.
    pub(super) fn blob(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    pub(super) fn remaining(&self) -> usize {
        self.buf.len()
    }
}

/// Appends a u32-length-prefixed blob.
pub(super) fn put_blob(out: &mut Vec<u8>, blob: &[u8]) {
    out.extend_from_slice(&(blob.len() as u32).to_le_bytes());
    out.extend_from_slice(blob);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tv_normalises_negative_values() {
        let tv = Tv::from_micros(-1);
        assert_eq!(
            tv,
            Tv {
                sec: -1,
                usec: 999_999
            }
        );
        assert_eq!(tv.as_micros(), -1);
    }

    #[test]
    fn reader_refuses_to_read_past_the_end() {
        let mut bytes = Vec::new();
        put_blob(&mut bytes, b"abc");
        let mut r = Reader::new(&bytes);
        assert_eq!(r.blob().unwrap(), b"abc");
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u16(), Err(DecodeError::Truncated { needed: 2 }));
        let mut lying = Reader::new(&[9, 0, 0, 0, 1]);
        assert_eq!(lying.blob(), Err(DecodeError::Truncated { needed: 8 }));
    }
}

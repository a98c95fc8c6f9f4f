//! Pooled byte buffers for serialized chunks, in power-of-two size buckets (1 KiB, 2 KiB, …)
//! indexed by bucket in a `DashMap`.
//!
//! A [`PooledBuf`] returns its buffer to the pool when dropped. Because a chunk travels as
//! `Bytes::from_owner(PooledBuf)`, that happens only after the last session *and* the kernel
//! (which holds a clone per in-flight zerocopy send) are done with it. Idle buffers are freed
//! after [`IDLE_LIMIT`], and the pool never keeps more than its byte cap in free lists.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// Smallest bucket: every request is rounded up to at least this.
pub(crate) const MIN_BUCKET: usize = 1024;

/// Buffers unused for this long are freed by [`BufferPool::cleanup`].
pub(crate) const IDLE_LIMIT: Duration = Duration::from_secs(300);

/// Default cap on bytes kept in free lists.
pub(crate) const DEFAULT_MAX_POOLED_BYTES: usize = 64 * 1024 * 1024;

/// A snapshot of the pool's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct PoolStats {
    /// Buffers that exist (in use or free).
    pub(crate) total_buffers: u64,
    /// Buffers in free lists.
    pub(crate) available_buffers: u64,
    /// Capacity of every existing buffer, in bytes.
    pub(crate) bytes_allocated: u64,
    /// Buffers ever allocated.
    pub(crate) buffers_created: u64,
    /// Requests served from a free list.
    pub(crate) buffers_reused: u64,
    /// Cleanup passes that freed at least one idle buffer.
    pub(crate) cleanup_operations: u64,
}

#[derive(Debug, Default)]
struct Counters {
    total: AtomicU64,
    available: AtomicU64,
    bytes_allocated: AtomicU64,
    pooled_bytes: AtomicUsize,
    created: AtomicU64,
    reused: AtomicU64,
    cleanups: AtomicU64,
}

/// A free buffer and when it was returned.
type FreeList = Vec<(Vec<u8>, Instant)>;

#[derive(Debug)]
struct Inner {
    /// bucket size → free buffers of exactly that capacity.
    buckets: DashMap<usize, Mutex<FreeList>>,
    counters: Counters,
    max_pooled_bytes: usize,
}

/// A thread-safe pool of byte buffers; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct BufferPool {
    inner: Arc<Inner>,
}

/// A buffer on loan from a [`BufferPool`]; it goes back when dropped.
#[derive(Debug)]
pub(crate) struct PooledBuf {
    buf: Vec<u8>,
    /// The bucket it was counted under, even if a careless writer grew it past that.
    bucket: usize,
    pool: Arc<Inner>,
}

impl BufferPool {
    /// An empty pool that keeps at most `max_pooled_bytes` in its free lists.
    pub(crate) fn new(max_pooled_bytes: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                buckets: DashMap::new(),
                counters: Counters::default(),
                max_pooled_bytes,
            }),
        }
    }

    /// The bucket (buffer capacity) serving a request of `len` bytes.
    pub(crate) fn bucket_for(len: usize) -> usize {
        len.max(MIN_BUCKET).next_power_of_two()
    }

    /// An empty buffer with room for at least `len` bytes.
    pub(crate) fn get(&self, len: usize) -> PooledBuf {
        let bucket = Self::bucket_for(len);
        let counters = &self.inner.counters;
        let reused = self.inner.buckets.get(&bucket).and_then(|list| {
            list.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .pop()
        });
        let buf = match reused {
            Some((mut buf, _)) => {
                buf.clear();
                counters.reused.fetch_add(1, Ordering::Relaxed);
                counters.available.fetch_sub(1, Ordering::Relaxed);
                counters.pooled_bytes.fetch_sub(bucket, Ordering::Relaxed);
                buf
            }
            None => {
                counters.created.fetch_add(1, Ordering::Relaxed);
                counters.total.fetch_add(1, Ordering::Relaxed);
                counters
                    .bytes_allocated
                    .fetch_add(bucket as u64, Ordering::Relaxed);
                Vec::with_capacity(bucket)
            }
        };
        PooledBuf {
            buf,
            bucket,
            pool: self.inner.clone(),
        }
    }

    /// Frees buffers idle for longer than `idle_limit`; returns how many.
    pub(crate) fn cleanup(&self, idle_limit: Duration) -> usize {
        let now = Instant::now();
        let mut freed = 0;
        for entry in self.inner.buckets.iter() {
            let bucket = *entry.key();
            let mut list = entry
                .value()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let before = list.len();
            list.retain(|(_, returned)| now.duration_since(*returned) < idle_limit);
            let gone = before - list.len();
            if gone > 0 {
                self.inner.forget(bucket, gone, true);
                freed += gone;
            }
        }
        if freed > 0 {
            self.inner.counters.cleanups.fetch_add(1, Ordering::Relaxed);
        }
        freed
    }

    /// Current figures.
    pub(crate) fn stats(&self) -> PoolStats {
        let c = &self.inner.counters;
        PoolStats {
            total_buffers: c.total.load(Ordering::Relaxed),
            available_buffers: c.available.load(Ordering::Relaxed),
            bytes_allocated: c.bytes_allocated.load(Ordering::Relaxed),
            buffers_created: c.created.load(Ordering::Relaxed),
            buffers_reused: c.reused.load(Ordering::Relaxed),
            cleanup_operations: c.cleanups.load(Ordering::Relaxed),
        }
    }
}

impl Default for BufferPool {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_POOLED_BYTES)
    }
}

impl Inner {
    /// Accounts for `count` buffers of `bucket` bytes leaving the pool for good.
    fn forget(&self, bucket: usize, count: usize, were_available: bool) {
        let c = &self.counters;
        c.total.fetch_sub(count as u64, Ordering::Relaxed);
        c.bytes_allocated
            .fetch_sub((bucket * count) as u64, Ordering::Relaxed);
        if were_available {
            c.available.fetch_sub(count as u64, Ordering::Relaxed);
            c.pooled_bytes.fetch_sub(bucket * count, Ordering::Relaxed);
        }
    }

    fn give_back(&self, buf: Vec<u8>, bucket: usize) {
        let c = &self.counters;
        // A buffer that grew past its bucket, or one over the cap, is simply freed.
        let fits = buf.capacity() == bucket;
        if !fits || c.pooled_bytes.load(Ordering::Relaxed) + bucket > self.max_pooled_bytes {
            self.forget(bucket, 1, false);
            return;
        }
        c.pooled_bytes.fetch_add(bucket, Ordering::Relaxed);
        c.available.fetch_add(1, Ordering::Relaxed);
        self.buckets
            .entry(bucket)
            .or_default()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((buf, Instant::now()));
    }
}

impl PooledBuf {
    /// The buffer to write into; it starts empty with the bucket's capacity.
    pub(crate) fn vec(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        self.pool
            .give_back(std::mem::take(&mut self.buf), self.bucket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two_from_1k() {
        assert_eq!(BufferPool::bucket_for(0), 1024);
        assert_eq!(BufferPool::bucket_for(1024), 1024);
        assert_eq!(BufferPool::bucket_for(1025), 2048);
        assert_eq!(BufferPool::bucket_for(3878), 4096);
        assert_eq!(BufferPool::bucket_for(123_000), 131_072);
    }

    #[test]
    fn dropped_buffers_are_reused_not_recreated() {
        let pool = BufferPool::default();
        for _ in 0..100 {
            let mut a = pool.get(3878);
            a.vec().extend_from_slice(&[1; 3878]);
            let b = pool.get(100);
            drop((a, b));
        }
        let stats = pool.stats();
        assert_eq!(stats.buffers_created, 2);
        assert_eq!(stats.buffers_reused, 198);
        assert_eq!(stats.total_buffers, 2);
        assert_eq!(stats.available_buffers, 2);
        assert_eq!(stats.bytes_allocated, 4096 + 1024);
    }

    #[test]
    fn a_buffer_is_not_handed_out_while_still_referenced() {
        let pool = BufferPool::default();
        let mut held = pool.get(2000);
        held.vec().extend_from_slice(b"in flight");
        let shared = bytes::Bytes::from_owner(held);
        let kernel_ref = shared.clone();
        drop(shared);
        // Still referenced (as by an in-flight zerocopy send): a new request gets a new one.
        let other = pool.get(2000);
        assert_eq!(pool.stats().buffers_created, 2);
        assert_eq!(&kernel_ref[..], b"in flight");
        drop(other);
        drop(kernel_ref);
        assert_eq!(pool.stats().available_buffers, 2);
    }

    #[test]
    fn cleanup_frees_idle_buffers() {
        let pool = BufferPool::default();
        drop((pool.get(10), pool.get(5000)));
        assert_eq!(pool.cleanup(Duration::from_secs(60)), 0);
        assert_eq!(pool.cleanup(Duration::ZERO), 2);
        let stats = pool.stats();
        assert_eq!(stats.total_buffers, 0);
        assert_eq!(stats.available_buffers, 0);
        assert_eq!(stats.bytes_allocated, 0);
        assert_eq!(stats.cleanup_operations, 1);
    }

    #[test]
    fn the_cap_bounds_what_free_lists_keep() {
        let pool = BufferPool::new(4096);
        let held: Vec<_> = (0..3).map(|_| pool.get(2048)).collect();
        drop(held);
        let stats = pool.stats();
        assert_eq!(stats.available_buffers, 2, "only 4 KiB may stay pooled");
        assert_eq!(stats.total_buffers, 2);
    }

    #[test]
    fn concurrent_use_keeps_the_books_balanced() {
        let pool = BufferPool::default();
        let threads: Vec<_> = (0..4)
            .map(|i| {
                let pool = pool.clone();
                std::thread::spawn(move || {
                    for n in 0..1000 {
                        let mut buf = pool.get(1000 * (i + 1) + n % 7);
                        buf.vec().push(1);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let stats = pool.stats();
        assert_eq!(stats.total_buffers, stats.available_buffers);
        assert_eq!(stats.buffers_created + stats.buffers_reused, 4000);
    }
}

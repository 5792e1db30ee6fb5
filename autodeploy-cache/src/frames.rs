//! Reusable read buffers for the frames of response bodies read from cache files.
//!
//! A fresh buffer per frame cost more than the copy itself: musl's allocator maps and unmaps
//! every large buffer, so each frame paid page faults and zeroing (the profile in
//! bench/results.md). Frames are cut from buffers of a few power-of-two sizes that go back to
//! a bounded pool when hyper drops the frame after writing it.

use std::fs::File;
use std::sync::Arc;

use crate::sync::Mutex;
use std::os::unix::fs::FileExt as _;

use bytes::Bytes;

/// Buffers kept for reuse, per size, at most this many bytes in all sizes together.
const POOL_BYTES: usize = 16 << 20;

/// The buffers of one proxy's frames.
#[derive(Default)]
pub struct FramePool {
    pool: Mutex<Pool>,
}

#[derive(Default)]
struct Pool {
    /// Free buffers (their length is their size class).
    free: Vec<Vec<u8>>,
    bytes: usize,
}

/// A pooled buffer holding one frame; returns to its pool when the frame is dropped.
struct Frame {
    buf: Vec<u8>,
    len: usize,
    pool: Arc<FramePool>,
}

impl AsRef<[u8]> for Frame {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

impl Drop for Frame {
    fn drop(&mut self) {
        let buf = std::mem::take(&mut self.buf);
        let mut pool = self.pool.pool.lock();
        if pool.bytes + buf.len() <= POOL_BYTES {
            pool.bytes += buf.len();
            pool.free.push(buf);
        }
    }
}

impl FramePool {
    /// An empty pool.
    pub fn new() -> Arc<FramePool> {
        Arc::new(FramePool::default())
    }

    /// Reads `len` bytes at `offset` of `file` into a buffer of this pool.
    pub fn read_at(
        self: &Arc<Self>,
        file: &File,
        offset: u64,
        len: usize,
    ) -> std::io::Result<Bytes> {
        read_at(self, file, offset, len)
    }
}

fn read_at(
    pool_of: &Arc<FramePool>,
    file: &File,
    offset: u64,
    len: usize,
) -> std::io::Result<Bytes> {
    let class = len.next_power_of_two();
    let reused = {
        let mut pool = pool_of.pool.lock();
        let found = pool.free.iter().position(|b| b.len() == class);
        found.map(|i| {
            let buf = pool.free.swap_remove(i);
            pool.bytes -= buf.len();
            buf
        })
    };
    let mut buf = reused.unwrap_or_else(|| vec![0; class]);
    file.read_exact_at(&mut buf[..len], offset)?;
    Ok(Bytes::from_owner(Frame {
        buf,
        len,
        pool: pool_of.clone(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_hold_the_bytes_read_and_buffers_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, (0..=255u8).cycle().take(100_000).collect::<Vec<_>>()).unwrap();
        let file = File::open(&path).unwrap();
        let pool = FramePool::new();
        let a = pool.read_at(&file, 10, 1000).unwrap();
        assert_eq!(a.len(), 1000);
        assert_eq!(a[0], 10);
        assert_eq!(a[999], ((10 + 999) % 256) as u8);
        drop(a);
        assert_eq!(
            pool.pool.lock().free.len(),
            1,
            "the buffer went back to its pool"
        );
        let b = pool.read_at(&file, 0, 900).unwrap();
        assert!(
            pool.pool.lock().free.is_empty(),
            "and was taken from it again"
        );
        assert_eq!(&b[..3], &[0, 1, 2]);
        assert!(
            pool.read_at(&file, 99_990, 100).is_err(),
            "a short read is an error"
        );
    }
}

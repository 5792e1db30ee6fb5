//! Response bodies sent from the cache: a committed entry, or a fill followed as it grows
//! (read-while-write). Both are polled by the client connection's own task. Frames are
//! slices of the file's mapping (`mapped`: the socket copies straight from the page cache)
//! or, where there is no mapping, positional reads into buffers sized from a shared memory
//! budget.

use std::fs::File;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::BodyExt as _;
use tokio::sync::watch;

use crate::fill::{FillEnd, FillHead, Progress};
use crate::frames::FramePool;
use crate::store::Entry;
use crate::upstream::{BoxError, ProxyBody};

/// Memory shared by the frames of every body being sent from the cache (hits and readers of
/// fills): each reader's frame size is this divided by the number of readers, within
/// [`MIN_FRAME`, `MAX_FRAME`]. Hyper asks for the next frame only when the socket took the
/// last, so a reader holds about two frames: with many readers memory stays near twice this
/// budget; with few, large reads keep throughput up.
const FRAME_BUDGET: usize = 8 << 20;
/// Largest frame: past this, bigger reads stop paying (measured with `make bench`).
const MAX_FRAME: usize = 512 << 10;
/// Smallest frame, however many readers.
const MIN_FRAME: usize = 32 << 10;
/// Frames cut from a mapping cost no memory of their own (they are the page cache), so they
/// are as large as hyper takes in one go: it stops asking for frames while it holds about
/// 400 KiB unwritten, and a larger frame is written across several polls of the socket.
const MAPPED_FRAME: usize = 1 << 20;
/// What one proxy's bodies share: the frame budget's count of readers and the frame buffers.
/// Each proxy has its own, so two in one process (tests, or two listeners) do not share a
/// budget.
#[derive(Default)]
pub struct Delivery {
    /// Bodies being sent from the cache now.
    readers: AtomicUsize,
    /// Their frames' buffers.
    frames: Arc<FramePool>,
}

impl Delivery {
    /// No reader yet.
    pub fn new() -> Arc<Delivery> {
        Arc::new(Delivery::default())
    }

    /// Bodies being sent from entries or fills now (the metrics' `readers`).
    pub fn readers(&self) -> usize {
        self.readers.load(Ordering::Relaxed)
    }
}

/// Counts a reader while it lives.
struct Reader(Arc<Delivery>);

impl Reader {
    fn new(delivery: &Arc<Delivery>) -> Self {
        delivery.readers.fetch_add(1, Ordering::Relaxed);
        Reader(delivery.clone())
    }

    /// This reader's share of the frame budget, a power of two so that pooled buffers fit
    /// frames exactly.
    fn frame_size(&self) -> usize {
        let readers = self.0.readers().max(1);
        let share = (FRAME_BUDGET / readers).clamp(MIN_FRAME, MAX_FRAME);
        1 << share.ilog2()
    }

    /// The next frame of a body that starts at `offset` in `file` (`mapped`: the same body,
    /// mapped), from `pos` and at most `left` bytes long.
    fn frame(
        &self,
        mapped: Option<&Bytes>,
        file: &File,
        offset: u64,
        pos: u64,
        left: u64,
    ) -> std::io::Result<Bytes> {
        match mapped {
            Some(body) => {
                let len = left.min(MAPPED_FRAME as u64) as usize;
                let start = pos as usize;
                Ok(body.slice(start..start + len))
            }
            None => {
                let len = left.min(self.frame_size() as u64) as usize;
                self.0.frames.read_at(file, offset + pos, len)
            }
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.0.readers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Where a reader's bytes come from.
pub enum Source {
    /// A committed entry: the whole body is there.
    Entry(Entry),
    /// A fill in progress: wait for bytes as they arrive.
    Fill {
        /// The fill's file and layout.
        head: Arc<FillHead>,
        /// Its progress.
        progress: watch::Receiver<Progress>,
    },
}

/// A response body that streams bytes `start..end` (`end` `None`: to the end of the body) from
/// `source`, following a fill as it grows. A failed fill aborts the body with an error.
pub fn stream(delivery: &Arc<Delivery>, source: Source, start: u64, end: Option<u64>) -> ProxyBody {
    match source {
        Source::Entry(entry) => {
            let end = end.unwrap_or(entry.body_len).min(entry.body_len);
            EntryBody {
                reader: Reader::new(delivery),
                mapped: entry.body,
                file: entry.file,
                offset: entry.body_offset,
                pos: start.min(end),
                end,
            }
            .boxed()
        }
        Source::Fill { head, progress } => FillBody {
            reader: Reader::new(delivery),
            head,
            progress: Watch::Ready(progress),
            pos: start,
            end,
        }
        .boxed(),
    }
}

/// The body of a committed entry, cut from its mapping (or read from the file) as hyper asks
/// for it: no task, no channel. Positional reads are served from the page cache for hot
/// entries, which is why they are done inline rather than on the blocking pool.
struct EntryBody {
    reader: Reader,
    mapped: Option<Bytes>,
    file: Arc<File>,
    offset: u64,
    pos: u64,
    end: u64,
}

impl hyper::body::Body for EntryBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let result = self.reader.frame(
            self.mapped.as_ref(),
            &self.file,
            self.offset,
            self.pos,
            self.end - self.pos,
        );
        Poll::Ready(Some(match result {
            Ok(data) => {
                self.pos += data.len() as u64;
                Ok(hyper::body::Frame::data(data))
            }
            Err(e) => Err(e.into()),
        }))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.end - self.pos)
    }
}

/// Follows a fill: yields bytes `start..end` as they are written, waits for more, and fails
/// when the fill fails. Polled by the connection's own task like [`EntryBody`]. It used to be a
/// task per reader feeding a channel: each reader then held a frame in the channel as well as
/// the one hyper was writing, and a hundred of them (`make bench`, scenario 3) took twice the
/// memory for no faster delivery (bench/notes.md).
struct FillBody {
    reader: Reader,
    head: Arc<FillHead>,
    progress: Watch,
    pos: u64,
    end: Option<u64>,
}

/// The fill's progress channel, or the wait for its next change.
enum Watch {
    Ready(watch::Receiver<Progress>),
    Waiting(Pin<Box<dyn Future<Output = Changed> + Send + Sync>>),
    Gone,
}

/// The receiver back from a wait, and whether the fill still exists.
type Changed = (watch::Receiver<Progress>, bool);

impl hyper::body::Body for FillBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            let mut rx = match std::mem::replace(&mut this.progress, Watch::Gone) {
                Watch::Ready(rx) => rx,
                Watch::Waiting(mut wait) => match wait.as_mut().poll(cx) {
                    Poll::Pending => {
                        this.progress = Watch::Waiting(wait);
                        return Poll::Pending;
                    }
                    Poll::Ready((_, false)) => {
                        return Poll::Ready(Some(Err("fill went away".into())));
                    }
                    Poll::Ready((rx, true)) => rx,
                },
                Watch::Gone => return Poll::Ready(None),
            };
            let (available, finished) = {
                let p = rx.borrow_and_update();
                match &p.end {
                    Some(FillEnd::Failed { reason, .. }) => {
                        return Poll::Ready(Some(Err(reason.clone().into())));
                    }
                    Some(FillEnd::Complete) => (p.written, true),
                    Some(_) => return Poll::Ready(Some(Err("fill ended without a body".into()))),
                    None => (p.written, false),
                }
            };
            let limit = this.end.map_or(available, |e| e.min(available));
            if this.pos < limit {
                // Bytes the fill wrote moments ago: in the page cache, so read inline.
                let read = this.reader.frame(
                    this.head.body.as_ref(),
                    &this.head.file,
                    this.head.body_offset,
                    this.pos,
                    limit - this.pos,
                );
                this.progress = Watch::Ready(rx);
                return Poll::Ready(Some(match read {
                    Ok(data) => {
                        this.pos += data.len() as u64;
                        Ok(hyper::body::Frame::data(data))
                    }
                    Err(e) => Err(e.into()),
                }));
            }
            if this.end.is_some_and(|e| this.pos >= e) || finished {
                return Poll::Ready(None);
            }
            // Caught up with the fill: wait for it to publish more. The wait owns the
            // receiver, so it is boxed once per wait rather than borrowed across polls.
            this.progress = Watch::Waiting(Box::pin(async move {
                let alive = rx.changed().await.is_ok();
                (rx, alive)
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_proxy_has_its_own_frame_budget() {
        let (a, b) = (Delivery::new(), Delivery::new());
        let alone = Reader::new(&a);
        let size_alone = alone.frame_size();
        // Many readers of another proxy do not shrink this proxy's frames.
        let others: Vec<Reader> = (0..64).map(|_| Reader::new(&b)).collect();
        assert_eq!(alone.frame_size(), size_alone);
        assert_eq!((a.readers(), b.readers()), (1, 64));
        // Its own do.
        let more: Vec<Reader> = (0..63).map(|_| Reader::new(&a)).collect();
        assert!(alone.frame_size() < size_alone);
        drop((others, more));
        assert_eq!((a.readers(), b.readers()), (1, 0));
    }
}

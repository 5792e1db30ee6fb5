//! The fills in progress: one per key, found by every request for that key, and what their
//! readers see of them (the response head, bytes written, how it ended) on a `watch`
//! channel. The single-flight lock of the cache: [`Fills::find_or_create`] decides atomically
//! which request fetches.

use std::collections::HashMap;
use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use crate::sync::Mutex;

use http::{HeaderMap, StatusCode};
use tokio::sync::watch;

use crate::cache_key::CacheKey;

/// The upstream's response head, as clients will see it.
#[derive(Debug)]
pub struct FillHead {
    /// Upstream status.
    pub status: StatusCode,
    /// End-to-end response headers.
    pub headers: HeaderMap,
    /// Announced body length, if any.
    pub content_length: Option<u64>,
    /// The temp file the body is written to.
    pub file: Arc<File>,
    /// Where the body starts in the file.
    pub body_offset: u64,
    /// The body's announced length mapped from the file (`mapped::map_fill`), read by
    /// readers up to what has been written; `None` for a body of unknown length (or when
    /// mapping failed): positional reads then.
    pub body: Option<bytes::Bytes>,
    /// The fill request's values of the headers the response varies on: a reader whose
    /// request differs must not be given this body.
    pub vary: Vec<(String, String)>,
    /// Unix seconds at which the response stops being fresh.
    pub expires_at: u64,
    /// How long the upstream took to send the response head.
    pub upstream_time: std::time::Duration,
    /// The response's age when it arrived (RFC 9111 4.2.3), and when that was (Unix
    /// seconds): a reader served from the finished fill gets its `Age` as from an entry.
    pub initial_age: u64,
    /// Unix seconds when the response arrived.
    pub received_at: u64,
}

/// How a fill ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FillEnd {
    /// The whole body is in the file.
    Complete,
    /// The upstream confirmed the stale entry (304); no body was fetched.
    NotModified,
    /// The fetch failed; `before_head` says whether any response head had arrived.
    Failed {
        /// What went wrong, for the log and the 502/504 body.
        reason: String,
        /// No response head had arrived.
        before_head: bool,
        /// It was a timeout (504) rather than an error (502).
        timeout: bool,
    },
    /// The response is not for the cache (not storable): it went to the request that started
    /// the fill; others fetch for themselves.
    HandedOver,
    /// The cache directory cannot take the body (read-only, full): as `HandedOver`.
    NoDisk,
}

/// What readers see of a fill.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// The response head, once it arrived.
    pub head: Option<Arc<FillHead>>,
    /// Body bytes in the file so far.
    pub written: u64,
    /// Set once, when the fill is over.
    pub end: Option<FillEnd>,
}

/// One upstream fetch in progress.
#[derive(Debug)]
pub struct Fill {
    pub(crate) key: CacheKey,
    progress: watch::Sender<Progress>,
    /// An admin purged the key while this fill ran: it serves its readers but stores
    /// nothing, since what it fetched predates the purge.
    cancelled: AtomicBool,
}

impl Fill {
    /// Whether a purge covered this fill.
    pub fn cancelled(&self) -> bool {
        self.cancelled.load(Ordering::SeqCst)
    }

    /// A receiver of this fill's progress.
    pub fn subscribe(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    pub(crate) fn publish(&self, change: impl FnOnce(&mut Progress)) {
        self.progress.send_modify(change);
    }
}

/// The fills in progress, by key. Weak references: a fill lives as long as its task.
#[derive(Debug, Default)]
pub struct Fills {
    map: Mutex<HashMap<String, Weak<Fill>>>,
}

impl Fills {
    /// The fill in progress for `key`, if any.
    pub fn find(&self, key: &CacheKey) -> Option<Arc<Fill>> {
        self.map.lock().get(key.as_str()).and_then(Weak::upgrade)
    }

    /// The fill for `key`, and whether it was created by this call (the caller must then run
    /// it); `None` when `max` fills already run and none is for `key`.
    pub fn find_or_create(&self, key: &CacheKey, max: usize) -> Option<(Arc<Fill>, bool)> {
        let mut map = self.map.lock();
        if let Some(fill) = map.get(key.as_str()).and_then(Weak::upgrade) {
            return Some((fill, false));
        }
        map.retain(|_, fill| fill.strong_count() > 0);
        if map.len() >= max {
            return None;
        }
        let (progress, _) = watch::channel(Progress::default());
        let fill = Arc::new(Fill {
            key: key.clone(),
            progress,
            cancelled: AtomicBool::new(false),
        });
        map.insert(key.as_str().to_string(), Arc::downgrade(&fill));
        Some((fill, true))
    }

    pub(crate) fn remove(&self, fill: &Arc<Fill>) {
        let mut map = self.map.lock();
        if map
            .get(fill.key.as_str())
            .is_some_and(|w| w.as_ptr() == Arc::as_ptr(fill))
        {
            map.remove(fill.key.as_str());
        }
    }

    /// Marks every fill whose key `covers` as cancelled (it will store nothing) and lets go of
    /// it, so that the next request for its key fetches afresh; how many there were.
    pub fn cancel(&self, covers: impl Fn(&CacheKey) -> bool) -> usize {
        let mut map = self.map.lock();
        let mut cancelled = 0;
        map.retain(|_, weak| {
            let Some(fill) = weak.upgrade() else {
                return false;
            };
            if covers(&fill.key) {
                fill.cancelled.store(true, Ordering::SeqCst);
                cancelled += 1;
                return false;
            }
            true
        });
        cancelled
    }

    /// Number of fills in progress.
    pub fn len(&self) -> usize {
        self.map
            .lock()
            .values()
            .filter(|w| w.strong_count() > 0)
            .count()
    }

    /// Whether no fill is in progress.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

//! The in-memory index of committed entries: their sizes, the total, and the order of use for
//! eviction. Pure bookkeeping, no I/O: [`crate::store`] does the files and asks here which
//! entries go.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

#[derive(Debug)]
struct Slot {
    size: u64,
    /// The full cache key, for listing and purging by prefix.
    key: String,
    /// When it was stored.
    stored: SystemTime,
    /// Times it was served from the cache since it was indexed.
    hits: u64,
    last_used: SystemTime,
    /// Monotonic use counter for LRU order (wall-clock ties are common).
    tick: u64,
}

/// Entries by file name (the key's hash).
#[derive(Debug, Default)]
pub struct Index {
    slots: HashMap<String, Slot>,
    total: u64,
    tick: u64,
}

impl Index {
    /// Records the entry for `key` of `size` bytes stored at `stored` (replacing any of that
    /// name) as the most recently used.
    pub fn insert(&mut self, hash: &str, key: &str, size: u64, stored: SystemTime) {
        self.tick += 1;
        let slot = Slot {
            size,
            key: key.to_string(),
            stored,
            hits: 0,
            last_used: stored,
            tick: self.tick,
        };
        if let Some(old) = self.slots.insert(hash.to_string(), slot) {
            self.total -= old.size;
        }
        self.total += size;
    }

    /// Forgets an entry; its size, if it was known.
    pub fn remove(&mut self, hash: &str) -> Option<u64> {
        let slot = self.slots.remove(hash)?;
        self.total -= slot.size;
        Some(slot.size)
    }

    /// Marks an entry as just used.
    pub fn touch(&mut self, hash: &str, now: SystemTime) {
        self.tick += 1;
        let tick = self.tick;
        if let Some(slot) = self.slots.get_mut(hash) {
            slot.last_used = now;
            slot.tick = tick;
            slot.hits += 1;
        }
    }

    /// Whether the entry is known.
    pub fn contains(&self, hash: &str) -> bool {
        self.slots.contains_key(hash)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Bytes of all entries.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Every entry: file name, key, size, when stored, hits.
    pub fn list(&self) -> Vec<(String, String, u64, SystemTime, u64)> {
        self.slots
            .iter()
            .map(|(h, s)| (h.clone(), s.key.clone(), s.size, s.stored, s.hits))
            .collect()
    }

    /// File names of the entries whose key starts with `prefix`.
    pub fn with_key_prefix(&self, prefix: &str) -> Vec<String> {
        self.slots
            .iter()
            .filter(|(_, s)| s.key.starts_with(prefix))
            .map(|(h, _)| h.clone())
            .collect()
    }

    /// Removes and returns the least recently used entry.
    pub fn pop_oldest(&mut self) -> Option<String> {
        let oldest = self
            .slots
            .iter()
            .min_by_key(|(_, s)| s.tick)
            .map(|(h, _)| h.clone())?;
        self.remove(&oldest);
        Some(oldest)
    }

    /// Removes and returns the entries unused for longer than `inactive` at `now`.
    pub fn take_inactive(&mut self, now: SystemTime, inactive: Duration) -> Vec<String> {
        let old: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| now.duration_since(s.last_used).unwrap_or_default() > inactive)
            .map(|(h, _)| h.clone())
            .collect();
        for hash in &old {
            self.remove(hash);
        }
        old
    }

    /// Removes and returns least recently used entries until the total is at most `max`.
    pub fn take_over(&mut self, max: u64) -> Vec<String> {
        if self.total <= max {
            return Vec::new();
        }
        let mut by_use: Vec<(u64, String)> = self
            .slots
            .iter()
            .map(|(h, s)| (s.tick, h.clone()))
            .collect();
        by_use.sort_unstable();
        let mut victims = Vec::new();
        for (_, hash) in by_use {
            if self.total <= max {
                break;
            }
            self.remove(&hash);
            victims.push(hash);
        }
        victims
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Duration = Duration::from_secs(1_790_000_000);

    #[test]
    fn totals_follow_inserts_replacements_and_removals() {
        let mut index = Index::default();
        let now = SystemTime::UNIX_EPOCH + T;
        index.insert("a", "ka", 10, now);
        index.insert("b", "kb", 20, now);
        index.insert("a", "ka", 5, now);
        assert_eq!((index.len(), index.total()), (2, 25));
        assert_eq!(index.remove("b"), Some(20));
        assert_eq!(index.remove("b"), None);
        assert_eq!(index.total(), 5);
    }

    #[test]
    fn eviction_takes_the_least_recently_used_first() {
        let mut index = Index::default();
        let now = SystemTime::UNIX_EPOCH + T;
        for (hash, size) in [("a", 10), ("b", 10), ("c", 10)] {
            index.insert(hash, hash, size, now);
        }
        index.touch("a", now);
        assert_eq!(index.take_over(20), ["b"]);
        assert_eq!(index.pop_oldest().as_deref(), Some("c"));
        assert_eq!(index.pop_oldest().as_deref(), Some("a"));
        assert_eq!(index.pop_oldest(), None);
        assert_eq!(index.total(), 0);
    }

    #[test]
    fn inactive_entries_are_taken_by_last_use() {
        let mut index = Index::default();
        let start = SystemTime::UNIX_EPOCH + T;
        index.insert("old", "k/old", 1, start);
        index.insert("new", "k/new", 1, start + Duration::from_secs(3000));
        let taken =
            index.take_inactive(start + Duration::from_secs(3601), Duration::from_secs(3600));
        assert_eq!(taken, ["old"]);
        assert!(index.contains("new") && !index.contains("old"));
        assert_eq!(index.with_key_prefix("k/n"), ["new"]);
        index.touch("new", start);
        assert_eq!(index.list()[0].4, 1, "a hit");
    }
}

//! The cache directory: committed entries, the in-memory index rebuilt from it at start, and
//! eviction (`--inactive`, then least recently used above `--max-size`).
//!
//! Layout: `<cache-dir>/<c>/<29>/<hash>` for entries, `<cache-dir>/tmp/` for fills in
//! progress (removed at start: a crash leaves only those behind, never a torn entry).
//!
//! Durability: a fill's file is `fsync`ed before it is renamed into place and the directory
//! is `fsync`ed after, so after power loss an entry is either whole or absent. Measured on
//! this project's build machines (virtual disk): the file sync takes about 0.3 ms for a 64 KiB
//! entry, 0.5 ms for 1 MiB and 30 ms for 64 MiB (it flushes the object's dirty pages); the
//! directory sync about 0.05 ms. It happens once per object, after every reader was released
//! (the fill publishes completion before committing), so it delays no client.

use std::collections::HashMap;
use std::fs::File;
use std::io::{ErrorKind, Read as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::sync::Mutex;
use std::time::{Duration, SystemTime};

use crate::cache_key::CacheKey;
pub use crate::entry::Entry;
use crate::entry::{self, EntryMeta, check_file, open_entry};
use crate::error::Error;
use crate::index::Index;
use crate::variants::{self, VariantTable};

/// The cache directory and its index.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
    tmp: PathBuf,
    max_size: u64,
    inactive: Duration,
    index: Mutex<Index>,
    /// For URLs whose responses vary: the header names they vary on and the file names of
    /// their stored variants, by primary key. Rebuilt from entries at start.
    variants: Mutex<VariantTable>,
    /// Set once any URL is known to vary: until then (and for Auto Deploy, whose responses
    /// are not known to vary, perhaps for ever) a request skips the table's lock.
    any_variants: std::sync::atomic::AtomicBool,
    /// Entries already opened and parsed, so a hot hit costs no open, no parse.
    open: Mutex<HashMap<String, Entry>>,
    /// Most entries in `open`.
    max_open: usize,
    temp_counter: AtomicU64,
    /// Whether the last attempt to store failed (full or read-only disk): trouble is logged
    /// when it starts and when it ends, not once per request.
    trouble: std::sync::atomic::AtomicBool,
    /// Bytes promised to fills in progress, so that concurrent fills do not all count the
    /// same free space; the lock makes check-and-reserve one step.
    reserved: Arc<Mutex<u64>>,
    /// The proxy's counters (evictions).
    metrics: Arc<crate::metrics::Metrics>,
}

/// Space set aside for one fill; given back when dropped (the fill ended or was committed).
#[derive(Debug)]
pub struct Reservation {
    reserved: Arc<Mutex<u64>>,
    bytes: u64,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        *self.reserved.lock() -= self.bytes;
    }
}

/// Free space kept beyond an object's size when making room for it.
const HEADROOM: u64 = 1 << 20;

/// Most entries kept open at once (one file descriptor each), and the share of the process's
/// file-descriptor limit they may take: the rest is for connections and fills.
const MAX_OPEN: usize = 1024;
const OPEN_SHARE_OF_NOFILE: u64 = 4;

/// How many entries may stay open under the current `RLIMIT_NOFILE`.
fn open_entry_cap() -> usize {
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(u64::MAX);
    usize::try_from(limit / OPEN_SHARE_OF_NOFILE)
        .unwrap_or(MAX_OPEN)
        .clamp(16, MAX_OPEN)
}

impl Store {
    /// Opens (creating if needed) the cache directory, removes stray temp files and rebuilds
    /// the index from entry headers. Corrupt entries are removed.
    pub fn open(
        root: &Path,
        max_size: u64,
        inactive: Duration,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Result<Self, Error> {
        let err =
            |what: &str, e: std::io::Error| Error::Cache(format!("{what} {}: {e}", root.display()));
        if root.exists() && !root.is_dir() {
            return Err(Error::Cache(format!(
                "{} is a file, not a directory: give --cache-dir a directory",
                root.display()
            )));
        }
        std::fs::create_dir_all(root).map_err(|e| err("cannot create", e))?;
        if let Ok(s) = rustix::fs::statvfs(root) {
            let free = s.f_bavail.saturating_mul(s.f_frsize);
            if free < 64 << 20 {
                eprintln!(
                    "autodeploy-cache: warning: {} has {} MiB free: little will be cached until there is room",
                    root.display(),
                    free >> 20
                );
            }
        }
        let tmp = root.join("tmp");
        // A cache directory that cannot be written (read-only, full) is not fatal: the proxy
        // then serves without storing, and says so once.
        let cleared = match std::fs::remove_dir_all(&tmp) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => std::fs::create_dir_all(&tmp),
        };
        let store = Self {
            root: root.to_path_buf(),
            tmp,
            max_size,
            inactive,
            index: Mutex::new(Index::default()),
            variants: Mutex::new(VariantTable::default()),
            any_variants: std::sync::atomic::AtomicBool::new(false),
            open: Mutex::new(HashMap::new()),
            max_open: open_entry_cap(),
            temp_counter: AtomicU64::new(0),
            trouble: std::sync::atomic::AtomicBool::new(false),
            reserved: Arc::new(Mutex::new(0)),
            metrics,
        };
        if let Err(e) = cleared {
            store.report_trouble(&format!("cannot clear tmp/: {e}"));
        }
        store.rebuild();
        store.sweep(SystemTime::now());
        Ok(store)
    }

    fn rebuild(&self) {
        // Noted after the index lock is released: the locks are never held together.
        let mut variants = Vec::new();
        let mut index = self.index.lock();
        for level1 in read_dir(&self.root) {
            if level1.file_name() == Some("tmp".as_ref()) || !level1.is_dir() {
                continue;
            }
            for level2 in read_dir(&level1) {
                for path in read_dir(&level2) {
                    let Some(name) = path
                        .file_name()
                        .and_then(|n| n.to_str())
                        .map(str::to_string)
                    else {
                        continue;
                    };
                    match check_file(&path) {
                        Some((size, meta)) => {
                            if !meta.vary.is_empty() {
                                let names = meta.vary.iter().map(|(n, _)| n.clone()).collect();
                                let primary = CacheKey::from_string(meta.key.clone()).primary();
                                variants.push((primary, names, name.clone()));
                            }
                            let last_used = std::fs::metadata(&path)
                                .and_then(|m| m.modified())
                                .unwrap_or_else(|_| SystemTime::now());
                            index.insert(&name, &meta.key, size, last_used);
                        }
                        None => {
                            let _ = std::fs::remove_file(&path);
                        }
                    }
                }
            }
        }
        drop(index);
        for (primary, names, hash) in variants {
            self.note_variant(&primary, names, &hash);
        }
    }

    /// Bytes of committed entries.
    pub fn size(&self) -> u64 {
        self.index.lock().total()
    }

    /// Number of committed entries.
    pub fn len(&self) -> usize {
        self.index.lock().len()
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Opens the entry for `key`, if there is a whole one. A file that is corrupt or belongs to
    /// another key (a hash collision) is a miss; a corrupt one is removed.
    pub fn lookup(&self, key: &CacheKey) -> Option<Entry> {
        if !self.index.lock().contains(key.hash()) {
            return None;
        }
        let remembered = self.open.lock().get(key.hash()).cloned();
        if let Some(entry) = remembered
            && entry.meta.key == key.as_str()
        {
            self.touch(key);
            return Some(entry);
        }
        let path = key.path_in(&self.root);
        match open_entry(&path) {
            Ok(entry) if entry.meta.key == key.as_str() => {
                self.touch(key);
                let mut open = self.open.lock();
                if open.len() >= self.max_open {
                    open.clear();
                }
                open.insert(key.hash().to_string(), entry.clone());
                Some(entry)
            }
            Ok(_) => None,
            Err(_) => {
                self.forget(key.hash());
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn touch(&self, key: &CacheKey) {
        self.index.lock().touch(key.hash(), SystemTime::now());
    }

    /// Drops `hash` from the index and the open entries.
    fn forget(&self, hash: &str) {
        self.open.lock().remove(hash);
        self.index.lock().remove(hash);
    }

    /// Records that storing failed; logs only when trouble starts.
    pub fn report_trouble(&self, what: &str) {
        if !self.trouble.swap(true, Ordering::Relaxed) {
            eprintln!(
                "autodeploy-cache: cannot store in {}: {what}; serving without storing until it works again",
                self.root.display()
            );
        }
    }

    /// Records that storing worked; logs only when trouble ends.
    pub fn report_ok(&self) {
        if self.trouble.swap(false, Ordering::Relaxed) {
            eprintln!("autodeploy-cache: storing in {} again", self.root.display());
        }
    }

    /// Makes room on the file system for a fill of `needed` bytes and sets it aside: evicts
    /// least recently used entries while free space, less what other fills were promised, is
    /// short (so `--max-size` larger than the disk still cannot fill it). `None` when even an
    /// empty cache would not make room.
    pub fn make_room(&self, needed: u64) -> Option<Reservation> {
        let mut reserved = self.reserved.lock();
        loop {
            let free = match rustix::fs::statvfs(&self.root) {
                Ok(s) => s.f_bavail.saturating_mul(s.f_frsize),
                Err(_) => u64::MAX, // unknown: let the writes decide
            };
            let wanted = needed.saturating_add(HEADROOM).saturating_add(*reserved);
            if free >= wanted {
                *reserved += needed;
                return Some(Reservation {
                    reserved: self.reserved.clone(),
                    bytes: needed,
                });
            }
            let victim = self.index.lock().pop_oldest();
            match victim {
                Some(hash) => {
                    self.metrics.evictions.inc();
                    self.remove_files(&[hash]);
                }
                None => return None,
            }
        }
    }

    /// A new temp file for a fill, in the cache directory so the rename is atomic.
    pub fn temp_file(&self) -> std::io::Result<(PathBuf, File)> {
        let n = self.temp_counter.fetch_add(1, Ordering::Relaxed);
        let path = self.tmp.join(format!("{}-{n}.fill", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)?;
        Ok((path, file))
    }

    /// Makes a finished fill visible: writes the body length, syncs, renames into place,
    /// syncs the directory, indexes it and evicts above `--max-size`. Blocking.
    pub fn commit(
        &self,
        key: &CacheKey,
        temp: &Path,
        file: &File,
        body_len: u64,
    ) -> std::io::Result<()> {
        file.write_all_at(
            entry::number_field(body_len).as_bytes(),
            entry::BODY_LEN_OFFSET,
        )?;
        file.sync_all()?;
        let size = file.metadata()?.len();
        let path = key.path_in(&self.root);
        let dir = path.parent().expect("entry paths have a parent");
        std::fs::create_dir_all(dir)?;
        std::fs::rename(temp, &path)?;
        // Indexed as soon as it is in place, so that the file and the index agree at once;
        // the directory sync that makes the rename durable follows.
        self.open.lock().remove(key.hash());
        self.index
            .lock()
            .insert(key.hash(), key.as_str(), size, SystemTime::now());
        File::open(dir)?.sync_all()?;
        self.evict_over_size();
        Ok(())
    }

    /// Replaces the metadata of `entry` (headers updated by a 304) with `meta`: a new entry
    /// file with the same body, committed like a fill. Blocking.
    pub fn rewrite(
        &self,
        key: &CacheKey,
        entry: &Entry,
        meta: &EntryMeta,
        expires_at: u64,
    ) -> std::io::Result<()> {
        use std::io::{Seek as _, SeekFrom, Write as _};
        let (temp, mut file) = self.temp_file()?;
        let result = (|| {
            file.write_all(&entry::encode_header(meta, expires_at))?;
            let mut body = entry.file.try_clone()?;
            body.seek(SeekFrom::Start(entry.body_offset))?;
            let copied = std::io::copy(&mut (&body).take(entry.body_len), &mut file)?;
            if copied != entry.body_len {
                return Err(std::io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "entry body shrank",
                ));
            }
            self.commit(key, &temp, &file, entry.body_len)
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }

    /// Removes every entry whose key starts with `prefix` (an admin's purge); open handles
    /// keep serving what they had. Returns how many.
    pub fn purge_prefix(&self, prefix: &str) -> usize {
        let victims = {
            let mut index = self.index.lock();
            let hashes = index.with_key_prefix(prefix);
            for hash in &hashes {
                index.remove(hash);
            }
            hashes
        };
        self.remove_files(&victims);
        victims.len()
    }

    /// Every entry: key, size, when stored, hits.
    pub fn entries(&self) -> Vec<(String, u64, SystemTime, u64)> {
        self.index
            .lock()
            .list()
            .into_iter()
            .map(|(_, key, size, stored, hits)| (key, size, stored, hits))
            .collect()
    }

    /// Fault injection for tests only (`AUTODEPLOY_CACHE_TEST_PANIC_PATH`): panics while
    /// holding every lock of the store, as a bug inside one of its critical sections would.
    #[doc(hidden)]
    pub fn panic_while_locked(&self) -> ! {
        let _index = self.index.lock();
        let _variants = self.variants.lock();
        let _open = self.open.lock();
        panic!("fault injected by AUTODEPLOY_CACHE_TEST_PANIC_PATH, with the store's locks held");
    }

    /// Whether storing is failing now (full or read-only disk).
    pub fn in_trouble(&self) -> bool {
        self.trouble.load(Ordering::Relaxed)
    }

    /// Removes every stored response for the URL of `primary`, its variants included (a
    /// successful unsafe request or an admin's purge); open handles keep serving what they
    /// had. Returns how many.
    pub fn invalidate(&self, primary: &CacheKey) -> usize {
        let mut hashes = vec![primary.hash().to_string()];
        hashes.extend(self.variants.lock().take(primary.as_str()));
        let known: Vec<String> = {
            let mut index = self.index.lock();
            hashes
                .into_iter()
                .filter(|h| index.remove(h).is_some())
                .collect()
        };
        self.remove_files(&known);
        known.len()
    }

    /// Whether a variant stored under `hash` may join `primary`'s (at most
    /// [`crate::variants::MAX_VARIANTS`] stored per URL).
    pub fn may_add_variant(&self, primary: &CacheKey, hash: &str) -> bool {
        let known = self
            .variants
            .lock()
            .hashes(primary.as_str())
            .map(<[String]>::to_vec);
        let index = self.index.lock();
        variants::may_add(known.as_deref(), hash, |h| index.contains(h))
    }

    /// The header names responses for `primary` vary on, if they do.
    pub fn vary_names(&self, primary: &CacheKey) -> Option<Vec<String>> {
        if !self.any_variants.load(Ordering::Relaxed) {
            return None;
        }
        self.variants.lock().names(primary.as_str())
    }

    /// Records that `primary`'s responses vary on `names` (empty: they no longer vary) and
    /// that a variant is stored under `hash`.
    pub fn note_variant(&self, primary: &CacheKey, names: Vec<String>, hash: &str) {
        if !names.is_empty() {
            self.any_variants.store(true, Ordering::Relaxed);
        }
        self.variants.lock().note(primary.as_str(), names, hash);
    }

    /// Records a new expiry for an entry confirmed by the upstream (304), in place.
    pub fn set_expiry(&self, key: &CacheKey, expires_at: u64) {
        let path = key.path_in(&self.root);
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.write_all_at(
                    entry::number_field(expires_at).as_bytes(),
                    entry::EXPIRES_OFFSET,
                )
            });
        if let Err(e) = written {
            eprintln!(
                "autodeploy-cache: cannot update the expiry of {}: {e}",
                path.display()
            );
        }
        if let Some(entry) = self.open.lock().get_mut(key.hash()) {
            entry.expires_at = expires_at;
        }
        self.touch(key);
    }

    /// Removes entries unused for `--inactive`, then the least recently used above
    /// `--max-size`.
    pub fn sweep(&self, now: SystemTime) {
        let victims = self.index.lock().take_inactive(now, self.inactive);
        self.metrics.evictions.inc_by(victims.len() as u64);
        self.remove_files(&victims);
        self.evict_over_size();
    }

    fn evict_over_size(&self) {
        let victims = self.index.lock().take_over(self.max_size);
        self.metrics.evictions.inc_by(victims.len() as u64);
        self.remove_files(&victims);
    }

    fn remove_files(&self, hashes: &[String]) {
        let mut open = self.open.lock();
        for hash in hashes {
            open.remove(hash);
            let _ = std::fs::remove_file(crate::cache_key::path_of_hash(&self.root, hash));
        }
    }
}

fn read_dir(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests;

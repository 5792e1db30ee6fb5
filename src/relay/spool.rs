//! The spool: one file per accepted webhook, so that nothing accepted is lost to a crash, a
//! restart or an X outage.
//!
//! An entry is accepted only once its file is written, synced and renamed into place and the
//! directory synced: a crash at any point leaves either no entry (the sender was not answered
//! 200 and retries) or a whole one. The spool is bounded by count and by bytes, checked before
//! anything is written, and keeps a small index in memory (size, arrival, thread) so that the
//! worker can plan a post without reading entries; it reads them one at a time.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use serde::{Deserialize, Serialize};

use super::alerts::{Notification, Status};
use crate::output::write_atomically;

/// One accepted webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// An Alertmanager or Grafana notification.
    Alerts(Notification),
    /// A text from `POST /post`.
    Text(String),
}

/// What the index knows of an entry without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// Its size on disk.
    pub bytes: u64,
    /// When it was accepted, Unix seconds (its file's modification time).
    pub received_at: u64,
    /// For a notification, its thread key and whether the group fires.
    pub group: Option<(String, Status)>,
}

/// Why an entry was not taken.
#[derive(Debug)]
pub enum Refused {
    /// The spool holds as many entries or bytes as it may.
    Full(String),
    /// The disk refused it.
    Io(io::Error),
}

/// How much the spool may hold.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries.
    pub entries: usize,
    /// Bytes of entry files.
    pub bytes: u64,
}

struct Index {
    next: u64,
    entries: BTreeMap<u64, Meta>,
    bytes: u64,
}

/// The spool directory: one file per entry, named by a rising number.
pub struct Spool {
    dir: PathBuf,
    limits: Limits,
    index: Mutex<Index>,
    /// Entries that could not be read when the spool was opened, moved to `bad/`.
    pub set_aside: Vec<String>,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool under `dir`: leftovers of interrupted writes are
    /// removed, each entry is read once (one at a time) for the index, and an unreadable one
    /// is moved to `bad/`.
    pub fn open(dir: &Path, limits: Limits) -> io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut index = Index {
            next: 1,
            entries: BTreeMap::new(),
            bytes: 0,
        };
        let mut ids = Vec::new();
        for item in fs::read_dir(dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(dir.join(&*name));
            } else if let Some(id) = entry_id(&name) {
                ids.push(id);
                index.next = index.next.max(id + 1);
            }
        }
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            index: Mutex::new(index),
            set_aside: Vec::new(),
        };
        ids.sort_unstable();
        for id in ids {
            match spool.load(id) {
                Ok(Some((_, meta))) => spool.lock().insert(id, meta),
                Ok(None) => {}
                Err(e) => spool.set_aside.push(e.to_string()),
            }
        }
        Ok(spool)
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `entry` durably; returns its id. Refused, before anything is written, when the
    /// spool is full.
    pub fn append(&self, entry: &Entry) -> Result<u64, Refused> {
        let bytes = serde_json::to_vec(entry).map_err(|e| Refused::Io(io::Error::other(e)))?;
        let size = bytes.len() as u64;
        // The room is taken under the lock, so concurrent senders cannot overshoot together.
        let id = {
            let mut index = self.lock();
            if index.entries.len() >= self.limits.entries {
                return Err(Refused::Full(format!(
                    "the spool holds {} entries already",
                    index.entries.len()
                )));
            }
            if index.bytes + size > self.limits.bytes {
                return Err(Refused::Full(format!(
                    "the spool holds {} bytes already (--max-spool-size {})",
                    index.bytes, self.limits.bytes
                )));
            }
            let id = index.next;
            index.next += 1;
            index.insert(
                id,
                Meta {
                    bytes: size,
                    received_at: 0,
                    group: group_of(entry),
                },
            );
            id
        };
        let path = self.dir.join(entry_name(id));
        let written = write_atomically(&path, &bytes, 0o600).and_then(|()| sync_dir(&self.dir));
        if let Err(e) = written {
            self.lock().remove(id);
            let _ = fs::remove_file(&path);
            return Err(Refused::Io(e));
        }
        let received_at = modified(&path).unwrap_or_else(|| crate::oauth::unix_now(0));
        if let Some(meta) = self.lock().entries.get_mut(&id) {
            meta.received_at = received_at;
        }
        Ok(id)
    }

    /// The entries waiting, oldest first, with what the index knows of each.
    pub fn list(&self) -> Vec<(u64, Meta)> {
        let index = self.lock();
        index
            .entries
            .iter()
            .filter(|(_, meta)| meta.received_at > 0)
            .map(|(id, meta)| (*id, meta.clone()))
            .collect()
    }

    /// How many entries wait.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes the entries take.
    pub fn bytes(&self) -> u64 {
        self.lock().bytes
    }

    /// The entry `id`, if it is still there. An entry that cannot be read (a disk error, a
    /// damaged file) is set aside under `bad/` with an error, never silently dropped.
    pub fn read(&self, id: u64) -> io::Result<Option<Entry>> {
        match self.load(id) {
            Ok(found) => Ok(found.map(|(entry, _)| entry)),
            Err(e) => {
                self.lock().remove(id);
                Err(e)
            }
        }
    }

    fn load(&self, id: u64) -> io::Result<Option<(Entry, Meta)>> {
        let path = self.dir.join(entry_name(id));
        let parsed = fs::read(&path).and_then(|bytes| {
            let entry: Entry = serde_json::from_slice(&bytes)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let meta = Meta {
                bytes: bytes.len() as u64,
                received_at: modified(&path).unwrap_or(1),
                group: group_of(&entry),
            };
            Ok((entry, meta))
        });
        match parsed {
            Ok(found) => Ok(Some(found)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => {
                let bad = self.dir.join("bad");
                fs::create_dir_all(&bad)?;
                fs::rename(&path, bad.join(entry_name(id)))?;
                Err(io::Error::new(
                    e.kind(),
                    format!(
                        "spool entry {id} is unreadable ({e}); moved to {}",
                        bad.display()
                    ),
                ))
            }
        }
    }

    /// Removes entries that are done with.
    pub fn retire(&self, ids: &[u64]) -> io::Result<()> {
        for id in ids {
            match fs::remove_file(self.dir.join(entry_name(*id))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {
                    self.lock().remove(*id);
                }
            }
        }
        sync_dir(&self.dir)
    }
}

impl Index {
    fn insert(&mut self, id: u64, meta: Meta) {
        self.bytes += meta.bytes;
        if let Some(old) = self.entries.insert(id, meta) {
            self.bytes -= old.bytes;
        }
    }

    fn remove(&mut self, id: u64) {
        if let Some(old) = self.entries.remove(&id) {
            self.bytes -= old.bytes;
        }
    }
}

fn group_of(entry: &Entry) -> Option<(String, Status)> {
    match entry {
        Entry::Alerts(n) => Some((n.thread_key(), n.status)),
        Entry::Text(_) => None,
    }
}

fn modified(path: &Path) -> Option<u64> {
    let time = fs::metadata(path).ok()?.modified().ok()?;
    Some(
        time.duration_since(std::time::UNIX_EPOCH)
            .ok()?
            .as_secs()
            .max(1),
    )
}

fn entry_name(id: u64) -> String {
    format!("{id:020}.json")
}

fn entry_id(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Makes a rename or removal in `dir` durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOMY: Limits = Limits {
        entries: 100,
        bytes: 1 << 20,
    };

    #[test]
    fn entries_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path(), ROOMY).unwrap();
        let a = spool.append(&Entry::Text("a".into())).unwrap();
        let b = spool.append(&Entry::Text("b".into())).unwrap();
        assert!(a < b);
        std::fs::write(dir.path().join("00000000000000000099.json.tmp"), "half").unwrap();
        std::fs::write(dir.path().join("00000000000000000098.json"), "{broken").unwrap();
        let spool = Spool::open(dir.path(), ROOMY).unwrap();
        assert_eq!(spool.set_aside.len(), 1, "{:?}", spool.set_aside);
        assert!(dir.path().join("bad/00000000000000000098.json").exists());
        let ids: Vec<u64> = spool.list().into_iter().map(|(id, _)| id).collect();
        assert_eq!(ids, [a, b]);
        assert_eq!(spool.read(a).unwrap(), Some(Entry::Text("a".into())));
        assert!(!dir.path().join("00000000000000000099.json.tmp").exists());
        let c = spool.append(&Entry::Text("c".into())).unwrap();
        assert!(c > 98, "ids never repeat after a restart");
        spool.retire(&[a, c]).unwrap();
        assert_eq!(spool.list().len(), 1);
        assert_eq!(
            spool.bytes(),
            std::fs::metadata(dir.path().join(entry_name(b)))
                .unwrap()
                .len()
        );
    }

    #[test]
    fn full_by_count_or_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(
            dir.path(),
            Limits {
                entries: 2,
                bytes: 40,
            },
        )
        .unwrap();
        spool.append(&Entry::Text("a".into())).unwrap();
        let big = Entry::Text("x".repeat(40));
        assert!(matches!(spool.append(&big), Err(Refused::Full(why)) if why.contains("bytes")));
        spool.append(&Entry::Text("b".into())).unwrap();
        assert!(
            matches!(spool.append(&Entry::Text("c".into())), Err(Refused::Full(why)) if why.contains("entries"))
        );
        assert_eq!(spool.len(), 2);
    }
}

//! The relay's memory on disk: the spool of accepted webhooks, and the state that outlives a
//! restart (threads, the posting budget, recent texts, the post in flight).
//!
//! An entry is accepted only once its file is written, synced and renamed into place and the
//! directory synced: a crash at any point leaves either no entry (the sender was not answered
//! 200 and retries) or a whole one. The state file is replaced the same way. The order of
//! writes is what makes a kill -9 safe: the post in flight is recorded before it is sent, its
//! id before its entries are removed.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::alerts::Notification;
use crate::output::write_atomically;

/// How many recent texts are remembered to avoid X's duplicate refusal.
const RECENT_TEXTS: usize = 100;

/// One accepted webhook.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entry {
    /// An Alertmanager or Grafana notification.
    Alerts(Notification),
    /// A text from `POST /post`.
    Text(String),
}

/// The spool directory: one file per entry, named by a rising number.
pub struct Spool {
    dir: PathBuf,
    next: Mutex<u64>,
}

impl Spool {
    /// Opens (creating, mode 0700) the spool under `dir`; leftovers of interrupted writes are
    /// removed.
    pub fn open(dir: &Path) -> io::Result<Spool> {
        use std::os::unix::fs::DirBuilderExt as _;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let mut highest = 0;
        for item in fs::read_dir(dir)? {
            let name = item?.file_name();
            let name = name.to_string_lossy();
            if name.ends_with(".tmp") {
                let _ = fs::remove_file(dir.join(&*name));
            } else if let Some(id) = entry_id(&name) {
                highest = highest.max(id);
            }
        }
        Ok(Spool {
            dir: dir.to_path_buf(),
            next: Mutex::new(highest + 1),
        })
    }

    /// Writes `entry` durably; returns its id.
    pub fn append(&self, entry: &Entry) -> io::Result<u64> {
        let bytes = serde_json::to_vec(entry).map_err(io::Error::other)?;
        let id = {
            let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
            let id = *next;
            *next += 1;
            id
        };
        write_atomically(&self.dir.join(entry_name(id)), &bytes, 0o600)?;
        sync_dir(&self.dir)?;
        Ok(id)
    }

    /// The ids of the entries waiting, oldest first: a directory listing, no entry read.
    pub fn ids(&self) -> io::Result<Vec<u64>> {
        let mut ids: Vec<u64> = fs::read_dir(&self.dir)?
            .filter_map(|item| entry_id(&item.ok()?.file_name().to_string_lossy()))
            .collect();
        ids.sort_unstable();
        Ok(ids)
    }

    /// How many entries wait.
    pub fn len(&self) -> usize {
        self.ids().map_or(0, |ids| ids.len())
    }

    /// Whether no entry waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries `ids` names that are still there, in that order. An entry that cannot be
    /// read (a disk error) is set aside under `bad/` with an error, never silently dropped.
    pub fn read(&self, ids: &[u64]) -> io::Result<Vec<(u64, Entry)>> {
        let mut entries = Vec::with_capacity(ids.len());
        for &id in ids {
            let path = self.dir.join(entry_name(id));
            let parsed = fs::read(&path).and_then(|bytes| {
                serde_json::from_slice(&bytes)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
            });
            match parsed {
                Ok(entry) => entries.push((id, entry)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    let bad = self.dir.join("bad");
                    fs::create_dir_all(&bad)?;
                    fs::rename(&path, bad.join(entry_name(id)))?;
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "spool entry {id} is unreadable ({e}); moved to {}",
                            bad.display()
                        ),
                    ));
                }
            }
        }
        Ok(entries)
    }

    /// Removes entries that are done with.
    pub fn retire(&self, ids: &[u64]) -> io::Result<()> {
        for id in ids {
            match fs::remove_file(self.dir.join(entry_name(*id))) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        sync_dir(&self.dir)
    }
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

/// The post being sent: recorded before sending, so a restart knows it may exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inflight {
    /// The entries it covers (one, or several for a digest).
    pub entries: Vec<u64>,
    /// Exactly what is sent.
    pub text: String,
    /// The post it answers, if any.
    pub reply_to: Option<String>,
    /// Thread keys whose announcement this post is.
    pub announces: Vec<(String, Vec<String>)>,
    /// Thread keys this post ends.
    pub ends: Vec<String>,
    /// Set when an attempt broke after the request may have reached X: X's duplicate refusal
    /// then means this very post exists.
    pub maybe_posted: bool,
}

/// A thread on X: the post that announced an alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The announcing post; `None` when X's answer had no id.
    pub post_id: Option<String>,
    /// The firing alerts it announced.
    pub fingerprints: Vec<String>,
}

/// Everything the relay remembers between restarts.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Open threads by group key.
    pub threads: BTreeMap<String, Thread>,
    /// Unix seconds of recent posts: the local budget's window.
    pub posted_at: VecDeque<u64>,
    /// Recent texts, newest last.
    pub recent_texts: VecDeque<String>,
    /// The post being sent, if any.
    pub inflight: Option<Inflight>,
    /// Entries whose post is made but whose files may still be there.
    pub done: Vec<u64>,
    /// No post before this Unix second (X's `x-rate-limit-reset` after a 429).
    pub blocked_until: u64,
}

impl State {
    /// Remembers a posted text.
    pub fn remember(&mut self, text: &str, at: u64) {
        self.recent_texts.push_back(text.to_string());
        while self.recent_texts.len() > RECENT_TEXTS {
            self.recent_texts.pop_front();
        }
        self.posted_at.push_back(at);
    }
}

/// The state file.
pub struct StateFile {
    path: PathBuf,
}

impl StateFile {
    /// The state file in `dir`.
    pub fn new(dir: &Path) -> Self {
        StateFile {
            path: dir.join("state.json"),
        }
    }

    /// The last saved state; a missing file is a fresh start.
    pub fn load(&self) -> io::Result<State> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is not the relay's state ({e})", self.path.display()),
                )
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(State::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the state durably.
    pub fn save(&self, state: &State) -> io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes, 0o600)?;
        sync_dir(self.path.parent().unwrap_or(Path::new(".")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_a_reopen_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let a = spool.append(&Entry::Text("a".into())).unwrap();
        let b = spool.append(&Entry::Text("b".into())).unwrap();
        assert!(a < b);
        std::fs::write(dir.path().join("00000000000000000099.json.tmp"), "half").unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        let pending = spool.read(&spool.ids().unwrap()).unwrap();
        assert_eq!(
            pending,
            [(a, Entry::Text("a".into())), (b, Entry::Text("b".into()))]
        );
        assert!(!dir.path().join("00000000000000000099.json.tmp").exists());
        let c = spool.append(&Entry::Text("c".into())).unwrap();
        assert!(c > b, "ids never repeat after a restart");
        spool.retire(&[a, c]).unwrap();
        assert_eq!(spool.ids().unwrap(), [b]);
    }

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path());
        assert_eq!(file.load().unwrap(), State::default());
        let mut state = State::default();
        state.remember("hello", 42);
        state.blocked_until = 7;
        file.save(&state).unwrap();
        assert_eq!(file.load().unwrap(), state);
    }
}

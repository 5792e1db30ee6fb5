//! What the relay remembers between restarts: open threads, the posting budget's window,
//! recent texts, the post in flight, and X's holds. Kept small whatever senders send (thread
//! keys and fingerprints are hashes, threads expire, their number is capped), replaced whole
//! on every save (temp file, fsync, rename, directory fsync), and never a reason not to start:
//! a file that cannot be read as the state is moved aside and the relay starts afresh.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::output::write_atomically;

/// How many recent texts are remembered (as hashes) to avoid X's duplicate refusal.
const RECENT_TEXTS: usize = 100;
/// A thread not added to for this long is forgotten: its next notification opens a new one.
pub const THREAD_LIFETIME_SECS: u64 = 7 * 24 * 3600;
/// The most threads remembered; the least recently used go first.
pub const MAX_THREADS: usize = 10_000;

/// The post being sent: recorded before sending, so a restart knows it may exist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Inflight {
    /// The entries it covers (one, or several for a digest).
    pub entries: Vec<u64>,
    /// Exactly what is sent.
    pub text: String,
    /// The text before any ` (2)` suffix (empty in states written before it was kept).
    #[serde(default)]
    pub base: String,
    /// The post it answers, if any.
    pub reply_to: Option<String>,
    /// Thread keys whose announcement this post is, with the fingerprints it announces.
    pub announces: Vec<(String, Fingerprints)>,
    /// Thread keys this post ends.
    pub ends: Vec<String>,
    /// Set when an attempt broke after the request may have reached X: X's duplicate refusal
    /// then means this very post exists.
    pub maybe_posted: bool,
}

impl Inflight {
    /// The text without a duplicate suffix.
    pub fn base(&self) -> &str {
        if self.base.is_empty() {
            &self.text
        } else {
            &self.base
        }
    }
}

/// A hash of the firing alerts' fingerprints (what a repeated notification repeats). States
/// written before hashing held the list itself; it is read as its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Fingerprints(pub String);

impl<'de> Deserialize<'de> for Fingerprints {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Hash(String),
            List(Vec<String>),
        }
        Ok(Fingerprints(match Either::deserialize(deserializer)? {
            Either::Hash(hash) => hash,
            Either::List(list) => {
                // Sorted as `&str`, like the fingerprints of new alerts: one sort in the binary.
                let mut sorted: Vec<&str> = list.iter().map(String::as_str).collect();
                sorted.sort_unstable();
                format!("list:{}", sorted.join(","))
            }
        }))
    }
}

/// A thread on X: the post that announced an alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Thread {
    /// The announcing post; `None` when X's answer had no id.
    pub post_id: Option<String>,
    /// The firing alerts it announced.
    pub fingerprints: Fingerprints,
    /// When it was last announced or answered, Unix seconds (0 in older states: kept until
    /// its next use).
    #[serde(default)]
    pub updated_at: u64,
}

/// Everything the relay remembers between restarts.
#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    /// Open threads by thread key.
    pub threads: BTreeMap<String, Thread>,
    /// Unix seconds of recent posts: the local budget's window.
    pub posted_at: VecDeque<u64>,
    /// Hashes of recent texts, newest last: a post with many 4 KB links is 50 KB, and a
    /// hundred of them would be rewritten on every save.
    pub recent_texts: VecDeque<String>,
    /// The post being sent, if any.
    pub inflight: Option<Inflight>,
    /// Entries whose post is made (or given up) but whose files may still be there.
    pub done: Vec<u64>,
    /// No post before this Unix second (X's reset after a 429 or a spent limit).
    pub blocked_until: u64,
}

impl State {
    /// Remembers a posted text.
    pub fn remember(&mut self, text: &str, at: u64) {
        self.note_recent(text);
        self.posted_at.push_back(at);
    }

    /// Remembers `text` as one X holds (posted, or refused as a duplicate).
    pub fn note_recent(&mut self, text: &str) {
        self.recent_texts.push_back(super::alerts::hash(text));
        while self.recent_texts.len() > RECENT_TEXTS {
            self.recent_texts.pop_front();
        }
    }

    /// Whether X holds `text` already, as far as the relay knows.
    pub fn is_recent(&self, text: &str) -> bool {
        let key = super::alerts::hash(text);
        self.recent_texts.contains(&key)
    }

    /// Forgets threads unused for [`THREAD_LIFETIME_SECS`], then the least recently used
    /// beyond [`MAX_THREADS`].
    pub fn expire_threads(&mut self, now: u64) {
        self.threads
            .retain(|_, t| t.updated_at == 0 || t.updated_at + THREAD_LIFETIME_SECS > now);
        if self.threads.len() > MAX_THREADS {
            let mut ages: Vec<u64> = self.threads.values().map(|t| t.updated_at).collect();
            ages.sort_unstable();
            let cutoff = ages[self.threads.len() - MAX_THREADS];
            self.threads.retain(|_, t| t.updated_at >= cutoff);
        }
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

    /// The last saved state; a missing file is a fresh start. A file that is not the relay's
    /// state (cut short, garbage, wrong types, empty, a directory) is renamed
    /// `state.json.corrupt-<now>` and the relay starts afresh: the second value says so, for
    /// the log. Only a file that cannot be read or moved at all is an error.
    pub fn load(&self, now: u64) -> io::Result<(State, Option<String>)> {
        let why = match fs::read(&self.path) {
            Ok(bytes) => match serde_json::from_slice::<State>(&bytes) {
                Ok(state) => return Ok((state, None)),
                Err(e) => format!("it is not the relay's state ({e})"),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((State::default(), None)),
            Err(e) if e.kind() == io::ErrorKind::IsADirectory => "it is a directory".to_string(),
            Err(e) => return Err(e),
        };
        let aside = self
            .path
            .with_file_name(format!("state.json.corrupt-{now}"));
        fs::rename(&self.path, &aside)?;
        sync_dir(&self.path)?;
        Ok((
            State::default(),
            Some(format!(
                "{} could not be used: {why}; moved to {} and started afresh (threads and the budget window are forgotten; the spool is kept)",
                self.path.display(),
                aside.display()
            )),
        ))
    }

    /// Replaces the state durably.
    pub fn save(&self, state: &State) -> io::Result<()> {
        let bytes = serde_json::to_vec(state).map_err(io::Error::other)?;
        write_atomically(&self.path, &bytes, 0o600)?;
        sync_dir(&self.path)
    }
}

/// Makes a rename in the directory of `path` durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    fs::File::open(path.parent().unwrap_or(Path::new(".")))?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path());
        assert_eq!(file.load(1).unwrap(), (State::default(), None));
        let mut state = State::default();
        state.remember("hello", 42);
        state.blocked_until = 7;
        file.save(&state).unwrap();
        assert_eq!(file.load(1).unwrap(), (state, None));
    }

    #[test]
    fn recent_texts_are_remembered_small() {
        let mut state = State::default();
        for i in 0..200 {
            state.remember(&format!("{i} {}", "https://a.co/".repeat(4000)), i);
        }
        assert!(state.is_recent(&format!("199 {}", "https://a.co/".repeat(4000))));
        assert!(!state.is_recent("199"));
        assert!(serde_json::to_vec(&state).unwrap().len() < 8 * 1024);
    }

    #[test]
    fn a_corrupt_state_is_moved_aside() {
        let good = serde_json::to_vec(&State::default()).unwrap();
        let cases: [(&str, Option<&[u8]>); 5] = [
            ("truncated", Some(&good[..good.len() / 2])),
            ("garbage", Some(b"\x00\xffnot json")),
            ("empty", Some(b"")),
            ("wrong types", Some(br#"{"threads": 5, "posted_at": "x"}"#)),
            ("a directory", None),
        ];
        for (what, content) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.json");
            match content {
                Some(bytes) => fs::write(&path, bytes).unwrap(),
                None => fs::create_dir(&path).unwrap(),
            }
            let (state, note) = StateFile::new(dir.path()).load(1234).unwrap();
            assert_eq!(state, State::default(), "{what}");
            assert!(note.unwrap().contains("state.json.corrupt-1234"), "{what}");
            assert!(
                dir.path().join("state.json.corrupt-1234").exists(),
                "{what}"
            );
            assert!(!path.exists(), "{what}");
        }
    }

    #[test]
    fn an_older_state_still_loads() {
        let old = br#"{"threads":{"g":{"post_id":"1","fingerprints":["b","a"]}},"posted_at":[],"recent_texts":[],"inflight":null,"done":[],"blocked_until":0}"#;
        let state: State = serde_json::from_slice(old).unwrap();
        assert_eq!(state.threads["g"].fingerprints.0, "list:a,b");
    }

    #[test]
    fn threads_expire_and_are_capped() {
        let mut state = State::default();
        let thread = |at| Thread {
            post_id: None,
            fingerprints: Fingerprints(String::new()),
            updated_at: at,
        };
        state.threads.insert("old".into(), thread(1));
        state
            .threads
            .insert("new".into(), thread(THREAD_LIFETIME_SECS));
        state.expire_threads(THREAD_LIFETIME_SECS + 10);
        assert_eq!(state.threads.keys().collect::<Vec<_>>(), ["new"]);
        for i in 0..MAX_THREADS + 5 {
            state
                .threads
                .insert(format!("k{i}"), thread(THREAD_LIFETIME_SECS + i as u64));
        }
        state.expire_threads(THREAD_LIFETIME_SECS + 20);
        assert_eq!(state.threads.len(), MAX_THREADS);
        assert!(!state.threads.contains_key("k0") && state.threads.contains_key("k10004"));
    }
}

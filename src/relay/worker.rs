//! The one worker that turns spooled entries into posts, within X's limits.
//!
//! Each round ([`Worker::step`], given the time) takes the oldest entry that is ready and
//! posts it, or, when entries piled up beyond the posting budget or while X held the relay
//! off, folds everything waiting into one digest post, reading the entries one at a time. It
//! never posts before the local budget (`--max-posts N/PERIOD`) has a slot, nor before X's
//! reset after a 429, after an answer that says no posts are left, or, whatever the 15-minute
//! window says, before a spent 24-hour cap resets ([`post::hold`], shared with `post`, which
//! also clamps what X says to at most a day). Firing groups open a thread; the first
//! announcement of a group waits `--settle` for the rest of the group (Alertmanager flushes
//! an old group at once, then again with the rest) and posts its latest state once; later
//! notices answer the announcing post; a notification that only repeats what is announced
//! (Alertmanager's `repeat_interval`) is not posted again.
//!
//! Crash safety, in the order of the writes: the post in flight is saved before it is sent;
//! its outcome (id, thread, budget) is saved before its entries are removed. After a kill -9,
//! a post in flight is sent again with the very same text; X refusing it as a duplicate then
//! means the first attempt went through, so nothing is posted twice and nothing is lost.
//!
//! Time comes in as an argument and the API through [`Sender`], so every rule here is tested
//! in-process with a scripted X and a clock that the test moves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Health;
use super::alerts::Status;
use super::log::Logger;
use super::metrics::Metrics;
use super::spool::{Entry, Meta, Spool};
use super::state::{Fingerprints, Inflight, State, StateFile, Thread};
use super::text::{self, Brief, Composer};
use crate::api::{self, ApiVersion, Failure};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::post::{self, Hold, Sender};
use crate::transport::SendError;
use crate::units::shown_time;

/// The first backoff after a failure; it doubles (full jitter) up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(2);
/// The longest backoff.
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// The shortest wait after X refused the credentials: an operator has to act.
const AUTH_BACKOFF: Duration = Duration::from_secs(60);
/// How long one request to X may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Duplicate refusals of one post (each with a new suffix) before it is given up.
const MAX_DUPLICATE_TRIES: u32 = 3;

/// How many posts a period allows (`--max-posts 50/24h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Posts per period.
    pub posts: usize,
    /// The period.
    pub period: Duration,
}

impl Budget {
    /// Parses `N/PERIOD`.
    pub fn parse(value: &str) -> Result<Budget, String> {
        let (posts, period) = value
            .split_once('/')
            .ok_or_else(|| "expected N/PERIOD, such as 50/24h".to_string())?;
        let posts: usize = posts
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=100_000).contains(n))
            .ok_or_else(|| format!("{posts:?} is not a number of posts from 1 to 100000"))?;
        let period = crate::units::parse_duration(period.trim())?;
        if period < Duration::from_secs(1) {
            return Err("the period must be at least 1s".to_string());
        }
        Ok(Budget { posts, period })
    }

    /// When the next post may go out, given the times of recent posts (oldest first).
    fn next_slot(&self, posted_at: &std::collections::VecDeque<u64>, now: u64) -> u64 {
        let window_start = now.saturating_sub(self.period.as_secs());
        let recent: Vec<u64> = posted_at
            .iter()
            .copied()
            .filter(|&t| t > window_start)
            .collect();
        if recent.len() < self.posts {
            now
        } else {
            recent[recent.len() - self.posts] + self.period.as_secs()
        }
    }

    /// How many posts the window still allows now.
    fn remaining(&self, posted_at: &std::collections::VecDeque<u64>, now: u64) -> usize {
        let window_start = now.saturating_sub(self.period.as_secs());
        let used = posted_at.iter().filter(|&&t| t > window_start).count();
        self.posts.saturating_sub(used)
    }
}

/// Wakes the worker: a new entry, or shutdown.
#[derive(Default)]
pub struct Wake {
    pending: Mutex<bool>,
    condvar: Condvar,
}

impl Wake {
    /// Tells the worker to look again.
    pub fn notify(&self) {
        *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.condvar.notify_all();
    }

    /// Waits for a notification, at most `timeout` (forever when `None`).
    fn wait(&self, timeout: Option<Duration>) {
        let mut pending = self.pending.lock().unwrap_or_else(|e| e.into_inner());
        if !*pending {
            pending = match timeout {
                Some(t) => {
                    self.condvar
                        .wait_timeout(pending, t)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .condvar
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner()),
            };
        }
        *pending = false;
    }
}

/// The X account and API the relay posts with.
pub struct Account {
    /// The four credentials.
    pub credentials: Credentials,
    /// API base URL.
    pub api_base: String,
    /// API version.
    pub version: ApiVersion,
    /// The HTTPS client.
    pub sender: Box<dyn Sender + Send>,
}

impl Account {
    /// `request` signed with a fresh nonce as at Unix second `at` (a corrected clock can be
    /// behind the epoch on a broken host: the signature then says 0).
    pub fn sign(&self, request: &api::Outgoing, at: i64) -> Result<oauth::Signature, Error> {
        let nonce = oauth::fresh_nonce()?;
        oauth::sign(
            &request.to_sign(),
            &self.credentials,
            &nonce,
            at.max(0) as u64,
        )
    }
}

/// How the worker posts.
#[derive(Debug, Clone)]
pub struct Settings {
    /// How alerts read.
    pub composer: Composer,
    /// The local posting budget.
    pub budget: Budget,
    /// How long a new group's first notification waits for the rest of the group.
    pub settle: Duration,
}

/// What the worker shares with the listener.
pub struct Shared {
    /// The spool.
    pub spool: Arc<Spool>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// What `/healthz` reports.
    pub health: Arc<Health>,
    /// Log lines.
    pub log: Logger,
}

/// What one round decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Go on at once.
    Again,
    /// Nothing to do until woken.
    Idle,
    /// Wait until this Unix second because of a limit; new entries change nothing.
    Limited(u64),
    /// Wait until this Unix second for a group to settle, or until a new entry comes.
    Settling(u64),
    /// Wait this long after a failure, then try again.
    Backoff(Duration),
}

/// The worker.
pub struct Worker {
    shared: Shared,
    state_file: StateFile,
    settings: Settings,
    account: Account,
    state: State,
    /// The last round waited for a limit: what waits now goes out as a digest.
    limited: bool,
    /// Seconds added to the clock when signing (learned from a 401's `Date`).
    clock_offset: i64,
    /// A re-sign for the clock was tried since the last success.
    resigned: bool,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// Duplicate refusals of the post in flight.
    duplicates: u32,
    /// A reset too far ahead was reported already.
    warned_suspicious: bool,
}

impl Worker {
    /// A worker that goes on from `state` (as loaded at start) at Unix second `now`.
    pub fn new(
        shared: Shared,
        state_file: StateFile,
        mut state: State,
        settings: Settings,
        account: Account,
        now: u64,
    ) -> Worker {
        if let Some(inflight) = &mut state.inflight {
            shared.log.event(
                "resuming",
                &[
                    ("entries", json!(inflight.entries)),
                    (
                        "note",
                        json!("a post was in flight at the last stop: it is sent again, and X's duplicate refusal proves the first went out"),
                    ),
                ],
            );
            // A post interrupted by a crash may exist: a duplicate refusal means it does.
            inflight.maybe_posted = true;
        }
        // A hold saved by an older version may lie years ahead; a day is the most X means.
        if state.blocked_until > now + post::MAX_RESET_AHEAD_SECS {
            shared.log.event(
                "suspicious",
                &[
                    ("saved_reset", json!(state.blocked_until)),
                    (
                        "note",
                        json!(
                            "a saved hold lies more than 25 hours ahead: holding 24 hours instead"
                        ),
                    ),
                ],
            );
            state.blocked_until = now + post::SUSPICIOUS_HOLD_SECS;
        }
        for thread in state.threads.values_mut() {
            if thread.updated_at == 0 {
                thread.updated_at = now;
            }
        }
        state.expire_threads(now);
        Worker {
            shared,
            state_file,
            settings,
            account,
            state,
            limited: false,
            clock_offset: 0,
            resigned: false,
            failures: 0,
            duplicates: 0,
            warned_suspicious: false,
        }
    }

    /// What the worker remembers (for tests and the stop line).
    pub fn state(&self) -> &State {
        &self.state
    }

    /// Runs until `shutdown`; returns the number of entries left in the spool.
    pub fn run(mut self, wake: &Wake, shutdown: &AtomicBool) -> usize {
        let now = || oauth::unix_now(0);
        while !shutdown.load(Ordering::SeqCst) {
            let next = self.step(now());
            if shutdown.load(Ordering::SeqCst) {
                break;
            }
            match next {
                Next::Again => {}
                Next::Idle => wake.wait(None),
                Next::Backoff(pause) => wake.wait(Some(pause)),
                Next::Settling(until) => wake.wait(Some(Duration::from_secs(
                    until.saturating_sub(now()).max(1),
                ))),
                Next::Limited(until) => {
                    // New entries change nothing before the limit lifts: only shutdown ends
                    // the wait early, so a storm of webhooks does not become a storm of rounds.
                    let started = Instant::now();
                    while now() < until && !shutdown.load(Ordering::SeqCst) {
                        wake.wait(Some(Duration::from_secs(
                            until.saturating_sub(now()).max(1),
                        )));
                    }
                    self.shared
                        .metrics
                        .rate_limited_seconds
                        .inc_by(started.elapsed().as_secs_f64().round() as u64);
                }
            }
        }
        self.shared.spool.len()
    }

    /// One round at Unix second `now`: a post, or what to wait for. Failures are logged and
    /// become a backoff; nothing here ends the worker.
    pub fn step(&mut self, now: u64) -> Next {
        match self.round(now) {
            Ok(next) => next,
            Err(e) => {
                self.failures += 1;
                self.shared
                    .log
                    .event("error", &[("message", json!(e.to_string()))]);
                Next::Backoff(post::backoff(FIRST_BACKOFF, MAX_BACKOFF, self.failures))
            }
        }
    }

    fn save(&self) -> Result<(), Error> {
        self.state_file
            .save(&self.state)
            .map_err(|e| Error::Internal(format!("cannot save the relay's state: {e}")))
    }

    fn retire_done(&mut self) -> Result<(), Error> {
        if self.state.done.is_empty() {
            return Ok(());
        }
        self.shared
            .spool
            .retire(&self.state.done)
            .map_err(spool_error)?;
        self.state.done.clear();
        self.save()
    }

    fn round(&mut self, now: u64) -> Result<Next, Error> {
        // A post made (or given up) before a crash whose entries were not removed yet.
        self.retire_done()?;
        if let Some(inflight) = self.state.inflight.clone() {
            if self.state.blocked_until > now {
                return Ok(Next::Limited(self.state.blocked_until));
            }
            return self.send(inflight, now);
        }
        // The index in memory; entries are read only when a post is due, and only those it
        // covers, one at a time.
        let waiting = self.shared.spool.list();
        self.shared.metrics.spooled.set(waiting.len() as i64);
        if waiting.is_empty() {
            self.limited = false;
            return Ok(Next::Idle);
        }
        let until = self
            .state
            .blocked_until
            .max(self.settings.budget.next_slot(&self.state.posted_at, now));
        if until > now {
            if !self.limited {
                self.shared.log.event(
                    "rate-limited",
                    &[
                        ("waiting", json!(waiting.len())),
                        ("until", json!(shown_time(until))),
                    ],
                );
            }
            self.limited = true;
            return Ok(Next::Limited(until));
        }
        let slots = self.settings.budget.remaining(&self.state.posted_at, now);
        let digest = waiting.len() > 1 && (self.limited || waiting.len() > slots);
        self.limited = false;
        if digest {
            return self.digest(&waiting, now);
        }
        let settle = self.settings.settle.as_secs();
        let mut settling: Option<u64> = None;
        for (id, meta) in &waiting {
            if let Some((key, Status::Firing)) = &meta.group
                && settle > 0
                && !self.state.threads.contains_key(key)
                && meta.received_at + settle > now
            {
                let ready = meta.received_at + settle;
                settling = Some(settling.map_or(ready, |s| s.min(ready)));
                continue;
            }
            return self.single(*id, meta, &waiting, now);
        }
        Ok(Next::Settling(settling.unwrap_or(now + 1)))
    }

    /// Posts entry `id`; later notifications of the same group come along, the latest
    /// standing for the group.
    fn single(
        &mut self,
        id: u64,
        meta: &Meta,
        waiting: &[(u64, Meta)],
        now: u64,
    ) -> Result<Next, Error> {
        let ids: Vec<u64> = match &meta.group {
            Some((key, _)) => waiting
                .iter()
                .filter(|(other, m)| {
                    *other >= id && m.group.as_ref().is_some_and(|(k, _)| k == key)
                })
                .map(|(other, _)| *other)
                .collect(),
            None => vec![id],
        };
        let latest = *ids.last().unwrap_or(&id);
        let entry = match self.shared.spool.read(latest) {
            Ok(Some(entry)) => entry,
            Ok(None) => return Ok(Next::Again),
            Err(e) => {
                // Moved to bad/: the others of the group still go out.
                self.shared
                    .log
                    .event("error", &[("message", json!(e.to_string()))]);
                return Ok(Next::Again);
            }
        };
        if self.repeats(&entry) {
            self.shared.spool.retire(&ids).map_err(spool_error)?;
            return Ok(Next::Again);
        }
        let inflight = self.compose(&entry, ids);
        self.start(inflight, now)
    }

    /// One post for everything waiting, read entry by entry: each group once (its latest
    /// notification), repeats of announced groups left out.
    fn digest(&mut self, waiting: &[(u64, Meta)], now: u64) -> Result<Next, Error> {
        let mut briefs: Vec<Option<(u64, Brief)>> = Vec::with_capacity(waiting.len());
        let mut latest: HashMap<String, usize> = HashMap::new();
        let mut groups: HashMap<String, (Status, Fingerprints)> = HashMap::new();
        let mut ids = Vec::with_capacity(waiting.len());
        for (id, _) in waiting {
            ids.push(*id);
            let entry = match self.shared.spool.read(*id) {
                Ok(Some(entry)) => entry,
                Ok(None) => continue,
                Err(e) => {
                    self.shared
                        .log
                        .event("error", &[("message", json!(e.to_string()))]);
                    continue;
                }
            };
            if let Entry::Alerts(n) = &entry {
                let key = n.thread_key();
                if let Some(earlier) = latest.insert(key.clone(), briefs.len()) {
                    briefs[earlier] = None;
                }
                groups.insert(key, (n.status, Fingerprints(n.firing_fingerprints())));
            }
            briefs.push(Some((*id, self.settings.composer.brief(&entry))));
        }
        // A group whose latest notice repeats its announcement says nothing new.
        let repeated: Vec<String> = groups
            .iter()
            .filter(|(key, (status, prints))| self.is_repeat(key, *status, prints))
            .map(|(key, _)| key.clone())
            .collect();
        for key in &repeated {
            self.log_repeat(key);
            groups.remove(key);
            if let Some(&at) = latest.get(key) {
                briefs[at] = None;
            }
        }
        let briefs: Vec<(u64, Brief)> = briefs.into_iter().flatten().collect();
        let inflight = match briefs.as_slice() {
            [] => {
                self.shared.spool.retire(&ids).map_err(spool_error)?;
                return Ok(Next::Again);
            }
            [(only, _)] => match self.shared.spool.read(*only) {
                Ok(Some(entry)) => self.compose(&entry, ids),
                _ => return Ok(Next::Again),
            },
            _ => {
                let mut announces = Vec::new();
                let mut ends = Vec::new();
                for (key, (status, prints)) in groups {
                    match status {
                        Status::Firing => announces.push((key, prints)),
                        Status::Resolved => ends.push(key),
                    }
                }
                let list: Vec<Brief> = briefs.into_iter().map(|(_, b)| b).collect();
                let base = text::digest(&list);
                Inflight {
                    entries: ids,
                    text: text::distinct(&base, |t| self.state.is_recent(t)),
                    base,
                    reply_to: None,
                    announces,
                    ends,
                    maybe_posted: false,
                }
            }
        };
        self.start(inflight, now)
    }

    /// The post for `entry`, covering `ids`.
    fn compose(&mut self, entry: &Entry, ids: Vec<u64>) -> Inflight {
        let mut inflight = Inflight {
            entries: ids,
            text: String::new(),
            base: String::new(),
            reply_to: None,
            announces: vec![],
            ends: vec![],
            maybe_posted: false,
        };
        match entry {
            Entry::Text(t) => inflight.base = text::plain(t),
            Entry::Alerts(n) => {
                let key = n.thread_key();
                inflight.base = self.settings.composer.render(n);
                inflight.reply_to = self.state.threads.get(&key).and_then(|t| t.post_id.clone());
                match n.status {
                    Status::Firing => inflight
                        .announces
                        .push((key, Fingerprints(n.firing_fingerprints()))),
                    Status::Resolved => inflight.ends.push(key),
                }
            }
        }
        inflight.text = text::distinct(&inflight.base, |t| self.state.is_recent(t));
        inflight
    }

    fn start(&mut self, inflight: Inflight, now: u64) -> Result<Next, Error> {
        self.state.inflight = Some(inflight.clone());
        self.duplicates = 0;
        self.save()?;
        self.send(inflight, now)
    }

    /// Whether `entry` only repeats a group already announced (Alertmanager's
    /// `repeat_interval`).
    fn repeats(&self, entry: &Entry) -> bool {
        let Entry::Alerts(n) = entry else {
            return false;
        };
        let key = n.thread_key();
        let repeat = self.is_repeat(&key, n.status, &Fingerprints(n.firing_fingerprints()));
        if repeat {
            self.log_repeat(&key);
        }
        repeat
    }

    fn is_repeat(&self, key: &str, status: Status, prints: &Fingerprints) -> bool {
        status == Status::Firing
            && self
                .state
                .threads
                .get(key)
                .is_some_and(|t| &t.fingerprints == prints)
    }

    fn log_repeat(&self, key: &str) {
        self.shared.log.event(
            "repeat",
            &[
                ("group", json!(key)),
                ("note", json!("already announced; not posted again")),
            ],
        );
    }

    fn send(&mut self, mut inflight: Inflight, now: u64) -> Result<Next, Error> {
        let account = &self.account;
        let request = api::post_request(
            &account.api_base,
            account.version,
            &inflight.text,
            inflight.reply_to.as_deref(),
        );
        let ours = now as i64 + self.clock_offset;
        let signed = account.sign(&request, ours)?;
        let response = match account
            .sender
            .send(&request, &signed.authorization, REQUEST_TIMEOUT)
        {
            Ok(response) => response,
            Err(e) => {
                self.failures += 1;
                let why = match e {
                    SendError::Retryable(why) => why,
                    SendError::OutcomeUnknown(why) => {
                        // The request may have reached X: a later duplicate refusal is this post.
                        inflight.maybe_posted = true;
                        self.state.inflight = Some(inflight.clone());
                        self.save()?;
                        why
                    }
                    SendError::Fatal(e) => e.to_string(),
                };
                self.shared.log.event(
                    "retry",
                    &[("entries", json!(inflight.entries)), ("reason", json!(why))],
                );
                return Ok(self.backoff());
            }
        };
        let hold = post::hold(&response, now);
        match api::interpret(account.version, &response) {
            Ok(posted) => {
                self.failures = 0;
                self.resigned = false;
                self.shared.health.clear_problem();
                self.apply(hold, "X says no posts are left until the reset");
                self.posted(inflight, posted.id, now, false)?;
                Ok(Next::Again)
            }
            Err(Failure::Retry { reason, .. }) => {
                if response.status == 429 {
                    // Not posted: what waits is decided again (as a digest) once the limit
                    // lifts, unless an earlier attempt of this text may have gone through;
                    // then the very same text is tried again, so that a duplicate refusal
                    // still proves it.
                    if !inflight.maybe_posted {
                        self.state.inflight = None;
                    }
                    self.limited = true;
                }
                if let Hold::Until { .. } = hold {
                    self.apply(hold, &reason);
                    self.save()?;
                    return Ok(Next::Again);
                }
                self.save()?;
                self.failures += 1;
                self.shared.log.event(
                    "retry",
                    &[
                        ("entries", json!(inflight.entries)),
                        ("reason", json!(reason)),
                    ],
                );
                Ok(self.backoff())
            }
            Err(Failure::Unauthorized {
                message,
                timestamp_rejected,
            }) => {
                if !self.resigned
                    && let Some(skew) = post::clock_correction(&response, timestamp_rejected, ours)
                {
                    self.resigned = true;
                    self.clock_offset += skew;
                    self.shared.log.event(
                        "clock",
                        &[
                            ("offset_seconds", json!(self.clock_offset)),
                            (
                                "note",
                                json!("the host clock is wrong; signing with X's time"),
                            ),
                        ],
                    );
                    return Ok(Next::Again);
                }
                self.refused(&inflight, message)
            }
            Err(Failure::Duplicate(_)) if inflight.maybe_posted => {
                self.posted(inflight, None, now, true)?;
                Ok(Next::Again)
            }
            Err(Failure::Duplicate(e)) => {
                self.duplicates += 1;
                if self.duplicates > MAX_DUPLICATE_TRIES {
                    self.give_up(
                        inflight,
                        &format!(
                            "X refused the text as a duplicate {} times, each with a new suffix: {e}",
                            self.duplicates
                        ),
                    )?;
                    return Ok(Next::Again);
                }
                // X holds this text: it counts as recent, and the suffix moves on from the
                // text without one.
                self.state.note_recent(&inflight.text);
                inflight.text = text::distinct(inflight.base(), |t| self.state.is_recent(t));
                self.state.inflight = Some(inflight);
                self.save()?;
                Ok(Next::Again)
            }
            Err(Failure::Fatal(e)) => {
                if matches!(e, Error::Auth(_) | Error::Config(_)) {
                    // Credentials or permissions: fixable by the operator, so the alerts wait.
                    return self.refused(&inflight, e.to_string());
                }
                // X refuses this text for good: it is dropped, loudly.
                self.give_up(inflight, &e.to_string())?;
                Ok(Next::Again)
            }
        }
    }

    fn backoff(&self) -> Next {
        Next::Backoff(post::backoff(FIRST_BACKOFF, MAX_BACKOFF, self.failures))
    }

    /// X refused the credentials or a permission: the alerts wait, `/healthz` says why.
    fn refused(&mut self, inflight: &Inflight, message: String) -> Result<Next, Error> {
        self.failures += 1;
        self.shared.health.set_problem(&message);
        self.shared.log.event(
            "error",
            &[
                ("entries", json!(inflight.entries)),
                ("message", json!(message)),
            ],
        );
        Ok(match self.backoff() {
            Next::Backoff(pause) => Next::Backoff(pause.max(AUTH_BACKOFF)),
            next => next,
        })
    }

    /// Takes X's hold: no request before it; what waits meanwhile becomes a digest.
    fn apply(&mut self, hold: Hold, reason: &str) {
        let Hold::Until {
            until,
            daily,
            suspicious,
        } = hold
        else {
            return;
        };
        if suspicious && !self.warned_suspicious {
            self.warned_suspicious = true;
            self.shared.log.event(
                "suspicious",
                &[(
                    "note",
                    json!("X named a reset more than 25 hours ahead: holding 24 hours instead"),
                )],
            );
        }
        self.state.blocked_until = self.state.blocked_until.max(until);
        self.limited = true;
        let reason = if daily {
            "X's 24-hour post limit is spent"
        } else {
            reason
        };
        self.shared.log.event(
            "rate-limited",
            &[
                ("reason", json!(reason)),
                ("until", json!(shown_time(until))),
            ],
        );
    }

    /// X will not take this post: it is reported as failed and its entries removed.
    fn give_up(&mut self, inflight: Inflight, reason: &str) -> Result<(), Error> {
        self.shared.metrics.failed.inc();
        self.shared.log.event(
            "failed",
            &[
                ("entries", json!(inflight.entries)),
                ("reason", json!(reason)),
                ("text", json!(inflight.text)),
            ],
        );
        self.state.inflight = None;
        self.state.done = inflight.entries;
        self.save()?;
        self.retire_done()?;
        self.shared
            .metrics
            .spooled
            .set(self.shared.spool.len() as i64);
        Ok(())
    }

    /// Records a post: its id and threads first, then the entries go.
    fn posted(
        &mut self,
        inflight: Inflight,
        id: Option<String>,
        now: u64,
        duplicate: bool,
    ) -> Result<(), Error> {
        let state = &mut self.state;
        state.remember(&inflight.text, now);
        for (key, fingerprints) in &inflight.announces {
            let root = match (&inflight.reply_to, state.threads.get(key)) {
                (Some(_), Some(thread)) => thread.post_id.clone(),
                _ => id.clone(),
            };
            state.threads.insert(
                key.clone(),
                Thread {
                    post_id: root,
                    fingerprints: fingerprints.clone(),
                    updated_at: now,
                },
            );
        }
        for key in &inflight.ends {
            state.threads.remove(key);
        }
        state.expire_threads(now);
        state.inflight = None;
        state.done = inflight.entries.clone();
        let window = self.settings.budget.period.as_secs();
        while state.posted_at.front().is_some_and(|&t| t + window < now) {
            state.posted_at.pop_front();
        }
        self.save()?;
        self.retire_done()?;
        let metrics = &self.shared.metrics;
        metrics.spooled.set(self.shared.spool.len() as i64);
        metrics.posted.inc();
        if inflight.entries.len() > 1 {
            metrics.digests.inc();
        }
        let mut fields: Vec<(&str, Value)> = vec![("entries", json!(inflight.entries))];
        match (&id, duplicate) {
            (Some(id), _) => fields.push(("url", json!(format!("https://x.com/i/status/{id}")))),
            (None, true) => {
                fields.push(("note", json!("X already had this text: counted as posted")))
            }
            (None, false) => fields.push(("note", json!("X's answer had no id"))),
        }
        if let Some(to) = &inflight.reply_to {
            fields.push(("reply_to", json!(to)));
        }
        fields.push(("text", json!(inflight.text)));
        self.shared.log.event("posted", &fields);
        Ok(())
    }
}

fn spool_error(e: std::io::Error) -> Error {
    Error::Internal(format!("spool: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_count() {
        let b = Budget::parse("2/1h").unwrap();
        assert_eq!(b.posts, 2);
        let mut posted = std::collections::VecDeque::new();
        assert_eq!(b.next_slot(&posted, 10_000), 10_000);
        posted.push_back(9_000);
        posted.push_back(9_500);
        assert_eq!(b.remaining(&posted, 10_000), 0);
        assert_eq!(b.next_slot(&posted, 10_000), 9_000 + 3600);
        assert_eq!(b.next_slot(&posted, 20_000), 20_000);
        for bad in ["50", "0/1h", "x/1h", "5/soon", "5/0s"] {
            assert!(Budget::parse(bad).is_err(), "{bad}");
        }
    }

    use super::super::spool::Limits;
    use crate::api::{DayLimit, Outgoing, Response};
    use crate::credentials::Secret;
    use std::collections::VecDeque;

    /// A request X received: its text, the post it answers, its signed time.
    #[derive(Debug, Clone)]
    struct Seen {
        text: String,
        reply_to: Option<String>,
        timestamp: u64,
    }

    /// X as a script: the next canned answer, or else a post made.
    #[derive(Default)]
    struct Script {
        answers: Mutex<VecDeque<Response>>,
        seen: Mutex<Vec<Seen>>,
    }

    struct ScriptedX(Arc<Script>);

    impl Sender for ScriptedX {
        fn send(
            &self,
            request: &Outgoing,
            authorization: &str,
            _: Duration,
        ) -> Result<Response, SendError> {
            let body: Value = serde_json::from_str(&request.body).unwrap();
            let at = authorization.find("oauth_timestamp=\"").unwrap() + 17;
            let timestamp = authorization[at..at + 10].parse().unwrap();
            let mut seen = self.0.seen.lock().unwrap();
            seen.push(Seen {
                text: body["text"].as_str().unwrap().to_string(),
                reply_to: body["reply"]["in_reply_to_tweet_id"]
                    .as_str()
                    .map(str::to_string),
                timestamp,
            });
            Ok(self
                .0
                .answers
                .lock()
                .unwrap()
                .pop_front()
                .unwrap_or(Response {
                    status: 201,
                    body: json!({"data": {"id": seen.len().to_string(), "text": "x"}}).to_string(),
                    ..Default::default()
                }))
        }
    }

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.to_string(),
            ..Default::default()
        }
    }

    const DUPLICATE: &str = r#"{"title":"Forbidden","detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","status":403}"#;

    /// A worker on a fresh spool, X scripted; `now` as the tests move it.
    struct Bench {
        _dir: tempfile::TempDir,
        spool: Arc<Spool>,
        script: Arc<Script>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        worker: Worker,
        now: u64,
    }

    impl Bench {
        fn new(budget: &str, settle: u64) -> Bench {
            Self::with_state(budget, settle, State::default())
        }

        fn with_state(budget: &str, settle: u64, state: State) -> Bench {
            let dir = tempfile::tempdir().unwrap();
            let limits = Limits {
                entries: 10_000,
                bytes: 1 << 30,
            };
            let spool = Arc::new(Spool::open(dir.path(), limits).unwrap());
            let script = Arc::new(Script::default());
            let health = Arc::new(Health::default());
            let metrics = Arc::new(Metrics::new());
            // Entries are stamped with the real clock: the tests' time starts there.
            let now = oauth::unix_now(0);
            let worker = Worker::new(
                Shared {
                    spool: spool.clone(),
                    metrics: metrics.clone(),
                    health: health.clone(),
                    log: Logger { json: true },
                },
                StateFile::new(dir.path()),
                state,
                Settings {
                    composer: Composer::default(),
                    budget: Budget::parse(budget).unwrap(),
                    settle: Duration::from_secs(settle),
                },
                Account {
                    credentials: Credentials {
                        consumer_key: "ck".into(),
                        consumer_secret: Secret::new("cs"),
                        access_token: "at".into(),
                        access_token_secret: Secret::new("ats"),
                    },
                    api_base: "https://api.x.com".into(),
                    version: ApiVersion::V2,
                    sender: Box::new(ScriptedX(script.clone())),
                },
                now,
            );
            Bench {
                _dir: dir,
                spool,
                script,
                health,
                metrics,
                worker,
                now,
            }
        }

        fn text(&self, text: &str) {
            self.spool.append(&Entry::Text(text.into())).unwrap();
        }

        fn alerts(&self, status: &str, hosts: &[&str]) {
            let alerts: Vec<Value> = hosts
                .iter()
                .map(|h| json!({"status": status, "labels": {"alertname": "DiskFull", "instance": h}, "fingerprint": h}))
                .collect();
            let body = json!({"groupKey": "{}:{alertname=\"DiskFull\"}", "status": status, "alerts": alerts});
            let n = super::super::alerts::parse(body.to_string().as_bytes()).unwrap();
            self.spool.append(&Entry::Alerts(n)).unwrap();
        }

        fn answer(&self, response: Response) {
            self.script.answers.lock().unwrap().push_back(response);
        }

        fn step(&mut self) -> Next {
            self.worker.step(self.now)
        }

        /// Steps until the worker waits; what it waits for.
        fn settle(&mut self) -> Next {
            for _ in 0..100 {
                match self.step() {
                    Next::Again => {}
                    next => return next,
                }
            }
            panic!("the worker never waits");
        }

        fn seen(&self) -> Vec<Seen> {
            self.script.seen.lock().unwrap().clone()
        }

        fn texts(&self) -> Vec<String> {
            self.seen().into_iter().map(|s| s.text).collect()
        }
    }

    #[test]
    fn the_budget_holds_and_a_pile_up_becomes_one_digest() {
        let mut bench = Bench::new("1/1h", 0);
        bench.text("first");
        assert_eq!(bench.settle(), Next::Idle);
        for text in ["second", "third"] {
            bench.text(text);
        }
        let start = bench.now;
        assert_eq!(bench.settle(), Next::Limited(start + 3600));
        bench.now = start + 3600;
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(
            bench.texts(),
            ["first", "2 messages while rate-limited: second; third"]
        );
        assert!(bench.spool.is_empty());
        assert_eq!(bench.metrics.digests.get(), 1);
    }

    #[test]
    fn a_spent_day_holds_until_its_reset_whatever_the_window_says() {
        let mut bench = Bench::new("100/1h", 0);
        let now = bench.now;
        // Posted, and the day's last: the 15-minute window would allow another in a minute.
        bench.answer(Response {
            rate_limit_remaining: Some(5),
            rate_limit_reset: Some(now + 60),
            day: Some(DayLimit {
                remaining: 0,
                reset: Some(now + 5000),
            }),
            ..answer(201, r#"{"data":{"id":"7","text":"a"}}"#)
        });
        bench.text("a");
        bench.text("b");
        assert_eq!(bench.settle(), Next::Limited(now + 5000));
        bench.now = now + 4999;
        assert_eq!(bench.settle(), Next::Limited(now + 5000));
        assert_eq!(
            bench.seen().len(),
            1,
            "X is not asked before the day resets"
        );
        // A 429 that names the spent day holds until the day's reset too.
        bench.now = now + 5000;
        bench.answer(Response {
            rate_limit_reset: Some(now + 5060),
            day: Some(DayLimit {
                remaining: 0,
                reset: Some(now + 9000),
            }),
            ..answer(429, "{}")
        });
        assert_eq!(bench.settle(), Next::Limited(now + 9000));
        bench.now = now + 9000;
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.texts(), ["a", "b", "b"]);
    }

    #[test]
    fn resets_from_x_are_believed_for_a_day_at_most() {
        let mut bench = Bench::new("100/1h", 0);
        let now = bench.now;
        bench.text("a");
        bench.answer(Response {
            rate_limit_remaining: Some(0),
            rate_limit_reset: Some(253_402_300_800),
            ..answer(429, "{}")
        });
        assert_eq!(bench.settle(), Next::Limited(now + 24 * 3600));
        assert_eq!(bench.worker.state().blocked_until, now + 24 * 3600);
        // A reset in the past, zero or none: back off with jitter, do not hammer X.
        for reset in [Some(now - 10), Some(0), None] {
            let mut bench = Bench::new("100/1h", 0);
            bench.text("a");
            bench.answer(Response {
                rate_limit_reset: reset,
                ..answer(429, "{}")
            });
            match bench.settle() {
                Next::Backoff(pause) => assert!(pause <= FIRST_BACKOFF, "{pause:?}"),
                next => panic!("{reset:?}: {next:?}"),
            }
        }
        // A saved hold from an older version that lies in year 10000.
        let state = State {
            blocked_until: 253_402_300_800,
            ..State::default()
        };
        let bench = Bench::with_state("100/1h", 0, state);
        assert!(bench.worker.state().blocked_until <= bench.now + 24 * 3600);
    }

    #[test]
    fn a_new_group_settles_and_posts_its_latest_state_once() {
        let mut bench = Bench::new("100/1h", 10);
        bench.alerts("firing", &["esx-07"]);
        let Next::Settling(until) = bench.settle() else {
            panic!("the first notice waits for the group");
        };
        assert!(until >= bench.now + 9 && until <= bench.now + 11, "{until}");
        // A text meanwhile is not held behind the group.
        bench.text("backup done");
        assert!(matches!(bench.settle(), Next::Settling(_)));
        assert_eq!(bench.texts(), ["backup done"]);
        bench.alerts("firing", &["esx-07", "esx-08", "esx-09"]);
        bench.now = until;
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(
            bench.texts(),
            [
                "backup done",
                "[FIRING:3] DiskFull on esx-07, esx-08, esx-09"
            ]
        );
        assert!(bench.spool.is_empty());
        // Later notices of the announced group do not wait.
        bench.alerts("resolved", &["esx-07", "esx-08", "esx-09"]);
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.seen()[2].reply_to.as_deref(), Some("2"));
    }

    #[test]
    fn threads_answer_and_repeats_are_not_posted() {
        let mut bench = Bench::new("100/1h", 0);
        bench.alerts("firing", &["esx-07"]);
        assert_eq!(bench.settle(), Next::Idle);
        bench.alerts("firing", &["esx-07"]);
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.seen().len(), 1, "a repeat is not posted");
        bench.alerts("firing", &["esx-07", "esx-08"]);
        bench.alerts("resolved", &["esx-07", "esx-08"]);
        assert_eq!(bench.settle(), Next::Idle);
        let seen = bench.seen();
        // The two notices that waited went as one: the latest, answering the thread.
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].text, "[RESOLVED] DiskFull on esx-07, esx-08");
        assert_eq!(seen[1].reply_to.as_deref(), Some("1"));
        assert!(bench.worker.state().threads.is_empty());
    }

    #[test]
    fn duplicates_count_up_from_the_text_then_fail() {
        let mut bench = Bench::new("100/1h", 0);
        for _ in 0..3 {
            bench.answer(answer(403, DUPLICATE));
        }
        bench.text("disk full");
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(
            bench.texts(),
            [
                "disk full",
                "disk full (2)",
                "disk full (3)",
                "disk full (4)"
            ]
        );
        assert_eq!(bench.metrics.posted.get(), 1);

        let mut bench = Bench::new("100/1h", 0);
        for _ in 0..4 {
            bench.answer(answer(403, DUPLICATE));
        }
        bench.text("always refused");
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.seen().len(), 4);
        assert_eq!(bench.metrics.posted.get(), 0, "never counted as posted");
        assert_eq!(bench.metrics.failed.get(), 1);
        assert!(bench.spool.is_empty());
    }

    #[test]
    fn refused_credentials_show_until_a_post_succeeds() {
        let mut bench = Bench::new("100/1h", 0);
        bench.answer(answer(401, r#"{"title":"Unauthorized","status":401}"#));
        bench.text("a");
        match bench.settle() {
            Next::Backoff(pause) => assert!(pause >= AUTH_BACKOFF),
            next => panic!("{next:?}"),
        }
        let why = bench.health.status().unwrap_err();
        assert!(why.contains("HTTP 401"), "{why}");
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.health.status(), Ok(()));
    }

    #[test]
    fn failures_back_off_with_full_jitter_up_to_five_minutes() {
        let mut bench = Bench::new("100/1h", 0);
        for _ in 0..12 {
            bench.answer(answer(503, "{}"));
        }
        bench.text("a");
        for failure in 1..=12u32 {
            let Next::Backoff(pause) = bench.settle() else {
                panic!("a 503 backs off");
            };
            let bound = FIRST_BACKOFF * 2u32.pow(failure - 1);
            assert!(pause <= bound.min(MAX_BACKOFF), "{failure}: {pause:?}");
        }
        assert_eq!(bench.settle(), Next::Idle);
        assert_eq!(bench.texts().len(), 13);
    }

    #[test]
    fn many_groups_with_huge_keys_make_one_digest_and_a_small_state() {
        let mut bench = Bench::new("1/1h", 0);
        bench.text("first");
        assert_eq!(bench.settle(), Next::Idle);
        for i in 0..800 {
            let key = format!("{i}{}", "k".repeat(40_000));
            let body = json!({"groupKey": key, "status": "firing", "alerts": [{"status": "firing", "labels": {"alertname": format!("A{i}")}, "fingerprint": "f"}]});
            let n = super::super::alerts::parse(body.to_string().as_bytes()).unwrap();
            bench.spool.append(&Entry::Alerts(n)).unwrap();
        }
        bench.now += 3600;
        assert_eq!(bench.settle(), Next::Idle);
        let texts = bench.texts();
        assert_eq!(texts.len(), 2);
        assert!(
            texts[1].starts_with("800 alerts while rate-limited: 800 firing"),
            "{}",
            texts[1]
        );
        assert_eq!(bench.worker.state().threads.len(), 800);
        let saved = std::fs::metadata(bench._dir.path().join("state.json"))
            .unwrap()
            .len();
        assert!(saved < 200 * 1024, "state.json is {saved} bytes");
    }

    #[test]
    fn a_wrong_clock_is_corrected_once_from_xs_date() {
        let mut bench = Bench::new("100/1h", 0);
        let ahead = bench.now + 3600;
        bench.answer(Response {
            date: Some(httpdate::fmt_http_date(
                std::time::UNIX_EPOCH + Duration::from_secs(ahead),
            )),
            ..answer(401, r#"{"title":"Unauthorized","status":401}"#)
        });
        bench.text("a");
        assert_eq!(bench.settle(), Next::Idle);
        let seen = bench.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].timestamp, ahead);
    }
}

//! The one worker that turns spooled entries into posts, within X's limits.
//!
//! Each round it takes the oldest entry and posts it, or, when entries piled up beyond the
//! posting budget or while X rate-limited the relay, folds everything waiting into one digest
//! post. It never posts before the local budget (`--max-posts N/PERIOD`) has a slot, nor before
//! X's `x-rate-limit-reset` after a 429 or after an answer that says no posts are left
//! (`x-rate-limit-remaining: 0`). Firing groups open a thread; later notices of the same
//! group answer the post that announced it; a notification that only repeats what is announced
//! (Alertmanager's `repeat_interval`) is not posted again.
//!
//! Crash safety, in the order of the writes: the post in flight is saved before it is sent;
//! its outcome (id, thread, budget) is saved before its entries are removed. After a kill -9,
//! a post in flight is sent again with the very same text; X refusing it as a duplicate then
//! means the first attempt went through, so nothing is posted twice and nothing is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::alerts::Status;
use super::log::Logger;
use super::metrics::Metrics;
use super::spool::{Entry, Inflight, Spool, State, StateFile, Thread};
use super::text::{self, Template};
use crate::api::{self, ApiVersion, Failure};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::post::{self, Sender};
use crate::transport::SendError;

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
        let period = crate::cli::parse_duration(period.trim())?;
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

/// What the worker needs.
pub struct Worker {
    /// The spool.
    pub spool: Arc<Spool>,
    /// Where the state lives.
    pub state_file: StateFile,
    /// How alert groups read.
    pub template: Template,
    /// The local posting budget.
    pub budget: Budget,
    /// The account's credentials.
    pub credentials: Credentials,
    /// API base URL.
    pub api_base: String,
    /// API version.
    pub version: ApiVersion,
    /// The HTTPS client.
    pub sender: Box<dyn Sender + Send>,
    /// Log lines.
    pub log: Logger,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// New entries and shutdown.
    pub wake: Arc<Wake>,
    /// Set on SIGTERM.
    pub shutdown: Arc<AtomicBool>,
}

/// What one round decided.
enum Next {
    /// Go on at once.
    Again,
    /// Nothing to do until woken.
    Idle,
    /// Wait until this Unix second (or until woken), because of a limit.
    Limited(u64),
    /// Wait this long after a failure, then try again.
    Backoff(Duration),
}

/// The worker's own bookkeeping, kept in memory only.
struct Round {
    state: State,
    /// The last round waited for a limit: what waits now goes out as a digest.
    limited: bool,
    /// Seconds added to the clock when signing (learned from a 401's `Date`).
    clock_offset: i64,
    /// Consecutive failures, for the backoff.
    failures: u32,
    /// Duplicate refusals of the post in flight.
    duplicates: u32,
}

fn now() -> u64 {
    oauth::unix_now(0)
}

impl Worker {
    /// Runs until shutdown; returns the number of entries left in the spool.
    pub fn run(self) -> Result<usize, Error> {
        let state = self
            .state_file
            .load()
            .map_err(|e| Error::Config(format!("cannot read the relay's state: {e}")))?;
        if let Some(inflight) = &state.inflight {
            self.log.event(
                "resuming",
                &[
                    ("entries", json!(inflight.entries)),
                    (
                        "note",
                        json!("a post was in flight at the last stop: it is sent again, and X's duplicate refusal proves the first went out"),
                    ),
                ],
            );
        }
        let mut round = Round {
            state,
            limited: false,
            clock_offset: 0,
            failures: 0,
            duplicates: 0,
        };
        // A post interrupted by a crash may exist: a duplicate refusal means it does.
        if let Some(inflight) = &mut round.state.inflight {
            inflight.maybe_posted = true;
        }
        while !self.shutdown.load(Ordering::SeqCst) {
            let next = match self.round(&mut round) {
                Ok(next) => next,
                Err(e) => {
                    round.failures += 1;
                    self.log
                        .event("error", &[("message", json!(e.to_string()))]);
                    Next::Backoff(backoff(round.failures))
                }
            };
            if self.shutdown.load(Ordering::SeqCst) {
                break;
            }
            match next {
                Next::Again => {}
                Next::Idle => self.wake.wait(None),
                Next::Backoff(pause) => self.wake.wait(Some(pause)),
                Next::Limited(until) => {
                    // New entries change nothing before the limit lifts: only shutdown ends
                    // the wait early, so a storm of webhooks does not become a storm of rounds.
                    let started = Instant::now();
                    while now() < until && !self.shutdown.load(Ordering::SeqCst) {
                        let pause = Duration::from_secs(until.saturating_sub(now()).max(1));
                        self.wake.wait(Some(pause));
                    }
                    self.metrics
                        .rate_limited_seconds
                        .inc_by(started.elapsed().as_secs_f64().round() as u64);
                }
            }
        }
        Ok(self.spool.len())
    }

    fn save(&self, state: &State) -> Result<(), Error> {
        self.state_file
            .save(state)
            .map_err(|e| Error::Internal(format!("cannot save the relay's state: {e}")))
    }

    fn round(&self, round: &mut Round) -> Result<Next, Error> {
        let spool_error = |e: std::io::Error| Error::Internal(format!("spool: {e}"));
        // Entries whose post was recorded before a crash removed them.
        if !round.state.done.is_empty() {
            self.spool.retire(&round.state.done).map_err(spool_error)?;
            round.state.done.clear();
            self.save(&round.state)?;
        }
        let now = now();
        if let Some(inflight) = round.state.inflight.clone() {
            if round.state.blocked_until > now {
                return Ok(Next::Limited(round.state.blocked_until));
            }
            return self.send(round, inflight);
        }
        // A directory listing; entries are read only when a post is due, and only those it
        // covers, so a long queue drained one post at a time is not read again per post.
        let ids = self.spool.ids().map_err(spool_error)?;
        let waiting = ids.len();
        self.metrics.spooled.set(waiting as i64);
        if waiting == 0 {
            round.limited = false;
            return Ok(Next::Idle);
        }
        let until = round
            .state
            .blocked_until
            .max(self.budget.next_slot(&round.state.posted_at, now));
        if until > now {
            if !round.limited {
                self.log.event(
                    "rate-limited",
                    &[
                        ("waiting", json!(waiting)),
                        (
                            "until",
                            json!(
                                humantime::format_rfc3339_seconds(
                                    std::time::UNIX_EPOCH + Duration::from_secs(until)
                                )
                                .to_string()
                            ),
                        ),
                    ],
                );
            }
            round.limited = true;
            return Ok(Next::Limited(until));
        }
        let slots = self.budget.remaining(&round.state.posted_at, now);
        let digest = waiting > 1 && (round.limited || waiting > slots);
        round.limited = false;
        let batch = self
            .spool
            .read(if digest { &ids } else { &ids[..1] })
            .map_err(spool_error)?;
        if batch.is_empty() {
            return Ok(Next::Again);
        }
        let Some(inflight) = self.batch(&round.state, &batch) else {
            // Only repeats of what is announced: nothing to post.
            let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
            self.spool.retire(&ids).map_err(spool_error)?;
            return Ok(Next::Again);
        };
        round.state.inflight = Some(inflight.clone());
        round.duplicates = 0;
        self.save(&round.state)?;
        self.send(round, inflight)
    }

    /// The post for `batch` (one entry, or a digest of several); `None` when it would only
    /// repeat what is announced. Of several notifications of one group, the latest stands for
    /// the group; the post covers (and retires) every entry of the batch.
    fn batch(&self, state: &State, batch: &[(u64, Entry)]) -> Option<Inflight> {
        let mut latest: Vec<&(u64, Entry)> = Vec::new();
        for item in batch {
            if let Entry::Alerts(n) = &item.1 {
                let key = n.thread_key();
                latest.retain(|(_, e)| !matches!(e, Entry::Alerts(m) if m.thread_key() == key));
            }
            latest.push(item);
        }
        latest.retain(|(_, entry)| !self.repeats(state, entry));
        let ids: Vec<u64> = batch.iter().map(|(id, _)| *id).collect();
        let mut inflight = match latest.as_slice() {
            [] => return None,
            [(id, entry)] => self.single(state, *id, entry),
            _ => self.digest(state, &latest),
        };
        inflight.entries = ids;
        Some(inflight)
    }

    /// Whether `entry` only repeats a group already announced (Alertmanager's
    /// `repeat_interval`).
    fn repeats(&self, state: &State, entry: &Entry) -> bool {
        let Entry::Alerts(n) = entry else {
            return false;
        };
        let repeat = n.status == Status::Firing
            && state
                .threads
                .get(&n.thread_key())
                .is_some_and(|t| t.fingerprints == n.firing_fingerprints());
        if repeat {
            self.log.event(
                "repeat",
                &[
                    ("group", json!(n.thread_key())),
                    ("note", json!("already announced; not posted again")),
                ],
            );
        }
        repeat
    }

    /// The post for one entry.
    fn single(&self, state: &State, id: u64, entry: &Entry) -> Inflight {
        let recent: Vec<String> = state.recent_texts.iter().cloned().collect();
        let mut inflight = Inflight {
            entries: vec![id],
            text: String::new(),
            reply_to: None,
            announces: vec![],
            ends: vec![],
            maybe_posted: false,
        };
        match entry {
            Entry::Text(t) => inflight.text = text::distinct(&text::plain(t), &recent),
            Entry::Alerts(n) => {
                let key = n.thread_key();
                inflight.text = text::distinct(&text::render(n, &self.template), &recent);
                inflight.reply_to = state.threads.get(&key).and_then(|t| t.post_id.clone());
                match n.status {
                    Status::Firing => inflight.announces.push((key, n.firing_fingerprints())),
                    Status::Resolved => inflight.ends.push(key),
                }
            }
        }
        inflight
    }

    fn digest(&self, state: &State, pending: &[&(u64, Entry)]) -> Inflight {
        let entries: Vec<&Entry> = pending.iter().map(|(_, e)| e).collect();
        let recent: Vec<String> = state.recent_texts.iter().cloned().collect();
        let mut announces = Vec::new();
        let mut ends = Vec::new();
        // Each group appears once here (its latest notification): see `batch`.
        for entry in &entries {
            if let Entry::Alerts(n) = entry {
                match n.status {
                    Status::Firing => announces.push((n.thread_key(), n.firing_fingerprints())),
                    Status::Resolved => ends.push(n.thread_key()),
                }
            }
        }
        Inflight {
            entries: pending.iter().map(|(id, _)| *id).collect(),
            text: text::distinct(&text::digest(&entries), &recent),
            reply_to: None,
            announces,
            ends,
            maybe_posted: false,
        }
    }

    fn send(&self, round: &mut Round, mut inflight: Inflight) -> Result<Next, Error> {
        let request = api::post_request(
            &self.api_base,
            self.version,
            &inflight.text,
            inflight.reply_to.as_deref(),
        );
        let timestamp = (now() as i64 + round.clock_offset).max(0) as u64;
        let signed = oauth::sign(
            &request.to_sign(),
            &self.credentials,
            &oauth::fresh_nonce()?,
            timestamp,
        )?;
        let response =
            match self
                .sender
                .send(&request, &signed.authorization, Duration::from_secs(30))
            {
                Ok(response) => response,
                Err(e) => {
                    round.failures += 1;
                    let why = match e {
                        SendError::Retryable(why) => why,
                        SendError::OutcomeUnknown(why) => {
                            // The request may have reached X: a later duplicate refusal is this post.
                            inflight.maybe_posted = true;
                            round.state.inflight = Some(inflight.clone());
                            self.save(&round.state)?;
                            why
                        }
                        SendError::Fatal(e) => e.to_string(),
                    };
                    self.log.event(
                        "retry",
                        &[("entries", json!(inflight.entries)), ("reason", json!(why))],
                    );
                    return Ok(Next::Backoff(backoff(round.failures)));
                }
            };
        match api::interpret(self.version, &response) {
            Ok(posted) => {
                round.failures = 0;
                // X says how many posts are left until when: at none, wait for the reset
                // rather than meet a 429 (the account's real tier, whatever --max-posts says).
                if response.rate_limit_remaining == Some(0)
                    && let Some(reset) = response.rate_limit_reset
                    && reset > now()
                {
                    round.state.blocked_until = reset;
                    self.log.event(
                        "rate-limited",
                        &[
                            ("reason", json!("X says no posts are left until the reset")),
                            ("reset", json!(reset)),
                        ],
                    );
                }
                self.posted(round, inflight, posted.id, false)?;
                Ok(Next::Again)
            }
            Err(Failure::Retry { reason, reset }) if response.status == 429 => {
                let until = reset.unwrap_or_else(|| now() + 60).max(now() + 1);
                round.state.blocked_until = until;
                // Not posted: what waits is decided again (as a digest) once the limit lifts,
                // unless an earlier attempt of this text may have gone through; then the very
                // same text is tried again, so that a duplicate refusal still proves it.
                if !inflight.maybe_posted {
                    round.state.inflight = None;
                }
                round.limited = true;
                self.save(&round.state)?;
                self.log.event(
                    "rate-limited",
                    &[("reason", json!(reason)), ("reset", json!(until))],
                );
                Ok(Next::Again)
            }
            Err(Failure::Retry { reason, .. }) => {
                round.failures += 1;
                self.log.event(
                    "retry",
                    &[
                        ("entries", json!(inflight.entries)),
                        ("reason", json!(reason)),
                    ],
                );
                Ok(Next::Backoff(backoff(round.failures)))
            }
            Err(Failure::Unauthorized { message, .. }) => {
                let ours = now() as i64 + round.clock_offset;
                // Once per run of failures: a server whose Date keeps moving gets the backoff.
                if let Some(skew) = post::server_skew(&response, ours)
                    .filter(|skew| skew.abs() > post::MAX_SKEW_SECS && round.failures == 0)
                {
                    round.failures += 1;
                    round.clock_offset += skew;
                    let offset = round.clock_offset;
                    self.log.event(
                        "clock",
                        &[
                            ("offset_seconds", json!(offset)),
                            (
                                "note",
                                json!("the host clock is wrong; signing with X's time"),
                            ),
                        ],
                    );
                    return Ok(Next::Again);
                }
                round.failures += 1;
                self.metrics.failed.inc();
                self.log.event(
                    "error",
                    &[
                        ("entries", json!(inflight.entries)),
                        ("message", json!(message)),
                    ],
                );
                Ok(Next::Backoff(
                    backoff(round.failures).max(Duration::from_secs(60)),
                ))
            }
            Err(Failure::Duplicate(_)) if inflight.maybe_posted => {
                self.posted(round, inflight, None, true)?;
                Ok(Next::Again)
            }
            Err(Failure::Duplicate(_)) => {
                round.duplicates += 1;
                if round.duplicates > 3 {
                    // X holds this text already; posting it again is not possible.
                    self.posted(round, inflight, None, true)?;
                    return Ok(Next::Again);
                }
                // X holds this text: it counts as recent, and the suffix moves on.
                round.state.recent_texts.push_back(inflight.text.clone());
                let recent: Vec<String> = round.state.recent_texts.iter().cloned().collect();
                inflight.text = text::distinct(&inflight.text, &recent);
                round.state.inflight = Some(inflight);
                self.save(&round.state)?;
                Ok(Next::Again)
            }
            Err(Failure::Fatal(e)) => {
                round.failures += 1;
                self.metrics.failed.inc();
                self.log.event(
                    "error",
                    &[
                        ("entries", json!(inflight.entries)),
                        ("message", json!(e.to_string())),
                    ],
                );
                if matches!(e, Error::Auth(_) | Error::Config(_)) {
                    // Credentials or permissions: fixable by the operator, so the alerts wait.
                    return Ok(Next::Backoff(
                        backoff(round.failures).max(Duration::from_secs(60)),
                    ));
                }
                // X refuses this text for good: it is dropped, loudly.
                round.state.inflight = None;
                round.state.done = inflight.entries.clone();
                self.save(&round.state)?;
                Ok(Next::Again)
            }
        }
    }

    /// Records a post: its id and threads first, then the entries go.
    fn posted(
        &self,
        round: &mut Round,
        inflight: Inflight,
        id: Option<String>,
        duplicate: bool,
    ) -> Result<(), Error> {
        let state = &mut round.state;
        state.remember(&inflight.text, now());
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
                },
            );
        }
        for key in &inflight.ends {
            state.threads.remove(key);
        }
        state.inflight = None;
        state.done = inflight.entries.clone();
        let budget_window = self.budget.period.as_secs();
        let now = now();
        while state
            .posted_at
            .front()
            .is_some_and(|&t| t + budget_window < now)
        {
            state.posted_at.pop_front();
        }
        self.save(state)?;
        self.spool
            .retire(&inflight.entries)
            .map_err(|e| Error::Internal(format!("spool: {e}")))?;
        state.done.clear();
        self.save(state)?;
        self.metrics.spooled.set(self.spool.len() as i64);
        self.metrics.posted.inc();
        if inflight.entries.len() > 1 {
            self.metrics.digests.inc();
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
        self.log.event("posted", &fields);
        Ok(())
    }
}

/// 2 s, 4 s, 8 s... up to 5 minutes.
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(2u64.saturating_pow(failures.min(9)).min(300))
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
}

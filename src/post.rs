//! Posting with retries: a fresh signature per attempt, exponential backoff with full jitter on
//! temporary failures, waiting out a rate limit, and one re-sign when the host clock is wrong.
//!
//! Everything is bounded by one deadline, because on a booting host the agent runs in the
//! background and must end on its own. The rules for X's limits ([`hold`]), the clock
//! ([`clock_correction`]) and the backoff ([`backoff`]) are shared with the relay's worker,
//! which applies them without a deadline.

use std::time::{Duration, Instant};

use crate::api::{self, ApiVersion, Failure, Outgoing, Posted, Response};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::transport::{SendError, Transport};
use crate::units;

/// A server more than this far from our clock is taken to mean our clock is wrong
/// (X rejects timestamps off by more than about 5 minutes).
pub const MAX_SKEW_SECS: i64 = 300;

/// How many seconds the server's clock (its `Date`) is ahead of `now` (Unix seconds), when
/// the answer has a `Date`.
pub fn server_skew(response: &Response, now: i64) -> Option<i64> {
    let date = httpdate::parse_http_date(response.date.as_deref()?).ok()?;
    let server = date.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64;
    Some(server - now)
}

/// A reset further ahead than this is not believed (X's longest window is 24 hours).
pub const MAX_RESET_AHEAD_SECS: u64 = 25 * 3600;
/// How long an unbelievable reset holds posting instead.
pub const SUSPICIOUS_HOLD_SECS: u64 = 24 * 3600;

/// What an answer from X says about when to ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Nothing: ask when there is something to ask.
    None,
    /// No request before `until` (Unix seconds).
    Until {
        /// When X says its limit resets, at most [`SUSPICIOUS_HOLD_SECS`] from now.
        until: u64,
        /// The 24-hour cap is spent (not only the 15-minute window).
        daily: bool,
        /// X named a reset more than [`MAX_RESET_AHEAD_SECS`] ahead; `until` is 24 hours.
        suspicious: bool,
    },
    /// Limited, but X named no reset in the future: back off with jitter.
    Backoff,
}

/// When to ask X again after `response`, at Unix second `now`. A spent 24-hour cap
/// (`x-user-limit-24hour-remaining: 0` or the app's) holds until its reset whatever the
/// 15-minute `x-rate-limit-reset` says; a 429, or a success with `x-rate-limit-remaining: 0`,
/// holds until `x-rate-limit-reset`. No header value can make this panic or hold for years.
pub fn hold(response: &Response, now: u64) -> Hold {
    let until = |reset: Option<u64>, daily: bool| match reset {
        Some(reset) if reset > now => {
            let suspicious = reset - now > MAX_RESET_AHEAD_SECS;
            Hold::Until {
                until: if suspicious {
                    now + SUSPICIOUS_HOLD_SECS
                } else {
                    reset
                },
                daily,
                suspicious,
            }
        }
        _ => Hold::Backoff,
    };
    if let Some(day) = response.day
        && day.spent()
    {
        return until(day.reset, true);
    }
    let success = (200..300).contains(&response.status);
    if response.status == 429 {
        until(response.rate_limit_reset, false)
    } else if success && response.rate_limit_remaining == Some(0) {
        match until(response.rate_limit_reset, false) {
            Hold::Backoff => Hold::None,
            hold => hold,
        }
    } else {
        Hold::None
    }
}

/// The seconds to add to our clock when X refused a signature and its `Date` says our clock
/// is off: beyond [`MAX_SKEW_SECS`], or by any amount when X said the timestamp was the
/// problem (v1.1 code 135). `ours` is the time we signed with.
pub fn clock_correction(response: &Response, timestamp_rejected: bool, ours: i64) -> Option<i64> {
    let skew = server_skew(response, ours)?;
    (skew.abs() > MAX_SKEW_SECS || (timestamp_rejected && skew != 0)).then_some(skew)
}

/// Sends one signed request; [`Transport`] in production, a script in tests.
pub trait Sender {
    /// Sends `request` with `authorization`, giving up after `timeout`.
    fn send(
        &self,
        request: &Outgoing,
        authorization: &str,
        timeout: Duration,
    ) -> Result<Response, SendError>;
}

impl Sender for Transport {
    fn send(
        &self,
        request: &Outgoing,
        authorization: &str,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        Transport::send(self, request, authorization, timeout)
    }
}

/// Time as the retry loop sees it; [`SystemClock`] in production.
pub trait Clock {
    /// Time since the post started.
    fn elapsed(&self) -> Duration;
    /// Waits.
    fn sleep(&mut self, duration: Duration);
    /// The local wall clock, Unix seconds.
    fn unix_seconds(&self) -> i64;
}

/// The real clock.
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose `elapsed` starts now.
    pub fn start() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl Clock for SystemClock {
    fn elapsed(&self) -> Duration {
        self.start.elapsed()
    }
    fn sleep(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
    fn unix_seconds(&self) -> i64 {
        oauth::unix_now(0) as i64
    }
}

/// Limits of one post.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Give up when this much time has passed.
    pub deadline: Duration,
    /// Bound of one attempt (shortened to what is left of the deadline).
    pub attempt_timeout: Duration,
    /// Upper bound of the first backoff; doubles per attempt.
    pub first_backoff: Duration,
    /// The backoff never exceeds this.
    pub max_backoff: Duration,
    /// X's duplicate refusal ends the post successfully (nothing new was posted).
    pub allow_duplicate: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            deadline: Duration::from_secs(120),
            attempt_timeout: Duration::from_secs(30),
            first_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
            allow_duplicate: false,
        }
    }
}

/// What a progress line of [`post_with_retries`] is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Note {
    /// A wait before the next attempt, with its reason and the address: always worth saying,
    /// so that a post that waits minutes for an unreachable API is never silent.
    Waiting,
    /// Each attempt and each answer's status and limits: for `-v`.
    Detail,
}

/// The rate-limit headers of `response` that were given, for `-v`.
fn limits(response: &Response) -> String {
    let mut said = Vec::new();
    if let Some(left) = response.rate_limit_remaining {
        said.push(format!("x-rate-limit-remaining {left}"));
    }
    if let Some(reset) = response.rate_limit_reset {
        said.push(format!("x-rate-limit-reset {reset}"));
    }
    if let Some(day) = response.day {
        said.push(format!("24-hour remaining {}", day.remaining));
        if let Some(reset) = day.reset {
            said.push(format!("24-hour reset {reset}"));
        }
    }
    if said.is_empty() {
        String::new()
    } else {
        format!(" ({})", said.join(", "))
    }
}

/// What `response` means, once `log` has had its status line.
fn answered(
    response: &Response,
    version: ApiVersion,
    log: &mut dyn FnMut(Note, &str),
) -> Result<Posted, Failure> {
    log(
        Note::Detail,
        &format!("answer: HTTP {}{}", response.status, limits(response)),
    );
    api::interpret(version, response)
}

/// Posts `request`, retrying as the module documentation says. `log` receives progress lines;
/// none of them holds a secret.
pub fn post_with_retries(
    request: &Outgoing,
    version: ApiVersion,
    credentials: &Credentials,
    policy: RetryPolicy,
    sender: &dyn Sender,
    clock: &mut dyn Clock,
    log: &mut dyn FnMut(Note, &str),
) -> Result<Posted, Error> {
    let mut clock_offset = 0i64;
    let mut resigned_for_skew = false;
    // Set once an attempt broke after its request may have reached X.
    let mut maybe_posted = false;
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let remaining = policy.deadline.saturating_sub(clock.elapsed());
        let timestamp = (clock.unix_seconds() + clock_offset).max(0) as u64;
        let signed = oauth::sign(
            &request.to_sign(),
            credentials,
            &oauth::fresh_nonce()?,
            timestamp,
        )?;
        let timeout = policy
            .attempt_timeout
            .min(remaining)
            .max(Duration::from_millis(1));
        let address = api::shown_url(&request.url);
        log(
            Note::Detail,
            &format!("attempt {attempt}: {} {address}", request.method),
        );
        let (reason, hold) = match sender.send(request, &signed.authorization, timeout) {
            Err(SendError::Fatal(e)) => return Err(e),
            Err(SendError::Retryable(why)) => (why, Hold::None),
            Err(SendError::OutcomeUnknown(why)) => {
                maybe_posted = true;
                (format!("{why} (the post may have been made)"), Hold::None)
            }
            Ok(response) => match answered(&response, version, log) {
                Ok(posted) => return Ok(posted),
                Err(Failure::Duplicate(_)) if maybe_posted => {
                    return Ok(Posted {
                        id: None,
                        text: String::new(),
                        warning: Some(
                            "an earlier attempt posted this text (its answer was lost; X now refuses it as a duplicate); the post's id is unknown"
                                .to_string(),
                        ),
                        duplicate: false,
                    });
                }
                Err(Failure::Duplicate(_)) if policy.allow_duplicate => {
                    return Ok(Posted {
                        id: None,
                        text: String::new(),
                        warning: Some(
                            "X refused the text as a duplicate of a recent post: counted as done (--allow-duplicate)"
                                .to_string(),
                        ),
                        duplicate: true,
                    });
                }
                Err(Failure::Duplicate(e) | Failure::Fatal(e)) => return Err(e),
                Err(Failure::Retry { reason, .. }) => {
                    let now = (clock.unix_seconds() + clock_offset).max(0) as u64;
                    (reason, hold(&response, now))
                }
                Err(Failure::Unauthorized {
                    message,
                    timestamp_rejected,
                }) => {
                    let ours = clock.unix_seconds() + clock_offset;
                    match clock_correction(&response, timestamp_rejected, ours) {
                        Some(skew) if !resigned_for_skew => {
                            log(
                                Note::Detail,
                                &format!(
                                    "clock skew: the server's clock is {skew:+} s from ours; signing again with the server's time"
                                ),
                            );
                            clock_offset += skew;
                            resigned_for_skew = true;
                            continue;
                        }
                        _ => return Err(Error::Auth(message)),
                    }
                }
            },
        };
        let now = (clock.unix_seconds() + clock_offset).max(0) as u64;
        let wait = match hold {
            Hold::Until {
                until, daily: true, ..
            } => {
                // Nothing succeeds before the day's reset: waiting inside a deadline of
                // minutes would only spend X's allowance of requests.
                return Err(Error::Temporary(format!(
                    "X's daily post limit for this account is spent (x-user-limit-24hour-remaining or x-app-limit-24hour-remaining: 0); it resets at {} (in {}): post again then",
                    units::shown_time(until),
                    humantime::format_duration(Duration::from_secs(until - now))
                )));
            }
            Hold::Until { until, .. } => Duration::from_secs(until - now),
            Hold::None | Hold::Backoff => {
                backoff(policy.first_backoff, policy.max_backoff, attempt)
            }
        };
        let remaining = policy.deadline.saturating_sub(clock.elapsed());
        if wait >= remaining {
            let reset = match hold {
                Hold::Until { until, .. } => {
                    format!("; X's limit resets at {}", units::shown_time(until))
                }
                _ => String::new(),
            };
            return Err(Error::Temporary(format!(
                "gave up after {attempt} attempt{} within the {} deadline: {reason}{reset}",
                if attempt == 1 { "" } else { "s" },
                humantime::format_duration(policy.deadline)
            )));
        }
        log(
            Note::Waiting,
            &format!(
                "attempt {attempt} to {address} failed: {reason}; next try in {:.1} s",
                wait.as_secs_f64()
            ),
        );
        clock.sleep(wait);
    }
}

/// Full jitter: a uniform wait between zero and `first` doubled per attempt, at most `max`.
pub fn backoff(first: Duration, max: Duration, attempt: u32) -> Duration {
    use rand::{Rng as _, TryRngCore as _};
    let bound = first
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(max);
    let millis = bound.as_millis().max(1) as u64;
    Duration::from_millis(rand::rngs::OsRng.unwrap_err().random_range(0..=millis))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;
    use std::cell::RefCell;

    struct Script {
        answers: RefCell<Vec<Result<Response, SendError>>>,
        seen: RefCell<Vec<String>>,
    }

    impl Sender for Script {
        fn send(&self, _: &Outgoing, auth: &str, _: Duration) -> Result<Response, SendError> {
            self.seen.borrow_mut().push(auth.to_string());
            self.answers.borrow_mut().remove(0)
        }
    }

    struct FakeClock {
        elapsed: Duration,
        unix: i64,
    }

    impl Clock for FakeClock {
        fn elapsed(&self) -> Duration {
            self.elapsed
        }
        fn sleep(&mut self, d: Duration) {
            self.elapsed += d;
            self.unix += d.as_secs() as i64;
        }
        fn unix_seconds(&self) -> i64 {
            self.unix
        }
    }

    fn creds() -> Credentials {
        Credentials {
            consumer_key: "ck".into(),
            consumer_secret: Secret::new("cs"),
            access_token: "at".into(),
            access_token_secret: Secret::new("ats"),
        }
    }

    fn status(status: u16, body: &str) -> Result<Response, SendError> {
        Ok(Response {
            status,
            body: body.into(),
            ..Default::default()
        })
    }

    fn run(answers: Vec<Result<Response, SendError>>) -> (Result<Posted, Error>, Vec<String>) {
        let script = Script {
            answers: RefCell::new(answers),
            seen: RefCell::new(vec![]),
        };
        let mut clock = FakeClock {
            elapsed: Duration::ZERO,
            unix: 1_700_000_000,
        };
        let request = api::post_request("https://api.x.com", ApiVersion::V2, "hi", None);
        let result = post_with_retries(
            &request,
            ApiVersion::V2,
            &creds(),
            RetryPolicy::default(),
            &script,
            &mut clock,
            &mut |_, _| {},
        );
        (result, script.seen.into_inner())
    }

    fn field<'a>(auth: &'a str, name: &str) -> &'a str {
        let start = auth.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
        &auth[start..start + auth[start..].find('"').unwrap()]
    }

    #[test]
    fn retries_temporary_failures_with_fresh_nonces() {
        let ok = r#"{"data":{"id":"1","text":"hi"}}"#;
        let (result, seen) = run(vec![
            Err(SendError::Retryable("connection refused".into())),
            status(503, ""),
            status(429, "{}"),
            status(201, ok),
        ]);
        assert_eq!(result.unwrap().id.as_deref(), Some("1"));
        assert_eq!(seen.len(), 4);
        let nonces: std::collections::HashSet<_> =
            seen.iter().map(|a| field(a, "oauth_nonce")).collect();
        assert_eq!(nonces.len(), 4);
    }

    #[test]
    fn a_2xx_with_an_unreadable_answer_is_posted_once() {
        let cut = Ok(Response {
            status: 201,
            body_error: Some("connection reset".into()),
            ..Default::default()
        });
        let (result, seen) = run(vec![cut, status(201, "{}")]);
        let posted = result.unwrap();
        assert_eq!(posted.id, None);
        assert!(posted.warning.is_some());
        assert_eq!(seen.len(), 1, "no second post");
    }

    #[test]
    fn a_duplicate_after_a_lost_answer_means_the_earlier_attempt_posted() {
        let duplicate = r#"{"detail":"You are not allowed to create a Tweet with duplicate content.","status":403}"#;
        let (result, seen) = run(vec![
            Err(SendError::OutcomeUnknown("connection reset by peer".into())),
            status(403, duplicate),
        ]);
        let posted = result.unwrap();
        assert_eq!(posted.id, None);
        assert!(posted.warning.unwrap().contains("earlier attempt"));
        assert_eq!(seen.len(), 2);
        // Without a lost answer before it, a duplicate is the user's to fix.
        let (result, _) = run(vec![
            Err(SendError::Retryable("connection refused".into())),
            status(403, duplicate),
        ]);
        assert_eq!(
            result.unwrap_err().exit_code(),
            crate::error::EXIT_TEXT_REJECTED
        );
    }

    #[test]
    fn gives_up_at_the_deadline_with_the_last_reason() {
        let answers = (0..100).map(|_| status(503, r#"{"title":"Service Unavailable"}"#));
        let (result, seen) = run(answers.collect());
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_TEMPORARY);
        assert!(err.to_string().contains("Service Unavailable"), "{err}");
        assert!(seen.len() > 2 && seen.len() < 100);
    }

    #[test]
    fn resigns_once_with_the_servers_clock() {
        let skewed = |_| {
            Ok(Response {
                status: 401,
                date: Some(httpdate::fmt_http_date(
                    std::time::UNIX_EPOCH + Duration::from_secs(1_700_003_600),
                )),
                body: r#"{"title":"Unauthorized","status":401}"#.into(),
                ..Default::default()
            })
        };
        let (result, seen) = run(vec![skewed(()), skewed(())]);
        assert_eq!(result.unwrap_err().exit_code(), crate::error::EXIT_AUTH);
        assert_eq!(seen.len(), 2, "one re-sign, not a loop");
        assert_eq!(field(&seen[0], "oauth_timestamp"), "1700000000");
        assert_eq!(field(&seen[1], "oauth_timestamp"), "1700003600");
    }

    #[test]
    fn a_spent_day_ends_the_post_at_once_with_its_reset() {
        let daily = |_| {
            Ok(Response {
                status: 429,
                rate_limit_reset: Some(1_700_000_060),
                day: Some(api::DayLimit {
                    remaining: 0,
                    reset: Some(1_700_018_000),
                }),
                body: r#"{"title":"Too Many Requests","status":429}"#.into(),
                ..Default::default()
            })
        };
        let (result, seen) = run(vec![daily(()), daily(())]);
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_TEMPORARY);
        let message = err.to_string();
        assert!(message.contains("daily post limit"), "{message}");
        assert!(message.contains("2023-11-15T03:13:20Z"), "{message}");
        assert!(message.contains("in 5h"), "{message}");
        assert_eq!(seen.len(), 1, "no second request before the day resets");
    }

    #[test]
    fn resets_are_clamped_and_past_ones_back_off() {
        let now = 1_700_000_000;
        let limited = |reset| Response {
            status: 429,
            rate_limit_reset: reset,
            ..Default::default()
        };
        assert_eq!(
            hold(&limited(Some(253_402_300_800)), now),
            Hold::Until {
                until: now + SUSPICIOUS_HOLD_SECS,
                daily: false,
                suspicious: true
            }
        );
        for past in [Some(0), Some(now - 1), Some(now), None] {
            assert_eq!(hold(&limited(past), now), Hold::Backoff, "{past:?}");
        }
        let last = Response {
            status: 201,
            rate_limit_remaining: Some(0),
            rate_limit_reset: Some(now - 5),
            ..Default::default()
        };
        assert_eq!(hold(&last, now), Hold::None);
        // A reset years ahead does not hold the agent past its deadline, nor panic.
        let (result, seen) = run(vec![Ok(limited(Some(u64::MAX)))]);
        let message = result.unwrap_err().to_string();
        assert!(message.contains("X's limit resets at"), "{message}");
        assert_eq!(seen.len(), 1);
    }

    #[test]
    fn final_errors_are_not_retried() {
        let (result, seen) = run(vec![status(400, r#"{"title":"Invalid Request"}"#)]);
        assert_eq!(
            result.unwrap_err().exit_code(),
            crate::error::EXIT_API_REFUSED
        );
        assert_eq!(seen.len(), 1);
    }
}

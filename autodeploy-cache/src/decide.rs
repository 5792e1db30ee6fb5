//! What to do with a cacheable request, decided from what is known about its key: the stored
//! entry (if any), the fill in progress (if any), the request's headers and `now`. Pure: the
//! proxy gathers the facts, asks here, and acts on the answer with a `match`; every branch
//! has a unit test without a server.
//!
//! Two steps, because one fact is only known by acting: whether a fill slot can be had is
//! learned by claiming it (atomically, in the fill registry). [`decide`] says what the
//! request needs; [`claim`] says what to do once the claim's outcome is known.

use std::time::Duration;

use http::HeaderMap;

use crate::policy;
use crate::status::CacheStatus;

/// The stored entry for the key, as far as deciding goes.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    /// Its response headers.
    pub headers: &'a HeaderMap,
    /// The request's values of its Vary headers, as stored.
    pub vary: &'a [(String, String)],
    /// Unix seconds at which it stops being fresh.
    pub expires_at: u64,
}

/// The fill in progress for the key.
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// It has every byte of the body (its commit may still be running).
    pub complete: bool,
    /// Its response is fresh now (unknown before its head arrived: `true`).
    pub fresh: bool,
    /// Its response may serve this request: it does not vary, or the request has the
    /// values it was fetched with (unknown before its head arrived: `true`).
    pub matches: bool,
}

/// Everything the decision depends on.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    /// The request's headers.
    pub request: &'a HeaderMap,
    /// The stored entry, if any.
    pub stored: Option<Stored<'a>>,
    /// The fill in progress, if any.
    pub fill: Option<InFlight>,
    /// Unix seconds now.
    pub now: u64,
    /// `--stale-if-error`.
    pub stale_if_error: Option<Duration>,
}

/// What the request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Read the fill in progress, reported as `status` (`HIT` once it has every byte).
    Join(CacheStatus),
    /// The fill in progress is complete but its response cannot be reused for this request
    /// (already stale, or another variant): wait for its commit, then decide again from the
    /// store.
    AwaitCommit,
    /// The stored entry is fresh and matches the request: serve it.
    Hit,
    /// Nothing usable is stored: a fill is needed.
    Fill,
    /// The stored entry expired: a conditional fill refreshes it; `stale_ok` says whether it
    /// may stand in meanwhile or if the refresh fails.
    Refresh {
        /// The entry allows stale service now.
        stale_ok: bool,
        /// It is within its `stale-while-revalidate` window: it is served at once, even to the
        /// request that starts the refresh, which runs in the background.
        in_background: bool,
    },
}

/// Decides what the request needs.
pub fn decide(facts: &Facts<'_>) -> Decision {
    if let Some(fill) = facts.fill {
        // A finished fill whose response cannot be reused for this request (stale, or
        // another variant) has its commit done within moments; then the store decides.
        if !fill.complete || (fill.fresh && fill.matches) {
            return Decision::Join(if fill.complete {
                CacheStatus::Hit
            } else {
                CacheStatus::Miss
            });
        }
        return Decision::AwaitCommit;
    }
    // A stored variant for other values of its Vary headers is no entry for this request.
    let Some(stored) = facts
        .stored
        .filter(|s| policy::variant_matches(s.vary, facts.request))
    else {
        return Decision::Fill;
    };
    if stored.expires_at > facts.now {
        return Decision::Hit;
    }
    let in_background =
        policy::may_serve_stale_while_revalidating(stored.headers, stored.expires_at, facts.now);
    Decision::Refresh {
        stale_ok: in_background
            || policy::may_serve_stale_on_error(
                stored.headers,
                stored.expires_at,
                facts.now,
                facts.stale_if_error,
            ),
        in_background,
    }
}

/// The outcome of claiming a fill slot for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// This request created the fill: it must start it.
    Created,
    /// Another request's fill for the key was found.
    Existing,
    /// Every fill slot is taken (`max_fills`).
    Full,
}

/// What to do once the claim for a [`Decision::Fill`] or [`Decision::Refresh`] is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Start the fill (conditional when refreshing) and read it, reported as `status`.
    Start(CacheStatus),
    /// Start the refresh in the background and serve the expired entry, reported as `status`
    /// (`UPDATING`).
    StartBehind(CacheStatus),
    /// Read the other request's fill, reported as `status`.
    Join(CacheStatus),
    /// Serve the expired entry, reported as `status` (`UPDATING` while another request
    /// refreshes it, `STALE` when no fill can be started).
    ServeStored(CacheStatus),
    /// Forward the request uncached (`BYPASS`).
    Forward,
}

/// What to do for `decision` given the `claim`.
pub fn claim(decision: Decision, claim: Claim) -> Action {
    match (decision, claim) {
        (
            Decision::Refresh {
                in_background: true,
                ..
            },
            Claim::Created,
        ) => Action::StartBehind(CacheStatus::Updating),
        (Decision::Refresh { .. }, Claim::Created) => Action::Start(CacheStatus::Expired),
        (Decision::Refresh { stale_ok: true, .. }, Claim::Existing) => {
            Action::ServeStored(CacheStatus::Updating)
        }
        (
            Decision::Refresh {
                stale_ok: false, ..
            },
            Claim::Existing,
        ) => Action::Join(CacheStatus::Expired),
        (Decision::Refresh { stale_ok: true, .. }, Claim::Full) => {
            Action::ServeStored(CacheStatus::Stale)
        }
        (_, Claim::Created) => Action::Start(CacheStatus::Miss),
        (_, Claim::Existing) => Action::Join(CacheStatus::Miss),
        (_, Claim::Full) => Action::Forward,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut m = HeaderMap::new();
        for (n, v) in pairs {
            m.append(
                http::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        m
    }

    const NOW: u64 = 1_790_000_000;

    fn facts<'a>(
        request: &'a HeaderMap,
        stored: Option<Stored<'a>>,
        fill: Option<InFlight>,
    ) -> Facts<'a> {
        Facts {
            request,
            stored,
            fill,
            now: NOW,
            stale_if_error: None,
        }
    }

    #[test]
    fn a_fill_in_flight_is_joined_while_its_response_can_be_used() {
        let req = HeaderMap::new();
        let running = InFlight {
            complete: false,
            fresh: true,
            matches: true,
        };
        let done = InFlight {
            complete: true,
            ..running
        };
        let done_stale = InFlight {
            fresh: false,
            ..done
        };
        let done_other_variant = InFlight {
            matches: false,
            ..done
        };
        assert_eq!(
            decide(&facts(&req, None, Some(running))),
            Decision::Join(CacheStatus::Miss)
        );
        assert_eq!(
            decide(&facts(&req, None, Some(done))),
            Decision::Join(CacheStatus::Hit)
        );
        assert_eq!(
            decide(&facts(&req, None, Some(done_stale))),
            Decision::AwaitCommit
        );
        assert_eq!(
            decide(&facts(&req, None, Some(done_other_variant))),
            Decision::AwaitCommit
        );
    }

    #[test]
    fn fresh_matching_entries_are_hits_and_others_need_a_fill() {
        let headers = h(&[("cache-control", "max-age=60")]);
        let gzip = h(&[("accept-encoding", "gzip")]);
        let vary = [("accept-encoding".to_string(), "gzip".to_string())];
        let stored = Stored {
            headers: &headers,
            vary: &vary,
            expires_at: NOW + 60,
        };
        assert_eq!(decide(&facts(&gzip, Some(stored), None)), Decision::Hit);
        let other = h(&[("accept-encoding", "br")]);
        assert_eq!(decide(&facts(&other, Some(stored), None)), Decision::Fill);
        assert_eq!(decide(&facts(&gzip, None, None)), Decision::Fill);
    }

    #[test]
    fn expired_entries_are_refreshed_and_stand_in_only_if_allowed() {
        let req = HeaderMap::new();
        let plain = h(&[("cache-control", "max-age=60")]);
        let strict = h(&[("cache-control", "max-age=60, must-revalidate")]);
        let expired = |headers| Stored {
            headers,
            vary: &[],
            expires_at: NOW - 1,
        };
        assert_eq!(
            decide(&facts(&req, Some(expired(&plain)), None)),
            Decision::Refresh {
                stale_ok: true,
                in_background: false
            }
        );
        assert_eq!(
            decide(&facts(&req, Some(expired(&strict)), None)),
            Decision::Refresh {
                stale_ok: false,
                in_background: false
            }
        );
        let mut bounded = facts(&req, Some(expired(&plain)), None);
        bounded.now = NOW + 7200;
        bounded.stale_if_error = Some(Duration::from_secs(3600));
        assert_eq!(
            decide(&bounded),
            Decision::Refresh {
                stale_ok: false,
                in_background: false
            }
        );
        // Within a stale-while-revalidate window: served at once, refreshed behind.
        let swr = h(&[("cache-control", "max-age=60, stale-while-revalidate=30")]);
        let mut within = facts(&req, Some(expired(&swr)), None);
        let behind = Decision::Refresh {
            stale_ok: true,
            in_background: true,
        };
        assert_eq!(decide(&within), behind);
        assert_eq!(
            claim(behind, Claim::Created),
            Action::StartBehind(CacheStatus::Updating)
        );
        assert_eq!(
            claim(behind, Claim::Existing),
            Action::ServeStored(CacheStatus::Updating)
        );
        within.now = NOW + 60;
        assert_eq!(
            decide(&within),
            Decision::Refresh {
                stale_ok: true,
                in_background: false
            }
        );
    }

    #[test]
    fn claims_decide_between_fetching_joining_standing_in_and_passing_through() {
        let ok = Decision::Refresh {
            stale_ok: true,
            in_background: false,
        };
        let strict = Decision::Refresh {
            stale_ok: false,
            in_background: false,
        };
        use CacheStatus::{Expired, Miss, Stale, Updating};
        let table = [
            (Decision::Fill, Claim::Created, Action::Start(Miss)),
            (Decision::Fill, Claim::Existing, Action::Join(Miss)),
            (Decision::Fill, Claim::Full, Action::Forward),
            (ok, Claim::Created, Action::Start(Expired)),
            (ok, Claim::Existing, Action::ServeStored(Updating)),
            (ok, Claim::Full, Action::ServeStored(Stale)),
            (strict, Claim::Created, Action::Start(Expired)),
            (strict, Claim::Existing, Action::Join(Expired)),
            (strict, Claim::Full, Action::Forward),
        ];
        for (decision, claimed, action) in table {
            assert_eq!(
                claim(decision, claimed),
                action,
                "{decision:?}, {claimed:?}"
            );
        }
    }
}

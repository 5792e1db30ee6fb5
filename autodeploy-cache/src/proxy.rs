//! Request handling: refuse what an open proxy would do, pass uncacheable requests through,
//! answer cacheable ones from the cache or from a (shared) fill, and label every response
//! with `X-Cache-Status`.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::access_log::UpstreamTime;
use crate::admission;
use crate::body::Delivery;
use crate::cache_key::CacheKey;
use crate::config::Config;
use crate::decide::{Action, Claim, Decision, Facts, InFlight, Stored, claim, decide};
use crate::error::Error;
use crate::fill::{self, FillContext, FillEnd, Fills, Progress};
use crate::metrics::Metrics;
use crate::policy;
use crate::serve::{empty, plain, relay, serve_entry, serve_fill, unix_now};
use crate::status::CacheStatus;
use crate::store::{Entry, Store};
use crate::upstream::{ProxyBody, Upstream};

/// Shared state of all connections.
pub struct Proxy {
    pub(crate) config: Config,
    scheme: Scheme,
    authority: Authority,
    /// `Host` sent upstream unless `--forward-host`.
    pub(crate) upstream_host: HeaderValue,
    /// Rebuilt on SIGHUP (a renewed `--upstream-ca`); requests take a clone.
    client: crate::sync::RwLock<Upstream>,
    store: Arc<Store>,
    fills: Arc<Fills>,
    /// This proxy's counters.
    pub(crate) metrics: Arc<Metrics>,
    /// What its response bodies share (frame budget, buffers).
    delivery: Arc<Delivery>,
}

/// A response and the cache status to log for it.
pub type Answer = (Response<ProxyBody>, Option<CacheStatus>);

/// Request headers not sent upstream on a cache fill: the fill fetches the whole object for
/// everyone, whatever one client's range or validators.
const CLIENT_ONLY: [header::HeaderName; 6] = [
    header::RANGE,
    header::IF_RANGE,
    header::IF_NONE_MATCH,
    header::IF_MODIFIED_SINCE,
    header::IF_MATCH,
    header::IF_UNMODIFIED_SINCE,
];

impl Proxy {
    /// Builds the shared state.
    pub fn new(
        config: Config,
        client: Upstream,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, Error> {
        let bad = |e: &dyn std::fmt::Display| {
            Error::Config(format!("--upstream {}: {e}", config.upstream_authority))
        };
        let scheme = config.upstream_scheme.parse().map_err(|e| bad(&e))?;
        let authority: Authority = config.upstream_authority.parse().map_err(|e| bad(&e))?;
        let upstream_host = HeaderValue::from_str(authority.as_str()).map_err(|e| bad(&e))?;
        Ok(Self {
            config,
            scheme,
            authority,
            upstream_host,
            client: crate::sync::RwLock::new(client),
            store,
            fills: Arc::new(Fills::default()),
            metrics,
            delivery: Delivery::new(),
        })
    }

    /// This proxy's counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// What this proxy's bodies share.
    pub fn delivery(&self) -> &Arc<Delivery> {
        &self.delivery
    }

    /// The upstream client now.
    pub(crate) fn upstream(&self) -> Upstream {
        self.client.read().clone()
    }

    /// Builds the upstream client again from the configuration (re-reading
    /// `--upstream-ca`); on error the old one stays.
    pub fn reload_upstream(&self) -> Result<(), Error> {
        let client = crate::upstream::client(&self.config)?;
        *self.client.write() = client;
        Ok(())
    }

    /// The validated settings.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The cache store (for sweeps).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Fills in progress (shutdown waits for them).
    pub fn fills(&self) -> &Arc<Fills> {
        &self.fills
    }

    /// Handles one request that arrived on `local` (our own address) from `client`.
    pub async fn handle(
        self: &Arc<Self>,
        request: Request<Incoming>,
        client: SocketAddr,
        local: SocketAddr,
    ) -> Answer {
        if request.method() == Method::CONNECT {
            return (
                plain(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "CONNECT is not supported: this is a reverse proxy\n",
                ),
                None,
            );
        }
        let admitted = admission::admit(
            request.method(),
            request.uri(),
            request.version(),
            request.headers(),
            &admission::Target {
                upstream: &self.config.upstream_authority,
                local,
                forward_host: self.config.forward_host,
            },
        );
        let path = match admitted {
            Ok(path) => path.clone(),
            Err(refusal) => return (plain(refusal.status, refusal.reason), None),
        };
        // From here on the request's URI is the upstream's: built from the configured
        // scheme and authority and the admitted path, so nothing later can aim elsewhere.
        let Ok(uri) = admission::upstream_uri(&self.scheme, &self.authority, &path) else {
            return (
                plain(StatusCode::BAD_REQUEST, "the request target is invalid\n"),
                None,
            );
        };
        if self.config.test_panic_path.as_deref() == Some(path.path()) {
            self.store.panic_while_locked();
        }
        let mut request = request;
        *request.uri_mut() = uri;
        // Requests with Authorization take the cache path too: whether their response may
        // be stored is the policy's to say (RFC 9111 3.5).
        if !matches!(*request.method(), Method::GET | Method::HEAD) {
            let key = self.key(request.uri(), request.headers());
            let method = request.method().clone();
            let response = self.pass_through(request, client).await;
            if policy::invalidates(&method, response.status()) {
                self.store.invalidate(&key);
            }
            return (response, Some(CacheStatus::Bypass));
        }
        let (parts, _) = request.into_parts();
        self.cached(parts, client).await
    }

    fn key(&self, uri: &http::Uri, headers: &http::HeaderMap) -> CacheKey {
        let target = uri.path_and_query().map_or("/", |pq| pq.as_str());
        let host = self.config.forward_host.then(|| {
            headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .unwrap_or("")
        });
        CacheKey::new(&self.config.upstream_authority, target, host)
    }

    /// A GET or HEAD: gathers what is known about its key, lets [`decide`] say what it
    /// needs, and does that.
    async fn cached(self: &Arc<Self>, parts: http::request::Parts, client: SocketAddr) -> Answer {
        // A URL whose responses vary is looked up, filled and stored per variant.
        let primary = self.key(&parts.uri, &parts.headers);
        let key = match self.store.vary_names(&primary) {
            Some(names) => primary.variant(&policy::vary_values(&parts.headers, &names)),
            None => primary,
        };
        let mut waited = false;
        loop {
            let progress = self.fills.find(&key).map(|fill| fill.subscribe());
            let now = unix_now();
            let in_flight = progress.as_ref().map(|p| {
                let p = p.borrow();
                InFlight {
                    complete: p.end == Some(FillEnd::Complete)
                        || p.head
                            .as_ref()
                            .is_some_and(|h| h.content_length == Some(p.written)),
                    fresh: p.head.as_ref().is_none_or(|h| h.expires_at > now),
                    matches: p
                        .head
                        .as_ref()
                        .is_none_or(|h| policy::variant_matches(&h.vary, &parts.headers)),
                }
            });
            // Inline: an open entry is remembered, a new one is a few reads from the page
            // cache. Not needed while a fill decides.
            let entry = match in_flight {
                None => self.store.lookup(&key),
                Some(_) => None,
            };
            let stored = entry.as_ref().map(|e| Stored {
                headers: &e.head,
                vary: &e.meta.vary,
                expires_at: e.expires_at,
            });
            let decision = decide(&Facts {
                request: &parts.headers,
                stored,
                fill: in_flight,
                now,
                stale_if_error: self.config.stale_if_error,
            });
            let (decision, progress) = match (decision, progress) {
                (Decision::AwaitCommit, Some(mut progress)) if !waited => {
                    // Its commit ends within moments; then the store decides.
                    waited = true;
                    let _ = tokio::time::timeout(self.config.upstream_header_timeout, async {
                        while progress.changed().await.is_ok() {}
                    })
                    .await;
                    continue;
                }
                (Decision::AwaitCommit, Some(progress)) => {
                    (Decision::Join(CacheStatus::Hit), Some(progress))
                }
                other => other,
            };
            return match (decision, entry, progress) {
                (Decision::Join(status), _, Some(progress)) => {
                    self.from_fill(&parts, client, progress, None, status, None)
                        .await
                }
                (Decision::Hit, Some(entry), _) => (
                    serve_entry(&self.delivery, &parts, entry),
                    Some(CacheStatus::Hit),
                ),
                (decision @ Decision::Refresh { stale_ok, .. }, Some(entry), _) => {
                    self.fetch(&key, &parts, client, decision, Some((entry, stale_ok)))
                        .await
                }
                (decision, _, _) => self.fetch(&key, &parts, client, decision, None).await,
            };
        }
    }

    /// Claims a fill for `key` and acts on [`claim`]'s answer: start the fill (conditional
    /// when `refreshing` an expired entry), read another request's, serve the expired entry,
    /// or pass the request through. `refreshing` carries whether the entry may stand in.
    async fn fetch(
        self: &Arc<Self>,
        key: &CacheKey,
        parts: &http::request::Parts,
        client: SocketAddr,
        decision: Decision,
        refreshing: Option<(Entry, bool)>,
    ) -> Answer {
        let (fill, outcome) = match self.fills.find_or_create(key, self.config.max_fills) {
            None => (None, Claim::Full),
            Some((fill, true)) => (Some(fill), Claim::Created),
            Some((fill, false)) => (Some(fill), Claim::Existing),
        };
        let stand_in = refreshing
            .as_ref()
            .filter(|(_, stale_ok)| *stale_ok)
            .map(|(entry, _)| entry.clone());
        match (claim(decision, outcome), fill, stand_in) {
            (Action::Start(status), Some(fill), stand_in) => {
                let mut request = self.fill_request(parts, client);
                if let Some((entry, _)) = &refreshing {
                    add_validators(&mut request, entry);
                }
                let (give, handoff) = oneshot::channel();
                tokio::spawn(fill::run(
                    fill.clone(),
                    self.fill_context(),
                    request,
                    refreshing.map(|(entry, _)| entry),
                    give,
                ));
                self.from_fill(
                    parts,
                    client,
                    fill.subscribe(),
                    Some(handoff),
                    status,
                    stand_in,
                )
                .await
            }
            // A stand-in is there: the entry is within its stale-while-revalidate window.
            (Action::StartBehind(status), Some(fill), Some(entry)) => {
                let mut request = self.fill_request(parts, client);
                add_validators(&mut request, &entry);
                // Nobody waits for a response the cache cannot keep: the handoff is dropped.
                let (give, _) = oneshot::channel();
                tokio::spawn(fill::run(
                    fill,
                    self.fill_context(),
                    request,
                    Some(entry.clone()),
                    give,
                ));
                (serve_entry(&self.delivery, parts, entry), Some(status))
            }
            (Action::Join(status), Some(fill), _) => {
                self.from_fill(parts, client, fill.subscribe(), None, status, None)
                    .await
            }
            (Action::ServeStored(status), _, Some(entry)) => {
                (serve_entry(&self.delivery, parts, entry), Some(status))
            }
            _ => {
                let request = Request::from_parts(parts.clone(), empty());
                (
                    self.forward(request, client).await,
                    Some(CacheStatus::Bypass),
                )
            }
        }
    }

    /// The upstream request of a fill: always a GET of the whole object, without this
    /// client's range or validators (HEAD is fetched as GET, as nginx does).
    fn fill_request(&self, parts: &http::request::Parts, client: SocketAddr) -> Request<ProxyBody> {
        let mut request = self.upstream_request(parts, client, empty());
        for name in CLIENT_ONLY {
            request.headers_mut().remove(name);
        }
        *request.method_mut() = Method::GET;
        request
    }

    fn fill_context(&self) -> FillContext {
        FillContext {
            client: self.upstream(),
            store: self.store.clone(),
            fills: self.fills.clone(),
            header_timeout: self.config.upstream_header_timeout,
            idle_timeout: self.config.fill_idle_timeout,
            valid: self.config.valid,
            metrics: self.metrics.clone(),
        }
    }

    /// Answers from a fill: waits for its response head, then streams its body as it grows.
    /// `handoff` is given to the request that started the fill: a response the fill cannot
    /// store comes back through it. `stale` is the expired entry it refreshes, given only
    /// when [`decide`] found that it may stand in (its directives, `--stale-if-error`), and
    /// served if the upstream fails.
    async fn from_fill(
        self: &Arc<Self>,
        parts: &http::request::Parts,
        client: SocketAddr,
        mut progress: tokio::sync::watch::Receiver<Progress>,
        handoff: Option<fill::Handoff>,
        status: CacheStatus,
        stale: Option<Entry>,
    ) -> Answer {
        let state = progress
            .wait_for(|p| p.head.is_some() || p.end.is_some())
            .await
            .map(|p| (p.head.clone(), p.end.clone()));
        let (head, end) = match state {
            Ok(state) => state,
            Err(_) => (
                None,
                Some(FillEnd::Failed {
                    reason: "fill went away".into(),
                    before_head: true,
                    timeout: false,
                }),
            ),
        };
        match (head, end) {
            (_, Some(FillEnd::NotModified)) => {
                match self
                    .store
                    .lookup(&self.key(&parts.uri, &parts.headers))
                    .or(stale)
                {
                    Some(entry) => (
                        serve_entry(&self.delivery, parts, entry),
                        Some(CacheStatus::Revalidated),
                    ),
                    None => (
                        plain(
                            StatusCode::BAD_GATEWAY,
                            "upstream answered 304 to an unconditional request\n",
                        ),
                        Some(status),
                    ),
                }
            }
            (None, Some(FillEnd::Failed { timeout, .. })) => match stale {
                Some(entry) => (
                    serve_entry(&self.delivery, parts, entry),
                    Some(CacheStatus::Stale),
                ),
                _ if timeout => (
                    plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        "upstream did not answer in time\n",
                    ),
                    Some(status),
                ),
                // The fill logged the reason; clients get no addresses or names.
                _ => (plain(StatusCode::BAD_GATEWAY, UNREACHABLE), Some(status)),
            },
            (None, Some(end @ (FillEnd::HandedOver | FillEnd::NoDisk))) => {
                // Not for the cache (not storable, or no room): the request that started the
                // fill gets the upstream's response handed over; anyone else fetches for
                // itself.
                let label = if end == FillEnd::NoDisk {
                    CacheStatus::Bypass
                } else {
                    status
                };
                let response = match handoff {
                    Some(handoff) => handoff.await.ok(),
                    None => None,
                };
                let response = match response {
                    Some(response) => response,
                    None => {
                        let request = Request::from_parts(parts.clone(), empty());
                        return (self.forward(request, client).await, Some(label));
                    }
                };
                if response.status().is_server_error()
                    && let Some(entry) = stale
                {
                    return (
                        serve_entry(&self.delivery, parts, entry),
                        Some(CacheStatus::Stale),
                    );
                }
                (relay(response), Some(label))
            }
            // A reader whose request differs in a header the response varies on must not get
            // this body: it fetches its own.
            (Some(head), _) if !policy::variant_matches(&head.vary, &parts.headers) => {
                let request = Request::from_parts(parts.clone(), empty());
                (
                    self.forward(request, client).await,
                    Some(CacheStatus::Bypass),
                )
            }
            (Some(head), _) => {
                let took = head.upstream_time;
                let age = head
                    .initial_age
                    .saturating_add(unix_now().saturating_sub(head.received_at));
                let mut response = serve_fill(&self.delivery, parts, head, progress);
                // Logged for the request that waited on the upstream, not for readers that
                // joined later.
                if status == CacheStatus::Miss || status == CacheStatus::Expired {
                    response.extensions_mut().insert(UpstreamTime(took));
                }
                // From the cache (the fill had finished): its age, as an entry's (5.1).
                if status == CacheStatus::Hit {
                    response.headers_mut().insert(header::AGE, age.into());
                }
                (response, Some(status))
            }
            (None, _) => (
                plain(
                    StatusCode::BAD_GATEWAY,
                    "the fetch ended without an answer\n",
                ),
                Some(status),
            ),
        }
    }
}

/// The body of a 502: the reason is in the proxy's log.
pub(crate) const UNREACHABLE: &str = "upstream unreachable (the proxy's log says why)\n";

/// The stored entry's validators, so that the upstream can answer 304.
fn add_validators(request: &mut Request<ProxyBody>, entry: &Entry) {
    if let Some(etag) = entry
        .meta
        .header("etag")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request.headers_mut().insert(header::IF_NONE_MATCH, etag);
    }
    if let Some(lm) = entry
        .meta
        .header("last-modified")
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        request.headers_mut().insert(header::IF_MODIFIED_SINCE, lm);
    }
}

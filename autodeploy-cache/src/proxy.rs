//! Request handling: refuse what an open proxy would do, pass uncacheable requests through,
//! answer cacheable ones from the cache or from a (shared) fill, and label every response
//! with `X-Cache-Status`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::uri::{Authority, Scheme};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full, Limited};
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::admission;
use crate::cache_key::CacheKey;
use crate::config::Config;
use crate::error::Error;
use crate::fill::{self, FillContext, FillEnd, FillHead, Fills, Progress, Source};
use crate::headers;
use crate::policy;
use crate::range::{self, RangeRequest};
use crate::status::CacheStatus;
use crate::store::{Entry, Store};
use crate::upstream::{ProxyBody, Upstream};

/// Shared state of all connections.
pub struct Proxy {
    config: Config,
    scheme: Scheme,
    authority: Authority,
    /// `Host` sent upstream unless `--forward-host`.
    upstream_host: HeaderValue,
    client: Upstream,
    store: Arc<Store>,
    fills: Arc<Fills>,
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
    pub fn new(config: Config, client: Upstream, store: Arc<Store>) -> Result<Self, Error> {
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
            client,
            store,
            fills: Arc::new(Fills::default()),
        })
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

    /// Whether `entry`, expired, may be served instead of the upstream's answer now.
    fn may_serve_stale(&self, entry: &Entry) -> bool {
        policy::may_serve_stale_on_error(
            &entry.meta.header_map(),
            entry.expires_at,
            unix_now(),
            self.config.stale_if_error,
        )
    }

    async fn cached(self: &Arc<Self>, parts: http::request::Parts, client: SocketAddr) -> Answer {
        let key = self.key(&parts.uri, &parts.headers);
        if let Some(fill) = self.fills.find(&key) {
            let mut progress = fill.subscribe();
            drop(fill);
            // A fill that has every byte (its commit may still be syncing) serves as a hit,
            // while its response is fresh.
            let (complete, fresh) = {
                let p = progress.borrow();
                let complete = p.end == Some(FillEnd::Complete)
                    || p.head
                        .as_ref()
                        .is_some_and(|h| h.content_length == Some(p.written));
                let fresh = p.head.as_ref().is_some_and(|h| h.expires_at > unix_now());
                (complete, fresh)
            };
            if !complete || fresh {
                let status = if complete {
                    CacheStatus::Hit
                } else {
                    CacheStatus::Miss
                };
                return self
                    .from_fill(&parts, client, progress, None, status, None)
                    .await;
            }
            // Complete but already stale (max-age=0, no-cache): not reused. Its commit ends
            // within moments; then the stored entry is revalidated like any other.
            let _ = tokio::time::timeout(self.config.upstream_header_timeout, async {
                while progress.changed().await.is_ok() {}
            })
            .await;
        }
        // Inline: an open entry is remembered, a new one is a few reads from the page cache.
        // A stored variant for other values of its Vary headers is a miss; its fill replaces
        // it (one variant per URL).
        let entry = self
            .store
            .lookup(&key)
            .filter(|e| policy::variant_matches(&e.meta.vary, &parts.headers));
        match entry {
            Some(entry) if entry.expires_at > unix_now() => {
                (serve_entry(&parts, entry), Some(CacheStatus::Hit))
            }
            Some(entry) => {
                // The old entry may stand in while it is refreshed only where it allows
                // stale service; otherwise requests wait for the refresh.
                let may_stale = self.may_serve_stale(&entry);
                if may_stale && self.fills.find(&key).is_some() {
                    return (serve_entry(&parts, entry), Some(CacheStatus::Updating));
                }
                let Some((fill, created)) = self.fills.find_or_create(&key, self.config.max_fills)
                else {
                    // Too many fills at once: the expired entry if it allows, else through.
                    if may_stale {
                        return (serve_entry(&parts, entry), Some(CacheStatus::Stale));
                    }
                    let request = Request::from_parts(parts, empty());
                    return (
                        self.forward(request, client).await,
                        Some(CacheStatus::Bypass),
                    );
                };
                if created {
                    let mut request = self.fill_request(&parts, client);
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
                    let (give, handoff) = oneshot::channel();
                    tokio::spawn(fill::run(
                        fill.clone(),
                        self.fill_context(),
                        request,
                        Some(entry.clone()),
                        give,
                    ));
                    self.from_fill(
                        &parts,
                        client,
                        fill.subscribe(),
                        Some(handoff),
                        CacheStatus::Expired,
                        Some(entry),
                    )
                    .await
                } else if may_stale {
                    (serve_entry(&parts, entry), Some(CacheStatus::Updating))
                } else {
                    self.from_fill(
                        &parts,
                        client,
                        fill.subscribe(),
                        None,
                        CacheStatus::Expired,
                        None,
                    )
                    .await
                }
            }
            None => {
                let Some((fill, created)) = self.fills.find_or_create(&key, self.config.max_fills)
                else {
                    // Too many fills at once: this one passes through, uncached.
                    let request = Request::from_parts(parts, empty());
                    return (
                        self.forward(request, client).await,
                        Some(CacheStatus::Bypass),
                    );
                };
                let handoff = created.then(|| {
                    let request = self.fill_request(&parts, client);
                    let (give, handoff) = oneshot::channel();
                    tokio::spawn(fill::run(
                        fill.clone(),
                        self.fill_context(),
                        request,
                        None,
                        give,
                    ));
                    handoff
                });
                self.from_fill(
                    &parts,
                    client,
                    fill.subscribe(),
                    handoff,
                    CacheStatus::Miss,
                    None,
                )
                .await
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
            client: self.client.clone(),
            store: self.store.clone(),
            fills: self.fills.clone(),
            header_timeout: self.config.upstream_header_timeout,
            idle_timeout: self.config.fill_idle_timeout,
            valid: self.config.valid,
        }
    }

    /// Answers from a fill: waits for its response head, then streams its body as it grows.
    /// `handoff` is given to the request that started the fill: a response the fill cannot
    /// store comes back through it. `stale` is the expired entry it refreshes, served if the
    /// upstream fails.
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
                    Some(entry) => (serve_entry(parts, entry), Some(CacheStatus::Revalidated)),
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
                Some(entry) if self.may_serve_stale(&entry) => {
                    (serve_entry(parts, entry), Some(CacheStatus::Stale))
                }
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
                    && let Some(entry) = stale.filter(|e| self.may_serve_stale(e))
                {
                    return (serve_entry(parts, entry), Some(CacheStatus::Stale));
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
            (Some(head), _) => (serve_fill(parts, head, progress), Some(status)),
            (None, _) => (
                plain(
                    StatusCode::BAD_GATEWAY,
                    "the fetch ended without an answer\n",
                ),
                Some(status),
            ),
        }
    }

    /// The upstream request for `parts` (whose URI `handle` set to the upstream's):
    /// end-to-end headers and forwarding headers. The client's
    /// `Content-Length` never goes upstream: hyper frames the request from `body` itself, so
    /// a request is never announced with a body it does not carry.
    fn upstream_request(
        &self,
        parts: &http::request::Parts,
        client: SocketAddr,
        body: ProxyBody,
    ) -> Request<ProxyBody> {
        let client_host = parts
            .headers
            .get(header::HOST)
            .filter(|_| self.config.forward_host)
            .cloned();
        let mut headers = headers::end_to_end(&parts.headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers::add_forwarding(&mut headers, client, client_host.as_ref());
        headers.insert(
            header::HOST,
            client_host.unwrap_or_else(|| self.upstream_host.clone()),
        );
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = headers;
        request
    }

    /// Forwards a request that is not cached. Its body is read whole first (bounded in size
    /// and time), so a client that trickles its body holds only its own connection, never an
    /// upstream one, and the upstream gets an exact `Content-Length`.
    async fn pass_through(
        self: &Arc<Self>,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(self.config.max_body_size).unwrap_or(usize::MAX);
        let read = Limited::new(body, limit).collect();
        let body = match tokio::time::timeout(self.config.client_body_timeout, read).await {
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                );
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than --max-body-size\n",
                );
            }
            Ok(Err(_)) => return plain(StatusCode::BAD_REQUEST, "invalid request body\n"),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let body = if body.is_empty() {
            empty()
        } else {
            Full::new(body).map_err(|e| match e {}).boxed()
        };
        self.forward(Request::from_parts(parts, body), client).await
    }

    /// Sends `request` upstream uncached and streams the answer back.
    async fn forward(
        self: &Arc<Self>,
        request: Request<ProxyBody>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let upstream = self.upstream_request(&parts, client, body);
        match tokio::time::timeout(
            self.config.upstream_header_timeout,
            self.client.request(upstream),
        )
        .await
        {
            Err(_) => plain(
                StatusCode::GATEWAY_TIMEOUT,
                "upstream did not answer in time\n",
            ),
            Ok(Err(e)) => {
                // The detail (addresses, certificate names) is for the operator, not for
                // any client on the boot network.
                eprintln!(
                    "autodeploy-cache: upstream unreachable: {}",
                    fill::error_chain(&e)
                );
                plain(StatusCode::BAD_GATEWAY, UNREACHABLE)
            }
            Ok(Ok(response)) => relay(response),
        }
    }
}

/// The body of a 502: the reason is in the proxy's log.
const UNREACHABLE: &str = "upstream unreachable (the proxy's log says why)\n";

/// An upstream response as it goes to the client: end-to-end headers, body streamed.
fn relay(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let length = headers::content_length(&parts.headers);
    parts.headers = headers::end_to_end(&parts.headers);
    if let Some(length) = length {
        parts.headers.insert(header::CONTENT_LENGTH, length.into());
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.to_string()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn empty() -> ProxyBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Serves a committed entry: 304 for matching client validators, 206/416 for a range, no
/// body for HEAD.
fn serve_entry(parts: &http::request::Parts, entry: Entry) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::from_u16(entry.meta.status).unwrap_or(StatusCode::OK);
    for (name, value) in &entry.meta.headers {
        if let (Ok(n), Ok(v)) = (
            header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            response.headers_mut().append(n, v);
        }
    }
    // The age as RFC 9111 4.2.3 computes it, replacing the upstream's (5.1).
    let age = policy::current_age(response.headers(), entry.meta.received(), unix_now());
    response.headers_mut().insert(header::AGE, age.into());
    if response.status() != StatusCode::OK {
        // Ranges and validators are answered for stored 200s only; others go as stored.
        let length = entry.body_len;
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
        if parts.method != Method::HEAD && length > 0 {
            *response.body_mut() = fill::stream(Source::Entry(entry), 0, Some(length));
        }
        return response;
    }
    response
        .headers_mut()
        .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if not_modified(parts, &entry) {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
        response.headers_mut().remove(header::CONTENT_TYPE);
        return response;
    }
    let length = entry.body_len;
    let (start, end) = match apply_range(parts, &mut response, length) {
        Some(span) => span,
        None => return response,
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, (end - start).into());
    if parts.method != Method::HEAD && end > start {
        *response.body_mut() = fill::stream(Source::Entry(entry), start, Some(end));
    }
    response
}

/// Serves a fill in progress: the upstream's head, then the body as it arrives.
fn serve_fill(
    parts: &http::request::Parts,
    head: Arc<FillHead>,
    progress: tokio::sync::watch::Receiver<Progress>,
) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = head.status;
    for (name, value) in &head.headers {
        if name != header::CONTENT_LENGTH {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    let (start, end) = match head.content_length {
        Some(length) if head.status == StatusCode::OK => {
            response
                .headers_mut()
                .insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
            match apply_range(parts, &mut response, length) {
                Some(span) => span,
                None => return response,
            }
        }
        // Unknown length: ranges are ignored (the whole body, 200), as RFC 9110 allows.
        Some(length) => (0, length),
        None => {
            if parts.method == Method::HEAD {
                return response;
            }
            let body = fill::stream(Source::Fill { head, progress }, 0, None);
            *response.body_mut() = body;
            return response;
        }
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, (end - start).into());
    if parts.method != Method::HEAD && end > start {
        *response.body_mut() = fill::stream(Source::Fill { head, progress }, start, Some(end));
    }
    response
}

/// Applies a `Range` header to a 200 of `length` bytes: sets 206 and `Content-Range`, or
/// answers 416 (returning `None`). Returns the byte span to send.
fn apply_range(
    parts: &http::request::Parts,
    response: &mut Response<ProxyBody>,
    length: u64,
) -> Option<(u64, u64)> {
    let header = parts
        .headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok());
    match range::parse(header, length) {
        RangeRequest::Full => Some((0, length)),
        RangeRequest::Partial { start, end } => {
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
            let value = format!("bytes {start}-{}/{length}", end - 1);
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits"),
            );
            Some((start, end))
        }
        RangeRequest::Unsatisfiable => {
            *response.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let value = format!("bytes */{length}");
            response.headers_mut().insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).expect("digits"),
            );
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, 0.into());
            None
        }
    }
}

/// Whether the client's validators match the entry (RFC 9110 13.1.2, 13.1.3).
fn not_modified(parts: &http::request::Parts, entry: &Entry) -> bool {
    if let Some(tags) = parts
        .headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
    {
        let Some(etag) = entry.meta.header("etag") else {
            return false;
        };
        let weak = |t: &str| t.trim().trim_start_matches("W/").to_string();
        return tags
            .split(',')
            .any(|t| t.trim() == "*" || weak(t) == weak(etag));
    }
    if let (Some(since), Some(modified)) = (
        parts
            .headers
            .get(header::IF_MODIFIED_SINCE)
            .and_then(|v| v.to_str().ok()),
        entry.meta.header("last-modified"),
    ) && let (Ok(since), Ok(modified)) = (httpdate_parse(since), httpdate_parse(modified))
    {
        return modified <= since;
    }
    false
}

fn httpdate_parse(s: &str) -> Result<SystemTime, ()> {
    httpdate::parse_http_date(s).map_err(|_| ())
}

//! One upstream fetch per missing key, streamed to every client that wants it while it
//! downloads (read-while-write).
//!
//! A [`Fill`] is created by the first request for a missing (or expired) key; later requests
//! find it in [`Fills`] and become readers. One task owns the upstream response and writes the
//! body into a temp file in the cache directory, publishing progress (the response head, bytes
//! written, how it ended) on a `watch` channel. Readers hold their own handle on the temp file
//! and read with positional reads up to the published length, so they never block each other
//! or the fill, and a client that leaves stops nothing. When the body is complete the file is
//! committed (renamed into place); open handles keep working across the rename. A fill that
//! fails is a state readers see: their response is aborted, never ended cleanly short.

use std::os::unix::fs::FileExt as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use tokio::sync::oneshot;

use crate::entry::{self, EntryMeta};
pub use crate::fills::{Fill, FillEnd, FillHead, Fills, Progress};
use crate::headers;
use crate::policy::{self, Received, unix};
use crate::store::{Entry, Reservation, Store};
use crate::upstream::{ProxyBody, Upstream};

/// How much room a body of unknown length (chunked) sets aside at a time as it grows.
const UNKNOWN_LENGTH_STEP: u64 = 4 << 20;

/// Where a fill hands the upstream's response back to the request that started it, when the
/// cache cannot take the body.
pub type Handoff = oneshot::Receiver<http::Response<Incoming>>;

/// What a fill needs besides its request.
#[derive(Clone)]
pub struct FillContext {
    /// Upstream client.
    pub client: Upstream,
    /// Where entries go.
    pub store: Arc<Store>,
    /// The registry to leave when done.
    pub fills: Arc<Fills>,
    /// Connect plus response-head timeout.
    pub header_timeout: Duration,
    /// A body that sends nothing for this long fails.
    pub idle_timeout: Duration,
    /// Freshness of 200s without explicit freshness.
    pub valid: Duration,
    /// The proxy's counters.
    pub metrics: Arc<crate::metrics::Metrics>,
}

/// Runs `fill`: fetches `request` upstream and writes the body for the readers. `stale` is the
/// expired entry being refreshed, whose validators `request` already carries.
pub async fn run(
    fill: Arc<Fill>,
    ctx: FillContext,
    request: Request<ProxyBody>,
    stale: Option<Entry>,
    handoff: oneshot::Sender<http::Response<Incoming>>,
) {
    let (parts, body) = request.into_parts();
    let policy_request = Request::from_parts(parts.clone(), ());
    let request = Request::from_parts(parts, body);
    let end = fetch(&fill, &ctx, request, &policy_request, stale, handoff).await;
    if let FillEnd::Failed { reason, .. } = &end {
        crate::trouble::log_once(reason, || {
            format!(
                "fetch failed (first for {}; the same cause is not logged again until the upstream answers): {}",
                fill.key.as_str().lines().next().unwrap_or_default(),
                reason
            )
        });
    }
    fill.publish(|p| p.end = Some(end));
    ctx.fills.remove(&fill);
}

fn failed(reason: String, before_head: bool, timeout: bool) -> FillEnd {
    FillEnd::Failed {
        reason,
        before_head,
        timeout,
    }
}

async fn fetch(
    fill: &Fill,
    ctx: &FillContext,
    request: Request<ProxyBody>,
    policy_request: &Request<()>,
    stale: Option<Entry>,
    handoff: oneshot::Sender<http::Response<Incoming>>,
) -> FillEnd {
    // The temp file first: an unwritable cache directory is known before the upstream is
    // asked, and the request that started the fill fetches for itself.
    let (temp_path, file) = match ctx.store.temp_file() {
        Ok(pair) => pair,
        Err(e) => {
            ctx.store
                .report_trouble(&format!("cannot create a temp file: {e}"));
            return FillEnd::NoDisk;
        }
    };
    let mut cleanup = TempFile(Some(temp_path.clone()));
    let request_time = unix(SystemTime::now());
    let asked = std::time::Instant::now();
    ctx.metrics.upstream_requests.inc();
    let response = match tokio::time::timeout(ctx.header_timeout, ctx.client.request(request)).await
    {
        Err(_) => {
            ctx.metrics.upstream_failures.inc();
            return failed(
                crate::trouble::with_hint(
                    "upstream did not answer in time".into(),
                    crate::trouble::Cause::TimedOut,
                ),
                true,
                true,
            );
        }
        Ok(Err(e)) => {
            ctx.metrics.upstream_failures.inc();
            return failed(
                format!("upstream unreachable: {}", crate::trouble::describe(&e)),
                true,
                false,
            );
        }
        Ok(Ok(response)) => {
            crate::trouble::upstream_ok();
            response
        }
    };
    let received = Received {
        request_time,
        response_time: unix(SystemTime::now()),
    };
    if response.status() == StatusCode::NOT_MODIFIED
        && let Some(entry) = &stale
    {
        // The stored headers, updated by the 304's (RFC 9111 4.3.4), are stored and decide
        // the new freshness.
        let merged = policy::updated_headers(&entry.meta.header_map(), response.headers());
        let status = StatusCode::from_u16(entry.meta.status).unwrap_or(StatusCode::OK);
        let mut meta = (*entry.meta).clone();
        meta.headers = header_pairs(&merged);
        meta.stored_at = received.response_time;
        meta.request_time = received.request_time;
        let expires_at = expiry(status, &merged, received, ctx.valid);
        if fill.cancelled() {
            // Purged meanwhile: the stale entry is gone, and stays gone.
            return FillEnd::NotModified;
        }
        let store = ctx.store.clone();
        let (key, entry) = (fill.key.clone(), entry.clone());
        let rewritten =
            tokio::task::spawn_blocking(move || store.rewrite(&key, &entry, &meta, expires_at))
                .await;
        if !matches!(rewritten, Ok(Ok(()))) {
            // The headers stay as they were; the new expiry still counts.
            ctx.store.set_expiry(&fill.key, expires_at);
        }
        return FillEnd::NotModified;
    }
    // Only what can be used again is kept: a 200 (fresh for --valid at least), or another
    // status with some freshness (explicit, or heuristic from Last-Modified).
    let storable = policy::storable(
        policy_request.method(),
        policy_request.headers(),
        response.status(),
        response.headers(),
    ) && (response.status() == StatusCode::OK
        || !policy::freshness_lifetime(
            response.status(),
            response.headers(),
            ctx.valid,
            received.response_time,
        )
        .is_zero());
    let expires_at = expiry(response.status(), response.headers(), received, ctx.valid);
    let vary_names = policy::vary_names(response.headers()).unwrap_or_default();
    let vary = policy::vary_values(policy_request.headers(), &vary_names);
    // A response that varies is stored under its variant's key, beside the URL's other
    // variants; the registry's key may have been the URL's before its Vary was known.
    let primary = fill.key.primary();
    let entry_key = if vary.is_empty() {
        primary.clone()
    } else {
        primary.variant(&vary)
    };
    let storable = storable && ctx.store.may_add_variant(&primary, entry_key.hash());
    let initial_age = policy::current_age(response.headers(), received, received.response_time);
    let (parts, mut body) = response.into_parts();
    let content_length = headers::content_length(&parts.headers);
    let end_to_end = headers::end_to_end(&parts.headers);
    if !storable {
        // Not for the cache, nor for sharing (Set-Cookie, private, not 200): it goes to the
        // request that started the fill, as it comes.
        let _ = handoff.send(http::Response::from_parts(parts, body));
        return FillEnd::HandedOver;
    }
    // Held until the fill ends: by then the bytes are on disk or gone.
    let room = content_length.map(|length| (length, ctx.store.make_room(length)));
    if let Some((length, None)) = room {
        ctx.store.report_trouble(&format!(
            "no room for {length} bytes even after evicting everything"
        ));
        // Not stored, but not fetched twice either: the request that started the fill
        // streams this response itself.
        let _ = handoff.send(http::Response::from_parts(parts, body));
        return FillEnd::NoDisk;
    }
    let meta = EntryMeta {
        key: entry_key.as_str().to_string(),
        status: parts.status.as_u16(),
        headers: header_pairs(&end_to_end),
        stored_at: received.response_time,
        request_time: received.request_time,
        vary: vary.clone(),
    };
    let header = entry::encode_header(&meta, expires_at);
    let body_offset = header.len() as u64;
    let file = Arc::new(file);
    if let Err(e) = file.write_all_at(&header, 0) {
        ctx.store.report_trouble(&format!("cannot write: {e}"));
        return FillEnd::NoDisk;
    }
    // The announced length is given to the file and mapped before the first byte arrives,
    // so readers are sent slices of the page cache as the body is written into it.
    let mapped = content_length.and_then(|length| {
        crate::mapped::map_fill(&file, body_offset + length)
            .ok()
            .map(|whole| whole.slice(body_offset as usize..))
    });
    fill.publish(|p| {
        p.head = Some(Arc::new(FillHead {
            status: parts.status,
            headers: end_to_end,
            content_length,
            file: file.clone(),
            body_offset,
            body: mapped,
            vary,
            expires_at,
            upstream_time: asked.elapsed(),
            initial_age,
            received_at: received.response_time,
        }))
    });

    // A body of unknown length sets room aside a step at a time as it grows, evicting as it
    // goes; the bytes of earlier steps are on disk by then, where free space counts them.
    let mut step_room: Option<Reservation> = None;
    let mut set_aside = 0u64;
    let mut written = 0u64;
    loop {
        let frame = match tokio::time::timeout(ctx.idle_timeout, body.frame()).await {
            Err(_) => return failed("upstream stalled mid-body".into(), false, true),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return failed(
                    format!("upstream body: {}", crate::trouble::describe(&e)),
                    false,
                    false,
                );
            }
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let after = written + data.len() as u64;
        if let Some(expected) = content_length
            && after > expected
        {
            // Readers are handed at most the announced length (the file is mapped to it):
            // more than that is a broken answer, never a longer body.
            return failed(
                format!("upstream body longer than its Content-Length {expected}"),
                false,
                false,
            );
        }
        if content_length.is_none() && after > set_aside {
            let step = UNKNOWN_LENGTH_STEP.max(after - set_aside);
            // This step's bytes are written: free space counts them now, not the promise.
            drop(step_room.take());
            step_room = ctx.store.make_room(step);
            if step_room.is_none() {
                // Readers already have the first bytes: there is no handing this response
                // back, so they are aborted rather than ended short.
                ctx.store.report_trouble(&format!(
                    "no room past {written} bytes for a body of unknown length, even after evicting everything"
                ));
                return failed(
                    format!("no room in the cache past {written} bytes"),
                    false,
                    false,
                );
            }
            set_aside += step;
        }
        // A positional write to the page cache: microseconds, so it stays on this task
        // rather than paying a thread hand-off per frame.
        if let Err(e) = file.write_all_at(&data, body_offset + written) {
            // Readers follow the file, so they cannot be fed past this point: they are
            // aborted, and the next requests pass through until writing works again.
            ctx.store.report_trouble(&format!("cannot write: {e}"));
            return failed(format!("cache write: {e}"), false, false);
        }
        written += data.len() as u64;
        fill.publish(|p| p.written = written);
    }
    if let Some(expected) = content_length
        && expected != written
    {
        return failed(
            format!("upstream body ended at {written} of {expected} bytes"),
            false,
            false,
        );
    }
    // Readers have every byte now: release them before the commit's fsync.
    fill.publish(|p| p.end = Some(FillEnd::Complete));
    if fill.cancelled() {
        // An admin purged this key while it was fetched: the readers had it, the cache
        // does not keep it (the temp file goes with `cleanup`).
        return FillEnd::Complete;
    }
    let store = ctx.store.clone();
    let key = entry_key.clone();
    let committed =
        tokio::task::spawn_blocking(move || store.commit(&key, &temp_path, &file, written)).await;
    match committed {
        Ok(Ok(())) => {
            cleanup.0 = None;
            ctx.store
                .note_variant(&primary, vary_names, entry_key.hash());
            ctx.store.report_ok();
            if fill.cancelled() {
                // The purge came during the commit: it still wins.
                ctx.store.invalidate(&primary);
            }
        }
        Ok(Err(e)) => ctx.store.report_trouble(&format!("cannot commit: {e}")),
        Err(e) => eprintln!("autodeploy-cache: commit task failed: {e}"),
    }
    FillEnd::Complete
}

/// Removes a temp file that was not committed (readers keep their open handles).
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// When a response stops being fresh; a `no-cache` response is stored stale, so that every
/// use is validated first.
fn expiry(status: StatusCode, headers: &HeaderMap, received: Received, valid: Duration) -> u64 {
    if policy::must_validate_each_time(headers) {
        return 0;
    }
    policy::expires_at(status, headers, received, valid)
}

/// Headers as stored: every end-to-end header but `Content-Length` (the entry knows its body
/// length).
fn header_pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(n, _)| *n != http::header::CONTENT_LENGTH)
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

//! Answers built from what the cache holds: a committed entry (with its `Age`, client
//! validators answered with 304, a single range with 206/416, HEAD without a body), a fill in
//! progress, an upstream response relayed as is, and the proxy's own short text answers.

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Response, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper::body::Incoming;

use crate::body::{self, Delivery, Source};
use crate::fill::{FillHead, Progress};
use crate::headers;
use crate::range::{self, RangeRequest};
use crate::store::Entry;
use crate::upstream::ProxyBody;

/// An upstream response as it goes to the client: end-to-end headers, body streamed.
pub fn relay(response: Response<Incoming>) -> Response<ProxyBody> {
    let (mut parts, body) = response.into_parts();
    let length = headers::content_length(&parts.headers);
    parts.headers = headers::end_to_end(&parts.headers);
    if let Some(length) = length {
        parts.headers.insert(header::CONTENT_LENGTH, length.into());
    }
    Response::from_parts(parts, body.map_err(Into::into).boxed())
}

/// Unix seconds now.
pub fn unix_now() -> u64 {
    crate::policy::unix(SystemTime::now())
}

/// A short text answer of the proxy's own.
pub fn plain(status: StatusCode, text: &str) -> Response<ProxyBody> {
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

/// An empty body.
pub fn empty() -> ProxyBody {
    Empty::new().map_err(|e| match e {}).boxed()
}

/// Serves a committed entry: 304 for matching client validators, 206/416 for a range, no
/// body for HEAD.
pub fn serve_entry(
    delivery: &Arc<Delivery>,
    parts: &http::request::Parts,
    entry: Entry,
) -> Response<ProxyBody> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::from_u16(entry.meta.status).unwrap_or(StatusCode::OK);
    // Parsed once when the entry was opened; a clone per answer.
    *response.headers_mut() = (*entry.head).clone();
    // The age as RFC 9111 4.2.3 computes it, replacing the upstream's (5.1).
    response
        .headers_mut()
        .insert(header::AGE, entry.age(unix_now()).into());
    if response.status() != StatusCode::OK {
        // Ranges and validators are answered for stored 200s only; others go as stored.
        let length = entry.body_len;
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, length.into());
        if parts.method != Method::HEAD && length > 0 {
            *response.body_mut() = body::stream(delivery, Source::Entry(entry), 0, Some(length));
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
        *response.body_mut() = body::stream(delivery, Source::Entry(entry), start, Some(end));
    }
    response
}

/// Serves a fill in progress: the upstream's head, then the body as it arrives.
pub fn serve_fill(
    delivery: &Arc<Delivery>,
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
            let body = body::stream(delivery, Source::Fill { head, progress }, 0, None);
            *response.body_mut() = body;
            return response;
        }
    };
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, (end - start).into());
    if parts.method != Method::HEAD && end > start {
        *response.body_mut() =
            body::stream(delivery, Source::Fill { head, progress }, start, Some(end));
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
    crate::policy::parse_date(s).ok_or(())
}

//! What a request must be before anything acts on it: the checks that keep framing, target
//! and Host unambiguous, so that the upstream and the cache key see exactly one request, and
//! the upstream URI built from parts so that no target can reach another host or port.
//!
//! hyper already refuses malformed request lines, bad chunk framing, conflicting
//! `Content-Length` values and obs-fold. What it lets through and a proxy must not forward is
//! refused here, before the cache or the upstream is touched.

use http::header::{self, HeaderMap};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Method, StatusCode, Uri, Version};

/// Largest request head: request line plus headers. hyper's read buffer lets somewhat more
/// through, so this is what clients can rely on (nginx allows about 32 KiB by default).
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// A refusal: the status and the one-line reason sent to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// 400, 403 or 431.
    pub status: StatusCode,
    /// Text of the response body (no client input echoed).
    pub reason: &'static str,
}

fn refuse(status: StatusCode, reason: &'static str) -> Refusal {
    Refusal { status, reason }
}

/// How the request's target and Host relate to what is configured.
pub struct Target<'a> {
    /// The configured upstream `host:port`.
    pub upstream: &'a str,
    /// Our own listening address as `ip:port`, and its port.
    pub local: std::net::SocketAddr,
    /// Whether the client's Host is forwarded (and keyed).
    pub forward_host: bool,
}

/// Checks a request head. Returns the path and query to send upstream (origin-form, always
/// starting with `/`).
pub fn admit<'r>(
    method: &Method,
    uri: &'r Uri,
    version: Version,
    headers: &HeaderMap,
    target: &Target<'_>,
) -> Result<&'r PathAndQuery, Refusal> {
    if head_bytes(uri, headers) > MAX_HEAD_BYTES {
        return Err(refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "request header section over 64 KiB\n",
        ));
    }
    let path = origin_form(uri, target)?;
    if climbs_above_root(path.path()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the path climbs above / with dot segments\n",
        ));
    }
    check_host(version, headers, target.forward_host)?;
    check_framing(method, headers)?;
    Ok(path)
}

/// Request line plus header lines, as sent.
fn head_bytes(uri: &Uri, headers: &HeaderMap) -> usize {
    // Method, version, scheme and separators: a few bytes either way.
    let line = uri.path_and_query().map_or(1, |pq| pq.as_str().len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + 32;
    headers
        .iter()
        .map(|(n, v)| n.as_str().len() + v.len() + 4)
        .sum::<usize>()
        + line
}

/// The origin-form target of `uri`. Absolute-form is accepted only when it names the
/// upstream or this proxy (RFC 9112 3.2.2: a server must accept it); asterisk-form and
/// anything else are refused, since only `/...` targets can be appended to the upstream.
fn origin_form<'r>(uri: &'r Uri, target: &Target<'_>) -> Result<&'r PathAndQuery, Refusal> {
    if let Some(authority) = uri.authority() {
        let local = target.local;
        let ours = authority.as_str().eq_ignore_ascii_case(target.upstream)
            || authority.as_str() == local.to_string()
            || (authority.port_u16() == Some(local.port())
                && matches!(authority.host(), "localhost" | "127.0.0.1" | "[::1]"));
        if !ours {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                "absolute-form request for another host: this is not an open proxy\n",
            ));
        }
    }
    match uri.path_and_query() {
        Some(pq) if pq.path().starts_with('/') => Ok(pq),
        _ => Err(refuse(
            StatusCode::BAD_REQUEST,
            "the request target must be a path starting with /\n",
        )),
    }
}

/// Whether `..` segments (also percent-encoded) take the path above `/`. The upstream may
/// decode and resolve them (RFC 3986 5.2.4), so such a path names something outside the tree
/// the client could reach otherwise; nginx answers 400 too.
fn climbs_above_root(path: &str) -> bool {
    // Every hit passes here: most paths have no dot segment at all.
    if !path.contains('.') && !path.contains('%') {
        return false;
    }
    // Bytes, not str slices: a split inside a multi-byte character must not panic.
    let is_dot = |s: &[u8]| s == b"." || s.eq_ignore_ascii_case(b"%2e");
    let mut depth: i64 = 0;
    for segment in path.split('/').skip(1) {
        let bytes = segment.as_bytes();
        let dots = match bytes.len() {
            0 => 1,
            1 | 3 if is_dot(bytes) => 1,
            2 | 4 | 6 => {
                let (a, b) = bytes.split_at(if bytes[0] == b'.' {
                    1
                } else {
                    3.min(bytes.len())
                });
                if is_dot(a) && is_dot(b) { 2 } else { 0 }
            }
            _ => 0,
        };
        match dots {
            2 => {
                depth -= 1;
                if depth < 0 {
                    return true;
                }
            }
            1 => {}
            _ => depth += 1,
        }
    }
    false
}

/// RFC 9112 3.2: an HTTP/1.1 request has exactly one Host. With `--forward-host` the value
/// goes upstream and into the key, so it must also be a host name or address with an
/// optional port.
fn check_host(version: Version, headers: &HeaderMap, forward_host: bool) -> Result<(), Refusal> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "more than one Host header\n",
        ));
    }
    let Some(host) = host else {
        if version == Version::HTTP_11 || forward_host {
            return Err(refuse(StatusCode::BAD_REQUEST, "no Host header\n"));
        }
        return Ok(());
    };
    if forward_host && !valid_host(host.as_bytes()) {
        return Err(refuse(
            StatusCode::BAD_REQUEST,
            "the Host header is not a host name with an optional port\n",
        ));
    }
    Ok(())
}

/// A DNS name, IPv4 address or bracketed IPv6 address, with an optional port.
pub fn valid_host(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return false;
    };
    let Ok(authority) = text.parse::<Authority>() else {
        return false;
    };
    if authority.as_str() != text || text.contains('@') {
        return false;
    }
    let host = authority.host();
    if text.len() > host.len() && authority.port_u16().is_none() {
        return false;
    }
    if let Some(v6) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return v6.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Message framing a proxy can forward without ambiguity: `Transfer-Encoding` only as
/// `chunked` (other codings are refused, as RFC 9112 6.1 allows), and no body on GET or HEAD,
/// whose body would be neither forwarded nor part of the cache key.
fn check_framing(method: &Method, headers: &HeaderMap) -> Result<(), Refusal> {
    let codings: Vec<String> = headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").split(','))
        .map(|c| c.trim().to_ascii_lowercase())
        .collect();
    let chunked = match codings.as_slice() {
        [] => false,
        [only] if only == "chunked" => true,
        _ => {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "Transfer-Encoding other than chunked\n",
            ));
        }
    };
    if matches!(*method, Method::GET | Method::HEAD) {
        let length = headers
            .get(header::CONTENT_LENGTH)
            .map(|v| v.as_bytes() != b"0");
        if chunked || length == Some(true) {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "a GET or HEAD request with a body: the body would be neither forwarded nor cached\n",
            ));
        }
    }
    Ok(())
}

/// The upstream URI for an admitted target, built from parts so that nothing in the target
/// can change the scheme, host or port.
pub fn upstream_uri(
    scheme: &Scheme,
    authority: &Authority,
    path: &PathAndQuery,
) -> Result<Uri, http::Error> {
    Uri::builder()
        .scheme(scheme.clone())
        .authority(authority.clone())
        .path_and_query(path.clone())
        .build()
}

#[cfg(test)]
mod tests;

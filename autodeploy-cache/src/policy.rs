//! HTTP caching rules (RFC 9111, with RFC 5861's `stale-if-error` and `stale-while-revalidate`
//! and RFC 9213's `CDN-Cache-Control`) as pure functions of the
//! request, the response and `now`: what may be stored, for how long it is fresh, its age,
//! whether it may be served stale, whether a stored variant matches a request, and what an
//! unsafe request invalidates. No I/O and no clock: the callers pass the time, so every rule
//! has a unit test without a server or a sleep.
//!
//! Where the RFC leaves a choice to the cache, this one takes the conservative side for a
//! shared cache in front of Auto Deploy: responses with `Set-Cookie` are not stored (one
//! host's cookie is nobody else's). Variants are stored side by side under keys that include
//! their `Vary` values ([`crate::cache_key::CacheKey::variant`]), a bounded number per URL.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName};
use http::{Method, StatusCode};

/// The `Cache-Control` directives a shared cache acts on. Names are matched without regard
/// to case (RFC 9111 5.2); a directive that appears twice keeps its first value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Directives {
    /// `no-store`.
    pub no_store: bool,
    /// `no-cache` (unqualified, or with field names: both mean revalidate before each use).
    pub no_cache: bool,
    /// `private`.
    pub private: bool,
    /// `public`.
    pub public: bool,
    /// `must-revalidate`.
    pub must_revalidate: bool,
    /// `proxy-revalidate`.
    pub proxy_revalidate: bool,
    /// `max-age`.
    pub max_age: Option<u64>,
    /// `s-maxage`.
    pub s_maxage: Option<u64>,
    /// `stale-if-error` (RFC 5861).
    pub stale_if_error: Option<u64>,
    /// `stale-while-revalidate` (RFC 5861).
    pub stale_while_revalidate: Option<u64>,
}

/// RFC 9213's cache-control field for the caches of a CDN, which a gateway cache run by the
/// origin's operators is.
const CDN_CACHE_CONTROL: HeaderName = HeaderName::from_static("cdn-cache-control");

impl Directives {
    /// The directives of every `Cache-Control` line of `headers` (a request's).
    pub fn of(headers: &HeaderMap) -> Self {
        Self::of_field(headers, &header::CACHE_CONTROL)
    }

    /// A response's directives for this cache: those of `CDN-Cache-Control` when it is there
    /// and valid (RFC 9213 2.1: then `Cache-Control` is ignored, so an origin can give its
    /// gateway caches other rules than browsers), else those of `Cache-Control`.
    pub fn of_response(response: &HeaderMap) -> Self {
        Self::targeted(response).unwrap_or_else(|| Self::of(response))
    }

    /// The directives of `CDN-Cache-Control`, a Structured Fields dictionary (RFC 8941):
    /// `None` when it is absent or empty, is not a valid dictionary, or gives a directive we know a
    /// value of the wrong type (RFC 9213 2.1: such a field is ignored whole).
    fn targeted(response: &HeaderMap) -> Option<Self> {
        let lines: Vec<&str> = response
            .get_all(&CDN_CACHE_CONTROL)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<_>>()?;
        if lines.is_empty() {
            return None;
        }
        let joined = lines.join(", ");
        let dictionary: sfv::Dictionary = sfv::Parser::new(&joined).parse().ok()?;
        if dictionary.is_empty() {
            // Nothing said: Cache-Control still speaks.
            return None;
        }
        let mut d = Self::default();
        for (key, member) in &dictionary {
            let sfv::ListEntry::Item(item) = member else {
                continue;
            };
            let value = &item.bare_item;
            let seconds = value
                .as_integer()
                .and_then(|n| u64::try_from(i64::from(n)).ok());
            // `no-cache="Set-Cookie"` and the like are still that directive.
            let flag = value.as_boolean() == Some(true) || value.as_string().is_some();
            let (flag_field, seconds_field) = match key.as_str() {
                "no-store" => (Some(&mut d.no_store), None),
                "no-cache" => (Some(&mut d.no_cache), None),
                "private" => (Some(&mut d.private), None),
                "public" => (Some(&mut d.public), None),
                "must-revalidate" => (Some(&mut d.must_revalidate), None),
                "proxy-revalidate" => (Some(&mut d.proxy_revalidate), None),
                "max-age" => (None, Some(&mut d.max_age)),
                "s-maxage" => (None, Some(&mut d.s_maxage)),
                "stale-if-error" => (None, Some(&mut d.stale_if_error)),
                "stale-while-revalidate" => (None, Some(&mut d.stale_while_revalidate)),
                _ => (None, None),
            };
            if let Some(field) = flag_field {
                *field = flag;
                if !flag {
                    return None;
                }
            }
            if let Some(field) = seconds_field {
                *field = Some(seconds?);
            }
        }
        Some(d)
    }

    fn of_field(headers: &HeaderMap, field: &HeaderName) -> Self {
        let mut d = Self::default();
        for value in headers.get_all(field) {
            let Ok(value) = value.to_str() else { continue };
            for part in split_list(value) {
                let (name, arg) = match part.split_once('=') {
                    Some((n, a)) => (n.trim(), Some(a.trim().trim_matches('"'))),
                    None => (part.trim(), None),
                };
                let seconds = || arg.and_then(delta_seconds);
                // A freshness lifetime that is not delta-seconds (`-1`, `'60'`, none) makes
                // the response stale rather than leaving it to heuristics or `--valid`: the
                // origin meant to limit its reuse, and reuse is what it cannot have wrong.
                let lifetime = || Some(seconds().unwrap_or(0));
                match name.to_ascii_lowercase().as_str() {
                    "no-store" => d.no_store = true,
                    "no-cache" => d.no_cache = true,
                    "private" => d.private = true,
                    "public" => d.public = true,
                    "must-revalidate" => d.must_revalidate = true,
                    "proxy-revalidate" => d.proxy_revalidate = true,
                    "max-age" => d.max_age = d.max_age.or_else(lifetime),
                    "s-maxage" => d.s_maxage = d.s_maxage.or_else(lifetime),
                    "stale-if-error" => d.stale_if_error = d.stale_if_error.or_else(seconds),
                    "stale-while-revalidate" => {
                        d.stale_while_revalidate = d.stale_while_revalidate.or_else(seconds);
                    }
                    _ => {}
                }
            }
        }
        d
    }
}

/// Splits a list on commas outside quoted strings.
fn split_list(value: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&value[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&value[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// `delta-seconds` (RFC 9111 1.2.2): digits only; too large a value is the largest we keep.
fn delta_seconds(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(text.parse().unwrap_or(u64::from(u32::MAX)))
}

/// Statuses a cache may store with heuristic freshness (RFC 9110 15.1).
fn heuristically_cacheable(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 203 | 204 | 206 | 300 | 301 | 308 | 404 | 405 | 410 | 414 | 501
    )
}

/// Whether `response` to `request` may be stored by a shared cache (RFC 9111 3, 3.5).
pub fn storable(
    method: &Method,
    request: &HeaderMap,
    status: StatusCode,
    response: &HeaderMap,
) -> bool {
    if *method != Method::GET {
        return false;
    }
    let req = Directives::of(request);
    let res = Directives::of_response(response);
    if req.no_store || res.no_store || res.private {
        return false;
    }
    // Final, understood statuses only; partial content is never stored whole.
    if status.is_informational()
        || status == StatusCode::NOT_MODIFIED
        || status == StatusCode::PARTIAL_CONTENT
        || !(200..600).contains(&status.as_u16())
    {
        return false;
    }
    if response.contains_key(header::SET_COOKIE) || vary_names(response).is_none() {
        return false;
    }
    // 3.5: a response to an authenticated request is shared only when it says it may be.
    if request.contains_key(header::AUTHORIZATION)
        && !(res.public || res.s_maxage.is_some() || res.must_revalidate)
    {
        return false;
    }
    let explicit = res.max_age.is_some()
        || res.s_maxage.is_some()
        || response.contains_key(header::EXPIRES)
        || res.public;
    explicit || heuristically_cacheable(status)
}

/// When and how the response arrived, as stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Unix seconds when the request was sent.
    pub request_time: u64,
    /// Unix seconds when the response arrived.
    pub response_time: u64,
}

/// How long `response` is fresh (RFC 9111 4.2.1): `s-maxage`, `max-age`, `Expires` - `Date`,
/// or, for heuristically cacheable statuses without any of them, `default` for 200 (nginx's
/// `proxy_cache_valid`, our `--valid`) and 10% of the time since `Last-Modified` for the
/// others. An `Expires` that does not parse is in the past (5.3); a `Date` that does not is
/// when the response arrived, `received_at` (RFC 9110 6.6.1).
pub fn freshness_lifetime(
    status: StatusCode,
    response: &HeaderMap,
    default: Duration,
    received_at: u64,
) -> Duration {
    let d = Directives::of_response(response);
    if let Some(s) = d.s_maxage.or(d.max_age) {
        return Duration::from_secs(s);
    }
    if let Some(expires) = response.get(header::EXPIRES) {
        let expires = expires.to_str().ok().and_then(parse_date);
        let date =
            date_of(response).or_else(|| Some(UNIX_EPOCH + Duration::from_secs(received_at)));
        return match (expires, date) {
            (Some(e), Some(d)) => e.duration_since(d).unwrap_or_default(),
            _ => Duration::ZERO,
        };
    }
    if !heuristically_cacheable(status) && !d.public {
        return Duration::ZERO;
    }
    if status == StatusCode::OK {
        return default;
    }
    let last_modified = response
        .get(header::LAST_MODIFIED)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date);
    match (last_modified, date_of(response)) {
        (Some(lm), Some(date)) => date.duration_since(lm).unwrap_or_default() / 10,
        _ => Duration::ZERO,
    }
}

/// An HTTP date (RFC 9110 5.6.7), read as leniently as that section asks of recipients: any
/// of the three formats, names in any case, and a weekday that does not match the date (the
/// date wins). What still does not parse is no date.
pub fn parse_date(text: &str) -> Option<SystemTime> {
    if let Ok(time) = httpdate::parse_http_date(text) {
        return Some(time);
    }
    let text = canonical_case(text.trim());
    if let Ok(time) = httpdate::parse_http_date(&text) {
        return Some(time);
    }
    // The weekday is the first word; httpdate insists that it matches, so each is tried.
    let rest = &text[text.find([',', ' '])?..];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let long = text.find([',', ' '])? > 3;
    DAYS.iter().find_map(|day| {
        let day = if long { day } else { &day[..3] };
        httpdate::parse_http_date(&format!("{day}{rest}")).ok()
    })
}

/// `text` with each run of letters as the date formats spell names: `GMT`, else a capital
/// and small letters (`THU` -> `Thu`, `aug` -> `Aug`).
fn canonical_case(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(|c: char| c.is_ascii_alphabetic()) {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        if word.eq_ignore_ascii_case("gmt") {
            out.push_str("GMT");
        } else {
            out.push_str(&word[..1].to_ascii_uppercase());
            out.push_str(&word[1..].to_ascii_lowercase());
        }
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

fn date_of(response: &HeaderMap) -> Option<SystemTime> {
    response
        .get(header::DATE)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_date)
}

/// The `Age` header's value: the first member of a list that is `delta-seconds`; anything
/// else is no age at all.
pub fn age_header(response: &HeaderMap) -> Option<u64> {
    let value = response.get(header::AGE)?.to_str().ok()?;
    delta_seconds(value.split(',').next()?.trim())
}

/// The response's current age at `now` (RFC 9111 4.2.3).
pub fn current_age(response: &HeaderMap, received: Received, now: u64) -> u64 {
    let date = date_of(response).map(unix);
    let apparent_age = date.map_or(0, |d| received.response_time.saturating_sub(d));
    let response_delay = received.response_time.saturating_sub(received.request_time);
    let corrected_age_value = age_header(response)
        .unwrap_or(0)
        .saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    let resident_time = now.saturating_sub(received.response_time);
    corrected_initial_age.saturating_add(resident_time)
}

/// Unix seconds at which a response received at `received` stops being fresh.
pub fn expires_at(
    status: StatusCode,
    response: &HeaderMap,
    received: Received,
    default: Duration,
) -> u64 {
    let lifetime = freshness_lifetime(status, response, default, received.response_time).as_secs();
    let age_at_arrival = current_age(response, received, received.response_time);
    received
        .response_time
        .saturating_add(lifetime)
        .saturating_sub(age_at_arrival)
}

/// Whether a stored response must be validated before every use (`no-cache`).
pub fn must_validate_each_time(response: &HeaderMap) -> bool {
    Directives::of_response(response).no_cache
}

/// Whether a stored response that expired at `expired_at` may be served when the upstream
/// fails at `now` (RFC 9111 4.2.4 and 5.2.2; RFC 5861 4). `must-revalidate`,
/// `proxy-revalidate`, `s-maxage` (which implies it for shared caches) and `no-cache` forbid
/// it; the response's `stale-if-error` bounds it, else `limit` (`--stale-if-error`, `None`
/// for no bound).
pub fn may_serve_stale_on_error(
    response: &HeaderMap,
    expired_at: u64,
    now: u64,
    limit: Option<Duration>,
) -> bool {
    let d = Directives::of_response(response);
    if forbids_stale(&d) {
        return false;
    }
    let stale_for = now.saturating_sub(expired_at);
    match d.stale_if_error.map(Duration::from_secs).or(limit) {
        Some(bound) => stale_for <= bound.as_secs(),
        None => true,
    }
}

/// Whether a stored response that expired at `expired_at` may be served at `now` while it is
/// refreshed in the background: within its `stale-while-revalidate` window (RFC 5861 3), and
/// unless it forbids stale service as for [`may_serve_stale_on_error`].
pub fn may_serve_stale_while_revalidating(response: &HeaderMap, expired_at: u64, now: u64) -> bool {
    let d = Directives::of_response(response);
    !forbids_stale(&d)
        && d.stale_while_revalidate
            .is_some_and(|window| now.saturating_sub(expired_at) <= window)
}

/// `must-revalidate`, `proxy-revalidate`, `s-maxage` (which implies it for shared caches) and
/// `no-cache` each forbid serving the response stale.
fn forbids_stale(d: &Directives) -> bool {
    d.must_revalidate || d.proxy_revalidate || d.s_maxage.is_some() || d.no_cache
}

/// The request header names a response varies on, lower case; `None` for `Vary: *` (which
/// no request matches, so it is not stored).
pub fn vary_names(response: &HeaderMap) -> Option<Vec<String>> {
    let mut names = Vec::new();
    for value in response.get_all(header::VARY) {
        let value = value.to_str().ok()?;
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if name == "*" {
                return None;
            }
            let name = name.to_ascii_lowercase();
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names.sort();
    Some(names)
}

/// The request's values of `names`, as stored with a variant: every line of a header joined
/// with `, `, white space around commas removed (RFC 9111 4.1 allows this normalization).
pub fn vary_values(request: &HeaderMap, names: &[String]) -> Vec<(String, String)> {
    names
        .iter()
        .map(|name| {
            let value = HeaderName::from_bytes(name.as_bytes())
                .ok()
                .map(|n| {
                    request
                        .get_all(n)
                        .iter()
                        .map(|v| {
                            String::from_utf8_lossy(v.as_bytes())
                                .split(',')
                                .map(str::trim)
                                .collect::<Vec<_>>()
                                .join(",")
                        })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default();
            (name.clone(), value)
        })
        .collect()
}

/// Whether a variant stored with `stored` values (for its `Vary` names) serves `request`.
pub fn variant_matches(stored: &[(String, String)], request: &HeaderMap) -> bool {
    let names: Vec<String> = stored.iter().map(|(n, _)| n.clone()).collect();
    vary_values(request, &names) == stored
}

/// Whether a response to `method` invalidates the stored response for the same URL (RFC 9111
/// 4.4): an unsafe method answered with a success or a redirect.
pub fn invalidates(method: &Method, status: StatusCode) -> bool {
    let unsafe_method = !matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    );
    unsafe_method && (status.is_success() || status.is_redirection())
}

/// The stored headers updated with a 304's (RFC 9111 4.3.4): every header the 304 carries
/// replaces the stored ones of that name, except the framing headers of the stored body.
pub fn updated_headers(stored: &HeaderMap, not_modified: &HeaderMap) -> HeaderMap {
    let mut out = stored.clone();
    let keep = [
        header::CONTENT_LENGTH,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
        header::CONTENT_RANGE,
    ];
    for name in not_modified.keys() {
        if keep.contains(name) {
            continue;
        }
        out.remove(name);
        for value in not_modified.get_all(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out
}

/// Unix seconds of `t`.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;

//! Header rules of a proxy: hop-by-hop headers (RFC 9110 7.6.1) and the forwarding headers
//! added for the upstream.

use std::net::SocketAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// Headers that concern one connection only, besides those a `Connection` header names.
const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
    "proxy-authenticate",
    "proxy-authorization",
];

/// A copy of `headers` without hop-by-hop headers, including every header named in
/// `Connection`. Done before adding forwarding headers, so that a client sending
/// `Connection: X-Forwarded-For` cannot strip the proxy's own.
pub fn end_to_end(headers: &HeaderMap) -> HeaderMap {
    let named: Vec<String> = headers
        .get_all(header::CONNECTION)
        .iter()
        .chain(headers.get_all("proxy-connection").iter())
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|name| name.trim().to_ascii_lowercase())
        .collect();
    let mut out = HeaderMap::with_capacity(headers.len());
    for (name, value) in headers {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n) || named.iter().any(|c| c == n) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// `Content-Length` as a number, if present and valid, and if it frames the message: with a
/// `Transfer-Encoding` the chunks do (RFC 9112 6.3), and a length beside them is a lie a
/// proxy must not pass on or believe (hyper reads such a body by its chunks).
pub fn content_length(headers: &HeaderMap) -> Option<u64> {
    if headers.contains_key(header::TRANSFER_ENCODING) {
        return None;
    }
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Adds `X-Real-IP`, `X-Forwarded-For` (appended to the client's list), `X-Forwarded-Host`,
/// `X-Forwarded-Proto` and `Via`, as the nginx configuration users replace does.
pub fn add_forwarding(
    headers: &mut HeaderMap,
    client: SocketAddr,
    client_host: Option<&HeaderValue>,
) {
    let ip = client.ip().to_string();
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(list) if !list.trim().is_empty() => format!("{list}, {ip}"),
        _ => ip.clone(),
    };
    let set = |headers: &mut HeaderMap, name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    };
    set(headers, "x-real-ip", &ip);
    set(headers, "x-forwarded-for", &forwarded_for);
    match client_host {
        Some(host) => {
            headers.insert(HeaderName::from_static("x-forwarded-host"), host.clone());
        }
        None => {
            headers.remove("x-forwarded-host");
        }
    }
    set(headers, "x-forwarded-proto", "http");
    let via = match headers.get(header::VIA).and_then(|v| v.to_str().ok()) {
        Some(v) => format!("{v}, 1.1 autodeploy-cache"),
        None => "1.1 autodeploy-cache".to_string(),
    };
    set(headers, "via", &via);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "keep-alive, X-Forwarded-For, x-secret".parse().unwrap(),
        );
        h.insert("x-forwarded-for", "1.2.3.4".parse().unwrap());
        h.insert("x-secret", "s".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("accept", "*/*".parse().unwrap());
        let mut out = end_to_end(&h);
        assert_eq!(out.len(), 1);
        assert!(out.contains_key("accept"));
        add_forwarding(
            &mut out,
            "10.0.0.9:5555".parse().unwrap(),
            Some(&"proxy.lab".parse().unwrap()),
        );
        assert_eq!(out["x-forwarded-for"], "10.0.0.9");
        assert_eq!(out["x-real-ip"], "10.0.0.9");
        assert_eq!(out["x-forwarded-host"], "proxy.lab");
        assert_eq!(out["via"], "1.1 autodeploy-cache");
    }

    #[test]
    fn forwarded_for_is_appended() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1".parse().unwrap());
        add_forwarding(&mut h, "10.0.0.9:1".parse().unwrap(), None);
        assert_eq!(h["x-forwarded-for"], "1.1.1.1, 10.0.0.9");
    }
}

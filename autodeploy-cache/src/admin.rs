//! The admin listener (`--admin-listen`, off by default and never on the hosts' port):
//! `GET /metrics` (Prometheus text), `GET /healthz` (200 when the proxy can serve, 503 while
//! the cache directory is unwritable or during a drain), `POST /purge?url=PATH` (with
//! `--forward-host`, every host's copy, or `&host=NAME` for one) and `POST /purge?prefix=PATH`
//! (entries leave the index and the disk, and fills under way for them are not committed;
//! transfers already under way finish from their open files), and `GET /entries` (JSON).
//!
//! Anyone who reaches it could empty the cache in the middle of a boot storm, so: beyond
//! loopback it needs `--admin-token-file` (every endpoint but `/healthz` then wants
//! `Authorization: Bearer <token>`, compared in constant time), and a request with an `Origin`
//! header (a web page in an admin's browser) is refused.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use subtle::ConstantTimeEq as _;

use crate::cache_key::CacheKey;
use crate::error::Error;
use crate::metrics::Snapshot;
use crate::proxy::Proxy;
use crate::upstream::ProxyBody;

/// Reads the admin token: one word in a file only its owner can read.
pub fn read_token(path: &std::path::Path) -> Result<String, Error> {
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let named = |e: std::io::Error| Error::Config(format!("--admin-token-file {shown}: {e}"));
    let text = std::fs::read_to_string(path).map_err(named)?;
    let mode = std::fs::metadata(path).map_err(named)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "--admin-token-file {shown} is readable by others (mode {:03o}): run chmod 600 {shown}",
            mode & 0o777
        )));
    }
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Config(format!(
            "--admin-token-file {shown} must hold one token: no spaces, not empty"
        )));
    }
    Ok(token.to_string())
}

/// Whether `request` carries `Authorization: Bearer <token>`.
fn authorized<B>(request: &Request<B>, token: &str) -> bool {
    let Some(given) = request.headers().get(http::header::AUTHORIZATION) else {
        return false;
    };
    let given = given.as_bytes();
    let Some(split) = given.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, credentials) = (&given[..split], given[split + 1..].trim_ascii());
    scheme.eq_ignore_ascii_case(b"bearer") && bool::from(credentials.ct_eq(token.as_bytes()))
}

/// Answers one admin request. `draining` is set once SIGTERM stopped the proxy accepting;
/// `token` is what requests must carry, if any.
pub fn handle<B>(
    proxy: &Proxy,
    draining: &AtomicBool,
    token: Option<&str>,
    request: &Request<B>,
) -> Response<ProxyBody> {
    if request.headers().contains_key(http::header::ORIGIN) {
        return text(
            StatusCode::FORBIDDEN,
            "requests from web pages (with an Origin header) are not accepted\n",
        );
    }
    let path = request.uri().path();
    if let Some(token) = token
        && path != "/healthz"
        && !authorized(request, token)
    {
        let mut response = text(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token (--admin-token-file)\n",
        );
        response.headers_mut().insert(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return response;
    }
    let query = request.uri().query().unwrap_or("");
    match (request.method(), path) {
        (&Method::GET, "/metrics") => {
            let store = proxy.store();
            let text = proxy.metrics().render(Snapshot {
                fills: proxy.fills().len(),
                readers: proxy.delivery().readers(),
                entries: store.len(),
                disk_bytes: store.size(),
                disk_trouble: store.in_trouble(),
            });
            answer(
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        (&Method::GET, "/healthz") => {
            if draining.load(Ordering::Relaxed) {
                text(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else if proxy.store().in_trouble() {
                text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "cannot store in the cache directory (full or read-only)\n",
                )
            } else {
                text(StatusCode::OK, "ok\n")
            }
        }
        (&Method::POST, "/purge") => purge(proxy, query),
        (&Method::GET, "/entries") => entries(proxy),
        (_, "/metrics" | "/healthz" | "/purge" | "/entries") => {
            let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n");
            let allow = if path == "/purge" { "POST" } else { "GET" };
            response
                .headers_mut()
                .insert(http::header::ALLOW, http::HeaderValue::from_static(allow));
            response
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "GET /metrics, GET /healthz, POST /purge?url=PATH or ?prefix=PATH, GET /entries\n",
        ),
    }
}

fn purge(proxy: &Proxy, query: &str) -> Response<ProxyBody> {
    let upstream = &proxy.config().upstream_authority;
    let param = |name: &str| {
        query
            .split('&')
            .filter_map(|p| p.split_once('='))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| percent_decode(v))
    };
    let (stored, fills) = match (param("url"), param("prefix"), param("host")) {
        (Some(Some(url)), None, host) if url.starts_with('/') => {
            let host = match host {
                Some(Some(host)) if proxy.config().forward_host => Some(host),
                None => None,
                _ => {
                    return text(
                        StatusCode::BAD_REQUEST,
                        "host= is for --forward-host, where each Host has its own copy\n",
                    );
                }
            };
            match host {
                Some(host) => {
                    let key = CacheKey::new(upstream, &url, Some(&host));
                    let primary = key.as_str().to_string();
                    let fills = proxy.fills().cancel(|k| k.primary().as_str() == primary);
                    (proxy.store().invalidate(&key), fills)
                }
                None => {
                    // Without a host, the URL's copies for every Host (--forward-host keys
                    // them by Host).
                    let plain = CacheKey::new(upstream, &url, None);
                    let per_host = format!("{upstream}{url}\nhost:");
                    let plain_key = plain.as_str().to_string();
                    let fills = proxy.fills().cancel(|k| {
                        let primary = k.primary();
                        primary.as_str() == plain_key || primary.as_str().starts_with(&per_host)
                    });
                    let stored =
                        proxy.store().invalidate(&plain) + proxy.store().purge_prefix(&per_host);
                    (stored, fills)
                }
            }
        }
        (None, Some(Some(prefix)), None) if prefix.starts_with('/') => {
            let prefix = format!("{upstream}{prefix}");
            let fills = proxy.fills().cancel(|k| k.as_str().starts_with(&prefix));
            (proxy.store().purge_prefix(&prefix), fills)
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "give url=/path (and host=NAME with --forward-host) or prefix=/path, percent-encoded\n",
            );
        }
    };
    answer(
        StatusCode::OK,
        "application/json",
        format!(
            "{}\n",
            serde_json::json!({ "purged": stored + fills, "entries": stored, "fills": fills })
        ),
    )
}

fn entries(proxy: &Proxy) -> Response<ProxyBody> {
    let upstream = &proxy.config().upstream_authority;
    let now = SystemTime::now();
    let list: Vec<serde_json::Value> = proxy
        .store()
        .entries()
        .into_iter()
        .map(|(key, size, stored, hits)| {
            let path = key.strip_prefix(upstream.as_str()).unwrap_or(&key);
            serde_json::json!({
                "key": path,
                "size": size,
                "age_secs": now.duration_since(stored).unwrap_or_default().as_secs(),
                "hits": hits,
            })
        })
        .collect();
    answer(
        StatusCode::OK,
        "application/json",
        format!("{}\n", serde_json::Value::Array(list)),
    )
}

/// `%XX` decoded; `None` for a broken escape or non-UTF-8.
fn percent_decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn text(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    answer(status, "text/plain; charset=utf-8", body.to_string())
}

fn answer(status: StatusCode, content_type: &'static str, body: String) -> Response<ProxyBody> {
    let mut response = Response::new(Full::new(Bytes::from(body)).map_err(|e| match e {}).boxed());
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    response
}

/// Serves the admin listener until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    draining: Arc<AtomicBool>,
    token: Option<String>,
) {
    let token: Option<Arc<str>> = token.map(Arc::from);
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let (proxy, draining, token) = (proxy.clone(), draining.clone(), token.clone());
        let service = hyper::service::service_fn(move |request| {
            let response = handle(&proxy, &draining, token.as_deref(), &request);
            async move { Ok::<_, std::convert::Infallible>(response) }
        });
        tokio::spawn(
            http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(std::time::Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn purge_values_are_percent_decoded() {
        assert_eq!(percent_decode("/a%20b%3Fc=1").as_deref(), Some("/a b?c=1"));
        assert_eq!(percent_decode("/x%2").as_deref(), None);
        assert_eq!(percent_decode("/x%zz").as_deref(), None);
        assert_eq!(percent_decode("%ff").as_deref(), None, "not UTF-8");
    }
}

//! The admin listener (`--admin-listen`, off by default and never on the hosts' port):
//! `GET /metrics` (Prometheus text), `GET /healthz` (200 when the proxy can serve, 503 while
//! the cache directory is unwritable or during a drain), `POST /purge?url=PATH` and
//! `POST /purge?prefix=PATH` (entries leave the index and the disk; transfers already under
//! way finish from their open files), and `GET /entries` (JSON).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full};

use crate::cache_key::CacheKey;
use crate::metrics::{METRICS, Snapshot};
use crate::proxy::Proxy;
use crate::upstream::ProxyBody;

/// Answers one admin request. `draining` is set once SIGTERM stopped the proxy accepting.
pub fn handle<B>(
    proxy: &Proxy,
    draining: &AtomicBool,
    request: &Request<B>,
) -> Response<ProxyBody> {
    let query = request.uri().query().unwrap_or("");
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/metrics") => {
            let store = proxy.store();
            let text = METRICS.render(Snapshot {
                fills: proxy.fills().len(),
                readers: crate::body::readers(),
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
            text(StatusCode::METHOD_NOT_ALLOWED, "wrong method\n")
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
    let purged = match (param("url"), param("prefix")) {
        (Some(Some(url)), None) if url.starts_with('/') => proxy
            .store()
            .invalidate(&CacheKey::new(upstream, &url, None)),
        (None, Some(Some(prefix))) if prefix.starts_with('/') => {
            proxy.store().purge_prefix(&format!("{upstream}{prefix}"))
        }
        _ => {
            return text(
                StatusCode::BAD_REQUEST,
                "give url=/path or prefix=/path (percent-encoded)\n",
            );
        }
    };
    answer(
        StatusCode::OK,
        "application/json",
        format!("{}\n", serde_json::json!({ "purged": purged })),
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
) {
    use hyper::server::conn::http1;
    use hyper_util::rt::{TokioIo, TokioTimer};
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            continue;
        };
        let (proxy, draining) = (proxy.clone(), draining.clone());
        let service = hyper::service::service_fn(move |request| {
            let response = handle(&proxy, &draining, &request);
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

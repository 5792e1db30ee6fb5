//! A fake Auto Deploy origin on 127.0.0.1 over HTTPS (a test CA made with rcgen). It serves
//! deterministic bodies of any size, generated rather than stored, and its behaviour is chosen
//! per request by the query: `/blob/<size>?seed=&rate=&cut=&stall=&status=&cc=&cdn=&cookie=&etag=
//! &chunked=&lm=&vary=&age=`. With `vary` the body depends on the request's `Accept-Encoding`
//! (seed + 1000 when it names gzip) and says so in `Vary`; a 304 carries `x-validated: <n>`,
//! the number of requests for the target so far. It counts requests and bytes per path and
//! records request headers.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::{Body, Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// Byte `i` of the body with `seed`: cheap, deterministic, and different for every offset
/// within a 4 GiB window, so a misplaced chunk cannot go unnoticed.
pub fn byte_at(seed: u64, i: u64) -> u8 {
    let x = i.wrapping_add(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    (x ^ (x >> 8) ^ (x >> 16) ^ (x >> 24)) as u8
}

/// The expected body bytes `start..end` for `seed`.
pub fn expected(seed: u64, start: u64, end: u64) -> Vec<u8> {
    (start..end).map(|i| byte_at(seed, i)).collect()
}

/// One request the origin saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    pub headers: HeaderMap,
    pub body_len: usize,
}

#[derive(Default)]
struct State {
    /// Answer every request with 503, as a vCenter whose Auto Deploy service is down.
    failing: bool,
    seen: Vec<Seen>,
    sent: HashMap<String, u64>,
    finished: HashMap<String, Instant>,
}

/// A running origin.
pub struct Origin {
    pub port: u16,
    pub ca_file: PathBuf,
    state: Arc<Mutex<State>>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::watch::Sender<bool>,
    tls: Arc<rustls::ServerConfig>,
}

async fn serve(
    port: u16,
    tls: Arc<rustls::ServerConfig>,
    state: Arc<Mutex<State>>,
) -> (
    u16,
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let acceptor = acceptor.clone();
            let state = state.clone();
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, Infallible>(answer(req, state).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), service);
                // Stopping the origin drops every connection, pooled ones included.
                tokio::select! {
                    _ = connection => {}
                    _ = stopped.wait_for(|s| *s) => {}
                }
            });
        }
    });
    (port, task, stop)
}

impl Origin {
    /// Starts an origin; its CA goes into `dir`.
    pub async fn start(dir: &Path) -> Self {
        let ca_file = dir.join("origin-ca.pem");
        let tls = tls_config(&ca_file);
        let state = Arc::new(Mutex::new(State::default()));
        let (port, task, stop) = serve(0, tls.clone(), state.clone()).await;
        Self {
            port,
            ca_file,
            state,
            task,
            stop,
            tls,
        }
    }

    /// Stops listening and drops every open connection, as a vCenter restart would.
    pub fn stop(&self) {
        self.task.abort();
        let _ = self.stop.send(true);
    }

    /// Listens again on the same port with the same certificate.
    pub async fn restart(&mut self) {
        let (_, task, stop) = serve(self.port, self.tls.clone(), self.state.clone()).await;
        self.task = task;
        self.stop = stop;
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Makes the origin answer 503 to everything (or recover).
    pub fn set_failing(&self, failing: bool) {
        self.state.lock().unwrap().failing = failing;
    }

    /// Requests received for `target` (path and query).
    pub fn count(&self, target: &str) -> usize {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.target == target)
            .count()
    }

    /// All requests received.
    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Body bytes sent for `target`.
    pub fn sent(&self, target: &str) -> u64 {
        self.state
            .lock()
            .unwrap()
            .sent
            .get(target)
            .copied()
            .unwrap_or(0)
    }

    /// When the origin sent the last byte of `target`'s body.
    pub fn finished(&self, target: &str) -> Option<Instant> {
        self.state.lock().unwrap().finished.get(target).copied()
    }
}

fn tls_config(ca_file: &Path) -> Arc<rustls::ServerConfig> {
    let (pem, config) = super::test_ca::generate("fake VMCA");
    std::fs::write(ca_file, pem).unwrap();
    config
}

async fn answer(request: Request<Incoming>, state: Arc<Mutex<State>>) -> Response<GenBody> {
    let target = request
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |pq| pq.to_string());
    let method = request.method().to_string();
    let headers = request.headers().clone();
    let body = request
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    state.lock().unwrap().seen.push(Seen {
        method: method.clone(),
        target: target.clone(),
        headers: headers.clone(),
        body_len: body.len(),
    });
    if state.lock().unwrap().failing {
        return Response::builder()
            .status(503)
            .body(GenBody::empty(state, target))
            .unwrap();
    }
    let query: HashMap<String, String> = request_query(&target);
    let num = |k: &str| query.get(k).and_then(|v| v.parse::<u64>().ok());
    let path = target.split('?').next().unwrap_or("/");
    let mut response = Response::builder();
    if method == "POST" {
        // Echo: the body's length and SHA-256, so a test can check it passed through whole.
        use sha2::Digest as _;
        let digest: String = sha2::Sha256::digest(&body)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        return response
            .status(201)
            .header("x-body-len", body.len())
            .header("x-body-sha256", digest)
            .body(GenBody::empty(state, target))
            .unwrap();
    }
    let Some(size) = path
        .strip_prefix("/blob/")
        .and_then(|s| s.parse::<u64>().ok())
    else {
        return response
            .status(404)
            .body(GenBody::empty(state, target))
            .unwrap();
    };
    let status = num("status").unwrap_or(200) as u16;
    if let Some(cc) = query.get("cc") {
        response = response.header("cache-control", cc.replace("%20", " "));
    }
    if let Some(cdn) = query.get("cdn") {
        response = response.header("cdn-cache-control", cdn.replace("%20", " "));
    }
    if query.contains_key("cookie") {
        response = response.header("set-cookie", "session=abc");
    }
    if let Some(etag) = query.get("etag") {
        let tag = format!("\"{etag}\"");
        if headers
            .get("if-none-match")
            .is_some_and(|v| v.to_str().unwrap_or("") == tag)
        {
            let seen = state
                .lock()
                .unwrap()
                .seen
                .iter()
                .filter(|s| s.target == target)
                .count();
            return response
                .status(304)
                .header("etag", tag)
                .header("x-validated", seen)
                .body(GenBody::empty(state, target))
                .unwrap();
        }
        response = response.header("etag", tag);
    }
    if query.contains_key("vary") {
        response = response.header("vary", "Accept-Encoding");
    }
    if let Some(age) = query.get("age") {
        response = response.header("age", age.as_str());
    }
    if query.contains_key("lm") {
        response = response.header("last-modified", "Mon, 01 Jan 2024 00:00:00 GMT");
    }
    if !query.contains_key("chunked") {
        response = response.header("content-length", size);
    }
    if method == "HEAD" {
        return response
            .status(status)
            .body(GenBody::empty(state, target))
            .unwrap();
    }
    let gzip = headers
        .get("accept-encoding")
        .is_some_and(|v| v.to_str().unwrap_or("").contains("gzip"));
    let variant = if query.contains_key("vary") && gzip {
        1000
    } else {
        0
    };
    let body = GenBody {
        seed: num("seed").unwrap_or(0) + variant,
        pos: 0,
        end: num("cut").unwrap_or(size).min(size),
        stall_at: num("stall"),
        rate: num("rate"),
        started: Instant::now(),
        sleep: None,
        state,
        target,
    };
    response
        .status(StatusCode::from_u16(status).unwrap())
        .body(body)
        .unwrap()
}

fn request_query(target: &str) -> HashMap<String, String> {
    target
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect()
}

/// A generated body, optionally rate-limited, cut short (the connection is then reset) or
/// stalled.
pub struct GenBody {
    seed: u64,
    pos: u64,
    end: u64,
    stall_at: Option<u64>,
    rate: Option<u64>,
    started: Instant,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    state: Arc<Mutex<State>>,
    target: String,
}

impl GenBody {
    fn empty(state: Arc<Mutex<State>>, target: String) -> Self {
        Self {
            seed: 0,
            pos: 0,
            end: 0,
            stall_at: None,
            rate: None,
            started: Instant::now(),
            sleep: None,
            state,
            target,
        }
    }
}

impl Body for GenBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = &mut *self;
        if let Some(sleep) = &mut this.sleep {
            if sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            this.sleep = None;
        }
        if this.stall_at.is_some_and(|s| this.pos >= s) {
            this.sleep = Some(Box::pin(tokio::time::sleep(Duration::from_secs(3600))));
            return this
                .sleep
                .as_mut()
                .unwrap()
                .as_mut()
                .poll(cx)
                .map(|()| None);
        }
        if this.pos >= this.end {
            return Poll::Ready(None);
        }
        if let Some(rate) = this.rate {
            let due = this.started + Duration::from_secs_f64(this.pos as f64 / rate as f64);
            if due > Instant::now() {
                this.sleep = Some(Box::pin(tokio::time::sleep_until(due.into())));
                return self.poll_frame(cx);
            }
        }
        let mut chunk_end = (this.pos + 64 * 1024).min(this.end);
        if let Some(stall) = this.stall_at {
            chunk_end = chunk_end.min(stall.max(this.pos + 1));
        }
        let chunk = Bytes::from(expected(this.seed, this.pos, chunk_end));
        this.pos = chunk_end;
        let mut state = this.state.lock().unwrap();
        *state.sent.entry(this.target.clone()).or_default() += chunk.len() as u64;
        if this.pos >= this.end {
            state.finished.insert(this.target.clone(), Instant::now());
        }
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }
}

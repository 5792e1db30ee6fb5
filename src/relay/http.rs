//! The relay's listener: a deliberately small HTTP/1.1 server for webhooks.
//!
//! Every input is the sender's to choose, so the framing is the strictest that Alertmanager,
//! Grafana and curl still satisfy: one request per connection (`Connection: close`), a body
//! only with a single `Content-Length` (no chunked bodies, so nothing can be smuggled), heads
//! up to exactly 16 KiB and 64 headers (httparse does the parsing), bodies up to
//! `--max-body-size` (413 beyond, before reading it). A whole head must arrive within 5 s and
//! a whole request within 30 s, however slowly its bytes trickle. At most 128 connections are
//! served at once, and the cap is no lockout: a new connection makes room by closing the
//! oldest one that has not sent its head yet (a slow or idle client), so a real Alertmanager
//! gets through while hundreds of slow connections are held open. `Expect: 100-continue`
//! (curl's large bodies) is answered once the head is acceptable.
//!
//! A browser on the same machine is no sender: a request with an `Origin` header is refused,
//! and without a token (loopback only) so is a `Host` other than the listen address or
//! `localhost` (DNS rebinding).

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::json;
use subtle::ConstantTimeEq as _;

use super::alerts;
use super::log::Logger;
use super::metrics::{Metrics, source};
use super::spool::{Entry, Refused, Spool};
use super::worker::Wake;
use super::{Health, Shutdown};
use crate::credentials::Secret;

/// Largest request head.
const MAX_HEAD: usize = 16 * 1024;
/// Most headers in a request.
const MAX_HEADERS: usize = 64;
/// Most connections served at once.
pub const MAX_CONNECTIONS: usize = 128;
/// Longest wait for one write.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a whole request head may take to arrive.
pub const HEAD_DEADLINE: Duration = Duration::from_secs(5);
/// Longest a whole request may take to arrive.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(30);
/// Stack of a connection's thread: parsing is flat (serde_json bounds nesting).
const STACK_SIZE: usize = 1024 * 1024;

/// What the listener is given.
pub struct Config {
    /// The bearer token, if any.
    pub token: Option<Secret>,
    /// Largest body.
    pub max_body: usize,
    /// The address listened on.
    pub local: SocketAddr,
    /// Where accepted webhooks go.
    pub spool: Arc<Spool>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// What `/healthz` says.
    pub health: Arc<Health>,
    /// Tells the worker about new entries.
    pub wake: Arc<Wake>,
    /// Once stopping, webhooks get 503 (the sender retries later, elsewhere or here).
    pub shutdown: Arc<Shutdown>,
    /// Log lines.
    pub log: Logger,
}

/// A connection being served.
struct Connection {
    opened: Instant,
    /// A handle to close it with, from the accept loop.
    stream: TcpStream,
    /// Its whole head has arrived: it is a request, no longer a candidate for shedding.
    head_done: Arc<AtomicBool>,
}

/// What every connection handler shares.
pub struct Server {
    config: Config,
    connections: Mutex<HashMap<u64, Connection>>,
    next_id: AtomicU64,
}

impl Server {
    /// A listener's shared part.
    pub fn new(config: Config) -> Server {
        Server {
            config,
            connections: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
        }
    }

    /// Connections being served.
    pub fn active(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes room for one more connection: closes the oldest that has not sent its head.
    /// `false` when every connection is a request being served.
    fn shed(&self, connections: &mut HashMap<u64, Connection>) -> bool {
        let oldest = connections
            .iter()
            .filter(|(_, c)| !c.head_done.load(Ordering::SeqCst))
            .min_by_key(|(_, c)| c.opened)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| connections.remove(&id)) {
            Some(victim) => {
                // Its thread's read fails at once and the thread ends.
                let _ = victim.stream.shutdown(std::net::Shutdown::Both);
                self.config.metrics.shed.inc();
                true
            }
            None => false,
        }
    }
}

/// An answer.
struct Answer {
    status: u16,
    content_type: &'static str,
    body: String,
    extra: Vec<(&'static str, &'static str)>,
}

impl Answer {
    fn json(status: u16, value: serde_json::Value) -> Self {
        Answer {
            status,
            content_type: "application/json",
            body: format!("{value}\n"),
            extra: vec![],
        }
    }

    fn error(status: u16, message: &str) -> Self {
        Answer::json(status, json!({ "error": message }))
    }
}

/// Serves `stream` on a thread of its own; at the cap, the oldest connection without a head
/// makes room, and only when every connection is a request is the new one answered 503.
pub fn accept(server: &Arc<Server>, mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let id = server.next_id.fetch_add(1, Ordering::SeqCst);
    let head_done = Arc::new(AtomicBool::new(false));
    {
        let mut connections = server.lock();
        if connections.len() >= MAX_CONNECTIONS && !server.shed(&mut connections) {
            drop(connections);
            // Written and dropped at once: the accept loop must not wait on this client.
            let answer = Answer::error(503, "too many requests at once; retry");
            let _ = write_answer(&mut stream, &answer, false);
            return;
        }
        let Ok(handle) = stream.try_clone() else {
            return;
        };
        connections.insert(
            id,
            Connection {
                opened: Instant::now(),
                stream: handle,
                head_done: head_done.clone(),
            },
        );
    }
    let shared = server.clone();
    let spawned = std::thread::Builder::new()
        .stack_size(STACK_SIZE)
        .spawn(move || {
            let answer = serve(&shared, &mut stream, &head_done);
            let _ = write_answer(&mut stream, &answer, true);
            shared.lock().remove(&id);
        });
    if spawned.is_err() {
        // The connection went with the closure that never ran.
        server.lock().remove(&id);
    }
}

/// A request head, parsed.
struct Head {
    method: String,
    path: String,
    headers: Vec<(String, Vec<u8>)>,
    /// Bytes of the body that came with the head.
    rest: Vec<u8>,
}

impl Head {
    fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
            .collect()
    }

    fn one(&self, name: &str) -> Option<&[u8]> {
        self.all(name).first().copied()
    }
}

fn serve(server: &Server, stream: &mut TcpStream, head_done: &AtomicBool) -> Answer {
    let started = Instant::now();
    let head = match read_head(stream, started + HEAD_DEADLINE) {
        Ok(head) => head,
        Err(answer) => return answer,
    };
    head_done.store(true, Ordering::SeqCst);
    if let Err(why) = same_origin(&server.config, &head) {
        return Answer::error(403, why);
    }
    let deadline = started + REQUEST_DEADLINE;
    let endpoint = head.path.split('?').next().unwrap_or_default().to_string();
    match (head.method.as_str(), endpoint.as_str()) {
        ("GET", "/healthz") => match server.config.health.status() {
            Ok(()) => Answer {
                status: 200,
                content_type: "text/plain; charset=utf-8",
                body: "ok\n".into(),
                extra: vec![],
            },
            Err(why) => Answer::error(503, &why),
        },
        ("GET", "/metrics") => Answer {
            status: 200,
            content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8",
            body: server.config.metrics.render(),
            extra: vec![],
        },
        ("POST" | "PUT", "/alertmanager") => {
            receive(server, stream, &head, deadline, "alertmanager")
        }
        ("POST", "/post") => receive(server, stream, &head, deadline, "post"),
        (_, "/healthz" | "/metrics" | "/alertmanager" | "/post") => Answer {
            extra: vec![("Allow", allowed(&endpoint))],
            ..Answer::error(405, "method not allowed")
        },
        _ => Answer::error(
            404,
            "no such endpoint: POST /alertmanager, POST /post, GET /healthz, GET /metrics",
        ),
    }
}

/// Refuses what a web page in a browser could send: any request with an `Origin`, and, when
/// no token guards the relay, a `Host` that is not the listen address or `localhost` (a page
/// whose name was rebound to 127.0.0.1).
fn same_origin(config: &Config, head: &Head) -> Result<(), &'static str> {
    if head.one("origin").is_some() {
        return Err("requests from web pages (with an Origin header) are not accepted");
    }
    if config.token.is_some() {
        return Ok(());
    }
    let host = String::from_utf8_lossy(head.one("host").unwrap_or_default()).to_ascii_lowercase();
    let port = config.local.port().to_string();
    let name = match host.rsplit_once(':') {
        Some((name, p)) if p == port && !name.ends_with(':') => name,
        _ => host.as_str(),
    };
    let local = config.local.ip().to_string();
    let allowed = ["localhost", "127.0.0.1", "[::1]", local.as_str()];
    if allowed.contains(&name) || name.trim_matches(['[', ']']) == local {
        Ok(())
    } else {
        Err("the Host is not this relay's address: without --token-file only localhost may post")
    }
}

fn allowed(endpoint: &str) -> &'static str {
    match endpoint {
        "/alertmanager" => "POST, PUT",
        "/post" => "POST",
        _ => "GET",
    }
}

fn read_head(stream: &mut TcpStream, deadline: Instant) -> Result<Head, Answer> {
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    let end = loop {
        // The head ends within the first 16 KiB or is too large, whatever follows it.
        let searched = &buf[..buf.len().min(MAX_HEAD)];
        if let Some(end) = searched.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if buf.len() >= MAX_HEAD {
            return Err(Answer::error(431, "request head over 16 KiB"));
        }
        // One deadline for the whole head: a byte every few seconds does not keep it open.
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Answer::error(408, "the request head took too long"));
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(Answer::error(
                    400,
                    "connection closed before the request ended",
                ));
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => return Err(Answer::error(408, "the request head took too long")),
        }
    };
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&buf[..end]) {
        Ok(httparse::Status::Complete(_)) => {}
        Err(httparse::Error::TooManyHeaders) => {
            return Err(Answer::error(431, "more than 64 headers"));
        }
        _ => return Err(Answer::error(400, "malformed HTTP request")),
    }
    Ok(Head {
        method: request.method.unwrap_or_default().to_string(),
        path: request.path.unwrap_or_default().to_string(),
        headers: request
            .headers
            .iter()
            .map(|h| (h.name.to_string(), h.value.to_vec()))
            .collect(),
        rest: buf[end..].to_vec(),
    })
}

fn authorized(server: &Server, head: &Head) -> bool {
    let Some(token) = &server.config.token else {
        return true;
    };
    let given = head.one("authorization").unwrap_or_default();
    let Some(split) = given.iter().position(|&b| b == b' ') else {
        return false;
    };
    let (scheme, credentials) = (&given[..split], given[split + 1..].trim_ascii());
    scheme.eq_ignore_ascii_case(b"bearer")
        && bool::from(credentials.ct_eq(token.expose().as_bytes()))
}

fn receive(
    server: &Server,
    stream: &mut TcpStream,
    head: &Head,
    deadline: Instant,
    endpoint: &str,
) -> Answer {
    let refuse = |status: u16, message: &str| {
        server
            .config
            .metrics
            .rejected
            .get_or_create(&source(endpoint))
            .inc();
        server.config.log.event(
            "refused",
            &[
                ("endpoint", json!(endpoint)),
                ("status", json!(status)),
                ("reason", json!(message)),
            ],
        );
        Answer::error(status, message)
    };
    if !authorized(server, head) {
        return Answer {
            extra: vec![("WWW-Authenticate", "Bearer")],
            ..refuse(401, "missing or wrong bearer token")
        };
    }
    if server.config.shutdown.requested() {
        return refuse(503, "the relay is stopping; retry");
    }
    if !head.all("transfer-encoding").is_empty() {
        return refuse(
            411,
            "send the body with Content-Length (chunked bodies are not accepted)",
        );
    }
    let lengths = head.all("content-length");
    let length = match lengths.as_slice() {
        [one] => std::str::from_utf8(one)
            .ok()
            .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|s| s.parse::<usize>().ok()),
        [] => return refuse(411, "Content-Length required"),
        _ => None,
    };
    let Some(length) = length else {
        return refuse(400, "invalid Content-Length");
    };
    if length > server.config.max_body {
        return refuse(
            413,
            &format!(
                "body over {} bytes (--max-body-size)",
                server.config.max_body
            ),
        );
    }
    if head
        .one("expect")
        .is_some_and(|e| e.eq_ignore_ascii_case(b"100-continue"))
        && stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").is_err()
    {
        return refuse(400, "connection lost");
    }
    let Some(body) = read_body(stream, head, length, deadline) else {
        return refuse(408, "the body did not arrive in time");
    };
    let entry = match endpoint {
        "alertmanager" => match alerts::parse(&body) {
            Ok(notification) => Entry::Alerts(notification),
            Err(why) => return refuse(400, &why),
        },
        _ => match plain_text(head, &body) {
            Ok(text) => Entry::Text(text),
            Err(why) => return refuse(400, &why),
        },
    };
    let id = match server.config.spool.append(&entry) {
        Ok(id) => id,
        Err(Refused::Full(why)) => {
            return refuse(507, &format!("{why}; retry later"));
        }
        Err(Refused::Io(e)) => {
            server
                .config
                .log
                .event("error", &[("message", json!(format!("cannot spool: {e}")))]);
            return refuse(500, "cannot store the alert; retry");
        }
    };
    server
        .config
        .metrics
        .received
        .get_or_create(&source(endpoint))
        .inc();
    server
        .config
        .metrics
        .spooled
        .set(server.config.spool.len() as i64);
    server.config.wake.notify();
    let mut fields = vec![("endpoint", json!(endpoint)), ("entry", json!(id))];
    if let Entry::Alerts(n) = &entry {
        fields.push(("group", json!(n.thread_key())));
        fields.push(("status", json!(n.status)));
        fields.push(("alerts", json!(n.alerts.len())));
    }
    server.config.log.event("received", &fields);
    Answer::json(200, json!({ "status": "spooled", "entry": id }))
}

fn read_body(
    stream: &mut TcpStream,
    head: &Head,
    length: usize,
    deadline: Instant,
) -> Option<Vec<u8>> {
    let mut body = head.rest.clone();
    body.truncate(length);
    let mut chunk = [0u8; 16 * 1024];
    while body.len() < length {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return None;
        }
        let _ = stream.set_read_timeout(Some(left));
        let want = (length - body.len()).min(chunk.len());
        match stream.read(&mut chunk[..want]) {
            Ok(0) | Err(_) => return None,
            Ok(n) => body.extend_from_slice(&chunk[..n]),
        }
    }
    Some(body)
}

/// The text of `POST /post`: `{"text": "..."}` as JSON, or the body itself as UTF-8 text.
fn plain_text(head: &Head, body: &[u8]) -> Result<String, String> {
    let json = head
        .one("content-type")
        .is_some_and(|t| t.to_ascii_lowercase().starts_with(b"application/json"));
    let text = if json {
        #[derive(serde::Deserialize)]
        struct Post {
            text: String,
        }
        serde_json::from_slice::<Post>(body)
            .map_err(|e| format!("expected {{\"text\": \"...\"}}: {e}"))?
            .text
    } else {
        let text =
            std::str::from_utf8(body).map_err(|_| "the body is not UTF-8 text".to_string())?;
        text.strip_suffix('\n').unwrap_or(text).to_string()
    };
    if text.trim().is_empty() {
        return Err("the text is empty".to_string());
    }
    Ok(text)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        507 => "Insufficient Storage",
        _ => "Service Unavailable",
    }
}

fn write_answer(stream: &mut TcpStream, answer: &Answer, linger: bool) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
        answer.status,
        reason(answer.status),
        answer.content_type,
        answer.body.len()
    );
    for (name, value) in &answer.extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(answer.body.as_bytes())?;
    stream.flush()?;
    if linger {
        // Let the client read the answer before the close: unread request bytes would turn
        // the close into a reset that can swallow the answer. At most 64 KiB or 1 s of them.
        let _ = stream.shutdown(std::net::Shutdown::Write);
        let until = Instant::now() + Duration::from_secs(1);
        let _ = stream.set_read_timeout(Some(Duration::from_millis(250)));
        let mut sink = [0u8; 4096];
        let mut drained = 0;
        while Instant::now() < until && drained < 64 * 1024 {
            match stream.read(&mut sink) {
                Ok(n) if n > 0 => drained += n,
                _ => break,
            }
        }
    }
    Ok(())
}

//! A plain-HTTP origin written on raw sockets, so that framing is exactly what the bytes say
//! and nothing is forgiven. It frames requests by `Content-Length` or chunked encoding as
//! real servers do, keeps connections alive, and records every request head it parses, in
//! order, with the connection it came on. Two behaviours of real servers:
//! - [`Drain::BodyFirst`] reads the whole body, then answers (Python's http.server, most
//!   frameworks);
//! - [`Drain::AnswerFirst`] answers at once and reads the body afterwards, before the next
//!   request on the connection (Go's net/http).
//!
//! A request announced with a body it does not carry hangs the first kind and, on the second,
//! eats the start of the next request: whatever follows is parsed as a new request, and is
//! recorded, so a test sees any desynchronisation.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::TcpListener;

/// When the origin reads a request body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drain {
    /// Read the body, then answer.
    BodyFirst,
    /// Answer, then read the body.
    AnswerFirst,
}

/// One request as the origin parsed it.
#[derive(Debug, Clone)]
pub struct RawSeen {
    pub connection: usize,
    pub method: String,
    pub target: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawSeen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A running raw origin.
pub struct RawOrigin {
    pub port: u16,
    seen: Arc<Mutex<Vec<RawSeen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawOrigin {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RawOrigin {
    pub async fn start(drain: Drain) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let task = tokio::spawn(async move {
            let mut connection = 0;
            while let Ok((stream, _)) = listener.accept().await {
                connection += 1;
                tokio::spawn(serve(stream, connection, drain, record.clone()));
            }
        });
        Self { port, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn seen(&self) -> Vec<RawSeen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(
    stream: tokio::net::TcpStream,
    connection: usize,
    drain: Drain,
    seen: Arc<Mutex<Vec<RawSeen>>>,
) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    loop {
        let mut line = String::new();
        if read.read_line(&mut line).await.unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.trim_end().splitn(3, ' ');
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("").to_string();
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if read.read_line(&mut h).await.unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_string(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _): &&(String, String)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.clone())
        };
        let chunked = get("transfer-encoding").is_some_and(|v| v.contains("chunked"));
        let length: usize = get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut request = RawSeen {
            connection,
            method,
            target,
            headers,
            body: Vec::new(),
        };
        if drain == Drain::BodyFirst {
            request.body = read_body(&mut read, chunked, length).await;
        }
        let text = format!("origin saw {} {}\n", request.method, request.target);
        let answer = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nCache-Control: max-age=60\r\n\r\n{}",
            text.len(),
            if request.method == "HEAD" { "" } else { &text }
        );
        let index = {
            let mut seen = seen.lock().unwrap();
            seen.push(request);
            seen.len() - 1
        };
        if write.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
        if drain == Drain::AnswerFirst {
            let body = read_body(&mut read, chunked, length).await;
            seen.lock().unwrap()[index].body = body;
        }
    }
}

async fn read_body(
    read: &mut BufReader<tokio::net::tcp::OwnedReadHalf>,
    chunked: bool,
    length: usize,
) -> Vec<u8> {
    let mut body = Vec::new();
    if chunked {
        loop {
            let mut size = String::new();
            if read.read_line(&mut size).await.unwrap_or(0) == 0 {
                return body;
            }
            let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            let mut chunk = vec![0; size + 2];
            if read.read_exact(&mut chunk).await.is_err() {
                return body;
            }
            if size == 0 {
                return body;
            }
            body.extend_from_slice(&chunk[..size]);
        }
    }
    body.resize(length, 0);
    let _ = read.read_exact(&mut body).await;
    body
}

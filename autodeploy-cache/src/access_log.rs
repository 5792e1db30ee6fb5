//! One access-log line per request, written when the response body ends or the client goes
//! away, so the byte count is what was sent. On stdout by default (what `docker logs` and
//! journald read), or appended to `--access-log FILE`, which SIGHUP reopens (logrotate's
//! habit). `--log-format text` is nginx-like; `json` is one object per line.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

use crate::sync::Mutex;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::config::LogFormat;
use crate::status::CacheStatus;
use crate::upstream::{BoxError, ProxyBody};

/// How long the upstream took to send a response head, as a response extension for the log.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamTime(pub Duration);

/// Where lines go.
#[derive(Debug)]
pub struct Sink {
    format: LogFormat,
    path: Option<PathBuf>,
    file: Mutex<Option<File>>,
}

impl Sink {
    /// A sink writing `format` lines to `path`, or to stdout.
    pub fn open(format: LogFormat, path: Option<PathBuf>) -> std::io::Result<Self> {
        let file = match &path {
            Some(p) => Some(append(p)?),
            None => None,
        };
        Ok(Self {
            format,
            path,
            file: Mutex::new(file),
        })
    }

    /// Reopens the file (after logrotate moved it); nothing for stdout.
    pub fn reopen(&self) -> std::io::Result<()> {
        if let Some(path) = &self.path {
            let file = append(path)?;
            *self.file.lock() = Some(file);
        }
        Ok(())
    }

    fn write(&self, line: &str) {
        match &mut *self.file.lock() {
            Some(file) => {
                let _ = file.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stdout().lock().write_all(line.as_bytes());
            }
        }
    }
}

fn append(path: &PathBuf) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// What the line says besides bytes and duration.
#[derive(Debug)]
pub struct Line {
    /// Client address.
    pub client: SocketAddr,
    /// Request method.
    pub method: http::Method,
    /// Request target as sent.
    pub target: http::Uri,
    /// `HTTP/1.1` and the like.
    pub version: http::Version,
    /// The client's `User-Agent`, if any. Kept as received (cheap clones, no text made
    /// until the line is written).
    pub user_agent: Option<http::HeaderValue>,
    /// Response status.
    pub status: u16,
    /// Cache status, `-` for refused requests.
    pub cache: Option<CacheStatus>,
    /// How long the upstream took to answer, when it was asked for this response.
    pub upstream: Option<Duration>,
    /// When the request arrived.
    pub started: Instant,
}

/// A response body that counts what it sends and logs when dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    line: Line,
    bytes: u64,
    sink: Arc<Sink>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl LoggedBody {
    /// Wraps `inner`; when it ends, the line goes to `sink` and the request to `metrics`.
    pub fn new(
        inner: ProxyBody,
        line: Line,
        sink: Arc<Sink>,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self {
            inner,
            line,
            bytes: 0,
            sink,
            metrics,
        }
    }
}

impl Body for LoggedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            self.bytes += data.len() as u64;
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for LoggedBody {
    fn drop(&mut self) {
        // Formatted whole first, so the shared output is locked for one write only.
        let line = format_line(
            self.sink.format,
            &self.line,
            self.bytes,
            SystemTime::now(),
            self.line.started.elapsed(),
        );
        self.sink.write(&line);
        self.metrics.answered(self.line.cache, self.bytes);
    }
}

/// One line, newline included.
pub fn format_line(
    format: LogFormat,
    l: &Line,
    bytes: u64,
    now: SystemTime,
    took: Duration,
) -> String {
    let time = humantime::format_rfc3339_millis(now);
    let cache = l.cache.map_or("-", CacheStatus::as_str);
    match format {
        LogFormat::Text => format!(
            "{time} {} \"{} {} {:?}\" {} {bytes} {}ms {cache}\n",
            l.client.ip(),
            l.method,
            l.target,
            l.version,
            l.status,
            took.as_millis(),
        ),
        LogFormat::Json => {
            let value = serde_json::json!({
                "time": time.to_string(),
                "client": l.client.ip().to_string(),
                "method": l.method.as_str(),
                "path": l.target.to_string(),
                "status": l.status,
                "bytes": bytes,
                "duration_ms": took.as_secs_f64() * 1000.0,
                "upstream_ms": l.upstream.map(|d| d.as_secs_f64() * 1000.0),
                "cache_status": cache,
                "user_agent": l.user_agent.as_ref().map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            });
            format!("{value}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line() -> Line {
        Line {
            client: "10.0.0.7:40000".parse().unwrap(),
            method: http::Method::GET,
            target: "/vmw/rbd/tramp?x=1".parse().unwrap(),
            version: http::Version::HTTP_11,
            user_agent: Some(http::HeaderValue::from_static("gPXE/1.0")),
            status: 200,
            cache: Some(CacheStatus::Hit),
            upstream: None,
            started: Instant::now(),
        }
    }

    #[test]
    fn text_lines_start_with_a_timestamp() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_millis(1_790_000_000_123);
        let text = format_line(LogFormat::Text, &line(), 42, now, Duration::from_millis(7));
        assert_eq!(
            text,
            "2026-09-21T14:13:20.123Z 10.0.0.7 \"GET /vmw/rbd/tramp?x=1 HTTP/1.1\" 200 42 7ms HIT\n"
        );
    }

    #[test]
    fn json_lines_are_one_object_each() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_790_000_000);
        let mut l = line();
        l.upstream = Some(Duration::from_millis(3));
        let text = format_line(LogFormat::Json, &l, 42, now, Duration::from_millis(7));
        assert!(text.ends_with('\n') && text.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["time"], "2026-09-21T14:13:20.000Z");
        assert_eq!(v["path"], "/vmw/rbd/tramp?x=1");
        assert_eq!(v["cache_status"], "HIT");
        assert_eq!(v["user_agent"], "gPXE/1.0");
        assert_eq!(v["upstream_ms"], 3.0);
        assert_eq!(v["bytes"], 42);
    }
}

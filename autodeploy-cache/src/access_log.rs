//! One access-log line per request on stdout (what `docker logs` and journald read), written
//! when the response body ends or the client goes away, so the byte count is what was sent.

use std::fmt::Write as _;
use std::io::Write as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};

use crate::status::CacheStatus;
use crate::upstream::{BoxError, ProxyBody};

/// What the line says besides bytes and duration.
#[derive(Debug)]
pub struct Line {
    /// Client address.
    pub client: SocketAddr,
    /// `METHOD target HTTP/x.y`.
    pub request: String,
    /// Response status.
    pub status: u16,
    /// Cache status, `-` for refused requests.
    pub cache: Option<CacheStatus>,
    /// When the request arrived.
    pub started: Instant,
}

/// A response body that counts what it sends and logs when dropped.
pub struct LoggedBody {
    inner: ProxyBody,
    line: Line,
    bytes: u64,
}

impl LoggedBody {
    /// Wraps `inner`.
    pub fn new(inner: ProxyBody, line: Line) -> Self {
        Self {
            inner,
            line,
            bytes: 0,
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
        let l = &self.line;
        // Formatted whole first, so the shared stdout lock is held for one write only.
        let mut line = String::with_capacity(128);
        let _ = writeln!(
            line,
            "{} \"{}\" {} {} {}ms {}",
            l.client.ip(),
            l.request,
            l.status,
            self.bytes,
            l.started.elapsed().as_millis(),
            l.cache.map_or("-", CacheStatus::as_str)
        );
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }
}

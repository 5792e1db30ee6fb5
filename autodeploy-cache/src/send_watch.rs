//! The send side of a client connection under watch: a client that stops reading is moved out
//! of the connection budget after a short stall and dropped after `--send-timeout` without
//! progress, so clients that never read a large hit cannot hold kernel buffers and connection
//! slots for ever and lock out everyone else (hyper itself has no write timeout).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The two connection budgets: clients that read, and clients whose writes are stalled.
#[derive(Debug)]
pub struct Budgets {
    /// Connections that are reading, or between requests.
    pub active: Arc<Semaphore>,
    /// Connections whose response has been stuck for the stall threshold.
    pub stalled: Arc<Semaphore>,
    /// Writes stuck this long move the connection to the stalled budget.
    pub stall_after: Duration,
    /// Writes stuck this long close the connection.
    pub send_timeout: Duration,
}

/// Which budget a connection counts against.
#[derive(Debug)]
enum Slot {
    Active(#[allow(dead_code)] OwnedSemaphorePermit),
    Stalled(#[allow(dead_code)] OwnedSemaphorePermit),
}

/// A client stream whose writes are watched.
pub struct Watched<T> {
    inner: T,
    slot: Slot,
    budgets: Arc<Budgets>,
    /// When the current write started waiting, and the timer for the next check.
    waiting: Option<(Instant, Pin<Box<Sleep>>)>,
}

impl<T> Watched<T> {
    /// Watches `inner`, which holds `permit` from the active budget.
    pub fn new(inner: T, permit: OwnedSemaphorePermit, budgets: Arc<Budgets>) -> Self {
        Self {
            inner,
            slot: Slot::Active(permit),
            budgets,
            waiting: None,
        }
    }

    /// Applies the watch to the outcome of one write or flush.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        outcome: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        if outcome.is_ready() {
            self.waiting = None;
            if matches!(self.slot, Slot::Stalled(_))
                && let Ok(permit) = self.budgets.active.clone().try_acquire_owned()
            {
                self.slot = Slot::Active(permit);
            }
            return outcome;
        }
        let budgets = self.budgets.clone();
        let (since, timer) = self.waiting.get_or_insert_with(|| {
            let now = Instant::now();
            (
                now,
                Box::pin(tokio::time::sleep_until(now + budgets.stall_after)),
            )
        });
        let since = *since;
        loop {
            ready!(timer.as_mut().poll(cx));
            let waited = Instant::now() - since;
            if waited >= budgets.send_timeout {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client accepted no bytes within the send timeout",
                )));
            }
            if matches!(self.slot, Slot::Active(_)) {
                let Ok(permit) = budgets.stalled.clone().try_acquire_owned() else {
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "too many clients stopped reading",
                    )));
                };
                // Dropping the active permit lets a new client in.
                self.slot = Slot::Stalled(permit);
            }
            timer.as_mut().reset(since + budgets.send_timeout);
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, outcome)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let outcome = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, outcome)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let outcome = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, outcome)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt as _;

    /// Budgets of `active` and `stalled` connections, and one connection holding an active
    /// slot whose client end has `buffer` bytes of room.
    fn watched(
        active: usize,
        stalled: usize,
        buffer: usize,
    ) -> (
        Arc<Budgets>,
        Watched<tokio::io::DuplexStream>,
        tokio::io::DuplexStream,
    ) {
        let b = Arc::new(Budgets {
            active: Arc::new(Semaphore::new(active)),
            stalled: Arc::new(Semaphore::new(stalled)),
            stall_after: Duration::from_millis(100),
            send_timeout: Duration::from_secs(1),
        });
        let (ours, theirs) = tokio::io::duplex(buffer);
        let permit = b.active.clone().try_acquire_owned().unwrap();
        (b.clone(), Watched::new(ours, permit, b), theirs)
    }

    /// A pipe whose reader never reads: writes fill its buffer, then wait for ever.
    #[tokio::test(start_paused = true)]
    async fn a_client_that_never_reads_moves_to_the_stalled_budget_then_is_dropped() {
        let (b, mut watched, _theirs) = watched(1, 1, 1024);
        let started = Instant::now();
        let task = tokio::spawn(async move { watched.write_all(&[0u8; 64 * 1024]).await });
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(
            b.active.available_permits(),
            1,
            "the active slot was given back"
        );
        assert_eq!(b.stalled.available_permits(), 0);
        let err = task.await.unwrap().unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() - started >= Duration::from_secs(1));
        assert_eq!(
            b.stalled.available_permits(),
            1,
            "the stalled slot is freed on drop"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_clients_over_their_budget_are_dropped_at_once() {
        let (_b, mut watched, _theirs) = watched(2, 0, 16);
        let started = Instant::now();
        let err = watched.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert!(Instant::now() - started < Duration::from_millis(200));
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_reader_that_makes_progress_is_never_dropped() {
        let (_b, mut watched, mut theirs) = watched(1, 1, 1024);
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncReadExt as _;
            let mut buf = [0u8; 512];
            let mut total = 0;
            while total < 32 * 1024 {
                tokio::time::sleep(Duration::from_millis(500)).await;
                total += theirs.read(&mut buf).await.unwrap();
            }
        });
        watched.write_all(&[0u8; 32 * 1024]).await.unwrap();
        reader.await.unwrap();
    }
}

//! The client connections on the hosts' port, so that the connection cap is no lockout.
//!
//! Anyone on the boot network can open connections and send nothing: at the cap (8,192) new
//! clients, booting hosts among them, would get no answer until the header timeout dropped the
//! idle ones, and the attacker could start again. Instead, a new connection at the cap closes
//! the oldest one that is not in the middle of a request (it never sent a complete head, or it
//! sits idle between requests), as nginx closes idle keep-alive connections to make room. And
//! one client address holds at most `--max-connections-per-client` (512 by default: a rack of
//! hosts behind one NAT fits), beyond which its own oldest idle connection makes room.

use std::collections::HashMap;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;

use crate::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::body::{Body, Frame, SizeHint};
use tokio::sync::Notify;

/// A connection that served a request is not shed for this long after it: its last response
/// may still be leaving hyper's buffers.
const SETTLED: Duration = Duration::from_secs(1);

struct Open {
    client: IpAddr,
    /// Since when it has been without a request (opened, or its last response ended).
    idle_since: Instant,
    /// Requests under way (hyper serves one at a time; a count keeps it simple).
    busy: usize,
    /// It has served a request.
    served: bool,
    /// Shed already: not a candidate again.
    closing: bool,
    close: Arc<Notify>,
}

impl Open {
    fn sheddable(&self, now: Instant) -> bool {
        !self.closing
            && self.busy == 0
            && (!self.served || now.duration_since(self.idle_since) >= SETTLED)
    }
}

#[derive(Default)]
struct Registry {
    next: u64,
    open: HashMap<u64, Open>,
    per_client: HashMap<IpAddr, usize>,
}

/// The open connections.
pub struct Connections {
    registry: Mutex<Registry>,
    per_client: usize,
    metrics: Arc<crate::metrics::Metrics>,
}

/// A connection's place in the registry; leaving it (drop) unregisters.
pub struct Ticket {
    id: u64,
    connections: Arc<Connections>,
    /// Notified when the connection is to be closed to make room.
    pub close: Arc<Notify>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut registry = self.connections.lock();
        if let Some(open) = registry.open.remove(&self.id) {
            let count = registry.per_client.entry(open.client).or_default();
            *count = count.saturating_sub(1);
            if *count == 0 {
                registry.per_client.remove(&open.client);
            }
        }
    }
}

impl Connections {
    /// No connection yet; each client address may hold `per_client`.
    pub fn new(per_client: usize, metrics: Arc<crate::metrics::Metrics>) -> Arc<Connections> {
        Arc::new(Connections {
            registry: Mutex::new(Registry::default()),
            per_client: per_client.max(1),
            metrics,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Registry> {
        // A panic elsewhere while holding this lock leaves counts, never broken invariants.
        self.registry.lock()
    }

    /// Registers a connection from `client`. At the client's limit its own oldest idle
    /// connection is closed to make room; `None` when every one of them is busy.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Option<Ticket> {
        let mut registry = self.lock();
        if registry.per_client.get(&client).copied().unwrap_or(0) >= self.per_client
            && !shed_oldest(&mut registry, &self.metrics, |open| open.client == client)
        {
            return None;
        }
        let id = registry.next;
        registry.next += 1;
        let close = Arc::new(Notify::new());
        registry.open.insert(
            id,
            Open {
                client,
                idle_since: Instant::now(),
                busy: 0,
                served: false,
                closing: false,
                close: close.clone(),
            },
        );
        *registry.per_client.entry(client).or_default() += 1;
        Some(Ticket {
            id,
            connections: self.clone(),
            close,
        })
    }

    /// Closes the oldest connection without a request under way, to make room for a new
    /// one; whether there was one.
    pub fn shed_idle(&self) -> bool {
        shed_oldest(&mut self.lock(), &self.metrics, |_| true)
    }

    /// A request arrived on `ticket`'s connection; it is busy until the guard is dropped
    /// (with the response body).
    pub fn busy(self: &Arc<Self>, ticket: u64) -> Busy {
        if let Some(open) = self.lock().open.get_mut(&ticket) {
            open.busy += 1;
            open.served = true;
        }
        Busy {
            id: ticket,
            connections: self.clone(),
        }
    }
}

impl Ticket {
    /// Its id, for [`Connections::busy`].
    pub fn id(&self) -> u64 {
        self.id
    }
}

fn shed_oldest(
    registry: &mut Registry,
    metrics: &crate::metrics::Metrics,
    among: impl Fn(&Open) -> bool,
) -> bool {
    let now = Instant::now();
    let victim = registry
        .open
        .iter()
        .filter(|(_, open)| among(open) && open.sheddable(now))
        .min_by_key(|(_, open)| open.idle_since)
        .map(|(id, _)| *id);
    let Some(open) = victim.and_then(|id| registry.open.get_mut(&id)) else {
        return false;
    };
    open.closing = true;
    // Stored if the connection's task is not waiting yet: it closes when it looks.
    open.close.notify_one();
    metrics.shed_connections.inc();
    true
}

/// A request under way; its connection is idle again when this goes.
pub struct Busy {
    id: u64,
    connections: Arc<Connections>,
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(open) = self.connections.lock().open.get_mut(&self.id) {
            open.busy = open.busy.saturating_sub(1);
            open.idle_since = Instant::now();
        }
    }
}

/// A response body that keeps its connection marked busy until it is sent (or dropped).
pub struct Tracked<B> {
    inner: B,
    _busy: Busy,
}

impl<B> Tracked<B> {
    /// `inner`, with the request's guard.
    pub fn new(inner: B, busy: Busy) -> Self {
        Self { inner, _busy: busy }
    }
}

impl<B: Body + Unpin> Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_at_its_limit_recycles_its_own_idle_connections() {
        let connections = Connections::new(2, Default::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = connections.admit(a).unwrap();
        let second = connections.admit(a).unwrap();
        let _other = connections.admit(b).unwrap();
        // The third from `a` closes `a`'s oldest idle one.
        let third = connections.admit(a).unwrap();
        assert!(notified(&first.close));
        assert!(!notified(&second.close));
        drop(first);
        let _busy = (connections.busy(second.id()), connections.busy(third.id()));
        assert!(connections.admit(a).is_none(), "every one of a's is busy");
        assert!(
            connections.admit(b).is_some(),
            "other clients are not affected"
        );
    }

    #[test]
    fn the_oldest_idle_goes_first_and_busy_ones_stay() {
        let connections = Connections::new(100, Default::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let old = connections.admit(ip).unwrap();
        let working = connections.admit(ip).unwrap();
        let _busy = connections.busy(working.id());
        let young = connections.admit(ip).unwrap();
        assert!(connections.shed_idle());
        assert!(notified(&old.close));
        assert!(!notified(&young.close));
        assert!(connections.shed_idle());
        assert!(notified(&young.close));
        assert!(!connections.shed_idle(), "the busy one stays");
        assert!(!notified(&working.close));
    }

    /// Whether `notify` holds a notification (consumes it).
    fn notified(notify: &Notify) -> bool {
        use std::future::Future as _;
        let notified = notify.notified();
        let mut notified = std::pin::pin!(notified);
        let waker = std::task::Waker::noop();
        notified
            .as_mut()
            .poll(&mut Context::from_waker(waker))
            .is_ready()
    }
}

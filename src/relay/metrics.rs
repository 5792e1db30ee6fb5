//! `GET /metrics`: the relay's counters in Prometheus' text format (prometheus-client), for the
//! same monitoring that sends it alerts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The label of `received` and `rejected`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Source {
    /// `alertmanager` or `post`.
    pub source: String,
}

/// Every counter the relay keeps.
pub struct Metrics {
    registry: Registry,
    /// Webhooks accepted (spooled), by endpoint.
    pub received: Family<Source, Counter>,
    /// Requests refused (401, 400, 413...), by endpoint.
    pub rejected: Family<Source, Counter>,
    /// Posts made.
    pub posted: Counter,
    /// Of which digests.
    pub digests: Counter,
    /// Posts X refused for good, or that could not be made.
    pub failed: Counter,
    /// Entries waiting in the spool.
    pub spooled: Gauge,
    /// Seconds spent waiting for the local budget or X's rate limit.
    pub rate_limited_seconds: Counter,
    /// Connections closed before their head arrived, to make room for new ones.
    pub shed: Counter,
}

impl Metrics {
    /// Registers the metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("esxi_tweet_relay");
        let metrics_received = Family::<Source, Counter>::default();
        let rejected = Family::<Source, Counter>::default();
        let (posted, digests, failed) =
            (Counter::default(), Counter::default(), Counter::default());
        let spooled = Gauge::default();
        let rate_limited_seconds = Counter::default();
        let shed = Counter::default();
        registry.register(
            "received",
            "Webhooks accepted into the spool",
            metrics_received.clone(),
        );
        registry.register("rejected", "Requests refused", rejected.clone());
        registry.register("posted", "Posts made", posted.clone());
        registry.register(
            "digests",
            "Digest posts made while rate limited",
            digests.clone(),
        );
        registry.register("failed", "Posts that could not be made", failed.clone());
        registry.register("spooled", "Entries waiting in the spool", spooled.clone());
        registry.register(
            "rate_limited_seconds",
            "Seconds spent waiting for the posting budget or X's rate limit",
            rate_limited_seconds.clone(),
        );
        registry.register(
            "shed_connections",
            "Connections closed before sending a request head, to make room at the connection cap",
            shed.clone(),
        );
        Metrics {
            shed,
            registry,
            received: metrics_received,
            rejected,
            posted,
            digests,
            failed,
            spooled,
            rate_limited_seconds,
        }
    }

    /// The text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// The label for an endpoint.
pub fn source(name: &str) -> Source {
    Source {
        source: name.to_string(),
    }
}

//! The proxy's Prometheus metrics (text exposition through `prometheus-client`): counters
//! updated where things happen, gauges read from the store and the fills when scraped. Each
//! proxy has its own (no process-wide statics), so tests read one proxy's figures in-process.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::status::CacheStatus;

type Labels = Vec<(&'static str, &'static str)>;

/// Every cache status, in the order of the request counters.
const STATUSES: [CacheStatus; 7] = [
    CacheStatus::Miss,
    CacheStatus::Hit,
    CacheStatus::Expired,
    CacheStatus::Stale,
    CacheStatus::Updating,
    CacheStatus::Revalidated,
    CacheStatus::Bypass,
];

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    /// One counter per cache status (and one for refusals), looked up once: a request costs
    /// two atomic additions, not a lock and a label set.
    requests: [Counter; STATUSES.len() + 1],
    /// Bytes from the cache, from the upstream, from the proxy itself.
    sent_bytes: [Counter; 3],
    /// Requests sent upstream (fills and pass-through).
    pub upstream_requests: Counter,
    /// Upstream requests that got no response (refused, TLS, timeout).
    pub upstream_failures: Counter,
    /// Entries removed to make room or after `--inactive`.
    pub evictions: Counter,
    /// Connections closed before a request to make room at the connection cap.
    pub shed_connections: Counter,
    fills: Gauge,
    readers: Gauge,
    entries: Gauge,
    disk_bytes: Gauge,
    disk_trouble: Gauge,
}

/// What the store and the fills say at scrape time.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Fills in progress.
    pub fills: usize,
    /// Bodies being sent from entries or fills.
    pub readers: usize,
    /// Committed entries.
    pub entries: usize,
    /// Their bytes on disk.
    pub disk_bytes: u64,
    /// Storing is failing.
    pub disk_trouble: bool,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("autodeploy_cache");
        let requests: Family<Labels, Counter> = Family::default();
        let sent_bytes: Family<Labels, Counter> = Family::default();
        let m = Self {
            requests: std::array::from_fn(|i| {
                let status = STATUSES.get(i).map_or("NONE", |s| s.as_str());
                requests
                    .get_or_create(&vec![("cache_status", status)])
                    .clone()
            }),
            sent_bytes: ["cache", "upstream", "proxy"]
                .map(|source| sent_bytes.get_or_create(&vec![("source", source)]).clone()),
            upstream_requests: Counter::default(),
            upstream_failures: Counter::default(),
            evictions: Counter::default(),
            shed_connections: Counter::default(),
            fills: Gauge::default(),
            readers: Gauge::default(),
            entries: Gauge::default(),
            disk_bytes: Gauge::default(),
            disk_trouble: Gauge::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "Requests answered, by X-Cache-Status", requests);
        registry.register(
            "sent_bytes",
            "Response body bytes sent to clients, by where they came from (cache or upstream)",
            sent_bytes,
        );
        registry.register(
            "upstream_requests",
            "Requests sent to the upstream",
            m.upstream_requests.clone(),
        );
        registry.register(
            "upstream_failures",
            "Upstream requests that got no response (refused, TLS, timeout)",
            m.upstream_failures.clone(),
        );
        registry.register(
            "evictions",
            "Entries removed to make room or as inactive",
            m.evictions.clone(),
        );
        registry.register(
            "shed_connections",
            "Connections without a request under way closed to make room at the connection cap",
            m.shed_connections.clone(),
        );
        registry.register(
            "fills_in_progress",
            "Objects being fetched into the cache now",
            m.fills.clone(),
        );
        registry.register(
            "readers",
            "Response bodies being sent from entries or from fills in progress (waiters included)",
            m.readers.clone(),
        );
        registry.register("entries", "Committed entries", m.entries.clone());
        registry.register(
            "disk_bytes",
            "Bytes of committed entries",
            m.disk_bytes.clone(),
        );
        registry.register(
            "disk_trouble",
            "1 while storing fails (full or read-only cache directory)",
            m.disk_trouble.clone(),
        );
        Self { registry, ..m }
    }

    /// Counts one answered request and the bytes its body sent.
    pub fn answered(&self, cache: Option<CacheStatus>, bytes: u64) {
        let status = cache.map_or(STATUSES.len(), |c| {
            STATUSES
                .iter()
                .position(|s| *s == c)
                .unwrap_or(STATUSES.len())
        });
        self.requests[status].inc();
        let source = match cache {
            Some(
                CacheStatus::Hit
                | CacheStatus::Stale
                | CacheStatus::Updating
                | CacheStatus::Revalidated,
            ) => 0,
            Some(_) => 1,
            None => 2,
        };
        self.sent_bytes[source].inc_by(bytes);
    }

    /// The exposition text, with the gauges set from `now`.
    pub fn render(&self, now: Snapshot) -> String {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.fills.set(gauge(now.fills as u64));
        self.readers.set(gauge(now.readers as u64));
        self.entries.set(gauge(now.entries as u64));
        self.disk_bytes.set(gauge(now.disk_bytes));
        self.disk_trouble.set(i64::from(now.disk_trouble));
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

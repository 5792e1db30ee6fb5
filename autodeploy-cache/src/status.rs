//! The cache status of a response, reported in `X-Cache-Status` with nginx's vocabulary so that
//! dashboards and habits built on `$upstream_cache_status` keep working.

/// How a response was produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Not in the cache: fetched from upstream (or joined a fetch already under way).
    Miss,
    /// Served from a fresh entry.
    Hit,
    /// The entry had expired and was fetched again.
    Expired,
    /// The upstream failed; an expired entry was served instead.
    Stale,
    /// An expired entry was served while another request refreshes it.
    Updating,
    /// An expired entry was confirmed by the upstream (304) and served.
    Revalidated,
    /// Not cacheable (method, credentials): passed through.
    Bypass,
}

impl CacheStatus {
    /// The header and log spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Miss => "MISS",
            CacheStatus::Hit => "HIT",
            CacheStatus::Expired => "EXPIRED",
            CacheStatus::Stale => "STALE",
            CacheStatus::Updating => "UPDATING",
            CacheStatus::Revalidated => "REVALIDATED",
            CacheStatus::Bypass => "BYPASS",
        }
    }
}

//! `autodeploy-cache`: a caching reverse proxy between booting ESXi hosts and vCenter's Auto
//! Deploy service. One upstream fetch per object however many hosts ask at once, streamed to
//! all of them while it downloads; stale content when vCenter is down; bounded disk and
//! memory; nothing torn after a crash.
//!
//! - [`config`]: flags and environment, validated before any I/O.
//! - [`server`]: the accept loop and graceful shutdown ([`run`]).
//! - [`send_watch`]: the send timeout and the budget of clients that stopped reading.
//! - [`connections`]: the open connections, shed at the cap and limited per client.
//! - [`admission`]: what a request must be before anything acts on it; the upstream URI.
//! - [`decide`]: what a cacheable request needs (hit, join, fill, refresh, ...), pure.
//! - [`policy`]: HTTP caching rules (RFC 9111) as pure functions of request, response, `now`.
//! - [`proxy`]: request handling, `X-Cache-Status`.
//! - [`forward`]: the uncached path (pass-through, forwarding, the upstream request).
//! - [`fills`]: the fills in progress, one per key (the single-flight lock), and their progress.
//! - [`fill`]: one upstream fetch per key, written for readers while it downloads.
//! - [`body`]: response bodies from an entry file or a fill in progress.
//! - [`serve`]: answers built from an entry, a fill or an upstream response.
//! - [`frames`]: pooled read buffers for response frames.
//! - [`sync`]: locks that a panic does not poison, the proxy's one policy.
//! - [`healthcheck`]: the `healthcheck` subcommand for container HEALTHCHECKs.
//! - [`store`]: the cache directory: entry files, reservations, eviction.
//! - [`index`]: the in-memory index (sizes, totals, LRU order), pure.
//! - [`variants`]: which URLs vary, on what, and their stored variants, pure.
//! - [`entry`]: the on-disk entry format.
//! - [`mapped`]: cache files mapped into memory, delivered without a copy of our own.
//! - [`cache_key`]: the key and the file layout.
//! - [`headers`]: hop-by-hop and forwarding headers.
//! - [`range`]: the `Range` header.
//! - [`upstream`]: the pooled HTTPS client.
//! - [`trouble`]: upstream failures explained, each cause logged once.
//! - [`warm`]: the `warm` subcommand (fetch a list of paths through a running proxy).
//! - [`access_log`]: one line per request on stdout or a file, text or JSON.
//! - [`admin`], [`metrics`]: the admin listener (metrics, health, purge, entries).
//! - [`status`], [`error`].

// One module maps cache files (`mapped`) and says why that is sound; nothing else may.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod access_log;
pub mod admin;
pub mod admission;
pub mod body;
pub mod cache_key;
pub mod config;
pub mod connections;
pub mod decide;
pub mod entry;
pub mod error;
pub mod fill;
pub mod fills;
pub mod forward;
pub mod frames;
pub mod headers;
pub mod healthcheck;
pub mod index;
pub mod mapped;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod range;
pub mod send_watch;
pub mod serve;
pub mod server;
pub mod status;
pub mod store;
pub mod sync;
pub mod trouble;
pub mod upstream;
pub mod variants;
pub mod warm;

pub use config::{Args, Config};
pub use error::Error;
pub use server::{run, serve};

//! `esxi-tweet`: post a status update to X (Twitter) from a stateless ESXi host.
//!
//! The binary is a thin shell over this library:
//!
//! - [`oauth`]: the OAuth 1.0a HMAC-SHA1 signer (RFC 5849), pure functions.
//! - [`credentials`]: the four credentials, with secrets that never print.
//! - [`config`]: config file, environment and their precedence.
//! - [`api`]: X API v2 and v1.1 request shapes and the meaning of each answer.
//! - [`transport`]: HTTPS with embedded roots, `--ca-file`, proxy and timeouts.
//! - [`post`]: the retry loop (backoff, rate limits, clock skew) under one deadline.
//! - [`relay`]: `esxi-tweet serve`, Alertmanager and Grafana webhooks to posts.
//! - [`bundle`]: the Auto Deploy script bundle that announces a host's boot.
//! - [`vib`], [`depot`]: the agent as a community VIB and an offline depot (ESXi 8 and 9).
//! - [`output`]: how the build tools write their files (temp file, mode, rename).
//! - [`authorize`]: the PIN-based OAuth flow that writes an account's access token.
//! - [`cli`]: the command line.
//! - [`error`]: the error type and the documented exit codes.
//! - [`units`]: durations and sizes as flags and files write them.
//! - [`untrusted`]: others' text made safe to show (escape sequences, bidi, zero-width).

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod authorize;
pub mod bundle;
pub mod cli;
pub mod config;
pub mod credentials;
pub mod depot;
pub mod error;
pub mod oauth;
pub mod output;
pub mod post;
pub mod relay;
pub mod transport;
pub mod units;
pub mod untrusted;
pub mod vib;

pub use credentials::{Credentials, Secret};
pub use error::Error;
/// X's text rules (the `twitter-text-pure` crate of this workspace).
pub use twitter_text_pure as twitter_text;

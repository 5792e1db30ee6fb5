//! The proxy's error type: what can stop it from starting or serving.

use std::fmt;

/// Errors that end `run` or prevent start-up. Failures of single requests never reach here:
/// they become 4xx/5xx responses and a log line.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// A flag or environment variable has a bad value.
    Config(String),
    /// The cache directory cannot be used.
    Cache(String),
    /// The listening socket failed.
    Listen(std::io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "configuration: {m}"),
            Error::Cache(m) => write!(f, "cache directory: {m}"),
            Error::Listen(e) => write!(f, "listening socket: {e}"),
        }
    }
}

impl std::error::Error for Error {}

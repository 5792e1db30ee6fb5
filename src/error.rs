//! The agent's one error type, and the exit code each error maps to.
//!
//! Exit codes follow BSD `sysexits.h` so that scripts (the boot bundle among them) can tell
//! "fix the text" from "fix the credentials" from "try again later" without parsing messages.

use std::fmt;

/// Exit code: posted (or signed, or dry-run printed).
pub const EXIT_OK: u8 = 0;
/// Exit code: the command line was wrong (`EX_USAGE`).
pub const EXIT_USAGE: u8 = 64;
/// Exit code: the text was rejected: empty, too long or a duplicate (`EX_DATAERR`).
pub const EXIT_TEXT_REJECTED: u8 = 65;
/// Exit code: the API refused the post for another reason (`EX_UNAVAILABLE`).
pub const EXIT_API_REFUSED: u8 = 69;
/// Exit code: a temporary failure persisted until the deadline (`EX_TEMPFAIL`).
pub const EXIT_TEMPORARY: u8 = 75;
/// Exit code: authentication or permission failure (`EX_NOPERM`).
pub const EXIT_AUTH: u8 = 77;
/// Exit code: configuration problem: missing credentials, unsafe or unreadable file
/// (`EX_CONFIG`).
pub const EXIT_CONFIG: u8 = 78;
/// Exit code: an internal failure of this program (`EX_SOFTWARE`).
pub const EXIT_INTERNAL: u8 = 70;

/// Everything that can stop a command. Messages are single lines that say what to do, and
/// never contain a secret.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Bad command-line input (a malformed URL, `--form` without `=`...).
    Usage(String),
    /// The text cannot be posted as it is: empty, too long, or already posted.
    TextRejected(String),
    /// Credentials or configuration are missing, unreadable or unsafe.
    Config(String),
    /// The API rejected the credentials or the app lacks a permission.
    Auth(String),
    /// The API refused the request for a reason retrying cannot fix.
    ApiRefused(String),
    /// Network trouble, 5xx or rate limiting that outlasted the deadline.
    Temporary(String),
    /// A failure of this program or its platform (no random source, a broken stdout).
    Internal(String),
}

impl Error {
    /// The documented process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Usage(_) => EXIT_USAGE,
            Error::TextRejected(_) => EXIT_TEXT_REJECTED,
            Error::Config(_) => EXIT_CONFIG,
            Error::Auth(_) => EXIT_AUTH,
            Error::ApiRefused(_) => EXIT_API_REFUSED,
            Error::Temporary(_) => EXIT_TEMPORARY,
            Error::Internal(_) => EXIT_INTERNAL,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let msg = match self {
            Error::Usage(m)
            | Error::TextRejected(m)
            | Error::Config(m)
            | Error::Auth(m)
            | Error::ApiRefused(m)
            | Error::Temporary(m)
            | Error::Internal(m) => m,
        };
        f.write_str(msg)
    }
}

impl std::error::Error for Error {}

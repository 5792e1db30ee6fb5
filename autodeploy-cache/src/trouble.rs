//! Upstream failures explained for the operator: each distinct cause is logged once, with the
//! flag or fix that addresses it, so that a vCenter outage during a boot storm is one line,
//! not thousands, and someone migrating from nginx reads `--upstream-ca` next to
//! `UnknownIssuer`. Once the upstream answers again, the next failure is logged afresh.

use std::collections::HashSet;
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::sync::Mutex;

/// Most distinct causes remembered between two successes.
const MAX_CAUSES: usize = 64;

static SEEN: LazyLock<Mutex<HashSet<String>>> = LazyLock::new(|| Mutex::new(HashSet::new()));
/// Whether anything is remembered: the success path checks this, not the lock.
static ANY: AtomicBool = AtomicBool::new(false);

/// What kind of upstream failure an error is, read from its chain of causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The certificate is not signed by a CA we trust (or its signature is bad).
    UnknownIssuer,
    /// The certificate is for another name.
    WrongName,
    /// The certificate has expired.
    Expired,
    /// The certificate was refused for another reason.
    Certificate,
    /// Nothing listens at the address.
    Refused,
    /// The host name does not resolve.
    NoSuchHost,
    /// The upstream did not answer in time.
    TimedOut,
    /// Anything else.
    Other,
}

impl Cause {
    /// What to do about it, for the operator.
    pub fn hint(self) -> Option<&'static str> {
        Some(match self {
            Cause::UnknownIssuer => {
                "the upstream's certificate is not signed by a CA we trust: pass vCenter's VMCA root with --upstream-ca FILE (or skip verification, as nginx does, with --upstream-insecure)"
            }
            Cause::WrongName => {
                "the upstream's certificate is for another name: give --upstream the host name the certificate names"
            }
            Cause::Expired => "the upstream's certificate has expired: renew it in vCenter",
            Cause::Certificate => {
                "the upstream's certificate was refused: check --upstream-ca, or use --upstream-insecure"
            }
            Cause::Refused => {
                "nothing listens there: is --upstream the Auto Deploy service's host and port (6501)?"
            }
            Cause::NoSuchHost => {
                "the upstream's host name does not resolve from here: check --upstream and DNS"
            }
            Cause::TimedOut => "the upstream does not answer: check the route and firewall to it",
            Cause::Other => return None,
        })
    }
}

/// The cause of `e`: the first error in its chain that says (a rustls certificate error, an
/// I/O error's kind, a timeout), looking inside I/O errors too, whose `source` skips the error
/// they wrap.
pub fn cause(e: &(dyn std::error::Error + 'static)) -> Cause {
    use rustls::CertificateError as C;
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(rustls::Error::InvalidCertificate(certificate)) = e.downcast_ref() {
            return match certificate {
                C::UnknownIssuer | C::BadSignature => Cause::UnknownIssuer,
                C::NotValidForName | C::NotValidForNameContext { .. } => Cause::WrongName,
                C::Expired | C::ExpiredContext { .. } => Cause::Expired,
                _ => Cause::Certificate,
            };
        }
        if e.downcast_ref::<tokio::time::error::Elapsed>().is_some() {
            return Cause::TimedOut;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            match io.kind() {
                std::io::ErrorKind::ConnectionRefused => return Cause::Refused,
                std::io::ErrorKind::TimedOut => return Cause::TimedOut,
                _ => {}
            }
            if let Some(inner) = io.get_ref() {
                let inner = cause(inner);
                if inner != Cause::Other {
                    return inner;
                }
            }
            // getaddrinfo's failures carry no kind of their own: the one cause told by text.
            if io.to_string().contains("failed to lookup address") {
                return Cause::NoSuchHost;
            }
        }
        next = e.source();
    }
    Cause::Other
}

/// `e` and every error it was caused by, on one line.
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `e`'s chain with the fix for its cause, on one line: what the log says once.
pub fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    with_hint(chain(e), cause(e))
}

/// `what` with the fix for `cause`.
pub fn with_hint(what: String, cause: Cause) -> String {
    match cause.hint() {
        Some(hint) => format!("{what}; {hint}"),
        None => what,
    }
}

/// Logs `message` about an upstream failure unless the same `cause` was logged since the
/// upstream last answered.
pub fn log_once(cause: &str, message: impl FnOnce() -> String) {
    let mut seen = SEEN.lock();
    if seen.contains(cause) {
        return;
    }
    if seen.len() >= MAX_CAUSES {
        seen.clear();
    }
    seen.insert(cause.to_string());
    ANY.store(true, Ordering::Relaxed);
    eprintln!("autodeploy-cache: {}", message());
}

/// The upstream answered: the next failure is news again.
pub fn upstream_ok() {
    if ANY.swap(false, Ordering::Relaxed) {
        SEEN.lock().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapped(Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    fn through_io(e: rustls::Error) -> Wrapped {
        Wrapped(Box::new(std::io::Error::other(e)))
    }

    #[test]
    fn causes_come_from_the_error_chain_not_its_words() {
        use rustls::CertificateError as C;
        let unknown = through_io(rustls::Error::InvalidCertificate(C::UnknownIssuer));
        assert_eq!(cause(&unknown), Cause::UnknownIssuer);
        let described = describe(&unknown);
        assert!(described.contains("--upstream-ca") && described.contains("--upstream-insecure"));
        let name = through_io(rustls::Error::InvalidCertificate(C::NotValidForName));
        assert!(describe(&name).contains("host name"));
        let expired = through_io(rustls::Error::InvalidCertificate(C::Expired));
        assert_eq!(cause(&expired), Cause::Expired);
        let refused = Wrapped(Box::new(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )));
        assert!(describe(&refused).contains("6501"));
        // Words alone are not a cause: a message that merely names one is something else.
        let words = Wrapped(Box::new(std::io::Error::other(
            "invalid peer certificate: UnknownIssuer, says the body",
        )));
        assert_eq!(cause(&words), Cause::Other);
        assert_eq!(describe(&words), chain(&words));
    }
}

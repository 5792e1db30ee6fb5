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

/// What to do about an upstream error, from its text.
pub fn hint(chain: &str) -> Option<&'static str> {
    let lower = chain.to_ascii_lowercase();
    if lower.contains("unknownissuer") || lower.contains("badsignature") {
        Some(
            "the upstream's certificate is not signed by a CA we trust: pass vCenter's VMCA root with --upstream-ca FILE (or skip verification, as nginx does, with --upstream-insecure)",
        )
    } else if lower.contains("notvalidforname") {
        Some(
            "the upstream's certificate is for another name: give --upstream the host name the certificate names",
        )
    } else if lower.contains("expired") && lower.contains("certificate") {
        Some("the upstream's certificate has expired: renew it in vCenter")
    } else if lower.contains("invalid peer certificate") || lower.contains("certificate") {
        Some(
            "the upstream's certificate was refused: check --upstream-ca, or use --upstream-insecure",
        )
    } else if lower.contains("connection refused") {
        Some("nothing listens there: is --upstream the Auto Deploy service's host and port (6501)?")
    } else if lower.contains("dns")
        || lower.contains("failed to lookup")
        || lower.contains("name or service not known")
    {
        Some("the upstream's host name does not resolve from here: check --upstream and DNS")
    } else if lower.contains("timed out") {
        Some("the upstream does not answer: check the route and firewall to it")
    } else {
        None
    }
}

/// `chain` with its hint, on one line.
pub fn explain(chain: &str) -> String {
    match hint(chain) {
        Some(hint) => format!("{chain}; {hint}"),
        None => chain.to_string(),
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

    #[test]
    fn hints_name_the_fix() {
        let chain = "client error (Connect): invalid peer certificate: UnknownIssuer";
        assert!(explain(chain).contains("--upstream-ca"));
        assert!(explain(chain).contains("--upstream-insecure"));
        assert!(explain("tcp connect error: Connection refused (os error 111)").contains("6501"));
        assert!(explain("invalid peer certificate: NotValidForName").contains("host name"));
        assert_eq!(explain("something else"), "something else");
    }
}

//! The cache key and where an entry lives on disk.
//!
//! The key is what the upstream is asked for: upstream authority, then the request target
//! exactly as the client sent it (path and query, not normalized), plus the client's Host when
//! `--forward-host` sends that Host upstream. Getting this wrong leads to cache poisoning:
//! - a header the upstream may act on but the key ignores (Host with `--forward-host`) would
//!   let one client's variant be served to everyone asking for the same path;
//! - normalizing the path (`/a/../b`, `%2f`) here while the upstream sees the raw target would
//!   store one URL's body under another URL's key.
//!
//! File names are a SHA-256 of the key, laid out like nginx's `levels=1:2`
//! (`c/29/<hash>`); the full key is also stored in the entry and compared on read, so a hash
//! collision is a miss, never a wrong body.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// Where the variant part of a key starts.
const VARY_MARK: &str = "\nvary:\n";

/// A cache key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    key: String,
    /// Lower-case hex of the first 16 bytes of the key's SHA-256, inline: no allocation.
    hash: [u8; 32],
}

impl CacheKey {
    /// The key of a request for `path_and_query` on `upstream_authority`; `host` is the
    /// client's Host, given only when it is forwarded upstream.
    pub fn new(upstream_authority: &str, path_and_query: &str, host: Option<&str>) -> Self {
        let key = match host {
            Some(host) => format!("{upstream_authority}{path_and_query}\nhost:{host}"),
            None => format!("{upstream_authority}{path_and_query}"),
        };
        Self::from_string(key)
    }

    /// The key of one variant of this (primary) key: the request's values of the headers
    /// the response varies on, as [`crate::policy::vary_values`] gives them.
    pub fn variant(&self, values: &[(String, String)]) -> Self {
        let mut key = self.primary_str().to_string();
        key.push_str(VARY_MARK);
        for (name, value) in values {
            // Names are tokens and values have no line breaks: this cannot be ambiguous.
            key.push_str(&format!("{name}={value}\n"));
        }
        Self::from_string(key)
    }

    /// The primary key of a variant key (itself for a primary key).
    pub fn primary(&self) -> Self {
        match self.key.split_once(VARY_MARK) {
            Some((primary, _)) => Self::from_string(primary.to_string()),
            None => self.clone(),
        }
    }

    fn primary_str(&self) -> &str {
        self.key.split_once(VARY_MARK).map_or(&self.key, |(p, _)| p)
    }

    /// A key from its full text (as stored in an entry).
    pub fn from_string(key: String) -> Self {
        let digest = Sha256::digest(key.as_bytes());
        // Every request computes this: a string per byte (format!) showed on the profile.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut hash = [0u8; 32];
        for (i, b) in digest[..16].iter().enumerate() {
            hash[2 * i] = HEX[usize::from(b >> 4)];
            hash[2 * i + 1] = HEX[usize::from(b & 0xf)];
        }
        Self { key, hash }
    }

    /// The full key, as stored in the entry.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// Hex file name.
    pub fn hash(&self) -> &str {
        // Hex digits only: always UTF-8.
        std::str::from_utf8(&self.hash).unwrap_or_default()
    }

    /// `root/<last hex char>/<the two before it>/<hash>`, as nginx's `levels=1:2`.
    pub fn path_in(&self, root: &Path) -> PathBuf {
        path_of_hash(root, self.hash())
    }
}

/// Where the entry whose file name is `hash` lives under `root`: the one place that knows the
/// layout (eviction knows entries by hash only).
pub fn path_of_hash(root: &Path, hash: &str) -> PathBuf {
    let n = hash.len();
    if n < 3 {
        return root.join(hash);
    }
    root.join(&hash[n - 1..])
        .join(&hash[n - 3..n - 1])
        .join(hash)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_target_and_forwarded_host_are_part_of_the_key() {
        let a = CacheKey::new("vc:6501", "/a/../b", None);
        let b = CacheKey::new("vc:6501", "/b", None);
        let c = CacheKey::new("vc:6501", "/a%2fb", None);
        let d = CacheKey::new("vc:6501", "/a/b", None);
        assert_ne!(a, b);
        assert_ne!(c, d);
        let h1 = CacheKey::new("vc:6501", "/x", Some("evil"));
        let h2 = CacheKey::new("vc:6501", "/x", Some("good"));
        assert_ne!(h1.hash(), h2.hash());
        assert_ne!(
            CacheKey::new("other:6501", "/x", None),
            CacheKey::new("vc:6501", "/x", None)
        );
    }

    #[test]
    fn variants_have_keys_of_their_own_and_know_their_primary() {
        let primary = CacheKey::new("vc:6501", "/x", None);
        let gzip = primary.variant(&[("accept-encoding".into(), "gzip".into())]);
        let plain = primary.variant(&[("accept-encoding".into(), String::new())]);
        assert_ne!(gzip, plain);
        assert_ne!(gzip, primary);
        assert_eq!(gzip.primary(), primary);
        assert_eq!(primary.primary(), primary);
        assert_eq!(gzip.variant(&[]).primary(), primary);
        assert_eq!(CacheKey::from_string(gzip.as_str().to_string()), gzip);
    }

    #[test]
    fn levels_layout() {
        let k = CacheKey::new("vc:6501", "/vmw/rbd/tramp", None);
        let p = k.path_in(Path::new("/c"));
        let h = k.hash();
        // The first 16 bytes of SHA-256 of the key, in lower-case hex (Python's hashlib says
        // so): file names must not change between versions, or an upgrade empties the cache.
        assert_eq!(h, "31e0c380ba60920b6d6d86e97c4f761a");
        assert_eq!(p, Path::new("/c").join(&h[31..]).join(&h[29..31]).join(h));
    }
}

//! Which URLs have responses that vary, on which request headers, and under which file names
//! their stored variants are: pure bookkeeping for [`crate::store`], rebuilt from the entries
//! at start.

use std::collections::HashMap;

/// Most variants stored for one URL: a client inventing header values must not fill the
/// cache with variants of one URL.
pub const MAX_VARIANTS: usize = 32;

#[derive(Debug, Default)]
struct Variants {
    names: Vec<String>,
    hashes: Vec<String>,
}

/// Variants by primary key.
#[derive(Debug, Default)]
pub struct VariantTable {
    urls: HashMap<String, Variants>,
}

impl VariantTable {
    /// The header names `primary`'s responses vary on, if they do.
    pub fn names(&self, primary: &str) -> Option<Vec<String>> {
        self.urls.get(primary).map(|v| v.names.clone())
    }

    /// The file names of `primary`'s stored variants.
    pub fn hashes(&self, primary: &str) -> Option<&[String]> {
        self.urls.get(primary).map(|v| v.hashes.as_slice())
    }

    /// Records that `primary`'s responses vary on `names` (empty: they no longer vary) and
    /// that a variant is stored under `hash`.
    pub fn note(&mut self, primary: &str, names: Vec<String>, hash: &str) {
        if names.is_empty() {
            self.urls.remove(primary);
            return;
        }
        let entry = self.urls.entry(primary.to_string()).or_default();
        entry.names = names;
        if !entry.hashes.iter().any(|h| h == hash) {
            entry.hashes.push(hash.to_string());
        }
    }

    /// Forgets `primary`; the file names of its variants.
    pub fn take(&mut self, primary: &str) -> Vec<String> {
        self.urls
            .remove(primary)
            .map(|v| v.hashes)
            .unwrap_or_default()
    }
}

/// Whether a variant under `hash` may join `known` (the URL's variants, if it has any), of
/// which `stored` tells which are still stored.
pub fn may_add(known: Option<&[String]>, hash: &str, stored: impl Fn(&str) -> bool) -> bool {
    match known {
        None => true,
        Some(known) if known.iter().any(|h| h == hash) => true,
        Some(known) => known.iter().filter(|h| stored(h)).count() < MAX_VARIANTS,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_variants_are_noted_and_taken() {
        let mut table = VariantTable::default();
        assert_eq!(table.names("u"), None);
        table.note("u", vec!["accept-encoding".into()], "h1");
        table.note("u", vec!["accept-encoding".into()], "h2");
        table.note("u", vec!["accept-encoding".into()], "h1");
        assert_eq!(table.names("u").unwrap(), ["accept-encoding"]);
        assert_eq!(table.hashes("u").unwrap(), ["h1", "h2"]);
        assert_eq!(table.take("u"), ["h1", "h2"]);
        assert_eq!(table.names("u"), None);
        table.note("v", vec!["a".into()], "h");
        table.note("v", vec![], "h");
        assert_eq!(table.names("v"), None, "no longer varies");
    }

    #[test]
    fn a_url_gets_a_bounded_number_of_stored_variants() {
        let known: Vec<String> = (0..MAX_VARIANTS).map(|i| format!("h{i}")).collect();
        assert!(may_add(None, "new", |_| true));
        assert!(!may_add(Some(&known), "new", |_| true));
        assert!(may_add(Some(&known), "h3", |_| true), "a known one");
        assert!(
            may_add(Some(&known), "new", |h| h != "h0"),
            "an evicted one no longer counts"
        );
    }
}

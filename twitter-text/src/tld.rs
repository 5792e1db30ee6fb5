//! The top-level domains a host name must end with for X to see a URL in it.
//!
//! The list is twitter-text's own (`tld_lib.yml`, Apache 2.0, kept as published next to this
//! file so that updating it is a copy): generic and country-code domains, IDN ones written in
//! their scripts. It is embedded as text and indexed on first use.

use std::collections::HashSet;
use std::sync::OnceLock;

const TLD_LIB: &str = include_str!("tld_lib.yml");

/// The two lists, in the order twitter-text tries them.
pub(crate) struct Tlds {
    generic: HashSet<&'static str>,
    country: HashSet<&'static str>,
    /// The longest entry, in characters: how far a lookup has to look.
    longest: usize,
}

/// Which list a top-level domain was found in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `com`, `みんな`, `onion`...
    Generic,
    /// `jp`, `co`, `中国`...
    Country,
}

impl Tlds {
    /// The embedded lists.
    pub(crate) fn get() -> &'static Tlds {
        static TLDS: OnceLock<Tlds> = OnceLock::new();
        TLDS.get_or_init(|| Tlds::parse_tweet(TLD_LIB))
    }

    fn parse_tweet(yaml: &'static str) -> Tlds {
        let mut tlds = Tlds {
            generic: HashSet::new(),
            country: HashSet::new(),
            longest: 0,
        };
        let mut list = None;
        for line in yaml.lines() {
            match line {
                "country:" => list = Some(Kind::Country),
                "generic:" => list = Some(Kind::Generic),
                _ => {
                    let Some(entry) = line.strip_prefix("- ") else {
                        continue;
                    };
                    // YAML quotes the entries that would otherwise read as booleans ('no').
                    let entry = entry.trim_matches('\'');
                    tlds.longest = tlds.longest.max(entry.chars().count());
                    match list {
                        Some(Kind::Country) => tlds.country.insert(entry),
                        Some(Kind::Generic) => tlds.generic.insert(entry),
                        None => false,
                    };
                }
            }
        }
        tlds
    }

    /// The longest top-level domain of `kind` at the start of `text` that a character X allows
    /// after a domain follows (anything but an ASCII letter or digit, `@`, `+` or `-`), or the
    /// end of the text. Returns its length in characters. Letters compare without case.
    pub(crate) fn longest_at(&self, text: &[char], kind: Kind) -> Option<usize> {
        let set = match kind {
            Kind::Generic => &self.generic,
            Kind::Country => &self.country,
        };
        let mut candidate = String::new();
        let mut found = None;
        for (len, &c) in text.iter().take(self.longest).enumerate() {
            // No entry holds ASCII punctuation or white space: past one, nothing can match
            // (in `a.a.a…` one lookup per label instead of one per character up to 18).
            if c.is_ascii_punctuation() || c.is_whitespace() {
                break;
            }
            let lower = c.to_lowercase();
            if lower.len() != 1 {
                candidate.push(c);
            } else {
                candidate.extend(lower);
            }
            let len = len + 1;
            if set.contains(candidate.as_str()) && ends_domain(text.get(len).copied()) {
                found = Some(len);
            }
        }
        found
    }
}

/// Whether `next` may follow a top-level domain.
fn ends_domain(next: Option<char>) -> bool {
    next.is_none_or(|c| !(c.is_ascii_alphanumeric() || matches!(c, '@' | '+' | '-')))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Vec<char> {
        s.chars().collect()
    }

    #[test]
    fn both_lists_are_loaded() {
        let tlds = Tlds::get();
        assert!(tlds.generic.contains("com") && tlds.generic.contains("みんな"));
        assert!(tlds.country.contains("jp") && tlds.country.contains("no"));
        assert!(!tlds.country.contains("local") && !tlds.generic.contains("local"));
        assert!(tlds.generic.len() > 1000 && tlds.country.len() > 250);
        let all = tlds.generic.iter().chain(&tlds.country);
        assert!(
            all.flat_map(|e| e.chars())
                .all(|c| !c.is_ascii_punctuation() && !c.is_whitespace())
        );
    }

    #[test]
    fn what_may_follow_a_tld() {
        let tlds = Tlds::get();
        assert_eq!(tlds.longest_at(&chars("com"), Kind::Generic), Some(3));
        assert_eq!(tlds.longest_at(&chars("COM/x"), Kind::Generic), Some(3));
        assert_eq!(tlds.longest_at(&chars("comだよ"), Kind::Generic), Some(3));
        assert_eq!(tlds.longest_at(&chars("community"), Kind::Generic), Some(9));
        assert_eq!(tlds.longest_at(&chars("comx"), Kind::Generic), None);
        assert_eq!(tlds.longest_at(&chars("com-x"), Kind::Generic), None);
        assert_eq!(tlds.longest_at(&chars("gov@mail"), Kind::Generic), None);
        assert_eq!(tlds.longest_at(&chars("jp"), Kind::Generic), None);
        assert_eq!(tlds.longest_at(&chars("jp:80"), Kind::Country), Some(2));
    }
}

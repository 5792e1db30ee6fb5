//! X's (Twitter's) text rules, as its own library twitter-text 3 states them (config v3): the
//! weighted length a post may not exceed, whether X accepts a text at all, and where the URLs
//! are. Plain Rust, no regular-expression engine, linear in the text whatever it holds.
//!
//! The rules:
//!
//! - the text is NFC-normalized first;
//! - every URL counts 23, whatever its length; what is a URL is twitter-text's extractor's
//!   business (bare host names with a known top-level domain are, `.local` ones are not);
//! - every emoji sequence twitter-text knows counts 2;
//! - any other code point counts 1 in U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F and
//!   U+2032–U+2037, and 2 elsewhere (CJK, for instance);
//! - U+FFFE, U+FEFF and U+FFFF make a text invalid, and so does an empty one.
//!
//! ```
//! use twitter_text_pure::{parse_tweet, MAX_WEIGHTED_LENGTH};
//!
//! let parsed = parse_tweet("esx-07.rack12.example.com is up");
//! assert_eq!(parsed.weighted_length, 29);
//! assert!(parsed.valid && parsed.weighted_length <= MAX_WEIGHTED_LENGTH);
//! assert_eq!(parsed.permillage, 103);
//! assert_eq!((parsed.display_range_start, parsed.display_range_end), (0, 30));
//! ```
//!
//! twitter-text's own conformance data runs against this crate (`tests/conformance.rs`). The
//! `twitter-text` crate passes it too, but wraps the C++ library (`cxx`), which a static musl
//! build and a small binary do not afford.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod emoji;
mod emoji_data;
mod fit;
mod punycode;
mod tld;
mod urls;

use std::ops::Range;

pub use fit::{ELLIPSIS, fit, shorten};

use unicode_normalization::UnicodeNormalization as _;

/// The most weighted characters a post may have.
pub const MAX_WEIGHTED_LENGTH: usize = 280;

/// What a URL counts, whatever its length, in hundredths.
const URL_WEIGHT: usize = 23 * SCALE;
/// Weights are in hundredths of a character.
const SCALE: usize = 100;
const LIGHT: usize = 100;
const HEAVY: usize = 200;

/// What X makes of a text: twitter-text's `parseTweet` results, in its terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseResults {
    /// The weighted length, in characters (`weightedLength`).
    pub weighted_length: usize,
    /// Whether X accepts the text: not empty, not over the limit, no invalid character.
    pub valid: bool,
    /// The weighted length in thousandths of the limit, rounded down.
    pub permillage: usize,
    /// Index (UTF-16 code units, inclusive) of the first character that fits: always 0.
    pub valid_range_start: usize,
    /// Index (UTF-16 code units, inclusive) of the last character that still fits the limit.
    pub valid_range_end: usize,
    /// Index (UTF-16 code units) of the text's first character: always 0.
    pub display_range_start: usize,
    /// Index (UTF-16 code units, inclusive) of the text's last character.
    pub display_range_end: usize,
}

/// A URL as twitter-text's `extractUrlsWithIndices` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Url {
    /// The URL as it stands in the text.
    pub url: String,
    /// Where it starts and ends, in code points of the text (end exclusive).
    pub indices: [usize; 2],
}

/// The weighted length of `text` in characters, as X counts it.
///
/// ```
/// assert_eq!(twitter_text_pure::weighted_length("Hi http://test.co"), 26);
/// assert_eq!(twitter_text_pure::weighted_length("酒場"), 4);
/// ```
pub fn weighted_length(text: &str) -> usize {
    parse_tweet(text).weighted_length
}

/// Every URL of `text`, in order, with its indices.
///
/// ```
/// let urls = twitter_text_pure::extract_urls_with_indices("foo.com and https://t.co/abc");
/// let found: Vec<&str> = urls.iter().map(|u| u.url.as_str()).collect();
/// assert_eq!(found, ["foo.com", "https://t.co/abc"]);
/// assert_eq!(urls[1].indices, [12, 28]);
/// ```
pub fn extract_urls_with_indices(text: &str) -> Vec<Url> {
    let chars: Vec<char> = text.chars().collect();
    urls::extract(&chars)
        .into_iter()
        .map(|r| Url {
            url: chars[r.clone()].iter().collect(),
            indices: [r.start, r.end],
        })
        .collect()
}

/// Counts `text` as X does.
pub fn parse_tweet(text: &str) -> ParseResults {
    let chars: Vec<char> = text.nfc().collect();
    let weighed = weigh(&chars);
    let original_len = text.encode_utf16().count();
    let normalized_len = chars.iter().map(|c| c.len_utf16()).sum::<usize>();
    let weighted_length = weighed.total / SCALE;
    let valid_range_end = (weighed.last_fitting_unit + original_len).saturating_sub(normalized_len);
    ParseResults {
        weighted_length,
        valid: weighed.valid && weighed.total > 0 && weighed.total <= MAX_WEIGHTED_LENGTH * SCALE,
        permillage: weighted_length * 1000 / MAX_WEIGHTED_LENGTH,
        valid_range_start: 0,
        valid_range_end,
        display_range_start: 0,
        display_range_end: original_len.saturating_sub(1),
    }
}

/// The outcome of weighing a (normalized) text.
struct Weighed {
    /// In hundredths.
    total: usize,
    /// No invalid character.
    valid: bool,
    /// UTF-16 index of the last unit that fits the limit (0 when none does).
    last_fitting_unit: usize,
}

fn weigh(chars: &[char]) -> Weighed {
    let mut weighed = Weighed {
        total: 0,
        valid: true,
        last_fitting_unit: 0,
    };
    let mut unit = 0;
    for (piece, weight) in pieces(chars) {
        weighed.total += weight;
        unit += chars[piece.clone()]
            .iter()
            .map(|c| c.len_utf16())
            .sum::<usize>();
        // twitter-text checks the last unit of each piece; only single characters can be
        // invalid ones.
        if weighed.valid {
            weighed.valid = !is_invalid_char(chars[piece.end - 1]);
        }
        if weighed.valid && weighed.total <= MAX_WEIGHTED_LENGTH * SCALE {
            weighed.last_fitting_unit = unit - 1;
        }
    }
    weighed
}

/// The text cut into what X weighs as one: URLs, emoji, single code points; each with its
/// weight in hundredths.
pub(crate) fn pieces(chars: &[char]) -> Vec<(Range<usize>, usize)> {
    let urls = urls::extract(chars);
    let emoji = emoji::extract(chars);
    let (mut next_url, mut next_emoji) = (urls.iter().peekable(), emoji.iter().peekable());
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < chars.len() {
        // Entities that began inside the previous piece are skipped, as twitter-text does.
        while next_url.next_if(|url| url.start < at).is_some() {}
        while next_emoji.next_if(|e| e.start < at).is_some() {}
        let piece = if let Some(url) = next_url.next_if(|url| url.start == at) {
            (url.clone(), URL_WEIGHT)
        } else if let Some(e) = next_emoji.next_if(|e| e.start == at) {
            (e.clone(), HEAVY)
        } else {
            (at..at + 1, char_weight(chars[at]))
        };
        at = piece.0.end;
        pieces.push(piece);
    }
    pieces
}

/// Whether X refuses `c` anywhere in a post (U+FFFE, U+FEFF, U+FFFF: twitter-text's
/// `hasInvalidCharacters`).
pub fn is_invalid_char(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FEFF}' | '\u{FFFF}')
}

fn char_weight(c: char) -> usize {
    match u32::from(c) {
        0x0000..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => LIGHT,
        _ => HEAVY,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `extract` finds in `text`, as strings.
    pub(crate) fn found(text: &str, extract: fn(&[char]) -> Vec<Range<usize>>) -> Vec<String> {
        let chars: Vec<char> = text.chars().collect();
        extract(&chars)
            .into_iter()
            .map(|r| chars[r].iter().collect())
            .collect()
    }

    #[test]
    fn vectors_from_the_reference() {
        for (text, want) in [
            ("Hi http://test.co", 26),
            ("http://test.co", 23),
            ("H🐱☺👨‍👩‍👧‍👦", 7),
            ("😷👾😡🔥💩", 10),
            ("🙋🏽👨‍🎤", 4),
            ("1⃣", 2),
            ("cafe\u{301}", 4),
            ("caf\u{e9}", 4),
        ] {
            assert_eq!(weighted_length(text), want, "{text:?}");
        }
    }

    #[test]
    fn the_issue_examples() {
        assert_eq!(
            weighted_length("esx-07.rack12.datacenter-frankfurt.example.com is up"),
            29
        );
        assert_eq!(
            weighted_length("see https://vcenter.lab.local/ui/app/host/host-42/summary now"),
            61
        );
        let invalid = parse_tweet("ok\u{FEFF}");
        assert!(!invalid.valid);
        assert!(parse_tweet("\u{202A}ok\u{202C}").valid);
        assert!(!parse_tweet("").valid);
    }

    #[test]
    fn cjk_counts_double_and_ascii_single() {
        assert_eq!(weighted_length("酒場"), 4);
        assert_eq!(weighted_length(&"a".repeat(280)), 280);
        assert!(parse_tweet(&"a".repeat(280)).valid);
        assert!(!parse_tweet(&"a".repeat(281)).valid);
        assert_eq!(weighted_length(&"酒".repeat(141)), 282);
    }

    #[test]
    fn many_urls_are_counted_each() {
        // 100,000 URLs: quadratic counting took minutes here (`cargo bench` times it).
        let urls = 100_000;
        let text = "https://a.co ".repeat(urls);
        assert_eq!(weighted_length(&text), urls * 24);
    }
}

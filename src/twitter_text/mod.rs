//! X's text rules, as its own library twitter-text 3 states them (config v3): the weighted
//! length a post may not exceed, whether X accepts a text at all, and where URLs and emoji are.
//!
//! Checking locally saves a round trip and, on a booting host, a retry loop that cannot
//! succeed; the relay and `post --fit` use the same count to decide what fits. The rules:
//!
//! - the text is NFC-normalized first;
//! - every URL counts 23, whatever its length; what is a URL is [`urls`]' business (bare host
//!   names with a known top-level domain are, `.local` ones are not);
//! - every emoji sequence twitter-text knows counts 2 ([`emoji`]);
//! - any other code point counts 1 in U+0000–U+10FF, U+2000–U+200D, U+2010–U+201F and
//!   U+2032–U+2037, and 2 elsewhere (CJK, for instance);
//! - U+FFFE, U+FEFF and U+FFFF make a text invalid, and so does an empty one.
//!
//! The crate's `make test` runs twitter-text's own conformance cases against this module.
//! The `twitter-text` crate passes them too, but pulls in C++ (`cxx`), pest, idna and phf,
//! which the static musl build and the size budget do not afford.

pub mod emoji;
mod emoji_data;
pub mod fit;
mod punycode;
pub mod tld;
pub mod urls;

use std::ops::Range;

use unicode_normalization::UnicodeNormalization as _;

/// The most weighted characters a post may have.
pub const MAX_WEIGHTED_LENGTH: usize = 280;

/// What a URL counts, whatever its length, in hundredths.
const URL_WEIGHT: usize = 23 * SCALE;
/// Weights are in hundredths of a character.
const SCALE: usize = 100;
const LIGHT: usize = 100;
const HEAVY: usize = 200;

/// What X makes of a text (twitter-text's `parseTweet`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    /// The weighted length, in characters.
    pub weighted_length: usize,
    /// Whether X accepts the text: not empty, not over the limit, no invalid character.
    pub valid: bool,
    /// The weighted length in thousandths of the limit, rounded down.
    pub permillage: usize,
    /// Index (UTF-16 units, inclusive) of the last character that still fits the limit.
    pub valid_range_end: usize,
    /// Index (UTF-16 units, inclusive) of the text's last character.
    pub display_range_end: usize,
}

/// The weighted length of `text` in characters, as X counts it.
pub fn weighted_length(text: &str) -> usize {
    parse(text).weighted_length
}

/// Counts `text` as X does.
pub fn parse(text: &str) -> Parsed {
    let chars: Vec<char> = text.nfc().collect();
    let weighed = weigh(&chars);
    let original_len = text.encode_utf16().count();
    let normalized_len = chars.iter().map(|c| c.len_utf16()).sum::<usize>();
    let weighted_length = weighed.total / SCALE;
    let valid_range_end = (weighed.last_fitting_unit + original_len).saturating_sub(normalized_len);
    Parsed {
        weighted_length,
        valid: weighed.valid && weighed.total > 0 && weighed.total <= MAX_WEIGHTED_LENGTH * SCALE,
        permillage: weighted_length * 1000 / MAX_WEIGHTED_LENGTH,
        valid_range_end,
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
            weighed.valid = !is_invalid(chars[piece.end - 1]);
        }
        if weighed.valid && weighed.total <= MAX_WEIGHTED_LENGTH * SCALE {
            weighed.last_fitting_unit = unit - 1;
        }
    }
    weighed
}

/// The text cut into what X weighs as one: URLs, emoji, single code points; each with its
/// weight in hundredths.
pub fn pieces(chars: &[char]) -> Vec<(Range<usize>, usize)> {
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

/// Characters X does not accept in a post at all.
pub fn is_invalid(c: char) -> bool {
    matches!(c, '\u{FFFE}' | '\u{FEFF}' | '\u{FFFF}')
}

fn char_weight(c: char) -> usize {
    match u32::from(c) {
        0x0000..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => LIGHT,
        _ => HEAVY,
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
        let invalid = parse("ok\u{FEFF}");
        assert!(!invalid.valid);
        assert!(parse("\u{202A}ok\u{202C}").valid);
        assert!(!parse("").valid);
    }

    #[test]
    fn cjk_counts_double_and_ascii_single() {
        assert_eq!(weighted_length("酒場"), 4);
        assert_eq!(weighted_length(&"a".repeat(280)), 280);
        assert!(parse(&"a".repeat(280)).valid);
        assert!(!parse(&"a".repeat(281)).valid);
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

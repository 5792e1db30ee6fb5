//! The weighted length X uses to enforce its 280-character limit (twitter-text config v3).
//!
//! Checking locally saves a round trip and, on a booting host, a retry loop that cannot
//! succeed. The `twitter-text` crate (0.3.1) passes the conformance vectors quoted below, but it
//! pulls in `cxx` (C++), pest, idna and phf, which the static musl build and the size budget do
//! not afford. This module follows the v3 rules on `unicode-normalization`,
//! `unicode-segmentation` and `unicode-properties`:
//!
//! - the text is NFC-normalized first;
//! - every `http://` or `https://` URL counts as 23 characters, whatever its length;
//! - an emoji (a grapheme cluster with emoji presentation, a keycap, a ZWJ sequence, flags,
//!   skin tones) counts as 2;
//! - every other code point counts 1 in the ranges U+0000–U+10FF, U+2000–U+200D,
//!   U+2010–U+201F, U+2032–U+2037, and 2 elsewhere (CJK, for instance).
//!
//! Known difference: twitter-text also counts bare domains with a known top-level domain
//! (`example.com`) as URLs; here only URLs with a scheme do, since deciding which domains count
//! takes its list of some 1,500 TLDs. A bare domain is counted by its own length, so a text near
//! the limit may be counted longer or shorter than X counts it; when X counts it over the
//! limit, its refusal is reported as "text too long" (exit 65) like ours.

use unicode_normalization::UnicodeNormalization as _;
use unicode_properties::{EmojiStatus, UnicodeEmoji as _};
use unicode_segmentation::UnicodeSegmentation as _;

/// The most weighted characters a post may have.
pub const MAX_WEIGHTED_LENGTH: usize = 280;

/// What a URL counts, whatever its length.
const URL_WEIGHT: usize = 23 * SCALE;
const SCALE: usize = 100;
const LIGHT: usize = 100;
const HEAVY: usize = 200;

/// The weighted length of `text` in characters, as X counts it.
pub fn weighted_length(text: &str) -> usize {
    let text: String = text.nfc().collect();
    // ASCII lower-casing keeps byte offsets, so one copy serves every search: linear in the
    // text however many URLs it holds.
    let lower = text.to_ascii_lowercase();
    let mut total = 0;
    let mut done = 0;
    while let Some(start) = find_url_start(&lower, done) {
        total += weigh_plain(&text[done..start]);
        let url_len = url_length(&text[start..]);
        total += URL_WEIGHT;
        done = start + url_len;
    }
    total += weigh_plain(&text[done..]);
    total / SCALE
}

/// Byte offset in `lower` (the text, ASCII lower-cased) of the next `http://` or `https://`
/// at or after `from` that starts a word.
fn find_url_start(lower: &str, mut from: usize) -> Option<usize> {
    while let Some(i) = lower[from..].find("http").map(|i| i + from) {
        let tail = &lower[i..];
        let at_word_start = lower[..i]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_alphanumeric());
        let schemed = tail.starts_with("http://") || tail.starts_with("https://");
        let host_follows = tail
            .split_once("://")
            .and_then(|(_, h)| h.chars().next())
            .is_some_and(|c| c.is_alphanumeric());
        if at_word_start && schemed && host_follows {
            return Some(i);
        }
        from = i + 4;
    }
    None
}

/// Length in bytes of the URL at the start of `s`: up to white space, without trailing
/// punctuation that ends a sentence rather than the URL.
fn url_length(s: &str) -> usize {
    let end = s.find(char::is_whitespace).unwrap_or(s.len());
    s[..end]
        .trim_end_matches(['.', ',', ';', ':', '!', '?', ')', '\'', '"'])
        .len()
}

fn weigh_plain(s: &str) -> usize {
    s.graphemes(true)
        .map(|cluster| {
            if is_emoji(cluster) {
                HEAVY
            } else {
                cluster.chars().map(weigh_char).sum()
            }
        })
        .sum()
}

fn weigh_char(c: char) -> usize {
    match u32::from(c) {
        0x0000..=0x10FF | 0x2000..=0x200D | 0x2010..=0x201F | 0x2032..=0x2037 => LIGHT,
        _ => HEAVY,
    }
}

/// Whether a grapheme cluster is an emoji that X counts once, at weight 2.
fn is_emoji(cluster: &str) -> bool {
    let mut chars = cluster.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let presentation = cluster.chars().any(|c| {
        matches!(
            c.emoji_status(),
            EmojiStatus::EmojiPresentation
                | EmojiStatus::EmojiPresentationAndModifierBase
                | EmojiStatus::EmojiPresentationAndEmojiComponent
                | EmojiStatus::EmojiPresentationAndModifierAndEmojiComponent
        )
    });
    // A text-default emoji (like a digit before a keycap) becomes an emoji by what follows it:
    // U+FE0F (emoji presentation), U+20E3 (keycap) or a zero-width joiner.
    let promoted = first.is_emoji_char()
        && cluster
            .chars()
            .any(|c| matches!(c, '\u{FE0F}' | '\u{20E3}' | '\u{200D}'));
    presentation || promoted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conformance_vectors() {
        // twitter-text conformance/validate.yml, as quoted in the reference file.
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
    fn cjk_counts_double_and_ascii_single() {
        assert_eq!(weighted_length("酒場"), 4);
        assert_eq!(weighted_length(&"a".repeat(280)), 280);
        assert_eq!(weighted_length(&"酒".repeat(141)), 282);
    }

    #[test]
    fn flags_and_keycaps_are_single_emoji() {
        assert_eq!(weighted_length("🇫🇷"), 2);
        assert_eq!(weighted_length("#\u{FE0F}\u{20E3}"), 2);
    }

    #[test]
    fn urls_count_23_and_trailing_punctuation_is_text() {
        let long = format!("https://example.com/{}", "x".repeat(100));
        assert_eq!(weighted_length(&long), 23);
        assert_eq!(weighted_length("see https://example.com."), 4 + 23 + 1);
        assert_eq!(weighted_length("xhttp://a.b"), 11);
        assert_eq!(weighted_length("http:// nothing"), 15);
    }

    #[test]
    fn many_urls_are_counted_each() {
        // 200,000 URLs: quadratic counting took minutes here (`cargo bench` times it).
        let urls = 200_000;
        let text = "https://a.co ".repeat(urls);
        assert_eq!(weighted_length(&text), urls * 24);
    }
}

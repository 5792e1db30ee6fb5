//! Shortening a text that is too long for X (`post --fit`, the relay's templates): the longest
//! prefix that fits, ending with `…`, cut where a reader expects a cut.
//!
//! A cut never falls inside a URL, an emoji sequence or a grapheme cluster (a letter and its
//! accents), and prefers the end of a word when one is near. Each candidate is counted again by
//! the exact counter: cutting can turn the rest of a text into something else (`foo.comx` is
//! not a URL, `foo.com…` is), so the count of the whole is only where the search starts.

use std::ops::Range;

use unicode_normalization::UnicodeNormalization as _;
use unicode_segmentation::UnicodeSegmentation as _;

use super::{MAX_WEIGHTED_LENGTH, SCALE, parse_tweet, pieces};

/// What ends a shortened text. It weighs 2 (U+2026 is outside the light ranges).
pub const ELLIPSIS: char = '…';
/// The most characters given up to end on a word rather than inside one.
const NEAR: usize = 25;

/// `text` unchanged when X accepts it as it is; otherwise its longest prefix that X accepts
/// with [`ELLIPSIS`] after it, preferably cut at the end of a word. `None` when not even one
/// character fits, or when the text holds a character X refuses anywhere.
pub fn fit(text: &str) -> Option<String> {
    if parse_tweet(text).valid {
        return Some(text.to_string());
    }
    if text.chars().any(super::is_invalid_char) {
        return None;
    }
    shorten(text, |candidate| parse_tweet(candidate).valid)
}

/// The longest prefix of `text`, ended with [`ELLIPSIS`], that `accept` takes: cut at the end
/// of a word when one is at most a few characters shorter, else between any two pieces. Only
/// prefixes that could fit in a post by themselves are tried, so `accept` may place the
/// result inside a longer text (the relay's templates do).
pub fn shorten(text: &str, accept: impl Fn(&str) -> bool) -> Option<String> {
    let normalized: String = text.nfc().collect();
    let chars: Vec<char> = normalized.chars().collect();
    let pieces = pieces(&chars);
    let boundaries = cut_points(&normalized, &chars, &pieces);
    // The longest prefix that could fit, by the whole text's count, the ellipsis included.
    let budget = MAX_WEIGHTED_LENGTH * SCALE - super::HEAVY;
    let mut weight = 0;
    let mut longest = 0;
    for (piece, piece_weight) in pieces {
        weight += piece_weight;
        if weight > budget {
            break;
        }
        longest = piece.end;
    }
    let mut candidates = boundaries
        .into_iter()
        .filter(|&cut| cut > 0 && cut <= longest)
        .rev();
    let (best, text) = candidates.find_map(|cut| {
        let candidate = shortened(&chars[..cut]);
        accept(&candidate).then_some((cut, candidate))
    })?;
    let at_word_end = |cut: usize| chars[cut].is_whitespace() && !chars[cut - 1].is_whitespace();
    if at_word_end(best) {
        return Some(text);
    }
    let word_end = (best.saturating_sub(NEAR).max(1)..best)
        .rev()
        .filter(|&cut| at_word_end(cut))
        .map(|cut| shortened(&chars[..cut]))
        .find(|candidate| accept(candidate));
    Some(word_end.unwrap_or(text))
}

fn shortened(prefix: &[char]) -> String {
    let mut text: String = prefix.iter().collect();
    text.truncate(text.trim_end().len());
    text.push(ELLIPSIS);
    text
}

/// Character indices where a cut may fall: between pieces X weighs as one (URLs, emoji) and
/// between grapheme clusters, in ascending order.
fn cut_points(normalized: &str, chars: &[char], pieces: &[(Range<usize>, usize)]) -> Vec<usize> {
    let mut graphemes = vec![false; chars.len() + 1];
    let mut at = 0;
    for cluster in normalized.graphemes(true) {
        graphemes[at] = true;
        at += cluster.chars().count();
    }
    graphemes[at] = true;
    pieces
        .iter()
        .map(|(piece, _)| piece.start)
        .filter(|&start| graphemes[start])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::weighted_length;
    use super::*;

    #[test]
    fn a_text_that_fits_is_left_alone() {
        assert_eq!(fit("short text").as_deref(), Some("short text"));
    }

    #[test]
    fn long_text_is_cut_at_a_word_and_fits() {
        let text = "disk full on esx-07 ".repeat(30);
        let fitted = fit(&text).unwrap();
        assert!(
            fitted.ends_with("esx-07…")
                || fitted.ends_with("disk…")
                || fitted.ends_with("full…")
                || fitted.ends_with("on…"),
            "{fitted}"
        );
        let length = weighted_length(&fitted);
        assert!((270..=280).contains(&length), "{length}");
        assert!(text.starts_with(fitted.trim_end_matches(ELLIPSIS)));
    }

    #[test]
    fn never_inside_a_url_or_an_emoji() {
        let url = "https://grafana.example.com/d/abc/datastore?orgId=1&var-host=esx-07";
        let text = format!("{} {url} tail", "x".repeat(260));
        let fitted = fit(&text).unwrap();
        assert!(!fitted.contains("https"), "{fitted}");
        let text = "👨‍👩‍👧‍👦".repeat(200);
        let fitted = fit(&text).unwrap();
        assert_eq!(weighted_length(&fitted), 280);
        assert!(
            fitted
                .trim_end_matches(ELLIPSIS)
                .chars()
                .count()
                .is_multiple_of(7)
        );
        let text = "q\u{301}".repeat(400);
        let fitted = fit(&text).unwrap();
        assert!(
            !fitted.trim_end_matches(ELLIPSIS).ends_with('q'),
            "cut between q and its accent"
        );
    }

    #[test]
    fn invalid_characters_are_not_cut_away() {
        assert_eq!(fit(&format!("{}\u{FFFF}", "a".repeat(300))), None);
    }
}

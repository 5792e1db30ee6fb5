//! Emoji as twitter-text 3 finds them, each counted as one character of weight 2 however many
//! code points it has: keycaps (`1⃣`), flags, skin tones, ZWJ families, tag flags (🏴󠁧󠁢󠁥󠁮󠁧󠁿).
//!
//! The set is twitter-text's, not today's Unicode: a sequence it does not know (a newer ZWJ
//! sequence) counts as its parts, which is what X's counter does with it too. The sequences
//! are data (`emoji_data.rs`); this module finds the longest one at a position, which for
//! this set is what twitter-text's pattern (first alternative that matches) finds as well.

use std::collections::HashSet;
use std::ops::{Range, RangeInclusive};
use std::sync::OnceLock;

use super::emoji_data::{SEQUENCES, TEXT_DEFAULT};

/// The five skin-tone modifiers; the data writes each as the first.
const SKIN_TONES: RangeInclusive<char> = '\u{1F3FB}'..='\u{1F3FF}';
/// The longest sequence of the set, in code points.
const LONGEST: usize = 8;
/// Variation selector 15: asks for the text (not emoji) presentation of what precedes it.
const TEXT_PRESENTATION: char = '\u{FE0E}';

fn sequences() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| SEQUENCES.lines().collect())
}

/// The length in code points of the emoji that starts `text`, if one does.
pub(crate) fn emoji_at(text: &[char]) -> Option<usize> {
    let &first = text.first()?;
    if first.is_ascii() && !matches!(first, '#' | '*' | '0'..='9') {
        return None;
    }
    let set = sequences();
    let mut key = String::new();
    let mut found = None;
    for (i, &c) in text.iter().take(LONGEST).enumerate() {
        key.push(if SKIN_TONES.contains(&c) {
            '\u{1F3FB}'
        } else {
            c
        });
        if set.contains(key.as_str()) {
            found = Some(i + 1);
        }
    }
    if found == Some(1) && TEXT_DEFAULT.contains(&first) && text.get(1) == Some(&TEXT_PRESENTATION)
    {
        return None;
    }
    found
}

/// Every emoji of `text`, left to right, as code point ranges.
pub(crate) fn extract(text: &[char]) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < text.len() {
        match emoji_at(&text[i..]) {
            Some(len) => {
                found.push(i..i + len);
                i += len;
            }
            None => i += 1,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emoji(s: &str) -> Vec<String> {
        super::super::tests::found(s, extract)
    }

    #[test]
    fn sequences_count_once() {
        assert_eq!(emoji("👨‍👩‍👧‍👦"), ["👨‍👩‍👧‍👦"]);
        assert_eq!(emoji("🙋🏽👨‍🎤"), ["🙋🏽", "👨‍🎤"]);
        assert_eq!(emoji("🙋🏿"), ["🙋🏿"]);
        assert_eq!(emoji("🇫🇷🇩🇪"), ["🇫🇷", "🇩🇪"]);
        assert_eq!(emoji("1⃣ #\u{FE0F}\u{20E3}"), ["1⃣", "#\u{FE0F}\u{20E3}"]);
        assert_eq!(emoji("🏴󠁧󠁢󠁥󠁮󠁧󠁿"), ["🏴󠁧󠁢󠁥󠁮󠁧󠁿"]);
    }

    #[test]
    fn text_presentation_and_plain_characters() {
        assert_eq!(emoji("\u{2764}\u{FE0F}"), ["\u{2764}\u{FE0F}"]);
        assert!(emoji("\u{2764}\u{FE0E}").is_empty());
        assert!(emoji("© ® 1 # abc").is_empty());
        // A lone variation selector is its own emoji to twitter-text.
        assert_eq!(emoji("a\u{FE0F}"), ["\u{FE0F}"]);
        // A ZWJ sequence twitter-text does not know counts as its parts.
        assert_eq!(emoji("❤️‍🔥"), ["\u{2764}\u{FE0F}", "🔥"]);
    }
}

//! What in an alert value would become a link, a mention, a hashtag or a cashtag on X, made
//! plain text: the post still shows it, X links nothing.
//!
//! Alert labels and annotations are not the operator's words: a tenant's label, a DHCP host
//! name or a scraped target can hold `@POTUS` or `phish.example/login`, and X links every
//! entity its extractor (twitter-text) finds. URLs are found with the exact extractor
//! ([`crate::twitter_text::extract_urls_with_indices`]) and their dots written `[.]`, as security teams defang
//! links; a space goes after the `@`, `#` or `$` of anything that could be a mention, hashtag
//! or cashtag. Those three are found by rules wider than twitter-text's (any `@` before a name
//! character unless a word or `@` comes before it, and so on): a few harmless `#`s are spaced
//! too, and nothing twitter-text would find is missed, which the conformance data checks.

use std::ops::Range;

use crate::twitter_text::extract_urls_with_indices;

/// Which entities may stay live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Allow {
    /// Links (`--allow-links`).
    pub links: bool,
    /// Mentions (`--allow-mentions`).
    pub mentions: bool,
    /// Hashtags and cashtags (`--allow-hashtags`).
    pub hashtags: bool,
}

/// `value` with every entity that `allow` does not allow made plain text.
pub fn defang(value: &str, allow: Allow) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    // Spacing a `#` can free a host name (`#example.com`), and `[.]` puts a `]` before what
    // followed a dot: both passes run until neither changes anything. Each round that changes
    // something spaces a trigger for good or takes a dot out of a link, so the rounds end.
    loop {
        let before = chars.len();
        if !allow.mentions || !allow.hashtags {
            chars = space_triggers(&chars, allow);
        }
        if !allow.links {
            chars = defang_links(&chars);
        }
        if chars.len() == before {
            return chars.into_iter().collect();
        }
    }
}

/// Where X sees URLs in `chars`, as code point ranges.
fn url_ranges(chars: &[char]) -> Vec<Range<usize>> {
    let text: String = chars.iter().collect();
    extract_urls_with_indices(&text)
        .into_iter()
        .map(|url| url.indices[0]..url.indices[1])
        .collect()
}

/// Every URL's dots written `[.]`, until the extractor finds none.
fn defang_links(chars: &[char]) -> Vec<char> {
    let mut chars = chars.to_vec();
    loop {
        let found = url_ranges(&chars);
        if found.is_empty() {
            return chars;
        }
        let mut out = Vec::with_capacity(chars.len() + 8);
        let mut next = found.iter().peekable();
        for (i, &c) in chars.iter().enumerate() {
            while next.next_if(|url| url.end <= i).is_some() {}
            let inside = next.peek().is_some_and(|url| url.start <= i);
            if inside && c == '.' {
                out.extend(['[', '.', ']']);
            } else {
                out.push(c);
            }
        }
        // A URL without a dot cannot be (a host needs a top-level domain after one), so each
        // round removes dots and the loop ends.
        chars = out;
    }
}

/// A space after each `@`, `#` or `$` that could start an entity that `allow` forbids.
fn space_triggers(chars: &[char], allow: Allow) -> Vec<char> {
    let mut out = Vec::with_capacity(chars.len() + 8);
    for (i, &c) in chars.iter().enumerate() {
        out.push(c);
        let before = &chars[..i];
        let after = &chars[i + 1..];
        let live = match c {
            '@' | '\u{FF20}' => !allow.mentions && could_mention(before, after),
            '#' | '\u{FF03}' => !allow.hashtags && could_hashtag(before, after),
            '$' => !allow.hashtags && could_cashtag(before, after),
            _ => false,
        };
        if live {
            out.push(' ');
        }
    }
    out
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// twitter-text: `@` and 1 to 20 name characters, not after a name character or one of
/// `!#$%&*@＠`, unless after `RT:`.
fn could_mention(before: &[char], after: &[char]) -> bool {
    if !after.first().is_some_and(|&c| is_name_char(c)) {
        return false;
    }
    let blocked = before
        .last()
        .is_some_and(|&c| is_name_char(c) || "!#$%&*@\u{FF20}".contains(c));
    !blocked || after_retweet(before)
}

/// Whether `before` ends with `rt` or `rt:` (any case), which twitter-text lets a mention follow.
fn after_retweet(before: &[char]) -> bool {
    let end = if before.last() == Some(&':') {
        before.len() - 1
    } else {
        before.len()
    };
    end >= 2
        && before[end - 2].eq_ignore_ascii_case(&'r')
        && before[end - 1].eq_ignore_ascii_case(&'t')
}

/// twitter-text: `#` then letters, marks, digits and a few joiners, at least one of them not a
/// digit; not after a letter, digit, `_` or `&`, not a keycap (`#️⃣`). Any character outside
/// ASCII counts as a possible letter here.
fn could_hashtag(before: &[char], after: &[char]) -> bool {
    if matches!(after.first(), Some('\u{FE0F}' | '\u{20E3}')) {
        return false;
    }
    if before.last().is_some_and(|&c| is_name_char(c) || c == '&') {
        return false;
    }
    let tag: Vec<char> = after
        .iter()
        .copied()
        .take_while(|&c| is_name_char(c) || (!c.is_ascii() && !c.is_whitespace()))
        .collect();
    !tag.is_empty() && !tag.iter().all(char::is_ascii_digit)
}

/// twitter-text: `$` and a letter, at the start or after white space.
fn could_cashtag(before: &[char], after: &[char]) -> bool {
    after.first().is_some_and(char::is_ascii_alphabetic)
        && before.last().is_none_or(|c| c.is_whitespace())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(value: &str) -> String {
        defang(value, Allow::default())
    }

    #[test]
    fn entities_become_text() {
        for (value, posted) in [
            ("ping @POTUS now", "ping @ POTUS now"),
            ("RT:@x", "RT:@ x"),
            // After an `@`, twitter-text sees no link (nor a mention: a letter precedes it).
            ("ops@example.com", "ops@example.com"),
            ("#outage in #rack12", "# outage in # rack12"),
            ("ticket #1234, C#, &#39;", "ticket #1234, C#, &#39;"),
            ("buy $TSLA, not $5", "buy $ TSLA, not $5"),
            (
                "see https://phish.example.com/login.php",
                "see https://phish[.]example[.]com/login[.]php",
            ),
            ("#evil.com", "# evil[.]com"),
            ("vc01.lab.local at 10.0.0.7", "vc01.lab.local at 10.0.0.7"),
        ] {
            assert_eq!(plain(value), posted, "{value:?}");
        }
    }

    #[test]
    fn allowed_entities_stay() {
        let all = Allow {
            links: true,
            mentions: true,
            hashtags: true,
        };
        let text = "@a #b $C https://d.com";
        assert_eq!(defang(text, all), text);
        let links = Allow {
            links: true,
            ..Allow::default()
        };
        assert_eq!(defang(text, links), "@ a # b $ C https://d.com");
    }

    #[test]
    fn nothing_links_after_defanging() {
        for text in [
            "a.com.b.com",
            "x.com]#y.com",
            "@@a.com",
            "http://t.co/abc",
            "ﾠ#ab.co",
            "a.co/b.co?c.co#d.co",
        ] {
            let out = plain(text);
            assert!(
                extract_urls_with_indices(&out).is_empty(),
                "{text} -> {out}"
            );
        }
    }
}

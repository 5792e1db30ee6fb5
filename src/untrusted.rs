//! Text that others wrote (alert labels, X's answers, a server's error page) made safe to
//! show on a terminal, in a log line or in a post: terminal escape sequences are removed
//! whole (not only their ESC, which left `[31m` behind), other control characters become
//! spaces, and the invisible characters that change how text reads (bidi overrides such as
//! U+202E, zero-width characters) are dropped.

/// `text` without escape sequences, control or invisible formatting characters: controls
/// (line breaks included) become spaces, so one line stays one line.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1B}' => skip_escape(&mut chars),
            // The C1 forms of CSI, OSC and the string controls.
            '\u{9B}' => skip_csi(&mut chars),
            '\u{90}' | '\u{98}' | '\u{9D}' | '\u{9E}' | '\u{9F}' => skip_string(&mut chars),
            c if is_invisible(c) => {}
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `text` made [`printable`], on one line with single spaces, and at most `max` characters
/// (the cut marked with `…`).
pub fn one_line(text: &str, max: usize) -> String {
    let mut out = String::new();
    for word in printable(text).split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.len() > 4 * max {
            break;
        }
    }
    match out.char_indices().nth(max) {
        Some((cut, _)) => {
            let kept = out[..cut].trim_end();
            let cut = kept
                .char_indices()
                .nth(max.saturating_sub(1))
                .map_or(kept, |(at, _)| &kept[..at]);
            format!("{cut}…")
        }
        None => out,
    }
}

/// Bidi controls, zero-width and other invisible formatting characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{2066}'..='\u{206F}'
            | '\u{FEFF}'
    )
}

type Chars<'t> = std::iter::Peekable<std::str::Chars<'t>>;

/// After an ESC: a CSI (`ESC [`), a string (`ESC ]`, `ESC P`...), or a short sequence of
/// intermediate bytes and a final one (`ESC ( B`).
fn skip_escape(chars: &mut Chars) {
    match chars.next() {
        Some('[') => skip_csi(chars),
        Some(']' | 'P' | 'X' | '^' | '_') => skip_string(chars),
        Some('\u{20}'..='\u{2F}') => {
            while chars
                .next_if(|c| ('\u{20}'..='\u{2F}').contains(c))
                .is_some()
            {}
            chars.next_if(|c| ('\u{30}'..='\u{7E}').contains(c));
        }
        _ => {}
    }
}

/// Parameters and intermediates, then the final byte.
fn skip_csi(chars: &mut Chars) {
    while chars
        .next_if(|c| ('\u{20}'..='\u{3F}').contains(c))
        .is_some()
    {}
    chars.next_if(|c| ('\u{40}'..='\u{7E}').contains(c));
}

/// Up to BEL or the string terminator (`ESC \` or U+009C); to the end if none comes.
fn skip_string(chars: &mut Chars) {
    while let Some(c) = chars.next() {
        match c {
            '\u{07}' | '\u{9C}' => return,
            '\u{1B}' if chars.peek() == Some(&'\\') => {
                chars.next();
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_sequences_invisible_and_control_characters_go() {
        for (raw, shown) in [
            // Escape sequences go whole.
            ("a\u{1B}[31mred\u{1B}[0m b", "ared b"),
            ("\u{1B}]0;pwned\u{07}title", "title"),
            ("\u{1B}]8;;http://x\u{1B}\\link", "link"),
            ("\u{9B}2Jclear", "clear"),
            ("\u{1B}(Bok", "ok"),
            ("cut \u{1B}[3", "cut "),
            // Bidi overrides and zero-width characters go; controls become spaces.
            ("evil\u{202E}gpj.exe", "evilgpj.exe"),
            ("ze\u{200B}ro\u{2060}", "zero"),
            ("two\nlines\r\tx", "two lines  x"),
            ("café ✓ 日本", "café ✓ 日本"),
        ] {
            assert_eq!(printable(raw), shown, "{raw:?}");
        }
    }

    #[test]
    fn one_line_is_bounded() {
        assert_eq!(one_line("  a\n\n b  ", 10), "a b");
        let long = one_line(&"word ".repeat(100), 12);
        assert_eq!(long, "word word w…");
        assert_eq!(long.chars().count(), 12);
        assert_eq!(one_line(&"x".repeat(1_000_000), 5).chars().count(), 5);
    }
}

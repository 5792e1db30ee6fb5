//! URLs as X finds them in a post (twitter-text 3's extractor), each of which counts 23
//! characters whatever its length.
//!
//! What counts, in short: an optional `http://` or `https://`, a host name of labels that ends
//! in a known top-level domain ([`super::tld`]), an optional port, path and query, each with its
//! own characters and the characters it may end with (a path does not end with `.` or `!`, so a
//! sentence's full stop stays text). Without a scheme, only the ASCII part of the host counts
//! and only when a space, not `-`, `_`, `.` or `/`, precedes it. Host labels must encode to at
//! most 63 characters (Punycode), a URL to at most 4096, a t.co slug to at most 40.
//!
//! twitter-text states this as one regular expression run by a backtracking engine; this module
//! follows the same decisions (which alternative is tried first, where backtracking ends a
//! match) in plain code, in time linear in the text: host name matches are remembered by
//! position, so a text of many dots or a long run of letters is not rescanned from every start.

use std::collections::HashMap;
use std::ops::Range;

use super::tld::{Kind, Tlds};
use super::{is_invalid_char, punycode};

/// The longest URL X accepts, in UTF-16 units, scheme counted (twice, as twitter-text does).
const MAX_URL_LENGTH: usize = 4096;
/// The longest host label, in characters once Punycode-encoded.
const MAX_LABEL_LENGTH: usize = 63;
/// The longest t.co slug.
const MAX_TCO_SLUG_LENGTH: usize = 40;

/// Every URL of `text`, left to right, as code point ranges.
pub(crate) fn extract(text: &[char]) -> Vec<Range<usize>> {
    if !text.contains(&'.') {
        return Vec::new();
    }
    let mut scanner = Scanner::new(text);
    let mut urls = Vec::new();
    let mut at = 0;
    while at < text.len() {
        let Some(found) = scanner.match_at(at) else {
            at += 1;
            continue;
        };
        at = found.end;
        scanner.accept(&found, &mut urls);
    }
    urls
}

/// One match of the URL pattern, before the checks that may discard it.
struct Match {
    /// The character before the URL, if any (`None` at the start of the text).
    before: Option<char>,
    /// Where the URL starts (at its scheme, if it has one).
    start: usize,
    /// Length of the scheme, `http://` or `https://`, or 0.
    scheme: usize,
    /// The host name.
    host: Range<usize>,
    /// Whether a path (even a lone `/`) follows the host and port.
    has_path: bool,
    /// Where the URL ends.
    end: usize,
}

struct Scanner<'t> {
    text: &'t [char],
    tlds: &'static Tlds,
    /// For each position, where the run of host-label characters (and `_`, `-`) starting
    /// there ends.
    label_run: Vec<usize>,
    /// The same without `_`, which the last label before the top-level domain may not hold.
    name_run: Vec<usize>,
    /// Host names already matched (or not) from a position.
    hosts: Vec<Option<Option<usize>>>,
}

impl<'t> Scanner<'t> {
    fn new(text: &'t [char]) -> Self {
        let runs = |allowed: fn(char) -> bool| {
            let mut ends = vec![text.len(); text.len() + 1];
            for i in (0..text.len()).rev() {
                ends[i] = if allowed(text[i]) { ends[i + 1] } else { i };
            }
            ends
        };
        Scanner {
            text,
            tlds: Tlds::get(),
            label_run: runs(|c| is_domain_char(c) || c == '_' || c == '-'),
            name_run: runs(|c| is_domain_char(c) || c == '-'),
            hosts: vec![None; text.len() + 1],
        }
    }

    /// The URL pattern tried at `at`: a preceding character, then a URL after it; at the
    /// very start of the text, the URL alone when that fails.
    fn match_at(&mut self, at: usize) -> Option<Match> {
        let before = self.text[at];
        if is_url_preceding(before)
            && let Some(found) = self.url_at(at + 1, Some(before))
        {
            return Some(found);
        }
        if at == 0 {
            return self.url_at(0, None);
        }
        None
    }

    fn url_at(&mut self, start: usize, before: Option<char>) -> Option<Match> {
        let scheme = self.scheme_at(start);
        let (scheme, host_end) = match self.host_at(start + scheme) {
            Some(end) if scheme > 0 => (scheme, end),
            // Without the scheme, the host must start where the scheme did.
            _ => (0, self.host_at(start)?),
        };
        let host = start + scheme..host_end;
        let mut end = host_end;
        if self.text.get(end) == Some(&':') {
            let digits = self.run(end + 1, |c| c.is_ascii_digit());
            if digits > end + 1 {
                end = digits;
            }
        }
        let has_path = self.text.get(end) == Some(&'/');
        if has_path {
            end = self.path_end(end + 1);
        }
        end = self.query_end(end);
        Some(Match {
            before,
            start,
            scheme,
            host,
            has_path,
            end,
        })
    }

    fn scheme_at(&self, at: usize) -> usize {
        ["https://", "http://"]
            .into_iter()
            .find(|scheme| self.starts_with_ignoring_case(at, scheme))
            .map_or(0, str::len)
    }

    fn starts_with_ignoring_case(&self, at: usize, ascii: &str) -> bool {
        self.text
            .get(at..)
            .is_some_and(|rest| starts_with_ignoring_case(rest, ascii))
    }

    /// Labels with a dot after each (`sub.`), then the domain's own label and dot, then a
    /// top-level domain; as many leading labels as can be had, as a greedy pattern would.
    /// Returns where the host name ends.
    fn host_at(&mut self, at: usize) -> Option<usize> {
        if let Some(known) = self.hosts[at] {
            return known;
        }
        // Walk the chain of `label.` from `at` (up to a start already settled), then settle it
        // from its far end back: a long chain costs one pass, remembered for every start on it.
        let mut chain = vec![at];
        let mut current = at;
        while let Some(next) = self.label_end(current, false) {
            chain.push(next);
            if self.hosts[next].is_some() {
                break;
            }
            current = next;
        }
        for &start in chain.iter().rev() {
            if self.hosts[start].is_some() {
                continue;
            }
            let deeper = self
                .label_end(start, false)
                .and_then(|next| self.hosts[next].flatten());
            let here = deeper.or_else(|| self.tld_at(self.label_end(start, true)?));
            self.hosts[start] = Some(here);
        }
        self.hosts[at].flatten()
    }

    /// The end (after its dot) of a host label at `at`: host characters, with `-` (and `_`
    /// unless it is the domain's own label) inside but not at either end.
    fn label_end(&self, at: usize, domain_label: bool) -> Option<usize> {
        let end = if domain_label {
            self.name_run[at]
        } else {
            self.label_run[at]
        };
        let inside = &self.text[at..end];
        let (first, last) = (inside.first()?, inside.last()?);
        (is_domain_char(*first) && is_domain_char(*last) && self.text.get(end) == Some(&'.'))
            .then_some(end + 1)
    }

    fn tld_at(&self, at: usize) -> Option<usize> {
        tld_len(self.tlds, &self.text[at..]).map(|len| at + len)
    }

    /// Where a path that starts at `at` (after its `/`) ends: path characters and balanced
    /// parentheses, up to the last one a path may end with.
    fn path_end(&self, at: usize) -> usize {
        let mut i = at;
        let mut end = at;
        loop {
            match self.text.get(i) {
                Some(&c) if is_path_char(c) => {
                    i += 1;
                    if is_path_ending(c) {
                        end = i;
                    }
                }
                Some('(') => match self.balanced_parens(i) {
                    Some(after) => {
                        i = after;
                        end = after;
                    }
                    None => break,
                },
                _ => break,
            }
        }
        end
    }

    /// `(chars)` or `(chars(chars)chars)` at `at`: Wikipedia's `Primer_(film)`.
    fn balanced_parens(&self, at: usize) -> Option<usize> {
        let inner = self.run(at + 1, is_path_char);
        match self.text.get(inner) {
            Some(')') if inner > at + 1 => Some(inner + 1),
            Some('(') => {
                let nested = self.run(inner + 1, is_path_char);
                if nested == inner + 1 || self.text.get(nested) != Some(&')') {
                    return None;
                }
                let tail = self.run(nested + 1, is_path_char);
                (self.text.get(tail) == Some(&')')).then_some(tail + 1)
            }
            _ => None,
        }
    }

    /// With a query (`?` and its characters, up to the last one a query may end with) at
    /// `at`, where it ends; otherwise `at`.
    fn query_end(&self, at: usize) -> usize {
        if self.text.get(at) != Some(&'?') {
            return at;
        }
        let run = self.run(at + 1, is_query_char);
        (at + 1..run)
            .rev()
            .find(|&i| is_query_ending(self.text[i]))
            .map_or(at, |last| last + 1)
    }

    fn run(&self, at: usize, allowed: fn(char) -> bool) -> usize {
        let rest = self.text.get(at..).unwrap_or_default();
        at + rest.iter().take_while(|&&c| allowed(c)).count()
    }

    /// The checks after a match: lengths, the scheme-less rules, t.co slugs.
    fn accept(&self, found: &Match, urls: &mut Vec<Range<usize>>) {
        let url = &self.text[found.start..found.end];
        let host = &self.text[found.host.clone()];
        let scheme = if found.scheme > 0 { found.scheme } else { 8 };
        // The length first: it bounds the work of the host checks.
        if utf16_len(url) + scheme > MAX_URL_LENGTH {
            return;
        }
        let mut domains = AsciiDomains::new(host, self.tlds);
        if !host_encodes(host, &mut domains) {
            return;
        }
        if found.scheme == 0 {
            if matches!(found.before, Some('-' | '_' | '.' | '/')) {
                return;
            }
            // Only the ASCII host names within the host count, and the path joins the last.
            let first_new = urls.len();
            let mut at = 0;
            while at < host.len() {
                match domains.at(at) {
                    Some(end) => {
                        urls.push(found.host.start + at..found.host.start + end);
                        at = end;
                    }
                    None => at += 1,
                }
            }
            if found.has_path
                && urls.len() > first_new
                && let Some(last) = urls.last_mut()
            {
                last.end = found.end;
            }
            return;
        }
        match self.tco_end(found) {
            Some(Some(end)) => urls.push(found.start..end),
            Some(None) => {}
            None => urls.push(found.start..found.end),
        }
    }

    /// For a t.co URL, where it ends: its slug and a query, nothing more. `Some(None)` when
    /// the slug is too long for a t.co link; `None` when it is not a t.co URL.
    fn tco_end(&self, found: &Match) -> Option<Option<usize>> {
        let slug_start = found.start + found.scheme + "t.co/".len();
        if !self.starts_with_ignoring_case(found.start + found.scheme, "t.co/") {
            return None;
        }
        let slug_end = self
            .run(slug_start, |c| c.is_ascii_alphanumeric())
            .min(found.end);
        if slug_end == slug_start {
            return None;
        }
        if slug_end - slug_start > MAX_TCO_SLUG_LENGTH {
            return Some(None);
        }
        Some(Some(self.query_end(slug_end).min(found.end)))
    }
}

/// The ASCII host names inside one host name (labels of letters, digits, `-` and Latin
/// accented letters, then a top-level domain), asked for at every position of the host.
///
/// From a position, labels are taken greedily and the top-level domain is looked for after
/// the last label that leaves one: the chains of labels from neighbouring positions share
/// their tails, so each label end is settled once and remembered. Asked at every position of
/// `a.a.a...a.ж.рф`, that is one pass, not one pass per position (which made 4 KB of text
/// cost seconds).
struct AsciiDomains<'h> {
    host: &'h [char],
    tlds: &'static Tlds,
    /// For each position, where the run of ASCII label characters starting there ends.
    run: Vec<usize>,
    /// For each label end settled so far: where the host name found from it ends, if any.
    settled: HashMap<usize, Option<usize>>,
}

impl<'h> AsciiDomains<'h> {
    fn new(host: &'h [char], tlds: &'static Tlds) -> Self {
        let mut run = vec![host.len(); host.len() + 1];
        for i in (0..host.len()).rev() {
            run[i] = if is_ascii_label_char(host[i]) {
                run[i + 1]
            } else {
                i
            };
        }
        AsciiDomains {
            host,
            tlds,
            run,
            settled: HashMap::new(),
        }
    }

    /// The end (after its dot) of the label at `from`.
    fn label(&self, from: usize) -> Option<usize> {
        let end = self.run[from];
        (end > from && self.host.get(end) == Some(&'.')).then_some(end + 1)
    }

    /// The ASCII host name starting at `at`; where it ends.
    fn at(&mut self, at: usize) -> Option<usize> {
        let first = self.label(at)?;
        // The chain of label ends from `first`, up to one already settled...
        let mut chain = vec![first];
        let mut current = first;
        while !self.settled.contains_key(&current)
            && let Some(next) = self.label(current)
        {
            chain.push(next);
            current = next;
        }
        // ...settled from its far end: the deepest top-level domain wins.
        for &end in chain.iter().rev() {
            if self.settled.contains_key(&end) {
                continue;
            }
            let deeper = self
                .label(end)
                .and_then(|next| self.settled.get(&next).copied().flatten());
            let here =
                deeper.or_else(|| tld_len(self.tlds, &self.host[end..]).map(|len| end + len));
            self.settled.insert(end, here);
        }
        self.settled.get(&first).copied().flatten()
    }
}

/// Whether every label of `host` encodes (Punycode) to 1 to 63 characters, and a host that
/// claims to be Punycode already (`xn--`) is ASCII.
fn host_encodes(host: &[char], domains: &mut AsciiDomains) -> bool {
    if host.starts_with(&['x', 'n', '-', '-'])
        && !(0..host.len()).any(|at| domains.at(at).is_some())
    {
        return false;
    }
    host.split(|&c| c == '.').all(|label| {
        // Like the punycode library twitter-text calls, ideographic full stops separate too.
        let encoded: Option<usize> = label
            .split(|&c| matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}'))
            .map(|part| {
                // An encoding is never shorter than its input: a longer part cannot fit.
                (part.len() <= MAX_LABEL_LENGTH)
                    .then(|| punycode::to_ascii(part))
                    .flatten()
                    .map(|s| s.len() + 1)
            })
            .sum();
        encoded.is_some_and(|len| (1..=MAX_LABEL_LENGTH).contains(&(len - 1)))
    })
}

/// The top-level domain at the start of `text`, as twitter-text tries them: generic, then
/// country code, then Punycode; its length.
fn tld_len(tlds: &Tlds, text: &[char]) -> Option<usize> {
    tlds.longest_at(text, Kind::Generic)
        .or_else(|| tlds.longest_at(text, Kind::Country))
        .or_else(|| punycode_tld(text))
}

/// `xn--` and Punycode letters, digits and dashes.
fn punycode_tld(text: &[char]) -> Option<usize> {
    if !starts_with_ignoring_case(text, "xn--") {
        return None;
    }
    let digits = text[4..]
        .iter()
        .take_while(|&&c| c.is_ascii_alphanumeric() || c == '-')
        .count();
    (digits > 0).then_some(4 + digits)
}

/// Whether `text` starts with `ascii`, ASCII letters compared without case.
fn starts_with_ignoring_case(text: &[char], ascii: &str) -> bool {
    text.len() >= ascii.len()
        && text
            .iter()
            .zip(ascii.chars())
            .all(|(c, a)| c.eq_ignore_ascii_case(&a))
}

fn utf16_len(text: &[char]) -> usize {
    text.iter().map(|c| c.len_utf16()).sum()
}

/// What may come right before a URL: not a letter or digit, not `@`, `$` or `#` (a mention,
/// cashtag or hashtag), not a character X rejects.
fn is_url_preceding(c: char) -> bool {
    !(c.is_ascii_alphanumeric()
        || matches!(c, '@' | '\u{FF20}' | '$' | '#' | '\u{FF03}')
        || is_invalid_char(c))
}

/// What a host label may be made of: anything but ASCII punctuation, white space, the
/// invalid characters and the directional marks.
fn is_domain_char(c: char) -> bool {
    !(is_punct(c) || is_space(c) || is_invalid_char(c) || is_directional(c))
}

/// twitter-text's punctuation (`"` and `` ` `` are not in it).
const PUNCT: &str = "!'#%&()*+,\\-./:;<=>?@[]^_{|}~$";
/// What a path holds besides letters and digits.
const PATH: &str = "!*';:=+,.$/%#[]-\u{2013}_~@|&";
/// What a query holds besides letters and digits.
const QUERY: &str = "!?*'@();:&=+$/%#[]-_.,~|";

fn is_punct(c: char) -> bool {
    PUNCT.contains(c)
}

fn is_space(c: char) -> bool {
    matches!(
        c,
        '\u{9}'..='\u{D}'
            | ' '
            | '\u{85}'
            | '\u{A0}'
            | '\u{1680}'
            | '\u{180E}'
            | '\u{2000}'..='\u{200A}'
            | '\u{2028}'
            | '\u{2029}'
            | '\u{202F}'
            | '\u{205F}'
            | '\u{3000}'
    )
}

fn is_directional(c: char) -> bool {
    matches!(
        c,
        '\u{202A}'..='\u{202E}' | '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{2066}'..='\u{2069}'
    )
}

/// Latin letters with accents (and combining marks) that paths and ASCII host names may hold.
fn is_latin_accent(c: char) -> bool {
    matches!(
        c,
        '\u{C0}'..='\u{D6}'
            | '\u{D8}'..='\u{F6}'
            | '\u{F8}'..='\u{FF}'
            | '\u{100}'..='\u{24F}'
            | '\u{253}'
            | '\u{254}'
            | '\u{256}'
            | '\u{257}'
            | '\u{259}'
            | '\u{25B}'
            | '\u{263}'
            | '\u{268}'
            | '\u{26F}'
            | '\u{272}'
            | '\u{289}'
            | '\u{28B}'
            | '\u{2BB}'
            | '\u{300}'..='\u{36F}'
            | '\u{1E00}'..='\u{1EFF}'
    )
}

fn is_cyrillic(c: char) -> bool {
    matches!(c, '\u{400}'..='\u{4FF}')
}

fn is_ascii_label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || is_latin_accent(c)
}

fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || is_cyrillic(c) || is_latin_accent(c) || PATH.contains(c)
}

fn is_path_ending(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || is_cyrillic(c)
        || is_latin_accent(c)
        || matches!(c, '+' | '-' | '=' | '_' | '#' | '/')
}

fn is_query_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || QUERY.contains(c)
}

fn is_query_ending(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '&' | '=' | '#' | '/')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(s: &str) -> Vec<String> {
        super::super::tests::found(s, extract)
    }

    #[test]
    fn host_names_our_users_post() {
        assert_eq!(
            urls("esx-07.rack12.datacenter-frankfurt.example.com is up"),
            ["esx-07.rack12.datacenter-frankfurt.example.com"]
        );
        assert!(urls("see https://vcenter.lab.local/ui/app/host/host-42/summary now").is_empty());
        assert_eq!(
            urls("foo.com foo.net foo.org"),
            ["foo.com", "foo.net", "foo.org"]
        );
        assert!(urls("http://no-tld").is_empty());
    }

    #[test]
    fn where_a_url_ends() {
        assert_eq!(
            urls("see https://example.com/a."),
            ["https://example.com/a"]
        );
        assert_eq!(urls("(https://example.com/a)"), ["https://example.com/a"]);
        assert_eq!(urls("http://t.co/abc's"), ["http://t.co/abc"]);
        assert_eq!(urls("http://example.comだよ"), ["http://example.com"]);
        assert_eq!(
            urls("http://x.com:8080/p?q=1."),
            ["http://x.com:8080/p?q=1"]
        );
    }

    #[test]
    fn long_chains_are_linear() {
        // A hostile text of a million dots between letters: matched hosts are remembered.
        let text = "a.".repeat(500_000) + "com";
        let found = urls(&text);
        assert_eq!(
            found.len(),
            0,
            "each label is one character: too long a URL"
        );
        let text = "日".repeat(1_000_000) + ".com";
        assert!(urls(&text).is_empty());
    }
}

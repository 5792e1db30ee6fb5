//! Punycode (RFC 3492), only as far as twitter-text needs it: the length of a domain label
//! once encoded, which must stay within DNS's 63 characters for the label to be part of a URL.
//!
//! Written here rather than taken from the `idna` crate: that crate brings the full UTS 46
//! mapping tables (hundreds of KiB in a binary that must stay small), and twitter-text itself
//! does no mapping, only the bare RFC 3492 encoding of each label.

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 0x80;

/// The label as a DNS name would carry it: unchanged when it is printable ASCII (DEL counts
/// as non-ASCII here, as in the JavaScript `punycode` library twitter-text uses), otherwise `xn--`
/// followed by its Punycode encoding. `None` when the encoding overflows (a label far beyond
/// any length DNS allows).
pub fn to_ascii(label: &[char]) -> Option<String> {
    if label.iter().all(|&c| c <= '\u{7E}') {
        return Some(label.iter().collect());
    }
    let mut out = String::from("xn--");
    encode_into(label, &mut out)?;
    Some(out)
}

/// RFC 3492 section 6.3, appending the encoding of `input` to `out`.
fn encode_into(input: &[char], out: &mut String) -> Option<()> {
    let basic: Vec<char> = input.iter().copied().filter(char::is_ascii).collect();
    let basic_len = u32::try_from(basic.len()).ok()?;
    let total = u32::try_from(input.len()).ok()?;
    out.extend(basic);
    if basic_len > 0 {
        out.push('-');
    }
    let mut n = INITIAL_N;
    let mut delta: u32 = 0;
    let mut bias = INITIAL_BIAS;
    let mut handled = basic_len;
    while handled < total {
        let m = input
            .iter()
            .map(|&c| u32::from(c))
            .filter(|&c| c >= n)
            .min()?;
        delta = delta.checked_add((m - n).checked_mul(handled + 1)?)?;
        n = m;
        for &c in input {
            let c = u32::from(c);
            if c < n {
                delta = delta.checked_add(1)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = threshold(k, bias);
                    if q < t {
                        break;
                    }
                    out.push(digit(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                out.push(digit(q));
                bias = adapt(delta, handled + 1, handled == basic_len);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1)?;
        n = n.checked_add(1)?;
    }
    Some(())
}

fn threshold(k: u32, bias: u32) -> u32 {
    if k <= bias {
        T_MIN
    } else if k >= bias + T_MAX {
        T_MAX
    } else {
        k - bias
    }
}

fn digit(d: u32) -> char {
    match d {
        0..=25 => char::from(b'a' + d as u8),
        _ => char::from(b'0' + (d - 26) as u8),
    }
}

fn adapt(delta: u32, points: u32, first: bool) -> u32 {
    let mut delta = if first { delta / DAMP } else { delta / 2 };
    delta += delta / points;
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (BASE - T_MIN + 1) * delta / (delta + SKEW)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ascii(s: &str) -> String {
        to_ascii(&s.chars().collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn rfc_3492_samples() {
        // RFC 3492 section 7.1: (A) Arabic (Egyptian), (B) Chinese (simplified), (L) Japanese.
        assert_eq!(
            ascii(
                "\u{644}\u{64A}\u{647}\u{645}\u{627}\u{628}\u{62A}\u{643}\u{644}\u{645}\u{648}\u{634}\u{639}\u{631}\u{628}\u{64A}\u{61F}"
            ),
            "xn--egbpdaj6bu4bxfgehfvwxn"
        );
        assert_eq!(ascii("他们为什么不说中文"), "xn--ihqwcrb4cv8a8dqg056pqjye");
        assert_eq!(ascii("3年B組金八先生"), "xn--3B-ww4c5e180e575a65lsy2b");
        assert_eq!(ascii("bücher"), "xn--bcher-kva");
        assert_eq!(ascii("example"), "example");
    }
}

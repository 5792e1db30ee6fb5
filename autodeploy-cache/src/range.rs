//! The `Range` request header, single ranges only (`a-b`, `a-`, `-n`), per RFC 9110 14.1.
//!
//! Multiple ranges are answered with the whole body: hosts fetching boot images never ask for
//! them, and a multipart response is a large surface for little use.

/// What a `Range` header asks of a body of known length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeRequest {
    /// No usable range: send the whole body with 200.
    Full,
    /// Send bytes `start..end` (end exclusive) with 206.
    Partial {
        /// First byte.
        start: u64,
        /// One past the last byte.
        end: u64,
    },
    /// The range lies outside the body: 416.
    Unsatisfiable,
}

/// Interprets `header` for a body of `length` bytes.
pub fn parse(header: Option<&str>, length: u64) -> RangeRequest {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeRequest::Full;
    };
    let number = |s: &str| -> Option<u64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    match (first.trim(), last.trim()) {
        ("", suffix) => match number(suffix) {
            Some(0) => RangeRequest::Unsatisfiable,
            Some(n) if length == 0 => {
                let _ = n;
                RangeRequest::Unsatisfiable
            }
            Some(n) => RangeRequest::Partial {
                start: length.saturating_sub(n),
                end: length,
            },
            None => RangeRequest::Full,
        },
        (start, "") => match number(start) {
            Some(s) if s < length => RangeRequest::Partial {
                start: s,
                end: length,
            },
            Some(_) => RangeRequest::Unsatisfiable,
            None => RangeRequest::Full,
        },
        (start, end) => match (number(start), number(end)) {
            (Some(s), Some(e)) if s > e => RangeRequest::Full,
            (Some(s), Some(_)) if s >= length => RangeRequest::Unsatisfiable,
            (Some(s), Some(e)) => RangeRequest::Partial {
                start: s,
                end: e.saturating_add(1).min(length),
            },
            _ => RangeRequest::Full,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RangeRequest::*;

    #[test]
    fn single_ranges() {
        for (header, start, end) in [
            ("bytes=0-99", 0, 100),
            ("bytes=900-", 900, 1000),
            ("bytes=-100", 900, 1000),
            ("bytes=-5000", 0, 1000),
            ("bytes=990-2000", 990, 1000),
        ] {
            assert_eq!(
                parse(Some(header), 1000),
                Partial { start, end },
                "{header}"
            );
        }
    }

    #[test]
    fn unsatisfiable_and_ignored() {
        assert_eq!(parse(Some("bytes=1000-"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=1000-1001"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-0"), 1000), Unsatisfiable);
        assert_eq!(parse(Some("bytes=-1"), 0), Unsatisfiable);
        assert_eq!(parse(None, 10), Full);
        assert_eq!(parse(Some("items=0-1"), 10), Full);
        assert_eq!(parse(Some("bytes=0-1,3-4"), 10), Full);
        assert_eq!(parse(Some("bytes=5-2"), 10), Full);
        assert_eq!(parse(Some("bytes=a-b"), 10), Full);
        assert_eq!(parse(Some("bytes=+1-2"), 10), Full);
        assert_eq!(parse(Some("bytes=99999999999999999999999-"), 10), Full);
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests standing in for a fuzzer: any header and length give an answer that
    //! lies inside the body.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if std::env::var_os("SOAK").is_some() { 1_000_000 } else { 5000 }))]

        #[test]
        fn any_header_gives_a_span_inside_the_body(header in ".{0,40}", length in any::<u64>()) {
            check(parse(Some(&header), length), length)?;
        }

        #[test]
        fn numeric_ranges_give_a_span_inside_the_body(
            a in prop::option::of(any::<u64>()),
            b in prop::option::of(any::<u64>()),
            length in 0u64..10_000,
        ) {
            let header = format!(
                "bytes={}-{}",
                a.map(|v| v.to_string()).unwrap_or_default(),
                b.map(|v| v.to_string()).unwrap_or_default()
            );
            check(parse(Some(&header), length), length)?;
        }
    }

    fn check(r: RangeRequest, length: u64) -> Result<(), TestCaseError> {
        if let RangeRequest::Partial { start, end } = r {
            prop_assert!(start < end, "empty span {start}..{end}");
            prop_assert!(
                end <= length,
                "span past the end: {start}..{end} of {length}"
            );
        }
        Ok(())
    }
}

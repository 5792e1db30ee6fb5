//! twitter-text's own conformance data (`tests/data`, Apache 2.0: X's counting library's test
//! suite) against this crate: every v3 weighted-length case, every URL extraction case, every
//! top-level domain; and the complexity guard on hostile texts.

mod hostile_texts;

use twitter_text_pure as twitter_text;
use yaml_rust2::{Yaml, YamlLoader};

fn load(name: &str) -> Yaml {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    YamlLoader::load_from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: {e}"))
        .remove(0)
}

fn section<'y>(doc: &'y Yaml, name: &str) -> &'y Vec<Yaml> {
    doc["tests"][name]
        .as_vec()
        .unwrap_or_else(|| panic!("no section {name}"))
}

fn text(case: &Yaml) -> &str {
    case["text"].as_str().expect("a text")
}

fn int(value: &Yaml) -> usize {
    usize::try_from(value.as_i64().expect("a number")).expect("not negative")
}

/// The URLs the extractor finds, as strings with their code point indices.
fn extract(text: &str) -> Vec<(String, [usize; 2])> {
    twitter_text::extract_urls_with_indices(text)
        .into_iter()
        .map(|u| (u.url, u.indices))
        .collect()
}

/// Runs every case, and reports all the failures at once.
/// A case's outcome: `got` is what was wanted, or both are said.
fn same<T: PartialEq<U> + std::fmt::Debug, U: std::fmt::Debug>(
    got: T,
    want: U,
) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{got:?}, want {want:?}"))
    }
}

fn check_all(cases: &[Yaml], check: impl Fn(&Yaml) -> Result<(), String>) {
    assert!(!cases.is_empty());
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|case| {
            check(case).err().map(|why| {
                let description = case["description"].as_str().unwrap_or("?");
                format!("{description}: {why}")
            })
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases fail:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn weighted_length_v3() {
    let doc = load("validate.yml");
    for name in [
        "WeightedTweetsWithDiscountedEmojiCounterTest",
        "UnicodeDirectionalMarkerCounterTest",
    ] {
        check_all(section(&doc, name), |case| {
            let want = &case["expected"];
            let got = twitter_text::parse_tweet(text(case));
            let expected = (
                int(&want["weightedLength"]),
                want["valid"].as_bool().expect("valid"),
                int(&want["permillage"]),
                int(&want["validRangeEnd"]),
                int(&want["displayRangeEnd"]),
            );
            let actual = (
                got.weighted_length,
                got.valid,
                got.permillage,
                got.valid_range_end,
                got.display_range_end,
            );
            // Both ranges start at 0 by definition; the data says so too.
            assert_eq!(int(&want["validRangeStart"]), got.valid_range_start);
            assert_eq!(int(&want["displayRangeStart"]), got.display_range_start);
            if actual == expected {
                Ok(())
            } else {
                Err(format!(
                    "(length, valid, permillage, valid end, display end) {actual:?}, want {expected:?}"
                ))
            }
        });
    }
}

#[test]
fn urls_are_extracted_as_x_extracts_them() {
    let doc = load("extract.yml");
    for name in ["urls", "tco_urls_with_params"] {
        check_all(section(&doc, name), |case| {
            let want: Vec<&str> = case["expected"]
                .as_vec()
                .expect("a list")
                .iter()
                .map(|u| u.as_str().expect("a URL"))
                .collect();
            let got: Vec<String> = extract(text(case)).into_iter().map(|(u, _)| u).collect();
            same(got, want)
        });
    }
}

#[test]
fn urls_are_found_where_x_finds_them() {
    let doc = load("extract.yml");
    for name in ["urls_with_indices", "urls_with_directional_markers"] {
        check_all(section(&doc, name), |case| {
            let want: Vec<(String, [usize; 2])> = case["expected"]
                .as_vec()
                .expect("a list")
                .iter()
                .map(|u| {
                    let indices = u["indices"].as_vec().expect("indices");
                    (
                        u["url"].as_str().expect("url").to_string(),
                        [int(&indices[0]), int(&indices[1])],
                    )
                })
                .collect();
            let got = extract(text(case));
            same(got, want)
        });
    }
}

#[test]
fn every_top_level_domain_is_known() {
    let doc = load("tlds.yml");
    for name in ["country", "generic"] {
        let cases = section(&doc, name);
        assert!(cases.len() > 250, "{name}: {}", cases.len());
        check_all(cases, |case| {
            let want = case["expected"][0].as_str().expect("a URL");
            let got = extract(text(case));
            match got.as_slice() {
                [(url, _)] if url == want => Ok(()),
                _ => Err(format!("{got:?}, want {want:?}")),
            }
        });
    }
}

#[test]
fn hosts_and_urls_from_the_field() {
    // The cases, counted as X counts them.
    for (text, want) in [
        ("esx-07.rack12.datacenter-frankfurt.example.com is up", 29),
        (
            "see https://vcenter.lab.local/ui/app/host/host-42/summary now",
            61,
        ),
        ("foo.com foo.net foo.org", 71),
        ("http://no-tld", 13),
        ("vcenter.corp.example.de/ui", 23),
    ] {
        assert_eq!(twitter_text::weighted_length(text), want, "{text}");
    }
}

/// The least time of three runs of `work`: the machine's noise only ever adds.
fn least_time(mut work: impl FnMut()) -> std::time::Duration {
    (0..3)
        .map(|_| {
            let start = std::time::Instant::now();
            work();
            start.elapsed()
        })
        .min()
        .unwrap()
}

/// Counting and fitting grow linearly with the text, whatever it holds: four times the text
/// may take about four times as long, never sixteen (a quadratic scan). Ratios between two
/// sizes on the same machine, not a wall-clock limit; the figures are in `make bench`.
#[test]
fn counting_and_fitting_are_linear_for_every_hostile_family() {
    use hostile_texts::FAMILIES;
    const SMALL: usize = 4 * 1024;
    for (name, make) in FAMILIES {
        let (small, large) = (make(SMALL), make(4 * SMALL));
        for (what, run) in [
            (
                "count",
                (|t: &str| {
                    std::hint::black_box(twitter_text::parse_tweet(t));
                }) as fn(&str),
            ),
            ("fit", |t: &str| {
                std::hint::black_box(twitter_text::fit(t));
            }),
        ] {
            let (a, b) = (least_time(|| run(&small)), least_time(|| run(&large)));
            // Below a millisecond the ratio is noise: that is fast whatever the growth.
            if b < std::time::Duration::from_millis(2) {
                continue;
            }
            let ratio = b.as_secs_f64() / a.as_secs_f64().max(1e-6);
            assert!(
                ratio < 9.0,
                "{what} of {name:?}: {a:?} for {} bytes, {b:?} for {} bytes ({ratio:.1}x for 4x the text)",
                small.len(),
                large.len()
            );
        }
    }
}

//! The relay's defanging against twitter-text's own extraction cases (the conformance data in
//! `twitter-text/tests/data/extract.yml`): every mention, hashtag, cashtag and URL that X
//! would find in them is plain text once defanged.

use yaml_rust2::{Yaml, YamlLoader};

/// The cases of `section` in twitter-text's extract.yml.
fn cases(section: &str) -> Vec<Yaml> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/twitter-text/tests/data/extract.yml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let doc = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let cases = doc["tests"][section].as_vec().cloned().unwrap_or_default();
    assert!(!cases.is_empty(), "no section {section}");
    cases
}

/// What a conformance case expects, as strings: plain lists, or lists of objects with `field`.
fn expected_names(case: &Yaml, field: &str) -> Vec<String> {
    match &case["expected"] {
        Yaml::Array(items) => items
            .iter()
            .filter_map(|item| match item {
                Yaml::String(name) => Some(name.clone()),
                other => other[field].as_str().map(str::to_string),
            })
            .collect(),
        Yaml::String(name) => vec![name.clone()],
        _ => vec![],
    }
}

/// The relay defangs alert values: every mention, hashtag, cashtag and URL that twitter-text
/// finds in its own conformance cases is plain text afterwards.
#[test]
fn defanged_values_hold_no_entity_of_the_conformance_data() {
    use esxi_tweet::relay::defang::{Allow, defang};
    let entities: [(&str, &str, &[&str]); 9] = [
        ("mentions", "", &["@", "\u{FF20}"]),
        ("mentions_with_indices", "screen_name", &["@", "\u{FF20}"]),
        (
            "mentions_or_lists_with_indices",
            "screen_name",
            &["@", "\u{FF20}"],
        ),
        ("replies", "", &["@", "\u{FF20}"]),
        ("hashtags", "", &["#", "\u{FF03}"]),
        ("hashtags_from_astral", "", &["#", "\u{FF03}"]),
        ("hashtags_with_indices", "hashtag", &["#", "\u{FF03}"]),
        ("cashtags", "", &["$"]),
        ("cashtags_with_indices", "cashtag", &["$"]),
    ];
    for (name, field, triggers) in entities {
        for case in cases(name) {
            let plain = defang(case["text"].as_str().unwrap(), Allow::default());
            let live: Vec<String> = expected_names(&case, field)
                .into_iter()
                .flat_map(|entity| triggers.iter().map(move |t| format!("{t}{entity}")))
                .filter(|entity| plain.contains(entity.as_str()))
                .collect();
            assert!(live.is_empty(), "{name}: {live:?} still in {plain:?}");
        }
    }
    for name in [
        "urls",
        "urls_with_indices",
        "urls_with_directional_markers",
        "tco_urls_with_params",
    ] {
        for case in cases(name) {
            let plain = defang(case["text"].as_str().unwrap(), Allow::default());
            let left = esxi_tweet::twitter_text::extract_urls_with_indices(&plain);
            assert!(left.is_empty(), "{name}: {left:?} still links in {plain:?}");
        }
    }
}

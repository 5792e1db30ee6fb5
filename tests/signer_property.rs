//! Property test: the agent's signer and the independent `oauth1-request` verifier agree on
//! random requests: methods, hosts, paths, queries and form bodies with arbitrary Unicode,
//! reserved characters, empty values and duplicate names.

use esxi_tweet::oauth::{ProtocolParams, RequestToSign, RequestUrl, base_string_uri, sign_with};
use proptest::prelude::*;

use crate::support::verifier::{self, Signed};

/// Names and values: reserved characters, Unicode, empty strings, and a small alphabet so that
/// duplicate names happen often.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-c]{1,2}",
        "[!*'()~+&=%/? a-zA-Z0-9._-]{0,12}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
        "[酒場ふー☃🙋🏽é]{1,4}",
    ]
}

fn pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    // No user parameter may look like a protocol parameter.
    prop::collection::vec((text(), text()), 0..6).prop_map(|v| {
        v.into_iter()
            .filter(|(k, _)| !k.starts_with("oauth_"))
            .collect()
    })
}

/// Encodes pairs for a query or body, sometimes with `+` for spaces as forms do.
fn to_form(pairs: &[(String, String)], plus_for_space: bool) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc = |s: &str| {
                let e = verifier::encode(s);
                if plus_for_space {
                    e.replace("%20", "+")
                } else {
                    e
                }
            };
            format!("{}={}", enc(k), enc(v))
        })
        .collect::<Vec<_>>()
        .join("&")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn agrees_with_oauth1_request(
        method in prop::sample::select(vec!["GET", "POST", "PUT", "DELETE", "PATCH"]),
        scheme in prop::sample::select(vec!["http", "https"]),
        host in "[a-z]{1,8}(\\.[a-z]{2,3})?",
        port in prop::option::of(prop::sample::select(vec![80u16, 443, 6501, 8443])),
        path in "(/[a-zA-Z0-9._~-]{0,6}){0,3}",
        query in pairs(),
        form in prop::option::of(pairs()),
        plus in any::<bool>(),
        nonce in "[a-zA-Z0-9]{1,32}",
        timestamp in 1u64..4_000_000_000,
        version in any::<bool>(),
        secrets in (text(), text()),
    ) {
        let authority = match port {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        let query_string = to_form(&query, plus);
        let url = if query.is_empty() {
            format!("{scheme}://{authority}{path}")
        } else {
            format!("{scheme}://{authority}{path}?{query_string}")
        };
        let form_body = form.as_ref().map(|f| to_form(f, plus));
        let protocol = ProtocolParams {
            consumer_key: "ck-123".into(),
            token: Some("tok-456".into()),
            nonce: nonce.clone(),
            timestamp,
            version,
            extra: vec![],
        };
        let ours = sign_with(
            &RequestToSign { method, url: &url, form_body: form_body.as_deref() },
            &protocol,
            &secrets.0,
            &secrets.1,
        ).unwrap();

        let base_uri = base_string_uri(&RequestUrl::parse(&url).unwrap());
        let mut params = query.clone();
        params.extend(form.unwrap_or_default());
        let theirs = verifier::expected_signature(&Signed {
            method,
            base_uri: &base_uri,
            params,
            consumer_key: "ck-123",
            consumer_secret: &secrets.0,
            token: "tok-456",
            token_secret: &secrets.1,
            callback: None,
            verifier: None,
            nonce: &nonce,
            timestamp,
            version,
        });
        prop_assert_eq!(ours.signature, theirs, "url {} body {:?}", url, form_body);
    }
}

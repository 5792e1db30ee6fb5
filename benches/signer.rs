//! Signatures per second of the OAuth 1.0a signer, on the X documentation's v1.1 request, and
//! the weighted length of texts with many URLs (linear in the text: hostile stdin must not
//! make the length check quadratic).

use criterion::{Criterion, criterion_group, criterion_main};
use esxi_tweet::oauth::{RequestToSign, sign};
use esxi_tweet::{Credentials, Secret};

fn signer(c: &mut Criterion) {
    let credentials = Credentials {
        consumer_key: "xvz1evFS4wEEPTGEFPHBog".into(),
        consumer_secret: Secret::new("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw"),
        access_token: "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb".into(),
        access_token_secret: Secret::new("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE"),
    };
    let request = RequestToSign {
        method: "POST",
        url: "https://api.x.com/1.1/statuses/update.json?include_entities=true",
        form_body: Some(
            "status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21",
        ),
    };
    c.bench_function("sign v1.1 status update", |b| {
        b.iter(|| {
            sign(
                &request,
                &credentials,
                "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
                1318622958,
            )
            .unwrap()
        })
    });
}

fn weighted_length(c: &mut Criterion) {
    for urls in [1_000usize, 10_000] {
        let text = "https://a.co ".repeat(urls);
        c.bench_function(&format!("weighted length, {urls} URLs"), |b| {
            b.iter(|| esxi_tweet::twitter_text::weighted_length(&text))
        });
    }
}

criterion_group!(benches, signer, weighted_length);
criterion_main!(benches);

//! HTTP caching as RFC 9111 says, end to end through the proxy: variants (`Vary`), stale
//! service only where the response allows it, 304s that update what is stored, invalidation
//! by unsafe methods, `Age`, statuses other than 200, and authenticated requests. Freshness
//! comes from the origin's own headers (`max-age=0` for "already stale"), so nothing sleeps.

use std::time::Duration;

use crate::support::origin::{Origin, expected};
use crate::support::{Proxy, Setup, cache_files, eventually, fetch, get, setup};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn variants_are_stored_side_by_side_and_served_only_to_matching_requests() {
    let Setup { dir, origin, proxy } = setup(&[]).await;
    let cache = dir.path().join("cache");
    let target = "/blob/2000?seed=30&vary";
    let gzip: &[(&str, &str)] = &[("accept-encoding", "gzip")];
    let plain: &[(&str, &str)] = &[("accept-encoding", "identity")];
    let none: &[(&str, &str)] = &[];
    let variants = [(gzip, 1030), (plain, 30), (none, 30)];
    for (n, (headers, seed)) in variants.iter().enumerate() {
        let first = proxy.get(target, headers).await;
        assert_eq!(first.cache(), "MISS", "{headers:?}");
        assert_eq!(first.body, expected(*seed, 0, 2000), "{headers:?}");
        assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == n + 1).await);
    }
    // Each variant is a hit for its own requests, and never served to the others; also after
    // a restart (the variants are found again from the entries).
    for round in 0..2 {
        for (headers, seed) in variants {
            let r = proxy.get(target, headers).await;
            assert_eq!(
                (r.cache(), r.status.as_u16()),
                ("HIT", 200),
                "{headers:?} round {round}"
            );
            assert_eq!(r.body, expected(seed, 0, 2000), "{headers:?} round {round}");
        }
        if round == 0 {
            proxy.stop().await;
            let restarted = Proxy::start(&origin.url(), &origin.ca_file, &cache, &[]).await;
            return check_after_restart(restarted, &origin, target, &variants).await;
        }
    }
}

async fn check_after_restart(
    proxy: Proxy,
    origin: &Origin,
    target: &str,
    variants: &[(&[(&str, &str)], u64)],
) {
    for (headers, seed) in variants {
        let r = proxy.get(target, headers).await;
        assert_eq!(r.cache(), "HIT", "{headers:?} after restart");
        assert_eq!(r.body, expected(*seed, 0, 2000));
    }
    assert_eq!(origin.count(target), 3, "one fetch per variant");
    // An unsafe request invalidates every variant of the URL.
    let post = fetch("POST", &proxy.url(target), &[], b"x").await.unwrap();
    assert_eq!(post.status, 201);
    for (headers, seed) in variants {
        let r = proxy.get(target, headers).await;
        // MISS, or BYPASS while another variant's refetch is still being stored.
        assert_ne!(r.cache(), "HIT", "{headers:?} after invalidation");
        assert_eq!(r.body, expected(*seed, 0, 2000));
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_service_on_failure_only_where_the_response_allows_it() {
    let s = setup(&[]).await;
    // max-age=0: stale as soon as stored; the failing upstream decides what clients get.
    let allowed = "/blob/500?seed=32&cc=max-age=0";
    let forbidden = [
        "/blob/500?seed=33&cc=max-age=0,must-revalidate",
        "/blob/500?seed=34&cc=max-age=0,proxy-revalidate",
        "/blob/500?seed=35&cc=s-maxage=0",
        "/blob/500?seed=36&cc=no-cache",
        "/blob/500?seed=37&cc=No-Cache",
    ];
    for target in std::iter::once(allowed).chain(forbidden) {
        assert_eq!(get(&s.proxy.url(target)).await.status, 200, "{target}");
    }
    assert!(s.stored(6).await);
    s.origin.set_failing(true);
    let r = get(&s.proxy.url(allowed)).await;
    assert_eq!((r.status.as_u16(), r.cache()), (200, "STALE"));
    for target in forbidden {
        let r = get(&s.proxy.url(target)).await;
        assert_eq!(r.status, 503, "{target} was served stale ({})", r.cache());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_if_error_bounds_stale_service() {
    let s = setup(&["--stale-if-error", "1h"]).await;
    // The origin says these responses are already two hours old: expired for two hours.
    let old = "/blob/100?seed=38&cc=max-age=0&age=7200";
    let own_bound = "/blob/100?seed=39&cc=max-age=0,stale-if-error=86400&age=7200";
    let fresh_enough = "/blob/100?seed=47&cc=max-age=0";
    for target in [old, own_bound, fresh_enough] {
        get(&s.proxy.url(target)).await;
    }
    assert!(s.stored(3).await);
    s.origin.set_failing(true);
    assert_eq!(
        get(&s.proxy.url(old)).await.status,
        503,
        "past --stale-if-error"
    );
    assert_eq!(
        get(&s.proxy.url(own_bound)).await.cache(),
        "STALE",
        "the response's stale-if-error wins"
    );
    assert_eq!(get(&s.proxy.url(fresh_enough)).await.cache(), "STALE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_answers_from_the_cache_and_refreshes_behind() {
    let s = setup(&[]).await;
    // Stale on arrival, with a minute in which it may be served while it is refreshed.
    let within = "/blob/2000?seed=48&etag=v1&cc=max-age=0,stale-while-revalidate=60";
    // Two hours old on arrival: past that minute.
    let past = "/blob/2000?seed=49&etag=v1&cc=max-age=0,stale-while-revalidate=60&age=7200";
    for target in [within, past] {
        assert_eq!(get(&s.proxy.url(target)).await.cache(), "MISS");
    }
    assert!(s.stored(2).await);
    let r = get(&s.proxy.url(within)).await;
    assert_eq!(
        r.cache(),
        "UPDATING",
        "served from the cache while refreshed"
    );
    assert_eq!(r.body, expected(48, 0, 2000));
    assert!(
        eventually(Duration::from_secs(10), || s.origin.count(within) == 2).await,
        "the refresh went upstream behind the answer"
    );
    // Past the window the refresh is waited for.
    assert_eq!(get(&s.proxy.url(past)).await.cache(), "REVALIDATED");
    assert_eq!(s.origin.count(past), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cdn_cache_control_sets_this_caches_rules() {
    let s = setup(&[]).await;
    // Browsers may keep it an hour; the gateway only revalidates (RFC 9213).
    let target = "/blob/300?seed=50&cc=max-age=3600&cdn=no-cache&etag=v1";
    let url = s.proxy.url(target);
    let first = get(&url).await;
    assert!(first.cache() == "MISS" && s.stored(1).await);
    let again = get(&url).await;
    let passed_on = again.headers["cache-control"].to_str().unwrap();
    // CDN-Cache-Control's no-cache wins here; Cache-Control reaches the client as sent.
    assert_eq!((again.cache(), passed_on), ("REVALIDATED", "max-age=3600"));
    assert_eq!(s.origin.count(target), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_304_refreshes_and_updates_the_stored_headers() {
    let s = setup(&[]).await;
    let target = "/blob/3000?seed=40&etag=v1&cc=max-age=0";
    let first = get(&s.proxy.url(target)).await;
    assert!(!first.headers.contains_key("x-validated"));
    assert!(s.stored(1).await);
    let second = get(&s.proxy.url(target)).await;
    assert_eq!(second.cache(), "REVALIDATED");
    assert_eq!(second.body, expected(40, 0, 3000));
    assert_eq!(
        second.headers["x-validated"], "2",
        "the 304's header is served"
    );
    let third = get(&s.proxy.url(target)).await;
    assert_eq!(third.cache(), "REVALIDATED");
    assert_eq!(third.headers["x-validated"], "3");
    // The updated headers are in the entry file: served from it when the upstream fails.
    s.origin.set_failing(true);
    let stale = get(&s.proxy.url(target)).await;
    assert_eq!(stale.cache(), "STALE");
    assert_eq!(stale.headers["x-validated"], "3");
    assert_eq!(cache_files(&s.dir.path().join("cache")).0, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn successful_unsafe_requests_invalidate_the_stored_response() {
    let s = setup(&[]).await;
    let target = "/blob/100?seed=41";
    get(&s.proxy.url(target)).await;
    assert!(s.stored(1).await);
    assert_eq!(get(&s.proxy.url(target)).await.cache(), "HIT");
    let post = fetch("POST", &s.proxy.url(target), &[], b"update")
        .await
        .unwrap();
    assert_eq!(post.status, 201);
    assert_eq!(cache_files(&s.dir.path().join("cache")).0, 0);
    assert_eq!(get(&s.proxy.url(target)).await.cache(), "MISS");
    assert_eq!(s.origin.count(target), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_responses_carry_their_age() {
    let s = setup(&[]).await;
    let target = "/blob/100?seed=42&cc=max-age=600";
    let miss = get(&s.proxy.url(target)).await;
    assert_eq!(miss.cache(), "MISS");
    assert!(s.stored(1).await);
    let hit = get(&s.proxy.url(target)).await;
    assert_eq!(hit.cache(), "HIT");
    let age: u64 = hit.headers["age"].to_str().unwrap().parse().unwrap();
    assert!(age <= 5, "age {age}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_statuses_are_stored_when_they_have_freshness() {
    let s = setup(&[]).await;
    // Heuristic freshness from Last-Modified (a tenth of its age), and explicit freshness.
    let heuristic = (43, "/blob/50?seed=43&status=404&lm");
    let explicit = (44, "/blob/50?seed=44&status=302&cc=max-age=60");
    for (seed, target) in [heuristic, explicit] {
        let first = get(&s.proxy.url(target)).await;
        let second = get(&s.proxy.url(target)).await;
        assert_eq!(second.status, first.status, "{target}");
        assert_eq!(second.cache(), "HIT", "{target}");
        assert_eq!(second.body, expected(seed, 0, 50));
        assert_eq!(s.origin.count(target), 1, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authenticated_responses_are_shared_only_when_marked_so() {
    let s = setup(&[]).await;
    let auth = [("authorization", "Basic aG9zdDpzZWNyZXQ=")];
    let public = "/blob/100?seed=45&cc=public,max-age=60";
    let private = "/blob/100?seed=46&cc=max-age=60";
    fetch("GET", &s.proxy.url(public), &auth, b"")
        .await
        .unwrap();
    fetch("GET", &s.proxy.url(private), &auth, b"")
        .await
        .unwrap();
    assert!(s.stored(1).await);
    assert_eq!(get(&s.proxy.url(public)).await.cache(), "HIT");
    get(&s.proxy.url(private)).await;
    assert_eq!(s.origin.count(private), 2, "not stored without public");
}

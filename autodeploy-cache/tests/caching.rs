//! Misses, hits, storability, eviction, restart, revalidation, stale, Range, HEAD, 304,
//! pass-through and the refusals of an open proxy.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::origin::expected;
use crate::support::{Proxy, Setup, cache_files, eventually, fetch, get, setup, temp_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn miss_then_hit_with_identical_bodies() {
    let s = setup(&[]).await;
    for (size, seed) in [(0u64, 1u64), (1, 2), (1 << 20, 3)] {
        let target = format!("/blob/{size}?seed={seed}");
        let first = get(&s.proxy.url(&target)).await;
        assert_eq!(first.status, 200);
        assert_eq!(first.cache(), "MISS");
        assert_eq!(first.body, expected(seed, 0, size), "{target}");
        let second = get(&s.proxy.url(&target)).await;
        assert_eq!(second.cache(), "HIT", "{target}");
        assert_eq!(second.body, first.body);
        assert_eq!(second.headers["content-length"], size.to_string());
        assert_eq!(s.origin.count(&target), 1, "{target}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunked_upstream_bodies_are_cached_whole() {
    let s = setup(&[]).await;
    let target = "/blob/300000?seed=4&chunked";
    let first = get(&s.proxy.url(target)).await;
    assert_eq!(first.body, expected(4, 0, 300000));
    let second = get(&s.proxy.url(target)).await;
    assert_eq!(second.cache(), "HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(s.origin.count(target), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_a_shared_cache_must_not_keep_are_not_stored() {
    let s = setup(&[]).await;
    for target in [
        "/blob/10?cookie",
        "/blob/10?cc=no-store",
        "/blob/10?cc=private",
        "/blob/10?status=404",
        "/nothing-here",
    ] {
        get(&s.proxy.url(target)).await;
        let again = get(&s.proxy.url(target)).await;
        assert_ne!(again.cache(), "HIT", "{target}");
        assert_eq!(s.origin.count(target), 2, "{target}");
    }
    assert_eq!(cache_files(&s.dir.path().join("cache")).0, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_entries() {
    let Setup { dir, origin, proxy } = setup(&[]).await;
    let cache = dir.path().join("cache");
    let target = "/blob/70000?seed=5";
    assert_eq!(get(&proxy.url(target)).await.cache(), "MISS");
    proxy.stop().await;
    let proxy = Proxy::start(&origin.url(), &origin.ca_file, &cache, &[]).await;
    let hit = get(&proxy.url(target)).await;
    assert_eq!(hit.cache(), "HIT");
    assert_eq!(hit.body, expected(5, 0, 70000));
    assert_eq!(origin.count(target), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_size_evicts_the_least_recently_used() {
    let s = setup(&["--max-size", "3m"]).await;
    let cache = s.dir.path().join("cache");
    let targets: Vec<String> = (0..4).map(|i| format!("/blob/1000000?seed={i}")).collect();
    for (i, t) in targets[..3].iter().enumerate() {
        get(&s.proxy.url(t)).await;
        assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == i + 1).await);
    }
    assert_eq!(get(&s.proxy.url(&targets[0])).await.cache(), "HIT");
    get(&s.proxy.url(&targets[3])).await;
    let authority = format!("127.0.0.1:{}", s.origin.port);
    let lru =
        autodeploy_cache::cache_key::CacheKey::new(&authority, &targets[1], None).path_in(&cache);
    assert!(
        eventually(Duration::from_secs(10), || !lru.exists()).await,
        "the least recently used entry was not evicted"
    );
    let (count, size) = cache_files(&cache);
    assert_eq!(count, 3);
    assert!(size <= 3 << 20, "{size} bytes on disk");
    assert_eq!(
        get(&s.proxy.url(&targets[0])).await.cache(),
        "HIT",
        "recently used, kept"
    );
    assert_eq!(
        get(&s.proxy.url(&targets[1])).await.cache(),
        "MISS",
        "least recently used, evicted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inactive_entries_are_removed() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    let mut config = crate::support::config(
        &origin.url(),
        &origin.ca_file,
        &cache,
        &["--inactive", "1s"],
    );
    config.sweep_interval = Duration::from_millis(100);
    let proxy = Proxy::start_with(config).await;
    get(&proxy.url("/blob/100")).await;
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 0).await);
    assert_eq!(get(&proxy.url("/blob/100")).await.cache(), "MISS");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_passes_through_with_its_body() {
    let s = setup(&[]).await;
    let body: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let r = fetch(
        "POST",
        &s.proxy.url("/vmw/rbd/host/42/script-status"),
        &[("content-type", "application/json")],
        &body,
    )
    .await
    .unwrap();
    assert_eq!(r.status, 201);
    assert_eq!(r.cache(), "BYPASS");
    assert_eq!(r.headers["x-body-len"], "200000");
    use sha2::Digest as _;
    let digest: String = sha2::Sha256::digest(&body)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(r.headers["x-body-sha256"], digest.as_str());
    fetch(
        "POST",
        &s.proxy.url("/vmw/rbd/host/42/script-status"),
        &[],
        b"x",
    )
    .await
    .unwrap();
    assert_eq!(s.origin.count("/vmw/rbd/host/42/script-status"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarding_headers_added_and_hop_by_hop_removed() {
    let s = setup(&[]).await;
    let r = s
        .proxy
        .get(
            "/blob/5?seed=9",
            &[
                ("connection", "keep-alive, X-Forwarded-For, X-Private"),
                ("x-private", "secret-hop"),
                ("keep-alive", "timeout=5"),
                ("te", "trailers"),
                ("proxy-authorization", "Basic eA=="),
                ("x-forwarded-for", "203.0.113.7"),
                ("user-agent", "esxi-boot/7.0"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    let seen = s.origin.seen();
    let h = &seen[0].headers;
    assert_eq!(h["x-real-ip"], "127.0.0.1");
    assert_eq!(
        h["x-forwarded-for"], "127.0.0.1",
        "the client's own list went with Connection"
    );
    assert!(
        !h.contains_key("x-forwarded-host"),
        "the client's Host is not in the key, so it does not go upstream either"
    );
    assert_eq!(h["x-forwarded-proto"], "http");
    assert!(h["via"].to_str().unwrap().contains("autodeploy-cache"));
    assert_eq!(h["user-agent"], "esxi-boot/7.0");
    assert_eq!(h["host"], format!("127.0.0.1:{}", s.origin.port).as_str());
    for gone in ["x-private", "keep-alive", "te", "proxy-authorization"] {
        assert!(!h.contains_key(gone), "{gone} reached the origin");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_head_and_conditionals_from_the_cache() {
    let s = setup(&[]).await;
    let target = "/blob/1000?seed=7&etag=v1&lm";
    // A range on a miss joins the full fill and gets its bytes.
    let r = s.proxy.get(target, &[("range", "bytes=100-199")]).await;
    assert_eq!(r.status, 206);
    assert_eq!(r.headers["content-range"], "bytes 100-199/1000");
    assert_eq!(r.body, expected(7, 100, 200));
    let cache = s.dir.path().join("cache");
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    for (range, start, end) in [
        ("bytes=0-0", 0, 1),
        ("bytes=990-", 990, 1000),
        ("bytes=-10", 990, 1000),
    ] {
        let r = s.proxy.get(target, &[("range", range)]).await;
        assert_eq!((r.status.as_u16(), r.cache()), (206, "HIT"), "{range}");
        assert_eq!(r.body, expected(7, start, end), "{range}");
    }
    let r = s.proxy.get(target, &[("range", "bytes=5000-")]).await;
    assert_eq!(r.status, 416);
    assert_eq!(r.headers["content-range"], "bytes */1000");
    let r = fetch("HEAD", &s.proxy.url(target), &[], b"").await.unwrap();
    assert_eq!((r.status.as_u16(), r.cache()), (200, "HIT"));
    assert_eq!(r.headers["content-length"], "1000");
    assert!(r.body.is_empty());
    let r = s.proxy.get(target, &[("if-none-match", "\"v1\"")]).await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = s.proxy.get(target, &[("if-none-match", "\"v0\"")]).await;
    assert_eq!(r.status, 200);
    let r = s
        .proxy
        .get(
            target,
            &[("if-modified-since", "Tue, 02 Jan 2024 00:00:00 GMT")],
        )
        .await;
    assert_eq!(r.status, 304);
    assert_eq!(s.origin.count(target), 1);
    let seen = s.origin.seen();
    assert!(
        !seen[0].headers.contains_key("range"),
        "a fill fetches the whole object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn head_on_a_miss_fills_the_cache() {
    let s = setup(&[]).await;
    let target = "/blob/4096?seed=8";
    let r = fetch("HEAD", &s.proxy.url(target), &[], b"").await.unwrap();
    assert_eq!(r.headers["content-length"], "4096");
    assert!(r.body.is_empty());
    assert!(s.stored(1).await);
    let hit = get(&s.proxy.url(target)).await;
    assert_eq!((hit.cache(), hit.body.len()), ("HIT", 4096));
    assert_eq!(s.origin.seen()[0].method, "GET");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_entries_are_revalidated_with_their_etag() {
    let s = setup(&[]).await;
    // Stale as soon as stored (max-age=0): every later request revalidates.
    let target = "/blob/2000?seed=10&etag=abc&cc=max-age=0";
    assert_eq!(get(&s.proxy.url(target)).await.cache(), "MISS");
    assert!(s.stored(1).await);
    let r = get(&s.proxy.url(target)).await;
    assert_eq!(r.cache(), "REVALIDATED");
    assert_eq!(r.body, expected(10, 0, 2000));
    let seen = s.origin.seen();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].headers["if-none-match"], "\"abc\"");
    assert_eq!(get(&s.proxy.url(target)).await.cache(), "REVALIDATED");
    assert_eq!(s.origin.count(target), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_entries_are_served_while_the_upstream_is_down() {
    let Setup {
        dir,
        mut origin,
        proxy,
    } = setup(&[]).await;
    let target = "/blob/3000?seed=11&cc=max-age=0";
    assert_eq!(get(&proxy.url(target)).await.cache(), "MISS");
    let cache = dir.path().join("cache");
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    origin.stop();
    let r = get(&proxy.url(target)).await;
    assert_eq!(r.cache(), "STALE");
    assert_eq!(r.body, expected(11, 0, 3000));
    let missing = get(&proxy.url("/blob/3000?seed=12")).await;
    assert_eq!(missing.status, 502);
    // The origin returns: the next request fetches normally.
    origin.restart().await;
    let r = get(&proxy.url("/blob/3000?seed=12")).await;
    assert_eq!(
        (r.status.as_u16(), r.cache()),
        (200, "MISS"),
        "{:?}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_cut_short_is_never_served_as_a_hit() {
    let s = setup(&[]).await;
    // Rate-limited so that the head reaches the client before the origin breaks off.
    let target = "/blob/4000000?seed=13&cut=2000000&rate=8000000";
    let first = fetch("GET", &s.proxy.url(target), &[], b"").await;
    assert!(
        first.is_err(),
        "the client must see an aborted body, got {first:?}"
    );
    let second = fetch("GET", &s.proxy.url(target), &[], b"").await;
    assert!(second.is_err(), "{second:?}");
    assert_eq!(s.origin.count(target), 2, "nothing was committed");
    assert_eq!(cache_files(&s.dir.path().join("cache")).0, 0);
    assert!(
        eventually(Duration::from_secs(5), || temp_files(
            &s.dir.path().join("cache")
        ) == 0)
        .await
    );
}

async fn raw(addr: std::net::SocketAddr, request: &str) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_proxy_requests_are_refused_without_upstream_contact() {
    let s = setup(&[]).await;
    let answer = raw(s.proxy.addr, "GET http://evil.example/blob/1 HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 403"), "{answer}");
    let answer = raw(
        s.proxy.addr,
        "CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    assert!(s.origin.seen().is_empty());
    // Absolute-form naming the proxy itself is an ordinary request.
    let own = format!(
        "GET http://{0}/blob/3 HTTP/1.1\r\nHost: {0}\r\nConnection: close\r\n\r\n",
        s.proxy.addr
    );
    assert!(raw(s.proxy.addr, &own).await.starts_with("HTTP/1.1 200"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwarded_host_is_part_of_the_key() {
    let s = setup(&["--forward-host"]).await;
    let target = "/blob/64?seed=40";
    let a = s.proxy.get(target, &[("host", "a.example")]).await;
    let b = s.proxy.get(target, &[("host", "b.example")]).await;
    assert_eq!(
        (a.cache(), b.cache()),
        ("MISS", "MISS"),
        "one host's entry is not another's"
    );
    let seen = s.origin.seen();
    assert_eq!(seen[0].headers["host"], "a.example");
    assert_eq!(seen[1].headers["host"], "b.example");
    assert!(s.stored(2).await);
    let again = s.proxy.get(target, &[("host", "a.example")]).await;
    assert_eq!(again.cache(), "HIT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_forward_host_the_client_host_cannot_split_or_poison_the_cache() {
    let s = setup(&[]).await;
    let target = "/blob/64?seed=41";
    s.proxy
        .get(
            target,
            &[
                ("host", "evil.example"),
                ("x-forwarded-host", "evil.example"),
            ],
        )
        .await;
    assert!(s.stored(1).await);
    let other = s.proxy.get(target, &[("host", "good.example")]).await;
    assert_eq!(other.cache(), "HIT");
    assert_eq!(other.body, expected(41, 0, 64));
    let first = &s.origin.seen()[0].headers;
    assert_eq!(
        first["host"],
        format!("127.0.0.1:{}", s.origin.port).as_str()
    );
    assert!(
        !first.contains_key("x-forwarded-host"),
        "an unkeyed Host must not reach the origin in any header"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewrite_headers_and_path_tricks_cannot_poison_another_url() {
    let s = setup(&[]).await;
    let cache = s.dir.path().join("cache");
    // A client asks for seed=80 while naming seed=81 in every rewrite header it can think of.
    let poisoner = s
        .proxy
        .get(
            "/blob/64?seed=80",
            &[
                ("x-original-url", "/blob/64?seed=81"),
                ("x-rewrite-url", "/blob/64?seed=81"),
                ("x-forwarded-host", "evil.example"),
                ("connection", "x-forwarded-for"),
            ],
        )
        .await;
    assert_eq!(poisoner.body, expected(80, 0, 64));
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    // Everyone else gets, for each URL, what the origin serves for that URL.
    for (target, seed) in [("/blob/64?seed=80", 80), ("/blob/64?seed=81", 81)] {
        let r = get(&s.proxy.url(target)).await;
        assert_eq!(r.body, expected(seed, 0, 64), "{target}");
    }
    // Encoded and dotted variants are different targets upstream and in the cache.
    for target in [
        "/blob/64%3Fseed=80",
        "/blob/../blob/64?seed=80",
        "/BLOB/64?seed=80",
    ] {
        let r = get(&s.proxy.url(target)).await;
        assert_ne!(r.cache(), "HIT", "{target} was served another URL's entry");
        assert_eq!(s.origin.count(target), 1, "{target} went upstream as sent");
    }
}

//! Origin faults, damaged cache files and hostile requests: clients get a clean answer or an
//! aborted transfer, never a corrupt body, and hostile input never reaches the origin.

use std::time::Duration;

use crate::support::origin::{Origin, expected};
use crate::support::raw;
use crate::support::{Proxy, Setup, cache_files, eventually, fetch, get, setup};

fn config(
    origin: &Origin,
    ca: &std::path::Path,
    cache: &std::path::Path,
    flags: &[&str],
) -> autodeploy_cache::Config {
    crate::support::config(&origin.url(), ca, cache, flags)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_upstream_certificate_is_a_clean_502() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let other = tempfile::tempdir().unwrap();
    let stranger = Origin::start(other.path()).await;
    // Trust the other origin's CA, not this one's.
    let proxy = Proxy::start_with(config(
        &origin,
        &stranger.ca_file,
        &dir.path().join("cache"),
        &[],
    ))
    .await;
    let r = get(&proxy.url("/blob/10")).await;
    assert_eq!(r.status, 502);
    // The reason (certificate names, addresses) goes to the proxy's log, not to any client
    // on the boot network.
    let body = String::from_utf8_lossy(&r.body);
    assert_eq!(body, "upstream unreachable (the proxy's log says why)\n");
    assert!(
        origin.seen().is_empty(),
        "no request went over an unverified connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_upstream_body_ends_the_fill() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let mut cfg = config(&origin, &origin.ca_file, &dir.path().join("cache"), &[]);
    cfg.fill_idle_timeout = Duration::from_millis(500);
    let proxy = Proxy::start_with(cfg).await;
    let target = "/blob/1000000?seed=50&stall=300000";
    let r = fetch("GET", &proxy.url(target), &[], b"").await;
    assert!(r.is_err(), "a stalled fill must abort its readers: {r:?}");
    assert_eq!(cache_files(&dir.path().join("cache")).0, 0);
    let _ = fetch("GET", &proxy.url(target), &[], b"").await;
    assert_eq!(
        origin.count(target),
        2,
        "the next request starts a new fill"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_serve_stale_and_recovery_refills() {
    let Setup { dir, origin, proxy } = setup(&[]).await;
    // Stale as soon as stored: no waiting for expiry.
    let target = "/blob/5000?seed=51&cc=max-age=0";
    assert_eq!(get(&proxy.url(target)).await.cache(), "MISS");
    let cache = dir.path().join("cache");
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    origin.set_failing(true);
    let r = get(&proxy.url(target)).await;
    assert_eq!((r.status.as_u16(), r.cache()), (200, "STALE"));
    assert_eq!(r.body, expected(51, 0, 5000));
    let uncached = get(&proxy.url("/blob/10?seed=52")).await;
    assert_eq!(
        uncached.status, 503,
        "no entry: the origin's answer passes through"
    );
    origin.set_failing(false);
    let r = get(&proxy.url(target)).await;
    assert_eq!((r.status.as_u16(), r.cache()), (200, "EXPIRED"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_entry_file_is_a_miss_and_is_replaced() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    let target = "/blob/100000?seed=53";
    let key = autodeploy_cache::cache_key::CacheKey::new(
        &format!("127.0.0.1:{}", origin.port),
        target,
        None,
    );
    let path = key.path_in(&cache);
    for damage in [
        |p: &std::path::Path| {
            let len = std::fs::metadata(p).unwrap().len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(p)
                .unwrap()
                .set_len(len - 1000)
                .unwrap();
        },
        |p: &std::path::Path| std::fs::write(p, b"garbage, not an entry").unwrap(),
    ] {
        let proxy = Proxy::start(&origin.url(), &origin.ca_file, &cache, &[]).await;
        get(&proxy.url(target)).await;
        assert!(eventually(Duration::from_secs(10), || path.exists()).await);
        proxy.stop().await;
        damage(&path);
        // Both at start (index rebuild) and on read, a damaged file is never served.
        let proxy = Proxy::start(&origin.url(), &origin.ca_file, &cache, &[]).await;
        let r = get(&proxy.url(target)).await;
        assert_eq!(r.cache(), "MISS");
        assert_eq!(r.body, expected(53, 0, 100000));
        assert!(
            eventually(Duration::from_secs(10), || std::fs::metadata(&path)
                .is_ok_and(|m| m.len() > 100000))
            .await
        );
        assert_eq!(get(&proxy.url(target)).await.cache(), "HIT");
        proxy.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_smuggling_requests_are_refused_before_the_origin() {
    let s = setup(&[]).await;
    let (origin, proxy) = (&s.origin, &s.proxy);
    let huge = format!(
        "GET /blob/1 HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(200_000)
    );
    let many: String = (0..200).map(|i| format!("X-H{i}: v\r\n")).collect();
    let many = format!("GET /blob/1 HTTP/1.1\r\nHost: x\r\n{many}\r\n");
    let cases: Vec<(&str, Vec<u8>, &[&str])> = vec![
        ("garbage request line", b"HELLO\r\n\r\n".to_vec(), &["400"]),
        ("bad version", b"GET /blob/1 HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(), &["400"]),
        ("NUL in a header", b"GET /blob/1 HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n".to_vec(), &["400"]),
        ("non-ASCII header name", "GET /blob/1 HTTP/1.1\r\nHost: x\r\nX-\u{e9}: a\r\n\r\n".as_bytes().to_vec(), &["400"]),
        ("obs-fold", b"GET /blob/1 HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n".to_vec(), &["400"]),
        (
            "conflicting Content-Length",
            b"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde".to_vec(),
            &["400"],
        ),
        (
            "Transfer-Encoding other than chunked",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nabc".to_vec(),
            &["400"],
        ),
        (
            "invalid chunk size",
            b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n".to_vec(),
            &["400"],
        ),
        ("header section over the limit", huge.into_bytes(), &["431"]),
        ("too many headers", many.into_bytes(), &["431"]),
    ];
    for (what, request, statuses) in cases {
        let answer = raw(proxy.addr, &request).await;
        let status = answer.split(' ').nth(1).unwrap_or("");
        assert!(statuses.contains(&status), "{what}: got {answer:?}");
    }
    let seen: Vec<String> = origin.seen().iter().map(|s| s.target.clone()).collect();
    assert!(
        !seen.iter().any(|t| t == "/smuggled" || t == "/blob/1"),
        "reached the origin: {seen:?}"
    );
}

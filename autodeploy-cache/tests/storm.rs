//! The boot storm: many hosts ask for the same missing object at once.

use std::time::{Duration, Instant};

use crate::support::origin::Origin;
use crate::support::{Proxy, cache_files, eventually, stream_check, temp_files};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_cold_clients_share_one_streamed_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let proxy = Proxy::start(
        &origin.url(),
        &origin.ca_file,
        &dir.path().join("cache"),
        &[],
    )
    .await;
    // 8 MiB at 4 MiB/s: the origin needs about two seconds, so clients can only have bytes
    // before it finishes if they are streamed the fill.
    let size = 8 << 20;
    let target = format!("/blob/{size}?seed=21&rate={}", 4 << 20);
    let url = proxy.url(&target);
    let started = Instant::now();
    let clients: Vec<_> = (0..100)
        .map(|_| tokio::spawn(stream_check(url.clone(), 21)))
        .collect();
    let mut results = Vec::new();
    for c in clients {
        results.push(c.await.unwrap().unwrap());
    }
    let finished = origin
        .finished(&target)
        .expect("the origin finished sending");
    assert_eq!(origin.count(&target), 1, "one upstream fetch");
    assert_eq!(origin.sent(&target), size);
    for r in &results {
        assert_eq!(r.status, 200);
        assert_eq!(r.len, size);
        assert!(r.correct, "a client got wrong bytes");
        assert!(
            r.first_byte.unwrap() < finished,
            "a client waited for the whole download"
        );
    }
    assert!(finished > started);
    assert!(
        eventually(Duration::from_secs(10), || cache_files(
            &dir.path().join("cache")
        )
        .0 == 1)
        .await
    );
    let hit = stream_check(url, 21).await.unwrap();
    assert_eq!(
        (hit.cache.as_str(), hit.correct, hit.len),
        ("HIT", true, size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_does_not_stop_the_fill() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let proxy = Proxy::start(
        &origin.url(),
        &origin.ca_file,
        &dir.path().join("cache"),
        &[],
    )
    .await;
    let target = format!("/blob/{}?seed=22&rate={}", 2 << 20, 4 << 20);
    let url = proxy.url(&target);
    let leaver = tokio::spawn(stream_check(url.clone(), 22));
    tokio::time::sleep(Duration::from_millis(100)).await;
    leaver.abort();
    assert!(
        eventually(Duration::from_secs(20), || cache_files(
            &dir.path().join("cache")
        )
        .0 == 1)
        .await
    );
    let hit = stream_check(url, 22).await.unwrap();
    assert_eq!((hit.cache.as_str(), hit.correct), ("HIT", true));
    assert_eq!(origin.count(&target), 1);
    assert_eq!(temp_files(&dir.path().join("cache")), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_aborts_every_reader_and_the_next_request_refetches() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Origin::start(dir.path()).await;
    let proxy = Proxy::start(
        &origin.url(),
        &origin.ca_file,
        &dir.path().join("cache"),
        &[],
    )
    .await;
    let target = format!("/blob/{}?seed=23&rate={}&cut={}", 2 << 20, 4 << 20, 1 << 20);
    let url = proxy.url(&target);
    let clients: Vec<_> = (0..10)
        .map(|_| tokio::spawn(stream_check(url.clone(), 23)))
        .collect();
    for c in clients {
        let result = c.await.unwrap();
        assert!(
            result.is_err(),
            "a short body must not end cleanly: {result:?}"
        );
    }
    assert_eq!(origin.count(&target), 1);
    let _ = stream_check(url, 23).await;
    assert_eq!(
        origin.count(&target),
        2,
        "the next request starts a new fill"
    );
}

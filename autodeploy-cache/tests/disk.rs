//! Disk trouble: a cache directory on a small tmpfs that fills up, and a read-only one. The
//! proxy keeps serving (passing through what it cannot store), logs each condition once, and
//! stores again when it can. The proxy runs in its own mount namespace with the file system
//! mounted over its cache directory.

use std::path::Path;

use crate::support::origin::{Origin, expected};
use crate::support::{cache_files, contained, fetch, get, on_tmpfs, temp_files};

/// An origin and a proxy whose cache directory is a 6 MiB tmpfs.
async fn on_a_small_disk() -> (
    tempfile::TempDir,
    Origin,
    std::path::PathBuf,
    crate::support::ProxyProcess,
) {
    on_tmpfs("6m", "100m").await
}

async fn eventually_hit(url: &str) -> bool {
    for _ in 0..200 {
        if get(url).await.cache() == "HIT" {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_file_system_evicts_then_passes_through_and_recovers() {
    let (_dir, origin, _cache, proxy) = on_a_small_disk().await;
    let url = |t: &str| format!("http://{}{t}", proxy.addr);
    let (a, b, c, d) = (
        format!("/blob/{}?seed=70", 4 << 20),
        format!("/blob/{}?seed=71", 4 << 20),
        format!("/blob/{}?seed=72", 8 << 20),
        format!("/blob/{}?seed=73", 1 << 20),
    );
    assert_eq!(get(&url(&a)).await.body, expected(70, 0, 4 << 20));
    assert!(eventually_hit(&url(&a)).await);
    // B does not fit beside A: A is evicted to make room, although --max-size is 100m.
    assert_eq!(get(&url(&b)).await.body, expected(71, 0, 4 << 20));
    assert!(eventually_hit(&url(&b)).await);
    assert_eq!(get(&url(&a)).await.cache(), "MISS");
    // C can never fit: it is passed through, whole, every time, and logged once.
    for _ in 0..3 {
        let r = fetch("GET", &url(&c), &[], b"").await.unwrap();
        assert_eq!((r.status.as_u16(), r.cache()), (200, "BYPASS"));
        assert_eq!(r.body, expected(72, 0, 8 << 20));
    }
    assert_eq!(origin.count(&c), 3);
    // Room again for a small object: stored, and the recovery is logged.
    get(&url(&d)).await;
    assert!(eventually_hit(&url(&d)).await);
    let log = proxy.log_with(&["cannot store", "storing in"]).await;
    assert_eq!(log.matches("cannot store").count(), 1, "{log}");
    assert!(log.contains("storing in"), "{log}");
    assert!(
        log.contains("MiB free: little will be cached"),
        "a nearly full disk is said at start: {log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_cache_directory_serves_without_storing() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    let c = cache.display();
    let proxy = contained(
        &origin,
        &cache,
        &format!("mount --bind '{c}' '{c}' && mount -o remount,bind,ro '{c}'"),
        "100m",
    );
    let target = "/blob/100000?seed=74";
    for _ in 0..3 {
        let r = fetch("GET", &format!("http://{}{target}", proxy.addr), &[], b"")
            .await
            .unwrap();
        assert_eq!((r.status.as_u16(), r.cache()), (200, "BYPASS"));
        assert_eq!(r.body, expected(74, 0, 100000));
    }
    let log = proxy.log_with(&["cannot store"]).await;
    assert_eq!(log.matches("cannot store").count(), 1, "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_fills_do_not_count_the_same_free_space() {
    let (_dir, _origin, _cache, proxy) = on_a_small_disk().await;
    // Two 4 MiB objects fetched at once on a 6 MiB file system: without reservations both
    // would start and one would run out of space mid-body, aborting its client.
    let urls: Vec<String> = (0..2)
        .map(|i| {
            format!(
                "http://{}/blob/{}?seed={}&rate={}",
                proxy.addr,
                4 << 20,
                75 + i,
                8 << 20
            )
        })
        .collect();
    let requests: Vec<_> = urls
        .iter()
        .cloned()
        .map(|u| tokio::spawn(async move { fetch("GET", &u, &[], b"").await }))
        .collect();
    let mut statuses = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let r = r.await.unwrap().expect("no client may be aborted");
        assert_eq!(r.body, expected(75 + i as u64, 0, 4 << 20));
        statuses.push(r.cache().to_string());
    }
    assert!(statuses.contains(&"MISS".to_string()), "{statuses:?}");
    assert!(statuses.contains(&"BYPASS".to_string()), "{statuses:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fill_of_unknown_length_makes_room_as_it_grows() {
    let (_dir, _origin, cache, proxy) = on_a_small_disk().await;
    let url = |t: &str| format!("http://{}{t}", proxy.addr);
    let old = format!("/blob/{}?seed=76", 3 << 20);
    let chunked = format!("/blob/{}?seed=77&chunked=1", 3 << 20);
    let too_big = format!("/blob/{}?seed=78&chunked=1", 8 << 20);
    get(&url(&old)).await;
    assert!(eventually_hit(&url(&old)).await);
    // No Content-Length, so no room set aside up front: the fill must evict the old entry as
    // it grows rather than run out of space and abort its client.
    let r = fetch("GET", &url(&chunked), &[], b"")
        .await
        .expect("the client of a chunked fill is not aborted");
    assert_eq!(r.body, expected(77, 0, 3 << 20));
    assert!(eventually_hit(&url(&chunked)).await);
    assert_eq!(get(&url(&old)).await.cache(), "MISS");
    // Larger than the file system: its client is aborted (a clean end would pass a truncated
    // image off as whole), nothing is left behind, and the cache keeps working.
    assert!(fetch("GET", &url(&too_big), &[], b"").await.is_err());
    let log = proxy.log_with(&["cannot store"]).await;
    assert!(log.contains("cannot store"), "{log}");
    assert_eq!(get(&url(&old)).await.body, expected(76, 0, 3 << 20));
    assert!(eventually_hit(&url(&old)).await);
    // The proxy's view of its cache directory: the tmpfs in its mount namespace.
    let inside = Path::new(&format!("/proc/{}/root", proxy.child.id()))
        .join(cache.strip_prefix("/").unwrap());
    assert!(
        cache_files(&inside).0 > 0,
        "the stored entry is seen in {}",
        inside.display()
    );
    assert_eq!(temp_files(&inside), 0, "a temp file was left behind");
}

//! The boot storm: many hosts ask for the same missing object at once.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::origin::expected;
use crate::support::{
    Setup, cache_files, eventually, get, on_tmpfs, setup, stream_check, temp_files,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_cold_clients_share_one_streamed_fetch() {
    let Setup { dir, origin, proxy } = setup(&[]).await;
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
    let cache = dir.path().join("cache");
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 1).await);
    let hit = stream_check(url, 21).await.unwrap();
    assert_eq!(
        (hit.cache.as_str(), hit.correct, hit.len),
        ("HIT", true, size)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_does_not_stop_the_fill() {
    let Setup { dir, origin, proxy } = setup(&[]).await;
    let target = format!("/blob/{}?seed=22&rate={}", 2 << 20, 4 << 20);
    let url = proxy.url(&target);
    let leaver = tokio::spawn(stream_check(url.clone(), 22));
    // It leaves once the fill is under way.
    assert!(eventually(Duration::from_secs(10), || origin.sent(&target) > 0).await);
    leaver.abort();
    let cache = dir.path().join("cache");
    assert!(eventually(Duration::from_secs(20), || cache_files(&cache).0 == 1).await);
    let hit = stream_check(url, 22).await.unwrap();
    assert_eq!((hit.cache.as_str(), hit.correct), ("HIT", true));
    assert_eq!(origin.count(&target), 1);
    assert_eq!(temp_files(&cache), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_fill_aborts_every_reader_and_the_next_request_refetches() {
    let s = setup(&[]).await;
    let (origin, proxy) = (&s.origin, &s.proxy);
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

/// A large object (1 GiB under `make soak`) to 200 clients that read slowly: what the proxy holds follows neither the
/// object's size nor the number of readers. The cache is a tmpfs, so the test needs no free
/// gigabyte of disk.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_object_to_many_slow_readers_keeps_memory_bounded() {
    // 1 GiB in `make soak`; a quarter of it in `make test`, which is enough for the bound to
    // be tested (the readers hold their first MiB either way) and four times quicker.
    let size: u64 = if std::env::var_os("SOAK").is_some() {
        1 << 30
    } else {
        256 << 20
    };
    const READERS: usize = 200;
    const HEAD_START: usize = 1 << 20;
    let _alone = crate::support::measuring_alone().await;
    let (_dir, origin, _cache, proxy) = on_tmpfs("1200m", "2g").await;
    let pid = proxy.child.id();
    // Warm: the runtime's threads, the upstream connection and the frame pool exist.
    let warm = format!("http://{}/blob/{}?seed=82", proxy.addr, 4 << 20);
    assert_eq!(get(&warm).await.body, expected(82, 0, 4 << 20));
    let before = crate::support::private_kib(pid);
    let peak = crate::support::PrivatePeak::start(pid);

    let target = format!("/blob/{size}?seed=83");
    let request = format!("GET {target} HTTP/1.1\r\nHost: autodeploy\r\n\r\n");
    let mut readers = Vec::new();
    for _ in 0..READERS {
        let mut stream = TcpStream::connect(&proxy.addr).await.unwrap();
        stream.write_all(request.as_bytes()).await.unwrap();
        readers.push(stream);
    }
    // Every reader takes its first MiB, then stops reading while the fill goes on.
    let mut started = Vec::new();
    for mut stream in readers {
        started.push(tokio::spawn(async move {
            let mut buf = vec![0u8; HEAD_START];
            stream.read_exact(&mut buf).await.unwrap();
            let head_len = buf
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .expect("a response head in the first MiB")
                + 4;
            (stream, head_len as u64)
        }));
    }
    let mut readers = Vec::new();
    for s in started {
        readers.push(s.await.unwrap());
    }
    assert!(
        eventually(Duration::from_secs(120), || origin.sent(&target) == size).await,
        "the origin sent {} of {size} bytes",
        origin.sent(&target)
    );
    // Two readers go on to the end; the others hang up.
    let finishing: Vec<_> = readers
        .drain(..2)
        .map(|(mut stream, head_len)| {
            tokio::spawn(async move {
                let whole = head_len + size;
                let mut total = HEAD_START as u64;
                let mut buf = vec![0u8; 1 << 20];
                let mut last = Vec::new();
                while total < whole {
                    let want = buf.len().min((whole - total) as usize);
                    let n = tokio::time::timeout(
                        Duration::from_secs(60),
                        stream.read(&mut buf[..want]),
                    )
                    .await
                    .expect("the body keeps coming")
                    .unwrap();
                    assert!(n > 0, "the body ended at {} of {size}", total - head_len);
                    total += n as u64;
                    last.extend_from_slice(&buf[..n]);
                    let keep = last.len().saturating_sub(1 << 20);
                    last.drain(..keep);
                }
                last
            })
        })
        .collect();
    drop(readers);
    for f in finishing {
        let last = f.await.unwrap();
        let from = size - last.len() as u64;
        assert!(
            last == expected(83, from, size),
            "the body's last MiB differs from the origin's"
        );
    }
    let peak = peak.stop();
    eprintln!(
        "memory: {before} KiB before, peak {peak} KiB with {READERS} readers of {size} bytes"
    );
    // By design: a pool of at most 16 MiB of frame buffers, about twice the 8 MiB frame
    // budget in flight, and each connection's buffers. An object held in memory, or reads
    // running ahead of slow readers, would be hundreds of MiB.
    assert!(
        peak < before + 64 * 1024,
        "peak RSS {peak} KiB, {before} KiB before: the proxy grew with the object or the readers"
    );
    assert_eq!(origin.count(&target), 1);
}

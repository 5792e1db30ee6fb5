//! Load: many concurrent keep-alive connections with mixed hits and misses against the proxy
//! binary, then a check that nothing leaked (file descriptors, memory) once they are gone.
//! `make test` runs a short version; `make soak` sets `SOAK=1` for 2,000 connections over
//! five minutes.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::support::eventually;
use crate::support::origin::expected;

fn soak() -> bool {
    std::env::var_os("SOAK").is_some()
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `connections` keep-alive clients for `duration`; returns every request's latency.
async fn run_phase(
    addr: &str,
    connections: usize,
    duration: Duration,
    phase: u64,
) -> Vec<Duration> {
    let until = Instant::now() + duration;
    let mut tasks = Vec::new();
    for c in 0..connections {
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            // One keep-alive connection per task.
            let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(1)
                .build_http();
            let mut latencies = Vec::new();
            let mut n = (c as u64) ^ (phase << 40);
            while Instant::now() < until {
                // Nine in ten are hits on 20 hot objects, one in ten a miss on a new one.
                n = n
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let seed = if n.is_multiple_of(10) {
                    1000 + (n >> 20) % 1_000_000
                } else {
                    (n >> 33) % 20
                };
                let url = format!("http://{addr}/blob/4096?seed={seed}");
                let started = Instant::now();
                let response = client
                    .get(url.parse().unwrap())
                    .await
                    .map_err(|e| e.to_string())?;
                let status = response.status();
                let body = response
                    .into_body()
                    .collect()
                    .await
                    .map_err(|e| e.to_string())?
                    .to_bytes();
                if status != 200 || body != expected(seed, 0, 4096) {
                    return Err(format!("{url}: {status}, {} bytes", body.len()));
                }
                latencies.push(started.elapsed());
            }
            Ok::<_, String>(latencies)
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        latencies.extend(t.await.unwrap().expect("a request failed under load"));
    }
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_keep_alive_clients_with_mixed_hits_and_misses() {
    let _alone = crate::support::measuring_alone().await;
    let (connections, duration) = if soak() {
        (2000, Duration::from_secs(300))
    } else {
        (200, Duration::from_secs(6))
    };
    // Two file descriptors a connection on this machine (client and proxy side).
    let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let proxy = crate::support::spawn(&origin, &dir.path().join("cache"), "10m");
    let (addr, pid) = (proxy.addr.clone(), proxy.child.id());
    // Warm up so that the baseline includes the runtime's threads and the pool.
    let warm: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    for i in 0..20 {
        let url = format!("http://{addr}/blob/4096?seed={i}");
        let body = warm
            .get(url.parse().unwrap())
            .await
            .unwrap()
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes();
        assert_eq!(body, expected(i, 0, 4096));
    }
    drop(warm);
    let port = crate::support::port_of(&addr);
    let closed = || {
        crate::support::sockets("established", &format!("sport = :{port}")) == 0
            && crate::support::sockets("close-wait", &format!("sport = :{port}")) == 0
    };
    assert!(eventually(Duration::from_secs(10), closed).await);
    let (fds_before, rss_before) = (fds(pid), crate::support::private_kib(pid));

    // Three equal phases: what the proxy keeps (open entries, idle upstream connections,
    // pooled frame buffers, the allocator's free lists) is bounded but takes a phase or two to
    // reach its size on a busy machine, so the last phase is compared with the one before.
    let mut after = Vec::new();
    let mut latencies = Vec::new();
    for phase in 0..3 {
        latencies.extend(run_phase(&addr, connections, duration / 3, phase).await);
        // The clients' sockets closed on both sides.
        assert!(eventually(Duration::from_secs(10), closed).await);
        after.push((fds(pid), crate::support::private_kib(pid)));
    }
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    eprintln!(
        "load: {connections} connections, {} requests, p99 {p99:?}, fds {fds_before} -> {:?}, rss {rss_before} KiB -> {:?} KiB",
        latencies.len(),
        after.iter().map(|a| a.0).collect::<Vec<_>>(),
        after.iter().map(|a| a.1).collect::<Vec<_>>(),
    );
    let (fds1, rss1) = after[1];
    let (fds2, rss2) = after[2];
    assert!(
        fds2 <= fds1 + 8,
        "file descriptors grew between phases: {fds1} -> {fds2}"
    );
    // Bounded: open entries (1,024 at most) and idle upstream connections (64 at most).
    assert!(
        fds2 <= fds_before + 1024 + 64 + 8,
        "file descriptors: {fds_before} -> {fds2}"
    );
    assert!(
        rss2 < rss1 + 16 * 1024,
        "memory grew between phases: {rss1} KiB -> {rss2} KiB"
    );
}

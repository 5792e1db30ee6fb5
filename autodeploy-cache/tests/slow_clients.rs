//! Slow and idle clients, and floods: cut by timeouts and a connection cap, while the proxy
//! keeps serving everyone else.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::origin::Origin;
use crate::support::{Proxy, eventually, get};

async fn proxy_with(
    tweak: impl FnOnce(&mut autodeploy_cache::Config),
) -> (tempfile::TempDir, Origin, Proxy) {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    let mut config = crate::support::config(&origin.url(), &origin.ca_file, &cache, &[]);
    tweak(&mut config);
    let proxy = Proxy::start_with(config).await;
    (dir, origin, proxy)
}

/// A request head must be complete within a second.
fn header_timeout_of_1s(config: &mut autodeploy_cache::Config) {
    config.client_header_timeout = Duration::from_secs(1);
}

/// How many of `streams` the server closes within `within` each (read one after another).
async fn closed_within(streams: &mut [TcpStream], within: Duration) -> usize {
    let mut closed = 0;
    for stream in streams {
        closed += usize::from(until_closed(stream, within).await.is_some());
    }
    closed
}

/// Reads until the server closes the connection; returns how long that took and what came.
async fn until_closed(stream: &mut TcpStream, within: Duration) -> Option<(Duration, Vec<u8>)> {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(
            within.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((started.elapsed(), out)),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickled_request_head_is_cut_at_the_header_timeout() {
    let (_dir, origin, proxy) = proxy_with(header_timeout_of_1s).await;
    let mut slow = TcpStream::connect(proxy.addr).await.unwrap();
    let head = b"GET /blob/1 HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let writer = async {
        for byte in head
            .iter()
            .chain(b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa".iter())
        {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), writer).await;
    let (elapsed, _) = until_closed(&mut slow, Duration::from_secs(10))
        .await
        .expect("the connection stays open");
    assert!(elapsed < Duration::from_secs(10));
    assert!(origin.seen().is_empty());
    assert_eq!(
        get(&proxy.url("/blob/3")).await.status,
        200,
        "others are still served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed() {
    let (_dir, _origin, proxy) = proxy_with(header_timeout_of_1s).await;
    let mut idle = TcpStream::connect(proxy.addr).await.unwrap();
    idle.write_all(b"GET /blob/2 HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    idle.read_exact(&mut first).await.unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // Sends nothing more: the server must close the connection on its own.
    let closed = until_closed(&mut idle, Duration::from_secs(10)).await;
    assert!(
        closed.is_some(),
        "an idle keep-alive connection was kept open"
    );
}

/// Reads one whole response head and its (small, Content-Length) body; its status.
async fn one_response(stream: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(Duration::from_secs(10), async {
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Some(())
    });
    read.await.ok()??;
    String::from_utf8_lossy(&buf)
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_at_the_cap_make_room_for_new_clients() {
    let (_dir, _origin, proxy) = proxy_with(|c| c.max_connections = 20).await;
    // An attacker holds every slot with connections that never send a head.
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(proxy.addr).await.unwrap());
    }
    let port = crate::support::port_of(&proxy.addr.to_string());
    // The proxy has accepted them all (its side of each is established).
    assert!(
        eventually(Duration::from_secs(10), || crate::support::sockets(
            "established",
            &format!("sport = :{port}")
        ) >= 20)
        .await
    );
    // Every booting host that comes now is served (and keeps its connection).
    let mut hosts = Vec::new();
    for i in 0..20 {
        let mut host = TcpStream::connect(proxy.addr).await.unwrap();
        host.write_all(b"GET /blob/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(one_response(&mut host).await, Some(200), "host {i}");
        hosts.push(host);
    }
    // The attacker's connections were the ones closed, oldest first.
    let closed = closed_within(&mut held, Duration::from_millis(500)).await;
    assert!(closed >= 19, "{closed} of the idle connections were closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_cap_with_every_connection_busy_new_ones_are_refused_quickly() {
    let (_dir, origin, proxy) = proxy_with(|c| c.max_connections = 10).await;
    // Ten transfers under way (the origin stalls after the first byte).
    let mut busy = Vec::new();
    for i in 0..10 {
        let mut stream = TcpStream::connect(proxy.addr).await.unwrap();
        let request = format!("GET /blob/1000?seed={i}&stall=1 HTTP/1.1\r\nHost: x\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        busy.push(stream);
    }
    // Every transfer is under way: the origin has sent each its first byte.
    assert!(
        eventually(Duration::from_secs(10), || (0..10)
            .all(|i| origin.sent(&format!("/blob/1000?seed={i}&stall=1")) > 0))
        .await
    );
    let mut refused = 0;
    for _ in 0..10 {
        let mut extra = TcpStream::connect(proxy.addr).await.unwrap();
        let _ = extra
            .write_all(b"GET /blob/1 HTTP/1.1\r\nHost: x\r\n\r\n")
            .await;
        if let Some((elapsed, answer)) = until_closed(&mut extra, Duration::from_secs(5)).await
            && answer.is_empty()
            && elapsed < Duration::from_secs(2)
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 8,
        "only {refused} of 10 excess connections were refused"
    );
    drop(busy);
    let ok = crate::support::served_within(Duration::from_secs(10), &proxy.url("/blob/1")).await;
    assert!(ok, "the proxy serves again once the transfers are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_address_holds_at_most_its_share() {
    let (_dir, _origin, proxy) = proxy_with(|c| c.max_connections_per_client = 5).await;
    let mut held = Vec::new();
    let port = crate::support::port_of(&proxy.addr.to_string());
    for i in 0..12 {
        held.push(TcpStream::connect(proxy.addr).await.unwrap());
        // In order: each is accepted (and the oldest of this client's closed) before the next.
        let accepted = eventually(Duration::from_secs(10), || {
            crate::support::sockets("established", &format!("sport = :{port}")) >= (i + 1).min(5)
        })
        .await;
        assert!(accepted);
    }
    let open = held.len() - closed_within(&mut held, Duration::from_millis(300)).await;
    assert_eq!(open, 5, "connections of one address left open");
    assert_eq!(get(&proxy.url("/blob/1")).await.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misses_over_the_fill_cap_pass_through() {
    let (_dir, _origin, proxy) = proxy_with(|c| c.max_fills = 2).await;
    let targets: Vec<String> = (0..6)
        .map(|i| format!("/blob/{}?seed={}&rate={}", 1 << 20, 90 + i, 2 << 20))
        .collect();
    let requests: Vec<_> = targets
        .iter()
        .map(|t| tokio::spawn(crate::support::fetch_owned(proxy.url(t))))
        .collect();
    let mut statuses = Vec::new();
    for (i, r) in requests.into_iter().enumerate() {
        let r = r.await.unwrap();
        assert_eq!(
            r.body,
            crate::support::origin::expected(90 + i as u64, 0, 1 << 20)
        );
        statuses.push(r.cache().to_string());
    }
    let bypassed = statuses.iter().filter(|s| *s == "BYPASS").count();
    assert!(bypassed >= 4, "{statuses:?}");
    assert!(
        statuses.iter().filter(|s| *s == "MISS").count() <= 2,
        "{statuses:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_stop_reading_are_dropped_and_do_not_lock_others_out() {
    let (_dir, _origin, proxy) = proxy_with(|c| {
        c.max_connections = 3;
        c.max_stalled_connections = 3;
        c.stall_after = Duration::from_millis(200);
        c.send_timeout = Duration::from_secs(2);
    })
    .await;
    let size: u64 = 32 << 20;
    let target = format!("/blob/{size}?seed=95");
    assert_eq!(get(&proxy.url(&target)).await.body.len() as u64, size);
    // Three clients ask for the large hit and never read, with small receive buffers.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        let mut stream = socket.connect(proxy.addr).await.unwrap();
        stream
            .write_all(format!("GET {target} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        stalled.push(stream);
    }
    // Once they have stalled, they count against their own budget: others get in.
    let started = Instant::now();
    let served =
        crate::support::served_within(Duration::from_secs(10), &proxy.url("/blob/10?seed=96"))
            .await;
    assert!(served, "a reading client was locked out");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "served only after the send timeout: {:?}",
        started.elapsed()
    );
    // After the send timeout the proxy closes them (its side of each leaves ESTABLISHED;
    // their FIN waits behind the unread bytes): what they can still read is what the kernel
    // buffered, then the end, never the whole object. Reading before that would let the proxy
    // go on sending.
    let port = crate::support::port_of(&proxy.addr.to_string());
    let closed = eventually(Duration::from_secs(15), || {
        crate::support::sockets("established", &format!("sport = :{port}")) == 0
    })
    .await;
    assert!(closed, "the proxy did not close the stalled connections");
    for mut stream in stalled {
        let (_, got) = until_closed(&mut stream, Duration::from_secs(10))
            .await
            .expect("the proxy closed the connection");
        assert!(
            (got.len() as u64) < size,
            "a client that stopped reading got all {} bytes",
            got.len()
        );
    }
}

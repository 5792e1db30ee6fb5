//! Request smuggling and other framing attacks, against origins that frame as real servers
//! do (raw sockets, both body-first and Go's answer-then-drain): no request reaches the
//! origin other than the one the client sent, with the body it sent, and nothing a client
//! sends makes the proxy contact anything but the configured upstream.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::support::Proxy;
use crate::support::raw;
use crate::support::raw_origin::{Drain, RawOrigin};

fn config(origin: &RawOrigin, cache: &std::path::Path, flags: &[&str]) -> autodeploy_cache::Config {
    // A plain-HTTP origin: no CA. Temp paths have no spaces.
    let line = format!(
        "autodeploy-cache --upstream {} --cache-dir {}",
        origin.url(),
        cache.display()
    );
    crate::support::parse_config(line.split(' ').chain(flags.iter().copied()))
}

fn status(answer: &str) -> &str {
    answer.split(' ').nth(1).unwrap_or("")
}

/// A complete request hidden where a body would be.
const HIDDEN: &str = "GET /smuggled HTTP/1.1\r\nHost: evil\r\nX-Real-IP: 6.6.6.6\r\nAuthorization: Basic ZXZpbA==\r\n\r\n";

async fn no_request_is_ever_misframed(drain: Drain) {
    let dir = tempfile::tempdir().unwrap();
    let origin = RawOrigin::start(drain).await;
    let proxy = Proxy::start_with(config(&origin, &dir.path().join("cache"), &[])).await;
    let attacks: Vec<(String, &str)> = vec![
        (
            format!(
                "GET /boot.cfg?a HTTP/1.1\r\nHost: p\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HIDDEN}",
                HIDDEN.len()
            ),
            "400",
        ),
        (
            format!(
                "GET /boot.cfg?b HTTP/1.1\r\nHost: p\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                HIDDEN.len()
            ),
            "400",
        ),
        (
            format!(
                "HEAD /boot.cfg?c HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{HIDDEN}\r\n0\r\n\r\n",
                HIDDEN.len()
            ),
            "400",
        ),
        (
            "OPTIONS * HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n".into(),
            "400",
        ),
        (
            "GET * HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n".into(),
            "400",
        ),
    ];
    for round in 0..3 {
        for (request, expected) in &attacks {
            let answer = raw(proxy.addr, request.as_bytes()).await;
            assert_eq!(
                status(&answer),
                *expected,
                "round {round}: {request:?} -> {answer:?}"
            );
        }
        // Legitimate requests in between, over the proxy's pooled upstream connections: each
        // answer must be the origin's answer to that very request.
        let post = format!(
            "POST /vmw/rbd/host/7/script-status HTTP/1.1\r\nHost: p\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{HIDDEN}",
            HIDDEN.len()
        );
        let answer = raw(proxy.addr, post.as_bytes()).await;
        assert!(
            answer.ends_with("origin saw POST /vmw/rbd/host/7/script-status\n"),
            "round {round}: {answer:?}"
        );
        for target in [
            format!("/boot.cfg?round={round}"),
            format!("/tramp?{round}"),
        ] {
            let get = format!(
                "GET {target} HTTP/1.1\r\nHost: p\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let answer = raw(proxy.addr, get.as_bytes()).await;
            assert!(
                answer.ends_with(&format!("origin saw GET {target}\n")),
                "round {round}: {answer:?}"
            );
        }
    }
    let seen = origin.seen();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(
        seen.len(),
        9,
        "only the legitimate requests arrive: {targets:?}"
    );
    for request in &seen {
        assert!(request.target.starts_with('/'), "{targets:?}");
        match request.method.as_str() {
            "POST" => {
                assert_eq!(request.body, HIDDEN.as_bytes(), "the body arrives whole");
                assert_eq!(
                    request.header("content-length"),
                    Some(HIDDEN.len().to_string().as_str())
                );
            }
            "GET" => {
                assert!(request.body.is_empty());
                assert_eq!(request.header("content-length"), None, "{request:?}");
                assert_eq!(request.header("transfer-encoding"), None, "{request:?}");
            }
            other => panic!("unexpected {other} reached the origin: {targets:?}"),
        }
    }
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_first_origin_never_sees_a_misframed_request() {
    no_request_is_ever_misframed(Drain::BodyFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_then_drain_origin_never_sees_a_smuggled_request() {
    no_request_is_ever_misframed(Drain::AnswerFirst).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_heads_are_refused_before_the_origin() {
    let dir = tempfile::tempdir().unwrap();
    let origin = RawOrigin::start(Drain::BodyFirst).await;
    let proxy = Proxy::start_with(config(&origin, &dir.path().join("cache"), &[])).await;
    let cases: &[(&str, &str)] = &[
        ("no Host", "GET /a HTTP/1.1\r\nConnection: close\r\n\r\n"),
        (
            "two Hosts",
            "GET /a HTTP/1.1\r\nHost: p\r\nHost: q\r\nConnection: close\r\n\r\n",
        ),
        (
            "gzip, chunked",
            "POST /a HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
        ),
        (
            "climbs above /",
            "GET /../../etc/passwd HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
        ),
        (
            "climbs, encoded",
            "GET /a/%2e%2e/%2E%2E/x HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
        ),
    ];
    for (what, request) in cases {
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&answer), "400", "{what}: {answer:?}");
    }
    let head = |size: usize| {
        format!(
            "GET /big HTTP/1.1\r\nHost: p\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
            "a".repeat(size)
        )
    };
    let over = raw(proxy.addr, head(65 * 1024).as_bytes()).await;
    assert_eq!(status(&over), "431", "the documented 64 KiB limit holds");
    let ok = raw(
        proxy.addr,
        b"GET /a/../b HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status(&ok),
        "200",
        "dot segments that stay inside / pass: {ok:?}"
    );
    let seen: Vec<String> = origin.seen().iter().map(|s| s.target.clone()).collect();
    assert_eq!(seen, ["/a/../b"]);
    let under = raw(proxy.addr, head(60 * 1024).as_bytes()).await;
    assert_eq!(status(&under), "200", "a 60 KiB head is within the limit");
    proxy.stop().await;

    let proxy = Proxy::start_with(config(
        &origin,
        &dir.path().join("cache2"),
        &["--forward-host"],
    ))
    .await;
    for host in ["a b", "evil/x", "user@evil", "p:port", ""] {
        let request = format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert_eq!(status(&answer), "400", "Host {host:?}: {answer:?}");
    }
    let answer = raw(
        proxy.addr,
        b"GET /h HTTP/1.1\r\nHost: proxy.lab:5100\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), "200", "{answer:?}");
    let last = origin.seen().pop().unwrap();
    assert_eq!(last.header("host"), Some("proxy.lab:5100"));
    assert_eq!(origin.seen().len(), 3);
    proxy.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_bodies_are_read_whole_before_the_upstream_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let origin = RawOrigin::start(Drain::BodyFirst).await;
    let mut cfg = config(
        &origin,
        &dir.path().join("cache"),
        &["--max-body-size", "1k"],
    );
    cfg.client_body_timeout = Duration::from_secs(1);
    let proxy = Proxy::start_with(cfg).await;

    // A trickled body holds no upstream connection, and one that never completes is 408.
    let mut slow = tokio::net::TcpStream::connect(proxy.addr).await.unwrap();
    slow.write_all(b"POST /p HTTP/1.1\r\nHost: p\r\nContent-Length: 100\r\nConnection: close\r\n\r\n0123456789")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status(&answer), "408", "{answer}");

    let big = format!(
        "POST /p HTTP/1.1\r\nHost: p\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{}",
        "x".repeat(2000)
    );
    assert_eq!(status(&raw(proxy.addr, big.as_bytes()).await), "413");
    let chunked_big = format!(
        "POST /p HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n7d0\r\n{}\r\n0\r\n\r\n",
        "x".repeat(2000)
    );
    assert_eq!(
        status(&raw(proxy.addr, chunked_big.as_bytes()).await),
        "413"
    );
    assert!(origin.seen().is_empty(), "{:?}", origin.seen());

    // A chunked body within the limit arrives with an exact length.
    let answer = raw(
        proxy.addr,
        b"POST /p HTTP/1.1\r\nHost: p\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(status(&answer), "200", "{answer}");
    let seen = origin.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, b"hello");
    assert_eq!(seen[0].header("content-length"), Some("5"));
    assert_eq!(seen[0].header("transfer-encoding"), None);
    proxy.stop().await;
}

/// An origin that frames its answer twice: `Content-Length: 10` and a chunked body of 100
/// bytes. Chunked wins (RFC 9112 6.3), so the body is 100 bytes: a proxy that believed the
/// length would hand the client 10 and leave 90 to be read as the next response.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_framed_twice_is_read_by_its_chunks() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = listener.local_addr().unwrap();
    let body = vec![b'x'; 100];
    let answer = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\nTransfer-Encoding: chunked\r\n".as_slice(),
        b"Cache-Control: max-age=60\r\n\r\n64\r\n",
        &body,
        b"\r\n0\r\n\r\n",
    ]
    .concat();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut head = vec![0u8; 4096];
                while let Ok(n) = stream.read(&mut head).await {
                    if n == 0 || stream.write_all(&answer).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let line = format!(
        "autodeploy-cache --upstream http://{origin} --cache-dir {}",
        dir.path().join("cache").display()
    );
    let proxy = Proxy::start_with(crate::support::parse_config(line.split(' '))).await;
    for attempt in ["MISS", "HIT"] {
        let answer = raw(
            proxy.addr,
            b"GET /twice HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        let (head, got) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
        assert_eq!(status(head), "200", "{attempt}: {answer}");
        let believed = head
            .lines()
            .any(|l| l.eq_ignore_ascii_case("content-length: 10"));
        assert!(!believed, "{attempt}: {head}");
        // Chunked to the client on the miss (it streams), with its length on the hit.
        let whole = got.contains(&"x".repeat(100));
        assert!(
            whole,
            "{attempt}: the client got {} body bytes: {head}",
            got.len()
        );
        if attempt == "MISS" {
            let cache = dir.path().join("cache");
            let stored = || crate::support::cache_files(&cache).0 == 1;
            assert!(crate::support::eventually(Duration::from_secs(10), stored).await);
        }
    }
    proxy.stop().await;
}

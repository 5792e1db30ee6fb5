//! The admin listener of the shipped binary: metrics that move as requests are served and
//! parse as Prometheus text, health, entries, and purges that free the disk at once while a
//! transfer of the purged entry still completes.

use std::process::Command;
use std::time::Duration;

use http_body_util::BodyExt as _;

use crate::support::origin::{Origin, expected};
use crate::support::{ProxyProcess, cache_files, eventually, fetch, get};

async fn start(dir: &std::path::Path, origin: &Origin) -> (ProxyProcess, String) {
    let proxy = crate::support::spawn_with(
        origin,
        &dir.join("cache"),
        &["--admin-listen", "127.0.0.1:0"],
    );
    let log = proxy.log_with(&["admin on "]).await;
    let admin = log
        .split("admin on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin address is logged")
        .to_string();
    (proxy, format!("http://{admin}"))
}

/// Waits (bounded) until the index lists `n` entries: the index learns of an entry just after
/// its file is renamed into place, so files on disk are not enough.
async fn indexed(admin: &str, n: usize) -> bool {
    for _ in 0..500 {
        let list: serde_json::Value =
            serde_json::from_slice(&get(&format!("{admin}/entries")).await.body).unwrap();
        if list.as_array().map_or(0, Vec::len) == n {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// The value of the sample `name` (with its labels, as written) in Prometheus text.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
}

/// Every line is a comment, `# EOF` or `name{labels} value`.
fn well_formed(text: &str) -> bool {
    text.ends_with("# EOF\n")
        && text.lines().all(|l| {
            if l.starts_with('#') {
                return true;
            }
            let Some((name, value)) = l.rsplit_once(' ') else {
                return false;
            };
            let name_ok = name.split('{').next().is_some_and(|n| {
                !n.is_empty() && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            name_ok && value.parse::<f64>().is_ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_health_and_entries_follow_what_is_served() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let (proxy, admin) = start(dir.path(), &origin).await;
    let health = get(&format!("{admin}/healthz")).await;
    assert_eq!(
        (health.status.as_u16(), &health.body[..]),
        (200, &b"ok\n"[..])
    );
    // The admin port is not the proxy's: the hosts' port forwards /metrics upstream.
    let size = 1 << 20;
    let target = format!("/blob/{size}?seed=80");
    let url = format!("http://{}{target}", proxy.addr);
    assert_eq!(get(&url).await.cache(), "MISS");
    // Stored and indexed, and the fill gone: the next request is a hit from the entry.
    let mut settled = false;
    for _ in 0..500 {
        let text = String::from_utf8(get(&format!("{admin}/metrics")).await.body.to_vec()).unwrap();
        if sample(&text, "autodeploy_cache_entries") == Some(1.0)
            && sample(&text, "autodeploy_cache_fills_in_progress") == Some(0.0)
        {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(settled);
    assert_eq!(get(&url).await.cache(), "HIT");
    let text = String::from_utf8(get(&format!("{admin}/metrics")).await.body.to_vec()).unwrap();
    assert!(well_formed(&text), "{text}");
    let s = |name| sample(&text, name);
    assert_eq!(
        s("autodeploy_cache_requests_total{cache_status=\"MISS\"}"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        s("autodeploy_cache_requests_total{cache_status=\"HIT\"}"),
        Some(1.0)
    );
    assert_eq!(
        s("autodeploy_cache_sent_bytes_total{source=\"cache\"}"),
        Some(size as f64)
    );
    assert_eq!(
        s("autodeploy_cache_sent_bytes_total{source=\"upstream\"}"),
        Some(size as f64)
    );
    assert_eq!(s("autodeploy_cache_upstream_requests_total"), Some(1.0));
    assert_eq!(s("autodeploy_cache_entries"), Some(1.0));
    assert!(s("autodeploy_cache_disk_bytes").unwrap() > size as f64);
    assert_eq!(s("autodeploy_cache_disk_trouble"), Some(0.0));
    let entries: serde_json::Value =
        serde_json::from_slice(&get(&format!("{admin}/entries")).await.body).unwrap();
    assert_eq!(entries[0]["key"], target);
    assert_eq!(entries[0]["hits"], 1);
    assert!(entries[0]["size"].as_u64().unwrap() > size);
    let wrong = fetch("GET", &format!("{admin}/purge?url=/x"), &[], b"")
        .await
        .unwrap();
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.headers["allow"], "POST");
    let wrong = fetch("POST", &format!("{admin}/entries"), &[], b"")
        .await
        .unwrap();
    assert_eq!(wrong.headers["allow"], "GET");
    // The container's HEALTHCHECK, as HOST:PORT or as a URL.
    let hostport = admin.trim_start_matches("http://").to_string();
    for target in [hostport.clone(), format!("{admin}/healthz")] {
        let out = Command::new(crate::support::proxy_binary())
            .args(["healthcheck", &target])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{target}: {out:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn purge_frees_the_disk_and_lets_a_transfer_in_progress_finish() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let (proxy, admin) = start(dir.path(), &origin).await;
    let cache = dir.path().join("cache");
    let size: u64 = 32 << 20;
    let target = format!("/blob/{size}?seed=81");
    let url = format!("http://{}{target}", proxy.addr);
    get(&url).await;
    assert!(indexed(&admin, 1).await);
    // A hit, read one frame at a time: the purge comes while it is under way.
    let client = crate::support::client();
    let response = client.get(url.parse().unwrap()).await.unwrap();
    assert_eq!(response.headers()["x-cache-status"], "HIT");
    let mut body = response.into_body();
    let mut got = Vec::new();
    while got.len() < 1 << 20 {
        let frame = body.frame().await.unwrap().unwrap();
        got.extend_from_slice(frame.data_ref().unwrap());
    }
    let purged = fetch(
        "POST",
        &format!(
            "{admin}/purge?url={}",
            target.replace('?', "%3F").replace('=', "%3D")
        ),
        &[],
        b"",
    )
    .await
    .unwrap();
    assert_eq!(purged.status, 200, "{:?}", purged.body);
    let answer: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(answer["purged"], 1);
    assert_eq!(cache_files(&cache).0, 0, "the space is freed at once");
    while let Some(frame) = body.frame().await {
        got.extend_from_slice(frame.unwrap().data_ref().unwrap());
    }
    assert!(
        got == expected(81, 0, size),
        "the transfer under way completed intact"
    );
    assert_eq!(
        get(&url).await.cache(),
        "MISS",
        "the next request fetches again"
    );

    // By prefix.
    for seed in [82, 83] {
        get(&format!("http://{}/blob/10?seed={seed}", proxy.addr)).await;
    }
    assert!(indexed(&admin, 3).await);
    let purged = fetch("POST", &format!("{admin}/purge?prefix=/blob/10"), &[], b"")
        .await
        .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(answer["purged"], 2);
    assert_eq!(cache_files(&cache).0, 1);
    let bad = fetch("POST", &format!("{admin}/purge?url=x"), &[], b"")
        .await
        .unwrap();
    assert_eq!(bad.status, 400);
}

fn warm(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(crate::support::proxy_binary())
        .arg("warm")
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fetches_each_path_once_and_reports() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let log = dir.path().join("access.log");
    let proxy = crate::support::spawn_with(
        &origin,
        &dir.path().join("cache"),
        &["--access-log", log.to_str().unwrap()],
    );
    let base = format!("http://{}", proxy.addr);
    let list = dir.path().join("paths.txt");
    std::fs::write(
        &list,
        "# boot files of esx-01\n/blob/100000?seed=90\n\n/blob/200000?seed=91\n/blob/100000?seed=90\n/nothing-here\n",
    )
    .unwrap();
    let (code, out) = warm(&["--proxy", &base, list.to_str().unwrap()]);
    assert_eq!(code, Some(1), "a path failed: {out}");
    assert!(
        out.contains("3 paths: 0 already cached, 2 fetched, 1 failed"),
        "{out}"
    );
    assert!(out.contains("FAILED (HTTP 404) /nothing-here"), "{out}");
    assert_eq!(origin.count("/blob/100000?seed=90"), 1);
    assert_eq!(origin.count("/blob/200000?seed=91"), 1);
    let cache = dir.path().join("cache");
    assert!(eventually(Duration::from_secs(10), || cache_files(&cache).0 == 2).await);
    std::fs::write(&list, "/blob/100000?seed=90\n/blob/200000?seed=91\n").unwrap();
    let list = list.to_str().unwrap();
    let (code, out) = warm(&["--proxy", &base, "--concurrency", "1", list]);
    let done = "2 paths: 2 already cached, 0 fetched, 0 failed";
    assert!(code == Some(0) && out.contains(done), "{out}");

    // Another proxy, warmed from the first one's access log.
    let other_cache = dir.path().join("other");
    let other = crate::support::spawn(&origin, &other_cache, "1g");
    assert!(
        eventually(Duration::from_secs(5), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count()
            >= 5)
        .await
    );
    let other_base = format!("http://{}", other.addr);
    let from_log = ["--proxy", &other_base, "--from-log", log.to_str().unwrap()];
    let (code, out) = warm(&from_log);
    let done = "2 paths: 0 already cached, 2 fetched, 0 failed";
    assert!(code == Some(0) && out.contains(done), "{out}");
    assert!(eventually(Duration::from_secs(10), || cache_files(&other_cache).0 == 2).await);
    let (code, out) = warm(&["--proxy", "ftp://x", list]);
    assert_eq!(code, Some(64), "{out}");
    // A proxy that is down: one line that says so, not one failure per path.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = format!("http://127.0.0.1:{port}");
    let (code, out) = warm(&["--proxy", &down, list]);
    assert_eq!(code, Some(1), "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains(&format!("cannot reach the proxy at {down}")),
        "{out}"
    );
}

/// The address of the admin listener that `proxy` logged.
async fn admin_of(proxy: &ProxyProcess) -> String {
    let log = proxy.log_with(&["admin on "]).await;
    let admin = log
        .split("admin on ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the admin address is logged");
    // 0.0.0.0:PORT: reach it on loopback.
    format!("http://127.0.0.1:{}", admin.rsplit(':').next().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_admin_port_beyond_loopback_needs_a_token_and_refuses_browsers() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    // Without a token, it does not start.
    let out = Command::new(crate::support::proxy_binary())
        .args(crate::support::proxy_args(&origin, &cache, "1g"))
        .args(["--admin-listen", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--admin-token-file"), "{stderr}");
    // A token file others can read is refused too.
    let token_file = dir.path().join("admin.token");
    std::fs::write(&token_file, "s3cret-admin-token\n").unwrap();
    let out = Command::new(crate::support::proxy_binary())
        .args(crate::support::proxy_args(&origin, &cache, "1g"))
        .args(["--admin-listen", "0.0.0.0:0", "--admin-token-file"])
        .arg(&token_file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("chmod 600"), "{stderr}");
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let proxy = crate::support::spawn_with(
        &origin,
        &cache,
        &[
            "--admin-listen",
            "0.0.0.0:0",
            "--admin-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let admin = admin_of(&proxy).await;
    let bearer = ("authorization", "Bearer s3cret-admin-token");
    let status =
        |path: &'static str, method: &'static str, headers: Vec<(&'static str, &'static str)>| {
            let url = format!("{admin}{path}");
            async move {
                fetch(method, &url, &headers, b"")
                    .await
                    .unwrap()
                    .status
                    .as_u16()
            }
        };
    assert_eq!(status("/entries", "GET", vec![]).await, 401);
    assert_eq!(status("/purge?prefix=/", "POST", vec![]).await, 401);
    assert_eq!(
        status("/entries", "GET", vec![("authorization", "Bearer wrong")]).await,
        401
    );
    assert_eq!(status("/entries", "GET", vec![bearer]).await, 200);
    assert_eq!(status("/metrics", "GET", vec![bearer]).await, 200);
    assert_eq!(
        status("/healthz", "GET", vec![]).await,
        200,
        "load balancers"
    );
    // A page in an admin's browser, token or not.
    let origin_header = ("origin", "http://evil.example");
    assert_eq!(
        status("/purge?prefix=/", "POST", vec![bearer, origin_header]).await,
        403
    );
    let log = proxy.log_with(&["admin on "]).await;
    assert!(!log.contains("s3cret-admin-token"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_fill_keeps_nothing_it_fetched() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let (proxy, admin) = start(dir.path(), &origin).await;
    let size: u64 = 4 << 20;
    // Two seconds of upstream transfer.
    let target = format!("/blob/{size}?seed=84&rate=2000000");
    let url = format!("http://{}{target}", proxy.addr);
    let reader = tokio::spawn(crate::support::fetch_owned(url.clone()));
    assert!(eventually(Duration::from_secs(10), || origin.sent(&target) > 0).await);
    let purged = fetch(
        "POST",
        &format!("{admin}/purge?prefix=/blob/{size}"),
        &[],
        b"",
    )
    .await
    .unwrap();
    let answer: serde_json::Value = serde_json::from_slice(&purged.body).unwrap();
    assert_eq!(answer["fills"], 1, "{answer}");
    assert_eq!(answer["purged"], 1, "{answer}");
    let first = reader.await.unwrap();
    assert!(
        first.body == expected(84, 0, size),
        "the reader got it whole"
    );
    // Nothing of it was stored: the next request fetches again.
    assert!(indexed(&admin, 0).await);
    assert_eq!(get(&url).await.cache(), "MISS");
    assert_eq!(origin.count(&target), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_forward_host_a_url_purge_covers_every_host() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let proxy = crate::support::spawn_with(
        &origin,
        &dir.path().join("cache"),
        &["--forward-host", "--admin-listen", "127.0.0.1:0"],
    );
    let admin = admin_of(&proxy).await;
    let url = format!("http://{}/blob/1000?seed=85", proxy.addr);
    for host in ["a.example", "b.example", "c.example"] {
        let got = fetch("GET", &url, &[("host", host)], b"").await.unwrap();
        assert_eq!(got.status, 200);
    }
    assert!(indexed(&admin, 3).await);
    let purge = |query: &'static str| {
        let url = format!("{admin}/purge?{query}");
        async move {
            let got = fetch("POST", &url, &[], b"").await.unwrap();
            serde_json::from_slice::<serde_json::Value>(&got.body).unwrap()
        }
    };
    assert_eq!(
        purge("url=/blob/1000%3Fseed%3D85&host=c.example").await["purged"],
        1
    );
    assert!(indexed(&admin, 2).await);
    assert_eq!(purge("url=/blob/1000%3Fseed%3D85").await["purged"], 2);
    assert!(indexed(&admin, 0).await);
}

#[test]
fn help_lists_the_subcommands_and_each_has_its_own() {
    let run = |args: &[&str]| {
        let out = Command::new(crate::support::proxy_binary())
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [&["--help"][..], &["help"]] {
        let (code, stdout, _) = run(args);
        assert_eq!(code, Some(0), "{args:?}");
        assert!(
            stdout.contains("warm") && stdout.contains("healthcheck"),
            "{stdout}"
        );
    }
    let (code, stdout, _) = run(&["healthcheck", "--help"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("HOST:PORT"), "{stdout}");
    let (code, stdout, _) = run(&["help", "warm"]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("--from-log"), "{stdout}");
    // The address is named when it does not answer.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, stderr) = run(&["healthcheck", &format!("127.0.0.1:{port}")]);
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/healthz")),
        "{stderr}"
    );
}

/// A free port on 127.0.0.1 (bound, then let go) for an in-process admin listener.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_proxies_in_one_process_count_apart() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let start = |name: &'static str| {
        let admin = format!("127.0.0.1:{}", free_port());
        let cache = dir.path().join(name);
        let origin_url = origin.url();
        let ca = origin.ca_file.clone();
        async move {
            let proxy =
                crate::support::Proxy::start(&origin_url, &ca, &cache, &["--admin-listen", &admin])
                    .await;
            (proxy, format!("http://{admin}"))
        }
    };
    let (a, admin_a) = start("a").await;
    let (_b, admin_b) = start("b").await;
    let url = a.url("/blob/100?seed=70");
    assert_eq!(get(&url).await.cache(), "MISS");
    assert!(
        eventually(Duration::from_secs(10), || cache_files(
            &dir.path().join("a")
        )
        .0 == 1)
        .await
    );
    let metrics = |admin: String| async move {
        String::from_utf8(get(&format!("{admin}/metrics")).await.body.to_vec()).unwrap()
    };
    let text_a = metrics(admin_a).await;
    let text_b = metrics(admin_b).await;
    let misses = "autodeploy_cache_requests_total{cache_status=\"MISS\"}";
    assert_eq!(sample(&text_a, misses), Some(1.0), "{text_a}");
    assert_eq!(sample(&text_b, misses), Some(0.0), "{text_b}");
    assert_eq!(
        sample(&text_b, "autodeploy_cache_upstream_requests_total"),
        Some(0.0)
    );
}

//! The shipped binary as a container would run it: a root holding nothing but the binary and
//! a CA file, the upstream given as the nginx container's `AUTO_DEPLOY=host:port`, logs on
//! stdout, and a graceful exit on SIGTERM that keeps what was cached.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::support::origin::expected;
use crate::support::{cache_files, eventually, get};

/// The static build from `make` (`AUTODEPLOY_CACHE_BIN`); cargo's own build otherwise, which
/// is dynamically linked and so runs outside the empty root.
fn binary() -> (PathBuf, bool) {
    match std::env::var_os("AUTODEPLOY_CACHE_BIN") {
        Some(path) => (PathBuf::from(path), true),
        None => (PathBuf::from(env!("CARGO_BIN_EXE_autodeploy-cache")), false),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_from_an_empty_root_and_stops_gracefully() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let (binary, is_static) = binary();
    let mut command = if is_static {
        std::fs::copy(&binary, root.join("autodeploy-cache")).unwrap();
        std::fs::copy(&origin.ca_file, root.join("ca.pem")).unwrap();
        let mut c = Command::new("chroot");
        c.arg(&root).arg("/autodeploy-cache");
        c.args(["--cache-dir", "/cache", "--upstream-ca", "/ca.pem"]);
        c
    } else {
        let mut c = Command::new(&binary);
        c.arg("--cache-dir").arg(root.join("cache"));
        c.arg("--upstream-ca").arg(&origin.ca_file);
        c
    };
    let mut child = command
        .args(["--listen", "127.0.0.1:0", "--shutdown-grace", "10s"])
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("AUTO_DEPLOY", format!("127.0.0.1:{}", origin.port))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Readiness: the start-up line names the bound address.
    let (addr, _) = crate::support::listening(&mut child);
    let url = format!("http://{addr}/blob/100000?seed=31");
    let first = get(&url).await;
    assert_eq!((first.status.as_u16(), first.cache()), (200, "MISS"));
    assert_eq!(first.body, expected(31, 0, 100000));
    let cache = root.join("cache");
    assert!(
        eventually(Duration::from_secs(10), || crate::support::cache_files(
            &cache
        )
        .0 == 1)
        .await
    );
    assert_eq!(get(&url).await.cache(), "HIT");

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    assert!(output.status.success(), "{:?}", output.status);
    let log = String::from_utf8(output.stdout).unwrap();
    assert!(
        log.contains("\"GET /blob/100000?seed=31 HTTP/1.1\" 200 100000"),
        "{log}"
    );
    assert!(
        log.lines().any(|l| l.ends_with(" MISS")) && log.lines().any(|l| l.ends_with(" HIT")),
        "{log}"
    );
    assert_eq!(
        crate::support::cache_files(&cache).0,
        1,
        "entries survive the shutdown"
    );
    assert_eq!(origin.count("/blob/100000?seed=31"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_boot_storm_backlog_and_open_entries_within_the_fd_limit() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let cache = dir.path().join("cache");
    // A 200-descriptor limit (hard, so the proxy cannot raise it): a quarter may hold entries.
    let proxy = crate::support::spawn_under(
        &["prlimit", "--nofile=200:200", "--"],
        &origin,
        &cache,
        "1g",
    );
    let port = proxy.addr.rsplit(':').next().unwrap().to_string();
    let ss = Command::new("ss")
        .args(["-ltnH", &format!("sport = :{port}")])
        .output()
        .unwrap();
    let line = String::from_utf8_lossy(&ss.stdout).into_owned();
    let backlog: u32 = line
        .split_whitespace()
        .nth(2)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("ss: {line:?}"));
    let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(backlog, somaxconn.min(4096), "listen backlog");

    let url = |i: usize| format!("http://{}/blob/100?seed={i}", proxy.addr);
    for i in 0..120 {
        assert_eq!(get(&url(i)).await.status, 200);
    }
    assert!(
        eventually(Duration::from_secs(10), || crate::support::cache_files(
            &cache
        )
        .0 == 120)
        .await
    );
    for i in 0..120 {
        assert_eq!(get(&url(i)).await.cache(), "HIT");
    }
    let fds = std::fs::read_dir(format!("/proc/{}/fd", proxy.child.id()))
        .unwrap()
        .count();
    assert!(fds < 100, "{fds} descriptors open under a limit of 200");
    assert_eq!(get(&url(7)).await.cache(), "HIT", "still serving");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_request_ends_only_that_request() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    // The release build (panic = "unwind" in its profile) with a fault injected on one path.
    let proxy = crate::support::spawn_under(
        &["env", "AUTODEPLOY_CACHE_TEST_PANIC_PATH=/boom"],
        &origin,
        &dir.path().join("cache"),
        "1g",
    );
    // A large transfer, slowed by the origin so that it is in flight during the panic.
    let size: u64 = 64 << 20;
    let big = format!(
        "http://{}/blob/{size}?seed=60&rate={}",
        proxy.addr,
        32 << 20
    );
    let transfer = tokio::spawn(crate::support::stream_check(big, 60));
    assert!(
        eventually(Duration::from_secs(10), || origin
            .sent(&format!("/blob/{size}?seed=60&rate={}", 32 << 20))
            > 0)
        .await
    );
    let boom = crate::support::fetch("GET", &format!("http://{}/boom", proxy.addr), &[], b"").await;
    assert!(
        boom.is_err(),
        "the panicking request got an answer: {boom:?}"
    );
    let done = transfer.await.unwrap().unwrap();
    assert!(done.correct && done.len == size, "{done:?}");
    // The panic held the index, variant and open-entry locks: lookups, fills, commits and
    // hits after it work as before (a poisoned lock would fail every one of them).
    let small = format!("http://{}/blob/10?seed=61", proxy.addr);
    assert_eq!(get(&small).await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), || cache_files(
            &dir.path().join("cache")
        )
        .0 >= 2)
        .await
    );
    assert_eq!(get(&small).await.cache(), "HIT");
    let log = proxy.log_with(&["fault injected"]).await;
    assert!(log.contains("fault injected"), "{log}");
    let mut proxy = proxy;
    assert!(proxy.running(), "the proxy exited: {log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn booleans_in_the_environment_read_as_operators_write_them() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    for (n, (value, insecure)) in [
        ("1", true),
        ("yes", true),
        ("on", true),
        ("TRUE", true),
        ("0", false),
        ("no", false),
        ("off", false),
    ]
    .into_iter()
    .enumerate()
    {
        let mut command = Command::new(crate::support::proxy_binary());
        command
            .args(["--listen", "127.0.0.1:0", "--upstream", &origin.url()])
            .arg("--cache-dir")
            .arg(dir.path().join(format!("cache{n}")))
            .env("AUTODEPLOY_CACHE_UPSTREAM_INSECURE", value);
        let proxy = crate::support::start_process(command);
        let log = proxy.stderr.lock().unwrap().clone();
        assert_eq!(
            log.contains("certificate is not verified"),
            insecure,
            "AUTODEPLOY_CACHE_UPSTREAM_INSECURE={value}: {log}"
        );
        // Without verification the origin's test certificate is accepted.
        let r = get(&format!("http://{}/blob/10?seed=70", proxy.addr)).await;
        assert_eq!(r.status == 200, insecure, "{value}: {}", r.status);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reopens_the_json_access_log_and_keeps_serving() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    let log_path = dir.path().join("access.log");
    let proxy = crate::support::spawn_with(
        &origin,
        &dir.path().join("cache"),
        &[
            "--access-log",
            log_path.to_str().unwrap(),
            "--log-format",
            "json",
        ],
    );
    let url = |seed: u32| format!("http://{}/blob/10?seed={seed}", proxy.addr);
    let lines = |path: &std::path::Path| -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each line is JSON"))
            .collect()
    };
    assert_eq!(get(&url(71)).await.status, 200);
    assert!(eventually(Duration::from_secs(5), || lines(&log_path).len() == 1).await);
    let first = &lines(&log_path)[0];
    assert_eq!(first["path"], "/blob/10?seed=71");
    assert_eq!(first["cache_status"], "MISS");
    assert!(first["time"].as_str().unwrap().ends_with('Z'));
    assert!(first["upstream_ms"].is_number(), "{first}");
    // logrotate moves the file away, then signals.
    let rotated = dir.path().join("access.log.1");
    std::fs::rename(&log_path, &rotated).unwrap();
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(proxy.child.id() as i32).unwrap(),
        rustix::process::Signal::HUP,
    )
    .unwrap();
    let log = proxy.log_with(&["SIGHUP: reopened the access log"]).await;
    assert!(log.contains("re-read the upstream CA"), "{log}");
    assert_eq!(get(&url(71)).await.cache(), "HIT");
    assert!(eventually(Duration::from_secs(5), || lines(&log_path).len() == 1).await);
    assert_eq!(lines(&log_path)[0]["cache_status"], "HIT");
    assert_eq!(lines(&rotated).len(), 1, "the old file keeps its line");
    let mut proxy = proxy;
    assert!(proxy.running(), "SIGHUP ended the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_and_cache_trouble_is_explained_once_with_the_fix() {
    let (dir, origin) = crate::support::origin_in_tempdir().await;
    // No --upstream-ca: the test VMCA is unknown to the public roots, as a migrating
    // nginx user's vCenter would be.
    let mut command = Command::new(crate::support::proxy_binary());
    command
        .args(["--listen", "127.0.0.1:0", "--upstream", &origin.url()])
        .arg("--cache-dir")
        .arg(dir.path().join("cache"));
    let proxy = crate::support::start_process(command);
    let log = proxy.log_with(&["is not usable yet"]).await;
    assert!(
        log.contains("UnknownIssuer") && log.contains("--upstream-ca FILE"),
        "the start-up check names the fix: {log}"
    );
    for seed in 0..3 {
        let r = get(&format!("http://{}/blob/10?seed={seed}", proxy.addr)).await;
        assert_eq!((r.status.as_u16(), r.cache()), (502, "MISS"));
    }
    let log = proxy.log_with(&["fetch failed"]).await;
    assert_eq!(
        log.matches("fetch failed").count(),
        1,
        "one line per cause, not per request: {log}"
    );
    assert!(origin.seen().is_empty(), "nothing was sent unverified");

    // A cache directory that is a file: a clear refusal at start.
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = Command::new(crate::support::proxy_binary())
        .args(["--listen", "127.0.0.1:0", "--upstream", &origin.url()])
        .arg("--cache-dir")
        .arg(&file)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(stderr.contains("is a file, not a directory"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn a_port_in_use_is_named() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(crate::support::proxy_binary())
        .args(["--listen", &addr, "--upstream", "https://127.0.0.1:1"])
        .arg("--cache-dir")
        .arg(tempfile::tempdir().unwrap().path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(74), "{stderr}");
    assert!(
        stderr.contains(&addr) && stderr.contains("in use"),
        "{stderr}"
    );
}

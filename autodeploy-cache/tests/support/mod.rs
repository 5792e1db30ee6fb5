//! Test support: the fake origin, the proxy started in-process on an ephemeral port, and an
//! HTTP client that checks bodies against the origin's generator as they stream.

#![allow(dead_code)]

pub mod origin;
pub mod raw_origin;
#[path = "../../../tests/support/test_ca.rs"]
pub mod test_ca;

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser as _;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt as _, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::oneshot;

/// An origin and an in-process proxy in front of it, in one temp dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub origin: origin::Origin,
    pub proxy: Proxy,
}

/// A temp directory and an origin whose CA file is in it, for tests that start their proxy
/// their own way.
pub async fn origin_in_tempdir() -> (tempfile::TempDir, origin::Origin) {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin::Origin::start(dir.path()).await;
    (dir, origin)
}

/// Starts an origin and a proxy with `flags`.
pub async fn setup(flags: &[&str]) -> Setup {
    let (dir, origin) = origin_in_tempdir().await;
    let proxy = Proxy::start(
        &origin.url(),
        &origin.ca_file,
        &dir.path().join("cache"),
        flags,
    )
    .await;
    Setup { dir, origin, proxy }
}

impl Setup {
    /// Waits (bounded) until `n` entry files are in the cache directory.
    pub async fn stored(&self, n: usize) -> bool {
        let cache = self.dir.path().join("cache");
        eventually(Duration::from_secs(10), || cache_files(&cache).0 == n).await
    }
}

/// A proxy running in this process.
pub struct Proxy {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), autodeploy_cache::Error>>,
}

impl Proxy {
    /// Starts the proxy with `flags` (plus `--upstream`, `--upstream-ca` and `--cache-dir`).
    pub async fn start(upstream: &str, ca_file: &Path, cache_dir: &Path, flags: &[&str]) -> Self {
        Self::start_with(config(upstream, ca_file, cache_dir, flags)).await
    }

    pub async fn start_with(config: autodeploy_cache::Config) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(autodeploy_cache::run(listener, config, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self, target: &str) -> String {
        format!("http://{}{target}", self.addr)
    }

    /// A GET of `target` with `headers`, read whole.
    pub async fn get(&self, target: &str, headers: &[(&str, &str)]) -> Fetched {
        fetch("GET", &self.url(target), headers, b"").await.unwrap()
    }

    /// Graceful shutdown; waits until `run` returns.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// The proxy's configuration from `flags` plus `--upstream`, `--upstream-ca` and
/// `--cache-dir`, for tests that then adjust what has no flag.
pub fn config(
    upstream: &str,
    ca_file: &Path,
    cache_dir: &Path,
    flags: &[&str],
) -> autodeploy_cache::Config {
    let mut args = vec![
        "autodeploy-cache".to_string(),
        "--upstream".into(),
        upstream.into(),
        "--upstream-ca".into(),
        ca_file.display().to_string(),
        "--cache-dir".into(),
        cache_dir.display().to_string(),
        "--shutdown-grace".into(),
        "5s".into(),
    ];
    args.extend(flags.iter().map(|s| s.to_string()));
    parse_config(args)
}

/// The configuration a command line makes (its first word the program's name).
pub fn parse_config<S: Into<std::ffi::OsString> + Clone>(
    args: impl IntoIterator<Item = S>,
) -> autodeploy_cache::Config {
    let args = autodeploy_cache::Args::try_parse_from(args).unwrap();
    autodeploy_cache::Config::from_args(args, None).unwrap()
}

/// A response read whole.
#[derive(Debug)]
pub struct Fetched {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Fetched {
    pub fn cache(&self) -> &str {
        self.headers
            .get("x-cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET (or another method) with extra headers; reads the whole body.
pub async fn fetch(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Fetched, String> {
    let mut request = Request::builder().method(method).uri(url);
    for (n, v) in headers {
        request = request.header(*n, *v);
    }
    let request = request
        .body(Full::new(Bytes::copy_from_slice(body)))
        .unwrap();
    let response = tokio::time::timeout(Duration::from_secs(60), client().request(request))
        .await
        .map_err(|_| "timeout".to_string())?
        .map_err(|e| e.to_string())?;
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(Duration::from_secs(120), body.collect())
        .await
        .map_err(|_| "body timeout".to_string())?
        .map_err(|e| format!("body: {e}"))?
        .to_bytes();
    Ok(Fetched {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

pub async fn get(url: &str) -> Fetched {
    fetch("GET", url, &[], b"").await.unwrap()
}

/// What a streaming GET saw: status, cache status, when the first body byte came, and
/// whether every byte matched the generator.
#[derive(Debug)]
pub struct Streamed {
    pub status: StatusCode,
    pub cache: String,
    pub first_byte: Option<Instant>,
    pub len: u64,
    pub correct: bool,
}

/// GETs `url` and compares the body with `seed`'s bytes as it arrives, without keeping it.
pub async fn stream_check(url: String, seed: u64) -> Result<Streamed, String> {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let (head, mut body) = match client.get(url.parse().unwrap()).await {
        Ok(response) => response.into_parts(),
        Err(e) => return Err(e.to_string()),
    };
    let cache = head.headers.get("x-cache-status").map(|v| v.as_bytes());
    let cache = String::from_utf8_lossy(cache.unwrap_or_default()).into_owned();
    let mut len = 0u64;
    let mut correct = true;
    let mut first_byte = None;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("body aborted at {len}: {e}"))?;
        if let Some(data) = frame.data_ref() {
            first_byte.get_or_insert_with(Instant::now);
            for (i, b) in data.iter().enumerate() {
                if *b != origin::byte_at(seed, len + i as u64) {
                    correct = false;
                }
            }
            len += data.len() as u64;
        }
    }
    Ok(Streamed {
        status: head.status,
        cache,
        first_byte,
        len,
        correct,
    })
}

/// Sends `request` as bytes on a new connection and reads until the proxy closes it (or 10 s
/// pass): for requests no HTTP client library would send.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// Polls `check` until it holds, for at most `within`.
pub async fn eventually(within: Duration, mut check: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + within;
    while Instant::now() < until {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// Whether `url` answers 200 within `within`, asked every 50 ms.
pub async fn served_within(within: Duration, url: &str) -> bool {
    tokio::time::timeout(within, async {
        while !fetch("GET", url, &[], b"")
            .await
            .is_ok_and(|r| r.status == 200)
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .is_ok()
}

/// Files under the cache directory, `tmp/` excluded, and their total size.
pub fn cache_files(dir: &Path) -> (usize, u64) {
    let mut count = 0;
    let mut size = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                if path.file_name() != Some("tmp".as_ref()) {
                    stack.push(path);
                }
            } else {
                count += 1;
                size += entry.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
    }
    (count, size)
}

/// Files in the cache's `tmp/`.
pub fn temp_files(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("tmp"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// `get` for spawned tasks.
pub async fn fetch_owned(url: String) -> Fetched {
    get(&url).await
}

/// Waits until a proxy started as a child process says where it listens; returns that
/// address and its stderr so far, which keeps being collected (and drained, so the child
/// never blocks on a full pipe). Kills the child and panics if it exits first.
pub fn listening(
    child: &mut std::process::Child,
) -> (String, std::sync::Arc<std::sync::Mutex<String>>) {
    use std::io::BufRead as _;
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr is piped"));
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let mut line = String::new();
    let addr = loop {
        line.clear();
        if stderr.read_line(&mut line).unwrap_or(0) == 0 {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "the proxy exited before listening ({status:?}): {}",
                log.lock().unwrap()
            );
        }
        log.lock().unwrap().push_str(&line);
        if let Some(rest) = line.split("listening on ").nth(1) {
            break rest.split(',').next().unwrap_or_default().to_string();
        }
    };
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            sink.lock().unwrap().push_str(&(line + "\n"));
        }
    });
    (addr, log)
}

/// The proxy binary: the static build from `make` (`AUTODEPLOY_CACHE_BIN`), else cargo's.
pub fn proxy_binary() -> std::path::PathBuf {
    std::env::var_os("AUTODEPLOY_CACHE_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| env!("CARGO_BIN_EXE_autodeploy-cache").into())
}

/// The proxy binary as a child process; killed when dropped, so that a failed assertion
/// does not leave it running (and holding the binary busy for the next build).
pub struct ProxyProcess {
    pub child: std::process::Child,
    pub addr: String,
    pub stderr: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ProxyProcess {
    /// The proxy's stderr once it holds every one of `lines` (waiting at most 5 s: the log is
    /// collected by another thread, and a line may trail the response that caused it).
    pub async fn log_with(&self, lines: &[&str]) -> String {
        let has_all = || {
            let log = self.stderr.lock().unwrap();
            lines.iter().all(|l| log.contains(l))
        };
        eventually(Duration::from_secs(5), has_all).await;
        self.stderr.lock().unwrap().clone()
    }

    /// Whether the process is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, and waits for the process to be gone.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxy binary's arguments for `origin` and `cache`: an ephemeral port on 127.0.0.1.
pub fn proxy_args(
    origin: &origin::Origin,
    cache: &Path,
    max_size: &str,
) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = ["--listen", "127.0.0.1:0", "--max-size", max_size]
        .iter()
        .map(Into::into)
        .collect();
    args.push("--upstream".into());
    args.push(origin.url().into());
    args.push("--upstream-ca".into());
    args.push(origin.ca_file.clone().into());
    args.push("--cache-dir".into());
    args.push(cache.into());
    args
}

/// Runs `command` (which ends in the proxy binary and its arguments) with stderr collected,
/// until it listens.
pub fn start_process(mut command: std::process::Command) -> ProxyProcess {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (addr, stderr) = listening(&mut child);
    ProxyProcess {
        child,
        addr,
        stderr,
    }
}

/// Runs the proxy binary on `cache` with `--max-size max_size`.
pub fn spawn(origin: &origin::Origin, cache: &Path, max_size: &str) -> ProxyProcess {
    spawn_under(&[], origin, cache, max_size)
}

/// [`spawn`] with `extra` arguments after the usual ones.
pub fn spawn_with(origin: &origin::Origin, cache: &Path, extra: &[&str]) -> ProxyProcess {
    let mut command = std::process::Command::new(proxy_binary());
    command.args(proxy_args(origin, cache, "1g")).args(extra);
    start_process(command)
}

/// [`spawn`] under a wrapper command that execs the binary (`prlimit --nofile=N --`).
pub fn spawn_under(
    wrapper: &[&str],
    origin: &origin::Origin,
    cache: &Path,
    max_size: &str,
) -> ProxyProcess {
    let mut command = match wrapper.split_first() {
        Some((program, args)) => {
            let mut c = std::process::Command::new(program);
            c.args(args).arg(proxy_binary());
            c
        }
        None => std::process::Command::new(proxy_binary()),
    };
    command.args(proxy_args(origin, cache, max_size));
    start_process(command)
}

/// Runs the proxy binary as [`spawn`] does, after `mount_script` (sh) has prepared its cache
/// directory inside a private mount namespace.
pub fn contained(
    origin: &origin::Origin,
    cache: &Path,
    mount_script: &str,
    max_size: &str,
) -> ProxyProcess {
    std::fs::create_dir_all(cache).unwrap();
    let mut command = std::process::Command::new("unshare");
    // The binary and its arguments reach sh as $0 and $@: no quoting to get wrong.
    command
        .args(["--mount", "--propagation", "private", "/bin/sh", "-c"])
        .arg(format!("{mount_script} && exec \"$0\" \"$@\""))
        .arg(proxy_binary())
        .args(proxy_args(origin, cache, max_size));
    start_process(command)
}

/// An origin and a proxy whose cache directory is a tmpfs of `size` in the proxy's own mount
/// namespace, so that a full disk is cheap to make and its pages are not counted in the
/// proxy's RSS. The temp dir holding both lives as long as the first element.
pub async fn on_tmpfs(
    size: &str,
    max_size: &str,
) -> (
    tempfile::TempDir,
    origin::Origin,
    std::path::PathBuf,
    ProxyProcess,
) {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin::Origin::start(dir.path()).await;
    let cache = dir.path().join("cache");
    let proxy = contained(
        &origin,
        &cache,
        &format!("mount -t tmpfs -o size={size} tmpfs '{}'", cache.display()),
        max_size,
    );
    (dir, origin, cache, proxy)
}

/// The proxy's own memory: resident pages that are not file pages it maps (`RssAnon`). Hits
/// are sent from mappings of the cache files, which `VmRSS` and `VmHWM` count as well: the
/// page cache that positional reads copied from before, shared, clean and reclaimable.
pub fn private_kib(pid: u32) -> u64 {
    proc_status_kib(pid, "RssAnon")
}

/// The highest [`private_kib`] of a process, sampled every 10 ms from a thread of its own
/// until [`PrivatePeak::stop`] (the kernel keeps a peak of `VmRSS` only).
pub struct PrivatePeak {
    running: std::sync::Arc<std::sync::atomic::AtomicBool>,
    sampler: std::thread::JoinHandle<u64>,
}

impl PrivatePeak {
    /// Starts sampling `pid`.
    pub fn start(pid: u32) -> PrivatePeak {
        let running = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        let sampling = running.clone();
        let sampler = std::thread::spawn(move || {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(private_kib(pid));
                std::thread::sleep(Duration::from_millis(10));
            }
            peak.max(private_kib(pid))
        });
        PrivatePeak { running, sampler }
    }

    /// The peak seen, in KiB.
    pub fn stop(self) -> u64 {
        self.running
            .store(false, std::sync::atomic::Ordering::Relaxed);
        self.sampler.join().unwrap()
    }
}

/// A `/proc/<pid>/status` figure in KiB (`VmRSS`, `RssAnon`).
fn proc_status_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Held by the tests that measure the proxy's memory under load, so that they do not run
/// at the same time: on two cores each would change how much the other's phases get done,
/// and with it what they measure.
pub async fn measuring_alone() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// How many TCP sockets on this machine are in `state` (as `ss` names it: `established`,
/// `close-wait`...) with `filter` (e.g. `sport = :5100`): what a test polls instead of
/// sleeping while connections open or close.
pub fn sockets(state: &str, filter: &str) -> usize {
    let out = std::process::Command::new("ss")
        .args(["-tnH", "state", state, filter])
        .output()
        .expect("ss (iproute2)");
    String::from_utf8_lossy(&out.stdout).lines().count()
}

/// The port of `addr` (`127.0.0.1:5100`).
pub fn port_of(addr: &str) -> String {
    addr.rsplit(':').next().unwrap_or_default().to_string()
}

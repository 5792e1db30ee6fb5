//! `autodeploy-cache warm`: fetches a list of paths through a running proxy, so that a planned
//! mass reboot finds the cache full (warm it from one host's boot first). Paths come from a
//! file, standard input, or an earlier access log (`--from-log`, text or JSON); each is
//! fetched once, a few at a time, with a progress bar on a terminal and plain lines
//! otherwise, then a summary. Exit 0 when nothing failed, 1 when something did, 64 for a bad
//! command line or input.

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Parser;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Fetch paths through a running autodeploy-cache so that they are cached.
#[derive(Debug, Parser)]
#[command(name = "autodeploy-cache warm", version)]
pub struct WarmArgs {
    /// The proxy to warm, e.g. http://proxy.lab:5100
    #[arg(long, default_value = "http://127.0.0.1:5100")]
    pub proxy: String,
    /// A file of paths, one per line (`-` or nothing: standard input)
    pub paths: Option<PathBuf>,
    /// Take the paths of successful GETs from an access log of the proxy (text or JSON)
    #[arg(long, value_name = "LOG", conflicts_with = "paths")]
    pub from_log: Option<PathBuf>,
    /// Fetches at once
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
    /// Give up on one fetch after this long, e.g. 10m
    #[arg(long, default_value = "30m")]
    pub timeout: String,
}

/// How one path went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It was a hit already.
    Cached,
    /// It was fetched into the cache (or passed through).
    Fetched(String),
    /// It failed: status or error.
    Failed(String),
    /// The proxy refused the connection (it stopped): the run ends.
    Unreachable,
    /// Not tried, the proxy having stopped answering.
    NotTried,
}

/// Runs `warm`; the exit code.
pub fn main(args: Vec<String>) -> u8 {
    let args = match WarmArgs::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { 64 } else { 0 };
        }
    };
    let paths = match read_paths(&args) {
        Ok(paths) if !paths.is_empty() => paths,
        Ok(_) => {
            eprintln!("autodeploy-cache warm: no paths to fetch (one /path per line)");
            return 64;
        }
        Err(e) => {
            eprintln!("autodeploy-cache warm: {e}");
            return 64;
        }
    };
    let timeout = match humantime::parse_duration(&args.timeout) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("autodeploy-cache warm: --timeout {:?}: {e}", args.timeout);
            return 64;
        }
    };
    let base = args.proxy.trim_end_matches('/').to_string();
    if base
        .parse::<http::Uri>()
        .map_or(true, |u| u.scheme_str() != Some("http"))
    {
        eprintln!(
            "autodeploy-cache warm: --proxy {base:?}: expected http://host:port (the proxy's plain-HTTP listener)"
        );
        return 64;
    }
    let Ok(runtime) = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    else {
        eprintln!("autodeploy-cache warm: cannot start the runtime");
        return 70;
    };
    // A proxy that is down fails every path the same way: said once, not once per path.
    if let Err(why) = runtime.block_on(reachable(&base)) {
        eprintln!(
            "autodeploy-cache warm: cannot reach the proxy at {base}: {why}; is it running, and is --proxy its listen address?"
        );
        return 1;
    }
    let outcomes = runtime.block_on(fetch_all(&base, &paths, args.concurrency, timeout));
    if outcomes.contains(&Outcome::NotTried) {
        eprintln!(
            "autodeploy-cache warm: the proxy at {base} stopped accepting connections; the paths after it were not tried"
        );
    }
    let cached = outcomes.iter().filter(|o| **o == Outcome::Cached).count();
    let fetched = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Fetched(_)))
        .count();
    let failed = outcomes.len() - cached - fetched;
    eprintln!(
        "autodeploy-cache warm: {} paths: {cached} already cached, {fetched} fetched, {failed} failed",
        outcomes.len()
    );
    u8::from(failed > 0)
}

/// The paths to fetch, in order, each once.
fn read_paths(args: &WarmArgs) -> Result<Vec<String>, String> {
    let (lines, from_log): (Vec<String>, bool) = match (&args.from_log, &args.paths) {
        (Some(log), _) => (read_lines(Some(log))?, true),
        (None, path) => (read_lines(path.as_ref())?, false),
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in lines {
        let path = if from_log {
            path_from_log_line(&line)
        } else {
            let line = line.trim();
            (line.starts_with('/')).then(|| line.to_string())
        };
        if let Some(path) = path
            && seen.insert(path.clone())
        {
            out.push(path);
        }
    }
    Ok(out)
}

fn read_lines(path: Option<&PathBuf>) -> Result<Vec<String>, String> {
    let read = |r: &mut dyn std::io::BufRead| r.lines().collect::<Result<Vec<_>, _>>();
    match path.filter(|p| p.as_os_str() != "-") {
        Some(p) => std::fs::File::open(p)
            .map(std::io::BufReader::new)
            .and_then(|mut r| read(&mut r))
            .map_err(|e| format!("{}: {e}", p.display())),
        None => read(&mut std::io::stdin().lock()).map_err(|e| format!("standard input: {e}")),
    }
}

/// The path of a successful GET in one access-log line (text or JSON), if it is one. Both
/// forms pass the same check: a log line is data anyone who reached the proxy wrote, so a
/// path that does not start with `/` (`@127.0.0.1:9539/x`, which a URL parser would read as
/// another host) is never fetched.
pub fn path_from_log_line(line: &str) -> Option<String> {
    let (method, path, status) = if line.trim_start().starts_with('{') {
        let v: serde_json::Value = serde_json::from_str(line).ok()?;
        (
            v["method"].as_str()?.to_string(),
            v["path"].as_str()?.to_string(),
            u16::try_from(v["status"].as_u64()?).ok()?,
        )
    } else {
        // time client "GET /path HTTP/1.1" status bytes duration cache
        let (_, rest) = line.split_once('"')?;
        let (request, after) = rest.split_once('"')?;
        let mut parts = request.split(' ');
        let (method, path) = (parts.next()?, parts.next()?);
        let status: u16 = after.split_whitespace().next()?.parse().ok()?;
        (method.to_string(), path.to_string(), status)
    };
    (method == "GET" && path.starts_with('/') && (200..300).contains(&status)).then_some(path)
}

/// Whether a connection to the proxy at `base` can be opened.
async fn reachable(base: &str) -> Result<(), String> {
    let uri: http::Uri = base.parse().map_err(|e| format!("{e}"))?;
    let authority = uri.authority().ok_or("no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let connect = tokio::net::TcpStream::connect((authority.host(), port));
    match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no answer in 5 s".into()),
    }
}

async fn fetch_all(
    base: &str,
    paths: &[String],
    concurrency: u16,
    timeout: Duration,
) -> Vec<Outcome> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(paths.len() as u64);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {elapsed} {msg}")
        {
            bar.set_style(style);
        }
        bar
    });
    let limit = Arc::new(tokio::sync::Semaphore::new(usize::from(concurrency)));
    // Set at the first connection the proxy refuses: the rest are not tried.
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for path in paths {
        let (client, limit, url) = (client.clone(), limit.clone(), format!("{base}{path}"));
        let (bar, path, gone) = (bar.clone(), path.clone(), gone.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            if gone.load(std::sync::atomic::Ordering::SeqCst) {
                return Outcome::NotTried;
            }
            let outcome = match tokio::time::timeout(timeout, fetch_one(&client, &url)).await {
                Ok(outcome) => outcome,
                Err(_) => Outcome::Failed("timed out".into()),
            };
            if outcome == Outcome::Unreachable {
                gone.store(true, std::sync::atomic::Ordering::SeqCst);
                return Outcome::NotTried;
            }
            let word = match &outcome {
                Outcome::Cached => "cached ".to_string(),
                Outcome::Fetched(status) => format!("fetched ({status})"),
                Outcome::Failed(why) => format!("FAILED ({why})"),
                Outcome::Unreachable | Outcome::NotTried => return Outcome::NotTried,
            };
            match &bar {
                Some(bar) => {
                    bar.inc(1);
                    if matches!(outcome, Outcome::Failed(_)) {
                        bar.println(format!("{word} {path}"));
                    }
                }
                None => eprintln!("autodeploy-cache warm: {word} {path}"),
            }
            outcome
        }));
    }
    let mut out = Vec::new();
    for task in tasks {
        out.push(
            task.await
                .unwrap_or_else(|e| Outcome::Failed(format!("internal: {e}"))),
        );
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    out
}

async fn fetch_one(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>,
    url: &str,
) -> Outcome {
    let Ok(uri) = url.parse::<http::Uri>() else {
        return Outcome::Failed("not a valid URL".into());
    };
    let response = match client.get(uri).await {
        Ok(r) => r,
        Err(e) if e.is_connect() => return Outcome::Unreachable,
        Err(e) => return Outcome::Failed(crate::trouble::chain(&e)),
    };
    let status = response.status();
    let cache = response
        .headers()
        .get("x-cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    // Read to the end: a fill only lands in the cache whole.
    let mut body = response.into_body();
    while let Some(frame) = body.frame().await {
        if let Err(e) = frame {
            return Outcome::Failed(format!("body: {e}"));
        }
    }
    if !status.is_success() {
        return Outcome::Failed(format!("HTTP {}", status.as_u16()));
    }
    if cache == "HIT" {
        Outcome::Cached
    } else {
        Outcome::Fetched(if cache.is_empty() {
            "no X-Cache-Status".into()
        } else {
            cache
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_come_from_both_log_formats() {
        let text =
            "2026-11-29T23:59:49.123Z 10.0.0.7 \"GET /vmw/rbd/tramp HTTP/1.1\" 200 12 3ms HIT";
        assert_eq!(path_from_log_line(text).as_deref(), Some("/vmw/rbd/tramp"));
        let failed = "2026-11-29T23:59:49.123Z 10.0.0.7 \"GET /x HTTP/1.1\" 404 0 3ms MISS";
        assert_eq!(path_from_log_line(failed), None);
        let post = "2026-11-29T23:59:49.123Z 10.0.0.7 \"POST /y HTTP/1.1\" 200 0 3ms BYPASS";
        assert_eq!(path_from_log_line(post), None);
        let json = r#"{"method":"GET","path":"/a?b=1","status":200,"cache_status":"MISS"}"#;
        assert_eq!(path_from_log_line(json).as_deref(), Some("/a?b=1"));
        assert_eq!(path_from_log_line("garbage"), None);
        for hostile in [
            r#"{"method":"GET","path":"@127.0.0.1:9539/x","status":200}"#,
            r#"{"method":"GET","path":"http://evil.example/x","status":200}"#,
            r#"{"method":"GET","path":"/a","status":101}"#,
        ] {
            assert_eq!(path_from_log_line(hostile), None, "{hostile}");
        }
    }
}

//! `autodeploy-cache healthcheck URL|HOST:PORT`: exit 0 when the admin listener's `/healthz`
//! answers 200, 1 otherwise, for a container's HEALTHCHECK in an image with nothing else in it.

use std::time::Duration;

/// What `healthcheck --help` prints.
pub const USAGE: &str = "\
Usage: autodeploy-cache healthcheck URL|HOST:PORT

Exits 0 when the admin listener answers 200 at URL (HOST:PORT means http://HOST:PORT/healthz),
1 when it does not, 64 when the address cannot be read.

Examples:
  autodeploy-cache healthcheck 127.0.0.1:5101
  autodeploy-cache healthcheck http://127.0.0.1:5101/healthz
";

/// The URL to ask: a URL as given (`/healthz` when it has no path), or `HOST:PORT`'s
/// `/healthz`.
pub fn target(arg: &str) -> Result<http::Uri, String> {
    let arg = arg.trim();
    let url = if arg.contains("://") {
        arg.to_string()
    } else {
        format!("http://{arg}/healthz")
    };
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{arg:?} is not a URL or HOST:PORT ({e})"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err(format!(
            "{arg:?}: give http://HOST:PORT/healthz or HOST:PORT (the admin listener speaks plain HTTP)"
        ));
    }
    if uri.path() == "/" && !url.ends_with('/') || uri.path().is_empty() {
        return format!("{url}/healthz").parse().map_err(|e| format!("{e}"));
    }
    Ok(uri)
}

/// Runs the check with `args` (after `healthcheck`); the exit code.
pub fn main(args: &[String]) -> u8 {
    match args.first().map(String::as_str) {
        Some("-h" | "--help" | "help") => {
            print!("{USAGE}");
            return 0;
        }
        None => {
            eprint!("{USAGE}");
            return 64;
        }
        _ => {}
    }
    let uri = match target(&args[0]) {
        Ok(uri) => uri,
        Err(why) => {
            eprintln!("autodeploy-cache healthcheck: {why}");
            return 64;
        }
    };
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return 1;
    };
    runtime.block_on(async {
        let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http();
        match tokio::time::timeout(Duration::from_secs(5), client.get(uri.clone())).await {
            Ok(Ok(response)) if response.status() == http::StatusCode::OK => 0,
            Ok(Ok(response)) => {
                eprintln!(
                    "unhealthy: {uri} answered HTTP {}",
                    response.status().as_u16()
                );
                1
            }
            Ok(Err(e)) => {
                eprintln!("unhealthy: {uri}: {}", crate::trouble::chain(&e));
                1
            }
            Err(_) => {
                eprintln!("unhealthy: {uri} gave no answer in 5 s");
                1
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_as_operators_write_them() {
        let url = |a: &str| target(a).map(|u| u.to_string());
        for (written, asked) in [
            ("127.0.0.1:5101", "http://127.0.0.1:5101/healthz"),
            ("localhost:5101", "http://localhost:5101/healthz"),
            ("http://127.0.0.1:5101", "http://127.0.0.1:5101/healthz"),
            (
                "http://127.0.0.1:5101/healthz",
                "http://127.0.0.1:5101/healthz",
            ),
        ] {
            assert_eq!(url(written).unwrap(), asked, "{written}");
        }
        assert!(
            url("https://x:1/healthz")
                .unwrap_err()
                .contains("plain HTTP")
        );
        assert!(url("not an address").is_err());
    }
}

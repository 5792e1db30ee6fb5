//! The `autodeploy-cache` binary: parse flags, bind, serve until SIGTERM or SIGINT; SIGHUP
//! reloads.

use std::process::ExitCode;

use autodeploy_cache::{Args, Config};
use clap::Parser as _;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("warm") => return ExitCode::from(autodeploy_cache::warm::main(argv[1..].to_vec())),
        Some("healthcheck") => return ExitCode::from(healthcheck(argv.get(2))),
        _ => {}
    }
    let args = Args::parse();
    let config = match Config::from_args(args, std::env::var("AUTO_DEPLOY").ok()) {
        Ok(mut config) => {
            // The panic-isolation test's fault injection; unset in any real deployment.
            config.test_panic_path = std::env::var("AUTODEPLOY_CACHE_TEST_PANIC_PATH").ok();
            config
        }
        Err(e) => {
            eprintln!("autodeploy-cache: {e}");
            return ExitCode::from(64);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("autodeploy-cache: cannot start the runtime: {e}");
            return ExitCode::from(70);
        }
    };
    raise_fd_limit();
    let result = runtime.block_on(async {
        let listener = autodeploy_cache::server::bind(config.listen)?;
        let (hup, reload) = tokio::sync::mpsc::channel(1);
        tokio::spawn(forward_hangups(hup));
        autodeploy_cache::serve(listener, config, shutdown_signal(), reload).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("autodeploy-cache: {e}");
            ExitCode::from(match e {
                autodeploy_cache::Error::Config(_) => 64,
                _ => 74,
            })
        }
    }
}

/// Raises the soft file-descriptor limit to the hard one, as nginx's `worker_rlimit_nofile`
/// is usually set: every connection, fill and open entry costs one.
fn raise_fd_limit() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
}

/// `autodeploy-cache healthcheck URL`: 0 when URL answers 200, 1 otherwise; for a
/// container's HEALTHCHECK in an image with nothing else in it.
fn healthcheck(url: Option<&String>) -> u8 {
    let Some(url) = url.and_then(|u| u.parse::<http::Uri>().ok()) else {
        eprintln!("usage: autodeploy-cache healthcheck http://127.0.0.1:5101/healthz");
        return 64;
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
        match tokio::time::timeout(std::time::Duration::from_secs(5), client.get(url)).await {
            Ok(Ok(response)) if response.status() == http::StatusCode::OK => 0,
            Ok(Ok(response)) => {
                eprintln!("unhealthy: HTTP {}", response.status().as_u16());
                1
            }
            Ok(Err(e)) => {
                eprintln!("unhealthy: {e}");
                1
            }
            Err(_) => {
                eprintln!("unhealthy: no answer in 5 s");
                1
            }
        }
    })
}

/// SIGHUP (nginx's reload habit) reloads what can change without a restart; it never ends
/// the process, whose default action it would otherwise be.
async fn forward_hangups(reload: tokio::sync::mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        return;
    };
    while hangups.recv().await.is_some() {
        let _ = reload.try_send(());
    }
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

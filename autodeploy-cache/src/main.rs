//! The `autodeploy-cache` binary: parse flags, bind, serve until SIGTERM or SIGINT; SIGHUP
//! reloads.

use std::process::ExitCode;

use autodeploy_cache::{Args, Config};
use clap::Parser as _;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("warm") => return ExitCode::from(autodeploy_cache::warm::main(argv[1..].to_vec())),
        Some("healthcheck") => {
            return ExitCode::from(autodeploy_cache::healthcheck::main(&argv[2..]));
        }
        Some("help") => {
            return match argv.get(2).map(String::as_str) {
                Some("warm") => ExitCode::from(autodeploy_cache::warm::main(vec![
                    "warm".into(),
                    "--help".into(),
                ])),
                Some("healthcheck") => {
                    ExitCode::from(autodeploy_cache::healthcheck::main(&["--help".into()]))
                }
                _ => {
                    use clap::CommandFactory as _;
                    let _ = Args::command().print_help();
                    ExitCode::SUCCESS
                }
            };
        }
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

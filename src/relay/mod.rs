//! `esxi-tweet serve`: a relay that turns Alertmanager and Grafana webhooks (and plain texts)
//! into posts, within X's limits, for DevOps teams whose alerting sends only webhooks.
//!
//! - [`alerts`]: the webhook payloads;
//! - [`text`]: what a post says, always within 280 weighted characters;
//! - [`spool`]: accepted webhooks and the relay's state, on disk, crash-safe;
//! - [`worker`]: the single poster (budget, 429, digests, threads, duplicates);
//! - [`http`]: the listener (bearer token, limits, `/healthz`, `/metrics`);
//! - [`log`], [`metrics`]: what operators see.
//!
//! It runs on a Linux box or in a container next to Alertmanager, not on ESXi.

pub mod alerts;
pub mod http;
pub mod log;
pub mod metrics;
pub mod spool;
pub mod text;
pub mod worker;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::ApiVersion;
use crate::credentials::{Credentials, Secret};
use crate::error::Error;
use crate::post::Sender;

/// How the relay is set up (from `esxi-tweet serve`'s flags).
pub struct Options {
    /// Address to listen on.
    pub listen: String,
    /// The bearer token webhooks must carry; `None` only on loopback.
    pub token: Option<Secret>,
    /// The spool and state directory.
    pub spool_dir: PathBuf,
    /// How alert groups read.
    pub template: text::Template,
    /// The local posting budget.
    pub budget: worker::Budget,
    /// Largest request body accepted.
    pub max_body: usize,
    /// JSON log lines.
    pub json_logs: bool,
}

/// The X account and API the relay posts with.
pub struct Account {
    /// The four credentials.
    pub credentials: Credentials,
    /// API base URL.
    pub api_base: String,
    /// API version.
    pub version: ApiVersion,
    /// The HTTPS client.
    pub sender: Box<dyn Sender + Send>,
}

/// Runs the relay until SIGTERM or SIGINT; the post in flight is finished first, and what
/// waits stays spooled for the next start.
pub fn run(options: Options, account: Account) -> Result<(), Error> {
    let log = log::Logger {
        json: options.json_logs,
    };
    let listener = TcpListener::bind(&options.listen).map_err(|e| {
        Error::Config(format!(
            "cannot listen on {}: {e}; pick another --listen address",
            options.listen
        ))
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listener: {e}")))?;
    if options.token.is_none() && !address.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "--listen {address} is reachable from other hosts: give a --token-file so that only your Alertmanager can post"
        )));
    }
    let spool = Arc::new(spool::Spool::open(&options.spool_dir).map_err(|e| {
        Error::Config(format!(
            "cannot use spool directory {}: {e}; pass --spool DIR",
            options.spool_dir.display()
        ))
    })?);
    let state_file = spool::StateFile::new(&options.spool_dir);
    let metrics = Arc::new(metrics::Metrics::new());
    let wake = Arc::new(worker::Wake::default());
    let shutdown = Arc::new(AtomicBool::new(false));
    watch_signals(&shutdown, &wake, address)?;

    let worker = worker::Worker {
        spool: spool.clone(),
        state_file,
        template: options.template,
        budget: options.budget,
        credentials: account.credentials,
        api_base: account.api_base,
        version: account.version,
        sender: account.sender,
        log,
        metrics: metrics.clone(),
        wake: wake.clone(),
        shutdown: shutdown.clone(),
    };
    let worker = std::thread::Builder::new()
        .name("poster".into())
        .spawn(move || worker.run())
        .map_err(|e| Error::Internal(format!("cannot start the worker: {e}")))?;

    log.event(
        "listening",
        &[
            ("address", json!(address.to_string())),
            ("spool", json!(options.spool_dir.display().to_string())),
            ("waiting", json!(spool.len())),
            (
                "budget",
                json!(format!(
                    "{}/{}",
                    options.budget.posts,
                    humantime::format_duration(options.budget.period)
                )),
            ),
        ],
    );
    let server = Arc::new(http::Server {
        token: options.token,
        max_body: options.max_body,
        spool,
        metrics,
        wake: wake.clone(),
        shutdown: shutdown.clone(),
        log,
        active: AtomicUsize::new(0),
    });
    for stream in listener.incoming() {
        if shutdown.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        http::accept(&server, stream);
    }
    log.event(
        "stopping",
        &[("note", json!("finishing the post in flight"))],
    );
    // Requests being read get their answer; none is cut off after its entry was spooled.
    let started = Instant::now();
    while server.active.load(Ordering::SeqCst) > 0 && started.elapsed() < http::REQUEST_DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    wake.notify();
    let left = worker
        .join()
        .map_err(|_| Error::Internal("the worker stopped unexpectedly".into()))??;
    log.event("stopped", &[("spooled", json!(left))]);
    Ok(())
}

/// SIGTERM and SIGINT set `shutdown`, wake the worker, and unblock the listener.
fn watch_signals(
    shutdown: &Arc<AtomicBool>,
    wake: &Arc<worker::Wake>,
    address: std::net::SocketAddr,
) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
    let (shutdown, wake) = (shutdown.clone(), wake.clone());
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                shutdown.store(true, Ordering::SeqCst);
                wake.notify();
                // The accept loop sees the flag on its next connection: this one.
                let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
            }
        })
        .map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
    Ok(())
}

//! `esxi-tweet serve`: a relay that turns Alertmanager and Grafana webhooks (and plain texts)
//! into posts, within X's limits, for DevOps teams whose alerting sends only webhooks.
//!
//! - [`alerts`]: the webhook payloads, kept small;
//! - [`text`], [`defang`]: what a post says, always within 280 weighted characters, with no
//!   link, mention or hashtag an alert put there;
//! - [`spool`], [`state`]: accepted webhooks and the relay's memory, on disk, crash-safe;
//! - [`worker`]: the single poster (budget, X's limits, digests, threads, settling);
//! - [`http`]: the listener (bearer token, limits, `/healthz`, `/metrics`);
//! - [`log`], [`metrics`]: what operators see.
//!
//! [`run`] takes a bound listener and a [`Shutdown`], so tests run the relay in-process on
//! port 0. It runs on a Linux box or in a container next to Alertmanager, not on ESXi.

pub mod alerts;
pub mod defang;
pub mod http;
pub mod log;
pub mod metrics;
pub mod spool;
pub mod state;
pub mod text;
pub mod worker;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::api::{self, ApiVersion, Failure};
use crate::credentials::Secret;
use crate::error::Error;
use crate::{oauth, post};
use worker::{Account, Wake};

/// How the relay is set up (from `esxi-tweet serve`'s flags).
pub struct Options {
    /// The bearer token webhooks must carry; `None` only on loopback.
    pub token: Option<Secret>,
    /// The spool and state directory.
    pub spool_dir: PathBuf,
    /// How the worker posts.
    pub settings: worker::Settings,
    /// Largest request body accepted.
    pub max_body: usize,
    /// Most bytes the spool may hold.
    pub max_spool_size: u64,
    /// JSON log lines.
    pub json_logs: bool,
}

/// Most entries the spool takes: beyond, senders are told to retry rather than fill the
/// disk; one digest post drains any number of them.
const MAX_SPOOLED: usize = 10_000;

/// What `/healthz` reports: a problem that stops posting (X refuses the credentials), or a
/// worker that stopped.
#[derive(Default)]
pub struct Health {
    problem: Mutex<Option<String>>,
    stopped: Mutex<Option<String>>,
}

impl Health {
    /// Posting is stuck for this reason until a post succeeds.
    pub fn set_problem(&self, why: &str) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    /// A post succeeded.
    pub fn clear_problem(&self) {
        *self.problem.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The worker is gone.
    pub fn stop(&self, why: &str) {
        *self.stopped.lock().unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
    }

    /// `Ok` when the relay posts; else why not.
    pub fn status(&self) -> Result<(), String> {
        if let Some(why) = &*self.stopped.lock().unwrap_or_else(|e| e.into_inner()) {
            return Err(why.clone());
        }
        match &*self.problem.lock().unwrap_or_else(|e| e.into_inner()) {
            Some(why) => Err(why.clone()),
            None => Ok(()),
        }
    }
}

/// Asks a running relay to stop: new webhooks get 503, the post in flight finishes, the rest
/// stays spooled. Signal handlers and tests hold one.
#[derive(Default)]
pub struct Shutdown {
    requested: AtomicBool,
    listening: Mutex<Option<SocketAddr>>,
    wake: Mutex<Option<Arc<Wake>>>,
}

impl Shutdown {
    /// Stops the relay (again: nothing more happens).
    pub fn trigger(&self) {
        self.requested.store(true, Ordering::SeqCst);
        if let Some(wake) = &*self.wake.lock().unwrap_or_else(|e| e.into_inner()) {
            wake.notify();
        }
        // The accept loop sees the flag on its next connection: this one.
        if let Some(address) = *self.listening.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = TcpStream::connect_timeout(&address, Duration::from_secs(1));
        }
    }

    /// Whether a stop was asked for.
    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }
}

/// Runs the relay on `listener` until `shutdown` is triggered; the post in flight is finished
/// first, and what waits stays spooled for the next start. Refused credentials end it at once
/// (exit 77); a worker that stops ends it with an error, so that a supervisor restarts it.
pub fn run(
    listener: TcpListener,
    options: Options,
    account: Account,
    shutdown: Arc<Shutdown>,
) -> Result<(), Error> {
    let log = log::Logger {
        json: options.json_logs,
    };
    let address = listener
        .local_addr()
        .map_err(|e| Error::Internal(format!("listener: {e}")))?;
    if options.token.is_none() && !address.ip().is_loopback() {
        return Err(Error::Usage(format!(
            "--listen {address} is reachable from other hosts: give a --token-file so that only your Alertmanager can post"
        )));
    }
    let limits = spool::Limits {
        entries: MAX_SPOOLED,
        bytes: options.max_spool_size,
    };
    let spool = Arc::new(spool::Spool::open(&options.spool_dir, limits).map_err(|e| {
        Error::Config(format!(
            "cannot use spool directory {}: {e}; pass --spool DIR",
            options.spool_dir.display()
        ))
    })?);
    for why in &spool.set_aside {
        log.event("error", &[("message", json!(why))]);
    }
    let now = oauth::unix_now(0);
    let state_file = state::StateFile::new(&options.spool_dir);
    let (state, note) = state_file.load(now).map_err(|e| {
        Error::Config(format!(
            "cannot read the relay's state in {}: {e}",
            options.spool_dir.display()
        ))
    })?;
    if let Some(note) = note {
        log.event("error", &[("message", json!(note))]);
    }
    check_account(&account, &log)?;

    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(Health::default());
    let wake = Arc::new(Wake::default());
    *shutdown.wake.lock().unwrap_or_else(|e| e.into_inner()) = Some(wake.clone());
    *shutdown.listening.lock().unwrap_or_else(|e| e.into_inner()) = Some(address);
    let budget = options.settings.budget;
    let worker = worker::Worker::new(
        worker::Shared {
            spool: spool.clone(),
            metrics: metrics.clone(),
            health: health.clone(),
            log,
        },
        state_file,
        state,
        options.settings,
        account,
        now,
    );
    let worker = {
        let (wake, shutdown, health) = (wake.clone(), shutdown.clone(), health.clone());
        std::thread::Builder::new()
            .name("poster".into())
            .spawn(move || {
                let flag = &shutdown.requested;
                let left = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    worker.run(&wake, flag)
                }));
                if left.is_err() {
                    // Nothing posts any more: say so, and end the process for a restart.
                    health.stop("the posting worker stopped unexpectedly");
                    shutdown.trigger();
                }
                left.ok()
            })
            .map_err(|e| Error::Internal(format!("cannot start the worker: {e}")))?
    };

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
                    budget.posts,
                    humantime::format_duration(budget.period)
                )),
            ),
        ],
    );
    let server = Arc::new(http::Server::new(http::Config {
        token: options.token,
        max_body: options.max_body,
        local: address,
        spool,
        metrics,
        health: health.clone(),
        wake: wake.clone(),
        shutdown: shutdown.clone(),
        log,
    }));
    for stream in listener.incoming() {
        if shutdown.requested() {
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
    while server.active() > 0 && started.elapsed() < http::REQUEST_DEADLINE {
        std::thread::sleep(Duration::from_millis(10));
    }
    wake.notify();
    let left = worker.join().ok().flatten();
    if let Err(why) = health.status()
        && left.is_none()
    {
        return Err(Error::Internal(format!("{why}; restart the relay")));
    }
    log.event("stopped", &[("spooled", json!(left.unwrap_or(0)))]);
    Ok(())
}

/// Checks the credentials once at start (`GET /2/users/me`, signed like a post) and logs the
/// account. Refused credentials are an error (exit 77, with the agent's hint); an X that cannot
/// be reached, or that limits the check (the cheapest tiers allow it a few times a day), is not:
/// posting shows soon enough.
fn check_account(account: &Account, log: &log::Logger) -> Result<(), Error> {
    let request = api::me_request(&account.api_base);
    let mut offset = 0i64;
    for attempt in 0..2 {
        let now = oauth::unix_now(0) as i64 + offset;
        let signed = account.sign(&request, now)?;
        let warn = |why: &str| {
            log.event(
                "warning",
                &[(
                    "note",
                    json!(format!(
                        "the credentials could not be checked ({why}); posts will show whether they work"
                    )),
                )],
            );
        };
        let response =
            match account
                .sender
                .send(&request, &signed.authorization, Duration::from_secs(30))
            {
                Ok(response) => response,
                Err(e) => {
                    warn(&match e {
                        crate::transport::SendError::Fatal(e) => e.to_string(),
                        crate::transport::SendError::Retryable(why)
                        | crate::transport::SendError::OutcomeUnknown(why) => why,
                    });
                    return Ok(());
                }
            };
        if (200..300).contains(&response.status) {
            let name = api::account_name(&response).unwrap_or_else(|| "(no name given)".into());
            log.event("account", &[("name", json!(name))]);
            return Ok(());
        }
        match api::interpret(ApiVersion::V2, &response) {
            Err(Failure::Unauthorized {
                message,
                timestamp_rejected,
            }) => {
                if attempt == 0
                    && let Some(skew) = post::clock_correction(&response, timestamp_rejected, now)
                {
                    offset += skew;
                    continue;
                }
                return Err(Error::Auth(message));
            }
            Err(Failure::Fatal(e @ Error::Auth(_))) => return Err(e),
            Err(Failure::Retry { reason, .. }) => warn(&reason),
            _ => warn(&format!("HTTP {}", response.status)),
        }
        return Ok(());
    }
    Ok(())
}

//! The accept loop: one hyper HTTP/1.1 connection per client, a cap on connections that sheds
//! idle ones rather than locking new clients out ([`crate::connections`]), a header timeout
//! against slow clients, periodic cache sweeps, and graceful shutdown (stop accepting, let
//! transfers finish for the grace period, keep committed entries).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderValue, Request, Response};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::access_log::{Line, LoggedBody, Sink, UpstreamTime};
use crate::admission::MAX_HEAD_BYTES;
use crate::config::Config;
use crate::connections::{Connections, Tracked};
use crate::error::Error;
use crate::proxy::Proxy;
use crate::send_watch::{Budgets, Watched};
use crate::store::Store;
use crate::upstream::{self, ProxyBody};

/// Most request headers (more is refused with 431).
const MAX_HEADERS: usize = 100;

/// How long a new connection waits for the slot of the connection shed to admit it.
const SHED_WAIT: Duration = Duration::from_secs(1);

/// Listen backlog: a boot storm opens hundreds of connections at once (nginx on Linux uses
/// 511; the kernel caps it at `net.core.somaxconn`).
const BACKLOG: u32 = 4096;

/// Binds `addr` with a backlog for boot storms. Errors name the address.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, Error> {
    let named =
        |e: std::io::Error| Error::Listen(std::io::Error::new(e.kind(), format!("{addr}: {e}")));
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(named)?;
    socket.set_reuseaddr(true).map_err(named)?;
    socket.bind(addr).map_err(named)?;
    socket.listen(BACKLOG).map_err(named)
}

/// Serves `listener` until `shutdown` completes, then drains for `config.shutdown_grace`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let (_keep, reload) = tokio::sync::mpsc::channel(1);
    serve(listener, config, shutdown, reload).await
}

/// [`run`], and each message on `reload` (SIGHUP in `main`) reopens the access log and
/// rebuilds the upstream client (a renewed `--upstream-ca`), without dropping a request.
pub async fn serve(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
    mut reload: tokio::sync::mpsc::Receiver<()>,
) -> Result<(), Error> {
    let sink = Arc::new(
        Sink::open(config.log_format, config.access_log.clone()).map_err(|e| {
            let path = config
                .access_log
                .as_deref()
                .unwrap_or(std::path::Path::new("-"));
            Error::Config(format!("--access-log {}: {e}", path.display()))
        })?,
    );
    for warning in config.warnings() {
        eprintln!("autodeploy-cache: warning: {warning}");
    }
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (dir, max_size, inactive) = (config.cache_dir.clone(), config.max_size, config.inactive);
    let store_metrics = metrics.clone();
    let store =
        tokio::task::spawn_blocking(move || Store::open(&dir, max_size, inactive, store_metrics))
            .await
            .map_err(|e| Error::Cache(e.to_string()))??;
    let client = upstream::client(&config)?;
    if config.upstream_insecure {
        eprintln!(
            "autodeploy-cache: warning: --upstream-insecure: the upstream's certificate is not verified"
        );
    }
    eprintln!(
        "autodeploy-cache: listening on {}, upstream {}://{}, cache {} ({} entries, {} bytes)",
        listener.local_addr().map_err(Error::Listen)?,
        config.upstream_scheme,
        config.upstream_authority,
        config.cache_dir.display(),
        store.len(),
        store.size()
    );
    let grace = config.shutdown_grace;
    let sweep_interval = config.sweep_interval;
    let header_timeout = config.client_header_timeout;
    let budgets = Arc::new(Budgets {
        active: Arc::new(Semaphore::new(config.max_connections)),
        stalled: Arc::new(Semaphore::new(config.max_stalled_connections)),
        stall_after: config.stall_after,
        send_timeout: config.send_timeout,
    });
    // One connection to the upstream, nothing sent: whether TLS and the route work is known
    // at start, and the proxy serves either way.
    {
        let config = config.clone();
        tokio::spawn(async move {
            let upstream = format!("{}://{}", config.upstream_scheme, config.upstream_authority);
            match upstream::probe(&config).await {
                Ok(()) => eprintln!(
                    "autodeploy-cache: upstream {upstream} reachable ({})",
                    if config.upstream_insecure || config.upstream_scheme == "http" {
                        "certificate not verified"
                    } else {
                        "certificate verified"
                    }
                ),
                Err(e) => eprintln!(
                    "autodeploy-cache: upstream {upstream} is not usable yet: {}; serving anyway (stale entries; 502 for the rest until it works)",
                    e
                ),
            }
        });
    }
    let proxy = Arc::new(Proxy::new(config, client, Arc::new(store), metrics)?);
    let draining = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some(addr) = proxy.config().admin_listen {
        let token = proxy
            .config()
            .admin_token_file
            .as_deref()
            .map(crate::admin::read_token)
            .transpose()?;
        let admin = bind(addr)?;
        eprintln!(
            "autodeploy-cache: admin on {} (/metrics, /healthz, /purge, /entries)",
            admin.local_addr().map_err(Error::Listen)?
        );
        tokio::spawn(crate::admin::serve(
            admin,
            proxy.clone(),
            draining.clone(),
            token,
        ));
    }
    let reloader = {
        let (proxy, sink) = (proxy.clone(), sink.clone());
        tokio::spawn(async move {
            while reload.recv().await.is_some() {
                let log = match sink.reopen() {
                    Ok(()) => "reopened the access log".to_string(),
                    Err(e) => {
                        format!("cannot reopen the access log ({e}); still writing the old one")
                    }
                };
                let upstream = match proxy.reload_upstream() {
                    Ok(()) => "re-read the upstream CA".to_string(),
                    Err(e) => format!("kept the previous upstream settings: {e}"),
                };
                eprintln!("autodeploy-cache: SIGHUP: {log}; {upstream}");
            }
        })
    };
    let sweeper = {
        let store = proxy.store().clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(sweep_interval);
            every.tick().await;
            loop {
                every.tick().await;
                let store = store.clone();
                let _ = tokio::task::spawn_blocking(move || store.sweep(SystemTime::now())).await;
            }
        })
    };
    let connections = Connections::new(
        proxy.config().max_connections_per_client,
        proxy.metrics().clone(),
    );
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, client) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        eprintln!("autodeploy-cache: accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Some(ticket) = connections.admit(client.ip()) else {
                    // Every connection of this client is busy at its limit.
                    drop(stream);
                    continue;
                };
                // At the cap, the oldest connection without a request under way makes room;
                // only when there is none is the new one closed at once, which keeps the
                // process alive under a flood.
                let permit = match budgets.active.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) if connections.shed_idle() => None,
                    Err(_) => {
                        drop(stream);
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Ok(local) = stream.local_addr() else { continue };
                let proxy = proxy.clone();
                let sink = sink.clone();
                let (busy_of, id) = (connections.clone(), ticket.id());
                let service = service_fn(move |request| {
                    let (proxy, sink) = (proxy.clone(), sink.clone());
                    let busy = busy_of.busy(id);
                    async move {
                        let response = respond(&proxy, &sink, request, client, local).await;
                        Ok::<_, Infallible>(response.map(|body| Tracked::new(body, busy)))
                    }
                });
                let budgets = budgets.clone();
                let watcher = graceful.watcher();
                tokio::spawn(async move {
                    let permit = match permit {
                        Some(permit) => permit,
                        // The shed connection's slot comes free as its task ends.
                        None => match tokio::time::timeout(
                            SHED_WAIT,
                            budgets.active.clone().acquire_owned(),
                        )
                        .await
                        {
                            Ok(Ok(permit)) => permit,
                            _ => return,
                        },
                    };
                    let connection = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(header_timeout)
                        .max_buf_size(MAX_HEAD_BYTES)
                        .max_headers(MAX_HEADERS)
                        .serve_connection(
                            TokioIo::new(Watched::new(stream, permit, budgets)),
                            service,
                        );
                    let connection = watcher.watch(connection);
                    tokio::select! {
                        _ = connection => {}
                        () = ticket.close.notified() => {}
                    }
                    drop(ticket);
                });
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    draining.store(true, std::sync::atomic::Ordering::Relaxed);
    sweeper.abort();
    reloader.abort();
    eprintln!(
        "autodeploy-cache: shutting down; letting transfers finish for up to {}",
        humantime::format_duration(grace)
    );
    // Connections finish their transfers, and fills in progress get to commit, within the
    // grace period.
    let drained = async {
        graceful.shutdown().await;
        while !proxy.fills().is_empty() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::select! {
        () = drained => {}
        () = tokio::time::sleep(grace) => eprintln!("autodeploy-cache: grace period over; closing the remaining connections"),
    }
    Ok(())
}

async fn respond(
    proxy: &Arc<Proxy>,
    sink: &Arc<Sink>,
    request: Request<Incoming>,
    client: SocketAddr,
    local: SocketAddr,
) -> Response<LoggedBody> {
    let started = Instant::now();
    // Clones of shared bytes, not text: the line is formatted once, when it is written.
    let method = request.method().clone();
    let target = request.uri().clone();
    let version = request.version();
    let user_agent = request.headers().get(http::header::USER_AGENT).cloned();
    let (response, cache) = proxy.handle(request, client, local).await;
    let (mut parts, body) = response.into_parts();
    let upstream = parts.extensions.get::<UpstreamTime>().map(|t| t.0);
    if let Some(cache) = cache {
        parts
            .headers
            .insert("x-cache-status", HeaderValue::from_static(cache.as_str()));
    }
    let body: ProxyBody = body.boxed();
    let line = Line {
        client,
        method,
        target,
        version,
        user_agent,
        status: parts.status.as_u16(),
        cache,
        upstream,
        started,
    };
    Response::from_parts(
        parts,
        LoggedBody::new(body, line, sink.clone(), proxy.metrics().clone()),
    )
}

//! Command-line flags (each also from an `AUTODEPLOY_CACHE_*` variable), validated into a
//! [`Config`] before any I/O. Sizes and durations use nginx's notation (`1g`, `512m`, `24h`,
//! `1d`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use clap::builder::BoolishValueParser;

use crate::error::Error;

/// The subcommands, which `--help` lists under the flags (they are dispatched before these
/// flags are parsed).
const SUBCOMMANDS: &str = "\
Subcommands:
  warm          fetch paths (a list, or an access log) through a running proxy into its cache;
                autodeploy-cache warm --help
  healthcheck   exit 0 when an admin listener's /healthz answers 200 (a container HEALTHCHECK);
                autodeploy-cache healthcheck 127.0.0.1:5101
  help          this text (help warm, help healthcheck: theirs)";

/// A caching reverse proxy for vCenter Auto Deploy.
#[derive(Debug, Parser)]
#[command(name = "autodeploy-cache", version, after_help = SUBCOMMANDS)]
pub struct Args {
    /// Address to listen on (plain HTTP, as hosts expect): ADDRESS:PORT, or PORT for all
    /// addresses
    #[arg(long, env = "AUTODEPLOY_CACHE_LISTEN", default_value = "0.0.0.0:5100")]
    pub listen: String,
    /// Auto Deploy server, e.g. https://vcenter.lab:6501 [or AUTO_DEPLOY=host:port]
    #[arg(long, env = "AUTODEPLOY_CACHE_UPSTREAM")]
    pub upstream: Option<String>,
    /// Where entries are stored
    #[arg(
        long,
        env = "AUTODEPLOY_CACHE_CACHE_DIR",
        default_value = "/var/cache/autodeploy-cache"
    )]
    pub cache_dir: PathBuf,
    /// Most disk the cache may use, e.g. 1g, 512m
    #[arg(long, env = "AUTODEPLOY_CACHE_MAX_SIZE", default_value = "1g")]
    pub max_size: String,
    /// Remove entries unused for this long, e.g. 24h
    #[arg(long, env = "AUTODEPLOY_CACHE_INACTIVE", default_value = "24h")]
    pub inactive: String,
    /// Freshness of 200 responses without Cache-Control or Expires, e.g. 1d
    #[arg(long, env = "AUTODEPLOY_CACHE_VALID", default_value = "1d")]
    pub valid: String,
    /// PEM file of CAs that sign the upstream's certificate (vCenter's VMCA)
    #[arg(long, env = "AUTODEPLOY_CACHE_UPSTREAM_CA")]
    pub upstream_ca: Option<PathBuf>,
    /// Do not verify the upstream's certificate (what nginx does by default)
    #[arg(long, env = "AUTODEPLOY_CACHE_UPSTREAM_INSECURE", value_parser = BoolishValueParser::new())]
    pub upstream_insecure: bool,
    /// Send the client's Host upstream (as the nginx config does); Host joins the cache key
    #[arg(long, env = "AUTODEPLOY_CACHE_FORWARD_HOST", value_parser = BoolishValueParser::new())]
    pub forward_host: bool,
    /// Serve an expired entry for at most this long past its expiry when the upstream fails
    /// (a response's own stale-if-error wins) [default: no bound]
    #[arg(long, env = "AUTODEPLOY_CACHE_STALE_IF_ERROR", value_name = "DURATION")]
    pub stale_if_error: Option<String>,
    /// Drop a client that accepts no response bytes for this long, e.g. 60s
    #[arg(long, env = "AUTODEPLOY_CACHE_SEND_TIMEOUT", default_value = "60s")]
    pub send_timeout: String,
    /// Largest request body passed through (read whole before it goes upstream), e.g. 1m
    #[arg(long, env = "AUTODEPLOY_CACHE_MAX_BODY_SIZE", default_value = "1m")]
    pub max_body_size: String,
    /// Append the access log to this file (reopened on SIGHUP) [default: stdout]
    #[arg(long, env = "AUTODEPLOY_CACHE_ACCESS_LOG", value_name = "FILE")]
    pub access_log: Option<PathBuf>,
    /// Serve /metrics, /healthz, /purge and /entries on this address (keep it private, e.g.
    /// 127.0.0.1:5101) [default: off]
    #[arg(
        long,
        env = "AUTODEPLOY_CACHE_ADMIN_LISTEN",
        value_name = "ADDRESS:PORT"
    )]
    pub admin_listen: Option<String>,
    /// File holding the bearer token the admin endpoints require (mode 600); required when
    /// --admin-listen is reachable from other hosts
    #[arg(long, env = "AUTODEPLOY_CACHE_ADMIN_TOKEN_FILE", value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// Access log format: text (one line, as nginx's) or json (one object per line)
    #[arg(
        long,
        env = "AUTODEPLOY_CACHE_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,
    /// Most connections one client address may hold; beyond, its own oldest idle one is
    /// closed (a rack of hosts behind one NAT fits the default)
    #[arg(
        long,
        env = "AUTODEPLOY_CACHE_MAX_CONNECTIONS_PER_CLIENT",
        default_value = "512"
    )]
    pub max_connections_per_client: usize,
    /// How long transfers may finish after SIGTERM, e.g. 30s
    #[arg(long, env = "AUTODEPLOY_CACHE_SHUTDOWN_GRACE", default_value = "30s")]
    pub shutdown_grace: String,
}

/// How access-log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// `time client "request" status bytes duration cache`.
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub struct Config {
    /// Listening address (used by `main`; `run` takes a bound listener).
    pub listen: SocketAddr,
    /// Upstream scheme (`https` or `http`).
    pub upstream_scheme: String,
    /// Upstream `host:port`.
    pub upstream_authority: String,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Disk budget in bytes.
    pub max_size: u64,
    /// Idle time after which an entry is removed.
    pub inactive: Duration,
    /// Freshness of 200s without explicit freshness.
    pub valid: Duration,
    /// Extra trusted CAs for the upstream.
    pub upstream_ca: Option<PathBuf>,
    /// Skip upstream certificate verification.
    pub upstream_insecure: bool,
    /// Forward the client's Host.
    pub forward_host: bool,
    /// Access log format.
    pub log_format: LogFormat,
    /// Access log file (`None`: stdout).
    pub access_log: Option<PathBuf>,
    /// The admin listener's address, if any.
    pub admin_listen: Option<SocketAddr>,
    /// The file holding the admin bearer token, if any.
    pub admin_token_file: Option<PathBuf>,
    /// Grace period for transfers at shutdown.
    pub shutdown_grace: Duration,
    /// Timeout for connecting to the upstream and receiving its response head.
    pub upstream_header_timeout: Duration,
    /// A fill whose upstream sends nothing for this long fails.
    pub fill_idle_timeout: Duration,
    /// How often inactive and excess entries are swept.
    pub sweep_interval: Duration,
    /// A client must send a request head within this time, and an idle keep-alive
    /// connection is closed after it (slowloris, idle sockets).
    pub client_header_timeout: Duration,
    /// Most client connections at once; at the cap the oldest one without a request under
    /// way is closed to admit a new one (only when none is, the new one is closed).
    pub max_connections: usize,
    /// Most connections one client address may hold.
    pub max_connections_per_client: usize,
    /// Most connections at once whose client has stopped reading (counted apart from
    /// `max_connections`, so that they cannot lock out clients that read).
    pub max_stalled_connections: usize,
    /// A connection whose client accepts no bytes for this long is closed.
    pub send_timeout: Duration,
    /// A response write that waits this long moves its connection from the active budget
    /// to the stalled one.
    pub stall_after: Duration,
    /// Largest pass-through request body.
    pub max_body_size: u64,
    /// How long past its expiry an entry may be served when the upstream fails (`None`:
    /// no bound); `must-revalidate` and friends forbid it regardless.
    pub stale_if_error: Option<Duration>,
    /// A pass-through request body must arrive whole within this time.
    pub client_body_timeout: Duration,
    /// Fault injection for tests only: a request for exactly this path panics in its
    /// handler (set from `AUTODEPLOY_CACHE_TEST_PANIC_PATH`; never a flag).
    pub test_panic_path: Option<String>,
    /// Most fills (distinct objects being fetched into the cache) at once; further misses
    /// pass through uncached, so a flood of distinct URLs cannot exhaust disk or tasks.
    pub max_fills: usize,
}

impl Config {
    /// Validates `args`; `auto_deploy` is the container's `AUTO_DEPLOY=host:port`.
    pub fn from_args(args: Args, auto_deploy: Option<String>) -> Result<Self, Error> {
        let upstream = match (args.upstream, auto_deploy.filter(|v| !v.is_empty())) {
            (Some(u), _) => u,
            // The container's variable is host:port; a URL with a scheme is taken as given.
            (None, Some(url)) if url.contains("://") => url,
            (None, Some(hostport)) => format!("https://{hostport}"),
            (None, None) => {
                return Err(Error::Config(
                    "no upstream: pass --upstream https://vcenter:6501 (or set AUTO_DEPLOY=vcenter:6501)"
                        .into(),
                ));
            }
        };
        let uri: http::Uri = upstream
            .parse()
            .map_err(|e| Error::Config(format!("--upstream {upstream:?}: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or_default().to_ascii_lowercase();
        if scheme != "https" && scheme != "http" {
            return Err(Error::Config(format!(
                "--upstream {upstream:?}: expected https://host:port"
            )));
        }
        let authority = uri
            .authority()
            .ok_or_else(|| Error::Config(format!("--upstream {upstream:?}: no host")))?
            .to_string();
        if uri.path() != "/" && !uri.path().is_empty() {
            return Err(Error::Config(format!(
                "--upstream {upstream:?}: give only scheme, host and port; paths are forwarded as requested"
            )));
        }
        let listen = parse_listen(&args.listen)?;
        let admin_listen = args
            .admin_listen
            .as_deref()
            .map(|a| {
                parse_listen(a)
                    .map_err(|e| Error::Config(e.to_string().replace("--listen", "--admin-listen")))
            })
            .transpose()?;
        if let Some(admin) = admin_listen
            && admin.port() != 0
            && admin.port() == listen.port()
        {
            return Err(Error::Config(format!(
                "--admin-listen {admin} shares the hosts' port {}: give the admin listener a port of its own, on a private address (e.g. 127.0.0.1:5101)",
                listen.port()
            )));
        }
        if let Some(admin) = admin_listen
            && !admin.ip().is_loopback()
            && args.admin_token_file.is_none()
        {
            return Err(Error::Config(format!(
                "--admin-listen {admin} is reachable from other hosts and its endpoints purge the cache: give --admin-token-file FILE (one token, chmod 600), or listen on 127.0.0.1"
            )));
        }
        if args.upstream_insecure && args.upstream_ca.is_some() {
            return Err(Error::Config(
                "--upstream-insecure and --upstream-ca exclude each other".into(),
            ));
        }
        Ok(Self {
            listen,
            log_format: args.log_format,
            access_log: args.access_log,
            admin_listen,
            admin_token_file: args.admin_token_file,
            upstream_scheme: scheme,
            upstream_authority: authority,
            cache_dir: args.cache_dir,
            max_size: parse_size("--max-size", &args.max_size)?,
            inactive: parse_duration("--inactive", &args.inactive)?,
            valid: parse_duration("--valid", &args.valid)?,
            upstream_ca: args.upstream_ca,
            upstream_insecure: args.upstream_insecure,
            forward_host: args.forward_host,
            shutdown_grace: parse_duration("--shutdown-grace", &args.shutdown_grace)?,
            send_timeout: parse_duration("--send-timeout", &args.send_timeout)?,
            max_body_size: parse_size("--max-body-size", &args.max_body_size)?,
            stale_if_error: args
                .stale_if_error
                .as_deref()
                .map(|v| parse_duration("--stale-if-error", v))
                .transpose()?,
            client_body_timeout: Duration::from_secs(30),
            test_panic_path: None,
            stall_after: Duration::from_secs(2),
            max_stalled_connections: 1024,
            upstream_header_timeout: Duration::from_secs(30),
            fill_idle_timeout: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(60),
            client_header_timeout: Duration::from_secs(30),
            max_connections: 8192,
            max_connections_per_client: args.max_connections_per_client,
            max_fills: 256,
        })
    }
}

/// `--listen`: `ADDRESS:PORT`, or a bare `PORT` for every IPv4 address (as nginx's `listen`).
pub fn parse_listen(value: &str) -> Result<SocketAddr, Error> {
    let value = value.trim();
    if let Ok(port) = value.parse::<u16>() {
        return Ok(SocketAddr::from(([0, 0, 0, 0], port)));
    }
    value.parse().map_err(|_| {
        Error::Config(format!(
            "--listen {value:?}: expected PORT or ADDRESS:PORT, such as 5100 or 0.0.0.0:5100 ([::]:5100 for IPv6)"
        ))
    })
}

impl Config {
    /// Settings that work but are probably not what was meant, one line each.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.max_size == 0 {
            out.push(
                "--max-size 0: nothing will be cached; every request goes to the upstream".into(),
            );
        } else if self.max_size < 64 << 20 {
            out.push(format!(
                "--max-size {} bytes is under 64 MiB: Auto Deploy images are tens to hundreds of MiB, most will not be cached (the default, 1g, holds about two image profiles; give 1g per profile your hosts boot)",
                self.max_size
            ));
        }
        out
    }
}

/// nginx sizes: a number with an optional `k`, `m` or `g` (powers of 1024).
pub fn parse_size(flag: &str, value: &str) -> Result<u64, Error> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(value)
        .map_err(|e| Error::Config(format!("{flag} {value:?}: {e} (try 1g or 512m)")))
}

/// nginx durations: `30s`, `10m`, `24h`, `1d`...
pub fn parse_duration(flag: &str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value)
        .map_err(|e| Error::Config(format!("{flag} {value:?}: {e} (try 24h or 1d)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut all = vec!["autodeploy-cache"];
        all.extend_from_slice(extra);
        Args::try_parse_from(all).unwrap()
    }

    #[test]
    fn nginx_notation() {
        assert_eq!(parse_size("x", "1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("x", "512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("x", "10k").unwrap(), 10 << 10);
        assert_eq!(parse_size("x", "4096").unwrap(), 4096);
        assert!(parse_size("x", "lots").is_err());
        assert_eq!(
            parse_duration("x", "1d").unwrap(),
            Duration::from_secs(86400)
        );
        assert_eq!(
            parse_duration("x", "24h").unwrap(),
            Duration::from_secs(86400)
        );
        assert!(parse_duration("x", "soon").is_err());
    }

    #[test]
    fn operators_habits_are_understood() {
        let c = Config::from_args(args(&["--listen", "5100"]), Some("vc:6501".into())).unwrap();
        assert_eq!(c.listen, "0.0.0.0:5100".parse().unwrap());
        let err = Config::from_args(args(&["--listen", "51OO"]), Some("vc:6501".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORT or ADDRESS:PORT"), "{err}");
        let c = Config::from_args(args(&[]), Some("https://vc.lab:6501".into())).unwrap();
        assert_eq!(
            (c.upstream_scheme.as_str(), c.upstream_authority.as_str()),
            ("https", "vc.lab:6501")
        );
        let c = Config::from_args(args(&["--max-size", "0"]), Some("vc:1".into())).unwrap();
        assert!(c.warnings()[0].contains("nothing will be cached"));
        let c = Config::from_args(args(&["--max-size", "10m"]), Some("vc:1".into())).unwrap();
        assert!(c.warnings()[0].contains("under 64 MiB"));
        let c = Config::from_args(args(&[]), Some("vc:1".into())).unwrap();
        assert!(c.warnings().is_empty());
        let err = Config::from_args(
            args(&["--admin-listen", "127.0.0.1:5100"]),
            Some("vc:1".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("port of its own"), "{err}");
        // An admin port on every address purges the cache for anyone: a token or loopback.
        let err = Config::from_args(args(&["--admin-listen", "5101"]), Some("vc:1".into()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("--admin-token-file"), "{err}");
        let c = Config::from_args(
            args(&["--admin-listen", "5101", "--admin-token-file", "/t"]),
            Some("vc:1".into()),
        )
        .unwrap();
        assert_eq!(c.admin_listen, Some("0.0.0.0:5101".parse().unwrap()));
        let c = Config::from_args(
            args(&["--admin-listen", "127.0.0.1:5101"]),
            Some("vc:1".into()),
        );
        assert!(c.is_ok());
    }

    #[test]
    fn upstream_from_flag_or_container_variable() {
        let c = Config::from_args(args(&["--upstream", "https://vc.lab:6501"]), None).unwrap();
        assert_eq!(
            (c.upstream_scheme.as_str(), c.upstream_authority.as_str()),
            ("https", "vc.lab:6501")
        );
        let c = Config::from_args(args(&[]), Some("vc.lab:6501".into())).unwrap();
        assert_eq!(c.upstream_authority, "vc.lab:6501");
        assert_eq!(c.max_size, 1 << 30);
        assert!(Config::from_args(args(&[]), None).is_err());
        assert!(Config::from_args(args(&["--upstream", "ftp://x"]), None).is_err());
        assert!(Config::from_args(args(&["--upstream", "https://x/path"]), None).is_err());
    }
}

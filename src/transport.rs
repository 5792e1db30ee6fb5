//! HTTPS to the X API: trust roots, proxy, timeouts, and the one call that sends a request.
//!
//! Trust is Mozilla's root set compiled into the binary (ESXi's own store at
//! `/etc/vmware/ssl/castore.pem` holds vCenter's CAs, not the public ones) plus whatever
//! `--ca-file` adds, such as a TLS-inspecting proxy's CA.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

use crate::api::{Outgoing, Response};
use crate::error::Error;

/// How to reach the API.
#[derive(Debug, Clone, Default)]
pub struct TransportOptions {
    /// PEM file of extra trusted CA certificates.
    pub ca_file: Option<std::path::PathBuf>,
    /// Proxy URL; when `None`, `HTTPS_PROXY`/`ALL_PROXY`/`NO_PROXY` apply.
    pub proxy: Option<String>,
    /// Connect timeout; each request also gets an overall timeout from the caller.
    pub connect_timeout: Duration,
}

/// Why a send failed.
#[derive(Debug)]
pub enum SendError {
    /// Network trouble before the request could have reached the server (DNS, refused
    /// connection, connect timeout, TLS handshake): another attempt may do better.
    Retryable(String),
    /// The exchange broke after the request may have been sent (reset, timeout while
    /// waiting for the answer): worth another attempt, but the post may exist already.
    OutcomeUnknown(String),
    /// Retrying cannot help (the server's certificate is not trusted, say).
    Fatal(Error),
}

/// A configured HTTPS client. Reuses connections between attempts.
pub struct Transport {
    agent: ureq::Agent,
}

impl Transport {
    /// Builds the client. Fails on an unreadable CA file or a malformed proxy URL.
    pub fn new(options: &TransportOptions) -> Result<Self, Error> {
        let mut roots: Vec<Certificate<'static>> = webpki_root_certs::TLS_SERVER_ROOT_CERTS
            .iter()
            .map(|der| Certificate::from_der(der.as_ref()))
            .collect();
        if let Some(path) = &options.ca_file {
            roots.extend(read_ca_file(path)?);
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .build();
        let proxy = match &options.proxy {
            Some(url) => Some(ureq::Proxy::new(url).map_err(|e| {
                Error::Config(format!(
                    "invalid proxy URL {:?}: {e}",
                    crate::api::shown_url(url)
                ))
            })?),
            None => ureq::Proxy::try_from_env(),
        };
        let config = ureq::Agent::config_builder()
            .tls_config(tls)
            .proxy(proxy)
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_connect(Some(options.connect_timeout))
            .user_agent(concat!("esxi-tweet/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: config.into(),
        })
    }

    /// Sends `request` with the given `Authorization` header; `timeout` bounds the whole
    /// exchange, so a stalled server cannot outlast the caller's deadline.
    pub fn send(
        &self,
        request: &Outgoing,
        authorization: &str,
        timeout: Duration,
    ) -> Result<Response, SendError> {
        let result = if request.method == "GET" {
            self.agent
                .get(&request.url)
                .header("Authorization", authorization)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .call()
        } else {
            self.agent
                .post(&request.url)
                .header("Authorization", authorization)
                .header("Content-Type", request.content_type)
                .config()
                .timeout_global(Some(timeout))
                .build()
                .send(request.body.as_bytes())
        };
        let mut response = result.map_err(classify)?;
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let date = header("date");
        let rate_limit_reset = header("x-rate-limit-reset").and_then(|v| v.trim().parse().ok());
        let rate_limit_remaining =
            header("x-rate-limit-remaining").and_then(|v| v.trim().parse().ok());
        let number = |name: &str| header(name).and_then(|v| v.trim().parse::<u64>().ok());
        let day = crate::api::DayLimit::from_headers(
            (
                number("x-user-limit-24hour-remaining"),
                number("x-user-limit-24hour-reset"),
            ),
            (
                number("x-app-limit-24hour-remaining"),
                number("x-app-limit-24hour-reset"),
            ),
        );
        let status = response.status().as_u16();
        let read = response
            .body_mut()
            .with_config()
            .limit(1024 * 1024)
            .read_to_string();
        let (body, body_error) = match read {
            Ok(body) => (body, None),
            // A 2xx is a post whether or not its body arrives; other answers without a body
            // are as unknown as no answer.
            Err(e) if (200..300).contains(&status) => (String::new(), Some(e.to_string())),
            Err(e) => return Err(SendError::OutcomeUnknown(e.to_string())),
        };
        Ok(Response {
            status,
            date,
            rate_limit_reset,
            rate_limit_remaining,
            day,
            body,
            body_error,
        })
    }
}

fn read_ca_file(path: &Path) -> Result<Vec<Certificate<'static>>, Error> {
    let shown = path.display();
    let pem = std::fs::read(path)
        .map_err(|e| Error::Config(format!("cannot read CA file {shown}: {e}")))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => {
                return Err(Error::Config(format!(
                    "CA file {shown} is not valid PEM: {e}"
                )));
            }
        }
    }
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "CA file {shown} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
        )));
    }
    Ok(certs)
}

fn classify(error: ureq::Error) -> SendError {
    // rustls errors reach us directly or wrapped in the I/O error of the handshake.
    let tls_error = match &error {
        ureq::Error::Rustls(e) => Some(e),
        ureq::Error::Io(e) => e.get_ref().and_then(|inner| inner.downcast_ref()),
        _ => None,
    };
    if let Some(rustls::Error::InvalidCertificate(why)) = tls_error {
        return SendError::Fatal(Error::Config(format!(
            "the server's TLS certificate is not trusted ({why:?}): if a proxy inspects TLS, pass its CA with --ca-file"
        )));
    }
    if tls_error.is_some() {
        return SendError::Retryable(error.to_string());
    }
    use std::io::ErrorKind;
    use ureq::Timeout;
    match &error {
        ureq::Error::BadUri(_) | ureq::Error::Http(_) | ureq::Error::InvalidProxyUrl => {
            SendError::Fatal(Error::Config(format!("cannot send the request: {error}")))
        }
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::ConnectProxyFailed(_)
        | ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
            SendError::Retryable(error.to_string())
        }
        ureq::Error::Io(e)
            if matches!(
                e.kind(),
                ErrorKind::ConnectionRefused | ErrorKind::AddrNotAvailable | ErrorKind::NotFound
            ) =>
        {
            SendError::Retryable(error.to_string())
        }
        _ => SendError::OutcomeUnknown(error.to_string()),
    }
}

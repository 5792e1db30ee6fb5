//! The client side: a pooled keep-alive HTTPS client to the Auto Deploy server, with SNI, and
//! trust in Mozilla's roots plus `--upstream-ca` (vCenter's VMCA), or no verification at all
//! with `--upstream-insecure` (what the nginx container does).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::Uri;
use http_body_util::combinators::BoxBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

use crate::config::Config;
use crate::error::Error;

/// Body type of every request and response the proxy handles.
pub type ProxyBody = BoxBody<Bytes, BoxError>;
/// Error type inside bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The upstream client.
pub type Upstream = Client<HttpsConnector<Pinned>, ProxyBody>;

/// A TCP connector that connects to the configured upstream and nowhere else: a URI naming
/// any other host or port is refused before a socket is opened. Request URIs are built from
/// the configured authority already; this makes "only the upstream is ever contacted" hold
/// whatever a later change does to them.
#[derive(Clone, Debug)]
pub struct Pinned {
    inner: HttpConnector,
    host: String,
    port: u16,
}

impl Pinned {
    fn allows(&self, uri: &Uri) -> bool {
        let default = if uri.scheme() == Some(&http::uri::Scheme::HTTPS) {
            443
        } else {
            80
        };
        uri.host()
            .is_some_and(|h| h.eq_ignore_ascii_case(&self.host))
            && uri.port_u16().unwrap_or(default) == self.port
    }
}

impl tower_service::Service<Uri> for Pinned {
    type Response = <HttpConnector as tower_service::Service<Uri>>::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        if !self.allows(&uri) {
            return Box::pin(std::future::ready(Err(format!(
                "refused to connect to {uri}: not the configured upstream"
            )
            .into())));
        }
        let connecting = self.inner.call(uri);
        Box::pin(async move { connecting.await.map_err(Into::into) })
    }
}

/// Builds the upstream client from the configuration.
pub fn client(config: &Config) -> Result<Upstream, Error> {
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(64)
        .build(connector(config)?))
}

/// Connects to the upstream with TLS verified as configured, and sends nothing: what the
/// start-up check uses to tell "certificate refused" from "connection refused" without
/// making a request.
pub async fn probe(config: &Config) -> Result<(), String> {
    use tower_service::Service as _;
    let mut connector = connector(config).map_err(|e| e.to_string())?;
    let uri: Uri = format!(
        "{}://{}/",
        config.upstream_scheme, config.upstream_authority
    )
    .parse()
    .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    match tokio::time::timeout(Duration::from_secs(10), connector.call(uri)).await {
        Err(_) => Err(crate::trouble::with_hint(
            "connecting timed out after 10 s".into(),
            crate::trouble::Cause::TimedOut,
        )),
        Ok(Err(e)) => Err(crate::trouble::describe(e.as_ref())),
        Ok(Ok(_connection)) => Ok(()),
    }
}

fn connector(config: &Config) -> Result<HttpsConnector<Pinned>, Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS: {e}")))?;
    let tls = if config.upstream_insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    } else {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        if let Some(path) = &config.upstream_ca {
            let shown = path.display();
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| Error::Config(format!("--upstream-ca {shown}: {e}")))?
                .collect::<Result<_, _>>()
                .map_err(|e| Error::Config(format!("--upstream-ca {shown}: {e}")))?;
            if certs.is_empty() {
                return Err(Error::Config(format!(
                    "--upstream-ca {shown}: no PEM certificate in it"
                )));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| Error::Config(format!("--upstream-ca {shown}: {e}")))?;
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    http.set_nodelay(true);
    let authority: http::uri::Authority = config
        .upstream_authority
        .parse()
        .map_err(|e| Error::Config(format!("--upstream: {e}")))?;
    let default_port = if config.upstream_scheme == "https" {
        443
    } else {
        80
    };
    let http = Pinned {
        inner: http,
        host: authority.host().to_string(),
        port: authority.port_u16().unwrap_or(default_port),
    };
    Ok(hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http))
}

/// Accepts any certificate: `--upstream-insecure` only.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tower_service::Service as _;

    #[tokio::test]
    async fn only_the_configured_upstream_is_ever_connected() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        let mut pinned = Pinned {
            inner: http,
            host: "127.0.0.1".into(),
            port,
        };
        let ours: Uri = format!("https://127.0.0.1:{port}/x").parse().unwrap();
        assert!(pinned.call(ours).await.is_ok());
        for other in [
            "https://127.0.0.1/x".to_string(),
            "http://127.0.0.1/x".to_string(),
            format!("https://127.0.0.2:{port}/x"),
            format!("https://localhost:{}/x", port.wrapping_add(1)),
        ] {
            let uri: Uri = other.parse().unwrap();
            let refused = pinned.call(uri).await;
            assert!(
                refused.is_err_and(|e| e.to_string().contains("not the configured upstream")),
                "{other}"
            );
        }
    }
}

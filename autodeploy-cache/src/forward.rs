//! The uncached path: the upstream request built from a client's (end-to-end and
//! forwarding headers, the upstream's URI), pass-through of methods other than GET and HEAD
//! with their bodies read whole first, and forwarding a request as it is.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;

use crate::access_log::UpstreamTime;
use crate::headers;
use crate::proxy::{Proxy, UNREACHABLE};
use crate::serve::{empty, plain, relay};
use crate::upstream::ProxyBody;

impl Proxy {
    /// The upstream request for `parts` (whose URI `handle` set to the upstream's):
    /// end-to-end headers and forwarding headers. The client's
    /// `Content-Length` never goes upstream: hyper frames the request from `body` itself, so
    /// a request is never announced with a body it does not carry.
    pub(crate) fn upstream_request(
        &self,
        parts: &http::request::Parts,
        client: SocketAddr,
        body: ProxyBody,
    ) -> Request<ProxyBody> {
        let client_host = parts
            .headers
            .get(header::HOST)
            .filter(|_| self.config.forward_host)
            .cloned();
        let mut headers = headers::end_to_end(&parts.headers);
        headers.remove(header::HOST);
        headers.remove(header::CONTENT_LENGTH);
        headers::add_forwarding(&mut headers, client, client_host.as_ref());
        headers.insert(
            header::HOST,
            client_host.unwrap_or_else(|| self.upstream_host.clone()),
        );
        let mut request = Request::new(body);
        *request.method_mut() = parts.method.clone();
        *request.uri_mut() = parts.uri.clone();
        *request.headers_mut() = headers;
        request
    }

    /// Forwards a request that is not cached. Its body is read whole first (bounded in size
    /// and time), so a client that trickles its body holds only its own connection, never an
    /// upstream one, and the upstream gets an exact `Content-Length`.
    pub(crate) async fn pass_through(
        self: &Arc<Self>,
        request: Request<Incoming>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let limit = usize::try_from(self.config.max_body_size).unwrap_or(usize::MAX);
        let read = Limited::new(body, limit).collect();
        let body = match tokio::time::timeout(self.config.client_body_timeout, read).await {
            Err(_) => {
                return plain(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body did not arrive in time\n",
                );
            }
            Ok(Err(e)) if e.is::<http_body_util::LengthLimitError>() => {
                return plain(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "the request body is larger than --max-body-size\n",
                );
            }
            Ok(Err(_)) => return plain(StatusCode::BAD_REQUEST, "invalid request body\n"),
            Ok(Ok(collected)) => collected.to_bytes(),
        };
        let body = if body.is_empty() {
            empty()
        } else {
            Full::new(body).map_err(|e| match e {}).boxed()
        };
        self.forward(Request::from_parts(parts, body), client).await
    }

    /// Sends `request` upstream uncached and streams the answer back.
    pub(crate) async fn forward(
        self: &Arc<Self>,
        request: Request<ProxyBody>,
        client: SocketAddr,
    ) -> Response<ProxyBody> {
        let (parts, body) = request.into_parts();
        let asked = std::time::Instant::now();
        self.metrics.upstream_requests.inc();
        let upstream = self.upstream_request(&parts, client, body);
        match tokio::time::timeout(
            self.config.upstream_header_timeout,
            self.upstream().request(upstream),
        )
        .await
        {
            Err(_) => {
                self.metrics.upstream_failures.inc();
                plain(
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream did not answer in time\n",
                )
            }
            Ok(Err(e)) => {
                self.metrics.upstream_failures.inc();
                // The detail (addresses, certificate names) is for the operator, not for
                // any client on the boot network.
                let cause = crate::trouble::describe(&e);
                crate::trouble::log_once(&cause, || format!("upstream unreachable: {cause}"));
                plain(StatusCode::BAD_GATEWAY, UNREACHABLE)
            }
            Ok(Ok(response)) => {
                crate::trouble::upstream_ok();
                let mut response = relay(response);
                response
                    .extensions_mut()
                    .insert(UpstreamTime(asked.elapsed()));
                response
            }
        }
    }
}

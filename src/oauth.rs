//! OAuth 1.0a request signing with HMAC-SHA1, per RFC 5849 section 3.
//!
//! This module is the heart of the agent and is deliberately pure: no clock, no randomness, no
//! I/O. The caller supplies the nonce and the timestamp ([`fresh_nonce`] and [`unix_now`] are
//! the production sources), which keeps every step testable against fixed vectors.
//!
//! The steps mirror the RFC so a reader can check them one by one:
//! [`percent_encode`] (3.6), [`collect_parameters`] (3.4.1.3.1), [`normalize_parameters`]
//! (3.4.1.3.2), [`base_string_uri`] (3.4.1.2), [`signature_base_string`] (3.4.1.1),
//! [`signing_key`] (3.4.2), [`hmac_sha1`] and [`authorization_header`] (3.5.1).

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha1::Sha1;

use crate::credentials::Credentials;
use crate::error::Error;

/// Everything but the RFC 3986 unreserved characters `A-Z a-z 0-9 - . _ ~` is encoded.
const OAUTH_ENCODE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes `s` as RFC 5849 3.6 requires: UTF-8 bytes, uppercase hex, space as `%20`.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, OAUTH_ENCODE).to_string()
}

/// Decodes one `application/x-www-form-urlencoded` component: `+` is a space, `%XX` a byte.
/// Bytes that are not UTF-8 become U+FFFD rather than an error: a query we cannot decode
/// cleanly is still signed the same way the server decodes it in practice.
fn form_decode(s: &str) -> String {
    let spaced = s.replace('+', " ");
    percent_decode_str(&spaced).decode_utf8_lossy().into_owned()
}

/// Splits a form-urlencoded string (a query or a body) into decoded name/value pairs.
/// A name without `=` has an empty value; empty segments (`a=1&&b=2`) are skipped.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (form_decode(name), form_decode(value)),
            None => (form_decode(pair), String::new()),
        })
        .collect()
}

/// The parts of a request URL that signing needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestUrl {
    /// Lowercased scheme, `http` or `https`.
    pub scheme: String,
    /// Lowercased host; IPv6 literals keep their brackets.
    pub host: String,
    /// The explicit port, if the URL has one.
    pub port: Option<u16>,
    /// The path as written (`/` when empty).
    pub path: String,
    /// The raw query string without `?`, if any.
    pub query: Option<String>,
}

impl RequestUrl {
    /// Parses an absolute `http`/`https` URL. The fragment is dropped; userinfo is ignored.
    ///
    /// Hand-parsed rather than with a URI type because the query may carry raw Unicode (as
    /// in the X documentation's vectors) that strict URI parsers reject.
    pub fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| Error::Usage(format!("invalid URL {url:?}: {why}"));
        let url = url.split('#').next().unwrap_or_default();
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected http:// or https://"))?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return Err(bad("expected http:// or https://"));
        }
        let (before_query, query) = match rest.split_once('?') {
            Some((b, q)) => (b, Some(q.to_string())),
            None => (rest, None),
        };
        let (authority, path) = match before_query.find('/') {
            Some(i) => (&before_query[..i], &before_query[i..]),
            None => (before_query, "/"),
        };
        let host_port = authority.rsplit('@').next().unwrap_or_default();
        let (host, port) = split_host_port(host_port).ok_or_else(|| bad("invalid port"))?;
        if host.is_empty() {
            return Err(bad("no host"));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
            path: path.to_string(),
            query,
        })
    }
}

fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    let port_sep = if s.starts_with('[') {
        // IPv6 literal: a port can only follow the closing bracket.
        s.find(']')
            .and_then(|end| s[end..].find(':').map(|i| end + i))
    } else {
        s.rfind(':')
    };
    match port_sep {
        Some(i) if i + 1 == s.len() => Some((&s[..i], None)),
        Some(i) => s[i + 1..].parse().ok().map(|p| (&s[..i], Some(p))),
        None => Some((s, None)),
    }
}

/// The base string URI (RFC 5849 3.4.1.2): lowercase scheme and host, default port dropped,
/// no query, no fragment.
pub fn base_string_uri(url: &RequestUrl) -> String {
    let default_port = match url.scheme.as_str() {
        "http" => 80,
        _ => 443,
    };
    match url.port {
        Some(p) if p != default_port => format!("{}://{}:{}{}", url.scheme, url.host, p, url.path),
        _ => format!("{}://{}{}", url.scheme, url.host, url.path),
    }
}

/// The protocol parameters of one signature. `oauth_signature` is computed, not given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolParams {
    /// `oauth_consumer_key`.
    pub consumer_key: String,
    /// `oauth_token`; `None` for requests made before a token exists (RFC 5849 temporary
    /// credentials).
    pub token: Option<String>,
    /// `oauth_nonce`: unique per request.
    pub nonce: String,
    /// `oauth_timestamp`: seconds since the Unix epoch.
    pub timestamp: u64,
    /// Whether to send `oauth_version="1.0"` (optional in the RFC; X's examples send it).
    pub version: bool,
    /// Further `oauth_*` parameters such as `oauth_callback` or `oauth_verifier`.
    pub extra: Vec<(String, String)>,
}

impl ProtocolParams {
    /// The `oauth_*` pairs that are signed and sent, without `oauth_signature`.
    pub fn pairs(&self) -> Vec<(String, String)> {
        let mut pairs = vec![
            ("oauth_consumer_key".to_string(), self.consumer_key.clone()),
            ("oauth_nonce".to_string(), self.nonce.clone()),
            (
                "oauth_signature_method".to_string(),
                "HMAC-SHA1".to_string(),
            ),
            ("oauth_timestamp".to_string(), self.timestamp.to_string()),
        ];
        if let Some(token) = &self.token {
            pairs.push(("oauth_token".to_string(), token.clone()));
        }
        if self.version {
            pairs.push(("oauth_version".to_string(), "1.0".to_string()));
        }
        pairs.extend(self.extra.iter().cloned());
        pairs
    }
}

/// Collects the request parameters (RFC 5849 3.4.1.3.1): the query, the protocol parameters
/// and, only when the body is single-part form-urlencoded, the body. A JSON body is never
/// passed here.
pub fn collect_parameters(
    url: &RequestUrl,
    protocol: &ProtocolParams,
    form_body: Option<&str>,
) -> Vec<(String, String)> {
    let mut params = url.query.as_deref().map(parse_form).unwrap_or_default();
    params.extend(protocol.pairs());
    if let Some(body) = form_body {
        params.extend(parse_form(body));
    }
    params
}

/// Normalizes parameters (RFC 5849 3.4.1.3.2): encode, sort by encoded name then encoded value
/// (byte order), join as `name=value` with `&`.
pub fn normalize_parameters(params: &[(String, String)]) -> String {
    let mut encoded: Vec<(String, String)> = params
        .iter()
        .map(|(n, v)| (percent_encode(n), percent_encode(v)))
        .collect();
    // Unstable sorting is exact here (equal pairs are identical) and keeps one sort in the
    // binary instead of two.
    encoded.sort_unstable();
    encoded
        .iter()
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// The signature base string: `METHOD&enc(base_uri)&enc(normalized_params)`.
pub fn signature_base_string(method: &str, base_uri: &str, normalized_params: &str) -> String {
    format!(
        "{}&{}&{}",
        method.to_ascii_uppercase(),
        percent_encode(base_uri),
        percent_encode(normalized_params)
    )
}

/// The HMAC-SHA1 key: `enc(consumer_secret)&enc(token_secret)`; the `&` stays when a secret is
/// empty.
pub fn signing_key(consumer_secret: &str, token_secret: &str) -> String {
    format!(
        "{}&{}",
        percent_encode(consumer_secret),
        percent_encode(token_secret)
    )
}

/// Base64 of HMAC-SHA1(key, base string).
pub fn hmac_sha1(key: &str, base_string: &str) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha1>::new_from_slice(key.as_bytes()).expect("HMAC takes any key length");
    mac.update(base_string.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The `Authorization` header value: `OAuth k="v", ...` with names and values encoded.
pub fn authorization_header(protocol: &ProtocolParams, signature: &str) -> String {
    let mut pairs = protocol.pairs();
    pairs.push(("oauth_signature".to_string(), signature.to_string()));
    pairs.sort_unstable();
    let fields: Vec<String> = pairs
        .iter()
        .map(|(n, v)| format!("{}=\"{}\"", percent_encode(n), percent_encode(v)))
        .collect();
    format!("OAuth {}", fields.join(", "))
}

/// A request as far as signing is concerned.
#[derive(Debug, Clone)]
pub struct RequestToSign<'a> {
    /// HTTP method; uppercased in the base string.
    pub method: &'a str,
    /// The full request URL, query included.
    pub url: &'a str,
    /// The body, only when it is `application/x-www-form-urlencoded`.
    pub form_body: Option<&'a str>,
}

/// The result of signing, with the intermediate base string kept for `esxi-tweet sign`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// The signature base string that was signed.
    pub base_string: String,
    /// The base64 `oauth_signature`.
    pub signature: String,
    /// The complete `Authorization` header value.
    pub authorization: String,
}

/// Signs `request` with `credentials`, using the given nonce and timestamp.
pub fn sign(
    request: &RequestToSign<'_>,
    credentials: &Credentials,
    nonce: &str,
    timestamp: u64,
) -> Result<Signature, Error> {
    let protocol = ProtocolParams {
        consumer_key: credentials.consumer_key.clone(),
        token: Some(credentials.access_token.clone()),
        nonce: nonce.to_string(),
        timestamp,
        version: true,
        extra: Vec::new(),
    };
    sign_with(
        request,
        &protocol,
        credentials.consumer_secret.expose(),
        credentials.access_token_secret.expose(),
    )
}

/// Signs with explicit protocol parameters and secrets; [`sign`] is the usual entry point.
pub fn sign_with(
    request: &RequestToSign<'_>,
    protocol: &ProtocolParams,
    consumer_secret: &str,
    token_secret: &str,
) -> Result<Signature, Error> {
    let url = RequestUrl::parse(request.url)?;
    let params = collect_parameters(&url, protocol, request.form_body);
    let base_string = signature_base_string(
        request.method,
        &base_string_uri(&url),
        &normalize_parameters(&params),
    );
    let signature = hmac_sha1(&signing_key(consumer_secret, token_secret), &base_string);
    let authorization = authorization_header(protocol, &signature);
    Ok(Signature {
        base_string,
        signature,
        authorization,
    })
}

/// A fresh nonce: 32 alphanumerics from the operating system's random source.
///
/// The OS source (not a user-space generator) so that two hosts booted from the same image at
/// the same second never share a nonce. On kernels without `getrandom(2)` the source falls back
/// to `/dev/urandom`.
pub fn fresh_nonce() -> Result<String, Error> {
    use rand::TryRngCore as _;
    use rand::distr::{Alphanumeric, Distribution as _};
    let mut rng = rand::rngs::OsRng.unwrap_err();
    // Probe once so that a broken random source is an error, not a panic inside the sampler.
    let mut probe = [0u8; 1];
    rand::rngs::OsRng.try_fill_bytes(&mut probe).map_err(|e| {
        Error::Internal(format!("the operating system's random source failed: {e}"))
    })?;
    Ok(Alphanumeric
        .sample_iter(&mut rng)
        .take(32)
        .map(char::from)
        .collect())
}

/// Seconds since the Unix epoch by the local clock, shifted by `offset` seconds (the correction
/// learned from a server's `Date` header when the host clock is wrong).
pub fn unix_now(offset: i64) -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now.saturating_add(offset).max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::Secret;

    const X_CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
    const X_CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
    const X_TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
    const X_TOKEN_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
    const X_NONCE: &str = "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg";
    const X_TIMESTAMP: u64 = 1318622958;
    const X_STATUS_BODY: &str =
        "status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21";

    fn x_credentials() -> Credentials {
        Credentials {
            consumer_key: X_CONSUMER_KEY.into(),
            consumer_secret: Secret::new(X_CONSUMER_SECRET),
            access_token: X_TOKEN.into(),
            access_token_secret: Secret::new(X_TOKEN_SECRET),
        }
    }

    fn x_sign(method: &str, url: &str, form_body: Option<&str>) -> Signature {
        let request = RequestToSign {
            method,
            url,
            form_body,
        };
        sign(&request, &x_credentials(), X_NONCE, X_TIMESTAMP).unwrap()
    }

    #[test]
    fn percent_encoding_vectors() {
        assert_eq!(
            percent_encode("Ladies + Gentlemen"),
            "Ladies%20%2B%20Gentlemen"
        );
        assert_eq!(
            percent_encode("An encoded string!"),
            "An%20encoded%20string%21"
        );
        assert_eq!(
            percent_encode("Dogs, Cats & Mice"),
            "Dogs%2C%20Cats%20%26%20Mice"
        );
        assert_eq!(percent_encode("☃"), "%E2%98%83");
        assert_eq!(percent_encode("-._~*'()!"), "-._~%2A%27%28%29%21");
    }

    #[test]
    fn x_docs_parameter_string() {
        let url = RequestUrl::parse(
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
        )
        .unwrap();
        let protocol = ProtocolParams {
            consumer_key: X_CONSUMER_KEY.into(),
            token: Some(X_TOKEN.into()),
            nonce: X_NONCE.into(),
            timestamp: X_TIMESTAMP,
            version: true,
            extra: vec![],
        };
        let params = collect_parameters(
            &url,
            &protocol,
            Some("status=Hello%20Ladies%20%2b%20Gentlemen%2c%20a%20signed%20OAuth%20request%21"),
        );
        assert_eq!(
            normalize_parameters(&params),
            "include_entities=true&oauth_consumer_key=xvz1evFS4wEEPTGEFPHBog&oauth_nonce=kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg&oauth_signature_method=HMAC-SHA1&oauth_timestamp=1318622958&oauth_token=370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb&oauth_version=1.0&status=Hello%20Ladies%20%2B%20Gentlemen%2C%20a%20signed%20OAuth%20request%21"
        );
    }

    #[test]
    fn x_docs_v1_signatures() {
        for (base, want) in [
            (
                "https://api.twitter.com/1.1/statuses/update.json",
                "hCtSmYh+iHYCEqBWrE7C7hYmtUk=",
            ),
            (
                "https://api.x.com/1.1/statuses/update.json",
                "Ls93hJiZbQ3akF3HF3x1Bz8/zU4=",
            ),
            (
                "https://api.twitter.com/1/statuses/update.json",
                "tnnArxj06cWHq44gCs1OSKk/jLY=",
            ),
        ] {
            let url = format!("{base}?include_entities=true");
            let got = x_sign("POST", &url, Some(X_STATUS_BODY));
            assert_eq!(got.signature, want, "{url}");
        }
    }

    #[test]
    fn x_docs_signatures_without_body() {
        for (method, url, want) in [
            (
                "POST",
                "https://api.x.com/2/tweets",
                "lr+tV/DKclEvXKVjG6tgaSSLV0k=",
            ),
            (
                "POST",
                "https://api.twitter.com/2/tweets",
                "KW/bTR/89oblzvjn7CwP2L8j5qQ=",
            ),
            (
                "POST",
                "https://example.com/post.json",
                "pN52L1gJ6sOyYOyv23cwfWFsIZc=",
            ),
            (
                "GET",
                "https://stream.twitter.com/1.1/statuses/sample.json?stall_warnings=true",
                "OGQqcy4l5xWBFX7t0DrkP5/D0rM=",
            ),
            (
                "GET",
                "https://example.com/get.json?bar=酒場&foo=ふー",
                "Xp35hf3T21yhpEuxez7p6bV62Bw=",
            ),
        ] {
            assert_eq!(x_sign(method, url, None).signature, want, "{method} {url}");
        }
    }

    fn rfc_sign(
        method: &str,
        url: &str,
        token: Option<(&str, &str)>,
        timestamp: u64,
        nonce: &str,
        extra: &[(&str, &str)],
    ) -> Signature {
        let protocol = ProtocolParams {
            consumer_key: "dpf43f3p2l4k3l03".into(),
            token: token.map(|(t, _)| t.to_string()),
            nonce: nonce.into(),
            timestamp,
            version: false,
            extra: extra
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
        };
        let request = RequestToSign {
            method,
            url,
            form_body: None,
        };
        sign_with(
            &request,
            &protocol,
            "kd94hf93k423kf44",
            token.map(|(_, s)| s).unwrap_or(""),
        )
        .unwrap()
    }

    /// Method, URL, token pair, timestamp, nonce, extra parameters.
    type Vector<'a> = (
        &'a str,
        &'a str,
        Option<(&'a str, &'a str)>,
        u64,
        &'a str,
        &'a [(&'a str, &'a str)],
    );

    #[test]
    fn rfc5849_section_1_2_flow() {
        // The three requests of the flow: initiate, token, the protected resource.
        const INITIATE: &str = "https://photos.example.net/initiate";
        const TOKEN: &str = "https://photos.example.net/token";
        const PHOTOS: &str = "http://photos.example.net/photos?file=vacation.jpg&size=original";
        let request_token = Some(("hh5s93j4hdidpola", "hdhd0244k9j7ao03"));
        let access_token = Some(("nnch734d00sl2jdk", "pfkkdhi9sl3r4s00"));
        let callback = [("oauth_callback", "http://printer.example.com/ready")];
        let verifier = [("oauth_verifier", "hfdp7dh39dks9884")];
        let requests: [Vector; 3] = [
            ("POST", INITIATE, None, 137131200, "wIjqoS", &callback),
            (
                "POST",
                TOKEN,
                request_token,
                137131201,
                "walatlh",
                &verifier,
            ),
            ("GET", PHOTOS, access_token, 137131202, "chapoH", &[]),
        ];
        let signatures = [
            "74KNZJeDHnMBp0EMJ9ZHt/XKycU=",
            "gKgrFCywp7rO0OXSjdot/IHF7IU=",
            "MdpQcU8iPSUjWoN/UDMsK2sui9I=",
        ];
        let flow = requests.into_iter().zip(signatures);
        for ((method, url, token, timestamp, nonce, extra), signature) in flow {
            let signed = rfc_sign(method, url, token, timestamp, nonce, extra);
            assert_eq!(signed.signature, signature, "{method} {url}");
        }
    }

    #[test]
    fn rfc5849_section_3_4_1_base_string() {
        let protocol = ProtocolParams {
            consumer_key: "9djdj82h48djs9d2".into(),
            token: Some("kkk9d7dh3k39sjv7".into()),
            nonce: "7d8f3e4a".into(),
            timestamp: 137131201,
            version: false,
            extra: vec![],
        };
        let request = RequestToSign {
            method: "POST",
            url: "http://example.com/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b",
            form_body: Some("c2&a3=2+q"),
        };
        let signed = sign_with(&request, &protocol, "j49sk3j29djd", "dh893hdasih9").unwrap();
        assert_eq!(
            signed.base_string,
            "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%26oauth_token%3Dkkk9d7dh3k39sjv7"
        );
        assert_eq!(signed.signature, "r6/TJjbCOr97/+UU0NsvSne7s5g=");
    }

    #[test]
    fn base_string_uri_normalization() {
        for (url, want) in [
            (
                "HTTP://Example.COM:80/r%20v/X?id=123",
                "http://example.com/r%20v/X",
            ),
            (
                "https://www.example.net:8080/?q=1",
                "https://www.example.net:8080/",
            ),
            (
                "https://api.x.com:443/2/tweets#frag",
                "https://api.x.com/2/tweets",
            ),
            ("http://127.0.0.1:443", "http://127.0.0.1:443/"),
            ("https://user:pw@[::1]:8443/p", "https://[::1]:8443/p"),
        ] {
            assert_eq!(base_string_uri(&RequestUrl::parse(url).unwrap()), want);
        }
        assert!(RequestUrl::parse("ftp://example.com/").is_err());
        assert!(RequestUrl::parse("example.com/x").is_err());
        assert!(RequestUrl::parse("https://example.com:99999/").is_err());
    }

    #[test]
    fn authorization_header_shape() {
        let signed = x_sign("POST", "https://api.x.com/2/tweets", None);
        assert_eq!(
            signed.authorization,
            "OAuth oauth_consumer_key=\"xvz1evFS4wEEPTGEFPHBog\", \
             oauth_nonce=\"kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg\", \
             oauth_signature=\"lr%2BtV%2FDKclEvXKVjG6tgaSSLV0k%3D\", \
             oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"1318622958\", \
             oauth_token=\"370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb\", \
             oauth_version=\"1.0\""
        );
    }

    #[test]
    fn signing_key_keeps_ampersand() {
        assert_eq!(signing_key("a b", ""), "a%20b&");
    }

    #[test]
    fn nonces_are_alphanumeric_and_fresh() {
        let a = fresh_nonce().unwrap();
        let b = fresh_nonce().unwrap();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}

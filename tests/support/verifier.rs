//! An OAuth 1.0a verifier that shares no code with the agent's signer: it drives the
//! `oauth1-request` crate, with its own percent-encoding, to compute the signature a request
//! should carry.

use std::num::NonZeroU64;

use oauth::serializer::{Serializer, SerializerExt as _};
use oauth1_request as oauth;

/// RFC 3986 unreserved characters stay, everything else becomes `%XX` (uppercase).
pub fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes one form-urlencoded component (`+` is a space).
pub fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a form-urlencoded string into decoded pairs.
pub fn parse_form(s: &str) -> Vec<(String, String)> {
    s.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((n, v)) => (decode(n), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// The `oauth_*` fields of an `Authorization: OAuth ...` header, decoded.
pub fn parse_authorization(header: &str) -> Option<Vec<(String, String)>> {
    let fields = header.strip_prefix("OAuth ")?;
    fields
        .split(',')
        .map(|f| {
            let (name, value) = f.trim().split_once('=')?;
            let value = value.strip_prefix('"')?.strip_suffix('"')?;
            Some((decode(name), decode(value)))
        })
        .collect()
}

/// Request parameters in RFC order. oauth1-request writes keys into the base string as given
/// and expects them sorted, so keys are handed over doubly encoded (as they appear in the base
/// string) and sorted here by encoded name and value, which is the RFC's order.
struct Params(Vec<(String, String)>);

impl oauth::Request for Params {
    fn serialize<S: Serializer>(&self, mut serializer: S) -> S::Output {
        let mut oauth_written = false;
        for (key, value) in &self.0 {
            if !oauth_written && key.as_str() > "oauth_" {
                serializer.serialize_oauth_parameters();
                oauth_written = true;
            }
            serializer.serialize_parameter(key, value);
        }
        if !oauth_written {
            serializer.serialize_oauth_parameters();
        }
        serializer.end()
    }
}

/// The request as the verifier needs it.
pub struct Signed<'a> {
    pub method: &'a str,
    /// Base string URI: scheme, host, port if not default, path.
    pub base_uri: &'a str,
    /// Decoded non-oauth parameters: query and form body.
    pub params: Vec<(String, String)>,
    pub consumer_key: &'a str,
    pub consumer_secret: &'a str,
    /// Empty for a request made before a token exists (the request-token step).
    pub token: &'a str,
    pub token_secret: &'a str,
    /// `oauth_callback` and `oauth_verifier` of the PIN flow.
    pub callback: Option<&'a str>,
    pub verifier: Option<&'a str>,
    pub nonce: &'a str,
    pub timestamp: u64,
    pub version: bool,
}

/// The base64 signature oauth1-request computes for `request`.
pub fn expected_signature(request: &Signed<'_>) -> String {
    let mut params: Vec<(String, String)> = request
        .params
        .iter()
        .map(|(k, v)| (encode(k), v.clone()))
        .collect();
    params.sort_by(|a, b| (&a.0, encode(&a.1)).cmp(&(&b.0, encode(&b.1))));
    let params = Params(params.into_iter().map(|(k, v)| (encode(&k), v)).collect());
    let mut builder = oauth::Builder::<_, _>::new(
        oauth::Credentials::new(request.consumer_key, request.consumer_secret),
        oauth::HmacSha1::new(),
    );
    let token = (!request.token.is_empty())
        .then(|| oauth::Credentials::new(request.token, request.token_secret));
    builder
        .token(token)
        .callback(request.callback)
        .verifier(request.verifier)
        .nonce(request.nonce)
        .timestamp(NonZeroU64::new(request.timestamp))
        .version(request.version);
    let header = builder.authorize(request.method, request.base_uri, &params);
    parse_authorization(&header)
        .and_then(|fields| {
            fields
                .into_iter()
                .find(|(n, _)| n == "oauth_signature")
                .map(|(_, v)| v)
        })
        .expect("oauth1-request wrote a signature")
}

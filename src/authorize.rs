//! `esxi-tweet authorize`: the PIN-based OAuth 1.0a flow (as twurl's `authorize`), so that a
//! team gets an access token for a dedicated announcement account without that account owning
//! the app, and without copying secrets out of the developer portal by hand.
//!
//! 1. `POST /oauth/request_token` with `oauth_callback="oob"`, signed with the app's keys;
//! 2. the user opens `/oauth/authorize?oauth_token=...` signed in as the posting account, and
//!    X shows a PIN;
//! 3. `POST /oauth/access_token` with `oauth_verifier=<PIN>`, signed with the request token;
//! 4. the access token and its secret go into the config file, written whole or not at all.
//!
//! The network is behind [`Exchange`] so that the flow's decisions are tested without it.

use std::io::BufRead;
use std::path::Path;

use crate::api::{self, Outgoing};
use crate::config;
use crate::credentials::Secret;
use crate::error::Error;
use crate::oauth::{self, ProtocolParams};
use crate::transport::{SendError, Transport};

pub use crate::credentials::AppKeys;

/// What the flow ends with.
#[derive(Debug, Clone)]
pub struct Authorized {
    /// The account's access token.
    pub access_token: String,
    /// Its secret.
    pub access_token_secret: Secret,
    /// The account's handle, without `@`.
    pub screen_name: String,
}

/// Sends one signed, empty-bodied `POST` and returns the status and body.
pub trait Exchange {
    /// `url` with `authorization`; network failures as [`Error`]s.
    fn post(&self, url: &str, authorization: &str) -> Result<(u16, String), Error>;
}

/// The HTTPS client with the timeout of one exchange (`--timeout`).
pub struct Timed<'t>(pub &'t Transport, pub std::time::Duration);

impl Exchange for Timed<'_> {
    fn post(&self, url: &str, authorization: &str) -> Result<(u16, String), Error> {
        let request = Outgoing {
            method: "POST",
            url: url.to_string(),
            content_type: "application/x-www-form-urlencoded",
            body: String::new(),
            body_is_form: true,
        };
        match self.0.send(&request, authorization, self.1) {
            Ok(response) => Ok((response.status, response.body)),
            Err(SendError::Fatal(e)) => Err(e),
            Err(SendError::Retryable(why) | SendError::OutcomeUnknown(why)) => Err(
                Error::Temporary(format!("cannot reach the API: {why}; try again")),
            ),
        }
    }
}

/// A request token: good for one authorization, for a few minutes.
#[derive(Debug)]
pub struct RequestToken {
    /// `oauth_token`, which the authorize URL carries.
    pub token: String,
    secret: Secret,
}

/// Step 1: a request token for the out-of-band (PIN) flow.
pub fn request_token(
    exchange: &dyn Exchange,
    api_base: &str,
    app: &AppKeys,
    nonce: &str,
    timestamp: u64,
) -> Result<RequestToken, Error> {
    let step = Step {
        path: "request_token",
        token: None,
        extra: ("oauth_callback", "oob"),
    };
    let (status, body) = post_step(exchange, api_base, app, step, nonce, timestamp)?;
    if status == 401 {
        return Err(Error::Auth(format!(
            "X refused the app's keys (HTTP 401: {}); check TWITTER_CONSUMER_KEY and TWITTER_CONSUMER_SECRET (the app's API key and secret)",
            api::excerpt(&body)
        )));
    }
    let form = success_form(status, &body, "a request token")?;
    // RFC 5849 2.1: the server must confirm the callback; one that does not is not speaking
    // OAuth 1.0a (or was tampered with), and its PIN page is not to be trusted.
    if form
        .iter()
        .find(|(name, _)| name == "oauth_callback_confirmed")
        .is_none_or(|(_, value)| value != "true")
    {
        // The answer holds the request token's secret: it is not quoted.
        return Err(Error::ApiRefused(
            "the request token came without oauth_callback_confirmed=true: is --api-base X's API?"
                .to_string(),
        ));
    }
    let (token, secret) = token_pair(&form, "a request token")?;
    Ok(RequestToken { token, secret })
}

/// Step 2: where the user gets the PIN.
pub fn authorize_url(api_base: &str, token: &RequestToken) -> String {
    format!(
        "{}/oauth/authorize?oauth_token={}",
        api_base.trim_end_matches('/'),
        oauth::percent_encode(&token.token)
    )
}

/// The PIN as typed: digits only, surrounding white space (a pasted line's) ignored.
pub fn parse_pin(typed: &str) -> Result<String, Error> {
    let pin = typed.trim();
    if pin.is_empty() {
        return Err(Error::Usage(
            "no PIN given: open the URL above, authorize the app, and type the digits X shows"
                .to_string(),
        ));
    }
    if !pin.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Usage(
            "the PIN is the digits X shows, with nothing between them (no spaces or dashes): run esxi-tweet authorize again"
                .to_string(),
        ));
    }
    Ok(pin.to_string())
}

/// Reads one line (the PIN) from `input`.
pub fn read_pin(input: impl BufRead) -> Result<String, Error> {
    let mut line = String::new();
    input
        .take(1024)
        .read_line(&mut line)
        .map_err(|e| Error::Usage(format!("cannot read the PIN: {e}")))?;
    parse_pin(&line)
}

/// Step 3: the access token, in exchange for the request token and the PIN.
pub fn access_token(
    exchange: &dyn Exchange,
    api_base: &str,
    app: &AppKeys,
    request: &RequestToken,
    pin: &str,
    nonce: &str,
    timestamp: u64,
) -> Result<Authorized, Error> {
    let step = Step {
        path: "access_token",
        token: Some(request),
        extra: ("oauth_verifier", pin),
    };
    let (status, body) = post_step(exchange, api_base, app, step, nonce, timestamp)?;
    if status == 401 {
        let lower = body.to_ascii_lowercase();
        return Err(Error::Auth(if lower.contains("request token") {
            "the authorization expired or was used already (X's request tokens last a few minutes): run esxi-tweet authorize again".to_string()
        } else {
            format!(
                "X refused the PIN (HTTP 401: {}): check the digits, or run esxi-tweet authorize again for a new one",
                api::excerpt(&body)
            )
        }));
    }
    let form = success_form(status, &body, "an access token")?;
    let screen_name = field(&form, "screen_name", "an access token")?;
    if screen_name.is_empty()
        || !screen_name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Error::ApiRefused(
            "the API's answer named no valid account (screen_name): nothing was written"
                .to_string(),
        ));
    }
    let (access_token, access_token_secret) = token_pair(&form, "an access token")?;
    Ok(Authorized {
        access_token,
        access_token_secret,
        screen_name,
    })
}

/// One POST of the PIN flow.
struct Step<'a> {
    /// Under `/oauth/`.
    path: &'a str,
    /// The request token, once there is one.
    token: Option<&'a RequestToken>,
    /// The step's own protocol parameter.
    extra: (&'a str, &'a str),
}

/// Signs `step` with the app's keys (and the request token's secret) and posts it.
fn post_step(
    exchange: &dyn Exchange,
    api_base: &str,
    app: &AppKeys,
    step: Step<'_>,
    nonce: &str,
    timestamp: u64,
) -> Result<(u16, String), Error> {
    let url = format!("{}/oauth/{}", api_base.trim_end_matches('/'), step.path);
    let (name, value) = step.extra;
    let protocol = ProtocolParams {
        extra: vec![(name.to_string(), value.to_string())],
        consumer_key: app.consumer_key.clone(),
        token: step.token.map(|t| t.token.clone()),
        nonce: nonce.to_string(),
        timestamp,
        version: true,
    };
    let request = oauth::RequestToSign {
        method: "POST",
        url: &url,
        form_body: Some(""),
    };
    let token_secret = step.token.map_or("", |t| t.secret.expose());
    let signed = oauth::sign_with(
        &request,
        &protocol,
        app.consumer_secret.expose(),
        token_secret,
    )?;
    exchange.post(&url, &signed.authorization)
}

/// The `oauth_token` and `oauth_token_secret` of an answer that grants `what`.
fn token_pair(form: &[(String, String)], what: &str) -> Result<(String, Secret), Error> {
    let token = field(form, "oauth_token", what)?;
    Ok((token, Secret::new(field(form, "oauth_token_secret", what)?)))
}

fn success_form(status: u16, body: &str, what: &str) -> Result<Vec<(String, String)>, Error> {
    if !(200..300).contains(&status) {
        let hint = if status == 429 || status >= 500 {
            "; try again later"
        } else {
            ""
        };
        let error = format!(
            "the API refused {what} (HTTP {status}: {}){hint}",
            api::excerpt(body)
        );
        return Err(if status == 429 || status >= 500 {
            Error::Temporary(error)
        } else if status == 403 {
            Error::Auth(error)
        } else {
            Error::ApiRefused(error)
        });
    }
    Ok(oauth::parse_form(body.trim()))
}

fn field(form: &[(String, String)], name: &str, what: &str) -> Result<String, Error> {
    form.iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.clone())
        .filter(|v| !v.is_empty() && v.len() <= 512)
        .ok_or_else(|| {
            Error::ApiRefused(format!(
                "the API's answer to {what} has no {name}: is --api-base the X API?"
            ))
        })
}

/// What is said of a config file `authorize` will not write.
pub const LEFT_ALONE: &str = "authorize writes only a config file it understands, so this one was left alone: fix it, or pass --config with another path";

/// Step 4: `path` with the four credentials set, other settings and comments kept; created
/// (0600, directory 0700) when missing. A file that is not an esxi-tweet config is left alone.
pub fn write_config(path: &Path, app: &AppKeys, authorized: &Authorized) -> Result<(), Error> {
    let shown = path.display();
    let existing = match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read config file {shown}: {e}; nothing was written"
            )));
        }
    };
    if let Some(text) = &existing {
        // Ours means: TOML with only the keys we know. Anything else is someone else's file.
        if let Err(e) = config::parse_file(path, text) {
            return Err(Error::Config(format!("{e}; {LEFT_ALONE}")));
        }
    }
    let values = crate::credentials::by_key(
        (&app.consumer_key, &app.consumer_secret),
        (&authorized.access_token, &authorized.access_token_secret),
    );
    let updated = with_values(existing.as_deref().unwrap_or(""), &values);
    // The line edit keeps comments; should it not give exactly these values (a key written in
    // an unusual way), the file is rewritten from its parsed form instead.
    let updated = match config::parse_file(path, &updated) {
        Ok(parsed) if has_values(&parsed, app, authorized) => updated,
        _ => rewritten(existing.as_deref().unwrap_or(""), &values)?,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::Config(format!("cannot create {}: {e}", dir.display())))?;
    }
    // A new file, 0600 from its creation, renamed over the old one: whatever mode the old
    // file had, the secrets are never readable by others, and never half written.
    crate::output::write_atomically(path, updated.as_bytes(), 0o600).map_err(|e| {
        Error::Config(format!(
            "cannot write config file {shown}: {e}; nothing was written"
        ))
    })
}

fn has_values(parsed: &config::FileConfig, app: &AppKeys, authorized: &Authorized) -> bool {
    parsed.consumer_key.as_deref() == Some(app.consumer_key.as_str())
        && parsed.consumer_secret.as_ref() == Some(&app.consumer_secret)
        && parsed.access_token.as_deref() == Some(authorized.access_token.as_str())
        && parsed.access_token_secret.as_ref() == Some(&authorized.access_token_secret)
}

/// `text` parsed and written again with `values` set: comments are lost, the rest is kept.
fn rewritten(text: &str, values: &[(&str, &str)]) -> Result<String, Error> {
    let mut table: toml::Table = toml::from_str(text).map_err(|_| {
        Error::Internal("the config file stopped parsing between two reads".to_string())
    })?;
    for &(key, value) in values {
        table.insert(key.to_string(), toml::Value::String(value.to_string()));
    }
    toml::to_string(&table)
        .map_err(|e| Error::Internal(format!("cannot write the config file's TOML: {e}")))
}

/// `text` (a config file's TOML) with each of `values` set as a top-level key: an existing
/// line replaced in place, a missing key added before the first table.
fn with_values(text: &str, values: &[(&str, &str)]) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let first_table = lines
        .iter()
        .position(|l| l.trim_start().starts_with('['))
        .unwrap_or(lines.len());
    let mut missing = Vec::new();
    for &(key, value) in values {
        let line = format!("{key} = {}", toml_string(value));
        let existing = lines[..first_table]
            .iter()
            .position(|l| l.split_once('=').is_some_and(|(k, _)| k.trim() == key));
        match existing {
            Some(i) => lines[i] = line,
            None => missing.push(line),
        }
    }
    let mut out: Vec<String> = lines[..first_table].to_vec();
    out.extend(missing);
    if first_table < lines.len() {
        out.push(String::new());
        out.extend(lines[first_table..].iter().cloned());
    }
    let mut text = out.join("\n");
    text.push('\n');
    text
}

/// `value` as a TOML basic string.
fn toml_string(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

/// What `esxi-tweet authorize` prints at the end: the account, never a token.
pub fn summary(authorized: &Authorized, path: &Path) -> String {
    format!(
        "authorized @{}; credentials written to {}\n",
        authorized.screen_name,
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    struct Scripted(RefCell<Vec<(u16, String)>>, RefCell<Vec<(String, String)>>);

    impl Exchange for Scripted {
        fn post(&self, url: &str, authorization: &str) -> Result<(u16, String), Error> {
            self.1
                .borrow_mut()
                .push((url.to_string(), authorization.to_string()));
            Ok(self.0.borrow_mut().remove(0))
        }
    }

    fn app() -> AppKeys {
        AppKeys {
            consumer_key: "ck".into(),
            consumer_secret: Secret::new("cs-secret"),
        }
    }

    #[test]
    fn pins_are_digits_only() {
        assert_eq!(parse_pin(" 1234567\n").unwrap(), "1234567");
        for bad in ["123 4567", "12-34567", "", "\n", "abc"] {
            let err = parse_pin(bad).unwrap_err();
            assert_eq!(err.exit_code(), 64, "{bad:?}");
        }
    }

    #[test]
    fn a_request_token_without_a_confirmed_callback_is_refused() {
        for answer in [
            "oauth_token=req&oauth_token_secret=reqsecret&oauth_callback_confirmed=false",
            "oauth_token=req&oauth_token_secret=reqsecret",
        ] {
            let exchange = Scripted(
                RefCell::new(vec![(200, answer.into())]),
                RefCell::new(vec![]),
            );
            let err = request_token(&exchange, "https://api.x.com", &app(), "n", 1).unwrap_err();
            assert!(
                err.to_string().contains("oauth_callback_confirmed"),
                "{err}"
            );
            assert!(!err.to_string().contains("reqsecret"), "{err}");
        }
    }

    #[test]
    fn request_token_carries_the_callback_and_no_token() {
        let exchange = Scripted(
            RefCell::new(vec![(
                200,
                "oauth_token=req&oauth_token_secret=reqsecret&oauth_callback_confirmed=true".into(),
            )]),
            RefCell::new(vec![]),
        );
        let token = request_token(&exchange, "https://api.x.com/", &app(), "n", 1).unwrap();
        assert_eq!(token.token, "req");
        let (url, auth) = exchange.1.borrow()[0].clone();
        assert_eq!(url, "https://api.x.com/oauth/request_token");
        assert!(auth.contains("oauth_callback=\"oob\""), "{auth}");
        assert!(!auth.contains("oauth_token"), "{auth}");
        assert_eq!(
            authorize_url("https://api.x.com", &token),
            "https://api.x.com/oauth/authorize?oauth_token=req"
        );
    }

    #[test]
    fn refusals_say_what_to_do() {
        let token = RequestToken {
            token: "req".into(),
            secret: Secret::new("s"),
        };
        let exchange = Scripted(
            RefCell::new(vec![(401, "Invalid request token.".into())]),
            RefCell::new(vec![]),
        );
        let err = access_token(&exchange, "https://x", &app(), &token, "1", "n", 1).unwrap_err();
        assert_eq!(err.exit_code(), 77);
        assert!(err.to_string().contains("expired"), "{err}");
        let exchange = Scripted(
            RefCell::new(vec![(
                200,
                "oauth_token=a&oauth_token_secret=b&screen_name=\u{1b}[2J".into(),
            )]),
            RefCell::new(vec![]),
        );
        let err = access_token(&exchange, "https://x", &app(), &token, "1", "n", 1).unwrap_err();
        assert!(!err.to_string().contains('\u{1b}'));
    }

    #[test]
    fn values_replace_lines_and_keep_the_rest() {
        let text =
            "# our announcer\napi = \"v2\"\naccess_token = \"old\"\n\n[boot]\nmessage = \"x\"\n";
        let out = with_values(
            text,
            &[("access_token", "new"), ("consumer_key", "k\"q'\\")],
        );
        assert!(out.starts_with("# our announcer\napi = \"v2\"\naccess_token = \"new\"\n"));
        let parsed: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(parsed["consumer_key"].as_str(), Some("k\"q'\\"));
        assert_eq!(parsed["boot"]["message"].as_str(), Some("x"));
        assert_eq!(parsed.len(), 4);
        assert_eq!(with_values("", &[("a", "b")]), "a = \"b\"\n");
    }
}

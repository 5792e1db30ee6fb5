//! A fake X API on 127.0.0.1 over HTTPS. It checks every request's OAuth signature with the
//! independent verifier, enforces timestamp bounds and nonce uniqueness as X does, and answers
//! with X's real response shapes. Tests script its behaviour and read what it received.

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::verifier::{self, Signed};
use super::{ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET};

/// A canned answer for the next correctly signed request.
#[derive(Clone, Debug)]
pub struct Canned {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Canned {
    pub fn new(status: u16, body: &str) -> Self {
        Self {
            status,
            headers: vec![],
            body: body.into(),
        }
    }
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// How the fake server behaves.
#[derive(Default)]
pub struct Behaviour {
    /// Seconds the server's clock is ahead of the real one.
    pub clock_offset: i64,
    /// The app has Read permission only.
    pub read_only: bool,
    /// The app's tier may use API v1.1 (else error 453 there).
    pub v1_allowed: bool,
    /// Answers for the next correctly signed requests, before the normal logic.
    pub script: VecDeque<Canned>,
    /// The next this many posts are made, but their answer is cut after its head and half
    /// its body, and the connection closed.
    pub cut_answers: usize,
    /// The next this many posts are made, but the connection is closed without an answer.
    pub lose_answers: usize,
    /// Request tokens of the PIN flow expire before they can be exchanged.
    pub expire_request_tokens: bool,
    /// The next this many posts are made at once but answered only after `answer_delay`
    /// (a slow API, or one to kill a client in front of).
    pub delayed_answers: usize,
    /// How long a delayed answer takes.
    pub answer_delay: Duration,
    /// The answer to `GET /2/users/me` (the relay's credential check) instead of the account.
    pub me: Option<Canned>,
}

/// A post the fake API accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Post {
    pub id: String,
    pub text: String,
    /// The post it answers, if any.
    pub reply_to: Option<String>,
}

/// The PIN the fake API's authorize page "shows" the user.
pub const PIN: &str = "4711081";
/// The account the PIN flow authorizes.
pub const SCREEN_NAME: &str = "esx_announcer";
/// What every request token secret starts with; no output may contain one.
pub const REQUEST_SECRET_PREFIX: &str = "REQUEST-SECRET-";

/// One request the server received.
#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// Whether the OAuth signature matched the verifier's.
    pub signature_ok: bool,
    pub nonce: String,
    pub timestamp: u64,
    pub status: u16,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

struct State {
    behaviour: Behaviour,
    received: Vec<Received>,
    nonces: HashSet<String>,
    posted: Vec<String>,
    posts: Vec<Post>,
    next_id: u64,
    /// Request tokens issued: secret, and whether it was exchanged already.
    request_tokens: HashMap<String, (String, bool)>,
}

/// A running fake X API.
pub struct FakeX {
    pub port: u16,
    /// PEM file of the test CA that signed the server's certificate.
    pub ca_file: PathBuf,
    state: Arc<Mutex<State>>,
}

impl FakeX {
    /// Starts a server with `behaviour`; the CA file is written into `dir`.
    pub fn start(dir: &Path, behaviour: Behaviour) -> Self {
        Self::serve(&Pki::generate(dir), behaviour, 0)
    }

    /// Starts with an existing test CA on a given port (0: any), for tests where the API
    /// appears only after the client has been configured.
    pub fn serve(pki: &Pki, behaviour: Behaviour, port: u16) -> Self {
        let config = pki.config.clone();
        let ca_file = pki.ca_file.clone();
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            behaviour,
            received: vec![],
            nonces: HashSet::new(),
            posted: vec![],
            posts: vec![],
            next_id: 1_800_000_000_000_000_000,
            request_tokens: HashMap::new(),
        }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                let config = config.clone();
                std::thread::spawn(move || serve_connection(stream, config, port, state));
            }
        });
        Self {
            port,
            ca_file,
            state,
        }
    }

    pub fn base_url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Points `cmd` at this API: `--api-base` and `--ca-file` with the test CA.
    pub fn client<'c>(&self, cmd: &'c mut std::process::Command) -> &'c mut std::process::Command {
        cmd.args(["--api-base", &self.base_url()])
            .arg("--ca-file")
            .arg(&self.ca_file)
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.lock().unwrap().received.clone()
    }

    /// Texts accepted as posts, in order.
    pub fn posted(&self) -> Vec<String> {
        self.state.lock().unwrap().posted.clone()
    }

    /// Posts accepted, with their ids and what they answer.
    pub fn posts(&self) -> Vec<Post> {
        self.state.lock().unwrap().posts.clone()
    }
}

/// A test CA and a server certificate for 127.0.0.1 signed by it.
pub struct Pki {
    /// PEM file of the CA.
    pub ca_file: PathBuf,
    config: Arc<rustls::ServerConfig>,
}

impl Pki {
    /// Generates the CA and the server certificate; the CA's PEM goes into `dir`.
    pub fn generate(dir: &Path) -> Self {
        let (ca_pem, config) = super::test_ca::generate("esxi-tweet test CA");
        let ca_file = dir.join("test-ca.pem");
        std::fs::write(&ca_file, ca_pem).unwrap();
        Self { ca_file, config }
    }
}

fn serve_connection(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    port: u16,
    state: Arc<Mutex<State>>,
) {
    tcp.set_read_timeout(Some(Duration::from_secs(30))).ok();
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    let mut buf = Vec::new();
    loop {
        let Some((method, path, headers, body)) = read_request(&mut tls, &mut buf) else {
            return;
        };
        let (status, mut extra, body) = answer(&state, port, method, path, headers, body);
        let fault = extra
            .iter()
            .position(|(n, _)| n == FAULT)
            .map(|i| extra.remove(i).1);
        if fault.as_deref() == Some("lose") {
            return;
        }
        if let Some(i) = extra.iter().position(|(n, _)| n == DELAY) {
            let millis: u64 = extra.remove(i).1.parse().unwrap_or(0);
            // The fake API being slow, not a test waiting for it.
            std::thread::sleep(Duration::from_millis(millis));
        }
        let reason = match status {
            200 => "OK",
            201 => "Created",
            401 => "Unauthorized",
            403 => "Forbidden",
            429 => "Too Many Requests",
            503 => "Service Unavailable",
            _ => "Status",
        };
        let date = httpdate::fmt_http_date(server_now(&state));
        let mut head = format!(
            "HTTP/1.1 {status} {reason}\r\ndate: {date}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (n, v) in extra {
            head.push_str(&format!("{n}: {v}\r\n"));
        }
        head.push_str("\r\n");
        let sent = if fault.as_deref() == Some("cut") {
            &body[..body.len() / 2]
        } else {
            &body
        };
        if tls.write_all(head.as_bytes()).is_err() || tls.write_all(sent.as_bytes()).is_err() {
            return;
        }
        if fault.is_some() {
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
            return;
        }
        let _ = tls.flush();
    }
}

type Request = (String, String, Vec<(String, String)>, String);

/// A pseudo-header from `answer` to `serve_connection`: how to break this answer.
const FAULT: &str = "x-fake-fault";
/// A pseudo-header from `answer` to `serve_connection`: milliseconds to hold this answer.
const DELAY: &str = "x-fake-delay";

fn read_request(stream: &mut impl Read, buf: &mut Vec<u8>) -> Option<Request> {
    let mut chunk = [0u8; 8192];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let mut headers = [httparse::EMPTY_HEADER; 64];
            let mut req = httparse::Request::new(&mut headers);
            req.parse(&buf[..end + 4]).ok()?;
            let method = req.method?.to_string();
            let path = req.path?.to_string();
            let headers: Vec<(String, String)> = req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_ascii_lowercase(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect();
            let length: usize = headers
                .iter()
                .find(|(n, _)| n == "content-length")
                .and_then(|(_, v)| v.parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + length {
                let n = stream.read(&mut chunk).ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + length]).into_owned();
            buf.drain(..end + 4 + length);
            return Some((method, path, headers, body));
        }
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn server_now(state: &Mutex<State>) -> SystemTime {
    let offset = state.lock().unwrap().behaviour.clock_offset;
    if offset >= 0 {
        SystemTime::now() + Duration::from_secs(offset as u64)
    } else {
        SystemTime::now() - Duration::from_secs(offset.unsigned_abs())
    }
}

const UNAUTHORIZED_V2: &str =
    r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#;

fn answer(
    state: &Mutex<State>,
    port: u16,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
) -> (u16, Vec<(String, String)>, String) {
    let now = server_now(state)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let v1 = path.starts_with("/1.1/");
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    };
    let fields = header("authorization")
        .and_then(|h| verifier::parse_authorization(&h))
        .unwrap_or_default();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    let (nonce, timestamp) = (
        field("oauth_nonce"),
        field("oauth_timestamp").parse().unwrap_or(0),
    );
    let (path_only, query) = path.split_once('?').unwrap_or((&path, ""));
    let mut params = verifier::parse_form(query);
    let form =
        header("content-type").is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
    if form {
        params.extend(verifier::parse_form(&body));
    }
    let base_uri = format!("https://127.0.0.1:{port}{path_only}");
    // The PIN flow signs without a token, then with the request token; posts with the
    // account's access token.
    let pin_flow = path_only.starts_with("/oauth/");
    let (token, token_secret) = match path_only {
        "/oauth/request_token" => (String::new(), String::new()),
        "/oauth/access_token" => {
            let token = field("oauth_token");
            let secret = state
                .lock()
                .unwrap()
                .request_tokens
                .get(&token)
                .map(|t| t.0.clone());
            (token, secret.unwrap_or_default())
        }
        _ => (ACCESS_TOKEN.to_string(), ACCESS_TOKEN_SECRET.to_string()),
    };
    let (callback, verifier_field) = (field("oauth_callback"), field("oauth_verifier"));
    let expected = verifier::expected_signature(&Signed {
        method: &method,
        base_uri: &base_uri,
        params,
        consumer_key: CONSUMER_KEY,
        consumer_secret: CONSUMER_SECRET,
        token: &token,
        token_secret: &token_secret,
        callback: Some(callback.as_str()).filter(|c| !c.is_empty()),
        verifier: Some(verifier_field.as_str()).filter(|v| !v.is_empty()),
        nonce: &nonce,
        timestamp,
        version: !field("oauth_version").is_empty(),
    });
    let signature_ok = field("oauth_signature") == expected
        && field("oauth_consumer_key") == CONSUMER_KEY
        && field("oauth_token") == token
        && field("oauth_signature_method") == "HMAC-SHA1";

    let mut state = state.lock().unwrap();
    let fresh_nonce = state.nonces.insert(nonce.clone());
    let in_time = timestamp.abs_diff(now) <= 300;
    // X's v1.1 refusals name the cause (code 32 or 135); v2's does not.
    let refused = |code: u32, message: &str| {
        let body = if v1 {
            format!(r#"{{"errors":[{{"code":{code},"message":"{message}"}}]}}"#)
        } else {
            UNAUTHORIZED_V2.to_string()
        };
        (401, vec![], body)
    };
    let (status, extra, reply) = if !signature_ok || !fresh_nonce {
        refused(32, "Could not authenticate you.")
    } else if !in_time {
        refused(135, "Timestamp out of bounds.")
    } else if path_only == "/2/users/me" {
        match &state.behaviour.me {
            Some(canned) => (canned.status, canned.headers.clone(), canned.body.clone()),
            None => (
                200,
                vec![],
                format!(
                    r#"{{"data":{{"id":"1500000000","name":"ESX announcer","username":"{SCREEN_NAME}"}}}}"#
                ),
            ),
        }
    } else if let Some(canned) = state.behaviour.script.pop_front() {
        (canned.status, canned.headers, canned.body)
    } else if pin_flow {
        pin_flow_answer(&mut state, path_only, &token, &callback, &verifier_field)
    } else {
        let (status, mut extra, reply) = post(&mut state, v1, form, &body);
        if (200..300).contains(&status) {
            if state.behaviour.delayed_answers > 0 {
                state.behaviour.delayed_answers -= 1;
                extra.push((
                    DELAY.into(),
                    state.behaviour.answer_delay.as_millis().to_string(),
                ));
            }
            if state.behaviour.lose_answers > 0 {
                state.behaviour.lose_answers -= 1;
                extra.push((FAULT.into(), "lose".into()));
            } else if state.behaviour.cut_answers > 0 {
                state.behaviour.cut_answers -= 1;
                extra.push((FAULT.into(), "cut".into()));
            }
        }
        (status, extra, reply)
    };
    state.received.push(Received {
        method,
        path,
        headers,
        body,
        signature_ok,
        nonce,
        timestamp,
        status,
    });
    (status, extra, reply)
}

/// X's PIN flow: a request token for `oauth_callback=oob`, then the access token for the
/// request token and the PIN. Answers are form-encoded, as X's are.
fn pin_flow_answer(
    state: &mut State,
    path: &str,
    token: &str,
    callback: &str,
    pin: &str,
) -> (u16, Vec<(String, String)>, String) {
    match path {
        "/oauth/request_token" if callback == "oob" => {
            let n = state.request_tokens.len() + 1;
            let (token, secret) = (format!("reqtok-{n}"), format!("{REQUEST_SECRET_PREFIX}{n}"));
            state
                .request_tokens
                .insert(token.clone(), (secret.clone(), false));
            let body = format!(
                "oauth_token={token}&oauth_token_secret={secret}&oauth_callback_confirmed=true"
            );
            (200, vec![], body)
        }
        "/oauth/request_token" => (
            403,
            vec![],
            "Callback URL not approved for this client application.".into(),
        ),
        "/oauth/access_token" => {
            let expired = state.behaviour.expire_request_tokens;
            match state.request_tokens.get_mut(token) {
                Some((_, used)) if !*used && !expired => {
                    if pin != PIN {
                        return (401, vec![], "Invalid oauth_verifier parameter".into());
                    }
                    *used = true;
                    let body = format!(
                        "oauth_token={ACCESS_TOKEN}&oauth_token_secret={ACCESS_TOKEN_SECRET}&user_id=1500000000&screen_name={SCREEN_NAME}"
                    );
                    (200, vec![], body)
                }
                _ => (401, vec![], "Invalid request token.".into()),
            }
        }
        _ => (404, vec![], "Sorry, that page does not exist".into()),
    }
}

fn post(
    state: &mut State,
    v1: bool,
    form: bool,
    body: &str,
) -> (u16, Vec<(String, String)>, String) {
    let request: (Option<String>, Option<String>) = if v1 {
        let pairs = if form {
            verifier::parse_form(body)
        } else {
            vec![]
        };
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        (get("status"), get("in_reply_to_status_id"))
    } else {
        let json: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
        (
            json["text"].as_str().map(str::to_string),
            json["reply"]["in_reply_to_tweet_id"]
                .as_str()
                .map(str::to_string),
        )
    };
    let Some(text) = request.0 else {
        return (400, vec![], r#"{"title":"Invalid Request","detail":"text is required","type":"https://api.twitter.com/2/problems/invalid-request","status":400}"#.into());
    };
    if v1 && !state.behaviour.v1_allowed {
        return (403, vec![], r#"{"errors":[{"message":"You currently have access to a subset of X API V2 endpoints and limited v1.1 endpoints (e.g. media post, oauth) only. If you need access to this endpoint, you may need a different access level.","code":453}]}"#.into());
    }
    if state.behaviour.read_only {
        return (403, vec![], r#"{"title":"Unsupported Authentication","detail":"Your client app is not configured with the appropriate oauth1 app permissions for this endpoint.","type":"https://api.twitter.com/2/problems/oauth1-permissions","status":403}"#.into());
    }
    if state.posted.last() == Some(&text) {
        return if v1 {
            (
                403,
                vec![],
                r#"{"errors":[{"code":187,"message":"Status is a duplicate."}]}"#.into(),
            )
        } else {
            (403, vec![], r#"{"title":"Forbidden","detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","status":403}"#.into())
        };
    }
    state.posted.push(text.clone());
    state.next_id += 1;
    let id = state.next_id.to_string();
    state.posts.push(Post {
        id: id.clone(),
        text: text.clone(),
        reply_to: request.1,
    });
    if v1 {
        (
            200,
            vec![],
            serde_json::json!({"id_str": id, "text": text}).to_string(),
        )
    } else {
        (
            201,
            vec![],
            serde_json::json!({"data": {"id": id, "text": text}}).to_string(),
        )
    }
}

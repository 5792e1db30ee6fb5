//! The X API as the agent uses it: the shape of a post request for v2 and v1.1, and what each
//! answer means (posted, try again, or a final error with the API's own words and a hint).
//!
//! Pure: no I/O here. `transport` sends what this module builds; `post` decides when to retry.

use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// Which X API endpoint posts the status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
pub enum ApiVersion {
    /// `POST /2/tweets` with a JSON body (the current API; the body is not signed).
    #[default]
    #[serde(rename = "v2", alias = "2")]
    #[value(name = "v2", alias = "2")]
    V2,
    /// `POST /1.1/statuses/update.json` with a signed form body (legacy; needs elevated
    /// access).
    #[serde(rename = "v1.1", alias = "1.1")]
    #[value(name = "v1.1", alias = "1.1")]
    V1_1,
}

/// An HTTP request ready to be signed and sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// HTTP method.
    pub method: &'static str,
    /// Full URL.
    pub url: String,
    /// `Content-Type` of the body.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// Whether the body is form-urlencoded and so part of the signature.
    pub body_is_form: bool,
}

impl Outgoing {
    /// What the signer sees of this request.
    pub fn to_sign(&self) -> crate::oauth::RequestToSign<'_> {
        crate::oauth::RequestToSign {
            method: self.method,
            url: &self.url,
            form_body: self.body_is_form.then_some(self.body.as_str()),
        }
    }
}

/// Builds the request that posts `text`, optionally as a reply.
pub fn post_request(
    api_base: &str,
    version: ApiVersion,
    text: &str,
    reply_to: Option<&str>,
) -> Outgoing {
    let base = api_base.trim_end_matches('/');
    match version {
        ApiVersion::V2 => {
            let mut body = serde_json::json!({ "text": text });
            if let Some(id) = reply_to {
                body["reply"] = serde_json::json!({ "in_reply_to_tweet_id": id });
            }
            Outgoing {
                method: "POST",
                url: format!("{base}/2/tweets"),
                content_type: "application/json",
                body: body.to_string(),
                body_is_form: false,
            }
        }
        ApiVersion::V1_1 => {
            let mut body = format!("status={}", crate::oauth::percent_encode(text));
            if let Some(id) = reply_to {
                body.push_str("&in_reply_to_status_id=");
                body.push_str(&crate::oauth::percent_encode(id));
            }
            Outgoing {
                method: "POST",
                url: format!("{base}/1.1/statuses/update.json"),
                content_type: "application/x-www-form-urlencoded",
                body,
                body_is_form: true,
            }
        }
    }
}

/// What came back from the server, reduced to what the agent needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The `Date` header, if any.
    pub date: Option<String>,
    /// `x-rate-limit-reset`, Unix seconds, if any.
    pub rate_limit_reset: Option<u64>,
    /// `x-rate-limit-remaining`: requests left until the reset, if given.
    pub rate_limit_remaining: Option<u64>,
    /// The 24-hour caps (`x-user-limit-24hour-*`, `x-app-limit-24hour-*`), if given.
    pub day: Option<DayLimit>,
    /// The body as text.
    pub body: String,
    /// Why the body could not be read whole (too large, cut short, not UTF-8), if so.
    pub body_error: Option<String>,
}

/// What is left of X's 24-hour posting caps, the user's and the app's taken together.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DayLimit {
    /// Posts left today: the smaller of the two caps.
    pub remaining: u64,
    /// When a spent cap resets (the later one when both are), Unix seconds; else the
    /// earliest reset given.
    pub reset: Option<u64>,
}

impl DayLimit {
    /// From the (remaining, reset) pairs of the user's and the app's headers; `None` when
    /// neither says how many are left.
    pub fn from_headers(
        user: (Option<u64>, Option<u64>),
        app: (Option<u64>, Option<u64>),
    ) -> Option<DayLimit> {
        let known: Vec<(u64, Option<u64>)> = [user, app]
            .into_iter()
            .filter_map(|(remaining, reset)| Some((remaining?, reset)))
            .collect();
        let remaining = known.iter().map(|(left, _)| *left).min()?;
        let spent = known
            .iter()
            .filter(|(left, _)| *left == 0)
            .filter_map(|(_, reset)| *reset)
            .max();
        let reset = spent.or_else(|| known.iter().filter_map(|(_, reset)| *reset).min());
        Some(DayLimit { remaining, reset })
    }

    /// Whether no post is left today.
    pub fn spent(&self) -> bool {
        self.remaining == 0
    }
}

/// Builds the credential check: `GET /2/users/me`, signed like a post.
pub fn me_request(api_base: &str) -> Outgoing {
    Outgoing {
        method: "GET",
        url: format!("{}/2/users/me", api_base.trim_end_matches('/')),
        content_type: "application/json",
        body: String::new(),
        body_is_form: false,
    }
}

/// The account `GET /2/users/me` names: `@username`, or `None` when the answer has none.
pub fn account_name(response: &Response) -> Option<String> {
    let json: Value = serde_json::from_str(&response.body).ok()?;
    let name = json["data"]["username"].as_str()?;
    (!name.is_empty()
        && name.len() <= 50
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
    .then(|| format!("@{name}"))
}

/// A status that was created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    /// The post's id; `None` when X said it posted but its answer could not be read, or when
    /// an earlier attempt whose answer was lost turned out to have posted.
    pub id: Option<String>,
    /// The text as X stored it (or as sent, when the answer was not read).
    pub text: String,
    /// Why the id is unknown, for a warning.
    pub warning: Option<String>,
    /// Nothing was posted: X refused the text as a duplicate and `--allow-duplicate` counts
    /// that as done.
    pub duplicate: bool,
}

impl Posted {
    /// The post's public URL, when its id is known.
    pub fn url(&self) -> Option<String> {
        self.id
            .as_ref()
            .map(|id| format!("https://x.com/i/status/{id}"))
    }
}

/// How an answer that is not a success should be handled.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt: 5xx, 429. `reset` is the rate-limit reset time if given.
    Retry {
        /// What went wrong, for the final message.
        reason: String,
        /// Unix seconds at which a 429's limit resets.
        reset: Option<u64>,
    },
    /// 401: the signature or credentials were refused. `timestamp_rejected` is set when the
    /// server said so (v1.1 code 135), which together with the `Date` header points to a
    /// wrong host clock.
    Unauthorized {
        /// The API's words and our hint.
        message: String,
        /// v1.1 error 135.
        timestamp_rejected: bool,
    },
    /// X refuses the text as a duplicate of a recent post (final, unless an earlier attempt
    /// of this very post may have gone through: then that attempt posted it).
    Duplicate(Error),
    /// Final.
    Fatal(Error),
}

/// Interprets a response to a post request.
pub fn interpret(version: ApiVersion, response: &Response) -> Result<Posted, Failure> {
    let json: Option<Value> = serde_json::from_str(&response.body).ok();
    if (200..300).contains(&response.status) {
        // A 2xx to a post request is a post, whatever its body: retrying would post again.
        return Ok(parse_posted(version, json.as_ref()).unwrap_or_else(|| {
            let why = match &response.body_error {
                Some(e) => format!("its answer could not be read ({e})"),
                None => format!("its answer is not a post ({})", excerpt(&response.body)),
            };
            Posted {
                id: None,
                text: String::new(),
                warning: Some(format!(
                    "X answered HTTP {} (posted) but {why}; the post's id is unknown",
                    response.status
                )),
                duplicate: false,
            }
        }));
    }
    let problem = Problem::from_json(json.as_ref());
    let said = problem.describe(response);
    Err(match response.status {
        429 => Failure::Retry {
            reason: format!("rate limited (HTTP 429): {said}"),
            reset: response.rate_limit_reset,
        },
        500..=599 => Failure::Retry {
            reason: format!("server error (HTTP {}): {said}", response.status),
            reset: None,
        },
        401 => Failure::Unauthorized {
            timestamp_rejected: problem.has_code(135),
            message: format!(
                "authentication failed (HTTP 401): {said}; hint: {}",
                if problem.has_code(135) {
                    "the host clock is wrong; set it (NTP) and try again"
                } else if problem.has_code(89) {
                    "the access token is invalid or expired: regenerate it in the developer portal"
                } else {
                    "check the four credentials; `esxi-tweet sign` shows what is signed"
                }
            ),
        },
        _ if problem.is_duplicate() => Failure::Duplicate(problem.classify(response.status, said)),
        _ => Failure::Fatal(problem.classify(response.status, said)),
    })
}

fn parse_posted(version: ApiVersion, json: Option<&Value>) -> Option<Posted> {
    let json = json?;
    let (id, text) = match version {
        ApiVersion::V2 => (&json["data"]["id"], &json["data"]["text"]),
        ApiVersion::V1_1 => (&json["id_str"], &json["text"]),
    };
    let id = id.as_str()?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(Posted {
        id: Some(id.to_string()),
        text: text.as_str().unwrap_or_default().to_string(),
        warning: None,
        duplicate: false,
    })
}

/// An error body in either dialect: v2 problem JSON or v1.1 `errors[]`.
#[derive(Debug, Default)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
    kind: Option<String>,
    codes: Vec<(i64, String)>,
}

impl Problem {
    fn from_json(json: Option<&Value>) -> Self {
        let Some(json) = json else {
            return Self::default();
        };
        let text = |v: &Value| v.as_str().map(str::to_string);
        let codes = json["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .map(|e| {
                        (
                            e["code"].as_i64().unwrap_or(0),
                            text(&e["message"]).unwrap_or_default(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Self {
            title: text(&json["title"]),
            detail: text(&json["detail"]),
            kind: text(&json["type"]),
            codes,
        }
    }

    fn is_duplicate(&self) -> bool {
        self.has_code(187) || self.detail_says("duplicate")
    }

    fn has_code(&self, code: i64) -> bool {
        self.codes.iter().any(|(c, _)| *c == code)
    }

    /// The API's own words, on one line.
    fn describe(&self, response: &Response) -> String {
        let words = if !self.codes.is_empty() {
            self.codes
                .iter()
                .map(|(c, m)| format!("{m} (code {c})"))
                .collect::<Vec<_>>()
                .join("; ")
        } else {
            match (&self.title, &self.detail) {
                (Some(t), Some(d)) if t != d => format!("{t}: {d}"),
                (Some(t), _) => t.clone(),
                (None, Some(d)) => d.clone(),
                (None, None) => excerpt(&response.body),
            }
        };
        printable(&words)
    }

    /// Whether the v2 problem's `detail` contains `words` (given in lower case), ignoring case.
    fn detail_says(&self, words: &str) -> bool {
        self.detail
            .as_deref()
            .is_some_and(|d| d.to_ascii_lowercase().contains(words))
    }

    fn classify(&self, status: u16, said: String) -> Error {
        let duplicate = self.is_duplicate();
        let permissions = self
            .kind
            .as_deref()
            .is_some_and(|k| k.ends_with("/oauth1-permissions"))
            || self.has_code(261);
        if duplicate {
            Error::TextRejected(format!(
                "duplicate post (HTTP {status}): {said}; hint: X refuses the same text twice in a row: change it, or pass --allow-duplicate to count it as done"
            ))
        } else if self.has_code(186) || self.detail_says("too long") {
            // v2 says it only in words, with 403, which must not read as an auth failure.
            Error::TextRejected(format!(
                "text too long (HTTP {status}): {said}; hint: X counts every link as 23 characters, bare domains such as example.com included"
            ))
        } else if permissions {
            Error::Auth(format!(
                "permission denied (HTTP {status}): {said}; hint: in the developer portal set the app's permissions to Read and Write, then regenerate the access token and secret"
            ))
        } else if self.has_code(453) {
            Error::Auth(format!(
                "access level (HTTP {status}): {said}; hint: your app's tier cannot use API v1.1: use --api v2"
            ))
        } else if status == 403 || status == 401 {
            Error::Auth(format!("forbidden (HTTP {status}): {said}"))
        } else {
            Error::ApiRefused(format!("the API refused the post (HTTP {status}): {said}"))
        }
    }
}

/// `url` for display: any `user:password@` in it becomes `***@`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://***@{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// `text` from the server made safe for a terminal ([`crate::untrusted::printable`]): no
/// escape sequence, control or bidi character, so an answer cannot redraw the screen, forge a
/// log line or reverse how the line reads.
pub fn printable(text: &str) -> String {
    crate::untrusted::printable(text)
}

/// The start of a body for an error message, on one line.
pub fn excerpt(body: &str) -> String {
    let one_line: String = printable(&body.chars().take(200).collect::<String>());
    if one_line.trim().is_empty() {
        "(empty body)".to_string()
    } else {
        one_line.trim().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error;

    fn answer(status: u16, body: &str) -> Response {
        Response {
            status,
            body: body.into(),
            ..Default::default()
        }
    }

    fn fatal_code(version: ApiVersion, status: u16, body: &str) -> (u8, String) {
        match interpret(version, &answer(status, body)) {
            Err(Failure::Fatal(e) | Failure::Duplicate(e)) => (e.exit_code(), e.to_string()),
            other => panic!("expected a final error, got {other:?}"),
        }
    }

    #[test]
    fn v2_request_shape() {
        let r = post_request(
            "https://api.x.com/",
            ApiVersion::V2,
            "hi \"you\"",
            Some("42"),
        );
        assert_eq!(r.url, "https://api.x.com/2/tweets");
        let body: Value = serde_json::from_str(&r.body).unwrap();
        assert_eq!(body["text"], "hi \"you\"");
        assert_eq!(body["reply"]["in_reply_to_tweet_id"], "42");
        assert_eq!(r.to_sign().form_body, None, "a JSON body is not signed");
    }

    #[test]
    fn v1_request_shape() {
        let r = post_request("https://api.x.com", ApiVersion::V1_1, "a+b c!", None);
        assert_eq!(r.url, "https://api.x.com/1.1/statuses/update.json");
        assert_eq!(r.body, "status=a%2Bb%20c%21");
        assert_eq!(r.to_sign().form_body, Some("status=a%2Bb%20c%21"));
    }

    #[test]
    fn successes() {
        let v2 = interpret(
            ApiVersion::V2,
            &answer(201, r#"{"data":{"id":"123","text":"hi"}}"#),
        )
        .unwrap();
        assert_eq!(v2.url().unwrap(), "https://x.com/i/status/123");
        let v1 = interpret(
            ApiVersion::V1_1,
            &answer(200, r#"{"id_str":"9","text":"t"}"#),
        )
        .unwrap();
        assert_eq!(v1.id.as_deref(), Some("9"));
    }

    #[test]
    fn a_2xx_is_a_post_even_when_its_answer_is_unreadable() {
        for (body, body_error) in [
            ("", Some("the answer was cut short".to_string())),
            ("{\"data\":", None),
            ("<html>ok</html>", None),
            (r#"{"data":{"id":"1; rm -rf","text":"x"}}"#, None),
        ] {
            let response = Response {
                status: 201,
                body: body.into(),
                body_error,
                ..Default::default()
            };
            let posted = interpret(ApiVersion::V2, &response).unwrap();
            assert_eq!(posted.id, None, "{body}");
            assert!(posted.warning.unwrap().contains("id is unknown"));
        }
    }

    #[test]
    fn userinfo_is_never_shown() {
        assert_eq!(
            shown_url("https://user:pa55@api.x.com/2/tweets"),
            "https://***@api.x.com/2/tweets"
        );
        assert_eq!(
            shown_url("https://api.x.com/2/tweets?a=b@c"),
            "https://api.x.com/2/tweets?a=b@c"
        );
    }

    #[test]
    fn server_words_cannot_reach_the_terminal_raw() {
        let (_, msg) = fatal_code(
            ApiVersion::V2,
            400,
            "{\"title\":\"Bad\\u001b[2J\\u001b]0;pwned\\u0007\",\"detail\":\"x\\u009b31m\\r\\nforged \\u202eevil\"}",
        );
        assert!(
            !msg.chars().any(char::is_control),
            "control characters in {msg:?}"
        );
        assert!(msg.contains("Bad") && msg.contains("forged"), "{msg}");
        assert!(!msg.contains('\u{202E}') && !msg.contains("[2J"), "{msg:?}");
    }

    #[test]
    fn errors_map_to_exit_codes_with_hints() {
        let (code, msg) = fatal_code(
            ApiVersion::V2,
            403,
            r#"{"title":"Forbidden","detail":"You are not allowed to create a Tweet with duplicate content.","type":"about:blank","status":403}"#,
        );
        assert_eq!(code, error::EXIT_TEXT_REJECTED);
        assert!(msg.contains("duplicate content"), "{msg}");
        let (code, msg) = fatal_code(
            ApiVersion::V2,
            403,
            r#"{"title":"Forbidden","detail":"Your Tweet text is too long. For more information on how Twitter determines text length see https://github.com/twitter/twitter-text.","type":"about:blank","status":403}"#,
        );
        assert_eq!(code, error::EXIT_TEXT_REJECTED);
        assert!(msg.contains("too long") && msg.contains("23"), "{msg}");
        let (code, _) = fatal_code(
            ApiVersion::V1_1,
            403,
            r#"{"errors":[{"code":186,"message":"Tweet needs to be a bit shorter."}]}"#,
        );
        assert_eq!(code, error::EXIT_TEXT_REJECTED);
        let (code, msg) = fatal_code(
            ApiVersion::V2,
            403,
            r#"{"title":"Unsupported Authentication","detail":"not permitted","type":"https://api.twitter.com/2/problems/oauth1-permissions","status":403}"#,
        );
        assert_eq!(code, error::EXIT_AUTH);
        assert!(msg.contains("Read and Write"), "{msg}");
        let (code, msg) = fatal_code(
            ApiVersion::V1_1,
            403,
            r#"{"errors":[{"code":453,"message":"You currently have access to a subset of X API V2 endpoints"}]}"#,
        );
        assert_eq!(code, error::EXIT_AUTH);
        assert!(msg.contains("--api v2"), "{msg}");
        let (code, _) = fatal_code(
            ApiVersion::V1_1,
            403,
            r#"{"errors":[{"code":187,"message":"Status is a duplicate."}]}"#,
        );
        assert_eq!(code, error::EXIT_TEXT_REJECTED);
        assert!(matches!(
            interpret(
                ApiVersion::V1_1,
                &answer(
                    403,
                    r#"{"errors":[{"code":187,"message":"Status is a duplicate."}]}"#
                )
            ),
            Err(Failure::Duplicate(_))
        ));
        let (code, msg) = fatal_code(ApiVersion::V2, 400, "<html>\nbad</html>");
        assert_eq!(code, error::EXIT_API_REFUSED);
        assert!(!msg.contains('\n'));
    }

    #[test]
    fn retryable_and_unauthorized() {
        let r = interpret(ApiVersion::V2, &answer(503, "")).unwrap_err();
        assert!(matches!(r, Failure::Retry { .. }));
        let r = interpret(
            ApiVersion::V1_1,
            &answer(
                401,
                r#"{"errors":[{"code":135,"message":"Timestamp out of bounds."}]}"#,
            ),
        )
        .unwrap_err();
        assert!(matches!(
            r,
            Failure::Unauthorized {
                timestamp_rejected: true,
                ..
            }
        ));
    }
}

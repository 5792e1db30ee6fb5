//! `esxi-tweet post`: a text read, checked (or fitted), signed and sent with retries; or, with
//! `--dry-run`, the exact request printed.

use super::{GlobalArgs, PostArgs, Settings, check_characters, check_text, print, read_text};
use crate::api::{self, Outgoing, Posted};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::post::{self, RetryPolicy, SystemClock};
use crate::twitter_text;

pub(super) fn run(
    global: &GlobalArgs,
    settings: &Settings,
    credentials: Option<&Credentials>,
    args: PostArgs,
) -> Result<(), Error> {
    let (file, api_base) = (&settings.file, settings.api_base.as_str());
    let mut text = read_text(args.text.as_deref())?;
    if args.fit {
        check_characters(&text)?;
        if let Some(fitted) = twitter_text::fit(&text)
            && fitted != text
        {
            // Said without -v: what is posted is not what was given.
            eprintln!(
                "esxi-tweet: shortened to fit: {} -> {} weighted characters",
                twitter_text::weighted_length(&text),
                twitter_text::weighted_length(&fitted)
            );
            text = fitted;
        }
    }
    check_text(&text)?;
    if let Some(id) = &args.reply_to
        && (id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(Error::Usage(format!(
            "--reply-to {id:?} is not a post id: expected digits only"
        )));
    }
    let version = args.api.or(file.api).unwrap_or_default();
    let request = api::post_request(api_base, version, &text, args.reply_to.as_deref());
    let Some(credentials) = credentials.filter(|_| !args.dry_run) else {
        let authorization = match credentials {
            Some(credentials) => {
                oauth::sign(
                    &request.to_sign(),
                    credentials,
                    &oauth::fresh_nonce()?,
                    oauth::unix_now(0),
                )?
                .authorization
            }
            None => PLACEHOLDER_AUTHORIZATION.to_string(),
        };
        return print(&dry_run_text(&request, &authorization));
    };
    let transport = settings.transport(global)?;
    let policy = RetryPolicy {
        deadline: args.deadline,
        attempt_timeout: global.timeout,
        allow_duplicate: args.allow_duplicate,
        ..RetryPolicy::default()
    };
    let verbose = global.verbose > 0;
    let posted = post::post_with_retries(
        &request,
        version,
        credentials,
        policy,
        &transport,
        &mut SystemClock::start(),
        &mut |note, line| {
            if verbose || note == post::Note::Waiting {
                eprintln!("esxi-tweet: {line}");
            }
        },
    )?;
    if let Some(warning) = &posted.warning {
        eprintln!("esxi-tweet: warning: {warning}");
    }
    let posted = Posted {
        text: if posted.text.is_empty() {
            text
        } else {
            posted.text
        },
        ..posted
    };
    print(&posted_text(&posted, args.json))
}

/// What a dry run without credentials shows for the `Authorization` header.
const PLACEHOLDER_AUTHORIZATION: &str = "OAuth oauth_consumer_key=\"<consumer key>\", oauth_nonce=\"<nonce>\", oauth_signature=\"<signature>\", oauth_signature_method=\"HMAC-SHA1\", oauth_timestamp=\"<timestamp>\", oauth_token=\"<access token>\", oauth_version=\"1.0\"";

fn dry_run_text(request: &Outgoing, authorization: &str) -> String {
    format!(
        "{} {}\nAuthorization: {authorization}\nContent-Type: {}\nUser-Agent: esxi-tweet/{}\n\n{}\n",
        request.method,
        api::shown_url(&request.url),
        request.content_type,
        env!("CARGO_PKG_VERSION"),
        request.body
    )
}

fn posted_text(posted: &Posted, json: bool) -> String {
    if json {
        let value = serde_json::json!({
            "id": posted.id,
            "text": posted.text,
            "url": posted.url(),
            "duplicate": posted.duplicate,
        });
        format!("{value}\n")
    } else if posted.duplicate {
        "duplicate (already posted)\n".to_string()
    } else {
        match posted.url() {
            Some(url) => format!("posted {url}\n"),
            None => "posted (id unknown)\n".to_string(),
        }
    }
}

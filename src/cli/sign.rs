//! `esxi-tweet sign`: a request's signature base string, signature and header, to compare
//! with what a server expects.

use super::{SignArgs, print};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;

pub(super) fn run(credentials: &Credentials, args: SignArgs) -> Result<(), Error> {
    let mut form = Vec::new();
    for pair in &args.form {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| Error::Usage(format!("--form {pair:?}: expected NAME=VALUE")))?;
        form.push(format!(
            "{}={}",
            oauth::percent_encode(name),
            oauth::percent_encode(value)
        ));
    }
    let form = form.join("&");
    let method = args.method.to_ascii_uppercase();
    let request = oauth::RequestToSign {
        method: &method,
        url: &args.url,
        form_body: (!args.form.is_empty()).then_some(form.as_str()),
    };
    let nonce = match args.nonce {
        Some(n) => n,
        None => oauth::fresh_nonce()?,
    };
    let timestamp = args.timestamp.unwrap_or_else(|| oauth::unix_now(0));
    let signed = oauth::sign(&request, credentials, &nonce, timestamp)?;
    if args.json {
        let value = serde_json::json!({
            "base_string": signed.base_string,
            "signature": signed.signature,
            "authorization": signed.authorization,
        });
        print(&format!("{value}\n"))
    } else {
        print(&format!(
            "base string:   {}\nsignature:     {}\nauthorization: {}\n",
            signed.base_string, signed.signature, signed.authorization
        ))
    }
}

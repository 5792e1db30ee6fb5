//! `esxi-tweet authorize`: the PIN flow in a terminal, ending in the config file.

use std::io::IsTerminal as _;

use super::{GlobalArgs, Settings, env, print};
use crate::authorize;
use crate::config;
use crate::error::Error;
use crate::oauth;

pub(super) fn run(global: &GlobalArgs, settings: &Settings) -> Result<(), Error> {
    let app = config::resolve_app_keys(&env, settings.file(), settings.file_path.as_deref())?;
    let path = settings.file_path.clone().ok_or_else(|| {
        Error::Config("no place for the config file: set HOME, or pass --config PATH".to_string())
    })?;
    let transport = settings.transport(global)?;
    let transport = authorize::Timed(&transport, global.timeout);
    let api_base = &settings.api_base;
    let request = authorize::request_token(
        &transport,
        api_base,
        &app,
        &oauth::fresh_nonce()?,
        oauth::unix_now(0),
    )?;
    eprintln!(
        "Open this URL in a browser signed in as the account that will post, authorize the app,\nthen type the PIN X shows:\n\n  {}\n",
        authorize::authorize_url(api_base, &request)
    );
    eprint!("PIN: ");
    let pin = authorize::read_pin(std::io::stdin().lock());
    // On a terminal the user's Enter ends the prompt's line; from a pipe, we do.
    if !std::io::stdin().is_terminal() {
        eprintln!();
    }
    let pin = pin?;
    let authorized = authorize::access_token(
        &transport,
        api_base,
        &app,
        &request,
        &pin,
        &oauth::fresh_nonce()?,
        oauth::unix_now(0),
    )?;
    authorize::write_config(&path, &app, &authorized)?;
    print(&authorize::summary(&authorized, &path))
}

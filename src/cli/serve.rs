//! `esxi-tweet serve`: the relay's flags and files (token, template) turned into
//! [`crate::relay::Options`], a bound listener and the signals that stop it.

use std::path::PathBuf;

use super::{GlobalArgs, ServeArgs, Settings, env};
use crate::error::Error;

pub(super) fn run(global: &GlobalArgs, settings: &Settings, args: ServeArgs) -> Result<(), Error> {
    use crate::relay;
    let credentials = settings.credentials()?;
    let token = args
        .token_file
        .as_deref()
        .map(read_token_file)
        .transpose()?;
    let template = match &args.template {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Error::Usage(format!("cannot read --template {}: {e}", path.display()))
            })?;
            relay::text::Template::parse(&text)
                .map_err(|why| Error::Usage(format!("--template {}: {why}", path.display())))?
        }
        None => relay::text::Template::Default,
    };
    let spool_dir = match args.spool {
        Some(dir) => dir,
        None => env("STATE_DIRECTORY")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| {
                env("HOME")
                    .filter(|h| !h.is_empty())
                    .map(|h| PathBuf::from(h).join(".local/state/esxi-tweet"))
            })
            .ok_or_else(|| Error::Usage("no spool directory: pass --spool DIR".to_string()))?,
    };
    let version = args.api.or(settings.file.api).unwrap_or_default();
    let listener = std::net::TcpListener::bind(&args.listen).map_err(|e| {
        Error::Config(format!(
            "cannot listen on {}: {e}; pick another --listen address",
            args.listen
        ))
    })?;
    let shutdown = std::sync::Arc::new(relay::Shutdown::default());
    watch_signals(&shutdown)?;
    relay::run(
        listener,
        relay::Options {
            token,
            spool_dir,
            settings: relay::worker::Settings {
                composer: relay::text::Composer {
                    template,
                    allow: relay::defang::Allow {
                        links: args.allow_links,
                        mentions: args.allow_mentions,
                        hashtags: args.allow_hashtags,
                    },
                    host_names: args.host_names,
                },
                budget: args.max_posts,
                settle: args.settle,
            },
            max_body: args.max_body_size,
            max_spool_size: args.max_spool_size,
            json_logs: args.json,
        },
        relay::worker::Account {
            credentials,
            api_base: settings.api_base.clone(),
            version,
            sender: Box::new(settings.transport(global)?),
        },
        shutdown,
    )
}

/// The relay's bearer token: one word in a file only its owner can read.
fn read_token_file(path: &std::path::Path) -> Result<crate::credentials::Secret, Error> {
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read --token-file {shown}: {e}")))?;
    crate::config::check_private(path, "--token-file", "")?;
    let token = text.trim();
    if token.is_empty() || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(Error::Config(format!(
            "--token-file {shown} must hold one token: no spaces, not empty"
        )));
    }
    Ok(crate::credentials::Secret::new(token))
}

/// SIGTERM and SIGINT stop the relay as [`crate::relay::Shutdown`] says.
fn watch_signals(shutdown: &std::sync::Arc<crate::relay::Shutdown>) -> Result<(), Error> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])
        .map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
    let shutdown = shutdown.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                shutdown.trigger();
            }
        })
        .map_err(|e| Error::Internal(format!("cannot watch signals: {e}")))?;
    Ok(())
}

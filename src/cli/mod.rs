//! The command line: how flags combine with the config file and the environment, and the
//! subcommands, one module each (`post`, `count`, `authorize`, `sign`, `serve`); the flags
//! themselves are in [`args`].

mod args;
mod authorize;
mod count;
mod post;
mod serve;
mod sign;

use std::io::{Read as _, Write as _};
use std::path::PathBuf;

pub use args::{Cli, Command, CountArgs, GlobalArgs, PostArgs, ServeArgs, SignArgs};

use crate::api;
use crate::config::{self, FileConfig};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::transport::{Transport, TransportOptions};
use crate::twitter_text::{self, MAX_WEIGHTED_LENGTH};

/// Runs a parsed command line against the process environment and standard streams.
pub fn run(cli: Cli) -> Result<(), Error> {
    let Cli { global, command } = cli;
    match command {
        Command::Count(args) => count::run(args),
        Command::Post(args) => {
            let settings = Settings::load(&global)?;
            // A dry run shows the request without credentials; anything else needs them.
            let credentials = match settings.credentials() {
                Err(_) if args.dry_run => None,
                resolved => Some(resolved?),
            };
            post::run(&global, &settings, credentials.as_ref(), args)
        }
        Command::Authorize => {
            // The file authorize writes may not exist yet: it is created (0600, its
            // directory 0700), as docs/relay.md's `--config /etc/esxi-tweet/config.toml` expects.
            let settings = Settings::load_to_write(&global).map_err(|e| match e {
                Error::Config(why) => {
                    Error::Config(format!("{why}; {}", crate::authorize::LEFT_ALONE))
                }
                other => other,
            })?;
            authorize::run(&global, &settings)
        }
        Command::Sign(args) => sign::run(&Settings::load(&global)?.credentials()?, args),
        Command::Serve(args) => serve::run(&global, &Settings::load(&global)?, args),
    }
}

/// The command line of one of the workspace's programs, or the exit code to end with: 0 after
/// `--help` and `--version` (clap's "errors" that print to stdout), 64 after a usage error,
/// which clap has printed.
pub fn parse_or_exit<T: clap::Parser>() -> Result<T, std::process::ExitCode> {
    T::try_parse().map_err(|e| {
        let code = if e.use_stderr() {
            crate::error::EXIT_USAGE
        } else {
            0
        };
        let _ = e.print();
        std::process::ExitCode::from(code)
    })
}

/// What the config file and the environment say, with the API base they settle on.
struct Settings {
    file: FileConfig,
    file_present: bool,
    file_path: Option<PathBuf>,
    api_base: String,
}

impl Settings {
    fn load(global: &GlobalArgs) -> Result<Self, Error> {
        Self::loaded(global, load_config(global, &env, true)?)
    }

    /// As [`Settings::load`], but a `--config` file that does not exist yet is no error.
    fn load_to_write(global: &GlobalArgs) -> Result<Self, Error> {
        Self::loaded(global, load_config(global, &env, false)?)
    }

    fn loaded(
        global: &GlobalArgs,
        (file, file_path): (Option<FileConfig>, Option<PathBuf>),
    ) -> Result<Self, Error> {
        let file_present = file.is_some();
        let file = file.unwrap_or_default();
        let api_base = global
            .api_base
            .clone()
            .or(file.api_base.clone())
            .unwrap_or_else(|| "https://api.x.com".to_string());
        oauth::RequestUrl::parse(&api_base).map_err(|_| {
            Error::Usage(format!(
                "invalid --api-base {:?}: expected an https:// URL",
                api::shown_url(&api_base)
            ))
        })?;
        Ok(Self {
            file,
            file_present,
            file_path,
            api_base,
        })
    }

    fn file(&self) -> Option<&FileConfig> {
        self.file_present.then_some(&self.file)
    }

    fn credentials(&self) -> Result<Credentials, Error> {
        config::resolve_credentials(&env, self.file(), self.file_path.as_deref())
    }

    fn transport(&self, global: &GlobalArgs) -> Result<Transport, Error> {
        Transport::new(&TransportOptions {
            ca_file: global.ca_file.clone().or(self.file.ca_file.clone()),
            proxy: global.proxy.clone().or(self.file.proxy.clone()),
            connect_timeout: global.timeout,
        })
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn load_config(
    global: &GlobalArgs,
    env: &dyn Fn(&str) -> Option<String>,
    must_exist: bool,
) -> Result<(Option<FileConfig>, Option<PathBuf>), Error> {
    match &global.config {
        Some(path) => Ok((config::load_file(path, must_exist)?, Some(path.clone()))),
        None => match config::default_config_path(env) {
            Some(path) => Ok((config::load_file(&path, false)?, Some(path))),
            None => Ok((None, None)),
        },
    }
}

/// The most standard input is read: far beyond any post (a URL counts 23 whatever its length,
/// and may be 4096 long), far below what would strain a small host.
const MAX_INPUT: u64 = 1024 * 1024;

/// The text to post: the argument, or standard input for `-` or none.
fn read_text(arg: Option<&str>) -> Result<String, Error> {
    let mut text = match arg {
        Some(t) if t != "-" => return Ok(t.to_string()),
        _ => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .take(MAX_INPUT + 1)
                .read_to_end(&mut bytes)
                .map_err(|e| Error::Usage(format!("cannot read standard input: {e}")))?;
            if bytes.len() as u64 > MAX_INPUT {
                return Err(Error::TextRejected(
                    "standard input is over 1 MiB: a post is at most 280 characters; pass the part to post"
                        .to_string(),
                ));
            }
            String::from_utf8(bytes).map_err(|e| {
                Error::TextRejected(format!(
                    "standard input is not UTF-8 text (byte {} is not): convert it first, for example with iconv -t UTF-8",
                    e.utf8_error().valid_up_to()
                ))
            })?
        }
    };
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

fn check_text(text: &str) -> Result<(), Error> {
    if text.trim().is_empty() {
        return Err(Error::TextRejected(
            "nothing to post: the text is empty".to_string(),
        ));
    }
    check_characters(text)?;
    let length = twitter_text::weighted_length(text);
    if length > MAX_WEIGHTED_LENGTH {
        return Err(Error::TextRejected(format!(
            "text too long: {length}/{MAX_WEIGHTED_LENGTH} weighted characters (URLs and host names count 23, emoji and CJK 2); shorten it, or post --fit"
        )));
    }
    Ok(())
}

/// Refuses the characters X refuses anywhere in a post.
fn check_characters(text: &str) -> Result<(), Error> {
    match text.chars().find(|&c| twitter_text::is_invalid_char(c)) {
        Some(c) => Err(Error::TextRejected(format!(
            "the text holds U+{:04X}, which X does not accept: remove it",
            u32::from(c)
        ))),
        None => Ok(()),
    }
}

/// Writes to stdout; a closed pipe (`esxi-tweet ... | head -0`) is not an error.
fn print(text: &str) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::Internal(format!(
            "cannot write to standard output: {e}"
        ))),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    #[test]
    fn text_limits() {
        assert_eq!(check_text(" \n").unwrap_err().exit_code(), 65);
        let long = "a".repeat(281);
        let err = check_text(&long).unwrap_err();
        assert_eq!(err.exit_code(), 65);
        assert!(
            err.to_string().contains("281/280 weighted characters"),
            "{err}"
        );
        assert!(check_text(&"a".repeat(280)).is_ok());
    }

    #[test]
    fn bad_durations_are_usage_errors() {
        for bad in ["8d", "0s", "soon"] {
            let err =
                Cli::try_parse_from(["esxi-tweet", "post", "--timeout", bad, "x"]).unwrap_err();
            assert!(err.use_stderr(), "{bad}");
        }
    }

    #[test]
    fn command_line_parses_globals_after_the_subcommand() {
        let cli = Cli::try_parse_from([
            "esxi-tweet",
            "post",
            "--api-base",
            "https://127.0.0.1:1",
            "hello",
            "-v",
        ])
        .unwrap();
        assert_eq!(cli.global.api_base.as_deref(), Some("https://127.0.0.1:1"));
        assert_eq!(cli.global.verbose, 1);
        assert!(
            matches!(cli.command, Command::Post(PostArgs { text: Some(ref t), .. }) if t == "hello")
        );
    }
}

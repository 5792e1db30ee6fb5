//! The command line: flags (clap), how they combine with the config file and the environment,
//! and the subcommands: `post`, `count`, `authorize`, `sign` and `serve`.

use std::io::{IsTerminal as _, Read as _, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::{self, ApiVersion, Outgoing, Posted};
use crate::authorize;
use crate::config::{self, FileConfig};
use crate::credentials::Credentials;
use crate::error::Error;
use crate::oauth;
use crate::post::{self, RetryPolicy, SystemClock};
use crate::transport::{Transport, TransportOptions};
use crate::twitter_text::{self, MAX_WEIGHTED_LENGTH};
use crate::units;

const EXIT_CODES: &str = "\
Exit codes:
  0   posted (or signed, printed with --dry-run, counted as fitting, authorized)
  64  usage: the command line (or the PIN typed to authorize) is wrong
  65  text rejected: empty, too long, a duplicate, not UTF-8, or holding a character X
      refuses (U+FFFE, U+FEFF, U+FFFF); for count: the text does not fit
  69  the API refused the post for another reason
  75  temporary failure (network, 5xx, 429) until the deadline
  77  authentication or permission refused
  78  configuration: missing credentials, unreadable or unsafe file

Credentials come from TWITTER_CONSUMER_KEY, TWITTER_CONSUMER_SECRET, TWITTER_ACCESS_TOKEN and
TWITTER_ACCESS_TOKEN_SECRET, or from the config file (chmod 600); never from flags.
`esxi-tweet authorize` writes the access token and secret into the config file for you.

ESXi 8 and 9 run only binaries from installed VIBs (execInstalledOnly): install the
esxi-tweet VIB (`make vib` builds it and an offline depot for Image Builder; see
docs/esxi.md), which puts this program at /opt/esxi-tweet/bin/esxi-tweet.";

/// Post a status update to X from a host, signed with OAuth 1.0a.
#[derive(Debug, Parser)]
#[command(name = "esxi-tweet", version, after_help = EXIT_CODES)]
pub struct Cli {
    /// Options shared by every subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options accepted before or after the subcommand.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// API base URL [default: https://api.x.com, or api_base in the config file]
    #[arg(long, global = true, value_name = "URL")]
    pub api_base: Option<String>,
    /// Extra trusted CA certificates (PEM), in addition to the built-in roots
    #[arg(long, global = true, value_name = "PEM")]
    pub ca_file: Option<PathBuf>,
    /// HTTP(S) proxy URL [default: HTTPS_PROXY / ALL_PROXY, honouring NO_PROXY]
    #[arg(long, global = true, value_name = "URL")]
    pub proxy: Option<String>,
    /// Timeout of one HTTP attempt, e.g. 30s
    #[arg(long, global = true, value_name = "DURATION", default_value = "30s", value_parser = units::parse_duration)]
    pub timeout: Duration,
    /// Config file [default: $XDG_CONFIG_HOME/esxi-tweet/config.toml or ~/.config/esxi-tweet/config.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Say what happens on each attempt (on stderr; never secrets)
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Post TEXT (or standard input when TEXT is missing or `-`)
    Post(PostArgs),
    /// Print TEXT's weighted length as X counts it, and whether X accepts it (no credentials)
    Count(CountArgs),
    /// Get an access token for the posting account (PIN flow) and write it to the config file
    Authorize,
    /// Print the signature base string, signature and Authorization header of a request
    Sign(SignArgs),
    /// Relay Alertmanager and Grafana webhooks (and plain texts) to posts, within X's limits
    Serve(ServeArgs),
}

/// `esxi-tweet serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9095")]
    pub listen: String,
    /// File holding the bearer token webhooks must send (Alertmanager's
    /// http_config.authorization), mode 600; required unless listening on loopback
    #[arg(long, value_name = "PATH")]
    pub token_file: Option<PathBuf>,
    /// Spool and state directory [default: $STATE_DIRECTORY, else ~/.local/state/esxi-tweet]
    #[arg(long, value_name = "DIR")]
    pub spool: Option<PathBuf>,
    /// Local posting budget, e.g. 50/24h (X's Free tier allows 17 posts per 24 hours)
    #[arg(long, value_name = "N/PERIOD", default_value = "17/24h", value_parser = crate::relay::worker::Budget::parse)]
    pub max_posts: crate::relay::worker::Budget,
    /// How long a new alert group's first post waits for the rest of the group (0: not at all)
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = units::parse_duration_or_zero)]
    pub settle: Duration,
    /// A template for alert groups, with {status} {alertname} {hosts} {summary}
    /// {description} {severity} {count} {url} {group}
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,
    /// Host names as the alert gives them, instead of their first label (esx-07)
    #[arg(long, value_enum, value_name = "FORM", default_value = "short")]
    pub host_names: crate::relay::text::HostNames,
    /// Let links in alert labels and annotations stay links (by default they are defanged:
    /// example[.]com)
    #[arg(long)]
    pub allow_links: bool,
    /// Let @mentions in alert labels and annotations stay mentions (by default: @ name)
    #[arg(long)]
    pub allow_mentions: bool,
    /// Let #hashtags and $cashtags in alert labels and annotations stay live
    #[arg(long)]
    pub allow_hashtags: bool,
    /// Largest webhook body accepted, e.g. 1m
    #[arg(long, value_name = "SIZE", default_value = "1m", value_parser = parse_body_size)]
    pub max_body_size: usize,
    /// Most the spool may hold on disk (507 to senders beyond), e.g. 256m
    #[arg(long, value_name = "SIZE", default_value = "256m", value_parser = parse_spool_size)]
    pub max_spool_size: u64,
    /// Log one JSON object per line
    #[arg(long)]
    pub json: bool,
    /// API version [default: v2, or api in the config file]
    #[arg(long, value_enum)]
    pub api: Option<ApiVersion>,
}

/// A spool size, from 1 MiB to 1 TiB.
fn parse_spool_size(value: &str) -> Result<u64, String> {
    units::parse_size(value, 1 << 20, 1 << 40)
}

/// A webhook body size such as `512k` or `1m`, from 1 KiB to 64 MiB.
fn parse_body_size(value: &str) -> Result<usize, String> {
    units::parse_size(value, 1024, 64 * 1024 * 1024).map(|size| size as usize)
}

/// `esxi-tweet count`.
#[derive(Debug, Args)]
pub struct CountArgs {
    /// The text; `-` or nothing reads standard input (one trailing newline is dropped)
    pub text: Option<String>,
    /// Print {"weighted_length", "valid", "permillage"} as JSON
    #[arg(long)]
    pub json: bool,
}

/// `esxi-tweet post`.
#[derive(Debug, Args)]
pub struct PostArgs {
    /// The text; `-` or nothing reads standard input (one trailing newline is dropped)
    pub text: Option<String>,
    /// API version [default: v2, or api in the config file]
    #[arg(long, value_enum)]
    pub api: Option<ApiVersion>,
    /// Post as a reply to this post id
    #[arg(long, value_name = "ID")]
    pub reply_to: Option<String>,
    /// Print {"id", "text", "url"} as JSON
    #[arg(long)]
    pub json: bool,
    /// Print the exact request and send nothing (no credentials needed: placeholders stand
    /// in for what would be signed)
    #[arg(long)]
    pub dry_run: bool,
    /// Shorten a text that is too long to the longest part that fits, cut at a word and
    /// ended with …, instead of refusing it
    #[arg(long)]
    pub fit: bool,
    /// Count X's refusal of a duplicate text as done: exit 0, a note on stderr, and
    /// `duplicate` on stdout
    #[arg(long)]
    pub allow_duplicate: bool,
    /// Give up retrying after this long, e.g. 2m or 10m
    #[arg(long, value_name = "DURATION", default_value = "2m", value_parser = units::parse_duration)]
    pub deadline: Duration,
}

/// `esxi-tweet sign`.
#[derive(Debug, Args)]
pub struct SignArgs {
    /// HTTP method
    #[arg(long, default_value = "POST")]
    pub method: String,
    /// Full request URL, query included
    #[arg(long)]
    pub url: String,
    /// A form-urlencoded body parameter (unencoded), repeatable
    #[arg(long, value_name = "NAME=VALUE")]
    pub form: Vec<String>,
    /// Use this nonce instead of a fresh one
    #[arg(long)]
    pub nonce: Option<String>,
    /// Use this Unix timestamp instead of the clock
    #[arg(long)]
    pub timestamp: Option<u64>,
    /// Print {"base_string", "signature", "authorization"} as JSON
    #[arg(long)]
    pub json: bool,
}

/// Runs a parsed command line against the process environment and standard streams.
pub fn run(cli: Cli) -> Result<(), Error> {
    let Cli { global, command } = cli;
    match command {
        Command::Count(args) => run_count(args),
        Command::Post(args) => {
            let settings = Settings::load(&global)?;
            // A dry run shows the request without credentials; anything else needs them.
            let credentials = match settings.credentials() {
                Err(_) if args.dry_run => None,
                resolved => Some(resolved?),
            };
            run_post(&global, &settings, credentials.as_ref(), args)
        }
        Command::Authorize => {
            // The file authorize writes may not exist yet: it is created (0600, its
            // directory 0700), as docs/relay.md's `--config /etc/esxi-tweet/config.toml` expects.
            let settings = Settings::load_to_write(&global).map_err(|e| match e {
                Error::Config(why) => Error::Config(format!("{why}; {}", authorize::LEFT_ALONE)),
                other => other,
            })?;
            run_authorize(&global, &settings)
        }
        Command::Sign(args) => run_sign(&Settings::load(&global)?.credentials()?, args),
        Command::Serve(args) => run_serve(&global, &Settings::load(&global)?, args),
    }
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

fn run_post(
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

fn run_count(args: CountArgs) -> Result<(), Error> {
    let text = read_text(args.text.as_deref())?;
    let parsed = twitter_text::parse_tweet(&text);
    let length = parsed.weighted_length;
    // The verdict in a word for the count line, and the full reason for the error line.
    let problem = if text.trim().is_empty() {
        Some(("empty", "nothing to post: the text is empty".to_string()))
    } else if let Err(e) = check_characters(&text) {
        Some(("refused", e.to_string()))
    } else if !parsed.valid {
        Some((
            "too long",
            format!(
                "text too long: {length}/{MAX_WEIGHTED_LENGTH} weighted characters; shorten it, or post --fit"
            ),
        ))
    } else {
        None
    };
    if args.json {
        let value = serde_json::json!({
            "weighted_length": length,
            "valid": problem.is_none(),
            "permillage": parsed.permillage,
        });
        print(&format!("{value}\n"))?;
    } else {
        let verdict = problem.as_ref().map_or("fits", |(word, _)| word);
        print(&format!("{length}/{MAX_WEIGHTED_LENGTH} {verdict}\n"))?;
    }
    match problem {
        Some((_, why)) => Err(Error::TextRejected(why)),
        None => Ok(()),
    }
}

fn run_serve(global: &GlobalArgs, settings: &Settings, args: ServeArgs) -> Result<(), Error> {
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
    use std::os::unix::fs::PermissionsExt as _;
    let shown = path.display();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Error::Config(format!("cannot read --token-file {shown}: {e}")))?;
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("cannot read --token-file {shown}: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "--token-file {shown} is readable by others (mode {:03o}): run chmod 600 {shown}",
            mode & 0o777
        )));
    }
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

fn run_authorize(global: &GlobalArgs, settings: &Settings) -> Result<(), Error> {
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

fn run_sign(credentials: &Credentials, args: SignArgs) -> Result<(), Error> {
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

//! The command line's flags and subcommands as clap reads them, validated into values
//! (durations, sizes, budgets) before anything runs; [`super`] runs them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::api::ApiVersion;
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

//! `esxi-tweet-bundle`: builds the Auto Deploy script bundle from a config and the agent binary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Build an Auto Deploy script bundle (.tgz) that announces each host's boot on X.
#[derive(Debug, Parser)]
#[command(name = "esxi-tweet-bundle", version)]
struct Args {
    /// Agent config with credentials and an optional [boot] table (must be chmod 600)
    #[arg(long, value_name = "PATH")]
    config: PathBuf,
    /// The static esxi-tweet binary to ship
    #[arg(long, value_name = "PATH", required_unless_present = "vib")]
    binary: Option<PathBuf>,
    /// No binary in the bundle: hosts get the agent from the esxi-tweet VIB in their image
    /// profile (ESXi 8 and 9, execInstalledOnly)
    #[arg(long, conflicts_with = "binary")]
    vib: bool,
    /// Where to write the bundle
    #[arg(
        long,
        short,
        value_name = "PATH",
        default_value = "dist/esxi-tweet-bundle.tgz"
    )]
    output: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = match esxi_tweet::cli::parse_or_exit() {
        Ok(args) => args,
        Err(code) => return code,
    };
    let result = match &args.binary {
        Some(path) => std::fs::read(path)
            .map_err(|e| esxi_tweet::Error::Usage(format!("cannot read {}: {e}", path.display())))
            .and_then(|binary| esxi_tweet::bundle::build(&args.config, &binary)),
        None => esxi_tweet::bundle::build_config_only(&args.config),
    }
    .and_then(|tgz| {
        // It holds the credentials: private from the first byte.
        esxi_tweet::output::write_atomically(&args.output, &tgz, 0o600).map_err(|e| {
            esxi_tweet::Error::Internal(format!("cannot write {}: {e}", args.output.display()))
        })
    });
    match result {
        Ok(()) => {
            println!("wrote {}", args.output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("esxi-tweet-bundle: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

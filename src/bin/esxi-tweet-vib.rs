//! `esxi-tweet-vib`: packages the agent as a community VIB and an offline depot for Image
//! Builder, the way ESXi 8 and 9 hosts get binaries they are allowed to run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use esxi_tweet::{Error, depot, vib};

/// Build dist/esxi-tweet-<version>.vib and dist/esxi-tweet-<version>-offline-bundle.zip.
#[derive(Debug, Parser)]
#[command(name = "esxi-tweet-vib", version)]
struct Args {
    /// The static esxi-tweet binary to package
    #[arg(long, value_name = "PATH")]
    binary: PathBuf,
    /// Directory to write both files into
    #[arg(long, value_name = "DIR", default_value = "dist")]
    out_dir: PathBuf,
    /// Release date as Unix seconds [default: SOURCE_DATE_EPOCH, else 0]
    #[arg(long, value_name = "SECONDS")]
    release_date: Option<u64>,
    /// Also install a firewall ruleset opening outbound TCP to this port (a proxy not on 80/443)
    #[arg(long, value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    firewall_port: Option<u16>,
    /// Where the bulletin's documentation link (kbUrl) points [default: the copy the VIB
    /// installs, file:///opt/esxi-tweet/doc/esxi-tweet-vib.md]
    #[arg(long, value_name = "URL")]
    kb_url: Option<String>,
}

fn main() -> ExitCode {
    let args: Args = match esxi_tweet::cli::parse_or_exit() {
        Ok(args) => args,
        Err(code) => return code,
    };
    match run(&args) {
        Ok(written) => {
            for path in written {
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("esxi-tweet-vib: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}

fn run(args: &Args) -> Result<Vec<PathBuf>, Error> {
    let binary = std::fs::read(&args.binary)
        .map_err(|e| Error::Usage(format!("cannot read {}: {e}", args.binary.display())))?;
    esxi_tweet::bundle::check_binary(&binary)?;
    let version = env!("CARGO_PKG_VERSION");
    let built = vib::build(&vib::VibInput {
        binary: &binary,
        version,
        release_date: args.release_date.unwrap_or_else(source_date_epoch),
        firewall_port: args.firewall_port,
        kb_url: args.kb_url.as_deref().filter(|u| !u.trim().is_empty()),
    })?;
    let depot = depot::build(&built)?;
    let vib_path = args.out_dir.join(format!("{}-{version}.vib", vib::NAME));
    let depot_path = args
        .out_dir
        .join(format!("{}-{version}-offline-bundle.zip", vib::NAME));
    write(&vib_path, &built.bytes)?;
    write(&depot_path, &depot)?;
    Ok(vec![vib_path, depot_path])
}

/// `SOURCE_DATE_EPOCH` (reproducible-builds.org), else 0.
fn source_date_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), Error> {
    esxi_tweet::output::write_atomically(path, bytes, 0o644)
        .map_err(|e| Error::Internal(format!("cannot write {}: {e}", path.display())))
}

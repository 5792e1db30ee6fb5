//! The `esxi-tweet` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use clap::Parser as _;
use esxi_tweet::cli::{Cli, run};
use esxi_tweet::error::EXIT_USAGE;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are "errors" to clap that go to stdout and succeed.
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Messages may carry the server's words or a network library's: no control
            // character reaches the terminal.
            eprintln!("esxi-tweet: {}", esxi_tweet::api::printable(&e.to_string()));
            ExitCode::from(e.exit_code())
        }
    }
}

//! The `esxi-tweet` binary: parse the command line, run it, map the outcome to an exit code.

use std::process::ExitCode;

use esxi_tweet::cli::{Cli, run};

fn main() -> ExitCode {
    let cli: Cli = match esxi_tweet::cli::parse_or_exit() {
        Ok(cli) => cli,
        Err(code) => return code,
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

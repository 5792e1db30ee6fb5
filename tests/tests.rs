//! Integration tests of `esxi-tweet`: one test binary, a module per concern, against the built
//! binary (`ESXI_TWEET_BIN`, the static musl build under `make test`) and a fake X API on
//! 127.0.0.1 over HTTPS.

mod support;

mod bundle;
mod cli_authorize;
mod cli_count;
mod cli_post;
mod cli_sign_and_config;
mod defang;
mod esxi_compat;
mod layout;
mod make;
mod relay;
mod signer_property;
mod vib;

//! Test support: a fake X API over HTTPS with a test CA, and a runner for the built binary.

#![allow(dead_code)]

pub mod connect_proxy;
pub mod esxi_host;
pub mod fake_x;
pub mod test_ca;
pub mod verifier;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Secrets used by every test; no output of the binary may contain them.
pub const CONSUMER_KEY: &str = "test-consumer-key";
pub const CONSUMER_SECRET: &str = "CONSUMER-SECRET-d41d8cd98f00b204";
pub const ACCESS_TOKEN: &str = "12345-test-access-token";
pub const ACCESS_TOKEN_SECRET: &str = "TOKEN-SECRET-e9800998ecf8427e";

/// The binary under test: the musl build from `make` when `ESXI_TWEET_BIN` says where it is,
/// else cargo's own build of the same sources.
/// Writes a config file (mode 0600) with the test credentials, `consumer_secret` for the
/// consumer secret, the API at `api_base` trusted through `ca_file`, and `rest` after them.
pub fn write_config(
    path: &Path,
    consumer_secret: &str,
    api_base: &str,
    ca_file: &Path,
    rest: &str,
) {
    use std::os::unix::fs::PermissionsExt as _;
    let text = format!(
        "consumer_key = \"{CONSUMER_KEY}\"\nconsumer_secret = \"{consumer_secret}\"\n\
         access_token = \"{ACCESS_TOKEN}\"\naccess_token_secret = \"{ACCESS_TOKEN_SECRET}\"\n\
         api_base = \"{api_base}\"\nca_file = \"{}\"\n{rest}",
        ca_file.display()
    );
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

pub fn binary() -> PathBuf {
    std::env::var_os("ESXI_TWEET_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_esxi-tweet")))
}

/// A command for the binary with a clean environment: no credentials, no proxy, a HOME that
/// holds no config file.
pub fn agent(home: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_clear()
        .env("HOME", home)
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null());
    cmd
}

/// Sets the four credentials in the environment.
pub fn with_credentials(cmd: &mut Command) -> &mut Command {
    cmd.env("TWITTER_CONSUMER_KEY", CONSUMER_KEY)
        .env("TWITTER_CONSUMER_SECRET", CONSUMER_SECRET)
        .env("TWITTER_ACCESS_TOKEN", ACCESS_TOKEN)
        .env("TWITTER_ACCESS_TOKEN_SECRET", ACCESS_TOKEN_SECRET)
}

/// A temporary home directory with the fake X API beside it: what most agent tests start from.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub x: fake_x::FakeX,
}

impl Home {
    pub fn new(behaviour: fake_x::Behaviour) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let x = fake_x::FakeX::start(dir.path(), behaviour);
        Self { dir, x }
    }
}

/// The outcome of one run, already checked for leaked secrets.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `cmd` (feeding `stdin` if given) and asserts that neither stream holds a secret or a
/// panic message.
pub fn run(cmd: &mut Command, stdin: Option<&[u8]>) -> Run {
    let output: Output = match stdin {
        None => cmd.output().expect("run esxi-tweet"),
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn esxi-tweet");
            // A program that refuses its input before reading it closes the pipe: not a
            // failure of the test.
            let _ = child.stdin.take().unwrap().write_all(input);
            child.wait_with_output().unwrap()
        }
    };
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for stream in [&run.stdout, &run.stderr] {
        for secret in [
            CONSUMER_SECRET,
            ACCESS_TOKEN_SECRET,
            fake_x::REQUEST_SECRET_PREFIX,
        ] {
            assert!(!stream.contains(secret), "a secret leaked: {run:?}");
        }
        assert!(!stream.contains("panicked"), "panic: {run:?}");
    }
    run
}

/// A port on 127.0.0.1 that nothing listens on now (bound, then let go): an API that is down,
/// or a server about to be started on it.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

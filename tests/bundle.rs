//! The Auto Deploy script bundle on an emulated ESXi host: one quick member, one signed post
//! with the rendered text, firewall handling, waiting for the network, the deadline, 401s,
//! execInstalledOnly, a corrupt payload, and no secret on a command line or left on disk.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::support::esxi_host::{
    APPLETS, AUTODEPLOY_DIR, BUNDLE_NAME, CmdlineWatch, EsxiHost, HOST_TOOLS, WAIT,
};
use crate::support::fake_x::{Behaviour, FakeX, Pki};
use crate::support::{
    ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, binary, run, write_config,
};

const RENDERED: &str = "esx-07.lab.local is up: VMware ESXi 7.0.3 build-21930508, vmk0 10.0.0.7";

/// A bundle's config in a temporary directory: the test credentials, an API and its CA, and a
/// `[boot]` table; with the fake X API when the bundle is to post.
struct Fixture {
    dir: tempfile::TempDir,
    api_base: String,
    ca_file: std::path::PathBuf,
    /// The test CA of an offline fixture, to serve the API later with.
    pki: Option<Pki>,
    x: Option<FakeX>,
}

impl Fixture {
    /// For a bundle that never reaches an API: `https://127.0.0.1:1`.
    fn offline() -> Self {
        Self::at("https://127.0.0.1:1")
    }

    /// For an API at `api_base` that is not the fake X (down, or not yet up).
    fn at(api_base: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path());
        Self {
            dir,
            api_base: api_base.to_string(),
            ca_file: pki.ca_file.clone(),
            pki: Some(pki),
            x: None,
        }
    }

    /// With the fake X API behind it, behaving as `behaviour` says.
    fn online(behaviour: Behaviour) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let x = FakeX::start(dir.path(), behaviour);
        Self {
            api_base: x.base_url(),
            ca_file: x.ca_file.clone(),
            pki: None,
            x: Some(x),
            dir,
        }
    }

    fn pki(&self) -> &Pki {
        self.pki.as_ref().expect("an offline fixture")
    }

    fn x(&self) -> &FakeX {
        self.x.as_ref().expect("an online fixture")
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The config with the test credentials and `boot` as its `[boot]` table.
    fn config(&self, boot: &str) -> std::path::PathBuf {
        self.config_with_secret(CONSUMER_SECRET, boot)
    }

    /// The config with `consumer_secret` instead of the test's.
    fn config_with_secret(&self, consumer_secret: &str, boot: &str) -> std::path::PathBuf {
        let path = self.dir().join("bundle-config.toml");
        let boot = format!("\n[boot]\n{boot}\n");
        write_config(&path, consumer_secret, &self.api_base, &self.ca_file, &boot);
        path
    }
}

fn bundle(config: &Path) -> Vec<u8> {
    esxi_tweet::bundle::build(config, &std::fs::read(binary()).unwrap()).unwrap()
}

fn assert_quick_success(runs: &[crate::support::esxi_host::MemberRun]) {
    assert!(!runs.is_empty());
    for run in runs {
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(run.elapsed < Duration::from_secs(2), "{run:?}");
    }
}

#[test]
fn bundle_has_only_executable_members() {
    let fixture = Fixture::offline();
    let cfg = fixture.config("");
    let tgz = bundle(&cfg);
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let mut members = 0;
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        members += 1;
        assert_eq!(entry.header().entry_type(), tar::EntryType::Regular);
        assert_eq!(entry.header().mode().unwrap() & 0o777, 0o755);
        let mut start = [0u8; 10];
        std::io::Read::read_exact(&mut entry, &mut start).unwrap();
        assert_eq!(&start, b"#!/bin/sh\n");
    }
    assert_eq!(members, 1);
    // The same through the shipped bundler binary and `tar -tvzf`, as a user would look.
    let out_path = fixture.dir().join("b.tgz");
    let build = || {
        let out = run(
            std::process::Command::new(env!("CARGO_BIN_EXE_esxi-tweet-bundle"))
                .arg("--config")
                .arg(&cfg)
                .arg("--binary")
                .arg(binary())
                .arg("--output")
                .arg(&out_path),
            None,
        );
        assert_eq!(out.code, 0, "{out:?}");
    };
    build();
    let listing = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(&out_path)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.starts_with("-rwxr-xr-x"), "{listing}");
    // It holds the credentials: private. The same inputs give the same bytes.
    let mode = std::fs::metadata(&out_path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let first = std::fs::read(&out_path).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    build();
    assert_eq!(std::fs::read(&out_path).unwrap(), first, "not reproducible");
    assert_eq!(first, tgz);
}

/// The script at the head of a bundle (its text part, before the binary).
fn gunzip_script(bundle: &[u8]) -> String {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(bundle)
        .read_to_end(&mut tar)
        .unwrap();
    let text = String::from_utf8_lossy(&tar);
    text.chars().take(64 * 1024).collect()
}

#[test]
fn bundler_refuses_incomplete_or_unsafe_configs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(&path, format!("consumer_secret = \"{CONSUMER_SECRET}\"\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_esxi-tweet-bundle"));
    cmd.arg("--config")
        .arg(&path)
        .arg("--binary")
        .arg(binary())
        .arg("-o")
        .arg(dir.path().join("x.tgz"));
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("consumer_key"), "{out:?}");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
    let fixture = Fixture::offline();
    let cfg = fixture.config("message = \"{hostnmae} up\"");
    let agent = std::fs::read(binary()).unwrap();
    let err = esxi_tweet::bundle::build(&cfg, &agent).unwrap_err();
    assert!(err.to_string().contains("{hostnmae}"), "{err}");
    // Inputs that would fail on every host are refused at build time.
    let long = format!("message = \"{{hostname}} {}\"", "x".repeat(281));
    for (boot, says) in [
        (long.as_str(), "282/280"),
        ("deadline = \"5s\"", "under 10s"),
        ("message = \"\"", "empty"),
        ("message = \"  \"", "empty"),
        ("message = \"{hostname} \\uFEFF up\"", "U+FEFF"),
        ("message = \"{hostname} \\uFFFF\"", "U+FFFF"),
    ] {
        let cfg = fixture.config(boot);
        let err = esxi_tweet::bundle::build(&cfg, &agent).unwrap_err();
        assert!(err.to_string().contains(says), "{err}");
    }
    // The example's placeholder credentials would get 401 on every host; only the key is named.
    let cfg = fixture.config_with_secret("your-api-key-secret", "");
    let err = esxi_tweet::bundle::build(&cfg, &agent).unwrap_err();
    assert_eq!(err.exit_code(), 78, "{err}");
    assert!(
        err.to_string().contains("consumer_secret") && err.to_string().contains("placeholder"),
        "{err}"
    );
    assert!(!err.to_string().contains("your-api-key-secret"), "{err}");
    // A message holding the script's own build placeholders is posted as written.
    let cfg = fixture.config("message = \"{hostname} @DEADLINE_SECS@ @MESSAGE@ @HEADER_SIZE@\"");
    let script = gunzip_script(&esxi_tweet::bundle::build(&cfg, &agent).unwrap());
    assert!(
        script.contains("'{hostname} @DEADLINE_SECS@ @MESSAGE@ @HEADER_SIZE@'"),
        "the message was altered"
    );
    let cfg = fixture.config("");
    // cargo's own test build is dynamically linked; a script is no ELF at all.
    for not_static in [
        std::fs::read(env!("CARGO_BIN_EXE_esxi-tweet-bundle")).unwrap(),
        b"#!/bin/sh\necho hi\n".to_vec(),
    ] {
        let err = esxi_tweet::bundle::build(&cfg, &not_static).unwrap_err();
        assert_eq!(err.exit_code(), 64, "{err}");
        assert!(err.to_string().contains("static x86-64"), "{err}");
    }
}

#[test]
fn boot_posts_once_restores_the_firewall_and_leaves_no_secret() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let tgz = bundle(&fixture.config("deadline = \"1m\""));
    let host = EsxiHost::new();
    let watch = CmdlineWatch::start(vec![CONSUMER_SECRET.into(), ACCESS_TOKEN_SECRET.into()]);
    let runs = host.run_bundle(&tgz);
    assert_quick_success(&runs);
    host.expect_log("esxi-tweet: posted https://x.com/i/status/");
    host.expect_idle();
    let (scans, leaked) = watch.finish();
    assert!(scans > 1);
    assert!(leaked.is_empty(), "secret on a command line: {leaked:?}");

    assert_eq!(x.posted(), [RENDERED]);
    assert!(x.received().iter().all(|r| r.signature_ok));
    assert_eq!(host.firewall_calls(), ["true", "false"]);
    // The downloaded bundle (gzip: its secrets are not greppable) and the member are gone.
    let autodeploy = host.root().join(AUTODEPLOY_DIR);
    assert!(
        !autodeploy.join(BUNDLE_NAME).exists(),
        "the downloaded bundle is left"
    );
    assert_eq!(
        std::fs::read_dir(autodeploy.join("scripts"))
            .unwrap()
            .count(),
        0,
        "the member is left"
    );
    for secret in [CONSUMER_SECRET, ACCESS_TOKEN_SECRET] {
        assert!(
            host.files_containing(secret).is_empty(),
            "{:?}",
            host.files_containing(secret)
        );
        assert!(!host.syslog().contains(secret));
    }

    // The host reboots and announces the same text again: a duplicate counts as success.
    let runs = host.run_bundle(&tgz);
    assert_quick_success(&runs);
    host.expect_log("already posted (duplicate text)");
    host.expect_idle();
    assert_eq!(x.posted(), [RENDERED]);
}

#[test]
fn boot_waits_for_the_api_to_become_reachable() {
    // Until the API is up, its port takes connections and drops them at once.
    let not_ready = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = not_ready.local_addr().unwrap().port();
    let fixture = Fixture::at(&format!("https://127.0.0.1:{port}"));
    let cfg = fixture.config("deadline = \"2m\"\nmessage = \"{hostname} late {uptime}\"");
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    // The agent's first attempt fails; only then does the API come up.
    not_ready.set_nonblocking(true).unwrap();
    let until = std::time::Instant::now() + WAIT;
    while not_ready.accept().is_err() {
        assert!(std::time::Instant::now() < until, "the agent never tried");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(not_ready);
    let x = FakeX::serve(fixture.pki(), Behaviour::default(), port);
    host.expect_log("esxi-tweet: posted https://x.com/i/status/");
    assert_eq!(x.posted(), ["esx-07.lab.local late 0h12m34s"]);
    host.expect_idle();
}

#[test]
fn boot_gives_up_at_the_deadline() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let fixture = Fixture::at(&format!("https://127.0.0.1:{port}"));
    let cfg = fixture.config("deadline = \"10s\"\nmanage_firewall = false");
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    host.expect_log("post failed (exit 75)");
    host.expect_idle();
    assert!(host.firewall_calls().is_empty(), "manage_firewall = false");
    assert!(host.files_containing(CONSUMER_SECRET).is_empty());
}

#[test]
fn boot_stops_at_once_on_401() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let cfg = fixture.config_with_secret("WRONG-SECRET-0000", "");
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    host.expect_log("not retrying (exit 77)");
    assert!(host.syslog().contains("hint:"), "{}", host.syslog());
    host.expect_idle();
    assert_eq!(x.received().len(), 1, "no retry storm");
    assert_eq!(host.firewall_calls(), ["true", "false"]);
}

#[test]
fn boot_on_exec_installed_only_logs_the_way_out() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let cfg = fixture.config("");
    let mut host = EsxiHost::new();
    host.exec_installed_only = true;
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    assert!(
        host.syslog().contains("execInstalledOnly"),
        "{}",
        host.syslog()
    );
    host.expect_idle();
    assert!(x.received().is_empty());
}

#[test]
fn installed_binary_is_used_instead_of_the_payload() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let cfg = fixture.config("");
    let host = EsxiHost::new();
    let installed = host.root().join("opt/esxi-tweet/bin");
    std::fs::create_dir_all(&installed).unwrap();
    std::fs::copy(binary(), installed.join("esxi-tweet")).unwrap();
    // A payload that could never run (the agent's first 8 KiB: a valid header, no code):
    // only the installed binary can post.
    let agent = std::fs::read(binary()).unwrap();
    let tgz = esxi_tweet::bundle::build(&cfg, &agent[..8192]).unwrap();
    assert_quick_success(&host.run_bundle(&tgz));
    host.expect_log("esxi-tweet: posted");
    assert_eq!(x.posted(), [RENDERED]);
    host.expect_idle();
}

#[test]
fn corrupt_payload_is_reported_as_a_script_failure() {
    let fixture = Fixture::offline();
    let tgz = bundle(&fixture.config(""));
    // Cut the member short, as a truncated upload would.
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&tgz[..]));
    let mut member = Vec::new();
    std::io::Read::read_to_end(
        &mut archive.entries().unwrap().next().unwrap().unwrap(),
        &mut member,
    )
    .unwrap();
    member.truncate(member.len() - 4096);
    let mut header = tar::Header::new_gnu();
    header.set_size(member.len() as u64);
    header.set_mode(0o755);
    let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    builder
        .append_data(&mut header, "esxi-tweet-boot.sh", &member[..])
        .unwrap();
    let truncated = builder.into_inner().unwrap().finish().unwrap();
    let host = EsxiHost::new();
    let runs = host.run_bundle(&truncated);
    assert_eq!(runs[0].code, Some(1), "{runs:?}");
    assert!(host.syslog().contains("corrupt"), "{}", host.syslog());
    assert!(host.files_containing(CONSUMER_SECRET).is_empty());
}

#[test]
fn boot_uses_localcli_while_hostd_is_not_up() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let cfg = fixture.config("");
    let host = EsxiHost::new();
    // esxcli fails ("Connection failed") for the whole run, as before hostd is ready.
    host.hostd_ready_in(3600);
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    host.expect_log("esxi-tweet: posted https://x.com/i/status/");
    host.expect_idle();
    assert_eq!(x.posted(), [RENDERED], "ip and firewall came from localcli");
    assert_eq!(host.firewall_calls(), ["true", "false"]);
    let calls = host.cli_calls();
    assert!(
        calls.iter().all(|c| c.starts_with("localcli ")),
        "{calls:?}"
    );
}

#[test]
fn a_proxy_port_the_host_firewall_blocks_is_logged() {
    let fixture = Fixture::offline();
    let cfg = fixture.config("deadline = \"10s\"\nmanage_firewall = false");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text = text.replace(
        "\n\n[boot]",
        "\nproxy = \"http://127.0.0.1:3128\"\n\n[boot]",
    );
    std::fs::write(&cfg, text).unwrap();
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    host.expect_log("port 3128 is blocked by the host firewall");
    host.expect_idle();
}

/// Skips `(...))` of an arithmetic expansion whose `$(` was consumed: arithmetic runs no
/// command.
fn skip_arithmetic(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    let mut open = 1;
    for c in chars.by_ref() {
        match c {
            '(' => open += 1,
            ')' => {
                open -= 1;
                if open == 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    chars.next();
}

/// The command names a shell script runs: the first word of every simple command, outside
/// quotes and arithmetic but inside `$(...)`, also within double quotes.
fn commands_in(script: &str) -> std::collections::BTreeSet<String> {
    let mut found = std::collections::BTreeSet::new();
    let mut chars = script.chars().peekable();
    let mut word = String::new();
    let mut at_command = true;
    // Depth of `$(` inside double quotes, so that the closing `"` is found.
    let mut quoted_substitutions: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    let mut in_double = false;
    let mut end_word = |word: &mut String, at_command: &mut bool| {
        if !word.is_empty() {
            if *at_command {
                let keyword = matches!(
                    word.as_str(),
                    "if" | "then"
                        | "else"
                        | "elif"
                        | "fi"
                        | "do"
                        | "done"
                        | "while"
                        | "until"
                        | "for"
                        | "case"
                        | "esac"
                        | "in"
                        | "!"
                        | "{"
                        | "}"
                );
                let assignment = word.contains('=');
                // Case patterns (`80 | 443)`) are numbers, never commands.
                let pattern = word.chars().all(|c| c.is_ascii_digit());
                let plain = !pattern
                    && word
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '[');
                if !keyword && !assignment && plain {
                    found.insert(word.clone());
                }
                *at_command = keyword;
            }
            word.clear();
        }
    };
    while let Some(c) = chars.next() {
        if in_double {
            match c {
                '\\' => {
                    chars.next();
                }
                '"' => in_double = false,
                '$' if chars.peek() == Some(&'(') => {
                    chars.next();
                    if chars.peek() == Some(&'(') {
                        skip_arithmetic(&mut chars);
                    } else {
                        in_double = false;
                        depth += 1;
                        quoted_substitutions.push(depth);
                        at_command = true;
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '#' if word.is_empty() => {
                for n in chars.by_ref() {
                    if n == '\n' {
                        break;
                    }
                }
                at_command = true;
            }
            '\'' => {
                for n in chars.by_ref() {
                    if n == '\'' {
                        break;
                    }
                }
                word.push('\'');
            }
            '"' => {
                in_double = true;
                word.push('"');
            }
            '\\' => {
                chars.next();
            }
            '$' if chars.peek() == Some(&'(') => {
                end_word(&mut word, &mut at_command);
                chars.next();
                if chars.peek() == Some(&'(') {
                    skip_arithmetic(&mut chars);
                    word.push('$');
                } else {
                    depth += 1;
                    at_command = true;
                }
            }
            ')' => {
                end_word(&mut word, &mut at_command);
                if quoted_substitutions.last() == Some(&depth) {
                    quoted_substitutions.pop();
                    in_double = true;
                }
                depth = depth.saturating_sub(1);
                at_command = true;
            }
            '|' | ';' | '&' | '(' | '\n' => {
                end_word(&mut word, &mut at_command);
                at_command = true;
            }
            ' ' | '\t' => end_word(&mut word, &mut at_command),
            '<' | '>' => {
                end_word(&mut word, &mut at_command);
                // The redirection target is a file name, not a command.
                while chars
                    .peek()
                    .is_some_and(|c| matches!(c, '<' | '>' | '&' | ' '))
                {
                    chars.next();
                }
                let was = at_command;
                while chars
                    .peek()
                    .is_some_and(|c| !c.is_whitespace() && !matches!(c, ';' | '|' | ')'))
                {
                    chars.next();
                }
                at_command = was;
            }
            _ => word.push(c),
        }
    }
    end_word(&mut word, &mut at_command);
    found
}

#[test]
fn the_boot_script_runs_only_what_an_esxi_host_has() {
    let script = include_str!("../bundle/esxi-tweet-boot.sh");
    let functions: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_suffix("() {"))
        .collect();
    const BUILTINS: &[&str] = &[
        "cd", "exit", "return", "trap", "umask", "read", "set", "shift", "command", "exec", "wait",
        "local", "export", "unset", "printf", "echo", "test", "[", "true", "false", ":", ".",
        "break", "continue",
    ];
    let commands = commands_in(script);
    assert!(
        commands.contains("sed") && commands.contains("localcli"),
        "{commands:?}"
    );
    let foreign: Vec<&String> = commands
        .iter()
        .filter(|c| {
            !APPLETS.contains(&c.as_str())
                && !HOST_TOOLS.contains(&c.as_str())
                && !BUILTINS.contains(&c.as_str())
                && !functions.contains(&c.as_str())
        })
        .collect();
    assert!(foreign.is_empty(), "not on an ESXi host: {foreign:?}");
    // The guard itself sees the commands that broke the first release.
    let old =
        "x=$(wc -c < \"$f\" | tr -d ' ')\nlog \"($(head -c 9 e | tr '\\n' ' '))\"\nid -u; base64 f";
    let seen = commands_in(old);
    for missing in ["tr", "id", "base64"] {
        assert!(seen.contains(missing), "{missing} not seen in {seen:?}");
    }
}

#[test]
fn the_example_config_posts_exactly_once() {
    let fixture = Fixture::online(Behaviour::default());
    let x = fixture.x();
    let example = include_str!("../bundle/config.example.toml")
        .replace("your-api-key-secret", CONSUMER_SECRET)
        .replace("your-api-key", CONSUMER_KEY)
        .replace("1234567890-your-access-token", ACCESS_TOKEN)
        .replace("your-access-token-secret", ACCESS_TOKEN_SECRET)
        .replace(
            "# api_base = \"https://api.x.com\"",
            &format!("api_base = \"{}\"", x.base_url()),
        )
        .replace(
            "# ca_file = \"proxy-ca.pem\"",
            &format!("ca_file = \"{}\"", x.ca_file.display()),
        );
    assert!(example.contains(CONSUMER_SECRET) && example.contains("api_base = \"https"));
    let cfg = fixture.dir().join("config.toml");
    std::fs::write(&cfg, example).unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    host.expect_log("esxi-tweet: posted https://x.com/i/status/");
    host.expect_idle();
    assert_eq!(x.posted(), [RENDERED]);
    assert_eq!(x.received().len(), 1);
}

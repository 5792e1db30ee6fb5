//! The Auto Deploy script bundle on an emulated ESXi host: one quick member, one signed post
//! with the rendered text, firewall handling, waiting for the network, the deadline, 401s,
//! execInstalledOnly, a corrupt payload, and no secret on a command line or left on disk.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

use crate::support::esxi_host::{CmdlineWatch, EsxiHost};
use crate::support::fake_x::{Behaviour, FakeX, Pki};
use crate::support::{
    ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, binary, run,
};

const RENDERED: &str = "esx-07.lab.local is up: VMware ESXi 7.0.3 build-21930508, vmk0 10.0.0.7";
const WAIT: Duration = Duration::from_secs(60);

fn config(
    dir: &Path,
    api_base: &str,
    ca_file: &Path,
    consumer_secret: &str,
    boot: &str,
) -> std::path::PathBuf {
    let path = dir.join("bundle-config.toml");
    std::fs::write(
        &path,
        format!(
            "consumer_key = \"{CONSUMER_KEY}\"\nconsumer_secret = \"{consumer_secret}\"\n\
             access_token = \"{ACCESS_TOKEN}\"\naccess_token_secret = \"{ACCESS_TOKEN_SECRET}\"\n\
             api_base = \"{api_base}\"\nca_file = \"{}\"\n\n[boot]\n{boot}\n",
            ca_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
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
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let cfg = config(
        dir.path(),
        "https://127.0.0.1:1",
        &pki.ca_file,
        CONSUMER_SECRET,
        "",
    );
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
    let out_path = dir.path().join("b.tgz");
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
    let listing = std::process::Command::new("tar")
        .arg("-tvzf")
        .arg(&out_path)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.starts_with("-rwxr-xr-x"), "{listing}");
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
    let pki = Pki::generate(dir.path());
    let cfg = config(
        dir.path(),
        "https://127.0.0.1:1",
        &pki.ca_file,
        CONSUMER_SECRET,
        "message = \"{hostnmae} up\"",
    );
    let err = esxi_tweet::bundle::build(&cfg, b"x").unwrap_err();
    assert!(err.to_string().contains("{hostnmae}"), "{err}");
}

#[test]
fn boot_posts_once_restores_the_firewall_and_leaves_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let cfg = config(
        dir.path(),
        &x.base_url(),
        &x.ca_file,
        CONSUMER_SECRET,
        "deadline = \"1m\"",
    );
    let tgz = bundle(&cfg);
    let host = EsxiHost::new();
    let watch = CmdlineWatch::start(vec![CONSUMER_SECRET.into(), ACCESS_TOKEN_SECRET.into()]);
    let runs = host.run_bundle(&tgz);
    assert_quick_success(&runs);
    assert!(
        host.wait_for_log("esxi-tweet: posted https://x.com/i/status/", WAIT),
        "{}",
        host.syslog()
    );
    assert!(
        host.wait_until_idle(WAIT),
        "left running: {:?}",
        host.processes()
    );
    let (scans, leaked) = watch.finish();
    assert!(scans > 1);
    assert!(leaked.is_empty(), "secret on a command line: {leaked:?}");

    assert_eq!(x.posted(), [RENDERED]);
    assert!(x.received().iter().all(|r| r.signature_ok));
    assert_eq!(host.firewall_calls(), ["true", "false"]);
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
    assert!(
        host.wait_for_log("already posted (duplicate text)", WAIT),
        "{}",
        host.syslog()
    );
    assert!(host.wait_until_idle(WAIT));
    assert_eq!(x.posted(), [RENDERED]);
}

#[test]
fn boot_waits_for_the_api_to_become_reachable() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    // Until the API is up, its port takes connections and drops them at once.
    let not_ready = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = not_ready.local_addr().unwrap().port();
    let cfg = config(
        dir.path(),
        &format!("https://127.0.0.1:{port}"),
        &pki.ca_file,
        CONSUMER_SECRET,
        "deadline = \"2m\"\nmessage = \"{hostname} late {uptime}\"",
    );
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
    let x = FakeX::serve(&pki, Behaviour::default(), port);
    assert!(
        host.wait_for_log("esxi-tweet: posted https://x.com/i/status/", WAIT),
        "{}",
        host.syslog()
    );
    assert_eq!(x.posted(), ["esx-07.lab.local late 0h12m34s"]);
    assert!(host.wait_until_idle(WAIT));
}

#[test]
fn boot_gives_up_at_the_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let cfg = config(
        dir.path(),
        &format!("https://127.0.0.1:{port}"),
        &pki.ca_file,
        CONSUMER_SECRET,
        "deadline = \"3s\"\nmanage_firewall = false",
    );
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    assert!(
        host.wait_for_log("post failed (exit 75)", WAIT),
        "{}",
        host.syslog()
    );
    assert!(
        host.wait_until_idle(WAIT),
        "left running: {:?}",
        host.processes()
    );
    assert!(host.firewall_calls().is_empty(), "manage_firewall = false");
    assert!(host.files_containing(CONSUMER_SECRET).is_empty());
}

#[test]
fn boot_stops_at_once_on_401() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let cfg = config(
        dir.path(),
        &x.base_url(),
        &x.ca_file,
        "WRONG-SECRET-0000",
        "",
    );
    let host = EsxiHost::new();
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    assert!(
        host.wait_for_log("not retrying (exit 77)", WAIT),
        "{}",
        host.syslog()
    );
    assert!(host.syslog().contains("hint:"), "{}", host.syslog());
    assert!(host.wait_until_idle(WAIT));
    assert_eq!(x.received().len(), 1, "no retry storm");
    assert_eq!(host.firewall_calls(), ["true", "false"]);
}

#[test]
fn boot_on_exec_installed_only_logs_the_way_out() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let cfg = config(dir.path(), &x.base_url(), &x.ca_file, CONSUMER_SECRET, "");
    let mut host = EsxiHost::new();
    host.exec_installed_only = true;
    assert_quick_success(&host.run_bundle(&bundle(&cfg)));
    assert!(
        host.syslog().contains("execInstalledOnly"),
        "{}",
        host.syslog()
    );
    assert!(host.wait_until_idle(WAIT));
    assert!(x.received().is_empty());
}

#[test]
fn installed_binary_is_used_instead_of_the_payload() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let cfg = config(dir.path(), &x.base_url(), &x.ca_file, CONSUMER_SECRET, "");
    let host = EsxiHost::new();
    let installed = host.root().join("opt/esxi-tweet/bin");
    std::fs::create_dir_all(&installed).unwrap();
    std::fs::copy(binary(), installed.join("esxi-tweet")).unwrap();
    // A payload that could never run: only the installed binary can post.
    let tgz = esxi_tweet::bundle::build(&cfg, b"\x7fELF not really").unwrap();
    assert_quick_success(&host.run_bundle(&tgz));
    assert!(
        host.wait_for_log("esxi-tweet: posted", WAIT),
        "{}",
        host.syslog()
    );
    assert_eq!(x.posted(), [RENDERED]);
    assert!(host.wait_until_idle(WAIT));
}

#[test]
fn corrupt_payload_is_reported_as_a_script_failure() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path());
    let cfg = config(
        dir.path(),
        "https://127.0.0.1:1",
        &pki.ca_file,
        CONSUMER_SECRET,
        "",
    );
    let tgz = bundle(&cfg);
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

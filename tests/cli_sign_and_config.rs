//! `esxi-tweet sign`, credentials from the config file and the environment, and usage errors.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::support::fake_x::{Behaviour, FakeX};
use crate::support::{
    ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, agent, run, with_credentials,
};

fn write_config(path: &Path, body: &str, mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, body).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn full_config(x: &FakeX, ca_file: &str) -> String {
    format!(
        "consumer_key = \"{CONSUMER_KEY}\"\nconsumer_secret = \"{CONSUMER_SECRET}\"\n\
         access_token = \"{ACCESS_TOKEN}\"\naccess_token_secret = \"{ACCESS_TOKEN_SECRET}\"\n\
         api_base = \"{}\"\nca_file = \"{ca_file}\"\n",
        x.base_url()
    )
}

#[test]
fn sign_reproduces_the_x_documentation_vector() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = agent(home.path());
    cmd.env("TWITTER_CONSUMER_KEY", "xvz1evFS4wEEPTGEFPHBog")
        .env(
            "TWITTER_CONSUMER_SECRET",
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
        )
        .env(
            "TWITTER_ACCESS_TOKEN",
            "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
        )
        .env(
            "TWITTER_ACCESS_TOKEN_SECRET",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        )
        .args([
            "sign",
            "--method",
            "post",
            "--url",
            "https://api.twitter.com/1.1/statuses/update.json?include_entities=true",
            "--form",
            "status=Hello Ladies + Gentlemen, a signed OAuth request!",
            "--nonce",
            "kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg",
            "--timestamp",
            "1318622958",
            "--json",
        ]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let keys: Vec<&String> = json.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["authorization", "base_string", "signature"]);
    assert_eq!(json["signature"], "hCtSmYh+iHYCEqBWrE7C7hYmtUk=");
    assert!(
        json["base_string"]
            .as_str()
            .unwrap()
            .starts_with("POST&https%3A%2F%2Fapi.twitter.com%2F1.1%2Fstatuses%2Fupdate.json&include_entities%3Dtrue%26oauth_consumer_key")
    );
    assert!(
        json["authorization"]
            .as_str()
            .unwrap()
            .contains("oauth_signature=\"hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D\"")
    );
    assert!(
        !out.stdout
            .contains("kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw")
    );
    assert!(
        !out.stdout
            .contains("LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE")
    );
}

#[test]
fn sign_human_output_has_three_labelled_lines() {
    let home = tempfile::tempdir().unwrap();
    let mut cmd = agent(home.path());
    with_credentials(&mut cmd).args(["sign", "--url", "https://api.x.com/2/tweets"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    let labels: Vec<&str> = out
        .stdout
        .lines()
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(labels, ["base string", "signature", "authorization"]);
    let bad = run(
        with_credentials(&mut agent(home.path())).args(["sign", "--url", "api.x.com/2/tweets"]),
        None,
    );
    assert_eq!(bad.code, 64, "{bad:?}");
    assert!(bad.stderr.contains("invalid URL"), "{bad:?}");
}

#[test]
fn config_file_supplies_credentials_api_base_and_relative_ca_file() {
    let home = tempfile::tempdir().unwrap();
    let x = FakeX::start(home.path(), Behaviour::default());
    let config_dir = home.path().join(".config/esxi-tweet");
    std::fs::create_dir_all(&config_dir).unwrap();
    std::fs::copy(&x.ca_file, config_dir.join("ca.pem")).unwrap();
    write_config(
        &config_dir.join("config.toml"),
        &full_config(&x, "ca.pem"),
        0o600,
    );
    let out = run(
        agent(home.path()).args(["post", "from the default config"]),
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(x.posted(), ["from the default config"]);
}

#[test]
fn environment_wins_over_the_config_file() {
    let home = tempfile::tempdir().unwrap();
    let x = FakeX::start(home.path(), Behaviour::default());
    let config = home.path().join("elsewhere.toml");
    write_config(
        &config,
        &full_config(&x, x.ca_file.to_str().unwrap()),
        0o600,
    );
    let mut cmd = agent(home.path());
    cmd.env("TWITTER_ACCESS_TOKEN", "env-token-that-x-does-not-know")
        .arg("post")
        .arg("--config")
        .arg(&config)
        .arg("precedence");
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 77, "the environment's token was used: {out:?}");
    let received = x.received();
    assert!(
        received[0]
            .header("authorization")
            .unwrap()
            .contains("oauth_token=\"env-token-that-x-does-not-know\"")
    );
    // XDG_CONFIG_HOME beats HOME for the default path.
    let xdg = home.path().join("xdg");
    write_config(
        &xdg.join("esxi-tweet/config.toml"),
        &full_config(&x, x.ca_file.to_str().unwrap()),
        0o600,
    );
    let mut cmd = agent(home.path());
    cmd.env("XDG_CONFIG_HOME", &xdg).args(["post", "via xdg"]);
    assert_eq!(run(&mut cmd, None).code, 0);
}

#[test]
fn config_readable_by_others_is_refused_with_the_fix() {
    let home = tempfile::tempdir().unwrap();
    let x = FakeX::start(home.path(), Behaviour::default());
    let config = home.path().join("config.toml");
    write_config(&config, &full_config(&x, "ca.pem"), 0o644);
    let out = post_with_config(home.path(), &config);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("chmod 600 {}", config.display())),
        "{out:?}"
    );
    assert!(x.received().is_empty());
}

#[test]
fn missing_credentials_and_bad_config_exit_78() {
    let home = tempfile::tempdir().unwrap();
    let out = run(agent(home.path()).args(["post", "x"]), None);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("TWITTER_CONSUMER_KEY"), "{out:?}");
    let missing = home.path().join("nope.toml");
    let out = post_with_config(home.path(), &missing);
    assert_eq!(out.code, 78, "{out:?}");
    let broken = home.path().join("broken.toml");
    write_config(
        &broken,
        &format!("consumer_secret = \"{CONSUMER_SECRET}\"\nconsumer_key = [\n"),
        0o600,
    );
    let out = post_with_config(home.path(), &broken);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("line"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn usage_errors_exit_64_and_help_documents_exit_codes() {
    let home = tempfile::tempdir().unwrap();
    for args in [
        &["post", "--nope"][..],
        &["frobnicate"],
        &["post", "--deadline", "soon", "x"],
        &[],
    ] {
        let out = run(with_credentials(&mut agent(home.path())).args(args), None);
        assert_eq!(out.code, 64, "{args:?}: {out:?}");
    }
    let help = run(agent(home.path()).arg("--help"), None);
    assert_eq!(help.code, 0);
    for code in ["64", "65", "69", "75", "77", "78"] {
        assert!(help.stdout.contains(&format!("  {code}  ")), "{help:?}");
    }
    // Secrets are never flags.
    let out = run(
        agent(home.path()).args(["post", "--consumer-secret", "s", "x"]),
        None,
    );
    assert_eq!(out.code, 64);
}

#[test]
fn hostile_values_never_panic_or_reach_the_screen() {
    let home = tempfile::tempdir().unwrap();
    let post = |args: &[&str]| {
        run(
            with_credentials(&mut agent(home.path()))
                .arg("post")
                .args(args),
            None,
        )
    };
    // A duration that overflows any clock arithmetic is a usage error, not an abort.
    let out = post(&["--timeout", "18446744073709551615s", "x"]);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(!out.stderr.contains("panicked"), "{out:?}");
    // A password in --api-base is never shown, in --dry-run or in -v.
    let with_password = "https://admin:hunter2pass@127.0.0.1:1";
    let out = post(&["--dry-run", "--api-base", with_password, "x"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("https://***@127.0.0.1:1/2/tweets"),
        "{out:?}"
    );
    let out = post(&["-v", "--deadline", "1s", "--api-base", with_password, "x"]);
    assert!(out.stderr.contains("attempt 1"), "{out:?}");
    for shown in [&out.stdout, &out.stderr] {
        assert!(!shown.contains("hunter2pass"), "{out:?}");
    }
    // Secrets typed into the wrong place of the config file are not echoed.
    let config = home.path().join("c.toml");
    for body in [
        format!("consumer_secret = 4242424242\naccess_token_secret = \"{ACCESS_TOKEN_SECRET}\"\n"),
        format!("api = \"{CONSUMER_SECRET}\"\n"),
        format!("{ACCESS_TOKEN_SECRET} = \"x\"\n"),
    ] {
        write_config(&config, &body, 0o600);
        let out = post_with_config(home.path(), &config);
        assert_eq!(out.code, 78, "{out:?}");
        for secret in ["4242424242", CONSUMER_SECRET, ACCESS_TOKEN_SECRET] {
            assert!(!out.stderr.contains(secret), "{out:?}");
        }
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    }
}

#[test]
fn the_documented_sign_example_prints_the_documented_signature() {
    // The agent page's shell block, run as written with the binary on PATH.
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/agent.md")).unwrap();
    let section = &readme[readme.find("### `esxi-tweet sign").expect("a sign section")..];
    let block = section
        .split("```sh\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("a shell block");
    assert!(
        block.contains("https://api.twitter.com/"),
        "X's example signs api.twitter.com"
    );
    let home = tempfile::tempdir().unwrap();
    let bin = home.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(crate::support::binary(), bin.join("esxi-tweet")).unwrap();
    let mut sh = std::process::Command::new("sh");
    sh.env_clear()
        .env("HOME", home.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .args(["-c", block]);
    let out = run(&mut sh, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("signature:     hCtSmYh+iHYCEqBWrE7C7hYmtUk=\n"),
        "{out:?}"
    );
    assert!(readme.contains("`hCtSmYh+iHYCEqBWrE7C7hYmtUk=`"));
}

/// `esxi-tweet --config CONFIG post x` in `home`.
fn post_with_config(home: &Path, config: &Path) -> crate::support::Run {
    run(
        agent(home).arg("--config").arg(config).args(["post", "x"]),
        None,
    )
}

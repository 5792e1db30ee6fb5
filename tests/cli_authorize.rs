//! `esxi-tweet authorize`: the PIN flow against the fake X API, the config file it writes, and
//! the bad inputs that must leave everything as it was.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::connect_proxy::ConnectProxy;
use crate::support::fake_x::{Behaviour, PIN, SCREEN_NAME};
use crate::support::{
    ACCESS_TOKEN, ACCESS_TOKEN_SECRET, CONSUMER_KEY, CONSUMER_SECRET, Run, agent, run,
};

use crate::support::Home as Case;

impl Case {
    /// Where `authorize` writes when no --config is given.
    fn config_path(&self) -> PathBuf {
        self.dir.path().join(".config/esxi-tweet/config.toml")
    }

    /// `esxi-tweet authorize` with the app's keys in the environment (only those).
    fn authorize(&self, extra: &[&str]) -> Command {
        let mut cmd = agent(self.dir.path());
        cmd.env("TWITTER_CONSUMER_KEY", CONSUMER_KEY)
            .env("TWITTER_CONSUMER_SECRET", CONSUMER_SECRET)
            .arg("authorize");
        self.x.client(&mut cmd).args(extra);
        cmd
    }

    fn run_with_pin(&self, pin: &str, extra: &[&str]) -> Run {
        run(&mut self.authorize(extra), Some(pin.as_bytes()))
    }
}

/// The error line: exactly one, and the last thing on stderr.
fn error_line(out: &Run) -> &str {
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.starts_with("esxi-tweet: "))
        .collect();
    assert_eq!(errors.len(), 1, "{out:?}");
    assert_eq!(out.stderr.lines().last(), Some(errors[0]), "{out:?}");
    errors[0]
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn authorize_writes_the_config_and_a_post_then_works_from_it() {
    let case = Case::new(Behaviour::default());
    let out = case.run_with_pin(&format!("{PIN}\n"), &[]);
    assert_eq!(out.code, 0, "{out:?}");
    let path = case.config_path();
    assert_eq!(
        out.stdout,
        format!(
            "authorized @{SCREEN_NAME}; credentials written to {}\n",
            path.display()
        )
    );
    assert!(!out.stdout.contains(ACCESS_TOKEN), "no token on screen");
    assert!(
        out.stderr.contains(&format!(
            "{}/oauth/authorize?oauth_token=reqtok-1",
            case.x.base_url()
        )),
        "{out:?}"
    );
    // Both steps were signed as X checks them: no token then the request token.
    let received = case.x.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/oauth/request_token", "/oauth/access_token"]);
    assert!(received.iter().all(|r| r.signature_ok), "{received:?}");
    assert!(
        received[0]
            .header("authorization")
            .unwrap()
            .contains("oauth_callback=\"oob\"")
    );

    assert_eq!(mode(&path), 0o600);
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["consumer_key"].as_str(), Some(CONSUMER_KEY));
    assert_eq!(written["consumer_secret"].as_str(), Some(CONSUMER_SECRET));
    assert_eq!(written["access_token"].as_str(), Some(ACCESS_TOKEN));
    assert_eq!(
        written["access_token_secret"].as_str(),
        Some(ACCESS_TOKEN_SECRET)
    );

    // The file alone is enough to post: no credentials in the environment.
    let mut post = agent(case.dir.path());
    case.x
        .client(post.arg("post"))
        .arg("first post of the announcer");
    let out = run(&mut post, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(case.x.posted(), ["first post of the announcer"]);
}

#[test]
fn an_existing_config_keeps_its_settings_and_comments() {
    let case = Case::new(Behaviour::default());
    let path = case.dir.path().join("esxi-tweet.toml");
    let before = "# the announcer of rack 12\napi = \"v2\"\naccess_token = \"an-old-token\"\n\n[boot]\nmessage = \"{hostname} is up\"\n";
    std::fs::write(&path, before).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = case.run_with_pin(PIN, &["--config", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    let after = std::fs::read_to_string(&path).unwrap();
    assert!(
        after.starts_with("# the announcer of rack 12\napi = \"v2\"\n"),
        "{after}"
    );
    assert!(
        after.contains("[boot]\nmessage = \"{hostname} is up\""),
        "{after}"
    );
    assert!(!after.contains("an-old-token"), "{after}");
    let written: toml::Table = toml::from_str(&after).unwrap();
    assert_eq!(written["access_token"].as_str(), Some(ACCESS_TOKEN));
    assert_eq!(
        mode(&path),
        0o600,
        "secrets now: 0600 whatever the mode was"
    );
}

#[test]
fn through_the_datacenter_proxy() {
    let case = Case::new(Behaviour::default());
    let proxy = ConnectProxy::start();
    let out = case.run_with_pin(PIN, &["--proxy", &proxy.url()]);
    assert_eq!(out.code, 0, "{out:?}");
    let target = format!("127.0.0.1:{}", case.x.port);
    assert!(!proxy.targets().is_empty());
    assert!(
        proxy.targets().iter().all(|t| *t == target),
        "{:?}",
        proxy.targets()
    );
}

#[test]
fn bad_pins_and_expired_tokens_write_nothing() {
    for (pin, behaviour, code, says) in [
        ("471 1081\n", Behaviour::default(), 64, "no spaces"),
        ("\n", Behaviour::default(), 64, "no PIN"),
        ("1111111\n", Behaviour::default(), 77, "refused the PIN"),
        (
            PIN,
            Behaviour {
                expire_request_tokens: true,
                ..Default::default()
            },
            77,
            "expired",
        ),
    ] {
        let case = Case::new(behaviour);
        let out = case.run_with_pin(pin, &[]);
        assert_eq!(out.code, code, "{pin:?}: {out:?}");
        assert!(error_line(&out).contains(says), "{pin:?}: {out:?}");
        assert!(!case.config_path().exists(), "{pin:?}: nothing written");
        assert!(out.stdout.is_empty(), "{out:?}");
    }
}

#[test]
fn a_file_that_is_not_ours_is_left_alone() {
    let case = Case::new(Behaviour::default());
    let path = case.dir.path().join("config.toml");
    let theirs = "[server]\nlisten = \"0.0.0.0:80\"\n";
    std::fs::write(&path, theirs).unwrap();
    let out = case.run_with_pin(PIN, &["--config", path.to_str().unwrap()]);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(error_line(&out).contains("left alone"), "{out:?}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), theirs);
    let leftovers: Vec<_> = std::fs::read_dir(case.dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn without_the_app_keys_it_says_which_to_set() {
    let case = Case::new(Behaviour::default());
    let mut cmd = agent(case.dir.path());
    cmd.arg("authorize")
        .args(["--api-base", &case.x.base_url()]);
    let out = run(&mut cmd, Some(PIN.as_bytes()));
    assert_eq!(out.code, 78, "{out:?}");
    assert!(error_line(&out).contains("TWITTER_CONSUMER_KEY"), "{out:?}");
    assert!(case.x.received().is_empty());
}

#[test]
fn a_named_config_that_does_not_exist_yet_is_created() {
    let case = Case::new(Behaviour::default());
    // As the README and the relay's systemd section do: a system path, not there yet.
    let path = case.dir.path().join("etc/esxi-tweet/config.toml");
    let out = case.run_with_pin(&format!("{PIN}\n"), &["--config", path.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().unwrap()), 0o700);
    let written: toml::Table = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(written["access_token"].as_str(), Some(ACCESS_TOKEN));
    // Anything else still wants the named file to exist.
    let mut post = agent(case.dir.path());
    let missing = case.dir.path().join("nope.toml");
    post.arg("post").arg("--config").arg(&missing).arg("x");
    let out = run(&mut post, None);
    assert_eq!(out.code, 78, "{out:?}");
}

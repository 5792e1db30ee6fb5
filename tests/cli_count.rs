//! `esxi-tweet count`, `post --fit` and `post --dry-run` without credentials: the text side
//! of the agent, which needs no account.

use crate::support::fake_x::{Behaviour, FakeX};
use crate::support::{Run, agent, run, with_credentials};

fn count(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let dir = tempfile::tempdir().unwrap();
    // A config file that would break anything that reads it: count must not.
    let config = dir.path().join(".config/esxi-tweet");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(config.join("config.toml"), "not = [valid").unwrap();
    run(agent(dir.path()).arg("count").args(args), stdin)
}

#[test]
fn count_says_what_x_would_say() {
    // The README's first post; a host name under a known TLD counts as a link (23); a URL
    // under `.local` (no TLD) counts as its text.
    for (text, said) in [
        ("esx-07.rack12.example.com is up", "29/280 fits\n"),
        (
            "esx-07.rack12.datacenter-frankfurt.example.com is up",
            "29/280 fits\n",
        ),
        (
            "see https://vcenter.lab.local/ui/app/host/host-42/summary now",
            "61/280 fits\n",
        ),
    ] {
        let out = count(&[text], None);
        assert_eq!(
            (out.code, out.stdout.as_str()),
            (0, said),
            "{text}: {out:?}"
        );
    }
    let readme = include_str!("../README.md");
    assert!(
        readme.contains("esxi-tweet count \"esx-07.rack12.example.com is up\"    # 29/280 fits")
    );
    let long = "x".repeat(281);
    let out = count(&[&long], None);
    assert_eq!(out.code, 65, "{out:?}");
    assert_eq!(out.stdout, "281/280 too long\n");
    assert!(out.stderr.contains("281/280"), "{out:?}");
}

#[test]
fn count_json_from_standard_input() {
    let text = format!("{}\n", "故".repeat(141));
    let out = count(&["--json", "-"], Some(text.as_bytes()));
    assert_eq!(out.code, 65, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"weighted_length": 282, "valid": false, "permillage": 1007})
    );
    let out = count(&["--json"], Some("Hi http://test.co\n".as_bytes()));
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"weighted_length": 26, "valid": true, "permillage": 92})
    );
}

#[test]
fn bad_text_gets_one_line() {
    let out = count(&["-"], Some(b"caf\xe9 latin-1\n"));
    assert_eq!(out.code, 65, "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert!(out.stderr.contains("not UTF-8"), "{out:?}");
    let out = count(&["ok\u{FEFF}"], None);
    assert_eq!(out.code, 65, "{out:?}");
    assert_eq!(out.stdout, "4/280 refused\n");
    assert!(out.stderr.contains("U+FEFF"), "{out:?}");
}

fn post(x: &FakeX, home: &std::path::Path, args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut cmd = agent(home);
    x.client(with_credentials(&mut cmd).arg("post")).args(args);
    run(&mut cmd, stdin)
}

#[test]
fn fit_posts_the_longest_part_that_fits() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let alert = "[FIRING:3] DatastoreUsage on esx-07.rack12.example.com: datastore1 is 97% full, \
                 grows 2%/h; runbook https://wiki.example.com/runbooks/datastore-usage "
        .repeat(4);
    let out = post(&x, dir.path(), &[], Some(alert.as_bytes()));
    assert_eq!(
        out.code, 65,
        "without --fit a long text is refused: {out:?}"
    );
    assert!(out.stderr.contains("/280"), "{out:?}");
    assert!(x.posted().is_empty());

    let out = post(&x, dir.path(), &["--fit"], Some(alert.as_bytes()));
    assert_eq!(out.code, 0, "{out:?}");
    // Said without -v: what is posted is not what was given.
    assert!(out.stderr.contains("shortened to fit: "), "{out:?}");
    assert!(out.stderr.contains(" -> 2"), "{out:?}");
    let posted = x.posted();
    let text = &posted[0];
    assert!(text.ends_with('…'), "{text}");
    assert!(alert.starts_with(text.trim_end_matches('…')), "{text}");
    let counted = count(&[text], None);
    assert_eq!(counted.code, 0, "X would take it: {counted:?}");
    // The cut fell at a word's end, not inside the URL it came to.
    assert!(
        !text.trim_end_matches('…').ends_with("https://wiki"),
        "{text}"
    );
}

#[test]
fn dry_run_needs_no_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let mut cmd = agent(dir.path());
    cmd.arg("post")
        .args(["--api-base", &x.base_url(), "--dry-run", "hello"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .starts_with(&format!("POST {}/2/tweets\n", x.base_url())),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("oauth_signature=\"<signature>\""),
        "{out:?}"
    );
    assert!(
        out.stdout.contains("oauth_token=\"<access token>\""),
        "{out:?}"
    );
    assert!(out.stdout.ends_with("{\"text\":\"hello\"}\n"), "{out:?}");
    assert!(x.received().is_empty());
}

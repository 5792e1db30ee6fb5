//! `esxi-tweet post` against the fake X API: successes, the API's refusals, retries, clock
//! skew and the deadline.

use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::fake_x::{Behaviour, Canned};
use crate::support::{Run, agent, run, with_credentials};

use crate::support::Home as Case;

impl Case {
    /// `esxi-tweet post ARGS...` with credentials, trusting the test CA.
    fn post(&self, args: &[&str]) -> Command {
        let mut cmd = agent(self.dir.path());
        with_credentials(&mut cmd);
        self.x.client(cmd.arg("post")).args(args);
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        run(&mut self.post(args), None)
    }
}

fn v1_allowed() -> Behaviour {
    Behaviour {
        v1_allowed: true,
        ..Default::default()
    }
}

#[test]
fn v2_post_prints_the_url_and_sends_a_signed_json_body() {
    let case = Case::new(Behaviour::default());
    let out = case.run(&["hello from esx-07"]);
    assert_eq!(out.code, 0, "{out:?}");
    let received = case.x.received();
    assert_eq!(received.len(), 1);
    assert!(received[0].signature_ok);
    assert_eq!(received[0].path, "/2/tweets");
    assert_eq!(received[0].header("content-type"), Some("application/json"));
    assert_eq!(case.x.posted(), ["hello from esx-07"]);
    assert!(
        out.stdout.starts_with("posted https://x.com/i/status/"),
        "{out:?}"
    );
    assert_eq!(out.stdout.lines().count(), 1);
}

#[test]
fn v1_post_with_json_output() {
    let case = Case::new(v1_allowed());
    let out = case.run(&["--api", "v1.1", "--json", "legacy hello"]);
    assert_eq!(out.code, 0, "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let id = json["id"].as_str().unwrap();
    assert_eq!(json["text"], "legacy hello");
    assert_eq!(json["url"], format!("https://x.com/i/status/{id}"));
    let received = case.x.received();
    assert_eq!(received[0].path, "/1.1/statuses/update.json");
    assert!(received[0].signature_ok, "the form body is signed");
}

#[test]
fn awkward_texts_are_signed_and_delivered_intact() {
    let texts = [
        "emoji 🙋🏽 👨‍👩‍👧‍👦 🇫🇷 done",
        "酒場で ふー 한국어",
        "reserved !*'()~+&=% and /?#[]@ $,;:",
        "two\nlines\r\nand a tab\t.",
        "  leading and trailing spaces  ",
    ];
    for api in ["v2", "v1.1"] {
        let case = Case::new(v1_allowed());
        for text in texts {
            let out = case.run(&["--api", api, text]);
            assert_eq!(out.code, 0, "{api} {text:?}: {out:?}");
        }
        assert_eq!(case.x.posted(), texts, "{api}");
        assert!(case.x.received().iter().all(|r| r.signature_ok));
    }
}

#[test]
fn text_from_stdin_loses_one_trailing_newline() {
    let case = Case::new(Behaviour::default());
    let out = run(&mut case.post(&[]), Some(b"from stdin\n\n"));
    assert_eq!(out.code, 0, "{out:?}");
    let out = run(&mut case.post(&["-"]), Some("dash ☃\r\n".as_bytes()));
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(case.x.posted(), ["from stdin\n", "dash ☃"]);
}

#[test]
fn replies_name_the_post_replied_to() {
    let case = Case::new(v1_allowed());
    assert_eq!(case.run(&["--reply-to", "1234567890", "v2 reply"]).code, 0);
    assert_eq!(
        case.run(&["--api", "v1.1", "--reply-to", "1234567890", "v1 reply"])
            .code,
        0
    );
    let received = case.x.received();
    let v2: serde_json::Value = serde_json::from_str(&received[0].body).unwrap();
    assert_eq!(v2["reply"]["in_reply_to_tweet_id"], "1234567890");
    assert!(
        received[1]
            .body
            .contains("in_reply_to_status_id=1234567890")
    );
    assert!(received.iter().all(|r| r.signature_ok));
    let bad = case.run(&["--reply-to", "12a", "x"]);
    assert_eq!(bad.code, 64, "{bad:?}");
}

#[test]
fn dry_run_prints_the_request_and_sends_nothing() {
    let case = Case::new(Behaviour::default());
    let out = case.run(&["--dry-run", "not sent"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(case.x.received().is_empty());
    let mut lines = out.stdout.lines();
    assert_eq!(
        lines.next(),
        Some(format!("POST {}/2/tweets", case.x.base_url()).as_str())
    );
    assert!(
        out.stdout
            .contains("\nAuthorization: OAuth oauth_consumer_key=\"test-consumer-key\"")
    );
    assert!(out.stdout.contains("\nContent-Type: application/json\n"));
    assert!(
        out.stdout.ends_with("\n\n{\"text\":\"not sent\"}\n"),
        "{out:?}"
    );
}

#[test]
fn duplicate_text_is_rejected_with_exit_65() {
    for api in ["v2", "v1.1"] {
        let case = Case::new(v1_allowed());
        assert_eq!(case.run(&["--api", api, "same"]).code, 0);
        let out = case.run(&["--api", api, "same"]);
        assert_eq!(out.code, 65, "{out:?}");
        assert!(out.stderr.contains("duplicate"), "{out:?}");
        assert!(out.stderr.contains("--allow-duplicate"), "{out:?}");
        assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
        // --allow-duplicate: done, with a note, and `duplicate` for scripts to read.
        let out = case.run(&["--api", api, "--allow-duplicate", "same"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(out.stdout, "duplicate (already posted)\n");
        assert!(out.stderr.contains("--allow-duplicate"), "{out:?}");
        assert_eq!(case.x.posted(), ["same"], "nothing new was posted");
    }
}

#[test]
fn wrong_secret_is_an_authentication_failure() {
    let case = Case::new(Behaviour::default());
    let mut cmd = case.post(&["hello"]);
    cmd.env("TWITTER_CONSUMER_SECRET", "not-the-right-one");
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("HTTP 401"), "{out:?}");
    assert!(!out.stderr.contains("not-the-right-one"));
    assert_eq!(case.x.received().len(), 1, "a 401 is not retried");
    assert!(case.x.posted().is_empty());
}

#[test]
fn read_only_app_gets_the_permissions_hint() {
    let case = Case::new(Behaviour {
        read_only: true,
        ..Default::default()
    });
    let out = case.run(&["hello"]);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("Read and Write"), "{out:?}");
    assert!(out.stderr.contains("regenerate"), "{out:?}");
}

#[test]
fn v1_on_a_low_tier_suggests_v2() {
    let case = Case::new(Behaviour::default());
    let out = case.run(&["--api", "v1.1", "hello"]);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("code 453"), "{out:?}");
    assert!(out.stderr.contains("--api v2"), "{out:?}");
}

#[test]
fn a_post_whose_answer_is_cut_short_is_made_once_and_reported() {
    let case = Case::new(Behaviour {
        cut_answers: 1,
        ..Default::default()
    });
    let out = case.run(&["cut short"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(case.x.posted(), ["cut short"]);
    assert_eq!(case.x.received().len(), 1, "no retry after a 2xx");
    assert_eq!(out.stdout, "posted (id unknown)\n");
    assert!(
        out.stderr.contains("warning") && out.stderr.contains("id is unknown"),
        "{out:?}"
    );
}

#[test]
fn a_post_whose_answer_is_lost_is_not_made_twice() {
    let case = Case::new(Behaviour {
        lose_answers: 1,
        ..Default::default()
    });
    let out = case.run(&["--json", "lost answer"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(case.x.posted(), ["lost answer"], "one post");
    let received = case.x.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [201, 403],
        "the retry met X's duplicate refusal"
    );
    assert!(out.stderr.contains("earlier attempt posted"), "{out:?}");
    let json: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(json["id"], serde_json::Value::Null);
    assert_eq!(json["text"], "lost answer");
}

#[test]
fn server_error_then_success_uses_a_fresh_nonce() {
    let case = Case::new(Behaviour {
        script: [Canned::new(503, r#"{"title":"Service Unavailable"}"#)].into(),
        ..Default::default()
    });
    let out = case.run(&["-v", "after a 503"]);
    assert_eq!(out.code, 0, "{out:?}");
    let received = case.x.received();
    assert_eq!(
        received.iter().map(|r| r.status).collect::<Vec<_>>(),
        [503, 201]
    );
    assert_ne!(received[0].nonce, received[1].nonce);
    assert!(
        out.stderr.contains(&format!(
            "attempt 1 to {}/2/tweets failed",
            case.x.base_url()
        )),
        "{out:?}"
    );
}

/// An X that answers the first post with a 429 whose window resets in `secs` seconds (Unix
/// time returned).
fn rate_limited_for(secs: u64) -> (Case, u64) {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let reset = now.as_secs() + secs;
    let limited = Canned::new(429, r#"{"title":"Too Many Requests"}"#)
        .header("x-rate-limit-reset", &reset.to_string());
    let case = Case::new(Behaviour {
        script: [limited].into(),
        ..Default::default()
    });
    (case, reset)
}

#[test]
fn rate_limit_waits_for_the_reset_time() {
    let (case, reset) = rate_limited_for(2);
    let out = case.run(&["after a 429"]);
    assert_eq!(out.code, 0, "{out:?}");
    let received = case.x.received();
    assert_eq!(received.len(), 2);
    assert!(received[1].timestamp >= reset, "retried before the reset");
}

#[test]
fn rate_limit_past_the_deadline_gives_up_at_once() {
    let (case, _) = rate_limited_for(3600);
    let out = case.run(&["--deadline", "1m", "limited"]);
    assert_eq!(out.code, 75, "{out:?}");
    assert!(out.stderr.contains("429"), "{out:?}");
    assert_eq!(case.x.received().len(), 1);
}

#[test]
fn wrong_host_clock_is_corrected_from_the_server_date() {
    for (api, first_status) in [("v2", 401), ("v1.1", 401)] {
        let case = Case::new(Behaviour {
            clock_offset: 3 * 3600,
            v1_allowed: true,
            ..Default::default()
        });
        let out = case.run(&["-v", "--api", api, "clock is off"]);
        assert_eq!(out.code, 0, "{api}: {out:?}");
        assert!(out.stderr.contains("clock skew"), "{out:?}");
        let received = case.x.received();
        assert_eq!(received.len(), 2);
        assert_eq!(received[0].status, first_status);
        assert!(received[1].timestamp > received[0].timestamp + 3 * 3600 - 60);
    }
}

#[test]
fn persistent_server_errors_end_at_the_deadline() {
    let case = Case::new(Behaviour {
        script: (0..1000)
            .map(|_| Canned::new(503, r#"{"title":"Service Unavailable"}"#))
            .collect(),
        ..Default::default()
    });
    let out = case.run(&["--deadline", "3s", "never"]);
    assert_eq!(out.code, 75, "{out:?}");
    assert!(out.stderr.contains("gave up after"), "{out:?}");
    assert!(out.stderr.contains("Service Unavailable"), "{out:?}");
    assert!(case.x.received().len() >= 2);
}

#[test]
fn unreachable_api_is_a_temporary_failure() {
    let case = Case::new(Behaviour::default());
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let mut cmd = agent(case.dir.path());
    with_credentials(&mut cmd).args([
        "post",
        "--api-base",
        &format!("https://127.0.0.1:{port}"),
        "--deadline",
        "2s",
        "nobody home",
    ]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 75, "{out:?}");
}

#[test]
fn untrusted_certificate_names_the_ca_file_option() {
    let case = Case::new(Behaviour::default());
    let mut cmd = agent(case.dir.path());
    with_credentials(&mut cmd);
    cmd.args(["post", "--api-base", &case.x.base_url(), "hello"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("--ca-file"), "{out:?}");
}

#[test]
fn overlong_and_empty_texts_are_refused_before_sending() {
    let case = Case::new(Behaviour::default());
    let out = case.run(&[&"x".repeat(281)]);
    assert_eq!(out.code, 65, "{out:?}");
    assert!(
        out.stderr.contains("281/280 weighted characters"),
        "{out:?}"
    );
    let out = case.run(&[&"酒".repeat(141)]);
    assert_eq!(out.code, 65, "{out:?}");
    let out = case.run(&[""]);
    assert_eq!(out.code, 65, "{out:?}");
    assert!(case.x.received().is_empty());
    let fits = format!(
        "{} https://example.com/{}",
        "y".repeat(256),
        "z".repeat(200)
    );
    assert_eq!(case.run(&[&fits]).code, 0, "a URL counts 23");
}

#[test]
fn posts_through_an_outbound_proxy_from_the_flag_or_the_environment() {
    use crate::support::connect_proxy::ConnectProxy;
    let case = Case::new(Behaviour::default());
    let target = format!("127.0.0.1:{}", case.x.port);

    let proxy = ConnectProxy::start();
    let out = case.run(&["--proxy", &proxy.url(), "via --proxy"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.targets(), vec![target.clone()]);

    let proxy = ConnectProxy::start();
    let mut cmd = case.post(&["via HTTPS_PROXY"]);
    cmd.env("HTTPS_PROXY", proxy.url());
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(proxy.targets(), vec![target.clone()]);

    let proxy = ConnectProxy::start();
    let mut cmd = case.post(&["NO_PROXY wins"]);
    cmd.env("HTTPS_PROXY", proxy.url())
        .env("NO_PROXY", "127.0.0.1");
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(proxy.targets().is_empty(), "NO_PROXY was ignored");

    assert_eq!(
        case.x.posted(),
        ["via --proxy", "via HTTPS_PROXY", "NO_PROXY wins"]
    );
}

#[test]
fn a_spent_daily_limit_ends_the_post_at_once_naming_the_reset() {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    // X's daily cap: the 15-minute window resets in a minute, the day in five hours.
    let daily = Canned::new(
        429,
        r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
    )
    .header("x-rate-limit-reset", &(now + 60).to_string())
    .header("x-rate-limit-remaining", "99")
    .header("x-user-limit-24hour-limit", "17")
    .header("x-user-limit-24hour-remaining", "0")
    .header("x-user-limit-24hour-reset", &(now + 5 * 3600).to_string());
    let case = Case::new(Behaviour {
        script: std::iter::repeat_n(daily, 50).collect(),
        ..Default::default()
    });
    let out = case.run(&["--deadline", "2m", "esx-07 is up"]);
    assert_eq!(out.code, 75, "{out:?}");
    assert!(out.stderr.contains("daily post limit"), "{out:?}");
    assert!(out.stderr.contains("resets at 20"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
    assert_eq!(case.x.received().len(), 1, "X is asked once");
}

#[test]
fn a_reset_in_year_10000_is_no_crash() {
    let far = Canned::new(429, "{}")
        .header("x-rate-limit-remaining", "0")
        .header("x-rate-limit-reset", "253402300800");
    let case = Case::new(Behaviour {
        script: [far].into(),
        ..Default::default()
    });
    let out = case.run(&["--deadline", "5s", "esx-07 is up"]);
    assert_eq!(out.code, 75, "{out:?}");
    assert!(out.stderr.contains("X's limit resets at"), "{out:?}");
}

#[test]
fn an_unreachable_api_says_what_it_waits_for_without_v() {
    let dir = tempfile::tempdir().unwrap();
    // A port nothing listens on.
    let port = crate::support::free_port();
    let mut cmd = agent(dir.path());
    with_credentials(&mut cmd)
        .arg("post")
        .args(["--api-base", &format!("https://127.0.0.1:{port}")])
        .args(["--deadline", "3s", "esx-07 is up"]);
    let out = run(&mut cmd, None);
    assert_eq!(out.code, 75, "{out:?}");
    let waiting = format!("attempt 1 to https://127.0.0.1:{port}/2/tweets failed: ");
    assert!(out.stderr.contains(&waiting), "{out:?}");
    assert!(out.stderr.contains("; next try in "), "{out:?}");
}

#[test]
fn verbose_shows_each_answer_and_its_limits() {
    let ok = Canned::new(201, r#"{"data":{"id":"1900000000000000002","text":"v"}}"#)
        .header("x-rate-limit-remaining", "16")
        .header("x-rate-limit-reset", "1900000000")
        .header("x-user-limit-24hour-remaining", "16")
        .header("x-user-limit-24hour-reset", "1900000300");
    let case = Case::new(Behaviour {
        script: [ok].into(),
        ..Default::default()
    });
    let out = case.run(&["-v", "v"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            "answer: HTTP 201 (x-rate-limit-remaining 16, x-rate-limit-reset 1900000000, 24-hour remaining 16, 24-hour reset 1900000300)"
        ),
        "{out:?}"
    );
    let quiet = Case::new(Behaviour::default()).run(&["v"]);
    assert_eq!(quiet.stderr, "", "{quiet:?}");
}

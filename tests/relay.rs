//! `esxi-tweet serve` as DevOps teams run it: the binary started for real, Alertmanager and
//! Grafana payloads (tests/data/relay) posted to it over HTTP, and the posts that reach the
//! fake X API checked: texts, weights, threads, the budget, 429s, digests, restarts and kill -9.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::support::fake_x::{Behaviour, Canned, FakeX};
use crate::support::{ACCESS_TOKEN_SECRET, CONSUMER_SECRET, agent, with_credentials};

const TOKEN: &str = "relay-token-5f2a9c";

/// Polls `condition` until it holds or `within` passes.
fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    condition()
}

fn payload(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/data/relay/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
}

struct Relay {
    child: Child,
    port: u16,
    log: Arc<Mutex<String>>,
}

struct Setup {
    home: tempfile::TempDir,
    spool: PathBuf,
    token_file: PathBuf,
}

impl Setup {
    fn new() -> Self {
        let home = tempfile::tempdir().unwrap();
        let spool = home.path().join("spool");
        let token_file = home.path().join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup {
            home,
            spool,
            token_file,
        }
    }

    /// The fake X API, behaving as `behaviour` says.
    fn x(&self, behaviour: Behaviour) -> FakeX {
        FakeX::start(self.home.path(), behaviour)
    }

    /// The fake X API, giving these answers first.
    fn x_answering(&self, answers: impl IntoIterator<Item = Canned>) -> FakeX {
        self.x(Behaviour {
            script: answers.into_iter().collect(),
            ..Default::default()
        })
    }

    /// The fake X API, failing (503) `n` times.
    fn x_down(&self, n: usize) -> FakeX {
        self.x_answering(std::iter::repeat_n(Canned::new(503, "{}"), n))
    }

    /// `esxi-tweet serve` with credentials and this setup's spool, then `args`.
    fn serve(&self, args: &[&str]) -> Command {
        let mut cmd = agent(self.home.path());
        with_credentials(&mut cmd)
            .arg("serve")
            .arg("--spool")
            .arg(&self.spool)
            .args(args);
        cmd
    }

    /// The relay with this setup's token; groups post at once unless `extra` sets `--settle`.
    fn start(&self, x: &FakeX, extra: &[&str]) -> Relay {
        let mut args = vec!["--token-file", self.token_file.to_str().unwrap()];
        if !extra.contains(&"--settle") {
            args.extend(["--settle", "0"]);
        }
        args.extend(extra);
        self.start_bare(x, &args)
    }

    /// The relay on loopback with exactly `extra` (no token unless given).
    fn start_bare(&self, x: &FakeX, extra: &[&str]) -> Relay {
        let mut cmd = self.serve(&["--listen", "127.0.0.1:0"]);
        x.client(&mut cmd)
            .args(extra)
            .stderr(Stdio::piped())
            .stdout(Stdio::null());
        let mut child = cmd.spawn().expect("start the relay");
        let log = Arc::new(Mutex::new(String::new()));
        let lines = BufReader::new(child.stderr.take().unwrap());
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let mut port = 0;
        let ready = eventually(Duration::from_secs(10), || {
            let log = log.lock().unwrap();
            // Text (`address=127.0.0.1:N`) or JSON (`"address":"127.0.0.1:N"`) logs.
            port = log
                .split("127.0.0.1:")
                .nth(1)
                .map(|rest| {
                    rest.chars()
                        .take_while(char::is_ascii_digit)
                        .collect::<String>()
                })
                .and_then(|p| p.parse().ok())
                .unwrap_or(0);
            port != 0
        });
        assert!(ready, "the relay did not start: {}", log.lock().unwrap());
        Relay { child, port, log }
    }

    fn spooled(&self) -> usize {
        std::fs::read_dir(&self.spool)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                    .filter(|e| e.file_name() != "state.json")
                    .count()
            })
            .unwrap_or(0)
    }
}

impl Relay {
    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// A raw HTTP/1.1 request; the answer's status and body.
    fn request(&self, head: &str, body: &[u8]) -> (u16, String) {
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(head.as_bytes()).unwrap();
        let _ = stream.write_all(body);
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
        let answer = String::from_utf8_lossy(&answer).into_owned();
        let status = answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = answer
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    fn post(
        &self,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: &[u8],
    ) -> (u16, String) {
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: relay\r\n{auth}Content-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        self.request(&head, body)
    }

    /// `GET path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: r\r\n\r\n"), b"")
    }

    /// Waits (at most 15 s) until `x` holds `n` posts; the relay's log says why not.
    fn wait_for_posts(&self, x: &FakeX, n: usize) {
        assert!(
            eventually(Duration::from_secs(15), || x.posts().len() == n),
            "{}",
            self.log()
        );
    }

    /// SIGTERM, and the exit status once it stopped.
    fn stop(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_exit(Duration::from_secs(40))
            .expect("SIGTERM ends the relay")
    }

    fn alert(&self, body: &[u8]) -> (u16, String) {
        self.post("/alertmanager", Some(TOKEN), "application/json", body)
    }

    fn text(&self, text: &str) -> (u16, String) {
        self.post("/post", Some(TOKEN), "text/plain", text.as_bytes())
    }

    fn signal(&mut self, signal: i32) {
        let pid = i32::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(pid, signal) };
    }

    fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let mut status = None;
        eventually(within, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log();
        for secret in [CONSUMER_SECRET, ACCESS_TOKEN_SECRET, TOKEN] {
            assert!(!log.contains(secret), "a secret in the log: {log}");
        }
        assert!(!log.contains("panicked"), "{log}");
    }
}

const UNAUTHORIZED: &str =
    r#"{"title":"Unauthorized","type":"about:blank","status":401,"detail":"Unauthorized"}"#;

fn weighted(text: &str) -> usize {
    esxi_tweet::twitter_text::weighted_length(text)
}

#[test]
fn an_alert_group_posts_once_and_its_resolution_answers_it() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &[]);
    let firing = payload("alertmanager-firing.json");
    assert_eq!(relay.alert(&firing).0, 200);
    relay.wait_for_posts(&x, 1);
    let first = x.posts()[0].clone();
    assert!(
        first
            .text
            .starts_with("[FIRING:3] DatastoreUsage on esx-07, esx-08, esx-09: "),
        "{first:?}"
    );
    assert!(weighted(&first.text) <= 280, "{}", first.text);
    assert_eq!(first.reply_to, None);

    // Alertmanager's repeat_interval: the same group again is not posted again.
    assert_eq!(relay.alert(&firing).0, 200);
    assert!(
        eventually(Duration::from_secs(10), || relay.log().contains(" repeat ")),
        "{}",
        relay.log()
    );

    assert_eq!(relay.alert(&payload("alertmanager-resolved.json")).0, 200);
    relay.wait_for_posts(&x, 2);
    let second = x.posts()[1].clone();
    assert!(
        second.text.starts_with("[RESOLVED] DatastoreUsage"),
        "{second:?}"
    );
    assert_eq!(
        second.reply_to.as_deref(),
        Some(first.id.as_str()),
        "a thread"
    );
    assert!(eventually(Duration::from_secs(5), || setup.spooled() == 0));
    let log = relay.log();
    assert!(
        log.contains(&format!("url=https://x.com/i/status/{}", first.id)),
        "{log}"
    );
    assert_eq!(log.matches(" received ").count(), 3, "{log}");
}

#[test]
fn grafana_and_plain_texts_are_posted_and_repeats_made_distinct() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--json"]);
    assert_eq!(relay.alert(&payload("grafana-firing.json")).0, 200);
    relay.wait_for_posts(&x, 1);
    assert_eq!(
        x.posts()[0].text,
        "[FIRING:2] High memory usage: This alert was triggered for zone us-1"
    );
    assert_eq!(
        relay
            .post(
                "/post",
                Some(TOKEN),
                "application/json",
                br#"{"text":"backup of vc01 done"}"#
            )
            .0,
        200
    );
    assert!(eventually(Duration::from_secs(10), || x.posts().len() == 2));
    assert_eq!(relay.text("backup of vc01 done\n").0, 200);
    relay.wait_for_posts(&x, 3);
    let texts: Vec<String> = x.posts().into_iter().map(|p| p.text).collect();
    assert_eq!(
        texts[1..],
        ["backup of vc01 done", "backup of vc01 done (2)"]
    );
    // --json: every log line is one JSON object.
    for line in relay.log().lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert!(value["event"].is_string(), "{line}");
    }
}

#[test]
fn tokens_bodies_and_framing_are_checked_before_anything_is_spooled() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--max-body-size", "64k"]);
    let firing = payload("alertmanager-firing.json");
    assert_eq!(
        relay
            .post("/alertmanager", None, "application/json", &firing)
            .0,
        401
    );
    assert_eq!(
        relay
            .post("/alertmanager", Some("wrong"), "application/json", &firing)
            .0,
        401
    );
    let (status, body) = relay.alert(b"{\"status\": \"firing\", \"alerts\": [");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("not an Alertmanager"), "{body}");
    let huge = vec![b' '; 65 * 1024];
    assert_eq!(relay.alert(&huge).0, 413);
    let chunked = format!(
        "POST /alertmanager HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    );
    assert_eq!(relay.request(&chunked, b"").0, 411);
    let two_lengths = format!(
        "POST /post HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nhi"
    );
    assert_eq!(relay.request(&two_lengths, b"").0, 400);
    let head = format!("GET / HTTP/1.1\r\n{}\r\n", "X-Pad: a\r\n".repeat(100));
    assert_eq!(relay.request(&head, b"").0, 431);
    assert_eq!(relay.get("/healthz").0, 200);
    assert_eq!(
        relay
            .request("DELETE /post HTTP/1.1\r\nHost: r\r\n\r\n", b"")
            .0,
        405
    );
    // curl sends Expect: 100-continue for large bodies and waits for the interim answer.
    let expect = format!(
        "POST /post HTTP/1.1\r\nHost: r\r\nAuthorization: Bearer {TOKEN}\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"
    );
    let (status, _) = relay.request(&expect, b"hello");
    assert_eq!(status, 100, "the interim answer comes first");
    assert!(
        eventually(Duration::from_secs(10), || x.posted() == ["hello"]),
        "{}",
        relay.log()
    );
    let metrics = || relay.get("/metrics");
    assert!(eventually(Duration::from_secs(5), || metrics()
        .1
        .contains("posted_total 1")));
    let (status, metrics) = metrics();
    assert_eq!(status, 200);
    assert!(
        metrics.contains("esxi_tweet_relay_rejected_total{source=\"alertmanager\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esxi_tweet_relay_received_total{source=\"post\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("esxi_tweet_relay_posted_total 1"),
        "{metrics}"
    );
    assert!(metrics.contains("esxi_tweet_relay_spooled 0"), "{metrics}");
}

#[test]
fn the_budget_folds_a_pile_up_into_one_digest() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--max-posts", "1/3s"]);
    assert_eq!(relay.text("first").0, 200);
    assert!(eventually(Duration::from_secs(10), || x.posts().len() == 1));
    for text in ["second", "third", "fourth"] {
        assert_eq!(relay.text(text).0, 200);
    }
    // The same group twice while waiting: the digest names it once.
    assert_eq!(relay.alert(&payload("alertmanager-firing.json")).0, 200);
    assert_eq!(relay.alert(&payload("alertmanager-firing.json")).0, 200);
    relay.wait_for_posts(&x, 2);
    // Signed times, whole seconds: the budget held the second post for its window.
    let signed: Vec<u64> = x
        .received()
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| r.timestamp)
        .collect();
    assert!(signed[1] >= signed[0] + 3, "{signed:?}");
    let digest = &x.posts()[1].text;
    assert!(
        digest.starts_with("3 alerts and 3 messages while rate-limited: 3 firing, 0 resolved: "),
        "{digest}"
    );
    assert!(digest.contains("second; third; fourth"), "{digest}");
    assert_eq!(
        digest.matches("DatastoreUsage firing").count(),
        1,
        "{digest}"
    );
    let metrics = || relay.get("/metrics").1;
    assert!(eventually(Duration::from_secs(5), || metrics()
        .contains("esxi_tweet_relay_digests_total 1")));
    let metrics = metrics();
    let waited: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("esxi_tweet_relay_rate_limited_seconds_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    assert!(waited >= 1, "{metrics}");
    assert!(
        metrics.contains("esxi_tweet_relay_digests_total 1"),
        "{metrics}"
    );
    assert!(weighted(digest) <= 280);
    assert!(eventually(Duration::from_secs(5), || setup.spooled() == 0));
}

/// Unix seconds `n` seconds from now.
fn seconds_from_now(n: u64) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + n
}

/// A relay whose first post gets `answer` (a limit that lifts at `reset`), sent `first` and,
/// once that answer came, `second`; returns the fake API after its next post, and the log.
fn through_a_limit(answer: Canned, reset: u64, first: &str, second: &str) -> (FakeX, String) {
    let setup = Setup::new();
    let behaviour = Behaviour {
        script: [answer.header("x-rate-limit-reset", &reset.to_string())].into(),
        ..Default::default()
    };
    let x = setup.x(behaviour);
    let relay = setup.start(&x, &[]);
    assert_eq!(relay.text(first).0, 200);
    assert!(eventually(Duration::from_secs(10), || x.received().len() == 1));
    assert_eq!(relay.text(second).0, 200);
    relay.wait_for_posts(&x, 1);
    // The post that followed the limit was signed once it had lifted.
    let post = x
        .received()
        .into_iter()
        .find(|r| r.status == 201 && r.body.contains(second));
    let signed = post.expect("the second text was posted").timestamp;
    assert!(
        signed >= reset,
        "posted at {signed}, before the reset {reset}"
    );
    (x, relay.log())
}

#[test]
fn a_429_waits_for_the_reset_then_posts_what_waited() {
    let reset = seconds_from_now(2);
    let too_many = Canned::new(
        429,
        r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
    );
    let (x, log) = through_a_limit(too_many, reset, "esx-07 is up", "esx-08 is up");
    assert_eq!(
        x.posts()[0].text,
        "2 messages while rate-limited: esx-07 is up; esx-08 is up"
    );
    assert!(log.contains("rate-limited"), "{log}");
}

#[test]
fn sigterm_keeps_the_spool_and_a_restart_posts_it() {
    let setup = Setup::new();
    let down = setup.x_down(100);
    let mut relay = setup.start(&down, &[]);
    assert_eq!(relay.alert(&payload("alertmanager-firing.json")).0, 200);
    assert_eq!(relay.text("esx-09 is up").0, 200);
    assert!(eventually(Duration::from_secs(10), || !down
        .received()
        .is_empty()));
    let status = relay.stop();
    assert!(status.success(), "{status:?}: {}", relay.log());
    assert!(relay.log().contains("stopped spooled=2"), "{}", relay.log());
    assert_eq!(setup.spooled(), 2);

    let up = setup.x(Behaviour::default());
    let relay = setup.start(&up, &[]);
    relay.wait_for_posts(&up, 2);
    let texts: Vec<String> = up.posts().into_iter().map(|p| p.text).collect();
    assert!(
        texts[0].starts_with("[FIRING:3] DatastoreUsage"),
        "{texts:?}"
    );
    assert_eq!(texts[1], "esx-09 is up");
    assert!(down.posts().is_empty());
    assert!(eventually(Duration::from_secs(5), || setup.spooled() == 0));
}

#[test]
fn kill_9_while_posting_neither_loses_nor_doubles_the_post() {
    let setup = Setup::new();
    let x = setup.x(Behaviour {
        delayed_answers: 1,
        answer_delay: Duration::from_secs(5),
        ..Default::default()
    });
    let mut relay = setup.start(&x, &[]);
    assert_eq!(relay.text("vc01 upgraded to 9.0").0, 200);
    // X has made the post but not yet answered: the relay is mid-request.
    assert!(eventually(Duration::from_secs(10), || x.posted().len() == 1));
    relay.signal(libc::SIGKILL);
    relay.wait_exit(Duration::from_secs(5)).expect("killed");
    assert_eq!(setup.spooled(), 1, "the entry outlives the crash");

    let relay = setup.start(&x, &[]);
    assert!(
        eventually(Duration::from_secs(15), || setup.spooled() == 0),
        "{}",
        relay.log()
    );
    assert_eq!(x.posted(), ["vc01 upgraded to 9.0"], "posted once");
    assert!(
        relay.log().contains("X already had this text"),
        "{}",
        relay.log()
    );
}

#[test]
fn a_relay_reachable_from_other_hosts_needs_a_token() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let mut cmd = setup.serve(&["--listen", "0.0.0.0:0", "--api-base", &x.base_url()]);
    let out = crate::support::run(&mut cmd, None);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(out.stderr.contains("--token-file"), "{out:?}");
}

/// An attacker that holds `count` connections open on `port`, each sending one byte of a head
/// every 500 ms (or nothing, for every other one), and opens a new one whenever the relay
/// closes one; until `stop` is set or a minute has passed.
fn slow_clients(port: u16, count: usize, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    std::thread::spawn(move || {
        let connect = || {
            let stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
            stream.set_nonblocking(true).ok()?;
            Some(stream)
        };
        let mut held: Vec<Option<TcpStream>> = (0..count).map(|_| connect()).collect();
        let mut reopened = 0;
        let started = Instant::now();
        while !stop.load(Ordering::SeqCst) && started.elapsed() < Duration::from_secs(60) {
            for (i, slot) in held.iter_mut().enumerate() {
                let alive = match slot {
                    Some(stream) if i % 2 == 0 => stream.write(b"G").is_ok_and(|n| n == 1),
                    Some(stream) => {
                        let mut byte = [0u8; 1];
                        // Idle: still open while a read would block.
                        matches!(stream.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
                    }
                    None => false,
                };
                if !alive {
                    *slot = connect();
                    reopened += 1;
                }
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        reopened
    })
}

#[test]
fn slow_and_idle_clients_cannot_keep_a_real_sender_out() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--max-posts", "100/1h"]);
    let stop = Arc::new(AtomicBool::new(false));
    // More than the relay's connection cap, half trickling a head, half saying nothing.
    let attacker = slow_clients(relay.port, 200, stop.clone());
    let healthz = || relay.get("/healthz").0;
    let metrics = || relay.get("/metrics").1;
    assert!(
        eventually(Duration::from_secs(10), || !metrics()
            .contains("shed_connections_total 0")),
        "the cap is reached: {}",
        metrics()
    );
    // Every one of 20 webhooks from the real sender is taken while the attack goes on, over
    // longer than a head may take (slow connections are dropped and opened again meanwhile).
    for i in 0..20 {
        let (status, body) = relay.text(&format!("esx-{i:02} is up"));
        assert_eq!(status, 200, "webhook {i}: {body}: {}", relay.log());
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(healthz(), 200);
    stop.store(true, Ordering::SeqCst);
    let reopened = attacker.join().unwrap();
    assert!(
        reopened > 200,
        "slow connections were closed, {reopened} reopened"
    );
    assert!(
        eventually(Duration::from_secs(30), || x.posts().len() == 20),
        "{}",
        relay.log()
    );
}

#[test]
fn a_template_shapes_the_line_and_a_bad_one_is_refused_at_start() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let template = setup.home.path().join("template.txt");
    std::fs::write(
        &template,
        "{severity}: {alertname} is {status} on {hosts} ({count})\n",
    )
    .unwrap();
    let relay = setup.start(&x, &["--template", template.to_str().unwrap()]);
    assert_eq!(relay.alert(&payload("alertmanager-firing.json")).0, 200);
    relay.wait_for_posts(&x, 1);
    assert_eq!(
        x.posts()[0].text,
        "warning: DatastoreUsage is FIRING:3 on esx-07, esx-08, esx-09 (3)"
    );

    std::fs::write(&template, "{alertname} on {host}\n").unwrap();
    let mut cmd = setup.serve(&["--listen", "127.0.0.1:0", "--template"]);
    cmd.arg(&template);
    let out = crate::support::run(&mut cmd, None);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(out.stderr.contains("unknown placeholder {host}"), "{out:?}");
}

#[test]
fn when_x_says_no_posts_are_left_the_relay_waits_for_the_reset() {
    let reset = seconds_from_now(2);
    let last_one = Canned::new(
        201,
        r#"{"data":{"id":"1900000000000000001","text":"first"}}"#,
    )
    .header("x-rate-limit-limit", "17")
    .header("x-rate-limit-remaining", "0");
    let (x, _) = through_a_limit(last_one, reset, "first", "second");
    assert_eq!(x.posts()[0].text, "second");
    assert!(x.received().iter().all(|r| r.status != 429), "no 429 met");
}

/// The relay's `state.json`, as saved.
fn saved_state(setup: &Setup) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(setup.spool.join("state.json")).unwrap()).unwrap()
}

fn now_secs() -> u64 {
    seconds_from_now(0)
}

#[test]
fn alert_values_reach_the_account_as_plain_text() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &[]);
    assert_eq!(relay.alert(&payload("alertmanager-hostile.json")).0, 200);
    relay.wait_for_posts(&x, 1);
    assert_eq!(
        x.posts()[0].text,
        "[FIRING:1] TenantAlert on evil: ping @ POTUS and # breaking: $ TSLA down, log in at https://phish[.]example[.]com/login gnp.exe now"
    );
}

#[test]
fn a_new_group_flushed_twice_is_announced_once() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--settle", "2s"]);
    // Alertmanager after a restart: the group at once with one alert, then with all three.
    let firing = String::from_utf8(payload("alertmanager-firing.json")).unwrap();
    let value: serde_json::Value = serde_json::from_str(&firing).unwrap();
    let mut one = value.clone();
    one["alerts"] = serde_json::json!([value["alerts"][0]]);
    assert_eq!(relay.alert(one.to_string().as_bytes()).0, 200);
    assert_eq!(relay.alert(firing.as_bytes()).0, 200);
    assert!(
        eventually(Duration::from_secs(10), || setup.spooled() == 0),
        "{}",
        relay.log()
    );
    let texts: Vec<String> = x.posts().into_iter().map(|p| p.text).collect();
    assert_eq!(texts.len(), 1, "{texts:?}");
    assert!(texts[0].starts_with("[FIRING:3] "), "{texts:?}");
}

#[test]
fn browsers_and_foreign_host_names_cannot_post_without_a_token() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start_bare(&x, &["--settle", "0"]);
    let post = |host: &str, origin: &str| {
        let head = format!(
            "POST /post HTTP/1.1\r\nHost: {host}\r\n{origin}Content-Type: text/plain\r\nContent-Length: 2\r\n\r\n"
        );
        relay.request(&head, b"hi")
    };
    let port = relay.port;
    let (status, body) = post(
        &format!("127.0.0.1:{port}"),
        "Origin: http://evil.example\r\n",
    );
    assert_eq!(status, 403, "{body}");
    assert_eq!(post("evil.example", "").0, 403, "DNS rebinding");
    assert_eq!(post(&format!("evil.example:{port}"), "").0, 403);
    assert_eq!(post(&format!("localhost:{port}"), "").0, 200);
    assert_eq!(post(&format!("127.0.0.1:{port}"), "").0, 200);
    assert!(eventually(Duration::from_secs(10), || x.posts().len() == 2));
}

#[test]
fn the_head_limit_is_exactly_16_kib() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &[]);
    let head = |size: usize| {
        let start = "GET /healthz HTTP/1.1\r\nHost: r\r\nX-Pad: ";
        let pad = size - start.len() - 4;
        format!("{start}{}\r\n\r\n", "a".repeat(pad))
    };
    assert_eq!(relay.request(&head(16 * 1024), b"").0, 200);
    assert_eq!(relay.request(&head(16 * 1024 + 1), b"").0, 431);
    assert_eq!(relay.request(&head(17_000), b"").0, 431);
}

#[test]
fn a_token_file_others_can_read_is_refused() {
    let setup = Setup::new();
    std::fs::set_permissions(&setup.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut cmd = setup.serve(&["--listen", "127.0.0.1:0", "--token-file"]);
    cmd.arg(&setup.token_file);
    let out = crate::support::run(&mut cmd, None);
    assert_eq!(out.code, 78, "{out:?}");
    assert!(out.stderr.contains("chmod 600"), "{out:?}");
    assert_eq!(out.stderr.lines().count(), 1, "{out:?}");
}

#[test]
fn the_spool_is_bounded_in_bytes() {
    let setup = Setup::new();
    let down = setup.x_down(100);
    let relay = setup.start(
        &down,
        &["--max-spool-size", "1m", "--max-body-size", "256k"],
    );
    let text = "x".repeat(200 * 1024);
    let mut accepted = 0;
    let refused = loop {
        let (status, body) = relay.text(&text);
        if status != 200 {
            break (status, body);
        }
        accepted += 1;
        assert!(accepted < 10, "the spool keeps taking entries");
    };
    assert_eq!(refused.0, 507, "{refused:?}");
    assert!(refused.1.contains("--max-spool-size"), "{refused:?}");
    assert_eq!(accepted, 5);
    let bytes: u64 = std::fs::read_dir(&setup.spool)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_name() != "state.json")
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum();
    assert!(bytes <= 1 << 20, "{bytes}");
}

#[test]
fn a_corrupt_state_is_set_aside_and_the_spool_still_posted() {
    let setup = Setup::new();
    let down = setup.x_down(100);
    let mut relay = setup.start(&down, &[]);
    assert_eq!(relay.text("esx-07 is up").0, 200);
    relay.stop();
    std::fs::write(setup.spool.join("state.json"), b"{\"threads\": {\"g\": ").unwrap();

    let up = setup.x(Behaviour::default());
    let relay = setup.start(&up, &[]);
    assert!(
        eventually(Duration::from_secs(10), || up.posted() == ["esx-07 is up"]),
        "{}",
        relay.log()
    );
    let log = relay.log();
    assert_eq!(log.matches("state.json.corrupt-").count(), 1, "{log}");
    let aside = std::fs::read_dir(&setup.spool)
        .unwrap()
        .filter_map(Result::ok)
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
        });
    assert!(aside);
    assert_eq!(relay.get("/healthz").0, 200);
}

#[test]
fn refused_credentials_stop_the_relay_at_start() {
    let setup = Setup::new();
    let x = setup.x(Behaviour {
        me: Some(Canned::new(401, UNAUTHORIZED)),
        ..Default::default()
    });
    let mut cmd = setup.serve(&["--listen", "127.0.0.1:0", "--token-file"]);
    cmd.arg(&setup.token_file);
    x.client(&mut cmd);
    let out = crate::support::run(&mut cmd, None);
    assert_eq!(out.code, 77, "{out:?}");
    assert!(out.stderr.contains("HTTP 401"), "{out:?}");
    assert!(
        out.stderr.contains("esxi-tweet sign"),
        "the agent's hint: {out:?}"
    );
    let received = x.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].method, "GET");
    assert_eq!(received[0].path, "/2/users/me");
    assert!(received[0].signature_ok);
}

#[test]
fn the_account_is_named_at_start_and_a_limited_check_is_no_failure() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &[]);
    assert!(
        relay.log().contains("account name=@esx_announcer"),
        "{}",
        relay.log()
    );
    drop(relay);
    let limited = setup.x(Behaviour {
        me: Some(Canned::new(
            429,
            r#"{"title":"Too Many Requests","status":429}"#,
        )),
        ..Default::default()
    });
    let relay = setup.start(&limited, &[]);
    assert_eq!(relay.text("still posts").0, 200);
    assert!(eventually(Duration::from_secs(10), || limited.posted()
        == ["still posts"]));
}

#[test]
fn credentials_refused_later_turn_healthz_red() {
    let setup = Setup::new();
    let x = setup.x(Behaviour {
        script: [Canned::new(401, UNAUTHORIZED)].into(),
        ..Default::default()
    });
    let relay = setup.start(&x, &[]);
    assert_eq!(relay.text("esx-07 is up").0, 200);
    let healthz = || relay.get("/healthz");
    assert!(
        eventually(Duration::from_secs(10), || healthz().0 == 503),
        "{}",
        relay.log()
    );
    let (_, body) = healthz();
    assert!(body.contains("HTTP 401"), "{body}");
}

#[test]
fn a_reset_in_year_10000_neither_crashes_nor_holds_for_years() {
    let setup = Setup::new();
    let far = Canned::new(429, r#"{"title":"Too Many Requests","status":429}"#)
        .header("x-rate-limit-remaining", "0")
        .header("x-rate-limit-reset", "253402300800");
    let x = setup.x_answering([far]);
    let mut relay = setup.start(&x, &[]);
    assert_eq!(relay.text("esx-07 is up").0, 200);
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains("suspicious")),
        "{}",
        relay.log()
    );
    let held = saved_state(&setup)["blocked_until"].as_u64().unwrap();
    assert!(held <= now_secs() + 24 * 3600 + 5, "{held}");
    assert_eq!(relay.get("/healthz").0, 200);
    assert_eq!(relay.child.try_wait().unwrap(), None, "still running");
    // A restart with that state starts (no crash loop) and still waits.
    assert!(relay.stop().success());
    let relay = setup.start(&x, &[]);
    assert!(relay.log().contains("listening"), "{}", relay.log());
}

#[test]
fn a_spent_day_holds_the_relay_whatever_the_window_says() {
    let setup = Setup::new();
    let now = now_secs();
    let daily = Canned::new(429, r#"{"title":"Too Many Requests","status":429}"#)
        .header("x-rate-limit-reset", &now.to_string())
        .header("x-app-limit-24hour-remaining", "0")
        .header("x-app-limit-24hour-reset", &(now + 4).to_string());
    let x = setup.x_answering([daily]);
    let relay = setup.start(&x, &[]);
    assert_eq!(relay.text("esx-07 is up").0, 200);
    assert!(eventually(Duration::from_secs(10), || x.received().len() >= 2));
    relay.wait_for_posts(&x, 1);
    let posts: Vec<_> = x
        .received()
        .into_iter()
        .filter(|r| r.path == "/2/tweets")
        .collect();
    assert_eq!(
        posts.len(),
        2,
        "one refused, one after the day's reset: {posts:?}"
    );
    assert!(posts[1].timestamp >= now + 4, "{posts:?}");
}

/// The most memory the process ever held (VmHWM), in bytes.
fn peak_memory(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[test]
fn a_digest_of_a_full_spool_reads_one_entry_at_a_time() {
    let setup = Setup::new();
    let down = setup.x_down(1000);
    let mut relay = setup.start(&down, &[]);
    // 96 MiB waiting, far more than the relay may hold in memory at once.
    for i in 0..96 {
        let text = format!("{i} {}", "x".repeat(1024 * 1024 - 16));
        assert_eq!(relay.text(&text).0, 200, "{}", relay.log());
    }
    relay.stop();

    let up = setup.x(Behaviour::default());
    let relay = setup.start(&up, &[]);
    assert!(
        eventually(Duration::from_secs(60), || setup.spooled() == 0),
        "{}",
        relay.log()
    );
    // The post in flight at the stop goes first, as it was; the rest is one digest.
    let texts = up.posted();
    assert_eq!(texts.len(), 2);
    assert!(texts[0].starts_with("0 xxx"));
    assert!(
        texts[1].starts_with("95 messages while rate-limited: 1 x"),
        "{}",
        texts[1]
    );
    let peak = peak_memory(relay.child.id());
    assert!(peak < 64 << 20, "peak memory {} MiB", peak >> 20);
}

/// X as the in-process relay sees it: the account check answers, a post panics the worker
/// (a bug standing in for any way the worker could end).
struct PanickingX;

impl esxi_tweet::post::Sender for PanickingX {
    fn send(
        &self,
        request: &esxi_tweet::api::Outgoing,
        _: &str,
        _: Duration,
    ) -> Result<esxi_tweet::api::Response, esxi_tweet::transport::SendError> {
        assert_eq!(request.method, "GET", "the worker's post");
        Ok(esxi_tweet::api::Response {
            status: 200,
            body: r#"{"data":{"username":"esx_announcer"}}"#.into(),
            ..Default::default()
        })
    }
}

#[test]
fn a_worker_that_stops_ends_the_relay_with_an_error() {
    use esxi_tweet::relay::{self, worker};
    let dir = tempfile::tempdir().unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let shutdown = Arc::new(relay::Shutdown::default());
    let options = relay::Options {
        token: None,
        spool_dir: dir.path().join("spool"),
        settings: worker::Settings {
            composer: relay::text::Composer::default(),
            budget: worker::Budget::parse("17/24h").unwrap(),
            settle: Duration::ZERO,
        },
        max_body: 1 << 20,
        max_spool_size: 1 << 24,
        json_logs: true,
    };
    let account = worker::Account {
        credentials: esxi_tweet::Credentials {
            consumer_key: "ck".into(),
            consumer_secret: esxi_tweet::Secret::new("cs"),
            access_token: "at".into(),
            access_token_secret: esxi_tweet::Secret::new("ats"),
        },
        api_base: "https://127.0.0.1:1".into(),
        version: esxi_tweet::api::ApiVersion::V2,
        sender: Box::new(PanickingX),
    };
    let running = {
        let shutdown = shutdown.clone();
        std::thread::spawn(move || relay::run(listener, options, account, shutdown))
    };
    let mut stream = None;
    assert!(eventually(Duration::from_secs(10), || {
        stream = TcpStream::connect(("127.0.0.1", port)).ok();
        stream.is_some()
    }));
    let mut stream = stream.unwrap();
    stream
        .write_all(b"POST /post HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nhi")
        .unwrap();
    let finished = eventually(Duration::from_secs(10), || running.is_finished());
    if !finished {
        shutdown.trigger();
    }
    let result = running.join().unwrap();
    assert!(finished, "the relay went on without its worker");
    let err = result.unwrap_err();
    assert_eq!(err.exit_code(), 70, "{err}");
    assert!(err.to_string().contains("worker stopped"), "{err}");
}

/// A real Prometheus Alertmanager (Debian's `prometheus-alertmanager`) on 127.0.0.1, its
/// clustering off, sending its webhooks to `relay` with the setup's token.
struct Alertmanager {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    fn start(setup: &Setup, relay: &Relay) -> Alertmanager {
        Self::with_group_wait(setup, relay, "1s")
    }

    fn with_group_wait(setup: &Setup, relay: &Relay, group_wait: &str) -> Alertmanager {
        let dir = tempfile::tempdir().unwrap();
        let port = crate::support::free_port();
        let config = dir.path().join("alertmanager.yml");
        std::fs::write(
            &config,
            format!(
                "route:\n  receiver: x-relay\n  group_by: [alertname]\n  group_wait: {group_wait}\n  group_interval: 1s\n  repeat_interval: 1h\n\
                 receivers:\n  - name: x-relay\n    webhook_configs:\n      - url: http://127.0.0.1:{}/alertmanager\n        send_resolved: true\n        http_config:\n          authorization:\n            credentials_file: {}\n",
                relay.port,
                setup.token_file.display()
            ),
        )
        .unwrap();
        let child = Command::new("prometheus-alertmanager")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--cluster.listen-address=")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus-alertmanager (apt-get install prometheus-alertmanager)");
        let ready = eventually(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(ready, "Alertmanager did not start");
        Alertmanager {
            child,
            port,
            _dir: dir,
        }
    }

    /// Posts `alerts` (JSON) to its API, as Prometheus does; the status.
    fn alert(&self, alerts: &serde_json::Value) -> u16 {
        let body = alerts.to_string();
        let mut stream = TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        write!(
            stream,
            "POST /api/v2/alerts HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        answer
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Alertmanager {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_real_alertmanager_announces_and_resolves_in_one_thread() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &[]);
    let alertmanager = Alertmanager::start(&setup, &relay);
    let alert = |ends_at: Option<String>| {
        let mut alert = serde_json::json!({
            "labels": {"alertname": "DatastoreUsage", "instance": "esx-07.rack12.example.com:9272", "severity": "warning"},
            "annotations": {"summary": "datastore1 is 97% full"}
        });
        if let Some(ends_at) = ends_at {
            alert["endsAt"] = serde_json::json!(ends_at);
        }
        serde_json::json!([alert])
    };
    assert_eq!(alertmanager.alert(&alert(None)), 200);
    relay.wait_for_posts(&x, 1);
    assert_eq!(
        x.posts()[0].text,
        "[FIRING:1] DatastoreUsage on esx-07: datastore1 is 97% full"
    );
    // Resolved: the alert ends now.
    let now = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    assert_eq!(alertmanager.alert(&alert(Some(now))), 200);
    relay.wait_for_posts(&x, 2);
    let posts = x.posts();
    assert!(
        posts[1]
            .text
            .starts_with("[RESOLVED] DatastoreUsage on esx-07"),
        "{posts:?}"
    );
    assert_eq!(posts[1].reply_to.as_deref(), Some(posts[0].id.as_str()));
}

#[test]
fn a_group_alertmanager_flushes_twice_is_announced_once() {
    let setup = Setup::new();
    let x = setup.x(Behaviour::default());
    let relay = setup.start(&x, &["--settle", "4s"]);
    // An alert older than group_wait (Prometheus or Alertmanager restarted): Alertmanager
    // flushes the group at once with it, then again with the rest a group_interval later.
    let alertmanager = Alertmanager::with_group_wait(&setup, &relay, "10s");
    let started =
        humantime::format_rfc3339_seconds(SystemTime::now() - Duration::from_secs(60)).to_string();
    let alert = |host: &str| {
        serde_json::json!({
            "labels": {"alertname": "DatastoreUsage", "instance": format!("{host}:9272")},
            "annotations": {"summary": "datastore1 is 97% full"},
            "startsAt": started,
        })
    };
    assert_eq!(
        alertmanager.alert(&serde_json::json!([alert("esx-07")])),
        200
    );
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .contains(" received ")),
        "{}",
        relay.log()
    );
    assert_eq!(
        alertmanager.alert(&serde_json::json!([alert("esx-08"), alert("esx-09")])),
        200
    );
    relay.wait_for_posts(&x, 1);
    assert!(
        eventually(Duration::from_secs(10), || relay
            .log()
            .matches(" received ")
            .count()
            >= 2),
        "{}",
        relay.log()
    );
    let posts = x.posts();
    assert_eq!(posts.len(), 1, "{posts:?}");
    assert_eq!(
        posts[0].text,
        "[FIRING:3] DatastoreUsage on esx-07, esx-08, esx-09: datastore1 is 97% full"
    );
}

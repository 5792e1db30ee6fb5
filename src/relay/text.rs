//! What the relay posts: one line per alert group, a digest when alerts piled up, and a short
//! suffix when the same text must go out again. Every text fits X's 280 weighted characters by
//! the agent's exact counter: the parts that can shrink (the host list, then the summary) shrink
//! before the line is cut.
//!
//! Alert values are the senders' words, not the operator's: each is made one printable line
//! ([`crate::untrusted`]), cut to [`MAX_VALUE_CHARS`] before anything is counted, and
//! defanged ([`super::defang`]) so that no link, mention, hashtag or cashtag reaches the
//! account unless the operator allows it. Host names are shortened to their first label by
//! default (`esx-07`), which also keeps them from becoming links.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::alerts::{Notification, Status};
use super::defang::{Allow, defang};
use super::spool::Entry;
use crate::twitter_text;
use crate::untrusted;

/// The placeholders a `--template` file may use.
pub const PLACEHOLDERS: [&str; 9] = [
    "status",
    "alertname",
    "hosts",
    "summary",
    "description",
    "severity",
    "count",
    "url",
    "group",
];

/// The longest a single value (a label, an annotation) may be in a post: most of one, and
/// short enough that counting and shrinking stay cheap whatever a sender puts in a label.
pub const MAX_VALUE_CHARS: usize = 256;
/// How long a digest's list may grow before it is cut: far beyond 280 weighted characters
/// (a URL counts 23 however long), so the cut is the counter's, not this bound's.
const MAX_DIGEST_CHARS: usize = 20_000;

/// How a notification becomes a post.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Template {
    /// `[FIRING:3] DatastoreUsage on esx-07, esx-08 +1: summary`.
    #[default]
    Default,
    /// A user's text with `{placeholders}`; `{{` and `}}` are literal braces.
    Custom(Vec<Part>),
}

/// A piece of a custom template.
#[derive(Debug, Clone, PartialEq)]
pub enum Part {
    /// Text as written.
    Literal(String),
    /// One of [`PLACEHOLDERS`].
    Field(String),
}

impl Template {
    /// Parses a template file's text (one trailing newline dropped).
    pub fn parse(text: &str) -> Result<Template, String> {
        let text = text.strip_suffix('\n').unwrap_or(text);
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let name: String = chars.by_ref().take_while(|&c| c != '}').collect();
                    if !PLACEHOLDERS.contains(&name.as_str()) {
                        return Err(format!(
                            "unknown placeholder {{{name}}}; the placeholders are {}",
                            PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
                        ));
                    }
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                    parts.push(Part::Field(name));
                }
                '}' => return Err("a lone } (write }} for a brace)".to_string()),
                c => literal.push(c),
            }
        }
        parts.push(Part::Literal(literal));
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err("the template uses no placeholder: every alert would read the same".into());
        }
        Ok(Template::Custom(parts))
    }
}

/// How host names read in a post (`--host-names`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum HostNames {
    /// The first label: `esx-07` for `esx-07.rack12.example.com` (IP addresses stay whole).
    #[default]
    Short,
    /// As the alert names it.
    Full,
}

/// Everything that decides how alerts read: the template and what alert values may hold.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Composer {
    /// The line for one alert group.
    pub template: Template,
    /// Entities alert values may keep live.
    pub allow: Allow,
    /// Short or full host names.
    pub host_names: HostNames,
}

/// The values a notification gives its text.
struct Values {
    status: String,
    alertname: String,
    hosts: Vec<String>,
    summary: String,
    description: String,
    severity: String,
    count: String,
    url: String,
    group: String,
}

/// What a digest says of one waiting entry: small, whatever the entry held.
#[derive(Debug, Clone, PartialEq)]
pub enum Brief {
    /// An alert group's notification.
    Alerts {
        /// Its thread key.
        key: String,
        /// The group's state.
        status: Status,
        /// Firing alerts.
        firing: usize,
        /// Resolved alerts.
        resolved: usize,
        /// The alert's name, made safe.
        name: String,
        /// Up to three host names, made safe.
        hosts: Vec<String>,
        /// How many more hosts there are.
        more_hosts: usize,
    },
    /// A plain text.
    Text(String),
}

impl Composer {
    /// An alert value as it may appear in a post.
    fn value(&self, raw: &str) -> String {
        defang(&untrusted::one_line(raw, MAX_VALUE_CHARS), self.allow)
    }

    fn host(&self, raw: &str) -> String {
        let host = match self.host_names {
            HostNames::Full => raw,
            HostNames::Short if raw.parse::<std::net::IpAddr>().is_ok() => raw,
            HostNames::Short => raw
                .split('.')
                .next()
                .filter(|l| !l.is_empty())
                .unwrap_or(raw),
        };
        self.value(host)
    }

    fn values(&self, notification: &Notification) -> Values {
        let status = match notification.status {
            Status::Firing => format!("FIRING:{}", notification.firing()),
            Status::Resolved => "RESOLVED".to_string(),
        };
        let mut hosts: Vec<String> = Vec::new();
        for host in notification.hosts() {
            let host = self.host(&host);
            // Short names can coincide (esx-07 in two racks): each once.
            if !host.is_empty() && !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        Values {
            status,
            alertname: self.value(&notification.alertname()),
            hosts,
            summary: self.value(&notification.annotation("summary")),
            description: self.value(&notification.annotation("description")),
            severity: self.value(&notification.label("severity")),
            count: notification.alerts.len().to_string(),
            // The operator's template puts it there: a link on purpose, made printable only.
            url: untrusted::one_line(&notification.external_url, MAX_VALUE_CHARS),
            group: self.value(&notification.group_key),
        }
    }

    /// The post for `notification`: the template filled in, shrunk until it fits.
    pub fn render(&self, notification: &Notification) -> String {
        let values = self.values(notification);
        let template = &self.template;
        let all = values.hosts.len();
        let text = fill(template, &values, all, &values.summary);
        if fits(&text) {
            return text;
        }
        // Fewer host names first (the count of the others stays), down to one: the longest
        // list that fits, found by bisection, since one name fewer never makes the line longer
        // (a thousand hosts cost ten counts, not a thousand).
        let with_hosts = |shown: usize| fill(template, &values, shown, &values.summary);
        if all > 1 && fits(&with_hosts(1)) {
            let (mut fitting, mut too_long) = (1, all);
            while too_long - fitting > 1 {
                let middle = (fitting + too_long) / 2;
                if fits(&with_hosts(middle)) {
                    fitting = middle;
                } else {
                    too_long = middle;
                }
            }
            return with_hosts(fitting);
        }
        let shown = all.min(1);
        // Then the summary, cut at a word.
        if let Some(summary) = twitter_text::shorten(&values.summary, |summary| {
            fits(&fill(template, &values, shown, summary))
        }) {
            return fill(template, &values, shown, &summary);
        }
        let text = fill(template, &values, shown, "");
        last_resort(&text)
    }

    /// What a digest says of `entry`.
    pub fn brief(&self, entry: &Entry) -> Brief {
        match entry {
            Entry::Alerts(n) => {
                let fired = n.firing();
                let values = self.values(n);
                let more_hosts = values.hosts.len().saturating_sub(3);
                Brief::Alerts {
                    key: n.thread_key(),
                    status: n.status,
                    firing: fired,
                    resolved: n.alerts.len() - fired,
                    name: values.alertname,
                    hosts: values.hosts.into_iter().take(3).collect(),
                    more_hosts,
                }
            }
            Entry::Text(text) => Brief::Text(untrusted::one_line(text, MAX_VALUE_CHARS)),
        }
    }
}

/// The host list with the first `shown` names and a count of the rest: `a, b +3`.
fn host_list(hosts: &[String], shown: usize, more: usize) -> String {
    let mut list = hosts[..shown.min(hosts.len())].join(", ");
    let rest = hosts.len().saturating_sub(shown) + more;
    if rest > 0 {
        let _ = write!(list, " +{rest}");
    }
    list
}

fn fill(template: &Template, values: &Values, shown_hosts: usize, summary: &str) -> String {
    let hosts = host_list(&values.hosts, shown_hosts, 0);
    match template {
        Template::Default => {
            let mut text = format!("[{}] {}", values.status, values.alertname);
            if !hosts.is_empty() {
                let _ = write!(text, " on {hosts}");
            }
            if !summary.is_empty() {
                let _ = write!(text, ": {summary}");
            }
            text
        }
        Template::Custom(parts) => parts
            .iter()
            .map(|part| match part {
                Part::Literal(text) => text.as_str(),
                Part::Field(name) => match name.as_str() {
                    "status" => &values.status,
                    "alertname" => &values.alertname,
                    "hosts" => &hosts,
                    "summary" => summary,
                    "description" => &values.description,
                    "severity" => &values.severity,
                    "count" => &values.count,
                    "url" => &values.url,
                    _ => &values.group,
                },
            })
            .collect(),
    }
}

fn fits(text: &str) -> bool {
    twitter_text::parse_tweet(text).valid
}

/// Plain text (`POST /post`) as it will be posted: the sender's lines kept, escape sequences
/// and invisible characters not.
pub fn plain(text: &str) -> String {
    let lines: Vec<String> = text.split('\n').map(untrusted::printable).collect();
    last_resort(&lines.join("\n"))
}

/// `text` cut to fit, or a fixed line when nothing of it can be posted.
fn last_resort(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|&c| !twitter_text::is_invalid_char(c))
        .collect();
    twitter_text::fit(&cleaned)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "(an alert arrived with no text that X accepts)".to_string())
}

/// One post for everything that waited while the relay was rate limited:
/// `12 alerts while rate-limited: 7 firing, 5 resolved: ...`. Each group appears once (its
/// latest notification: the caller's order, latest last), in linear time.
pub fn digest(briefs: &[Brief]) -> String {
    let mut latest: HashMap<&str, usize> = HashMap::new();
    for (i, brief) in briefs.iter().enumerate() {
        if let Brief::Alerts { key, .. } = brief {
            latest.insert(key, i);
        }
    }
    let (mut firing, mut resolved, mut messages) = (0, 0, 0);
    let mut items = String::new();
    for (i, brief) in briefs.iter().enumerate() {
        let item = match brief {
            Brief::Alerts {
                key,
                status,
                firing: fired,
                resolved: ended,
                name,
                hosts,
                more_hosts,
            } => {
                if latest.get(key.as_str()) != Some(&i) {
                    continue;
                }
                firing += fired;
                resolved += ended;
                let state = match status {
                    Status::Firing => "firing",
                    Status::Resolved => "resolved",
                };
                let mut item = format!("{name} {state}");
                if !hosts.is_empty() {
                    let _ = write!(item, " on {}", host_list(hosts, 3, *more_hosts));
                }
                item
            }
            Brief::Text(text) => {
                messages += 1;
                text.clone()
            }
        };
        if items.len() < MAX_DIGEST_CHARS {
            if !items.is_empty() {
                items.push_str("; ");
            }
            items.push_str(&item);
        }
    }
    let mut counts = Vec::new();
    if firing + resolved > 0 {
        counts.push(plural(firing + resolved, "alert"));
    }
    if messages > 0 {
        counts.push(plural(messages, "message"));
    }
    let mut text = format!("{} while rate-limited", counts.join(" and "));
    if firing + resolved > 0 {
        let _ = write!(text, ": {firing} firing, {resolved} resolved");
    }
    let _ = write!(text, ": {items}");
    last_resort(&text)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `base`, or when it `is_recent` (X refuses a duplicate), `base (2)`, `base (3)`...: the
/// first suffix that makes it new, the text shortened to make room. The suffix is always
/// counted from `base`, so a text refused again reads `(3)`, never `(2) (2)`.
pub fn distinct(base: &str, is_recent: impl Fn(&str) -> bool) -> String {
    if !is_recent(base) {
        return base.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let with = format!("{base}{suffix}");
            if fits(&with) {
                return with;
            }
            let room =
                twitter_text::shorten(base, |t| fits(&format!("{t}{suffix}"))).unwrap_or_default();
            format!("{room}{suffix}")
        })
        .find(|candidate| !is_recent(candidate))
        .unwrap_or_else(|| base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::alerts::parse;

    fn render(n: &Notification, template: Template) -> String {
        Composer {
            template,
            ..Composer::default()
        }
        .render(n)
    }

    fn digest_of(entries: &[&Entry]) -> String {
        let composer = Composer::default();
        let briefs: Vec<Brief> = entries.iter().map(|e| composer.brief(e)).collect();
        digest(&briefs)
    }

    fn group(status: &str, hosts: &[&str], summary: &str) -> Notification {
        let alerts: Vec<String> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                format!(
                    r#"{{"status":"{status}","labels":{{"alertname":"DatastoreUsage","instance":"{h}:9100"}},"fingerprint":"f{i}"}}"#
                )
            })
            .collect();
        let body = format!(
            r#"{{"groupKey":"g","status":"{status}","commonLabels":{{"alertname":"DatastoreUsage"}},"commonAnnotations":{{"summary":"{summary}"}},"alerts":[{}]}}"#,
            alerts.join(",")
        );
        parse(body.as_bytes()).unwrap()
    }

    #[test]
    fn the_default_line() {
        let n = group(
            "firing",
            &["esx-07", "esx-08", "esx-09"],
            "datastore1 is 97% full",
        );
        assert_eq!(
            render(&n, Template::Default),
            "[FIRING:3] DatastoreUsage on esx-07, esx-08, esx-09: datastore1 is 97% full"
        );
        let n = group("resolved", &["esx-07"], "");
        assert_eq!(
            render(&n, Template::Default),
            "[RESOLVED] DatastoreUsage on esx-07"
        );
    }

    #[test]
    fn hosts_shrink_before_the_summary() {
        let hosts: Vec<String> = (1..=60).map(|i| format!("esx-{i:02}")).collect();
        let hosts: Vec<&str> = hosts.iter().map(String::as_str).collect();
        let n = group(
            "firing",
            &hosts,
            "datastore1 is 97% full on every host of rack 12",
        );
        let text = render(&n, Template::Default);
        assert!(twitter_text::parse_tweet(&text).valid, "{text}");
        assert!(
            text.starts_with("[FIRING:60] DatastoreUsage on esx-01, esx-02"),
            "{text}"
        );
        assert!(
            text.ends_with(": datastore1 is 97% full on every host of rack 12"),
            "{text}"
        );
        assert!(text.contains(" +"), "{text}");

        let long = "word ".repeat(100);
        let n = group("firing", &hosts, long.trim());
        let text = render(&n, Template::Default);
        assert!(twitter_text::parse_tweet(&text).valid, "{text}");
        assert!(
            text.starts_with("[FIRING:60] DatastoreUsage on esx-01 +59: word word"),
            "{text}"
        );
        assert!(text.ends_with("word…"), "{text}");
    }

    #[test]
    fn templates_name_their_placeholders() {
        let t = Template::parse("{severity}: {alertname} ({count}) {{literal}}\n").unwrap();
        let n = group("firing", &["esx-07"], "s");
        assert_eq!(render(&n, t), ": DatastoreUsage (1) {literal}");
        assert!(Template::parse("{nope}").unwrap_err().contains("{hosts}"));
        assert!(Template::parse("static").is_err());
        assert!(Template::parse("a } b {status}").is_err());
    }

    #[test]
    fn digests_count_what_waited() {
        let firing = Entry::Alerts(group("firing", &["esx-07", "esx-08"], "full"));
        let mut other = group("resolved", &["esx-09"], "full");
        other.thread = "another group".into();
        let resolved = Entry::Alerts(other);
        let note = Entry::Text("backup done".into());
        let text = digest_of(&[&firing, &resolved, &note]);
        assert_eq!(
            text,
            "3 alerts and 1 message while rate-limited: 2 firing, 1 resolved: DatastoreUsage firing on esx-07, esx-08; DatastoreUsage resolved on esx-09; backup done"
        );
        assert_eq!(
            digest_of(&[&note, &note]),
            "2 messages while rate-limited: backup done; backup done"
        );
    }

    #[test]
    fn repeats_get_a_suffix() {
        let recent = ["disk full", "disk full (2)"];
        assert_eq!(
            distinct("disk full", |t| recent.contains(&t)),
            "disk full (3)"
        );
        assert_eq!(distinct("other", |t| recent.contains(&t)), "other");
        let long = "x".repeat(280);
        let again = distinct(&long, |t| t == long);
        assert!(again.ends_with("… (2)") && twitter_text::parse_tweet(&again).valid);
    }

    #[test]
    fn control_characters_do_not_reach_the_post() {
        let n = group("firing", &["esx-07"], "line one\\nline two\\u001b[2J");
        let text = render(&n, Template::Default);
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }

    #[test]
    fn alert_values_cannot_link_mention_or_hide() {
        let n = group(
            "firing",
            &["esx-07.rack12.example.com"],
            "ping @POTUS #outage $TSLA see https://phish.example.com/a \\u202egnp.exe \\u001b[31mred\\u200b",
        );
        let text = render(&n, Template::Default);
        assert_eq!(
            text,
            "[FIRING:1] DatastoreUsage on esx-07: ping @ POTUS # outage $ TSLA see https://phish[.]example[.]com/a gnp.exe red"
        );
        let full = Composer {
            host_names: HostNames::Full,
            ..Composer::default()
        };
        assert!(
            full.render(&n)
                .contains(" on esx-07[.]rack12[.]example[.]com: ")
        );
        let allowed = Composer {
            allow: Allow {
                links: true,
                mentions: true,
                hashtags: true,
            },
            ..Composer::default()
        };
        assert!(
            allowed
                .render(&n)
                .contains("@POTUS #outage $TSLA see https://phish.example.com/a")
        );
    }

    #[test]
    fn values_are_cut_before_they_are_counted() {
        let long = "word ".repeat(10_000);
        let n = group("firing", &[&"h".repeat(5000)], long.trim());
        let values = Composer::default().values(&n);
        assert_eq!(values.summary.chars().count(), MAX_VALUE_CHARS);
        assert_eq!(values.hosts[0].chars().count(), MAX_VALUE_CHARS);
        assert!(twitter_text::parse_tweet(&render(&n, Template::Default)).valid);
    }

    #[test]
    fn short_host_names_keep_addresses_whole() {
        let hosts = ["10.0.0.7", "esx-07.a.example", "esx-07.b.example"];
        let line = render(&group("firing", &hosts, ""), Template::Default);
        assert_eq!(line, "[FIRING:3] DatastoreUsage on 10.0.0.7, esx-07");
    }

    #[test]
    fn a_repeated_text_counts_up_from_its_base() {
        let recent = ["disk full", "disk full (2)", "disk full (3)"];
        assert_eq!(
            distinct("disk full", |t| recent.contains(&t)),
            "disk full (4)"
        );
    }
}

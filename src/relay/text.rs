//! What the relay posts: one line per alert group, a digest when alerts piled up, and a short
//! suffix when the same text must go out again. Every text fits X's 280 weighted characters by
//! the agent's exact counter: the parts that can shrink (the host list, then the summary) shrink
//! before the line is cut.

use std::fmt::Write as _;

use super::alerts::{Notification, Status};
use super::spool::Entry;
use crate::api::printable;
use crate::twitter_text::{self, fit};

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

/// The longest a single value may be before rendering: far beyond what fits, short enough to
/// keep the shrinking cheap whatever a sender puts in a label.
const MAX_VALUE_CHARS: usize = 2000;

/// How a notification becomes a post.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    /// `[FIRING:3] DatastoreUsage on esx-07, esx-08 +1: summary`.
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

impl Values {
    fn of(notification: &Notification) -> Self {
        let status = match notification.status {
            Status::Firing => format!("FIRING:{}", notification.firing()),
            Status::Resolved => "RESOLVED".to_string(),
        };
        Values {
            status,
            alertname: clean(&notification.alertname()),
            hosts: notification.hosts().iter().map(|h| clean(h)).collect(),
            summary: clean(&notification.annotation("summary")),
            description: clean(&notification.annotation("description")),
            severity: clean(&notification.label("severity")),
            count: notification.alerts.len().to_string(),
            url: clean(&notification.external_url),
            group: clean(&notification.group_key),
        }
    }
}

/// A value made fit for one line: control characters (newlines included) become spaces,
/// runs of white space one space, and the length is bounded.
fn clean(value: &str) -> String {
    let printable = printable(value);
    let mut out = String::new();
    for word in printable.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
        if out.chars().count() > MAX_VALUE_CHARS {
            break;
        }
    }
    match out.char_indices().nth(MAX_VALUE_CHARS) {
        Some((cut, _)) => out[..cut].to_string(),
        None => out,
    }
}

/// The host list with the first `shown` names and a count of the rest: `a, b +3`.
fn host_list(hosts: &[String], shown: usize) -> String {
    let mut list = hosts[..shown.min(hosts.len())].join(", ");
    if hosts.len() > shown {
        let _ = write!(list, " +{}", hosts.len() - shown);
    }
    list
}

fn fill(template: &Template, values: &Values, shown_hosts: usize, summary: &str) -> String {
    let hosts = host_list(&values.hosts, shown_hosts);
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
    twitter_text::parse(text).valid
}

/// The post for `notification`: the template filled in, shrunk until it fits.
pub fn render(notification: &Notification, template: &Template) -> String {
    let values = Values::of(notification);
    let all = values.hosts.len();
    let text = fill(template, &values, all, &values.summary);
    if fits(&text) {
        return text;
    }
    // Fewer host names first (the count of the others stays), down to one: the longest list
    // that fits, found by bisection, since one name fewer never makes the line longer (a
    // thousand hosts cost ten counts, not a thousand).
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
    if let Some(summary) = fit::shorten(&values.summary, |summary| {
        fits(&fill(template, &values, shown, summary))
    }) {
        return fill(template, &values, shown, &summary);
    }
    let text = fill(template, &values, shown, "");
    last_resort(&text)
}

/// Plain text (`POST /post`) as it will be posted.
pub fn plain(text: &str) -> String {
    last_resort(text)
}

/// `text` cut to fit, or a fixed line when nothing of it can be posted.
fn last_resort(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .filter(|&c| !twitter_text::is_invalid(c))
        .collect();
    fit::fit(&cleaned)
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| "(an alert arrived with no text that X accepts)".to_string())
}

/// One post for everything that waited while the relay was rate limited:
/// `12 alerts while rate-limited: 7 firing, 5 resolved: ...`.
pub fn digest(entries: &[&Entry]) -> String {
    let (mut firing, mut resolved, mut messages) = (0, 0, 0);
    let mut items = Vec::new();
    for entry in entries {
        match entry {
            Entry::Alerts(n) => {
                let fired = n.firing();
                firing += fired;
                resolved += n.alerts.len() - fired;
                let state = match n.status {
                    Status::Firing => "firing",
                    Status::Resolved => "resolved",
                };
                let hosts = n.hosts();
                let mut item = format!("{} {state}", clean(&n.alertname()));
                if !hosts.is_empty() {
                    let hosts: Vec<String> = hosts.iter().map(|h| clean(h)).collect();
                    let _ = write!(item, " on {}", host_list(&hosts, 3));
                }
                items.push(item);
            }
            Entry::Text(text) => {
                messages += 1;
                items.push(clean(text));
            }
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
    let _ = write!(text, ": {}", items.join("; "));
    last_resort(&text)
}

fn plural(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// `text`, or when it is among the recent posts (X refuses a duplicate), `text (2)`,
/// `text (3)`...: the shortest suffix that makes it new, the text shortened to make room.
pub fn distinct(text: &str, recent: &[String]) -> String {
    if !recent.iter().any(|r| r == text) {
        return text.to_string();
    }
    (2..)
        .map(|n| {
            let suffix = format!(" ({n})");
            let with = format!("{text}{suffix}");
            if fits(&with) {
                return with;
            }
            let room = fit::shorten(text, |t| fits(&format!("{t}{suffix}"))).unwrap_or_default();
            format!("{room}{suffix}")
        })
        .find(|candidate| !recent.iter().any(|r| r == candidate))
        .unwrap_or_else(|| text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::alerts::parse;

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
            render(&n, &Template::Default),
            "[FIRING:3] DatastoreUsage on esx-07, esx-08, esx-09: datastore1 is 97% full"
        );
        let n = group("resolved", &["esx-07"], "");
        assert_eq!(
            render(&n, &Template::Default),
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
        let text = render(&n, &Template::Default);
        assert!(twitter_text::parse(&text).valid, "{text}");
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
        let text = render(&n, &Template::Default);
        assert!(twitter_text::parse(&text).valid, "{text}");
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
        assert_eq!(render(&n, &t), ": DatastoreUsage (1) {literal}");
        assert!(Template::parse("{nope}").unwrap_err().contains("{hosts}"));
        assert!(Template::parse("static").is_err());
        assert!(Template::parse("a } b {status}").is_err());
    }

    #[test]
    fn digests_count_what_waited() {
        let firing = Entry::Alerts(group("firing", &["esx-07", "esx-08"], "full"));
        let resolved = Entry::Alerts(group("resolved", &["esx-09"], "full"));
        let note = Entry::Text("backup done".into());
        let text = digest(&[&firing, &resolved, &note]);
        assert_eq!(
            text,
            "3 alerts and 1 message while rate-limited: 2 firing, 1 resolved: DatastoreUsage firing on esx-07, esx-08; DatastoreUsage resolved on esx-09; backup done"
        );
        assert_eq!(
            digest(&[&note, &note]),
            "2 messages while rate-limited: backup done; backup done"
        );
    }

    #[test]
    fn repeats_get_a_suffix() {
        let recent = vec!["disk full".to_string(), "disk full (2)".to_string()];
        assert_eq!(distinct("disk full", &recent), "disk full (3)");
        assert_eq!(distinct("other", &recent), "other");
        let long = "x".repeat(280);
        let again = distinct(&long, std::slice::from_ref(&long));
        assert!(again.ends_with("… (2)") && twitter_text::parse(&again).valid);
    }

    #[test]
    fn control_characters_do_not_reach_the_post() {
        let n = group("firing", &["esx-07"], "line one\\nline two\\u001b[2J");
        let text = render(&n, &Template::Default);
        assert!(!text.chars().any(char::is_control), "{text:?}");
    }
}

//! The webhook payloads the relay accepts: Alertmanager's (`webhook_configs`, version 4) and
//! Grafana's webhook contact point, which sends the same shape with extra fields (`orgId`,
//! `title`, `message`, per alert `values`, `silenceURL`...). Extra fields are ignored; what the
//! texts need is checked here, so that a spooled notification always renders.
//!
//! Every value is the sender's to choose (a tenant's label, a scraped host name), so a
//! notification keeps only what a post can show, each value cut to [`MAX_RAW_VALUE`]
//! characters, and names its thread by a hash: whatever arrives, what is spooled and what the
//! state remembers stay small.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Most alerts one notification may carry (Alertmanager's `max_alerts` trims bigger groups).
pub const MAX_ALERTS: usize = 1000;
/// The most characters kept of any value (label, annotation, URL, group key, fingerprint):
/// room for the escape sequences that cleaning removes, far beyond what a post shows.
pub const MAX_RAW_VALUE: usize = 1024;
/// The labels a post can show; the others are dropped at once.
const SHOWN_LABELS: [&str; 2] = ["alertname", "severity"];
/// The annotations a post can show.
const SHOWN_ANNOTATIONS: [&str; 2] = ["summary", "description"];

/// A group's state, as both senders spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// At least one alert of the group fires.
    Firing,
    /// Every alert of the group is resolved.
    Resolved,
}

/// One webhook notification: an alert group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Identifies the group across notifications (threads are keyed by it).
    #[serde(rename = "groupKey", default)]
    pub group_key: String,
    /// The group's state.
    pub status: Status,
    /// Labels shared by every alert of the group.
    #[serde(rename = "commonLabels", default)]
    pub common_labels: BTreeMap<String, String>,
    /// Annotations shared by every alert of the group.
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: BTreeMap<String, String>,
    /// The labels the group is grouped by.
    #[serde(rename = "groupLabels", default)]
    pub group_labels: BTreeMap<String, String>,
    /// Link back to the sender's UI.
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    /// Alerts the sender dropped because the group was bigger than its `max_alerts`.
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: u64,
    /// The thread this group posts in: a hash of the group key (see [`Notification::thread_key`]),
    /// set when the payload is parsed. Not the sender's: an incoming value is replaced.
    #[serde(rename = "threadKey", default)]
    pub thread: String,
    /// The alerts.
    pub alerts: Vec<Alert>,
}

/// One alert of a group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// This alert's state.
    pub status: Status,
    /// `alertname`, `instance`, `severity`...
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`...
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Stable per label set.
    #[serde(default)]
    pub fingerprint: String,
}

/// Parses and checks a webhook body. The error says what is wrong, for a 400 answer.
pub fn parse(body: &[u8]) -> Result<Notification, String> {
    let mut notification: Notification = serde_json::from_slice(body)
        .map_err(|e| format!("not an Alertmanager or Grafana webhook payload: {e}"))?;
    if notification.alerts.is_empty() {
        return Err("the payload has no alerts".to_string());
    }
    if notification.alerts.len() > MAX_ALERTS {
        return Err(format!(
            "the payload has {} alerts, more than {MAX_ALERTS}: set max_alerts in the receiver",
            notification.alerts.len()
        ));
    }
    // The thread is named by everything that identifies the group, before values are cut.
    notification.thread = hash(&if notification.group_key.is_empty() {
        format!(
            "{}:{:?}",
            notification.alertname(),
            notification.common_labels
        )
    } else {
        notification.group_key.clone()
    });
    notification.prune();
    Ok(notification)
}

/// The first 128 bits of SHA-256, in hex: a name for a value of any length.
pub(crate) fn hash(value: &str) -> String {
    Sha256::digest(value.as_bytes())[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `value` cut to [`MAX_RAW_VALUE`] characters.
fn cut(value: &mut String) {
    if let Some((at, _)) = value.char_indices().nth(MAX_RAW_VALUE) {
        value.truncate(at);
    }
}

/// Keeps of `map` only the `names`, each value cut.
fn keep(map: &mut BTreeMap<String, String>, names: &[&str]) {
    map.retain(|name, _| names.contains(&name.as_str()));
    map.values_mut().for_each(cut);
}

/// Label names that name the machine an alert is about, most specific first.
const HOST_LABELS: [&str; 6] = [
    "host",
    "hostname",
    "nodename",
    "node",
    "instance",
    "exported_instance",
];

impl Notification {
    /// Drops what no post shows and cuts every value that remains.
    fn prune(&mut self) {
        let labels: Vec<&str> = SHOWN_LABELS.iter().chain(&HOST_LABELS).copied().collect();
        keep(&mut self.common_labels, &labels);
        keep(&mut self.group_labels, &labels);
        keep(&mut self.common_annotations, &SHOWN_ANNOTATIONS);
        cut(&mut self.group_key);
        cut(&mut self.external_url);
        for alert in &mut self.alerts {
            keep(&mut alert.labels, &labels);
            keep(&mut alert.annotations, &SHOWN_ANNOTATIONS);
            // At most 64 bytes, cut where a character starts (truncate panics elsewhere).
            let mut end = alert.fingerprint.len().min(64);
            while !alert.fingerprint.is_char_boundary(end) {
                end -= 1;
            }
            alert.fingerprint.truncate(end);
        }
    }

    /// How many of its alerts fire.
    pub fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .count()
    }

    /// The alert's name: common to the group, else the first alert's.
    pub fn alertname(&self) -> String {
        self.common_labels
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
            .or_else(|| self.alerts.iter().find_map(|a| a.labels.get("alertname")))
            .cloned()
            .unwrap_or_else(|| "alert".to_string())
    }

    /// The machines the alerts are about, each once, in the order of the alerts; for a
    /// firing group only the firing alerts'.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts: Vec<String> = Vec::new();
        for alert in self.relevant_alerts() {
            if let Some(host) = alert.host()
                && !hosts.contains(&host)
            {
                hosts.push(host);
            }
        }
        hosts
    }

    /// An annotation common to the group, else the first relevant alert's.
    pub fn annotation(&self, name: &str) -> String {
        self.common_annotations
            .get(name)
            .or_else(|| {
                self.relevant_alerts()
                    .find_map(|a| a.annotations.get(name).filter(|v| !v.is_empty()))
            })
            .cloned()
            .unwrap_or_default()
    }

    /// A label common to the group, else the first relevant alert's.
    pub fn label(&self, name: &str) -> String {
        self.common_labels
            .get(name)
            .or_else(|| self.relevant_alerts().find_map(|a| a.labels.get(name)))
            .cloned()
            .unwrap_or_default()
    }

    /// What a repeated notification repeats: a hash of the sorted fingerprints of the firing
    /// alerts.
    pub fn firing_fingerprints(&self) -> String {
        let mut prints: Vec<&str> = self
            .alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .map(|a| a.fingerprint.as_str())
            .collect();
        prints.sort_unstable();
        hash(&prints.join(","))
    }

    /// The key threads are kept under: a hash of the group key, or for senders that leave it
    /// empty, of the alert name and common labels.
    pub fn thread_key(&self) -> String {
        if self.thread.is_empty() {
            hash(&self.group_key)
        } else {
            self.thread.clone()
        }
    }

    fn relevant_alerts(&self) -> impl Iterator<Item = &Alert> {
        let firing = self.status == Status::Firing;
        self.alerts
            .iter()
            .filter(move |a| !firing || a.status == Status::Firing)
    }
}

impl Alert {
    /// The machine this alert is about: a host label, without a `:port` and a scheme.
    pub fn host(&self) -> Option<String> {
        let value = HOST_LABELS
            .iter()
            .find_map(|name| self.labels.get(*name).filter(|v| !v.is_empty()))?;
        let value = value
            .split_once("://")
            .map_or(value.as_str(), |(_, rest)| rest);
        let value = value.split('/').next().unwrap_or(value);
        let host = match value.rsplit_once(':') {
            Some((host, port))
                if !host.is_empty()
                    && !host.contains(':')
                    && port.bytes().all(|b| b.is_ascii_digit()) =>
            {
                host
            }
            _ => value,
        };
        Some(host.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(status: Status, labels: &[(&str, &str)]) -> Alert {
        Alert {
            status,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
            fingerprint: String::new(),
        }
    }

    #[test]
    fn hosts_lose_ports_and_schemes() {
        let host = |labels: &[(&str, &str)]| alert(Status::Firing, labels).host();
        assert_eq!(
            host(&[("instance", "esx-07:9100")]).as_deref(),
            Some("esx-07")
        );
        assert_eq!(
            host(&[("instance", "https://vc.example.com:443/ui")]).as_deref(),
            Some("vc.example.com")
        );
        assert_eq!(
            host(&[("instance", "[::1]:9100")]).as_deref(),
            Some("[::1]:9100")
        );
        assert_eq!(
            host(&[("instance", "x:1"), ("host", "esx-08")]).as_deref(),
            Some("esx-08")
        );
        assert_eq!(host(&[("job", "node")]), None);
    }

    #[test]
    fn bad_payloads_say_why() {
        assert!(parse(b"{").unwrap_err().contains("not an Alertmanager"));
        assert!(
            parse(br#"{"status":"firing","alerts":[]}"#)
                .unwrap_err()
                .contains("no alerts")
        );
        assert!(parse(br#"{"status":"exploded","alerts":[{"status":"firing"}]}"#).is_err());
        let ok = parse(
            br#"{"status":"firing","alerts":[{"status":"firing","labels":{"alertname":"A"}}]}"#,
        )
        .unwrap();
        assert_eq!(ok.alertname(), "A");
        assert_eq!(ok.firing(), 1);
    }

    #[test]
    fn only_what_a_post_shows_is_kept_and_cut() {
        let long = "x".repeat(100_000);
        let body = format!(
            r#"{{"groupKey":"{long}","status":"firing","commonLabels":{{"team":"{long}","alertname":"A"}},"alerts":[{{"status":"firing","labels":{{"instance":"{long}","pod":"p"}},"annotations":{{"summary":"{long}","runbook_url":"u"}},"fingerprint":"{long}"}}]}}"#
        );
        let n = parse(body.as_bytes()).unwrap();
        assert_eq!(n.common_labels.keys().collect::<Vec<_>>(), ["alertname"]);
        assert_eq!(n.alerts[0].labels.keys().collect::<Vec<_>>(), ["instance"]);
        assert_eq!(n.alerts[0].labels["instance"].len(), MAX_RAW_VALUE);
        assert_eq!(n.annotation("summary").len(), MAX_RAW_VALUE);
        assert_eq!(n.alerts[0].fingerprint.len(), 64);
        // A fingerprint of three-byte characters is cut before the one that crosses 64 bytes,
        // not in its middle (which panicked and, in the release build, aborted the relay).
        let wide = body.replacen(
            &format!("\"fingerprint\":\"{long}\""),
            &format!("\"fingerprint\":\"{}\"", "日".repeat(40)),
            1,
        );
        let n = parse(wide.as_bytes()).unwrap();
        assert_eq!(n.alerts[0].fingerprint, "日".repeat(21));
        assert_eq!(n.group_key.len(), MAX_RAW_VALUE);
        assert_eq!(n.thread_key().len(), 32);
        assert!(serde_json::to_vec(&n).unwrap().len() < 4 * MAX_RAW_VALUE + 1000);
        // The whole group key names the thread, not its first kilobyte.
        let other = body.replacen(
            &format!("\"groupKey\":\"{long}"),
            &format!("\"groupKey\":\"{long}y"),
            1,
        );
        assert_ne!(
            parse(other.as_bytes()).unwrap().thread_key(),
            n.thread_key()
        );
    }
}

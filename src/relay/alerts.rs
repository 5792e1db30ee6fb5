//! The webhook payloads the relay accepts: Alertmanager's (`webhook_configs`, version 4) and
//! Grafana's webhook contact point, which sends the same shape with extra fields (`orgId`,
//! `title`, `message`, per alert `values`, `silenceURL`...). Extra fields are ignored; what the
//! texts need is checked here, so that a spooled notification always renders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Most alerts one notification may carry (Alertmanager's `max_alerts` trims bigger groups).
pub const MAX_ALERTS: usize = 1000;

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
    let notification: Notification = serde_json::from_slice(body)
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
    Ok(notification)
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

    /// The fingerprints of the firing alerts, sorted: what a repeated notification repeats.
    pub fn firing_fingerprints(&self) -> Vec<String> {
        let mut prints: Vec<String> = self
            .alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .map(|a| a.fingerprint.clone())
            .collect();
        prints.sort();
        prints
    }

    /// The key threads are kept under: the group key, or for senders that leave it empty, the
    /// alert name and common labels.
    pub fn thread_key(&self) -> String {
        if self.group_key.is_empty() {
            format!("{}:{:?}", self.alertname(), self.common_labels)
        } else {
            self.group_key.clone()
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
}

//! The relay's log: one line per event on stderr, as text for people or JSON for collectors
//! (`--json`). Values are made printable, so a label cannot forge a log line.

use std::io::Write as _;
use std::time::SystemTime;

use serde_json::{Map, Value};

/// Where log lines go, and in which form.
#[derive(Debug, Clone, Copy)]
pub struct Logger {
    /// One JSON object per line instead of `key=value` text.
    pub json: bool,
}

impl Logger {
    /// Logs `event` with `fields`.
    pub fn event(&self, event: &str, fields: &[(&str, Value)]) {
        let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
        let line = if self.json {
            let mut object = Map::new();
            object.insert("time".into(), time.into());
            object.insert("event".into(), event.into());
            for (name, value) in fields {
                object.insert((*name).into(), value.clone());
            }
            Value::Object(object).to_string()
        } else {
            let mut line = format!("{time} {event}");
            for (name, value) in fields {
                let shown = match value {
                    Value::String(s) => {
                        let s = crate::api::printable(s);
                        if s.is_empty() || s.contains([' ', '"', '=']) {
                            format!("{s:?}")
                        } else {
                            s
                        }
                    }
                    other => other.to_string(),
                };
                line.push_str(&format!(" {name}={shown}"));
            }
            line
        };
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{line}");
    }
}

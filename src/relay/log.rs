//! The relay's log: one line per event on stderr, as text for people or JSON for collectors
//! (`--json`). Values are made printable and cut to 256 characters, so a sender's label can
//! neither forge a log line nor make a megabyte-long one.

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
        let fields: Vec<(&str, Value)> = fields
            .iter()
            .map(|(name, value)| (*name, bounded(value)))
            .collect();
        let line = if self.json {
            let mut object = Map::new();
            object.insert("time".into(), time.into());
            object.insert("event".into(), event.into());
            for (name, value) in fields.iter().cloned() {
                object.insert(name.into(), value);
            }
            Value::Object(object).to_string()
        } else {
            let mut line = format!("{time} {event}");
            for (name, value) in &fields {
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

/// Longest string value a log line carries.
const MAX_VALUE_CHARS: usize = 256;

/// `value`, strings cut to [`MAX_VALUE_CHARS`] (with `...`).
fn bounded(value: &Value) -> Value {
    match value {
        Value::String(s) => match s.char_indices().nth(MAX_VALUE_CHARS) {
            Some((cut, _)) => Value::String(format!("{}...", &s[..cut])),
            None => value.clone(),
        },
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_are_cut() {
        let long = "g".repeat(1_000_000);
        let Value::String(shown) = bounded(&Value::String(long)) else {
            panic!("a string stays a string");
        };
        assert_eq!(shown.len(), MAX_VALUE_CHARS + 3);
        assert_eq!(bounded(&Value::from(7)), Value::from(7));
    }
}

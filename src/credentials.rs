//! The four OAuth credentials and the redaction that keeps the two secrets off every screen.

use std::fmt;

/// A secret string whose `Debug` and `Display` print `[redacted]`.
///
/// The only way to the value is [`Secret::expose`], so a secret can reach a log line or an
/// error message only through a call that stands out in review.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// OAuth 1.0a user-context credentials of an X app: the app's consumer key pair and the
/// account's access token pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The app's API key (public: it is sent in every `Authorization` header).
    pub consumer_key: String,
    /// The app's API key secret.
    pub consumer_secret: Secret,
    /// The account's access token (public, like the consumer key).
    pub access_token: String,
    /// The account's access token secret.
    pub access_token_secret: Secret,
}

impl fmt::Display for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "consumer key {}, access token {} (secrets redacted)",
            self.consumer_key, self.access_token
        )
    }
}

/// The four values by their config keys, secrets exposed: for code that writes or checks
/// them one by one, never for display.
pub fn by_key<'a>(
    app: (&'a str, &'a Secret),
    token: (&'a str, &'a Secret),
) -> [(&'static str, &'a str); 4] {
    [
        ("consumer_key", app.0),
        ("consumer_secret", app.1.expose()),
        ("access_token", token.0),
        ("access_token_secret", token.1.expose()),
    ]
}

/// An app's consumer key pair: all the PIN flow (`authorize`) needs to start.
#[derive(Debug, Clone)]
pub struct AppKeys {
    /// `oauth_consumer_key`.
    pub consumer_key: String,
    /// The consumer secret.
    pub consumer_secret: Secret,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_secrets() {
        let c = Credentials {
            consumer_key: "ck".into(),
            consumer_secret: Secret::new("very-secret-1"),
            access_token: "at".into(),
            access_token_secret: Secret::new("very-secret-2"),
        };
        for shown in [format!("{c:?}"), format!("{c}"), format!("{c:#?}")] {
            assert!(!shown.contains("very-secret"), "{shown}");
            assert!(shown.contains("ck") && shown.contains("at"), "{shown}");
        }
        assert_eq!(c.consumer_secret.expose(), "very-secret-1");
    }
}

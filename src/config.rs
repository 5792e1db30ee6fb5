//! Where the agent's settings come from: the TOML config file, the environment, and the
//! command line, in rising order of precedence.
//!
//! Secrets are read from the environment or the file only, never from flags: a flag would show
//! in `ps` on a shared host. A file that holds secrets must not be readable by group or others.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::api::ApiVersion;
use crate::credentials::{Credentials, Secret};
use crate::error::Error;

/// Environment variables that carry the four credentials, with their config-file keys.
pub const CREDENTIAL_VARS: [(&str, &str); 4] = [
    ("TWITTER_CONSUMER_KEY", "consumer_key"),
    ("TWITTER_CONSUMER_SECRET", "consumer_secret"),
    ("TWITTER_ACCESS_TOKEN", "access_token"),
    ("TWITTER_ACCESS_TOKEN_SECRET", "access_token_secret"),
];

/// The config file as written by the user.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The app's API key.
    pub consumer_key: Option<String>,
    /// The app's API key secret.
    pub consumer_secret: Option<Secret>,
    /// The account's access token.
    pub access_token: Option<String>,
    /// The account's access token secret.
    pub access_token_secret: Option<Secret>,
    /// API base URL, such as `https://api.x.com`.
    pub api_base: Option<String>,
    /// API version to post with.
    pub api: Option<ApiVersion>,
    /// Extra trusted CA certificates (PEM); relative to the config file's directory.
    pub ca_file: Option<PathBuf>,
    /// Proxy URL for outbound HTTPS.
    pub proxy: Option<String>,
    /// Settings of the boot script bundle; the agent itself ignores them.
    pub boot: Option<toml::Table>,
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

/// The config file path used when `--config` is not given: `$XDG_CONFIG_HOME/esxi-tweet/
/// config.toml`, else `~/.config/esxi-tweet/config.toml`.
pub fn default_config_path(env: &dyn Fn(&str) -> Option<String>) -> Option<PathBuf> {
    let base = env("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| Path::new(&h).join(".config"))
        })?;
    Some(base.join("esxi-tweet").join("config.toml"))
}

/// Reads and checks the config file. A missing file is `Ok(None)` unless the user named it.
pub fn load_file(path: &Path, named_by_user: bool) -> Result<Option<FileConfig>, Error> {
    let shown = path.display();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !named_by_user => return Ok(None),
        Err(e) => {
            return Err(Error::Config(format!(
                "cannot read config file {shown}: {e}"
            )));
        }
    };
    let mut config = parse_file(path, &text)?;
    let holds_secrets = config.consumer_secret.is_some() || config.access_token_secret.is_some();
    if holds_secrets {
        check_private(path, "config file", " holds secrets but")?;
    }
    if let (Some(ca), Some(dir)) = (&config.ca_file, path.parent()) {
        config.ca_file = Some(dir.join(ca));
    }
    Ok(Some(config))
}

/// Refuses `path` (called `label` in messages) when its group or others may read it, with
/// the `chmod` that fixes it; `but` is said before "is readable" (" holds secrets but").
pub fn check_private(path: &Path, label: &str, but: &str) -> Result<(), Error> {
    let shown = path.display();
    let mode = std::fs::metadata(path)
        .map_err(|e| Error::Config(format!("cannot read {label} {shown}: {e}")))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::Config(format!(
            "{label} {shown}{but} is readable by others (mode {:03o}): run chmod 600 {shown}",
            mode & 0o777
        )));
    }
    Ok(())
}

/// Parses a config file's text. Errors name the line and the key, never a value.
pub fn parse_file(path: &Path, text: &str) -> Result<FileConfig, Error> {
    toml::from_str(text).map_err(|e| Error::Config(describe_toml_error(&path.display(), text, &e)))
}

/// The app's key pair for `authorize`: each from the environment if set there, else from the
/// file.
pub fn resolve_app_keys(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&FileConfig>,
    file_path: Option<&Path>,
) -> Result<crate::credentials::AppKeys, Error> {
    let from_env = |var: &str| env(var).filter(|v| !v.is_empty());
    let consumer_key = from_env(CREDENTIAL_VARS[0].0).or_else(|| file?.consumer_key.clone());
    let consumer_secret = from_env(CREDENTIAL_VARS[1].0)
        .map(Secret::new)
        .or_else(|| file?.consumer_secret.clone());
    match (consumer_key, consumer_secret) {
        (Some(consumer_key), Some(consumer_secret)) => Ok(crate::credentials::AppKeys {
            consumer_key,
            consumer_secret,
        }),
        _ => {
            let file = file_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the config file".to_string());
            Err(Error::Config(format!(
                "authorize needs the app's API key and secret: set TWITTER_CONSUMER_KEY and TWITTER_CONSUMER_SECRET in the environment, or consumer_key and consumer_secret in {file}"
            )))
        }
    }
}

/// Keys a config file may hold.
const KEYS: [&str; 9] = [
    "consumer_key",
    "consumer_secret",
    "access_token",
    "access_token_secret",
    "api_base",
    "api",
    "ca_file",
    "proxy",
    "boot",
];

/// A parse error of the config file, in words that never quote the file: the parser's own
/// messages echo values (`invalid type: integer `...``, `unknown variant `...``) and keys
/// (`unknown field `...``), and a secret may be in any of them. Only the line number and,
/// when the line's key is one we know, that key are named.
fn describe_toml_error(shown: &dyn std::fmt::Display, text: &str, e: &toml::de::Error) -> String {
    let line_no = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let key = line_no
        .and_then(|n| text.lines().nth(n - 1))
        .and_then(|line| line.split_once('='))
        .map(|(k, _)| k.trim())
        .and_then(|k| KEYS.iter().find(|known| **known == k));
    let message = e.message();
    let what = if message.starts_with("unknown field") {
        // A key's name is no secret, but a secret pasted where a key goes would be: only
        // names shaped like ours (lower case, digits, `_`, short) are repeated. X's keys and
        // tokens are mixed case or hold a dash, so they never are.
        let named = message
            .split('`')
            .nth(1)
            .filter(|k| {
                !k.is_empty()
                    && k.len() <= 32
                    && k.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
            })
            .map(|k| format!(" {k}"))
            .unwrap_or_default();
        format!("unknown key{named}; the keys are {}", KEYS.join(", "))
    } else if message.starts_with("unknown variant") {
        "unknown value: api is \"v2\" or \"v1.1\"".to_string()
    } else if message.starts_with("invalid type") {
        "wrong type of value: put text in double quotes (key = \"value\")".to_string()
    } else if message.starts_with("duplicate key") {
        "a key is set twice".to_string()
    } else {
        "not valid TOML: write each setting as key = \"value\"".to_string()
    };
    let at = line_no.map(|n| format!(" line {n}")).unwrap_or_default();
    let key = key.map(|k| format!(" ({k})")).unwrap_or_default();
    format!("config file {shown}{at}{key}: {what}")
}

/// Assembles the credentials: each one from the environment if set there, else from the file.
pub fn resolve_credentials(
    env: &dyn Fn(&str) -> Option<String>,
    file: Option<&FileConfig>,
    file_path: Option<&Path>,
) -> Result<Credentials, Error> {
    let from_env = |var: &str| env(var).filter(|v| !v.is_empty());
    let consumer_key = from_env(CREDENTIAL_VARS[0].0).or_else(|| file?.consumer_key.clone());
    let consumer_secret = from_env(CREDENTIAL_VARS[1].0)
        .map(Secret::new)
        .or_else(|| file?.consumer_secret.clone());
    let access_token = from_env(CREDENTIAL_VARS[2].0).or_else(|| file?.access_token.clone());
    let access_token_secret = from_env(CREDENTIAL_VARS[3].0)
        .map(Secret::new)
        .or_else(|| file?.access_token_secret.clone());
    match (
        consumer_key,
        consumer_secret,
        access_token,
        access_token_secret,
    ) {
        (
            Some(consumer_key),
            Some(consumer_secret),
            Some(access_token),
            Some(access_token_secret),
        ) => Ok(Credentials {
            consumer_key,
            consumer_secret,
            access_token,
            access_token_secret,
        }),
        (ck, cs, at, ats) => {
            let present = [ck.is_some(), cs.is_some(), at.is_some(), ats.is_some()];
            let missing: Vec<String> = CREDENTIAL_VARS
                .iter()
                .zip(present)
                .filter(|(_, present)| !present)
                .map(|((var, _), _)| var.to_string())
                .collect();
            let keys: Vec<&str> = CREDENTIAL_VARS
                .iter()
                .zip(present)
                .filter(|(_, present)| !present)
                .map(|((_, key), _)| *key)
                .collect();
            let file = file_path
                .map(|p| p.display().to_string())
                .unwrap_or_else(|| "the config file".to_string());
            Err(Error::Config(format!(
                "missing credentials: set {} in the environment, or {} in {file}",
                missing.join(", "),
                keys.join(", ")
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn parse_errors_never_quote_the_file() {
        let secret = "S3cr3tV4lue";
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        for text in [
            "consumer_secret = 12345678901234567890\n"
                .replace("12345678901234567890", "9876543210"),
            format!("api = \"{secret}\"\n"),
            format!("{secret} = \"x\"\n"),
            format!("consumer_secret = {secret}\n"),
            format!("consumer_key = \"a\"\nconsumer_key = \"{secret}\"\n"),
            format!("access_token_secret = \"{secret}\n"),
        ] {
            std::fs::write(&path, &text).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            let err = load_file(&path, true).unwrap_err().to_string();
            assert!(
                !err.contains(secret) && !err.contains("9876543210"),
                "{err}"
            );
            assert!(err.contains("line "), "{err}");
            assert_eq!(err.lines().count(), 1, "{err}");
        }
    }

    #[test]
    fn default_path_prefers_xdg() {
        let env = env_of(&[("XDG_CONFIG_HOME", "/x"), ("HOME", "/h")]);
        assert_eq!(
            default_config_path(&env),
            Some(PathBuf::from("/x/esxi-tweet/config.toml"))
        );
        let env = env_of(&[("HOME", "/h")]);
        assert_eq!(
            default_config_path(&env),
            Some(PathBuf::from("/h/.config/esxi-tweet/config.toml"))
        );
        assert_eq!(default_config_path(&env_of(&[])), None);
    }

    #[test]
    fn an_unknown_key_is_named_but_no_value_is() {
        let err = parse_file(
            Path::new("/c.toml"),
            "consumer_key = \"ck\"\nconsumer_secert = \"s3cret-value\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("line 2") && err.contains("unknown key consumer_secert"),
            "{err}"
        );
        assert!(!err.contains("s3cret-value"), "{err}");
    }

    #[test]
    fn environment_wins_per_credential() {
        let file = FileConfig {
            consumer_key: Some("file-ck".into()),
            consumer_secret: Some(Secret::new("file-cs")),
            access_token: Some("file-at".into()),
            access_token_secret: Some(Secret::new("file-ats")),
            ..Default::default()
        };
        let env = env_of(&[
            ("TWITTER_CONSUMER_KEY", "env-ck"),
            ("TWITTER_ACCESS_TOKEN", ""),
        ]);
        let c = resolve_credentials(&env, Some(&file), None).unwrap();
        assert_eq!(c.consumer_key, "env-ck");
        assert_eq!(c.consumer_secret.expose(), "file-cs");
        assert_eq!(
            c.access_token, "file-at",
            "an empty variable counts as unset"
        );
    }

    #[test]
    fn missing_credentials_are_named() {
        let env = env_of(&[
            ("TWITTER_CONSUMER_KEY", "ck"),
            ("TWITTER_ACCESS_TOKEN", "at"),
        ]);
        let err = resolve_credentials(&env, None, Some(Path::new("/c.toml"))).unwrap_err();
        assert_eq!(err.exit_code(), crate::error::EXIT_CONFIG);
        assert_eq!(
            err.to_string(),
            "missing credentials: set TWITTER_CONSUMER_SECRET, TWITTER_ACCESS_TOKEN_SECRET in the \
             environment, or consumer_secret, access_token_secret in /c.toml"
        );
    }
}

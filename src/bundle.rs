//! Builds the Auto Deploy script bundle: a gzip tar with exactly one member, the POSIX sh
//! script `bundle/esxi-tweet-boot.sh` with its settings filled in and a payload appended (the
//! agent's config, the optional CA, the static binary).
//!
//! One member, because ESXi's runner executes every member with no arguments: a config file
//! or a bare binary beside the script would be "executed" too and reported as failures. The
//! script finds its payload by byte offsets written into it here, so the host needs only
//! `tail`, `head` and `wc`, not `base64` or `tar`.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::api::ApiVersion;
use crate::config::{self, FileConfig};
use crate::error::Error;

/// The member's name inside the bundle (and on the host, under
/// `/etc/rc.local.d/autodeploy/scripts/`).
pub const MEMBER_NAME: &str = "esxi-tweet-boot.sh";

/// The boot message when the config has none.
pub const DEFAULT_MESSAGE: &str = "{hostname} is up: {version}, vmk0 {ip}";

/// Placeholders the host fills into the message.
pub const PLACEHOLDERS: [&str; 5] = ["{hostname}", "{version}", "{ip}", "{uptime}", "{time}"];

const TEMPLATE: &str = include_str!("../bundle/esxi-tweet-boot.sh");

/// The `[boot]` table of the config.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BootTable {
    message: Option<String>,
    deadline: Option<String>,
    manage_firewall: Option<bool>,
    allow_duplicate: Option<bool>,
}

/// How the host announces its boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSettings {
    /// Message template with `{hostname}`, `{version}`, `{ip}`, `{uptime}`, `{time}`.
    pub message: String,
    /// How long the host keeps trying.
    pub deadline: Duration,
    /// Enable the `httpClient` firewall ruleset if it is off, and restore it afterwards.
    pub manage_firewall: bool,
    /// A duplicate-content rejection counts as success.
    pub allow_duplicate: bool,
}

impl BootSettings {
    fn from_config(config: &FileConfig, path: &Path) -> Result<Self, Error> {
        let shown = path.display();
        let table: BootTable = match &config.boot {
            Some(t) => t.clone().try_into().map_err(|e: toml::de::Error| {
                Error::Config(format!("[boot] in {shown}: {}", e.message()))
            })?,
            None => BootTable::default(),
        };
        let message = table.message.unwrap_or_else(|| DEFAULT_MESSAGE.to_string());
        if let Some(unknown) = unknown_placeholder(&message) {
            return Err(Error::Config(format!(
                "[boot] message in {shown} uses {unknown}; the placeholders are {}",
                PLACEHOLDERS.join(" ")
            )));
        }
        let deadline = match table.deadline {
            Some(d) => crate::cli::parse_duration(&d)
                .map_err(|e| Error::Config(format!("[boot] deadline {d:?} in {shown}: {e}")))?,
            None => Duration::from_secs(600),
        };
        Ok(Self {
            message,
            deadline: deadline.max(Duration::from_secs(1)),
            manage_firewall: table.manage_firewall.unwrap_or(true),
            allow_duplicate: table.allow_duplicate.unwrap_or(true),
        })
    }
}

fn unknown_placeholder(message: &str) -> Option<String> {
    let mut rest = message;
    while let Some(start) = rest.find('{') {
        let after = &rest[start..];
        let end = after.find('}')?;
        let candidate = &after[..=end];
        let is_word = candidate[1..end]
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_');
        if is_word && !PLACEHOLDERS.contains(&candidate) {
            return Some(candidate.to_string());
        }
        rest = &after[1..];
    }
    None
}

/// Builds the bundle (`.tgz` bytes) from the config at `config_path` and the agent `binary`.
pub fn build(config_path: &Path, binary: &[u8]) -> Result<Vec<u8>, Error> {
    let file = config::load_file(config_path, true)?.unwrap_or_default();
    // A host has no environment of ours: everything must be in the file.
    let credentials = config::resolve_credentials(&|_| None, Some(&file), Some(config_path))?;
    let boot = BootSettings::from_config(&file, config_path)?;
    let ca = match &file.ca_file {
        Some(path) => {
            let pem = std::fs::read(path).map_err(|e| {
                Error::Config(format!("cannot read ca_file {}: {e}", path.display()))
            })?;
            if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
                return Err(Error::Config(format!(
                    "ca_file {} holds no PEM certificate",
                    path.display()
                )));
            }
            pem
        }
        None => Vec::new(),
    };
    let mut agent_config = toml::Table::new();
    let mut set = |key: &str, value: &str| {
        agent_config.insert(key.to_string(), toml::Value::String(value.to_string()));
    };
    set("consumer_key", &credentials.consumer_key);
    set("consumer_secret", credentials.consumer_secret.expose());
    set("access_token", &credentials.access_token);
    set(
        "access_token_secret",
        credentials.access_token_secret.expose(),
    );
    if let Some(base) = &file.api_base {
        set("api_base", base);
    }
    if let Some(api) = file.api {
        set(
            "api",
            match api {
                ApiVersion::V2 => "v2",
                ApiVersion::V1_1 => "v1.1",
            },
        );
    }
    if let Some(proxy) = &file.proxy {
        set("proxy", proxy);
    }
    let agent_config = toml::to_string(&agent_config)
        .map_err(|e| Error::Internal(format!("cannot write the agent config: {e}")))?;

    let script = render_script(&boot, agent_config.len(), ca.len(), binary.len());
    let mut member = script.into_bytes();
    member.extend_from_slice(agent_config.as_bytes());
    member.extend_from_slice(&ca);
    member.extend_from_slice(binary);
    tgz(&member).map_err(|e| Error::Internal(format!("cannot write the bundle: {e}")))
}

/// Fills in the template. The header size is part of the header, so it is iterated until the
/// number of its digits stops changing.
fn render_script(
    boot: &BootSettings,
    config_size: usize,
    ca_size: usize,
    binary_size: usize,
) -> String {
    let fill = |header_size: usize| {
        TEMPLATE
            .replace("@MESSAGE@", &shell_quote(&boot.message))
            .replace("@DEADLINE_SECS@", &boot.deadline.as_secs().to_string())
            .replace("@MANAGE_FIREWALL@", &boot.manage_firewall.to_string())
            .replace("@ALLOW_DUPLICATE@", &boot.allow_duplicate.to_string())
            .replace("@CONFIG_SIZE@", &config_size.to_string())
            .replace("@CA_SIZE@", &ca_size.to_string())
            .replace("@BINARY_SIZE@", &binary_size.to_string())
            .replace("@HEADER_SIZE@", &header_size.to_string())
    };
    let mut size = 0;
    loop {
        let script = fill(size);
        if script.len() == size {
            return script;
        }
        size = script.len();
    }
}

/// Single-quotes `s` for sh: `'` becomes `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn tgz(member: &[u8]) -> std::io::Result<Vec<u8>> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(member.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    );
    tar.append_data(&mut header, MEMBER_NAME, member)?;
    let mut gz = tar.into_inner()?;
    gz.flush()?;
    gz.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_size_is_exact() {
        let boot = BootSettings {
            message: "it's {hostname}".into(),
            deadline: Duration::from_secs(600),
            manage_firewall: true,
            allow_duplicate: true,
        };
        let script = render_script(&boot, 10, 0, 2_000_000);
        let declared: usize = script
            .lines()
            .find_map(|l| l.strip_prefix("HEADER_SIZE="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, script.len());
        assert!(script.contains(r"MESSAGE='it'\''s {hostname}'"));
        assert!(!script.contains('@'), "a placeholder was left");
    }

    #[test]
    fn placeholders_are_checked() {
        assert_eq!(unknown_placeholder(DEFAULT_MESSAGE), None);
        assert_eq!(
            unknown_placeholder("{hostname} {hostnmae}"),
            Some("{hostnmae}".into())
        );
        assert_eq!(unknown_placeholder("json {\"a\": 1} ok"), None);
    }
}

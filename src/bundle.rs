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
use crate::twitter_text::{MAX_WEIGHTED_LENGTH, weighted_length};

/// The member's name inside the bundle (and on the host, under
/// `/etc/rc.local.d/autodeploy/scripts/`).
pub const MEMBER_NAME: &str = "esxi-tweet-boot.sh";

/// The boot message when the config has none.
pub const DEFAULT_MESSAGE: &str = "{hostname} is up: {version}, vmk0 {ip}";

/// Placeholders the host fills into the message.
pub const PLACEHOLDERS: [&str; 5] = ["{hostname}", "{version}", "{ip}", "{uptime}", "{time}"];

const TEMPLATE: &str = include_str!("../bundle/esxi-tweet-boot.sh");

/// A shorter deadline fails on every host: the network is rarely up that soon after rc.local.
const MIN_DEADLINE: Duration = Duration::from_secs(10);

/// The tar member's modification time: fixed, so the same inputs give the same bytes.
const MTIME: u64 = 0;

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
        // What X refuses in any post would be refused on every host.
        if message.trim().is_empty() {
            return Err(Error::Config(format!(
                "[boot] message in {shown} is empty: X refuses an empty post; write one, or remove the line for the default"
            )));
        }
        if let Some(c) = message
            .chars()
            .find(|&c| crate::twitter_text::is_invalid_char(c))
        {
            return Err(Error::Config(format!(
                "[boot] message in {shown} holds U+{:04X}, which X refuses in any post: remove it",
                u32::from(c)
            )));
        }
        if let Some(unknown) = unknown_placeholder(&message) {
            return Err(Error::Config(format!(
                "[boot] message in {shown} uses {unknown}; the placeholders are {}",
                PLACEHOLDERS.join(" ")
            )));
        }
        // The fixed part of the message alone must fit: the host cannot shorten it.
        let fixed = PLACEHOLDERS
            .iter()
            .fold(message.clone(), |m, p| m.replace(p, ""));
        let fixed_length = weighted_length(&fixed);
        if fixed_length > MAX_WEIGHTED_LENGTH {
            return Err(Error::Config(format!(
                "[boot] message in {shown} is {fixed_length}/{MAX_WEIGHTED_LENGTH} weighted characters without its placeholders: X would refuse it on every host; shorten it"
            )));
        }
        let deadline = match table.deadline {
            Some(d) => crate::units::parse_duration(&d)
                .map_err(|e| Error::Config(format!("[boot] deadline {d:?} in {shown}: {e}")))?,
            None => Duration::from_secs(600),
        };
        if deadline < MIN_DEADLINE {
            return Err(Error::Config(format!(
                "[boot] deadline in {shown} is under 10s: a booting host needs longer for its network; try 10m"
            )));
        }
        Ok(Self {
            message,
            deadline,
            manage_firewall: table.manage_firewall.unwrap_or(true),
            allow_duplicate: table.allow_duplicate.unwrap_or(true),
        })
    }
}

/// The values `bundle/config.example.toml` ships with: a bundle built from them would be
/// refused (401) on every host that boots.
const EXAMPLE_CREDENTIALS: [&str; 4] = [
    "your-api-key",
    "your-api-key-secret",
    "1234567890-your-access-token",
    "your-access-token-secret",
];

/// Refuses credentials still holding the example's placeholders. Only key names are said.
fn refuse_placeholders(credentials: &crate::Credentials, path: &Path) -> Result<(), Error> {
    let values = crate::credentials::by_key(
        (&credentials.consumer_key, &credentials.consumer_secret),
        (&credentials.access_token, &credentials.access_token_secret),
    );
    for (key, value) in values {
        if EXAMPLE_CREDENTIALS.contains(&value) || value.to_ascii_lowercase().contains("your-") {
            return Err(Error::Config(format!(
                "{key} in {} is still the example's placeholder: put the app's real keys there (`esxi-tweet authorize --config {}` writes the access token)",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
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
    check_binary(binary)?;
    build_with(config_path, binary)
}

/// Builds a bundle without the agent, for hosts whose image profile has the esxi-tweet VIB
/// (ESXi 8 and 9): it runs `/opt/esxi-tweet/bin/esxi-tweet`, and logs one line if that is
/// missing.
pub fn build_config_only(config_path: &Path) -> Result<Vec<u8>, Error> {
    build_with(config_path, &[])
}

fn build_with(config_path: &Path, binary: &[u8]) -> Result<Vec<u8>, Error> {
    let file = config::load_file(config_path, true)?.unwrap_or_default();
    // A host has no environment of ours: everything must be in the file.
    let credentials = config::resolve_credentials(&|_| None, Some(&file), Some(config_path))?;
    refuse_placeholders(&credentials, config_path)?;
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

    let proxy_port = match &file.proxy {
        Some(proxy) => proxy_port(proxy).ok_or_else(|| {
            Error::Config(format!(
                "proxy {:?} in {}: expected http://host:port",
                crate::api::shown_url(proxy),
                config_path.display()
            ))
        })?,
        None => String::new(),
    };
    let script = render_script(
        &boot,
        &proxy_port,
        agent_config.len(),
        ca.len(),
        binary.len(),
    );
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
    proxy_port: &str,
    config_size: usize,
    ca_size: usize,
    binary_size: usize,
) -> String {
    let fill = |header_size: usize| {
        substitute(
            TEMPLATE,
            &[
                ("MESSAGE", shell_quote(&boot.message)),
                ("DEADLINE_SECS", boot.deadline.as_secs().to_string()),
                ("MANAGE_FIREWALL", boot.manage_firewall.to_string()),
                ("ALLOW_DUPLICATE", boot.allow_duplicate.to_string()),
                ("CONFIG_SIZE", config_size.to_string()),
                ("CA_SIZE", ca_size.to_string()),
                ("BINARY_SIZE", binary_size.to_string()),
                ("PROXY_PORT", proxy_port.to_string()),
                ("HEADER_SIZE", header_size.to_string()),
            ],
        )
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

/// The TCP port a proxy URL connects to (scheme default if none), as digits.
/// `template` with each `@NAME@` of `values` replaced, in one pass: a value that itself holds
/// `@MESSAGE@` (a boot message may) stays as written.
fn substitute(template: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find('@') {
        out.push_str(&rest[..start]);
        let after = &rest[start + 1..];
        let known = after.find('@').and_then(|end| {
            let name = &after[..end];
            values
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, value)| (value, end))
        });
        match known {
            Some((value, end)) => {
                out.push_str(value);
                rest = &after[end + 1..];
            }
            None => {
                out.push('@');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn proxy_port(proxy: &str) -> Option<String> {
    let (scheme, rest) = proxy.split_once("://").unwrap_or(("http", proxy));
    let authority = rest.split(['/', '?', '#']).next()?;
    let host_port = authority.rsplit('@').next()?;
    let port = match host_port.strip_prefix('[') {
        Some(v6) => v6.split_once(']')?.1.strip_prefix(':').unwrap_or(""),
        None => host_port.split_once(':').map_or("", |(_, p)| p),
    };
    if port.is_empty() {
        return match scheme.to_ascii_lowercase().as_str() {
            "http" => Some("80".into()),
            "https" => Some("443".into()),
            _ => None,
        };
    }
    port.parse::<u16>().ok().map(|p| p.to_string())
}

/// Refuses a binary that cannot run on every ESXi host: it must be an x86-64 ELF executable
/// (type EXEC, not PIE) with no program interpreter, i.e. static.
pub fn check_binary(binary: &[u8]) -> Result<(), Error> {
    let refuse = |why: &str| {
        Err(Error::Usage(format!(
            "--binary is {why}: ESXi needs the static x86-64 build from `make` (dist/esxi-tweet)"
        )))
    };
    // Offsets come from the file: every range is checked, never assumed.
    let bytes = |i: usize, n: usize| binary.get(i..i.checked_add(n)?);
    let u16_at = |i: usize| bytes(i, 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |i: usize| bytes(i, 4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]));
    let u64_at = |i: usize| {
        bytes(i, 8)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_le_bytes)
    };
    if binary.get(..6) != Some(b"\x7fELF\x02\x01") {
        return refuse("not a 64-bit little-endian ELF file");
    }
    if u16_at(18) != Some(62) {
        return refuse("not built for x86-64");
    }
    if u16_at(16) != Some(2) {
        return refuse("not a fixed-address executable (a PIE or a library)");
    }
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return refuse("a truncated ELF file");
    };
    for i in 0..usize::from(phnum) {
        let at = usize::try_from(phoff)
            .ok()
            .and_then(|o| o.checked_add(i.checked_mul(usize::from(phentsize))?));
        match at.and_then(u32_at) {
            Some(3) => return refuse("dynamically linked (it names a program interpreter)"),
            Some(_) => {}
            None => return refuse("a truncated ELF file"),
        }
    }
    Ok(())
}

/// Single-quotes `s` for sh: `'` becomes `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn tgz(member: &[u8]) -> std::io::Result<Vec<u8>> {
    // No name and mtime 0 in the gzip header: reproducible bytes.
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    let mut tar = tar::Builder::new(gz);
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(member.len() as u64);
    header.set_mode(0o755);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(MTIME);
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
        let script = render_script(&boot, "3128", 10, 0, 2_000_000);
        let declared: usize = script
            .lines()
            .find_map(|l| l.strip_prefix("HEADER_SIZE="))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(declared, script.len());
        assert!(script.contains(r"MESSAGE='it'\''s {hostname}'"));
        let left = script
            .split('@')
            .skip(1)
            .any(|after| after.starts_with(|c: char| c.is_ascii_uppercase()));
        assert!(!left, "a placeholder was left");
    }

    #[test]
    fn substitution_is_one_pass() {
        let values = [("A", "@B@ and @A@".to_string()), ("B", "b".to_string())];
        assert_eq!(
            substitute("x @A@ y @B@ @C@ z@", &values),
            "x @B@ and @A@ y b @C@ z@"
        );
    }

    #[test]
    fn proxy_ports() {
        assert_eq!(proxy_port("http://proxy.lab:3128").as_deref(), Some("3128"));
        assert_eq!(proxy_port("http://proxy.lab").as_deref(), Some("80"));
        assert_eq!(proxy_port("https://u:p@proxy.lab/").as_deref(), Some("443"));
        assert_eq!(proxy_port("http://[::1]:8080").as_deref(), Some("8080"));
        assert_eq!(proxy_port("http://proxy:port"), None);
    }

    #[test]
    fn only_static_x86_64_executables_are_shipped() {
        let mut elf = vec![0u8; 64 + 56];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[16] = 2;
        elf[18] = 62;
        elf[32] = 64;
        elf[54] = 56;
        elf[56] = 1;
        elf[64] = 1; // PT_LOAD
        assert!(check_binary(&elf).is_ok());
        let mut dynamic = elf.clone();
        dynamic[64] = 3; // PT_INTERP
        assert!(check_binary(&dynamic).is_err());
        let mut pie = elf.clone();
        pie[16] = 3;
        assert!(check_binary(&pie).is_err());
        let mut arm = elf.clone();
        arm[18] = 183;
        assert!(check_binary(&arm).is_err());
        assert!(check_binary(b"#!/bin/sh\n").is_err());
        assert!(check_binary(&elf[..40]).is_err());
        let mut far = elf.clone();
        far[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(check_binary(&far).is_err());
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

//! The agent as an ESXi VIB: the package format ESXi 8 and 9 require for any binary they run
//! (execInstalledOnly), written without VMware tools, byte for byte reproducible.
//!
//! A `.vib` is an `ar` archive of `descriptor.xml`, an empty `sig.pkcs7` (unsigned: the
//! community acceptance level) and one `tgz` payload named after the VIB (as ESXi 8's own
//! writer names it) holding `opt/esxi-tweet/bin/esxi-tweet`, its documentation and,
//! optionally, a firewall ruleset. The descriptor is what ESXi 8.0U3's esximage writes: VMware's
//! element order, the software platforms it is for (ESXi 8 and 9), the release date with its
//! UTC offset, the payload's gunzipped size and the three payload checksums ESXi 8 demands.
//! `../shared/reference/esxi-vib.md` has the facts; [`crate::depot`] wraps the VIB in an
//! offline depot for Image Builder.

use std::io::Write as _;

use quick_xml::Writer;
use quick_xml::events::BytesText;
use sha1::Sha1;
use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// The VIB's name, as `Add-EsxSoftwarePackage -SoftwarePackage` takes it.
pub const NAME: &str = "esxi-tweet";
/// The vendor (first part of the VIB id).
pub const VENDOR: &str = "ESXiTweet";
/// Where the agent is installed on the host.
pub const INSTALLED_PATH: &str = "opt/esxi-tweet/bin/esxi-tweet";
/// Where the optional firewall ruleset is installed.
pub const FIREWALL_PATH: &str = "etc/vmware/firewall/esxi-tweet.xml";
/// Where the VIB's documentation is installed (the bulletin's `kbUrl` by default).
pub const DOC_PATH: &str = "opt/esxi-tweet/doc/esxi-tweet-vib.md";
/// The payload's member name: the VIB's, as ESXi 8 names it (a `payload1` member is what the
/// reported live-install failures on 8.0U2 name).
pub const PAYLOAD: &str = "esxi-tweet.tgz";
/// The ESXi releases the VIB is for, as `softwarePlatform` version patterns.
pub const PLATFORMS: [&str; 2] = ["8.*", "9.*"];
/// The documentation installed with the VIB: what it is and how to use it.
const DOC: &str = include_str!("../docs/vib-installed.md");

/// What goes into a VIB.
#[derive(Debug, Clone)]
pub struct VibInput<'a> {
    /// The static agent.
    pub binary: &'a [u8],
    /// Package version, `X.Y.Z` from Cargo; the VIB version is `X.Y.Z-1`.
    pub version: &'a str,
    /// Release date, Unix seconds (e.g. the last commit's), for reproducible output.
    pub release_date: u64,
    /// Outbound TCP port to open with a firewall ruleset of our own (a proxy not on 80/443).
    pub firewall_port: Option<u16>,
    /// Where the documentation is (the bulletin's `kbUrl`); `None`: the copy the VIB installs.
    pub kb_url: Option<&'a str>,
}

/// A built VIB and what the depot needs to know of it.
#[derive(Debug, Clone)]
pub struct Vib {
    /// The `.vib` file.
    pub bytes: Vec<u8>,
    /// `descriptor.xml` as in the VIB.
    pub descriptor: String,
    /// The VIB id, `VENDOR_bootbank_NAME_VERSION`.
    pub id: String,
    /// The VIB version, `X.Y.Z-1`.
    pub version: String,
    /// `YYYY-MM-DDThh:mm:ss+00:00`.
    pub release_date: String,
    /// The bulletin's `kbUrl`.
    pub kb_url: String,
    input_firewall: Option<u16>,
    payload: PayloadFacts,
}

#[derive(Debug, Clone)]
struct PayloadFacts {
    size: usize,
    uncompressed_size: usize,
    gz_sha256: String,
    tar_sha256: String,
    tar_sha1: String,
}

/// Builds the VIB.
pub fn build(input: &VibInput<'_>) -> Result<Vib, Error> {
    let version = vib_version(input.version)?;
    let release_date = iso_date(input.release_date);
    let (tar, gz) = payload(input).map_err(internal)?;
    let facts = PayloadFacts {
        size: gz.len(),
        uncompressed_size: tar.len(),
        gz_sha256: hex(&Sha256::digest(&gz)),
        tar_sha256: hex(&Sha256::digest(&tar)),
        tar_sha1: hex(&Sha1::digest(&tar)),
    };
    let mut vib = Vib {
        bytes: Vec::new(),
        descriptor: String::new(),
        id: format!("{VENDOR}_bootbank_{NAME}_{version}"),
        version,
        release_date,
        kb_url: input
            .kb_url
            .map_or_else(|| format!("file:///{DOC_PATH}"), str::to_string),
        input_firewall: input.firewall_port,
        payload: facts,
    };
    vib.descriptor = vib.descriptor_xml(None)?;
    vib.bytes = ar(&[
        ("descriptor.xml", vib.descriptor.as_bytes()),
        ("sig.pkcs7", b""),
        (PAYLOAD, &gz),
    ]);
    Ok(vib)
}

/// Where a VIB sits in a depot, for its metadata copy.
pub struct DepotPlace<'a> {
    /// `vib20/<name>/<id>.vib`.
    pub relative_path: &'a str,
    /// Size of the `.vib`.
    pub packed_size: usize,
    /// sha-256 of the `.vib`.
    pub sha256: &'a str,
}

impl Vib {
    /// The files the payload installs, as `file-list` names them.
    pub fn files(&self) -> Vec<&'static str> {
        let mut files = vec![INSTALLED_PATH, DOC_PATH];
        if self.input_firewall.is_some() {
            files.push(FIREWALL_PATH);
        }
        files
    }

    /// The descriptor; with `place`, the depot's copy (`relative-path`, `packed-size` and
    /// the `.vib`'s checksum after `software-tags`, as VMware's depots have it).
    pub fn descriptor_xml(&self, place: Option<&DepotPlace<'_>>) -> Result<String, Error> {
        let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
        let text = |w: &mut Writer<Vec<u8>>, name: &str, value: &str| {
            w.create_element(name)
                .write_text_content(BytesText::new(value))
                .map(|_| ())
        };
        w.create_element("vib")
            .with_attribute(("version", "5.0"))
            .write_inner_content(|w| {
                text(w, "type", "bootbank")?;
                text(w, "name", NAME)?;
                text(w, "version", &self.version)?;
                text(w, "vendor", VENDOR)?;
                text(w, "summary", "esxi-tweet: announce this host on X")?;
                text(
                    w,
                    "description",
                    "Static agent that posts to X with OAuth 1.0a; the Auto Deploy script bundle runs it at boot.",
                )?;
                text(w, "release-date", &self.release_date)?;
                w.create_element("urls").write_empty()?;
                w.create_element("relationships").write_inner_content(|w| {
                    for name in ["depends", "conflicts", "replaces", "provides", "compatibleWith"] {
                        w.create_element(name).write_empty()?;
                    }
                    Ok(())
                })?;
                w.create_element("software-tags").write_empty()?;
                if let Some(place) = place {
                    text(w, "relative-path", place.relative_path)?;
                    text(w, "packed-size", &place.packed_size.to_string())?;
                    w.create_element("checksum")
                        .with_attribute(("checksum-type", "sha-256"))
                        .write_text_content(BytesText::new(place.sha256))?;
                }
                w.create_element("system-requires").write_inner_content(|w| {
                    text(w, "maintenance-mode", "false").map_err(std::io::Error::other)?;
                    for version in PLATFORMS {
                        software_platform(w, version)?;
                    }
                    Ok(())
                })?;
                w.create_element("file-list").write_inner_content(|w| {
                    for file in self.files() {
                        text(w, "file", file).map_err(std::io::Error::other)?;
                    }
                    Ok(())
                })?;
                text(w, "acceptance-level", "community")?;
                text(w, "live-install-allowed", "true")?;
                text(w, "live-remove-allowed", "true")?;
                text(w, "cimom-restart", "false")?;
                text(w, "stateless-ready", "true")?;
                text(w, "overlay", "false")?;
                let p = &self.payload;
                w.create_element("payloads").write_inner_content(|w| {
                    w.create_element("payload")
                        .with_attributes([
                            ("name", PAYLOAD),
                            ("type", "tgz"),
                            ("size", p.size.to_string().as_str()),
                            (
                                "uncompressed-size",
                                p.uncompressed_size.to_string().as_str(),
                            ),
                        ])
                        .write_inner_content(|w| {
                            // VMware's order; the unqualified sha-256 is the one installers
                            // verify (one without verify-process must be there).
                            w.create_element("checksum")
                                .with_attributes([
                                    ("checksum-type", "sha-256"),
                                    ("verify-process", "gunzip"),
                                ])
                                .write_text_content(BytesText::new(&p.tar_sha256))?;
                            w.create_element("checksum")
                                .with_attribute(("checksum-type", "sha-256"))
                                .write_text_content(BytesText::new(&p.gz_sha256))?;
                            w.create_element("checksum")
                                .with_attributes([
                                    ("checksum-type", "sha-1"),
                                    ("verify-process", "gunzip"),
                                ])
                                .write_text_content(BytesText::new(&p.tar_sha1))?;
                            Ok(())
                        })?;
                    Ok(())
                })?;
                Ok(())
            })
            .map_err(|e| internal(std::io::Error::other(e)))?;
        String::from_utf8(w.into_inner()).map_err(|e| internal(std::io::Error::other(e)))
    }
}

/// `<softwarePlatform version=... locale="" productLineID="embeddedEsx"/>`: which ESXi
/// releases a VIB or bulletin is for (Image Builder and vLCM filter by it).
pub fn software_platform<W: std::io::Write>(
    w: &mut Writer<W>,
    version: &str,
) -> std::io::Result<()> {
    w.create_element("softwarePlatform")
        .with_attributes([
            ("version", version),
            ("locale", ""),
            ("productLineID", "embeddedEsx"),
        ])
        .write_empty()?;
    Ok(())
}

fn internal(e: std::io::Error) -> Error {
    Error::Internal(format!("cannot write the VIB: {e}"))
}

/// `X.Y.Z` becomes `X.Y.Z-1`: ESXi versions have at most one dash.
fn vib_version(version: &str) -> Result<String, Error> {
    let ok = !version.is_empty()
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '.');
    if !ok {
        return Err(Error::Usage(format!(
            "version {version:?}: expected digits and dots, such as 0.1.0"
        )));
    }
    Ok(format!("{version}-1"))
}

/// `YYYY-MM-DDThh:mm:ss+00:00` of Unix seconds: UTC, saying so, as ESXi 8 writes dates.
pub fn iso_date(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}+00:00",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// The payload as a tar (for the gunzip checksums) and its gzip (the member).
fn payload(input: &VibInput<'_>) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let mut tar = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: Option<&[u8]>| {
        let mut header = tar::Header::new_ustar();
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(input.release_date);
        header.set_mode(mode);
        match data {
            Some(data) => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_size(data.len() as u64);
                tar.append_data(&mut header, path, data)
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
                tar.append_data(&mut header, path, std::io::empty())
            }
        }
    };
    for dir in ["opt/", "opt/esxi-tweet/", "opt/esxi-tweet/bin/"] {
        add(dir, 0o755, None)?;
    }
    add(INSTALLED_PATH, 0o755, Some(input.binary))?;
    add("opt/esxi-tweet/doc/", 0o755, None)?;
    add(DOC_PATH, 0o444, Some(DOC.as_bytes()))?;
    if let Some(port) = input.firewall_port {
        for dir in ["etc/", "etc/vmware/", "etc/vmware/firewall/"] {
            add(dir, 0o755, None)?;
        }
        add(
            FIREWALL_PATH,
            0o444,
            Some(firewall_ruleset(port).as_bytes()),
        )?;
    }
    let tar = tar.into_inner()?;
    let mut gz = flate2::GzBuilder::new()
        .mtime(0)
        .write(Vec::new(), flate2::Compression::best());
    gz.write_all(&tar)?;
    Ok((tar, gz.finish()?))
}

/// A ruleset that lets the agent reach a proxy on `port` (httpClient opens 80 and 443 only).
pub fn firewall_ruleset(port: u16) -> String {
    format!(
        "<ConfigRoot>\n  <service id=\"0000\">\n    <id>esxi-tweet</id>\n    <rule id=\"0000\">\n      <direction>outbound</direction>\n      <protocol>tcp</protocol>\n      <porttype>dst</porttype>\n      <port>{port}</port>\n    </rule>\n    <enabled>true</enabled>\n    <required>false</required>\n  </service>\n</ConfigRoot>\n"
    )
}

/// A System V / GNU `ar` archive with short member names, mtime 0, owner 0.
pub fn ar(members: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = b"!<arch>\n".to_vec();
    for (name, data) in members {
        let header = format!(
            "{:<16}{:<12}{:<6}{:<6}{:<8}{:<10}`\n",
            format!("{name}/"),
            0,
            0,
            0,
            "100644",
            data.len()
        );
        debug_assert_eq!(header.len(), 60);
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        if data.len() % 2 == 1 {
            out.push(b'\n');
        }
    }
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| {
            [
                HEX[usize::from(b >> 4)] as char,
                HEX[usize::from(b & 0xf)] as char,
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_iso_8601() {
        assert_eq!(iso_date(0), "1970-01-01T00:00:00+00:00");
        assert_eq!(iso_date(951_782_400), "2000-02-29T00:00:00+00:00");
        assert_eq!(iso_date(1_796_000_000), "2026-11-30T00:53:20+00:00");
    }

    #[test]
    fn versions_have_one_dash() {
        assert_eq!(vib_version("0.1.0").unwrap(), "0.1.0-1");
        assert!(vib_version("0.1.0-beta").is_err());
        assert!(vib_version("").is_err());
    }

    #[test]
    fn ar_headers_are_sixty_bytes_and_members_even() {
        let a = ar(&[("a", b"x"), ("bb", b"yz")]);
        assert!(a.starts_with(
            b"!<arch>\na/              0           0     0     100644  1         `\nx\n"
        ));
        assert_eq!(a.len(), 8 + 60 + 2 + 60 + 2);
    }
}

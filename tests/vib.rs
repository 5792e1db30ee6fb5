//! The VIB and the offline depot read back as ESXi's image library would, by readers of our
//! own (and binutils' `ar`), not by the writer: member order, descriptor fields in VMware's
//! order, sizes and all three checksums recomputed, the file list against the payload, the
//! payload's binary against `dist/esxi-tweet`, and every reference inside the depot. Then a
//! host with execInstalledOnly posts through the config-only bundle with the VIB installed.

use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use quick_xml::events::Event;
use sha2::Digest as _;

use crate::support::esxi_host::EsxiHost;
use crate::support::fake_x::{Behaviour, FakeX};
use crate::support::{CONSUMER_SECRET, binary, run, write_config};

/// An element of a parsed XML document.
#[derive(Debug, Default, Clone)]
struct Node {
    name: String,
    attrs: Vec<(String, String)>,
    text: String,
    children: Vec<Node>,
}

impl Node {
    fn child(&self, name: &str) -> &Node {
        self.children
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("<{}> has no <{name}>", self.name))
    }
    fn text_of(&self, name: &str) -> &str {
        self.child(name).text.trim()
    }
    fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

fn parse_xml(xml: &[u8]) -> Node {
    assert!(
        !xml.starts_with(b"<?xml"),
        "an XML declaration makes VMware's parser refuse the text"
    );
    let mut reader = quick_xml::Reader::from_reader(xml);
    let mut stack = vec![Node::default()];
    let mut buf = Vec::new();
    let open = |e: &quick_xml::events::BytesStart<'_>| Node {
        name: String::from_utf8(e.name().as_ref().to_vec()).unwrap(),
        attrs: e
            .attributes()
            .map(|a| {
                let a = a.unwrap();
                (
                    String::from_utf8(a.key.as_ref().to_vec()).unwrap(),
                    a.unescape_value().unwrap().into_owned(),
                )
            })
            .collect(),
        ..Default::default()
    };
    loop {
        match reader.read_event_into(&mut buf).unwrap() {
            Event::Start(e) => stack.push(open(&e)),
            Event::Empty(e) => stack.last_mut().unwrap().children.push(open(&e)),
            Event::Text(t) => stack
                .last_mut()
                .unwrap()
                .text
                .push_str(std::str::from_utf8(&t).unwrap()),
            Event::End(_) => {
                let node = stack.pop().unwrap();
                stack.last_mut().unwrap().children.push(node);
            }
            Event::Eof => break,
            _ => {}
        }
        buf.clear();
    }
    let mut root = stack.pop().unwrap();
    assert_eq!(root.children.len(), 1, "one root element");
    root.children.pop().unwrap()
}

/// Members of an `ar` archive, in order.
fn read_ar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    assert!(bytes.starts_with(b"!<arch>\n"), "not an ar archive");
    let mut at = 8;
    let mut members = Vec::new();
    while at < bytes.len() {
        let header = &bytes[at..at + 60];
        assert_eq!(&header[58..60], b"`\n", "bad member header");
        let name = std::str::from_utf8(&header[..16]).unwrap().trim_end();
        let name = name.strip_suffix('/').unwrap_or(name).to_string();
        let size: usize = std::str::from_utf8(&header[48..58])
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let data = bytes[at + 60..at + 60 + size].to_vec();
        members.push((name, data));
        at += 60 + size + size % 2;
    }
    members
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn gunzip(gz: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(gz)
        .read_to_end(&mut out)
        .map_err(|e| format!("payload does not gunzip: {e}"))?;
    Ok(out)
}

/// What ESXi checks before it installs a VIB; `Err` names the first thing wrong.
fn verify_vib(vib: &[u8]) -> Result<Node, String> {
    let members = read_ar(vib);
    let names: Vec<&str> = members.iter().map(|(n, _)| n.as_str()).collect();
    if names.len() < 3 || names[0] != "descriptor.xml" || names[1] != "sig.pkcs7" {
        return Err(format!("member order {names:?}"));
    }
    let descriptor = parse_xml(&members[0].1);
    let payloads = &descriptor.child("payloads").children;
    if payloads.len() != members.len() - 2 {
        return Err("payload members and <payload> elements differ".into());
    }
    for (payload, (name, data)) in payloads.iter().zip(&members[2..]) {
        if payload.attr("name") != Some(name.as_str()) || payload.attr("type") != Some("tgz") {
            return Err(format!("payload {name} is not described"));
        }
        if payload.attr("size") != Some(data.len().to_string().as_str()) {
            return Err(format!("size of {name}"));
        }

        let sums: Vec<&Node> = payload
            .children
            .iter()
            .filter(|c| c.name == "checksum")
            .collect();
        if sums.len() != 3 {
            return Err(format!("{} checksums", sums.len()));
        }
        // The installer's check: sha-256 of the member as stored, before unpacking it.
        let stored = hex(&sha2::Sha256::digest(data));
        if sums[1].attr("checksum-type") != Some("sha-256")
            || sums[1].attr("verify-process").is_some()
            || sums[1].text.trim() != stored
        {
            return Err(format!("checksum sha-256 of {name} does not match"));
        }
        let tar = gunzip(data)?;
        // ESXi 8's writer gives the gunzipped length too.
        if payload.attr("uncompressed-size") != Some(tar.len().to_string().as_str()) {
            return Err(format!("uncompressed-size of {name}"));
        }
        let expected = [
            ("sha-256", Some("gunzip"), hex(&sha2::Sha256::digest(&tar))),
            ("sha-256", None, stored),
            ("sha-1", Some("gunzip"), hex(&sha1::Sha1::digest(&tar))),
        ];
        for (sum, (kind, process, value)) in sums.iter().zip(&expected) {
            if sum.attr("checksum-type") != Some(*kind)
                || sum.attr("verify-process") != *process
                || sum.text.trim() != value
            {
                return Err(format!(
                    "checksum {kind} {process:?} of {name} does not match"
                ));
            }
        }
    }
    Ok(descriptor)
}

/// Regular files of the payload: path, mode, uid, gid, bytes.
fn payload_files(vib: &[u8]) -> Vec<(String, u32, u64, u64, Vec<u8>)> {
    let members = read_ar(vib);
    let tar = gunzip(&members[2].1).unwrap();
    let mut archive = tar::Archive::new(&tar[..]);
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        assert!(!path.starts_with('/') && !path.contains(".."), "{path}");
        let header = entry.header().clone();
        assert_eq!(
            (header.uid().unwrap(), header.gid().unwrap()),
            (0, 0),
            "{path}"
        );
        if header.entry_type() == tar::EntryType::Regular {
            let mut data = Vec::new();
            entry.read_to_end(&mut data).unwrap();
            files.push((
                path,
                header.mode().unwrap(),
                header.uid().unwrap(),
                header.gid().unwrap(),
                data,
            ));
        }
    }
    files
}

/// Runs `esxi-tweet-vib` into a fresh directory; returns the directory and both files.
fn make_vib(extra: &[&str]) -> (tempfile::TempDir, Vec<u8>, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_esxi-tweet-vib"))
            .arg("--binary")
            .arg(binary())
            .arg("--out-dir")
            .arg(dir.path())
            .args(["--release-date", "1795992711"])
            .args(extra),
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let version = env!("CARGO_PKG_VERSION");
    let vib = std::fs::read(dir.path().join(format!("esxi-tweet-{version}.vib"))).unwrap();
    let depot = std::fs::read(
        dir.path()
            .join(format!("esxi-tweet-{version}-offline-bundle.zip")),
    )
    .unwrap();
    (dir, vib, depot)
}

const VMWARE_ORDER: [&str; 19] = [
    "type",
    "name",
    "version",
    "vendor",
    "summary",
    "description",
    "release-date",
    "urls",
    "relationships",
    "software-tags",
    "system-requires",
    "file-list",
    "acceptance-level",
    "live-install-allowed",
    "live-remove-allowed",
    "cimom-restart",
    "stateless-ready",
    "overlay",
    "payloads",
];

/// The descriptor's `file-list`.
fn file_list(descriptor: &Node) -> Vec<&str> {
    descriptor
        .child("file-list")
        .children
        .iter()
        .map(|f| f.text.trim())
        .collect()
}

fn check_descriptor_fields(d: &Node) {
    assert_eq!(d.name, "vib");
    assert_eq!(d.attr("version"), Some("5.0"));
    assert_eq!(d.text_of("type"), "bootbank");
    assert_eq!(d.text_of("name"), "esxi-tweet");
    let version = d.text_of("version");
    assert_eq!(version, format!("{}-1", env!("CARGO_PKG_VERSION")));
    assert_eq!(version.matches('-').count(), 1);
    assert!(!d.text_of("vendor").is_empty());
    let date = d.text_of("release-date");
    assert_eq!(
        date, "2026-11-29T22:51:51+00:00",
        "release date from --release-date, with its UTC offset as ESXi 8 writes it"
    );
    let requires = d.child("system-requires");
    assert_eq!(requires.text_of("maintenance-mode"), "false");
    check_platforms(requires);
    assert_eq!(d.text_of("acceptance-level"), "community");
    assert_eq!(d.text_of("live-install-allowed"), "true");
    assert_eq!(d.text_of("live-remove-allowed"), "true");
    assert_eq!(d.text_of("stateless-ready"), "true");
    assert_eq!(d.text_of("overlay"), "false");
}

/// The ESXi releases named, as ESXi 8's writer names them (8.x and 9.x here).
fn check_platforms(parent: &Node) {
    let platforms: Vec<(Option<&str>, Option<&str>, Option<&str>)> = parent
        .children
        .iter()
        .filter(|c| c.name == "softwarePlatform")
        .map(|p| (p.attr("version"), p.attr("locale"), p.attr("productLineID")))
        .collect();
    assert_eq!(
        platforms,
        [
            (Some("8.*"), Some(""), Some("embeddedEsx")),
            (Some("9.*"), Some(""), Some("embeddedEsx"))
        ]
    );
}

#[test]
fn the_vib_reads_back_as_esxi_reads_it() {
    let (dir, vib, _) = make_vib(&[]);
    let descriptor = verify_vib(&vib).unwrap();
    let order: Vec<&str> = descriptor
        .children
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(order, VMWARE_ORDER);
    check_descriptor_fields(&descriptor);
    assert!(
        read_ar(&vib)[1].1.is_empty(),
        "unsigned: sig.pkcs7 is empty"
    );

    // binutils agrees on the members and their order.
    let listing = std::process::Command::new("ar")
        .arg("t")
        .arg(
            dir.path()
                .join(format!("esxi-tweet-{}.vib", env!("CARGO_PKG_VERSION"))),
        )
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout),
        "descriptor.xml\nsig.pkcs7\nesxi-tweet.tgz\n",
        "the payload is named after the VIB, as ESXi 8 names it"
    );

    // The file list is exactly the payload's files, on community-allowed paths.
    let files = payload_files(&vib);
    let listed = file_list(&descriptor);
    let in_payload: Vec<&str> = files.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(listed, in_payload);
    for path in &listed {
        assert!(path.starts_with("opt/") && path.len() <= 99, "{path}");
    }
    let (path, mode, _, _, data) = &files[0];
    assert_eq!(path, "opt/esxi-tweet/bin/esxi-tweet");
    assert_eq!(files[1].0, "opt/esxi-tweet/doc/esxi-tweet-vib.md");
    assert_eq!(mode & 0o7777, 0o755);
    assert!(
        *data == std::fs::read(binary()).unwrap(),
        "not the shipped agent"
    );
    let installed = dir.path().join("esxi-tweet");
    std::fs::write(&installed, data).unwrap();
    std::fs::set_permissions(&installed, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = run(
        std::process::Command::new(&installed).arg("--version"),
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("esxi-tweet "), "{out:?}");

    // Same inputs, same bytes.
    let (_, again, _) = make_vib(&[]);
    assert!(again == vib, "the VIB is not reproducible");
}

#[test]
fn one_changed_payload_byte_fails_the_checksums() {
    let (_, vib, _) = make_vib(&[]);
    let members = read_ar(&vib);
    let payload_start = 8 + 60 + members[0].1.len() + members[0].1.len() % 2 + 60 + 60;
    for offset in [100, members[2].1.len() / 2] {
        let mut tampered = vib.clone();
        tampered[payload_start + offset] ^= 0x01;
        let err = verify_vib(&tampered).map(|_| ()).unwrap_err();
        assert!(err.contains("checksum sha-256"), "{err}");
    }
    assert!(verify_vib(&vib).is_ok());
}

#[test]
fn a_firewall_ruleset_is_added_on_request() {
    let (_, vib, _) = make_vib(&["--firewall-port", "3128"]);
    let descriptor = verify_vib(&vib).unwrap();
    let files = payload_files(&vib);
    let listed = file_list(&descriptor);
    assert_eq!(
        listed,
        [
            "opt/esxi-tweet/bin/esxi-tweet",
            "opt/esxi-tweet/doc/esxi-tweet-vib.md",
            "etc/vmware/firewall/esxi-tweet.xml"
        ]
    );
    let ruleset = parse_xml(&files[2].4);
    let rule = ruleset.child("service").child("rule");
    assert_eq!(rule.text_of("direction"), "outbound");
    assert_eq!(rule.text_of("protocol"), "tcp");
    assert_eq!(rule.text_of("port"), "3128");
}

fn unzip(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
    (0..zip.len())
        .map(|i| {
            let mut file = zip.by_index(i).unwrap();
            let mut data = Vec::new();
            file.read_to_end(&mut data).unwrap();
            (file.name().to_string(), data)
        })
        .collect()
}

#[test]
fn the_offline_depot_references_agree() {
    let (dir, vib, depot) = make_vib(&[]);
    let entries = unzip(&depot);
    let index = parse_xml(&entries["index.xml"]);
    let vendor = index.child("vendor");
    assert_eq!(vendor.text_of("code").len(), 3);
    let vendor_index = parse_xml(&entries[vendor.text_of("indexfile")]);
    let metadata = vendor_index.child("metadata");
    assert_eq!(metadata.text_of("productId"), "embeddedEsx");
    assert!(metadata.children.iter().any(|c| c.name == "locale"));
    let meta = unzip(&entries[metadata.text_of("url")]);
    assert!(meta.contains_key("vmware.xml") && meta.contains_key("vendor-index.xml"));

    let vib_xmls: Vec<&String> = meta.keys().filter(|k| k.starts_with("vibs/")).collect();
    assert_eq!(vib_xmls.len(), 1);
    let vib_meta = parse_xml(&meta[vib_xmls[0]]);
    let relative = vib_meta.text_of("relative-path");
    let shipped = &entries[relative];
    assert!(*shipped == vib, "the depot's VIB is not the .vib");
    assert_eq!(vib_meta.text_of("packed-size"), vib.len().to_string());
    assert_eq!(
        vib_meta.text_of("checksum"),
        hex(&sha2::Sha256::digest(&vib))
    );
    // The metadata agrees with the VIB's own descriptor on everything ESXi compares.
    let descriptor = verify_vib(shipped).unwrap();
    for field in [
        "type",
        "name",
        "version",
        "vendor",
        "acceptance-level",
        "live-install-allowed",
        "live-remove-allowed",
        "stateless-ready",
        "overlay",
    ] {
        assert_eq!(
            vib_meta.text_of(field),
            descriptor.text_of(field),
            "{field}"
        );
    }
    let payload = |d: &Node| format!("{:?}", d.child("payloads"));
    assert_eq!(payload(&vib_meta), payload(&descriptor));
    let id = format!(
        "{}_{}_{}_{}",
        descriptor.text_of("vendor"),
        descriptor.text_of("type"),
        descriptor.text_of("name"),
        descriptor.text_of("version")
    );
    assert_eq!(relative, format!("vib20/esxi-tweet/{id}.vib"));

    let bulletins: Vec<&String> = meta
        .keys()
        .filter(|k| k.starts_with("bulletins/"))
        .collect();
    assert_eq!(bulletins.len(), 1);
    let bulletin = parse_xml(&meta[bulletins[0]]);
    assert_eq!(bulletin.child("vibList").text_of("vibID"), id);
    assert_eq!(bulletin.text_of("releaseType"), "extension");
    // VMware's Bulletin.CheckSchema: "kburl is required".
    assert_eq!(
        bulletin.text_of("kbUrl"),
        "file:///opt/esxi-tweet/doc/esxi-tweet-vib.md"
    );
    check_platforms(bulletin.child("platforms"));
    assert!(bulletin.text_of("releaseDate").ends_with("+00:00"));
    assert_eq!(
        bulletin.child("componentNameSpec").attr("name"),
        Some("esxi-tweet")
    );
    assert_eq!(
        bulletin.child("componentVersionSpec").attr("version"),
        Some(descriptor.text_of("version"))
    );
    assert!(bulletins[0].ends_with(&format!("{}.xml", bulletin.text_of("id"))));
    // Reproducible too.
    let (_, _, again) = make_vib(&[]);
    assert!(again == depot, "the depot is not reproducible");
    // A published documentation page can take the link's place.
    let (_, _, linked) = make_vib(&["--kb-url", "https://docs.example.org/esxi-tweet"]);
    let meta = unzip(&unzip(&linked)["metadata.zip"]);
    let bulletin = meta.keys().find(|k| k.starts_with("bulletins/")).unwrap();
    assert_eq!(
        parse_xml(&meta[bulletin]).text_of("kbUrl"),
        "https://docs.example.org/esxi-tweet"
    );
    drop(dir);
}

#[test]
fn an_exec_installed_only_host_posts_with_the_vib_and_a_config_only_bundle() {
    let dir = tempfile::tempdir().unwrap();
    let x = FakeX::start(dir.path(), Behaviour::default());
    let cfg = dir.path().join("c.toml");
    write_config(&cfg, CONSUMER_SECRET, &x.base_url(), &x.ca_file, "");
    let bundle_path = dir.path().join("b.tgz");
    let out = run(
        std::process::Command::new(env!("CARGO_BIN_EXE_esxi-tweet-bundle"))
            .arg("--config")
            .arg(&cfg)
            .arg("--vib")
            .arg("-o")
            .arg(&bundle_path),
        None,
    );
    assert_eq!(out.code, 0, "{out:?}");
    let tgz = std::fs::read(&bundle_path).unwrap();
    assert!(
        tgz.len() < 64 * 1024,
        "a config-only bundle carries no binary: {} bytes",
        tgz.len()
    );

    // Without the VIB: one clear line, nothing posted, success for the runner.
    let mut bare = EsxiHost::new();
    bare.exec_installed_only = true;
    let runs = bare.run_bundle(&tgz);
    assert_eq!(runs[0].code, Some(0), "{runs:?}");
    assert!(
        bare.syslog().contains("needs the esxi-tweet VIB"),
        "{}",
        bare.syslog()
    );
    assert!(bare.wait_until_idle(Duration::from_secs(30)));

    // With the VIB's payload installed into the root, as the image profile does.
    let (_, vib, _) = make_vib(&[]);
    let mut host = EsxiHost::new();
    host.exec_installed_only = true;
    for (path, mode, _, _, data) in payload_files(&vib) {
        let target = host.root().join(&path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, data).unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let runs = host.run_bundle(&tgz);
    assert_eq!(runs[0].code, Some(0), "{runs:?}");
    assert!(
        host.wait_for_log(
            "esxi-tweet: posted https://x.com/i/status/",
            Duration::from_secs(60)
        ),
        "{}",
        host.syslog()
    );
    assert!(host.wait_until_idle(Duration::from_secs(60)));
    assert_eq!(x.posted().len(), 1);
    assert!(host.files_containing(CONSUMER_SECRET).is_empty());
}

//! The offline depot (offline bundle `.zip`) that PowerCLI's Image Builder and Auto Deploy
//! load: `index.xml` → `vendor-index.xml` → `metadata.zip` (the VIB's metadata, a bulletin
//! with the 7.x/8.x component name and version, `vmware.xml`) and the VIB under
//! `vib20/esxi-tweet/`. Entries are stored with fixed times, so the same VIB gives the same
//! bytes.

use std::io::Write as _;

use quick_xml::Writer;
use quick_xml::events::BytesText;
use sha2::{Digest as _, Sha256};
use zip::write::SimpleFileOptions;

use crate::error::Error;
use crate::vib::{self, DepotPlace, Vib};

/// Three-letter vendor code of the depot.
pub const VENDOR_CODE: &str = "ETW";

/// Paths inside the depot and its metadata.
pub struct Layout {
    /// The VIB inside the depot zip.
    pub vib_path: String,
    /// The VIB's metadata inside `metadata.zip`.
    pub vib_xml: String,
    /// The bulletin inside `metadata.zip`.
    pub bulletin_xml: String,
    /// The bulletin (and component) id.
    pub bulletin_id: String,
}

/// Where everything of `vib` goes.
pub fn layout(vib: &Vib) -> Layout {
    let bulletin_id = format!("{}-{}", vib::VENDOR, vib.version);
    Layout {
        vib_path: format!("vib20/{}/{}.vib", vib::NAME, vib.id),
        vib_xml: format!("vibs/{}.xml", vib.id),
        bulletin_xml: format!("bulletins/{bulletin_id}.xml"),
        bulletin_id,
    }
}

/// Builds the offline depot of `vib`.
pub fn build(vib: &Vib) -> Result<Vec<u8>, Error> {
    let layout = layout(vib);
    let sha = vib::hex(&Sha256::digest(&vib.bytes));
    let vib_xml = vib.descriptor_xml(Some(&DepotPlace {
        relative_path: &layout.vib_path,
        packed_size: vib.bytes.len(),
        sha256: &sha,
    }))?;
    let bulletin = bulletin_xml(vib, &layout).map_err(internal)?;
    let vendor_index = vendor_index_xml().map_err(internal)?;
    let vmware = vmware_xml(vib).map_err(internal)?;
    let metadata = zip_of(&[
        (layout.vib_xml.as_str(), vib_xml.as_bytes()),
        (layout.bulletin_xml.as_str(), bulletin.as_bytes()),
        ("vmware.xml", vmware.as_bytes()),
        ("vendor-index.xml", vendor_index.as_bytes()),
    ])
    .map_err(internal)?;
    let index = index_xml().map_err(internal)?;
    zip_of(&[
        ("index.xml", index.as_bytes()),
        ("vendor-index.xml", vendor_index.as_bytes()),
        ("metadata.zip", &metadata),
        (layout.vib_path.as_str(), &vib.bytes),
    ])
    .map_err(internal)
}

fn internal(e: std::io::Error) -> Error {
    Error::Internal(format!("cannot write the offline depot: {e}"))
}

type Xml = Writer<Vec<u8>>;

fn text(w: &mut Xml, name: &str, value: &str) -> std::io::Result<()> {
    w.create_element(name)
        .write_text_content(BytesText::new(value))
        .map(|_| ())
}

fn finish(w: Xml) -> std::io::Result<String> {
    String::from_utf8(w.into_inner()).map_err(std::io::Error::other)
}

fn index_xml() -> std::io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.create_element("vendorList").write_inner_content(|w| {
        w.create_element("vendor").write_inner_content(|w| {
            text(w, "name", vib::VENDOR)?;
            text(w, "code", VENDOR_CODE)?;
            text(w, "indexfile", "vendor-index.xml")?;
            text(w, "patchUrl", "")?;
            text(w, "relativePath", "")?;
            w.create_element("content").write_inner_content(|w| {
                text(w, "name", "VMware ESX")?;
                text(w, "type", "http://www.vmware.com/depotmanagement/esx")
            })?;
            Ok(())
        })?;
        Ok(())
    })?;
    finish(w)
}

fn vendor_index_xml() -> std::io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    w.create_element("metaList").write_inner_content(|w| {
        w.create_element("metadata").write_inner_content(|w| {
            text(w, "productId", "embeddedEsx")?;
            text(w, "version", "8.0.0")?;
            text(w, "locale", "")?;
            text(w, "channelName", vib::NAME)?;
            text(w, "url", "metadata.zip")
        })?;
        Ok(())
    })?;
    finish(w)
}

fn bulletin_xml(vib: &Vib, layout: &Layout) -> std::io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    write_bulletin(&mut w, vib, layout)?;
    finish(w)
}

fn write_bulletin(w: &mut Xml, vib: &Vib, layout: &Layout) -> std::io::Result<()> {
    w.create_element("bulletin").write_inner_content(|w| {
        text(w, "id", &layout.bulletin_id)?;
        text(w, "vendor", vib::VENDOR)?;
        text(w, "summary", "esxi-tweet: announce this host on X")?;
        text(w, "severity", "general")?;
        text(w, "category", "enhancement")?;
        text(w, "urgency", "moderate")?;
        text(w, "releaseType", "extension")?;
        text(
            w,
            "description",
            "The esxi-tweet agent at /opt/esxi-tweet/bin/esxi-tweet, for hosts that run only installed binaries (execInstalledOnly).",
        )?;
        // VMware's bulletin schema check refuses an empty one.
        text(w, "kbUrl", &vib.kb_url)?;
        text(w, "contact", "")?;
        text(w, "releaseDate", &vib.release_date)?;
        w.create_element("platforms").write_inner_content(|w| {
            for version in vib::PLATFORMS {
                vib::software_platform(w, version)?;
            }
            Ok(())
        })?;
        w.create_element("vibList").write_inner_content(|w| text(w, "vibID", &vib.id))?;
        w.create_element("componentNameSpec")
            .with_attributes([("name", vib::NAME), ("uiString", vib::NAME)])
            .write_empty()?;
        w.create_element("componentVersionSpec")
            .with_attributes([
                ("version", vib.version.as_str()),
                ("uiString", vib.version.as_str()),
            ])
            .write_empty()?;
        Ok(())
    })?;
    Ok(())
}

fn vmware_xml(vib: &Vib) -> std::io::Result<String> {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let layout = layout(vib);
    w.create_element("metadataResponse")
        .write_inner_content(|w| {
            text(w, "version", "3.0")?;
            text(w, "timestamp", &vib.release_date)?;
            write_bulletin(w, vib, &layout)
        })?;
    finish(w)
}

/// A zip of stored (uncompressed) entries with a fixed time: the VIB inside is gzip already.
fn zip_of(entries: &[(&str, &[u8])]) -> std::io::Result<Vec<u8>> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options = SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .last_modified_time(zip::DateTime::default())
        .unix_permissions(0o644);
    for (name, data) in entries {
        zip.start_file(*name, options)
            .map_err(std::io::Error::other)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish().map_err(std::io::Error::other)?.into_inner())
}

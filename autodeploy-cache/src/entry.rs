//! The on-disk form of one cache entry: a fixed-size prelude, the metadata as JSON, the body.
//!
//! ```text
//! ADCACHE1 <header length, 10 digits> <body length, 20 digits> <expires at, 20 digits>\n
//! {"key": ..., "status": 200, "headers": [[name, value], ...], "stored_at": ...,
//!  "request_time": ..., "vary": [[name, value], ...]}\n
//! <body>
//! ```
//!
//! The prelude has a fixed size so that the body length can be written when the fill ends
//! (the upstream may not announce it) and the expiry can be updated after a revalidation, in
//! place. While a fill runs the body length is blank, so a temp file can never pass for a
//! committed entry. The index is rebuilt from preludes and metadata alone, without reading
//! bodies. [`open_entry`] opens one for serving; [`check_file`] checks one at start.

use std::fs::File;
use std::io::Read as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Bytes of the fixed prelude.
pub const PRELUDE_LEN: u64 = 62;
/// Offset of the body-length field in the prelude.
pub const BODY_LEN_OFFSET: u64 = 20;
/// Offset of the expiry field in the prelude.
pub const EXPIRES_OFFSET: u64 = 41;
const MAGIC: &str = "ADCACHE1";
/// Largest metadata accepted when reading, against a garbage header length.
const MAX_HEADER_LEN: u64 = 1 << 20;

/// What is stored about a response besides its body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryMeta {
    /// The full cache key; compared on read.
    pub key: String,
    /// HTTP status.
    pub status: u16,
    /// End-to-end response headers, in order.
    pub headers: Vec<(String, String)>,
    /// Unix seconds when the response was received.
    pub stored_at: u64,
    /// Unix seconds when its request was sent (0 in entries of older versions: `stored_at`).
    #[serde(default)]
    pub request_time: u64,
    /// The request's values of the headers the response varies on, lower-case names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub vary: Vec<(String, String)>,
}

impl EntryMeta {
    /// When the request went out and the response came back, for its age.
    pub fn received(&self) -> crate::policy::Received {
        crate::policy::Received {
            request_time: if self.request_time == 0 {
                self.stored_at
            } else {
                self.request_time
            },
            response_time: self.stored_at,
        }
    }

    /// The stored headers as a map; a header that no longer parses is left out.
    pub fn header_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                http::HeaderValue::from_str(value),
            ) {
                map.append(n, v);
            }
        }
        map
    }

    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The decoded prelude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prelude {
    /// Prelude plus metadata: where the body starts.
    pub header_len: u64,
    /// Body length.
    pub body_len: u64,
    /// Unix seconds after which the entry is stale.
    pub expires_at: u64,
}

/// Why an entry file cannot be used.
#[derive(Debug, PartialEq, Eq)]
pub struct Corrupt(pub &'static str);

/// The header bytes to write at the start of a fill: prelude (body length still blank) and
/// metadata.
pub fn encode_header(meta: &EntryMeta, expires_at: u64) -> Vec<u8> {
    let json = serde_json::to_vec(meta).expect("metadata serializes");
    let header_len = PRELUDE_LEN + json.len() as u64 + 1;
    let mut out = format!(
        "{MAGIC} {header_len:010} {:20} {}\n",
        "",
        number_field(expires_at)
    )
    .into_bytes();
    debug_assert_eq!(out.len() as u64, PRELUDE_LEN);
    out.extend_from_slice(&json);
    out.push(b'\n');
    out
}

/// A 20-digit field for the body length or the expiry.
pub fn number_field(n: u64) -> String {
    format!("{n:020}")
}

/// Decodes the prelude; a blank body length (an unfinished fill) is corrupt.
pub fn decode_prelude(bytes: &[u8]) -> Result<Prelude, Corrupt> {
    if bytes.len() < PRELUDE_LEN as usize {
        return Err(Corrupt("short prelude"));
    }
    let text = std::str::from_utf8(&bytes[..PRELUDE_LEN as usize])
        .map_err(|_| Corrupt("prelude not text"))?;
    let text = text
        .strip_suffix('\n')
        .ok_or(Corrupt("prelude not terminated"))?;
    let mut fields = text.split(' ');
    if fields.next() != Some(MAGIC) {
        return Err(Corrupt("bad magic"));
    }
    let mut number = |what| -> Result<u64, Corrupt> {
        let field = fields.next().ok_or(Corrupt(what))?;
        if field.is_empty() || !field.bytes().all(|b| b.is_ascii_digit()) {
            return Err(Corrupt(what));
        }
        field.parse().map_err(|_| Corrupt(what))
    };
    let header_len = number("header length")?;
    let body_len = number("body length")?;
    let expires_at = number("expiry")?;
    if !(PRELUDE_LEN + 3..=MAX_HEADER_LEN).contains(&header_len) {
        return Err(Corrupt("header length out of range"));
    }
    Ok(Prelude {
        header_len,
        body_len,
        expires_at,
    })
}

/// Decodes the metadata that follows the prelude.
pub fn decode_meta(bytes: &[u8]) -> Result<EntryMeta, Corrupt> {
    let json = bytes
        .strip_suffix(b"\n")
        .ok_or(Corrupt("metadata not terminated"))?;
    serde_json::from_slice(json).map_err(|_| Corrupt("metadata not JSON"))
}

/// A committed entry opened for reading. The open file keeps working if the entry is evicted
/// or replaced meanwhile.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The entry file.
    pub file: Arc<File>,
    /// Stored metadata.
    pub meta: Arc<EntryMeta>,
    /// Where the body starts.
    pub body_offset: u64,
    /// Body length.
    pub body_len: u64,
    /// The body, mapped from the file (`mapped`): what hits are sent from. `None` when the
    /// mapping failed (address space, a file system that cannot map): positional reads then.
    pub body: Option<bytes::Bytes>,
    /// Unix seconds after which it is stale.
    pub expires_at: u64,
    /// The stored response headers, parsed once when the entry is opened: a hit clones
    /// them instead of parsing text (the stored `Age` left out: it is computed per answer).
    pub head: Arc<http::HeaderMap>,
    /// Its age when it arrived (RFC 9111 4.2.3's corrected initial age).
    pub initial_age: u64,
}

impl Entry {
    /// Its age at `now`.
    pub fn age(&self, now: u64) -> u64 {
        let arrived = self.meta.received().response_time;
        self.initial_age.saturating_add(now.saturating_sub(arrived))
    }
}

/// The file's size and metadata if it is a whole entry (prelude, metadata and body length
/// agree).
pub fn check_file(path: &Path) -> Option<(u64, EntryMeta)> {
    let mut file = File::open(path).ok()?;
    let size = file.metadata().ok()?.len();
    let mut prelude = [0u8; PRELUDE_LEN as usize];
    file.read_exact(&mut prelude).ok()?;
    let prelude = decode_prelude(&prelude).ok()?;
    let mut meta = vec![0u8; (prelude.header_len - PRELUDE_LEN) as usize];
    file.read_exact(&mut meta).ok()?;
    let meta = decode_meta(&meta).ok()?;
    (prelude.header_len + prelude.body_len == size).then_some((size, meta))
}

/// Opens the entry file at `path` for serving: checks its prelude, metadata and size, and
/// parses its response head once.
pub fn open_entry(path: &Path) -> Result<Entry, Corrupt> {
    let file = File::open(path).map_err(|_| Corrupt("cannot open"))?;
    let size = file.metadata().map_err(|_| Corrupt("cannot stat"))?.len();
    let mut prelude = [0u8; PRELUDE_LEN as usize];
    file.read_exact_at(&mut prelude, 0)
        .map_err(|_| Corrupt("short"))?;
    let prelude = decode_prelude(&prelude)?;
    let mut meta = vec![0u8; (prelude.header_len - PRELUDE_LEN) as usize];
    file.read_exact_at(&mut meta, PRELUDE_LEN)
        .map_err(|_| Corrupt("short"))?;
    let meta = decode_meta(&meta)?;
    if prelude.header_len + prelude.body_len != size {
        return Err(Corrupt("size does not match"));
    }
    let mut head = meta.header_map();
    let received = meta.received();
    let initial_age = crate::policy::current_age(&head, received, received.response_time);
    head.remove(http::header::AGE);
    let body = crate::mapped::map(&file, size)
        .ok()
        .map(|whole| whole.slice(prelude.header_len as usize..));
    Ok(Entry {
        file: Arc::new(file),
        meta: Arc::new(meta),
        body_offset: prelude.header_len,
        body_len: prelude.body_len,
        body,
        expires_at: prelude.expires_at,
        head: Arc::new(head),
        initial_age,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> EntryMeta {
        EntryMeta {
            key: "vc:6501/vmw/rbd/tramp".into(),
            status: 200,
            headers: vec![("content-type".into(), "application/octet-stream".into())],
            stored_at: 1_700_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn round_trip_after_commit() {
        let mut header = encode_header(&meta(), 1_700_086_400);
        assert!(
            decode_prelude(&header).is_err(),
            "an unfinished fill is not an entry"
        );
        let field = number_field(12345);
        header[BODY_LEN_OFFSET as usize..BODY_LEN_OFFSET as usize + 20]
            .copy_from_slice(field.as_bytes());
        let prelude = decode_prelude(&header).unwrap();
        assert_eq!(prelude.header_len, header.len() as u64);
        assert_eq!(prelude.body_len, 12345);
        assert_eq!(prelude.expires_at, 1_700_086_400);
        assert_eq!(
            decode_meta(&header[PRELUDE_LEN as usize..]).unwrap(),
            meta()
        );
    }

    #[test]
    fn garbage_is_corrupt_not_a_panic() {
        for bytes in [
            &b""[..],
            b"ADCACHE1",
            &[0xff; 80],
            b"ADCACHE2 0000000100 00000000000000000001 00000000000000000001\n",
        ] {
            assert!(decode_prelude(bytes).is_err());
        }
        assert!(decode_meta(b"{not json}\n").is_err());
        assert!(decode_meta(b"{}").is_err());
    }
}

#[cfg(test)]
mod fuzz {
    //! Property tests standing in for a fuzzer: arbitrary bytes never panic the parsers, and
    //! every encoded header decodes to what was encoded.

    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(if std::env::var_os("SOAK").is_some() { 200_000 } else { 2000 }))]

        #[test]
        fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_prelude(&bytes);
            let _ = decode_meta(&bytes);
        }

        #[test]
        fn mutated_preludes_never_panic(at in 0usize..62, byte in any::<u8>(), body in any::<u64>()) {
            let meta = EntryMeta { key: "k".into(), status: 200, ..Default::default() };
            let mut header = encode_header(&meta, 7);
            let field = number_field(body % 10u64.pow(19));
            header[BODY_LEN_OFFSET as usize..BODY_LEN_OFFSET as usize + 20].copy_from_slice(field.as_bytes());
            header[at] = byte;
            let _ = decode_prelude(&header);
        }

        #[test]
        fn encoded_headers_round_trip(
            key in ".{0,100}",
            status in 100u16..600,
            headers in prop::collection::vec(("[a-z-]{1,20}", ".{0,40}"), 0..10),
            body_len in 0u64..(1 << 50),
            expires in 0u64..(1 << 50),
        ) {
            let meta = EntryMeta { key, status, headers, stored_at: 1, ..Default::default() };
            let mut header = encode_header(&meta, expires);
            header[BODY_LEN_OFFSET as usize..BODY_LEN_OFFSET as usize + 20]
                .copy_from_slice(number_field(body_len).as_bytes());
            let prelude = decode_prelude(&header).unwrap();
            prop_assert_eq!(prelude.header_len, header.len() as u64);
            prop_assert_eq!(prelude.body_len, body_len);
            prop_assert_eq!(prelude.expires_at, expires);
            prop_assert_eq!(decode_meta(&header[PRELUDE_LEN as usize..]).unwrap(), meta);
        }
    }
}

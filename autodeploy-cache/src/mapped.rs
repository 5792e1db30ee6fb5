//! Cache files mapped into memory, so that a response body is handed to the socket straight
//! from the page cache: hyper writes slices of the mapping, one copy (page cache to socket)
//! where reading into a buffer first made two. The only `unsafe` code of the crate.
//!
//! A shared file mapping is only as sound as the file's length: touching a mapped page past
//! the end of the file raises SIGBUS and kills the process. So a file is mapped only up to a
//! length it already has, and the proxy never shortens a file it may have mapped:
//! - a committed entry is immutable: a revalidation writes a new file and renames it over
//!   the old one, eviction and purge unlink (the mapping keeps the old inode alive, as an
//!   open descriptor does), and only the fixed-size prelude is ever rewritten in place;
//! - a fill whose length is announced gets its whole length first ([`map_fill`]: a sparse
//!   file), so the mapping covers it before the first byte arrives; readers are handed only
//!   the prefix the fill has published;
//! - files are removed at start (crash recovery) before anything is mapped.
//!
//! What the proxy cannot rule out is another process truncating a file in the cache
//! directory while it is served: the cache directory belongs to the proxy alone (as Varnish's
//! storage file belongs to Varnish, which maps it the same way).

#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;

/// The first `len` bytes of `file`, mapped read-only and shared, as bytes whose slices keep
/// the mapping alive. The file must be at least `len` bytes long and never shrink while any
/// slice lives (see the module's documentation).
pub fn map(file: &File, len: u64) -> io::Result<Bytes> {
    if len == 0 {
        // mmap refuses empty mappings.
        return Ok(Bytes::new());
    }
    let size = file.metadata()?.len();
    if size < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("cannot map {len} bytes of a {size}-byte file"),
        ));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::other("file too large to map"))?;
    // SAFETY: the mapping is read-only and covers only bytes the file has (checked just
    // above); the proxy never truncates its cache files (module documentation), so no page
    // of the mapping can fall past the end of the file while it lives. Bytes written to the
    // file later through its descriptor are seen through the mapping (one page cache), and
    // callers hand out only ranges that were written before they read them.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Gives a fill's file its announced `len` (a sparse file: no blocks until written) and maps
/// it, so that readers can follow the fill through the mapping.
pub fn map_fill(file: &File, len: u64) -> io::Result<Bytes> {
    file.set_len(len)?;
    map(file, len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt as _;

    #[test]
    fn a_mapping_shows_what_is_written_after_it_was_made() {
        let file = tempfile::tempfile().unwrap();
        let mapped = map_fill(&file, 8192).unwrap();
        assert_eq!(mapped.len(), 8192);
        assert!(
            mapped.iter().all(|&b| b == 0),
            "a sparse file reads as zeros"
        );
        file.write_all_at(b"written later", 4096).unwrap();
        assert_eq!(&mapped[4096..4109], b"written later");
        // A slice outlives the handle it came from.
        let slice = mapped.slice(4096..4103);
        drop(mapped);
        assert_eq!(&slice[..], b"written");
    }

    #[test]
    fn never_past_the_end_of_the_file() {
        let file = tempfile::tempfile().unwrap();
        file.write_all_at(b"short", 0).unwrap();
        let error = map(&file, 4096).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert_eq!(&map(&file, 5).unwrap()[..], b"short");
        assert!(map(&file, 0).unwrap().is_empty());
    }
}

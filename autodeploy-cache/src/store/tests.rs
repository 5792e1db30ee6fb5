//! Unit tests of the store: entries, corruption, eviction, reservations.

use super::*;

/// A store under `dir` with `max_size` bytes, entries inactive after an hour.
fn open_store(dir: &std::path::Path, max_size: u64) -> Store {
    Store::open(dir, max_size, Duration::from_secs(3600), Default::default()).unwrap()
}

fn fill(store: &Store, key: &CacheKey, body: &[u8]) {
    let (path, file) = store.temp_file().unwrap();
    let meta = EntryMeta {
        key: key.as_str().into(),
        status: 200,
        headers: vec![],
        stored_at: 0,
        ..Default::default()
    };
    let header = entry::encode_header(&meta, u64::MAX / 2);
    file.write_all_at(&header, 0).unwrap();
    file.write_all_at(body, header.len() as u64).unwrap();
    store.commit(key, &path, &file, body.len() as u64).unwrap();
}

#[test]
fn commit_lookup_rebuild() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 1 << 20);
    let key = CacheKey::new("vc:6501", "/a", None);
    assert!(store.lookup(&key).is_none());
    fill(&store, &key, b"hello");
    let entry = store.lookup(&key).unwrap();
    let mut body = vec![0; entry.body_len as usize];
    entry
        .file
        .read_exact_at(&mut body, entry.body_offset)
        .unwrap();
    assert_eq!(body, b"hello");
    std::fs::write(dir.path().join("tmp/stray.fill"), b"x").unwrap();
    drop(store);
    let store = open_store(dir.path(), 1 << 20);
    assert_eq!(store.len(), 1);
    assert!(store.lookup(&key).is_some());
    assert_eq!(
        std::fs::read_dir(dir.path().join("tmp")).unwrap().count(),
        0
    );
}

#[test]
fn lru_eviction_above_max_size() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 3000);
    let keys: Vec<CacheKey> = (0..3)
        .map(|i| CacheKey::new("vc", &format!("/{i}"), None))
        .collect();
    fill(&store, &keys[0], &[1; 1000]);
    fill(&store, &keys[1], &[2; 1000]);
    assert!(
        store.lookup(&keys[0]).is_some(),
        "touch 0: 1 is now least recent"
    );
    fill(&store, &keys[2], &[3; 1000]);
    assert!(store.size() <= 3000);
    assert!(store.lookup(&keys[1]).is_none());
    assert!(store.lookup(&keys[0]).is_some());
    assert!(store.lookup(&keys[2]).is_some());
}

#[test]
fn corrupt_and_foreign_files_are_misses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 1 << 20);
    let key = CacheKey::new("vc", "/x", None);
    fill(&store, &key, b"0123456789");
    let path = key.path_in(dir.path());
    let len = std::fs::metadata(&path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len - 3)
        .unwrap();
    assert!(store.lookup(&key).is_none(), "a short body is never served");
    assert!(!path.exists(), "and it is removed");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, b"garbage").unwrap();
    drop(store);
    let store = open_store(dir.path(), 1 << 20);
    assert_eq!(store.len(), 0);
    assert!(!path.exists());
}

#[test]
fn inactive_entries_are_swept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(
        dir.path(),
        1 << 20,
        Duration::from_secs(60),
        Default::default(),
    )
    .unwrap();
    let key = CacheKey::new("vc", "/old", None);
    fill(&store, &key, b"x");
    store.sweep(SystemTime::now() + Duration::from_secs(30));
    assert_eq!(store.len(), 1);
    store.sweep(SystemTime::now() + Duration::from_secs(120));
    assert_eq!(store.len(), 0);
    assert!(!key.path_in(dir.path()).exists());
}

#[test]
fn a_url_keeps_a_bounded_number_of_variants() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path(), 1 << 20);
    let primary = CacheKey::new("vc:6501", "/x", None);
    let variant = |v: &str| primary.variant(&[("accept-encoding".into(), v.into())]);
    for i in 0..crate::variants::MAX_VARIANTS {
        let key = variant(&format!("e{i}"));
        assert!(store.may_add_variant(&primary, key.hash()));
        fill(&store, &key, b"body");
        store.note_variant(&primary, vec!["accept-encoding".into()], key.hash());
    }
    let extra = variant("one too many");
    assert!(!store.may_add_variant(&primary, extra.hash()));
    assert!(
        store.may_add_variant(&primary, variant("e3").hash()),
        "a known one"
    );
    // An evicted variant no longer counts.
    store.forget(variant("e0").hash());
    assert!(store.may_add_variant(&primary, extra.hash()));
    // Invalidating the URL removes every variant.
    store.invalidate(&primary);
    assert_eq!(store.len(), 0);
    assert_eq!(store.vary_names(&primary), None);
}

//! The Makefile as a newcomer meets it: `make install` after `make`, and `make bundle`
//! without its config saying so before anything is built. (`make test` has built `dist/`.)

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;

fn make(args: &[&str]) -> std::process::Output {
    Command::new("make")
        .arg("-C")
        .arg(env!("CARGO_MANIFEST_DIR"))
        .args(args)
        .env_remove("CONFIG")
        .env_remove("VIB")
        .env_remove("MAKEFLAGS")
        .output()
        .expect("make")
}

#[test]
fn make_install_puts_both_programs_on_the_path() {
    let root = tempfile::tempdir().unwrap();
    let destdir = format!("DESTDIR={}", root.path().display());
    let out = make(&["-s", "install", &destdir, "PREFIX=/usr"]);
    assert!(out.status.success(), "{out:?}");
    for program in [
        "esxi-tweet",
        "autodeploy-cache",
        "esxi-tweet-bundle",
        "esxi-tweet-vib",
    ] {
        let path = root.path().join("usr/bin").join(program);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o755, "{program}");
        let version = Command::new(&path).arg("--version").output().unwrap();
        assert!(version.status.success(), "{program}: {version:?}");
    }
    assert!(
        root.path()
            .join("usr/share/doc/esxi-tweet/README.md")
            .exists()
    );
    let out = make(&["-s", "uninstall", &destdir, "PREFIX=/usr"]);
    assert!(out.status.success(), "{out:?}");
    assert!(!root.path().join("usr/bin/esxi-tweet").exists());
}

#[test]
fn make_bundle_without_a_config_says_so_before_building() {
    let out = make(&["bundle"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("CONFIG is not set"), "{said}");
    assert!(!said.contains("cargo build"), "it built first: {said}");
}

#[test]
fn the_readme_is_a_front_page_whose_links_resolve() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    assert!(
        readme.lines().count() <= 250,
        "the README grew past a front page"
    );
    // The two commands a newcomer types come first.
    let first_block: Vec<&str> = readme.lines().skip(3).take(2).collect();
    assert!(first_block[0].starts_with("make "), "{first_block:?}");
    assert!(first_block[1].starts_with("make test"), "{first_block:?}");
    // Every relative link of the README and the docs names a file that is there.
    let mut pages = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        pages.push(entry.unwrap().path());
    }
    for page in pages {
        let text = std::fs::read_to_string(&page).unwrap();
        for link in text.split("](").skip(1) {
            let target = link.split(')').next().unwrap().split('#').next().unwrap();
            if target.is_empty() || target.contains("://") {
                continue;
            }
            let path = page.parent().unwrap().join(target);
            assert!(path.exists(), "{}: {target} does not exist", page.display());
        }
    }
}

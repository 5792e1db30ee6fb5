//! The code's layers read bottom-up: no two modules of a crate use each other (an import
//! circle), in any of the workspace's crates.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// For each top-level module of the crate at `src`, the other top-level modules its code (not
/// its comments, not its tests) names as `crate::module`.
fn uses(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut uses: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut pending = vec![src.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let top = relative
                .iter()
                .next()
                .unwrap()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if matches!(top.as_str(), "lib" | "main" | "bin") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            for line in code.lines().filter(|l| !l.trim_start().starts_with("//")) {
                for used in line.split("crate::").skip(1) {
                    let name: String = used
                        .chars()
                        .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                        .collect();
                    if !name.is_empty() && name != top {
                        uses.entry(top.clone()).or_default().insert(name);
                    }
                }
            }
        }
    }
    uses
}

#[test]
fn no_two_modules_use_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for crate_src in ["src", "autodeploy-cache/src", "twitter-text/src"] {
        let uses = uses(&root.join(crate_src));
        let mut circles = Vec::new();
        for (module, used) in &uses {
            for other in used {
                if module < other && uses.get(other).is_some_and(|back| back.contains(module)) {
                    circles.push(format!("{module} <-> {other}"));
                }
            }
        }
        assert!(circles.is_empty(), "{crate_src}: {circles:?}");
    }
}

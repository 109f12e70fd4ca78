//! The rooms of the code, checked: no two source files of a crate import
//! each other (directly or through a circle), no production file is over
//! 1,000 lines before its tests, and `dataplane` and `signaling` never
//! depend on each other (docs/ARCHITECTURE.md is the map).
//!
//! A file's imports are the `crate::`, `super::` and `self::` paths it
//! names (in `use` items or inline), resolved to the file of the longest
//! module prefix. A module's own submodules are its to declare and
//! re-export, so edges from a file to its descendants are not counted: a
//! circle needs files that are not each other's ancestors.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CRATES: [&str; 11] = [
    "shared",
    "secure",
    "fastpath",
    "codec",
    "ng",
    "dataplane",
    "signaling",
    "loadtest",
    "observe",
    "bench",
    ".",
];

/// Production source files of a crate: `src/**/*.rs` (not `tests/`,
/// `benches/`), keyed by module path (`["table", "layout"]`).
fn modules(krate: &Path) -> BTreeMap<Vec<String>, PathBuf> {
    let mut out = BTreeMap::new();
    let src = krate.join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                let rel = p.strip_prefix(&src).unwrap();
                let mut m: Vec<String> = rel
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(m.last().map(String::as_str), Some("mod" | "lib" | "main")) {
                    m.pop();
                }
                // A binary's main.rs and a library's lib.rs both root the crate.
                out.entry(m).or_insert(p);
            }
        }
    }
    out
}

/// Lines of `text` before its first `#[cfg(test)]` item.
fn production(text: &str) -> &str {
    match text.find("\n#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    }
}

/// Module paths `file` (module `me`) names through `crate::`, `super::`
/// or `self::`, resolved to absolute module paths (not yet to files).
fn named_paths(me: &[String], is_mod_file: bool, text: &str) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let code: String = text
        .lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    // `use a::{b, c::d}` groups: expand one level, enough for this tree.
    let bytes = code.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if !code.is_char_boundary(i) {
            i += 1;
            continue;
        }
        let rest = &code[i..];
        let start = ["crate::", "super::", "self::"]
            .iter()
            .find(|p| rest.starts_with(*p))
            .filter(|_| i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
        let Some(prefix) = start else {
            i += 1;
            continue;
        };
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let path = &rest[..end];
        let mut segs: Vec<String> = path
            .split("::")
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect();
        let base: Vec<String> = match *prefix {
            "crate::" => {
                segs.remove(0);
                Vec::new()
            }
            "self::" => {
                segs.remove(0);
                if is_mod_file {
                    me.to_vec()
                } else {
                    me[..me.len().saturating_sub(1)].to_vec()
                }
            }
            _ => {
                // super:: (possibly repeated) from this module.
                let mut base = me.to_vec();
                while segs.first().map(String::as_str) == Some("super") {
                    segs.remove(0);
                    base.pop();
                }
                base
            }
        };
        let mut abs = base;
        abs.extend(segs);
        // `prefix::{a::b, c}`: each item of the group (one level deep).
        if let Some(group) = rest[end..].strip_prefix('{') {
            let mut depth = 0;
            let close = group
                .char_indices()
                .find(|&(_, ch)| {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => return true,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    false
                })
                .map_or(group.len(), |(k, _)| k);
            for item in group[..close].split(',') {
                let item = item.trim();
                let head: Vec<String> = item
                    .split("::")
                    .take_while(|s| {
                        !s.is_empty() && s.chars().all(|c| c.is_alphanumeric() || c == '_')
                    })
                    .map(str::to_string)
                    .collect();
                let mut q = abs.clone();
                q.extend(head);
                out.push(q);
            }
        } else {
            out.push(abs);
        }
        i += end.max(1);
    }
    out
}

/// The file (module path) that defines the longest prefix of `path`.
fn owner(mods: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len())
        .rev()
        .map(|n| path[..n].to_vec())
        .find(|p| mods.contains_key(p))
}

#[test]
fn no_two_files_of_a_crate_import_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut circles = Vec::new();
    for c in CRATES {
        let mods = modules(&root.join(c));
        let mut edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>> = BTreeMap::new();
        for (m, file) in &mods {
            let text = std::fs::read_to_string(file).unwrap();
            let is_mod = file
                .file_name()
                .is_some_and(|f| f == "mod.rs" || f == "lib.rs" || f == "main.rs");
            for p in named_paths(m, is_mod, production(&text)) {
                let Some(to) = owner(&mods, &p) else { continue };
                // A module's own descendants are its to declare and use.
                if to.starts_with(m) {
                    continue;
                }
                edges.entry(m.clone()).or_default().insert(to);
            }
        }
        // Depth-first search for a cycle.
        fn visit(
            n: &Vec<String>,
            edges: &BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
            state: &mut BTreeMap<Vec<String>, u8>,
            stack: &mut Vec<Vec<String>>,
            found: &mut Vec<String>,
        ) {
            state.insert(n.clone(), 1);
            stack.push(n.clone());
            for t in edges.get(n).into_iter().flatten() {
                match state.get(t).copied().unwrap_or(0) {
                    0 => visit(t, edges, state, stack, found),
                    1 => {
                        let at = stack.iter().position(|x| x == t).unwrap();
                        let names: Vec<String> = stack[at..]
                            .iter()
                            .chain([t])
                            .map(|m| {
                                if m.is_empty() {
                                    "<root>".into()
                                } else {
                                    m.join("::")
                                }
                            })
                            .collect();
                        found.push(names.join(" -> "));
                    }
                    _ => {}
                }
            }
            stack.pop();
            state.insert(n.clone(), 2);
        }
        let mut state = BTreeMap::new();
        for n in mods.keys() {
            if !state.contains_key(n) {
                let mut found = Vec::new();
                visit(n, &edges, &mut state, &mut Vec::new(), &mut found);
                circles.extend(found.into_iter().map(|f| format!("{c}: {f}")));
            }
        }
    }
    assert!(
        circles.is_empty(),
        "import circles:\n{}",
        circles.join("\n")
    );
}

#[test]
fn no_production_file_is_over_1000_lines_before_its_tests() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut long = Vec::new();
    for c in CRATES {
        for file in modules(&root.join(c)).values() {
            let text = std::fs::read_to_string(file).unwrap();
            let n = production(&text).lines().count();
            // core_tests.rs-style files are all test code.
            let test_file = file
                .file_name()
                .is_some_and(|f| f.to_string_lossy().ends_with("_tests.rs"));
            if n > 1000 && !test_file {
                long.push(format!("{} ({n} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "over 1,000 lines:\n{}", long.join("\n"));
}

#[test]
fn dataplane_and_signaling_never_depend_on_each_other() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (a, b) in [
        ("dataplane", "tern-signaling"),
        ("signaling", "tern-dataplane"),
    ] {
        let toml = std::fs::read_to_string(root.join(a).join("Cargo.toml")).unwrap();
        assert!(!toml.contains(b), "{a} depends on {b}");
    }
}

#[test]
fn the_checker_sees_a_circle() {
    // The resolution the circle test relies on, on a made-up pair.
    let me = vec!["b2bua".to_string()];
    let p = named_paths(
        &me,
        false,
        "use crate::core::{Tu, Out};\nlet x = super::relay::Full;",
    );
    let strs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        p,
        vec![
            strs(&["core", "Tu"]),
            strs(&["core", "Out"]),
            strs(&["relay", "Full"])
        ]
    );
    let mut mods = BTreeMap::new();
    mods.insert(vec![], PathBuf::from("lib.rs"));
    mods.insert(strs(&["core"]), PathBuf::from("core.rs"));
    assert_eq!(owner(&mods, &strs(&["core", "Tu"])), Some(strs(&["core"])));
    mods.insert(vec!["relay".to_string()], PathBuf::from("relay.rs"));
    assert_eq!(
        owner(&mods, &["relay".into(), "Full".into()]),
        Some(vec!["relay".to_string()])
    );
    assert_eq!(owner(&mods, &["nowhere".into()]), Some(vec![]));
}

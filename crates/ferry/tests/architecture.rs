//! The workspace's layering, checked from its sources (docs/architecture.md, "Dependencies point
//! down"): no library crate draws progress bars, the manifest reader needs no object store, and
//! inside every crate the modules' uses (`crate::module`, outside `#[cfg(test)]`) form no cycle.
//!
//! Run alone: `cargo test -p ferry --test architecture`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every crate directory under `crates/`, by name.
fn crates() -> BTreeMap<String, PathBuf> {
    std::fs::read_dir(workspace().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect()
}

/// The `[dependencies]` section of a crate's manifest (not dev- or build-dependencies).
fn dependencies(krate: &Path) -> BTreeSet<String> {
    let manifest = std::fs::read_to_string(krate.join("Cargo.toml")).unwrap();
    let mut in_dependencies = false;
    let mut names = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
        } else if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line.split(['=', '.', ' ']).next().unwrap();
            names.insert(name.to_string());
        }
    }
    names
}

#[test]
fn no_library_crate_draws_progress_bars() {
    for (name, path) in crates() {
        if name != "ferry" {
            assert!(!dependencies(&path).contains("indicatif"), "{name} depends on indicatif: only the binary draws");
        }
    }
}

#[test]
fn reading_manifests_needs_no_object_store() {
    let deps = dependencies(&crates()["ferry-manifest"]);
    assert!(!deps.contains("ferry-store"), "ferry-manifest depends on ferry-store: {deps:?}");
}

/// The module a source file belongs to: `src/a.rs` and `src/a/b.rs` are both `a`; `lib.rs` and
/// `main.rs` are the crate root.
fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
    first.trim_end_matches(".rs").to_string()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The modules a file's non-test code names through `crate::`: each `crate::name` path, and
/// each name inside `use crate::{...}`; a name the crate root re-exports counts as the module it
/// comes from (`pub use snapshot::Snapshot` makes `crate::Snapshot` mean `snapshot`).
fn uses(text: &str, modules: &BTreeSet<String>, reexports: &BTreeMap<String, String>) -> BTreeSet<String> {
    let code = text.split("#[cfg(test)]").next().unwrap();
    let code: String = code.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n");
    let mut found = BTreeSet::new();
    let mut note = |name: &str| {
        if modules.contains(name) {
            found.insert(name.to_string());
        } else if let Some(module) = reexports.get(name) {
            found.insert(module.clone());
        }
    };
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                note(item.trim().split("::").next().unwrap().trim());
            }
        } else {
            let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_')).unwrap_or(rest.len());
            note(&rest[..end]);
        }
    }
    found
}

/// `pub use module::{A, B};` and `pub use module::A;` in the crate root: name -> module.
fn reexports(root: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for statement in root.split(';') {
        let Some(rest) = statement.trim().strip_prefix("pub use ") else { continue };
        let Some((module, names)) = rest.split_once("::") else { continue };
        for name in names.trim_matches(|c| c == '{' || c == '}').split(',') {
            let name = name.trim().rsplit("::").next().unwrap().trim();
            if !name.is_empty() {
                map.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    map
}

/// The groups of modules that reach each other (strongly connected components of more than one
/// module), each sorted: every cycle of `graph` lies within one of them.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reached: BTreeMap<&String, BTreeSet<String>> = graph.keys().map(|n| (n, reach(n))).collect();
    let mut groups: BTreeSet<Vec<String>> = BTreeSet::new();
    for (node, from_node) in &reached {
        let group: Vec<String> =
            from_node.iter().filter(|other| reached.get(other).is_some_and(|r| r.contains(*node))).cloned().collect();
        if group.len() > 1 {
            groups.insert(group);
        }
    }
    groups.into_iter().collect()
}

#[test]
fn no_crate_has_an_import_cycle_between_its_modules() {
    let mut found = Vec::new();
    for (name, path) in crates() {
        let src = path.join("src");
        let mut files = Vec::new();
        rust_files(&src, &mut files);
        let modules: BTreeSet<String> =
            files.iter().map(|f| module_of(&src, f)).filter(|m| m != "lib" && m != "main").collect();
        let root = ["lib.rs", "main.rs"].iter().find_map(|r| std::fs::read_to_string(src.join(r)).ok()).unwrap();
        let reexports = reexports(&root);
        let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in &files {
            let module = module_of(&src, file);
            if module == "lib" || module == "main" {
                continue;
            }
            let text = std::fs::read_to_string(file).unwrap();
            let mut used = uses(&text, &modules, &reexports);
            used.remove(&module);
            graph.entry(module).or_default().extend(used);
        }
        for group in cycles(&graph) {
            let edges: Vec<String> = group
                .iter()
                .flat_map(|m| graph[m].iter().filter(|n| group.contains(n)).map(move |n| format!("{m} -> {n}")))
                .collect();
            found.push(format!("{name}: {}", edges.join(", ")));
        }
    }
    assert!(found.is_empty(), "modules that use each other in a circle:\n{}", found.join("\n"));
}

#[test]
fn the_cycle_finder_finds_cycles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry(a.to_string()).or_default().insert(b.to_string());
        }
        g
    };
    assert!(cycles(&graph(&[("a", "b"), ("b", "c")])).is_empty());
    let two = graph(&[("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("d", "e"), ("e", "d")]);
    assert_eq!(cycles(&two), [vec!["a", "b", "c"], vec!["d", "e"]]);
    let modules: BTreeSet<String> = ["route", "snapshot", "glob"].iter().map(|s| s.to_string()).collect();
    let reexports = reexports("pub use snapshot::{Mirror, Snapshot};\npub use glob::Pattern;");
    let text = "use crate::route::{a, b};\nuse crate::{Snapshot, glob::Tier};\n// crate::nothing\n\
                fn f() { crate::route::x() }\n#[cfg(test)]\nmod tests { use crate::Pattern; }";
    let found: Vec<String> = uses(text, &modules, &reexports).into_iter().collect();
    assert_eq!(found, ["glob", "route", "snapshot"]);
}

//! The tree is the architecture, and this test keeps it so: it reads the sources and fails when
//! a module reaches into a layer it must not know (ARCHITECTURE.md, "Layers"), when two modules
//! of a crate import each other, or when the ingress and the worker link one another.
//!
//! It reads `use` paths as text: `crate::a::b`, `crate::{a, b::c}` and `confab_worker::` /
//! `confab::` references, comments excluded. That is all the layering rules need.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// A crate's top-level modules and the ones each refers to.
type Graph = BTreeMap<String, BTreeSet<String>>;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The source without comments, so prose that names a module is not an import.
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every `crate::x` this code names, `crate::{x, y::z}` groups included: the `x`s.
fn crate_modules(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `confab_crate::`, not ours
        }
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                found.insert(first_segment(item.trim()));
            }
        } else {
            found.insert(first_segment(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn first_segment(path: &str) -> String {
    path.chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level module a file of the crate rooted at `src` belongs to (`lib` for the root).
fn top_module(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap_or(file);
    let first = relative
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .unwrap_or_default();
    first.trim_end_matches(".rs").to_owned()
}

/// Files of the crate at `src`, leaving out nested crates' folders.
fn crate_files(src: &Path, nested_crates: &[&str]) -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.retain(|f| {
        !nested_crates
            .iter()
            .any(|nested| f.starts_with(src.join(nested)))
    });
    files
}

fn graph(src: &Path, nested_crates: &[&str]) -> Graph {
    let mut graph = Graph::new();
    for file in crate_files(src, nested_crates) {
        let me = top_module(src, &file);
        let uses = graph.entry(me.clone()).or_default();
        for other in crate_modules(&code_of(&file)) {
            if other != me {
                uses.insert(other);
            }
        }
    }
    graph
}

/// Pairs of modules that reach each other, directly or through others.
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_owned()];
        while let Some(node) = todo.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let mut found = Vec::new();
    for a in graph.keys() {
        for b in reach(a) {
            if a < &b && reach(&b).contains(a) {
                found.push(vec![a.clone(), b]);
            }
        }
    }
    found
}

fn ingress_graph() -> Graph {
    graph(&root().join("src"), &["contract", "shared"])
}

#[test]
fn no_two_modules_of_a_crate_import_each_other() {
    let crates = [
        ("ingress (src/)", ingress_graph()),
        (
            "worker (workers/src/)",
            graph(&root().join("workers/src"), &[]),
        ),
    ];
    for (name, graph) in crates {
        assert!(graph.len() > 5, "{name}: read too few modules: {graph:?}");
        let found = cycles(&graph);
        assert!(
            found.is_empty(),
            "{name}: import circles {found:?}\n{graph:#?}"
        );
    }
}

#[test]
fn each_ingress_layer_knows_only_the_layers_below_it() {
    // Who may not be named by whom; see ARCHITECTURE.md "Layers".
    let edge_families = ["api", "dialects", "webhooks"];
    let above_the_store = [
        "app", "cli", "http", "api", "dialects", "webhooks", "pipeline", "relay", "broker",
    ];
    let above_the_reply_path = ["app", "cli", "http", "api", "dialects", "webhooks"];
    let rules: [(&str, &[&str]); 7] = [
        ("http", &["app", "cli", "api", "dialects", "webhooks"]),
        ("store", &above_the_store),
        ("pipeline", &above_the_reply_path),
        ("relay", &above_the_reply_path),
        ("broker", &above_the_reply_path),
        ("dialects", &["app", "cli", "api", "webhooks"]),
        ("api", &["app", "cli", "dialects", "webhooks"]),
    ];
    let graph = ingress_graph();
    for module in edge_families
        .iter()
        .chain(["http", "store", "pipeline"].iter())
    {
        assert!(
            graph.contains_key(*module),
            "no module {module} in {graph:?}"
        );
    }
    for (module, forbidden) in rules {
        let uses = graph.get(module).cloned().unwrap_or_default();
        let wrong: Vec<_> = forbidden.iter().filter(|f| uses.contains(**f)).collect();
        assert!(wrong.is_empty(), "{module} must not import {wrong:?}");
    }
}

#[test]
fn the_ingress_library_and_the_worker_never_link_each_other() {
    let mut ingress = crate_files(&root().join("src"), &["contract", "shared"]);
    ingress.retain(|f| !f.ends_with("src/main.rs"));
    for file in ingress {
        assert!(
            !code_of(&file).contains("confab_worker"),
            "{} names the worker crate; share through confab-shared instead",
            file.display()
        );
    }
    let mut worker = Vec::new();
    rust_files(&root().join("workers"), &mut worker);
    for file in worker {
        let code = code_of(&file);
        assert!(
            !code.contains("confab::"),
            "{} names the ingress crate",
            file.display()
        );
    }
    let manifest = fs::read_to_string(root().join("workers/Cargo.toml")).unwrap_or_default();
    assert!(
        !manifest.lines().any(
            |l| l.trim_start().starts_with("confab.") || l.trim_start().starts_with("confab =")
        ),
        "the worker crate depends on the ingress"
    );
}

#[test]
fn the_import_reader_sees_grouped_and_plain_paths() {
    let code = "use crate::{store::tenants, http};\nuse crate::pipeline::Turn;\nconfab_crate::x;";
    let found: Vec<_> = crate_modules(code).into_iter().collect();
    assert_eq!(found, ["http", "pipeline", "store"]);
}

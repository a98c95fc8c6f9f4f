//! The server library's layering (written in `server/lib.rs`), checked rather than trusted:
//! every `crate::` path in a module must point at its own layer or one below, and the
//! modules must not import each other in a circle. A new module must be placed in
//! [`LAYERS`] before this passes, which is the point: its place is a decision.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules of `server/`, lowest layer first. A module may use modules of its own
/// layer or lower ones; within a layer, the import graph must still be acyclic.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "foundation: wire format, sockets, buffers, clocks, sample formats, the state model",
        &[
            "alloc_counter",
            "calendar",
            "child",
            "clock",
            "daemon",
            "heap",
            "host",
            "log_output",
            "image_cache",
            "net",
            "pb",
            "pool",
            "properties",
            "protocol",
            "sample_format",
            "startup_pages",
            "state",
        ],
    ),
    (
        "sources, encoders and stream plugins",
        &["encoder", "plugin", "source", "upstream"],
    ),
    ("streams", &["stream"]),
    ("configuration and live settings", &["config", "settings"]),
    ("sessions", &["session"]),
    ("relay core", &["relay"]),
    (
        "front ends",
        &["control", "diagnostics", "discovery", "http", "jsonrpc"],
    ),
    ("running: listeners, start-up, shutdown", &["run"]),
];

fn server_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("server")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read server/") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a file belongs to (`None` for lib.rs and main.rs).
fn module_of(path: &Path) -> Option<String> {
    let relative = path.strip_prefix(server_dir()).ok()?;
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main")).then(|| name.to_owned())
}

/// `text` without its comments (line, doc and block comments), so a path only mentioned in
/// prose is not an import. String literals are kept: no module path of ours is in one.
fn without_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix("//") {
            rest = after.find('\n').map_or("", |end| &after[end..]);
        } else if let Some(after) = rest.strip_prefix("/*") {
            rest = after.find("*/").map_or("", |end| &after[end + 2..]);
            out.push(' ');
        } else {
            let c = rest.chars().next().unwrap_or(' ');
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    out
}

/// The identifier at the start of `text` (after whitespace).
fn leading_identifier(text: &str) -> String {
    text.trim_start()
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_')
        .collect()
}

/// The top-level items of a `{a, b::{c, d}, e as f}` group that starts right after its `{`:
/// the first name of each, however the group spans lines or nests.
fn group_heads(group: &str) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0usize;
    let mut item_start = 0;
    for (at, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                heads.push(leading_identifier(&group[item_start..at]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                heads.push(leading_identifier(&group[item_start..at]));
                item_start = at + 1;
            }
            _ => {}
        }
    }
    heads.retain(|head| !head.is_empty());
    heads
}

/// Every name right after `prefix` (`crate::`, `super::`) in `text`, including each item of
/// a group (`crate::{a::X, b}`, over several lines and nested); comments are skipped.
fn references_after(text: &str, prefix: &str) -> BTreeSet<String> {
    let code = without_comments(text);
    let mut found = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find(prefix) {
        // `$crate::` in a macro is the crate too; `foo_crate::` is not.
        let before = rest[..at].chars().next_back();
        let after = &rest[at + prefix.len()..];
        if !before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            match after.trim_start().strip_prefix('{') {
                Some(group) => found.extend(group_heads(group)),
                None => {
                    let name = leading_identifier(after);
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            }
        }
        rest = after;
    }
    found
}

/// Every top-level module named after `crate::` in `text`.
fn crate_references(text: &str) -> BTreeSet<String> {
    references_after(text, "crate::")
}

fn module_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&server_dir(), &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).expect("read a source file");
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_references(&text) {
            if used != module {
                uses.insert(used);
            }
        }
    }
    graph
}

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

#[test]
fn every_module_has_a_layer_and_imports_only_downwards() {
    let graph = module_graph();
    let mut problems = Vec::new();
    for (module, uses) in &graph {
        let Some(layer) = layer_of(module) else {
            problems.push(format!(
                "module '{module}' is in no layer of tests/layering.rs"
            ));
            continue;
        };
        for used in uses {
            match layer_of(used) {
                // Not a module of ours (e.g. a macro path); nothing to check.
                None if !graph.contains_key(used) => {}
                None => problems.push(format!("module '{used}' is in no layer")),
                Some(used_layer) if used_layer > layer => problems.push(format!(
                    "'{module}' ({}) uses '{used}' ({}), a higher layer",
                    LAYERS[layer].0, LAYERS[used_layer].0
                )),
                Some(_) => {}
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn modules_do_not_import_each_other_in_a_circle() {
    let graph = module_graph();
    // Depth-first search with colours: reaching a module still on the stack is a cycle.
    fn visit<'a>(
        module: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        on_stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if done.contains(module) {
            return None;
        }
        if let Some(at) = on_stack.iter().position(|m| *m == module) {
            let mut cycle: Vec<String> = on_stack[at..].iter().map(|m| (*m).to_owned()).collect();
            cycle.push(module.to_owned());
            return Some(cycle);
        }
        on_stack.push(module);
        for used in graph.get(module).into_iter().flatten() {
            if graph.contains_key(used) {
                if let Some(cycle) = visit(used, graph, on_stack, done) {
                    return Some(cycle);
                }
            }
        }
        on_stack.pop();
        done.insert(module);
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(cycle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_sees_grouped_imports_and_skips_comments() {
    let text = "use crate::{relay::Relay, session};\n// crate::run is only mentioned\n\
                let x = crate::stream::Stream::start();";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["relay", "session", "stream"]);
}

#[test]
fn the_checker_reads_whole_use_trees_over_lines_and_nesting() {
    let text = "use crate::{\n    net::sender::{Payload, Sender},\n    /* crate::http */\n    \
                protocol as wire,\n    state::{self, Event},\n};\n/// [`crate::run`] in a doc\n\
                macro_rules! m { () => { $crate::clock::now() } }";
    let found: Vec<String> = crate_references(text).into_iter().collect();
    assert_eq!(found, ["clock", "net", "protocol", "state"]);
}

/// Files of one directory module that name each other: `super::NAME` and
/// `crate::TOP::NAME` paths whose NAME is a sibling file (re-exports through `mod.rs` are
/// not followed). Keyed by file name without `.rs`; `mod.rs` is left out, since it declares
/// and re-exports the others.
fn sibling_graph(dir: &Path, top: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut siblings = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("read a module directory") {
        let path = entry.expect("dir entry").path();
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if name != "mod" && (path.is_dir() || path.extension().is_some_and(|e| e == "rs")) {
            siblings.insert(name, path);
        }
    }
    let mut graph = BTreeMap::new();
    for (name, path) in &siblings {
        let mut files = Vec::new();
        if path.is_dir() {
            rust_files(path, &mut files);
        } else {
            files.push(path.clone());
        }
        let mut uses = BTreeSet::new();
        for file in files {
            let text = std::fs::read_to_string(&file).expect("read a source file");
            // Only a file directly in `dir` reaches its siblings with `super::`.
            let mut named = if file == *path {
                references_after(&text, "super::")
            } else {
                BTreeSet::new()
            };
            named.extend(references_after(&text, &format!("crate::{top}::")));
            uses.extend(
                named
                    .into_iter()
                    .filter(|n| n != name && siblings.contains_key(n)),
            );
        }
        graph.insert(name.clone(), uses);
    }
    graph
}

#[test]
fn no_two_files_of_a_module_import_each_other_in_a_circle() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(server_dir()).expect("read server/") {
        let dir = entry.expect("dir entry").path();
        let Some(top) = dir.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if !dir.is_dir() {
            continue;
        }
        let graph = sibling_graph(&dir, &top);
        for (file, uses) in &graph {
            for used in uses {
                if reaches(&graph, used, file) {
                    problems.push(format!("server/{top}: {file} -> {used} -> ... -> {file}"));
                }
            }
        }
    }
    assert!(
        problems.is_empty(),
        "file-level import circles:\n{}",
        problems.join("\n")
    );
}

/// Whether `to` can be reached from `from` along `graph`'s edges.
fn reaches(graph: &BTreeMap<String, BTreeSet<String>>, from: &str, to: &str) -> bool {
    let mut seen = BTreeSet::new();
    let mut pending = vec![from.to_owned()];
    while let Some(next) = pending.pop() {
        if next == to {
            return true;
        }
        if seen.insert(next.clone()) {
            pending.extend(graph.get(&next).into_iter().flatten().cloned());
        }
    }
    false
}

#[test]
fn the_library_documents_every_module_in_its_layer_list() {
    // server/lib.rs's doc comment is the layering a reader sees first; it names every
    // top-level module this test places.
    let lib = std::fs::read_to_string(server_dir().join("lib.rs")).expect("read lib.rs");
    let doc: String = lib
        .lines()
        .filter_map(|line| line.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n");
    let missing: Vec<&str> = LAYERS
        .iter()
        .flat_map(|(_, modules)| modules.iter().copied())
        // "`net`" and "[`source`]" both name one.
        .filter(|module| !doc.contains(&format!("`{module}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "server/lib.rs's layer list does not name {missing:?}"
    );
}

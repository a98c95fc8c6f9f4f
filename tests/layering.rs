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
            "heap",
            "host",
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

/// Every top-level module named after `crate::` in `text`, including each item of a
/// `crate::{a::X, b}` group; comment lines are skipped.
fn crate_references(text: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for line in text.lines() {
        let code = line.trim_start();
        if code.starts_with("//") {
            continue;
        }
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            if let Some(group) = after.strip_prefix('{') {
                let end = group.find('}').unwrap_or(group.len());
                for item in group[..end].split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        found.insert(name);
                    }
                }
            } else {
                let name: String = after
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    found.insert(name);
                }
            }
            rest = after;
        }
    }
    found
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

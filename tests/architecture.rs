//! The crate's layering, checked: the top-level modules of `src/` import
//! each other without a cycle, and the edges DESIGN.md forbids stay absent
//! (the error type never imports a handler, providers never import the front
//! doors, the config knows nothing of the ledger or the store).
//!
//! Read from the source text: every `crate::<module>` path outside comments
//! is an edge from the file's top-level module to `<module>`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Graph = BTreeMap<String, BTreeSet<String>>;

fn graph() -> Graph {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    let mut files = vec![src.clone()];
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let top = relative.components().next().unwrap().as_os_str().to_string_lossy();
        let top = top.trim_end_matches(".rs").to_owned();
        if top == "main" || top == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let edges = graph.entry(top.clone()).or_default();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String =
                    code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
                if !name.is_empty() && name != top {
                    edges.insert(name);
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &Graph, start: &str) -> Option<Vec<String>> {
    fn walk(graph: &Graph, node: &str, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_owned()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn the_top_level_modules_form_no_cycle() {
    let graph = graph();
    assert!(graph.len() > 20, "the source tree was read: {:?}", graph.keys());
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles between top-level modules:\n{}", cycles.join("\n"));
}

#[test]
fn the_forbidden_edges_stay_absent() {
    let graph = graph();
    let forbidden = [
        ("error", &["api", "routes", "server", "gateway"][..]),
        ("upstream", &["api", "pipeline", "routes", "app"][..]),
        ("config", &["credits", "store", "events", "auth"][..]),
        ("store", &["credits", "responses", "events", "api"][..]),
        ("app", &["api", "routes", "gateway", "pipeline"][..]),
        ("server", &["app", "api", "routes"][..]),
        ("pipeline", &["api", "routes"][..]),
    ];
    for (from, targets) in forbidden {
        let edges = graph.get(from).unwrap_or_else(|| panic!("no module {from}"));
        for to in targets {
            assert!(!edges.contains(*to), "{from} imports {to}");
        }
    }
}

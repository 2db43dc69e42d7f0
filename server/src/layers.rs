//! The layering, checked: data flows one way (transport → services →
//! domain and ports), so the module graph has no cycle, and the inner
//! layers import nothing of the outer ones. Reads the source, so a new
//! import that breaks the rule fails here with the file that has it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules each module may not import, and crates it may not use.
const RULES: &[(&str, &[&str], &[&str])] = &[
    (
        "domain",
        &["app", "auth", "bus", "edge", "error", "http", "services", "store", "workers", "ws"],
        &["axum", "redis", "sqlx", "rdkafka", "tokio", "serde_json"],
    ),
    ("store", &["app", "edge", "http", "services", "workers", "ws"], &["axum"]),
    ("bus", &["app", "edge", "http", "services", "workers", "ws"], &["axum"]),
    ("services", &["app", "edge", "http", "workers", "ws"], &["axum", "serde_json", "tokio_tungstenite"]),
    ("workers", &["app", "edge", "http", "ws"], &["axum"]),
    ("ws", &["app", "http"], &[]),
    ("http", &["app", "workers"], &[]),
    ("edge", &["app", "http", "ws", "workers", "services"], &[]),
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The file's code without its test modules (imports there are free).
fn code_of(text: &str) -> &str {
    text.find("#[cfg(test)]\nmod tests")
        .or_else(|| text.find("#[cfg(test)]\npub(crate) mod tests"))
        .map_or(text, |i| &text[..i])
}

/// Every top-level module and crate path this code names.
fn names(code: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut modules, mut crates) = (BTreeSet::new(), BTreeSet::new());
    for line in code.lines().map(str::trim).filter(|l| !l.starts_with("//")) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + 7..];
            let name: String = after.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            if !name.is_empty() {
                modules.insert(name);
            }
            rest = after;
        }
        if let Some(path) = line.strip_prefix("use ").or_else(|| line.strip_prefix("pub use ")) {
            let root: String = path.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            crates.insert(root);
        }
        for krate in ["axum::", "serde_json::", "tokio_tungstenite::"] {
            if line.contains(krate) {
                crates.insert(krate.trim_end_matches("::").to_owned());
            }
        }
    }
    (modules, crates)
}

fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    // module → imported module → files that import it; "crate:X" for crates
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let module = rel.split(['/', '.']).next().unwrap().to_owned();
        if ["lib", "main", "layers"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let (modules, crates) = names(code_of(&text));
        let edges = g.entry(module.clone()).or_default();
        for m in modules.into_iter().filter(|m| *m != module) {
            edges.entry(m).or_default().insert(rel.clone());
        }
        for c in crates {
            edges.entry(format!("crate:{c}")).or_default().insert(rel.clone());
        }
    }
    g
}

#[test]
fn inner_layers_import_nothing_of_the_outer_ones() {
    let g = graph();
    let mut broken = Vec::new();
    for (module, modules, crates) in RULES {
        let Some(edges) = g.get(*module) else { continue };
        for bad in modules.iter().map(|m| m.to_string()).chain(crates.iter().map(|c| format!("crate:{c}"))) {
            if let Some(files) = edges.get(&bad) {
                broken.push(format!("{module} uses {bad} in {files:?}"));
            }
        }
    }
    assert!(broken.is_empty(), "layering broken:\n{}", broken.join("\n"));
}

#[test]
fn the_module_graph_has_no_cycle() {
    let g = graph();
    let deps = |m: &str| -> Vec<String> {
        g.get(m)
            .map(|e| e.keys().filter(|k| !k.starts_with("crate:") && g.contains_key(*k)).cloned().collect())
            .unwrap_or_default()
    };
    // Depth-first search for a back edge, reporting the cycle it closes.
    fn visit(
        m: &str,
        deps: &dyn Fn(&str) -> Vec<String>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == m) {
            let mut cycle = path[at..].to_vec();
            cycle.push(m.to_owned());
            return Some(cycle);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for d in deps(m) {
            if let Some(c) = visit(&d, deps, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for m in g.keys() {
        if let Some(cycle) = visit(m, &deps, &mut Vec::new(), &mut done) {
            let files: Vec<String> =
                cycle.windows(2).map(|w| format!("{} → {}: {:?}", w[0], w[1], g[&w[0]][&w[1]])).collect();
            panic!("import cycle {}:\n{}", cycle.join(" → "), files.join("\n"));
        }
    }
}

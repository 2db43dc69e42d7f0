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

/// The file's code without comments and without the items under
/// `#[cfg(test)]` (test code may import freely).
fn code_of(text: &str) -> String {
    let lines: Vec<&str> = text.lines().map(|l| l.split("//").next().unwrap_or("")).collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            // Skip the next item: one line, or up to its matching brace.
            let mut depth = 0i32;
            i += 1;
            while i < lines.len() {
                depth += lines[i].matches('{').count() as i32 - lines[i].matches('}').count() as i32;
                i += 1;
                if depth <= 0 {
                    break;
                }
            }
            continue;
        }
        out.push_str(lines[i]);
        out.push('\n');
        i += 1;
    }
    out
}

/// The first segment of every path in a `use` tree body such as
/// `{a::b, c, d::{e, f}}` or `a::b`.
fn first_segments(tree: &str) -> Vec<String> {
    let tree = tree.trim();
    let Some(inner) = tree.strip_prefix('{').and_then(|t| t.strip_suffix('}')) else {
        return vec![tree.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect()];
    };
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&inner[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&inner[start..]);
    parts.into_iter().flat_map(first_segments).filter(|p| !p.is_empty()).collect()
}

/// Crates a layer may be forbidden, found anywhere in the code as a path
/// root (`axum::…`, `::redis::…`), not as a segment of another path.
const WATCHED_CRATES: &[&str] = &["axum", "serde_json", "tokio_tungstenite", "tokio", "redis", "sqlx", "rdkafka"];

/// Every top-level module and watched crate this code names. `module` is
/// the file's module path (`["services", "seats"]`), for `super::`.
fn names(code: &str, module: &[String]) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut modules, mut crates) = (BTreeSet::new(), BTreeSet::new());
    // Whole statements, so that multi-line `use` groups read as one.
    let flat: String = code.split('\n').map(str::trim).collect::<Vec<_>>().join(" ");
    let bytes = flat.as_bytes();
    let at_root = |i: usize| {
        i == 0 || {
            let before = bytes[i - 1] as char;
            !(before.is_alphanumeric() || before == '_' || before == ':')
                || (before == ':'
                    && i >= 2
                    && bytes[i - 2] == b':'
                    && (i < 3 || !(bytes[i - 3] as char).is_alphanumeric()))
        }
    };
    for (i, _) in flat.match_indices("crate::").filter(|(i, _)| at_root(*i)) {
        let rest = &flat[i + 7..];
        let tree = if rest.starts_with('{') {
            let end = rest.find(';').unwrap_or(rest.len());
            &rest[..end]
        } else {
            rest
        };
        modules.extend(first_segments(tree).into_iter().take(if tree.starts_with('{') { usize::MAX } else { 1 }));
    }
    for (i, _) in flat.match_indices("super::").filter(|(i, _)| at_root(*i)) {
        // `super::super::x` from `a/b/c.rs` is `a::x`: climb, then read on.
        let mut rest = &flat[i..];
        let mut depth = module.len();
        while let Some(r) = rest.strip_prefix("super::") {
            depth = depth.saturating_sub(1);
            rest = r;
        }
        if depth == 0 {
            let tree = if rest.starts_with('{') { &rest[..rest.find(';').unwrap_or(rest.len())] } else { rest };
            modules.extend(first_segments(tree).into_iter().take(if tree.starts_with('{') { usize::MAX } else { 1 }));
        }
    }
    for krate in WATCHED_CRATES {
        let needle = format!("{krate}::");
        if flat.match_indices(&needle).any(|(i, _)| at_root(i)) {
            crates.insert((*krate).to_owned());
        }
    }
    (modules, crates)
}

/// Files that are modules declared under `#[cfg(test)]` (`mod x;`, maybe
/// with `#[path = "…"]`): test code throughout, like the items skipped by
/// `code_of`.
fn test_only_files(files: &[PathBuf]) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    for file in files {
        let text = std::fs::read_to_string(file).unwrap();
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let parent = file.parent().unwrap();
        // Where `mod x;` of this file looks for x.
        let dir = if stem == "mod" || stem == "lib" { parent.to_path_buf() } else { parent.join(&stem) };
        for (i, line) in lines.iter().enumerate() {
            let Some(name) = line.strip_prefix("mod ").or_else(|| line.strip_prefix("pub(crate) mod ")) else {
                continue;
            };
            let Some(name) = name.strip_suffix(';') else { continue };
            let attrs = &lines[i.saturating_sub(2)..i];
            if !attrs.contains(&"#[cfg(test)]") {
                continue;
            }
            let path = attrs.iter().find_map(|a| a.strip_prefix("#[path = \"").and_then(|a| a.strip_suffix("\"]")));
            match path {
                Some(p) => {
                    out.insert(parent.join(p));
                }
                None => {
                    out.insert(dir.join(format!("{name}.rs")));
                    out.insert(dir.join(name).join("mod.rs"));
                }
            }
        }
    }
    out
}

fn graph() -> BTreeMap<String, BTreeMap<String, BTreeSet<String>>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let test_only = test_only_files(&files);
    files.retain(|f| !test_only.contains(f));
    // module → imported module → files that import it; "crate:X" for crates
    let mut g: BTreeMap<String, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
        let mut path: Vec<String> = rel.trim_end_matches(".rs").split('/').map(str::to_owned).collect();
        if path.last().is_some_and(|p| p == "mod") {
            path.pop();
        }
        let module = path[0].clone();
        if ["lib", "main", "layers"].contains(&module.as_str()) {
            continue;
        }
        let text = std::fs::read_to_string(&file).unwrap();
        let (modules, crates) = names(&code_of(&text), &path);
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

#[test]
fn the_reader_finds_grouped_nested_and_inline_imports() {
    let code = code_of(
        "use crate::{ws::hub::Hub,\n    http::{AppState, x}};\nuse super::super::edge::Caller;\nfn f() { crate::store::x(); ::redis::cmd(); axum::Json(1) }\n#[cfg(test)]\nmod tests {\n    use crate::app::Ctx;\n}\n",
    );
    let (modules, crates) = names(&code, &["services".into(), "seats".into()]);
    let modules: Vec<&str> = modules.iter().map(String::as_str).collect();
    assert_eq!(modules, ["edge", "http", "store", "ws"], "test code is skipped");
    let crates: Vec<&str> = crates.iter().map(String::as_str).collect();
    assert_eq!(crates, ["axum", "redis"]);
    let (inner, _) = names("use super::feed::Feed; use self::x::y;", &["ws".into(), "session".into()]);
    assert!(inner.is_empty(), "a sibling module is not a top-level one: {inner:?}");
    let (none, crates) = names("use crate::store::redis::RedisSeatStore;", &["app".into()]);
    assert_eq!((none.len(), crates.len()), (1, 0), "a module named like a crate is not the crate");
}

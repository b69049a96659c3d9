//! The store's modules import each other in one direction only: the test
//! builds the file-level graph of `crate::…`, `super::…` and `self::…` paths
//! under `src/store` (test modules left out) and fails on any cycle, naming
//! the modules in it. The root facade `store` (which re-exports) is left
//! out, as every module may name what it re-exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

type Module = Vec<String>;

fn modules(dir: &Path, src: &Path, out: &mut BTreeMap<Module, PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modules(&path, src, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut parts: Module = rel
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            out.insert(parts, path);
        }
    }
}

/// The module a path used in `from` leads to: its longest prefix that is a
/// module file.
fn resolve(from: &Module, path: &str, mods: &BTreeMap<Module, PathBuf>) -> Option<Module> {
    let mut parts = path.split("::").peekable();
    let mut base: Module = match parts.next()? {
        "crate" => Vec::new(),
        "self" => from.clone(),
        // The same for `a/mod.rs` and `a.rs`: the parent of module `a`.
        "super" => {
            let mut b = from.clone();
            b.pop();
            while parts.peek() == Some(&"super") {
                parts.next();
                b.pop();
            }
            b
        }
        _ => return None,
    };
    base.extend(parts.map(str::to_owned));
    (1..=base.len())
        .rev()
        .map(|k| base[..k].to_vec())
        .find(|m| mods.contains_key(m))
}

#[test]
fn the_store_has_no_circular_imports() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut mods = BTreeMap::new();
    modules(&src.join("store"), &src, &mut mods);
    let root: Module = vec!["store".to_owned()];
    let mut edges: BTreeMap<Module, BTreeSet<Module>> = BTreeMap::new();
    for (m, path) in &mods {
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]\nmod tests").next().unwrap_or("");
        let bytes = code.as_bytes();
        let mut i = 0;
        while i < code.len() {
            let rest = &code[i..];
            let starts = ["crate::", "super::", "self::"]
                .iter()
                .any(|p| rest.starts_with(p))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_'));
            if !starts {
                i += rest.chars().next().map_or(1, char::len_utf8);
                continue;
            }
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
                .unwrap_or(rest.len());
            let path = rest[..len].trim_end_matches(':');
            if let Some(to) = resolve(m, path, &mods)
                && to != *m
                && to != root
                && *m != root
            {
                edges.entry(m.clone()).or_default().insert(to);
            }
            i += len.max(1);
        }
    }
    let cycles = strongly_connected(&mods.keys().cloned().collect::<Vec<_>>(), &edges);
    let named: Vec<Vec<String>> = cycles
        .iter()
        .map(|c| c.iter().map(|m| m.join("::")).collect())
        .collect();
    assert!(
        named.is_empty(),
        "modules that import each other: {named:#?}"
    );
    // The check sees the imports at all: the operations use the backend traits.
    let ops_lease: Module = ["store", "ops", "lease"].map(str::to_owned).to_vec();
    let backend: Module = ["store", "backend"].map(str::to_owned).to_vec();
    assert!(
        edges[&ops_lease].contains(&backend),
        "{:?}",
        edges[&ops_lease]
    );
}

/// Tarjan's strongly connected components of more than one module.
fn strongly_connected(
    nodes: &[Module],
    edges: &BTreeMap<Module, BTreeSet<Module>>,
) -> Vec<Vec<Module>> {
    struct State<'a> {
        edges: &'a BTreeMap<Module, BTreeSet<Module>>,
        index: BTreeMap<Module, usize>,
        low: BTreeMap<Module, usize>,
        stack: Vec<Module>,
        on: BTreeSet<Module>,
        out: Vec<Vec<Module>>,
    }
    fn visit(s: &mut State<'_>, v: &Module) {
        let n = s.index.len();
        s.index.insert(v.clone(), n);
        s.low.insert(v.clone(), n);
        s.stack.push(v.clone());
        s.on.insert(v.clone());
        for w in s.edges.get(v).cloned().unwrap_or_default() {
            if !s.index.contains_key(&w) {
                visit(s, &w);
                let low = s.low[v].min(s.low[&w]);
                s.low.insert(v.clone(), low);
            } else if s.on.contains(&w) {
                let low = s.low[v].min(s.index[&w]);
                s.low.insert(v.clone(), low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(&w);
                let done = w == *v;
                comp.push(w);
                if done {
                    break;
                }
            }
            if comp.len() > 1 {
                s.out.push(comp);
            }
        }
    }
    let mut s = State {
        edges,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in nodes {
        if !s.index.contains_key(v) {
            visit(&mut s, v);
        }
    }
    s.out
}

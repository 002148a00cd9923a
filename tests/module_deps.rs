//! The library's module graph: no import cycles between top-level modules, and the sampling
//! core never reaches the tools (plots, benchmarks, the CLI). Read from the sources (every
//! `crate::NAME` path, `use` trees included), so a new cycle or a new core -> tool edge fails
//! here with the offending files named.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Modules that make up the sampling core (what a host embedding libdpm needs).
const CORE: &[&str] = &[
    "error",
    "rng",
    "schedule",
    "spacing",
    "solver",
    "guidance",
    "sampler",
    "exact",
    "runtime",
    "dylib",
    "model",
    "generate",
    "onnx_file",
    "fsutil",
];
/// Tools: reports, plots and benchmarks (the CLI sits in the binary, not the library).
const TOOLS: &[&str] = &["plot", "bench"];

fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Top-level module names a source text refers to through `crate::`.
fn referenced(text: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                // use crate::{a, b::c, ...}: every first segment in the braces.
                let inner = group.split('}').next().unwrap_or("");
                for item in inner.split(',') {
                    let name: String = item
                        .trim()
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if modules.contains(&name) {
                        out.insert(name);
                    }
                }
            } else {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if modules.contains(&name) {
                    out.insert(name);
                }
            }
        }
    }
    out
}

/// module -> (module it uses -> a file where it does).
fn graph() -> BTreeMap<String, BTreeMap<String, String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rs_files(&src, &mut files);
    let module_of = |p: &Path| -> Option<String> {
        let rel = p.strip_prefix(&src).ok()?;
        let first = rel.components().next()?.as_os_str().to_str()?.to_string();
        Some(first.trim_end_matches(".rs").to_string())
    };
    let modules: BTreeSet<String> = files
        .iter()
        .filter_map(|p| module_of(p))
        .filter(|m| m != "lib" && m != "main" && m != "cli")
        .collect();
    let mut g: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
    for f in &files {
        let Some(m) = module_of(f) else { continue };
        if !modules.contains(&m) {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for dep in referenced(&text, &modules) {
            if dep != m {
                g.entry(m.clone())
                    .or_default()
                    .entry(dep)
                    .or_insert_with(|| f.display().to_string());
            }
        }
        g.entry(m).or_default();
    }
    g
}

#[test]
fn no_cycles_between_modules() {
    let g = graph();
    // Depth-first search with colours; a grey target is a back edge, i.e. a cycle.
    fn visit(
        m: &str,
        g: &BTreeMap<String, BTreeMap<String, String>>,
        colour: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        colour.insert(m.to_string(), 1);
        path.push(m.to_string());
        for dep in g.get(m).into_iter().flat_map(|d| d.keys()) {
            match colour.get(dep.as_str()).copied().unwrap_or(0) {
                1 => {
                    let at = path.iter().position(|p| p == dep).unwrap_or(0);
                    let mut cycle = path[at..].to_vec();
                    cycle.push(dep.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(dep, g, colour, path) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        path.pop();
        colour.insert(m.to_string(), 2);
        None
    }
    let mut colour = BTreeMap::new();
    for m in g.keys() {
        if colour.get(m.as_str()).copied().unwrap_or(0) == 0 {
            if let Some(c) = visit(m, &g, &mut colour, &mut Vec::new()) {
                let edges: Vec<String> = c
                    .windows(2)
                    .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
                    .collect();
                panic!("import cycle:\n  {}", edges.join("\n  "));
            }
        }
    }
}

#[test]
fn the_core_does_not_use_the_tools() {
    let g = graph();
    for core in CORE {
        let deps = g
            .get(*core)
            .unwrap_or_else(|| panic!("core module {core} not found"));
        for tool in TOOLS {
            assert!(
                !deps.contains_key(*tool),
                "core module {core} uses the tool module {tool} ({})",
                deps[*tool]
            );
        }
    }
}

#[test]
fn the_reader_sees_crate_paths() {
    let mods: BTreeSet<String> = ["solver", "rng", "sampler"].map(String::from).into();
    let got = referenced(
        "use crate::{rng, solver::Solver};\nlet x = crate::sampler::f(); // crate::plot",
        &mods,
    );
    assert_eq!(got, mods);
}

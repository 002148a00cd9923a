//! The library's module graph, read from the sources (docs/ARCHITECTURE.md, "What may depend on
//! what"):
//! - no import cycle between top-level modules (a folder such as `src/solver/` is one module;
//!   cycles inside one are its own business);
//! - the core (what a host embedding libdpm needs) never uses a tool module (metrics, plots,
//!   benchmarks, the CLI);
//! - every module sits in the layer docs/ARCHITECTURE.md gives it, and uses only modules of
//!   lower layers, so the document and the code cannot drift apart.
//!
//! Every path that names another module counts: `crate::NAME` (in `use` trees too, over
//! several lines), `super::` chains that climb out of a module, the crate root's re-exports
//! (`crate::Error` is `error`), and in the `dpm` binary (`src/main.rs`, `src/cli/`) the
//! library's paths `dpm::NAME`. Comments and string literals do not count.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The core, bottom-up (docs/ARCHITECTURE.md): what sampling, training and the C ABI run on.
const CORE: &[&str] = &[
    "error",
    "rng",
    "dylib",
    "fsutil",
    "schedule",
    "guidance",
    "parallel",
    "spacing",
    "imageio",
    "onnx_file",
    "solver",
    "sampler",
    "runtime",
    "data",
    "denoiser",
    "exact",
    "model",
    "tune",
    "generate",
    "train",
    "ffi",
];
/// Tools: quality metrics (Chamfer distance, FID), plots, the benchmark harness, the `dpm`
/// binary. They may use the core; the core never uses them.
const TOOLS: &[&str] = &["metrics", "plot", "bench", "cli"];

/// The module the `dpm` binary's files (`src/main.rs`, `src/cli/`) form.
const BINARY: &str = "cli";

/// An import graph: module -> (module it uses -> where it first does, `file:line`).
type Graph = BTreeMap<String, BTreeMap<String, String>>;

// ---------------------------------------------------------------------------------------------
// Reading the sources

/// The text with comments, string and character literals blanked out (newlines kept, so
/// positions keep their line numbers).
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let blank = |out: &mut String, ch: char| out.push(if ch == '\n' { '\n' } else { ' ' });
    let mut i = 0;
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    out.push_str("  ");
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    out.push_str("  ");
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
        } else if let Some(hashes) = raw_string_at(&c, i) {
            // A raw string: r"..", r#".."#, br"..": blank up to the closing quote and hashes.
            let mut k = i + c[i..].iter().position(|&ch| ch == '"').unwrap() + 1;
            while k < c.len() && !(c[k] == '"' && (1..=hashes).all(|h| c.get(k + h) == Some(&'#')))
            {
                k += 1;
            }
            let end = (k + 1 + hashes).min(c.len());
            for &ch in &c[i..end] {
                blank(&mut out, ch);
            }
            i = end;
        } else if at(0) == '"' {
            blank(&mut out, '"');
            i += 1;
            while i < c.len() && c[i] != '"' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, '"');
                i += 1;
            }
        } else if at(0) == '\'' && (at(1) == '\\' || (at(1) != '\'' && at(2) == '\'')) {
            // A character literal ('x', '\n', '\u{..}'); a lifetime ('a) stays.
            blank(&mut out, '\'');
            i += 1;
            while i < c.len() && c[i] != '\'' {
                if c[i] == '\\' {
                    blank(&mut out, c[i]);
                    i += 1;
                }
                if i < c.len() {
                    blank(&mut out, c[i]);
                    i += 1;
                }
            }
            if i < c.len() {
                blank(&mut out, '\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// The number of `#`s of a raw string literal starting at `i` (`r"`, `r#"`, `br"`, ...).
fn raw_string_at(c: &[char], i: usize) -> Option<usize> {
    if i > 0 && (c[i - 1].is_alphanumeric() || c[i - 1] == '_') {
        return None;
    }
    let mut k = i;
    if c.get(k) == Some(&'b') {
        k += 1;
    }
    if c.get(k) != Some(&'r') {
        return None;
    }
    k += 1;
    let mut hashes = 0;
    while c.get(k) == Some(&'#') {
        hashes += 1;
        k += 1;
    }
    (c.get(k) == Some(&'"')).then_some(hashes)
}

/// One path that may leave its module.
#[derive(Debug, PartialEq)]
struct PathRef {
    /// `crate`, `dpm` or `super` (then `ups` counts the `super`s).
    root: &'static str,
    ups: usize,
    /// The inline `mod NAME { .. }` blocks around it, outermost first.
    inline: Vec<String>,
    /// The first segment after the root (each first segment of a `{..}` group), with its line.
    first: Vec<(String, usize)>,
}

/// Every `crate::`, `super::` and `dpm::` path of a stripped text.
fn paths(text: &str) -> Vec<PathRef> {
    let c: Vec<char> = text.chars().collect();
    let mut line_at = Vec::with_capacity(c.len());
    let mut line = 1;
    for &ch in &c {
        line_at.push(line);
        if ch == '\n' {
            line += 1;
        }
    }
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    let word_at = |i: usize| -> String { c[i..].iter().take_while(|&&ch| ident(ch)).collect() };
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    // The position after `::` (and white space) following position i, if `::` follows.
    let sep_at = |i: usize| {
        let i = skip_ws(i);
        (c.get(i) == Some(&':') && c.get(i + 1) == Some(&':')).then(|| skip_ws(i + 2))
    };
    let mut out = Vec::new();
    let mut depth = 0usize;
    // Inline modules: (name, brace depth inside them).
    let mut mods: Vec<(String, usize)> = Vec::new();
    let mut pending_mod: Option<String> = None;
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        match ch {
            '{' => {
                depth += 1;
                if let Some(m) = pending_mod.take() {
                    mods.push((m, depth));
                }
            }
            '}' => {
                if mods.last().is_some_and(|m| m.1 == depth) {
                    mods.pop();
                }
                depth = depth.saturating_sub(1);
            }
            ';' => pending_mod = None,
            _ => {}
        }
        if !ident(ch) {
            i += 1;
            continue;
        }
        // A word (words are skipped whole, so `i` is at the start of one).
        let w = word_at(i);
        let after = i + w.len();
        let preceded_by_path = {
            let mut k = i;
            while k > 0 && c[k - 1].is_whitespace() {
                k -= 1;
            }
            k >= 2 && c[k - 1] == ':' && c[k - 2] == ':'
        };
        if w == "mod" {
            let name = word_at(skip_ws(after));
            if !name.is_empty() {
                pending_mod = Some(name);
            }
            i = after;
            continue;
        }
        let root: Option<&'static str> = match w.as_str() {
            "crate" => Some("crate"),
            "dpm" if !preceded_by_path => Some("dpm"),
            "super" if !preceded_by_path => Some("super"),
            _ => None,
        };
        let (Some(root), Some(mut j)) = (root, sep_at(after)) else {
            i = after;
            continue;
        };
        let mut ups = 0;
        if root == "super" {
            ups = 1;
            while word_at(j) == "super" {
                let Some(k) = sep_at(j + "super".len()) else {
                    break;
                };
                ups += 1;
                j = k;
            }
        }
        let mut first = Vec::new();
        if c.get(j) == Some(&'{') {
            // A group: the first segment of each item at its top level.
            let mut d = 0;
            let mut expect = true;
            let mut k = j;
            while k < c.len() {
                match c[k] {
                    '{' => d += 1,
                    '}' => {
                        d -= 1;
                        if d == 0 {
                            break;
                        }
                    }
                    ',' if d == 1 => expect = true,
                    ch if d == 1 && expect && ident(ch) => {
                        let name = word_at(k);
                        first.push((name.clone(), line_at[k]));
                        k += name.len();
                        expect = false;
                        continue;
                    }
                    ch if d == 1 && !ch.is_whitespace() => expect = false,
                    _ => {}
                }
                k += 1;
            }
        } else {
            let name = word_at(j);
            if !name.is_empty() {
                first.push((name, line_at[j]));
            }
        }
        first.retain(|(n, _)| n != "self" && n != "super" && n != "crate");
        out.push(PathRef {
            root,
            ups,
            inline: mods.iter().map(|m| m.0.clone()).collect(),
            first,
        });
        i = after;
    }
    out
}

/// The crate root's re-exports: item -> module (`pub use error::{Error, Result}` makes
/// `crate::Error` mean `error`).
fn root_aliases(lib_rs: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for stmt in strip(lib_rs).split(';') {
        let s = stmt.trim();
        let Some(rest) = s.strip_prefix("pub use ") else {
            continue;
        };
        let rest = rest.trim().trim_start_matches("crate::");
        let Some((module, items)) = rest.split_once("::") else {
            continue;
        };
        let items = items.trim().trim_start_matches('{').trim_end_matches('}');
        for item in items.split(',') {
            let item = item.trim();
            let name = item.rsplit(" as ").next().unwrap_or(item);
            let name = name.rsplit("::").next().unwrap_or(name).trim();
            if !name.is_empty() {
                out.insert(name.to_string(), module.trim().to_string());
            }
        }
    }
    out
}

/// The `.rs` files under a folder.
fn rs_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rs_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The import graph of the crate whose sources are in `src` (a `lib.rs` and optionally the
/// binary's `main.rs` with its modules under `src/cli/`).
fn graph_of(src: &Path) -> Graph {
    let mut files = Vec::new();
    rs_files(src, &mut files);
    // A file's module path inside its crate, and whether it belongs to the binary.
    let place = |p: &Path| -> (Vec<String>, bool) {
        let rel = p.strip_prefix(src).unwrap();
        let mut segs: Vec<String> = rel
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let last = segs.pop().unwrap();
        let stem = last.trim_end_matches(".rs").to_string();
        if !(stem == "mod" || (segs.is_empty() && (stem == "lib" || stem == "main"))) {
            segs.push(stem.clone());
        }
        let binary =
            (segs.is_empty() && stem == "main") || segs.first().map(String::as_str) == Some(BINARY);
        (segs, binary)
    };
    let lib_modules: BTreeSet<String> = files
        .iter()
        .map(|p| place(p))
        .filter(|(segs, binary)| !binary && !segs.is_empty())
        .map(|(segs, _)| segs[0].clone())
        .collect();
    let aliases = std::fs::read_to_string(src.join("lib.rs"))
        .map(|t| root_aliases(&t))
        .unwrap_or_default();
    let mut g = Graph::new();
    for f in &files {
        let (segs, binary) = place(f);
        let from = if binary {
            BINARY.to_string()
        } else if let Some(m) = segs.first() {
            m.clone()
        } else {
            continue; // lib.rs: the root declares the modules, it is not one
        };
        g.entry(from.clone()).or_default();
        let text = std::fs::read_to_string(f).unwrap();
        for p in paths(&strip(&text)) {
            // Resolve to a top-level module of the library, if the path leaves `from`.
            let names: Vec<(String, usize)> = match (p.root, binary) {
                ("dpm", true) => p.first.clone(),
                ("crate", false) => p.first.clone(),
                ("super", false) => {
                    let here: Vec<&String> = segs.iter().chain(&p.inline).collect();
                    if p.ups == here.len() {
                        p.first.clone()
                    } else {
                        Vec::new() // inside its own module (or not a valid path)
                    }
                }
                _ => Vec::new(), // the binary's own paths, `dpm` as a local name
            };
            for (n, line) in names {
                let n = aliases.get(&n).cloned().unwrap_or(n);
                if n != from && lib_modules.contains(&n) {
                    let shown = f.strip_prefix(src.parent().unwrap_or(src)).unwrap_or(f);
                    let at = format!("{}:{line}", shown.display());
                    g.entry(from.clone()).or_default().entry(n).or_insert(at);
                }
            }
        }
    }
    g
}

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

// ---------------------------------------------------------------------------------------------
// Cycles

/// The import cycles of a graph: its strongly connected components of two or more modules
/// (Tarjan), each as one concrete cycle `a -> b -> ... -> a`.
fn cycles(g: &Graph) -> Vec<Vec<String>> {
    struct T<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        sccs: Vec<Vec<&'a str>>,
    }
    fn deps<'a>(g: &'a Graph, m: &str) -> impl Iterator<Item = &'a str> {
        g.get(m)
            .into_iter()
            .flat_map(|d| d.keys().map(String::as_str))
    }
    fn visit<'a>(t: &mut T<'a>, m: &'a str) {
        let n = t.index.len();
        t.index.insert(m, n);
        t.low.insert(m, n);
        t.stack.push(m);
        t.on.insert(m);
        for d in deps(t.g, m) {
            if !t.index.contains_key(d) {
                visit(t, d);
                let l = t.low[d].min(t.low[m]);
                t.low.insert(m, l);
            } else if t.on.contains(d) {
                let l = t.index[d].min(t.low[m]);
                t.low.insert(m, l);
            }
        }
        if t.low[m] == t.index[m] {
            let mut scc = Vec::new();
            while let Some(x) = t.stack.pop() {
                t.on.remove(x);
                scc.push(x);
                if x == m {
                    break;
                }
            }
            t.sccs.push(scc);
        }
    }
    let mut t = T {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        sccs: Vec::new(),
    };
    let nodes: BTreeSet<&str> = g
        .iter()
        .flat_map(|(m, d)| std::iter::once(m.as_str()).chain(d.keys().map(String::as_str)))
        .collect();
    for m in nodes {
        if !t.index.contains_key(m) {
            visit(&mut t, m);
        }
    }
    let mut out = Vec::new();
    for scc in t.sccs.iter().filter(|s| s.len() > 1) {
        let inside: BTreeSet<&str> = scc.iter().copied().collect();
        // A shortest way from the component's first module back to itself.
        let start = *inside.iter().next().unwrap();
        let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
        let mut queue = std::collections::VecDeque::from([start]);
        'search: while let Some(m) = queue.pop_front() {
            for d in deps(g, m).filter(|d| inside.contains(d)) {
                if d == start {
                    prev.insert(start, m);
                    break 'search;
                }
                if !prev.contains_key(d) {
                    prev.insert(d, m);
                    queue.push_back(d);
                }
            }
        }
        let mut cycle = vec![start.to_string()];
        let mut m = prev[start];
        while m != start {
            cycle.push(m.to_string());
            m = prev[m];
        }
        cycle.push(start.to_string());
        cycle.reverse();
        out.push(cycle);
    }
    out
}

/// A cycle with the place of each import, for a failure message.
fn describe(g: &Graph, cycle: &[String]) -> String {
    cycle
        .windows(2)
        .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
        .collect::<Vec<_>>()
        .join("\n    ")
}

// ---------------------------------------------------------------------------------------------
// The layers of docs/ARCHITECTURE.md

/// The marker line before the fenced block of layers in docs/ARCHITECTURE.md.
const LAYERS_MARKER: &str = "<!-- layers: read by tests/architecture.rs -->";

/// The layers: (section "core" / "tools", layer number, modules), from the fenced block after
/// [`LAYERS_MARKER`]. Lines `N  a b c   # comment` give a layer; a line `core` or `tools`
/// starts a section; anything else is ignored.
fn documented_layers(doc: &str) -> Vec<(String, u32, Vec<String>)> {
    let at = doc
        .find(LAYERS_MARKER)
        .expect("docs/ARCHITECTURE.md has lost its layers marker");
    let block = doc[at..]
        .split("```")
        .nth(1)
        .expect("a fenced block of layers after the marker");
    let mut section = String::new();
    let mut out = Vec::new();
    for line in block.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let mut words = line.split_whitespace();
        match words.next() {
            Some(s @ ("core" | "tools")) => section = s.to_string(),
            Some(n) if n.parse::<u32>().is_ok() => {
                let mods = words.map(str::to_string).collect();
                out.push((section.clone(), n.parse().unwrap(), mods));
            }
            _ => {}
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The checks on libdpm

#[test]
fn no_import_cycles_between_modules() {
    let g = graph_of(&src_dir());
    let found = cycles(&g);
    let msg: Vec<String> = found.iter().map(|c| describe(&g, c)).collect();
    assert!(
        found.is_empty(),
        "import cycles between top-level modules (docs/ARCHITECTURE.md: a module uses only \
         modules of lower layers):\n    {}",
        msg.join("\n  and\n    ")
    );
}

/// Every use of a tool module by a core module, and every module that is neither.
fn core_using_tools(g: &Graph) -> Vec<String> {
    let mut wrong = Vec::new();
    for (m, deps) in g {
        if !CORE.contains(&m.as_str()) && !TOOLS.contains(&m.as_str()) {
            wrong.push(format!(
                "module {m} is neither core nor tool: add it to CORE or TOOLS in \
                 tests/architecture.rs and to the layers of docs/ARCHITECTURE.md"
            ));
        }
        if CORE.contains(&m.as_str()) {
            for (d, at) in deps.iter().filter(|(d, _)| TOOLS.contains(&d.as_str())) {
                wrong.push(format!("core module {m} uses the tool module {d} ({at})"));
            }
        }
    }
    wrong
}

#[test]
fn the_core_does_not_use_the_tools() {
    let g = graph_of(&src_dir());
    for core in CORE {
        assert!(
            g.contains_key(*core),
            "core module {core} not found in src/"
        );
    }
    let wrong = core_using_tools(&g);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn modules_keep_to_the_documented_layers() {
    let doc_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/ARCHITECTURE.md");
    let doc = std::fs::read_to_string(&doc_path).unwrap();
    let layers = documented_layers(&doc);
    let mut layer_of: BTreeMap<String, (String, u32)> = BTreeMap::new();
    for (section, n, mods) in &layers {
        for m in mods {
            let old = layer_of.insert(m.clone(), (section.clone(), *n));
            assert!(old.is_none(), "{m} is listed twice in the layers");
        }
    }
    let listed = |section: &str| -> BTreeSet<&str> {
        layer_of
            .iter()
            .filter(|(_, (s, _))| s == section)
            .map(|(m, _)| m.as_str())
            .collect()
    };
    assert_eq!(
        listed("core"),
        CORE.iter().copied().collect(),
        "the core of docs/ARCHITECTURE.md and CORE here"
    );
    assert_eq!(
        listed("tools"),
        TOOLS.iter().copied().collect(),
        "the tools of docs/ARCHITECTURE.md and TOOLS here"
    );
    let core_top = CORE.iter().map(|m| layer_of[*m].1).max().unwrap();
    let tools_bottom = TOOLS.iter().map(|m| layer_of[*m].1).min().unwrap();
    assert!(core_top < tools_bottom, "the tools sit above the core");
    let g = graph_of(&src_dir());
    let mut wrong = Vec::new();
    for (m, deps) in &g {
        let Some(&(_, lm)) = layer_of.get(m) else {
            wrong.push(format!("{m} has no layer in docs/ARCHITECTURE.md"));
            continue;
        };
        for (d, at) in deps {
            let ld = layer_of.get(d).map_or(u32::MAX, |l| l.1);
            if ld >= lm {
                wrong.push(format!(
                    "{m} (layer {lm}) uses {d} (layer {ld}) at {at}: a module uses only \
                     modules of lower layers"
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// The checker itself

fn graph(edges: &[(&str, &str)]) -> Graph {
    let mut g = Graph::new();
    for (a, b) in edges {
        g.entry(a.to_string())
            .or_default()
            .insert(b.to_string(), format!("{a}.rs"));
        g.entry(b.to_string()).or_default();
    }
    g
}

/// The cycle finder on small graphs: every cycle is found, each once, as a closed path of
/// real edges; a graph without one passes.
#[test]
fn the_cycle_finder_finds_every_cycle() {
    let dag = graph(&[("a", "b"), ("b", "c"), ("a", "c"), ("d", "a")]);
    assert!(cycles(&dag).is_empty());
    let g = graph(&[
        ("a", "b"),
        ("b", "c"),
        ("c", "a"),
        ("c", "d"),
        ("d", "e"),
        ("e", "d"),
        ("f", "a"),
    ]);
    let found = cycles(&g);
    let mut members: Vec<BTreeSet<&str>> = found
        .iter()
        .map(|c| c.iter().map(String::as_str).collect())
        .collect();
    members.sort();
    let want: Vec<BTreeSet<&str>> = vec![["a", "b", "c"].into(), ["d", "e"].into()];
    assert_eq!(members, want, "{found:?}");
    for c in &found {
        assert_eq!(c.first(), c.last(), "closed: {c:?}");
        for w in c.windows(2) {
            assert!(g[&w[0]].contains_key(&w[1]), "{c:?} is not made of edges");
        }
        assert!(describe(&g, c).contains(" -> "));
    }
}

/// The reader: groups over several lines, nested groups, `super::` chains and inline modules,
/// while comments, strings (raw ones too) and character literals are skipped.
#[test]
fn the_reader_sees_every_kind_of_path() {
    let text = r##"
use crate::{rng, solver::{Solver, kernels}};
use crate::{
    sampler::Sampler,
    guidance as g,
};
use super::sibling;
// crate::plot in a comment
/* crate::bench in /* a nested */ block comment */
const S: &str = "crate::cli in a \" string";
const R: &str = r#"crate::metrics "in" a raw string"#;
const C: char = '"'; fn f<'a>(x: &'a str) -> crate::error::Result<()> { let _ = crate::Error::Shape; }
mod inner { fn g() { super::super::spacing::f(); } }
"##;
    let parsed = paths(&strip(text));
    type Seen<'a> = (&'a str, usize, Vec<(&'a str, usize)>, usize);
    let got: Vec<Seen> = parsed
        .iter()
        .map(|p| {
            let first = p.first.iter().map(|(n, l)| (n.as_str(), *l)).collect();
            (p.root, p.ups, first, p.inline.len())
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("crate", 0, vec![("rng", 2), ("solver", 2)], 0),
            ("crate", 0, vec![("sampler", 4), ("guidance", 5)], 0),
            ("super", 1, vec![("sibling", 7)], 0),
            ("crate", 0, vec![("error", 12)], 0),
            ("crate", 0, vec![("Error", 12)], 0),
            ("super", 2, vec![("spacing", 13)], 1),
        ]
    );
    let aliases =
        root_aliases("pub mod error;\npub use error::{Error, NonFiniteSource as N, Result};\n");
    assert_eq!(aliases["Error"], "error");
    assert_eq!(aliases["N"], "error");
    assert_eq!(aliases["Result"], "error");
}

/// A whole crate in a temporary folder: a cycle spelled over several lines is found and named
/// with the lines of its imports; a core module reaching a tool through `super::super` is
/// caught; the root's re-exports and the binary's `dpm::` paths are edges.
#[test]
fn a_new_cycle_fails() {
    let dir = std::env::temp_dir().join(format!("dpm-architecture-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let write = |rel: &str, text: &str| {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write(
        "lib.rs",
        "pub mod error;\npub mod sampler;\npub mod solver;\npub mod plot;\npub use error::Error;\n",
    );
    write("error.rs", "pub struct Error;\n");
    write(
        "sampler.rs",
        "use crate::solver::Solver;\nfn f() -> crate::Error { todo!() }\n",
    );
    write("solver/mod.rs", "mod keys;\npub struct Solver;\n");
    write(
        "solver/keys.rs",
        "use crate::{\n    error,\n    sampler::Ids, // the cycle\n};\nfn p() { super::super::plot::x(); }\n",
    );
    write("plot.rs", "");
    write("main.rs", "mod cli;\n");
    write("cli/mod.rs", "use dpm::plot;\nuse crate::cli::x;\n");
    let g = graph_of(&dir);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        g["sampler"].contains_key("error"),
        "crate::Error is error: {g:?}"
    );
    assert!(
        g["solver"].contains_key("plot"),
        "super::super climbs out: {g:?}"
    );
    assert_eq!(
        g["cli"].keys().collect::<Vec<_>>(),
        vec!["plot"],
        "the binary's dpm:: paths"
    );
    assert_eq!(
        core_using_tools(&g),
        vec![format!(
            "core module solver uses the tool module plot ({}/solver/keys.rs:5)",
            dir.file_name().unwrap().to_string_lossy()
        )]
    );
    let found = cycles(&g);
    assert_eq!(found.len(), 1, "{g:?}");
    let msg = describe(&g, &found[0]);
    assert!(msg.contains("solver/keys.rs:3"), "{msg}");
    assert!(msg.contains("sampler.rs:1"), "{msg}");
}

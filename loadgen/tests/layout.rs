//! The shape of loadgen/src, checked from the source text: at most [`MAX_TOP_FILES`] `.rs`
//! files directly in `src/` (lib.rs and main.rs count), and no import circle between modules.
//!
//! A module here is a top-level module of the crate (`src/x.rs` or `src/x/`), except inside
//! `client/`, whose submodules (`src/client/y.rs` or `src/client/y/`) are modules of their own
//! and `src/client/mod.rs` is `client`. An edge `a -> b` is a path in `a`'s code that names `b`:
//! `crate::b...`, `$crate::b...`, or `super::...`/`self::...` resolved from the file's place in
//! the tree; names the root re-exports (`crate::run`) count as their module. A parent naming
//! its own children by their bare name (`mod stats; use stats::Stats;` in client/mod.rs) is no
//! edge: a parent holds its children. Comments are skipped; `#[cfg(test)]` code counts, since a
//! test that reaches back up ties the modules together as much as the code does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

/// The rooms a reader should see at the top of loadgen/src.
const MAX_TOP_FILES: usize = 8;

/// The module whose submodules are nodes of their own (the load engine is split in rooms).
const SPLIT: &str = "client";

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The module path of a file: `src/a/b.rs` -> [a, b], `src/a/mod.rs` -> [a], `src/lib.rs` -> [].
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let mut segs: Vec<String> = rel
        .iter()
        .map(|s| s.to_string_lossy().into_owned())
        .collect();
    let last = segs.pop().expect("file name");
    let stem = last.trim_end_matches(".rs");
    if !matches!(stem, "mod" | "lib" | "main") {
        segs.push(stem.to_string());
    }
    segs
}

/// The source without comments (line, doc and block comments) and without the contents of
/// string literals (a `//` or a `crate::x` inside a string is neither a comment nor a path).
/// Line breaks are kept, so line numbers stay right.
fn strip_comments(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let keep_newlines = |out: &mut String, s: &[u8]| {
        for _ in s.iter().filter(|&&c| c == b'\n') {
            out.push('\n');
        }
    };
    while i < b.len() {
        let c = b[i];
        let prev_ident = i > 0 && (b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_');
        if c == b'r' && !prev_ident && matches!(b.get(i + 1), Some(b'"' | b'#')) {
            // A raw string r"..." / r#"..."#: ends at a quote followed by as many hashes.
            let mut j = i + 1;
            while b.get(j) == Some(&b'#') {
                j += 1;
            }
            if b.get(j) == Some(&b'"') {
                let hashes = j - i - 1;
                let mut close = b"\"".to_vec();
                close.extend(std::iter::repeat_n(b'#', hashes));
                let body = j + 1;
                let end = text[body..]
                    .find(std::str::from_utf8(&close).expect("ascii"))
                    .map_or(b.len(), |e| body + e + close.len());
                out.push_str("\"\"");
                keep_newlines(&mut out, &b[i..end]);
                i = end;
                continue;
            }
        }
        if c == b'"' {
            if i > 0 && b[i - 1] == b'\'' && b.get(i + 1) == Some(&b'\'') {
                // The char literal '"'.
                out.push('"');
                i += 1;
                continue;
            }
            let mut j = i + 1;
            while j < b.len() && b[j] != b'"' {
                j += if b[j] == b'\\' { 2 } else { 1 };
            }
            let end = (j + 1).min(b.len());
            out.push_str("\"\"");
            keep_newlines(&mut out, &b[i..end]);
            i = end;
        } else if c == b'/' && b.get(i + 1) == Some(&b'/') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            let start = i;
            let mut depth = 0;
            while i < b.len() {
                if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            keep_newlines(&mut out, &b[start..i]);
        } else {
            let ch = text[i..].chars().next().expect("char boundary");
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// Parses the use tree (or plain path) that starts at `s` after a `crate::`/`super::`/
/// `self::` prefix, giving every path it names (the first few segments are enough here).
fn paths_at(s: &str) -> Vec<Vec<String>> {
    let s = s.trim_start();
    if let Some(rest) = s.strip_prefix('{') {
        // A group: split at the top-level commas up to the matching brace.
        let mut depth = 0;
        let mut items = Vec::new();
        let mut start = 0;
        for (i, c) in rest.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    items.push(&rest[start..i]);
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    items.push(&rest[start..i]);
                    start = i + 1;
                }
                _ => {}
            }
        }
        return items
            .into_iter()
            .filter(|it| !it.trim().is_empty())
            .flat_map(paths_at)
            .collect();
    }
    if s.starts_with('*') {
        // `a::*`: names `a` itself (the empty rest).
        return vec![Vec::new()];
    }
    let name: String = s.chars().take_while(|&c| is_ident(c)).collect();
    if name.is_empty() {
        return Vec::new(); // not a path
    }
    if name == "self" {
        // `a::{self, b}`: names `a` itself.
        return vec![Vec::new()];
    }
    let after = s[name.len()..].trim_start();
    match after.strip_prefix("::") {
        Some(rest) => paths_at(rest)
            .into_iter()
            .map(|mut p| {
                p.insert(0, name.clone());
                p
            })
            .collect(),
        None => vec![vec![name]],
    }
}

struct Crate {
    top: BTreeSet<String>,
    split_children: BTreeSet<String>,
    /// Names lib.rs re-exports, and the module each comes from.
    reexports: BTreeMap<String, String>,
}

impl Crate {
    fn read(src: &Path, files: &[PathBuf]) -> Crate {
        let mut top = BTreeSet::new();
        let mut split_children = BTreeSet::new();
        for f in files {
            let m = module_path(src, f);
            if let Some(first) = m.first() {
                top.insert(first.clone());
                if first == SPLIT {
                    if let Some(second) = m.get(1) {
                        split_children.insert(second.clone());
                    }
                }
            }
        }
        let lib = strip_comments(&fs::read_to_string(src.join("lib.rs")).expect("lib.rs"));
        let mut reexports = BTreeMap::new();
        for stmt in lib.split(';') {
            let stmt = stmt.trim();
            let Some(rest) = stmt.strip_prefix("pub use ") else {
                continue;
            };
            for p in paths_at(rest) {
                if p.len() >= 2 && top.contains(&p[0]) {
                    reexports.insert(p[p.len() - 1].clone(), p[0].clone());
                }
            }
        }
        Crate {
            top,
            split_children,
            reexports,
        }
    }

    /// The node a full module path (from the crate root) belongs to, if it names one.
    fn node(&self, full: &[String]) -> Option<String> {
        let first = full.first()?;
        if !self.top.contains(first) {
            return self.reexports.get(first).cloned();
        }
        if first == SPLIT {
            if let Some(second) = full.get(1) {
                if self.split_children.contains(second) {
                    return Some(format!("{SPLIT}::{second}"));
                }
            }
        }
        Some(first.clone())
    }

    fn node_of_file(&self, m: &[String]) -> Option<String> {
        if m.is_empty() {
            None // lib.rs/main.rs: the root, which holds every module.
        } else {
            self.node(m)
        }
    }
}

/// Every edge (from, to) with one place that makes it, from the source files under `src`.
fn import_graph(src: &Path) -> BTreeMap<(String, String), String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let krate = Crate::read(src, &files);
    let mut edges = BTreeMap::new();
    for f in &files {
        let m = module_path(src, f);
        let Some(from) = krate.node_of_file(&m) else {
            continue;
        };
        let text = strip_comments(&fs::read_to_string(f).expect("read source"));
        let inline = inline_modules(&text);
        for (line_no, line_start) in line_starts(&text) {
            // Inside `mod tests { ... }`, `super::` is the file's own module.
            let mut m = m.clone();
            m.extend(inline[line_no - 1].iter().cloned());
            let line_end = text[line_start..]
                .find('\n')
                .map_or(text.len(), |e| line_start + e);
            let line = &text[line_start..line_end];
            for (at, _) in line.match_indices("::") {
                let before = &line[..at];
                let word: String = before
                    .chars()
                    .rev()
                    .take_while(|&c| is_ident(c))
                    .collect::<String>()
                    .chars()
                    .rev()
                    .collect();
                let prefix_start = at - word.len();
                let prev = line[..prefix_start].chars().next_back();
                if prev.is_some_and(|c| is_ident(c) || c == ':') {
                    continue; // a later segment of a longer path (`a::super` does not occur)
                }
                let base: Vec<String> = match word.as_str() {
                    "crate" => Vec::new(),
                    "self" => m.clone(),
                    "super" => {
                        // `super::super::x`: climb once per `super`.
                        let mut base = m.clone();
                        base.pop();
                        base
                    }
                    _ => continue,
                };
                // The rest may span lines (a `use crate::{...}` group): parse from here on.
                let rest = &text[line_start + at + 2..];
                let (base, rest) = climb_supers(base, rest, word == "super");
                for p in paths_at(rest) {
                    let mut full = base.clone();
                    full.extend(p);
                    if let Some(to) = krate.node(&full) {
                        if to != from {
                            let place = format!(
                                "{}:{}",
                                f.strip_prefix(src.parent().expect("crate dir"))
                                    .expect("under crate")
                                    .display(),
                                line_no
                            );
                            edges.entry((from.clone(), to)).or_insert(place);
                        }
                    }
                }
            }
        }
    }
    edges
}

/// For each line, the inline modules (`mod tests {`) open at its start, outermost first.
fn inline_modules(text: &str) -> Vec<Vec<String>> {
    let mut per_line = vec![Vec::new()];
    let mut open: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut pending: Option<String> = None;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => per_line.push(open.iter().map(|(n, _)| n.clone()).collect()),
            '\'' if chars.get(i + 2) == Some(&'\'') => i += 2, // a char literal like '{'
            '{' => {
                depth += 1;
                if let Some(name) = pending.take() {
                    open.push((name, depth));
                }
            }
            '}' => {
                if open.last().is_some_and(|(_, d)| *d == depth) {
                    open.pop();
                }
                depth = depth.saturating_sub(1);
            }
            ';' => pending = None, // `mod x;`: a file module, not inline
            'm' if (i == 0 || !is_ident(chars[i - 1]))
                && chars[i..].starts_with(&['m', 'o', 'd', ' ']) =>
            {
                let name: String = chars[i + 4..]
                    .iter()
                    .skip_while(|c| c.is_whitespace())
                    .take_while(|&&c| is_ident(c))
                    .collect();
                if !name.is_empty() {
                    pending = Some(name);
                }
            }
            _ => {}
        }
        i += 1;
    }
    per_line
}

/// `super::super::x`: each further `super::` climbs one more level.
fn climb_supers(mut base: Vec<String>, mut rest: &str, is_super: bool) -> (Vec<String>, &str) {
    if is_super {
        while let Some(r) = rest.strip_prefix("super::") {
            base.pop();
            rest = r;
        }
    }
    (base, rest)
}

fn line_starts(text: &str) -> Vec<(usize, usize)> {
    let mut v = vec![(1, 0)];
    for (i, c) in text.char_indices() {
        if c == '\n' {
            v.push((v.len() + 1, i + 1));
        }
    }
    v
}

/// The strongly connected components with more than one node (Tarjan), each sorted.
fn cycles(edges: &BTreeMap<(String, String), String>) -> Vec<Vec<String>> {
    struct T<'a> {
        adj: &'a BTreeMap<&'a str, Vec<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(t: &mut T<'a>, v: &'a str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for &w in &t.adj[v] {
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().expect("on stack");
                t.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges.keys() {
        adj.entry(a).or_default().push(b);
        adj.entry(b).or_default();
    }
    let mut t = T {
        adj: &adj,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in adj.keys() {
        if !t.index.contains_key(v) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// One circle through `start` inside `comp`, as `a -> b -> ... -> a` with the place of each
/// edge (breadth-first, so the shortest).
fn one_circle(
    edges: &BTreeMap<(String, String), String>,
    comp: &[String],
    start: &str,
) -> Vec<String> {
    let inside: BTreeSet<&str> = comp.iter().map(String::as_str).collect();
    let mut prev: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    let mut seen = BTreeSet::from([start]);
    while let Some(v) = queue.pop_front() {
        for (a, b) in edges.keys() {
            if a != v || !inside.contains(b.as_str()) {
                continue;
            }
            if b == start {
                let mut path = vec![(v, start)];
                let mut cur = v;
                while cur != start {
                    let p = prev[cur];
                    path.push((p, cur));
                    cur = p;
                }
                path.reverse();
                return path
                    .into_iter()
                    .map(|(a, b)| {
                        let at = &edges[&(a.to_string(), b.to_string())];
                        format!("{a} -> {b} ({at})")
                    })
                    .collect();
            }
            if seen.insert(b) {
                prev.insert(b, v);
                queue.push_back(b);
            }
        }
    }
    unreachable!("a strongly connected component has a circle through each node")
}

#[test]
fn at_most_eight_files_at_the_top_of_src() {
    let mut top: Vec<String> = fs::read_dir(src_dir())
        .expect("read src")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert!(
        top.len() <= MAX_TOP_FILES,
        "{} .rs files directly in loadgen/src (at most {MAX_TOP_FILES}): {}",
        top.len(),
        top.join(" ")
    );
}

#[test]
fn no_import_circle_between_modules() {
    let edges = import_graph(&src_dir());
    // The whole graph, for `cargo test --test layout -- --nocapture`.
    for ((a, b), at) in &edges {
        println!("{a} -> {b} ({at})");
    }
    let found = cycles(&edges);
    let mut msg = String::new();
    for comp in &found {
        let _ = writeln!(msg, "circle among {{{}}}:", comp.join(", "));
        for step in one_circle(&edges, comp, &comp[0]) {
            let _ = writeln!(msg, "    {step}");
        }
    }
    assert!(found.is_empty(), "{} import circle(s):\n{msg}", found.len());
}

/// The checker itself: a circle it must see, one it must not invent, and the path forms it
/// reads (groups over lines, `super::`, re-exports of the root, comments).
#[test]
fn the_checker_sees_a_circle_and_only_a_circle() {
    let dir = std::env::temp_dir().join(format!("loadgen-layout-{}", std::process::id()));
    let src = dir.join("src");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(src.join("client")).expect("mkdir");
    let write = |p: &str, s: &str| fs::write(src.join(p), s).expect("write");
    write(
        "lib.rs",
        "pub mod a;\npub mod b;\npub mod client;\npub use a::{run, other};\n",
    );
    write(
        "a.rs",
        "use crate::{\n    b::thing,\n};\npub fn run() {}\npub fn other() {}\n",
    );
    write(
        "b.rs",
        "// crate::client::x in a comment is no edge\nfn f() { let u = \"http://crate::a\"; }\n",
    );
    write(
        "client/mod.rs",
        "mod x;\nmod y;\nuse x::X;\nuse crate::b::{self as bee};\n",
    );
    write(
        "client/x.rs",
        "use super::y::Y;\nuse crate::a::*;\n#[cfg(test)]\nmod tests {\n    use super::*;\n    \
         fn t() { let _ = '{'; }\n}\nfn after() { super::y::f(); }\n",
    );
    write(
        "client/y.rs",
        "use super::Thing;\nfn g() { crate::run(); }\n",
    );
    let edges = import_graph(&src);
    let names: BTreeSet<(String, String)> = edges.keys().cloned().collect();
    let want: BTreeSet<(String, String)> = [
        ("a", "b"),
        ("client", "b"),
        ("client::x", "a"),
        ("client::x", "client::y"),
        ("client::y", "client"),
        ("client::y", "a"),
    ]
    .into_iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    assert_eq!(names, want);
    assert!(cycles(&edges).is_empty());
    // Now b reaches back up to a: a circle a -> b -> a.
    write("b.rs", "pub fn thing() { crate::a::run(); }\n");
    let edges = import_graph(&src);
    assert_eq!(cycles(&edges), vec![vec!["a".to_string(), "b".to_string()]]);
    // And client::y -> client::x closes x -> y -> x.
    write("client/y.rs", "use super::super::client::x::X;\n");
    let edges = import_graph(&src);
    let found = cycles(&edges);
    assert!(
        found.contains(&vec!["client::x".to_string(), "client::y".to_string()]),
        "{found:?}"
    );
    let _ = fs::remove_dir_all(&dir);
}

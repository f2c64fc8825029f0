//! The sim's import rules, checked on the source text: the kernel layer (src/kernel/) never
//! names the WSK provider above it (src/wsk/) nor the test API over both (run, faults,
//! accounting); the provider never names the test API either. Where the kernel must tell
//! the provider something, the provider installs a hook at init instead.

#![deny(clippy::undocumented_unsafe_blocks)]

use std::path::{Path, PathBuf};

/// Modules of the layers above the kernel, as `crate::` paths name them.
const ABOVE_KERNEL: &[&str] = &["wsk", "run", "faults", "accounting"];
/// Modules of the test API, above the provider.
const ABOVE_WSK: &[&str] = &["run", "faults", "accounting"];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The source without comments and with whitespace dropped (kept as one space between two
/// words), so a path split over lines or a grouped `use crate::{...}` reads as one string.
fn squeeze(src: &str) -> String {
    let word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = String::new();
    let mut gap = false;
    for c in src
        .lines()
        .flat_map(|l| l.split("//").next().unwrap_or("").chars().chain(['\n']))
    {
        if c.is_whitespace() {
            gap = true;
            continue;
        }
        if gap && out.chars().next_back().is_some_and(word) && word(c) {
            out.push(' ');
        }
        gap = false;
        out.push(c);
    }
    out
}

/// Every module of `banned` that `src` names through a crate-rooted path: `crate::m::..`,
/// `crate::{.., m::.., ..}`, or `super::m` from `is_layer_root` (a layer's mod.rs, whose
/// `super` is the crate).
fn banned_paths(src: &str, banned: &[&str], is_layer_root: bool) -> Vec<String> {
    let s = squeeze(src);
    let mut hits = Vec::new();
    let mut roots = vec!["crate::"];
    if is_layer_root {
        roots.push("super::");
    }
    for root in roots {
        let mut from = 0;
        while let Some(at) = s[from..].find(root) {
            let start = from + at + root.len();
            from = start;
            // The word before `root` must not be a longer identifier (e.g. `my_crate::`).
            let before = s[..start - root.len()].chars().next_back();
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let rest = &s[start..];
            let names: Vec<&str> = if let Some(group) = rest.strip_prefix('{') {
                // Top-level names of the group, up to its matching brace.
                let mut depth = 1;
                let mut end = group.len();
                for (i, c) in group.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = i;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                let mut names = Vec::new();
                let mut depth = 0;
                let mut item_start = 0;
                let g = &group[..end];
                for (i, c) in g.char_indices() {
                    match c {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            names.push(&g[item_start..i]);
                            item_start = i + 1;
                        }
                        _ => {}
                    }
                }
                names.push(&g[item_start..]);
                names
            } else {
                vec![rest]
            };
            for n in names {
                let head: String = n
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if banned.contains(&head.as_str()) {
                    hits.push(format!("{root}{head}"));
                }
            }
        }
    }
    hits
}

fn check_layer(dir: &str, banned: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(dir);
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    assert!(!files.is_empty(), "no sources under {}", root.display());
    let mut bad = Vec::new();
    for f in files {
        let src = std::fs::read_to_string(&f).expect("read source");
        let is_root = f.parent() == Some(root.as_path()) && f.ends_with("mod.rs");
        for hit in banned_paths(&src, banned, is_root) {
            bad.push(format!("{}: names {hit}", f.display()));
        }
    }
    bad
}

#[test]
fn kernel_layer_never_imports_the_layers_above() {
    let bad = check_layer("kernel", ABOVE_KERNEL);
    assert!(bad.is_empty(), "upward imports:\n  {}", bad.join("\n  "));
}

#[test]
fn wsk_layer_never_imports_the_test_api() {
    let bad = check_layer("wsk", ABOVE_WSK);
    assert!(bad.is_empty(), "upward imports:\n  {}", bad.join("\n  "));
}

/// The scanner finds each way an upward import can be written, and passes the lawful ones.
#[test]
fn the_scan_catches_upward_imports() {
    let found = |src: &str| banned_paths(src, ABOVE_KERNEL, false);
    assert_eq!(found("crate::wsk::socket::forget(a);"), ["crate::wsk"]);
    assert_eq!(
        found("use crate::wsk::socket::{self, Sock};"),
        ["crate::wsk"]
    );
    assert_eq!(
        found("use crate::{\n    kernel::irp,\n    wsk::complete, // provider\n};"),
        ["crate::wsk"]
    );
    assert_eq!(
        found("use crate::{kernel::{irp, pool}, run::init};"),
        ["crate::run"]
    );
    assert_eq!(found("crate::faults::kill_socket(a)"), ["crate::faults"]);
    assert_eq!(
        banned_paths("super::wsk::reset();", ABOVE_KERNEL, true),
        ["super::wsk"]
    );
    // Lawful: the kernel's own modules, wsk_sys, comments, longer identifiers.
    assert!(found("use crate::kernel::irql; use wsk_sys::PIRP;").is_empty());
    assert!(found("// crate::wsk::socket::forget is installed as a hook").is_empty());
    assert!(found("my_crate::wsk::x();").is_empty());
    assert!(banned_paths("super::wsk::reset();", ABOVE_KERNEL, false).is_empty());
}

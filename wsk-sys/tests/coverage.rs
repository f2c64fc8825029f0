//! Every `pub struct` / `pub union` of the crate must have its layout checked by one of
//! the layout tests (named there as `k::NAME`), except the zero-sized opaque handles.
#![cfg(target_arch = "x86_64")]

use std::collections::BTreeSet;
use std::path::Path;

/// Opaque types (only ever behind pointers; no layout to check).
const OPAQUE: &[&str] = &[
    "KPROCESS",
    "KTHREAD",
    "OBJECT_TYPE",
    "ACCESS_STATE",
    "IO_WORKITEM",
    "FILE_OBJECT",
];

fn read_dir(dir: &Path) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "rs") {
            all.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    all
}

#[test]
fn every_struct_has_a_layout_test() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = read_dir(&root.join("src"));
    let tests = read_dir(&root.join("tests"));
    let mut defined = BTreeSet::new();
    for line in src.lines() {
        let l = line.trim_start();
        for kw in ["pub struct ", "pub union "] {
            if let Some(rest) = l.strip_prefix(kw) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                defined.insert(name);
            }
        }
    }
    // The opaque types come from a macro: make sure the list above is not stale.
    for o in OPAQUE {
        assert!(src.contains(o), "opaque type {o} no longer exists");
    }
    assert!(defined.len() > 60, "parsed only {} types", defined.len());
    let untested: Vec<_> = defined
        .iter()
        .filter(|n| !OPAQUE.contains(&n.as_str()))
        .filter(|n| {
            let pat = format!("k::{n}");
            !tests.match_indices(&pat).any(|(i, _)| {
                let next = tests[i + pat.len()..].chars().next().unwrap_or(' ');
                !(next.is_alphanumeric() || next == '_')
            })
        })
        .collect();
    assert!(
        untested.is_empty(),
        "structs without a layout test: {untested:?}"
    );
}

//! The driver's rooms and who may import whom (see the table in src/lib.rs). A text scan of
//! `use` lines and `crate::` paths: enough for a crate whose modules are named once each.
//!
//! - `serve/` (the served sockets) never imports `load/` (the load jobs).
//! - `logic/` (the platform-free decisions) imports nothing of wsk-sys.
//! - `wsk/` (the WSK helpers) imports neither `serve/` nor `load/`.
//! - `kernel/` (the ntoskrnl wrappers) imports none of the rooms above it.

use std::path::{Path, PathBuf};

/// One forbidden import: files under `room` may not mention `needle` in code.
struct Rule {
    room: &'static str,
    needle: &'static str,
}

const RULES: &[Rule] = &[
    Rule {
        room: "serve",
        needle: "crate::load",
    },
    Rule {
        room: "serve",
        needle: "super::load",
    },
    Rule {
        room: "logic",
        needle: "wsk_sys",
    },
    Rule {
        room: "logic",
        needle: "crate::wsk",
    },
    Rule {
        room: "logic",
        needle: "crate::kernel",
    },
    Rule {
        room: "wsk",
        needle: "crate::serve",
    },
    Rule {
        room: "wsk",
        needle: "crate::load",
    },
    Rule {
        room: "wsk",
        needle: "crate::driver",
    },
    Rule {
        room: "kernel",
        needle: "crate::serve",
    },
    Rule {
        room: "kernel",
        needle: "crate::load",
    },
    Rule {
        room: "kernel",
        needle: "crate::wsk",
    },
    Rule {
        room: "kernel",
        needle: "crate::logic",
    },
    Rule {
        room: "kernel",
        needle: "crate::driver",
    },
];

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

/// Code lines of a file that mention `needle` (comments and doc comments skipped).
fn offending_lines(text: &str, needle: &str) -> Vec<String> {
    text.lines()
        .map(str::trim_start)
        .filter(|l| !l.starts_with("//"))
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Every violation of `rules` under `src`, as "file: line".
fn violations(src: &Path, rules: &[Rule]) -> Vec<String> {
    let mut out = Vec::new();
    for r in rules {
        let dir = src.join(r.room);
        assert!(
            dir.is_dir(),
            "room {} missing under {}",
            r.room,
            src.display()
        );
        let mut files = Vec::new();
        rs_files(&dir, &mut files);
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            for l in offending_lines(&text, r.needle) {
                out.push(format!("{} ({} -> {}): {l}", f.display(), r.room, r.needle));
            }
        }
    }
    out
}

#[test]
fn rooms_import_only_downward() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let v = violations(&src, RULES);
    assert!(v.is_empty(), "import rules broken:\n{}", v.join("\n"));
}

/// The scan itself can fail: a copy of the tree with one forbidden import added is refused.
#[test]
fn a_forbidden_import_is_caught() {
    let tmp = std::env::temp_dir().join(format!("wskecho-layout-{}", std::process::id()));
    for room in ["serve", "logic", "wsk", "kernel"] {
        std::fs::create_dir_all(tmp.join(room)).unwrap();
    }
    std::fs::write(
        tmp.join("serve/a.rs"),
        "// crate::load in a comment is fine\nuse crate::load::Job;\n",
    )
    .unwrap();
    std::fs::write(tmp.join("logic/b.rs"), "use wsk_sys::NTSTATUS;\n").unwrap();
    std::fs::write(
        tmp.join("wsk/c.rs"),
        "fn f() { crate::serve::conn::pump(); }\n",
    )
    .unwrap();
    std::fs::write(
        tmp.join("kernel/d.rs"),
        "//! crate::logic mentioned in docs only\n",
    )
    .unwrap();
    let v = violations(&tmp, RULES);
    std::fs::remove_dir_all(&tmp).unwrap();
    assert_eq!(v.len(), 3, "{v:#?}");
    assert!(v.iter().any(|l| l.contains("use crate::load::Job")));
    assert!(v.iter().any(|l| l.contains("use wsk_sys::NTSTATUS")));
    assert!(v.iter().any(|l| l.contains("crate::serve::conn::pump")));
}

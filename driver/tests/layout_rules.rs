//! The driver's rooms and who may import whom (see the table in src/lib.rs). A text scan of
//! `use` lines and `crate::` paths: enough for a crate whose modules are named once each.
//!
//! - `serve/` (the served sockets) never imports `load/` (the load jobs).
//! - `conn/` (the TCP engine) imports neither `serve/` nor `load/`: both attach connections to
//!   it, it knows neither.
//! - `conn/`, `serve/` and `load/` (the data path) never import `driver` (the root state): they
//!   hold `&DataPath`, so a callback cannot reach the control path's state.
//! - `logic` (the platform-free decisions) is its own crate, `wskecho-logic`: it depends on
//!   the control crate only (so it cannot name wsk-sys, `kernel` or `wsk`: cargo refuses) and
//!   forbids unsafe code; checked below from its manifest and its lib.rs.
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
        room: "conn",
        needle: "crate::serve",
    },
    Rule {
        room: "conn",
        needle: "crate::load",
    },
    Rule {
        room: "conn",
        needle: "crate::driver",
    },
    Rule {
        room: "serve",
        needle: "crate::driver",
    },
    Rule {
        room: "load",
        needle: "crate::driver",
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
    for r in RULES {
        std::fs::create_dir_all(tmp.join(r.room)).unwrap();
    }
    // The data path reaching up to the root state.
    std::fs::write(tmp.join("load/e.rs"), "use crate::driver::Driver;\n").unwrap();
    std::fs::write(
        tmp.join("serve/a.rs"),
        "// crate::load in a comment is fine\nuse crate::load::Job;\n",
    )
    .unwrap();
    std::fs::write(tmp.join("kernel/b.rs"), "use crate::logic::tcp;\n").unwrap();
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
    assert_eq!(v.len(), 4, "{v:#?}");
    assert!(v.iter().any(|l| l.contains("use crate::load::Job")));
    assert!(v.iter().any(|l| l.contains("use crate::driver::Driver")));
    assert!(v.iter().any(|l| l.contains("use crate::logic::tcp")));
    assert!(v.iter().any(|l| l.contains("crate::serve::conn::pump")));
}

/// The crates `wskecho-logic`'s manifest lists under `[dependencies]` (other tables skipped).
fn dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
            continue;
        }
        if inside && !line.is_empty() && !line.starts_with('#') {
            if let Some((name, _)) = line.split_once('=') {
                out.push(name.trim().to_string());
            }
        }
    }
    out
}

/// The logic crate holds decisions only: no wsk-sys (nor anything else that could reach the
/// kernel) in its dependencies, and no unsafe code.
#[test]
fn logic_crate_depends_on_control_only_and_forbids_unsafe() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../wskecho-logic");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert_eq!(dependencies(&manifest), ["control"]);
    let lib = std::fs::read_to_string(root.join("src/lib.rs")).unwrap();
    assert!(
        lib.lines().any(|l| l.trim() == "#![forbid(unsafe_code)]"),
        "wskecho-logic/src/lib.rs must forbid unsafe code"
    );
}

#[test]
fn a_dependency_added_to_logic_is_seen() {
    let m = "[package]\nname = \"x\"\n[dependencies]\ncontrol = { path = \"../control\" }\n\
             # comment\nwsk-sys = { path = \"../wsk-sys\" }\n[dev-dependencies]\nproptest = \"1\"\n";
    assert_eq!(dependencies(m), ["control", "wsk-sys"]);
}

/// The first mention of a WSK contract rule ID (W.., C.., G.., docs/wsk-contract.md) in a
/// file's comments, and the first mention of a rule in a comment, in the order they appear.
fn first_rule_mentions(text: &str) -> Vec<(String, bool)> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for line in text.lines() {
        let Some(at) = line.find("//") else { continue };
        let comment = &line[at..];
        let b = comment.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let starts = matches!(b[i], b'W' | b'C' | b'G')
                && (i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_'));
            if starts {
                let digits = b[i + 1..].iter().take_while(|c| c.is_ascii_digit()).count();
                let end = i + 1 + digits;
                let word_ends = b
                    .get(end)
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
                if (1..=3).contains(&digits) && word_ends {
                    let id = comment[i..end].to_string();
                    if seen.insert(id.clone()) {
                        out.push((id, b.get(end) == Some(&b':')));
                    }
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
    }
    out
}

/// Issue 19 item 6: a rule ID is read without the table: its first mention in each file says
/// the rule in a few words ("C22: no call may be running at close").
#[test]
fn a_rules_first_mention_in_a_file_says_what_it_is() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    // The driver's own sources and the logic crate it re-exports.
    rs_files(&dir.join("src"), &mut files);
    rs_files(&dir.join("../wskecho-logic/src"), &mut files);
    assert!(!files.is_empty());
    let mut bare = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        for (id, words) in first_rule_mentions(&text) {
            if !words {
                bare.push(format!("{}: {id}", f.display()));
            }
        }
    }
    assert!(
        bare.is_empty(),
        "first mentions without words:\n  {}",
        bare.join("\n  ")
    );
}

#[test]
fn a_bare_first_mention_is_caught() {
    let m = first_rule_mentions("// rule C22 applies\n// C22: no call may be running at close\n");
    assert_eq!(m, [("C22".to_string(), false)]);
    let m = first_rule_mentions("let c22 = 1; // W70: close waits for callbacks, then W70\n");
    assert_eq!(m, [("W70".to_string(), true)]);
}

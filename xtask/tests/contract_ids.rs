//! Every WSK rule ID the repository cites (W12, C5, G15, ...) is defined in
//! docs/wsk-contract.md, and every definition there has a source.
//!
//! The scan covers the text of every `.rs` and `.md` file outside `target/` and hidden
//! folders: comments, doc comments and the violation messages wsk-sim prints alike.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const CONTRACT: &str = "docs/wsk-contract.md";
/// This file: its test data cites undefined IDs on purpose.
const SELF: &str = "xtask/tests/contract_ids.rs";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Rule IDs in `text`: a W, C or G with one or two digits, standing as a word of its own
/// (not inside an identifier or a hex number such as 0xC5).
fn cited_ids(text: &str) -> Vec<(usize, String)> {
    let is_word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut line = 1;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\n' {
            line += 1;
        }
        if !matches!(b, b'W' | b'C' | b'G') || (i > 0 && is_word(bytes[i - 1])) {
            continue;
        }
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        let end = i + 1 + digits;
        if (1..=2).contains(&digits) && bytes.get(end).is_none_or(|&c| !is_word(c)) {
            out.push((line, text[i..end].to_owned()));
        }
    }
    out
}

/// IDs the contract defines: table rows that start `| W12 |`, with the row text.
fn defined_ids(contract: &str) -> BTreeMap<String, String> {
    contract
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| ")?;
            let (id, _) = rest.split_once(" |")?;
            let ok = id.len() >= 2
                && id.len() <= 3
                && matches!(id.as_bytes()[0], b'W' | b'C' | b'G')
                && id[1..].bytes().all(|c| c.is_ascii_digit());
            ok.then(|| (id.to_owned(), l.to_owned()))
        })
        .collect()
}

/// `path:line: ID` for every cited ID the contract does not define.
fn undefined(files: &[(String, String)], defined: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, text) in files {
        for (line, id) in cited_ids(text) {
            if !defined.contains_key(&id) {
                out.push(format!("{path}:{line}: {id}"));
            }
        }
    }
    out
}

/// Every `.rs` and `.md` file of the repository (relative path, text), but the contract itself
/// and this file.
fn repository_files() -> Vec<(String, String)> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, String)>) {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for p in entries {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "target" {
                continue;
            }
            if p.is_dir() {
                walk(&p, root, out);
            } else if p
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("rs") || e.eq_ignore_ascii_case("md"))
            {
                let rel = p
                    .strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                if rel != CONTRACT && rel != SELF {
                    let text = std::fs::read_to_string(&p)
                        .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                    out.push((rel, text));
                }
            }
        }
    }
    let root = root();
    let mut out = Vec::new();
    walk(&root, &root, &mut out);
    out
}

fn contract() -> String {
    std::fs::read_to_string(root().join(CONTRACT)).expect("docs/wsk-contract.md")
}

#[test]
fn every_cited_rule_is_defined() {
    let defined = defined_ids(&contract());
    let files = repository_files();
    let cited: usize = files.iter().map(|(_, t)| cited_ids(t).len()).sum();
    assert!(
        files.len() > 50 && cited > 100,
        "the scan found {} files and {cited} citations: is it looking at the repository?",
        files.len()
    );
    let missing = undefined(&files, &defined);
    assert!(
        missing.is_empty(),
        "rule IDs cited but not defined in {CONTRACT}:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_definition_is_unique_and_has_a_source() {
    let text = contract();
    let rows: Vec<&str> = text
        .lines()
        .filter(|l| {
            let id = l.strip_prefix("| ").and_then(|r| r.split_once(" |"));
            id.is_some_and(|(id, _)| defined_ids(&format!("| {id} |")).len() == 1)
        })
        .collect();
    let defined = defined_ids(&text);
    assert_eq!(rows.len(), defined.len(), "an ID is defined twice");
    for (letter, last) in [('W', 75), ('C', 38), ('G', 20)] {
        for n in 1..=last {
            assert!(defined.contains_key(&format!("{letter}{n}")), "{letter}{n}");
        }
    }
    for (id, row) in &defined {
        let source = row.trim_end_matches('|').rsplit(" | ").next().unwrap();
        assert!(
            source.contains("https://") || source.contains("wsk.h"),
            "{id} has no source: {row}"
        );
    }
}

#[test]
fn the_scan_finds_an_undefined_id() {
    let defined = defined_ids("| W1 | rule | — | https://learn.microsoft.com/x |\n| C5 | rule |\n");
    assert_eq!(defined.len(), 2);
    let files = vec![
        (
            "a.rs".to_owned(),
            "// W1: fine\nlet x = 0xC5; // C5 fine, W1x and MW1 are no citations\n".to_owned(),
        ),
        (
            "b.rs".to_owned(),
            "fn f() {}\n/// needs G15 and W1\n\"message (C50)\"".to_owned(),
        ),
    ];
    assert_eq!(undefined(&files, &defined), ["b.rs:2: G15", "b.rs:3: C50"]);
    assert_eq!(
        cited_ids("W1,C22/W70 (G2) W123 xW1"),
        [
            (1, "W1".to_owned()),
            (1, "C22".to_owned()),
            (1, "W70".to_owned()),
            (1, "G2".to_owned())
        ]
    );
}

#[test]
fn the_real_tree_would_fail_without_a_definition() {
    // Remove one cited definition from the contract: the scan of the real tree must name it.
    let files = repository_files();
    let cited: BTreeSet<String> = files
        .iter()
        .flat_map(|(_, t)| cited_ids(t).into_iter().map(|(_, id)| id))
        .collect();
    let mut defined = defined_ids(&contract());
    let victim = cited.iter().next().expect("the tree cites rules").clone();
    defined.remove(&victim);
    let missing = undefined(&files, &defined);
    assert!(
        !missing.is_empty() && missing.iter().all(|m| m.ends_with(&format!(": {victim}"))),
        "{missing:?}"
    );
}

//! The files an INF asks to copy: every key of `[SourceDisksFiles]` (and its
//! platform-decorated variants) and every file named by a `CopyFiles` directive, either
//! directly (`CopyFiles = @wskecho.sys`) or through the file-list sections it names.
//! Reference: <https://learn.microsoft.com/windows-hardware/drivers/install/inf-copyfiles-directive>

use std::collections::{BTreeMap, BTreeSet};

/// Sections of an INF: lower-cased name -> lines (comments stripped, non-empty).
fn sections(text: &str) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut current: Option<String> = None;
    for raw in text.lines() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            let name = name.trim().to_ascii_lowercase();
            out.entry(name.clone()).or_default();
            current = Some(name);
        } else if let Some(c) = &current {
            out.entry(c.clone()).or_default().push(line.to_owned());
        }
    }
    out
}

/// Removes a `;` comment outside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, ch) in line.char_indices() {
        match ch {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_owned()
}

/// Replaces `%key%` tokens with `[Strings]` values.
fn expand(s: &str, strings: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(a) = rest.find('%') {
        out.push_str(&rest[..a]);
        let after = &rest[a + 1..];
        if let Some(b) = after.find('%') {
            let key = after[..b].to_ascii_lowercase();
            out.push_str(strings.get(&key).map_or(&after[..b], String::as_str));
            rest = &after[b + 1..];
        } else {
            out.push_str(&rest[a..]);
            rest = "";
        }
    }
    out.push_str(rest);
    out
}

/// Every file name (lower-cased) that the INF copies or lists as a source file.
pub fn referenced_files(text: &str) -> BTreeSet<String> {
    let secs = sections(text);
    let mut strings = BTreeMap::new();
    for (name, lines) in &secs {
        if name.starts_with("strings") {
            for l in lines {
                if let Some((k, v)) = l.split_once('=') {
                    strings.insert(k.trim().to_ascii_lowercase(), unquote(v));
                }
            }
        }
    }
    let mut files = BTreeSet::new();
    for (name, lines) in &secs {
        if name == "sourcedisksfiles" || name.starts_with("sourcedisksfiles.") {
            for l in lines {
                let key = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
                files.insert(expand(&unquote(key), &strings).to_ascii_lowercase());
            }
        }
        for l in lines {
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if !k.trim().eq_ignore_ascii_case("CopyFiles") {
                continue;
            }
            for item in v.split(',') {
                let item = unquote(item);
                if let Some(file) = item.strip_prefix('@') {
                    files.insert(expand(file, &strings).to_ascii_lowercase());
                } else if let Some(list) = secs.get(&item.to_ascii_lowercase()) {
                    for entry in list {
                        // destination-file-name[,source-file-name][,...]
                        let mut fields = entry.split(',').map(unquote);
                        let dest = fields.next().unwrap_or_default();
                        let src = fields.next().filter(|s| !s.is_empty());
                        let name = src.unwrap_or(dest);
                        if !name.is_empty() {
                            files.insert(expand(&name, &strings).to_ascii_lowercase());
                        }
                    }
                }
            }
        }
    }
    files
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
[Version]
Signature = "$WINDOWS NT$"
CatalogFile = wskecho.cat ; produced by inf2cat on Windows, not copied

[SourceDisksNames]
1 = %DiskName%,,,""

[SourceDisksFiles]
wskecho.sys = 1,,

[DefaultInstall.NTamd64]
CopyFiles = Drivers_Dir, @%HelperFile%

[Drivers_Dir]
wskecho.sys ; the driver

[Strings]
DiskName = "wskecho disk"
HelperFile = "extra.dll"
"#;

    #[test]
    fn finds_source_and_copied_files() {
        let files = referenced_files(SAMPLE);
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec!["extra.dll".to_owned(), "wskecho.sys".to_owned()]
        );
    }

    #[test]
    fn comments_and_case() {
        let files = referenced_files("[sourcedisksfiles.amd64]\n; x.sys = 1\nWSKECHO.SYS=1\n");
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec!["wskecho.sys".to_owned()]
        );
    }
}

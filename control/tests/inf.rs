//! inf/wskecho.inf: a small INF reader checks the sections a non-PnP (primitive) driver
//! package needs, the service values, that the Parameters equal control's defaults (parsed
//! by the same registry parser the driver uses), and that wskecho.sys is the only file named.
#![allow(clippy::many_single_char_names)]
use control::config::{Config, ConfigBuilder, REGISTRY_VALUES, REG_DWORD, REG_MULTI_SZ, REG_SZ};
use std::collections::{BTreeMap, BTreeSet};

/// Sections (lower-cased names) of lines, comments removed, `%token%` from [Strings] replaced.
struct Inf {
    sections: BTreeMap<String, Vec<String>>,
}

/// Removes a `;` comment that is not inside double quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ';' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits on commas outside quotes; quotes are removed, fields trimmed.
fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().unwrap().push(c),
        }
    }
    out.into_iter().map(|f| f.trim().to_string()).collect()
}

impl Inf {
    fn parse(text: &str) -> Inf {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut cur: Option<String> = None;
        for raw in text.lines() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim().to_ascii_lowercase();
                assert!(!sections.contains_key(&name), "section [{name}] twice");
                sections.insert(name.clone(), Vec::new());
                cur = Some(name);
                continue;
            }
            let sec = cur
                .as_ref()
                .unwrap_or_else(|| panic!("line outside a section: {raw}"));
            sections.get_mut(sec).unwrap().push(line.to_string());
        }
        let strings: BTreeMap<String, String> = sections
            .get("strings")
            .map(|l| {
                l.iter()
                    .map(|s| {
                        let (k, v) = s.split_once('=').expect("Strings line is key = value");
                        (
                            k.trim().to_ascii_lowercase(),
                            v.trim().trim_matches('"').to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        for (name, lines) in &mut sections {
            if name == "strings" {
                continue;
            }
            for l in lines.iter_mut() {
                for (k, v) in &strings {
                    let tok = format!("%{k}%");
                    while let Some(p) = l.to_ascii_lowercase().find(&tok) {
                        l.replace_range(p..p + tok.len(), v);
                    }
                }
            }
        }
        Inf { sections }
    }

    fn section(&self, name: &str) -> &[String] {
        self.sections
            .get(&name.to_ascii_lowercase())
            .unwrap_or_else(|| panic!("no section [{name}]"))
    }

    /// `key = value` entries of a section (all values of repeated keys).
    fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.section(section)
            .iter()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.trim().eq_ignore_ascii_case(key))
            .map(|(_, v)| v.trim().to_string())
            .collect()
    }

    fn value(&self, section: &str, key: &str) -> String {
        let v = self.values(section, key);
        assert_eq!(v.len(), 1, "[{section}] {key}: {v:?}");
        v[0].clone()
    }
}

fn utf16(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(Some(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// Turns `HKR,Parameters,Name,flags,value[,value...]` lines into registry (name, type, data),
/// as SetupAPI writes them.
fn registry_values(inf: &Inf, section: &str) -> Vec<(String, u32, Vec<u8>)> {
    inf.section(section)
        .iter()
        .map(|l| {
            let f = fields(l);
            assert!(f.len() >= 4, "AddReg line: {l}");
            assert_eq!(f[0], "HKR", "{l}");
            assert_eq!(f[1], "Parameters", "{l}");
            let flags = u32::from_str_radix(f[3].trim_start_matches("0x"), 16).unwrap_or(0);
            let vals = &f[4..];
            match flags {
                0x0001_0001 => {
                    assert_eq!(vals.len(), 1, "{l}");
                    let v: u32 = vals[0].parse().unwrap_or_else(|_| panic!("DWORD in {l}"));
                    (f[2].clone(), REG_DWORD, v.to_le_bytes().to_vec())
                }
                0x0001_0000 => {
                    let mut d: Vec<u8> = vals.iter().flat_map(|v| utf16(v)).collect();
                    d.extend([0, 0]);
                    (f[2].clone(), REG_MULTI_SZ, d)
                }
                0 => (f[2].clone(), REG_SZ, utf16(&vals.join(","))),
                other => panic!("flags {other:#x} not handled: {l}"),
            }
        })
        .collect()
}

/// Builds the driver's configuration from the INF's Parameters exactly as the driver does from
/// the registry; any value the parser refuses is an error.
fn config_from_inf(inf: &Inf, reg_section: &str) -> Result<Config, String> {
    let mut b = ConfigBuilder::new();
    let vals = registry_values(inf, reg_section);
    for spec in REGISTRY_VALUES {
        if !vals.iter().any(|(n, _, _)| n == spec.name) {
            return Err(format!("Parameters lacks {}", spec.name));
        }
    }
    for (name, ty, data) in &vals {
        b.apply(name, *ty, data).map_err(|e| e.to_string())?;
    }
    match b.finish() {
        (c, None) => Ok(c),
        (_, Some(e)) => Err(e.to_string()),
    }
}

fn load() -> Inf {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../inf/wskecho.inf");
    Inf::parse(&std::fs::read_to_string(path).expect("inf/wskecho.inf"))
}

#[test]
fn version_section() {
    let inf = load();
    assert_eq!(
        inf.value("Version", "Signature")
            .trim_matches('"')
            .to_ascii_lowercase(),
        "$windows nt$"
    );
    for k in ["Class", "ClassGuid", "Provider", "DriverVer", "CatalogFile"] {
        assert!(!inf.value("Version", k).is_empty(), "{k}");
    }
    let guid = inf.value("Version", "ClassGuid");
    assert!(
        guid.starts_with('{') && guid.ends_with('}') && guid.len() == 38,
        "{guid}"
    );
    let ver = inf.value("Version", "DriverVer");
    let (date, v) = ver.split_once(',').unwrap();
    assert_eq!(date.split('/').count(), 3, "mm/dd/yyyy");
    assert_eq!(v.split('.').count(), 4, "w.x.y.z");
    assert_eq!(
        v,
        format!("{}.0", env!("CARGO_PKG_VERSION")),
        "DriverVer follows the crate version"
    );
}

#[test]
fn install_sections_and_service() {
    let inf = load();
    for s in [
        "DestinationDirs",
        "SourceDisksNames",
        "SourceDisksFiles",
        "DefaultInstall.NTamd64",
        "DefaultInstall.NTamd64.Services",
        "DefaultUninstall.NTamd64",
        "DefaultUninstall.NTamd64.Services",
        "Strings",
    ] {
        inf.section(s);
    }
    // Primitive driver rules (Windows 10 1903+): no undecorated DefaultInstall, no Manufacturer.
    assert!(!inf.sections.contains_key("defaultinstall"));
    assert!(!inf.sections.contains_key("manufacturer"));
    assert_eq!(
        inf.value("DefaultUninstall.NTamd64", "LegacyUninstall"),
        "1"
    );
    assert_eq!(inf.value("DestinationDirs", "DefaultDestDir"), "12");

    let add = fields(&inf.value("DefaultInstall.NTamd64.Services", "AddService"));
    assert_eq!(add[0], "wskecho");
    let svc = add[2].clone();
    assert_eq!(inf.value(&svc, "ServiceType"), "1", "SERVICE_KERNEL_DRIVER");
    assert_eq!(inf.value(&svc, "StartType"), "3", "SERVICE_DEMAND_START");
    assert_eq!(inf.value(&svc, "ErrorControl"), "1", "SERVICE_ERROR_NORMAL");
    assert_eq!(inf.value(&svc, "ServiceBinary"), "%12%\\wskecho.sys");
    let del = fields(&inf.value("DefaultUninstall.NTamd64.Services", "DelService"));
    assert_eq!(del[0], "wskecho");
    // CopyFiles and DelFiles name the same list.
    assert_eq!(
        inf.value("DefaultInstall.NTamd64", "CopyFiles"),
        inf.value("DefaultUninstall.NTamd64", "DelFiles")
    );
}

#[test]
fn parameters_equal_control_defaults() {
    let inf = load();
    let add = fields(&inf.value("DefaultInstall.NTamd64.Services", "AddService"));
    let reg = inf.value(&add[2], "AddReg");
    let cfg = config_from_inf(&inf, &reg).unwrap();
    assert_eq!(cfg, Config::default());
}

#[test]
fn parameter_drift_is_detected() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../inf/wskecho.inf"))
        .unwrap();
    let drift = [
        (
            "MaxConnections,0x00010001,1024",
            "MaxConnections,0x00010001,1000",
        ),
        ("\"source,tcp,7019,127.0.0.1\",", ""),
        ("\"::/0\"", "\"::/0\",\"10.0.0.0/8\""),
        ("HKR,Parameters,EnableZeroCopy,0x00010001,1\n", ""),
        (
            "SendRingBytes,0x00010001,32768",
            "SendRingBytes,0x00010001,30000",
        ),
    ];
    for (from, to) in drift {
        assert!(text.contains(from), "{from}");
        let inf = Inf::parse(&text.replacen(from, to, 1));
        let r = config_from_inf(&inf, "WskEcho.Parameters");
        assert!(
            r.as_ref().map_or(true, |c| *c != Config::default()),
            "{from} -> {to} not detected: {r:?}"
        );
    }
}

#[test]
fn only_wskecho_sys_is_named() {
    let inf = load();
    let mut files = BTreeSet::new();
    // Files of CopyFiles/DelFiles lists, and SourceDisksFiles.
    for sec in ["DefaultInstall.NTamd64", "DefaultUninstall.NTamd64"] {
        for key in ["CopyFiles", "DelFiles"] {
            for list in inf.values(sec, key) {
                for name in fields(&list) {
                    for f in inf.section(&name) {
                        files.insert(fields(f)[0].to_ascii_lowercase());
                    }
                }
            }
        }
    }
    for l in inf.section("SourceDisksFiles") {
        files.insert(l.split_once('=').unwrap().0.trim().to_ascii_lowercase());
    }
    assert_eq!(files, BTreeSet::from(["wskecho.sys".to_string()]));
    // Any other file-looking token in the INF is the catalog inf2cat makes on Windows.
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../inf/wskecho.inf"))
        .unwrap();
    for line in text.lines().map(strip_comment) {
        for tok in line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '.' || c == '_')) {
            let t = tok.to_ascii_lowercase();
            if [".sys", ".dll", ".exe", ".cat"]
                .iter()
                .any(|e| t.ends_with(e))
            {
                assert!(
                    t == "wskecho.sys" || t == "wskecho.cat",
                    "unexpected file {t}"
                );
            }
        }
    }
}

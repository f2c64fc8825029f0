//! The INF reader, and the rules `cargo xtask driver` holds `inf/wskecho.inf` to.
//!
//! One reader serves the packaging step, `cargo xtask check-inf` and the INF tests: sections,
//! `key = value` entries, comma fields, `%token%` expansion from `[Strings]`, the files the
//! package copies, and the registry values an `AddReg` section writes (as SetupAPI writes
//! them, so the tests can feed them to the driver's own registry parser).
//!
//! [`check_package`] enforces Microsoft's rules for a primitive driver package that targets
//! Windows 10 1903 and later only, each rule a [`Rule`] with its source:
//! - "Creating a primitive driver":
//!   <https://learn.microsoft.com/windows-hardware/drivers/develop/creating-a-primitive-driver>
//!   (complete `[Version]`, no `[Manufacturer]`, `[DefaultInstall]` decorated for the
//!   architecture, no `[DefaultUninstall]`, the driver store, DIRID 13, as the install target).
//! - DCH's "declarative" part, the universal INF subset:
//!   <https://learn.microsoft.com/windows-hardware/drivers/install/using-a-universal-inf-file>
//!   (no co-installer or class-installer sections, no deleting, renaming or DLL-registering
//!   directives, registry writes relative to HKR).
//! - Driver package isolation (run from the driver store):
//!   <https://learn.microsoft.com/windows-hardware/drivers/develop/driver-isolation>
//!   (files copied to DIRID 13, the service binary in DIRID 13).
//! - The `CopyFiles` syntax the file list follows:
//!   <https://learn.microsoft.com/windows-hardware/drivers/install/inf-copyfiles-directive>

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use control::config::{Config, ConfigBuilder, REGISTRY_VALUES};
pub use control::config::{REG_DWORD, REG_MULTI_SZ, REG_SZ};

/// `AddReg` flags (setupapi.h `FLG_ADDREG_*`) this reader understands.
const FLG_ADDREG_TYPE_SZ: u32 = 0x0000_0000;
const FLG_ADDREG_TYPE_MULTI_SZ: u32 = 0x0001_0000;
const FLG_ADDREG_TYPE_DWORD: u32 = 0x0001_0001;

/// The architecture this package installs on; its install section is `DefaultInstall.NTamd64`.
pub const INSTALL_SECTION: &str = "DefaultInstall.NTamd64";
/// DIRID 13: the package's own folder in the driver store.
pub const DIRID_DRIVER_STORE: &str = "13";

/// A parsed INF: sections by lower-cased name, each a list of lines with comments removed and
/// `%token%`s replaced from `[Strings]` (unknown tokens, such as `%13%`, stay as written).
#[derive(Debug, Clone)]
pub struct Inf {
    sections: BTreeMap<String, Vec<String>>,
}

/// Removes a `;` comment that is not inside double quotes.
pub fn strip_comment(line: &str) -> &str {
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

/// Splits on commas outside double quotes; quotes are removed, fields trimmed.
pub fn fields(line: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(String::new()),
            _ => out.last_mut().expect("never empty").push(c),
        }
    }
    out.into_iter().map(|f| f.trim().to_owned()).collect()
}

fn unquote(s: &str) -> String {
    s.trim().trim_matches('"').to_owned()
}

/// Replaces `%key%` tokens with `[Strings]` values; an unknown key is left as written.
fn expand(s: &str, strings: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some(a) = rest.find('%') {
        out.push_str(&rest[..a]);
        let after = &rest[a + 1..];
        let Some(b) = after.find('%') else {
            out.push_str(&rest[a..]);
            rest = "";
            break;
        };
        let key = &after[..b];
        if let Some(v) = strings.get(&key.to_ascii_lowercase()) {
            out.push_str(v);
        } else {
            out.push('%');
            out.push_str(key);
            out.push('%');
        }
        rest = &after[b + 1..];
    }
    out.push_str(rest);
    out
}

fn is_strings_section(name: &str) -> bool {
    name == "strings" || name.starts_with("strings.")
}

impl Inf {
    /// Parses INF text. A line outside any section, a section opened twice, or a `[Strings]`
    /// line that is not `key = value` is an error naming the line.
    pub fn parse(text: &str) -> Result<Inf, String> {
        let mut sections: BTreeMap<String, Vec<String>> = BTreeMap::new();
        let mut current: Option<String> = None;
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                let name = name.trim().to_ascii_lowercase();
                if sections.contains_key(&name) {
                    return Err(format!("line {}: section [{name}] opened twice", n + 1));
                }
                sections.insert(name.clone(), Vec::new());
                current = Some(name);
                continue;
            }
            let Some(sec) = &current else {
                return Err(format!("line {}: outside any section: {raw}", n + 1));
            };
            sections
                .get_mut(sec)
                .expect("current section exists")
                .push(line.to_owned());
        }
        // Undecorated [Strings] first, so that it wins over a localized copy.
        let mut strings = BTreeMap::new();
        let mut names: Vec<&String> = sections.keys().filter(|n| is_strings_section(n)).collect();
        names.sort_by_key(|n| n.as_str() != "strings");
        for name in names {
            for l in &sections[name] {
                let Some((k, v)) = l.split_once('=') else {
                    return Err(format!("[{name}]: not key = value: {l}"));
                };
                strings
                    .entry(k.trim().to_ascii_lowercase())
                    .or_insert_with(|| unquote(v));
            }
        }
        for (name, lines) in &mut sections {
            if is_strings_section(name) {
                continue;
            }
            for l in lines.iter_mut() {
                *l = expand(l, &strings);
            }
        }
        Ok(Inf { sections })
    }

    /// Lower-cased names of every section.
    pub fn section_names(&self) -> impl Iterator<Item = &str> {
        self.sections.keys().map(String::as_str)
    }

    pub fn has_section(&self, name: &str) -> bool {
        self.sections.contains_key(&name.to_ascii_lowercase())
    }

    /// The lines of a section (empty if it does not exist).
    pub fn section(&self, name: &str) -> &[String] {
        self.sections
            .get(&name.to_ascii_lowercase())
            .map_or(&[], Vec::as_slice)
    }

    /// `(key, value)` of every `key = value` line of a section, trimmed.
    pub fn entries(&self, section: &str) -> Vec<(String, String)> {
        self.section(section)
            .iter()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
            .collect()
    }

    /// Every value of `key` in a section (INF keys are case-insensitive).
    pub fn values(&self, section: &str, key: &str) -> Vec<String> {
        self.entries(section)
            .into_iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
            .collect()
    }

    /// The value of `key` if the section has it exactly once.
    pub fn value(&self, section: &str, key: &str) -> Option<String> {
        let mut v = self.values(section, key);
        (v.len() == 1).then(|| v.remove(0))
    }

    /// Every file name (lower-cased) the INF lists as a source file or copies.
    pub fn referenced_files(&self) -> BTreeSet<String> {
        let mut files = self.copied_files();
        for (name, lines) in &self.sections {
            if name == "sourcedisksfiles" || name.starts_with("sourcedisksfiles.") {
                for l in lines {
                    let key = l.split_once('=').map_or(l.as_str(), |(k, _)| k);
                    files.insert(unquote(key).to_ascii_lowercase());
                }
            }
        }
        files
    }

    /// Every file name (lower-cased) a `CopyFiles` directive copies, directly
    /// (`CopyFiles = @wskecho.sys`) or through the file-list sections it names.
    pub fn copied_files(&self) -> BTreeSet<String> {
        let mut files = BTreeSet::new();
        for list in self.copy_file_lists() {
            match list {
                CopyTarget::File(f) => {
                    files.insert(f.to_ascii_lowercase());
                }
                CopyTarget::List(sec) => {
                    for entry in self.section(&sec) {
                        // destination-file-name[,source-file-name][,...]
                        let f = fields(entry);
                        let src = f.get(1).filter(|s| !s.is_empty());
                        let name = src.unwrap_or(&f[0]);
                        if !name.is_empty() {
                            files.insert(name.to_ascii_lowercase());
                        }
                    }
                }
            }
        }
        files
    }

    /// What every `CopyFiles` directive, in any section, names.
    fn copy_file_lists(&self) -> Vec<CopyTarget> {
        let mut out = Vec::new();
        for name in self.sections.keys() {
            for v in self.values(name, "CopyFiles") {
                for item in fields(&v) {
                    if let Some(file) = item.strip_prefix('@') {
                        out.push(CopyTarget::File(file.to_owned()));
                    } else if !item.is_empty() {
                        out.push(CopyTarget::List(item));
                    }
                }
            }
        }
        out
    }

    /// The values an add-registry section writes, as SetupAPI writes them: each
    /// `HKR,subkey,name,flags,value[,value...]` line becomes (subkey, name, type, data) with
    /// REG_DWORD as 4 little-endian bytes and strings as NUL-terminated UTF-16LE.
    pub fn registry_values(&self, section: &str) -> Result<Vec<RegValue>, String> {
        if !self.has_section(section) {
            return Err(format!("no section [{section}]"));
        }
        self.section(section)
            .iter()
            .map(|l| {
                let f = fields(l);
                if f.len() < 4 {
                    return Err(format!(
                        "[{section}]: AddReg line needs root,subkey,name,flags: {l}"
                    ));
                }
                let flags = parse_number(&f[3])
                    .ok_or_else(|| format!("[{section}]: flags {:?} is not a number: {l}", f[3]))?;
                let vals = &f[4..];
                let (reg_type, data) = match flags {
                    FLG_ADDREG_TYPE_DWORD => {
                        let [v] = vals else {
                            return Err(format!("[{section}]: a DWORD takes one value: {l}"));
                        };
                        let v = parse_number(v)
                            .ok_or_else(|| format!("[{section}]: {v:?} is not a DWORD: {l}"))?;
                        (REG_DWORD, v.to_le_bytes().to_vec())
                    }
                    FLG_ADDREG_TYPE_MULTI_SZ => {
                        let mut d: Vec<u8> = vals.iter().flat_map(|v| utf16z(v)).collect();
                        d.extend([0, 0]);
                        (REG_MULTI_SZ, d)
                    }
                    FLG_ADDREG_TYPE_SZ => (REG_SZ, utf16z(&vals.join(","))),
                    other => {
                        return Err(format!(
                            "[{section}]: AddReg flags {other:#x} not handled: {l}"
                        ))
                    }
                };
                Ok(RegValue {
                    root: f[0].clone(),
                    subkey: f[1].clone(),
                    name: f[2].clone(),
                    reg_type,
                    data,
                })
            })
            .collect()
    }

    /// The service-install sections the `AddService` directives of `install_services` name.
    pub fn service_sections(&self, install_services: &str) -> Vec<String> {
        self.values(install_services, "AddService")
            .iter()
            .filter_map(|v| fields(v).get(2).cloned())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

enum CopyTarget {
    File(String),
    List(String),
}

/// A registry value an `AddReg` line writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegValue {
    /// `HKR`, `HKLM`, ...
    pub root: String,
    pub subkey: String,
    pub name: String,
    pub reg_type: u32,
    pub data: Vec<u8>,
}

/// Decimal or `0x` hexadecimal, as INF numbers are written.
fn parse_number(s: &str) -> Option<u32> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

fn utf16z(s: &str) -> Vec<u8> {
    s.encode_utf16()
        .chain(Some(0))
        .flat_map(u16::to_le_bytes)
        .collect()
}

/// One rule of a primitive, DCH-compliant driver package for Windows 10 1903 and later.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    /// `[Version]` has `Signature = "$Windows NT$"`, `Provider`, `Class` and `ClassGuid`
    /// (primitive driver: "the Version section must be complete").
    VersionComplete,
    /// No `[Manufacturer]` section: a primitive driver has no device models.
    NoManufacturer,
    /// The install section is `[DefaultInstall.NTamd64]`; no undecorated `[DefaultInstall]`
    /// (nor `.NT`) exists.
    DecoratedDefaultInstall,
    /// No `[DefaultUninstall*]`: uninstall is the driver store's (`pnputil /delete-driver
    /// /uninstall`); the `LegacyUninstall` exception is for packages SetupAPI must also install
    /// before 1903. The driver runs from 1809 on, but there the service is created by hand
    /// (README), not from this package, which keeps the 1903 rules.
    NoDefaultUninstall,
    /// Declarative only: none of the sections and directives the universal INF subset forbids
    /// (co-installers, class installers, deleting, renaming, DLL registration, INI edits).
    Declarative,
    /// Every `AddReg` line writes under HKR (here the service key).
    AddRegRelative,
    /// Every destination directory is DIRID 13, the driver store.
    DestinationDriverStore,
    /// Every service binary is `%13%\...`: the service runs from the driver store.
    ServiceBinaryDriverStore,
    /// The install section adds exactly one kernel-driver service, wskecho.
    Service,
    /// The service's `Parameters` hold every value the driver reads, each one the driver's own
    /// registry parser (`control::config::ConfigBuilder`) accepts.
    ParametersAccepted,
    /// The package copies only files the build produces, and copies each of them.
    OnlyProducedFiles,
}

impl Rule {
    /// Every rule (each has a refusal test in tests/inf.rs).
    pub const ALL: [Rule; 11] = [
        Rule::VersionComplete,
        Rule::NoManufacturer,
        Rule::DecoratedDefaultInstall,
        Rule::NoDefaultUninstall,
        Rule::Declarative,
        Rule::AddRegRelative,
        Rule::DestinationDriverStore,
        Rule::ServiceBinaryDriverStore,
        Rule::Service,
        Rule::ParametersAccepted,
        Rule::OnlyProducedFiles,
    ];
}

/// A rule an INF breaks, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub rule: Rule,
    pub detail: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.rule, self.detail)
    }
}

/// Section-name suffixes the universal INF subset does not allow (besides [ClassInstall32*]).
const FORBIDDEN_SECTION_SUFFIXES: &[&str] = &[".coinstallers", ".factdef", ".logconfigoverride"];
/// Directives the universal INF subset does not allow.
const FORBIDDEN_DIRECTIVES: &[&str] = &[
    "BitReg",
    "DelFiles",
    "DelProperty",
    "DelReg",
    "DelService",
    "Ini2Reg",
    "LogConfig",
    "ProfileItems",
    "RegisterDlls",
    "RenFiles",
    "UnregisterDlls",
    "UpdateIniFields",
    "UpdateInis",
];

/// Checks an INF against every [`Rule`]: `Ok` if it keeps them all, else every problem, one a
/// line. `produced` names the files the build makes (lower case).
pub fn check_package(text: &str, produced: &[&str]) -> Result<(), String> {
    let found = problems(text, produced)?;
    if found.is_empty() {
        return Ok(());
    }
    Err(found
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Every [`Problem`] of an INF, or an error if the text is not an INF at all.
pub fn problems(text: &str, produced: &[&str]) -> Result<Vec<Problem>, String> {
    let inf = Inf::parse(text)?;
    let mut out = Vec::new();
    let mut problem = |rule, detail: String| out.push(Problem { rule, detail });

    // Version.
    let signature = inf.value("Version", "Signature").map(|s| unquote(&s));
    if !signature.is_some_and(|s| s.eq_ignore_ascii_case("$Windows NT$")) {
        problem(
            Rule::VersionComplete,
            "[Version] Signature must be \"$Windows NT$\"".into(),
        );
    }
    for key in ["Provider", "Class", "ClassGuid"] {
        if inf.value("Version", key).is_none_or(|v| v.is_empty()) {
            problem(
                Rule::VersionComplete,
                format!("[Version] needs exactly one non-empty {key}"),
            );
        }
    }
    if let Some(guid) = inf.value("Version", "ClassGuid") {
        if !(guid.len() == 38 && guid.starts_with('{') && guid.ends_with('}')) {
            problem(
                Rule::VersionComplete,
                format!(
                    "[Version] ClassGuid {guid} is not {{xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx}}"
                ),
            );
        }
    }

    // Sections: no models, decorated install, no uninstall, declarative.
    for name in inf.section_names() {
        if name == "manufacturer" {
            problem(
                Rule::NoManufacturer,
                "[Manufacturer] makes it a device (PnP) package, not a primitive one".into(),
            );
        }
        if name == "defaultinstall"
            || name == "defaultinstall.nt"
            || name.starts_with("defaultinstall.nt.")
        {
            problem(
                Rule::DecoratedDefaultInstall,
                format!("[{name}] is not decorated for an architecture (use [{INSTALL_SECTION}])"),
            );
        }
        if name == "defaultuninstall" || name.starts_with("defaultuninstall.") {
            problem(
                Rule::NoDefaultUninstall,
                format!("[{name}]: a primitive driver is uninstalled from the driver store (pnputil /delete-driver ... /uninstall)"),
            );
        }
        if name == "classinstall32"
            || name.starts_with("classinstall32.")
            || FORBIDDEN_SECTION_SUFFIXES.iter().any(|s| name.ends_with(s))
        {
            problem(
                Rule::Declarative,
                format!("[{name}] is not allowed in a declarative (universal) INF"),
            );
        }
        for (key, _) in inf.entries(name) {
            if let Some(d) = FORBIDDEN_DIRECTIVES
                .iter()
                .find(|d| d.eq_ignore_ascii_case(&key))
            {
                problem(
                    Rule::Declarative,
                    format!("[{name}] {d} is not allowed in a declarative (universal) INF"),
                );
            }
        }
    }
    if !inf.has_section(INSTALL_SECTION) {
        problem(
            Rule::DecoratedDefaultInstall,
            format!("no [{INSTALL_SECTION}] section"),
        );
    }

    // Registry writes relative to HKR.
    for name in inf.section_names() {
        for list in inf.values(name, "AddReg") {
            for sec in fields(&list).into_iter().filter(|s| !s.is_empty()) {
                if !inf.has_section(&sec) {
                    problem(
                        Rule::AddRegRelative,
                        format!("[{name}] AddReg names a missing section [{sec}]"),
                    );
                }
                for l in inf.section(&sec) {
                    let root = fields(l).swap_remove(0);
                    if !root.eq_ignore_ascii_case("HKR") {
                        problem(
                            Rule::AddRegRelative,
                            format!("[{sec}] writes under {root}, not HKR: {l}"),
                        );
                    }
                }
            }
        }
    }

    // Destinations: DIRID 13 for every file list, and a DefaultDestDir of 13.
    let dest = inf.entries("DestinationDirs");
    if !dest
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("DefaultDestDir"))
    {
        problem(
            Rule::DestinationDriverStore,
            "[DestinationDirs] has no DefaultDestDir (use 13)".into(),
        );
    }
    for (k, v) in &dest {
        if fields(v) != [DIRID_DRIVER_STORE] {
            problem(
                Rule::DestinationDriverStore,
                format!("[DestinationDirs] {k} = {v}: files go to DIRID {DIRID_DRIVER_STORE} (the driver store), with no sub-directory"),
            );
        }
    }
    // Run from the driver store: a copied file keeps its name (no rename in a file list) and
    // its source sub-directory equals its destination's (both none here).
    for target in inf.copy_file_lists() {
        let CopyTarget::List(sec) = target else {
            continue;
        };
        for entry in inf.section(&sec) {
            let f = fields(entry);
            if f.get(1)
                .is_some_and(|src| !src.is_empty() && !src.eq_ignore_ascii_case(&f[0]))
            {
                problem(
                    Rule::DestinationDriverStore,
                    format!(
                        "[{sec}] renames {} to {}: a file run from the driver store keeps its name",
                        f[1], f[0]
                    ),
                );
            }
        }
    }
    for (name, lines) in &inf.sections {
        if name == "sourcedisksfiles" || name.starts_with("sourcedisksfiles.") {
            for l in lines {
                let sub = l
                    .split_once('=')
                    .map(|(_, v)| fields(v))
                    .and_then(|f| f.get(1).cloned());
                if sub.is_some_and(|s| !s.is_empty()) {
                    problem(
                        Rule::DestinationDriverStore,
                        format!(
                            "[{name}] {l}: a sub-directory the DestinationDirs entry does not name"
                        ),
                    );
                }
            }
        }
    }

    // The service: one kernel driver, run from the driver store.
    let services_section = format!("{INSTALL_SECTION}.Services");
    let services = inf.service_sections(&services_section);
    let added = inf.values(&services_section, "AddService");
    if added.len() != 1 || fields(&added[0])[0] != "wskecho" {
        problem(
            Rule::Service,
            format!("[{services_section}] must add exactly one service, wskecho: {added:?}"),
        );
    }
    for svc in &services {
        if !inf.has_section(svc) {
            problem(Rule::Service, format!("no service-install section [{svc}]"));
            continue;
        }
        if inf.value(svc, "ServiceType").as_deref() != Some("1") {
            problem(
                Rule::Service,
                format!("[{svc}] ServiceType must be 1 (SERVICE_KERNEL_DRIVER)"),
            );
        }
        match inf.value(svc, "ServiceBinary") {
            Some(bin) if bin.starts_with("%13%\\") => {}
            other => problem(
                Rule::ServiceBinaryDriverStore,
                format!(
                    "[{svc}] ServiceBinary {} must be %13%\\<file> (run from the driver store)",
                    other.as_deref().unwrap_or("(missing or repeated)")
                ),
            ),
        }
    }
    for name in inf.section_names() {
        if name.ends_with(".services") && name != services_section.to_ascii_lowercase() {
            for svc in inf.service_sections(name) {
                if !inf
                    .value(&svc, "ServiceBinary")
                    .is_some_and(|b| b.starts_with("%13%\\"))
                {
                    problem(
                        Rule::ServiceBinaryDriverStore,
                        format!("[{svc}] (from [{name}]) ServiceBinary must be %13%\\<file>"),
                    );
                }
            }
        }
    }

    // The Parameters, as the driver will read them.
    if let Err(e) = config_from_inf(&inf) {
        problem(Rule::ParametersAccepted, e);
    }

    // Files.
    for target in inf.copy_file_lists() {
        if let CopyTarget::List(sec) = target {
            if !inf.has_section(&sec) {
                problem(
                    Rule::OnlyProducedFiles,
                    format!("CopyFiles names a missing file list [{sec}]"),
                );
            }
        }
    }
    for f in &inf.referenced_files() {
        if !produced.contains(&f.as_str()) {
            problem(
                Rule::OnlyProducedFiles,
                format!("names {f}, which this build does not produce"),
            );
        }
    }
    let copied = inf.copied_files();
    for p in produced {
        if !copied.contains(*p) {
            problem(Rule::OnlyProducedFiles, format!("does not copy {p}"));
        }
    }
    Ok(out)
}

/// The configuration the driver builds from the registry values the INF writes: the service
/// sections' `AddReg` lines under `HKR,Parameters`, fed one by one to the driver's own parser
/// ([`ConfigBuilder::apply`], then [`ConfigBuilder::finish`]). A value the parser refuses, a
/// value missing from the INF, or a value written elsewhere is an error.
pub fn config_from_inf(inf: &Inf) -> Result<Config, String> {
    let services_section = format!("{INSTALL_SECTION}.Services");
    let mut values = Vec::new();
    for svc in inf.service_sections(&services_section) {
        for list in inf.values(&svc, "AddReg") {
            for sec in fields(&list).into_iter().filter(|s| !s.is_empty()) {
                values.extend(inf.registry_values(&sec)?);
            }
        }
    }
    let mut builder = ConfigBuilder::new();
    for v in &values {
        if !(v.root.eq_ignore_ascii_case("HKR") && v.subkey.eq_ignore_ascii_case("Parameters")) {
            return Err(format!(
                "{},{},{}: the driver reads only HKR,Parameters",
                v.root, v.subkey, v.name
            ));
        }
        builder
            .apply(&v.name, v.reg_type, &v.data)
            .map_err(|e| format!("Parameters {}: {e}", v.name))?;
    }
    for spec in REGISTRY_VALUES {
        if !values
            .iter()
            .any(|v| v.name.eq_ignore_ascii_case(spec.name))
        {
            return Err(format!("Parameters lacks {}", spec.name));
        }
    }
    match builder.finish() {
        (config, None) => Ok(config),
        (_, Some(e)) => Err(format!("Parameters: {e}")),
    }
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
        let files = Inf::parse(SAMPLE).unwrap().referenced_files();
        assert_eq!(
            files.into_iter().collect::<Vec<_>>(),
            vec!["extra.dll".to_owned(), "wskecho.sys".to_owned()]
        );
    }

    #[test]
    fn comments_and_case() {
        let inf = Inf::parse("[sourcedisksfiles.amd64]\n; x.sys = 1\nWSKECHO.SYS=1\n").unwrap();
        assert_eq!(
            inf.referenced_files().into_iter().collect::<Vec<_>>(),
            vec!["wskecho.sys".to_owned()]
        );
    }

    #[test]
    fn expansion_keeps_unknown_tokens_and_quoted_semicolons() {
        let inf = Inf::parse(
            "[A]\nx = %13%\\%Name%.sys\ny = \"a;b\" ; c\n[Strings]\nname = \"wskecho\"\n",
        )
        .unwrap();
        assert_eq!(inf.value("a", "X").as_deref(), Some("%13%\\wskecho.sys"));
        assert_eq!(inf.value("A", "y").as_deref(), Some("\"a;b\""));
    }

    #[test]
    fn malformed_text_is_refused() {
        assert!(Inf::parse("x = 1\n[A]\n").unwrap_err().contains("line 1"));
        assert!(Inf::parse("[A]\n[a]\n").unwrap_err().contains("twice"));
        assert!(Inf::parse("[Strings]\nnovalue\n").is_err());
    }

    #[test]
    fn registry_values_as_setupapi_writes_them() {
        let inf = Inf::parse(
            "[R]\nHKR,Parameters,D,0x00010001,0x10\nHKR,Parameters,M,0x00010000,\"a,b\",c\nHKR,,S,0,x\n",
        )
        .unwrap();
        let v = inf.registry_values("R").unwrap();
        assert_eq!(v[0].reg_type, REG_DWORD);
        assert_eq!(v[0].data, 16u32.to_le_bytes());
        assert_eq!(v[1].reg_type, REG_MULTI_SZ);
        assert_eq!(v[1].data, [utf16z("a,b"), utf16z("c"), vec![0, 0]].concat());
        assert_eq!((v[2].reg_type, v[2].subkey.as_str()), (REG_SZ, ""));
        assert!(Inf::parse("[R]\nHKR,P,D,0x00010001,x\n")
            .unwrap()
            .registry_values("R")
            .is_err());
        assert!(Inf::parse("[R]\nHKR,P,D,0x1\n")
            .unwrap()
            .registry_values("R")
            .is_err());
    }
}

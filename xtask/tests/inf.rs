//! inf/wskecho.inf through xtask's INF reader: the package keeps every primitive-driver rule,
//! the Parameters equal control's defaults (parsed by the driver's own registry parser), and
//! each rule refuses an INF that breaks it.

use std::collections::BTreeSet;

use control::config::Config;
use xtask::inf::{check_package, config_from_inf, fields, problems, strip_comment, Inf, Rule};

const PRODUCED: &[&str] = &["wskecho.sys"];

fn text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../inf/wskecho.inf");
    std::fs::read_to_string(path).expect("inf/wskecho.inf")
}

fn load() -> Inf {
    Inf::parse(&text()).unwrap()
}

/// The rules a variant of the shipped INF breaks (`from` must occur in it).
fn broken_rules(from: &str, to: &str) -> BTreeSet<Rule> {
    let t = text();
    assert!(t.contains(from), "the INF no longer contains {from:?}");
    problems(&t.replacen(from, to, 1), PRODUCED)
        .unwrap()
        .into_iter()
        .map(|p| p.rule)
        .collect()
}

/// Asserts that the variant breaks `rule` and prints what check_package says.
fn refused(rule: Rule, from: &str, to: &str) {
    let rules = broken_rules(from, to);
    assert!(
        rules.contains(&rule),
        "{from:?} -> {to:?} should break {rule:?}, broke {rules:?}"
    );
    let msg = check_package(&text().replacen(from, to, 1), PRODUCED).unwrap_err();
    assert!(msg.contains(&format!("{rule:?}")), "{msg}");
}

#[test]
fn shipped_inf_keeps_every_rule() {
    assert_eq!(problems(&text(), PRODUCED).unwrap(), vec![]);
    check_package(&text(), PRODUCED).unwrap();
}

#[test]
fn version_section() {
    let inf = load();
    for k in ["Class", "ClassGuid", "Provider", "DriverVer", "CatalogFile"] {
        assert!(
            inf.value("Version", k).is_some_and(|v| !v.is_empty()),
            "{k}"
        );
    }
    let ver = inf.value("Version", "DriverVer").unwrap();
    let (date, v) = ver.split_once(',').unwrap();
    assert_eq!(date.split('/').count(), 3, "mm/dd/yyyy");
    assert_eq!(
        v,
        format!("{}.0", env!("CARGO_PKG_VERSION")),
        "DriverVer follows the crate version"
    );
}

#[test]
fn service_values() {
    let inf = load();
    let add = fields(
        &inf.value("DefaultInstall.NTamd64.Services", "AddService")
            .unwrap(),
    );
    assert_eq!(add[0], "wskecho");
    let svc = &add[2];
    assert_eq!(
        inf.value(svc, "ServiceType").unwrap(),
        "1",
        "SERVICE_KERNEL_DRIVER"
    );
    assert_eq!(
        inf.value(svc, "StartType").unwrap(),
        "3",
        "SERVICE_DEMAND_START"
    );
    assert_eq!(
        inf.value(svc, "ErrorControl").unwrap(),
        "1",
        "SERVICE_ERROR_NORMAL"
    );
    assert_eq!(
        inf.value(svc, "ServiceBinary").unwrap(),
        "%13%\\wskecho.sys"
    );
}

#[test]
fn parameters_equal_control_defaults() {
    assert_eq!(config_from_inf(&load()).unwrap(), Config::default());
}

#[test]
fn parameter_drift_is_detected() {
    let text = text();
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
        (
            "IdleTimeoutMs,0x00010001,300000",
            "IdleTimeoutMs,0x00010001,30000",
        ),
        ("HKR,Parameters,ProgressTimeoutMs,0x00010001,30000\n", ""),
        (
            "RetainTimeoutMs,0x00010001,1000",
            "RetainTimeoutMs,0x00010001,60001",
        ),
    ];
    for (from, to) in drift {
        assert!(text.contains(from), "{from}");
        let inf = Inf::parse(&text.replacen(from, to, 1)).unwrap();
        let r = config_from_inf(&inf);
        assert!(
            r.as_ref().map_or(true, |c| *c != Config::default()),
            "{from} -> {to} not detected: {r:?}"
        );
    }
}

#[test]
fn only_wskecho_sys_is_named() {
    let inf = load();
    assert_eq!(
        inf.referenced_files(),
        BTreeSet::from(["wskecho.sys".to_owned()])
    );
    // Any other file-looking token in the INF is the catalog inf2cat makes on Windows.
    for line in text().lines().map(strip_comment) {
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

// One refusal per rule: each edit below turns the shipped INF into one that breaks the rule.

#[test]
fn refuses_incomplete_version() {
    refused(Rule::VersionComplete, "Provider    = %ProviderName%\n", "");
    refused(
        Rule::VersionComplete,
        "ClassGuid   = {4d36e97d-e325-11ce-bfc1-08002be10318}",
        "ClassGuid   = 4d36e97d",
    );
    refused(Rule::VersionComplete, "\"$Windows NT$\"", "\"$Chicago$\"");
}

#[test]
fn refuses_manufacturer() {
    refused(
        Rule::NoManufacturer,
        "[SourceDisksNames]",
        "[Manufacturer]\n%ProviderName% = Models,NTamd64\n\n[SourceDisksNames]",
    );
}

#[test]
fn refuses_undecorated_default_install() {
    refused(
        Rule::DecoratedDefaultInstall,
        "[DefaultInstall.NTamd64]\n",
        "[DefaultInstall]\n",
    );
    refused(
        Rule::DecoratedDefaultInstall,
        "[DefaultInstall.NTamd64]\n",
        "[DefaultInstall.NT]\n",
    );
}

#[test]
fn refuses_default_uninstall() {
    // Even with LegacyUninstall = 1: the exception is for down-level support.
    refused(
        Rule::NoDefaultUninstall,
        "[Strings]",
        "[DefaultUninstall.NTamd64]\nLegacyUninstall = 1\n\n[Strings]",
    );
}

#[test]
fn refuses_non_declarative_directives_and_sections() {
    refused(
        Rule::Declarative,
        "CopyFiles = WskEcho.DriverFiles",
        "CopyFiles = WskEcho.DriverFiles\nDelFiles = WskEcho.DriverFiles",
    );
    refused(
        Rule::Declarative,
        "AddReg        = WskEcho.Parameters",
        "AddReg        = WskEcho.Parameters\nDelReg        = WskEcho.Parameters",
    );
    refused(
        Rule::Declarative,
        "[Strings]",
        "[DefaultInstall.NTamd64.CoInstallers]\nAddReg = WskEcho.Parameters\n\n[Strings]",
    );
    refused(
        Rule::Declarative,
        "[Strings]",
        "[ClassInstall32]\nAddReg = WskEcho.Parameters\n\n[Strings]",
    );
}

#[test]
fn refuses_absolute_registry_writes() {
    refused(
        Rule::AddRegRelative,
        "HKR,Parameters,MaxConnections",
        "HKLM,System\\CurrentControlSet\\Services\\wskecho\\Parameters,MaxConnections",
    );
}

#[test]
fn refuses_destinations_outside_the_driver_store() {
    refused(
        Rule::DestinationDriverStore,
        "DefaultDestDir      = 13",
        "DefaultDestDir      = 12",
    );
    refused(
        Rule::DestinationDriverStore,
        "WskEcho.DriverFiles = 13",
        "WskEcho.DriverFiles = 12",
    );
    refused(
        Rule::DestinationDriverStore,
        "WskEcho.DriverFiles = 13",
        "WskEcho.DriverFiles = 13,sub",
    );
    refused(
        Rule::DestinationDriverStore,
        "[WskEcho.DriverFiles]\nwskecho.sys",
        "[WskEcho.DriverFiles]\nwskecho2.sys,wskecho.sys",
    );
}

#[test]
fn refuses_service_binary_outside_the_driver_store() {
    refused(
        Rule::ServiceBinaryDriverStore,
        "ServiceBinary = %13%\\wskecho.sys",
        "ServiceBinary = %12%\\wskecho.sys",
    );
    refused(
        Rule::ServiceBinaryDriverStore,
        "ServiceBinary = %13%\\wskecho.sys",
        "ServiceBinary = C:\\Windows\\System32\\drivers\\wskecho.sys",
    );
}

#[test]
fn refuses_a_wrong_service() {
    refused(Rule::Service, "ServiceType   = 1", "ServiceType   = 2");
    refused(
        Rule::Service,
        "ServiceName        = \"wskecho\"",
        "ServiceName        = \"other\"",
    );
}

#[test]
fn refuses_parameters_the_driver_refuses() {
    refused(
        Rule::ParametersAccepted,
        "MaxConnections,0x00010001,1024",
        "MaxConnections,0x00010001,0",
    );
    refused(
        Rule::ParametersAccepted,
        "HKR,Parameters,EnableZeroCopy,0x00010001,1\n",
        "",
    );
    refused(
        Rule::ParametersAccepted,
        "HKR,Parameters,EnableZeroCopy",
        "HKR,,EnableZeroCopy",
    );
}

#[test]
fn refuses_files_the_build_does_not_make() {
    refused(
        Rule::OnlyProducedFiles,
        "[WskEcho.DriverFiles]\nwskecho.sys",
        "[WskEcho.DriverFiles]\nwskecho.sys\nhelper.dll",
    );
    refused(
        Rule::OnlyProducedFiles,
        "CopyFiles = WskEcho.DriverFiles",
        "CopyFiles = WskEcho.Missing",
    );
}

#[test]
fn every_rule_has_a_refusal_test() {
    // The refusal tests above name each rule; this list must grow with Rule::ALL.
    let tested = [
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
    assert_eq!(tested.to_vec(), Rule::ALL.to_vec());
}

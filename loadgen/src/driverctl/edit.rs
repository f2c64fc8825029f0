//! `config set`: from command-line edits to one set-config operation.

use anyhow::{anyhow, bail, Result};
use control::config::{Limits, DWORD_SPECS};
use control::ioctl::SetConfig;

use super::{query_config, Channel, ConfigSetArgs};

/// Chooses the set-config operation for the flags given.
pub(super) fn plan_change(s: &ConfigSetArgs, ch: &mut dyn Channel) -> Result<SetConfig> {
    let limits_given = !s.limit.is_empty() || s.allowed_sources.is_some();
    if !s.replace_services && !limits_given && s.add.len() + s.remove.len() == 1 {
        return Ok(match (s.add.first(), s.remove.first()) {
            (Some(a), _) => SetConfig::AddService(*a),
            (_, Some(r)) => SetConfig::RemoveService(*r),
            _ => unreachable!("one of the two lists has the element"),
        });
    }
    if s.add.is_empty() && s.remove.is_empty() && !s.replace_services && !limits_given {
        bail!("config set: nothing to change (give --add, --remove, --limit or --allowed-sources)");
    }
    let current = query_config(ch)?;
    let limits = apply_limits(&current.limits, s)?;
    if s.add.is_empty() && s.remove.is_empty() && !s.replace_services {
        return Ok(SetConfig::SetLimits(limits));
    }
    let mut c = current;
    c.limits = limits;
    if s.replace_services {
        if !s.remove.is_empty() {
            bail!("config set: --remove makes no sense with --replace-services");
        }
        c.services = control::config::Services::empty();
    }
    for r in &s.remove {
        if !c.services.remove(r.proto, r.port, r.bind) {
            bail!("config set: no service {r} to remove");
        }
    }
    for a in &s.add {
        c.services.add(*a).map_err(|e| {
            anyhow!(
                "config set: cannot add {a}: {}",
                control::config::service_error_text(e)
            )
        })?;
    }
    Ok(SetConfig::Replace(c))
}

pub(super) fn apply_limits(l: &Limits, s: &ConfigSetArgs) -> Result<Limits> {
    let mut l = l.clone();
    for kv in &s.limit {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| anyhow!("--limit {kv}: expected NAME=VALUE"))?;
        let spec = DWORD_SPECS
            .iter()
            .find(|d| d.name.eq_ignore_ascii_case(k.trim()))
            .ok_or_else(|| anyhow!("--limit {kv}: unknown limit; known: {}", limit_names()))?;
        let v: u32 = v
            .trim()
            .parse()
            .map_err(|_| anyhow!("--limit {kv}: value is not a number"))?;
        l.set_by_name(spec.name, v).map_err(|_| {
            anyhow!(
                "--limit {kv}: {} must be in {}..={}{}",
                spec.name,
                spec.min,
                spec.max,
                if spec.name == "SendRingBytes" {
                    " and a power of two"
                } else {
                    ""
                }
            )
        })?;
    }
    if let Some(list) = &s.allowed_sources {
        l.set_allowed_sources(list)
            .map_err(|e| anyhow!("--allowed-sources: {e:?}"))?;
    }
    l.validate().map_err(|e| anyhow!("limits: {e:?}"))?;
    Ok(l)
}

pub(super) fn limit_names() -> String {
    DWORD_SPECS
        .iter()
        .map(|d| d.name)
        .collect::<Vec<_>>()
        .join(", ")
}

//! Options of `echoload run` for distributed runs (many agents, one result) and live metrics.

use std::time::SystemTime;

use anyhow::{bail, Result};
use clap::Args;

use crate::client::schedule::{
    agent_identity, check_not_past, parse_start_at, split_count, split_rate,
};
use crate::client::{Agent, RunConfig};

#[derive(Args, Debug, Clone, Default)]
pub struct MultiArgs {
    /// Start measuring at this wall-clock time (RFC 3339, e.g. 2026-12-02T05:40:00Z, or unix
    /// seconds): connections and warm-up happen before it, so agents started with one value
    /// measure the same window. More than 1 s in the past is refused.
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// This agent's index, 0-based (default: $JOB_COMPLETION_INDEX, else 0).
    #[arg(long, value_name = "I")]
    pub agent_index: Option<u32>,
    /// Number of agents sharing the load (default: $ECHOLOAD_AGENT_COUNT, else 1). With more
    /// than one, --conns and --rate are totals over all agents, split so they add up exactly.
    #[arg(long, value_name = "N")]
    pub agent_count: Option<u32>,
    /// Serve live counters in the Prometheus text format on http://ADDR/metrics: bytes each
    /// way as they move, and as of the last complete interval sent/received/lost messages,
    /// errors by kind, the latency summary (echoload_run_latency_seconds, p50/p99/p99.9) and
    /// the UDP jitter.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<String>,
    /// The target's `echoload serve --metrics` address (HOST:PORT): its counters of the
    /// target service are read before and after the run and reported as the receiver's
    /// (`receiver` in the JSON; over the whole run, warm-up included: use -O 0 to compare).
    #[arg(long, value_name = "ADDR")]
    pub server_metrics: Option<String>,
}

impl MultiArgs {
    /// Applies the start time and this agent's share to a configuration.
    pub fn apply(&self, cfg: &mut RunConfig) -> Result<()> {
        self.apply_with_env(cfg, |k| std::env::var(k).ok())
    }

    pub fn apply_with_env(
        &self,
        cfg: &mut RunConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<()> {
        if let Some(s) = &self.start_at {
            let t = parse_start_at(s)?;
            check_not_past(t, SystemTime::now())?;
            cfg.start_at = Some(t);
        }
        // --agent INDEX/COUNT (already in cfg.agent) counts as given when it is not 0/1;
        // --agent-index/--agent-count override it, the environment only fills what is missing.
        let given = (cfg.agent != Agent::default()).then_some(cfg.agent);
        let (index, count) = agent_identity(
            self.agent_index.or(given.map(|a| a.index)),
            self.agent_count.or(given.map(|a| a.count)),
            env,
        )?;
        cfg.agent = Agent { index, count };
        if count > 1 {
            if (cfg.conns as u64) < u64::from(count) {
                bail!(
                    "--conns {} is the total over {count} agents: give at least one per agent",
                    cfg.conns
                );
            }
            cfg.conns = split_count(cfg.conns as u64, index, count) as usize;
            cfg.rate = cfg.rate.map(|r| split_rate(r, index, count));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_are_split_by_agent() {
        let args = MultiArgs {
            agent_count: Some(3),
            ..MultiArgs::default()
        };
        let mut sum = (0, 0.0);
        for i in 0..3 {
            let mut cfg = RunConfig {
                conns: 10,
                rate: Some(10_000.0),
                ..RunConfig::default()
            };
            MultiArgs {
                agent_index: Some(i),
                ..args.clone()
            }
            .apply_with_env(&mut cfg, |_| None)
            .unwrap();
            assert_eq!((cfg.agent.index, cfg.agent.count), (i, 3));
            sum.0 += cfg.conns;
            sum.1 += cfg.rate.unwrap();
        }
        assert_eq!(sum, (10, 10_000.0));
        let mut few = RunConfig {
            conns: 2,
            ..RunConfig::default()
        };
        let e = args.apply_with_env(&mut few, |_| None).unwrap_err();
        assert!(e.to_string().contains("at least one per agent"), "{e}");
    }

    #[test]
    fn environment_gives_the_identity_and_a_single_agent_keeps_its_load() {
        let mut cfg = RunConfig {
            conns: 5,
            ..RunConfig::default()
        };
        MultiArgs::default()
            .apply_with_env(&mut cfg, |k| {
                (k == "JOB_COMPLETION_INDEX").then(|| "0".into())
            })
            .unwrap();
        assert_eq!((cfg.conns, cfg.agent.count), (5, 1));
        let mut cfg = RunConfig {
            conns: 5,
            ..RunConfig::default()
        };
        MultiArgs::default()
            .apply_with_env(&mut cfg, |k| match k {
                "JOB_COMPLETION_INDEX" => Some("1".into()),
                "ECHOLOAD_AGENT_COUNT" => Some("2".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!((cfg.conns, cfg.agent.index, cfg.agent.count), (2, 1, 2));
    }

    #[test]
    fn the_agent_flag_counts_unless_overridden() {
        let mut cfg = RunConfig {
            conns: 6,
            agent: Agent { index: 2, count: 3 },
            ..RunConfig::default()
        };
        MultiArgs::default()
            .apply_with_env(&mut cfg, |_| Some("0".into()))
            .unwrap();
        assert_eq!((cfg.agent.index, cfg.agent.count, cfg.conns), (2, 3, 2));
        let mut cfg = RunConfig {
            agent: Agent { index: 2, count: 3 },
            ..RunConfig::default()
        };
        MultiArgs {
            agent_index: Some(0),
            agent_count: Some(1),
            ..MultiArgs::default()
        }
        .apply_with_env(&mut cfg, |_| None)
        .unwrap();
        assert_eq!((cfg.agent.index, cfg.agent.count), (0, 1));
    }

    #[test]
    fn a_start_time_in_the_past_is_refused() {
        let mut cfg = RunConfig::default();
        let e = MultiArgs {
            start_at: Some("1000000000".into()),
            ..MultiArgs::default()
        }
        .apply_with_env(&mut cfg, |_| None)
        .unwrap_err();
        assert!(e.to_string().contains("in the past"), "{e}");
        let soon = SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64()
            + 30.0;
        MultiArgs {
            start_at: Some(format!("{soon:.3}")),
            ..MultiArgs::default()
        }
        .apply_with_env(&mut cfg, |_| None)
        .unwrap();
        assert!(cfg.start_at.is_some());
    }
}

//! Issue 17's chaos campaign: for each seed, a driver (built-in or the shipped image) runs
//! under every unkind order of wsk-sim while one control thread interleaves, at random, traffic
//! of every kind (TCP echo with half-close and abortive close, UDP echo and floods from many
//! 127.0.0.x sources, sockperf, source, discard, kernel load jobs with both connect styles,
//! to full accept queues and to a port that never answers) with control operations (job start
//! and stop, valid and half-failing `config set`, service add and remove, live limit changes,
//! socket kills) and ends with an unload in the middle of it all. Every echoed byte is
//! checked; any contract violation, leak, stuck context, failed-set leftover or slow unload
//! fails the seed, whose event list is printed with the line that replays it.
//!
//! How to run it (docs/campaign.md):
//! - CI (test.sh's own step): `cargo test -p wskecho --release --test campaign -- --ignored
//!   --exact campaign` runs `CAMPAIGN_SEEDS` seeds (default 60) from `CAMPAIGN_BASE`.
//! - replay: `CAMPAIGN_SEED=0x... ` and the same command (strict, event list printed).
//! - soak: `CAMPAIGN_MINUTES=60` (new seeds from the clock until then; `CAMPAIGN_SEEDS`
//!   bounds the count instead or as well).
//! - `CAMPAIGN_STRICT=1`: the known open defects (OPEN_ITEMS) fail the run too.
//! - `CAMPAIGN_TARGET=builtin|image`: only one driver (default: odd seeds run the image).

#[path = "../common/mod.rs"]
mod common;
// The shipped image's loader (the wskecho-sim runner's, one copy for both).
#[allow(clippy::large_types_passed_by_value, clippy::unused_self)]
#[path = "../../../wskecho-sim/src/image.rs"]
mod image;

mod actors;
mod plan;
mod run;
mod target;

use std::time::{Duration, Instant};

use plan::Plan;

/// Issue 17 items whose symptoms the campaign finds on main and that other branches fix: seen
/// here they are reported, not failed, unless CAMPAIGN_STRICT=1. The lead empties this list
/// as the fixes merge (and un-ignores the matching regression tests below).
const OPEN_ITEMS: &[u32] = &[];

/// The CI run's first seed and count (about 4 minutes on 2 cores; see docs/campaign.md).
const CI_BASE: u64 = 0xca4b_0000;
const CI_SEEDS: u64 = 60;

fn env_u64(name: &str) -> Option<u64> {
    let s = std::env::var(name).ok()?;
    let s = s.trim();
    let v = match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    };
    Some(v.unwrap_or_else(|e| panic!("{name}={s}: {e}")))
}

struct Totals {
    seeds: u64,
    events: u64,
    failed: Vec<(u64, Vec<run::Failure>)>,
    known: Vec<(u64, Vec<run::Failure>)>,
    worst_unload: (Duration, Duration),
}

/// Runs `seeds` (stopping early at `deadline`), printing each failed seed's event list.
fn campaign_over(
    seeds: impl Iterator<Item = u64>,
    strict: bool,
    deadline: Option<Instant>,
    focus: Option<&[String]>,
    late_answers: bool,
) -> Totals {
    install_panic_report();
    let image = target::image_path();
    let only = std::env::var("CAMPAIGN_TARGET").ok();
    if image.is_none() {
        eprintln!(
            "campaign: no driver image (cargo xtask driver): every seed runs the built-in driver"
        );
    }
    let mut t = Totals {
        seeds: 0,
        events: 0,
        failed: Vec::new(),
        known: Vec::new(),
        worst_unload: (Duration::ZERO, Duration::ZERO),
    };
    for seed in seeds {
        if deadline.is_some_and(|d| Instant::now() > d) {
            break;
        }
        let mut plan = Plan::focused(seed, image.is_some(), focus, late_answers);
        match only.as_deref() {
            Some("builtin") => plan.image = false,
            Some("image") => plan.image = image.is_some(),
            _ => {}
        }
        *SEED_STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Instant::now());
        let o = run::run(&plan, image.as_ref());
        *SEED_STARTED
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        t.seeds += 1;
        t.events += o.events as u64;
        if o.unload > t.worst_unload.0 {
            t.worst_unload = (o.unload, o.unload_bound);
        }
        if o.failures.is_empty() {
            continue;
        }
        let open = |f: &run::Failure| !strict && f.item.is_some_and(|i| OPEN_ITEMS.contains(&i));
        let known_only = o.failures.iter().all(open);
        let replay = format!(
            "replay: {}CAMPAIGN_SEED={seed:#x} cargo test -p wskecho --release --test campaign -- --ignored --exact campaign --nocapture",
            if late_answers { "" } else { "CAMPAIGN_LATE_ANSWERS=0 " }
        );
        if known_only {
            let items: Vec<_> = o.failures.iter().filter_map(|f| f.item).collect();
            let first: String = o.failures[0].msg.chars().take(160).collect();
            eprintln!("campaign: seed {seed:#x}: known open issue 17 item(s) {items:?}: {first}; {replay}");
            t.known.push((seed, o.failures));
        } else {
            eprintln!(
                "\ncampaign: seed {seed:#x} FAILED\n{plan}{}",
                o.log.join("\n")
            );
            for f in &o.failures {
                eprintln!(
                    "  failure{}: {}",
                    f.item
                        .map_or(String::new(), |i| format!(" (issue 17 item {i})")),
                    f.msg
                );
            }
            eprintln!("  {replay}\n");
            t.failed.push((seed, o.failures));
        }
    }
    t
}

/// Longest a seed may take: every wait in it is bounded (clients 6 s per read, quiesce
/// 3 x its bound, the unload's rescue 60 s past its bound), so a seed past this is a hang.
const SEED_CAP: Duration = Duration::from_secs(150);

/// When the running seed started (None between seeds).
static SEED_STARTED: std::sync::Mutex<Option<Instant>> = std::sync::Mutex::new(None);

/// A driver panic on a sim thread (or a sim abort) ends the process before any report: print
/// the seed and its events so far first. A seed that hangs past SEED_CAP is reported the same
/// way and the process stops (as a watchdog bugcheck would), instead of CI's timeout killing
/// it without a word.
fn install_panic_report() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::thread::spawn(|| loop {
            std::thread::sleep(Duration::from_secs(1));
            let started = *SEED_STARTED.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if started.is_some_and(|t| t.elapsed() > SEED_CAP) {
                let cur = run::CURRENT.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!(
                        "campaign: seed HUNG for {SEED_CAP:?} (on main: a connect completing during the unload, issue 17 items 1/3, hangs WskDeregister) during\n{}\n",
                        cur.join("\n")
                    )
                    .as_bytes(),
                );
                std::process::abort();
            }
        });
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(cur) = run::CURRENT.try_lock().ok().filter(|c| !c.is_empty()) {
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr(),
                    format!("campaign: panic during\n{}\n", cur.join("\n")).as_bytes(),
                );
            }
            prev(info);
        }));
    });
}

fn summary(t: &Totals, took: Duration) {
    let secs = took.as_secs_f64().max(1e-9);
    eprintln!(
        "campaign: {} seeds, {} events in {:.1} s: {:.2} seeds/s, {:.1} events/s; slowest unload {} ms (its bound {} ms)",
        t.seeds,
        t.events,
        secs,
        t.seeds as f64 / secs,
        t.events as f64 / secs,
        t.worst_unload.0.as_millis(),
        t.worst_unload.1.as_millis()
    );
    let mut by_item = std::collections::BTreeMap::<u32, Vec<u64>>::new();
    for (seed, fs) in t.known.iter().chain(&t.failed) {
        for f in fs {
            if let Some(i) = f.item {
                let v = by_item.entry(i).or_default();
                if !v.contains(seed) {
                    v.push(*seed);
                }
            }
        }
    }
    for (item, seeds) in &by_item {
        let list: Vec<String> = seeds.iter().map(|s| format!("{s:#x}")).collect();
        eprintln!(
            "campaign: issue 17 item {item} seen in {} seed(s): {}",
            seeds.len(),
            list.join(" ")
        );
    }
}

/// The campaign: CI's bounded run, a replay, or a soak (see the module doc).
#[test]
#[ignore = "test.sh runs it in a step of its own: cargo test -p wskecho --release --test campaign -- --ignored --exact campaign"]
fn campaign() {
    let t0 = Instant::now();
    let strict = std::env::var("CAMPAIGN_STRICT").as_deref() == Ok("1");
    let focus: Option<Vec<String>> = std::env::var("CAMPAIGN_ONLY")
        .ok()
        .map(|s| s.split(',').map(|k| k.trim().to_string()).collect());
    let focus = focus.as_deref();
    // Connects answered late hang DriverUnload on main (see Plan::focused): off while item 3
    // is open, unless CAMPAIGN_LATE_ANSWERS=1.
    let late = env_u64("CAMPAIGN_LATE_ANSWERS").map_or(!OPEN_ITEMS.contains(&3), |v| v != 0);
    let t = if let Some(seed) = env_u64("CAMPAIGN_SEED") {
        campaign_over(std::iter::once(seed), true, None, focus, late)
    } else {
        let minutes = env_u64("CAMPAIGN_MINUTES");
        let base = env_u64("CAMPAIGN_BASE").unwrap_or_else(|| {
            if minutes.is_some() {
                // A soak covers new ground each time; the base is printed to replay it.
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() << 16)
            } else {
                CI_BASE
            }
        });
        let count = env_u64("CAMPAIGN_SEEDS").unwrap_or(if minutes.is_some() {
            u64::MAX
        } else {
            CI_SEEDS
        });
        eprintln!(
            "campaign: seeds from {base:#x}, {count} at most{}",
            minutes.map_or(String::new(), |m| format!(", {m} minutes"))
        );
        let deadline = minutes.map(|m| t0 + Duration::from_secs(m * 60));
        campaign_over(
            (0..count).map(|i| base.wrapping_add(i)),
            strict,
            deadline,
            focus,
            late,
        )
    };
    summary(&t, t0.elapsed());
    assert!(
        t.failed.is_empty(),
        "campaign: {} seed(s) failed: {:x?}",
        t.failed.len(),
        t.failed.iter().map(|f| f.0).collect::<Vec<_>>()
    );
}

/// Replays `seeds` (drawn with CAMPAIGN_ONLY=`focus`) `rounds` times each: none may show issue
/// 17 item `item` or a failure no item explains. Other open items' symptoms are left to their
/// own tests, so each test turns green with its own fix.
fn regression(item: u32, focus: Option<&str>, seeds: &[u64], rounds: usize) {
    let t0 = Instant::now();
    let focus: Option<Vec<String>> = focus.map(|f| f.split(',').map(str::to_string).collect());
    let all = seeds.iter().copied().cycle().take(seeds.len() * rounds);
    let t = campaign_over(all, true, None, focus.as_deref(), true);
    summary(&t, t0.elapsed());
    let bad: Vec<(u64, &run::Failure)> = t
        .failed
        .iter()
        .flat_map(|(s, fs)| fs.iter().map(move |f| (*s, f)))
        .filter(|(_, f)| f.item.is_none_or(|i| i == item))
        .collect();
    assert!(
        bad.is_empty(),
        "issue 17 item {item} regression seeds failed: {bad:#x?}"
    );
}

// Regression seeds: strict runs of the campaign on main at b793b26 found each item with these
// seeds (their CAMPAIGN_ONLY focus given); see docs/campaign.md for how often each replays.
// Ignored while the item is open on main: the lead un-ignores each test (and drops the item
// from OPEN_ITEMS) when its fix is merged.

/// Item 1: a connect completing while a job stop or the unload aborts its context: the
/// driver enables events on a socket it has already closed (C23, use after close).
#[test]
fn regression_item_1_connect_completion_racing_stop() {
    regression(1, Some("job"), &[0xca4b_0001, 0xca4b_0006, 0xca4b_0008], 3);
}

/// Item 2: a client writes and half-closes under the disconnect-race order and gets the
/// server's FIN before the last bytes of its echo.
#[test]
fn regression_item_2_echo_tail_before_fin() {
    regression(2, Some("echo"), &[0xca4b_0000, 0xca4b_0001, 0xca4b_0003], 2);
}

/// Item 3: the unload (or a job stop) waits for connects to a port that never answers.
#[test]
fn regression_item_3_unload_with_a_connect_pending() {
    regression(3, None, &[0xca4b_000b, 0xca4b_0011, 0xca4b_001a], 1);
}

/// Item 4: a `config set` replace that fails half-way (a taken port) leaves its limits and
/// allow-list applied.
#[test]
fn regression_item_4_failed_replace_changes_nothing() {
    regression(
        4,
        Some("replace"),
        &[0xca4b_0000, 0xca4b_0001, 0xca4b_0002],
        2,
    );
}

/// The campaign's own byte check can fail: a differing byte, bytes more than sent, a FIN
/// before the whole echo and a reset part-way are each told apart from a whole echo (an RST
/// after the whole echo is a whole echo).
#[test]
fn the_echo_check_tells_loss_and_corruption_apart() {
    use actors::{judge_stream, Verdict};
    let sent = common::payload(7, 1500);
    let reset = || Err(std::io::Error::from(std::io::ErrorKind::ConnectionReset));
    let mut bad = sent.clone();
    bad[700] ^= 1;
    assert!(matches!(
        judge_stream(&sent, &sent, Ok(()), "t"),
        Verdict::Ok
    ));
    assert!(matches!(
        judge_stream(&sent, &sent, reset(), "t"),
        Verdict::Ok
    ));
    assert!(matches!(
        judge_stream(&sent, &bad, Ok(()), "t"),
        Verdict::Corrupt(_)
    ));
    assert!(matches!(
        judge_stream(&sent[..10], &sent[..11], Ok(()), "t"),
        Verdict::Corrupt(_)
    ));
    assert!(matches!(
        judge_stream(&sent, &sent[..1486], Ok(()), "t"),
        Verdict::ShortBeforeFin(_)
    ));
    assert!(matches!(
        judge_stream(&sent, &sent[..1486], reset(), "t"),
        Verdict::Error(_)
    ));
    assert!(matches!(
        judge_stream(&[], &[], Ok(()), "discard"),
        Verdict::Ok
    ));
    assert!(matches!(
        judge_stream(&[], b"x", Ok(()), "discard"),
        Verdict::Corrupt(_)
    ));
}

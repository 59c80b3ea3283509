//! The error-rate rule under continuous monitoring, measured over many seeded runs:
//! healthy (A/A) canaries are rolled back in at most 1% of 200 runs, and a 1% → 4% canary
//! (10% of 50 req/s) is caught with a median delay of at most 1.5 minutes of event time.

use driftwatch::command::{Command, CommandKind};
use driftwatch::config::Config;
use driftwatch::sim;

fn run(name: &str, seed: u64) -> Vec<Command> {
    run_scenario(sim::scenario(name).expect("scenario"), seed)
}

fn run_scenario(scenario: sim::Scenario, seed: u64) -> Vec<Command> {
    driftwatch::replay::simulated(scenario, seed, Config::default())
}

/// Runs `seeds` on two threads.
fn many(name: &str, seeds: std::ops::Range<u64>) -> Vec<(u64, Vec<Command>)> {
    let seeds: Vec<u64> = seeds.collect();
    let (a, b) = seeds.split_at(seeds.len() / 2);
    std::thread::scope(|s| {
        let ha = s.spawn(|| a.iter().map(|&seed| (seed, run(name, seed))).collect::<Vec<_>>());
        let hb = s.spawn(|| b.iter().map(|&seed| (seed, run(name, seed))).collect::<Vec<_>>());
        let mut all = ha.join().expect("thread a");
        all.extend(hb.join().expect("thread b"));
        all
    })
}

#[test]
fn healthy_canaries_are_rarely_rolled_back() {
    let runs = many("aa-control", 1000..1200);
    let rolled_back: Vec<u64> = runs
        .iter()
        .filter(|(_, cmds)| cmds.iter().any(|c| c.command == CommandKind::Rollback))
        .map(|(seed, _)| *seed)
        .collect();
    let promoted = runs.iter().filter(|(_, cmds)| cmds.iter().any(|c| c.command == CommandKind::Promote)).count();
    let rate = rolled_back.len() as f64 / runs.len() as f64;
    println!(
        "A/A: {} of {} healthy canaries rolled back ({:.2}%), seeds {:?}; {} promoted within 35 min",
        rolled_back.len(),
        runs.len(),
        rate * 100.0,
        rolled_back,
        promoted
    );
    assert_eq!(runs.len(), 200);
    assert!(rate <= 0.01, "false-rollback rate {rate}");
}

/// The A/A scenario with the baseline's and the canary's error rates set.
fn aa_with(baseline_errors: f64, canary_errors: f64) -> sim::Scenario {
    let mut s = sim::scenario("aa-control").expect("scenario");
    assert_eq!(s.streams.len(), 2);
    s.streams[0].error_rate = baseline_errors;
    s.streams[1].error_rate = canary_errors;
    s
}

#[test]
fn error_free_canaries_are_promoted() {
    // Beside an error-free baseline the rate-ratio test never sees an error; the candidate's
    // own rate shown below `min_absolute_increase` is what promotes it.
    let fault = sim::scenario("aa-control").and_then(|s| s.streams.get(1).map(|c| c.start)).unwrap_or(0);
    let mut delays = Vec::new();
    for seed in 0..20 {
        let cmds = run_scenario(aa_with(0.0, 0.0), seed);
        assert!(cmds.iter().all(|c| c.command != CommandKind::Rollback), "seed {seed}: {cmds:?}");
        let promote = cmds.iter().find(|c| c.command == CommandKind::Promote);
        let promote = promote.unwrap_or_else(|| panic!("seed {seed}: error-free canary not promoted: {cmds:?}"));
        assert_eq!(promote.evidence["candidate"]["errors"], 0);
        let at = promote.decided_at;
        delays.push((at - sim::EPOCH - fault) as f64 / 60_000.0);
    }
    delays.sort_by(f64::total_cmp);
    println!("error-free A/A: 20 of 20 promoted, {:.1}–{:.1} min after the canary started", delays[0], delays[19]);
}

#[test]
fn canaries_failing_beside_an_error_free_baseline_are_not_promoted() {
    // 1% errors against none: worse than the 0.5-point minimum effect, so never promoted.
    for seed in 0..40 {
        let cmds = run_scenario(aa_with(0.0, 0.01), seed);
        assert!(cmds.iter().all(|c| c.command != CommandKind::Promote), "seed {seed}: {cmds:?}");
    }
}

#[test]
fn regressing_canaries_are_caught_within_ninety_seconds_median() {
    let runs = many("canary-error", 1..101);
    let fault = sim::EPOCH + sim::scenario("canary-error").and_then(|s| s.fault_at).unwrap_or(0);
    let mut delays: Vec<f64> = runs
        .iter()
        .filter_map(|(_, cmds)| {
            cmds.iter()
                .find(|c| c.command == CommandKind::Rollback && c.target.version == "2.4.0")
                .map(|c| c.decided_at)
                .map(|t| (t - fault) as f64 / 1000.0)
        })
        .collect();
    delays.sort_by(f64::total_cmp);
    let missed = runs.len() - delays.len();
    let q = |p: f64| delays.get(((delays.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    println!(
        "1% -> 4% canary at 10% of 50 req/s: caught in {} of {} runs; delay p10 {:.0} s, median {:.0} s, p90 {:.0} s, max {:.0} s (event time)",
        delays.len(),
        runs.len(),
        q(0.1),
        q(0.5),
        q(0.9),
        q(1.0)
    );
    assert_eq!(missed, 0, "{missed} regressions missed");
    assert!(q(0.5) <= 90.0, "median delay {} s", q(0.5));
    let wrong = runs
        .iter()
        .flat_map(|(_, c)| c)
        .filter(|c| c.target.version != "2.4.0" || c.command != CommandKind::Rollback)
        .count();
    assert_eq!(wrong, 0, "only the canary may be rolled back");
}

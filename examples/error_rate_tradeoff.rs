//! The error-rate rule's trade-off between false rollbacks and detection delay, measured over
//! seeded runs for several values of `error_rate.min_events` (the events each side must have
//! served before a rollback):
//!
//! - **A/A**: a healthy canary (1% errors beside a 1% baseline) at 10% of 50 req/s, and the
//!   same pair at 1 req/s each: how often is it rolled back?
//! - **Regressions**: 1% → 4% at 10% of 50 req/s (the `canary-error` scenario), 1% → 4% and
//!   1% → 30% at 1 req/s each: how long from the fault to the rollback (event time)?
//!
//! ```text
//! cargo run --release --example error_rate_tradeoff -- [A/A seeds, default 1000] [floors, default 1,25,50,100,200] [first A/A seed, default 10000]
//! ```

use driftwatch::command::CommandKind;
use driftwatch::config::Config;
use driftwatch::replay::simulated;
use driftwatch::sim::{self, Scenario};

/// The `aa-control` pair (2.3.0 from the start, canary 2.4.0 from minute 10) at the given rates
/// (events/s) and error rates.
fn pair(rates: (f64, f64), errors: (f64, f64), minutes: i64) -> Scenario {
    let mut s = sim::scenario("aa-control").unwrap_or_else(|| panic!("aa-control scenario"));
    s.streams[0].rate = rates.0;
    s.streams[1].rate = rates.1;
    s.streams[0].error_rate = errors.0;
    s.streams[1].error_rate = errors.1;
    s.duration = minutes * 60_000;
    s
}

/// Runs every seed on two threads; returns, per seed, the time of the canary's rollback from
/// the canary's start in seconds (`None`: not rolled back).
fn rollbacks(scenario: &Scenario, seeds: std::ops::Range<u64>, config: &Config) -> Vec<Option<f64>> {
    let start = sim::EPOCH + scenario.streams[1].start;
    let one = |seed: u64| {
        simulated(scenario.clone(), seed, config.clone())
            .iter()
            .find(|c| c.command == CommandKind::Rollback && c.target.version == "2.4.0")
            .map(|c| (c.decided_at - start) as f64 / 1000.0)
    };
    let seeds: Vec<u64> = seeds.collect();
    let (a, b) = seeds.split_at(seeds.len() / 2);
    std::thread::scope(|s| {
        let ha = s.spawn(|| a.iter().map(|&x| one(x)).collect::<Vec<_>>());
        let mut all: Vec<_> = b.iter().map(|&x| one(x)).collect();
        let mut first = ha.join().unwrap_or_else(|_| panic!("worker thread"));
        first.append(&mut all);
        first
    })
}

/// "rate% (k/n)" of rolled-back runs.
fn rate(runs: &[Option<f64>]) -> String {
    let k = runs.iter().filter(|r| r.is_some()).count();
    format!("{:.2}% ({k}/{})", 100.0 * k as f64 / runs.len() as f64, runs.len())
}

/// "median s (p90 s), missed m" of the delays.
fn delays(runs: &[Option<f64>], fault_from_start: f64) -> String {
    let mut d: Vec<f64> = runs.iter().flatten().map(|t| t - fault_from_start).collect();
    d.sort_by(f64::total_cmp);
    let q = |p: f64| d.get(((d.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(f64::NAN);
    format!("{:.0} s (p90 {:.0} s), missed {}", q(0.5), q(0.9), runs.len() - d.len())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let aa_seeds: u64 = args.first().and_then(|a| a.parse().ok()).unwrap_or(1000);
    let floors: Vec<u64> = args
        .get(1)
        .map(|a| a.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 25, 50, 100, 200]);
    let first: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let canary = sim::scenario("canary-error").unwrap_or_else(|| panic!("canary-error scenario"));
    // The canary-error fault starts with the canary's errors at minute 10; the canary itself
    // starts earlier, healthy.
    let canary_fault = (canary.fault_at.unwrap_or(0) - canary.streams[1].start) as f64 / 1000.0;
    let aa_fast = sim::scenario("aa-control").unwrap_or_else(|| panic!("aa-control scenario"));
    let aa_thin = pair((1.0, 1.0), (0.01, 0.01), 45);
    let thin_4 = pair((1.0, 1.0), (0.01, 0.04), 45);
    let thin_30 = pair((1.0, 1.0), (0.01, 0.30), 20);
    println!("| min_events | A/A 50 req/s | A/A 1 req/s | 1%→4%, 10% of 50 req/s | 1%→4%, 1 req/s | 1%→30%, 1 req/s |");
    println!("|---|---|---|---|---|---|");
    for floor in floors {
        let mut config = Config::default();
        config.error_rate.min_events = floor;
        let t = std::time::Instant::now();
        let aa1 = rollbacks(&aa_fast, first..first + aa_seeds, &config);
        let aa2 = rollbacks(&aa_thin, first + 10_000..first + 10_000 + aa_seeds, &config);
        let c1 = rollbacks(&canary, 1..101, &config);
        let c2 = rollbacks(&thin_4, 1..101, &config);
        let c3 = rollbacks(&thin_30, 1..101, &config);
        println!(
            "| {floor} | {} | {} | {} | {} | {} |",
            rate(&aa1),
            rate(&aa2),
            delays(&c1, canary_fault),
            delays(&c2, 0.0),
            delays(&c3, 0.0)
        );
        eprintln!("min_events {floor}: {:.0} s", t.elapsed().as_secs_f64());
    }
}

//! The accuracy rules under continuous monitoring, measured over many seeded runs of a
//! labelled model (every prediction labelled 30–180 s later):
//!
//! * A/A: a canary as accurate as its baseline (90%, 10–50% of 20 predictions/s, 80 min), and
//!   a single version as accurate as its own warm-up reference (20 predictions/s, 2 h), get an
//!   accuracy command (review, rollback or retrain) in at most 1% of 200 runs each.
//! * Delays: how many labels, and how much event time, a canary 3 or 10 points less accurate
//!   than its baseline, and a version that loses 3 points against its own reference (all of its
//!   labels before the current window), take to be reviewed or rolled back, at several label
//!   rates.

use driftwatch::command::{Command, CommandKind, Reason};
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::{Decoder, EventType};
use driftwatch::sim::{self, Generator, Scenario, Shift, StreamSpec};
use driftwatch::time::Millis;

const MIN: Millis = 60_000;

/// A fraud model version answering `per_sec` predictions a second from `start`, each labelled,
/// right with probability `accuracy`.
fn labelled(version: &str, start: Millis, per_sec: f64, accuracy: f64) -> StreamSpec {
    let template = sim::scenario("accuracy-review").expect("scenario").streams[0].clone();
    StreamSpec {
        model: Some(("fraud".into(), version.into())),
        app: None,
        start,
        rate: per_sec,
        error_rate: 0.0,
        features: false,
        accuracy: Some(accuracy),
        ..template
    }
}

fn scenario(duration: Millis, streams: Vec<StreamSpec>, fault_at: Millis) -> Scenario {
    Scenario {
        name: "accuracy-measure",
        description: "labelled fraud model versions",
        duration,
        streams,
        bad_input_rate: 0.0,
        disorder: 0,
        fault_at: Some(fault_at),
        expected: Vec::new(),
    }
}

/// Baseline `6` at 90% from the start; canary `7` from 10 min with `share` of `per_sec`
/// predictions a second, right with probability `accuracy`.
fn canary(duration: Millis, per_sec: f64, share: f64, accuracy: f64) -> Scenario {
    let streams =
        vec![labelled("6", 0, per_sec * (1.0 - share), 0.90), labelled("7", 10 * MIN, per_sec * share, accuracy)];
    scenario(duration, streams, 10 * MIN)
}

/// Version `7` alone at 90%, falling to `after` at `at`.
fn own_reference(duration: Millis, per_sec: f64, at: Millis, after: f64) -> Scenario {
    let mut v7 = labelled("7", 0, per_sec, 0.90);
    v7.shift = Some((at, Shift::Accuracy(after)));
    scenario(duration, vec![v7], at)
}

/// What one run gave: the commands, and the event times of the labels of version `7`.
struct Run {
    commands: Vec<Command>,
    labels_of_7: Vec<Millis>,
}

fn is_accuracy(c: &Command) -> bool {
    c.reason == Reason::Accuracy
}

/// Replays a scenario through the default policy; with `stop_at_first`, stops after the first
/// accuracy command for version `7`.
fn run(scenario: &Scenario, seed: u64, stop_at_first: bool) -> Run {
    let mut generator = Generator::new(scenario.clone(), seed, 1.0);
    let mut engine = Engine::new(Config::default());
    let mut decoder = Decoder::default();
    let mut out = Run { commands: Vec::new(), labels_of_7: Vec::new() };
    let mut offset = 0;
    while let Some(line) = generator.next_line() {
        offset += 1;
        match decoder.decode(&line) {
            Ok(ev) => {
                // The simulator's event ids name the model version: `fraud-7-<n>`.
                if ev.kind == EventType::Label && ev.event_id.as_deref().is_some_and(|id| id.starts_with("fraud-7-")) {
                    out.labels_of_7.push(ev.ts);
                }
                let _ = engine.ingest(&ev, Position { source: 0, offset });
                decoder.recycle(ev);
            }
            Err(bad) => engine.reject(&bad),
        }
        out.commands.extend(engine.drain_commands());
        if stop_at_first && out.commands.iter().any(|c| c.target.version == "7" && is_accuracy(c)) {
            return out;
        }
    }
    engine.finish();
    out.commands.extend(engine.drain_commands());
    out
}

/// Runs `seeds` on two threads; `make` gives each seed's scenario.
fn many(seeds: std::ops::Range<u64>, stop_at_first: bool, make: impl Fn(u64) -> Scenario + Sync) -> Vec<(u64, Run)> {
    let seeds: Vec<u64> = seeds.collect();
    let (a, b) = seeds.split_at(seeds.len() / 2);
    let go = |part: &[u64]| part.iter().map(|&seed| (seed, run(&make(seed), seed, stop_at_first))).collect::<Vec<_>>();
    std::thread::scope(|s| {
        let ha = s.spawn(|| go(a));
        let hb = s.spawn(|| go(b));
        let mut all = ha.join().expect("thread a");
        all.extend(hb.join().expect("thread b"));
        all
    })
}

/// Seeds whose run had an accuracy command, with what it was.
fn alarms(runs: &[(u64, Run)]) -> Vec<(u64, String)> {
    runs.iter()
        .filter_map(|(seed, r)| {
            r.commands
                .iter()
                .find(|c| is_accuracy(c))
                .map(|c| (*seed, format!("{:?} of {}", c.command, c.target.version)))
        })
        .collect()
}

#[test]
fn equally_accurate_versions_are_rarely_reviewed_rolled_back_or_retrained() {
    // Canaries at 10%, 20%, … 50% of the traffic, in turn.
    let share = |seed: u64| 0.1 + 0.1 * (seed % 5) as f64;
    let canaries = many(2000..2200, false, |seed| canary(90 * MIN, 20.0, share(seed), 0.90));
    let alone = many(3000..3200, false, |_| own_reference(120 * MIN, 20.0, 120 * MIN, 0.90));
    let (ca, aa) = (alarms(&canaries), alarms(&alone));
    let rate = |a: &[(u64, String)], n: usize| a.len() as f64 / n as f64;
    println!(
        "A/A canary (90% vs 90%, 10-50% of 20 predictions/s, 80 min): {} of {} runs with an accuracy command ({:.2}%) {:?}",
        ca.len(),
        canaries.len(),
        rate(&ca, canaries.len()) * 100.0,
        ca
    );
    println!(
        "A/A own reference (90% throughout, 20 predictions/s, 2 h): {} of {} runs with an accuracy command ({:.2}%) {:?}",
        aa.len(),
        alone.len(),
        rate(&aa, alone.len()) * 100.0,
        aa
    );
    assert_eq!((canaries.len(), alone.len()), (200, 200));
    assert!(rate(&ca, canaries.len()) <= 0.01, "canary false-alarm rate {ca:?}");
    assert!(rate(&aa, alone.len()) <= 0.01, "own-reference false-alarm rate {aa:?}");
}

/// Delays of the first accuracy command for version `7` after the fault: labels of `7`
/// received since the fault, and event time in minutes; runs without one are `missed`.
struct Delays {
    labels: Vec<f64>,
    minutes: Vec<f64>,
    missed: usize,
}

impl Delays {
    fn of(runs: &[(u64, Run)], scenario: &Scenario, expected: CommandKind) -> Delays {
        let fault = sim::EPOCH + scenario.fault_at.unwrap_or(0);
        let mut d = Delays { labels: Vec::new(), minutes: Vec::new(), missed: 0 };
        for (seed, r) in runs {
            let first = r.commands.iter().find(|c| c.target.version == "7" && is_accuracy(c));
            let Some(c) = first else {
                d.missed += 1;
                continue;
            };
            assert_eq!(c.command, expected, "seed {seed}: {:?} instead of {expected:?}", c.command);
            let at = c.decided_at;
            assert!(at > fault, "seed {seed}: decided before the fault");
            d.labels.push(r.labels_of_7.iter().filter(|&&t| t >= fault && t < at).count() as f64);
            d.minutes.push((at - fault) as f64 / MIN as f64);
            let others = r.commands.iter().filter(|c| c.target.version != "7" && is_accuracy(c)).count();
            assert_eq!(others, 0, "seed {seed}: the baseline got an accuracy command");
        }
        d.labels.sort_by(f64::total_cmp);
        d.minutes.sort_by(f64::total_cmp);
        d
    }

    fn median(v: &[f64]) -> f64 {
        v.get(v.len() / 2).copied().unwrap_or(f64::INFINITY)
    }

    fn p90(v: &[f64]) -> f64 {
        v.get((v.len() as f64 * 0.9) as usize).copied().unwrap_or(f64::INFINITY)
    }
}

/// One measured setting: what it is, its scenario at `labels_per_min` labels of version `7`
/// a minute, the command expected, and bounds on the median delay (labels, minutes).
struct Setting {
    what: &'static str,
    make: fn(f64) -> Scenario,
    expected: CommandKind,
    /// (labels of `7` a minute, median labels at most, median minutes at most); `None`
    /// bounds: too slow at this rate to be caught within the run.
    rates: Vec<(f64, Option<(f64, f64)>)>,
}

fn measure(setting: &Setting, seeds: std::ops::Range<u64>) {
    for &(per_min, bounds) in &setting.rates {
        let make = setting.make;
        let scenario = make(per_min);
        let runs = many(seeds.clone(), true, |_| make(per_min));
        let d = Delays::of(&runs, &scenario, setting.expected);
        println!(
            "{}: {per_min} labels/min: {:?} in {} of {} runs; median {:.0} labels (p90 {:.0}), {:.1} min (p90 {:.1})",
            setting.what,
            setting.expected,
            runs.len() - d.missed,
            runs.len(),
            Delays::median(&d.labels),
            Delays::p90(&d.labels),
            Delays::median(&d.minutes),
            Delays::p90(&d.minutes),
        );
        if let Some((labels, minutes)) = bounds {
            assert!(d.missed * 10 <= runs.len(), "{}: {per_min}/min: {} missed", setting.what, d.missed);
            assert!(Delays::median(&d.labels) <= labels, "{}: {per_min}/min: labels", setting.what);
            assert!(Delays::median(&d.minutes) <= minutes, "{}: {per_min}/min: minutes", setting.what);
        }
    }
}

#[test]
fn a_canary_three_points_less_accurate_is_reviewed() {
    let setting = Setting {
        what: "canary 87% vs 90% (25% of traffic)",
        make: |per_min| canary(10 * MIN + 6 * 60 * MIN, per_min / 60.0 * 4.0, 0.25, 0.87),
        expected: CommandKind::Review,
        rates: vec![(120.0, Some((5_000.0, 45.0))), (600.0, Some((5_000.0, 11.0))), (3000.0, Some((5_000.0, 4.0)))],
    };
    measure(&setting, 1..41);
}

#[test]
fn a_canary_ten_points_less_accurate_is_rolled_back() {
    let setting = Setting {
        what: "canary 80% vs 90% (25% of traffic)",
        make: |per_min| canary(10 * MIN + 4 * 60 * MIN, per_min / 60.0 * 4.0, 0.25, 0.80),
        expected: CommandKind::Rollback,
        rates: vec![(120.0, Some((2700.0, 25.0))), (600.0, Some((2200.0, 6.0))), (3000.0, Some((1800.0, 2.7)))],
    };
    measure(&setting, 1..41);
}

#[test]
fn a_version_losing_three_points_against_its_reference_is_reviewed() {
    let setting = Setting {
        what: "own reference 90% -> 87% at 30 min",
        make: |per_min| own_reference(30 * MIN + 2 * 60 * MIN, per_min / 60.0, 30 * MIN, 0.87),
        expected: CommandKind::Review,
        // The reference is all of the version's labels before its window (18,000 and more at
        // the shift): the loss shows once the 10-minute window is mostly after it.
        rates: vec![(600.0, Some((9_000.0, 15.0))), (3000.0, Some((27_000.0, 9.0))), (12000.0, Some((85_000.0, 7.5)))],
    };
    measure(&setting, 1..11);
}

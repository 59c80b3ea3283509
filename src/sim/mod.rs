//! Synthetic fleet traffic with injected faults: the scenarios behind `simulate`, the demo,
//! the tests and the benchmarks.
//!
//! A scenario is a set of streams (an app version's requests, a model version's predictions),
//! each a Poisson process with its own error rate, latency distribution, features and label
//! accuracy, some of which change at a given time. Streams are merged in event-time order;
//! labels follow their predictions after a delay. Everything is drawn from one seeded
//! generator, so a scenario and a seed always give the same bytes. Bad lines and disorder are
//! drawn from separate generators, so a scenario's "clean twin" has exactly the same events.
//!
//! Where things are: `scenarios` (the scenario table, [`scenario`] and [`services`]),
//! `generator` ([`Generator`] and the [`FleetAction`]s a deployer applies while it runs).

mod generator;
mod scenarios;

use std::io::{self, Write};

use crate::command::{CommandKind, Reason};
use crate::config::Kind;
use crate::time::Millis;

pub use generator::{FleetAction, FleetChange, Generator};
pub use scenarios::{scenario, services, DEFAULT_SERVICES, SCENARIOS};

/// 2025-11-24T16:00:00Z: where every scenario starts.
pub const EPOCH: Millis = 1_764_000_000_000;
const MIN: Millis = 60_000;

/// How a stream writes its timestamps (both forms of the contract are exercised).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsFormat {
    /// RFC 3339 strings.
    Rfc3339,
    /// Integer epoch milliseconds.
    EpochMs,
}

/// A change in a stream's features or in how often its predictions are right.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shift {
    /// Shift of `amount`'s log-value by this many standard deviations.
    AmountLog(f64),
    /// The two most common countries swap shares (45% ↔ 20%).
    CountrySwap,
    /// Class predictions are right with this probability instead of the stream's `accuracy`.
    Accuracy(f64),
}

/// One stream of traffic.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamSpec {
    /// App version named by the events.
    pub app: Option<(String, String)>,
    /// Model version named by the events (then the events are predictions).
    pub model: Option<(String, String)>,
    /// Start, from the scenario start.
    pub start: Millis,
    /// End, from the scenario start (`None`: runs to the end).
    pub end: Option<Millis>,
    /// Events per second.
    pub rate: f64,
    /// Share of events that fail.
    pub error_rate: f64,
    /// Median latency in ms.
    pub latency_median: f64,
    /// Log-space deviation of latency.
    pub latency_sigma: f64,
    /// Features on predictions.
    pub features: bool,
    /// A shift of features (or of accuracy) at a time (from the scenario start).
    pub shift: Option<(Millis, Shift)>,
    /// Predictions get labels, with this accuracy (class predictions) …
    pub accuracy: Option<f64>,
    /// … or numeric predictions with numeric labels.
    pub numeric_prediction: bool,
    /// Timestamp format.
    pub ts_format: TsFormat,
}

impl StreamSpec {
    fn app(name: &str, version: &str, start: Millis, rate: f64, error_rate: f64) -> Self {
        StreamSpec {
            app: Some((name.into(), version.into())),
            model: None,
            start,
            end: None,
            rate,
            error_rate,
            latency_median: 40.0,
            latency_sigma: 0.35,
            features: false,
            shift: None,
            accuracy: None,
            numeric_prediction: false,
            ts_format: TsFormat::Rfc3339,
        }
    }

    fn model(name: &str, version: &str, start: Millis, rate: f64, error_rate: f64) -> Self {
        StreamSpec {
            app: None,
            model: Some((name.into(), version.into())),
            start,
            end: None,
            rate,
            error_rate,
            latency_median: 12.0,
            latency_sigma: 0.3,
            features: true,
            shift: None,
            accuracy: None,
            numeric_prediction: false,
            ts_format: TsFormat::EpochMs,
        }
    }
}

/// A command a scenario is built to produce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expected {
    /// Command.
    pub command: CommandKind,
    /// Target kind.
    pub kind: Kind,
    /// Target name.
    pub name: String,
    /// Target version.
    pub version: String,
    /// Reason.
    pub reason: Reason,
    /// For drift: the features that must be named (and no others).
    pub drifted: Vec<String>,
}

/// A named scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// Name for `--scenario`.
    pub name: &'static str,
    /// One line on what it shows.
    pub description: &'static str,
    /// Length of the stream.
    pub duration: Millis,
    /// The streams.
    pub streams: Vec<StreamSpec>,
    /// Share of lines replaced by… no: added as bad input.
    pub bad_input_rate: f64,
    /// Maximum delay of an event's position in the output relative to its time.
    pub disorder: Millis,
    /// When the fault starts (for detection delays), from the scenario start.
    pub fault_at: Option<Millis>,
    /// What `replay` should decide under the default policy.
    pub expected: Vec<Expected>,
}

/// Writes scenario `name` with `seed` to `out`; returns the number of lines.
pub fn write_scenario(
    name: &str,
    seed: u64,
    rate_scale: f64,
    duration: Option<Millis>,
    out: &mut dyn Write,
) -> io::Result<u64> {
    let s = scenario(name)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("unknown scenario `{name}`")))?;
    write_spec(s, seed, rate_scale, duration, out)
}

/// [`write_scenario`] for a scenario already built (e.g. [`services`] with its size).
pub fn write_spec(
    mut s: Scenario,
    seed: u64,
    rate_scale: f64,
    duration: Option<Millis>,
    out: &mut dyn Write,
) -> io::Result<u64> {
    if let Some(d) = duration {
        s.duration = d;
    }
    Generator::new(s, seed, rate_scale).write_all(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_scenario_exists_and_is_deterministic() {
        for name in SCENARIOS {
            let s = scenario(name).unwrap();
            assert_eq!(s.name, name);
        }
        let mut a = Vec::new();
        let mut b = Vec::new();
        write_scenario("canary-error", 3, 0.1, Some(5 * MIN), &mut a).unwrap();
        write_scenario("canary-error", 3, 0.1, Some(5 * MIN), &mut b).unwrap();
        assert_eq!(a, b);
        assert!(!a.is_empty());
    }
}

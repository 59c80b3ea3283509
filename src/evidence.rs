//! The evidence a command carries, one type per rule, serialized to the shape documented in
//! `schemas/command.schema.json` (object keys in sorted order, non-finite numbers as `null`).
//!
//! Rules build these; [`to_value`] turns one into the command's `evidence`, to which the
//! policy adds `input_offsets` (and `dated`, when the input ended inside the window). Readers
//! of a published command take its headline through [`crate::command::Command::headline`].

use serde::Serialize;

use crate::reference::{FeatureDrift, ReferenceSource};
use crate::time::{format_rfc3339, Millis};
use crate::window::Extent;

/// An event-time window, `[start, end)`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    /// Start, RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub start: Millis,
    /// End (exclusive), RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub end: Millis,
    /// How a rule window's start was found: `time` (its length), `count` (the newest buckets
    /// holding the count) or `extended` (reached back until it held the rule's minimum).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<&'static str>,
}

impl Window {
    /// A window between two instants.
    pub fn new(start: Millis, end: Millis) -> Window {
        Window { start, end, by: None }
    }

    /// A rule window, with how its start was found.
    pub fn by(start: Millis, end: Millis, extent: Extent) -> Window {
        Window { start, end, by: Some(extent.as_str()) }
    }
}

fn rfc3339<S: serde::Serializer>(ms: &Millis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_rfc3339(*ms))
}

/// The test that decided: its name, method, statistic, value and threshold.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Test {
    /// The test's name (`sequential_error_rate_ratio`, `accuracy_difference`…).
    pub test: &'static str,
    /// The test, in words, with its source.
    pub method: &'static str,
    /// The statistic (`e_value`, `accuracy_drop_lower_bound`…).
    pub statistic: &'static str,
    /// Its value.
    pub value: f64,
    /// The value that decides.
    pub threshold: f64,
}

/// Requests and errors of one arm of an error-rate comparison.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Traffic {
    /// Requests.
    pub events: u64,
    /// Errors among them.
    pub errors: u64,
    /// `errors / events`.
    pub error_rate: f64,
    /// The span counted (the baseline's, when it differs from the command's window).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// `rollback` for `error_rate`: the sequential error-rate test.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorRate {
    /// `sequential_error_rate_ratio`, its e-value and the e-value that decides (1 / alpha,
    /// less the share spent on the baseline's bound).
    #[serde(flatten)]
    pub test: Test,
    /// `canary` or `full_rollout`.
    pub mode: &'static str,
    /// The test's significance level.
    pub alpha: f64,
    /// The candidate.
    pub candidate: Traffic,
    /// The baseline, with its window.
    pub baseline: Traffic,
    /// `candidate / baseline - 1`; `null` when the baseline had no errors.
    pub relative_increase: Option<f64>,
    /// `candidate - baseline`.
    pub absolute_increase: f64,
    /// The configured minimum relative increase.
    pub min_relative_increase: f64,
    /// The configured minimum absolute increase.
    pub min_absolute_increase: f64,
    /// The candidate's window.
    pub window: Window,
}

/// One arm of a latency comparison.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct LatencyArm {
    /// Requests measured.
    pub events: u64,
    /// The configured quantile, milliseconds.
    pub quantile_ms: f64,
    /// The median, milliseconds.
    pub p50_ms: f64,
    /// The span measured (the baseline's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
}

/// `rollback` for `latency`, and the latency part of a promote.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// `latency_quantile_ratio`.
    pub test: &'static str,
    /// `canary` or `full_rollout`.
    pub mode: &'static str,
    /// `p99_ratio` for the 0.99 quantile.
    pub statistic: String,
    /// Candidate quantile over baseline quantile.
    pub value: f64,
    /// The quantile compared.
    pub quantile: f64,
    /// The candidate.
    pub candidate: LatencyArm,
    /// The baseline, with its window.
    pub baseline: LatencyArm,
    /// The candidate's window.
    pub window: Window,
    /// The ratio that decides a rollback (absent in a promote's evidence).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
}

/// One arm of an accuracy comparison.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyArm {
    /// Predictions joined with a label.
    pub labelled: u64,
    /// Of which correct.
    pub correct: u64,
    /// `correct / labelled` (`null` before any label).
    pub accuracy: Option<f64>,
    /// Anytime-valid confidence interval of the accuracy.
    pub confidence_interval: [f64; 2],
    /// Mean absolute error, for regression models (`current` arm of a reference comparison).
    #[serde(skip_serializing_if = "Skip::is_skipped")]
    pub mae: Skip<Option<f64>>,
    /// The span counted.
    #[serde(skip_serializing_if = "Skip::is_skipped")]
    pub window: Skip<Option<Window>>,
    /// Where the accuracy came from: `baseline`, `baseline_before_rollout`, `profile` or
    /// `own_labels`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
}

/// A field that is either left out or present (possibly as `null`).
#[derive(Debug, Clone, Copy, Default, Serialize)]
#[serde(transparent)]
pub struct Skip<T>(pub Option<T>);

impl<T> Skip<T> {
    fn is_skipped(&self) -> bool {
        self.0.is_none()
    }
}

/// Fields both accuracy rules report.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyBand {
    /// `[review_drop, rollback_drop]`: a drop inside asks for review, at or over rolls back
    /// (or retrains).
    pub review_band: [f64; 2],
    /// The configured floor, if any.
    pub min_accuracy: Option<f64>,
    /// The candidate's upper bound is below the floor.
    pub below_min_accuracy: bool,
    /// Observed accuracy drop.
    pub accuracy_drop: f64,
}

/// `rollback` or `review` for `accuracy`: a candidate against its baseline.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyVsBaseline {
    /// `accuracy_difference`: the lower confidence bound of the drop against the bound that
    /// decides (`rollback_drop`, or 0 for a review).
    #[serde(flatten)]
    pub test: Test,
    /// Significance level.
    pub alpha: f64,
    /// Band, floor and observed drop.
    #[serde(flatten)]
    pub band: AccuracyBand,
    /// The candidate.
    pub candidate: AccuracyArm,
    /// The baseline, with its window.
    pub baseline: AccuracyArm,
    /// The candidate's window.
    pub window: Window,
}

/// Why a retrain is published within an episode of drift or accuracy loss.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Episode {
    /// When the episode began, RFC 3339.
    #[serde(serialize_with = "rfc3339")]
    pub started_at: Millis,
    /// Retrains asked for in it, this one included.
    pub retrains: u32,
    /// `new_episode` or `reminder`.
    pub why: &'static str,
    /// The reminder interval, for a reminder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reminder_ms: Option<Millis>,
}

/// `retrain`, `review` or `rollback` for `accuracy`: a model version against its reference.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyVsReference {
    /// `accuracy_vs_reference`: the lower confidence bound of the drop against the bound that
    /// decides.
    #[serde(flatten)]
    pub test: Test,
    /// Significance level of the window read.
    pub alpha: f64,
    /// 1 or 2: the window of `min_labels` and the long window.
    pub windows_compared: usize,
    /// Band, floor and observed drop.
    #[serde(flatten)]
    pub band: AccuracyBand,
    /// The current window.
    pub current: AccuracyArm,
    /// The reference.
    pub reference: AccuracyArm,
    /// The current window's span.
    pub window: Window,
    /// For a retrain: which one in its episode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub episode: Option<Episode>,
}

/// A feature's PSI, as listed in `all_features`.
#[derive(Debug, Clone, Serialize)]
pub struct FeaturePsi<'a> {
    /// Feature name.
    pub name: &'a str,
    /// PSI.
    pub value: f64,
}

/// Events of one side of a drift comparison.
#[derive(Debug, Clone, Serialize)]
pub struct DriftSide<'a> {
    /// Events.
    pub events: u64,
    /// The current window's span.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The reference's origin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'a ReferenceSource>,
}

/// `retrain` for `feature_drift` or `prediction_drift`.
#[derive(Debug, Clone, Serialize)]
pub struct Drift<'a> {
    /// `population_stability_index`.
    pub test: &'static str,
    /// The test, in words.
    pub method: &'static str,
    /// `psi`.
    pub statistic: &'static str,
    /// The configured PSI threshold.
    pub threshold: f64,
    /// The features named, with their statistics.
    pub drifted_features: &'a [FeatureDrift],
    /// Every feature compared.
    pub all_features: Vec<FeaturePsi<'a>>,
    /// Features seen now that the reference lacks.
    pub unreferenced_features: &'a [String],
    /// Features whose values are of another type than the reference's.
    pub type_mismatched_features: &'a [String],
    /// Reference features absent from the window.
    pub absent_features: Vec<&'a str>,
    /// The current window.
    pub current: DriftSide<'a>,
    /// The reference.
    pub reference: DriftSide<'a>,
    /// The configured minimum of events in a window.
    pub min_events: u64,
    /// The current window's span.
    pub window: Window,
    /// Which retrain in its episode.
    pub episode: Episode,
}

/// A candidate's accuracy shown not worse than its baseline's, in a promote.
#[derive(Debug, Clone, Serialize)]
pub struct AccuracyNonInferiority {
    /// `accuracy_non_inferiority`.
    pub test: &'static str,
    /// The test, in words.
    pub method: &'static str,
    /// Upper confidence bound of the drop.
    pub drop_upper_bound: f64,
    /// Observed drop.
    pub accuracy_drop: f64,
    /// `[review_drop, rollback_drop]`.
    pub review_band: [f64; 2],
    /// The candidate.
    pub candidate: AccuracyArm,
    /// The baseline, with its source.
    pub baseline: AccuracyArm,
}

/// `promote` for `healthy`: error rate shown not worse, latency not regressing, accuracy (if
/// labelled) shown not worse, for long enough.
#[derive(Debug, Clone, Serialize)]
pub struct Promote {
    /// `error_rate_non_inferiority`, its e-value and the e-value that decides (1 / alpha).
    #[serde(flatten)]
    pub test: Test,
    /// `canary` or `full_rollout`.
    pub mode: &'static str,
    /// The rate-ratio margin (canary mode).
    pub non_inferiority_margin_ratio: Option<f64>,
    /// The error rate the candidate is shown below.
    pub non_inferiority_max_error_rate: f64,
    /// The candidate.
    pub candidate: Traffic,
    /// The baseline.
    pub baseline: Traffic,
    /// The latency comparison, when there was enough to compare.
    pub latency: Option<Latency>,
    /// The accuracy comparison, for a labelled model.
    pub accuracy: Option<AccuracyNonInferiority>,
    /// The configured minimum of candidate events.
    pub min_events: u64,
    /// The configured minimum canary duration.
    pub min_duration_ms: Millis,
    /// The candidate's window.
    pub window: Window,
}

/// The policy's note on a decision dated at the newest event rather than its window's end.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Dated {
    /// `newest_event`.
    pub at: &'static str,
    /// Why.
    pub why: &'static str,
    /// The end of the window the rule read.
    #[serde(serialize_with = "rfc3339")]
    pub window_end: Millis,
}

/// A rule's evidence as the JSON object a command carries.
pub fn to_value(evidence: &impl Serialize) -> serde_json::Value {
    // Every evidence type holds only strings, numbers, options and arrays of them: serializing
    // it to a value cannot fail.
    serde_json::to_value(evidence).unwrap_or(serde_json::Value::Null)
}

/// `Some(x)` for a finite number, `None` (JSON `null`) otherwise.
pub fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

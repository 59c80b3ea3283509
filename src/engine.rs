//! The engine: decoded events and watermarks in, commands out. Pure and deterministic: no
//! I/O, no wall clock, no threads. Drivers (`replay`, the Kafka service, the demo) wrap it.
//!
//! Data flows one way. Each event updates the per-second ticks of the targets it names
//! (traffic and joined labels, for the sequential tests) and the buckets of their windows
//! (traffic, latency, drift sketches, accuracy). When the watermark (newest event time minus
//! the allowed lateness) passes the end of a second, that second's ticks of an app or model are
//! folded, in time order, into the tests of its candidates; when it passes the end of a bucket,
//! the windowed rules of the targets with data are evaluated. Both happen in event-time order,
//! so the commands and their `decided_at` do not depend on how the input was interleaved
//! within the lateness bound.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde_json::json;
use smallvec::SmallVec;

use crate::command::{Command, CommandKind, Reason, TargetRef};
use crate::config::{AccuracyConfig, Config, Kind, TargetWindows};
use crate::detect::{
    beta_binomial_cs, geometric_grid, kl_bounds, log_sum_exp, one_sample_log_e_value, RatioLikelihood,
};
use crate::event::{BadInput, BadReason, Event, EventType, FeatureValue, Outcome};
use crate::labels::{JoinCounters, Joined, LabelJoin, PendingPrediction, Value};
use crate::reference::{FeatureTable, ModelReference, ReferenceSource};
use crate::stats::{Accuracy, DriftSketch, Latency, Merge, Traffic};
use crate::time::{format_rfc3339, Millis};
use crate::window::{Extent, Ring};

mod pairing;
pub mod snapshot;
mod timers;

pub use pairing::PairCounters;

/// What the engine knows of one target, for views (terminal, HTTP).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetOverview {
    /// `app` or `model`.
    pub kind: Kind,
    /// App or model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The version it is compared with, when it is a candidate.
    pub baseline: Option<String>,
    /// Event time of the first event seen (start of its first second).
    pub first_seen: Millis,
    /// Event time of the newest event seen.
    pub last_seen: Millis,
    /// Events since first seen.
    pub events: u64,
    /// Errors since first seen.
    pub errors: u64,
    /// Events that arrived after the watermark.
    pub late: u64,
    /// The current error-rate window: [start, end) in event time.
    pub window: (Millis, Millis),
    /// Events in the current error-rate window.
    pub window_events: u64,
    /// Errors in the current error-rate window.
    pub window_errors: u64,
    /// Error rate in the current window.
    pub window_error_rate: f64,
    /// Latency quantiles (p50, p90, p99) in the latency window ending with the newest closed
    /// bucket that held latencies (none once that window no longer overlaps the current one).
    pub latency_ms: Option<[f64; 3]>,
    /// Latency samples and their sum in milliseconds, since first seen.
    pub latency_total: (u64, f64),
    /// Current e-value of the error-rate test (candidates).
    pub error_rate_e_value: Option<f64>,
    /// Latest drift statistic per feature (models).
    pub drift: Vec<(String, f64)>,
    /// Labels joined to this version's predictions, and the labelled share of its predictions
    /// (models that receive labels).
    pub labels: Option<(u64, f64)>,
    /// Each detector's latest statistic and threshold.
    pub detectors: Vec<DetectorStatus>,
    /// healthy, suspect, rolled_back, retrain, review or promoted.
    pub state: &'static str,
    /// A rollback is decided (latched).
    pub rolled_back: bool,
    /// A promotion is decided (latched), whatever was decided after it.
    pub promoted: bool,
}

/// A detector's latest statistic against its threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectorStatus {
    /// `error_rate`, `promote`, `latency`, `drift` or `accuracy`.
    pub detector: &'static str,
    /// The feature, for drift (`prediction` for the output).
    pub feature: Option<String>,
    /// What `value` measures (`e_value`, `p99_ratio`, `psi`, `accuracy_drop_lower_bound`).
    pub statistic: String,
    /// Latest value; `None` until the detector has enough data.
    pub value: Option<f64>,
    /// The detector decides when `value` reaches this.
    pub threshold: f64,
}

/// Index of a target in the engine's table.
pub type TargetId = u32;

/// Where an event came from, for the `input_offsets` of evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Source index from [`Engine::register_source`].
    pub source: u32,
    /// Offset within the source (line number, Kafka offset).
    pub offset: u64,
}

/// Share of α spent on the confidence bound of a baseline's pre-switch error rate; the
/// sequential test gets the rest.
const REFERENCE_ALPHA_SHARE: f64 = 0.1;
/// Type mismatches with a reference listed in summaries, at most.
const MAX_MISMATCHES_LISTED: usize = 20;
/// Ticks of the sequential tests, in milliseconds.
const TICK_MS: Millis = 1000;

/// Counters of everything the engine saw, for summaries and metrics.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Valid events by type (request, prediction, error, label).
    pub events: [u64; 4],
    /// Bad inputs by reason (order of [`BadReason::ALL`]).
    pub bad: [u64; 10],
    /// Events older than the watermark: counted in totals, not in windows.
    pub late_events: u64,
    /// Label joins that completed after the watermark had passed.
    pub late_labels: u64,
    /// Events dropped because `limits.max_targets` was reached.
    pub dropped_over_target_limit: u64,
    /// Targets forgotten after `limits.target_idle_ttl` without events.
    pub targets_evicted: u64,
    /// Commands emitted by kind (rollback, retrain, review, promote).
    pub commands: [u64; 4],
    /// Predictions not kept for label joins because their model version gets no labels.
    pub predictions_not_awaited: u64,
    /// Drift checks that left a feature out because its values are of another type than its
    /// reference's (numbers against categories), per feature.
    #[serde(default)]
    pub drift_type_mismatches: u64,
}

#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Tick {
    traffic: Traffic,
    accuracy: Accuracy,
}

impl Merge for Tick {
    fn merge(&mut self, o: &Self) {
        self.traffic.merge(&o.traffic);
        self.accuracy.merge(&o.accuracy);
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct PendingSecond {
    sec: i64,
    ticks: SmallVec<[(TargetId, Tick); 2]>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Group {
    kind: Kind,
    name: Arc<str>,
    /// Registered versions, in registration order.
    members: Vec<TargetId>,
    pending: VecDeque<PendingSecond>,
    windows: TargetWindows,
    pinned: Option<Arc<str>>,
    live: usize,
    /// Changed since the last snapshot.
    #[serde(skip)]
    dirty: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Mode {
    /// Baseline serving concurrently: conditional test on each tick.
    Canary,
    /// Baseline stopped: one-sample test against its pre-switch rate.
    Rollout,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Candidate {
    baseline: TargetId,
    baseline_gen: u32,
    baseline_version: Arc<str>,
    start_sec: i64,
    mode: Mode,
    switched_sec: Option<i64>,
    ratio: RatioLikelihood,
    regression_alts: Vec<usize>,
    noninferiority_alts: Vec<usize>,
    noninferiority_null: usize,
    /// Same-span cumulative traffic and accuracy since the candidate started.
    cand: Tick,
    base: Tick,
    /// Since the switch to rollout mode.
    rollout: Traffic,
    log_e_regression_at_switch: f64,
    log_e_noninferiority_at_switch: f64,
    /// Baseline's window before the candidate started.
    pre: Tick,
    pre_window: (Millis, Millis),
    pre_latency: Latency,
    pre_upper: f64,
    pre_noninferiority_null: f64,
    last_log_e_regression: f64,
    last_log_e_noninferiority: f64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct Latch {
    rolled_back: bool,
    promoted: bool,
    reviewed: bool,
    last_retrain: Option<Millis>,
    adverse: bool,
    /// The drift episode a retrain was issued for, while it lasts.
    #[serde(default)]
    drift_episode: Option<Episode>,
    /// The accuracy-loss episode a retrain was issued for, while it lasts.
    #[serde(default)]
    accuracy_episode: Option<Episode>,
}

/// A condition that asked for a retrain and has not cleared since: further retrains for it
/// wait for `retrain.reminder`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Episode {
    started_at: Millis,
    last_retrain: Millis,
    retrains: u32,
}

impl Episode {
    /// Whether a retrain at `at` is due for the episode `e` (none: a new one), and the
    /// evidence saying why.
    fn due(e: Option<Episode>, at: Millis, reminder: Millis) -> Option<(Episode, serde_json::Value)> {
        match e {
            None => {
                let e = Episode { started_at: at, last_retrain: at, retrains: 1 };
                Some((e, json!({"started_at": crate::time::format_rfc3339(at), "retrains": 1, "why": "new_episode"})))
            }
            Some(e) if at - e.last_retrain >= reminder => {
                let e = Episode { last_retrain: at, retrains: e.retrains + 1, ..e };
                let why = json!({"started_at": crate::time::format_rfc3339(e.started_at), "retrains": e.retrains, "why": "reminder", "reminder_ms": reminder});
                Some((e, why))
            }
            Some(_) => None,
        }
    }
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct ModelState {
    table: FeatureTable,
    drift: Ring<DriftSketch>,
    accuracy: Ring<Accuracy>,
    reference: Option<Arc<ModelReference>>,
    /// Last bucket of the reference period; current windows start after it.
    reference_end: i64,
    warm_first: Option<i64>,
    warm_end: i64,
    warm: DriftSketch,
    accuracy_reference: Option<(Accuracy, i64, i64)>,
    #[serde(skip)]
    last_drift: Vec<crate::reference::FeatureDrift>,
    /// Latest lower bound of the accuracy drop against the reference (for views).
    #[serde(skip)]
    last_accuracy_drop: Option<f64>,
    labels: LabelWait,
    /// A type mismatch with the reference has been logged.
    #[serde(skip)]
    type_mismatch_reported: bool,
}

/// Whether a model version's predictions are kept for label joins.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct LabelWait {
    /// Labels joined to this version's predictions.
    matched: u64,
    /// First prediction kept since the version was last (re)tried.
    since: Option<Millis>,
    /// Given up at this time: no label arrived during the probation.
    gave_up_at: Option<Millis>,
}

/// Latency p50, p90 and p99 of `t`'s window ending with its newest closed bucket that held
/// latencies, and that bucket.
fn latency_view(t: &Target) -> Option<(i64, [f64; 3])> {
    let idx = t.last_eval[R_LATENCY].min(t.last_data[R_LATENCY]);
    if idx == i64::MIN {
        return None;
    }
    let (lat, _) = t.latency.window(idx, i64::MIN, Latency::count);
    match (lat.quantile_ms(0.5), lat.quantile_ms(0.9), lat.quantile_ms(0.99)) {
        (Some(a), Some(b), Some(c)) => Some((idx, [a, b, c])),
        _ => None,
    }
}

/// The canary's non-inferiority e-value (log): the mean of the rate-ratio test against the
/// margin and a one-sample test of the candidate's own error rate against
/// `error_rate.min_absolute_increase`.
///
/// "Worse by the minimum effect" means at least `min_absolute_increase` above the baseline,
/// hence at least `min_absolute_increase` itself, so both are e-processes under that null and
/// so is their mean. The ratio test learns only from errors; the one-sample test is what shows
/// a candidate serving without errors (beside a baseline without errors) is not worse.
fn canary_noninferiority_log_e(c: &Candidate, max_error_rate: f64) -> f64 {
    let ratio = c.ratio.log_e_value(&c.noninferiority_alts, c.noninferiority_null);
    let own = one_sample_log_e_value(
        c.cand.traffic.errors,
        c.cand.traffic.events,
        max_error_rate,
        &noninferiority_alternatives(max_error_rate),
    );
    log_sum_exp([ratio, own].into_iter()) - std::f64::consts::LN_2
}

/// The alternatives a non-inferiority test mixes over: 12 values below its null, each 0.8 of
/// the one before.
fn noninferiority_alternatives(null: f64) -> SmallVec<[f64; 12]> {
    (1..=12).map(|j| null * 0.8f64.powi(j)).collect()
}

/// Ring kinds with their own closes.
const R_TRAFFIC: usize = 0;
const R_LATENCY: usize = 1;
const R_DRIFT: usize = 2;
const R_ACCURACY: usize = 3;

#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Target {
    gen: u32,
    kind: Kind,
    name: Arc<str>,
    version: Arc<str>,
    group: u32,
    registered: bool,
    first_sec: i64,
    last_tick_sec: i64,
    last_seen: Millis,
    lifetime: Traffic,
    /// Latency samples and their sum in milliseconds, since first seen.
    #[serde(default)]
    latency_total: (u64, f64),
    late: u64,
    traffic: Ring<Traffic>,
    latency: Ring<Latency>,
    model: Option<Box<ModelState>>,
    candidate: Option<Box<Candidate>>,
    latch: Latch,
    wake: Option<Millis>,
    last_eval: [i64; 4],
    last_data: [i64; 4],
    /// Latest latency quantile ratio against the baseline (for views).
    #[serde(skip)]
    last_latency_ratio: Option<f64>,
    /// Latency p50, p90 and p99 of the window ending with the newest closed latency bucket, and
    /// that bucket (for views: computed once per bucket, not at every publication).
    #[serde(skip)]
    latency_view: Option<(i64, [f64; 3])>,
}

impl Target {
    fn step(&self, ring: usize) -> Millis {
        match ring {
            R_TRAFFIC => self.traffic.spec.step,
            R_LATENCY => self.latency.spec.step,
            R_DRIFT => self.model.as_ref().map_or(i64::MAX, |m| m.drift.spec.step),
            _ => self.model.as_ref().map_or(i64::MAX, |m| m.accuracy.spec.step),
        }
    }

    fn target_ref(&self, baseline: Option<&str>) -> TargetRef {
        TargetRef {
            kind: self.kind,
            name: self.name.to_string(),
            version: self.version.to_string(),
            baseline_version: baseline.map(str::to_owned),
        }
    }
}

/// The decision engine.
#[derive(Debug)]
pub struct Engine {
    cfg: Arc<Config>,
    /// Keep each target's latency quantiles for views as its buckets close (a driver that
    /// publishes views asks for it); otherwise views compute them when asked.
    view_quantiles: bool,
    lateness: Millis,
    max_future: Millis,
    max_ts: Option<Millis>,
    /// Newest event time seen (`max_ts` also moves with idle time); commands are never dated
    /// after it.
    newest_event: Option<Millis>,
    watermark: Millis,
    targets: Vec<Option<Target>>,
    free: Vec<TargetId>,
    next_gen: u32,
    index: FxHashMap<Box<str>, TargetId>,
    key_buf: String,
    groups: Vec<Option<Group>>,
    group_index: FxHashMap<(Kind, Box<str>), u32>,
    free_groups: Vec<u32>,
    tick_queue: timers::SecondQueue,
    wake_queue: BTreeSet<(Millis, TargetId)>,
    joins: LabelJoin<(TargetId, u32)>,
    /// Where the stored copy of `joins` stands.
    join_log: snapshot::JoinLog,
    profiles: Vec<(String, Option<String>, Arc<ModelReference>)>,
    sources: Vec<String>,
    offsets: Vec<u64>,
    counters: Counters,
    out: Vec<Command>,
    emitted_upto: usize,
    decisions: VecDeque<Command>,
    next_sweep: Millis,
    /// Changelog keys of groups forgotten since the last snapshot.
    removed_groups: Vec<String>,
    /// Logged request and response halves waiting for each other.
    pairing: pairing::Pairing,
    /// `model version: feature` of the first type mismatches with a reference (for summaries).
    type_mismatched: std::collections::BTreeSet<String>,
    /// Records the stored copy of `pairing` spans.
    pairing_chunks: usize,
}

impl Engine {
    /// A new engine with a validated config.
    pub fn new(cfg: Config) -> Engine {
        let lateness = cfg.windows.allowed_lateness.0;
        let max_future = cfg.windows.max_future.0;
        let joins = LabelJoin::new(cfg.accuracy.max_pending, cfg.accuracy.max_label_delay.0);
        Engine {
            cfg: Arc::new(cfg),
            lateness,
            max_future,
            max_ts: None,
            newest_event: None,
            watermark: Millis::MIN,
            targets: Vec::new(),
            free: Vec::new(),
            next_gen: 0,
            index: FxHashMap::default(),
            key_buf: String::new(),
            groups: Vec::new(),
            group_index: FxHashMap::default(),
            free_groups: Vec::new(),
            tick_queue: timers::SecondQueue::default(),
            wake_queue: BTreeSet::new(),
            joins,
            join_log: snapshot::JoinLog::default(),
            profiles: Vec::new(),
            sources: Vec::new(),
            offsets: Vec::new(),
            counters: Counters::default(),
            out: Vec::new(),
            emitted_upto: 0,
            view_quantiles: false,
            decisions: VecDeque::new(),
            next_sweep: Millis::MIN,
            removed_groups: Vec::new(),
            pairing: pairing::Pairing::default(),
            type_mismatched: std::collections::BTreeSet::new(),
            pairing_chunks: 0,
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Attaches a reference profile to a model (all versions when `version` is `None`). Versions
    /// measured against a profile skip the warm-up reference.
    pub fn attach_profile(&mut self, model: &str, version: Option<&str>, reference: ModelReference) {
        self.profiles.push((model.to_owned(), version.map(str::to_owned), Arc::new(reference)));
    }

    /// Names an input source (a file, a topic partition); returns its index for [`Position`].
    pub fn register_source(&mut self, name: &str) -> u32 {
        if let Some(i) = self.sources.iter().position(|s| s == name) {
            return i as u32;
        }
        self.sources.push(name.to_owned());
        self.offsets.push(0);
        (self.sources.len() - 1) as u32
    }

    /// Counters so far.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Label-join counters so far.
    pub fn join_counters(&self) -> JoinCounters {
        self.joins.counters
    }

    /// Current watermark (event time up to which all data is final), if any event was seen.
    pub fn watermark(&self) -> Option<Millis> {
        (self.watermark != Millis::MIN).then_some(self.watermark)
    }

    /// Newest event time seen.
    pub fn max_event_time(&self) -> Option<Millis> {
        self.max_ts
    }

    /// Targets tracked now.
    pub fn target_count(&self) -> usize {
        self.index.len()
    }

    /// Features and categories dropped by the cardinality limits, summed over models.
    pub fn cardinality_drops(&self) -> (u64, u64) {
        self.targets
            .iter()
            .flatten()
            .filter_map(|t| t.model.as_ref())
            .fold((0, 0), |(f, c), m| (f + m.table.features_dropped, c + m.table.categories_overflowed))
    }

    /// The most recent decisions (bounded by `limits.decision_log`).
    pub fn decisions(&self) -> impl Iterator<Item = &Command> {
        self.decisions.iter()
    }

    /// Commands decided since the last call, in decision order.
    pub fn drain_commands(&mut self) -> std::vec::Drain<'_, Command> {
        self.emitted_upto = 0;
        self.out.drain(..)
    }

    /// Records the wall-clock time at which the drained commands were issued, in the decision
    /// log kept with the state (so decisions listed after a restart keep their `issued_at`).
    pub fn stamp_decisions(&mut self, wall_ms: Millis) {
        for c in self.decisions.iter_mut().rev().take_while(|c| c.issued_at.is_empty()) {
            c.stamp(wall_ms);
        }
    }

    /// True when commands are waiting to be drained.
    pub fn has_commands(&self) -> bool {
        !self.out.is_empty()
    }

    /// Keeps each target's latency quantiles for [`Self::overview`] up to date as its latency
    /// buckets close, so that building a view costs no histogram merges; for drivers that
    /// publish views often. Off: [`Self::overview`] computes them.
    pub fn keep_view_quantiles(&mut self, on: bool) {
        self.view_quantiles = on;
        if on {
            for t in self.targets.iter_mut().flatten() {
                t.latency_view = latency_view(t);
            }
        }
    }

    /// A summary of every tracked target, sorted by kind, name and version.
    pub fn overview(&self) -> Vec<TargetOverview> {
        let mut out: Vec<TargetOverview> = self.targets.iter().flatten().map(|t| self.target_overview(t)).collect();
        out.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
        out
    }

    fn target_overview(&self, t: &Target) -> TargetOverview {
        let w = self.watermark.max(0);
        let tb = t.traffic.spec.bucket_of(w);
        let (window, first) = t.traffic.window(tb, i64::MIN, |x| x.events);
        // Quantiles of the latest closed latency window, while it still overlaps the current one.
        let lb = t.latency.spec.bucket_of(w);
        let view = if self.view_quantiles { t.latency_view } else { latency_view(t) };
        let latency_ms = view.filter(|(idx, _)| idx + t.latency.spec.buckets() as i64 > lb).map(|(_, q)| q);
        let er_threshold = self.error_rate_threshold();
        let state = if t.latch.rolled_back {
            "rolled_back"
        } else if t.latch.last_retrain.is_some() {
            "retrain"
        } else if t.latch.reviewed {
            "review"
        } else if t.latch.promoted {
            "promoted"
        } else if t.candidate.as_ref().is_some_and(|c| c.last_log_e_regression > 0.5 * er_threshold) {
            "suspect"
        } else {
            "healthy"
        };
        let mut detectors = Vec::new();
        if let Some(c) = t.candidate.as_ref() {
            detectors.push(DetectorStatus {
                detector: "error_rate",
                feature: None,
                statistic: "e_value".into(),
                value: Some(c.last_log_e_regression.exp()),
                threshold: er_threshold.exp(),
            });
            detectors.push(DetectorStatus {
                detector: "promote",
                feature: None,
                statistic: "e_value".into(),
                value: Some(c.last_log_e_noninferiority.exp()),
                threshold: 1.0 / self.cfg.error_rate.alpha,
            });
            if self.cfg.latency.enabled {
                detectors.push(DetectorStatus {
                    detector: "latency",
                    feature: None,
                    statistic: format!("p{}_ratio", (self.cfg.latency.quantile * 100.0).round()),
                    value: t.last_latency_ratio,
                    threshold: self.cfg.latency.max_ratio,
                });
            }
        }
        let mut labels = None;
        if let Some(m) = t.model.as_ref() {
            for d in &m.last_drift {
                detectors.push(DetectorStatus {
                    detector: "drift",
                    feature: Some(d.name.clone()),
                    statistic: "psi".into(),
                    value: Some(d.value),
                    threshold: d.threshold,
                });
            }
            if self.cfg.accuracy.enabled && (m.labels.matched > 0 || m.last_accuracy_drop.is_some()) {
                detectors.push(DetectorStatus {
                    detector: "accuracy",
                    feature: None,
                    statistic: "accuracy_drop_lower_bound".into(),
                    value: m.last_accuracy_drop,
                    threshold: self.cfg.accuracy.rollback_drop,
                });
            }
            if m.labels.matched > 0 {
                let coverage = m.labels.matched as f64 / t.lifetime.events.max(1) as f64;
                labels = Some((m.labels.matched, coverage.min(1.0)));
            }
        }
        let spec = t.traffic.spec;
        TargetOverview {
            kind: t.kind,
            name: t.name.to_string(),
            version: t.version.to_string(),
            baseline: t.candidate.as_ref().map(|c| c.baseline_version.to_string()),
            first_seen: t.first_sec.saturating_mul(TICK_MS),
            last_seen: t.last_seen,
            events: t.lifetime.events,
            errors: t.lifetime.errors,
            late: t.late,
            window: (spec.bucket_start(first.min(tb)), spec.bucket_start(tb + 1)),
            window_events: window.events,
            window_errors: window.errors,
            window_error_rate: window.error_rate(),
            latency_ms,
            latency_total: t.latency_total,
            error_rate_e_value: t.candidate.as_ref().map(|c| c.last_log_e_regression.exp()),
            drift: t
                .model
                .as_ref()
                .map(|m| m.last_drift.iter().map(|d| (d.name.clone(), d.value)).collect())
                .unwrap_or_default(),
            labels,
            detectors,
            state,
            rolled_back: t.latch.rolled_back,
            promoted: t.latch.promoted,
        }
    }

    /// Records that input up to `pos` was read (for evidence), whether or not it was valid.
    pub fn note_offset(&mut self, pos: Position) {
        if let Some(o) = self.offsets.get_mut(pos.source as usize) {
            *o = (*o).max(pos.offset);
        }
    }

    /// Counts a bad input found by the decoder.
    pub fn reject(&mut self, bad: &BadInput) {
        self.counters.bad[bad.reason.index()] += 1;
    }

    /// Ingests one decoded event. Returns an error (already counted) only when the event's time
    /// lies further ahead of the stream than `windows.max_future`.
    pub fn ingest(&mut self, ev: &Event<'_>, pos: Position) -> Result<(), BadInput> {
        if let Some(max) = self.max_ts {
            if ev.ts > max.saturating_add(self.max_future) {
                let bad = BadInput {
                    reason: BadReason::FutureTimestamp,
                    detail: format!(
                        "timestamp {} is more than {} ahead of the newest event ({})",
                        format_rfc3339(ev.ts),
                        crate::time::format_duration(self.max_future),
                        format_rfc3339(max)
                    ),
                };
                self.reject(&bad);
                return Err(bad);
            }
        }
        if let Some(o) = self.offsets.get_mut(pos.source as usize) {
            *o = (*o).max(pos.offset);
        }
        self.expire_pairs(ev.ts);
        if ev.kind == EventType::Inference {
            if let Some(part) = &ev.part {
                let mut done = Vec::new();
                let fleet = &self.cfg.fleet;
                let (timeout, max_pending) = (fleet.response_timeout.0, fleet.max_pending);
                self.pairing.offer(ev.ts, (**part).clone(), timeout, max_pending, &mut done);
                self.ingest_pairs(done);
            }
            self.note_time(ev.ts);
            return Ok(());
        }
        self.ingest_valid(ev);
        self.note_time(ev.ts);
        Ok(())
    }

    /// `model version: feature` of type mismatches with a reference seen so far (the first
    /// few).
    pub fn type_mismatched(&self) -> &std::collections::BTreeSet<String> {
        &self.type_mismatched
    }

    /// Pairing counts (fleet inputs).
    pub fn pair_counters(&self) -> PairCounters {
        self.pairing.counters
    }

    /// Logged halves waiting for their other half.
    pub fn pairs_waiting(&self) -> usize {
        self.pairing.waiting()
    }

    /// Turns the halves whose response timeout has passed by `now` into events.
    fn expire_pairs(&mut self, now: Millis) {
        if self.pairing.next_deadline().is_some_and(|d| d <= now) {
            let mut done = Vec::new();
            self.pairing.expire(now, &mut done);
            self.ingest_pairs(done);
        }
    }

    /// Ingests what pairing produced, as predictions and errors.
    fn ingest_pairs(&mut self, done: Vec<pairing::Outcome>) {
        for o in done {
            let features = o.row.as_ref().map(crate::fleet::features_of).unwrap_or_default();
            let (kind, prediction, error_kind) = match &o.prediction {
                Some(p) => (EventType::Prediction, p.as_ref().map(crate::fleet::Output::outcome), None),
                None => (EventType::Error, None, Some(std::borrow::Cow::Borrowed(o.error_kind))),
            };
            let nv =
                || Some((std::borrow::Cow::Borrowed(o.name.as_str()), std::borrow::Cow::Borrowed(o.version.as_str())));
            let ev = Event {
                kind,
                ts: o.ts,
                event_id: Some(std::borrow::Cow::Borrowed(o.event_id.as_str())),
                app: nv(),
                model: nv(),
                latency_ms: o.latency_ms,
                features,
                prediction,
                label: None,
                error_kind,
                part: None,
            };
            self.ingest_valid(&ev);
            self.note_time(ev.ts);
        }
    }

    /// Counts and files one valid driftwatch event.
    fn ingest_valid(&mut self, ev: &Event<'_>) {
        let type_idx = match ev.kind {
            EventType::Request => 0,
            EventType::Prediction => 1,
            EventType::Error => 2,
            EventType::Label => 3,
            EventType::Inference => return,
        };
        self.counters.events[type_idx] += 1;
        let late = ev.ts < self.watermark;
        if ev.kind == EventType::Label {
            if let (Some(id), Some(label)) = (&ev.event_id, &ev.label) {
                if let Some(j) = self.joins.label(id, Value::of(label), ev.ts) {
                    self.apply_join(j);
                }
            }
        } else {
            if let Some((app, version)) = &ev.app {
                if let Some(t) = self.resolve(Kind::App, app, version, ev.ts) {
                    self.record(t, ev, late);
                }
            }
            if let Some((model, version)) = &ev.model {
                if let Some(t) = self.resolve(Kind::Model, model, version, ev.ts) {
                    self.record(t, ev, late);
                    if ev.kind == EventType::Prediction {
                        self.record_prediction(t, ev, late);
                    }
                }
            }
        }
    }

    /// Event time `ts` was seen: the watermark follows the newest event time.
    fn note_time(&mut self, ts: Millis) {
        if self.newest_event.is_none_or(|m| ts > m) {
            self.newest_event = Some(ts);
        }
        if self.max_ts.is_none_or(|m| ts > m) {
            self.max_ts = Some(ts);
            let wm = ts - self.lateness;
            if wm > self.watermark {
                self.advance(wm);
            }
        }
    }

    /// Moves the watermark forward to `wm` (never backwards), as when input is idle and the
    /// driver knows no older events will come. Decisions that become due are made.
    pub fn advance_watermark(&mut self, wm: Millis) {
        self.expire_pairs(wm);
        if wm > self.watermark {
            if self.max_ts.is_none_or(|m| m < wm) {
                self.max_ts = Some(wm);
            }
            self.advance(wm);
        }
    }

    /// End of input: everything seen is final. Closes the buckets holding the newest events
    /// and makes the decisions they lead to.
    ///
    /// The watermark moves past the last bucket holding data: the same point a live service
    /// reaches when its input stays idle, so `replay` of a topic's dump and `run` on the topic
    /// make the same decisions. Windows are not slid on past the data, so no command is dated
    /// after the newest event.
    pub fn finish(&mut self) {
        if let Some(last) = self.pairing.last_deadline() {
            self.expire_pairs(last);
        }
        let Some(max) = self.max_ts else { return };
        let mut wm = max + 1;
        for t in self.targets.iter().flatten() {
            for r in [R_TRAFFIC, R_LATENCY, R_DRIFT, R_ACCURACY] {
                let step = t.step(r);
                if step != i64::MAX && t.last_data[r] != i64::MIN {
                    wm = wm.max((t.last_data[r] + 1) * step);
                }
            }
        }
        self.advance(wm);
    }

    fn resolve(&mut self, kind: Kind, name: &str, version: &str, ts: Millis) -> Option<TargetId> {
        self.key_buf.clear();
        self.key_buf.push(if kind == Kind::App { 'a' } else { 'm' });
        self.key_buf.push_str(name);
        self.key_buf.push('\0');
        self.key_buf.push_str(version);
        if let Some(&id) = self.index.get(self.key_buf.as_str()) {
            return Some(id);
        }
        if self.index.len() >= self.cfg.limits.max_targets {
            self.counters.dropped_over_target_limit += 1;
            return None;
        }
        let group = self.group_of(kind, name);
        let windows =
            self.groups[group as usize].as_ref().map_or_else(|| self.cfg.windows_for(kind, name), |g| g.windows);
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let model = (kind == Kind::Model).then(|| {
            Box::new(ModelState {
                table: FeatureTable::new(self.cfg.limits.max_features, self.cfg.limits.max_categories),
                drift: Ring::new(windows.drift, 1),
                accuracy: Ring::new(windows.accuracy, 1),
                reference: self.profile_for(name, version),
                reference_end: i64::MIN,
                warm_first: None,
                warm_end: i64::MIN,
                warm: DriftSketch::default(),
                accuracy_reference: None,
                last_drift: Vec::new(),
                last_accuracy_drop: None,
                labels: LabelWait::default(),
                type_mismatch_reported: false,
            })
        });
        let t = Target {
            gen,
            kind,
            name: name.into(),
            version: version.into(),
            group,
            registered: false,
            first_sec: ts.div_euclid(TICK_MS),
            last_tick_sec: i64::MIN,
            last_seen: ts,
            lifetime: Traffic::default(),
            late: 0,
            traffic: Ring::new(windows.error_rate, windows.error_rate.buckets()),
            latency: Ring::new(windows.latency, windows.latency.buckets()),
            model,
            candidate: None,
            latch: Latch::default(),
            wake: None,
            last_eval: [i64::MIN; 4],
            last_data: [i64::MIN; 4],
            last_latency_ratio: None,
            latency_view: None,
            latency_total: (0, 0.0),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.targets[id as usize] = Some(t);
                id
            }
            None => {
                self.targets.push(Some(t));
                (self.targets.len() - 1) as TargetId
            }
        };
        if let Some(g) = self.groups[group as usize].as_mut() {
            g.live += 1;
        }
        self.index.insert(self.key_buf.as_str().into(), id);
        Some(id)
    }

    fn profile_for(&self, model: &str, version: &str) -> Option<Arc<ModelReference>> {
        // A version-specific profile wins over a model-wide one.
        let exact = self.profiles.iter().find(|(m, v, _)| m == model && v.as_deref() == Some(version));
        let any = self.profiles.iter().find(|(m, v, _)| m == model && v.is_none());
        exact.or(any).map(|(_, _, r)| r.clone())
    }

    fn group_of(&mut self, kind: Kind, name: &str) -> u32 {
        if let Some(&g) = self.group_index.get(&(kind, Box::from(name))) {
            return g;
        }
        let g = Group {
            kind,
            name: name.into(),
            members: Vec::new(),
            pending: VecDeque::new(),
            windows: self.cfg.windows_for(kind, name),
            pinned: self.cfg.pinned_baseline(kind, name).map(Arc::from),
            live: 0,
            dirty: true,
        };
        let id = match self.free_groups.pop() {
            Some(id) => {
                self.groups[id as usize] = Some(g);
                id
            }
            None => {
                self.groups.push(Some(g));
                (self.groups.len() - 1) as u32
            }
        };
        self.group_index.insert((kind, Box::from(name)), id);
        id
    }

    fn target(&self, id: TargetId) -> Option<&Target> {
        self.targets.get(id as usize).and_then(Option::as_ref)
    }

    fn target_mut(&mut self, id: TargetId) -> Option<&mut Target> {
        self.targets.get_mut(id as usize).and_then(Option::as_mut)
    }

    fn schedule(&mut self, id: TargetId, at: Millis) {
        let Some(t) = self.target_mut(id) else { return };
        if t.wake.is_some_and(|w| w <= at) {
            return;
        }
        let old = t.wake.replace(at);
        if let Some(old) = old {
            self.wake_queue.remove(&(old, id));
        }
        self.wake_queue.insert((at, id));
    }

    /// Adds a tick to the target's group for second `sec`, queueing the second when new.
    fn add_tick(&mut self, id: TargetId, group: u32, sec: i64, tick: Tick) {
        let Some(g) = self.groups.get_mut(group as usize).and_then(Option::as_mut) else {
            return;
        };
        g.dirty = true;
        let pos = match g.pending.back() {
            Some(p) if p.sec == sec => g.pending.len() - 1,
            Some(p) if p.sec < sec => {
                g.pending.push_back(PendingSecond { sec, ticks: SmallVec::new() });
                self.tick_queue.insert(sec, group);
                g.pending.len() - 1
            }
            None => {
                g.pending.push_back(PendingSecond { sec, ticks: SmallVec::new() });
                self.tick_queue.insert(sec, group);
                0
            }
            _ => match g.pending.binary_search_by_key(&sec, |p| p.sec) {
                Ok(p) => p,
                Err(p) => {
                    g.pending.insert(p, PendingSecond { sec, ticks: SmallVec::new() });
                    self.tick_queue.insert(sec, group);
                    p
                }
            },
        };
        let ticks = &mut g.pending[pos].ticks;
        match ticks.iter_mut().find(|(t, _)| *t == id) {
            Some((_, t)) => t.merge(&tick),
            None => ticks.push((id, tick)),
        }
    }

    fn record(&mut self, id: TargetId, ev: &Event<'_>, late: bool) {
        let is_error = ev.kind == EventType::Error;
        let Some(t) = self.target_mut(id) else { return };
        t.lifetime.events += 1;
        t.lifetime.errors += u64::from(is_error);
        t.last_seen = t.last_seen.max(ev.ts);
        if late {
            t.late += 1;
            let group = t.group;
            self.counters.late_events += 1;
            if let Some(g) = self.groups.get_mut(group as usize).and_then(Option::as_mut) {
                g.dirty = true;
            }
            return;
        }
        let traffic = t.traffic.at(ev.ts);
        traffic.events += 1;
        traffic.errors += u64::from(is_error);
        let b = t.traffic.spec.bucket_of(ev.ts);
        t.last_data[R_TRAFFIC] = t.last_data[R_TRAFFIC].max(b);
        let mut wake = (b + 1) * t.traffic.spec.step;
        if let Some(l) = ev.latency_ms {
            t.latency.at(ev.ts).record(l);
            t.latency_total.0 += 1;
            t.latency_total.1 += l;
            let b = t.latency.spec.bucket_of(ev.ts);
            t.last_data[R_LATENCY] = t.last_data[R_LATENCY].max(b);
            wake = wake.min((b + 1) * t.latency.spec.step);
        }
        let group = t.group;
        let needs_wake = t.wake.is_none_or(|w| w > wake);
        let tick = Tick { traffic: Traffic { events: 1, errors: u64::from(is_error) }, accuracy: Accuracy::default() };
        self.add_tick(id, group, ev.ts.div_euclid(TICK_MS), tick);
        if needs_wake {
            self.schedule(id, wake);
        }
    }

    fn record_prediction(&mut self, id: TargetId, ev: &Event<'_>, late: bool) {
        let Some(t) = self.targets.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let gen = t.gen;
        let Some(m) = t.model.as_mut() else { return };
        if !late {
            let step = m.drift.spec.step;
            let b = m.drift.spec.bucket_of(ev.ts);
            let ModelState { table, drift, .. } = m.as_mut();
            let sketch = drift.at(ev.ts);
            sketch.events += 1;
            for (pos, (name, value)) in ev.features.iter().enumerate() {
                let Some(idx) = table.lookup(name, pos) else {
                    continue;
                };
                match value {
                    FeatureValue::Num(x) => sketch.feature_mut(idx).add_numeric(*x),
                    FeatureValue::Str(s) => {
                        let c = table.category(idx, s);
                        sketch.feature_mut(idx).add_category(c);
                    }
                    FeatureValue::Bool(b) => {
                        let c = table.category(idx, if *b { "true" } else { "false" });
                        sketch.feature_mut(idx).add_category(c);
                    }
                    FeatureValue::Null => {}
                }
            }
            match &ev.prediction {
                Some(Outcome::Num(x)) => sketch.prediction.add_numeric(*x),
                Some(Outcome::Class(s)) => {
                    let c = table.prediction_category(s);
                    sketch.prediction.add_category(c);
                }
                None => {}
            }
            t.last_data[R_DRIFT] = t.last_data[R_DRIFT].max(b);
            let wake = (b + 1) * step;
            if t.wake.is_none_or(|w| w > wake) {
                self.schedule(id, wake);
            }
        }
        if !self.awaits_labels(id, ev.ts) {
            self.counters.predictions_not_awaited += 1;
            return;
        }
        if let (Some(id_str), Some(p)) = (&ev.event_id, &ev.prediction) {
            let pending = PendingPrediction { target: (id, gen), value: Value::of(p), ts: ev.ts };
            if let Some(j) = self.joins.prediction(id_str, pending) {
                self.apply_join(j);
            }
        } else if ev.prediction.is_none() {
            self.joins.counters.predictions_without_value += 1;
        }
    }

    /// Label probation: keep a version's predictions while labels arrive for it, or while it
    /// is young enough that they may still come.
    fn awaits_labels(&mut self, id: TargetId, ts: Millis) -> bool {
        let probation = self.cfg.accuracy.label_probation.0;
        let retry = self.cfg.accuracy.max_label_delay.0;
        let Some(m) = self.target_mut(id).and_then(|t| t.model.as_mut()) else { return false };
        let w = &mut m.labels;
        if w.matched > 0 {
            return true;
        }
        if let Some(g) = w.gave_up_at {
            if ts - g < retry {
                return false;
            }
            w.gave_up_at = None;
            w.since = None;
        }
        let since = *w.since.get_or_insert(ts);
        if ts - since <= probation {
            return true;
        }
        w.gave_up_at = Some(ts);
        self.joins.forget(|&(t, _)| t == id);
        false
    }

    fn apply_join(&mut self, j: Joined<(TargetId, u32)>) {
        let (id, gen) = j.target;
        let late = j.ts < self.watermark;
        let Some(t) = self.target_mut(id).filter(|t| t.gen == gen) else { return };
        if let Some(m) = t.model.as_mut() {
            m.labels.matched += 1;
        }
        let mut acc = Accuracy::default();
        match (j.prediction, j.label) {
            (Value::Num(p), Value::Num(l)) => {
                acc.numeric = 1;
                acc.abs_error_sum = (p - l).abs();
            }
            (p, l) => {
                acc.labelled = 1;
                acc.correct = u64::from(p == l);
            }
        }
        if late {
            self.counters.late_labels += 1;
            return;
        }
        let Some(m) = t.model.as_mut() else { return };
        m.accuracy.at(j.ts).merge(&acc);
        let b = m.accuracy.spec.bucket_of(j.ts);
        let wake = (b + 1) * m.accuracy.spec.step;
        t.last_data[R_ACCURACY] = t.last_data[R_ACCURACY].max(b);
        let group = t.group;
        let needs_wake = t.wake.is_none_or(|w| w > wake);
        self.add_tick(id, group, j.ts.div_euclid(TICK_MS), Tick { traffic: Traffic::default(), accuracy: acc });
        if needs_wake {
            self.schedule(id, wake);
        }
    }

    /// Processes every second and bucket that became final, in event-time order.
    fn advance(&mut self, wm: Millis) {
        self.watermark = wm;
        let first_new = self.out.len();
        loop {
            let tick = self.tick_queue.first().map(|(s, g)| ((s + 1) * TICK_MS, s, g));
            let wake = self.wake_queue.first().copied();
            match (tick, wake) {
                (Some((at, sec, g)), w) if at <= wm && w.is_none_or(|(wt, _)| at <= wt) => {
                    self.tick_queue.pop_first();
                    self.fold_second(g, sec);
                }
                (_, Some((at, id))) if at <= wm => {
                    self.wake_queue.pop_first();
                    self.wake_target(id, at);
                }
                _ => break,
            }
        }
        if wm >= self.next_sweep {
            self.sweep(wm);
            self.next_sweep = wm + 3_600_000;
        }
        if self.out.len() > first_new {
            self.out[first_new..].sort_by(|a, b| {
                (&a.decided_at, a.target.kind, &a.target.name, &a.target.version, a.command, a.reason).cmp(&(
                    &b.decided_at,
                    b.target.kind,
                    &b.target.name,
                    &b.target.version,
                    b.command,
                    b.reason,
                ))
            });
        }
    }

    /// Forgets idle targets and expired label joins.
    fn sweep(&mut self, wm: Millis) {
        self.joins.expire(wm);
        let ttl = self.cfg.limits.target_idle_ttl.0;
        let idle: Vec<TargetId> = self
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().filter(|t| t.last_seen < wm - ttl).map(|_| i as TargetId))
            .collect();
        for id in idle {
            let Some(t) = self.targets[id as usize].take() else {
                continue;
            };
            self.counters.targets_evicted += 1;
            let mut key = String::from(if t.kind == Kind::App { "a" } else { "m" });
            key.push_str(&t.name);
            key.push('\0');
            key.push_str(&t.version);
            self.index.remove(key.as_str());
            if let Some(w) = t.wake {
                self.wake_queue.remove(&(w, id));
            }
            let mut drop_group = false;
            if let Some(g) = self.groups[t.group as usize].as_mut() {
                g.members.retain(|&m| m != id);
                for p in &mut g.pending {
                    p.ticks.retain(|(m, _)| *m != id);
                }
                g.live -= 1;
                g.dirty = true;
                drop_group = g.live == 0;
            }
            if drop_group {
                if let Some(g) = self.groups[t.group as usize].take() {
                    self.removed_groups.push(snapshot::group_key(g.kind, &g.name));
                    self.group_index.remove(&(g.kind, Box::from(&*g.name)));
                    for p in &g.pending {
                        self.tick_queue.remove(p.sec, t.group);
                    }
                    self.free_groups.push(t.group);
                }
            }
            self.free.push(id);
        }
        // Versions gone quiet keep no traffic or latency buckets older than any window a later
        // event could read (the next window read ends after the watermark), and give back the
        // memory: an idle version costs little until it sees traffic again.
        for t in self.targets.iter_mut().flatten() {
            t.traffic.evict(t.traffic.spec.bucket_of(wm) - 1);
            t.traffic.shrink();
            t.latency.evict(t.latency.spec.bucket_of(wm) - 1);
            t.latency.shrink();
        }
    }

    // ------------------------------------------------------------------ sequential tests

    fn fold_second(&mut self, g: u32, sec: i64) {
        let Some(group) = self.groups.get_mut(g as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(front) = group.pending.front() else {
            return;
        };
        if front.sec != sec {
            return;
        }
        let Some(entry) = group.pending.pop_front() else {
            return;
        };
        group.dirty = true;
        let mut newcomers: Vec<TargetId> = Vec::new();
        for (id, tick) in &entry.ticks {
            if let Some(t) = self.targets.get_mut(*id as usize).and_then(Option::as_mut) {
                if tick.traffic.events > 0 {
                    t.last_tick_sec = sec;
                }
                if !t.registered && tick.traffic.events > 0 {
                    newcomers.push(*id);
                }
            }
        }
        if !newcomers.is_empty() {
            newcomers.sort_by(|a, b| {
                let va = self.target(*a).map(|t| t.version.clone());
                let vb = self.target(*b).map(|t| t.version.clone());
                va.cmp(&vb)
            });
            for id in newcomers {
                self.register(g, id, sec);
            }
        }
        let tick_of = |id: TargetId| entry.ticks.iter().find(|(t, _)| *t == id).map(|(_, t)| *t).unwrap_or_default();
        let mut i = 0;
        // Members are read by index: stepping a candidate never adds or removes one.
        while let Some(id) =
            self.groups.get(g as usize).and_then(Option::as_ref).and_then(|gr| gr.members.get(i).copied())
        {
            i += 1;
            let Some(base) = self.target(id).and_then(|t| t.candidate.as_ref()).map(|c| c.baseline) else {
                continue;
            };
            let base_last = self.target(base).map_or(i64::MIN, |b| b.last_tick_sec);
            self.step_candidate(id, sec, tick_of(id), tick_of(base), base_last);
        }
    }

    fn register(&mut self, g: u32, id: TargetId, sec: i64) {
        let Some(group) = self.groups.get(g as usize).and_then(Option::as_ref) else {
            return;
        };
        let pinned = group.pinned.clone();
        let windows = group.windows;
        let members = group.members.clone();
        let (kind, version) = match self.target(id) {
            Some(t) => (t.kind, t.version.clone()),
            None => return,
        };
        let eligible = |m: &TargetId| self.target(*m).is_some_and(|t| !t.latch.rolled_back);
        let baseline = if pinned.as_deref() == Some(&*version) {
            None
        } else if let Some(p) = pinned
            .as_deref()
            .and_then(|p| members.iter().copied().find(|m| self.target(*m).is_some_and(|t| &*t.version == p)))
        {
            Some(p)
        } else {
            let lookback = windows.error_rate.length / TICK_MS;
            members
                .iter()
                .copied()
                .filter(eligible)
                .find(|m| self.target(*m).is_some_and(|t| t.last_tick_sec >= sec - lookback))
                .or_else(|| {
                    members
                        .iter()
                        .copied()
                        .filter(eligible)
                        .max_by_key(|m| self.target(*m).map_or(i64::MIN, |t| t.last_tick_sec))
                })
        };
        if let Some(gr) = self.groups.get_mut(g as usize).and_then(Option::as_mut) {
            gr.members.push(id);
        }
        let Some(b) = baseline else {
            if let Some(t) = self.target_mut(id) {
                t.registered = true;
                t.first_sec = sec;
            }
            return;
        };
        let cand = self.new_candidate(id, b, sec, kind, windows);
        if let Some(t) = self.target_mut(id) {
            t.registered = true;
            t.first_sec = sec;
            t.candidate = cand.map(Box::new);
        }
    }

    fn new_candidate(
        &self,
        _id: TargetId,
        b: TargetId,
        sec: i64,
        _kind: Kind,
        windows: TargetWindows,
    ) -> Option<Candidate> {
        let base = self.target(b)?;
        let er = &self.cfg.error_rate;
        let start_ms = sec * TICK_MS;
        let tw = windows.error_rate;
        let bs = tw.bucket_of(start_ms);
        let first = bs - tw.buckets() as i64;
        let pre_traffic = base.traffic.sum(first, bs - 1);
        let lw = windows.latency;
        let lb = lw.bucket_of(start_ms);
        let pre_latency = base.latency.sum(lb - lw.buckets() as i64, lb - 1);
        let pre_accuracy = base.model.as_ref().map_or_else(Accuracy::default, |m| {
            let aw = m.accuracy.spec;
            let ab = aw.bucket_of(start_ms);
            m.accuracy.sum(ab - aw.buckets() as i64, ab - 1)
        });
        let delta = er.alpha * REFERENCE_ALPHA_SHARE;
        let (lower, upper) =
            if pre_traffic.events > 0 { kl_bounds(pre_traffic.errors, pre_traffic.events, delta) } else { (0.0, 1.0) };
        let min_rel = 1.0 + er.min_relative_increase;
        let pre_rate = pre_traffic.error_rate();
        // "Not worse by the minimum effect": a rise is only worse when it is both ≥ the relative
        // and ≥ the absolute minimum, so the non-inferiority margin is the larger of the two.
        let margin = if pre_traffic.events >= 100 && pre_rate > 0.0 {
            (1.0 + er.min_absolute_increase / pre_rate).max(min_rel).min(100.0)
        } else {
            min_rel
        };
        let mut grid = vec![1.0, margin];
        let regression: Vec<f64> = geometric_grid(min_rel, 30.0_f64.max(min_rel), 1.25);
        let noninf = noninferiority_alternatives(margin);
        let regression_alts: Vec<usize> = (grid.len()..grid.len() + regression.len()).collect();
        grid.extend(regression);
        let noninferiority_alts: Vec<usize> = (grid.len()..grid.len() + noninf.len()).collect();
        grid.extend(noninf);
        let pre_noninferiority_null = (lower * min_rel).max(lower + er.min_absolute_increase).min(0.999);
        Some(Candidate {
            baseline: b,
            baseline_gen: base.gen,
            baseline_version: base.version.clone(),
            start_sec: sec,
            mode: if base.last_tick_sec >= sec - tw.step / TICK_MS { Mode::Canary } else { Mode::Rollout },
            switched_sec: None,
            ratio: RatioLikelihood::new(grid),
            regression_alts,
            noninferiority_alts,
            noninferiority_null: 1,
            cand: Tick::default(),
            base: Tick::default(),
            rollout: Traffic::default(),
            log_e_regression_at_switch: 0.0,
            log_e_noninferiority_at_switch: 0.0,
            pre: Tick { traffic: pre_traffic, accuracy: pre_accuracy },
            pre_window: (tw.bucket_start(first), tw.bucket_start(bs)),
            pre_latency,
            pre_upper: upper.min(0.999),
            pre_noninferiority_null,
            last_log_e_regression: 0.0,
            last_log_e_noninferiority: 0.0,
        })
    }

    fn step_candidate(&mut self, id: TargetId, sec: i64, own: Tick, base: Tick, base_last_sec: i64) {
        let (error_rate_on, accuracy_on, promote_on) =
            (self.cfg.error_rate.enabled, self.cfg.accuracy.enabled, self.cfg.promote.enabled);
        let min_absolute_increase = self.cfg.error_rate.min_absolute_increase;
        let Some(t) = self.target_mut(id) else { return };
        let step_secs = t.traffic.spec.step / TICK_MS;
        let promoted = t.latch.promoted;
        let Some(c) = t.candidate.as_mut() else {
            return;
        };
        if sec < c.start_sec {
            return;
        }
        c.cand.merge(&own);
        c.base.merge(&base);
        if c.mode == Mode::Canary {
            // Seconds without errors leave the likelihood, hence the ratio e-values, as they were.
            let changed =
                c.ratio.update(own.traffic.events, base.traffic.events, own.traffic.errors, base.traffic.errors);
            if changed {
                c.last_log_e_regression = c.ratio.log_e_value(&c.regression_alts, 0);
            }
            if (changed || own.traffic.events > 0) && !promoted {
                c.last_log_e_noninferiority = canary_noninferiority_log_e(c, min_absolute_increase);
            }
            if base_last_sec < sec - step_secs {
                c.mode = Mode::Rollout;
                c.switched_sec = Some(sec);
                c.log_e_regression_at_switch = c.last_log_e_regression;
                c.log_e_noninferiority_at_switch = c.last_log_e_noninferiority;
            }
        } else if own.traffic.events > 0 {
            c.rollout.merge(&own.traffic);
            let alts: Vec<f64> =
                c.regression_alts.iter().map(|&k| (c.pre_upper * c.ratio.ratios[k]).min(0.999)).collect();
            c.last_log_e_regression = c.log_e_regression_at_switch
                + one_sample_log_e_value(c.rollout.errors, c.rollout.events, c.pre_upper, &alts);
            let ni_alts = noninferiority_alternatives(c.pre_noninferiority_null);
            c.last_log_e_noninferiority = c.log_e_noninferiority_at_switch
                + one_sample_log_e_value(c.rollout.errors, c.rollout.events, c.pre_noninferiority_null, &ni_alts);
        }
        let decided_at = (sec + 1) * TICK_MS;
        if t.latch.rolled_back {
            return;
        }
        if error_rate_on && own.traffic.errors > 0 {
            self.check_error_rate(id, decided_at);
        }
        if accuracy_on && (own.accuracy.labelled > 0 || base.accuracy.labelled > 0) {
            self.check_accuracy_vs_baseline(id, decided_at);
        }
        if promote_on {
            self.check_promote(id, sec, decided_at);
        }
    }

    fn error_rate_threshold(&self) -> f64 {
        (1.0 / (self.cfg.error_rate.alpha * (1.0 - REFERENCE_ALPHA_SHARE))).ln()
    }

    /// The e-value at which the error-rate test decides a rollback.
    pub fn error_rate_e_value_threshold(&self) -> f64 {
        self.error_rate_threshold().exp()
    }

    fn check_error_rate(&mut self, id: TargetId, decided_at: Millis) {
        let thr = self.error_rate_threshold();
        let er = self.cfg.error_rate;
        let Some(t) = self.target(id) else { return };
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        if c.last_log_e_regression < thr {
            return;
        }
        let (cand, base, mode_name, base_window) = match c.mode {
            Mode::Canary => (c.cand.traffic, c.base.traffic, "canary", (c.start_sec * TICK_MS, decided_at)),
            Mode::Rollout => (c.cand.traffic, c.pre.traffic, "full_rollout", c.pre_window),
        };
        if cand.events < er.min_events || base.events < er.min_events {
            return;
        }
        let pc = cand.error_rate();
        let pb = base.error_rate();
        let relative = if pb > 0.0 { pc / pb - 1.0 } else { f64::INFINITY };
        if relative < er.min_relative_increase || pc - pb < er.min_absolute_increase {
            return;
        }
        let evidence = json!({
            "test": "sequential_error_rate_ratio",
            "method": if c.mode == Mode::Canary {
                "mixture likelihood ratio of the conditional Poisson-process model (Lindon et al., KDD 2022), anytime-valid"
            } else {
                "mixture likelihood ratio of the candidate's error rate against an upper confidence bound of the baseline's pre-switch rate, anytime-valid"
            },
            "mode": mode_name,
            "statistic": "e_value",
            "value": c.last_log_e_regression.exp(),
            "threshold": thr.exp(),
            "alpha": er.alpha,
            "candidate": {"events": cand.events, "errors": cand.errors, "error_rate": pc},
            "baseline": {"events": base.events, "errors": base.errors, "error_rate": pb, "window": window_json(base_window.0, base_window.1)},
            "relative_increase": finite_or_null(relative),
            "absolute_increase": pc - pb,
            "min_relative_increase": er.min_relative_increase,
            "min_absolute_increase": er.min_absolute_increase,
            "window": window_json(c.start_sec * TICK_MS, decided_at),
        });
        let baseline = Some(c.baseline_version.clone());
        self.decide(id, CommandKind::Rollback, Reason::ErrorRate, decided_at, evidence, baseline);
    }

    fn check_accuracy_vs_baseline(&mut self, id: TargetId, decided_at: Millis) {
        let acfg = self.cfg.accuracy;
        let Some(t) = self.target(id) else { return };
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        let (base, base_window) = match c.mode {
            Mode::Canary => (c.base.accuracy, (c.start_sec * TICK_MS, decided_at)),
            Mode::Rollout => (c.pre.accuracy, c.pre_window),
        };
        let cand = c.cand.accuracy;
        if cand.labelled < acfg.min_labels || base.labelled < acfg.min_labels {
            return;
        }
        let gap = AccuracyGap::of(&base, &cand, acfg.alpha);
        let AccuracyGap { base: (bl, bu), cand: (cl, cu), drop, drop_lower, .. } = gap;
        let (ca, ba) = (cand.accuracy().unwrap_or(0.0), base.accuracy().unwrap_or(0.0));
        let verdict = gap.verdict(&acfg);
        let below_floor = verdict == Verdict::BelowFloor;
        let command = if verdict >= Verdict::Loss {
            CommandKind::Rollback
        } else if verdict == Verdict::Review && !t.latch.reviewed {
            CommandKind::Review
        } else {
            return;
        };
        let evidence = json!({
            "test": "accuracy_difference",
            "method": "difference of Beta-binomial mixture confidence sequences (anytime-valid), alpha/2 per arm",
            "statistic": "accuracy_drop_lower_bound",
            "value": drop_lower,
            "threshold": if command == CommandKind::Rollback { acfg.rollback_drop } else { 0.0 },
            "alpha": acfg.alpha,
            "review_band": [acfg.review_drop, acfg.rollback_drop],
            "min_accuracy": acfg.min_accuracy,
            "below_min_accuracy": below_floor,
            "accuracy_drop": drop,
            "candidate": {"labelled": cand.labelled, "correct": cand.correct, "accuracy": ca, "confidence_interval": [cl, cu]},
            "baseline": {"labelled": base.labelled, "correct": base.correct, "accuracy": ba, "confidence_interval": [bl, bu], "window": window_json(base_window.0, base_window.1)},
            "window": window_json(c.start_sec * TICK_MS, decided_at),
        });
        let baseline = Some(c.baseline_version.clone());
        self.decide(id, command, Reason::Accuracy, decided_at, evidence, baseline);
    }

    fn check_promote(&mut self, id: TargetId, sec: i64, decided_at: Millis) {
        let p = self.cfg.promote;
        let Some(t) = self.target(id) else { return };
        if t.latch.promoted || t.latch.adverse || t.latch.reviewed || t.latch.last_retrain.is_some() {
            return;
        }
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        if c.cand.traffic.events < p.min_events || (sec + 1 - c.start_sec) * TICK_MS < p.min_duration.0 {
            return;
        }
        let thr = (1.0 / self.cfg.error_rate.alpha).ln();
        if c.last_log_e_noninferiority < thr {
            return;
        }
        // Latency must not be regressing either (when there is enough to tell).
        let latency = self.latency_comparison(id, t.latency.spec.bucket_of(decided_at) - 1);
        if latency.as_ref().is_some_and(|l| l.ratio >= self.cfg.latency.max_ratio * 0.8) {
            return;
        }
        let accuracy = match self.promote_accuracy(t, c) {
            PromoteAccuracy::NotLabelled => None,
            PromoteAccuracy::Waiting => return,
            PromoteAccuracy::Shown(evidence) => Some(evidence),
        };
        let (base, mode_name) = match c.mode {
            Mode::Canary => (c.base.traffic, "canary"),
            Mode::Rollout => (c.pre.traffic, "full_rollout"),
        };
        let margin = c.ratio.ratios[c.noninferiority_null];
        let evidence = json!({
            "test": "error_rate_non_inferiority",
            "method": if c.mode == Mode::Canary {
                "mean of two anytime-valid mixture likelihood ratios: the rate ratio against the margin, and the candidate's error rate against the minimum absolute increase"
            } else {
                "mixture likelihood ratio of the candidate's error rate against the baseline's pre-switch rate plus the minimum effect, anytime-valid"
            },
            "mode": mode_name,
            "statistic": "e_value",
            "value": c.last_log_e_noninferiority.exp(),
            "threshold": thr.exp(),
            "non_inferiority_margin_ratio": if c.mode == Mode::Canary { Some(margin) } else { None },
            "non_inferiority_max_error_rate": if c.mode == Mode::Rollout { c.pre_noninferiority_null } else { self.cfg.error_rate.min_absolute_increase },
            "candidate": {"events": c.cand.traffic.events, "errors": c.cand.traffic.errors, "error_rate": c.cand.traffic.error_rate()},
            "baseline": {"events": base.events, "errors": base.errors, "error_rate": base.error_rate()},
            "latency": latency.map(|l| l.to_json()),
            "accuracy": accuracy,
            "min_events": p.min_events,
            "min_duration_ms": p.min_duration.0,
            "window": window_json(c.start_sec * TICK_MS, decided_at),
        });
        let baseline = Some(c.baseline_version.clone());
        self.decide(id, CommandKind::Promote, Reason::Healthy, decided_at, evidence, baseline);
    }

    /// Whether a candidate model version that receives labels has shown its accuracy is not
    /// worse than its baseline's (or, while the baseline has too few labels, its profile's):
    /// the upper confidence bound of the drop below `accuracy.rollback_drop`, the observed drop
    /// below `accuracy.review_drop`, and nothing for the accuracy rules to review.
    fn promote_accuracy(&self, t: &Target, c: &Candidate) -> PromoteAccuracy {
        let acfg = self.cfg.accuracy;
        let Some(m) = t.model.as_ref() else { return PromoteAccuracy::NotLabelled };
        let baseline_labelled = self
            .target(c.baseline)
            .filter(|b| b.gen == c.baseline_gen)
            .and_then(|b| b.model.as_ref())
            .is_some_and(|bm| bm.labels.matched > 0);
        if !acfg.enabled || (m.labels.matched == 0 && !baseline_labelled) {
            return PromoteAccuracy::NotLabelled;
        }
        let (base, source) = match c.mode {
            Mode::Canary => (c.base.accuracy, "baseline"),
            Mode::Rollout => (c.pre.accuracy, "baseline_before_rollout"),
        };
        let (base, source) = match m.reference.as_ref().and_then(|r| r.accuracy) {
            Some((labelled, correct)) if base.labelled < acfg.min_labels => {
                (Accuracy { labelled, correct, ..Accuracy::default() }, "profile")
            }
            _ => (base, source),
        };
        let cand = c.cand.accuracy;
        if cand.labelled < acfg.min_labels || base.labelled < acfg.min_labels {
            return PromoteAccuracy::Waiting;
        }
        let AccuracyGap { base: (bl, bu), cand: (cl, cu), drop, drop_lower, drop_upper } =
            AccuracyGap::of(&base, &cand, acfg.alpha);
        if drop_upper >= acfg.rollback_drop || drop >= acfg.review_drop || drop_lower >= acfg.review_drop {
            return PromoteAccuracy::Waiting;
        }
        PromoteAccuracy::Shown(json!({
            "test": "accuracy_non_inferiority",
            "method": "difference of Beta-binomial mixture confidence sequences (anytime-valid), alpha/2 per arm: upper bound of the drop below rollback_drop, observed drop below review_drop",
            "drop_upper_bound": drop_upper,
            "accuracy_drop": drop,
            "review_band": [acfg.review_drop, acfg.rollback_drop],
            "candidate": {"labelled": cand.labelled, "correct": cand.correct, "accuracy": cand.accuracy(), "confidence_interval": [cl, cu]},
            "baseline": {"labelled": base.labelled, "correct": base.correct, "accuracy": base.accuracy(), "confidence_interval": [bl, bu], "source": source},
        }))
    }

    // ------------------------------------------------------------------ windowed rules

    fn wake_target(&mut self, id: TargetId, at: Millis) {
        let Some(t) = self.target_mut(id) else { return };
        if t.wake != Some(at) {
            return;
        }
        t.wake = None;
        let group = t.group;
        if let Some(g) = self.groups.get_mut(group as usize).and_then(Option::as_mut) {
            g.dirty = true;
        }
        for ring in [R_TRAFFIC, R_LATENCY, R_DRIFT, R_ACCURACY] {
            let Some(t) = self.target(id) else { return };
            let step = t.step(ring);
            if step == i64::MAX || t.last_data[ring] == i64::MIN {
                continue;
            }
            let closed = at.div_euclid(step) - 1;
            let from =
                if t.last_eval[ring] == i64::MIN { t.last_data[ring].min(closed) } else { t.last_eval[ring] + 1 };
            // Windows are read when a bucket with data closes: after a target's last data
            // nothing new is learnt, and nothing is dated after the input's end.
            let upto = closed.min(t.last_data[ring]);
            let mut idx = from;
            while idx <= upto {
                self.close_bucket(id, ring, idx);
                idx += 1;
            }
            if ring == R_LATENCY && from <= upto && self.view_quantiles {
                if let Some(t) = self.target_mut(id) {
                    t.latency_view = latency_view(t);
                }
            }
            if let Some(t) = self.target_mut(id) {
                t.last_eval[ring] = t.last_eval[ring].max(closed);
                match ring {
                    R_TRAFFIC => t.traffic.evict(closed),
                    R_LATENCY => t.latency.evict(closed),
                    R_DRIFT => {
                        if let Some(m) = t.model.as_mut() {
                            m.drift.evict_counted(closed, |s| s.events);
                        }
                    }
                    _ => {
                        let frozen = t.latch.reviewed || t.latch.accuracy_episode.is_some();
                        if let Some(m) = t.model.as_mut() {
                            // The own reference grows by every bucket leaving the current
                            // window until a loss is decided on: the longer the history, the
                            // narrower its interval, and smaller losses become visible.
                            let mut grow =
                                m.accuracy_reference.as_mut().filter(|(_, rs, _)| *rs != i64::MIN && !frozen);
                            m.accuracy.evict_counted_into(
                                closed,
                                |a| a.labelled + a.numeric,
                                |i, a| {
                                    if let Some((r, _, re)) = grow.as_mut() {
                                        if i > *re {
                                            r.merge(a);
                                            *re = i;
                                        }
                                    }
                                },
                            );
                        }
                    }
                }
            }
        }
        // Next close with data still inside a window.
        let Some(t) = self.target(id) else { return };
        let mut next = None::<Millis>;
        for ring in [R_TRAFFIC, R_LATENCY, R_DRIFT, R_ACCURACY] {
            let step = t.step(ring);
            if step == i64::MAX || t.last_data[ring] == i64::MIN {
                continue;
            }
            if t.last_data[ring] > t.last_eval[ring] {
                let at = (t.last_eval[ring] + 2) * step;
                next = Some(next.map_or(at, |n: Millis| n.min(at)));
            }
        }
        if let Some(n) = next {
            self.schedule(id, n);
        }
    }

    fn close_bucket(&mut self, id: TargetId, ring: usize, idx: i64) {
        match ring {
            R_LATENCY if self.cfg.latency.enabled => self.check_latency(id, idx),
            R_DRIFT => self.close_drift(id, idx),
            R_ACCURACY if self.cfg.accuracy.enabled => self.check_accuracy_vs_reference(id, idx),
            _ => {}
        }
    }

    fn latency_comparison(&self, id: TargetId, idx: i64) -> Option<LatencyComparison> {
        let t = self.target(id)?;
        let c = t.candidate.as_ref()?;
        let spec = t.latency.spec;
        let (cand, first) = t.latency.window(idx, i64::MIN, Latency::count);
        let base_t = self.target(c.baseline).filter(|b| b.gen == c.baseline_gen);
        let same_span = base_t.map(|b| b.latency.sum(first, idx));
        let min = self.cfg.latency.min_events;
        let (base, mode, bw) = match same_span {
            Some(b) if b.count() >= min => (b, "canary", (spec.bucket_start(first), spec.bucket_start(idx + 1))),
            _ => (c.pre_latency.clone(), "full_rollout", c.pre_window),
        };
        if cand.count() < min || base.count() < min {
            return None;
        }
        let q = self.cfg.latency.quantile;
        let cq = cand.quantile_ms(q)?;
        let bq = base.quantile_ms(q)?.max(0.1);
        Some(LatencyComparison {
            quantile: q,
            candidate: cq,
            baseline: bq,
            ratio: cq / bq,
            candidate_count: cand.count(),
            baseline_count: base.count(),
            candidate_p50: cand.quantile_ms(0.5).unwrap_or(0.0),
            baseline_p50: base.quantile_ms(0.5).unwrap_or(0.0),
            mode,
            window: (spec.bucket_start(first), spec.bucket_start(idx + 1)),
            baseline_window: bw,
        })
    }

    fn check_latency(&mut self, id: TargetId, idx: i64) {
        let Some(t) = self.target(id) else { return };
        if t.latch.rolled_back || t.candidate.is_none() || t.latency.get(idx).is_none() {
            return;
        }
        let Some(l) = self.latency_comparison(id, idx) else {
            return;
        };
        if let Some(t) = self.target_mut(id) {
            t.last_latency_ratio = Some(l.ratio);
        }
        let Some(t) = self.target(id) else { return };
        if l.ratio < self.cfg.latency.max_ratio {
            return;
        }
        let baseline = t.candidate.as_ref().map(|c| c.baseline_version.clone());
        let decided_at = l.window.1;
        let mut evidence = l.to_json();
        evidence["threshold"] = json!(self.cfg.latency.max_ratio);
        self.decide(id, CommandKind::Rollback, Reason::Latency, decided_at, evidence, baseline);
    }

    fn close_drift(&mut self, id: TargetId, idx: i64) {
        let dcfg = self.cfg.drift;
        let Some(t) = self.targets.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(m) = t.model.as_mut() else { return };
        let spec = m.drift.spec;
        if m.reference.is_none() {
            // Warm-up: the version's first buckets, until they hold enough events.
            let Some(bucket) = m.drift.get(idx).cloned() else {
                if m.warm_first.is_some() && idx >= m.warm_end && m.warm.events >= dcfg.min_reference_events {
                    Self::freeze_reference(m, idx, &dcfg);
                }
                return;
            };
            if m.warm_first.is_none() {
                m.warm_first = Some(idx);
                m.warm_end = idx + (dcfg.warmup.0 / spec.step).max(1) - 1;
            }
            m.warm.merge(&bucket);
            if idx >= m.warm_end && m.warm.events >= dcfg.min_reference_events {
                Self::freeze_reference(m, idx, &dcfg);
            }
            return;
        }
        if m.reference_end == i64::MIN {
            // A profile: windows may start anywhere.
            m.reference_end = m.drift.iter().next().map_or(idx, |(i, _)| i - 1);
        }
        if !dcfg.enabled || t.latch.rolled_back || m.drift.get(idx).is_none() {
            return;
        }
        let (window, first, extent) = m.drift.extended_window(idx, m.reference_end + 1, |s| s.events);
        if window.events < dcfg.min_events {
            return;
        }
        let Some(reference) = m.reference.clone() else {
            return;
        };
        let drift = reference.drift(&window, &m.table, dcfg.psi_threshold);
        let drifted = drifted_features(&drift, dcfg.psi_threshold);
        let unreferenced: Vec<String> =
            reference.unreferenced(&m.table, &window).into_iter().map(str::to_owned).collect();
        let mismatched = reference.type_mismatches(&window, &m.table);
        if !mismatched.is_empty() {
            self.counters.drift_type_mismatches += mismatched.len() as u64;
            if !m.type_mismatch_reported {
                m.type_mismatch_reported = true;
                for f in mismatched.iter().take(MAX_MISMATCHES_LISTED.saturating_sub(self.type_mismatched.len())) {
                    self.type_mismatched.insert(format!("{} {}: {f}", t.name, t.version));
                }
                tracing::warn!(
                    model = %t.name,
                    version = %t.version,
                    features = ?mismatched,
                    "values of another type than the reference (numbers against categories): not compared for drift"
                );
            }
        }
        m.last_drift = drift;
        if drifted.is_empty() {
            // A window clear of drift ends the episode: every feature below half the threshold,
            // so a shift hovering about the threshold as it fills the window is one episode.
            if m.last_drift.iter().all(|d| d.value < dcfg.psi_threshold / 2.0) {
                t.latch.drift_episode = None;
            }
            return;
        }
        let decided_at = spec.bucket_start(idx + 1);
        if t.latch.last_retrain.is_some_and(|l| decided_at - l < self.cfg.retrain.cooldown.0) {
            return;
        }
        let Some((episode, episode_json)) =
            Episode::due(t.latch.drift_episode, decided_at, self.cfg.retrain.reminder.0)
        else {
            return;
        };
        t.latch.drift_episode = Some(episode);
        let reason =
            if drifted.iter().any(|d| d.name != "prediction") { Reason::FeatureDrift } else { Reason::PredictionDrift };
        let all: Vec<serde_json::Value> =
            m.last_drift.iter().map(|d| json!({"name": d.name, "value": d.value})).collect();
        let evidence = json!({
            "test": "population_stability_index",
            "method": "PSI on quantile bins of the reference (numeric) or reference categories with an unseen bucket (categorical), each with a missing-value bin; a feature at or over the threshold decides, and features shifting with it (PSI at least a quarter of the threshold, chi-square p-value below 0.001 over the features compared) are named too",
            "statistic": "psi",
            "threshold": dcfg.psi_threshold,
            "drifted_features": drifted,
            "all_features": all,
            "unreferenced_features": unreferenced,
            "type_mismatched_features": mismatched,
            "absent_features": reference.absent(&m.table),
            "current": {"events": window.events, "window": window_json_by(spec.bucket_start(first), decided_at, extent)},
            "reference": {
                "events": reference.events,
                "source": reference.source,
            },
            "min_events": dcfg.min_events,
            "window": window_json_by(spec.bucket_start(first), decided_at, extent),
            "episode": episode_json,
        });
        self.decide(id, CommandKind::Retrain, reason, decided_at, evidence, None);
    }

    fn freeze_reference(m: &mut ModelState, idx: i64, dcfg: &crate::config::DriftConfig) {
        let spec = m.drift.spec;
        let start = m.warm_first.map_or(0, |f| spec.bucket_start(f));
        let r = ModelReference::from_sketch(
            &m.warm,
            &m.table,
            dcfg.bins,
            dcfg.max_reference_categories,
            ReferenceSource::WarmUp { start, end: spec.bucket_start(idx + 1) },
        );
        m.reference = Some(Arc::new(r));
        m.reference_end = idx;
        m.warm = DriftSketch::default();
    }

    fn check_accuracy_vs_reference(&mut self, id: TargetId, idx: i64) {
        let acfg = self.cfg.accuracy;
        let cooldown = self.cfg.retrain.cooldown.0;
        let reminder = self.cfg.retrain.reminder.0;
        let Some(t) = self.targets.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        if t.latch.rolled_back {
            return;
        }
        let Some(m) = t.model.as_mut() else { return };
        let spec = m.accuracy.spec;
        if m.accuracy_reference.is_none() {
            // A profile's recorded accuracy is the reference; `i64::MIN` bounds mark it.
            if let Some((labelled, correct)) = m.reference.as_ref().and_then(|r| r.accuracy) {
                let acc = Accuracy { labelled, correct, ..Accuracy::default() };
                m.accuracy_reference = Some((acc, i64::MIN, i64::MIN));
            }
        }
        if m.accuracy.get(idx).is_none() {
            return;
        }
        let floor = m.accuracy_reference.map_or(i64::MIN, |(_, _, end)| end + 1);
        let short = m.accuracy.extended_window_to(idx, floor, acfg.min_labels, |a| a.labelled);
        if short.0.labelled < acfg.min_labels {
            return;
        }
        let Some((reference, rs, re)) = m.accuracy_reference else {
            m.accuracy_reference = Some((short.0, short.1, idx));
            return;
        };
        // The window of `min_labels` shows large losses soon; the long one small losses. Read
        // both, each at alpha/2, and act on the graver verdict (the short one on a tie).
        let long = m.accuracy.extended_window(idx, floor, |a| a.labelled);
        let both = [short, long];
        let windows = if long.0.labelled > short.0.labelled { &both[..] } else { &both[..1] };
        let alpha = acfg.alpha / windows.len() as f64;
        let judged: SmallVec<[(AccuracyGap, Verdict); 2]> = windows
            .iter()
            .map(|(w, _, _)| {
                let gap = AccuracyGap::of(&reference, w, alpha);
                (gap, gap.verdict(&acfg))
            })
            .collect();
        let pick = (0..judged.len()).fold(0, |best, i| if judged[i].1 > judged[best].1 { i } else { best });
        let (window, first, extent) = windows[pick];
        let decided_at = spec.bucket_start(idx + 1);
        let (AccuracyGap { base: (rl, ru), cand: (cl, cu), drop, drop_lower, .. }, verdict) = judged[pick];
        m.last_accuracy_drop = judged.iter().map(|(g, _)| g.drop_lower).reduce(f64::max);
        let below_floor = verdict == Verdict::BelowFloor;
        if verdict < Verdict::Loss {
            // A full window without the loss ends the episode.
            t.latch.accuracy_episode = None;
        }
        let mut episode_json = serde_json::Value::Null;
        let command = if below_floor {
            CommandKind::Rollback
        } else if verdict == Verdict::Loss {
            if t.latch.last_retrain.is_some_and(|l| decided_at - l < cooldown) {
                return;
            }
            let Some((episode, why)) = Episode::due(t.latch.accuracy_episode, decided_at, reminder) else {
                return;
            };
            t.latch.accuracy_episode = Some(episode);
            episode_json = why;
            CommandKind::Retrain
        } else if verdict == Verdict::Review && !t.latch.reviewed {
            CommandKind::Review
        } else {
            return;
        };
        let evidence = json!({
            "test": "accuracy_vs_reference",
            "method": "difference of Beta-binomial mixture confidence sequences, alpha/2 per side; reference = the accuracy recorded in the version's profile, else the version's labels before the current window (from its first window with enough labels, growing until a loss is decided on)",
            "statistic": "accuracy_drop_lower_bound",
            "value": drop_lower,
            "threshold": if command == CommandKind::Review { 0.0 } else { acfg.rollback_drop },
            "alpha": alpha,
            "windows_compared": windows.len(),
            "review_band": [acfg.review_drop, acfg.rollback_drop],
            "min_accuracy": acfg.min_accuracy,
            "below_min_accuracy": below_floor,
            "accuracy_drop": drop,
            "current": {"labelled": window.labelled, "correct": window.correct, "accuracy": window.accuracy(), "confidence_interval": [cl, cu], "mae": window.mae()},
            "reference": {"labelled": reference.labelled, "correct": reference.correct, "accuracy": reference.accuracy(), "confidence_interval": [rl, ru], "window": (rs != i64::MIN).then(|| window_json(spec.bucket_start(rs), spec.bucket_start(re + 1))), "source": if rs == i64::MIN { "profile" } else { "own_labels" }},
            "window": window_json_by(spec.bucket_start(first), decided_at, extent),
        });
        let mut evidence = evidence;
        if let (Some(obj), false) = (evidence.as_object_mut(), episode_json.is_null()) {
            obj.insert("episode".into(), episode_json);
        }
        self.decide(id, command, Reason::Accuracy, decided_at, evidence, None);
    }

    // ------------------------------------------------------------------ decisions

    /// Applies latching and emits the command.
    fn decide(
        &mut self,
        id: TargetId,
        command: CommandKind,
        reason: Reason,
        decided_at: Millis,
        mut evidence: serde_json::Value,
        baseline: Option<Arc<str>>,
    ) {
        let offsets: serde_json::Map<String, serde_json::Value> =
            self.sources.iter().zip(&self.offsets).map(|(s, o)| (s.clone(), json!(o))).collect();
        // The last bucket of the input ends after its newest event: such a decision is dated
        // at that event, and says so.
        let window_end = decided_at;
        let decided_at = self.newest_event.map_or(decided_at, |n| decided_at.min(n));
        let policy = self.cfg.policy.clone();
        let dry_run = self.cfg.dry_run;
        let cooldown = self.cfg.retrain.cooldown.0;
        let Some(t) = self.target_mut(id) else { return };
        let l = &mut t.latch;
        if l.rolled_back {
            return;
        }
        match command {
            CommandKind::Rollback => {
                l.rolled_back = true;
                l.adverse = true;
            }
            CommandKind::Promote => {
                if l.promoted {
                    return;
                }
                l.promoted = true;
            }
            CommandKind::Review => {
                if l.reviewed {
                    return;
                }
                l.reviewed = true;
                l.adverse = true;
            }
            CommandKind::Retrain => {
                if l.last_retrain.is_some_and(|last| decided_at - last < cooldown) {
                    return;
                }
                l.last_retrain = Some(decided_at);
                l.adverse = true;
            }
        }
        if let Some(obj) = evidence.as_object_mut() {
            obj.insert("input_offsets".into(), serde_json::Value::Object(offsets));
            if decided_at < window_end {
                obj.insert(
                    "dated".into(),
                    json!({"at": "newest_event", "why": "the input ends before the window's last bucket does", "window_end": format_rfc3339(window_end)}),
                );
            }
        }
        let target = t.target_ref(baseline.as_deref());
        let cmd = Command::new(command, target, reason, decided_at, evidence, &policy, dry_run);
        self.counters.commands[CommandKind::ALL.iter().position(|k| *k == command).unwrap_or(0)] += 1;
        if self.decisions.len() >= self.cfg.limits.decision_log {
            self.decisions.pop_front();
        }
        self.decisions.push_back(cmd.clone());
        self.out.push(cmd);
    }
}

/// A candidate's accuracy against a baseline's (or a reference's): each arm's anytime-valid
/// confidence interval (Beta-binomial mixture, alpha/2 per arm) and the drop between them.
#[derive(Debug, Clone, Copy)]
struct AccuracyGap {
    base: (f64, f64),
    cand: (f64, f64),
    /// Observed baseline accuracy minus candidate accuracy.
    drop: f64,
    /// Lower and upper confidence bounds of the drop.
    drop_lower: f64,
    drop_upper: f64,
}

impl AccuracyGap {
    fn of(base: &Accuracy, cand: &Accuracy, alpha: f64) -> AccuracyGap {
        let (bl, bu) = beta_binomial_cs(base.correct, base.labelled, alpha / 2.0);
        let (cl, cu) = beta_binomial_cs(cand.correct, cand.labelled, alpha / 2.0);
        AccuracyGap {
            base: (bl, bu),
            cand: (cl, cu),
            drop: base.accuracy().unwrap_or(0.0) - cand.accuracy().unwrap_or(0.0),
            drop_lower: bl - cu,
            drop_upper: bu - cl,
        }
    }

    /// What the gap calls for, gravest first: accuracy confidently below `min_accuracy`; a
    /// drop confidently of `rollback_drop` or more; a review's evidence — the drop shown (its
    /// lower bound above zero) and estimated inside the band, real and large enough to matter.
    fn verdict(&self, acfg: &AccuracyConfig) -> Verdict {
        if acfg.min_accuracy.is_some_and(|m| self.cand.1 < m) {
            Verdict::BelowFloor
        } else if self.drop_lower >= acfg.rollback_drop {
            Verdict::Loss
        } else if self.drop_lower > 0.0 && self.drop >= acfg.review_drop && self.drop < acfg.rollback_drop {
            Verdict::Review
        } else {
            Verdict::Nothing
        }
    }
}

/// An accuracy comparison's outcome, ordered by gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    Nothing,
    Review,
    Loss,
    BelowFloor,
}

/// What a candidate's accuracy says about promoting it.
enum PromoteAccuracy {
    /// Neither it nor its baseline receives labels: error rate and latency decide.
    NotLabelled,
    /// Labels flow but do not yet show it is not worse.
    Waiting,
    /// Shown not worse; the evidence.
    Shown(serde_json::Value),
}

#[derive(Debug, Clone)]
struct LatencyComparison {
    quantile: f64,
    candidate: f64,
    baseline: f64,
    ratio: f64,
    candidate_count: u64,
    baseline_count: u64,
    candidate_p50: f64,
    baseline_p50: f64,
    mode: &'static str,
    window: (Millis, Millis),
    baseline_window: (Millis, Millis),
}

impl LatencyComparison {
    fn to_json(&self) -> serde_json::Value {
        json!({
            "test": "latency_quantile_ratio",
            "mode": self.mode,
            "statistic": format!("p{}_ratio", (self.quantile * 100.0).round()),
            "value": self.ratio,
            "quantile": self.quantile,
            "candidate": {"events": self.candidate_count, "quantile_ms": self.candidate, "p50_ms": self.candidate_p50},
            "baseline": {"events": self.baseline_count, "quantile_ms": self.baseline, "p50_ms": self.baseline_p50, "window": window_json(self.baseline_window.0, self.baseline_window.1)},
            "window": window_json(self.window.0, self.window.1),
        })
    }
}

fn window_json(start: Millis, end: Millis) -> serde_json::Value {
    json!({"start": format_rfc3339(start), "end": format_rfc3339(end)})
}

/// The features a drift decision names: those at or over the PSI threshold and, once one is,
/// those shifting with them — a quarter of the threshold and a chi-square p-value below
/// [`SHIFTING_P`] over the features compared. A step shift crosses the threshold feature by
/// feature as it fills the window; the command names every feature it moved, not only the
/// first to cross.
fn drifted_features(drift: &[crate::reference::FeatureDrift], threshold: f64) -> Vec<crate::reference::FeatureDrift> {
    if !drift.iter().any(|d| d.value >= threshold) {
        return Vec::new();
    }
    let p = SHIFTING_P / drift.len().max(1) as f64;
    drift.iter().filter(|d| d.value >= threshold || (d.value >= threshold / 4.0 && d.p_value < p)).cloned().collect()
}

/// Family-wise significance of the features named as shifting with a drifted one.
const SHIFTING_P: f64 = 0.001;

/// A rule window, with how its start was found: `time` (the last `length`), `count` (the
/// newest buckets holding `count`), or `extended` (reached back until it held the minimum).
fn window_json_by(start: Millis, end: Millis, extent: Extent) -> serde_json::Value {
    json!({"start": format_rfc3339(start), "end": format_rfc3339(end), "by": extent.as_str()})
}

fn finite_or_null(x: f64) -> serde_json::Value {
    if x.is_finite() {
        json!(x)
    } else {
        serde_json::Value::Null
    }
}

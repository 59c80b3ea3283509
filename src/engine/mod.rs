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
//!
//! Where things are: [`ingest`] (events into ticks and buckets, label joins), [`targets`] (the
//! target table, candidates and baselines), [`schedule`] (seconds folded, buckets closed, idle
//! targets swept), [`rules`] (one file per rule), [`policy`] (finding to command), [`view`]
//! (what views show), [`snapshot`] (keyed state for restore).

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
use crate::evidence as ev;
use crate::labels::{JoinCounters, Joined, LabelJoin, PendingPrediction, Value};
use crate::reference::{FeatureTable, ModelReference, ReferenceSource};
use crate::stats::{Accuracy, DriftSketch, Latency, Merge, Traffic};
use crate::time::{format_rfc3339, Millis};
use crate::window::Ring;

mod freeze;
mod ingest;
mod pairing;
mod policy;
mod rules;
mod schedule;
pub mod snapshot;
pub mod stages;
mod targets;
pub mod tasks;
mod timers;
mod view;

pub use pairing::PairCounters;
use rules::*;
use targets::TargetKey;
use view::latency_view;
pub use view::{Detector, DetectorStatus, Finding, TargetOverview, TargetState, UnknownName};

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

/// The error for an event at `ts` further ahead of the newest time `max` than `max_future`.
fn too_far_ahead(ts: Millis, max: Option<Millis>, max_future: Millis) -> Option<BadInput> {
    let max = max?;
    (ts > max.saturating_add(max_future)).then(|| BadInput {
        reason: BadReason::FutureTimestamp,
        detail: format!(
            "timestamp {} is more than {} ahead of the newest event ({})",
            format_rfc3339(ts),
            crate::time::format_duration(max_future),
            format_rfc3339(max)
        ),
    })
}

/// The parts of an event an engine takes: its app, its model, and whether the engine counts
/// the event (an event split over two engines is counted by one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Share {
    /// The event's app version.
    pub app: bool,
    /// The event's model version.
    pub model: bool,
    /// Count the event in [`Counters::events`].
    pub count: bool,
    /// Whether the event is late, when the stream judged it (by its input's own time);
    /// otherwise the engine judges by its watermark.
    pub late: Option<bool>,
}

impl Share {
    /// The whole event.
    pub const ALL: Share = Share { app: true, model: true, count: true, late: None };
}

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
    /// Its versions, while they are frozen ([`freeze`]).
    #[serde(skip)]
    frozen: Option<Box<freeze::Frozen>>,
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
    /// `last_log_e_noninferiority` is behind the data: a canary's is computed when it is read
    /// ([`Candidate::log_e_noninferiority`]), not at every second that changes it.
    #[serde(default)]
    noninferiority_stale: bool,
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
    fn due(e: Option<Episode>, at: Millis, reminder: Millis) -> Option<(Episode, ev::Episode)> {
        match e {
            None => {
                let e = Episode { started_at: at, last_retrain: at, retrains: 1 };
                Some((e, ev::Episode { started_at: at, retrains: 1, why: "new_episode", reminder_ms: None }))
            }
            Some(e) if at - e.last_retrain >= reminder => {
                let e = Episode { last_retrain: at, retrains: e.retrains + 1, ..e };
                let why = ev::Episode {
                    started_at: e.started_at,
                    retrains: e.retrains,
                    why: "reminder",
                    reminder_ms: Some(reminder),
                };
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

/// The rings of a target, each closing buckets on its own step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RingKind {
    Traffic,
    Latency,
    Drift,
    Accuracy,
}

impl RingKind {
    const ALL: [RingKind; 4] = [RingKind::Traffic, RingKind::Latency, RingKind::Drift, RingKind::Accuracy];
}

/// One bucket index per ring kind (`i64::MIN`: none yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct PerRing([i64; 4]);

impl PerRing {
    const NONE: PerRing = PerRing([i64::MIN; 4]);
}

impl std::ops::Index<RingKind> for PerRing {
    type Output = i64;
    fn index(&self, r: RingKind) -> &i64 {
        &self.0[r as usize]
    }
}

impl std::ops::IndexMut<RingKind> for PerRing {
    fn index_mut(&mut self, r: RingKind) -> &mut i64 {
        &mut self.0[r as usize]
    }
}

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
    last_eval: PerRing,
    last_data: PerRing,
    /// Latest latency quantile ratio against the baseline (for views).
    #[serde(skip)]
    last_latency_ratio: Option<f64>,
    /// Latency p50, p90 and p99 of the window ending with the newest closed latency bucket, and
    /// that bucket (for views: computed once per bucket, not at every publication).
    #[serde(skip)]
    latency_view: Option<(i64, [f64; 3])>,
}

impl Target {
    fn step(&self, ring: RingKind) -> Millis {
        match ring {
            RingKind::Traffic => self.traffic.spec.step,
            RingKind::Latency => self.latency.spec.step,
            RingKind::Drift => self.model.as_ref().map_or(i64::MAX, |m| m.drift.spec.step),
            RingKind::Accuracy => self.model.as_ref().map_or(i64::MAX, |m| m.accuracy.spec.step),
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
    /// Targets by id; `None`: free, or frozen with its group (`frozen`).
    targets: Vec<Option<Box<Target>>>,
    /// Targets of frozen groups, and their group.
    frozen: FxHashMap<TargetId, u32>,
    /// Quiet groups are frozen at the sweep ([`freeze`]); tests that compare turn it off.
    freezing: bool,
    free: Vec<TargetId>,
    next_gen: u32,
    /// Targets by [`targets::target_key_into`].
    index: FxHashMap<TargetKey, TargetId>,
    key_buf: TargetKey,
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
            frozen: FxHashMap::default(),
            freezing: true,
            free: Vec::new(),
            next_gen: 0,
            index: FxHashMap::default(),
            key_buf: TargetKey::new(),
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
        let live = self
            .targets
            .iter()
            .flatten()
            .filter_map(|t| t.model.as_ref())
            .map(|m| (m.table.features_dropped, m.table.categories_overflowed));
        let frozen = self.groups.iter().flatten().filter_map(|g| g.frozen.as_ref()).map(|f| f.drops());
        live.chain(frozen).fold((0, 0), |(f, c), (df, dc)| (f + df, c + dc))
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
        self.ingest_share(ev, pos, Share::ALL)
    }

    /// Ingests the parts of one decoded event in `share`: an engine that owns a share of the
    /// targets (one task of [`tasks::Tasks`]) takes the event's app or its model.
    pub fn ingest_share(&mut self, ev: &Event<'_>, pos: Position, share: Share) -> Result<(), BadInput> {
        if let Some(bad) = too_far_ahead(ev.ts, self.max_ts, self.max_future) {
            self.reject(&bad);
            return Err(bad);
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
        self.ingest_valid(ev, share);
        self.note_time(ev.ts);
        Ok(())
    }

    /// Catches up with a stream this engine sees a share of: the newest event time and the
    /// watermark the whole stream has reached (before the next event given to this engine).
    /// Pairs due by then are completed and what became final is decided, exactly as an engine
    /// that saw every event would have done by now for the targets this one holds.
    pub fn follow(&mut self, newest_event: Option<Millis>, max_ts: Option<Millis>, watermark: Millis) {
        if let Some(m) = max_ts {
            self.expire_pairs(m);
        }
        if newest_event > self.newest_event {
            self.newest_event = newest_event;
        }
        if max_ts > self.max_ts {
            self.max_ts = max_ts;
        }
        if watermark > self.watermark {
            self.advance(watermark);
        }
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
        self.finish_pairs();
        if let Some(wm) = self.finish_watermark() {
            self.advance(wm);
        }
    }

    /// The first step of [`Engine::finish`]: every logged half still waiting is complete.
    pub fn finish_pairs(&mut self) {
        if let Some(last) = self.pairing.last_deadline() {
            self.expire_pairs(last);
        }
    }

    /// Where [`Engine::finish`] moves the watermark: past the newest event and past the last
    /// bucket holding data. Engines that share a stream all finish at the latest of theirs
    /// ([`Engine::finish_at`]).
    pub fn finish_watermark(&self) -> Option<Millis> {
        let max = self.max_ts?;
        let live = self.targets.iter().flatten().map(|t| freeze::finish_floor(t));
        let frozen = self.groups.iter().flatten().filter_map(|g| g.frozen.as_ref()).map(|f| f.finish_floor());
        Some(live.chain(frozen).fold(max + 1, Millis::max))
    }

    /// The last step of [`Engine::finish`], at a watermark given by the caller.
    pub fn finish_at(&mut self, wm: Millis) {
        self.advance(wm.max(self.watermark));
    }
}

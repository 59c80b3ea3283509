//! Joining late labels to their predictions by `event_id`, in bounded memory.
//!
//! Predictions wait for their label at most `max_label_delay` of event time and at most
//! `max_pending` at once; labels that arrive before their prediction wait (bounded the same
//! way, at a tenth of the size). A prediction and a label join only when they are at most
//! `max_label_delay` apart in event time, so whether they join never depends on when what is
//! too old was swept. Every eviction is counted. Ids are kept as 64-bit hashes,
//! not strings: a collision among half a million pending ids has probability ≈ 10⁻⁸.
//!
//! Eviction takes the oldest entry first, by event time and then by id hash, so the order is
//! a function of what is pending and a copy rebuilt from the pending entries alone (see
//! [`LabelJoin::restored`]) evicts exactly like the original.
//!
//! For the changelog the join remembers which ids changed since the last
//! [`LabelJoin::take_changes`]: a snapshot then writes only those ids' current entries (a
//! delta) instead of the whole buffer. A change to many entries at once ([`LabelJoin::forget`]),
//! or more changed ids than can be pending, asks for a full copy ([`LabelJoin::shards`]) instead.

use std::collections::VecDeque;
use std::hash::Hasher;

use rustc_hash::{FxHashMap, FxHasher};

use crate::event::Outcome;
use crate::time::Millis;

/// A prediction or label reduced to what matching needs.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// A number.
    Num(f64),
    /// A class, by hash.
    Class(u64),
}

impl Value {
    /// From a decoded outcome.
    pub fn of(o: &Outcome<'_>) -> Value {
        match o {
            Outcome::Num(x) => Value::Num(*x),
            Outcome::Class(s) => Value::Class(hash_str(s)),
        }
    }
}

/// Stable 64-bit hash of a string (FxHash with a length prefix).
pub fn hash_str(s: &str) -> u64 {
    let mut h = FxHasher::default();
    h.write_usize(s.len());
    h.write(s.as_bytes());
    h.finish()
}

/// A prediction awaiting its label.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PendingPrediction<T> {
    /// Who made it.
    pub target: T,
    /// What it predicted.
    pub value: Value,
    /// When.
    pub ts: Millis,
}

/// Result of matching one prediction with its label.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Joined<T> {
    /// The model version that made the prediction.
    pub target: T,
    /// Event time at which the pair became complete: the later of the two.
    pub ts: Millis,
    /// Predicted value.
    pub prediction: Value,
    /// True value.
    pub label: Value,
}

/// Counters of the join.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JoinCounters {
    /// Predictions evicted unlabelled (too old or over capacity).
    pub predictions_evicted: u64,
    /// Labels evicted without a prediction.
    pub labels_unmatched: u64,
    /// Labels matched.
    pub matched: u64,
    /// Predictions that had no `prediction` value (labels for them are ignored).
    pub predictions_without_value: u64,
}

/// The pending joins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LabelJoin<T> {
    predictions: FxHashMap<u64, PendingPrediction<T>>,
    /// `(ts, id)` of pending predictions in ascending order. May also hold entries of ids that
    /// are no longer pending, or pending with another `ts`; those are skipped when reached.
    prediction_order: VecDeque<(Millis, u64)>,
    labels: FxHashMap<u64, (Value, Millis)>,
    /// `(ts, id)` of pending labels, like `prediction_order`.
    label_order: VecDeque<(Millis, u64)>,
    max_pending: usize,
    max_delay: Millis,
    /// What happened so far.
    pub counters: JoinCounters,
    /// Changes since the last [`LabelJoin::take_changes`].
    #[serde(skip)]
    changes: Changes,
}

/// Ids changed since the last snapshot.
#[derive(Debug, Clone)]
struct Changes {
    /// Each changed id, with whether anything was pending for it at the last snapshot.
    dirty: FxHashMap<u64, bool>,
    /// The next snapshot must write everything; `dirty` is not kept meanwhile.
    all: bool,
}

impl Default for Changes {
    /// A join that was never written needs a full copy first.
    fn default() -> Self {
        Changes { dirty: FxHashMap::default(), all: true }
    }
}

/// Number of shards a full copy of the pending joins is stored in, so that no stored record
/// grows with the whole buffer.
pub const SHARDS: u64 = 64;

/// The pending joins whose id hash falls in one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinShard<T> {
    /// Predictions awaiting their label.
    pub predictions: Vec<(u64, PendingPrediction<T>)>,
    /// Labels awaiting their prediction.
    pub labels: Vec<(u64, (Value, Millis))>,
}

/// The current state of one id: what waits for it, if anything.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct JoinEntry<T> {
    /// Hash of the `event_id`.
    pub id: u64,
    /// Its prediction, if one waits for a label.
    pub prediction: Option<PendingPrediction<T>>,
    /// Its label, if one waits for a prediction.
    pub label: Option<(Value, Millis)>,
}

/// What changed since the last [`LabelJoin::take_changes`].
#[derive(Debug, Clone, PartialEq)]
pub enum JoinChanges<T> {
    /// Too much to list: write a full copy ([`LabelJoin::shards`]).
    All,
    /// The current entry of every changed id, by ascending id. An entry with neither a
    /// prediction nor a label deletes the id.
    Changed(Vec<JoinEntry<T>>),
}

/// Inserts into an order kept ascending; in-order arrivals append.
fn insert_ordered(order: &mut VecDeque<(Millis, u64)>, entry: (Millis, u64)) {
    if order.back().is_none_or(|last| *last <= entry) {
        order.push_back(entry);
    } else {
        let at = order.partition_point(|e| *e <= entry);
        order.insert(at, entry);
    }
}

/// Entries an eviction order may hold beyond twice what is pending before it is compacted.
const ORDER_SLACK: usize = 1024;

/// Drops the entries of `order` that stand for nothing pending (`live` says which do) once
/// they outnumber the pending ones, and gives back capacity it no longer needs. A joined
/// prediction leaves its entry behind until the entry reaches the front, which one old
/// prediction still waiting for its label can hold back for `max_label_delay`: without this,
/// the order would hold a day of traffic.
fn compact(order: &mut VecDeque<(Millis, u64)>, pending: usize, live: impl Fn((Millis, u64)) -> bool) {
    if order.len() > 2 * pending + ORDER_SLACK {
        order.retain(|&e| live(e));
    }
    if order.capacity() > 4 * order.len() + ORDER_SLACK {
        order.shrink_to(2 * order.len());
    }
}

impl<T: Copy> LabelJoin<T> {
    /// Keeps both eviction orders within a small multiple of what is pending.
    fn tidy(&mut self) {
        let (predictions, labels) = (&self.predictions, &self.labels);
        compact(&mut self.prediction_order, predictions.len(), |(ts, k)| {
            predictions.get(&k).is_some_and(|p| p.ts == ts)
        });
        compact(&mut self.label_order, labels.len(), |(ts, k)| labels.get(&k).is_some_and(|l| l.1 == ts));
    }

    /// Empty, with bounds.
    pub fn new(max_pending: usize, max_delay: Millis) -> Self {
        LabelJoin {
            predictions: FxHashMap::default(),
            prediction_order: VecDeque::new(),
            labels: FxHashMap::default(),
            label_order: VecDeque::new(),
            max_pending,
            max_delay,
            counters: JoinCounters::default(),
            changes: Changes::default(),
        }
    }

    /// Predictions waiting now.
    pub fn pending(&self) -> usize {
        self.predictions.len()
    }

    /// Labels waiting at most.
    fn max_labels(&self) -> usize {
        (self.max_pending / 10).max(1)
    }

    /// Notes that `key` changed; `was_pending` tells whether anything was pending for it just
    /// before. The first change since the last snapshot is the one that counts.
    fn touched(&mut self, key: u64, was_pending: bool) {
        let c = &mut self.changes;
        if c.all {
            return;
        }
        c.dirty.entry(key).or_insert(was_pending);
        // More changed ids than can be pending: a full copy is smaller than the list.
        if c.dirty.len() > self.max_pending + (self.max_pending / 10).max(1) {
            c.all = true;
            c.dirty = FxHashMap::default();
        }
    }

    /// Offers a prediction; returns the join if its label was already waiting.
    pub fn prediction(&mut self, event_id: &str, p: PendingPrediction<T>) -> Option<Joined<T>> {
        let key = hash_str(event_id);
        // An id never waits as a prediction and a label at once.
        if let Some((label, lts)) = self.labels.remove(&key) {
            self.touched(key, true);
            self.tidy();
            if (p.ts - lts).abs() <= self.max_delay {
                self.counters.matched += 1;
                return Some(Joined { target: p.target, ts: lts.max(p.ts), prediction: p.value, label });
            }
            // Too far apart to be joined, however soon the label would have been swept.
            self.counters.labels_unmatched += 1;
        }
        let old = self.predictions.insert(key, p);
        self.touched(key, old.is_some());
        if old.is_none_or(|old| old.ts != p.ts) {
            insert_ordered(&mut self.prediction_order, (p.ts, key));
        }
        if old.is_some() {
            // A repeated id leaves its earlier order entry behind.
            self.tidy();
        }
        while self.predictions.len() > self.max_pending {
            if !self.pop_prediction() {
                break;
            }
        }
        None
    }

    /// Offers a label; returns the join if its prediction is waiting.
    pub fn label(&mut self, event_id: &str, value: Value, ts: Millis) -> Option<Joined<T>> {
        let key = hash_str(event_id);
        if let Some(p) = self.predictions.remove(&key) {
            self.touched(key, true);
            self.tidy();
            if (ts - p.ts).abs() <= self.max_delay {
                self.counters.matched += 1;
                return Some(Joined { target: p.target, ts: ts.max(p.ts), prediction: p.value, label: value });
            }
            self.counters.predictions_evicted += 1;
        }
        let old = self.labels.insert(key, (value, ts));
        self.touched(key, old.is_some());
        if old.is_none_or(|old| old.1 != ts) {
            insert_ordered(&mut self.label_order, (ts, key));
        }
        if old.is_some() {
            self.tidy();
        }
        while self.labels.len() > self.max_labels() {
            if !self.pop_label() {
                break;
            }
        }
        None
    }

    /// Whether an order entry stands for a pending prediction.
    fn is_pending_prediction(&self, (ts, key): (Millis, u64)) -> bool {
        self.predictions.get(&key).is_some_and(|p| p.ts == ts)
    }

    /// Whether an order entry stands for a pending label.
    fn is_pending_label(&self, (ts, key): (Millis, u64)) -> bool {
        self.labels.get(&key).is_some_and(|l| l.1 == ts)
    }

    fn pop_prediction(&mut self) -> bool {
        match self.prediction_order.pop_front() {
            Some(e) => {
                if self.is_pending_prediction(e) {
                    self.predictions.remove(&e.1);
                    self.touched(e.1, true);
                    self.counters.predictions_evicted += 1;
                }
                true
            }
            None => false,
        }
    }

    fn pop_label(&mut self) -> bool {
        match self.label_order.pop_front() {
            Some(e) => {
                if self.is_pending_label(e) {
                    self.labels.remove(&e.1);
                    self.touched(e.1, true);
                    self.counters.labels_unmatched += 1;
                }
                true
            }
            None => false,
        }
    }

    /// Evicts everything older than `max_label_delay` before `now` (event time).
    pub fn expire(&mut self, now: Millis) {
        let horizon = now.saturating_sub(self.max_delay);
        while let Some(&e) = self.prediction_order.front() {
            let pending = self.is_pending_prediction(e);
            if pending && e.0 >= horizon {
                break;
            }
            self.prediction_order.pop_front();
            if pending {
                self.predictions.remove(&e.1);
                self.touched(e.1, true);
                self.counters.predictions_evicted += 1;
            }
        }
        while let Some(&e) = self.label_order.front() {
            let pending = self.is_pending_label(e);
            if pending && e.0 >= horizon {
                break;
            }
            self.label_order.pop_front();
            if pending {
                self.labels.remove(&e.1);
                self.touched(e.1, true);
                self.counters.labels_unmatched += 1;
            }
        }
        self.tidy();
        if self.predictions.capacity() > 4 * self.predictions.len() + ORDER_SLACK {
            self.predictions.shrink_to_fit();
        }
        if self.labels.capacity() > 4 * self.labels.len() + ORDER_SLACK {
            self.labels.shrink_to_fit();
        }
    }

    /// What changed since the last call, which starts a new round of tracking. After
    /// [`JoinChanges::All`] the caller writes [`LabelJoin::shards`].
    pub fn take_changes(&mut self) -> JoinChanges<T> {
        let c = &mut self.changes;
        if std::mem::take(&mut c.all) {
            return JoinChanges::All;
        }
        let (predictions, labels) = (&self.predictions, &self.labels);
        let mut out: Vec<JoinEntry<T>> = c
            .dirty
            .drain()
            .filter_map(|(id, was_pending)| {
                let prediction = predictions.get(&id).copied();
                let label = labels.get(&id).copied();
                // Absent then and now: nothing to write.
                (was_pending || prediction.is_some() || label.is_some()).then_some(JoinEntry { id, prediction, label })
            })
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        JoinChanges::Changed(out)
    }

    /// Everything pending, in [`SHARDS`] shards by id hash (index = shard number).
    pub fn shards(&self) -> Vec<JoinShard<T>> {
        let mut shards: Vec<JoinShard<T>> =
            (0..SHARDS).map(|_| JoinShard { predictions: Vec::new(), labels: Vec::new() }).collect();
        for (&k, p) in &self.predictions {
            shards[(k % SHARDS) as usize].predictions.push((k, *p));
        }
        for (&k, l) in &self.labels {
            shards[(k % SHARDS) as usize].labels.push((k, *l));
        }
        shards
    }

    /// Adds a stored shard back (after [`LabelJoin::new`]); call
    /// [`LabelJoin::restored`] when all are in.
    pub fn restore_shard(&mut self, shard: JoinShard<T>) {
        self.predictions.extend(shard.predictions);
        self.labels.extend(shard.labels);
    }

    /// Applies a stored change on top of the restored shards: sets, or with neither a
    /// prediction nor a label removes, what waits for one id. Call [`LabelJoin::restored`]
    /// when all are in.
    pub fn restore_entry(&mut self, e: JoinEntry<T>) {
        match e.prediction {
            Some(p) => self.predictions.insert(e.id, p),
            None => self.predictions.remove(&e.id),
        };
        match e.label {
            Some(l) => self.labels.insert(e.id, l),
            None => self.labels.remove(&e.id),
        };
    }

    /// Rebuilds the eviction order (oldest first) after shards were restored, and tracks
    /// changes from here on: the restored state is what is stored.
    pub fn restored(&mut self) {
        let mut p: Vec<(Millis, u64)> = self.predictions.iter().map(|(&k, v)| (v.ts, k)).collect();
        p.sort_unstable();
        self.prediction_order = p.into();
        let mut l: Vec<(Millis, u64)> = self.labels.iter().map(|(&k, v)| (v.1, k)).collect();
        l.sort_unstable();
        self.label_order = l.into();
        self.changes = Changes { dirty: FxHashMap::default(), all: false };
    }

    /// Forgets pending predictions of targets for which `gone` is true, and gives their
    /// memory back. The next snapshot writes a full copy.
    pub fn forget(&mut self, gone: impl Fn(&T) -> bool) {
        self.predictions.retain(|_, p| !gone(&p.target));
        self.changes = Changes { dirty: FxHashMap::default(), all: true };
        let predictions = &self.predictions;
        self.prediction_order.retain(|&(ts, k)| predictions.get(&k).is_some_and(|p| p.ts == ts));
        self.predictions.shrink_to_fit();
        self.prediction_order.shrink_to_fit();
    }
}

impl<T: Copy + PartialEq> LabelJoin<T> {
    /// Whether two joins hold the same pending entries and counters (their eviction orders
    /// then agree too).
    pub fn same_pending(&self, other: &LabelJoin<T>) -> bool {
        self.counters == other.counters && self.predictions == other.predictions && self.labels == other.labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eviction_orders_stay_near_what_is_pending() {
        // One prediction never labelled holds the front of the order for max_label_delay;
        // a million predictions labelled a moment later must not leave a million entries.
        let mut j: LabelJoin<u32> = LabelJoin::new(1_000_000, 86_400_000);
        let p = |ts| PendingPrediction { target: 1, value: Value::Num(1.0), ts };
        assert!(j.prediction("never labelled", p(0)).is_none());
        let mut peak = 0;
        for i in 0..1_000_000i64 {
            let id = format!("req-{i}");
            assert!(j.prediction(&id, p(i + 1)).is_none());
            // Labels arrive in two orders: just after, and (every 3rd) before their prediction.
            if i % 3 == 0 {
                assert!(j.label(&format!("early-{i}"), Value::Num(1.0), i + 1).is_none());
                assert!(j.prediction(&format!("early-{i}"), p(i + 2)).is_some());
            }
            assert!(j.label(&id, Value::Num(0.0), i + 2).is_some());
            peak = peak.max(j.prediction_order.len() + j.label_order.len());
        }
        assert_eq!(j.pending(), 1);
        assert!(peak <= 2 * ORDER_SLACK + 4, "orders held {peak} entries for 1 pending prediction");
        // The one left waiting is still evicted when it is due, and nothing else is.
        j.expire(86_400_001);
        assert_eq!((j.pending(), j.counters.predictions_evicted), (0, 1));
        assert!(j.prediction_order.capacity() <= 2 * ORDER_SLACK + 8);
    }

    #[test]
    fn only_what_lies_within_the_delay_joins_however_late_it_is_swept() {
        let mut j: LabelJoin<u32> = LabelJoin::new(100, 1000);
        let p = |ts| PendingPrediction { target: 7, value: Value::Num(1.0), ts };
        // Not swept yet, but 1001 ms apart: no join, in either order; the stale side counts.
        assert!(j.prediction("a", p(100)).is_none());
        assert!(j.label("a", Value::Num(0.0), 1101).is_none());
        assert_eq!(j.counters.predictions_evicted, 1);
        assert!(j.label("b", Value::Num(0.0), 2000).is_none());
        assert!(j.prediction("b", p(3001)).is_none());
        assert_eq!(j.counters.labels_unmatched, 1);
        // Exactly the delay apart still joins.
        assert!(j.prediction("c", p(5000)).is_none());
        assert_eq!(j.label("c", Value::Num(0.0), 6000).map(|got| got.ts), Some(6000));
        assert_eq!(j.counters.matched, 1);
    }

    #[test]
    fn joins_in_either_order() {
        let mut j: LabelJoin<u32> = LabelJoin::new(10, 1000);
        let p = PendingPrediction { target: 7, value: Value::Num(1.0), ts: 100 };
        assert!(j.prediction("a", p).is_none());
        let got = j.label("a", Value::Num(0.0), 500).unwrap();
        assert_eq!((got.target, got.ts), (7, 500));
        assert!(j.label("b", Value::Num(2.0), 600).is_none());
        let got = j.prediction("b", PendingPrediction { ts: 650, ..p }).unwrap();
        assert_eq!(got.ts, 650);
        assert_eq!(j.counters.matched, 2);
    }

    #[test]
    fn bounded_and_counted() {
        let mut j: LabelJoin<u32> = LabelJoin::new(3, 1000);
        for i in 0..5 {
            j.prediction(&format!("p{i}"), PendingPrediction { target: 1, value: Value::Num(0.0), ts: i });
        }
        assert_eq!(j.pending(), 3);
        assert_eq!(j.counters.predictions_evicted, 2);
        j.expire(10_000);
        assert_eq!(j.pending(), 0);
        assert_eq!(j.counters.predictions_evicted, 5);
    }

    #[test]
    fn evicts_the_oldest_by_event_time_whatever_the_arrival_order() {
        let mut j: LabelJoin<u32> = LabelJoin::new(2, 1000);
        let p = |ts| PendingPrediction { target: 1, value: Value::Num(0.0), ts };
        j.prediction("late", p(500));
        j.prediction("early", p(100));
        j.prediction("middle", p(300));
        assert_eq!(j.pending(), 2);
        assert!(j.label("early", Value::Num(0.0), 600).is_none(), "the oldest goes first");
        // A repeated prediction moves to its new time; the old place in the order is skipped.
        j.prediction("late", p(50));
        j.expire(1200);
        assert_eq!(j.pending(), 1);
        assert!(j.label("middle", Value::Num(0.0), 1300).is_some());
    }

    #[test]
    fn changes_list_only_what_differs_from_the_last_snapshot() {
        let mut j: LabelJoin<u32> = LabelJoin::new(100, 10_000);
        let p = |ts| PendingPrediction { target: 1, value: Value::Num(1.0), ts };
        assert_eq!(j.take_changes(), JoinChanges::All, "never written: a full copy first");
        j.prediction("kept", p(1));
        j.prediction("gone", p(2));
        j.prediction("brief", p(3));
        j.label("brief", Value::Num(0.0), 4);
        let JoinChanges::Changed(c) = j.take_changes() else { panic!("expected changes") };
        assert_eq!(c.len(), 2, "an id added and matched between snapshots is not written: {c:?}");
        j.label("gone", Value::Num(0.0), 5);
        let JoinChanges::Changed(c) = j.take_changes() else { panic!("expected changes") };
        assert_eq!(c, vec![JoinEntry { id: hash_str("gone"), prediction: None, label: None }]);
        assert_eq!(j.take_changes(), JoinChanges::Changed(Vec::new()));
        j.forget(|_| false);
        assert_eq!(j.take_changes(), JoinChanges::All, "a bulk change asks for a full copy");
    }

    #[test]
    fn more_changed_ids_than_can_be_pending_ask_for_a_full_copy() {
        let mut j: LabelJoin<u32> = LabelJoin::new(10, 1_000_000);
        j.restored();
        for i in 0..10 {
            j.prediction(&format!("p{i}"), PendingPrediction { target: 1, value: Value::Num(0.0), ts: i });
        }
        assert!(matches!(j.take_changes(), JoinChanges::Changed(c) if c.len() == 10));
        for i in 0..20 {
            j.label(&format!("l{i}"), Value::Num(0.0), 100 + i);
        }
        assert_eq!(j.take_changes(), JoinChanges::All);
    }

    /// A stored copy the way a compacted changelog holds it: the last full copy, then the
    /// latest change of each id since (and the counters, kept in `meta`).
    #[derive(Default)]
    struct Stored {
        base: Vec<JoinShard<u32>>,
        changes: std::collections::BTreeMap<u64, JoinEntry<u32>>,
        counters: JoinCounters,
    }

    impl Stored {
        fn snapshot(&mut self, j: &mut LabelJoin<u32>) {
            self.counters = j.counters;
            match j.take_changes() {
                JoinChanges::All => {
                    self.base = j.shards();
                    self.changes.clear();
                }
                JoinChanges::Changed(c) => self.changes.extend(c.into_iter().map(|e| (e.id, e))),
            }
        }

        fn restore(&self, max_pending: usize, max_delay: Millis) -> LabelJoin<u32> {
            let mut j = LabelJoin::new(max_pending, max_delay);
            j.counters = self.counters;
            for shard in &self.base {
                j.restore_shard(shard.clone());
            }
            for e in self.changes.values() {
                j.restore_entry(*e);
            }
            j.restored();
            j
        }
    }

    /// Random predictions, labels, expiry and forgetting, with a snapshot and a restore at
    /// random points: the restored join holds exactly what the original holds, and from there
    /// on both evict, match and count alike.
    #[test]
    fn a_restored_join_equals_the_original_and_behaves_like_it() {
        use rand::{Rng, SeedableRng};
        for seed in 0..300 {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let max_pending = [2, 5, 20, 200][rng.gen_range(0..4)];
            let max_delay = rng.gen_range(200..2000);
            let mut live: LabelJoin<u32> = LabelJoin::new(max_pending, max_delay);
            let mut stored = Stored::default();
            let mut copy: Option<LabelJoin<u32>> = None;
            let mut now: Millis = 0;
            for step in 0..400 {
                now += rng.gen_range(0..20);
                let id = format!("e{}", rng.gen_range(0..60));
                let ts = now - rng.gen_range(0..100);
                let value = if rng.gen_bool(0.5) { Value::Num(rng.gen_range(0..3) as f64) } else { Value::Class(7) };
                let target = rng.gen_range(0..3u32);
                let op = rng.gen_range(0..100);
                let mut both = |f: &mut dyn FnMut(&mut LabelJoin<u32>)| {
                    f(&mut live);
                    if let Some(c) = copy.as_mut() {
                        f(c);
                    }
                };
                match op {
                    0..=39 => both(&mut |j| {
                        j.prediction(&id, PendingPrediction { target, value, ts });
                    }),
                    40..=69 => both(&mut |j| {
                        j.label(&id, value, ts);
                    }),
                    70..=79 => both(&mut |j| j.expire(now)),
                    80..=82 => both(&mut |j| j.forget(|&t| t == target)),
                    _ => {
                        if let Some(c) = &copy {
                            assert!(c.same_pending(&live), "seed {seed} step {step}: copy diverged");
                        }
                        stored.snapshot(&mut live);
                        let restored = stored.restore(max_pending, max_delay);
                        assert!(
                            restored.same_pending(&live),
                            "seed {seed} step {step}: restore differs:\n{:?}\n{:?}",
                            restored,
                            live
                        );
                        copy = Some(restored);
                    }
                }
            }
            if let Some(c) = &copy {
                assert!(c.same_pending(&live), "seed {seed}: copy diverged by the end");
            }
        }
    }
}

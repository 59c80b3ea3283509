//! Joining late labels to their predictions by `event_id`, in bounded memory.
//!
//! Predictions wait for their label at most `max_label_delay` of event time and at most
//! `max_pending` at once; labels that arrive before their prediction wait (bounded the same
//! way, at a tenth of the size). Every eviction is counted. Ids are kept as 64-bit hashes,
//! not strings: a collision among half a million pending ids has probability ≈ 10⁻⁸.

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
    prediction_order: VecDeque<(Millis, u64)>,
    labels: FxHashMap<u64, (Value, Millis)>,
    label_order: VecDeque<(Millis, u64)>,
    max_pending: usize,
    max_delay: Millis,
    /// What happened so far.
    pub counters: JoinCounters,
    /// Shards changed since the last [`LabelJoin::take_changed_shards`] (bit per shard).
    #[serde(skip)]
    changed: u64,
}

/// Number of shards the pending joins are stored in, so that a snapshot rewrites only the
/// part that changed and no stored record grows with the whole buffer.
pub const SHARDS: u64 = 64;

/// The pending joins whose id hash falls in one shard.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinShard<T> {
    /// Predictions awaiting their label.
    pub predictions: Vec<(u64, PendingPrediction<T>)>,
    /// Labels awaiting their prediction.
    pub labels: Vec<(u64, (Value, Millis))>,
}

impl<T: Copy> LabelJoin<T> {
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
            changed: 0,
        }
    }

    /// Predictions waiting now.
    pub fn pending(&self) -> usize {
        self.predictions.len()
    }

    /// Offers a prediction; returns the join if its label was already waiting.
    pub fn prediction(&mut self, event_id: &str, p: PendingPrediction<T>) -> Option<Joined<T>> {
        let key = hash_str(event_id);
        self.changed |= 1 << (key % SHARDS);
        if let Some((label, lts)) = self.labels.remove(&key) {
            self.counters.matched += 1;
            return Some(Joined { target: p.target, ts: lts.max(p.ts), prediction: p.value, label });
        }
        self.changed |= 1 << (key % SHARDS);
        if self.predictions.insert(key, p).is_none() {
            self.prediction_order.push_back((p.ts, key));
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
        self.changed |= 1 << (key % SHARDS);
        if let Some(p) = self.predictions.remove(&key) {
            self.counters.matched += 1;
            return Some(Joined { target: p.target, ts: ts.max(p.ts), prediction: p.value, label: value });
        }
        self.changed |= 1 << (key % SHARDS);
        if self.labels.insert(key, (value, ts)).is_none() {
            self.label_order.push_back((ts, key));
        }
        while self.labels.len() > (self.max_pending / 10).max(1) {
            if !self.pop_label() {
                break;
            }
        }
        None
    }

    fn pop_prediction(&mut self) -> bool {
        match self.prediction_order.pop_front() {
            Some((_, key)) => {
                self.changed |= 1 << (key % SHARDS);
                if self.predictions.remove(&key).is_some() {
                    self.counters.predictions_evicted += 1;
                }
                true
            }
            None => false,
        }
    }

    fn pop_label(&mut self) -> bool {
        match self.label_order.pop_front() {
            Some((_, key)) => {
                self.changed |= 1 << (key % SHARDS);
                if self.labels.remove(&key).is_some() {
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
        while let Some(&(ts, key)) = self.prediction_order.front() {
            if ts >= horizon && self.predictions.contains_key(&key) {
                break;
            }
            self.prediction_order.pop_front();
            self.changed |= 1 << (key % SHARDS);
            if ts < horizon && self.predictions.remove(&key).is_some() {
                self.counters.predictions_evicted += 1;
            }
        }
        while let Some(&(ts, key)) = self.label_order.front() {
            if ts >= horizon && self.labels.contains_key(&key) {
                break;
            }
            self.label_order.pop_front();
            self.changed |= 1 << (key % SHARDS);
            if ts < horizon && self.labels.remove(&key).is_some() {
                self.counters.labels_unmatched += 1;
            }
        }
    }

    /// The contents of every shard changed since the last call.
    pub fn take_changed_shards(&mut self) -> Vec<(u64, JoinShard<T>)> {
        let changed = std::mem::take(&mut self.changed);
        if changed == 0 {
            return Vec::new();
        }
        let mut shards: Vec<(u64, JoinShard<T>)> = (0..SHARDS)
            .filter(|s| changed & (1 << s) != 0)
            .map(|s| (s, JoinShard { predictions: Vec::new(), labels: Vec::new() }))
            .collect();
        let slot =
            |shards: &[(u64, JoinShard<T>)], key: u64| shards.binary_search_by_key(&(key % SHARDS), |(s, _)| *s).ok();
        for (&k, p) in &self.predictions {
            if let Some(i) = slot(&shards, k) {
                shards[i].1.predictions.push((k, *p));
            }
        }
        for (&k, l) in &self.labels {
            if let Some(i) = slot(&shards, k) {
                shards[i].1.labels.push((k, *l));
            }
        }
        shards
    }

    /// Adds a stored shard back (after [`LabelJoin::new`]); call
    /// [`LabelJoin::restored`] when all are in.
    pub fn restore_shard(&mut self, shard: JoinShard<T>) {
        self.predictions.extend(shard.predictions);
        self.labels.extend(shard.labels);
    }

    /// Rebuilds the eviction order (oldest first) after shards were restored.
    pub fn restored(&mut self) {
        let mut p: Vec<(Millis, u64)> = self.predictions.iter().map(|(&k, v)| (v.ts, k)).collect();
        p.sort_unstable();
        self.prediction_order = p.into();
        let mut l: Vec<(Millis, u64)> = self.labels.iter().map(|(&k, v)| (v.1, k)).collect();
        l.sort_unstable();
        self.label_order = l.into();
        self.changed = 0;
    }

    /// Forgets pending predictions of targets for which `gone` is true, and gives their
    /// memory back.
    pub fn forget(&mut self, gone: impl Fn(&T) -> bool) {
        self.predictions.retain(|_, p| !gone(&p.target));
        self.changed = u64::MAX;
        let predictions = &self.predictions;
        self.prediction_order.retain(|(_, k)| predictions.contains_key(k));
        self.predictions.shrink_to_fit();
        self.prediction_order.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}

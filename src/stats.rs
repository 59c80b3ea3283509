//! Mergeable accumulators: the per-bucket partial aggregates that windows are built from.
//!
//! Every accumulator implements [`Merge`], and merging is associative and commutative, so a
//! window is the merge of its buckets, a snapshot restores exactly, and partial aggregates
//! from different instances could be combined. Nothing here keeps raw events.

use hdrhistogram::Histogram;
use serde::Serialize;

use rustc_hash::FxHashMap;

/// Combining two partial aggregates of disjoint event sets.
pub trait Merge {
    /// Adds `other`'s events to `self`.
    fn merge(&mut self, other: &Self);
}

/// Traffic of one target: events served and how many of them failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Traffic {
    /// Requests + predictions + errors.
    pub events: u64,
    /// Errors.
    pub errors: u64,
}

impl Traffic {
    /// Error rate, or 0 when there are no events.
    pub fn error_rate(&self) -> f64 {
        if self.events == 0 {
            0.0
        } else {
            self.errors as f64 / self.events as f64
        }
    }
}

impl Merge for Traffic {
    fn merge(&mut self, other: &Self) {
        self.events += other.events;
        self.errors += other.errors;
    }
}

/// Latency histogram in units of 0.1 ms, from 0.1 ms to 6 minutes at two significant digits
/// (values above saturate). Allocated on the first latency recorded.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    hist: Option<Box<Histogram<u32>>>,
}

/// Highest latency tracked exactly, in 0.1 ms units (6 minutes).
const LATENCY_MAX: u64 = 3_600_000;

impl Latency {
    fn new_hist() -> Option<Box<Histogram<u32>>> {
        Histogram::new_with_bounds(1, LATENCY_MAX, 2).ok().map(Box::new)
    }

    /// Records one latency in milliseconds.
    pub fn record(&mut self, ms: f64) {
        if self.hist.is_none() {
            self.hist = Self::new_hist();
        }
        if let Some(h) = self.hist.as_mut() {
            let v = ((ms * 10.0).round() as u64).clamp(1, LATENCY_MAX);
            h.saturating_record(v);
        }
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.hist.as_ref().map_or(0, |h| h.len())
    }

    /// The `q` quantile in milliseconds (`q` in 0..=1), or `None` when empty.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let h = self.hist.as_ref()?;
        if h.is_empty() {
            return None;
        }
        Some(h.value_at_quantile(q) as f64 / 10.0)
    }

    /// Non-empty `(value in 0.1 ms units, count)` pairs, for snapshots.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        self.hist
            .as_ref()
            .map(|h| h.iter_recorded().map(|v| (v.value_iterated_to(), u64::from(v.count_at_value()))).collect())
            .unwrap_or_default()
    }

    /// Rebuilds from [`Latency::entries`].
    pub fn from_entries(entries: &[(u64, u64)]) -> Self {
        let mut l = Latency::default();
        if !entries.is_empty() {
            l.hist = Self::new_hist();
            if let Some(h) = l.hist.as_mut() {
                for &(v, c) in entries {
                    let _ = h.record_n(v.clamp(1, LATENCY_MAX), u32::try_from(c).unwrap_or(u32::MAX));
                }
            }
        }
        l
    }
}

// Serialized as its non-empty (value, count) pairs: compact, and independent of the histogram
// crate's own encoding.
impl serde::Serialize for Latency {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        Serialize::serialize(&self.entries(), s)
    }
}

impl<'de> serde::Deserialize<'de> for Latency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<(u64, u64)>::deserialize(d)?;
        Ok(Latency::from_entries(&entries))
    }
}

impl Merge for Latency {
    fn merge(&mut self, other: &Self) {
        let Some(o) = other.hist.as_ref() else { return };
        match self.hist.as_mut() {
            // Both histograms share bounds, so `add` cannot fail.
            Some(h) => {
                let _ = h.add(o.as_ref());
            }
            None => self.hist = Some(o.clone()),
        }
    }
}

/// Labelled predictions of one model version: exact-match accuracy for classes and absolute
/// error for numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Accuracy {
    /// Labelled predictions compared as classes.
    pub labelled: u64,
    /// Of those, how many matched.
    pub correct: u64,
    /// Labelled predictions compared as numbers.
    pub numeric: u64,
    /// Sum of absolute errors of the numeric ones.
    pub abs_error_sum: f64,
}

impl Accuracy {
    /// Share of class predictions that matched their label.
    pub fn accuracy(&self) -> Option<f64> {
        (self.labelled > 0).then(|| self.correct as f64 / self.labelled as f64)
    }

    /// Mean absolute error of numeric predictions.
    pub fn mae(&self) -> Option<f64> {
        (self.numeric > 0).then(|| self.abs_error_sum / self.numeric as f64)
    }
}

impl Merge for Accuracy {
    fn merge(&mut self, other: &Self) {
        self.labelled += other.labelled;
        self.correct += other.correct;
        self.numeric += other.numeric;
        self.abs_error_sum += other.abs_error_sum;
    }
}

/// Index of the fine log-linear bin holding `x`: 16 bins per power of two (±4.4% wide),
/// magnitudes clamped to 1e-12 ..= 1e15, zero in its own bin, order-preserving.
pub fn fine_bin(x: f64) -> i16 {
    if x == 0.0 || x.is_nan() {
        return 0;
    }
    let a = x.abs().clamp(1e-12, 1e15);
    let bits = a.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32 - 1023; // -40 ..= 49
    let sub = ((bits >> 48) & 0xf) as i32;
    let idx = ((exp + 41) * 16 + sub + 1) as i16;
    if x < 0.0 {
        -idx
    } else {
        idx
    }
}

/// Lower edge (by magnitude) of a fine bin; the inverse of [`fine_bin`] up to bin width.
pub fn fine_bin_value(idx: i16) -> f64 {
    if idx == 0 {
        return 0.0;
    }
    let i = i32::from(idx.unsigned_abs()) - 1;
    let exp = i / 16 - 41;
    let sub = i % 16;
    let v = 2f64.powi(exp) * (1.0 + f64::from(sub) / 16.0);
    if idx < 0 {
        -v
    } else {
        v
    }
}

/// Distribution sketch of one feature (or of the prediction) over a set of events: a fine
/// histogram of numeric values, counts of interned categories, and counts of values seen.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSketch {
    /// Fine bin → count, for numeric values.
    pub numeric: FxHashMap<i16, u32>,
    /// Category id (interned per model and feature) → count, for strings and booleans.
    pub categories: FxHashMap<u32, u32>,
}

impl FeatureSketch {
    /// Records a numeric value.
    #[inline]
    pub fn add_numeric(&mut self, x: f64) {
        *self.numeric.entry(fine_bin(x)).or_insert(0) += 1;
    }

    /// Records a category.
    #[inline]
    pub fn add_category(&mut self, id: u32) {
        *self.categories.entry(id).or_insert(0) += 1;
    }

    /// Numeric values recorded.
    pub fn numeric_count(&self) -> u64 {
        self.numeric.values().map(|&c| u64::from(c)).sum()
    }

    /// Categorical values recorded.
    pub fn category_count(&self) -> u64 {
        self.categories.values().map(|&c| u64::from(c)).sum()
    }
}

impl Merge for FeatureSketch {
    fn merge(&mut self, other: &Self) {
        for (&k, &c) in &other.numeric {
            *self.numeric.entry(k).or_insert(0) += c;
        }
        for (&k, &c) in &other.categories {
            *self.categories.entry(k).or_insert(0) += c;
        }
    }
}

/// Everything drift needs from one bucket of one model version: the number of predictions
/// and a sketch per feature (indexed by the model's feature table) and of the prediction.
/// A feature's missing count is `events` minus its recorded values.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftSketch {
    /// Predictions in the bucket.
    pub events: u64,
    /// Per feature, by index in the model's feature table.
    pub features: Vec<FeatureSketch>,
    /// The model's output.
    pub prediction: FeatureSketch,
}

impl DriftSketch {
    /// The sketch of feature `idx`, growing the table as needed.
    #[inline]
    pub fn feature_mut(&mut self, idx: usize) -> &mut FeatureSketch {
        if idx >= self.features.len() {
            self.features.resize_with(idx + 1, FeatureSketch::default);
        }
        &mut self.features[idx]
    }
}

impl Merge for DriftSketch {
    fn merge(&mut self, other: &Self) {
        self.events += other.events;
        if other.features.len() > self.features.len() {
            self.features.resize_with(other.features.len(), FeatureSketch::default);
        }
        for (a, b) in self.features.iter_mut().zip(&other.features) {
            a.merge(b);
        }
        self.prediction.merge(&other.prediction);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fine_bins_preserve_order_and_bound_width() {
        let xs = [-1e20, -5.0, -1.0, -1e-3, 0.0, 1e-13, 1e-3, 0.5, 1.0, 1.04, 1.1, 3.0, 1e6, 1e20];
        for w in xs.windows(2) {
            assert!(fine_bin(w[0]) <= fine_bin(w[1]), "{} {}", w[0], w[1]);
        }
        for x in [0.001, 0.37, 1.0, 12.5, 999.0, 1e9] {
            let lo = fine_bin_value(fine_bin(x));
            assert!(lo <= x && x < lo * 1.07, "{x} -> {lo}");
        }
    }

    #[test]
    fn latency_quantiles_and_merge() {
        let mut a = Latency::default();
        let mut b = Latency::default();
        for i in 1..=100 {
            a.record(f64::from(i));
            b.record(f64::from(i) * 2.0);
        }
        assert_eq!(a.count(), 100);
        let p99 = a.quantile_ms(0.99).unwrap();
        assert!((98.0..=100.5).contains(&p99), "{p99}");
        a.merge(&b);
        assert_eq!(a.count(), 200);
        let restored = Latency::from_entries(&a.entries());
        assert_eq!(restored.quantile_ms(0.5), a.quantile_ms(0.5));
    }
}

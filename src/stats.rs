//! Mergeable accumulators: the per-bucket partial aggregates that windows are built from.
//!
//! Every accumulator implements [`Merge`], and merging is associative and commutative, so a
//! window is the merge of its buckets, a snapshot restores exactly, and partial aggregates
//! from different instances could be combined. Nothing here keeps raw events.

use hdrhistogram::Histogram;
use serde::Serialize;

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
/// (values above saturate).
///
/// A bucket of thin traffic holds a few dozen latencies, so a histogram starts sparse — the
/// sorted `(slot, count)` pairs of the slots it uses, a few bytes per distinct value — and
/// becomes a dense hdrhistogram only when it uses more than [`SPARSE_MAX`] slots. Both forms
/// bin values into the same slots and answer quantiles the same way, so which one a window
/// happens to be built from never changes a decision.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    /// Latencies recorded.
    count: u64,
    repr: Repr,
}

#[derive(Debug, Clone, Default)]
enum Repr {
    /// `(lowest value of the slot, count)`, ascending by slot.
    #[default]
    Empty,
    Sparse(Vec<(u32, u32)>),
    Dense(Box<Histogram<u32>>),
}

/// Highest latency tracked exactly, in 0.1 ms units (6 minutes).
const LATENCY_MAX: u64 = 3_600_000;

/// Distinct slots a sparse histogram holds before it turns dense (4 KB of pairs, half a dense
/// histogram's 8 KB).
const SPARSE_MAX: usize = 512;

/// The slot layout every latency histogram shares: answers which slot a value falls in.
static LAYOUT: std::sync::LazyLock<Option<Histogram<u32>>> =
    std::sync::LazyLock::new(|| Histogram::new_with_bounds(1, LATENCY_MAX, 2).ok());

/// Lowest value of the slot holding `v` (0.1 ms units, already clamped).
#[inline]
fn slot_of(v: u64) -> u32 {
    let low = LAYOUT.as_ref().map_or(v, |h| h.lowest_equivalent(v));
    u32::try_from(low).unwrap_or(u32::MAX)
}

impl Latency {
    fn dense() -> Option<Box<Histogram<u32>>> {
        Histogram::new_with_bounds(1, LATENCY_MAX, 2).ok().map(Box::new)
    }

    /// Records one latency in milliseconds.
    pub fn record(&mut self, ms: f64) {
        let v = ((ms * 10.0).round() as u64).clamp(1, LATENCY_MAX);
        self.record_n(v, 1);
    }

    /// Adds `n` latencies of `v` (0.1 ms units, within bounds).
    fn record_n(&mut self, v: u64, n: u32) {
        if n == 0 {
            return;
        }
        self.count += u64::from(n);
        match &mut self.repr {
            Repr::Empty => self.repr = Repr::Sparse(vec![(slot_of(v), n)]),
            Repr::Sparse(pairs) => {
                let slot = slot_of(v);
                match pairs.binary_search_by_key(&slot, |&(s, _)| s) {
                    Ok(p) => pairs[p].1 = pairs[p].1.saturating_add(n),
                    Err(p) => {
                        pairs.insert(p, (slot, n));
                        if pairs.len() > SPARSE_MAX {
                            self.densify();
                        }
                    }
                }
            }
            Repr::Dense(h) => h.saturating_record_n(v, n),
        }
    }

    /// Turns a sparse histogram dense.
    fn densify(&mut self) {
        let Repr::Sparse(pairs) = &self.repr else { return };
        let Some(mut h) = Self::dense() else { return };
        for &(slot, n) in pairs {
            h.saturating_record_n(u64::from(slot), n);
        }
        self.repr = Repr::Dense(h);
    }

    /// Number of latencies recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile in milliseconds (`q` in 0..=1), or `None` when empty. Walks the slots
    /// as hdrhistogram's `value_at_quantile` does, sparse or dense.
    pub fn quantile_ms(&self, q: f64) -> Option<f64> {
        let v = match &self.repr {
            Repr::Empty => return None,
            Repr::Dense(h) if h.is_empty() => return None,
            Repr::Dense(h) => h.value_at_quantile(q),
            Repr::Sparse(pairs) => {
                let total: u64 = pairs.iter().map(|&(_, n)| u64::from(n)).sum();
                if total == 0 {
                    return None;
                }
                let q = q.min(1.0);
                let target = ((q * total as f64).ceil() as u64).max(1);
                let mut seen = 0;
                let slot = pairs
                    .iter()
                    .find(|&&(_, n)| {
                        seen += u64::from(n);
                        seen >= target
                    })
                    .or(pairs.last())
                    .map_or(0, |&(s, _)| u64::from(s));
                match LAYOUT.as_ref() {
                    Some(h) if q == 0.0 => h.lowest_equivalent(slot),
                    Some(h) => h.highest_equivalent(slot),
                    None => slot,
                }
            }
        };
        Some(v as f64 / 10.0)
    }

    /// Non-empty `(value in 0.1 ms units, count)` pairs, ascending, for snapshots.
    pub fn entries(&self) -> Vec<(u64, u64)> {
        match &self.repr {
            Repr::Empty => Vec::new(),
            Repr::Sparse(pairs) => pairs.iter().map(|&(s, n)| (u64::from(s), u64::from(n))).collect(),
            Repr::Dense(h) => {
                h.iter_recorded().map(|v| (v.value_iterated_to(), u64::from(v.count_at_value()))).collect()
            }
        }
    }

    /// Rebuilds from [`Latency::entries`].
    pub fn from_entries(entries: &[(u64, u64)]) -> Self {
        let mut l = Latency::default();
        for &(v, c) in entries {
            l.record_n(v.clamp(1, LATENCY_MAX), u32::try_from(c).unwrap_or(u32::MAX));
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
        match (&mut self.repr, &other.repr) {
            (_, Repr::Empty) => {}
            (Repr::Empty, _) => *self = other.clone(),
            (Repr::Dense(h), Repr::Dense(o)) => {
                // Both histograms share bounds, so `add` cannot fail.
                let _ = h.add(o.as_ref());
                self.count += other.count;
            }
            (Repr::Dense(h), Repr::Sparse(o)) => {
                for &(slot, n) in o {
                    h.saturating_record_n(u64::from(slot), n);
                }
                self.count += other.count;
            }
            (Repr::Sparse(_), Repr::Dense(_)) => {
                let mine = std::mem::replace(self, other.clone());
                self.merge(&mine);
            }
            (Repr::Sparse(a), Repr::Sparse(b)) => {
                let mut out = Vec::with_capacity(a.len() + b.len());
                let (mut i, mut j) = (0, 0);
                while i < a.len() && j < b.len() {
                    match a[i].0.cmp(&b[j].0) {
                        std::cmp::Ordering::Less => {
                            out.push(a[i]);
                            i += 1;
                        }
                        std::cmp::Ordering::Greater => {
                            out.push(b[j]);
                            j += 1;
                        }
                        std::cmp::Ordering::Equal => {
                            out.push((a[i].0, a[i].1.saturating_add(b[j].1)));
                            i += 1;
                            j += 1;
                        }
                    }
                }
                out.extend_from_slice(&a[i..]);
                out.extend_from_slice(&b[j..]);
                *a = out;
                self.count += other.count;
                if a.len() > SPARSE_MAX {
                    self.densify();
                }
            }
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

/// Counts by key, kept as `(key, count)` pairs sorted by key: 8 bytes per distinct key and no
/// table around them, so that the many small buckets of thin traffic stay small. Iteration is
/// in key order; merging is a merge of two sorted lists. Stored as a map from key to count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Counts<K>(Vec<(K, u32)>);

impl<K> Default for Counts<K> {
    fn default() -> Self {
        Counts(Vec::new())
    }
}

impl<K: Ord + Copy> Counts<K> {
    /// Adds `n` to the count of `key`.
    #[inline]
    pub fn add(&mut self, key: K, n: u32) {
        match self.0.last_mut() {
            Some(last) if last.0 == key => {
                last.1 += n;
                return;
            }
            Some(last) if last.0 < key => {
                self.0.push((key, n));
                return;
            }
            None => {
                self.0.push((key, n));
                return;
            }
            Some(_) => {}
        }
        match self.0.binary_search_by(|e| e.0.cmp(&key)) {
            Ok(i) => self.0[i].1 += n,
            Err(i) => self.0.insert(i, (key, n)),
        }
    }

    /// `(key, count)` pairs in ascending key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (K, u32)> + Clone + '_ {
        self.0.iter().copied()
    }

    /// Distinct keys.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sum of the counts.
    pub fn total(&self) -> u64 {
        self.0.iter().map(|&(_, c)| u64::from(c)).sum()
    }
}

/// Appends `v` as a little-endian base-128 varint.
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Reads a varint at `*at`, moving past it; `None` when the bytes end or it overflows.
fn get_varint(bytes: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *bytes.get(*at)?;
        *at += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

impl<K: Ord + Copy + Into<i64> + TryFrom<i64>> Counts<K> {
    /// Appends the counts as varints: how many, then each key as the difference to the one
    /// before (the first zigzag-coded, as it may be negative) and its count. Keys close
    /// together and small counts take two bytes a pair instead of eight.
    fn pack_into(&self, out: &mut Vec<u8>) {
        put_varint(out, self.0.len() as u64);
        let mut prev: Option<i64> = None;
        for &(k, c) in &self.0 {
            let k: i64 = k.into();
            match prev {
                None => put_varint(out, ((k << 1) ^ (k >> 63)) as u64),
                Some(p) => put_varint(out, (k - p) as u64),
            }
            put_varint(out, u64::from(c));
            prev = Some(k);
        }
    }

    /// Reads counts written by [`Counts::pack_into`] at `*at`.
    fn unpack_from(bytes: &[u8], at: &mut usize) -> Option<Self> {
        let n = usize::try_from(get_varint(bytes, at)?).ok()?;
        let mut pairs = Vec::with_capacity(n.min(bytes.len()));
        let mut prev: Option<i64> = None;
        for _ in 0..n {
            let v = get_varint(bytes, at)?;
            let k = match prev {
                None => ((v >> 1) as i64) ^ -((v & 1) as i64),
                Some(p) => p.checked_add(i64::try_from(v).ok()?)?,
            };
            let c = u32::try_from(get_varint(bytes, at)?).ok()?;
            pairs.push((K::try_from(k).ok()?, c));
            prev = Some(k);
        }
        Some(Counts(pairs))
    }
}

impl<K: Ord + Copy> Merge for Counts<K> {
    fn merge(&mut self, other: &Self) {
        if other.0.is_empty() {
            return;
        }
        if self.0.is_empty() {
            self.0.clone_from(&other.0);
            return;
        }
        // Keys both hold are added in place (a window's sum soon holds most keys of the
        // buckets merged into it); only keys new to `self` are merged in.
        let mut new: smallvec::SmallVec<[(K, u32); 16]> = smallvec::SmallVec::new();
        let mut i = 0;
        for &(k, c) in &other.0 {
            while i < self.0.len() && self.0[i].0 < k {
                i += 1;
            }
            match self.0.get_mut(i) {
                Some(e) if e.0 == k => e.1 += c,
                _ => new.push((k, c)),
            }
        }
        if new.is_empty() {
            return;
        }
        let a = std::mem::take(&mut self.0);
        let mut out = Vec::with_capacity(a.len() + new.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < new.len() {
            if a[i].0 < new[j].0 {
                out.push(a[i]);
                i += 1;
            } else {
                out.push(new[j]);
                j += 1;
            }
        }
        out.extend_from_slice(&a[i..]);
        out.extend_from_slice(&new[j..]);
        self.0 = out;
    }
}

impl<K: Ord + Copy> FromIterator<(K, u32)> for Counts<K> {
    fn from_iter<I: IntoIterator<Item = (K, u32)>>(iter: I) -> Self {
        let mut c = Counts::default();
        for (k, n) in iter {
            c.add(k, n);
        }
        c
    }
}

impl<K: Serialize> Serialize for Counts<K> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, c)| (k, c)))
    }
}

impl<'de, K: Ord + Copy + serde::Deserialize<'de>> serde::Deserialize<'de> for Counts<K> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Written as a map (as the hash maps of earlier state formats were): any key order.
        let map = std::collections::BTreeMap::<K, u32>::deserialize(d)?;
        Ok(Counts(map.into_iter().collect()))
    }
}

/// Distribution sketch of one feature (or of the prediction) over a set of events: a fine
/// histogram of numeric values, counts of interned categories, and counts of values seen.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct FeatureSketch {
    /// Fine bin → count, for numeric values.
    pub numeric: Counts<i16>,
    /// Category id (interned per model and feature) → count, for strings and booleans.
    pub categories: Counts<u32>,
}

impl FeatureSketch {
    /// Records a numeric value.
    #[inline]
    pub fn add_numeric(&mut self, x: f64) {
        self.numeric.add(fine_bin(x), 1);
    }

    /// Records a category.
    #[inline]
    pub fn add_category(&mut self, id: u32) {
        self.categories.add(id, 1);
    }

    /// Numeric values recorded.
    pub fn numeric_count(&self) -> u64 {
        self.numeric.total()
    }

    /// Categorical values recorded.
    pub fn category_count(&self) -> u64 {
        self.categories.total()
    }
}

impl Merge for FeatureSketch {
    fn merge(&mut self, other: &Self) {
        self.numeric.merge(&other.numeric);
        self.categories.merge(&other.categories);
    }
}

/// Everything drift needs from one bucket of one model version: the number of predictions
/// and a sketch per feature (indexed by the model's feature table) and of the prediction.
/// A feature's missing count is `events` minus its recorded values.
///
/// A closed bucket is packed ([`DriftSketch::pack`]): its sketches become varints in one
/// allocation, a quarter of their size or less, and are read back when the bucket is merged
/// into a window. Windows of slow models reach back over many closed buckets, and keep them
/// while the model is idle.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct DriftSketch {
    /// Predictions in the bucket.
    pub events: u64,
    /// Per feature, by index in the model's feature table (empty while packed).
    pub features: Vec<FeatureSketch>,
    /// The model's output (empty while packed).
    pub prediction: FeatureSketch,
    /// `features` and `prediction`, packed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    packed: Option<Box<[u8]>>,
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

impl DriftSketch {
    /// Packs the sketches of a bucket that will not grow any more.
    pub fn pack(&mut self) {
        if self.packed.is_some() {
            return;
        }
        let mut out = Vec::new();
        put_varint(&mut out, self.features.len() as u64);
        for f in self.features.iter().chain(std::iter::once(&self.prediction)) {
            f.numeric.pack_into(&mut out);
            f.categories.pack_into(&mut out);
        }
        self.packed = Some(out.into_boxed_slice());
        self.features = Vec::new();
        self.prediction = FeatureSketch::default();
    }

    /// Reads packed sketches back (to add to them).
    pub fn unpack(&mut self) {
        let Some(bytes) = self.packed.take() else { return };
        if let Some((features, prediction)) = read_packed(&bytes) {
            self.features = features;
            self.prediction = prediction;
        }
    }
}

/// The sketches [`DriftSketch::pack`] wrote (only it writes them).
fn read_packed(bytes: &[u8]) -> Option<(Vec<FeatureSketch>, FeatureSketch)> {
    let unpacked = unpack_sketches(bytes);
    debug_assert!(unpacked.is_some(), "packed drift sketches that do not read back");
    unpacked
}

/// The sketches [`DriftSketch::pack`] wrote, or `None` if `bytes` are not such.
fn unpack_sketches(bytes: &[u8]) -> Option<(Vec<FeatureSketch>, FeatureSketch)> {
    let mut at = 0;
    let n = usize::try_from(get_varint(bytes, &mut at)?).ok()?;
    let sketch = |at: &mut usize| -> Option<FeatureSketch> {
        Some(FeatureSketch { numeric: Counts::unpack_from(bytes, at)?, categories: Counts::unpack_from(bytes, at)? })
    };
    let mut features = Vec::with_capacity(n.min(bytes.len()));
    for _ in 0..n {
        features.push(sketch(&mut at)?);
    }
    let prediction = sketch(&mut at)?;
    (at == bytes.len()).then_some((features, prediction))
}

impl Merge for DriftSketch {
    fn merge(&mut self, other: &Self) {
        if let Some(bytes) = &other.packed {
            if let Some((features, prediction)) = read_packed(bytes) {
                self.merge(&DriftSketch { events: other.events, features, prediction, packed: None });
            }
            return;
        }
        self.unpack();
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
    fn packed_drift_sketches_read_back_as_they_were() {
        let mut s = DriftSketch { events: 7, ..DriftSketch::default() };
        for x in [-1e20, -3.5, 0.0, 1e-13, 0.5, 0.5, 99.0, 1e20] {
            s.feature_mut(0).add_numeric(x);
        }
        s.feature_mut(0).numeric.add(i16::MIN, u32::MAX);
        s.feature_mut(0).numeric.add(i16::MAX, 1);
        s.feature_mut(2).add_category(u32::MAX);
        s.feature_mut(2).add_category(0);
        s.prediction.add_category(3);
        let original = s.clone();
        s.pack();
        assert!(s.packed.is_some() && s.features.is_empty() && s.events == 7);
        let packed = s.packed.clone().expect("packed");
        assert!(packed.len() < 64, "{} bytes", packed.len());
        // A truncated form is not taken for sketches.
        assert!(unpack_sketches(&packed[..packed.len() - 1]).is_none());
        s.unpack();
        assert_eq!(s, original);
        let mut empty = DriftSketch::default();
        empty.pack();
        empty.unpack();
        assert_eq!(empty, DriftSketch::default());
    }

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
    fn counts_add_and_merge_like_a_map() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(3);
        for round in 0..200 {
            let spread = [3i16, 40, 400][round % 3];
            let mut want = std::collections::BTreeMap::<i16, u32>::new();
            let mut sum = Counts::<i16>::default();
            for _ in 0..rng.gen_range(0..6) {
                let mut part = Counts::default();
                for _ in 0..rng.gen_range(0..300) {
                    let k = rng.gen_range(-spread..=spread);
                    let n = rng.gen_range(1..4);
                    part.add(k, n);
                    *want.entry(k).or_insert(0) += n;
                }
                sum.merge(&part);
            }
            let got: Vec<(i16, u32)> = sum.iter().collect();
            assert_eq!(got, want.into_iter().collect::<Vec<_>>(), "round {round}");
            let bytes = {
                let mut v = Vec::new();
                ciborium::into_writer(&sum, &mut v).unwrap();
                v
            };
            let back: Counts<i16> = ciborium::from_reader(&bytes[..]).unwrap();
            assert_eq!(back, sum);
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

    #[test]
    fn sparse_and_dense_latency_answer_alike() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(7);
        for n in [1usize, 2, 7, 60, 400, 3_000] {
            let mut sparse_parts = Vec::new();
            let mut dense = Latency::default();
            for part in 0..4 {
                let mut l = Latency::default();
                for _ in 0..n {
                    let ms = (rng.gen::<f64>() * 8.0).exp() * if part == 3 { 10.0 } else { 1.0 };
                    l.record(ms);
                    dense.record(ms);
                }
                sparse_parts.push(l);
            }
            dense.densify();
            let mut merged = Latency::default();
            for p in &sparse_parts {
                merged.merge(p);
            }
            // A dense window merged with sparse buckets, and the other way round.
            let mut mixed = sparse_parts[0].clone();
            mixed.densify();
            for p in &sparse_parts[1..] {
                mixed.merge(p);
            }
            let mut reversed = sparse_parts[3].clone();
            reversed.merge(&mixed);
            reversed.merge(&Latency::default());
            assert_eq!(merged.count(), dense.count());
            for q in [0.0, 0.01, 0.5, 0.9, 0.99, 0.999, 1.0] {
                let want = dense.quantile_ms(q);
                assert_eq!(merged.quantile_ms(q), want, "n {n} q {q}");
                assert_eq!(mixed.quantile_ms(q), want, "n {n} q {q}");
                assert_eq!(Latency::from_entries(&dense.entries()).quantile_ms(q), want, "n {n} q {q}");
                assert_eq!(Latency::from_entries(&merged.entries()).quantile_ms(q), want, "n {n} q {q}");
            }
            assert_eq!(reversed.count(), dense.count() + sparse_parts[3].count());
        }
    }
}

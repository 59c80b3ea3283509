//! Per-column accumulators of bounded size: moments and a fine histogram for numbers, a
//! bounded frequency table (exact, then Misra–Gries) for categories.

use arrow::array::{Array, AsArray, Float64Array};
use arrow::datatypes::DataType;
use rustc_hash::FxHashMap;

use crate::detect::{coarse_bin, quantile_cuts};
use crate::stats::{fine_bin, fine_bin_value};

use super::{ColumnKind, ColumnProfile, MAX_DISTINCT};

/// Offset of fine bin 0 in the dense histogram; [`fine_bin`] returns values in ±1456.
const FINE_OFFSET: i32 = 1460;
const FINE_LEN: usize = 2 * FINE_OFFSET as usize + 1;

/// Values per chunk of the moment computation.
const MOMENT_CHUNK: usize = 4096;

/// Moments and a fine histogram of one numeric column. Values are buffered in chunks of
/// [`MOMENT_CHUNK`]; each chunk's mean and squared deviations are computed in two passes and
/// merged with the pairwise update of Chan, Golub & LeVeque, "Algorithms for computing the
/// sample variance" (The American Statistician, 1983), Welford's update generalised to chunks.
/// Chunks are cut by the count of values, not by record batches, so the result does not depend
/// on how a format splits the file.
#[derive(Debug, Clone)]
pub(super) struct NumericAcc {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    hist: Vec<u64>,
    chunk: Vec<f64>,
}

impl NumericAcc {
    pub(super) fn new() -> Self {
        NumericAcc {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
            hist: vec![0; FINE_LEN],
            chunk: Vec::with_capacity(MOMENT_CHUNK),
        }
    }

    pub(super) fn add(&mut self, a: &Float64Array) {
        let values = a.values();
        let nulls = a.nulls().filter(|n| n.null_count() > 0);
        for (i, &x) in values.iter().enumerate() {
            if !x.is_finite() || nulls.is_some_and(|n| n.is_null(i)) {
                continue;
            }
            self.min = self.min.min(x);
            self.max = self.max.max(x);
            self.hist[(i32::from(fine_bin(x)) + FINE_OFFSET) as usize] += 1;
            self.chunk.push(x);
            if self.chunk.len() == MOMENT_CHUNK {
                self.flush();
            }
        }
    }

    /// Merges the buffered chunk into the moments.
    fn flush(&mut self) {
        if self.chunk.is_empty() {
            return;
        }
        let n = self.chunk.len() as u64;
        let mean_b = self.chunk.iter().sum::<f64>() / n as f64;
        let m2_b: f64 = self.chunk.iter().map(|x| (x - mean_b) * (x - mean_b)).sum();
        let total = self.n + n;
        let delta = mean_b - self.mean;
        self.mean += delta * n as f64 / total as f64;
        self.m2 += m2_b + delta * delta * (self.n as f64) * (n as f64) / total as f64;
        self.n = total;
        self.chunk.clear();
    }

    pub(super) fn finish(&mut self, name: &str, rows: u64, bins: usize) -> ColumnProfile {
        self.flush();
        // `quantile_cuts` takes the sketch's u32 counts; scale down only past u32::MAX rows.
        let max = self.hist.iter().copied().max().unwrap_or(0);
        let scale = if max > u64::from(u32::MAX) { max as f64 / f64::from(u32::MAX) } else { 1.0 };
        let fine = self.hist.iter().enumerate().filter(|(_, &c)| c > 0).map(|(i, &c)| {
            let c = if scale > 1.0 { ((c as f64 / scale).ceil() as u32).max(1) } else { c as u32 };
            ((i as i32 - FINE_OFFSET) as i16, c)
        });
        let cuts = quantile_cuts(fine, bins);
        let mut counts = vec![0u64; cuts.len() + 1];
        for (i, &c) in self.hist.iter().enumerate() {
            if c > 0 {
                counts[coarse_bin(&cuts, (i as i32 - FINE_OFFSET) as i16)] += c;
            }
        }
        let missing = rows - self.n;
        let share = |c: u64| if rows == 0 { 0.0 } else { c as f64 / rows as f64 };
        let mut bin_freqs: Vec<f64> = counts.iter().map(|&c| share(c)).collect();
        bin_freqs.push(share(missing));
        bin_freqs.push(0.0);
        let some = |x: f64| (self.n > 0).then_some(x);
        ColumnProfile {
            name: name.to_owned(),
            kind: ColumnKind::Numeric,
            count: rows,
            missing,
            mean: some(self.mean),
            std: (self.n > 1).then(|| (self.m2 / (self.n - 1) as f64).sqrt()),
            min: some(self.min),
            max: some(self.max),
            bin_edges: cuts.iter().map(|&c| fine_bin_value(c)).collect(),
            bin_freqs,
            categories: Vec::new(),
        }
    }
}

/// Category counts of one column, bounded: exact while at most [`MAX_DISTINCT`] categories
/// have been seen; beyond that, the batched Misra–Gries summary (Misra & Gries, "Finding
/// repeated elements", Science of Computer Programming, 1982), whose counts undercount by at
/// most `n / (MAX_DISTINCT / 2 + 1)`, which the "other" share absorbs.
#[derive(Debug, Clone, Default)]
pub(super) struct CategoricalAcc {
    pub(super) counts: FxHashMap<Box<str>, u64>,
    /// Values seen (not null).
    n: u64,
    /// True once the summary had to forget categories.
    pub(super) approximate: bool,
}

impl CategoricalAcc {
    #[inline]
    fn add(&mut self, s: &str) {
        self.n += 1;
        if let Some(c) = self.counts.get_mut(s) {
            *c += 1;
            return;
        }
        self.counts.insert(s.into(), 1);
        if self.counts.len() > MAX_DISTINCT {
            self.shrink();
        }
    }

    fn add_n(&mut self, s: &str, k: u64) {
        if k == 0 {
            return;
        }
        self.n += k;
        *self.counts.entry(s.into()).or_insert(0) += k;
        if self.counts.len() > MAX_DISTINCT {
            self.shrink();
        }
    }

    /// Subtracts the count of the median-ranked category from every count and drops those
    /// left at zero: amortised O(1) per value, and at most half the table survives.
    fn shrink(&mut self) {
        let mut counts: Vec<u64> = self.counts.values().copied().collect();
        let k = MAX_DISTINCT / 2;
        let (_, &mut cut, _) = counts.select_nth_unstable_by(k, |a, b| b.cmp(a));
        self.counts.retain(|_, c| {
            *c = c.saturating_sub(cut);
            *c > 0
        });
        self.approximate = true;
    }

    pub(super) fn add_array(&mut self, a: &dyn Array) {
        match a.data_type() {
            DataType::Boolean => {
                let b = a.as_boolean();
                let trues = b.true_count() as u64;
                let falses = b.false_count() as u64;
                self.add_n("true", trues);
                self.add_n("false", falses);
            }
            DataType::Utf8 => a.as_string::<i32>().iter().flatten().for_each(|s| self.add(s)),
            DataType::LargeUtf8 => a.as_string::<i64>().iter().flatten().for_each(|s| self.add(s)),
            DataType::Utf8View => a.as_string_view().iter().flatten().for_each(|s| self.add(s)),
            _ => {}
        }
    }

    pub(super) fn finish(&self, name: &str, rows: u64, top_k: usize) -> ColumnProfile {
        let mut cats: Vec<(&str, u64)> = self.counts.iter().map(|(k, &c)| (&**k, c)).collect();
        // Most frequent first; ties by name, as in `FeatureReference::from_sketch`.
        cats.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        cats.truncate(top_k);
        let kept: u64 = cats.iter().map(|c| c.1).sum();
        let share = |c: u64| if rows == 0 { 0.0 } else { c as f64 / rows as f64 };
        let missing = rows - self.n;
        let mut bin_freqs: Vec<f64> = cats.iter().map(|c| share(c.1)).collect();
        bin_freqs.push(share(missing));
        bin_freqs.push(share(self.n - kept));
        ColumnProfile {
            name: name.to_owned(),
            kind: ColumnKind::Categorical,
            count: rows,
            missing,
            mean: None,
            std: None,
            min: None,
            max: None,
            bin_edges: Vec::new(),
            bin_freqs,
            categories: cats.into_iter().map(|c| c.0.to_owned()).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_accumulator_matches_direct_moments_across_batches() {
        let xs: Vec<f64> = (0..10_000).map(|i| f64::from(i % 97) * 1.5 + 3.0).collect();
        let mut acc = NumericAcc::new();
        for chunk in xs.chunks(777) {
            acc.add(&Float64Array::from(chunk.to_vec()));
        }
        acc.add(&Float64Array::from(vec![None, Some(f64::NAN)]));
        let n = xs.len() as f64;
        let mean = xs.iter().sum::<f64>() / n;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let c = acc.finish("x", 10_002, 10);
        assert_eq!(c.missing, 2);
        assert!((c.mean.unwrap_or(0.0) - mean).abs() < 1e-9);
        assert!((c.std.unwrap_or(0.0) - var.sqrt()).abs() < 1e-9);
        assert!((c.bin_freqs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(c.bin_freqs.len(), c.bin_edges.len() + 3);
    }

    #[test]
    fn categorical_accumulator_is_bounded_and_keeps_heavy_hitters() {
        let mut acc = CategoricalAcc::default();
        for i in 0..200_000u32 {
            if i % 2 == 0 {
                acc.add("heavy");
            } else {
                acc.add(&format!("rare-{i}"));
            }
            assert!(acc.counts.len() <= MAX_DISTINCT);
        }
        let c = acc.finish("c", 200_000, 5);
        assert_eq!(c.categories[0], "heavy");
        assert!((c.bin_freqs[0] - 0.5).abs() < 0.01, "{:?}", c.bin_freqs);
        assert!((c.bin_freqs.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}

//! Drift references: what "normal" looks like for a model version, and the drift statistic of
//! a current window against it.
//!
//! A [`ModelReference`] is built either from a model version's own warm-up window
//! ([`ModelReference::from_sketch`]) or from a training-data profile. Either way it is a set of
//! per-feature binnings (quantile bins of the reference for numbers, the reference's most
//! frequent categories for strings) with the reference's share in each bin, plus a "missing"
//! and an "unseen" bin (categories the reference never had, or values of the other type).

use std::sync::Arc;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::detect::{coarse_bin, psi, quantile_cuts};
use crate::stats::{fine_bin_value, DriftSketch, FeatureSketch};

/// Interns feature names and category strings of one model version, with bounds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct FeatureTable {
    /// Feature names by index.
    pub names: Vec<Arc<str>>,
    index: FxHashMap<Arc<str>, u16>,
    /// Category dictionaries: one per feature, and the last one for the prediction.
    dicts: Vec<CategoryDict>,
    prediction_dict: CategoryDict,
    max_features: usize,
    max_categories: usize,
    /// Feature values ignored because the model had too many distinct feature names.
    pub features_dropped: u64,
    /// Category values folded into the overflow category.
    pub categories_overflowed: u64,
}

/// Category strings of one feature, interned to ids.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CategoryDict {
    ids: FxHashMap<Box<str>, u32>,
    /// Names by id.
    pub names: Vec<Box<str>>,
}

/// Id shared by every category beyond the dictionary's bound.
pub const OVERFLOW_CATEGORY: u32 = u32::MAX;

impl CategoryDict {
    fn intern(&mut self, s: &str, max: usize, overflowed: &mut u64) -> u32 {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        if self.names.len() >= max {
            *overflowed += 1;
            return OVERFLOW_CATEGORY;
        }
        let id = self.names.len() as u32;
        self.names.push(s.into());
        self.ids.insert(s.into(), id);
        id
    }

    /// The category string of an id (`None` for the overflow id).
    pub fn name(&self, id: u32) -> Option<&str> {
        self.names.get(id as usize).map(|s| &**s)
    }
}

impl FeatureTable {
    /// An empty table with the given bounds.
    pub fn new(max_features: usize, max_categories: usize) -> Self {
        FeatureTable { max_features, max_categories, ..Default::default() }
    }

    /// Index of a feature name; `position` is where the name appeared in the event, tried first
    /// because producers send features in a stable order.
    #[inline]
    pub fn lookup(&mut self, name: &str, position: usize) -> Option<usize> {
        if let Some(n) = self.names.get(position) {
            if &**n == name {
                return Some(position);
            }
        }
        if let Some(&i) = self.index.get(name) {
            return Some(usize::from(i));
        }
        if self.names.len() >= self.max_features.min(usize::from(u16::MAX)) {
            self.features_dropped += 1;
            return None;
        }
        let i = self.names.len();
        let arc: Arc<str> = name.into();
        self.names.push(arc.clone());
        self.index.insert(arc, i as u16);
        self.dicts.push(CategoryDict::default());
        Some(i)
    }

    /// Interns a category of feature `idx`.
    #[inline]
    pub fn category(&mut self, idx: usize, value: &str) -> u32 {
        let max = self.max_categories;
        match self.dicts.get_mut(idx) {
            Some(d) => d.intern(value, max, &mut self.categories_overflowed),
            None => OVERFLOW_CATEGORY,
        }
    }

    /// Interns a class predicted by the model.
    #[inline]
    pub fn prediction_category(&mut self, value: &str) -> u32 {
        let max = self.max_categories;
        self.prediction_dict.intern(value, max, &mut self.categories_overflowed)
    }

    /// The dictionary of feature `idx` (or of the prediction for `None`).
    pub fn dict(&self, idx: Option<usize>) -> Option<&CategoryDict> {
        match idx {
            Some(i) => self.dicts.get(i),
            None => Some(&self.prediction_dict),
        }
    }
}

/// How a feature's values are binned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Binning {
    /// Quantile bins: `cuts` are fine-bin indices where each bin after the first starts.
    Numeric {
        /// Fine-bin cut points.
        cuts: Vec<i16>,
    },
    /// One bin per reference category.
    Categorical {
        /// Category names, in bin order.
        categories: Vec<String>,
        /// Name → bin.
        index: FxHashMap<String, usize>,
    },
}

/// Reference of one feature (or of the prediction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureReference {
    /// Feature name (`"prediction"` for the output).
    pub name: String,
    /// Bins.
    pub binning: Binning,
    /// Share of the reference in each value bin, then the missing bin, then the unseen bin.
    pub probs: Vec<f64>,
    /// Events in the reference.
    pub count: u64,
}

impl FeatureReference {
    /// Number of value bins (without missing and unseen).
    pub fn value_bins(&self) -> usize {
        self.probs.len() - 2
    }

    /// Reference share of missing values.
    pub fn missing_rate(&self) -> f64 {
        self.probs[self.probs.len() - 2]
    }

    /// Builds the reference of one feature from its sketch over `events` events. `dict`
    /// resolves category ids. Returns `None` when the feature never had a value.
    pub fn from_sketch(
        name: &str,
        sketch: &FeatureSketch,
        events: u64,
        dict: Option<&CategoryDict>,
        bins: usize,
        max_categories: usize,
    ) -> Option<Self> {
        let numeric = sketch.numeric_count();
        let categorical = sketch.category_count();
        if events == 0 || numeric + categorical == 0 {
            return None;
        }
        let missing = events.saturating_sub(numeric + categorical);
        let (binning, mut counts) = if numeric >= categorical {
            let cuts = quantile_cuts(sketch.numeric.iter(), bins);
            let mut counts = vec![0u64; cuts.len() + 3];
            for (f, c) in sketch.numeric.iter() {
                counts[coarse_bin(&cuts, f)] += u64::from(c);
            }
            let unseen = counts.len() - 1;
            counts[unseen] = categorical;
            (Binning::Numeric { cuts }, counts)
        } else {
            let mut cats: Vec<(String, u64)> = sketch
                .categories
                .iter()
                .filter_map(|(id, c)| Some((dict?.name(id)?.to_owned(), u64::from(c))))
                .collect();
            // Most frequent first; ties by name so the reference does not depend on input order.
            cats.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
            let kept = cats.len().min(max_categories);
            let kept_total: u64 = cats[..kept].iter().map(|c| c.1).sum();
            let mut counts: Vec<u64> = cats[..kept].iter().map(|c| c.1).collect();
            counts.push(0);
            counts.push(numeric + categorical - kept_total);
            let categories: Vec<String> = cats.into_iter().take(kept).map(|c| c.0).collect();
            let index = categories.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
            (Binning::Categorical { categories, index }, counts)
        };
        let n = counts.len();
        counts[n - 2] = missing;
        let probs = counts.iter().map(|&c| c as f64 / events as f64).collect();
        Some(FeatureReference { name: name.to_owned(), binning, probs, count: events })
    }

    /// Whether most values of `sketch` are of the other type than this reference's bins.
    pub fn mismatched(&self, sketch: &FeatureSketch) -> bool {
        let (numeric, categorical) = (sketch.numeric_count(), sketch.category_count());
        match self.binning {
            Binning::Numeric { .. } => categorical > numeric,
            Binning::Categorical { .. } => numeric > categorical,
        }
    }

    /// Counts of the current window in this reference's bins.
    pub fn bin_counts(&self, sketch: Option<&FeatureSketch>, events: u64, dict: Option<&CategoryDict>) -> Vec<u64> {
        let mut counts = vec![0u64; self.probs.len()];
        let n = counts.len();
        let mut present = 0u64;
        if let Some(s) = sketch {
            match &self.binning {
                Binning::Numeric { cuts } => {
                    for (f, c) in s.numeric.iter() {
                        counts[coarse_bin(cuts, f)] += u64::from(c);
                    }
                    counts[n - 1] += s.category_count();
                }
                Binning::Categorical { index, .. } => {
                    for (id, c) in s.categories.iter() {
                        let bin =
                            dict.and_then(|d| d.name(id)).and_then(|name| index.get(name).copied()).unwrap_or(n - 1);
                        counts[bin] += u64::from(c);
                    }
                    counts[n - 1] += s.numeric_count();
                }
            }
            present = s.numeric_count() + s.category_count();
        }
        counts[n - 2] = events.saturating_sub(present);
        counts
    }

    /// Human-readable bin edges (numeric) or categories, for evidence.
    pub fn describe_bins(&self) -> serde_json::Value {
        match &self.binning {
            Binning::Numeric { cuts } => serde_json::json!({
                "kind": "numeric",
                "edges": cuts.iter().map(|&c| fine_bin_value(c)).collect::<Vec<_>>(),
            }),
            Binning::Categorical { categories, .. } => serde_json::json!({
                "kind": "categorical",
                "categories": categories,
            }),
        }
    }
}

/// Where a reference came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ReferenceSource {
    /// The model version's own first events.
    WarmUp {
        /// Window start (epoch ms).
        start: i64,
        /// Window end (epoch ms).
        end: i64,
    },
    /// A profile file built from training data.
    Profile {
        /// Profile path.
        path: String,
    },
}

/// The reference of one model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelReference {
    /// Per feature, by name.
    pub features: Vec<FeatureReference>,
    /// The prediction's reference, if the model produced predictions.
    pub prediction: Option<FeatureReference>,
    /// Events in the reference.
    pub events: u64,
    /// Where it came from.
    pub source: ReferenceSource,
    /// `(labelled, correct)` class predictions of a profile's data, the accuracy reference of
    /// versions measured against it; `None` for warm-up references.
    pub accuracy: Option<(u64, u64)>,
}

/// Drift of one feature in one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeatureDrift {
    /// Feature name (`"prediction"` for the output).
    pub name: String,
    /// Always `"psi"`.
    pub statistic: &'static str,
    /// PSI value.
    pub value: f64,
    /// Threshold it was compared with.
    pub threshold: f64,
    /// Share of missing values now.
    pub missing_rate: f64,
    /// Share of missing values in the reference.
    pub reference_missing_rate: f64,
    /// Share of values in the "unseen" bin now.
    pub unseen_rate: f64,
    /// Chi-square test of the same bins against the reference: the p-value.
    pub p_value: f64,
}

impl ModelReference {
    /// Reference from a model version's warm-up sketch.
    pub fn from_sketch(
        sketch: &DriftSketch,
        table: &FeatureTable,
        bins: usize,
        max_categories: usize,
        source: ReferenceSource,
    ) -> Self {
        let features = table
            .names
            .iter()
            .enumerate()
            .filter_map(|(i, name)| {
                let s = sketch.features.get(i)?;
                FeatureReference::from_sketch(name, s, sketch.events, table.dict(Some(i)), bins, max_categories)
            })
            .collect();
        let prediction = FeatureReference::from_sketch(
            "prediction",
            &sketch.prediction,
            sketch.events,
            table.dict(None),
            bins,
            max_categories,
        );
        ModelReference { features, prediction, events: sketch.events, source, accuracy: None }
    }

    /// PSI of every referenced feature (and the prediction) of `current` against this reference.
    pub fn drift(&self, current: &DriftSketch, table: &FeatureTable, threshold: f64) -> Vec<FeatureDrift> {
        let mut out = Vec::with_capacity(self.features.len() + 1);
        let events = current.events;
        let mut one = |r: &FeatureReference, sketch: Option<&FeatureSketch>, dict: Option<&CategoryDict>| {
            let counts = r.bin_counts(sketch, events, dict);
            let n = counts.len();
            let value = psi(&r.probs, r.count, &counts);
            out.push(FeatureDrift {
                name: r.name.clone(),
                statistic: "psi",
                value,
                threshold,
                missing_rate: counts[n - 2] as f64 / events.max(1) as f64,
                reference_missing_rate: r.missing_rate(),
                unseen_rate: counts[n - 1] as f64 / events.max(1) as f64,
                p_value: crate::detect::homogeneity_p_value(&r.probs, r.count, &counts),
            });
        };
        for r in &self.features {
            // A profile feature the model's events never named is a schema difference, not
            // drift: it is reported by [`ModelReference::absent`] instead.
            let Some(idx) = table.names.iter().position(|n| **n == *r.name) else {
                continue;
            };
            let sketch = current.features.get(idx);
            // Values of the other type (numbers against categories) are a schema difference
            // too: reported by [`ModelReference::type_mismatches`].
            if sketch.is_some_and(|s| r.mismatched(s)) {
                continue;
            }
            one(r, sketch, table.dict(Some(idx)));
        }
        if let Some(r) = self.prediction.as_ref().filter(|r| !r.mismatched(&current.prediction)) {
            one(r, Some(&current.prediction), table.dict(None));
        }
        out
    }

    /// Features (and `prediction`) whose values in `current` are mostly of the other type than
    /// the reference's — numbers where it has categories, or categories where it has numbers
    /// (e.g. classes written `0`/`1` in a training file and `"0"`/`"1"` by the service). They
    /// are not compared: every value would be unseen, a drift alarm at every window.
    pub fn type_mismatches(&self, current: &DriftSketch, table: &FeatureTable) -> Vec<String> {
        let mut out: Vec<String> = self
            .features
            .iter()
            .filter(|r| {
                table
                    .names
                    .iter()
                    .position(|n| **n == *r.name)
                    .and_then(|idx| current.features.get(idx))
                    .is_some_and(|s| r.mismatched(s))
            })
            .map(|r| r.name.clone())
            .collect();
        if self.prediction.as_ref().is_some_and(|r| r.mismatched(&current.prediction)) {
            out.push(crate::profile::PREDICTION.to_owned());
        }
        out
    }

    /// Features of this reference that the model's events never named (a profile may describe
    /// columns the service does not send).
    pub fn absent(&self, table: &FeatureTable) -> Vec<&str> {
        self.features.iter().filter(|r| !table.names.iter().any(|n| **n == *r.name)).map(|r| r.name.as_str()).collect()
    }

    /// Feature names of the table that this reference lacks.
    pub fn unreferenced<'a>(&self, table: &'a FeatureTable, current: &DriftSketch) -> Vec<&'a str> {
        table
            .names
            .iter()
            .enumerate()
            .filter(|(i, n)| {
                current.features.get(*i).is_some_and(|s| s.numeric_count() + s.category_count() > 0)
                    && !self.features.iter().any(|r| *r.name == ***n)
            })
            .map(|(_, n)| &**n)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_distr::{Distribution, Normal};
    use rand_pcg::Pcg64;

    fn sketch_numeric(shift: f64, n: usize, seed: u64) -> (DriftSketch, FeatureTable) {
        let mut rng = Pcg64::seed_from_u64(seed);
        let normal = Normal::new(shift, 1.0).unwrap();
        let mut table = FeatureTable::new(10, 10);
        let mut s = DriftSketch::default();
        for _ in 0..n {
            s.events += 1;
            let i = table.lookup("amount", 0).unwrap();
            let x: f64 = normal.sample(&mut rng);
            s.feature_mut(i).add_numeric(x.exp());
            if rng.gen::<f64>() < 0.5 {
                let j = table.lookup("country", 1).unwrap();
                let c = if rng.gen::<f64>() < 0.7 { "DE" } else { "FR" };
                let id = table.category(j, c);
                s.feature_mut(j).add_category(id);
            }
        }
        (s, table)
    }

    #[test]
    fn same_distribution_has_small_psi_and_shift_has_large() {
        let (refs, table) = sketch_numeric(0.0, 20_000, 1);
        let r = ModelReference::from_sketch(&refs, &table, 10, 50, ReferenceSource::WarmUp { start: 0, end: 1 });
        assert_eq!(r.features.len(), 2);
        let (same, _) = sketch_numeric(0.0, 5_000, 2);
        let d = r.drift(&same, &table, 0.2);
        assert!(d.iter().all(|f| f.value < 0.02), "{d:?}");
        let (shifted, _) = sketch_numeric(0.67, 5_000, 3);
        let d = r.drift(&shifted, &table, 0.2);
        assert!(d[0].value > 0.3, "{d:?}");
        assert!(d[1].value < 0.02, "{d:?}");
        // Categorical reference keeps missing share.
        assert!((r.features[1].missing_rate() - 0.5).abs() < 0.02);
    }
}

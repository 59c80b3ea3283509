//! The profile model: what a profile holds (columns, file-level facts) and how it becomes
//! the drift reference the engine measures against.

use rustc_hash::FxHashMap;

use crate::reference::{Binning, FeatureReference, ModelReference, ReferenceSource};
use crate::stats::{fine_bin, fine_bin_value};

use super::{ProfileError, Task};

/// How a column was profiled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnKind {
    /// Numbers: quantile bins.
    Numeric,
    /// Strings and booleans: category frequencies.
    Categorical,
}

impl ColumnKind {
    /// Name stored in the profile file.
    pub fn as_str(self) -> &'static str {
        match self {
            ColumnKind::Numeric => "numeric",
            ColumnKind::Categorical => "categorical",
        }
    }
}

/// The profile of one feature (or of the prediction).
#[derive(Debug, Clone, PartialEq)]
pub struct ColumnProfile {
    /// Column name (`"prediction"` for the output).
    pub name: String,
    /// Numeric or categorical.
    pub kind: ColumnKind,
    /// Rows.
    pub count: u64,
    /// Rows without a value (null; for numbers also NaN and ±∞).
    pub missing: u64,
    /// Mean of the values (numeric only).
    pub mean: Option<f64>,
    /// Sample standard deviation of the values (numeric only).
    pub std: Option<f64>,
    /// Smallest value (numeric only).
    pub min: Option<f64>,
    /// Largest value (numeric only).
    pub max: Option<f64>,
    /// Numeric: where each quantile bin after the first starts (lower edges of fine bins).
    pub bin_edges: Vec<f64>,
    /// Share of rows in each value bin (numeric: `bin_edges.len() + 1` bins; categorical: one
    /// per category), then the missing share, then the unseen share (categorical: "other",
    /// the categories beyond the top K; numeric: always 0).
    pub bin_freqs: Vec<f64>,
    /// Categorical: the most frequent categories, most frequent first.
    pub categories: Vec<String>,
}

/// File-level facts of a profile, stored as schema metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProfileMeta {
    /// `driftwatch` version that wrote it.
    pub driftwatch_version: String,
    /// Layout version ([`PROFILE_VERSION`](super::PROFILE_VERSION)).
    pub profile_version: u32,
    /// Training file name as given.
    pub source_file: String,
    /// SHA-256 of the training file, hex.
    pub source_sha256: String,
    /// RFC 3339 creation time.
    pub created_at: String,
    /// Rows profiled.
    pub rows: u64,
    /// Model the profile was built for, if named.
    pub model: Option<String>,
    /// Model version the profile was built for, if named.
    pub version: Option<String>,
    /// Rows with both a prediction and a label.
    pub labelled: u64,
    /// Of those, rows whose class prediction equals the label (class outputs).
    pub correct: Option<u64>,
    /// `correct / labelled` (class outputs).
    pub accuracy: Option<f64>,
    /// Mean absolute error (numeric outputs).
    pub mae: Option<f64>,
    /// Columns not profiled, as `name: reason`.
    pub skipped_columns: Vec<String>,
    /// What `prediction` and `label` were read as; `None` without either column, or in a
    /// profile that does not record it.
    pub task: Option<Task>,
    /// Whether `task` was given with `--task` (else it was inferred from the column types).
    pub task_given: bool,
}

/// A reference profile: one entry per feature, one for the prediction, and metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// File-level facts.
    pub meta: ProfileMeta,
    /// Features, in column order.
    pub features: Vec<ColumnProfile>,
    /// The `prediction` column, when present.
    pub prediction: Option<ColumnProfile>,
}

impl ColumnProfile {
    fn to_feature_reference(&self, path: &str) -> Result<FeatureReference, ProfileError> {
        let invalid = |message: String| ProfileError::InvalidProfile {
            path: path.to_owned(),
            message: format!("feature `{}`: {message}", self.name),
        };
        let value_bins = match self.kind {
            ColumnKind::Numeric => self.bin_edges.len() + 1,
            ColumnKind::Categorical => self.categories.len(),
        };
        if self.bin_freqs.len() != value_bins + 2 {
            return Err(invalid(format!(
                "column `bin_freqs` has {} entries, expected {} ({} value bins, missing, unseen)",
                self.bin_freqs.len(),
                value_bins + 2,
                value_bins
            )));
        }
        if self.bin_freqs.iter().any(|f| !f.is_finite() || *f < 0.0 || *f > 1.0 + 1e-9) {
            return Err(invalid("column `bin_freqs` has a share outside 0..=1".into()));
        }
        let sum: f64 = self.bin_freqs.iter().sum();
        if self.count > 0 && (sum - 1.0).abs() > 1e-6 {
            return Err(invalid(format!("column `bin_freqs` sums to {sum}, not 1")));
        }
        let binning = match self.kind {
            ColumnKind::Numeric => {
                let mut cuts = Vec::with_capacity(self.bin_edges.len());
                for &edge in &self.bin_edges {
                    let cut = fine_bin(edge);
                    // Edges are lower edges of fine bins, so they map back exactly; anything
                    // else was not written by `baseline`.
                    if !edge.is_finite() || fine_bin_value(cut) != edge {
                        return Err(invalid(format!(
                            "column `bin_edges`: {edge} is not a bin edge written by `driftwatch baseline`"
                        )));
                    }
                    if cuts.last().is_some_and(|&c| c >= cut) {
                        return Err(invalid("column `bin_edges` is not ascending".into()));
                    }
                    cuts.push(cut);
                }
                Binning::Numeric { cuts }
            }
            ColumnKind::Categorical => {
                let index: FxHashMap<String, usize> =
                    self.categories.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
                if index.len() != self.categories.len() {
                    return Err(invalid("column `categories` repeats a category".into()));
                }
                Binning::Categorical { categories: self.categories.clone(), index }
            }
        };
        Ok(FeatureReference { name: self.name.clone(), binning, probs: self.bin_freqs.clone(), count: self.count })
    }
}

impl Profile {
    /// The drift reference of this profile; `path` is recorded as its source.
    pub fn to_reference(&self, path: &str) -> Result<ModelReference, ProfileError> {
        let features = self.features.iter().map(|c| c.to_feature_reference(path)).collect::<Result<Vec<_>, _>>()?;
        let prediction = self.prediction.as_ref().map(|c| c.to_feature_reference(path)).transpose()?;
        Ok(ModelReference {
            features,
            prediction,
            events: self.meta.rows,
            source: ReferenceSource::Profile { path: path.to_owned() },
            accuracy: self.meta.correct.filter(|_| self.meta.labelled > 0).map(|c| (self.meta.labelled, c)),
        })
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::Float64Array;

    use super::*;
    use crate::profile::accumulate::NumericAcc;

    #[test]
    fn bin_edges_map_back_to_their_fine_bins() {
        let mut x = 1e-13;
        while x < 1e16 {
            for v in [x, -x] {
                let b = fine_bin(v);
                assert_eq!(fine_bin(fine_bin_value(b)), b, "{v}");
            }
            x *= 1.013;
        }
        assert_eq!(fine_bin(fine_bin_value(0)), 0);
    }

    #[test]
    fn profile_reference_keeps_bins_and_accuracy() {
        let mut acc = NumericAcc::new();
        acc.add(&Float64Array::from((1..=1000).map(f64::from).collect::<Vec<_>>()));
        let col = acc.finish("amount", 1000, 4);
        let profile = Profile {
            meta: ProfileMeta { rows: 1000, labelled: 10, correct: Some(9), ..ProfileMeta::default() },
            features: vec![col.clone()],
            prediction: None,
        };
        let r = profile.to_reference("p.arrow").expect("valid");
        let Binning::Numeric { cuts } = &r.features[0].binning else { panic!("numeric") };
        assert_eq!(cuts.len(), col.bin_edges.len());
        assert_eq!(r.accuracy, Some((10, 9)));
        assert_eq!(r.features[0].probs, col.bin_freqs);
    }
}

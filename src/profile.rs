//! Reference profiles from training data: the `baseline` subcommand and the `[[profiles]]` of
//! the config.
//!
//! [`build_profile`] streams a training file (Parquet, Arrow IPC, CSV or JSON Lines) batch by
//! batch through per-column accumulators whose size does not depend on the number of rows: a
//! fine log-linear histogram ([`crate::stats::fine_bin`]) plus Welford/Chan moments for numbers,
//! and a bounded frequency table for categories. [`write_profile`] stores the result as an Arrow
//! IPC file (schema in `schemas/profile.md`), [`read_profile`] reads it back, and
//! [`Profile::to_reference`] turns it into the [`ModelReference`] the engine measures drift
//! against. [`load_profiles`] attaches every `[[profiles]]` entry of a config to an engine.
//!
//! Columns are features, except `prediction` (the model's output) and `label` (ground truth),
//! recognised by name. Features of types that have no meaning as a model input in events
//! (lists, structs, maps, timestamps, dates, binary…) are skipped and listed in the profile;
//! `prediction` or `label` of such a type is an error, since their meaning is fixed.
//!
//! Whether `prediction` and `label` are classes or numbers is the profile's [`Task`]: given
//! (`--task`), or inferred from their column types, with a warning when numbers look like
//! classes (few distinct whole numbers, as in a CSV of `0`/`1` labels).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::detect::{coarse_bin, quantile_cuts};
use crate::engine::Engine;
use crate::reference::{Binning, FeatureReference, ModelReference, ReferenceSource};
use crate::stats::{fine_bin, fine_bin_value};
use crate::time::format_rfc3339;

/// Version of the profile file layout written by this build.
pub const PROFILE_VERSION: u32 = 1;
/// Distinct categories counted per column; beyond it counts become Misra–Gries estimates.
pub const MAX_DISTINCT: usize = 10_000;
/// Rows per record batch when reading.
const BATCH_ROWS: usize = 8192;
/// Records read to infer the schema of CSV and JSON Lines files.
const INFER_RECORDS: usize = 100_000;
/// Name of the column holding the model's output.
pub const PREDICTION: &str = "prediction";
/// Name of the column holding ground truth.
pub const LABEL: &str = "label";
/// Distinct whole numbers in `prediction` or `label` up to which an inferred regression is
/// suspected to be classes.
pub const SUSPECTED_CLASSES: usize = 20;

/// What went wrong reading training data or a profile. Every message names the file, and the
/// column when one is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    /// The file could not be opened or read.
    #[error("{path}: {cause}")]
    Io {
        /// File.
        path: String,
        /// Cause (in the message, so not also a `source`).
        cause: io::Error,
    },
    /// The extension names no supported format.
    #[error("{path}: unknown input format; name the file .parquet/.pq (Parquet), .arrow/.ipc/.feather (Arrow IPC), .csv (CSV with a header) or .jsonl/.ndjson/.json (JSON Lines)")]
    UnknownFormat {
        /// File.
        path: String,
    },
    /// A zero-byte file.
    #[error("{path}: the file is empty")]
    EmptyFile {
        /// File.
        path: String,
    },
    /// A well-formed file without rows.
    #[error("{path}: no rows to profile (the file has a schema but no data)")]
    NoRows {
        /// File.
        path: String,
    },
    /// Not a readable file of its format, or corrupt part-way.
    #[error("{path}: not a readable {format} file: {message}")]
    Corrupt {
        /// File.
        path: String,
        /// Format implied by the extension.
        format: &'static str,
        /// What the reader said.
        message: String,
    },
    /// A column with a type or content that cannot be used.
    #[error("{path}: column `{column}`: {message}")]
    Column {
        /// File.
        path: String,
        /// Column name.
        column: String,
        /// What is wrong and what to do.
        message: String,
    },
    /// Nothing left to profile.
    #[error("{path}: no feature columns to profile ({message})")]
    NoFeatures {
        /// File.
        path: String,
        /// Why.
        message: String,
    },
    /// An invalid option.
    #[error("{0}")]
    Usage(String),
    /// The profile could not be written.
    #[error("{path}: cannot write the profile: {message}")]
    Write {
        /// File.
        path: String,
        /// Cause.
        message: String,
    },
    /// A file that is not a valid driftwatch profile.
    #[error("{path}: not a valid driftwatch profile: {message}")]
    InvalidProfile {
        /// File.
        path: String,
        /// What is wrong (naming the column, and the feature row where one is at fault).
        message: String,
    },
    /// A `[[profiles]]` entry that contradicts the profile it names.
    #[error("{path}: {message}")]
    Mismatch {
        /// File.
        path: String,
        /// What does not match.
        message: String,
    },
}

fn show_path(p: &Path) -> String {
    p.display().to_string()
}

/// What the model outputs: decides how `prediction` and `label` are read, and whether the
/// profile records an accuracy or an MAE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// Classes, compared by exact match (accuracy). Numbers are read as the class of their
    /// canonical text ([`class_of_number`]): `1` and `1.0` are both class `"1"`.
    Classification,
    /// Numbers (MAE). Text that is not a number is an error.
    Regression,
}

impl Task {
    /// Name on the command line and in the profile file.
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        }
    }

    /// From its name.
    pub fn parse(s: &str) -> Result<Task, String> {
        match s {
            "classification" => Ok(Task::Classification),
            "regression" => Ok(Task::Regression),
            other => Err(format!("`{other}` is not a task; use classification or regression")),
        }
    }
}

/// The class a number stands for: its plain decimal text, with the fewest digits that read back
/// and no exponent (`1`, `0`, `1.5`, `-2`, `0.0000001`), so that
/// `1`, `1.0` and `1e0` are all class `"1"`. Events send a class as that JSON string
/// (`"prediction": "1"`); a JSON number is a number to the engine. `None` for NaN and ±∞.
pub fn class_of_number(x: f64) -> Option<String> {
    if !x.is_finite() {
        None
    } else if x == 0.0 {
        // Not "-0".
        Some("0".to_owned())
    } else {
        Some(format!("{x}"))
    }
}

/// How the task of a `baseline` run was decided, for its summary.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskChoice {
    /// The task; `None` when the file has neither `prediction` nor `label`.
    pub task: Option<Task>,
    /// Given with `--task`, rather than inferred from the column types.
    pub given: bool,
    /// The summary line: `task: classification (inferred: …)`.
    pub summary: String,
    /// Set when an inferred regression's numbers look like classes.
    pub warning: Option<String>,
}

// ------------------------------------------------------------------ profile model

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
    /// Layout version ([`PROFILE_VERSION`]).
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

// ------------------------------------------------------------------ accumulators

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
struct NumericAcc {
    n: u64,
    mean: f64,
    m2: f64,
    min: f64,
    max: f64,
    hist: Vec<u64>,
    chunk: Vec<f64>,
}

impl NumericAcc {
    fn new() -> Self {
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

    fn add(&mut self, a: &Float64Array) {
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

    fn finish(&mut self, name: &str, rows: u64, bins: usize) -> ColumnProfile {
        self.flush();
        // `quantile_cuts` takes the sketch's u32 counts; scale down only past u32::MAX rows.
        let max = self.hist.iter().copied().max().unwrap_or(0);
        let scale = if max > u64::from(u32::MAX) { max as f64 / f64::from(u32::MAX) } else { 1.0 };
        let fine: FxHashMap<i16, u32> = self
            .hist
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| {
                let c = if scale > 1.0 { ((c as f64 / scale).ceil() as u32).max(1) } else { c as u32 };
                ((i as i32 - FINE_OFFSET) as i16, c)
            })
            .collect();
        let cuts = quantile_cuts(&fine, bins);
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
struct CategoricalAcc {
    counts: FxHashMap<Box<str>, u64>,
    /// Values seen (not null).
    n: u64,
    /// True once the summary had to forget categories.
    approximate: bool,
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

    fn add_array(&mut self, a: &dyn Array) {
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

    fn finish(&self, name: &str, rows: u64, top_k: usize) -> ColumnProfile {
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

#[derive(Debug, Clone)]
enum Acc {
    Numeric(NumericAcc),
    Categorical(CategoricalAcc),
}

/// How the type of a column is treated.
fn kind_of(dt: &DataType) -> Option<ColumnKind> {
    use DataType::*;
    match dt {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32 | Float64
        | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => Some(ColumnKind::Numeric),
        Utf8 | LargeUtf8 | Utf8View | Boolean => Some(ColumnKind::Categorical),
        Dictionary(_, v) => kind_of(v),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Feature,
    Prediction,
    Label,
}

#[derive(Debug)]
struct ColumnPlan {
    /// Index in the file's schema.
    index: usize,
    name: String,
    role: Role,
    kind: ColumnKind,
    /// Type in the file.
    data_type: DataType,
    acc: Acc,
    /// An inferred numeric `prediction` or `label`: whether its values look like classes.
    whole: Option<WholeNumbers>,
}

/// The distinct values of an inferred numeric `prediction` or `label`, while they are at most
/// [`SUSPECTED_CLASSES`] whole numbers: classes written as numbers look like this.
#[derive(Debug, Clone, Default)]
struct WholeNumbers {
    /// Distinct values, ascending.
    values: Vec<f64>,
    /// A fraction, or more distinct values, was seen.
    ruled_out: bool,
}

impl WholeNumbers {
    fn add(&mut self, a: &Float64Array) {
        if self.ruled_out {
            return;
        }
        for x in a.iter().flatten().filter(|x| x.is_finite()) {
            if x.fract() != 0.0 {
                self.ruled_out = true;
                return;
            }
            // -0 is 0.
            let x = x + 0.0;
            if let Err(at) = self.values.binary_search_by(|v| v.total_cmp(&x)) {
                if self.values.len() == SUSPECTED_CLASSES {
                    self.ruled_out = true;
                    return;
                }
                self.values.insert(at, x);
            }
        }
    }

    /// The values, when there are some and they are few whole numbers.
    fn suspected(&self) -> Option<&[f64]> {
        (!self.ruled_out && !self.values.is_empty()).then_some(self.values.as_slice())
    }
}

/// Options of [`build_profile`].
#[derive(Debug, Clone)]
pub struct BaselineOptions {
    /// Training data.
    pub input: PathBuf,
    /// Model the profile is for.
    pub model: Option<String>,
    /// Model version the profile is for.
    pub version: Option<String>,
    /// Quantile bins of numeric columns.
    pub bins: usize,
    /// Categories kept per categorical column; the rest are "other".
    pub top_k: usize,
    /// Columns to leave out (ids, timestamps the model does not see).
    pub exclude: Vec<String>,
    /// What `prediction` and `label` are; inferred from their column types when `None`.
    pub task: Option<Task>,
    /// Show progress on stderr.
    pub progress: bool,
}

impl BaselineOptions {
    /// Defaults for `input`: the engine's default bins and category bound.
    pub fn new(input: impl Into<PathBuf>) -> Self {
        let d = crate::config::DriftConfig::default();
        BaselineOptions {
            input: input.into(),
            model: None,
            version: None,
            bins: d.bins,
            top_k: d.max_reference_categories,
            exclude: Vec::new(),
            task: None,
            progress: false,
        }
    }
}

/// Numbers of a [`build_profile`] run, for the summary.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildStats {
    /// Rows read.
    pub rows: u64,
    /// Bytes of the input file.
    pub bytes: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The task used, and how it was decided.
    pub task: TaskChoice,
}

/// The per-column state of one profiling run.
#[derive(Debug)]
struct Profiler {
    path: String,
    plans: Vec<ColumnPlan>,
    skipped: Vec<String>,
    rows: u64,
    labelled: u64,
    correct: u64,
    abs_error: f64,
    /// Positions in `plans` of the prediction and the label.
    prediction: Option<usize>,
    label: Option<usize>,
    /// `--task`, when given.
    task: Option<Task>,
}

impl Profiler {
    /// Decides what to do with each column of `schema`; `task` decides how `prediction` and
    /// `label` are read (their column types do, when it is `None`).
    fn new(path: &str, schema: &Schema, exclude: &[String], task: Option<Task>) -> Result<Self, ProfileError> {
        let mut plans = Vec::new();
        let mut skipped = Vec::new();
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (index, field) in schema.fields().iter().enumerate() {
            let name = field.name().as_str();
            if exclude.iter().any(|e| e == name) {
                continue;
            }
            if let Some(&first) = seen.get(name) {
                return Err(ProfileError::Column {
                    path: path.to_owned(),
                    column: name.to_owned(),
                    message: format!(
                        "appears twice (columns {} and {}); column names must be unique",
                        first + 1,
                        index + 1
                    ),
                });
            }
            seen.insert(name, index);
            let role = match name {
                PREDICTION => Role::Prediction,
                LABEL => Role::Label,
                _ => Role::Feature,
            };
            let dt = field.data_type();
            let Some(typed) = kind_of(dt) else {
                if role != Role::Feature {
                    return Err(ProfileError::Column {
                        path: path.to_owned(),
                        column: name.to_owned(),
                        message: format!("has type {dt}; `{name}` must hold numbers, strings or booleans"),
                    });
                }
                let why = if *dt == DataType::Null { "no values".to_owned() } else { format!("unsupported type {dt}") };
                skipped.push(format!("{name}: {why}"));
                continue;
            };
            let kind = match (role, task) {
                (Role::Feature, _) | (_, None) => typed,
                (_, Some(Task::Classification)) => ColumnKind::Categorical,
                (_, Some(Task::Regression)) => ColumnKind::Numeric,
            };
            let acc = match kind {
                ColumnKind::Numeric => Acc::Numeric(NumericAcc::new()),
                ColumnKind::Categorical => Acc::Categorical(CategoricalAcc::default()),
            };
            let whole =
                (role != Role::Feature && task.is_none() && kind == ColumnKind::Numeric).then(WholeNumbers::default);
            plans.push(ColumnPlan { index, name: name.to_owned(), role, kind, data_type: dt.clone(), acc, whole });
        }
        if !plans.iter().any(|p| p.role == Role::Feature) {
            let message = if skipped.is_empty() {
                "the file has only `prediction`/`label` columns, or none".to_owned()
            } else {
                format!("skipped: {}", skipped.join(", "))
            };
            return Err(ProfileError::NoFeatures { path: path.to_owned(), message });
        }
        let prediction = plans.iter().position(|p| p.role == Role::Prediction);
        let label = plans.iter().position(|p| p.role == Role::Label);
        if let (Some(p), Some(l)) = (prediction, label) {
            if plans[p].kind != plans[l].kind {
                return Err(ProfileError::Column {
                    path: path.to_owned(),
                    column: LABEL.to_owned(),
                    message: format!(
                        "is {} ({}) but `prediction` is {} ({}); both must be numbers (MAE) or both classes (accuracy): pass --task classification or --task regression to read both alike",
                        plans[l].kind.as_str(),
                        plans[l].data_type,
                        plans[p].kind.as_str(),
                        plans[p].data_type,
                    ),
                });
            }
        }
        Ok(Profiler {
            path: path.to_owned(),
            plans,
            skipped,
            rows: 0,
            labelled: 0,
            correct: 0,
            abs_error: 0.0,
            prediction,
            label,
            task,
        })
    }

    /// Schema indices of the columns to read, ascending (batches come back in this order).
    fn projection(&self) -> Vec<usize> {
        self.plans.iter().map(|p| p.index).collect()
    }

    /// Adds one batch holding the projected columns, in projection order.
    fn add(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
        if batch.num_columns() != self.plans.len() {
            return Err(ProfileError::Corrupt {
                path: self.path.clone(),
                format: "input",
                message: format!("a batch has {} columns, expected {}", batch.num_columns(), self.plans.len()),
            });
        }
        let rows_before = self.rows;
        self.rows += batch.num_rows() as u64;
        let mut floats: Vec<Option<ArrayRef>> = vec![None; self.plans.len()];
        let mut classes: Vec<Option<StringArray>> = vec![None; self.plans.len()];
        let path = &self.path;
        for (((plan, col), float), class) in
            self.plans.iter_mut().zip(batch.columns()).zip(&mut floats).zip(&mut classes)
        {
            let column_error =
                |message: String| ProfileError::Column { path: path.clone(), column: plan.name.clone(), message };
            match &mut plan.acc {
                Acc::Numeric(a) => {
                    let f = if *col.data_type() == DataType::Float64 {
                        col.clone()
                    } else if kind_of(col.data_type()) == Some(ColumnKind::Numeric) {
                        arrow::compute::cast(col, &DataType::Float64).map_err(|e| column_error(e.to_string()))?
                    } else {
                        // `prediction` or `label` of `--task regression`, not typed as numbers.
                        regression_numbers(col, rows_before).map_err(column_error)?
                    };
                    let values = f.as_primitive::<Float64Type>();
                    a.add(values);
                    if let Some(w) = &mut plan.whole {
                        w.add(values);
                    }
                    *float = Some(f);
                }
                Acc::Categorical(a) => {
                    if plan.role != Role::Feature {
                        let names = class_names(col).map_err(|e| column_error(e.to_string()))?;
                        a.add_array(&names);
                        *class = Some(names);
                    } else if matches!(col.data_type(), DataType::Dictionary(..)) {
                        let s = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| column_error(e.to_string()))?;
                        a.add_array(s.as_ref());
                    } else {
                        a.add_array(col.as_ref());
                    }
                }
            }
        }
        if let (Some(p), Some(l)) = (self.prediction, self.label) {
            if let (Some(pa), Some(la)) = (&floats[p], &floats[l]) {
                let (pa, la) = (pa.as_primitive::<Float64Type>(), la.as_primitive::<Float64Type>());
                for (pv, lv) in pa.iter().zip(la.iter()) {
                    if let (Some(pv), Some(lv)) = (pv, lv) {
                        if pv.is_finite() && lv.is_finite() {
                            self.labelled += 1;
                            self.abs_error += (pv - lv).abs();
                        }
                    }
                }
            }
            if let (Some(pa), Some(la)) = (&classes[p], &classes[l]) {
                for (pv, lv) in pa.iter().zip(la) {
                    if let (Some(pv), Some(lv)) = (pv, lv) {
                        self.labelled += 1;
                        self.correct += u64::from(pv == lv);
                    }
                }
            }
        }
        Ok(())
    }

    /// The task used, how it was decided, and a warning when inferred numbers look like classes.
    fn task_choice(&self) -> TaskChoice {
        let outputs: Vec<&ColumnPlan> =
            [self.prediction, self.label].into_iter().flatten().map(|i| &self.plans[i]).collect();
        let Some(first) = outputs.first() else {
            let summary = match self.task {
                Some(t) => format!(
                    "task: none (--task {} was given, but the file has no `prediction` or `label` column)",
                    t.as_str()
                ),
                None => "task: none (no `prediction` or `label` column)".to_owned(),
            };
            return TaskChoice { task: None, given: self.task.is_some(), summary, warning: None };
        };
        if let Some(t) = self.task {
            return TaskChoice {
                task: Some(t),
                given: true,
                summary: format!("task: {} (given with --task)", t.as_str()),
                warning: None,
            };
        }
        match &first.acc {
            Acc::Numeric(_) => {
                let names: Vec<String> = outputs.iter().map(|p| format!("`{}`", p.name)).collect();
                let verb = if names.len() == 1 { "holds" } else { "hold" };
                let mut suspects = Vec::new();
                for p in &outputs {
                    if let Some(values) = p.whole.as_ref().and_then(WholeNumbers::suspected) {
                        let listed = list_values(values.iter().filter_map(|&x| class_of_number(x)));
                        suspects.push(if suspects.is_empty() {
                            format!("`{}` holds only {} distinct whole numbers ({listed})", p.name, values.len())
                        } else {
                            format!("`{}` only {} ({listed})", p.name, values.len())
                        });
                    }
                }
                let warning = (!suspects.is_empty()).then(|| {
                    format!(
                        "{}: if these are classes, pass --task classification (read as numbers, `prediction` gets numeric bins and the profile an MAE, not an accuracy)",
                        suspects.join(", ")
                    )
                });
                TaskChoice {
                    task: Some(Task::Regression),
                    given: false,
                    summary: format!("task: regression (inferred: {} {verb} numbers)", names.join(" and ")),
                    warning,
                }
            }
            Acc::Categorical(acc) => {
                let what = if first.data_type == DataType::Boolean {
                    format!("`{}` holds booleans", first.name)
                } else {
                    let mut counts: Vec<(&str, u64)> = acc.counts.iter().map(|(k, &c)| (&**k, c)).collect();
                    counts.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
                    let distinct =
                        if acc.approximate { format!("more than {MAX_DISTINCT}") } else { counts.len().to_string() };
                    format!(
                        "`{}` holds text, {distinct} distinct values ({}) — pass --task regression if these are numbers",
                        first.name,
                        list_values(counts.iter().map(|(k, _)| format!("{k:?}")))
                    )
                };
                TaskChoice {
                    task: Some(Task::Classification),
                    given: false,
                    summary: format!("task: classification (inferred: {what})"),
                    warning: None,
                }
            }
        }
    }

    fn finish(mut self, opts: &BaselineOptions, sha256: String) -> Result<(Profile, TaskChoice), ProfileError> {
        if self.rows == 0 {
            return Err(ProfileError::NoRows { path: self.path });
        }
        let choice = self.task_choice();
        let mut features = Vec::new();
        let mut prediction = None;
        for plan in &mut self.plans {
            let c = match &mut plan.acc {
                Acc::Numeric(a) => a.finish(&plan.name, self.rows, opts.bins),
                Acc::Categorical(a) => a.finish(&plan.name, self.rows, opts.top_k),
            };
            match plan.role {
                Role::Feature => features.push(c),
                Role::Prediction => prediction = Some(c),
                Role::Label => {}
            }
        }
        let classes = self.prediction.is_some_and(|p| self.plans[p].kind == ColumnKind::Categorical);
        let labelled = self.labelled;
        let source_file =
            opts.input.file_name().map_or_else(|| self.path.clone(), |n| n.to_string_lossy().into_owned());
        let now_ms = crate::clock::wall_ms();
        let profile = Profile {
            meta: ProfileMeta {
                driftwatch_version: env!("CARGO_PKG_VERSION").to_owned(),
                profile_version: PROFILE_VERSION,
                source_file,
                source_sha256: sha256,
                created_at: format_rfc3339(now_ms),
                rows: self.rows,
                model: opts.model.clone(),
                version: opts.version.clone(),
                labelled,
                correct: (classes && labelled > 0).then_some(self.correct),
                accuracy: (classes && labelled > 0).then(|| self.correct as f64 / labelled as f64),
                mae: (!classes && labelled > 0).then(|| self.abs_error / labelled as f64),
                skipped_columns: self.skipped,
                task: choice.task,
                task_given: choice.given && choice.task.is_some(),
            },
            features,
            prediction,
        };
        Ok((profile, choice))
    }
}

/// Up to six values, for a message: `0 and 1`, `"a", "b", "c"`, `1, 2, 3, 4, 5, 6, …`.
fn list_values(values: impl Iterator<Item = String>) -> String {
    const SHOWN: usize = 6;
    let mut v: Vec<String> = values.take(SHOWN + 1).collect();
    if v.len() > SHOWN {
        v.truncate(SHOWN);
        v.push("…".to_owned());
    }
    match v.as_slice() {
        [a, b] => format!("{a} and {b}"),
        _ => v.join(", "),
    }
}

/// A `prediction` or `label` column read as classes: text as it is, booleans as
/// `"true"`/`"false"` (as events send them), numbers as [`class_of_number`].
fn class_names(col: &ArrayRef) -> Result<StringArray, ArrowError> {
    use DataType::*;
    let text = match col.data_type() {
        Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 => arrow::compute::cast(col, &Utf8)?,
        dt if kind_of(dt) == Some(ColumnKind::Numeric) => {
            let f = arrow::compute::cast(col, &Float64)?;
            let names: StringArray =
                f.as_primitive::<Float64Type>().iter().map(|x| x.and_then(class_of_number)).collect();
            Arc::new(names)
        }
        _ => arrow::compute::cast(col, &Utf8)?,
    };
    text.as_string_opt::<i32>()
        .cloned()
        .ok_or_else(|| ArrowError::CastError(format!("{} did not become text", col.data_type())))
}

/// A `prediction` or `label` column of `--task regression` whose type is not a number type,
/// read as numbers: text that parses as a number is one; any other value is an error naming
/// its row (`rows_before` rows came before this batch).
fn regression_numbers(col: &ArrayRef, rows_before: u64) -> Result<ArrayRef, String> {
    let not_a_number = |i: usize, shown: String| {
        format!(
            "row {} holds {shown}, not a number; --task regression needs numbers in `prediction` and `label` (pass --task classification if they are classes)",
            rows_before + i as u64 + 1
        )
    };
    if *col.data_type() == DataType::Boolean {
        let b = col.as_boolean();
        return match (0..b.len()).find(|&i| b.is_valid(i)) {
            Some(i) => Err(not_a_number(i, format!("the boolean {}", b.value(i)))),
            None => Ok(Arc::new(Float64Array::new_null(b.len()))),
        };
    }
    let text = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
    let text = text.as_string_opt::<i32>().ok_or_else(|| format!("{} did not become text", col.data_type()))?;
    let mut numbers = Float64Builder::with_capacity(text.len());
    for (i, v) in text.iter().enumerate() {
        match v.map(|s| (s, s.trim().parse::<f64>())) {
            None => numbers.append_null(),
            Some((_, Ok(x))) => numbers.append_value(x),
            Some((s, Err(_))) => {
                let shown: String = s.chars().take(40).collect();
                let more = if shown.len() < s.len() { "…" } else { "" };
                return Err(not_a_number(i, format!("{shown:?}{more}")));
            }
        }
    }
    Ok(Arc::new(numbers.finish()))
}

// ------------------------------------------------------------------ readers

/// Input formats, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `.parquet`, `.pq`.
    Parquet,
    /// `.arrow`, `.ipc`, `.feather`: the IPC file format, or the stream format.
    ArrowIpc,
    /// `.csv`, with a header line.
    Csv,
    /// `.jsonl`, `.ndjson`, `.json`: one object per line.
    JsonLines,
}

impl InputFormat {
    /// The format of `path`, from its extension.
    pub fn of(path: &Path) -> Result<Self, ProfileError> {
        let ext = path.extension().map(|e| e.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "parquet" | "pq" => Ok(InputFormat::Parquet),
            "arrow" | "ipc" | "feather" | "arrows" => Ok(InputFormat::ArrowIpc),
            "csv" => Ok(InputFormat::Csv),
            "jsonl" | "ndjson" | "json" => Ok(InputFormat::JsonLines),
            _ => Err(ProfileError::UnknownFormat { path: show_path(path) }),
        }
    }

    /// Human name.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Parquet => "Parquet",
            InputFormat::ArrowIpc => "Arrow IPC",
            InputFormat::Csv => "CSV",
            InputFormat::JsonLines => "JSON Lines",
        }
    }
}

/// A `Read` that counts the bytes it returned, for progress.
#[derive(Debug)]
struct CountingReader<R> {
    inner: R,
    read: Arc<AtomicU64>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// A [`CountingReader`] over a file that can also seek (the IPC file format reads its footer
/// first, so its byte count is only a rough progress measure).
#[derive(Debug)]
struct SeekableCounting(CountingReader<File>);

impl Read for SeekableCounting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Seek for SeekableCounting {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.inner.seek(pos)
    }
}

/// How far a reader has come, for progress.
#[derive(Debug, Clone)]
enum Extent {
    /// Rows out of a known total.
    Rows(u64),
    /// Bytes read out of the file size.
    Bytes(Arc<AtomicU64>, u64),
}

type Batches = Box<dyn Iterator<Item = Result<RecordBatch, ArrowError>>>;
/// Opens a source for reading the given columns (schema indices, ascending).
type OpenProjected = Box<dyn FnOnce(Vec<usize>) -> Result<(Batches, Extent), ArrowError>>;

/// Rewrites "column N" in arrow-csv messages to name the column.
fn name_csv_column(message: &str, schema: &Schema) -> String {
    let Some(at) = message.find("for column ") else {
        return message.to_owned();
    };
    let rest = &message[at + "for column ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    match digits.parse::<usize>().ok().and_then(|i| schema.fields().get(i)) {
        Some(f) => {
            format!("{} (`{}`){}", &message[..at + "for column ".len() + digits.len()], f.name(), &rest[digits.len()..])
        }
        None => message.to_owned(),
    }
}

/// Integers become floats (every number is profiled as f64), so that a later `1.5` in a column
/// inferred from `1, 2, 3` still parses.
fn widen_inferred(schema: Schema) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Int64 => f.as_ref().clone().with_data_type(DataType::Float64),
            _ => f.as_ref().clone(),
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// An open training file: its schema, and a way to read the projected columns.
struct Source {
    format: InputFormat,
    schema: SchemaRef,
    open: OpenProjected,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source").field("format", &self.format).field("schema", &self.schema).finish_non_exhaustive()
    }
}

fn open_source(path: &Path, size: u64) -> Result<Source, ProfileError> {
    let format = InputFormat::of(path)?;
    let p = show_path(path);
    let io_err = |cause: io::Error| ProfileError::Io { path: p.clone(), cause };
    let corrupt = |e: &dyn std::fmt::Display| ProfileError::Corrupt {
        path: p.clone(),
        format: format.name(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(io_err)?;
    match format {
        InputFormat::Parquet => {
            use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
            use parquet::arrow::ProjectionMask;
            let builder =
                ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| corrupt(&e))?.with_batch_size(BATCH_ROWS);
            let schema = builder.schema().clone();
            let rows = u64::try_from(builder.metadata().file_metadata().num_rows()).unwrap_or(0);
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    let mask = ProjectionMask::roots(builder.parquet_schema(), projection);
                    let reader =
                        builder.with_projection(mask).build().map_err(|e| ArrowError::ExternalError(Box::new(e)))?;
                    Ok((Box::new(reader) as Batches, Extent::Rows(rows)))
                }),
            })
        }
        InputFormat::ArrowIpc => {
            use arrow::ipc::reader::{FileReader, StreamReader};
            let mut file = file;
            let mut magic = [0u8; 6];
            let n = file.read(&mut magic).map_err(io_err)?;
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let is_file = n == 6 && &magic == b"ARROW1";
            let schema = if is_file {
                FileReader::try_new_buffered(file, None).map_err(|e| corrupt(&e))?.schema()
            } else {
                StreamReader::try_new_buffered(file, None).map_err(|e| corrupt(&e))?.schema()
            };
            let path = path.to_owned();
            Ok(Source {
                format,
                schema,
                // Reopened with the projection, so unused columns are never decoded.
                open: Box::new(move |projection| {
                    let read = Arc::new(AtomicU64::new(0));
                    let counting = CountingReader { inner: File::open(&path)?, read: read.clone() };
                    let batches: Batches = if is_file {
                        Box::new(FileReader::try_new_buffered(SeekableCounting(counting), Some(projection))?)
                    } else {
                        Box::new(StreamReader::try_new_buffered(counting, Some(projection))?)
                    };
                    Ok((batches, Extent::Bytes(read, size)))
                }),
            })
        }
        InputFormat::Csv => {
            use arrow::csv::reader::Format;
            let fmt = Format::default().with_header(true);
            let mut buf = BufReader::new(file);
            let (schema, records) = fmt.infer_schema(&mut buf, Some(INFER_RECORDS)).map_err(|e| corrupt(&e))?;
            if records == 0 {
                return Err(ProfileError::NoRows { path: p });
            }
            let schema = Arc::new(widen_inferred(schema));
            let mut file = buf.into_inner();
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let read = Arc::new(AtomicU64::new(0));
            let s2 = schema.clone();
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    let counting = CountingReader { inner: file, read: read.clone() };
                    let reader = arrow::csv::ReaderBuilder::new(s2.clone())
                        .with_header(true)
                        .with_batch_size(BATCH_ROWS)
                        .with_projection(projection)
                        .build(counting)?;
                    let batches = reader.map(move |b| {
                        b.map_err(|e| match e {
                            ArrowError::ParseError(m) => ArrowError::ParseError(name_csv_column(&m, &s2)),
                            ArrowError::CsvError(m) => ArrowError::CsvError(name_csv_column(&m, &s2)),
                            other => other,
                        })
                    });
                    Ok((Box::new(batches) as Batches, Extent::Bytes(read, size)))
                }),
            })
        }
        InputFormat::JsonLines => {
            let mut buf = BufReader::new(file);
            let first = buf.fill_buf().map_err(io_err)?;
            if first.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|&b| b == b'[') {
                return Err(corrupt(&"the file holds a JSON array; profiles read JSON Lines (one object per line)"));
            }
            let (schema, records) =
                arrow::json::reader::infer_json_schema(&mut buf, Some(INFER_RECORDS)).map_err(|e| corrupt(&e))?;
            if records == 0 {
                return Err(ProfileError::NoRows { path: p });
            }
            let schema = Arc::new(widen_inferred(schema));
            let mut file = buf.into_inner();
            file.seek(SeekFrom::Start(0)).map_err(io_err)?;
            let read = Arc::new(AtomicU64::new(0));
            let full = schema.clone();
            Ok(Source {
                format,
                schema,
                open: Box::new(move |projection| {
                    // Only the projected fields: other keys are ignored, never decoded.
                    let projected = Arc::new(full.project(&projection)?);
                    let counting = CountingReader { inner: file, read: read.clone() };
                    let reader = arrow::json::ReaderBuilder::new(projected)
                        .with_batch_size(BATCH_ROWS)
                        .with_coerce_primitive(true)
                        .build(BufReader::with_capacity(1 << 16, counting))?;
                    Ok((Box::new(reader) as Batches, Extent::Bytes(read, size)))
                }),
            })
        }
    }
}

/// SHA-256 of a file, hex.
fn sha256_file(path: &Path) -> io::Result<String> {
    let mut f = File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}

/// Throttled progress line on stderr.
#[derive(Debug)]
struct Progress {
    enabled: bool,
    last: Instant,
    shown: bool,
}

impl Progress {
    fn tick(&mut self, rows: u64, extent: &Extent) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let frac = match extent {
            Extent::Rows(total) => (*total > 0).then(|| rows as f64 / *total as f64),
            Extent::Bytes(read, size) => (*size > 0).then(|| read.load(Ordering::Relaxed) as f64 / *size as f64),
        };
        match frac {
            Some(f) => eprint!("\rbaseline: {rows} rows ({:.0}%)   ", (f * 100.0).min(100.0)),
            None => eprint!("\rbaseline: {rows} rows   "),
        }
        self.shown = true;
    }

    fn done(&self) {
        if self.shown {
            eprint!("\r{:60}\r", "");
        }
    }
}

/// Profiles a training file, streaming it batch by batch.
pub fn build_profile(opts: &BaselineOptions) -> Result<(Profile, BuildStats), ProfileError> {
    let started = Instant::now();
    let path = opts.input.as_path();
    let p = show_path(path);
    if opts.bins < 2 {
        return Err(ProfileError::Usage(format!("--bins must be at least 2 (got {})", opts.bins)));
    }
    if opts.top_k == 0 {
        return Err(ProfileError::Usage("--top-k must be at least 1".into()));
    }
    InputFormat::of(path)?;
    let size = std::fs::metadata(path).map_err(|cause| ProfileError::Io { path: p.clone(), cause })?.len();
    if size == 0 {
        return Err(ProfileError::EmptyFile { path: p });
    }
    let source = open_source(path, size)?;
    let format = source.format;
    let mut profiler = Profiler::new(&p, &source.schema, &opts.exclude, opts.task)?;
    // The hash needs its own pass over the bytes; it runs beside the profiling.
    let hash_path = path.to_owned();
    let hasher = std::thread::spawn(move || sha256_file(&hash_path));
    let (batches, extent) = (source.open)(profiler.projection()).map_err(|e| ProfileError::Corrupt {
        path: p.clone(),
        format: format.name(),
        message: e.to_string(),
    })?;
    let mut progress = Progress { enabled: opts.progress, last: Instant::now(), shown: false };
    for batch in batches {
        let batch = batch.map_err(|e| ProfileError::Corrupt {
            path: p.clone(),
            format: format.name(),
            message: e.to_string(),
        })?;
        profiler.add(&batch)?;
        progress.tick(profiler.rows, &extent);
    }
    progress.done();
    let sha = hasher
        .join()
        .map_err(|_| ProfileError::Io { path: p.clone(), cause: io::Error::other("the hashing thread panicked") })?
        .map_err(|cause| ProfileError::Io { path: p.clone(), cause })?;
    let rows = profiler.rows;
    let (profile, task) = profiler.finish(opts, sha)?;
    Ok((profile, BuildStats { rows, bytes: size, elapsed: started.elapsed(), task }))
}

// ------------------------------------------------------------------ profile file

fn profile_schema(meta: &ProfileMeta) -> Schema {
    let list = |name: &str, item: DataType| Field::new_list(name, Field::new_list_field(item, true), false);
    let fields = vec![
        Field::new("name", DataType::Utf8, false),
        Field::new("role", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("count", DataType::UInt64, false),
        Field::new("missing", DataType::UInt64, false),
        Field::new("mean", DataType::Float64, true),
        Field::new("std", DataType::Float64, true),
        Field::new("min", DataType::Float64, true),
        Field::new("max", DataType::Float64, true),
        list("bin_edges", DataType::Float64),
        list("bin_freqs", DataType::Float64),
        list("categories", DataType::Utf8),
    ];
    let mut md = HashMap::new();
    let mut put = |k: &str, v: String| {
        md.insert(k.to_owned(), v);
    };
    put("driftwatch.version", meta.driftwatch_version.clone());
    put("driftwatch.profile_version", meta.profile_version.to_string());
    put("source.file", meta.source_file.clone());
    put("source.sha256", meta.source_sha256.clone());
    put("created_at", meta.created_at.clone());
    put("rows", meta.rows.to_string());
    put("labelled", meta.labelled.to_string());
    if let Some(m) = &meta.model {
        put("model", m.clone());
    }
    if let Some(v) = &meta.version {
        put("version", v.clone());
    }
    if let Some(c) = meta.correct {
        put("correct", c.to_string());
    }
    // `{:?}` of an f64 is the shortest text that parses back to the same value.
    if let Some(a) = meta.accuracy {
        put("accuracy", format!("{a:?}"));
    }
    if let Some(m) = meta.mae {
        put("mae", format!("{m:?}"));
    }
    if let Some(t) = meta.task {
        put("task", t.as_str().to_owned());
        put("task.source", if meta.task_given { "given" } else { "inferred" }.to_owned());
    }
    if !meta.skipped_columns.is_empty() {
        put("skipped_columns", serde_json::to_string(&meta.skipped_columns).unwrap_or_default());
    }
    Schema::new_with_metadata(fields, md)
}

/// Writes `profile` to `path` as an Arrow IPC file (layout: `schemas/profile.md`).
pub fn write_profile(path: &Path, profile: &Profile) -> Result<(), ProfileError> {
    let p = show_path(path);
    let werr = |e: &dyn std::fmt::Display| ProfileError::Write { path: p.clone(), message: e.to_string() };
    let schema = Arc::new(profile_schema(&profile.meta));
    let rows: Vec<(&ColumnProfile, &str)> = profile
        .features
        .iter()
        .map(|c| (c, "feature"))
        .chain(profile.prediction.iter().map(|c| (c, "prediction")))
        .collect();
    let strs = |f: &dyn Fn(&(&ColumnProfile, &str)) -> String| {
        Arc::new(StringArray::from_iter_values(rows.iter().map(f))) as ArrayRef
    };
    let u64s = |f: &dyn Fn(&ColumnProfile) -> u64| {
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| f(r.0)))) as ArrayRef
    };
    let f64s = |f: &dyn Fn(&ColumnProfile) -> Option<f64>| {
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| f(r.0)))) as ArrayRef
    };
    let f64_lists = |f: &dyn Fn(&ColumnProfile) -> &[f64]| {
        let mut b = ListBuilder::new(Float64Builder::new());
        for r in &rows {
            b.values().append_slice(f(r.0));
            b.append(true);
        }
        Arc::new(b.finish()) as ArrayRef
    };
    let mut cats = ListBuilder::new(StringBuilder::new());
    for r in &rows {
        for c in &r.0.categories {
            cats.values().append_value(c);
        }
        cats.append(true);
    }
    let columns = vec![
        strs(&|r| r.0.name.clone()),
        strs(&|r| r.1.to_owned()),
        strs(&|r| r.0.kind.as_str().to_owned()),
        u64s(&|c| c.count),
        u64s(&|c| c.missing),
        f64s(&|c| c.mean),
        f64s(&|c| c.std),
        f64s(&|c| c.min),
        f64s(&|c| c.max),
        f64_lists(&|c| &c.bin_edges),
        f64_lists(&|c| &c.bin_freqs),
        Arc::new(cats.finish()) as ArrayRef,
    ];
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| werr(&e))?;
    // Write beside the target and rename, so a reader never sees half a profile.
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let written = (|| {
        let file = File::create(&tmp).map_err(|e| werr(&e))?;
        let mut w = arrow::ipc::writer::FileWriter::try_new_buffered(file, &schema).map_err(|e| werr(&e))?;
        w.write(&batch).map_err(|e| werr(&e))?;
        w.finish().map_err(|e| werr(&e))?;
        let file = w.into_inner().map_err(|e| werr(&e))?;
        let file = file.into_inner().map_err(|e| werr(e.error()))?;
        file.sync_all().map_err(|e| werr(&e))?;
        std::fs::rename(&tmp, path).map_err(|e| werr(&e))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Reads a profile written by [`write_profile`].
pub fn read_profile(path: &Path) -> Result<Profile, ProfileError> {
    let p = show_path(path);
    let invalid = |message: String| ProfileError::InvalidProfile { path: p.clone(), message };
    let file = File::open(path).map_err(|cause| ProfileError::Io { path: p.clone(), cause })?;
    if file.metadata().map(|m| m.len()).unwrap_or(0) == 0 {
        return Err(ProfileError::EmptyFile { path: p });
    }
    let reader = arrow::ipc::reader::FileReader::try_new_buffered(file, None)
        .map_err(|e| invalid(format!("not an Arrow IPC file ({e})")))?;
    let schema = reader.schema();
    let md = schema.metadata();
    let get = |k: &str| md.get(k).cloned();
    let need = |k: &str| get(k).ok_or_else(|| invalid(format!("metadata `{k}` is missing")));
    let num =
        |k: &str, v: &str| v.parse::<u64>().map_err(|_| invalid(format!("metadata `{k}` = `{v}` is not a count")));
    let float = |k: &str| {
        get(k)
            .map(|v| v.parse::<f64>().map_err(|_| invalid(format!("metadata `{k}` = `{v}` is not a number"))))
            .transpose()
    };
    let version = need("driftwatch.profile_version")?;
    let version = u32::try_from(num("driftwatch.profile_version", &version)?).unwrap_or(0);
    if version != PROFILE_VERSION {
        return Err(invalid(format!(
            "profile layout version {version}; this driftwatch reads version {PROFILE_VERSION} (rebuild it with `driftwatch baseline`)"
        )));
    }
    let skipped_columns = match get("skipped_columns") {
        Some(s) => {
            serde_json::from_str(&s).map_err(|_| invalid("metadata `skipped_columns` is not a JSON list".into()))?
        }
        None => Vec::new(),
    };
    let task = get("task")
        .map(|t| {
            Task::parse(&t).map_err(|_| invalid(format!("metadata `task` = `{t}` is not classification or regression")))
        })
        .transpose()?;
    let task_given = match get("task.source").as_deref() {
        None | Some("inferred") => false,
        Some("given") => true,
        Some(other) => return Err(invalid(format!("metadata `task.source` = `{other}` is not given or inferred"))),
    };
    let meta = ProfileMeta {
        driftwatch_version: need("driftwatch.version")?,
        profile_version: version,
        source_file: need("source.file")?,
        source_sha256: need("source.sha256")?,
        created_at: need("created_at")?,
        rows: num("rows", &need("rows")?)?,
        model: get("model"),
        version: get("version"),
        labelled: get("labelled").map_or(Ok(0), |v| num("labelled", &v))?,
        correct: get("correct").map(|v| num("correct", &v)).transpose()?,
        accuracy: float("accuracy")?,
        mae: float("mae")?,
        skipped_columns,
        task,
        task_given,
    };
    let mut features = Vec::new();
    let mut prediction = None;
    for batch in reader {
        let batch = batch.map_err(|e| invalid(e.to_string()))?;
        let col = |name: &str| {
            batch.column_by_name(name).cloned().ok_or_else(|| invalid(format!("column `{name}` is missing")))
        };
        let mistyped = |name: &str, want: &str| invalid(format!("column `{name}` is not {want}"));
        let strs = |name: &str| -> Result<StringArray, ProfileError> {
            col(name)?.as_string_opt::<i32>().cloned().ok_or_else(|| mistyped(name, "Utf8"))
        };
        let u64s = |name: &str| -> Result<UInt64Array, ProfileError> {
            col(name)?
                .as_primitive_opt::<arrow::datatypes::UInt64Type>()
                .cloned()
                .ok_or_else(|| mistyped(name, "UInt64"))
        };
        let f64s = |name: &str| -> Result<Float64Array, ProfileError> {
            col(name)?.as_primitive_opt::<Float64Type>().cloned().ok_or_else(|| mistyped(name, "Float64"))
        };
        let lists = |name: &str| -> Result<ListArray, ProfileError> {
            col(name)?.as_list_opt::<i32>().cloned().ok_or_else(|| mistyped(name, "a List"))
        };
        let (names, roles, kinds) = (strs("name")?, strs("role")?, strs("kind")?);
        let (counts, missing) = (u64s("count")?, u64s("missing")?);
        let (mean, std, min, max) = (f64s("mean")?, f64s("std")?, f64s("min")?, f64s("max")?);
        let (edges, freqs, cats) = (lists("bin_edges")?, lists("bin_freqs")?, lists("categories")?);
        let float_list = |l: &ListArray, name: &str, i: usize| -> Result<Vec<f64>, ProfileError> {
            let v = l.value(i);
            let a = v.as_primitive_opt::<Float64Type>().ok_or_else(|| mistyped(name, "List<Float64>"))?;
            Ok(a.iter().map(|x| x.unwrap_or(f64::NAN)).collect())
        };
        let opt = |a: &Float64Array, i: usize| a.is_valid(i).then(|| a.value(i));
        for i in 0..batch.num_rows() {
            let name = names.value(i).to_owned();
            let kind = match kinds.value(i) {
                "numeric" => ColumnKind::Numeric,
                "categorical" => ColumnKind::Categorical,
                other => {
                    return Err(invalid(format!(
                        "column `kind` of feature `{name}` is `{other}`, expected `numeric` or `categorical`"
                    )))
                }
            };
            let cv = cats.value(i);
            let categories = cv
                .as_string_opt::<i32>()
                .ok_or_else(|| mistyped("categories", "List<Utf8>"))?
                .iter()
                .map(|s| s.unwrap_or_default().to_owned())
                .collect();
            let c = ColumnProfile {
                kind,
                count: counts.value(i),
                missing: missing.value(i),
                mean: opt(&mean, i),
                std: opt(&std, i),
                min: opt(&min, i),
                max: opt(&max, i),
                bin_edges: float_list(&edges, "bin_edges", i)?,
                bin_freqs: float_list(&freqs, "bin_freqs", i)?,
                categories,
                name,
            };
            match roles.value(i) {
                "feature" => features.push(c),
                "prediction" => prediction = Some(c),
                other => {
                    return Err(invalid(format!(
                        "column `role` of feature `{}` is `{other}`, expected `feature` or `prediction`",
                        c.name
                    )))
                }
            }
        }
    }
    Ok(Profile { meta, features, prediction })
}

// ------------------------------------------------------------------ config and CLI

/// Attaches every `[[profiles]]` entry of `cfg` to `engine`. Call before any event. Relative
/// paths are relative to the working directory.
pub fn load_profiles(cfg: &Config, engine: &mut Engine) -> Result<(), ProfileError> {
    for entry in &cfg.profiles {
        let p = show_path(&entry.path);
        let profile = read_profile(&entry.path)?;
        if let Some(m) = profile.meta.model.as_deref().filter(|m| *m != entry.model) {
            return Err(ProfileError::Mismatch {
                path: p,
                message: format!(
                    "built for model `{m}` but attached to model `{}` in [[profiles]]; rebuild it with --model {} or fix the config",
                    entry.model, entry.model
                ),
            });
        }
        if let (Some(pv), Some(cv)) = (profile.meta.version.as_deref(), entry.version.as_deref()) {
            if pv != cv {
                return Err(ProfileError::Mismatch {
                    path: p,
                    message: format!(
                        "built for version `{pv}` of `{}` but attached to version `{cv}` in [[profiles]]",
                        entry.model
                    ),
                });
            }
        }
        let reference = profile.to_reference(&p)?;
        engine.attach_profile(&entry.model, entry.version.as_deref(), reference);
    }
    Ok(())
}

/// What `driftwatch baseline` tells its user on stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineReport {
    /// What was profiled, the task used and how it was decided, skipped columns (`--quiet`
    /// leaves it out).
    pub summary: String,
    /// What may be wrong with the profile (shown even with `--quiet`).
    pub warnings: Vec<String>,
}

/// `driftwatch baseline`: profiles `opts.input` into `out`; returns what to tell the user.
pub fn run_baseline(opts: &BaselineOptions, out: &Path) -> Result<BaselineReport, ProfileError> {
    let (profile, stats) = build_profile(opts)?;
    write_profile(out, &profile)?;
    let secs = stats.elapsed.as_secs_f64().max(1e-9);
    let mut s = format!(
        "profiled {} rows × {} features of {} ({:.1} MB) in {:.2} s ({:.0} rows/s) → {}",
        stats.rows,
        profile.features.len(),
        show_path(&opts.input),
        stats.bytes as f64 / 1e6,
        secs,
        stats.rows as f64 / secs,
        show_path(out)
    );
    let _ = write!(s, "\n{}", stats.task.summary);
    for skipped in &profile.meta.skipped_columns {
        let _ = write!(s, "\nskipped column {skipped}");
    }
    Ok(BaselineReport { summary: s, warnings: stats.task.warning.into_iter().collect() })
}

fn fmt_num(x: Option<f64>) -> String {
    match x {
        None => "-".into(),
        Some(x) if x != 0.0 && (x.abs() >= 1e6 || x.abs() < 1e-3) => format!("{x:.3e}"),
        Some(x) => format!("{x:.4}").trim_end_matches('0').trim_end_matches('.').to_owned(),
    }
}

/// `driftwatch baseline show`: a readable summary of a profile file.
pub fn show(path: &Path) -> Result<String, ProfileError> {
    let profile = read_profile(path)?;
    let m = &profile.meta;
    let mut s = String::new();
    let _ = writeln!(s, "profile {}", show_path(path));
    let _ = writeln!(
        s,
        "  model:    {} version {}",
        m.model.as_deref().unwrap_or("(any)"),
        m.version.as_deref().unwrap_or("(any)")
    );
    let _ = writeln!(s, "  source:   {} ({} rows, sha256 {})", m.source_file, m.rows, m.source_sha256);
    let _ = writeln!(
        s,
        "  created:  {} by driftwatch {} (profile layout {})",
        m.created_at, m.driftwatch_version, m.profile_version
    );
    match (m.accuracy, m.mae) {
        (Some(a), _) => {
            let _ = writeln!(s, "  accuracy: {:.4} ({} of {} labelled rows)", a, m.correct.unwrap_or(0), m.labelled);
        }
        (None, Some(mae)) => {
            let _ = writeln!(s, "  MAE:      {} over {} labelled rows", fmt_num(Some(mae)), m.labelled);
        }
        _ => {
            let _ = writeln!(s, "  accuracy: - (no `prediction` and `label` columns)");
        }
    }
    let task = match m.task {
        Some(t) if m.task_given => format!("{} (given with --task)", t.as_str()),
        Some(t) => format!("{} (inferred from the column types)", t.as_str()),
        None if profile.prediction.is_none() && m.labelled == 0 => "- (no `prediction` or `label` column)".to_owned(),
        None => "- (not recorded in this profile)".to_owned(),
    };
    let _ = writeln!(s, "  task:     {task}");
    for sk in &m.skipped_columns {
        let _ = writeln!(s, "  skipped:  {sk}");
    }
    let _ = writeln!(s, "\n{:<20} {:<11} {:>8} {:>10} {:>10}  bins", "feature", "kind", "missing", "mean", "std");
    for c in profile.features.iter().chain(&profile.prediction) {
        let n = c.bin_freqs.len();
        let missing = c.bin_freqs.get(n.wrapping_sub(2)).copied().unwrap_or(0.0);
        let bins = match c.kind {
            ColumnKind::Numeric => {
                let edges: Vec<String> = c.bin_edges.iter().map(|e| fmt_num(Some(*e))).collect();
                format!("{} quantile bins, edges {}", c.bin_edges.len() + 1, edges.join(" | "))
            }
            ColumnKind::Categorical => {
                let mut parts: Vec<String> = c
                    .categories
                    .iter()
                    .zip(&c.bin_freqs)
                    .take(8)
                    .map(|(k, f)| format!("{k} {:.1}%", f * 100.0))
                    .collect();
                if c.categories.len() > 8 {
                    parts.push(format!("… {} more", c.categories.len() - 8));
                }
                let other = c.bin_freqs.last().copied().unwrap_or(0.0);
                parts.push(format!("other {:.1}%", other * 100.0));
                parts.join(", ")
            }
        };
        let _ = writeln!(
            s,
            "{:<20} {:<11} {:>7.2}% {:>10} {:>10}  {}",
            c.name,
            c.kind.as_str(),
            missing * 100.0,
            fmt_num(c.mean),
            fmt_num(c.std),
            bins
        );
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// `text` written to a fresh `name` in a directory of its own.
    fn training_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "driftwatch-profile-unit-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
        ));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    fn profile_with(path: &Path, task: Option<Task>) -> Result<(Profile, BuildStats), ProfileError> {
        build_profile(&BaselineOptions { task, ..BaselineOptions::new(path) })
    }

    /// 0/1 classes as a CSV writes them; `1.0` is the same class as `1`.
    const ZERO_ONE: &str = "amount,prediction,label\n1.5,1,1\n2.5,0,1\n3.5,1.0,1\n4.5,0,0\n";

    #[test]
    fn numbers_name_the_class_events_send_as_text() {
        assert_eq!(class_of_number(1.0).as_deref(), Some("1"));
        assert_eq!(class_of_number(1.5).as_deref(), Some("1.5"));
        assert_eq!(class_of_number(-0.0).as_deref(), Some("0"));
        assert_eq!(class_of_number(-2.0).as_deref(), Some("-2"));
        assert_eq!(class_of_number(f64::NAN), None);
        // The class a profile records is the one an event's `"prediction": "1"` is.
        let streamed = crate::labels::Value::of(&crate::event::Outcome::Class("1".into()));
        assert_eq!(
            streamed,
            crate::labels::Value::Class(crate::labels::hash_str(&class_of_number(1.0).unwrap_or_default()))
        );
    }

    #[test]
    fn task_classification_reads_zero_one_numbers_as_classes_with_an_accuracy() {
        let path = training_file("zero-one.csv", ZERO_ONE);
        let (profile, stats) = profile_with(&path, Some(Task::Classification)).expect("profile");
        let p = profile.prediction.as_ref().expect("prediction");
        assert_eq!(p.kind, ColumnKind::Categorical);
        let mut classes = p.categories.clone();
        classes.sort();
        assert_eq!(classes, ["0", "1"]);
        assert_eq!((profile.meta.labelled, profile.meta.correct, profile.meta.mae), (4, Some(3), None));
        assert_eq!(profile.meta.accuracy, Some(0.75));
        assert_eq!((profile.meta.task, profile.meta.task_given), (Some(Task::Classification), true));
        assert_eq!(stats.task.summary, "task: classification (given with --task)");
        assert_eq!(stats.task.warning, None);
        // Recorded in the file, and read back.
        let out = path.with_extension("arrow");
        write_profile(&out, &profile).expect("write");
        let back = read_profile(&out).expect("read");
        assert_eq!((back.meta.task, back.meta.task_given), (Some(Task::Classification), true));
        assert!(show(&out).expect("show").contains("task:     classification (given with --task)"));
    }

    #[test]
    fn inferred_regression_of_few_whole_numbers_warns_naming_the_flag() {
        let path = training_file("zero-one.csv", ZERO_ONE);
        let (profile, stats) = profile_with(&path, None).expect("profile");
        assert_eq!(profile.prediction.as_ref().map(|p| p.kind), Some(ColumnKind::Numeric));
        assert_eq!((profile.meta.accuracy, profile.meta.mae), (None, Some(0.25)));
        assert_eq!((profile.meta.task, profile.meta.task_given), (Some(Task::Regression), false));
        assert_eq!(stats.task.summary, "task: regression (inferred: `prediction` and `label` hold numbers)");
        let w = stats.task.warning.expect("a warning");
        assert!(w.contains("`prediction` holds only 2 distinct whole numbers (0 and 1)"), "{w}");
        assert!(w.contains("--task classification"), "{w}");
        // Fractions, or more than SUSPECTED_CLASSES values, are numbers: no warning.
        let mut text = String::from("amount,prediction,label\n");
        for i in 0..=SUSPECTED_CLASSES {
            text.push_str(&format!("{i},{i},{i}\n"));
        }
        let (_, stats) = profile_with(&training_file("many.csv", &text), None).expect("profile");
        assert_eq!(stats.task.warning, None);
        let (_, stats) =
            profile_with(&training_file("scores.csv", "amount,prediction\n1,0.25\n2,1\n"), None).expect("profile");
        assert_eq!(stats.task.summary, "task: regression (inferred: `prediction` holds numbers)");
        assert_eq!(stats.task.warning, None);
    }

    #[test]
    fn inferred_classification_names_the_values_and_the_other_task() {
        let path =
            training_file("text.jsonl", "{\"a\":1,\"prediction\":\"fraud\"}\n{\"a\":2,\"prediction\":\"legit\"}\n");
        let (profile, stats) = profile_with(&path, None).expect("profile");
        assert_eq!((profile.meta.task, profile.meta.task_given), (Some(Task::Classification), false));
        assert_eq!(
            stats.task.summary,
            "task: classification (inferred: `prediction` holds text, 2 distinct values (\"fraud\" and \"legit\") — pass --task regression if these are numbers)"
        );
    }

    #[test]
    fn task_regression_reads_numeric_text_and_names_the_row_of_other_text() {
        let path = training_file(
            "text.jsonl",
            "{\"a\":1,\"prediction\":\"2.5\",\"label\":2}\n{\"a\":2,\"prediction\":\"3\",\"label\":3}\n",
        );
        let (profile, stats) = profile_with(&path, Some(Task::Regression)).expect("numbers in text are numbers");
        assert_eq!(profile.prediction.as_ref().map(|p| p.kind), Some(ColumnKind::Numeric));
        assert_eq!(profile.meta.mae, Some(0.25));
        assert_eq!(stats.task.summary, "task: regression (given with --task)");

        let path = training_file("labels.csv", "amount,prediction,label\n1,0.5,0.5\n2,0.25,cat\n");
        let e = profile_with(&path, Some(Task::Regression)).expect_err("text labels are no numbers").to_string();
        assert!(
            e.starts_with(&format!("{}: column `label`: row 2 holds \"cat\", not a number", path.display())),
            "{e}"
        );
        assert!(e.contains("--task classification"), "{e}");

        let path = training_file("flags.jsonl", "{\"a\":1,\"prediction\":null}\n{\"a\":1,\"prediction\":true}\n");
        let e = profile_with(&path, Some(Task::Regression)).expect_err("booleans are no numbers").to_string();
        assert!(e.contains("column `prediction`: row 2 holds the boolean true"), "{e}");
    }

    #[test]
    fn tasks_parse_by_name_and_old_profiles_read_without_one() {
        assert_eq!(Task::parse("classification"), Ok(Task::Classification));
        assert_eq!(Task::parse("regression"), Ok(Task::Regression));
        assert!(Task::parse("Regression").is_err_and(|e| e.contains("classification or regression")));
        let path = training_file("zero-one.csv", ZERO_ONE);
        let (mut profile, _) = profile_with(&path, None).expect("profile");
        profile.meta.task = None;
        let out = path.with_extension("arrow");
        write_profile(&out, &profile).expect("write");
        let back = read_profile(&out).expect("a profile without a task reads");
        assert_eq!((back.meta.task, back.meta.task_given), (None, false));
        assert!(show(&out).expect("show").contains("task:     - (not recorded in this profile)"));
    }

    #[test]
    fn csv_messages_name_the_column() {
        let schema =
            Schema::new(vec![Field::new("a", DataType::Float64, true), Field::new("age", DataType::Float64, true)]);
        let m = name_csv_column("Error while parsing value 'x' as type 'Float64' for column 1 at line 7", &schema);
        assert!(m.contains("column 1 (`age`) at line 7"), "{m}");
    }
}

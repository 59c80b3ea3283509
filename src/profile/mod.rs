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
//!
//! Where things are: `model` (what a profile holds, and its drift reference), `accumulate`
//! (per-column accumulators), `profiler` (one profiling run), `read` (input formats and
//! [`build_profile`]), `file` (the profile file), `cli` (`[[profiles]]`, `baseline`), `tests`
//! (whole runs).
//!
//! [`ModelReference`]: crate::reference::ModelReference

mod accumulate;
mod cli;
mod file;
mod model;
mod profiler;
mod read;
#[cfg(test)]
mod tests;

use std::io;
use std::path::Path;

pub use cli::{load_profiles, run_baseline, show, BaselineReport};
pub use file::{read_profile, write_profile};
pub use model::{ColumnKind, ColumnProfile, Profile, ProfileMeta};
pub use read::{build_profile, BaselineOptions, BuildStats, InputFormat};

/// Version of the profile file layout written by this build.
pub const PROFILE_VERSION: u32 = 1;
/// Distinct categories counted per column; beyond it counts become Misra–Gries estimates.
pub const MAX_DISTINCT: usize = 10_000;
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

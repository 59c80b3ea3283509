//! One profiling run: which columns are features, `prediction` or `label`, how each is read,
//! the task used, and the profile the accumulators add up to.

use std::collections::HashMap;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, Float64Array, Float64Builder, StringArray};
use arrow::datatypes::{DataType, Float64Type, Schema};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

use crate::time::format_rfc3339;

use super::accumulate::{CategoricalAcc, NumericAcc};
use super::{
    class_of_number, BaselineOptions, ColumnKind, Profile, ProfileError, ProfileMeta, Task, TaskChoice, LABEL,
    MAX_DISTINCT, PREDICTION, PROFILE_VERSION, SUSPECTED_CLASSES,
};

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

/// The per-column state of one profiling run.
#[derive(Debug)]
pub(super) struct Profiler {
    path: String,
    plans: Vec<ColumnPlan>,
    skipped: Vec<String>,
    pub(super) rows: u64,
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
    pub(super) fn new(
        path: &str,
        schema: &Schema,
        exclude: &[String],
        task: Option<Task>,
    ) -> Result<Self, ProfileError> {
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
    pub(super) fn projection(&self) -> Vec<usize> {
        self.plans.iter().map(|p| p.index).collect()
    }

    /// Adds one batch holding the projected columns, in projection order.
    pub(super) fn add(&mut self, batch: &RecordBatch) -> Result<(), ProfileError> {
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

    pub(super) fn finish(
        mut self,
        opts: &BaselineOptions,
        sha256: String,
    ) -> Result<(Profile, TaskChoice), ProfileError> {
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

//! The profile file: its Arrow IPC layout (`schemas/profile.md`), written by
//! [`write_profile`] and read back by [`read_profile`].

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Float64Builder, ListArray, ListBuilder, StringArray, StringBuilder,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Float64Type, Schema};
use arrow::record_batch::RecordBatch;

use super::{show_path, ColumnKind, ColumnProfile, Profile, ProfileError, ProfileMeta, Task, PROFILE_VERSION};

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

//! A profile built by `driftwatch baseline` from training data is what `replay` measures drift
//! against: training data from the stream's own distribution gives no retrain, a shift in the
//! stream (or in the training data) gives a retrain naming the shifted feature, the profile's
//! accuracy is the accuracy reference, and every format reads to the same profile.
//!
//! The training files are written here, with the arrow and parquet writers, from the
//! distributions the simulator's fraud model streams draw from (`sim::write_arrival`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use driftwatch::profile::{build_profile, read_profile, write_profile, BaselineOptions};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64;
use serde_json::Value;

#[path = "common/temp.rs"]
mod temp;
use temp::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_driftwatch");
/// `sim::EPOCH`, 2025-11-24T16:00:00Z.
const EPOCH_MS: i64 = 1_764_000_000_000;

/// A fresh directory for one test.
fn temp_dir(name: &str) -> TempDir {
    TempDir::new("driftwatch-profile", name)
}

#[derive(Clone, Copy, PartialEq)]
enum Output_ {
    /// `prediction` is "fraud"/"legit" (10% fraud), `label` right 90% of the time.
    Classes,
    /// `prediction` = truth + 5·N, `label` = truth = 100 + 20·N (the `stationary` model).
    Regression,
}

/// Training rows drawn like `sim::write_arrival`'s features, with `amount`'s log shifted by
/// `amount_shift` standard deviations.
#[derive(Clone)]
struct Training {
    rows: usize,
    seed: u64,
    amount_shift: f64,
    output: Output_,
    /// Leave `ext_score` out.
    without_ext_score: bool,
    /// Add a `merchant` column the stream never sends.
    with_merchant: bool,
}

impl Training {
    fn new(output: Output_) -> Self {
        Training { rows: 20_000, seed: 11, amount_shift: 0.0, output, without_ext_score: false, with_merchant: false }
    }

    fn batch(&self) -> RecordBatch {
        let mut rng = Pcg64::seed_from_u64(self.seed);
        let n = self.rows;
        let pick = |rng: &mut Pcg64, items: &[&'static str], shares: &[f64]| {
            let u: f64 = rng.gen();
            let mut acc = 0.0;
            for (i, s) in shares.iter().enumerate() {
                acc += s;
                if u < acc {
                    return items[i];
                }
            }
            items[items.len() - 1]
        };
        let (mut amount, mut country, mut age, mut device, mut is_new, mut ext) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        let (mut merchant, mut pred_s, mut label_s, mut pred_f, mut label_f) = (vec![], vec![], vec![], vec![], vec![]);
        for _ in 0..n {
            let z: f64 = StandardNormal.sample(&mut rng);
            amount.push(((3.0 + self.amount_shift + z).exp() * 100.0).round() / 100.0);
            country.push(pick(&mut rng, &["US", "DE", "FR", "GB", "JP"], &[0.45, 0.20, 0.15, 0.10, 0.10]));
            let a: f64 = StandardNormal.sample(&mut rng);
            age.push((40.0 + 12.0 * a).max(18.0).round() as i64);
            device.push(pick(&mut rng, &["mobile", "desktop", "tablet"], &[0.6, 0.3, 0.1]));
            is_new.push(rng.gen::<f64>() < 0.2);
            ext.push(if rng.gen::<f64>() < 0.02 { None } else { Some((rng.gen::<f64>() * 1000.0).round() / 1000.0) });
            merchant.push(pick(&mut rng, &["m1", "m2"], &[0.5, 0.5]));
            match self.output {
                Output_::Classes => {
                    let fraud = rng.gen::<f64>() < 0.1;
                    let right = rng.gen::<f64>() < 0.9;
                    pred_s.push(if fraud { "fraud" } else { "legit" });
                    label_s.push(if right == fraud { "fraud" } else { "legit" });
                }
                Output_::Regression => {
                    let t: f64 = StandardNormal.sample(&mut rng);
                    let e: f64 = StandardNormal.sample(&mut rng);
                    let truth = 100.0 + 20.0 * t;
                    pred_f.push(((truth + 5.0 * e) * 100.0).round() / 100.0);
                    label_f.push((truth * 100.0).round() / 100.0);
                }
            }
        }
        let mut fields = vec![
            Field::new("amount", DataType::Float64, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("age", DataType::Int64, false),
            Field::new("device", DataType::Utf8, false),
            Field::new("is_new", DataType::Boolean, false),
        ];
        let mut cols: Vec<ArrayRef> = vec![
            Arc::new(Float64Array::from(amount)),
            Arc::new(StringArray::from(country)),
            Arc::new(Int64Array::from(age)),
            Arc::new(StringArray::from(device)),
            Arc::new(BooleanArray::from(is_new)),
        ];
        if !self.without_ext_score {
            fields.push(Field::new("ext_score", DataType::Float64, true));
            cols.push(Arc::new(Float64Array::from(ext)));
        }
        if self.with_merchant {
            fields.push(Field::new("merchant", DataType::Utf8, false));
            cols.push(Arc::new(StringArray::from(merchant)));
        }
        match self.output {
            Output_::Classes => {
                fields.push(Field::new("prediction", DataType::Utf8, false));
                fields.push(Field::new("label", DataType::Utf8, false));
                cols.push(Arc::new(StringArray::from(pred_s)));
                cols.push(Arc::new(StringArray::from(label_s)));
            }
            Output_::Regression => {
                fields.push(Field::new("prediction", DataType::Float64, false));
                fields.push(Field::new("label", DataType::Float64, false));
                cols.push(Arc::new(Float64Array::from(pred_f)));
                cols.push(Arc::new(Float64Array::from(label_f)));
            }
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), cols).expect("batch")
    }
}

/// Writes `batch` in the format named by `path`'s extension.
fn write_training(path: &Path, batch: &RecordBatch) {
    let file = File::create(path).expect("create training file");
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "parquet" => {
            let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("parquet writer");
            // Several batches, so the reader streams more than one.
            for off in (0..batch.num_rows()).step_by(7_000) {
                let len = 7_000.min(batch.num_rows() - off);
                w.write(&batch.slice(off, len)).expect("write parquet");
            }
            w.close().expect("close parquet");
        }
        "arrow" => {
            let mut w = arrow::ipc::writer::FileWriter::try_new(file, &batch.schema()).expect("ipc writer");
            w.write(batch).expect("write ipc");
            w.finish().expect("finish ipc");
        }
        "csv" => {
            let mut w = arrow::csv::Writer::new(file);
            w.write(batch).expect("write csv");
        }
        "jsonl" => {
            let mut w = arrow::json::LineDelimitedWriter::new(file);
            w.write(batch).expect("write jsonl");
            w.finish().expect("finish jsonl");
        }
        other => panic!("no writer for .{other}"),
    }
}

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run driftwatch")
}

fn run_ok(args: &[&str]) -> Output {
    let out = run(args);
    assert!(out.status.success(), "driftwatch {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// Runs `baseline` on `input`, writing `profile`.
fn baseline(input: &Path, profile: &Path, model: &str) {
    run_ok(&[
        "baseline",
        "--input",
        input.to_str().unwrap_or_default(),
        "--out",
        profile.to_str().unwrap_or_default(),
        "--model",
        model,
        "--quiet",
    ]);
}

/// Simulates `scenario` for `duration` into `dir`.
fn simulate(dir: &Path, scenario: &str, duration: &str) -> PathBuf {
    let out = dir.join(format!("{scenario}-{duration}.jsonl"));
    run_ok(&["simulate", "--scenario", scenario, "--duration", duration, "--out", out.to_str().unwrap_or_default()]);
    out
}

/// Replays `events` with a config attaching `profile` to `model`; returns the commands.
fn replay_with_profile(dir: &Path, events: &Path, model: &str, profile: &Path) -> Vec<Value> {
    let cfg = dir.join(format!("{model}-profile.toml"));
    std::fs::write(&cfg, format!("[[profiles]]\nmodel = \"{model}\"\npath = \"{}\"\n", profile.display()))
        .expect("write config");
    let out = run_ok(&[
        "replay",
        "--quiet",
        "--config",
        cfg.to_str().unwrap_or_default(),
        events.to_str().unwrap_or_default(),
    ]);
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("command is JSON")).collect()
}

fn of_model<'a>(commands: &'a [Value], model: &str) -> Vec<&'a Value> {
    commands.iter().filter(|c| c["target"]["kind"] == "model" && c["target"]["name"] == model).collect()
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .map(|a| {
            a.iter()
                .map(|f| f.as_str().unwrap_or_else(|| f["name"].as_str().unwrap_or("")))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

fn decided_ms(c: &Value) -> i64 {
    let s = c["decided_at"].as_str().unwrap_or("");
    driftwatch::time::parse_rfc3339(s).unwrap_or_else(|e| panic!("decided_at {s}: {e:?}"))
}

#[test]
fn profile_of_the_streams_distribution_gives_no_retrain_in_every_format() {
    let dir = temp_dir("same");
    let events = simulate(&dir, "stationary", "30m");
    let batch = Training::new(Output_::Regression).batch();
    for ext in ["parquet", "arrow", "csv", "jsonl"] {
        let input = dir.join(format!("train.{ext}"));
        write_training(&input, &batch);
        let profile = dir.join(format!("fraud-{ext}.arrow"));
        baseline(&input, &profile, "fraud");
        let commands = replay_with_profile(&dir, &events, "fraud", &profile);
        assert!(
            of_model(&commands, "fraud").is_empty(),
            "{ext}: a profile of the stream's own distribution gave {commands:#?}"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn every_format_reads_to_the_same_profile_and_it_round_trips() {
    let dir = temp_dir("formats");
    let batch = Training::new(Output_::Classes).batch();
    let mut profiles = Vec::new();
    for ext in ["parquet", "arrow", "csv", "jsonl"] {
        let input = dir.join(format!("train.{ext}"));
        write_training(&input, &batch);
        let (profile, stats) = build_profile(&BaselineOptions::new(&input)).expect("profile");
        assert_eq!(stats.rows, 20_000, "{ext}");
        let file = dir.join(format!("p-{ext}.arrow"));
        write_profile(&file, &profile).expect("write");
        let back = read_profile(&file).expect("read");
        assert_eq!(back, profile, "{ext}: the profile changed through its file");
        let r1 = profile.to_reference("p").expect("reference");
        let r2 = back.to_reference("p").expect("reference");
        assert_eq!(r1, r2, "{ext}");
        profiles.push((ext, profile));
    }
    let (_, first) = &profiles[0];
    assert_eq!(first.features.len(), 6);
    assert_eq!(first.meta.labelled, 20_000);
    let acc = first.meta.accuracy.expect("accuracy of class outputs");
    assert!((acc - 0.9).abs() < 0.01, "{acc}");
    assert!(first.meta.source_sha256.len() == 64);
    // JSON objects have no column order: JSON Lines columns come sorted by name.
    let by_name = |p: &driftwatch::profile::Profile| {
        let mut f = p.features.clone();
        f.sort_by(|a, b| a.name.cmp(&b.name));
        f
    };
    for (ext, p) in &profiles[1..] {
        assert_eq!(by_name(p), by_name(first), "{ext} vs parquet");
        assert_eq!(p.prediction, first.prediction, "{ext} vs parquet");
        assert_eq!(p.meta.correct, first.meta.correct, "{ext} vs parquet");
    }
    let ext_score = first.features.iter().find(|c| c.name == "ext_score").expect("ext_score");
    let missing = ext_score.missing as f64 / ext_score.count as f64;
    assert!((missing - 0.02).abs() < 0.005, "{missing}");
    let country = first.features.iter().find(|c| c.name == "country").expect("country");
    assert_eq!(country.categories[0], "US");

    // `baseline show` prints every feature, the accuracy and where the profile came from.
    let out = run_ok(&["baseline", "show", dir.join("p-csv.arrow").to_str().unwrap_or("")]);
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in ["amount", "country", "age", "device", "is_new", "ext_score", "prediction", "accuracy", "train.csv"] {
        assert!(text.contains(needle), "`{needle}` missing from:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn shifted_stream_retrains_once_naming_only_the_shifted_feature() {
    let dir = temp_dir("shifted-stream");
    let events = simulate(&dir, "numeric-drift", "60m");
    let input = dir.join("train.parquet");
    write_training(&input, &Training::new(Output_::Classes).batch());
    let profile = dir.join("fraud.arrow");
    baseline(&input, &profile, "fraud");
    let commands = replay_with_profile(&dir, &events, "fraud", &profile);
    let fraud = of_model(&commands, "fraud");
    assert_eq!(fraud.len(), 1, "{commands:#?}");
    let c = fraud[0];
    assert_eq!(c["command"], "retrain");
    assert_eq!(c["reason"], "feature_drift");
    assert_eq!(names(&c["evidence"]["drifted_features"]), vec!["amount"]);
    assert_eq!(c["evidence"]["reference"]["source"]["source"], "profile");
    assert!(decided_ms(c) > EPOCH_MS + 40 * 60_000, "decided before the shift: {c}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_of_shifted_training_data_retrains_soon_after_the_stream_starts() {
    let dir = temp_dir("shifted-training");
    let events = simulate(&dir, "stationary", "30m");
    let input = dir.join("train.parquet");
    let training = Training {
        amount_shift: 1.0,
        without_ext_score: true,
        with_merchant: true,
        ..Training::new(Output_::Regression)
    };
    write_training(&input, &training.batch());
    let profile = dir.join("fraud.arrow");
    baseline(&input, &profile, "fraud");
    let commands = replay_with_profile(&dir, &events, "fraud", &profile);
    let fraud = of_model(&commands, "fraud");
    assert_eq!(fraud.len(), 1, "{commands:#?}");
    let c = fraud[0];
    assert_eq!(c["command"], "retrain");
    assert_eq!(names(&c["evidence"]["drifted_features"]), vec!["amount"]);
    // The reference is the profile, not a warm-up window: no 10-minute wait.
    assert!(decided_ms(c) <= EPOCH_MS + 3 * 60_000, "decided late: {}", c["decided_at"]);
    // Schema differences are reported, not drift: the profile's `merchant` never comes, the
    // stream's `ext_score` is not in the profile.
    assert_eq!(names(&c["evidence"]["absent_features"]), vec!["merchant"]);
    assert_eq!(names(&c["evidence"]["unreferenced_features"]), vec!["ext_score"]);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn accuracy_recorded_in_the_profile_is_the_accuracy_reference() {
    // `churn` 3 in the `mixed` scenario is right 85% of the time and alone: with no profile it
    // is its own reference and nothing happens; against a profile that was right 97% of the
    // time it has fallen far below: retrain for accuracy.
    let dir = temp_dir("accuracy");
    let events = simulate(&dir, "mixed", "30m");
    let mut rng = Pcg64::seed_from_u64(5);
    let n = 5_000;
    let mut pred = Vec::with_capacity(n);
    let mut label = Vec::with_capacity(n);
    for _ in 0..n {
        let p = if rng.gen::<f64>() < 0.1 { "fraud" } else { "legit" };
        let right = rng.gen::<f64>() < 0.97;
        pred.push(p);
        label.push(if right {
            p
        } else if p == "fraud" {
            "legit"
        } else {
            "fraud"
        });
    }
    let x: Vec<f64> = (0..n).map(|i| i as f64).collect();
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("tenure", DataType::Float64, false),
            Field::new("prediction", DataType::Utf8, false),
            Field::new("label", DataType::Utf8, false),
        ])),
        vec![Arc::new(Float64Array::from(x)), Arc::new(StringArray::from(pred)), Arc::new(StringArray::from(label))],
    )
    .expect("batch");
    let input = dir.join("churn.parquet");
    write_training(&input, &batch);
    let profile = dir.join("churn.arrow");
    baseline(&input, &profile, "churn");
    let commands = replay_with_profile(&dir, &events, "churn", &profile);
    let churn = of_model(&commands, "churn");
    assert!(!churn.is_empty(), "{commands:#?}");
    let c = churn[0];
    assert_eq!(c["reason"], "accuracy", "{c}");
    assert_eq!(c["command"], "retrain", "{c}");
    assert_eq!(c["evidence"]["reference"]["source"], "profile");
    assert_eq!(c["evidence"]["reference"]["labelled"], n as u64);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs `baseline` expecting failure; returns stderr.
fn baseline_fails(input: &Path, out: &Path) -> String {
    let o =
        run(&["baseline", "--input", input.to_str().unwrap_or_default(), "--out", out.to_str().unwrap_or_default()]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "baseline on {} should fail; stderr: {stderr}", input.display());
    assert!(stderr.contains(&input.display().to_string()), "the message does not name {}: {stderr}", input.display());
    assert!(!out.exists(), "no profile may be written on error");
    stderr
}

#[test]
fn unreadable_corrupt_empty_and_mistyped_inputs_fail_naming_file_and_column() {
    let dir = temp_dir("errors");
    let out = dir.join("p.arrow");

    let missing = dir.join("nope.parquet");
    let e = baseline_fails(&missing, &out);
    assert!(e.to_lowercase().contains("no such file"), "{e}");

    let empty = dir.join("empty.parquet");
    File::create(&empty).expect("create");
    assert!(baseline_fails(&empty, &out).contains("empty"));

    let corrupt = dir.join("corrupt.parquet");
    std::fs::write(&corrupt, b"PAR1 this is not really parquet at all PAR1").expect("write");
    assert!(baseline_fails(&corrupt, &out).contains("Parquet"));

    // A Parquet file cut in half.
    let good = dir.join("good.parquet");
    write_training(&good, &Training::new(Output_::Classes).batch());
    let bytes = std::fs::read(&good).expect("read");
    let truncated = dir.join("truncated.parquet");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    baseline_fails(&truncated, &out);

    let corrupt_ipc = dir.join("corrupt.arrow");
    std::fs::write(&corrupt_ipc, b"ARROW1\0\0garbage").expect("write");
    assert!(baseline_fails(&corrupt_ipc, &out).contains("Arrow IPC"));

    let header_only = dir.join("header.csv");
    std::fs::write(&header_only, "amount,country\n").expect("write");
    assert!(baseline_fails(&header_only, &out).contains("no rows"));

    let unknown = dir.join("train.txt");
    std::fs::write(&unknown, "amount\n1\n").expect("write");
    assert!(baseline_fails(&unknown, &out).contains("unknown input format"));

    // `prediction` of a list type.
    let list = arrow::array::ListArray::from_iter_primitive::<arrow::datatypes::Float64Type, _, _>(
        (0..10).map(|i| Some(vec![Some(f64::from(i))])),
    );
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Float64, false),
            Field::new("prediction", list.data_type().clone(), true),
        ])),
        vec![Arc::new(Float64Array::from((0..10).map(f64::from).collect::<Vec<_>>())), Arc::new(list)],
    )
    .expect("batch");
    let listed = dir.join("list-prediction.parquet");
    write_training(&listed, &batch);
    let e = baseline_fails(&listed, &out);
    assert!(e.contains("`prediction`"), "{e}");

    // A numeric prediction against class labels.
    let batch = RecordBatch::try_new(
        Arc::new(Schema::new(vec![
            Field::new("amount", DataType::Float64, false),
            Field::new("prediction", DataType::Float64, false),
            Field::new("label", DataType::Utf8, false),
        ])),
        vec![
            Arc::new(Float64Array::from(vec![1.0, 2.0])),
            Arc::new(Float64Array::from(vec![0.1, 0.9])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .expect("batch");
    let mixed = dir.join("mixed-output.arrow");
    write_training(&mixed, &batch);
    let e = baseline_fails(&mixed, &out);
    assert!(e.contains("`label`"), "{e}");

    // A CSV column that turns from numbers to text after the rows its type was inferred from.
    let mut text = String::from("amount,age\n");
    for i in 0..100_010 {
        let age = if i == 100_005 { "forty".to_owned() } else { (20 + i % 50).to_string() };
        text.push_str(&format!("{}.5,{age}\n", i % 300));
    }
    let late_text = dir.join("late-text.csv");
    std::fs::write(&late_text, text).expect("write");
    let e = baseline_fails(&late_text, &out);
    assert!(e.contains("`age`"), "{e}");

    // Profiles named in config: a missing one and a corrupt one stop `replay` with a message
    // naming the file.
    let events = dir.join("events.jsonl");
    std::fs::write(&events, "").expect("write");
    for bad in [dir.join("absent.arrow"), corrupt_ipc.clone()] {
        let cfg = dir.join("cfg.toml");
        std::fs::write(&cfg, format!("[[profiles]]\nmodel = \"fraud\"\npath = \"{}\"\n", bad.display()))
            .expect("write");
        let o = run(&["replay", "--config", cfg.to_str().unwrap_or_default(), events.to_str().unwrap_or_default()]);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{stderr}");
        assert!(stderr.contains(&bad.display().to_string()), "{stderr}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_profile_whose_prediction_type_differs_from_the_stream_is_reported_not_a_drift_alarm() {
    let dir = temp_dir("mistyped");
    // The stream's fraud model answers numbers; the training file has classes.
    let events = simulate(&dir, "stationary", "30m");
    let input = dir.join("train.csv");
    write_training(&input, &Training::new(Output_::Classes).batch());
    let profile = dir.join("fraud-classes.arrow");
    baseline(&input, &profile, "fraud");
    let cfg = dir.join("mistyped.toml");
    std::fs::write(&cfg, format!("[[profiles]]\nmodel = \"fraud\"\npath = \"{}\"\n", profile.display()))
        .expect("write config");
    let out = run_ok(&["replay", "--config", cfg.to_str().unwrap_or_default(), events.to_str().unwrap_or_default()]);
    let commands: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("command is JSON"))
        .collect();
    assert!(of_model(&commands, "fraud").is_empty(), "a type mismatch is no drift: {commands:#?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line =
        stderr.lines().find(|l| l.starts_with("drift: ")).unwrap_or_else(|| panic!("no mismatch line:\n{stderr}"));
    assert!(line.contains("another type than the reference") && line.ends_with("fraud 7: prediction"), "{line}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn task_flag_decides_classes_or_numbers_and_baseline_says_which_it_used() {
    let dir = temp_dir("task");
    // Classes written 0/1, as a CSV export writes them; `1.0` is class 1 too.
    let mut text = String::from("amount,prediction,label\n");
    for i in 0..100 {
        let (p, l) = if i % 4 == 0 {
            ("1.0", "1")
        } else if i % 10 == 1 {
            ("0", "1")
        } else {
            ("0", "0")
        };
        text.push_str(&format!("{}.5,{p},{l}\n", i % 30));
    }
    let input = dir.join("zero-one.csv");
    std::fs::write(&input, text).expect("write");
    let (input_s, profile) = (input.to_str().unwrap_or_default(), dir.join("p.arrow"));
    let profile_s = profile.to_str().unwrap_or_default();

    // --task classification: a classification profile with an accuracy.
    let out = run_ok(&["baseline", "--input", input_s, "--out", profile_s, "--task", "classification"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\ntask: classification (given with --task)"), "{stderr}");
    assert!(!stderr.contains("warning"), "{stderr}");
    let shown = String::from_utf8_lossy(&run_ok(&["baseline", "show", profile_s]).stdout).into_owned();
    assert!(shown.contains("accuracy: 0.9000 (90 of 100 labelled rows)"), "{shown}");
    assert!(shown.contains("task:     classification (given with --task)"), "{shown}");
    let prediction = shown.lines().find(|l| l.starts_with("prediction ")).unwrap_or_default();
    assert!(prediction.contains("categorical") && prediction.contains("0 75.0%, 1 25.0%"), "{shown}");

    // No flag: inferred as numbers, said so, with a warning naming the flag (kept by --quiet).
    let out = run_ok(&["baseline", "--input", input_s, "--out", profile_s]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("\ntask: regression (inferred: `prediction` and `label` hold numbers)\n"), "{stderr}");
    let warning = stderr.lines().find(|l| l.starts_with("warning: ")).unwrap_or_else(|| panic!("no warning: {stderr}"));
    assert!(
        warning.contains("2 distinct whole numbers (0 and 1)") && warning.contains("--task classification"),
        "{warning}"
    );
    let quiet = run_ok(&["baseline", "--input", input_s, "--out", profile_s, "--quiet"]);
    assert_eq!(String::from_utf8_lossy(&quiet.stderr).trim_end(), warning);
    let shown = String::from_utf8_lossy(&run_ok(&["baseline", "show", profile_s]).stdout).into_owned();
    assert!(
        shown.contains("MAE:") && shown.contains("task:     regression (inferred from the column types)"),
        "{shown}"
    );

    // --task regression on class names: an error naming the file, the column and the row.
    let strings = dir.join("strings.csv");
    std::fs::write(&strings, "amount,prediction,label\n1.5,0.5,1\n2.5,0.25,fraud\n").expect("write");
    let o =
        run(&["baseline", "--input", strings.to_str().unwrap_or_default(), "--out", profile_s, "--task", "regression"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}: column `label`: row 2 holds \"fraud\", not a number", strings.display())),
        "{stderr}"
    );

    // A task that does not exist is refused, naming the flag and the choices.
    let o = run(&["baseline", "--input", input_s, "--out", profile_s, "--task", "binary"]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--task") && stderr.contains("classification or regression"), "{stderr}");

    // The help says what the flag does.
    let help = String::from_utf8_lossy(&run_ok(&["baseline", "--help"]).stdout).into_owned();
    assert!(help.contains("--task <classification|regression>"), "{help}");
    let _ = std::fs::remove_dir_all(&dir);
}

//! Tests of whole profiling runs: training files through `build_profile`, the task used, and
//! profiles written, read back and shown.

use std::path::{Path, PathBuf};

use super::*;

/// A training file in a directory of its own, which goes when the test is done with the file.
struct TrainingFile(PathBuf);

impl std::ops::Deref for TrainingFile {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl Drop for TrainingFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// `text` written to a fresh `name` in a directory of its own.
fn training_file(name: &str, text: &str) -> TrainingFile {
    let dir = std::env::temp_dir().join(format!(
        "driftwatch-profile-unit-{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    TrainingFile(path)
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
    let path = training_file("text.jsonl", "{\"a\":1,\"prediction\":\"fraud\"}\n{\"a\":2,\"prediction\":\"legit\"}\n");
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
    assert!(e.starts_with(&format!("{}: column `label`: row 2 holds \"cat\", not a number", path.display())), "{e}");
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

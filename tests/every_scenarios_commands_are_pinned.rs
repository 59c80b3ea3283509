//! The commands `replay` gives for every `simulate` scenario (seed 1), pinned byte for byte in
//! `tests/pinned/<scenario>.jsonl`: ids, `decided_at`, evidence — everything but `issued_at`,
//! the wall clock. A change meant to move no decision (a refactor, a speed-up) must leave these
//! files as they are; a change that means to move decisions rewrites them with
//! `DRIFTWATCH_PIN=1 cargo test --release --test every_scenarios_commands_are_pinned` and the diff
//! shows, command by command, what it moved.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;
use serde_json::Value;

fn pinned_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pinned")
}

/// Every scenario `simulate --list` names.
fn scenarios() -> Vec<String> {
    let out = run(&["simulate", "--list"]);
    assert!(out.status.success(), "simulate --list: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect()
}

/// A command line without its `issued_at` field (compact JSON as replay prints it).
fn without_issued_at(line: &str) -> String {
    const FIELD: &str = "\"issued_at\":\"";
    match line.find(FIELD) {
        Some(i) => {
            let rest = &line[i + FIELD.len()..];
            let end = rest.find('"').map_or(line.len(), |j| i + FIELD.len() + j + 1);
            let end = if line[end..].starts_with(',') { end + 1 } else { end };
            format!("{}{}", &line[..i], &line[end..])
        }
        None => line.to_owned(),
    }
}

/// `replay` of the scenario, run in `dir` on a relative file name so that `input_offsets`
/// name the same file on every machine.
fn replayed(dir: &Path, scenario: &str) -> String {
    let file = simulate(dir, scenario, 1, &[]);
    let name = file.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let out = Command::new(BIN)
        .args(["replay", "-q", &name])
        .current_dir(dir)
        .env_remove("DRIFTWATCH_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run replay");
    assert!(out.status.success(), "replay of {scenario}: {}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_file(&file);
    String::from_utf8_lossy(&out.stdout).lines().map(|l| without_issued_at(l) + "\n").collect()
}

/// The commands with fractional numbers to 12 digits; everything else, `input_offsets`
/// included, as pinned.
fn parsed(text: &str) -> Vec<Value> {
    text.lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
            round_floats(&mut v);
            v
        })
        .collect()
}

#[test]
fn every_scenarios_commands_are_pinned() {
    let dir = temp_dir("pinned");
    let pin = std::env::var_os("DRIFTWATCH_PIN").is_some();
    let names = scenarios();
    assert!(names.len() >= 19, "simulate --list names {} scenarios: {names:?}", names.len());
    let mut problems = Vec::new();
    let mut commands = 0;
    for s in &names {
        let got = replayed(&dir, s);
        commands += got.lines().count();
        let path = pinned_dir().join(format!("{s}.jsonl"));
        if pin {
            std::fs::create_dir_all(pinned_dir()).expect("create tests/pinned");
            std::fs::write(&path, &got).expect("write pinned commands");
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (DRIFTWATCH_PIN=1 writes it)", path.display()));
        if got == want {
            continue;
        }
        // Byte for byte on one platform; a statistic's last bits may move on a platform that
        // changes the process's rounding mode, which the 12-digit comparison allows.
        if parsed(&got) == parsed(&want) {
            eprintln!("{s}: equal to 12 significant digits, not byte for byte");
            continue;
        }
        let shorter = got.lines().count().min(want.lines().count());
        let first = got.lines().zip(want.lines()).position(|(a, b)| a != b).unwrap_or(shorter);
        problems.push(format!(
            "{s}: {} commands, {} pinned; first difference at command {first}:\n got  {}\n want {}",
            got.lines().count(),
            want.lines().count(),
            got.lines().nth(first).unwrap_or("(none)"),
            want.lines().nth(first).unwrap_or("(none)"),
        ));
    }
    assert!(commands >= 150, "all scenarios together give {commands} commands");
    assert!(problems.is_empty(), "commands moved:\n{}", problems.join("\n"));
}

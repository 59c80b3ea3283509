//! Bad input never changes what valid events decide, and input disordered within the
//! allowed lateness decides exactly what sorted input decides.

mod common;

use common::*;

fn comparable_all(cmds: &[serde_json::Value]) -> Vec<serde_json::Value> {
    cmds.iter().map(comparable).collect()
}

#[test]
fn bad_lines_are_counted_reported_and_dead_lettered_without_changing_commands() {
    let dir = temp_dir("bad-input");
    let clean = simulate(&dir, "canary-error", 5, &[]);
    let dirty = simulate(&dir, "bad-input", 5, &[]);
    let dead = dir.join("dead.jsonl");
    let (clean_cmds, _) = replay(&[&clean], &[]);
    let (dirty_cmds, stderr) = replay(&[&dirty], &["--dead-letter", dead.to_str().expect("utf-8 path")]);
    assert!(!clean_cmds.is_empty());
    assert_eq!(comparable_all(&clean_cmds), comparable_all(&dirty_cmds), "bad input changed the decisions");

    // The same valid events were read.
    let clean_lines = std::fs::read(&clean).expect("read").split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    let dirty_text = std::fs::read(&dirty).expect("read");
    let dirty_lines = dirty_text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
    let bad = dirty_lines - clean_lines;
    assert!(bad > 1000, "the scenario mixes in bad lines ({bad})");

    // Every bad line is in the dead-letter file with its reason and line number.
    let dead_text = std::fs::read_to_string(&dead).expect("dead-letter file");
    let records: Vec<serde_json::Value> = dead_text.lines().map(|l| serde_json::from_str(l).expect("JSON")).collect();
    assert_eq!(records.len(), bad);
    let mut reasons: Vec<String> = records.iter().filter_map(|r| r["reason"].as_str().map(str::to_owned)).collect();
    reasons.sort();
    reasons.dedup();
    for want in [
        "invalid_json",
        "not_an_object",
        "unknown_type",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "non_finite_number",
        "invalid_value",
        "invalid_utf8",
        "future_timestamp",
    ] {
        assert!(reasons.iter().any(|r| r == want), "no dead letter for {want}: {reasons:?}");
    }
    for r in &records {
        assert!(
            r["line"].as_u64().is_some_and(|l| l >= 1) && r["detail"].as_str().is_some_and(|d| !d.is_empty()),
            "{r}"
        );
    }
    // The summary counts them by reason and shows the first ones with their line numbers.
    assert!(stderr.contains(&format!("bad input: {bad} lines")), "{stderr}");
    assert!(stderr.contains("missing_field"), "{stderr}");
    assert!(stderr.contains(&format!("{}:", dirty.display())), "first bad lines are shown with file:line\n{stderr}");
}

#[test]
fn disorder_within_lateness_gives_identical_commands() {
    let dir = temp_dir("disorder");
    let sorted = simulate(&dir, "mixed", 9, &[]);
    let shuffled = simulate(&dir, "disorder", 9, &[]);
    assert_ne!(std::fs::read(&sorted).expect("read"), std::fs::read(&shuffled).expect("read"));
    let (a, _) = replay(&[&sorted], &[]);
    let (b, stderr) = replay(&[&shuffled], &[]);
    assert!(a.len() >= 2, "{a:?}");
    assert_eq!(comparable_all(&a), comparable_all(&b), "disordered input changed the commands");
    assert!(stderr.contains(" 0 late"), "nothing was late: {stderr}");
}

#[test]
fn same_input_gives_same_ids_and_decided_at() {
    let dir = temp_dir("determinism");
    let f = simulate(&dir, "demo", 2, &[]);
    let (a, _) = replay(&[&f], &[]);
    let (b, _) = replay(&[&f], &[]);
    assert_eq!(a.len(), 3);
    let ids = |v: &[serde_json::Value]| {
        v.iter().map(|c| (c["command_id"].clone(), c["decided_at"].clone())).collect::<Vec<_>>()
    };
    assert_eq!(ids(&a), ids(&b));
}

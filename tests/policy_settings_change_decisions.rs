//! Policy settings a user reaches for: a pinned baseline, a retrain cooldown, and the
//! cardinality limits, whose drops are reported rather than silent.

mod common;

use common::*;

fn config(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.to_string_lossy().to_string()
}

#[test]
fn pinned_baseline_reverses_the_comparison() {
    let dir = temp_dir("pinned");
    let input = simulate(&dir, "canary-error", 1, &[]);
    let cfg = config(&dir, "pin.toml", "[[baselines]]\nkind = \"app\"\nname = \"checkout\"\nversion = \"2.4.0\"\n");
    let (cmds, _) = replay(&[&input], &["--config", &cfg]);
    // 2.4.0 fails 4% but is now the baseline: it is never rolled back, and 2.3.0 (1%) is
    // compared with it.
    assert!(cmds.iter().all(|c| c["target"]["version"] != "2.4.0"), "{cmds:?}");
    assert!(cmds.iter().all(|c| c["target"]["baseline_version"] == "2.4.0"), "{cmds:?}");
}

#[test]
fn retrain_repeats_only_after_the_cooldown() {
    let dir = temp_dir("cooldown");
    let input = simulate(&dir, "numeric-drift", 1, &["--duration", "90m"]);
    let (default, _) = replay(&[&input], &[]);
    assert_eq!(default.iter().filter(|c| c["command"] == "retrain").count(), 1, "6 h cooldown: one retrain");
    let cfg = config(&dir, "cool.toml", "[retrain]\ncooldown = \"10m\"\n");
    let (short, _) = replay(&[&input], &["--config", &cfg]);
    let times: Vec<i64> =
        short.iter().filter(|c| c["command"] == "retrain").map(|c| millis(&c["decided_at"])).collect();
    assert!(times.len() >= 2, "the drift persists, so a 10 min cooldown retrains again: {times:?}");
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 600_000, "retrains closer than the cooldown: {times:?}");
    }
}

#[test]
fn target_and_feature_limits_are_counted_and_reported() {
    let dir = temp_dir("limits");
    let input = simulate(&dir, "many-targets", 1, &["--duration", "5m"]);
    let cfg = config(&dir, "limits.toml", "[limits]\nmax_targets = 50\nmax_features = 3\n");
    let (_, stderr) = replay(&[&input], &["--config", &cfg]);
    assert!(stderr.contains("50 targets tracked"), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("limits:")).unwrap_or_else(|| panic!("no limits line: {stderr}"));
    let first: u64 =
        line.trim_start_matches("limits: ").split(' ').next().and_then(|n| n.parse().ok()).expect("a count");
    assert!(first > 0, "{line}");
    assert!(line.contains("feature values over the feature limit"), "{line}");
}

//! Policy settings a user reaches for: a pinned baseline, a retrain cooldown, and the
//! cardinality limits, whose drops are reported rather than silent.

mod common;

use common::*;
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::decode;

fn config(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write config");
    p.to_string_lossy().to_string()
}

#[test]
fn a_pinned_baseline_is_judged_against_nothing() {
    let dir = temp_dir("pinned");
    let input = simulate(&dir, "canary-error", 1, &[]);
    let cfg = config(&dir, "pin.toml", "[[baselines]]\nkind = \"app\"\nname = \"checkout\"\nversion = \"2.4.0\"\n");
    let (default, _) = replay(&[&input], &[]);
    assert!(
        default.iter().any(|c| c["command"] == "rollback"
            && c["target"]["version"] == "2.4.0"
            && c["target"]["baseline_version"] == "2.3.0"),
        "without the pin, 2.4.0 (4% errors) is rolled back against 2.3.0 (1%): {default:?}"
    );
    let (cmds, _) = replay(&[&input], &["--config", &cfg]);
    // 2.4.0 fails 4% but is now the baseline: it is judged against nothing, and 2.3.0, which
    // served before it, is no candidate of it (only later versions are).
    assert_eq!(cmds, Vec::<serde_json::Value>::new());
    // The same stream through the engine itself: its view names the baseline of each version.
    let text = std::fs::read(&input).expect("read input");
    let pin = std::fs::read_to_string(&cfg).expect("read config");
    let mut engine = Engine::new(Config::from_toml(&pin).expect("config"));
    for (i, line) in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let ev = decode(line).expect("simulate writes valid events");
        engine.ingest(&ev, Position { source: 0, offset: i as u64 }).expect("in order");
    }
    engine.finish();
    let view = engine.overview();
    let baseline_of = |version: &str| {
        let t = view.iter().find(|t| t.name == "checkout" && t.version == version);
        t.unwrap_or_else(|| panic!("checkout {version} tracked: {view:?}")).baseline.clone()
    };
    assert_eq!(baseline_of("2.4.0"), None, "the pinned baseline is compared with nothing");
    assert_eq!(baseline_of("2.3.0"), None, "an earlier version is no candidate of a later pinned one");
}

#[test]
fn a_lasting_drift_is_one_retrain_until_the_reminder() {
    let dir = temp_dir("cooldown");
    let input = simulate(&dir, "numeric-drift", 1, &["--duration", "90m"]);
    let (default, _) = replay(&[&input], &[]);
    assert_eq!(default.iter().filter(|c| c["command"] == "retrain").count(), 1, "one drift, one retrain");
    // A short cooldown alone does not repeat it: the drift lasts, so it is one episode.
    let cfg = config(&dir, "cool.toml", "[retrain]\ncooldown = \"10m\"\n");
    let (short, _) = replay(&[&input], &["--config", &cfg]);
    let retrains: Vec<&serde_json::Value> = short.iter().filter(|c| c["command"] == "retrain").collect();
    assert_eq!(retrains.len(), 1, "{retrains:#?}");
    assert_eq!(retrains[0]["evidence"]["episode"]["why"], "new_episode");
    // A reminder interval asks again while the episode lasts, no closer than it.
    let cfg = config(&dir, "remind.toml", "[retrain]\ncooldown = \"10m\"\nreminder = \"20m\"\n");
    let (reminded, _) = replay(&[&input], &["--config", &cfg]);
    let retrains: Vec<&serde_json::Value> = reminded.iter().filter(|c| c["command"] == "retrain").collect();
    assert!(retrains.len() >= 2, "the drift persists, so a 20 min reminder retrains again: {retrains:#?}");
    let times: Vec<i64> = retrains.iter().map(|c| millis(&c["decided_at"])).collect();
    for w in times.windows(2) {
        assert!(w[1] - w[0] >= 1_200_000, "retrains closer than the reminder: {times:?}");
    }
    let started = &retrains[0]["evidence"]["episode"]["started_at"];
    for (i, c) in retrains.iter().enumerate().skip(1) {
        let e = &c["evidence"]["episode"];
        assert_eq!(
            (&e["why"], &e["started_at"], e["retrains"].as_u64()),
            (&"reminder".into(), started, Some(i as u64 + 1))
        );
    }
}

/// Predictions of model `m` v1, 3 per second from `from` to `to` (ms), with feature `x`
/// around `mean`.
fn drift_stream(out: &mut String, from: i64, to: i64, mean: f64, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut t = from;
    while t < to {
        let x: f64 = mean + rng.gen_range(-1.0..1.0) + rng.gen_range(-1.0..1.0);
        let y = rng.gen_range(0.0..1.0);
        out.push_str(&format!(
            "{{\"type\":\"prediction\",\"timestamp\":{t},\"event_id\":\"e{t}\",\"app\":\"a\",\"app_version\":\"1\",\"model\":\"m\",\"model_version\":\"v1\",\"features\":{{\"x\":{x:.3}}},\"prediction\":{y:.3}}}\n"
        ));
        t += rng.gen_range(200..467);
    }
}

#[test]
fn a_drift_that_clears_and_returns_is_a_new_episode() {
    let dir = temp_dir("episodes");
    let (t0, h) = (1_764_000_000_000i64, 3_600_000i64);
    let mut text = String::new();
    drift_stream(&mut text, t0, t0 + 12 * h, 0.0, 1);
    drift_stream(&mut text, t0 + 12 * h, t0 + 36 * h, 1.5, 2);
    drift_stream(&mut text, t0 + 36 * h, t0 + 48 * h, 0.0, 3);
    drift_stream(&mut text, t0 + 48 * h, t0 + 60 * h, 1.5, 4);
    let input = dir.join("episodes.jsonl");
    std::fs::write(&input, text).expect("write events");
    let (cmds, _) = replay(&[&input], &[]);
    let retrains: Vec<&serde_json::Value> = cmds.iter().filter(|c| c["command"] == "retrain").collect();
    let summary: Vec<(i64, String)> = retrains
        .iter()
        .map(|c| ((millis(&c["decided_at"]) - t0) / 60_000, c["evidence"]["episode"]["why"].to_string()))
        .collect();
    // 24 h of drift, then 12 h of the reference, then drift again: two episodes, one retrain
    // each, soon after each shift (the 6 h cooldown alone would give four, then two).
    assert_eq!(retrains.len(), 2, "{summary:?}");
    for (c, shift) in retrains.iter().zip([12 * h, 48 * h]) {
        let at = millis(&c["decided_at"]) - t0;
        assert!(
            (shift..shift + h).contains(&at),
            "retrain {} min after start, shift at {} min: {summary:?}",
            at / 60_000,
            shift / 60_000
        );
        assert_eq!(c["evidence"]["episode"]["why"], "new_episode", "{summary:?}");
        assert_eq!(c["evidence"]["drifted_features"][0]["name"], "x");
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

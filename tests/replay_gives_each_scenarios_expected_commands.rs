//! For every scenario, `replay` of `simulate` output gives the commands the scenario was built
//! to produce under the default policy, and no others. Prints the detection delay of each.

mod common;

use common::*;
use driftwatch::sim;

fn check(name: &str) {
    let dir = temp_dir(&format!("scenario-{name}"));
    let scenario = sim::scenario(name).expect("scenario exists");
    let file = simulate(&dir, name, 1, &[]);
    let (commands, stderr) = replay(&[&file], &[]);
    let mut got: Vec<String> = commands.iter().map(summary).collect();
    let mut want: Vec<String> = scenario
        .expected
        .iter()
        .map(|e| format!("{} {}/{}/{} {}", e.command, e.kind.as_str(), e.name, e.version, e.reason))
        .collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "scenario {name}: commands differ\nstderr:\n{stderr}");
    // A promote never precedes a review or rollback of the same version.
    for p in commands.iter().filter(|c| c["command"] == "promote") {
        let adverse_after = commands.iter().find(|c| {
            (c["command"] == "review" || c["command"] == "rollback")
                && ["kind", "name", "version"].iter().all(|k| c["target"][k] == p["target"][k])
                && millis(&c["decided_at"]) >= millis(&p["decided_at"])
        });
        assert!(
            adverse_after.is_none(),
            "scenario {name}: {} before {}",
            summary(p),
            adverse_after.map(summary).unwrap_or_default()
        );
    }
    for e in &scenario.expected {
        let c = commands
            .iter()
            .find(|c| c["target"]["name"] == e.name.as_str() && c["target"]["version"] == e.version.as_str())
            .expect("command present");
        if !e.drifted.is_empty() {
            let mut names: Vec<&str> = c["evidence"]["drifted_features"]
                .as_array()
                .expect("drifted_features")
                .iter()
                .filter_map(|d| d["name"].as_str())
                .collect();
            names.sort_unstable();
            assert_eq!(
                names,
                e.drifted.iter().map(String::as_str).collect::<Vec<_>>(),
                "scenario {name}: drifted features"
            );
            for d in c["evidence"]["drifted_features"].as_array().into_iter().flatten() {
                let (value, threshold) =
                    (d["value"].as_f64().expect("value"), d["threshold"].as_f64().expect("threshold"));
                assert!(value >= threshold, "{d}");
                assert_eq!(d["statistic"], "psi");
            }
        }
        if let Some(fault) = scenario.fault_at {
            let delay = (millis(&c["decided_at"]) - sim::EPOCH - fault) as f64 / 1000.0;
            println!("{name}: {} decided {delay:.0} s after the fault", summary(c));
            assert!(delay > 0.0, "decided before the fault");
        }
        assert!(!c["command_id"].as_str().unwrap_or("").is_empty());
        assert_eq!(c["dry_run"], false);
        assert_eq!(c["policy"], "default");
        assert_eq!(c["schema_version"], 1);
    }
}

#[test]
fn canary_error_regression_is_rolled_back() {
    check("canary-error");
}

#[test]
fn healthy_canary_is_promoted_not_rolled_back() {
    check("aa-control");
}

#[test]
fn low_traffic_decides_nothing() {
    check("low-traffic");
}

#[test]
fn latency_regression_is_rolled_back() {
    check("latency-regression");
}

#[test]
fn full_rollout_is_compared_with_pre_switch_baseline() {
    check("full-rollout");
}

#[test]
fn model_error_regression_rolls_back_the_model_only() {
    check("model-error");
}

#[test]
fn numeric_drift_triggers_retrain_naming_the_feature() {
    check("numeric-drift");
}

#[test]
fn categorical_drift_triggers_retrain_naming_the_feature() {
    check("categorical-drift");
}

#[test]
fn stationary_stream_and_tiny_shift_never_retrain() {
    check("stationary");
}

#[test]
fn accuracy_regression_is_rolled_back() {
    check("accuracy-regression");
}

#[test]
fn accuracy_inside_review_band_is_reviewed() {
    check("accuracy-review");
}

#[test]
fn bad_input_mix_is_rolled_back_like_clean() {
    check("bad-input");
}

#[test]
fn mixed_fleet_decides_each_fault() {
    check("mixed");
}

#[test]
fn disordered_fleet_decides_each_fault() {
    check("disorder");
}

#[test]
fn many_targets_roll_back_exactly_the_regressing_ones() {
    check("many-targets");
}

#[test]
fn ten_thousand_targets_roll_back_exactly_the_regressing_ones() {
    check("ten-thousand-targets");
}

#[test]
fn thousands_of_thin_services_roll_back_exactly_the_failing_canaries() {
    check("services");
}

#[test]
fn demo_fleet_decides_each_fault() {
    check("demo");
}

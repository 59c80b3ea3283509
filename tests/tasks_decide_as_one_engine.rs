//! The targets of a stream split over tasks — the unit of work instances of one consumer group
//! share — give exactly the commands one engine gives: same ids, same `decided_at`, same
//! evidence (apart from `input_offsets`, which say how far the input was read when a task
//! decided). Every scenario, several task counts.
//!
//! Commands of different targets may come out in another order (a task decides for its
//! targets when event time reaches it); each target's own come in the same order.

use driftwatch::command::Command;
use driftwatch::config::Config;
use driftwatch::engine::tasks::{Follow, Tasks};
use driftwatch::engine::Engine;
use driftwatch::replay::simulated_into;
use driftwatch::sim;
use serde_json::Value;

/// A command as compared: everything but the wall clock and the input offsets.
fn comparable(c: &Command) -> Value {
    let mut v = serde_json::to_value(c).expect("a command serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("issued_at");
        if let Some(e) = o.get_mut("evidence").and_then(Value::as_object_mut) {
            e.remove("input_offsets");
        }
    }
    v
}

fn brief(c: &Value) -> String {
    format!(
        "{} {}/{}/{} {} at {}",
        c["command"], c["target"]["kind"], c["target"]["name"], c["target"]["version"], c["reason"], c["decided_at"]
    )
}

/// The commands of scenario `name` from one engine (`tasks` 0) or `tasks` tasks that learn the
/// stream's time as `follow` says.
fn commands_of(name: &str, tasks: usize, follow: Follow) -> Vec<Value> {
    let scenario = sim::scenario(name).expect("scenario exists");
    let out = match tasks {
        0 => simulated_into(scenario, 1, &mut Engine::new(Config::default())),
        n => simulated_into(scenario, 1, &mut Tasks::new(Config::default(), n).following(follow)),
    };
    out.iter().map(comparable).collect()
}

fn check(name: &str, counts: &[usize]) {
    let one = commands_of(name, 0, Follow::Stream);
    let expected = sim::scenario(name).map(|s| s.expected.len()).unwrap_or_default();
    assert!(one.len() >= expected, "{name}: {} commands, the scenario expects {expected}", one.len());
    for (n, follow) in counts.iter().flat_map(|&n| [Follow::Stream, Follow::Own, Follow::Ahead].map(|f| (n, f))) {
        let split = commands_of(name, n, follow);
        let missing: Vec<String> = one.iter().filter(|c| !split.contains(c)).map(brief).collect();
        let extra: Vec<String> = split.iter().filter(|c| !one.contains(c)).map(brief).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{name} in {n} tasks (following {follow:?}): one engine's commands missing: {missing:#?}\nnot from one engine: {extra:#?}"
        );
        // Tasks decide for their targets as event time reaches them, so commands of different
        // targets may come out in another order; each target's own come in the same order.
        let of_target = |v: &[Value], c: &Value| -> Vec<Value> {
            v.iter().filter(|d| d["target"] == c["target"]).cloned().collect()
        };
        for c in &one {
            assert_eq!(
                of_target(&one, c),
                of_target(&split, c),
                "{name} in {n} tasks (following {follow:?}): {}'s commands in another order",
                brief(c)
            );
        }
    }
}

#[test]
fn every_scenario_in_two_three_and_eight_tasks() {
    for name in sim::SCENARIOS {
        // The two large fleets run with fewer task counts below (they take longest).
        if name == "ten-thousand-targets" || name == "services" {
            continue;
        }
        check(name, &[2, 3, 8]);
    }
}

#[test]
fn large_fleets_in_five_tasks() {
    check("ten-thousand-targets", &[5]);
    check("services", &[5]);
}

#[test]
fn one_task_is_one_engine() {
    check("mixed", &[1]);
}

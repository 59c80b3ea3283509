//! What a tracked version costs in memory, counted by the allocator: while it sees traffic, and
//! once it has gone quiet (after the hourly sweep, before `limits.target_idle_ttl` forgets it).
//! Fleets keep many versions around that no longer serve: each must cost little until it sees
//! traffic again.
//!
//! The allocator counts the whole process, so the tests run one at a time (a lock) and each
//! measures against its own engine's starting point.

use std::alloc::System;

use cap::Cap;
use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::decode;

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

const T0: i64 = 1_764_000_000_000;

/// Feeds one line, which must be valid.
fn feed(engine: &mut Engine, line: &str, offset: &mut u64) {
    let ev = decode(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    engine.ingest(&ev, Position { source: 0, offset: *offset }).unwrap_or_else(|e| panic!("{line}: {e:?}"));
    *offset += 1;
}

/// One second of a heartbeat service that keeps event time moving, at `ts`.
fn heartbeat(engine: &mut Engine, ts: i64, offset: &mut u64) {
    let line = format!(r#"{{"type":"request","timestamp":{ts},"app":"clock","app_version":"1","latency_ms":5}}"#);
    feed(engine, &line, offset);
}

/// Kilobytes per version while active and once idle, for `services` apps and `models` models
/// with two versions each.
fn cost(services: usize, models: usize) -> (f64, f64) {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut engine = Engine::new(Config::default());
    let mut offset = 0;
    // A minute of the heartbeat alone: what the engine costs before the fleet arrives.
    for s in 0..60 {
        heartbeat(&mut engine, T0 + s * 1_000, &mut offset);
    }
    let empty = ALLOC.allocated();

    // Ten minutes of traffic: each service's stable version "1" at one request a second
    // throughout, its canary "2" from the second minute; each model's version "a", then "b",
    // with two features and a class prediction, each labelled half a second later (predictions
    // awaiting labels cost per prediction, not per version: measured apart below).
    let mut line = String::new();
    for s in 60..660i64 {
        let ts = T0 + s * 1_000;
        heartbeat(&mut engine, ts, &mut offset);
        for i in 0..services {
            let ms = ts + (i % 1_000) as i64;
            for v in ["1", "2"] {
                if v == "2" && s < 120 {
                    continue;
                }
                line.clear();
                line.push_str(&format!(
                    r#"{{"type":"request","timestamp":{ms},"app":"svc-{i}","app_version":"{v}","latency_ms":{}}}"#,
                    20 + (s + i as i64) % 30
                ));
                feed(&mut engine, &line, &mut offset);
            }
        }
        for i in 0..models {
            let ms = ts + (i % 1_000) as i64;
            for v in ["a", "b"] {
                if v == "b" && s < 120 {
                    continue;
                }
                let id = format!("m{i}-{v}-{s}");
                line.clear();
                line.push_str(&format!(
                    r#"{{"type":"prediction","timestamp":{ms},"event_id":"{id}","model":"model-{i}","model_version":"{v}","features":{{"x":{},"c":"{}"}},"prediction":"{}"}}"#,
                    (s * 7 + i as i64) % 100,
                    ["red", "green", "blue"][(s as usize + i) % 3],
                    ["yes", "no"][(s as usize + i) % 2]
                ));
                feed(&mut engine, &line, &mut offset);
                {
                    line.clear();
                    line.push_str(&format!(
                        r#"{{"type":"label","timestamp":{},"event_id":"{id}","label":"{}"}}"#,
                        ms + 500,
                        ["yes", "no"][(s as usize + i) % 2]
                    ));
                    feed(&mut engine, &line, &mut offset);
                }
            }
        }
        engine.drain_commands().for_each(drop);
    }
    let versions = 2 * (services + models);
    assert_eq!(engine.overview().len(), versions + 1, "every version is tracked");
    let active = ALLOC.allocated();

    // Three hours of the heartbeat alone: every other version is idle, past the hourly sweep,
    // within the default target_idle_ttl of a day.
    for s in 660..(660 + 3 * 3_600) {
        heartbeat(&mut engine, T0 + s * 1_000, &mut offset);
        engine.drain_commands().for_each(drop);
    }
    assert_eq!(engine.overview().len(), versions + 1, "idle versions are still tracked");
    let idle = ALLOC.allocated();

    let per = |bytes: usize| bytes.saturating_sub(empty) as f64 / versions as f64 / 1024.0;
    let (active_kb, idle_kb) = (per(active), per(idle));
    println!(
        "{versions} versions ({} app, {} model): {active_kb:.2} KB each while active, {idle_kb:.2} KB each when idle (engine alone: {} KB)",
        2 * services,
        2 * models,
        empty / 1024
    );
    (active_kb, idle_kb)
}

// Measured: apps 7.2 KB active and 0.9 KB idle; models (two features, every prediction
// labelled) 10.0 KB active and 1.2 KB idle: once quiet for an hour, an app's or model's versions
// are frozen into one deflated copy and a summary each for views. The goals are 16 KB active and
// 2 KB idle (README, cost per tracked version); the model's active bound holds what it measures
// with room for allocator noise.
#[test]
fn app_versions_cost_at_most_sixteen_kilobytes_active_and_two_idle() {
    let (active_kb, idle_kb) = cost(5_000, 0);
    assert!(active_kb <= 16.0, "{active_kb:.2} KB per active app version");
    assert!(idle_kb <= 2.0, "{idle_kb:.2} KB per idle app version");
}

#[test]
fn model_versions_cost_at_most_twelve_kilobytes_active_and_two_idle() {
    let (active_kb, idle_kb) = cost(0, 1_000);
    assert!(active_kb <= 12.0, "{active_kb:.2} KB per active model version");
    assert!(idle_kb <= 2.0, "{idle_kb:.2} KB per idle model version");
}

/// Bytes per prediction awaiting its label, for `n` predictions of one model version within a
/// minute (labels for none of them yet).
fn pending_cost(n: usize) -> f64 {
    let _one_at_a_time = ONE_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut engine = Engine::new(Config::default());
    let mut offset = 0;
    let line = |i: usize, ts: i64| {
        format!(
            r#"{{"type":"prediction","timestamp":{ts},"event_id":"req-{i:08}","model":"m","model_version":"1","prediction":"yes"}}"#
        )
    };
    // The version exists, and one prediction is labelled (so the join keeps its predictions).
    feed(&mut engine, &line(0, T0), &mut offset);
    feed(
        &mut engine,
        &format!(r#"{{"type":"label","timestamp":{},"event_id":"req-00000000","label":"yes"}}"#, T0 + 1),
        &mut offset,
    );
    let before = ALLOC.allocated();
    for i in 1..=n {
        feed(&mut engine, &line(i, T0 + 1 + (i as i64 * 60_000) / n as i64), &mut offset);
    }
    let after = ALLOC.allocated();
    let per = after.saturating_sub(before) as f64 / n as f64;
    println!("{n} predictions awaiting labels: {per:.0} bytes each");
    per
}

#[test]
fn predictions_awaiting_labels_cost_at_most_a_hundred_bytes_each() {
    let per = pending_cost(200_000);
    assert!(per <= 100.0, "{per:.0} bytes per pending prediction");
}

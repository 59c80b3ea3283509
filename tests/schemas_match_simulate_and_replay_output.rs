//! The JSON Schemas in `schemas/` describe what driftwatch really reads and writes: every event
//! `simulate` produces validates against `event.schema.json`, every command `replay` writes
//! validates against `command.schema.json`, and both schemas reject what the contract forbids.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use jsonschema::Validator;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_driftwatch");

fn load_schema(file: &str) -> Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
    assert_eq!(schema["$schema"], "https://json-schema.org/draft/2020-12/schema", "{file} must declare draft 2020-12");
    assert_eq!(schema["$id"], format!("https://driftwatch.dev/schemas/{file}"), "{file} has the wrong $id");
    jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{file} is not a valid draft 2020-12 schema: {e}"))
}

fn errors(v: &Validator, instance: &Value) -> Vec<String> {
    v.iter_errors(instance).map(|e| format!("{e} (at {})", e.instance_path)).collect()
}

/// Validates every line of JSON Lines output; panics on the first invalid one with its line
/// number. Returns the parsed lines.
fn validate_lines(v: &Validator, what: &str, text: &str) -> Vec<Value> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{what}: line {} is not JSON ({e}): {line}", i + 1));
        let errs = errors(v, &value);
        assert!(
            errs.is_empty(),
            "{what}: line {} does not match the schema:\n  {}\nline: {line}",
            i + 1,
            errs.join("\n  ")
        );
        out.push(value);
    }
    out
}

fn simulate(args: &[&str]) -> String {
    let out = Command::new(BIN).arg("simulate").args(args).output().expect("run driftwatch simulate");
    assert!(out.status.success(), "simulate {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("simulate output is UTF-8")
}

fn replay(input: &str) -> String {
    let mut child = Command::new(BIN)
        .args(["replay", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run driftwatch replay");
    let mut stdin = child.stdin.take().expect("replay stdin");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || {
        stdin.write_all(input.as_bytes()).expect("write replay input");
    });
    let out = child.wait_with_output().expect("wait for replay");
    writer.join().expect("writer thread");
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("replay output is UTF-8")
}

#[test]
fn simulated_events_and_replayed_commands_match_the_schemas() {
    let events = load_schema("event.schema.json");
    let commands = load_schema("command.schema.json");
    let runs: [&[&str]; 3] = [
        &["--scenario", "mixed", "--seed", "3", "--duration", "20m"],
        &["--scenario", "accuracy-review", "--duration", "20m"],
        &["--scenario", "categorical-drift"],
    ];
    let mut by_command: BTreeMap<String, usize> = BTreeMap::new();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    let mut drift_commands = 0;
    for args in runs {
        let stream = simulate(args);
        let evs = validate_lines(&events, &format!("simulate {args:?}"), &stream);
        assert!(!evs.is_empty(), "simulate {args:?} produced no events");
        for e in &evs {
            *by_type.entry(e["type"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
        }
        let out = replay(&stream);
        let cmds = validate_lines(&commands, &format!("replay of simulate {args:?}"), &out);
        for c in &cmds {
            *by_command.entry(c["command"].as_str().unwrap_or("?").to_owned()).or_default() += 1;
            if c["evidence"].get("drifted_features").is_some() {
                drift_commands += 1;
            }
        }
    }
    eprintln!("validated events by type: {by_type:?}; commands: {by_command:?}");
    for t in ["request", "prediction", "error", "label"] {
        assert!(by_type.get(t).copied().unwrap_or(0) > 0, "no `{t}` event was validated: {by_type:?}");
    }
    for c in ["rollback", "review", "retrain"] {
        assert!(by_command.get(c).copied().unwrap_or(0) > 0, "no `{c}` command was validated: {by_command:?}");
    }
    assert!(drift_commands > 0, "no drift evidence was validated");
}

/// Hand-written events: the schema and the real decoder must agree on each.
#[test]
fn event_schema_accepts_and_rejects_what_the_decoder_does() {
    let v = load_schema("event.schema.json");
    let cases: Vec<(&str, Value, bool)> = vec![
        (
            "request, RFC 3339 timestamp",
            json!({"type": "request", "timestamp": "2025-11-24T16:27:41.120Z", "app": "checkout", "app_version": "2.4.0", "latency_ms": 35.3}),
            true,
        ),
        (
            "request, epoch ms, offset, unknown keys ignored",
            json!({"type": "request", "timestamp": 1_764_001_661_120_i64, "app": "checkout", "app_version": "2.4.0", "trace_id": "abc", "tenant": {"id": 7}}),
            true,
        ),
        (
            "request with an offset timestamp",
            json!({"type": "request", "timestamp": "2025-11-24T17:27:41+01:00", "app": "a", "app_version": "1"}),
            true,
        ),
        (
            "prediction with everything",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "model": "fraud", "model_version": "7", "app": "checkout", "app_version": "2.4.0", "latency_ms": 0, "features": {"amount": 17.4, "country": "US", "is_new": false, "age": null}, "prediction": 0.93}),
            true,
        ),
        (
            "prediction with a class",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "model": "fraud", "model_version": "7", "prediction": "legit"}),
            true,
        ),
        (
            "error naming a model only",
            json!({"type": "error", "timestamp": 1_764_001_661_120_i64, "model": "fraud", "model_version": "7", "error": "timeout"}),
            true,
        ),
        (
            "label",
            json!({"type": "label", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "label": "fraud"}),
            true,
        ),
        (
            "prediction without event_id",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "model": "fraud", "model_version": "7"}),
            false,
        ),
        (
            "request with latency_ms -1",
            json!({"type": "request", "timestamp": 1_764_001_661_120_i64, "app": "checkout", "app_version": "2.4.0", "latency_ms": -1}),
            false,
        ),
        (
            "request without app_version",
            json!({"type": "request", "timestamp": 1_764_001_661_120_i64, "app": "checkout"}),
            false,
        ),
        (
            "request with an empty app",
            json!({"type": "request", "timestamp": 1_764_001_661_120_i64, "app": "", "app_version": "1"}),
            false,
        ),
        (
            "prediction with app but no app_version",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "model": "fraud", "model_version": "7", "app": "checkout"}),
            false,
        ),
        (
            "prediction with a nested feature",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "model": "fraud", "model_version": "7", "features": {"x": [1, 2]}}),
            false,
        ),
        (
            "prediction with a boolean prediction",
            json!({"type": "prediction", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "model": "fraud", "model_version": "7", "prediction": true}),
            false,
        ),
        (
            "error naming nothing",
            json!({"type": "error", "timestamp": 1_764_001_661_120_i64, "error": "timeout"}),
            false,
        ),
        (
            "error with a numeric error kind",
            json!({"type": "error", "timestamp": 1_764_001_661_120_i64, "app": "a", "app_version": "1", "error": 500}),
            false,
        ),
        ("label without label", json!({"type": "label", "timestamp": 1_764_001_661_120_i64, "event_id": "e1"}), false),
        (
            "label with a null label",
            json!({"type": "label", "timestamp": 1_764_001_661_120_i64, "event_id": "e1", "label": null}),
            false,
        ),
        ("unknown type", json!({"type": "click", "timestamp": 1_764_001_661_120_i64}), false),
        ("missing timestamp", json!({"type": "request", "app": "a", "app_version": "1"}), false),
        (
            "timestamp not RFC 3339",
            json!({"type": "request", "timestamp": "24/11/2025 16:27", "app": "a", "app_version": "1"}),
            false,
        ),
        (
            "timestamp in seconds (before 2000)",
            json!({"type": "request", "timestamp": 1_764_001_661_i64, "app": "a", "app_version": "1"}),
            false,
        ),
        ("not an object", json!([1, 2, 3]), false),
    ];
    let mut disagreements = Vec::new();
    for (name, event, expected) in &cases {
        let schema_ok = errors(&v, event).is_empty();
        let line = serde_json::to_vec(event).expect("serialize");
        let decoder = driftwatch::event::decode(&line);
        let decoder_ok = decoder.is_ok();
        if schema_ok != *expected || decoder_ok != *expected {
            disagreements.push(format!(
                "{name}: expected {}, schema says {}, decoder says {:?}",
                if *expected { "valid" } else { "invalid" },
                if schema_ok { "valid" } else { "invalid" },
                decoder.map(|_| ()).map_err(|e| e.to_string()),
            ));
        }
    }
    assert!(disagreements.is_empty(), "event schema / decoder disagreements:\n  {}", disagreements.join("\n  "));

    // The one documented gap: JSON Schema's `integer` is mathematical, so it cannot tell
    // `1500000000000.0` or `1.5e12` from `1500000000000`; the decoder wants the integer literal.
    let float_ts = br#"{"type":"request","timestamp":1.5e12,"app":"a","app_version":"1"}"#;
    let as_value: Value = serde_json::from_slice(float_ts).expect("JSON");
    assert!(errors(&v, &as_value).is_empty());
    assert!(driftwatch::event::decode(float_ts).is_err());
}

fn sample_command() -> Value {
    json!({
        "command": "rollback",
        "command_id": "26e9a772-0fd1-80e1-a852-eea05183aad9",
        "target": {"kind": "app", "name": "checkout", "version": "2.4.0", "baseline_version": "2.3.0"},
        "reason": "error_rate",
        "decided_at": "2025-11-24T16:10:21.000Z",
        "issued_at": "2026-11-26T03:43:55.777Z",
        "evidence": {
            "test": "sequential_error_rate_ratio",
            "statistic": "e_value",
            "value": 121.06,
            "threshold": 111.11,
            "window": {"start": "2025-11-24T16:10:00.000Z", "end": "2025-11-24T16:10:21.000Z"},
            "input_offsets": {"-": 54430}
        },
        "policy": "default",
        "dry_run": false,
        "schema_version": 1
    })
}

fn sample_retrain() -> Value {
    let mut c = sample_command();
    c["command"] = json!("retrain");
    c["reason"] = json!("feature_drift");
    c["target"] = json!({"kind": "model", "name": "fraud", "version": "7", "baseline_version": null});
    c["evidence"] = json!({
        "statistic": "psi",
        "threshold": 0.2,
        "drifted_features": [{"name": "country", "statistic": "psi", "value": 0.25, "threshold": 0.2}],
        "window": {"start": "2025-11-24T16:38:00.000Z", "end": "2025-11-24T16:48:00.000Z"},
        "input_offsets": {"-": 58361}
    });
    c
}

#[test]
fn command_schema_rejects_what_the_contract_forbids() {
    let v = load_schema("command.schema.json");
    let ok = |c: &Value| errors(&v, c);
    assert_eq!(ok(&sample_command()), Vec::<String>::new());
    assert_eq!(ok(&sample_retrain()), Vec::<String>::new());

    let mut bad: Vec<(&str, Value)> = Vec::new();
    let mut c = sample_command();
    c["command"] = json!("restart");
    bad.push(("unknown command", c));
    let mut c = sample_retrain();
    c["evidence"].as_object_mut().expect("evidence object").remove("drifted_features");
    bad.push(("feature_drift retrain without drifted_features", c));
    let mut c = sample_retrain();
    c["evidence"]["drifted_features"] = json!([]);
    bad.push(("feature_drift retrain with no drifted features", c));
    let mut c = sample_retrain();
    c["evidence"]["drifted_features"] = json!([{"name": "country", "value": 0.25}]);
    bad.push(("drifted feature without statistic and threshold", c));
    let mut c = sample_retrain();
    c["reason"] = json!("prediction_drift");
    bad.push(("prediction_drift without a `prediction` entry", c));
    let mut c = sample_command();
    c["reason"] = json!("bored");
    bad.push(("unknown reason", c));
    let mut c = sample_command();
    c["command"] = json!("promote");
    bad.push(("promote for error_rate", c));
    let mut c = sample_command();
    c["reason"] = json!("accuracy");
    bad.push(("accuracy decision about an app", c));
    let mut c = sample_command();
    c["command_id"] = json!("not-a-uuid");
    bad.push(("command_id not a UUID", c));
    let mut c = sample_command();
    c["target"]["kind"] = json!("service");
    bad.push(("unknown target kind", c));
    let mut c = sample_command();
    c["target"].as_object_mut().expect("target object").remove("baseline_version");
    bad.push(("target without baseline_version", c));
    let mut c = sample_command();
    c["target"]["extra"] = json!(1);
    bad.push(("extra key in target", c));
    let mut c = sample_command();
    c["extra"] = json!(1);
    bad.push(("extra top-level key", c));
    let mut c = sample_command();
    c["decided_at"] = json!("yesterday");
    bad.push(("decided_at not a date-time", c));
    let mut c = sample_command();
    c["schema_version"] = json!(2);
    bad.push(("schema_version 2", c));
    let mut c = sample_command();
    c["evidence"].as_object_mut().expect("evidence object").remove("input_offsets");
    bad.push(("evidence without input_offsets", c));
    let mut c = sample_command();
    c["evidence"]["window"] = json!({"start": "2025-11-24T16:10:00.000Z"});
    bad.push(("evidence window without end", c));

    let accepted: Vec<&str> = bad.iter().filter(|(_, c)| ok(c).is_empty()).map(|(name, _)| *name).collect();
    assert!(accepted.is_empty(), "command schema accepted invalid commands: {accepted:?}");
}

/// The `bad-input` scenario mixes bad lines of every kind into a clean stream. Every line the
/// decoder accepts must be valid against the schema, and every line the schema rejects must be
/// dead-lettered; the decoder may reject more only for what JSON Schema cannot express.
#[test]
fn event_schema_agrees_with_the_dead_letter_verdicts_on_bad_input() {
    let v = load_schema("event.schema.json");
    let out = Command::new(BIN)
        .args(["simulate", "--scenario", "bad-input", "--duration", "10m"])
        .output()
        .expect("run driftwatch simulate");
    assert!(out.status.success(), "simulate bad-input failed: {}", String::from_utf8_lossy(&out.stderr));
    let stream = out.stdout;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir();
    let input = dir.join(format!("driftwatch-schemas-{}-{nanos}.jsonl", std::process::id()));
    let dead = dir.join(format!("driftwatch-schemas-{}-{nanos}.dead.jsonl", std::process::id()));
    std::fs::write(&input, &stream).expect("write temp input");
    let run = Command::new(BIN)
        .arg("replay")
        .arg("--quiet")
        .arg("--dead-letter")
        .arg(&dead)
        .arg(&input)
        .output()
        .expect("run driftwatch replay");
    let dead_text = std::fs::read_to_string(&dead).unwrap_or_default();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&dead);
    assert!(run.status.success(), "replay failed: {}", String::from_utf8_lossy(&run.stderr));

    let mut rejected: BTreeMap<u64, String> = BTreeMap::new();
    for line in dead_text.lines() {
        let d: Value = serde_json::from_str(line).expect("dead-letter line is JSON");
        let n = d["line"].as_u64().expect("dead-letter `line`");
        rejected.insert(n, d["reason"].as_str().unwrap_or("?").to_owned());
    }
    assert!(rejected.len() > 100, "bad-input produced only {} bad lines", rejected.len());

    // What only the decoder can check: timestamp range of strings, distance ahead of the
    // stream, numbers too large to be finite.
    let beyond_schema = ["bad_timestamp", "future_timestamp", "non_finite_number"];
    let mut problems = Vec::new();
    let mut checked = 0;
    for (i, raw) in stream.split(|&b| b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        let n = i as u64 + 1;
        let verdict = rejected.get(&n);
        let Ok(value) = serde_json::from_slice::<Value>(raw) else {
            if verdict.is_none() {
                problems.push(format!("line {n}: not JSON but not dead-lettered"));
            }
            continue;
        };
        checked += 1;
        let errs = errors(&v, &value);
        let shown = String::from_utf8_lossy(raw);
        match (errs.is_empty(), verdict) {
            (false, None) => problems.push(format!(
                "line {n}: accepted by driftwatch, rejected by the schema ({}): {shown}",
                errs.join("; ")
            )),
            (true, Some(reason)) if !beyond_schema.contains(&reason.as_str()) => {
                problems.push(format!("line {n}: dead-lettered as {reason}, valid against the schema: {shown}"))
            }
            _ => {}
        }
    }
    assert!(checked > 1000);
    assert!(
        problems.is_empty(),
        "{} disagreements between event.schema.json and the decoder, first ones:\n  {}",
        problems.len(),
        problems.iter().take(10).cloned().collect::<Vec<_>>().join("\n  ")
    );
}

/// `schemas/openapi.yaml` bundles `command.schema.json` (its `$defs` as `Command…` components),
/// so generated clients resolve it offline: the bundled copy is the schema, nothing more or less.
#[test]
fn openapi_bundles_the_command_schema_unchanged() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas");
    let api: Value =
        serde_yaml::from_str(&std::fs::read_to_string(root.join("openapi.yaml")).expect("read openapi.yaml"))
            .expect("openapi.yaml is YAML");
    let mut command: Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("command.schema.json")).expect("read")).expect("JSON");
    let obj = command.as_object_mut().expect("object");
    let defs = obj.remove("$defs").unwrap_or_default();
    obj.remove("$schema");
    obj.remove("$id");
    let component = |def: &str| -> String {
        let camel: String = def.split('_').map(|w| w[..1].to_uppercase() + &w[1..]).collect();
        format!("Command{camel}")
    };
    fn rename(v: &mut Value, component: &dyn Fn(&str) -> String) {
        match v {
            Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    match (k.as_str(), x.as_str().and_then(|r| r.strip_prefix("#/$defs/"))) {
                        ("$ref", Some(def)) => *x = json!(format!("#/components/schemas/{}", component(def))),
                        _ => rename(x, component),
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| rename(x, component)),
            _ => {}
        }
    }
    rename(&mut command, &component);
    let schemas = &api["components"]["schemas"];
    assert_eq!(schemas["Command"], command, "openapi.yaml's Command differs from command.schema.json");
    for (def, mut schema) in defs.as_object().cloned().unwrap_or_default() {
        rename(&mut schema, &component);
        assert_eq!(schemas[component(&def)], schema, "openapi.yaml's {} differs from $defs/{def}", component(&def));
    }
    let text = serde_json::to_string(&api).expect("json");
    assert!(!text.contains("\"$ref\":\"http"), "openapi.yaml references a schema outside itself");
}

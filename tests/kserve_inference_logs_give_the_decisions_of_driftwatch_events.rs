//! KServe's inference logger, as it writes to Kafka, gives the decisions the equivalent
//! driftwatch events give.
//!
//! The records are built as KServe's logger (`pkg/logger`) sends them: a CloudEvent per
//! request and, for HTTP 200 only, one per response, both with the request's id; binary mode
//! (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`, `ce_inferenceservicename`,
//! `ce_namespace`, `ce_component`, `ce_endpoint`, `ce_metadata` headers, `content-type` of the
//! request) and structured mode (`application/cloudevents+json`); Open Inference Protocol V2
//! tensors and V1 `instances` / `predictions`. Requests and responses go to different
//! partitions. Labels arrive as driftwatch `label` events whose `event_id` is the `ce_id`.
//!
//! The equivalent driftwatch events: per instance a prediction at the response's time (app and
//! model `namespace/inferenceservice`, version = `model_version`, else the metadata header,
//! else the endpoint; latency = response time − request time), and per instance of a request
//! with no response an error `no_response` at request time + `fleet.response_timeout`.

mod kafka_support;

use std::time::Duration;

use driftwatch::time::format_rfc3339;
use kafka_support::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const T0: i64 = 1_764_000_000_000;
const TIMEOUT_MS: i64 = 10_000;

/// A KServe record: its time, partition, headers and value.
struct Record {
    ts: i64,
    partition: i32,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

/// The generated traffic, both ways.
struct Fleet {
    kserve: Vec<Record>,
    /// Equivalent driftwatch events (predictions and errors), with their times.
    events: Vec<(i64, Value)>,
    /// Label events (driftwatch JSON on their own topic).
    labels: Vec<(i64, Value)>,
}

fn binary_headers(
    ty: &str,
    id: &str,
    ts: i64,
    ns: &str,
    isvc: &str,
    endpoint: &str,
    meta: &str,
) -> Vec<(String, String)> {
    [
        ("ce_specversion", "1.0".to_owned()),
        ("ce_id", id.to_owned()),
        ("ce_source", "http://localhost:9081/".to_owned()),
        ("ce_type", ty.to_owned()),
        ("ce_time", format_rfc3339(ts)),
        ("ce_inferenceservicename", isvc.to_owned()),
        ("ce_namespace", ns.to_owned()),
        ("ce_component", "predictor".to_owned()),
        ("ce_endpoint", endpoint.to_owned()),
        ("ce_metadata", meta.to_owned()),
        ("content-type", "application/json".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// A structured-mode CloudEvent of `shop/ranker` (endpoint `default`) with `metadata`.
fn structured(ty: &str, id: &str, ts: i64, meta: &str, data: Value) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "specversion": "1.0",
        "id": id,
        "source": "http://localhost:9081/",
        "type": ty,
        "time": format_rfc3339(ts),
        "datacontenttype": "application/json",
        "inferenceservicename": "ranker",
        "namespace": "shop",
        "component": "predictor",
        "endpoint": "default",
        "metadata": meta,
        "data": data,
    }))
    .expect("json")
}

const REQ: &str = "org.kubeflow.serving.inference.request";
const RESP: &str = "org.kubeflow.serving.inference.response";

/// Two InferenceServices for 60 minutes of event time:
/// - `fraud/scorer` (Open Inference Protocol V2, binary mode): `default` serves model_version
///   `v1`; from minute 10 a `canary` serving `v2` takes 20% and fails 4% of requests (no
///   response logged) against 0.3%; 30% of its predictions get labels 5 minutes later.
/// - `shop/ranker` (V1, structured mode, 1–3 instances per request, the version in the
///   `X-Model-Version` header kept as metadata, instances as `[clicks, price]` lists): `r7`,
///   whose `price` input shifts at minute 30.
fn fleet(seed: u64) -> Fleet {
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut f = Fleet { kserve: Vec::new(), events: Vec::new(), labels: Vec::new() };
    let end = T0 + 60 * 60_000;
    // fraud/scorer: 12 requests/s.
    let mut t = T0;
    let mut n = 0u64;
    while t < end {
        t += rng.gen_range(40..120);
        n += 1;
        let canary = t >= T0 + 10 * 60_000 && rng.gen_bool(0.2);
        let (endpoint, version, fail) = if canary { ("canary", "v2", 0.04) } else { ("default", "v1", 0.003) };
        let id = format!("fr-{n:07}");
        let amount: f64 = (rng.gen_range(1.0f64..500.0) * 100.0).round() / 100.0;
        let country = ["DE", "FR", "US", "GB"][rng.gen_range(0..4)];
        let request = json!({
            "id": id,
            "inputs": [
                {"name": "amount", "shape": [1], "datatype": "FP32", "data": [amount]},
                {"name": "country", "shape": [1], "datatype": "BYTES", "data": [country]},
            ]
        });
        f.kserve.push(Record {
            ts: t,
            partition: 0,
            headers: binary_headers(REQ, &id, t, "fraud", "scorer", endpoint, "{}"),
            payload: serde_json::to_vec(&request).expect("json"),
        });
        if rng.gen_bool(fail) {
            f.events.push((
                t + TIMEOUT_MS,
                json!({"type": "error", "timestamp": t + TIMEOUT_MS, "event_id": id,
                       "app": "fraud/scorer", "app_version": version, "model": "fraud/scorer",
                       "model_version": version, "error": "no_response"}),
            ));
            continue;
        }
        let latency = rng.gen_range(5..80);
        let r = t + latency;
        let score = ((amount / 500.0) * 0.8 + rng.gen_range(0.0..0.2) * 100.0).round() / 100.0;
        let response = json!({
            "model_name": "scorer", "model_version": version, "id": id,
            "outputs": [{"name": "score", "shape": [1, 1], "datatype": "FP32", "data": [[score]]}]
        });
        f.kserve.push(Record {
            ts: r,
            partition: 1,
            headers: binary_headers(RESP, &id, r, "fraud", "scorer", endpoint, "{}"),
            payload: serde_json::to_vec(&response).expect("json"),
        });
        f.events.push((
            r,
            json!({"type": "prediction", "timestamp": r, "event_id": id, "app": "fraud/scorer",
                   "app_version": version, "model": "fraud/scorer", "model_version": version,
                   "latency_ms": latency, "features": {"amount": amount, "country": country},
                   "prediction": score}),
        ));
        if rng.gen_bool(0.3) {
            let label = if rng.gen_bool(0.9) { score } else { 1.0 - score };
            let lt = r + 5 * 60_000;
            f.labels.push((lt, json!({"type": "label", "timestamp": lt, "event_id": id, "label": label})));
        }
    }
    // shop/ranker: 4 requests/s, structured mode, V1.
    let meta = r#"{"X-Model-Version":["r7"]}"#;
    let mut t = T0 + 7;
    let mut n = 0u64;
    while t < end {
        t += rng.gen_range(150..350);
        n += 1;
        let id = format!("rk-{n:07}");
        let k = rng.gen_range(1..=3usize);
        let shifted = t >= T0 + 30 * 60_000;
        let rows: Vec<(f64, i64)> = (0..k)
            .map(|_| {
                let price = if shifted { rng.gen_range(60.0..160.0) } else { rng.gen_range(10.0..110.0) };
                ((price * 100.0f64).round() / 100.0, rng.gen_range(0..20))
            })
            .collect();
        // Columns `clicks`, `price`: the order in which the equivalent JSON objects list them.
        let instances: Vec<Value> = rows.iter().map(|(p, c)| json!([c, p])).collect();
        f.kserve.push(Record {
            ts: t,
            partition: 0,
            headers: vec![("content-type".into(), "application/cloudevents+json".into())],
            payload: structured(REQ, &id, t, meta, json!({"instances": instances})),
        });
        let latency = rng.gen_range(3..30);
        let r = t + latency;
        let preds: Vec<f64> =
            rows.iter().map(|(p, c)| ((p / 200.0 + *c as f64 / 40.0) * 1000.0).round() / 1000.0).collect();
        f.kserve.push(Record {
            ts: r,
            partition: 1,
            headers: vec![("content-type".into(), "application/cloudevents+json".into())],
            payload: structured(RESP, &id, r, meta, json!({"predictions": preds})),
        });
        for (i, ((price, clicks), pred)) in rows.iter().zip(&preds).enumerate() {
            let event_id = if k > 1 { format!("{id}/{i}") } else { id.clone() };
            f.events.push((
                r,
                json!({"type": "prediction", "timestamp": r, "event_id": event_id, "app": "shop/ranker",
                       "app_version": "r7", "model": "shop/ranker", "model_version": "r7",
                       "latency_ms": latency, "features": {"price": price, "clicks": clicks},
                       "prediction": pred}),
            ));
        }
    }
    // Each partition in event-time order, as the logger writes it.
    f.kserve.sort_by_key(|r| (r.partition, r.ts));
    f.events.sort_by_key(|e| e.0);
    f.labels.sort_by_key(|e| e.0);
    f
}

/// Records KServe never writes, or writes only when something is wrong: each must be a dead
/// letter naming what is wrong, and change nothing.
fn broken(ts: i64) -> Vec<(Record, &'static str)> {
    let ok = br#"{"inputs":[{"name":"amount","shape":[1],"datatype":"FP32","data":[1.0]}]}"#.to_vec();
    let mut no_id = binary_headers(REQ, "x", ts, "fraud", "scorer", "default", "{}");
    no_id.retain(|(k, _)| k != "ce_id");
    let other_type = binary_headers("com.example.other", "b-2", ts, "fraud", "scorer", "default", "{}");
    let good = binary_headers(REQ, "b-3", ts, "fraud", "scorer", "default", "{}");
    let shape = br#"{"inputs":[{"name":"amount","shape":[2],"datatype":"FP32","data":[1.0]}]}"#.to_vec();
    vec![
        (Record { ts, partition: 0, headers: no_id, payload: ok.clone() }, "missing_field"),
        (Record { ts, partition: 0, headers: other_type, payload: ok }, "unknown_type"),
        (Record { ts, partition: 0, headers: good.clone(), payload: b"{not json".to_vec() }, "invalid_json"),
        (Record { ts, partition: 0, headers: good, payload: shape }, "invalid_value"),
    ]
}

/// A test's topics, config, traffic, and the commands of the equivalent driftwatch events.
struct Setup {
    brokers: String,
    dir: TempDir,
    n: Names,
    logs: String,
    cfg: std::path::PathBuf,
    f: Fleet,
    expected: Vec<Value>,
}

fn setup(name: &str) -> Setup {
    let brokers = brokers();
    let dir = temp_dir(name);
    let n = Names::new(name);
    let logs = n.events().replace(".events", ".kserve");
    let cfg = write_config(&dir, &n, "exactly_once", true, "");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text =
        text.replace(&format!("events = [\"{}\"]", n.events()), &format!("events = [\"{}\", \"{logs}\"]", n.events()));
    text.push_str(&format!(
        "formats = {{ \"{logs}\" = \"kserve\", \"{events}\" = \"driftwatch\" }}\n\n[fleet]\nresponse_timeout = \"10s\"\n\n[fleet.kserve]\nversion_header = \"X-Model-Version\"\ncolumns = [\"clicks\", \"price\"]\n",
        events = n.events()
    ));
    std::fs::write(&cfg, &text).expect("config");
    let cfg_s = cfg.to_str().expect("utf-8 path");

    let f = fleet(7);
    let requests = f.kserve.iter().filter(|r| r.partition == 0).count();
    assert!(requests > 40_000, "{requests} requests");

    // The equivalent driftwatch events, replayed.
    let events_file = dir.join("equivalent.jsonl");
    let mut all = f.events.clone();
    all.extend(f.labels.iter().cloned());
    all.sort_by_key(|e| e.0);
    write_jsonl(&events_file, &all);
    let expected = replay_args(&["replay", "-q", "--config", cfg_s, events_file.to_str().expect("path")]);
    let summary = summary_of(&expected);
    // What the traffic is built to give: the canary v2 rolled back for its errors, ranker r7
    // retrained for the shifted price.
    for want in [
        r#""rollback" "app"/"fraud/scorer" "v2" "error_rate""#,
        r#""rollback" "model"/"fraud/scorer" "v2" "error_rate""#,
        r#""retrain" "model"/"shop/ranker" "r7" "feature_drift""#,
    ] {
        assert!(summary.iter().any(|s| s == want), "expected {want} among {summary:#?}");
    }
    create_topic(&brokers, &logs, 2);
    create_topic(&brokers, n.events(), 1);
    Setup { brokers, dir, n, logs, cfg, f, expected }
}

#[test]
fn kserve_records_on_the_broker_decide_as_the_equivalent_driftwatch_events() {
    let Setup { brokers, dir, n, logs, cfg, f, expected } = setup("kserve");
    let cfg_s = cfg.to_str().expect("utf-8 path");

    // The KServe records (requests on partition 0, responses on partition 1) and the labels,
    // on the broker, with four broken records among them.
    let mut records: Vec<WithHeaders> = Vec::new();
    let middle = T0 + 20 * 60_000;
    let bad = broken(middle);
    let mut bad_added = false;
    for r in &f.kserve {
        if !bad_added && r.partition == 0 && r.ts >= middle {
            for (b, _) in &bad {
                records.push((logs.clone(), b.partition, b.headers.clone(), b.payload.clone()));
            }
            bad_added = true;
        }
        records.push((logs.clone(), r.partition, r.headers.clone(), r.payload.clone()));
    }
    for (_, l) in &f.labels {
        records.push((n.events().to_owned(), 0, Vec::new(), l.to_string().into_bytes()));
    }
    produce_with_headers(&brokers, &records);

    // `replay --format kserve` of the topics as kcat dumps them.
    let kserve_dump = kcat_dump(&brokers, &logs, &dir, "kserve.kcat.jsonl");
    let labels_dump = kcat_dump(&brokers, n.events(), &dir, "labels.kcat.jsonl");
    let dead_file = dir.join("dead.jsonl");
    let replayed = replay_args(&[
        "replay",
        "-q",
        "--config",
        cfg_s,
        "--format",
        "kserve",
        "--dead-letter",
        dead_file.to_str().expect("path"),
        kserve_dump.to_str().expect("path"),
        labels_dump.to_str().expect("path"),
    ]);
    assert_eq!(comparable_all(&replayed), comparable_all(&expected), "replay --format kserve of kcat dumps");
    let dead: Vec<Value> = std::fs::read_to_string(&dead_file)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter JSON"))
        .collect();
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap_or("")).collect();
    assert_eq!(reasons, bad.iter().map(|b| b.1).collect::<Vec<_>>(), "dead letters: {dead:#?}");
    assert!(dead[0]["detail"].as_str().unwrap_or("").contains("ce_id"), "{}", dead[0]);
    assert!(dead[3]["detail"].as_str().unwrap_or("").contains("shape"), "{}", dead[3]);

    // `driftwatch run` on the broker.
    let svc = Service::start(&cfg, &brokers, &[], dir.join("run.log"));
    let all = f.kserve.len() as i64 + bad.len() as i64;
    finish_and_compare(svc, &brokers, &n, &[(&logs, 2)], all, &expected);

    let dead_msgs = read_all(&brokers, &[&n.topics.deadletter], true);
    let dead_reasons: Vec<&str> =
        dead_msgs.iter().map(|m| m.headers.get("driftwatch.reason").map_or("", String::as_str)).collect();
    assert_eq!(dead_reasons, bad.iter().map(|b| b.1).collect::<Vec<_>>());
    // Forwarded unchanged, with the original CloudEvent headers.
    assert_eq!(dead_msgs[1].headers.get("ce_type").map(String::as_str), Some("com.example.other"));
    assert_eq!(dead_msgs[2].payload, b"{not json");
}

#[test]
fn a_kill_between_requests_and_their_responses_loses_and_repeats_nothing() {
    let Setup { brokers, dir, n, logs, cfg, f, expected } = setup("kserve-kill");
    // Everything in time order across both partitions (each partition keeps its order), cut
    // at 40%: requests whose response is after the cut wait in the changelog at the kill.
    let mut timed: Vec<(i64, WithHeaders)> =
        f.kserve.iter().map(|r| (r.ts, (logs.clone(), r.partition, r.headers.clone(), r.payload.clone()))).collect();
    timed
        .extend(f.labels.iter().map(|(t, l)| (*t, (n.events().to_owned(), 0, Vec::new(), l.to_string().into_bytes()))));
    timed.sort_by_key(|r| r.0);
    let records: Vec<WithHeaders> = timed.into_iter().map(|r| r.1).collect();
    let cut = records.len() * 2 / 5;
    let in_logs = |rs: &[WithHeaders]| rs.iter().filter(|r| r.0 == logs).count() as i64;

    let mut svc = Service::start(&cfg, &brokers, &[], dir.join("run1.log"));
    produce_with_headers(&brokers, &records[..cut]);
    let first = in_logs(&records[..cut]);
    let committed = wait_until(Duration::from_secs(120), || committed_sum(&brokers, &n.group, &logs, 2) >= first);
    assert!(committed, "the first part was not committed\n{}", svc.log_tail());
    svc.kill9();

    produce_with_headers(&brokers, &records[cut..]);
    let svc = Service::start(&cfg, &brokers, &[], dir.join("run2.log"));
    finish_and_compare(svc, &brokers, &n, &[(&logs, 2)], in_logs(&records), &expected);
}

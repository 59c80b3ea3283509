//! Seldon Core v2's inference topics, as Seldon writes them, give the decisions the equivalent
//! driftwatch events give.
//!
//! The records are built as Seldon's Kafka gateway and model workers write them
//! (`scheduler/pkg/kafka`): the request on `seldon.<namespace>.model.<model>.inputs` with the
//! headers `x-request-id`, `pipeline` (the model) and the caller's `x-` headers; the response
//! on `.outputs` with the request's headers; a failure's error text on
//! `seldon.<namespace>.errors.errors` with the request's headers and `seldon-pipeline-errors`.
//! The gateway writes protobuf `inference.ModelInferRequest` without a type header and the
//! worker answers in protobuf; a client writing JSON to the topic sets `seldon-infer-type:
//! json/inferModelRequest`, which the worker copies onto its JSON response. Each record has
//! its time as the Kafka timestamp. Labels arrive as driftwatch `label` events whose
//! `event_id` is the `x-request-id`.
//!
//! The equivalent driftwatch events: per instance a prediction at the response's time (app and
//! model `namespace/model`, version = the `x-model-version` header; latency = response time −
//! request time), an error `model_error` at the time of an errors-topic record, and an error
//! `no_response` at request time + `fleet.response_timeout` for a request nothing answered.

mod kafka_support;

use driftwatch::fleet::seldon::proto::{InferTensor, InferTensorContents, ModelInferRequest, ModelInferResponse};
use kafka_support::*;
use prost::Message as _;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

const TIMEOUT_MS: i64 = 10_000;

/// A Seldon record: topic, partition, time, headers and value.
struct Record {
    topic: String,
    partition: i32,
    ts: i64,
    headers: Vec<(String, String)>,
    payload: Vec<u8>,
}

/// The topics of one test.
struct Topics {
    namespace: String,
    scorer_in: String,
    scorer_out: String,
    ranker_in: String,
    ranker_out: String,
    errors: String,
}

impl Topics {
    fn new(n: &Names) -> Topics {
        let namespace = n.group.replace("dwt-", "ns-");
        let t = |s: &str| format!("seldon.{namespace}.{s}");
        Topics {
            scorer_in: t("model.scorer.inputs"),
            scorer_out: t("model.scorer.outputs"),
            ranker_in: t("model.ranker.inputs"),
            ranker_out: t("model.ranker.outputs"),
            errors: t("errors.errors"),
            namespace,
        }
    }

    /// Each Seldon topic and its partition count.
    fn all(&self) -> Vec<(&str, i32)> {
        vec![
            (&self.scorer_in, 2),
            (&self.scorer_out, 2),
            (&self.ranker_in, 1),
            (&self.ranker_out, 1),
            (&self.errors, 1),
        ]
    }
}

/// The generated traffic, both ways.
struct Fleet {
    seldon: Vec<Record>,
    /// Equivalent driftwatch events (predictions and errors), with their times.
    events: Vec<(i64, Value)>,
    /// Label events (driftwatch JSON on their own topic).
    labels: Vec<(i64, Value)>,
}

/// Headers of a request the gateway wrote for `model`, and the caller's version header.
fn gateway_headers(id: &str, model: &str, version: &str) -> Vec<(String, String)> {
    vec![
        ("x-model-version".into(), version.into()),
        ("pipeline".into(), model.into()),
        ("x-request-id".into(), id.into()),
        ("traceparent".into(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    ]
}

fn fp32(name: &str, shape: Vec<i64>, data: Vec<f32>) -> InferTensor {
    InferTensor {
        name: name.into(),
        datatype: "FP32".into(),
        shape,
        contents: Some(InferTensorContents { fp32_contents: data, ..Default::default() }),
    }
}

/// Two models for 60 minutes of event time, in namespace `ns`:
/// - `scorer` (protobuf, as the gateway writes it, 2 partitions per topic): `v1`; from minute
///   10 a `v2` takes 20% and fails 4% of requests against 0.3% — half of the failures logged
///   on the errors topic, half never answered; 30% of its predictions get labels 5 minutes
///   later.
/// - `ranker` (JSON with `seldon-infer-type`, 1–3 rows per request as a `[rows, 2]` tensor of
///   `clicks`, `price`): `r7`, whose `price` shifts at minute 30.
fn fleet(seed: u64, t0: i64, tp: &Topics) -> Fleet {
    let ns = &tp.namespace;
    let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
    let mut f = Fleet { seldon: Vec::new(), events: Vec::new(), labels: Vec::new() };
    let end = t0 + 60 * 60_000;
    let scorer = format!("{ns}/scorer");
    let mut t = t0;
    let mut n = 0u64;
    while t < end {
        t += rng.gen_range(40..120);
        n += 1;
        let canary = t >= t0 + 10 * 60_000 && rng.gen_bool(0.2);
        let (version, fail) = if canary { ("v2", 0.04) } else { ("v1", 0.003) };
        let id = format!("sc-{n:07}");
        let partition = (n % 2) as i32;
        let amount = (rng.gen_range(1.0f64..500.0) * 100.0).round() as f32 / 100.0;
        let country = ["DE", "FR", "US", "GB"][rng.gen_range(0..4)];
        let request = ModelInferRequest {
            model_name: "scorer".into(),
            inputs: vec![
                fp32("amount", vec![1], vec![amount]),
                InferTensor {
                    name: "country".into(),
                    datatype: "BYTES".into(),
                    shape: vec![1],
                    contents: Some(InferTensorContents {
                        bytes_contents: vec![country.as_bytes().to_vec()],
                        ..Default::default()
                    }),
                },
            ],
            ..Default::default()
        };
        let headers = gateway_headers(&id, "scorer", version);
        f.seldon.push(Record {
            topic: tp.scorer_in.clone(),
            partition,
            ts: t,
            headers: headers.clone(),
            payload: request.encode_to_vec(),
        });
        let latency = rng.gen_range(5..80);
        let r = t + latency;
        if rng.gen_bool(fail) {
            let (ts, kind) = if rng.gen_bool(0.5) {
                let mut h = headers.clone();
                h.push(("seldon-pipeline-errors".into(), String::new()));
                f.seldon.push(Record {
                    topic: tp.errors.clone(),
                    partition: 0,
                    ts: r,
                    headers: h,
                    payload: b"rpc error: code = Unavailable desc = model scorer_2 is not ready".to_vec(),
                });
                (r, "model_error")
            } else {
                (t + TIMEOUT_MS, "no_response")
            };
            f.events.push((
                ts,
                json!({"type": "error", "timestamp": ts, "event_id": id, "app": scorer, "app_version": version,
                       "model": scorer, "model_version": version, "error": kind}),
            ));
            continue;
        }
        let score = ((f64::from(amount) / 500.0) * 0.8 + rng.gen_range(0.0..0.2) * 100.0).round() as f32 / 100.0;
        // Raw contents, as Triton answers; the worker pins model_version 1.
        let response = ModelInferResponse {
            model_name: "scorer_1".into(),
            model_version: "1".into(),
            outputs: vec![InferTensor {
                name: "score".into(),
                datatype: "FP32".into(),
                shape: vec![1, 1],
                contents: None,
            }],
            raw_output_contents: vec![score.to_le_bytes().to_vec()],
            ..Default::default()
        };
        f.seldon.push(Record {
            topic: tp.scorer_out.clone(),
            partition: 1 - partition,
            ts: r,
            headers,
            payload: response.encode_to_vec(),
        });
        f.events.push((
            r,
            json!({"type": "prediction", "timestamp": r, "event_id": id, "app": scorer, "app_version": version,
                   "model": scorer, "model_version": version, "latency_ms": latency,
                   "features": {"amount": f64::from(amount), "country": country}, "prediction": f64::from(score)}),
        ));
        if rng.gen_bool(0.3) {
            let label = if rng.gen_bool(0.9) { f64::from(score) } else { 1.0 - f64::from(score) };
            let lt = r + 5 * 60_000;
            f.labels.push((lt, json!({"type": "label", "timestamp": lt, "event_id": id, "label": label})));
        }
    }
    let ranker = format!("{ns}/ranker");
    let mut t = t0 + 7;
    let mut n = 0u64;
    while t < end {
        t += rng.gen_range(150..350);
        n += 1;
        let id = format!("rk-{n:07}");
        let k = rng.gen_range(1..=3usize);
        let shifted = t >= t0 + 30 * 60_000;
        let rows: Vec<(i64, f64)> = (0..k)
            .map(|_| {
                let price = if shifted { rng.gen_range(60.0..160.0) } else { rng.gen_range(10.0..110.0) };
                (rng.gen_range(0..20), (price * 100.0f64).round() / 100.0)
            })
            .collect();
        let data: Vec<Value> = rows.iter().map(|(c, p)| json!([c, p])).collect();
        let mut headers = gateway_headers(&id, "ranker", "r7");
        headers.push(("seldon-infer-type".into(), "json/inferModelRequest".into()));
        f.seldon.push(Record {
            topic: tp.ranker_in.clone(),
            partition: 0,
            ts: t,
            headers: headers.clone(),
            payload: serde_json::to_vec(&json!({
                "inputs": [{"name": "x", "shape": [k, 2], "datatype": "FP64", "data": data}]
            }))
            .expect("json"),
        });
        let latency = rng.gen_range(3..30);
        let r = t + latency;
        let preds: Vec<f64> =
            rows.iter().map(|(c, p)| ((p / 200.0 + *c as f64 / 40.0) * 1000.0).round() / 1000.0).collect();
        f.seldon.push(Record {
            topic: tp.ranker_out.clone(),
            partition: 0,
            ts: r,
            headers,
            payload: serde_json::to_vec(&json!({
                "model_name": "ranker_1", "model_version": "1", "id": id,
                "outputs": [{"name": "relevance", "shape": [k, 1], "datatype": "FP64", "data": preds}]
            }))
            .expect("json"),
        });
        for (i, ((clicks, price), pred)) in rows.iter().zip(&preds).enumerate() {
            let event_id = if k > 1 { format!("{id}/{i}") } else { id.clone() };
            f.events.push((
                r,
                json!({"type": "prediction", "timestamp": r, "event_id": event_id, "app": ranker,
                       "app_version": "r7", "model": ranker, "model_version": "r7", "latency_ms": latency,
                       "features": {"clicks": clicks, "price": price}, "prediction": pred}),
            ));
        }
    }
    // Each partition in time order, as the workers write it.
    f.seldon.sort_by(|a, b| (&a.topic, a.partition, a.ts).cmp(&(&b.topic, b.partition, b.ts)));
    f.events.sort_by_key(|e| e.0);
    f.labels.sort_by_key(|e| e.0);
    f
}

/// Records Seldon never writes: each must be a dead letter naming what is wrong, and change
/// nothing.
fn broken(ts: i64, tp: &Topics) -> Vec<(Record, &'static str)> {
    let record = |headers: Vec<(String, String)>, payload: &[u8]| Record {
        topic: tp.scorer_in.clone(),
        partition: 0,
        ts,
        headers,
        payload: payload.to_vec(),
    };
    let ok =
        ModelInferRequest { inputs: vec![fp32("amount", vec![1], vec![1.0])], ..Default::default() }.encode_to_vec();
    let mut no_id = gateway_headers("b-1", "scorer", "v1");
    no_id.retain(|(k, _)| k != "x-request-id");
    let mut avro = gateway_headers("b-2", "scorer", "v1");
    avro.push(("seldon-infer-type".into(), "avro/InferModelRequest".into()));
    let shape =
        ModelInferRequest { inputs: vec![fp32("amount", vec![2], vec![1.0])], ..Default::default() }.encode_to_vec();
    vec![
        (record(no_id, &ok), "missing_field"),
        (record(avro, &ok), "invalid_value"),
        (record(gateway_headers("b-3", "scorer", "v1"), &[0x2a, 0x05, 0x0a]), "invalid_value"),
        (record(gateway_headers("b-4", "scorer", "v1"), &shape), "invalid_value"),
    ]
}

#[test]
fn seldon_records_on_the_broker_decide_as_the_equivalent_driftwatch_events() {
    let brokers = brokers();
    let dir = temp_dir("seldon");
    let n = Names::new("seldon");
    let tp = Topics::new(&n);
    let seldon_topics = tp.all();
    let cfg = write_config(&dir, &n, "exactly_once", true, "");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    let inputs: Vec<String> =
        std::iter::once(n.events().to_owned()).chain(seldon_topics.iter().map(|(t, _)| t.to_string())).collect();
    text = text.replace(&format!("events = [\"{}\"]", n.events()), &format!("events = {inputs:?}"));
    // Labels stay driftwatch events, whatever `replay --format` says.
    let formats: Vec<String> = seldon_topics
        .iter()
        .map(|(t, _)| format!("\"{t}\" = \"seldon\""))
        .chain([format!("\"{}\" = \"driftwatch\"", n.events())])
        .collect();
    text.push_str(&format!(
        "formats = {{ {} }}\n\n[fleet]\nresponse_timeout = \"10s\"\n\n[fleet.seldon]\nversion_header = \"x-model-version\"\ncolumns = [\"clicks\", \"price\"]\n",
        formats.join(", ")
    ));
    std::fs::write(&cfg, &text).expect("config");
    let cfg_s = cfg.to_str().expect("utf-8 path");

    // Recent times: the broker keeps records by their timestamps.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let t0 = (now - 3 * 3_600_000) / 60_000 * 60_000;
    let f = fleet(11, t0, &tp);
    let requests = f.seldon.iter().filter(|r| r.topic == tp.scorer_in).count();
    assert!(requests > 40_000, "{requests} requests");

    // The equivalent driftwatch events, replayed.
    let events_file = dir.join("equivalent.jsonl");
    let mut all = f.events.clone();
    all.extend(f.labels.iter().cloned());
    all.sort_by_key(|e| e.0);
    write_jsonl(&events_file, &all);
    let expected = replay_args(&["replay", "-q", "--config", cfg_s, events_file.to_str().expect("path")]);
    let summary = summary_of(&expected);
    let (scorer, ranker) = (format!("{}/scorer", tp.namespace), format!("{}/ranker", tp.namespace));
    for want in [
        format!(r#""rollback" "app"/"{scorer}" "v2" "error_rate""#),
        format!(r#""rollback" "model"/"{scorer}" "v2" "error_rate""#),
        format!(r#""retrain" "model"/"{ranker}" "r7" "feature_drift""#),
    ] {
        assert!(summary.contains(&want), "expected {want} among {summary:#?}");
    }
    let errors = f.events.iter().filter(|(_, e)| e["error"] == "model_error").count();
    assert!(errors > 50, "{errors} errors on the errors topic");

    for (t, p) in &seldon_topics {
        create_topic(&brokers, t, *p);
    }
    create_topic(&brokers, n.events(), 1);

    // The Seldon records and the labels on the broker, four broken records among them.
    let middle = t0 + 20 * 60_000;
    let bad = broken(middle, &tp);
    let mut records: Vec<(WithHeaders, Option<i64>)> = Vec::new();
    let mut bad_added = false;
    for r in &f.seldon {
        if !bad_added && r.topic == tp.scorer_in && r.partition == 0 && r.ts >= middle {
            for (b, _) in &bad {
                records.push(((b.topic.clone(), b.partition, b.headers.clone(), b.payload.clone()), Some(b.ts)));
            }
            bad_added = true;
        }
        records.push(((r.topic.clone(), r.partition, r.headers.clone(), r.payload.clone()), Some(r.ts)));
    }
    for (t, l) in &f.labels {
        records.push(((n.events().to_owned(), 0, Vec::new(), l.to_string().into_bytes()), Some(*t)));
    }
    let timed: Vec<(&WithHeaders, Option<i64>)> = records.iter().map(|(r, t)| (r, *t)).collect();
    produce_timed(&brokers, &timed);

    // `replay --format seldon` of the topics as kcat dumps them (protobuf payloads included).
    let mut args: Vec<String> = ["replay", "-q", "--config", cfg_s, "--format", "seldon", "--dead-letter"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let dead_file = dir.join("dead.jsonl");
    args.push(dead_file.to_str().expect("path").to_owned());
    for (i, (t, _)) in seldon_topics.iter().enumerate() {
        args.push(kcat_dump(&brokers, t, &dir, &format!("seldon-{i}.kcat.jsonl")).to_str().expect("path").to_owned());
    }
    args.push(kcat_dump(&brokers, n.events(), &dir, "labels.kcat.jsonl").to_str().expect("path").to_owned());
    let arg_refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let replayed = replay_args(&arg_refs);
    assert_eq!(comparable_all(&replayed), comparable_all(&expected), "replay --format seldon of kcat dumps");
    let dead: Vec<Value> = std::fs::read_to_string(&dead_file)
        .expect("dead letters")
        .lines()
        .map(|l| serde_json::from_str(l).expect("dead letter JSON"))
        .collect();
    let reasons: Vec<&str> = dead.iter().map(|d| d["reason"].as_str().unwrap_or("")).collect();
    assert_eq!(reasons, bad.iter().map(|b| b.1).collect::<Vec<_>>(), "dead letters: {dead:#?}");
    for (d, want) in dead.iter().zip(["x-request-id", "seldon-infer-type", "protobuf ModelInferRequest", "shape"]) {
        assert!(d["detail"].as_str().unwrap_or("").contains(want), "{want}: {d}");
    }

    // `driftwatch run` on the broker.
    let svc = Service::start(&cfg, &brokers, &[], dir.join("run.log"));
    let all = (f.seldon.len() + bad.len()) as i64;
    finish_and_compare(svc, &brokers, &n, &seldon_topics, all, &expected);
    let dead_msgs = read_all(&brokers, &[&n.topics.deadletter], true);
    let dead_reasons: Vec<&str> =
        dead_msgs.iter().map(|m| m.headers.get("driftwatch.reason").map_or("", String::as_str)).collect();
    assert_eq!(dead_reasons, bad.iter().map(|b| b.1).collect::<Vec<_>>());
    // Forwarded unchanged, with Seldon's headers.
    assert_eq!(dead_msgs[1].headers.get("seldon-infer-type").map(String::as_str), Some("avro/InferModelRequest"));
    assert_eq!(dead_msgs[2].payload, [0x2a, 0x05, 0x0a]);
}

//! Deploy tools asking `driftwatch run --http` on the real broker, with the requests they send:
//! Argo Rollouts' web metric (a GET with the bearer token from a Secret, `jsonPath: "{$}"`, the
//! shipped AnalysisTemplate's conditions) and Flagger's webhooks (a POST of
//! `CanaryWebhookPayload` with no header but `Content-Type`, the token in `metadata.token`;
//! 200–202 pass). The fleet: the `demo` scenario, where checkout 2.4.0 is rolled back and
//! search 5.2.0 promoted. Every answer is validated against `schemas/openapi.yaml`, and every
//! documented (path, status) of these endpoints but the 503 is exercised.
//!
//! Needs `DRIFTWATCH_TEST_BROKERS` (set by `scripts/test.sh`) and `promtool`; fails without them.

mod kafka_support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use kafka_support::openapi::{Api, Reply, Spec};
use kafka_support::*;
use serde_json::{json, Value};

const TOKEN: &str = "api-token-for-argo";
const HOOK_TOKEN: &str = "hook-token-for-flagger";
const VERDICT: &str = "/v1/verdict/{kind}/{name}/{version}";

impl Api {
    /// What Argo Rollouts' web metric provider sends: GET with the configured headers.
    fn argo(&self, path: &str, token: Option<&str>) -> Reply {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        Reply::of(req.call(), &format!("GET {path}"))
    }

    /// What Flagger sends: POST of the JSON payload with `Content-Type: application/json` only.
    fn flagger(&self, hook: &str, payload: &str) -> Reply {
        let req = self.agent.post(&format!("{}/v1/flagger/{hook}", self.base)).set("Content-Type", "application/json");
        Reply::of(req.send_string(payload), &format!("POST /v1/flagger/{hook}"))
    }

    /// A hook called through a proxy that adds the bearer token.
    fn flagger_with_bearer(&self, hook: &str, payload: &str) -> Reply {
        let req = self
            .agent
            .post(&format!("{}/v1/flagger/{hook}", self.base))
            .set("Content-Type", "application/json")
            .set("Authorization", &format!("Bearer {TOKEN}"));
        Reply::of(req.send_string(payload), &format!("POST /v1/flagger/{hook}"))
    }
}

/// Flagger's `CanaryWebhookPayload` as `callWebhook` marshals it.
fn payload(canary: &str, phase: &str, metadata: Value) -> String {
    json!({"name": canary, "namespace": "shop", "phase": phase, "checksum": "7d9c5f8b6c", "metadata": metadata})
        .to_string()
}

/// `result.verdict == "X"` conditions of a shipped AnalysisTemplate metric, evaluated on
/// `result` as Argo's expr would: None when the metric has no such condition.
fn condition(metric: &Value, key: &str, result: &Value) -> Option<bool> {
    let c = metric[key].as_str()?;
    let want = c
        .strip_prefix("result.verdict == \"")
        .and_then(|r| r.strip_suffix('"'))
        .unwrap_or_else(|| panic!("{key} `{c}`: the test reads conditions of the form result.verdict == \"X\""));
    Some(result["verdict"] == want)
}

/// Argo's measurement phase for `answer` under a shipped metric (utils/evaluate: failure
/// wins; neither condition true is Inconclusive; a missing condition is the other's negation).
fn argo_phase(metric: &Value, answer: &Value) -> &'static str {
    assert_eq!(metric["provider"]["web"]["jsonPath"], "{$}", "the templates pass the whole answer as result");
    let (success, failure) =
        match (condition(metric, "successCondition", answer), condition(metric, "failureCondition", answer)) {
            (Some(s), Some(f)) => (s, f),
            (Some(s), None) => (s, !s),
            (None, Some(f)) => (!f, f),
            (None, None) => (true, false),
        };
    if failure {
        "Failed"
    } else if success {
        "Successful"
    } else {
        "Inconclusive"
    }
}

fn yaml_docs(path: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(path)).expect(path);
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            let v: serde_yaml::Value = serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{path}: {e}"));
            serde_json::to_value(v).expect("YAML as JSON")
        })
        .collect()
}

#[test]
fn argo_rollouts_and_flagger_get_driftwatchs_verdicts() {
    let brokers = brokers();
    let n = Names::new("gates");
    let dir = temp_dir("gates");
    let cfg = write_http_config(&dir, &n, TOKEN);
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str(&format!("hook_token = \"{HOOK_TOKEN}\"\n"));
    std::fs::write(&cfg, text).expect("config");

    let lines = scenario_lines("demo", 1, 1.0, Some(20));
    let input = dir.join("input.jsonl");
    write_lines(&input, &lines);
    let (replayed, _) = replay(&cfg, &input);
    let find = |command: &str, name: &str, version: &str| -> Value {
        replayed
            .iter()
            .find(|c| c["command"] == command && c["target"]["name"] == name && c["target"]["version"] == version)
            .unwrap_or_else(|| panic!("replay gives no {command} of {name} {version}: {replayed:#?}"))
            .clone()
    };
    let rollback = find("rollback", "checkout", "2.4.0");
    let promote = find("promote", "search", "5.2.0");

    let (mut svc, api) = Api::start(&cfg, &brokers, dir.join("service.log"));
    let mut spec = Spec::load();
    assert!(
        wait_until(Duration::from_secs(60), || {
            svc.assert_running();
            api.agent.get(&format!("{}/readyz", api.base)).call().is_ok()
        }),
        "not ready within 60 s; log:\n{}",
        svc.log_tail()
    );

    // ---- before any traffic: nothing known, nothing passes but pre-rollout
    let v = spec.check(VERDICT, "before traffic", &api.argo("/v1/verdict/app/checkout/2.4.0", Some(TOKEN)));
    assert_eq!(
        (v["verdict"].as_str(), v["ready"].as_bool(), v["state"].clone()),
        (Some("unknown"), Some(true), Value::Null)
    );
    let hooked = |spec: &mut Spec, hook: &str, r: Reply| -> Value {
        let body = spec.check_method("post", &format!("/v1/flagger/{hook}"), hook, &r);
        assert_eq!(body["passed"], (200..=202).contains(&r.status), "Flagger passes a hook on 200-202 only: {body}");
        assert_eq!(body["hook"], hook);
        body
    };
    let meta = |version: &str| json!({"version": version, "token": HOOK_TOKEN});
    let r = api.flagger("rollback", &payload("checkout", "Progressing", meta("2.4.0")));
    assert_eq!(r.status, 409, "no rollback before any traffic: {}", r.body);
    assert_eq!(hooked(&mut spec, "rollback", r)["verdict"], "unknown");
    let r = api.flagger("pre-rollout", &payload("checkout", "Progressing", meta("2.4.0")));
    assert_eq!(r.status, 200, "pre-rollout passes once driftwatch is ready: {}", r.body);
    hooked(&mut spec, "pre-rollout", r);

    // ---- the fleet's traffic; wait until both decisions are published
    produce(&brokers, n.events(), &lines);
    let decided = |id: &Value| {
        let r = api.argo("/v1/decisions?limit=1000", Some(TOKEN));
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        v["decisions"].as_array().is_some_and(|a| a.iter().any(|c| c["command_id"] == *id))
    };
    assert!(
        wait_until(Duration::from_secs(120), || {
            svc.assert_running();
            decided(&rollback["command_id"]) && decided(&promote["command_id"])
        }),
        "the rollback and the promotion were not published; log:\n{}",
        svc.log_tail()
    );

    // ---- Argo Rollouts: always 200, the verdict and its command
    let v = spec.check(VERDICT, "checkout 2.4.0", &api.argo("/v1/verdict/app/checkout/2.4.0", Some(TOKEN)));
    assert_eq!(v["verdict"], "rollback");
    assert_eq!(v["state"], "rolled_back");
    assert_eq!(v["reason"], rollback["reason"]);
    assert_eq!(v["command_id"], rollback["command_id"]);
    assert_eq!(v["decided_at"], rollback["decided_at"]);
    assert_eq!(
        v["target"],
        json!({"kind": "app", "name": "checkout", "version": "2.4.0", "baseline_version": "2.3.0"})
    );
    assert!(v["detail"].as_str().is_some_and(|d| d.contains("error_rate")), "the detail names the reason: {v}");
    let rolled_back = v;
    let promoted = spec.check(VERDICT, "search 5.2.0", &api.argo("/v1/verdict/app/search/5.2.0", Some(TOKEN)));
    assert_eq!(promoted["verdict"], "promote");
    assert_eq!((&promoted["command_id"], &promoted["reason"]), (&promote["command_id"], &json!("healthy")));
    let baseline = spec.check(VERDICT, "checkout 2.3.0", &api.argo("/v1/verdict/app/checkout/2.3.0", Some(TOKEN)));
    assert_eq!((baseline["verdict"].as_str(), baseline["command_id"].clone()), (Some("pending"), Value::Null));
    let model = spec.check(VERDICT, "fraud 7", &api.argo("/v1/verdict/model/fraud/7", Some(TOKEN)));
    assert_eq!(model["verdict"], "pending", "{model}");
    let unknown = spec.check(VERDICT, "unknown", &api.argo("/v1/verdict/app/checkout/9.9.9", Some(TOKEN)));
    assert_eq!(unknown["verdict"], "unknown");
    let bad = spec.check(VERDICT, "bad kind", &api.argo("/v1/verdict/fleet/checkout/2.4.0", Some(TOKEN)));
    assert_eq!(bad["parameter"], "kind");
    let bad = spec.check(VERDICT, "bad query", &api.argo("/v1/verdict/app/checkout/2.4.0?since=1", Some(TOKEN)));
    assert_eq!(bad["parameter"], "since");
    for token in [None, Some("wrong"), Some(HOOK_TOKEN)] {
        let r = api.argo("/v1/verdict/app/checkout/2.4.0", token);
        assert_eq!(r.status, 401, "the verdict needs the API token, got {} with {token:?}", r.status);
        spec.check(VERDICT, "no token", &r);
    }

    // The shipped AnalysisTemplates, evaluated as Argo does on these answers.
    let templates = yaml_docs("deploy/argo-rollouts/analysis-template.yaml");
    let metric = |name: &str| -> Value {
        templates
            .iter()
            .find(|t| t["metadata"]["name"] == name)
            .and_then(|t| t["spec"]["metrics"].get(0).cloned())
            .unwrap_or_else(|| panic!("analysis-template.yaml has no {name}"))
    };
    for name in ["driftwatch-verdict", "driftwatch-promotion"] {
        let url = metric(name)["provider"]["web"]["url"].as_str().expect("url").to_owned();
        assert!(url.ends_with("/v1/verdict/{{args.kind}}/{{args.name}}/{{args.version}}"), "{name}: {url}");
    }
    let (background, gate) = (metric("driftwatch-verdict"), metric("driftwatch-promotion"));
    assert_eq!(argo_phase(&background, &rolled_back), "Failed");
    assert_eq!(argo_phase(&background, &promoted), "Successful");
    assert_eq!(argo_phase(&background, &unknown), "Successful");
    assert_eq!(argo_phase(&gate, &rolled_back), "Failed");
    assert_eq!(argo_phase(&gate, &promoted), "Successful");
    assert_eq!(argo_phase(&gate, &baseline), "Inconclusive");

    // ---- Flagger: 200 only for what the hook asks
    let r = api.flagger("rollback", &payload("checkout", "Progressing", meta("2.4.0")));
    assert_eq!(r.status, 200, "Flagger rolls checkout 2.4.0 back: {}", r.body);
    let b = hooked(&mut spec, "rollback", r);
    assert_eq!((&b["verdict"], &b["command_id"]), (&json!("rollback"), &rollback["command_id"]));
    // While waiting for confirmation too (Flagger calls rollback hooks in Waiting).
    assert_eq!(api.flagger("rollback", &payload("checkout", "Waiting", meta("2.4.0"))).status, 200);
    let r = api.flagger("rollback", &payload("search", "Progressing", meta("5.2.0")));
    assert_eq!(r.status, 409, "no rollback of the promoted version: {}", r.body);
    assert_eq!(hooked(&mut spec, "rollback", r)["verdict"], "promote");
    let r = api.flagger("rollback", &payload("checkout", "Progressing", meta("2.5.0")));
    assert_eq!(r.status, 409, "no rollback of a version not seen");
    let r = api.flagger("confirm-promotion", &payload("search", "Progressing", meta("5.2.0")));
    assert_eq!(r.status, 200, "Flagger promotes search 5.2.0: {}", r.body);
    assert_eq!(hooked(&mut spec, "confirm-promotion", r)["command_id"], promote["command_id"]);
    let r = api.flagger("confirm-promotion", &payload("checkout", "Progressing", meta("2.4.0")));
    assert_eq!(r.status, 409, "no promotion of a rolled-back version");
    hooked(&mut spec, "confirm-promotion", r);
    let r = api.flagger("confirm-promotion", &payload("checkout", "Progressing", meta("2.3.0")));
    assert_eq!((r.status, hooked(&mut spec, "confirm-promotion", r)["verdict"].clone()), (409, json!("pending")));
    // The canary's name differs from the model's: metadata maps it.
    let r = api.flagger(
        "rollback",
        &payload(
            "fraud-scorer",
            "Progressing",
            json!({"kind": "model", "name": "fraud", "version": "7", "token": HOOK_TOKEN}),
        ),
    );
    let b = hooked(&mut spec, "rollback", r);
    assert_eq!(
        (b["target"]["kind"].as_str(), b["target"]["name"].as_str(), b["target"]["version"].as_str()),
        (Some("model"), Some("fraud"), Some("7"))
    );
    assert_eq!(b["passed"], false);
    let r = api.flagger("pre-rollout", &payload("checkout", "Progressing", meta("2.4.0")));
    assert_eq!(r.status, 409, "a rolled-back version does not start again: {}", r.body);
    hooked(&mut spec, "pre-rollout", r);
    let r = api.flagger("pre-rollout", &payload("checkout", "Progressing", json!({"token": HOOK_TOKEN})));
    assert_eq!(r.status, 200, "pre-rollout needs no version: {}", r.body);
    assert_eq!(hooked(&mut spec, "pre-rollout", r)["target"]["version"], Value::Null);
    // Through a proxy that adds the API token instead.
    let r = api.flagger_with_bearer("rollback", &payload("checkout", "Progressing", json!({"version": "2.4.0"})));
    assert_eq!(r.status, 200);

    // Payloads that cannot be mapped: 400 naming the field (and no rollback).
    for (hook, body, field) in [
        ("rollback", payload("checkout", "Progressing", json!({"token": HOOK_TOKEN})), "metadata.version"),
        ("confirm-promotion", payload("checkout", "Progressing", json!({"token": HOOK_TOKEN})), "metadata.version"),
        (
            "rollback",
            payload("checkout", "Progressing", json!({"kind": "job", "version": "1", "token": HOOK_TOKEN})),
            "metadata.kind",
        ),
        (
            "pre-rollout",
            payload("checkout", "Progressing", json!({"version": "", "token": HOOK_TOKEN})),
            "metadata.version",
        ),
        (
            "rollback",
            format!("{{\"namespace\":\"shop\",\"metadata\":{{\"version\":\"2.4.0\",\"token\":\"{HOOK_TOKEN}\"}}}}"),
            "name",
        ),
    ] {
        let r = api.flagger(hook, &body);
        assert_eq!(r.status, 400, "{hook} {body}: {}", r.body);
        let b = spec.check_method("post", &format!("/v1/flagger/{hook}"), hook, &r);
        assert_eq!(b["field"], field, "{b}");
        assert!(b["message"].as_str().is_some_and(|m| m.contains(field)), "the message names {field}: {b}");
    }
    let r = api.flagger_with_bearer("rollback", "{\"name\": \"checkout\",");
    assert_eq!(r.status, 400, "malformed JSON: {}", r.body);
    assert_eq!(spec.check_method("post", "/v1/flagger/rollback", "malformed", &r)["field"], "body");
    let r = api.flagger_with_bearer("pre-rollout", &format!("{}?x", payload("c", "Progressing", json!({}))));
    assert_eq!(r.status, 400);
    spec.check_method("post", "/v1/flagger/pre-rollout", "trailing", &r);
    let r = Reply::of(
        api.agent
            .post(&format!("{}/v1/flagger/confirm-promotion?debug=1", api.base))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .send_string(&payload("search", "Progressing", json!({"version": "5.2.0"}))),
        "query",
    );
    assert_eq!(
        (r.status, spec.check_method("post", "/v1/flagger/confirm-promotion", "query", &r)["parameter"].clone()),
        (400, json!("debug"))
    );

    // Hooks driftwatch does not answer (Flagger's `rollout`, `confirm-rollout`, …): 404 naming them.
    let r = api.flagger_with_bearer("rollout", &payload("checkout", "Progressing", json!({"version": "2.4.0"})));
    assert_eq!(r.status, 404, "{}", r.body);
    assert!(r.body.contains("confirm-promotion") && r.body.contains("`rollout`"), "{}", r.body);

    // Without a token, with a wrong one, or with the API token in the payload: 401.
    for hook in ["rollback", "confirm-promotion", "pre-rollout"] {
        for metadata in [
            json!({"version": "2.4.0"}),
            json!({"version": "2.4.0", "token": "wrong"}),
            json!({"version": "2.4.0", "token": TOKEN}),
        ] {
            let r = api.flagger(hook, &payload("checkout", "Progressing", metadata.clone()));
            assert_eq!(r.status, 401, "{hook} with metadata {metadata}: {}", r.body);
            let b = spec.check_method("post", &format!("/v1/flagger/{hook}"), hook, &r);
            assert!(b["message"].as_str().is_some_and(|m| m.contains("http.hook_token")), "{b}");
        }
    }

    // ---- the MetricTemplate's PromQL is valid and uses series /metrics has
    let query = yaml_docs("deploy/flagger/metric-template.yaml")[0]["spec"]["query"]
        .as_str()
        .expect("query")
        .replace("{{ target }}", "checkout");
    let rules = dir.join("query-rules.yml");
    std::fs::write(
        &rules,
        serde_yaml::to_string(
            &json!({"groups": [{"name": "q", "rules": [{"record": "driftwatch:canary_error_rate", "expr": query}]}]}),
        )
        .expect("YAML"),
    )
    .expect("write rules");
    let out = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules)
        .output()
        .expect("promtool (Debian package `prometheus`)");
    assert!(
        out.status.success(),
        "promtool check rules on the MetricTemplate's query: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let metrics = api.argo("/metrics", Some(TOKEN)).body;
    for word in query.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).filter(|w| w.starts_with("driftwatch_"))
    {
        assert!(
            metrics.contains(&format!("{word}{{kind=\"app\",name=\"checkout\",version=\"2.4.0\"")),
            "/metrics has no {word} for the canary"
        );
    }

    // ---- every documented (path, status) of these endpoints was exercised, but the 503 and
    // the 307 a scaled-out group gives for a target another member decides (the verdict's is
    // asked in tests/instances_of_one_group_give_replays_commands.rs)
    let mut missing = Vec::new();
    for (path, item) in spec.doc["paths"].as_object().expect("paths").clone() {
        if !(path.starts_with("/v1/verdict/") || path.starts_with("/v1/flagger/")) {
            continue;
        }
        for (method, op) in item.as_object().expect("operations") {
            for status in op["responses"].as_object().expect("responses").keys() {
                let code: u16 = status.parse().expect("status");
                if ![307, 503].contains(&code) && !spec.seen.contains(&(path.clone(), code)) {
                    missing.push(format!("{method} {path} {code}"));
                }
            }
        }
    }
    assert!(missing.is_empty(), "not exercised: {missing:?}");

    svc.terminate(Duration::from_secs(20));
}

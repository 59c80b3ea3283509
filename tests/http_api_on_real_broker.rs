//! The HTTP API of `driftwatch run --http`, against a running service on a real Kafka broker:
//! every endpoint answers what `schemas/openapi.yaml` describes (each response is validated
//! against its schema), agrees with what the service published on Kafka (and with `replay`),
//! refuses requests without the bearer token, names the bad parameter in a 400, and pages
//! through everything. `/metrics` passes `promtool check metrics`, and every metric the shipped
//! alerting rules use exists (the rules pass `promtool check rules`).
//!
//! Needs `DRIFTWATCH_TEST_BROKERS` (set by `scripts/test.sh`) and `promtool` (Debian package
//! `prometheus`, installed by `scripts/test.sh`); fails without them.

mod kafka_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kafka_support::openapi::{Api, Reply, Spec};
use kafka_support::*;
use serde_json::{json, Value};

const TOKEN: &str = "t0ken-for-tests";

impl Api {
    fn get_with(&self, path: &str, token: Option<&str>, headers: &[(&str, &str)]) -> Reply {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.set("Authorization", &format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.set(k, v);
        }
        Reply::of(req.call(), &format!("GET {path}"))
    }

    fn get(&self, path: &str) -> Reply {
        self.get_with(path, Some(TOKEN), &[])
    }
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("promtool is needed (Debian package `prometheus`; scripts/test.sh installs it): {e}")
        });
    if let Some(text) = stdin {
        use std::io::Write;
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write to promtool");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// `name{labels} value` lines of an exposition, by family name.
fn samples(text: &str) -> BTreeMap<String, Vec<(String, f64)>> {
    let mut out: BTreeMap<String, Vec<(String, f64)>> = BTreeMap::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad exposition line: {line}"));
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let v: f64 = value.parse().unwrap_or_else(|_| panic!("bad value in: {line}"));
        out.entry(name.to_owned()).or_default().push((labels.to_owned(), v));
    }
    out
}

#[test]
fn every_endpoint_answers_as_documented_on_a_running_service() {
    let brokers = brokers();
    let n = Names::new("http");
    let dir = temp_dir("http");
    let cfg = write_http_config(&dir, &n, TOKEN);

    // The mixed fleet (an app canary that regresses, a model that drifts, a labelled model),
    // with a few bad lines.
    let mut lines = scenario_lines("mixed", 3, 0.5, None);
    for bad in [&b"{not json"[..], b"[1,2]", b"{\"type\":\"request\"}"] {
        lines.insert(lines.len() / 2, bad.to_vec());
    }
    let input = dir.join("input.jsonl");
    write_lines(&input, &lines);
    let (replayed, bad_lines) = replay(&cfg, &input);
    assert_eq!(bad_lines, 3);
    assert!(replayed.iter().any(|c| c["command"] == "rollback"), "the mix has a rollback");

    let (mut svc, api) = Api::start(&cfg, &brokers, dir.join("service.log"));
    let mut spec = Spec::load();

    // Health and readiness need no token.
    assert!(
        wait_until(Duration::from_secs(60), || {
            svc.assert_running();
            api.agent.get(&format!("{}/healthz", api.base)).call().is_ok()
        }),
        "no /healthz answer within 60 s; log:\n{}",
        svc.log_tail()
    );
    let r = api.get_with("/healthz", None, &[]);
    assert_eq!(r.status, 200);
    spec.check_text("/healthz", &r, "text/plain");
    assert!(
        wait_until(Duration::from_secs(60), || api.get_with("/readyz", None, &[]).status == 200),
        "not ready within 60 s; log:\n{}",
        svc.log_tail()
    );
    spec.check_text("/readyz", &api.get_with("/readyz", None, &[]), "text/plain");
    let page = api.get_with("/", None, &[]);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("<html"));
    for external in
        ["src=\"http", "href=\"http", "src='http", "href='http", "url(http", "@import", "fetch('http", "fetch(\"http"]
    {
        assert!(!page.body.contains(external), "the page loads nothing from elsewhere (found `{external}`)");
    }
    spec.check_text("/", &page, "text/html");

    produce(&brokers, n.events(), &lines);
    // Wait until every command replay gives has been published and listed.
    let want: BTreeSet<String> = replayed.iter().map(|c| c["command_id"].as_str().unwrap_or("").to_owned()).collect();
    let listed = || -> BTreeSet<String> {
        let r = api.get("/v1/decisions?limit=1000");
        let v: Value = serde_json::from_str(&r.body).unwrap_or(Value::Null);
        v["decisions"]
            .as_array()
            .map(|a| a.iter().filter_map(|c| c["command_id"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    };
    assert!(
        wait_until(Duration::from_secs(120), || {
            svc.assert_running();
            listed() == want
        }),
        "/v1/decisions lists {:?}, replay gives {:?}; log:\n{}",
        listed(),
        want,
        svc.log_tail()
    );
    // And the view has caught up with the whole input.
    assert!(wait_until(Duration::from_secs(60), || {
        let v: Value = serde_json::from_str(&api.get("/v1/status").body).unwrap_or(Value::Null);
        v["messages"].as_u64() == Some(lines.len() as u64)
    }));

    // ---- without the token: 401 everywhere but health, readiness and the page
    for (template, path) in [
        ("/metrics", "/metrics"),
        ("/v1/status", "/v1/status"),
        ("/v1/targets", "/v1/targets"),
        ("/v1/targets/{kind}/{name}/{version}", "/v1/targets/app/checkout/2.4.0"),
        ("/v1/history/{kind}/{name}", "/v1/history/app/checkout"),
        ("/v1/decisions", "/v1/decisions"),
        ("/v1/alerts", "/v1/alerts"),
    ] {
        for token in [None, Some("wrong")] {
            let r = api.get_with(path, token, &[]);
            assert_eq!(r.status, 401, "GET {path} with token {token:?}");
            spec.check(template, path, &r);
        }
    }

    // ---- status
    let status = spec.check("/v1/status", "/v1/status", &api.get("/v1/status"));
    assert_eq!(status["ready"], true);
    assert_eq!(status["messages"], lines.len());
    assert_eq!(status["dead_letters"], 3);
    let bad_total: u64 = status["bad_input"].as_object().expect("bad_input").values().filter_map(Value::as_u64).sum();
    assert_eq!(bad_total, 3);
    assert_eq!(status["commands"], replayed.len());

    // ---- targets: pages of 3 cover exactly the full list, in order
    let all = spec.check("/v1/targets", "/v1/targets?limit=1000", &api.get("/v1/targets?limit=1000"));
    let all_targets = all["targets"].as_array().expect("targets").clone();
    assert_eq!(all["total"], all_targets.len());
    assert!(all_targets.len() >= 4, "the mix has at least 4 versions: {all:#}");
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let url = match &cursor {
            Some(c) => format!("/v1/targets?limit=3&cursor={c}"),
            None => "/v1/targets?limit=3".to_owned(),
        };
        let page = spec.check("/v1/targets", &url, &api.get(&url));
        let items = page["targets"].as_array().expect("targets");
        assert!(items.len() <= 3);
        paged.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    let key = |t: &Value| format!("{}/{}/{}", t["kind"], t["name"], t["version"]);
    assert_eq!(paged.iter().map(key).collect::<Vec<_>>(), all_targets.iter().map(key).collect::<Vec<_>>());

    let rollback = replayed.iter().find(|c| c["command"] == "rollback").expect("rollback");
    let (rk, rn, rv) = (
        rollback["target"]["kind"].as_str().expect("kind"),
        rollback["target"]["name"].as_str().expect("name"),
        rollback["target"]["version"].as_str().expect("version"),
    );
    let rolled: Vec<&Value> = all_targets.iter().filter(|t| t["state"] == "rolled_back").collect();
    assert_eq!(rolled.len(), 1, "exactly one version is rolled back: {rolled:#?}");
    assert_eq!(
        (rolled[0]["kind"].as_str(), rolled[0]["name"].as_str(), rolled[0]["version"].as_str()),
        (Some(rk), Some(rn), Some(rv))
    );
    let er = rolled[0]["detectors"]
        .as_array()
        .expect("detectors")
        .iter()
        .find(|d| d["detector"] == "error_rate")
        .expect("error-rate detector");
    let (value, threshold) = (er["value"].as_f64().expect("a value"), er["threshold"].as_f64().expect("a threshold"));
    assert!(value >= threshold, "the rolled-back version's e-value is past its threshold: {er}");
    let filtered = spec.check("/v1/targets", "?state=rolled_back", &api.get("/v1/targets?state=rolled_back&kind=app"));
    assert_eq!(filtered["total"], 1);
    let models = spec.check("/v1/targets", "?kind=model", &api.get("/v1/targets?kind=model"));
    assert!(models["targets"].as_array().expect("targets").iter().all(|t| t["kind"] == "model"));
    assert!(
        models["targets"]
            .as_array()
            .expect("targets")
            .iter()
            .any(|t| t["labels"]["coverage"].as_f64().is_some_and(|c| c > 0.5)),
        "the labelled model shows its label coverage: {models:#}"
    );

    // ---- each target, with its decisions
    for t in &all_targets {
        let path = t["links"]["self"].as_str().expect("self link");
        let d = spec.check("/v1/targets/{kind}/{name}/{version}", path, &api.get(path));
        assert_eq!(key(&d), key(t));
        for c in d["decisions"].as_array().expect("decisions") {
            assert_eq!(c["target"]["version"], t["version"]);
        }
    }
    let detail = api.get(&format!("/v1/targets/{rk}/{rn}/{rv}"));
    let detail = spec.check("/v1/targets/{kind}/{name}/{version}", "rolled-back target", &detail);
    assert_eq!(detail["decisions"][0]["command_id"], rollback["command_id"]);
    let missing = api.get("/v1/targets/app/no-such-app/1.0");
    assert_eq!(missing.status, 404);
    spec.check("/v1/targets/{kind}/{name}/{version}", "missing", &missing);

    // ---- history: a series per version of the rolled-back app
    let h = spec.check("/v1/history/{kind}/{name}", "history", &api.get(&format!("/v1/history/{rk}/{rn}")));
    let versions: BTreeSet<&str> =
        h["error_rate"].as_array().expect("series").iter().filter_map(|s| s["version"].as_str()).collect();
    assert!(versions.contains(rv) && versions.len() >= 2, "error-rate series per version: {versions:?}");
    let r = api.get("/v1/history/app/no-such-app");
    assert_eq!(r.status, 404);
    spec.check("/v1/history/{kind}/{name}", "missing history", &r);

    // ---- decisions: content equals what was published (and replay), filters, pages
    let all_d = spec.check("/v1/decisions", "/v1/decisions", &api.get("/v1/decisions?limit=1000"));
    let listed: BTreeMap<String, Value> = all_d["decisions"]
        .as_array()
        .expect("decisions")
        .iter()
        .map(|c| (c["command_id"].as_str().unwrap_or("").to_owned(), comparable(c)))
        .collect();
    let replay_map: BTreeMap<String, Value> =
        replayed.iter().map(|c| (c["command_id"].as_str().unwrap_or("").to_owned(), comparable(c))).collect();
    assert_eq!(listed, replay_map, "/v1/decisions lists exactly the commands replay gives");
    let published = read_all(&brokers, &[n.topics.decisions.as_str()], true);
    assert_eq!(published.len(), replayed.len(), "the audit topic has each command once");
    for m in &published {
        let c = m.json();
        let api_c = all_d["decisions"]
            .as_array()
            .expect("decisions")
            .iter()
            .find(|x| x["command_id"] == c["command_id"])
            .expect("listed");
        assert_eq!(api_c, &c, "the API shows the command exactly as published on Kafka (issued_at included)");
    }
    let rb = spec.check("/v1/decisions", "?command=rollback", &api.get("/v1/decisions?command=rollback"));
    assert_eq!(
        rb["decisions"].as_array().map(Vec::len),
        Some(replayed.iter().filter(|c| c["command"] == "rollback").count())
    );
    let tg = spec.check("/v1/decisions", "?target", &api.get(&format!("/v1/decisions?target={rk}/{rn}/{rv}")));
    let tg = tg["decisions"].as_array().expect("decisions");
    assert!(!tg.is_empty(), "the rolled-back version's decisions are listed");
    assert!(tg.iter().all(|c| c["target"]["version"] == rv), "{tg:?}");
    let future = spec.check("/v1/decisions", "?since=future", &api.get("/v1/decisions?since=2099-01-01T00:00:00Z"));
    assert_eq!(future["decisions"], json!([]));
    let p1 = spec.check("/v1/decisions", "?limit=1", &api.get("/v1/decisions?limit=1"));
    let c1 = p1["next_cursor"].as_str().expect("a second page");
    let p2 = spec.check("/v1/decisions", "page 2", &api.get(&format!("/v1/decisions?limit=1&cursor={c1}")));
    assert_ne!(p1["decisions"][0]["command_id"], p2["decisions"][0]["command_id"]);
    let decided_at = |p: &Value| p["decisions"][0]["decided_at"].as_str().expect("decided_at").to_owned();
    assert!(decided_at(&p1) >= decided_at(&p2), "newest first");

    // ---- alerts
    let alerts = spec.check("/v1/alerts", "/v1/alerts", &api.get("/v1/alerts"));
    let firing: Vec<&Value> =
        alerts["alerts"].as_array().expect("alerts").iter().filter(|a| a["state"] == "firing").collect();
    let rb_alert = firing.iter().find(|a| a["finding"] == "rollback").expect("a firing rollback alert");
    assert_eq!(rb_alert["severity"], "critical");
    assert_eq!(rb_alert["command_id"], rollback["command_id"]);
    assert_eq!(rb_alert["target"]["version"], rv);
    assert_eq!(
        firing.len(),
        replayed.iter().filter(|c| c["command"] != "promote").count(),
        "one firing alert per standing adverse decision: {alerts:#}"
    );
    let crit = spec.check("/v1/alerts", "?severity", &api.get("/v1/alerts?severity=critical"));
    let crit = crit["alerts"].as_array().expect("alerts");
    assert!(!crit.is_empty(), "the firing rollback alert is critical");
    assert!(crit.iter().all(|a| a["severity"] == "critical"), "{crit:?}");

    // ---- 400s name the parameter
    for (template, path, parameter) in [
        ("/v1/targets", "/v1/targets?limit=0", "limit"),
        ("/v1/targets", "/v1/targets?limit=abc", "limit"),
        ("/v1/targets", "/v1/targets?limit=1001", "limit"),
        ("/v1/targets", "/v1/targets?kind=fleet", "kind"),
        ("/v1/targets", "/v1/targets?state=sad", "state"),
        ("/v1/targets", "/v1/targets?cursor=zz", "cursor"),
        ("/v1/targets", "/v1/targets?colour=red", "colour"),
        ("/v1/targets", "/v1/targets?limit=1&limit=2", "limit"),
        ("/v1/targets/{kind}/{name}/{version}", "/v1/targets/fleet/checkout/1", "kind"),
        ("/v1/history/{kind}/{name}", "/v1/history/fleet/checkout", "kind"),
        ("/v1/decisions", "/v1/decisions?since=yesterday", "since"),
        ("/v1/decisions", "/v1/decisions?command=nuke", "command"),
        ("/v1/decisions", "/v1/decisions?target=", "target"),
        ("/v1/decisions", "/v1/decisions?target=checkout", "target"),
        ("/v1/decisions", "/v1/decisions?cursor=abc", "cursor"),
        ("/v1/alerts", "/v1/alerts?state=burning", "state"),
        ("/v1/status", "/v1/status?verbose=1", "verbose"),
        ("/metrics", "/metrics?name=x", "name"),
    ] {
        let r = api.get(path);
        assert_eq!(r.status, 400, "GET {path}: {}", r.body);
        let body = spec.check(template, path, &r);
        assert_eq!(body["parameter"], parameter, "GET {path}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| m.contains(parameter)),
            "GET {path}: the message names `{parameter}`: {body}"
        );
    }
    // Generated clients send unset free-text parameters as empty values: the same as absent.
    let first = spec.check("/v1/targets", "/v1/targets", &api.get("/v1/targets?limit=2"));
    let empty = spec.check("/v1/targets", "?cursor=&name=", &api.get("/v1/targets?limit=2&cursor=&name="));
    assert_eq!(first["targets"], empty["targets"], "empty cursor and name are the first page, unfiltered");
    let d = spec.check("/v1/decisions", "?cursor=", &api.get("/v1/decisions?cursor="));
    assert_eq!(d["decisions"].as_array().map(Vec::len), Some(replayed.len()));
    let r = api.get("/v1/nothing-here");
    assert_eq!(r.status, 404);

    // ---- metrics: valid exposition, agrees with the JSON, gzip when asked
    // The consumer lag comes from the client's statistics, every 5 s: wait until it shows the
    // service caught up.
    assert!(
        wait_until(Duration::from_secs(30), || {
            let v: Value = serde_json::from_str(&api.get("/v1/status").body).unwrap_or(Value::Null);
            v["consumer_lag"] == 0
        }),
        "consumer_lag never reached 0 in /v1/status"
    );
    let m = api.get("/metrics");
    assert_eq!(m.status, 200);
    spec.check_text("/metrics", &m, "text/plain");
    let (ok, out) = promtool(&["check", "metrics"], Some(&m.body));
    assert!(ok, "promtool check metrics: {out}");
    let gz = api.get_with("/metrics", Some(TOKEN), &[("Accept-Encoding", "gzip")]);
    assert_eq!(samples(&gz.body).keys().collect::<Vec<_>>(), samples(&m.body).keys().collect::<Vec<_>>());
    let s = samples(&m.body);
    let one = |name: &str, labels: &str| -> f64 {
        s.get(name)
            .and_then(|v| v.iter().find(|(l, _)| l == labels))
            .map(|(_, x)| *x)
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in /metrics"))
    };
    let id = format!("kind=\"{rk}\",name=\"{rn}\",version=\"{rv}\"");
    assert_eq!(one("driftwatch_target_state", &format!("{id},state=\"rolled_back\"")), 1.0);
    assert_eq!(one("driftwatch_decisions_total", "command=\"rollback\",reason=\"error_rate\""), 1.0);
    assert_eq!(one("driftwatch_messages_consumed_total", ""), lines.len() as f64);
    assert_eq!(one("driftwatch_bad_input_total", "reason=\"invalid_json\""), 1.0);
    assert_eq!(one("driftwatch_up", ""), 1.0);
    assert_eq!(one("driftwatch_consumer_lag_messages", ""), 0.0);
    assert_eq!(one("driftwatch_target_events_total", &id), rolled[0]["events"].as_f64().expect("events"));
    assert!(
        s.get("driftwatch_target_drift_psi").is_some_and(|v| v.iter().any(|(l, _)| l.contains("feature=\""))),
        "drift per feature"
    );
    assert!(s.contains_key("driftwatch_target_latency_seconds"), "latency quantiles");
    assert!(s.contains_key("driftwatch_target_labels_coverage_ratio"), "label coverage");
    assert!(s.contains_key("driftwatch_processing_rate_events_per_second"), "processing rate");
    assert!(s.contains_key("driftwatch_active_findings"), "findings");
    assert!(s.contains_key("driftwatch_drift_type_mismatches_total"), "drift checks left out for a type mismatch");

    // ---- the shipped alerting rules are valid and use metrics that exist
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/prometheus/driftwatch-alerts.yml");
    let (ok, out) = promtool(&["check", "rules", &rules.to_string_lossy()], None);
    assert!(ok, "promtool check rules: {out}");
    let doc: Value = serde_yaml::from_str(&std::fs::read_to_string(&rules).expect("rules")).expect("rules are YAML");
    let mut used = BTreeSet::new();
    for g in doc["groups"].as_array().expect("groups") {
        for r in g["rules"].as_array().expect("rules") {
            let expr = r["expr"].as_str().expect("expr");
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("driftwatch_") {
                    used.insert(word.to_owned());
                }
            }
        }
    }
    assert!(used.len() >= 5);
    for name in &used {
        assert!(m.body.contains(&format!("# TYPE {name} ")), "alerting rules use {name}, which /metrics does not have");
    }

    // ---- every documented (path, status) was exercised, except the 503s and what only a
    // scaled-out group answers (307 to the member deciding a target, 502 when it does not
    // answer; tests/instances_of_one_group_give_replays_commands.rs asks them there); the
    // answers for deploy tools are tests/deploy_tools_ask_for_a_verdict.rs's
    let mut missing = Vec::new();
    for (path, item) in spec.doc["paths"].as_object().expect("paths").clone() {
        // `/v1/group` answers 200 only in a scaled-out group: the group tests ask it there.
        if path.starts_with("/v1/verdict/") || path.starts_with("/v1/flagger/") || path == "/v1/group" {
            continue;
        }
        for status in item["get"]["responses"].as_object().expect("responses").keys() {
            let code: u16 = status.parse().expect("status");
            if ![307, 502, 503].contains(&code) && !spec.seen.contains(&(path.clone(), code)) {
                missing.push(format!("GET {path} {code}"));
            }
        }
    }
    assert!(missing.is_empty(), "not exercised: {missing:?}");

    svc.terminate(Duration::from_secs(20));
}

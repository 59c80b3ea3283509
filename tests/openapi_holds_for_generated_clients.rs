//! The HTTP API as independent clients see it: schemathesis (pinned in
//! `tests/schemathesis/requirements.txt`, installed by `scripts/test.sh` into
//! `target/schemathesis-venv`) generates requests from `schemas/openapi.yaml` alone — every phase
//! (examples, coverage, fuzzing, stateful links) and every check — against `driftwatch run
//! --http` on the real broker, with real traffic and a bearer token. Then again with a wrong
//! token: every protected path answers the documented 401.
//!
//! The seed is printed; `DRIFTWATCH_SCHEMATHESIS_SEED=N` replays a run. Needs a broker
//! (`DRIFTWATCH_TEST_BROKERS`); it never skips.

mod kafka_support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use kafka_support::*;
use serde_json::Value;

const TOKEN: &str = "generated-clients-token";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn schemathesis() -> PathBuf {
    let path = std::env::var_os("DRIFTWATCH_SCHEMATHESIS")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target/schemathesis-venv/bin/schemathesis"));
    assert!(
        path.is_file(),
        "{} is missing: scripts/test.sh installs it (python3 -m venv target/schemathesis-venv && \
         target/schemathesis-venv/bin/pip install -r tests/schemathesis/requirements.txt)",
        path.display()
    );
    path
}

/// What one schemathesis run reported.
struct Run {
    report: Value,
    /// Responses by status code.
    statuses: BTreeMap<u16, usize>,
    output: String,
}

impl Run {
    fn requests(&self) -> usize {
        self.statuses.values().sum()
    }
}

/// Runs `schemathesis run` against `base` with `token`; `extra` are further arguments. One
/// worker: schemathesis's workers are threads, and Python 3.11's `ast.parse` (which Hypothesis
/// calls to describe strategies) fails at random when threads call it at once ("AST constructor
/// recursion depth mismatch", CPython gh-106905), more often the more body schemas there are.
fn run_schemathesis(name: &str, base: &str, token: &str, seed: u64, extra: &[&str]) -> Run {
    let dir = temp_dir(&format!("schemathesis-{name}"));
    let (json, ndjson) = (dir.join("report.json"), dir.join("events.ndjson"));
    let out = Command::new(schemathesis())
        .arg("run")
        .arg(root().join("schemas/openapi.yaml"))
        .args(["--url", base, "--checks", "all", "--phases", "examples,coverage,fuzzing,stateful"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(["--seed", &seed.to_string(), "--workers", "1", "--request-timeout", "10"])
        .args(["--report", "json,ndjson"])
        .arg("--report-json-path")
        .arg(&json)
        .arg("--report-ndjson-path")
        .arg(&ndjson)
        .args(extra)
        .current_dir(&dir)
        .env("NO_COLOR", "1")
        .env("SCHEMATHESIS_HOOKS", "")
        .output()
        .expect("run schemathesis");
    let output = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap_or_default())
        .unwrap_or_else(|e| panic!("schemathesis wrote no JSON report ({e}); its output:\n{output}"));
    let mut statuses = BTreeMap::new();
    let events = std::fs::read_to_string(&ndjson).unwrap_or_default();
    let mut rest = events.as_str();
    while let Some(i) = rest.find("\"status_code\":") {
        rest = rest[i + 14..].trim_start();
        let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if let Ok(c) = code.parse::<u16>() {
            *statuses.entry(c).or_insert(0) += 1;
        }
    }
    assert!(
        out.status.success(),
        "schemathesis ({name}, seed {seed}) found failures; replay with DRIFTWATCH_SCHEMATHESIS_SEED={seed}:\n{output}"
    );
    Run { report, statuses, output }
}

/// No failure, no error, every selected operation and phase run; the warnings are `expected`
/// (kind and how many operations), no other.
fn assert_clean(name: &str, seed: u64, run: &Run, expected: Option<(&str, usize)>) {
    let r = &run.report;
    assert_eq!(r["test_cases"]["with_failures"], 0, "{name} (seed {seed}): failures\n{}", run.output);
    assert_eq!(r["test_cases"]["errored"], 0, "{name} (seed {seed}): errors\n{}", run.output);
    assert_eq!(
        r["operations"]["tested"], r["operations"]["selected"],
        "{name}: every operation tested\n{}",
        run.output
    );
    for phase in ["examples", "coverage", "fuzzing", "stateful"] {
        assert_eq!(r["phases"][phase]["status"], "success", "{name} (seed {seed}): phase {phase}\n{}", run.output);
    }
    let warnings: Vec<(&str, usize)> = r["warnings"]
        .as_object()
        .map(|w| {
            w.iter()
                .filter_map(|(k, v)| v.as_array().filter(|a| !a.is_empty()).map(|a| (k.as_str(), a.len())))
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(warnings, expected.into_iter().collect::<Vec<_>>(), "{name} (seed {seed}): warnings\n{}", run.output);
}

#[test]
fn generated_clients_find_the_api_as_described() {
    let seed: u64 = match std::env::var("DRIFTWATCH_SCHEMATHESIS_SEED") {
        Ok(s) => s.trim().parse().expect("DRIFTWATCH_SCHEMATHESIS_SEED must be a whole number"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_secs()),
    };
    eprintln!("schemathesis seed {seed} (replay with DRIFTWATCH_SCHEMATHESIS_SEED={seed})");
    let b = brokers();
    let n = Names::new("openapi");
    let dir = temp_dir("openapi");
    let cfg = write_http_config(&dir, &n, TOKEN);

    // Real traffic with real decisions, so lists, pages and per-target answers have content.
    let lines = scenario_lines("mixed", 3, 0.5, None);
    let input = dir.join("input.jsonl");
    write_lines(&input, &lines);
    let (replayed, _) = replay(&cfg, &input);
    assert!(!replayed.is_empty(), "the mix gives commands");
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let mut svc = Service::start(&cfg, &b, &["--http", &addr], dir.join("service.log"));
    produce(&b, n.events(), &lines);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(5)).build();
    let listed = || -> usize {
        agent
            .get(&format!("{base}/v1/decisions?limit=1000"))
            .set("Authorization", &format!("Bearer {TOKEN}"))
            .call()
            .ok()
            .and_then(|r| r.into_json::<Value>().ok())
            .and_then(|v| v["decisions"].as_array().map(Vec::len))
            .unwrap_or(0)
    };
    assert!(
        wait_until(Duration::from_secs(120), || {
            svc.assert_running();
            listed() >= replayed.len()
        }),
        "the service did not list replay's {} decisions; log:\n{}",
        replayed.len(),
        svc.log_tail()
    );

    // With the token: at least 1,000 generated requests, no failure, no warning.
    // `/v1/group` answers only in a scaled-out group (404 here): the group tests ask it there.
    let run = run_schemathesis("token", &base, TOKEN, seed, &["--max-examples", "120", "--exclude-path", "/v1/group"]);
    assert_clean("with the token", seed, &run, None);
    eprintln!("with the token: {} requests, by status {:?}", run.requests(), run.statuses);
    assert!(run.requests() >= 1000, "only {} requests were generated", run.requests());
    for status in [200, 400, 404] {
        assert!(run.statuses.contains_key(&status), "no {status} answer among {:?}", run.statuses);
    }

    // With a wrong token: the protected paths answer the documented 401 and nothing else leaks.
    let run = run_schemathesis(
        "wrong-token",
        &base,
        "not-the-token",
        seed,
        &["--max-examples", "20", "--exclude-path-regex", "^/(healthz|readyz)?$"],
    );
    // schemathesis warns that authentication failed on all 12 protected operations (the verdict
    // and Flagger's three hooks among them): the point.
    assert_clean("with a wrong token", seed, &run, Some(("missing_auth", 12)));
    eprintln!("with a wrong token: {} requests, by status {:?}", run.requests(), run.statuses);
    assert!(run.statuses.get(&401).is_some_and(|&n| n > 0), "no 401 among {:?}", run.statuses);
    let leaked: Vec<_> = run.statuses.keys().filter(|s| ![401, 405].contains(*s)).collect();
    assert!(leaked.is_empty(), "a wrong token got {leaked:?} answers: {:?}", run.statuses);

    svc.terminate(Duration::from_secs(15));
}

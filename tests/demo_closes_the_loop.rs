//! `driftwatch demo` closes the loop: its simulated deployer reads the published commands and
//! acts on the fleet, and the demo's final summary shows it. Runs the real binary (30 s, the
//! fleet's half hour at 60×) and checks what a user reads at the end: the rolled-back canary
//! serves nothing after the deployer acted, the promoted version serves alone, and a retrained
//! model version appears after the retrain, is monitored against its own reference and gets no
//! retrain itself.

mod common;

use std::collections::BTreeMap;
use std::time::Instant;

use driftwatch::time::{parse_duration, parse_rfc3339, Millis};

const DURATION_S: u64 = 30;
const RETRAIN_DELAY: &str = "3m";
const MIN: Millis = 60_000;

/// A row of the final targets table.
#[derive(Debug)]
struct Target {
    first: Millis,
    last: Millis,
    events: u64,
    max_psi: Option<f64>,
}

/// A decision line: `{decided_at} {command} {kind}/{name} {version} vs {baseline}  {reason}: …`.
#[derive(Debug)]
struct Decision {
    at: Millis,
    command: String,
    target: String,
}

/// A deployer line: `{at} deployer {command} {kind}/{name} {version} → …`.
#[derive(Debug)]
struct Action {
    at: Millis,
    command: String,
    target: String,
    text: String,
}

#[derive(Debug, Default)]
struct Summary {
    targets: BTreeMap<String, Target>,
    decisions: Vec<Decision>,
    actions: Vec<Action>,
}

fn ts(s: &str) -> Millis {
    parse_rfc3339(s).unwrap_or_else(|e| panic!("`{s}` is not an RFC 3339 time: {e:?}"))
}

/// Reads the summary the demo prints when it ends.
fn parse_summary(out: &str) -> Summary {
    let start = out.rfind("\ndemo finished:").unwrap_or_else(|| panic!("no final summary in:\n{out}"));
    let mut s = Summary::default();
    let mut section = "";
    for line in out[start..].lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.first().copied() {
            None => section = "",
            Some("TARGET") => section = "targets",
            Some("DECISIONS") => section = "log",
            Some(_) if section == "targets" => {
                assert_eq!(f.len(), 7, "a target row has 7 columns: {line}");
                let target = format!("{} {}", f[0], f[1]);
                let max_psi = if f[5] == "-" { None } else { Some(f[5].parse().expect("max psi")) };
                s.targets.insert(
                    target,
                    Target { first: ts(f[2]), last: ts(f[3]), events: f[4].parse().expect("events"), max_psi },
                );
            }
            Some(_) if section == "log" && f.get(1) == Some(&"deployer") => {
                assert!(f.len() >= 6, "short deployer line: {line}");
                s.actions.push(Action {
                    at: ts(f[0]),
                    command: f[2].into(),
                    target: format!("{} {}", f[3], f[4]),
                    text: line.into(),
                });
            }
            Some(_) if section == "log" => {
                assert!(f.len() >= 6, "short decision line: {line}");
                s.decisions.push(Decision { at: ts(f[0]), command: f[1].into(), target: format!("{} {}", f[2], f[3]) });
            }
            Some(_) => {}
        }
    }
    s
}

fn run_demo() -> String {
    let duration = DURATION_S.to_string();
    let out = common::run(&["demo", "--duration", &duration, "--seed", "11", "--retrain-delay", RETRAIN_DELAY]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "the demo failed ({}); stderr:\n{}\nstdout ends:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        tail(&stdout)
    );
    stdout
}

fn tail(s: &str) -> &str {
    let from = s.len().saturating_sub(4000);
    let from = (from..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(s.len());
    &s[from..]
}

fn decision<'a>(s: &'a Summary, command: &str, target: &str, out: &str) -> &'a Decision {
    let found: Vec<&Decision> = s.decisions.iter().filter(|d| d.command == command && d.target == target).collect();
    assert_eq!(found.len(), 1, "expected one {command} of {target}; summary:\n{}", tail(out));
    found[0]
}

/// The deployer's one action on `target` for `command`, taken after the decision.
fn action<'a>(s: &'a Summary, command: &str, target: &str, decided: Millis, out: &str) -> &'a Action {
    let found: Vec<&Action> = s.actions.iter().filter(|a| a.command == command && a.target == target).collect();
    assert_eq!(
        found.len(),
        1,
        "expected the deployer to act once on the {command} of {target}; summary:\n{}",
        tail(out)
    );
    let a = found[0];
    assert!(a.at >= decided, "the deployer acted before the decision: {}", a.text);
    assert!(a.at - decided <= 5 * MIN, "the deployer took over 5 minutes of event time to act: {}", a.text);
    a
}

fn target<'a>(s: &'a Summary, name: &str, out: &str) -> &'a Target {
    s.targets.get(name).unwrap_or_else(|| panic!("{name} is not in the final table:\n{}", tail(out)))
}

#[test]
fn demo_deployer_rolls_back_promotes_and_retrains() {
    let started = Instant::now();
    let out = run_demo();
    eprintln!("demo ran in {:.1}s", started.elapsed().as_secs_f64());
    let s = parse_summary(&out);
    eprintln!("{}", &out[out.rfind("\ndemo finished:").unwrap_or(0)..]);
    let end = s.targets.values().map(|t| t.last).max().expect("targets in the final table");

    // Rollback: the canary stops serving once the deployer acted; the baseline keeps serving.
    let d = decision(&s, "rollback", "app/checkout 2.4.0", &out);
    let a = action(&s, "rollback", "app/checkout 2.4.0", d.at, &out);
    assert!(a.text.contains("traffic to 2.3.0"), "{}", a.text);
    let canary = target(&s, "app/checkout 2.4.0", &out);
    assert!(canary.last <= a.at, "app/checkout 2.4.0 served until {} after its rollback at {}", canary.last, a.at);
    assert!(target(&s, "app/checkout 2.3.0", &out).last >= end - MIN, "the baseline stopped serving");

    // Promote: the candidate serves alone from then on. Whether the healthy canary is shown
    // non-inferior within the demo's 30 minutes depends on its draws, and those depend on when
    // the deployer's earlier actions landed (wall-clock time): without a promote, the deployer
    // must not have acted and both versions keep serving.
    let promoted: Vec<&Decision> =
        s.decisions.iter().filter(|d| d.command == "promote" && d.target == "app/search 5.2.0").collect();
    let old = target(&s, "app/search 5.1.0", &out);
    if let Some(d) = promoted.first() {
        let a = action(&s, "promote", "app/search 5.2.0", d.at, &out);
        assert!(old.last <= a.at, "app/search 5.1.0 served until {} after the promote at {}", old.last, a.at);
    } else {
        assert!(!s.actions.iter().any(|a| a.command == "promote"), "a promote action without a decision");
        assert!(old.last >= end - MIN, "app/search 5.1.0 stopped serving without a promote");
    }
    assert!(promoted.len() <= 1, "promoted twice:\n{}", tail(&out));
    assert!(target(&s, "app/search 5.2.0", &out).last >= end - MIN, "the candidate stopped serving");

    // Retrain: a new version serves the model's traffic after the delay, is watched for drift
    // against its own (drifted) reference, and is not retrained.
    let d = decision(&s, "retrain", "model/fraud 7", &out);
    let a = action(&s, "retrain", "model/fraud 7", d.at, &out);
    assert!(a.text.contains("training fraud 8"), "{}", a.text);
    let delay = parse_duration(RETRAIN_DELAY).expect("delay");
    let deployed = s
        .actions
        .iter()
        .find(|x| x.command == "deploy" && x.target == "model/fraud 8")
        .unwrap_or_else(|| panic!("no deploy of the retrained model/fraud 8:\n{}", tail(&out)));
    assert_eq!(deployed.at, a.at + delay, "{}", deployed.text);
    let retrained = target(&s, "model/fraud 8", &out);
    // first_seen is the start of the first event's second.
    assert!(retrained.first >= deployed.at / 1000 * 1000, "model/fraud 8 served from {}", retrained.first);
    assert!(retrained.events > 1000, "model/fraud 8 served only {} events", retrained.events);
    assert!(target(&s, "model/fraud 7", &out).last <= deployed.at, "model/fraud 7 kept serving");
    let psi = retrained.max_psi.unwrap_or_else(|| panic!("model/fraud 8 was never checked for drift:\n{}", tail(&out)));
    assert!(psi < 0.2, "model/fraud 8 drifted from its own reference (PSI {psi})");
    assert!(
        !s.decisions.iter().any(|d| d.target == "model/fraud 8"),
        "the retrained version got a command of its own:\n{}",
        tail(&out)
    );
}

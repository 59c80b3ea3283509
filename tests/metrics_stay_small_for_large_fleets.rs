//! `/metrics` of a fleet of 10,100 versions (the `ten-thousand-targets` scenario: 9,000
//! single-version services, 100 failing canaries, 1,000 models): by default per-version series
//! only for the versions compared with a baseline and those with a finding, well under 1 MB;
//! every version with `http.metrics_targets = "all"`.

use std::time::Instant;

use driftwatch::config::Config;
use driftwatch::engine::{Engine, Position};
use driftwatch::event::decode;
use driftwatch::http::{MetricsTargets, Publisher, Shared};
use driftwatch::observe::{Observer, ServiceStats};
use driftwatch::sim;

fn metrics(engine: &Engine, mode: MetricsTargets) -> String {
    let cfg = driftwatch::http::HttpConfig { metrics_targets: mode, ..Default::default() };
    let shared = Shared::new(cfg);
    let mut publisher = Publisher::new(shared.clone());
    let started = Instant::now();
    publisher.engine(engine, &ServiceStats::default());
    let built = started.elapsed();
    let view = shared.view();
    let started = Instant::now();
    let text = String::from_utf8(view.metrics().text.to_vec()).expect("UTF-8");
    eprintln!(
        "{mode:?}: view of {} versions built in {:.1} ms, /metrics {} bytes rendered in {:.1} ms",
        view.targets.len(),
        built.as_secs_f64() * 1e3,
        text.len(),
        started.elapsed().as_secs_f64() * 1e3
    );
    text
}

fn series_of(text: &str, family: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with(&format!("{family}{{"))).map(str::to_owned).collect()
}

#[test]
fn per_version_series_are_limited_to_versions_that_matter() {
    let scenario = sim::scenario("ten-thousand-targets").expect("scenario");
    let rolled_back: Vec<String> = scenario.expected.iter().map(|e| e.name.clone()).collect();
    let mut buf = Vec::new();
    sim::write_spec(scenario, 1, 1.0, None, &mut buf).expect("simulate");
    let mut engine = Engine::new(Config::default());
    engine.keep_view_quantiles(true);
    for (i, line) in buf.split(|&b| b == b'\n').enumerate() {
        if let Ok(ev) = decode(line) {
            let _ = engine.ingest(&ev, Position { source: 0, offset: i as u64 });
        }
    }
    let commands: Vec<_> = engine.drain_commands().collect();
    assert!(commands.len() >= rolled_back.len(), "{} commands", commands.len());
    assert_eq!(engine.overview().len(), 10_100);

    let compared = metrics(&engine, MetricsTargets::Compared);
    assert!(compared.len() <= 1_000_000, "default /metrics is {} bytes", compared.len());
    let states = series_of(&compared, "driftwatch_target_state");
    // Each rolled-back canary and its baseline, nothing of the 8,900 quiet services.
    for name in &rolled_back {
        let label = format!("name=\"{name}\",version=\"1.1\",state=\"rolled_back\"");
        assert!(states.iter().any(|l| l.contains(&label)), "no state series for {name} 1.1");
        assert!(states.iter().any(|l| l.contains(&format!("name=\"{name}\",version=\"1.0\""))), "{name} 1.0");
    }
    assert!(states.len() < 1_000, "{} per-version state series by default", states.len());
    let counted: f64 = series_of(&compared, "driftwatch_targets_by_state")
        .iter()
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum();
    assert_eq!(counted, 10_100.0, "every version counted by state");

    let all = metrics(&engine, MetricsTargets::All);
    assert_eq!(series_of(&all, "driftwatch_target_state").len(), 10_100);
    let none = metrics(&engine, MetricsTargets::None);
    assert!(series_of(&none, "driftwatch_target_state").is_empty());
}

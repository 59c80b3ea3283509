//! `measure http-load`: the HTTP API under load while `driftwatch run` ingests 10,100
//! versions, then each endpoint's capacity.
//!
//! 1. Produces the `ten-thousand-targets` scenario (9,000 apps, 100 canaries, 1,000 models)
//!    onto a fresh 1-partition topic.
//! 2. Unloaded: `driftwatch run --http` (at-least-once) from a fresh group; times the
//!    consumption of the whole topic, from /readyz answering 200 to the committed input
//!    position (the `positions` record of its changelog) reaching the end.
//! 3. Loaded: the same with a fresh group while `hey` sends RATE requests/s spread over
//!    /metrics (gzip, as Prometheus asks), /v1/targets?limit=100, /v1/alerts and
//!    /v1/decisions; prints hey's rates and latencies and the ingestion ratio.
//! 4. Capacity: each endpoint alone, unthrottled (8 connections, 10 s), once ingestion is done.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::support::{self, Names, Service};
use crate::{need_tool, simulate_onto, stop, topic_size, until_positions, wall_clock};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Requests per second sent while ingesting, over all endpoints.
    #[arg(long, env = "RATE", default_value_t = 1200)]
    rate: u32,
    /// Port of the service's HTTP API.
    #[arg(long, env = "PORT", default_value_t = 9471)]
    port: u16,
    /// A shorter scenario (e.g. `10m`); the whole of it by default.
    #[arg(long, env = "DURATION")]
    duration: Option<String>,
}

pub fn run(brokers: &str, work: &Path, a: &Args) -> Result<()> {
    need_tool("hey", "apt-get install hey")?;
    let url = format!("http://127.0.0.1:{}", a.port);
    let topic = Names::new("load").events().to_owned();
    let args: Vec<String> = a.duration.iter().flat_map(|d| ["--duration".to_owned(), d.clone()]).collect();
    simulate_onto(brokers, &topic, "ten-thousand-targets", &args, &work.join("sim.log"))?;
    let total = topic_size(brokers, &topic)?;
    println!("input: {total} events of ten-thousand-targets on {topic}");

    let ingest = |name: &str, load: bool| -> Result<(Service, f64)> {
        let mut n = Names::new(name);
        n.topics.events = vec![topic.clone()];
        let cfg = support::write_config_committing(work, &n, "at_least_once", true, "1s", "");
        let addr = format!("127.0.0.1:{}", a.port);
        let mut svc = Service::start(&cfg, brokers, &["--http", &addr], work.join(format!("{name}.log")));
        while ureq::get(&format!("{url}/readyz")).timeout(Duration::from_secs(1)).call().is_err() {
            if let Some(st) = svc.child.try_wait()? {
                bail!("driftwatch run exited ({st}) at start; log:\n{}", svc.log_tail());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let t0 = wall_clock();
        let mut load_gens = Vec::new();
        if load {
            // RATE requests/s: half on /metrics, a quarter on /v1/targets, an eighth each on
            // alerts and decisions (hey's -q is per worker: 8 + 4 + 2 + 2 workers).
            let q = a.rate.div_ceil(16).to_string();
            for (workers, path, gzip, out) in [
                ("8", "/metrics", true, "hey-metrics.txt"),
                ("4", "/v1/targets?limit=100", false, "hey-targets.txt"),
                ("2", "/v1/alerts", false, "hey-alerts.txt"),
                ("2", "/v1/decisions?limit=100", false, "hey-decisions.txt"),
            ] {
                let mut args = vec!["-z", "60s", "-c", workers, "-q", q.as_str()];
                if gzip {
                    args.extend(["-H", "Accept-Encoding: gzip"]);
                }
                load_gens.push(hey(&args, &format!("{url}{path}"), &work.join(out))?);
            }
        }
        let t1 = until_positions(brokers, &n.topics.changelog, &topic, total, &mut svc);
        // Stop the load now: hey prints its summary on SIGINT.
        for h in &load_gens {
            let _ = Command::new("kill").args(["-INT", &h.id().to_string()]).status();
        }
        for h in &mut load_gens {
            let _ = h.wait();
        }
        let secs = t1? - t0;
        let rate = total as f64 / secs;
        println!("{name}: {total} events in {secs:.2} s: {rate:.0} events/s");
        Ok((svc, rate))
    };

    let (mut svc, unloaded) = ingest("unloaded", false)?;
    stop(&mut svc);
    let (mut svc, loaded) = ingest("loaded", true)?;
    println!("HTTP load during ingestion (target {} requests/s in all):", a.rate);
    let mut all = 0.0;
    for (file, label) in [
        ("hey-metrics.txt", "/metrics (gzip)"),
        ("hey-targets.txt", "/v1/targets?limit=100"),
        ("hey-alerts.txt", "/v1/alerts"),
        ("hey-decisions.txt", "/v1/decisions?limit=100"),
    ] {
        all += summary(&work.join(file), label).rps;
    }
    println!("  total {all:.0} requests/s");
    println!("ingestion under load: {loaded:.0} of {unloaded:.0} events/s unloaded = {:.2}", loaded / unloaded);
    let status: Value = ureq::get(&format!("{url}/v1/status")).call().context("GET /v1/status")?.into_json()?;
    println!("targets tracked: {}", status["targets"]);
    println!("capacity once ingestion is done (8 connections, 10 s, unthrottled):");
    for (path, gzip) in [
        ("/metrics", true),
        ("/v1/targets?limit=100", false),
        ("/v1/targets?limit=1000", false),
        ("/v1/alerts", false),
        ("/v1/decisions?limit=100", false),
        ("/v1/status", false),
    ] {
        let out = work.join("cap.txt");
        let mut args = vec!["-z", "10s", "-c", "8"];
        if gzip {
            args.extend(["-H", "Accept-Encoding: gzip"]);
        }
        let _ = hey(&args, &format!("{url}{path}"), &out)?.wait()?;
        summary(&out, &if gzip { format!("{path} (gzip)") } else { path.to_owned() });
    }
    stop(&mut svc);
    Ok(())
}

/// Starts `hey ARGS URL`, its report into `out`.
fn hey(args: &[&str], url: &str, out: &Path) -> Result<Child> {
    let file = std::fs::File::create(out).context("hey report")?;
    let err = file.try_clone()?;
    Command::new("hey").args(args).arg(url).stdout(file).stderr(err).spawn().context("starting hey")
}

/// What a hey report says.
#[derive(Debug, Default)]
struct Report {
    rps: f64,
    p50: f64,
    p99: f64,
    ok: u64,
    other: u64,
}

/// Reads hey's report in `file` and prints one line of it under `label`.
fn summary(file: &Path, label: &str) -> Report {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let mut r = Report::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let number = |i: usize| words.get(i).and_then(|w| w.parse::<f64>().ok()).unwrap_or(0.0);
        match words.as_slice() {
            ["Requests/sec:", ..] => r.rps = number(1),
            ["50%", "in", ..] => r.p50 = number(2),
            ["99%", "in", ..] => r.p99 = number(2),
            [code, count, ..] if code.starts_with('[') && code.ends_with(']') => {
                let count = count.parse::<u64>().unwrap_or(0);
                if *code == "[200]" {
                    r.ok += count;
                } else {
                    r.other += count;
                }
            }
            _ => {}
        }
    }
    println!(
        "  {label:<28} {:>8.0} req/s  p50 {:>6.1} ms  p99 {:>6.1} ms  200s: {}  other: {}",
        r.rps,
        r.p50 * 1000.0,
        r.p99 * 1000.0,
        r.ok,
        r.other
    );
    r
}

//! `measure kafka-throughput`: the throughput of `driftwatch run` against bare consumers of
//! the same topic, then its decision latency on a live feed.
//!
//! 1. Produces about N `mixed` events onto a fresh topic of PARTITIONS partitions, keyed by
//!    service as `driftwatch simulate --brokers` keys them (the rate scale is N over the lines
//!    of `mixed` at scale 1, counted from the library's generator).
//! 2. Times two bare consumers reading the whole topic: kcat (librdkafka's C API, partitions
//!    assigned directly, no group) and `examples/bare_consumer.rs` (the service's client
//!    library: a consumer group, one message per poll, `read_committed`), which only counts.
//! 3. Times `driftwatch run` (at-least-once, then exactly-once; fresh group, changelog and
//!    output topics each) from start until its committed input position reaches the end of the
//!    topic, and the same end from the moment it logged its partition assignment.
//! 4. Decision latency: a canary-error stream fed live at RATE lines/s; time from writing the
//!    line that triggers the rollback (per `replay`) to the command being readable
//!    (`read_committed`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::Consumer;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::bare_consumer::{self, Counted};
use crate::support::{self, Names, Service};
use crate::{log_lines, logged_at, need_tool, reader, simulate_onto, stop, topic_size, until_positions, wall_clock};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events to produce (the `mixed` scenario, scaled to about this many).
    #[arg(long, env = "N", default_value_t = 2_000_000)]
    n: u64,
    /// Partitions of the input topic.
    #[arg(long, env = "PARTITIONS", default_value_t = 1)]
    partitions: i32,
    /// `commit_interval` of the service.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "1s")]
    commit_interval: String,
    /// Lines per second of the live feed that measures decision latency.
    #[arg(long, env = "RATE", default_value_t = 2000.0)]
    rate: f64,
}

/// The bare consumers' times, for the ratios.
struct Bare {
    kcat: f64,
    rdkafka: Counted,
}

pub fn run(brokers: &str, work: &Path, a: &Args) -> Result<()> {
    need_tool("kcat", "apt-get install kcat")?;
    if a.rate.is_nan() || a.rate <= 0.0 || a.n == 0 {
        bail!("N and RATE must be positive");
    }

    // --- input ---------------------------------------------------------------------------
    let topic = Names::new("tp").events().to_owned();
    let scale = format!("{:.4}", a.n as f64 / scenario_size("mixed")? as f64);
    let args = ["--rate-scale".to_owned(), scale.clone(), "--partitions".to_owned(), a.partitions.to_string()];
    let produced = simulate_onto(brokers, &topic, "mixed", &args, &work.join("sim.log"))?;
    let total = topic_size(brokers, &topic)?;
    println!(
        "input: {total} events (mixed, rate-scale {scale}) on {topic} ({} partitions), produced in {produced:.1} s",
        a.partitions
    );

    // --- bare consumers ------------------------------------------------------------------
    let t0 = Instant::now();
    let status = Command::new("kcat")
        .args(["-C", "-b", brokers, "-t", &topic, "-o", "beginning", "-e", "-q"])
        .stdout(Stdio::null())
        .status()
        .context("running kcat")?;
    if !status.success() {
        bail!("kcat -C failed ({status})");
    }
    let kcat = t0.elapsed().as_secs_f64();
    println!("bare consumer (kcat -C -o beginning -e): {kcat:.2} s, {:.0} events/s", total as f64 / kcat);
    let t0 = Instant::now();
    let rdkafka = bare_consumer::count(brokers, &topic).context("bare rdkafka consumer")?;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "bare rdkafka consumer (examples/bare_consumer.rs): {secs:.2} s, {:.0} events/s; its own clock: {rdkafka}",
        total as f64 / secs
    );
    let bare = Bare { kcat, rdkafka: Counted { total: secs, ..rdkafka } };

    // --- driftwatch run ------------------------------------------------------------------
    for (name, delivery) in [("alo", "at_least_once"), ("eos", "exactly_once")] {
        run_mode(brokers, work, a, &topic, total, &bare, name, delivery)?;
    }

    // --- decision latency ----------------------------------------------------------------
    decision_latency(brokers, work, a)
}

/// Lines of `scenario` at rate scale 1 (seed 1, as `simulate` by default).
pub(crate) fn scenario_size(scenario: &str) -> Result<u64> {
    let s = driftwatch::sim::scenario(scenario).ok_or_else(|| anyhow!("no scenario {scenario}"))?;
    let mut g = driftwatch::sim::Generator::new(s, 1, 1.0);
    let mut n = 0;
    while g.next_line().is_some() {
        n += 1;
    }
    Ok(n)
}

/// Fresh names for one run of the service on `input`.
fn names_on(prefix: &str, input: &str) -> Names {
    let mut n = Names::new(prefix);
    n.topics.events = vec![input.to_owned()];
    n
}

#[allow(clippy::too_many_arguments)]
fn run_mode(
    brokers: &str,
    work: &Path,
    a: &Args,
    topic: &str,
    total: i64,
    bare: &Bare,
    name: &str,
    delivery: &str,
) -> Result<()> {
    let n = names_on(name, topic);
    let cfg = support::write_config_committing(work, &n, delivery, true, &a.commit_interval, "");
    let log = work.join(format!("{name}.log"));
    let t0 = wall_clock();
    let mut svc = Service::start(&cfg, brokers, &[], log.clone());
    let t1 = until_positions(brokers, &n.topics.changelog, topic, total, &mut svc)?;
    stop(&mut svc);
    let lines = log_lines(&log);
    let secs = t1 - t0;
    println!(
        "driftwatch run ({delivery}, commit_interval {}): {secs:.2} s, {:.0} events/s, {:.2} of kcat, {:.2} of the rdkafka consumer; {}",
        a.commit_interval,
        total as f64 / secs,
        bare.kcat / secs,
        bare.rdkafka.total / secs,
        lines.last().map_or("", String::as_str)
    );
    if let Some(caught) = lines.iter().find_map(|l| l.find("caught up: ").map(|i| &l[i..])) {
        // "caught up: N messages in S s (D delivered twice …), R/s"
        let rate = caught.rsplit(' ').next().and_then(|r| r.trim_end_matches("/s").parse::<f64>().ok());
        if let Some(rate) = rate {
            println!(
                "  its own log, first to last message: {caught}, {:.2} of the rdkafka consumer from its first message",
                rate / bare.rdkafka.steady_rate()
            );
        }
    }
    if let Some(ta) = logged_at(&lines, "input partitions") {
        let secs = t1 - ta;
        println!(
            "  from partition assignment ({:.2} s after start): {secs:.2} s, {:.0} events/s, {:.2} of kcat",
            ta - t0,
            total as f64 / secs,
            bare.kcat / secs
        );
    }
    Ok(())
}

fn decision_latency(brokers: &str, work: &Path, a: &Args) -> Result<()> {
    let n = Names::new("lat");
    let input = work.join("canary.jsonl");
    let lines = support::scenario_lines("canary-error", 1, 1.0, None);
    support::write_lines(&input, &lines);
    let cfg = support::write_config_committing(work, &n, "exactly_once", true, &a.commit_interval, "");
    let (commands, _) = support::replay(&cfg, &input);
    let trigger = commands
        .first()
        .and_then(|c| c["evidence"]["input_offsets"].as_object()?.values().next()?.as_u64())
        .ok_or_else(|| anyhow!("replay of canary-error gave no command with input offsets"))?
        as usize;
    let log = work.join("lat.log");
    let mut svc = Service::start(&cfg, brokers, &[], log.clone());
    while !log_lines(&log).iter().any(|l| l.contains("state restored")) {
        if let Some(st) = svc.child.try_wait()? {
            bail!("driftwatch run exited ({st}) at start; log:\n{}", svc.log_tail());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The reader waits for the first rollback (read_committed) and tells when it got it.
    let (got_tx, got_rx) = mpsc::channel();
    let quit = Arc::new(AtomicBool::new(false));
    let rollback = reader(brokers, &[("topic.metadata.refresh.interval.ms", "100")])?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&n.topics.rollback, 0, Offset::Beginning)?;
    rollback.assign(&tpl)?;
    let q = quit.clone();
    let waiter = std::thread::spawn(move || {
        while !q.load(Ordering::SeqCst) {
            if let Some(Ok(_)) = rollback.poll(Duration::from_millis(20)) {
                let _ = got_tx.send(wall_clock());
                return;
            }
        }
    });
    let sent = feed(brokers, n.events(), &lines, a.rate, trigger)?;
    let got = got_rx.recv_timeout(Duration::from_secs(30)).ok();
    quit.store(true, Ordering::SeqCst);
    let _ = waiter.join();
    stop(&mut svc);
    match (got, sent) {
        (Some(got), Some(sent)) => println!(
            "decision latency (exactly-once, commit_interval {}, feed {} lines/s): {:.0} ms from writing line {trigger} of {} to the rollback being readable",
            a.commit_interval,
            a.rate,
            (got - sent) * 1000.0,
            lines.len()
        ),
        _ => println!("decision latency: no rollback seen within 30 s of the trigger"),
    }
    Ok(())
}

/// Writes `lines` to partition 0 of `topic` at `rate` lines/s, up to 5 s past line `trigger`;
/// returns when that line was handed to the producer (seconds since the epoch).
fn feed(brokers: &str, topic: &str, lines: &[Vec<u8>], rate: f64, trigger: usize) -> Result<Option<f64>> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "5")
        .create()
        .context("creating the producer")?;
    let start = Instant::now();
    let mut sent = None;
    let last = trigger + (rate * 5.0) as usize;
    for (i, line) in lines.iter().enumerate().take(last + 1) {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let record = BaseRecord::<(), [u8]>::to(topic).payload(line.as_slice()).partition(0);
        driftwatch::kafka::send_retrying(&producer, record, Duration::from_secs(30)).context("feeding")?;
        producer.poll(Duration::ZERO);
        if i == trigger {
            sent = Some(wall_clock());
        }
    }
    producer.flush(Duration::from_secs(30)).context("flushing the feed")?;
    Ok(sent)
}

//! `measure group-throughput`: a scaled-out group (`kafka.tasks`) of 1, 2, … instances against
//! a bare consumer group of the same size reading the same topic.
//!
//! 1. Produces about N `mixed` events onto a fresh topic of PARTITIONS partitions, keyed by
//!    service (`driftwatch simulate --brokers`).
//! 2. For each size k in INSTANCES: times k bare consumers in one fresh group (the service's
//!    client library, `read_committed`, one thread each, counting only) until together they
//!    have read the whole topic; then k `driftwatch run` instances of one fresh group
//!    (`kafka.tasks` = TASKS), from the first start until the group's committed offsets reach
//!    the end of the input topic and of both internal topics (all but the transaction markers
//!    that end the instances' last transactions): every event routed, joined and taken into
//!    its task's engine.
//! 3. Reports what the group wrote to its internal topics (`{group}-tasks`, `{group}-joins`):
//!    records and bytes (keys and values) per input event, against the input's bytes.

use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::support::{self, Names, Service};
use crate::{partitions, reader, simulate_onto, stop, topic_size};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Events to produce (the `mixed` scenario, scaled to about this many).
    #[arg(long, env = "N", default_value_t = 1_000_000)]
    n: u64,
    /// Partitions of the input topic.
    #[arg(long, env = "PARTITIONS", default_value_t = 6)]
    partitions: i32,
    /// Task partitions of the group (`kafka.tasks`).
    #[arg(long, env = "TASKS", default_value_t = 6)]
    tasks: i32,
    /// Group sizes to measure, comma-separated.
    #[arg(long, env = "INSTANCES", default_value = "1,2", value_delimiter = ',')]
    instances: Vec<usize>,
    /// `commit_interval` of the service.
    #[arg(long, env = "COMMIT_INTERVAL", default_value = "1s")]
    commit_interval: String,
}

pub fn run(brokers: &str, work: &Path, a: &Args) -> Result<()> {
    if a.n == 0 || a.tasks < 1 || a.instances.is_empty() {
        bail!("N, TASKS and INSTANCES must be positive");
    }
    let topic = Names::new("gt").events().to_owned();
    let lines = crate::throughput::scenario_size("mixed")?;
    let scale = format!("{:.4}", a.n as f64 / lines as f64);
    let args = ["--rate-scale".to_owned(), scale.clone(), "--partitions".to_owned(), a.partitions.to_string()];
    let produced = simulate_onto(brokers, &topic, "mixed", &args, &work.join("sim.log"))?;
    let total = topic_size(brokers, &topic)?;
    let (_, input_bytes) = records_and_bytes(brokers, &topic)?;
    println!(
        "input: {total} events of {:.0} bytes (mixed, rate-scale {scale}) on {topic} ({} partitions), produced in {produced:.1} s",
        input_bytes as f64 / total as f64,
        a.partitions
    );
    for &k in &a.instances {
        let bare = bare_group(brokers, &topic, k, total)?;
        println!("bare consumer group of {k}: {bare:.2} s, {:.0} events/s", total as f64 / bare);
        let n = {
            let mut n = Names::new(&format!("g{k}"));
            n.topics.events = vec![topic.clone()];
            n
        };
        let extra = format!("tasks = {}", a.tasks);
        let cfg = support::write_config_committing(work, &n, "exactly_once", true, &a.commit_interval, &extra);
        let t0 = Instant::now();
        let mut svcs: Vec<Service> =
            (0..k).map(|i| Service::start(&cfg, brokers, &[], work.join(format!("g{k}-{i}.log")))).collect();
        let done = loop {
            let c = support::committed_sum(brokers, &n.group, &topic, a.partitions);
            if c >= total && internal_done(brokers, &n.group, a.tasks, k)? {
                break t0.elapsed().as_secs_f64();
            }
            for s in &mut svcs {
                if let Some(st) = s.child.try_wait()? {
                    bail!("an instance exited ({st}); log:\n{}", s.log_tail());
                }
            }
            if t0.elapsed() > Duration::from_secs(1800) {
                bail!("the group of {k} committed {c} of {total} in 30 min");
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        for s in &mut svcs {
            stop(s);
        }
        println!(
            "driftwatch group of {k} (tasks {}, commit_interval {}): {done:.2} s, {:.0} events/s, {:.2} of the bare group",
            a.tasks,
            a.commit_interval,
            total as f64 / done,
            bare / done
        );
        let mut records = 0;
        let mut bytes = 0;
        for internal in [format!("{}-tasks", n.group), format!("{}-joins", n.group)] {
            let (r, b) = records_and_bytes(brokers, &internal)?;
            records += r;
            bytes += b;
        }
        println!(
            "  internal topics: {records} records, {bytes} bytes: {:.2} records and {:.0} bytes per input event ({:.2}× the input's bytes)",
            records as f64 / total as f64,
            bytes as f64 / total as f64,
            bytes as f64 / input_bytes as f64
        );
    }
    Ok(())
}

/// Whether the group's committed offsets of both internal topics are at their ends, but for
/// the markers that end the last transaction of each of the `k` instances.
fn internal_done(brokers: &str, group: &str, tasks: i32, k: usize) -> Result<bool> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()?;
    for (topic, n) in [(format!("{group}-tasks"), tasks), (format!("{group}-joins"), tasks)] {
        let mut tpl = TopicPartitionList::new();
        for p in 0..n {
            tpl.add_partition(&topic, p);
        }
        let committed = c.committed_offsets(tpl, Duration::from_secs(5))?;
        for e in committed.elements() {
            let end = c.fetch_watermarks(&topic, e.partition(), Duration::from_secs(5))?.1;
            if e.offset().to_raw().unwrap_or(0) < end - k as i64 {
                if std::env::var_os("MEASURE_DEBUG").is_some() {
                    eprintln!("{topic}/{}: committed {:?}, end {end}", e.partition(), e.offset());
                }
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Seconds for `k` consumers of one fresh group to read `total` records of `topic`.
fn bare_group(brokers: &str, topic: &str, k: usize, total: i64) -> Result<f64> {
    let group = format!("bare-group-{}-{}", std::process::id(), crate::wall_clock() as u64);
    let read = Arc::new(AtomicI64::new(0));
    let t0 = Instant::now();
    let threads: Vec<_> = (0..k)
        .map(|_| {
            let (brokers, topic, group, read) = (brokers.to_owned(), topic.to_owned(), group.clone(), read.clone());
            std::thread::spawn(move || -> Result<()> {
                let c: BaseConsumer = ClientConfig::new()
                    .set("bootstrap.servers", &brokers)
                    .set("group.id", &group)
                    .set("enable.auto.commit", "false")
                    .set("isolation.level", "read_committed")
                    .set("auto.offset.reset", "earliest")
                    .set("partition.assignment.strategy", "roundrobin")
                    .create()?;
                c.subscribe(&[&topic])?;
                while read.load(Ordering::Relaxed) < total {
                    if let Some(Ok(_)) = c.poll(Duration::from_millis(50)) {
                        read.fetch_add(1, Ordering::Relaxed);
                    }
                    if t0.elapsed() > Duration::from_secs(600) {
                        return Err(anyhow!("bare group read {} of {total} in 10 min", read.load(Ordering::Relaxed)));
                    }
                }
                Ok(())
            })
        })
        .collect();
    for t in threads {
        t.join().map_err(|_| anyhow!("a bare consumer panicked"))??;
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// Records and bytes (keys and values) of every partition of `topic`, read to its end.
fn records_and_bytes(brokers: &str, topic: &str) -> Result<(i64, i64)> {
    let c = reader(brokers, &[])?;
    let mut tpl = TopicPartitionList::new();
    let parts = partitions(&c, topic)?;
    let mut ends = Vec::new();
    for &p in &parts {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
        ends.push(c.fetch_watermarks(topic, p, Duration::from_secs(10)).context("watermarks")?.1);
    }
    let want: i64 = ends.iter().sum();
    c.assign(&tpl)?;
    let (mut records, mut bytes) = (0i64, 0i64);
    let t0 = Instant::now();
    while records < want {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                records += 1;
                bytes += (m.payload_len() + m.key().map_or(0, <[u8]>::len)) as i64;
            }
            Some(Err(e)) => bail!("reading {topic}: {e}"),
            // Aborted transactions leave offsets that hold no record.
            None if t0.elapsed() > Duration::from_secs(5)
                && c.position()?.elements().iter().all(|e| {
                    let i = parts.iter().position(|&p| p == e.partition()).unwrap_or(0);
                    e.offset().to_raw().unwrap_or(0) >= ends[i]
                }) =>
            {
                break
            }
            None => {}
        }
    }
    Ok((records, bytes))
}

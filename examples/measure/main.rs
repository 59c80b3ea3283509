//! Measurements of `driftwatch run` on a real broker, end to end: input produced with
//! `driftwatch simulate --brokers`, the service run as a child process with a fresh config, and
//! "done" read from the `positions` record of its changelog (`read_committed`), as soon as it
//! says the committed input position is the end of the input.
//!
//! ```text
//! bash scripts/kafka.sh up && cargo build --release --bin driftwatch --example measure
//! target/release/examples/measure kafka-throughput   # scripts/kafka-throughput.sh
//! target/release/examples/measure http-load          # scripts/http-load.sh
//! target/release/examples/measure group-throughput   # scripts/group-throughput.sh
//! ```
//!
//! Settings come from flags or the environment (`BROKERS`, `N`, `RATE`, ...; see `--help`).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use driftwatch::kafka::{decode_positions, POSITIONS_KEY};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

#[allow(dead_code)]
#[path = "../bare_consumer.rs"]
mod bare_consumer;
mod group;
mod http_load;
#[path = "../../tests/kafka_support/mod.rs"]
mod support;
mod throughput;

use support::Service;

#[derive(Debug, Parser)]
#[command(about = "Throughput, decision latency and HTTP load of `driftwatch run` on a real broker")]
struct Cli {
    /// Bootstrap servers of the broker.
    #[arg(long, env = "BROKERS", default_value = "127.0.0.1:9092", global = true)]
    brokers: String,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Throughput against bare consumers, then decision latency (scripts/kafka-throughput.sh).
    KafkaThroughput(throughput::Args),
    /// HTTP API under load while ingesting 10,100 versions (scripts/http-load.sh).
    HttpLoad(http_load::Args),
    /// A scaled-out group of 1, 2, … instances against a bare consumer group of the same size
    /// (scripts/group-throughput.sh).
    GroupThroughput(group::Args),
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let bin = support::bin();
    if !bin.is_file() {
        bail!("{} is missing: cargo build --release --bin driftwatch", bin.display());
    }
    let work = support::temp_dir(&format!("measure-{}", wall_clock() as u64));
    let result = match cli.cmd {
        Cmd::KafkaThroughput(a) => throughput::run(&cli.brokers, &work, &a),
        Cmd::HttpLoad(a) => http_load::run(&cli.brokers, &work, &a),
        Cmd::GroupThroughput(a) => group::run(&cli.brokers, &work, &a),
    };
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// Seconds since the epoch, as the service's log timestamps.
fn wall_clock() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Fails unless `tool` runs (`tool -h` or `tool --help`).
fn need_tool(tool: &str, hint: &str) -> Result<()> {
    let found = Command::new(tool).arg("-h").stdout(Stdio::null()).stderr(Stdio::null()).status().is_ok();
    if !found {
        bail!("{tool} is needed: {hint}");
    }
    Ok(())
}

/// `driftwatch simulate --scenario SCENARIO ARGS... --brokers --topic TOPIC` (its log in
/// `log`); returns the seconds it took.
fn simulate_onto(brokers: &str, topic: &str, scenario: &str, args: &[String], log: &Path) -> Result<f64> {
    let t0 = Instant::now();
    let status = Command::new(support::bin())
        .args(["simulate", "--scenario", scenario, "--brokers", brokers, "--topic", topic])
        .args(args)
        .env_remove("DRIFTWATCH_BROKERS")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).context("simulate log")?)
        .status()
        .context("running driftwatch simulate")?;
    if !status.success() {
        bail!("driftwatch simulate failed: {}", std::fs::read_to_string(log).unwrap_or_default());
    }
    Ok(t0.elapsed().as_secs_f64())
}

/// A consumer outside any group, for metadata and assigned reads.
fn reader(brokers: &str, extra: &[(&str, &str)]) -> Result<BaseConsumer> {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers)
        .set("group.id", "driftwatch-measure")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed");
    for (k, v) in extra {
        c.set(*k, *v);
    }
    c.create().context("creating a consumer")
}

/// The partitions of `topic` (none while it does not exist).
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>> {
    let md = consumer.fetch_metadata(Some(topic), Duration::from_secs(10)).context("metadata")?;
    Ok(md.topics().iter().filter(|t| t.error().is_none()).flat_map(|t| t.partitions().iter().map(|p| p.id())).collect())
}

/// The records on `topic`: its end offsets summed over its partitions.
fn topic_size(brokers: &str, topic: &str) -> Result<i64> {
    let c = reader(brokers, &[])?;
    let mut total = 0;
    for p in partitions(&c, topic)? {
        total += c.fetch_watermarks(topic, p, Duration::from_secs(10)).context("end offsets")?.1;
    }
    Ok(total)
}

/// Follows the changelog of `svc` (`read_committed`, from the beginning, once it exists) and
/// returns the moment (seconds since the epoch) a positions record says `topic` is read up to
/// `total` records, summed over its partitions. Fails if the service exits first.
fn until_positions(brokers: &str, changelog: &str, topic: &str, total: i64, svc: &mut Service) -> Result<f64> {
    let c = reader(brokers, &[])?;
    let running = |svc: &mut Service| -> Result<()> {
        match svc.child.try_wait()? {
            None => Ok(()),
            Some(st) => bail!("driftwatch run exited ({st}) before reading its input; log:\n{}", svc.log_tail()),
        }
    };
    let parts = loop {
        let p = partitions(&c, changelog)?;
        if !p.is_empty() {
            break p;
        }
        running(svc)?;
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut tpl = TopicPartitionList::new();
    for p in parts {
        tpl.add_partition_offset(changelog, p, Offset::Beginning)?;
    }
    c.assign(&tpl)?;
    loop {
        match c.poll(Duration::from_millis(100)) {
            None => running(svc)?,
            Some(Err(e)) => {
                eprintln!("reading {changelog}: {e}");
                running(svc)?;
            }
            Some(Ok(m)) if m.key() == Some(POSITIONS_KEY.as_bytes()) => {
                let Some(value) = m.payload() else { continue };
                let read: i64 = decode_positions(value)
                    .with_context(|| format!("positions record at {changelog}/{}", m.offset()))?
                    .iter()
                    .filter(|(t, _, _)| t == topic)
                    .map(|(_, _, o)| o)
                    .sum();
                if read >= total {
                    return Ok(wall_clock());
                }
            }
            Some(Ok(_)) => {}
        }
    }
}

/// SIGTERM, then waits for the exit (SIGKILL after a minute).
fn stop(svc: &mut Service) {
    svc.signal("TERM");
    if svc.wait_for(Duration::from_secs(60)).is_none() {
        svc.kill9();
    }
}

/// The service's log lines, without terminal colours.
fn log_lines(log: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines().map(strip_ansi).collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters, ended by a letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The time (seconds since the epoch) of the first log line containing `text`.
fn logged_at(lines: &[String], text: &str) -> Option<f64> {
    let line = lines.iter().find(|l| l.contains(text))?;
    let ms = driftwatch::time::parse_rfc3339(line.split_whitespace().next()?).ok()?;
    Some(ms as f64 / 1000.0)
}

//! A minimal rdkafka consumer: the yardstick for `driftwatch run`'s throughput.
//!
//! It joins a fresh consumer group on one topic, exactly as the service does (same client
//! library, `read_committed`, end-of-partition events), touches each payload and counts
//! messages until every assigned partition is read to its end. No decoding, no state.
//!
//! ```text
//! cargo run --release --example bare_consumer -- BROKERS TOPIC
//! ```
//!
//! Prints one line: messages, seconds from start and events/s, then seconds from the first
//! message and events/s. `examples/measure` runs the same [`count`].

use std::collections::HashSet;
use std::fmt;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (Some(brokers), Some(topic)) = (args.get(1), args.get(2)) else {
        return Err("usage: bare_consumer BROKERS TOPIC".into());
    };
    println!("{}", count(brokers, topic)?);
    Ok(())
}

/// What [`count`] read, and how fast.
#[derive(Debug, Clone, Copy)]
pub struct Counted {
    pub messages: u64,
    pub bytes: u64,
    /// Seconds from start (client creation) to the end of the last partition.
    pub total: f64,
    /// Seconds from the first message to the end of the last partition.
    pub from_first: f64,
}

impl Counted {
    /// Events/s from the first message to the end.
    pub fn steady_rate(&self) -> f64 {
        self.messages as f64 / self.from_first.max(1e-9)
    }
}

impl fmt::Display for Counted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} messages ({} bytes): {:.2} s from start, {:.0} events/s; {:.2} s from the first message, {:.0} events/s",
            self.messages,
            self.bytes,
            self.total,
            self.messages as f64 / self.total,
            self.from_first,
            self.steady_rate(),
        )
    }
}

/// Reads `topic` from its beginning in a fresh group until every assigned partition is at its
/// end, counting messages and payload bytes.
pub fn count(brokers: &str, topic: &str) -> Result<Counted, KafkaError> {
    let start = Instant::now();
    let group = format!("bare-{}-{}", std::process::id(), start.elapsed().as_nanos());
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("enable.partition.eof", "true")
        .set("auto.offset.reset", "earliest")
        .set("fetch.queue.backoff.ms", "10")
        .create()?;
    consumer.subscribe(&[topic])?;
    let mut messages: u64 = 0;
    let mut bytes: u64 = 0;
    let mut first: Option<Instant> = None;
    let mut at_end: HashSet<i32> = HashSet::new();
    loop {
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                first.get_or_insert_with(Instant::now);
                messages += 1;
                bytes += m.payload().map_or(0, |p| p.len() as u64);
                at_end.remove(&m.partition());
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
                let assignment = consumer.assignment()?;
                if assignment.count() > 0 && assignment.elements().iter().all(|e| at_end.contains(&e.partition())) {
                    break;
                }
            }
            Some(Err(e)) => return Err(e),
        }
    }
    let total = start.elapsed().as_secs_f64();
    let from_first = first.map_or(0.0, |f| f.elapsed().as_secs_f64());
    Ok(Counted { messages, bytes, total, from_first })
}

//! The Kafka driver of `driftwatch run`: consume events, decide, publish commands, keep state.
//!
//! One session is: create missing topics; subscribe (the group join proceeds while the rest
//! starts); create the producer (transactional in exactly-once mode, which also fences a
//! previous instance and aborts its open transaction); restore the engine from the compacted
//! changelog topic; start every assigned partition at the position stored with that state; then
//! loop: poll, decode, ingest, publish commands and dead letters; every `commit_interval` (or
//! sooner, for waiting commands and at the end of a backlog), write the changed state records
//! and the input positions and commit — in one Kafka transaction with the consumer offsets in
//! exactly-once mode, or flush-then-commit in at-least-once mode. Any Kafka error ends the
//! session; the next session starts again from the last committed state, so an aborted
//! transaction, a fenced producer or a broker outage never loses nor duplicates a command.
//!
//! The loop is synchronous, on two threads of its own: transactional calls block, and nothing
//! here needs to share a runtime with the HTTP server. The poll thread polls and copies
//! messages into batches (and decodes them while the engine thread is behind); the engine
//! thread ingests them in order, publishes and commits.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::Deserialize;
use tracing::{debug, error, info, warn};

use crate::command::Command;
use crate::config::Config;
use crate::engine::{Engine, Position};
use crate::event::{spare_features, Decoder, Features};

mod group;
mod input;
mod members;
mod produce;
use crate::clock::wall_ms;
pub use crate::config::kafka::{Delivery, KafkaConfig, TopicsConfig};
pub use crate::observe::{NoObserver, Observer, ServiceStats};
use input::{Batch, Inputs, Record, IN_FLIGHT_BATCHES};
pub use produce::send_retrying;

/// A failure of the service.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Kafka said no.
    #[error("kafka: {context}: {source}")]
    Kafka {
        /// What was being done.
        context: &'static str,
        /// The client error.
        source: KafkaError,
    },
    /// Stored state cannot be read.
    #[error("{0}")]
    State(#[from] crate::engine::snapshot::SnapshotError),
    /// A profile in config cannot be loaded.
    #[error("{0}")]
    Profile(String),
    /// The runtime that drives admin requests cannot be built.
    #[error("runtime: {0}")]
    Runtime(std::io::Error),
    /// The poll thread could not start, stopped or panicked.
    #[error("{0}")]
    Thread(String),
}

fn kafka(context: &'static str) -> impl FnOnce(KafkaError) -> ServiceError {
    move |source| ServiceError::Kafka { context, source }
}

impl ServiceError {
    /// Errors of configuration that restarting cannot fix.
    fn is_permanent(&self) -> bool {
        match self {
            ServiceError::Kafka { source, .. } => {
                matches!(source, KafkaError::ClientConfig(..) | KafkaError::ClientCreation(_))
            }
            ServiceError::State(_) | ServiceError::Profile(_) | ServiceError::Runtime(_) => true,
            ServiceError::Thread(_) => false,
        }
    }
}

/// Input positions: next offset to read per topic/partition.
type Positions = HashMap<(String, i32), i64>;

/// The changelog key of the input positions record (the other keys are the engine's state).
pub const POSITIONS_KEY: &str = "positions";

/// The value of the changelog's input positions record: `[[topic, partition, next offset to
/// read], ...]`.
pub fn encode_positions(positions: &[(String, i32, i64)]) -> Vec<u8> {
    serde_json::to_vec(positions).unwrap_or_default()
}

/// Reads the value of the changelog's input positions record (see [`encode_positions`]).
pub fn decode_positions(value: &[u8]) -> Result<Vec<(String, i32, i64)>, serde_json::Error> {
    serde_json::from_slice(value)
}

struct Ctx {
    /// Positions of the restored or last committed state.
    positions: Arc<Mutex<Positions>>,
    /// Where the engine's input ended when partitions were revoked during this session: a
    /// rebalance (partitions added, a member joining) neither reads again what the engine
    /// already has nor skips what it had not ingested yet.
    resume: Mutex<Positions>,
    assigned: Arc<AtomicBool>,
    /// Consumer lag summed over assigned partitions, from the client's statistics
    /// (`LAG_UNKNOWN` until they tell).
    lag: AtomicI64,
    /// Counts assignments and revocations: batches carry the epoch they were polled in.
    epoch: AtomicU64,
    /// The input partitions assigned now, with the offset each started at.
    assignment: Mutex<Vec<(String, i32, Option<i64>)>>,
    /// The last epoch the engine thread has caught up with (after a revocation: it holds
    /// nothing of the revoked partitions and `resume` says where its input ends).
    released: Mutex<u64>,
    released_cv: Condvar,
    /// False once the engine thread has stopped: nobody is left to release partitions.
    engine_running: AtomicBool,
    /// A revocation the engine thread did not release in time: the session must end.
    broken: AtomicBool,
}

impl Ctx {
    /// The engine thread has caught up with `epoch`.
    fn release(&self, epoch: u64) {
        if let Ok(mut r) = self.released.lock() {
            *r = epoch;
        }
        self.released_cv.notify_all();
    }

    /// Waits (in the rebalance callback) until the engine thread has caught up with `epoch`.
    fn await_release(&self, epoch: u64) -> bool {
        let deadline = Instant::now() + REVOKE_TIMEOUT;
        let Ok(mut r) = self.released.lock() else { return false };
        while *r < epoch {
            if !self.engine_running.load(Ordering::SeqCst) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            r = match self.released_cv.wait_timeout(r, StdDuration::from_millis(50)) {
                Ok((r, _)) => r,
                Err(_) => return false,
            };
        }
        true
    }
}

/// How long a revocation waits for the engine thread to let go of the partitions.
const REVOKE_TIMEOUT: StdDuration = StdDuration::from_secs(60);

const LAG_UNKNOWN: i64 = i64::MIN;

/// Client errors, except reaching the end of a partition: with `enable.partition.eof` that is
/// reported as an error event too, but it only means "caught up".
fn client_error(err: KafkaError, reason: &str) {
    if matches!(err, KafkaError::Global(RDKafkaErrorCode::PartitionEOF)) {
        debug!("librdkafka: {reason}");
    } else {
        error!("librdkafka: {err}: {reason}");
    }
}

impl ClientContext for Ctx {
    fn error(&self, err: KafkaError, reason: &str) {
        client_error(err, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<ClientStats>(json) else { return };
        let lags = stats.topics.values().flat_map(|t| t.partitions.values()).filter(|p| p.partition >= 0 && p.desired);
        let known: Vec<i64> = lags.map(|p| p.consumer_lag_stored).filter(|&l| l >= 0).collect();
        let lag = if known.is_empty() { LAG_UNKNOWN } else { known.iter().sum() };
        debug!("consumer lag {}", if lag == LAG_UNKNOWN { "unknown".to_owned() } else { lag.to_string() });
        self.lag.store(lag, Ordering::Relaxed);
    }
}

/// The parts of the client's statistics (`statistics.interval.ms`) driftwatch reads.
#[derive(Deserialize)]
struct ClientStats {
    #[serde(default)]
    topics: HashMap<String, TopicStats>,
}

#[derive(Deserialize)]
struct TopicStats {
    #[serde(default)]
    partitions: HashMap<String, PartitionStats>,
}

/// A partition's statistics; offsets the client does not know yet are negative.
#[derive(Deserialize)]
struct PartitionStats {
    partition: i32,
    #[serde(default)]
    desired: bool,
    #[serde(default = "unknown_offset")]
    consumer_lag_stored: i64,
    #[serde(default = "unknown_offset")]
    ls_offset: i64,
    #[serde(default = "unknown_offset")]
    hi_offset: i64,
}

fn unknown_offset() -> i64 {
    -1
}

/// The context of the changelog reader: quiet about partition ends, like [`Ctx`].
struct ReaderCtx;

impl ClientContext for ReaderCtx {
    fn error(&self, err: KafkaError, reason: &str) {
        client_error(err, reason);
    }
}

impl ConsumerContext for ReaderCtx {}

impl ConsumerContext for Ctx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                // Start each partition where the engine's input ends: where it stood when this
                // session last let go of the partition, else where the restored state ends
                // (not at the group's offset: state and position were written together).
                let mut assignment = Vec::new();
                if let (Ok(pos), Ok(resume)) = (self.positions.lock(), self.resume.lock()) {
                    let parts: Vec<(String, i32)> =
                        tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
                    for (t, p) in parts {
                        let key = (t.clone(), p);
                        let offset =
                            resume.get(&key).or(pos.get(&key)).map_or(Offset::Beginning, |&o| Offset::Offset(o));
                        let _ = tpl.set_partition_offset(&t, p, offset);
                        assignment.push((t, p, input::start_offset(offset)));
                    }
                }
                assignment.sort();
                match consumer.assign(tpl) {
                    Ok(()) => info!("assigned {} input partitions", tpl.count()),
                    Err(e) => warn!("assigning partitions failed: {e}"),
                }
                if let Ok(mut a) = self.assignment.lock() {
                    *a = assignment;
                }
                self.epoch.fetch_add(1, Ordering::SeqCst);
                self.assigned.store(true, Ordering::SeqCst);
            }
            _ => {
                // Nothing polled before this point is ingested from now on: the engine thread
                // drops what it holds of these partitions and records where its input ends,
                // which is where they start again if they come back.
                if let Ok(mut a) = self.assignment.lock() {
                    a.clear();
                }
                let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                if !self.await_release(epoch) {
                    error!("the engine thread did not release the revoked partitions within {REVOKE_TIMEOUT:?}");
                    self.broken.store(true, Ordering::SeqCst);
                }
                let _ = consumer.unassign();
                self.assigned.store(false, Ordering::SeqCst);
                info!("input partitions revoked");
            }
        }
    }

    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, _rebalance: &Rebalance<'_>) {}
}

fn client_config(k: &KafkaConfig, brokers: &str, extra: &BTreeMap<String, String>) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (key, v) in k.properties.iter().chain(extra) {
        c.set(key, v);
    }
    c
}

/// The consumer properties of a group member: the group, offsets committed only with the
/// state, committed input only, and fetching tuned for a loop that keeps up.
fn member_config(k: &KafkaConfig) -> BTreeMap<String, String> {
    let mut c = k.consumer_properties.clone();
    c.insert("group.id".into(), k.group_id.clone());
    c.insert("enable.auto.commit".into(), "false".into());
    c.insert("isolation.level".into(), "read_committed".into());
    c.entry("auto.offset.reset".into()).or_insert_with(|| "earliest".into());
    // Once its queue of fetched messages is full, librdkafka waits this long before fetching
    // again (default 1 s): the loop would empty the queue well before and then sit idle.
    c.entry("fetch.queue.backoff.ms".into()).or_insert_with(|| "10".into());
    // The end of a partition is only known from the answer to a fetch at the end, which the
    // broker holds this long when there is nothing new (default 500 ms): catching up and the
    // commit that follows would wait for it.
    c.entry("fetch.wait.max.ms".into()).or_insert_with(|| "50".into());
    c
}

/// The producer properties: compressed batches, large state records allowed.
fn producer_config(k: &KafkaConfig) -> BTreeMap<String, String> {
    let mut c = k.producer_properties.clone();
    c.entry("compression.type".into()).or_insert_with(|| "lz4".into());
    c.entry("message.max.bytes".into()).or_insert_with(|| "16777216".into());
    c.entry("linger.ms".into()).or_insert_with(|| "5".into());
    c
}

/// Runs the service until `shutdown` is set. Kafka failures restart the session from the last
/// committed state (with backoff); configuration errors return.
pub fn run(
    cfg: Config,
    brokers: &str,
    shutdown: Arc<AtomicBool>,
    observer: &mut dyn Observer,
) -> Result<ServiceStats, ServiceError> {
    let mut stats = ServiceStats::default();
    let mut backoff = StdDuration::from_millis(500);
    loop {
        stats.sessions += 1;
        match session(&cfg, brokers, &shutdown, observer, &mut stats) {
            Ok(()) => return Ok(stats),
            Err(e) if e.is_permanent() => return Err(e),
            Err(e) => {
                stats.ready = false;
                observer.session_failed();
                warn!("session ended: {e}; restarting from the last committed state in {backoff:?}");
                let until = Instant::now() + backoff;
                while Instant::now() < until {
                    if shutdown.load(Ordering::SeqCst) {
                        return Ok(stats);
                    }
                    std::thread::sleep(StdDuration::from_millis(50));
                }
                backoff = (backoff * 2).min(StdDuration::from_secs(5));
            }
        }
    }
}

fn ensure_topics(k: &KafkaConfig, brokers: &str) -> Result<(), ServiceError> {
    let specs: Vec<(&str, i32, bool)> =
        k.topics.all().into_iter().map(|name| (name, k.partitions, name == k.topics.changelog)).collect();
    create_topics(k, brokers, &specs)
}

/// Creates the missing topics of `(name, partitions, compacted)`.
fn create_topics(k: &KafkaConfig, brokers: &str, specs: &[(&str, i32, bool)]) -> Result<(), ServiceError> {
    let admin: AdminClient<DefaultClientContext> =
        client_config(k, brokers, &BTreeMap::new()).create().map_err(kafka("creating the admin client"))?;
    let topics: Vec<NewTopic<'_>> = specs
        .iter()
        .map(|&(name, partitions, compacted)| {
            let topic = NewTopic::new(name, partitions, TopicReplication::Fixed(k.replication_factor));
            if compacted {
                // The state is the latest record of each key, which may be large.
                topic.set("cleanup.policy", "compact").set("max.message.bytes", "16777216")
            } else {
                topic
            }
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(ServiceError::Runtime)?;
    let opts = AdminOptions::new().operation_timeout(Some(StdDuration::from_secs(20)));
    let results = rt.block_on(admin.create_topics(topics.iter(), &opts)).map_err(kafka("creating topics"))?;
    for r in results {
        match r {
            Ok(name) => info!("created topic {name}"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ServiceError::Kafka { context: "creating topics", source: KafkaError::AdminOp(code) })
                    .inspect_err(|_| warn!("topic {name}: {code}"))
            }
        }
    }
    Ok(())
}

/// Reads the changelog to its end: the latest value of every key.
fn read_changelog(k: &KafkaConfig, brokers: &str) -> Result<BTreeMap<String, Vec<u8>>, ServiceError> {
    Ok(read_compacted(k, brokers, &k.topics.changelog, None, None)?.into_values().flatten().collect())
}

/// Reads partitions of a compacted topic (all of them, or `only` these) to their end: the
/// latest value of every key, per partition.
fn read_compacted(
    k: &KafkaConfig,
    brokers: &str,
    topic: &str,
    only: Option<&std::collections::BTreeSet<i32>>,
    progress: Option<&crate::observe::RestoreProgress>,
) -> Result<BTreeMap<i32, BTreeMap<String, Vec<u8>>>, ServiceError> {
    let mut extra = k.consumer_properties.clone();
    extra.insert("group.id".into(), format!("{}-restore", k.group_id));
    extra.insert("enable.auto.commit".into(), "false".into());
    extra.insert("isolation.level".into(), "read_committed".into());
    extra.insert("enable.partition.eof".into(), "true".into());
    extra.insert("auto.offset.reset".into(), "earliest".into());
    let consumer: BaseConsumer<ReaderCtx> =
        client_config(k, brokers, &extra).create_with_context(ReaderCtx).map_err(kafka("creating the state reader"))?;
    let md =
        consumer.fetch_metadata(Some(topic), StdDuration::from_secs(20)).map_err(kafka("reading state metadata"))?;
    let partitions: Vec<i32> = md
        .topics()
        .iter()
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .filter(|p| only.is_none_or(|o| o.contains(p)))
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut open = std::collections::BTreeSet::new();
    let mut starts: HashMap<i32, i64> = HashMap::new();
    for &p in &partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, StdDuration::from_secs(20))
            .map_err(kafka("reading state watermarks"))?;
        if hi > lo {
            tpl.add_partition_offset(topic, p, Offset::Beginning).map_err(kafka("assigning the state"))?;
            open.insert(p);
            starts.insert(p, lo);
            if let Some(pr) = progress {
                pr.partition(p, (hi - lo) as u64);
            }
        }
    }
    let mut state: BTreeMap<i32, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    if open.is_empty() {
        return Ok(state);
    }
    consumer.assign(&tpl).map_err(kafka("assigning the state"))?;
    let deadline = Instant::now() + StdDuration::from_secs(120);
    let mut unreported = 0u32;
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(ServiceError::Kafka {
                context: "reading the state",
                source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
            });
        }
        match consumer.poll(StdDuration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
                if let Some(pr) = progress {
                    pr.read(p, u64::MAX);
                }
            }
            Some(Err(e)) => return Err(ServiceError::Kafka { context: "reading the state", source: e }),
            Some(Ok(m)) => {
                // Progress every 1,024 records (the end of each partition is told above).
                unreported += 1;
                if let (Some(pr), Some(lo), true) = (progress, starts.get(&m.partition()), unreported >= 1024) {
                    unreported = 0;
                    pr.read(m.partition(), (m.offset() + 1 - lo).max(0) as u64);
                }
                let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
                let part = state.entry(m.partition()).or_default();
                match m.payload() {
                    Some(v) => part.insert(key.to_owned(), v.to_vec()),
                    None => part.remove(key),
                };
            }
        }
    }
    Ok(state)
}

/// How long a record waits for room in a full producer queue before the session ends: as long
/// as a commit waits for the queue to be flushed.
const QUEUE_FULL_WAIT: StdDuration = StdDuration::from_secs(60);

fn send(
    producer: &BaseProducer,
    topic: &str,
    key: &str,
    payload: Option<&[u8]>,
    headers: Option<OwnedHeaders>,
) -> Result<(), ServiceError> {
    let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).key(key);
    if let Some(p) = payload {
        record = record.payload(p);
    }
    if let Some(h) = headers {
        record = record.headers(h);
    }
    send_retrying(producer, record, QUEUE_FULL_WAIT).map_err(kafka("producing"))
}

/// Commits the open transaction and begins the next. `commit_transaction` flushes first, but
/// in 100 ms steps: [`flush`] leaves nothing for it.
pub(super) fn commit_and_begin(producer: &BaseProducer) -> Result<(), ServiceError> {
    flush(producer, StdDuration::from_secs(60)).map_err(kafka("flushing"))?;
    producer.commit_transaction(StdDuration::from_secs(60)).map_err(kafka("committing the transaction"))?;
    producer.begin_transaction().map_err(kafka("beginning a transaction"))
}

/// Waits until every produced message is acknowledged. `BaseProducer::flush` (also called by
/// `commit_transaction`) sleeps in steps of 100 ms, which would add that much to every commit;
/// this looks every millisecond.
fn flush(producer: &BaseProducer, timeout: StdDuration) -> Result<(), KafkaError> {
    let deadline = Instant::now() + timeout;
    loop {
        match producer.flush(StdDuration::ZERO) {
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if Instant::now() < deadline => {
                producer.poll(StdDuration::from_millis(1));
            }
            done => return done,
        }
    }
}

struct Committer<'a> {
    k: &'a KafkaConfig,
    eos: bool,
    producer: &'a BaseProducer,
    consumer: &'a BaseConsumer<Ctx>,
    positions: &'a Mutex<Positions>,
}

impl Committer<'_> {
    /// Writes changed state and input positions, then commits them with the commands produced
    /// since the last commit.
    fn commit(
        &self,
        engine: &mut Engine,
        pending: &mut Vec<Command>,
        stats: &mut ServiceStats,
        observer: &mut dyn Observer,
    ) -> Result<(), ServiceError> {
        let (k, producer, consumer) = (self.k, self.producer, self.consumer);
        for (key, value) in engine.snapshot_changes() {
            send(producer, &k.topics.changelog, &key, value.as_deref(), None)?;
        }
        let pos: Vec<(String, i32, i64)> = self
            .positions
            .lock()
            .map(|p| p.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect())
            .unwrap_or_default();
        send(producer, &k.topics.changelog, POSITIONS_KEY, Some(&encode_positions(&pos)), None)?;
        let mut tpl = TopicPartitionList::new();
        for (t, p, o) in &pos {
            tpl.add_partition_offset(t, *p, Offset::Offset(*o)).map_err(kafka("building offsets"))?;
        }
        if self.eos {
            if tpl.count() > 0 {
                let meta = consumer.group_metadata().ok_or(ServiceError::Kafka {
                    context: "reading group metadata",
                    source: KafkaError::MetadataFetch(RDKafkaErrorCode::Unknown),
                })?;
                producer
                    .send_offsets_to_transaction(&tpl, &meta, StdDuration::from_secs(30))
                    .map_err(kafka("sending offsets to the transaction"))?;
            }
            commit_and_begin(producer)?;
        } else {
            flush(producer, StdDuration::from_secs(60)).map_err(kafka("flushing"))?;
            if tpl.count() > 0 {
                consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).map_err(kafka("committing offsets"))?;
            }
        }
        stats.commits += 1;
        stats.commands += pending.len() as u64;
        for c in pending.drain(..) {
            observer.published(&c);
        }
        Ok(())
    }
}

fn session(
    cfg: &Config,
    brokers: &str,
    shutdown: &AtomicBool,
    observer: &mut dyn Observer,
    stats: &mut ServiceStats,
) -> Result<(), ServiceError> {
    let k = &cfg.kafka;
    if k.tasks > 0 {
        return group::session(cfg, brokers, shutdown, observer, stats);
    }
    let eos = k.delivery == Delivery::ExactlyOnce;
    let started = Instant::now();
    if k.create_topics {
        ensure_topics(k, brokers)?;
    }
    let topics_ready = started.elapsed();
    // Subscribed first, the group join overlaps the restore: the assignment is only taken (in
    // the rebalance callback, with the restored positions) once the poll thread starts.
    let positions: Arc<Mutex<Positions>> = Arc::new(Mutex::new(Positions::new()));
    let assigned = Arc::new(AtomicBool::new(false));
    let mut cconf = member_config(k);
    // End-of-partition events tell "caught up" from "still joining the group".
    cconf.insert("enable.partition.eof".into(), "true".into());
    // Lag for `ServiceStats::lag` comes from the statistics, without a call to the broker.
    cconf.entry("statistics.interval.ms".into()).or_insert_with(|| "5000".into());
    let ctx = Ctx {
        positions: positions.clone(),
        resume: Mutex::new(Positions::new()),
        assigned: assigned.clone(),
        lag: AtomicI64::new(LAG_UNKNOWN),
        epoch: AtomicU64::new(0),
        assignment: Mutex::new(Vec::new()),
        released: Mutex::new(0),
        released_cv: Condvar::new(),
        engine_running: AtomicBool::new(true),
        broken: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<Ctx> =
        client_config(k, brokers, &cconf).create_with_context(ctx).map_err(kafka("creating the consumer"))?;
    let topics: Vec<&str> = k.topics.events.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(kafka("subscribing"))?;
    let mut pconf = producer_config(k);
    if eos {
        pconf.insert("transactional.id".into(), k.transactional_id.clone());
        pconf.entry("transaction.timeout.ms".into()).or_insert_with(|| "60000".into());
    } else {
        pconf.entry("enable.idempotence".into()).or_insert_with(|| "true".into());
    }
    let producer: BaseProducer = client_config(k, brokers, &pconf).create().map_err(kafka("creating the producer"))?;
    if eos {
        // Fences any previous instance with this id and aborts its open transaction, so the
        // changelog read next has no pending records.
        producer.init_transactions(StdDuration::from_secs(60)).map_err(kafka("initialising transactions"))?;
    }
    let producer_ready = started.elapsed();
    let state = read_changelog(k, brokers)?;
    let changelog_read = started.elapsed();
    // Positions that cannot be read must stop the service: starting every partition from the
    // beginning on top of the restored state would count every event twice.
    let restored_positions: Positions = match state.get(POSITIONS_KEY) {
        None => Positions::new(),
        Some(b) => decode_positions(b)
            .map_err(|e| crate::engine::snapshot::SnapshotError::Decode {
                key: POSITIONS_KEY.into(),
                reason: format!("input positions: {e}"),
            })?
            .into_iter()
            .map(|(t, p, o)| ((t, p), o))
            .collect(),
    };
    let mut engine = if state.keys().any(|key| key != POSITIONS_KEY) {
        let records = state.into_iter().filter(|(key, _)| key != POSITIONS_KEY);
        Engine::restore(cfg.clone(), records)?
    } else {
        Engine::new(cfg.clone())
    };
    crate::profile::load_profiles(cfg, &mut engine).map_err(|e| ServiceError::Profile(e.to_string()))?;
    info!(
        "state restored: {} targets, {} input positions (topics {} ms, producer {} ms, changelog {} ms, engine {} ms)",
        engine.target_count(),
        restored_positions.len(),
        topics_ready.as_millis(),
        (producer_ready - topics_ready).as_millis(),
        (changelog_read - producer_ready).as_millis(),
        (started.elapsed() - changelog_read).as_millis(),
    );
    engine.keep_view_quantiles(observer.wants_views());
    observer.restored(&engine);

    if let Ok(mut p) = positions.lock() {
        *p = restored_positions;
    }
    if eos {
        producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
    }

    let stop = AtomicBool::new(false);
    let queued = AtomicUsize::new(0);
    let formats = input_formats(cfg);
    let committer = Committer { k, eos, producer: &producer, consumer: &consumer, positions: &positions };
    std::thread::scope(|scope| {
        let (full_tx, full_rx) = mpsc::sync_channel::<Batch>(IN_FLIGHT_BATCHES);
        let (spare_tx, spare_rx) = mpsc::channel::<Batch>();
        let poller = std::thread::Builder::new()
            .name("dw-poll".into())
            .spawn_scoped(scope, || input::poll_input(&consumer, full_tx, spare_rx, &queued, &stop, &formats))
            .map_err(|e| ServiceError::Thread(format!("starting the poll thread: {e}")))?;
        let ended = EngineEnded { stop: &stop, ctx: consumer.context() };
        let result = process(
            cfg,
            Loop { committer, input: full_rx, spare: spare_tx, queued: &queued, assigned: &assigned },
            engine,
            shutdown,
            observer,
            stats,
        );
        drop(ended);
        if poller.join().is_err() {
            return Err(ServiceError::Thread("the poll thread panicked".into()));
        }
        result
    })
}

/// Ends the poll thread and tells the rebalance callback that no engine thread is left to
/// release partitions, however the engine thread's loop ends.
struct EngineEnded<'a> {
    stop: &'a AtomicBool,
    ctx: &'a Ctx,
}

impl Drop for EngineEnded<'_> {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.ctx.engine_running.store(false, Ordering::SeqCst);
        self.ctx.released_cv.notify_all();
    }
}

/// What the engine thread's loop works with.
struct Loop<'a> {
    committer: Committer<'a>,
    input: Receiver<Batch>,
    spare: mpsc::Sender<Batch>,
    /// Batches sent and not yet received.
    queued: &'a AtomicUsize,
    assigned: &'a AtomicBool,
}

/// An input partition: (topic, partition, engine source, next offset), found by a short linear
/// scan so the hot path allocates nothing.
type Source = (String, i32, u32, i64);

/// The format of each input topic.
fn input_formats(cfg: &Config) -> crate::fleet::Formats {
    crate::fleet::Formats::new(cfg.kafka.topics.formats.clone(), crate::fleet::Format::Driftwatch, &cfg.fleet)
}

/// The engine thread: decode, merge the partitions by event time, ingest, publish, commit.
fn process(
    cfg: &Config,
    l: Loop<'_>,
    mut engine: Engine,
    shutdown: &AtomicBool,
    observer: &mut dyn Observer,
    stats: &mut ServiceStats,
) -> Result<(), ServiceError> {
    let Loop { committer, input, spare, queued, assigned } = l;
    let mut decoder = Decoder::default();
    let formats = input_formats(cfg);
    let (k, producer, consumer, positions) = (committer.k, committer.producer, committer.consumer, committer.positions);
    let ctx = consumer.context();
    let mut sources: Vec<Source> = Vec::new();
    let mut pending_published: Vec<Command> = Vec::new();
    let commit_every = StdDuration::from_millis(k.commit_interval.0 as u64);
    let idle_after = StdDuration::from_millis(k.idle_timeout.0 as u64);
    let mut inputs =
        Inputs::new(cfg.windows.max_future.0, idle_after, StdDuration::from_millis(k.partition_wait.0 as u64));
    let mut epoch = 0u64;
    let mut freed: Vec<Batch> = Vec::new();
    let mut last_commit = Instant::now();
    let mut last_message = Instant::now();
    let mut idle_base: Option<(i64, Instant)> = None;
    let mut last_observe = Instant::now() - StdDuration::from_secs(1);
    let mut dirty = false;
    // Since when (and after how many messages) the input has been read without reaching the
    // end of every partition.
    let mut behind_since: Option<(Instant, u64)> = None;
    let mut rounding_warned = false;
    let store_positions = |sources: &[Source]| {
        if let Ok(mut p) = positions.lock() {
            for (t, part, _, next) in sources {
                p.insert((t.clone(), *part), *next);
            }
        }
    };
    // A rebalance happened (the poll thread waits in the callback for a revocation to be
    // released): drop what is queued, record where the input ends, take the new assignment.
    let sync_epoch = |epoch: &mut u64, inputs: &mut Inputs, sources: &[Source], freed: &mut Vec<Batch>| {
        let now = ctx.epoch.load(Ordering::SeqCst);
        if now == *epoch {
            return;
        }
        let assignment = ctx.assignment.lock().map(|a| a.clone()).unwrap_or_default();
        freed.extend(inputs.reset(&assignment, consumer));
        if let Ok(mut r) = ctx.resume.lock() {
            for (t, part, _, next) in sources {
                r.insert((t.clone(), *part), *next);
            }
        }
        *epoch = now;
        ctx.release(now);
    };

    loop {
        if shutdown.load(Ordering::SeqCst) {
            store_positions(&sources);
            committer.commit(&mut engine, &mut pending_published, stats, observer)?;
            info!("shut down cleanly after {} messages", stats.messages);
            let _ = producer.flush(StdDuration::from_secs(10));
            return Ok(());
        }
        if ctx.broken.load(Ordering::SeqCst) {
            return Err(ServiceError::Thread("a rebalance could not wait for the engine thread".into()));
        }
        sync_epoch(&mut epoch, &mut inputs, &sources, &mut freed);
        let batch = match input.recv_timeout(StdDuration::from_millis(100)) {
            Ok(b) => {
                queued.fetch_sub(1, Ordering::Relaxed);
                Some(b)
            }
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => return Err(ServiceError::Thread("the poll thread stopped".into())),
        };
        let messages_before = stats.messages;
        // One clock reading per round: the loop runs once per batch.
        let now = Instant::now();
        if let Some(mut batch) = batch {
            if batch.epoch > epoch {
                sync_epoch(&mut epoch, &mut inputs, &sources, &mut freed);
            }
            if batch.epoch != epoch {
                // Polled before a rebalance: read again from where the engine's input ends.
                freed.push(batch);
            } else {
                if !batch.is_decoded() {
                    batch.decode(&mut decoder, &formats);
                }
                let (errors, empty) = inputs.push(batch, consumer, now);
                freed.extend(empty);
                for e in errors {
                    warn!("consumer: {e}");
                    if e.rdkafka_error_code().is_some_and(|c| matches!(c, RDKafkaErrorCode::Fatal)) {
                        return Err(ServiceError::Kafka { context: "consuming", source: e });
                    }
                }
            }
        }
        inputs.check_quiet(consumer, now);
        let ingested = inputs.drain(&mut engine, now, &mut freed, |engine, record| {
            ingest_record(record, engine, &mut sources, stats, producer, k)
        })?;
        inputs.flow_control(consumer, now);
        for mut b in freed.drain(..) {
            b.clear();
            // Spare batches beyond what is in flight are dropped, not kept.
            if queued.load(Ordering::Relaxed) < IN_FLIGHT_BATCHES {
                let _ = spare.send(b);
            }
        }
        let received = ingested > 0;
        if received {
            last_message = now;
            idle_base = None;
            dirty = true;
        }
        // Every assigned partition read to its end and ingested: a consumer still joining the
        // group or fetching is not caught up.
        let caught_up = assigned.load(Ordering::SeqCst) && inputs.caught_up();
        // Advance event time only once caught up and idle for `idle_timeout`.
        if caught_up && now - last_message >= idle_after {
            // No input: let event time follow the wall clock from the newest event seen.
            if let Some(max) = engine.max_event_time() {
                let (base_ts, since) = *idle_base.get_or_insert((max, Instant::now()));
                let advanced = base_ts + since.elapsed().as_millis() as i64 + idle_after.as_millis() as i64;
                engine.advance_watermark(advanced - cfg.windows.allowed_lateness.0);
                dirty = true;
            }
        }
        let mut decided = false;
        if engine.has_commands() {
            if !rounding_warned && !crate::detect::rounds_to_nearest() {
                rounding_warned = true;
                warn!(
                    "this thread's floating-point rounding mode is not round-to-nearest (changed by the platform): evidence numbers may differ from replay's in their last digits"
                );
            }
            let now = wall_ms();
            for mut c in engine.drain_commands() {
                c.stamp(now);
                let json = c.to_json();
                let key = c.key();
                send(producer, k.topics.for_command(c.command), &key, Some(json.as_bytes()), None)?;
                send(producer, &k.topics.decisions, &key, Some(json.as_bytes()), None)?;
                pending_published.push(c);
            }
            engine.stamp_decisions(now);
            decided = true;
        }
        producer.poll(StdDuration::ZERO);
        // Commit every `commit_interval`; sooner when commands wait to be committed (they are
        // what subscribers wait for), and as soon as a backlog longer than one interval has
        // been read to its end (a restart would otherwise read it again).
        let mut backlog_done = false;
        if caught_up {
            if let Some((since, from)) = behind_since.take() {
                let took = now - since;
                backlog_done = took >= commit_every;
                if backlog_done {
                    let n = stats.messages - from;
                    info!(
                        "caught up: {n} messages in {:.2} s ({} delivered twice by the client and dropped), {:.0}/s",
                        took.as_secs_f64(),
                        inputs.redelivered,
                        n as f64 / took.as_secs_f64()
                    );
                }
            }
        } else if received && behind_since.is_none() {
            behind_since = Some((now, messages_before));
        }
        let since_commit = now - last_commit;
        let due = since_commit >= commit_every
            || backlog_done
            || ((decided || !pending_published.is_empty()) && since_commit >= EARLY_COMMIT_GAP.min(commit_every));
        if dirty && due {
            store_positions(&sources);
            committer.commit(&mut engine, &mut pending_published, stats, observer)?;
            last_commit = Instant::now();
            dirty = false;
        }
        if now - last_observe >= StdDuration::from_millis(200) {
            last_observe = now;
            stats.ready = assigned.load(Ordering::SeqCst);
            stats.lag = Some(ctx.lag.load(Ordering::Relaxed)).filter(|&l| l != LAG_UNKNOWN);
            let (messages, batches) = inputs.queued();
            stats.queued = messages as u64;
            debug!("{messages} messages queued for the merge in {batches} batches");
            observer.engine(&engine, stats);
        }
    }
}

/// Ingests one record (dead-lettering a bad one) and records its position. Returns the
/// emptied feature list of a valid event, for the decoder to reuse.
fn ingest_record(
    record: Record<'_>,
    engine: &mut Engine,
    sources: &mut Vec<Source>,
    stats: &mut ServiceStats,
    producer: &BaseProducer,
    k: &KafkaConfig,
) -> Result<Option<Features<'static>>, ServiceError> {
    let Record { topic, partition, offset, key, payload, headers: original, decoded } = record;
    stats.messages += 1;
    let slot = match sources.iter().position(|(t, p, _, _)| *p == partition && t == topic) {
        Some(i) => i,
        None => {
            let id = engine.register_source(&format!("{topic}/{partition}"));
            sources.push((topic.to_owned(), partition, id, 0));
            sources.len() - 1
        }
    };
    sources[slot].3 = offset + 1;
    let pos = Position { source: sources[slot].2, offset: offset.max(0) as u64 };
    let (result, spare) = match decoded {
        Ok(ev) => {
            let r = engine.ingest(&ev, pos);
            (r, Some(spare_features(ev)))
        }
        Err(bad) => {
            engine.reject(&bad);
            (Err(bad), None)
        }
    };
    engine.note_offset(pos);
    if let Err(bad) = result {
        stats.dead_letters += 1;
        let origin = format!("{topic}/{partition}/{offset}");
        let mut headers = OwnedHeaders::new_with_capacity(original.len() + 3);
        for (name, value) in original {
            headers = headers.insert(Header { key: name, value: Some(value) });
        }
        let headers = headers
            .insert(Header { key: "driftwatch.reason", value: Some(bad.reason.as_str()) })
            .insert(Header { key: "driftwatch.detail", value: Some(bad.detail.as_str()) })
            .insert(Header { key: "driftwatch.source", value: Some(origin.as_str()) });
        let key = key.and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
        send(producer, &k.topics.deadletter, key, Some(payload), Some(headers))?;
    }
    Ok(spare)
}

/// Commands waiting for a commit are committed at most this often (and at least every
/// `commit_interval`).
const EARLY_COMMIT_GAP: StdDuration = StdDuration::from_millis(100);

//! Helpers for the Kafka service tests: config files, the `driftwatch run` child process,
//! producing input, reading output topics, comparing with `driftwatch replay`.
#![allow(dead_code)]

#[path = "../common/commands.rs"]
mod commands;
#[path = "../common/temp.rs"]
mod temp;
#[allow(unused_imports)]
pub use commands::{comparable, round_floats};
pub use temp::TempDir;

pub mod openapi;
pub mod spread;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use driftwatch::command::CommandKind;
use driftwatch::kafka::TopicsConfig;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

/// The `driftwatch` binary: cargo's, in a test; in an example (cargo names no binary to
/// examples), the one built beside it: `target/<profile>/driftwatch` for
/// `target/<profile>/examples/<name>`.
pub fn bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_driftwatch") {
        Some(b) => PathBuf::from(b),
        None => std::env::current_exe()
            .ok()
            .and_then(|e| Some(e.parent()?.parent()?.join("driftwatch")))
            .unwrap_or_else(|| PathBuf::from("driftwatch")),
    }
}

/// A fresh directory under the system temp dir; removed when the test passes.
pub fn temp_dir(name: &str) -> TempDir {
    TempDir::new("driftwatch-ktest", name)
}

/// Topic names and group of one test, all unique to it.
#[derive(Debug, Clone)]
pub struct Names {
    /// The topics, as the service's config names them; one input topic.
    pub topics: TopicsConfig,
    pub group: String,
    pub txid: String,
}

impl Names {
    pub fn new(prefix: &str) -> Names {
        let nonce = format!(
            "{prefix}-{}-{}",
            std::process::id(),
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() % 100_000_000
        );
        let t = |s: &str| format!("dwt.{nonce}.{s}");
        Names {
            topics: TopicsConfig {
                events: vec![t("events")],
                rollback: t("rollback"),
                retrain: t("retrain"),
                review: t("review"),
                promote: t("promote"),
                decisions: t("decisions"),
                deadletter: t("deadletter"),
                changelog: t("changelog"),
                formats: Default::default(),
            },
            group: format!("dwt-{nonce}"),
            txid: format!("dwt-{nonce}-tx"),
        }
    }

    /// The input topic.
    pub fn events(&self) -> &str {
        &self.topics.events[0]
    }

    /// The topics the service writes its output to: commands, decisions and dead letters (not
    /// the changelog).
    pub fn outputs(&self) -> Vec<&str> {
        let all = self.topics.all();
        all[self.topics.events.len()..all.len() - 1].to_vec()
    }
}

/// Writes a config file for `driftwatch run` (and `replay`, which ignores `[kafka]`), committing
/// every 200 ms.
pub fn write_config(dir: &Path, n: &Names, delivery: &str, create_topics: bool, extra_kafka: &str) -> PathBuf {
    write_config_committing(dir, n, delivery, create_topics, "200ms", extra_kafka)
}

/// As [`write_config`], with `commit_interval` (a duration such as `1s`).
pub fn write_config_committing(
    dir: &Path,
    n: &Names,
    delivery: &str,
    create_topics: bool,
    commit_interval: &str,
    extra_kafka: &str,
) -> PathBuf {
    let path = dir.join(format!("{}.toml", n.group));
    let text = format!(
        r#"[kafka]
group_id = "{group}"
transactional_id = "{txid}"
delivery = "{delivery}"
commit_interval = "{commit_interval}"
idle_timeout = "1s"
create_topics = {create_topics}
partitions = 1
{extra_kafka}

[kafka.topics]
events = ["{events}"]
rollback = "{rollback}"
retrain = "{retrain}"
review = "{review}"
promote = "{promote}"
decisions = "{decisions}"
deadletter = "{deadletter}"
changelog = "{changelog}"
"#,
        group = n.group,
        txid = n.txid,
        events = n.events(),
        rollback = n.topics.rollback,
        retrain = n.topics.retrain,
        review = n.topics.review,
        promote = n.topics.promote,
        decisions = n.topics.decisions,
        deadletter = n.topics.deadletter,
        changelog = n.topics.changelog,
    );
    std::fs::write(&path, text).expect("write config");
    path
}

/// An exactly-once config (as [`write_config`]) with an `[http]` section: `token`, views every
/// 100 ms, chart points every 10 s.
pub fn write_http_config(dir: &Path, n: &Names, token: &str) -> PathBuf {
    let cfg = write_config(dir, n, "exactly_once", true, "");
    let mut text = std::fs::read_to_string(&cfg).expect("config");
    text.push_str(&format!("\n[http]\ntoken = \"{token}\"\npublish_interval = \"100ms\"\nhistory_step = \"10s\"\nmetrics_targets = \"all\"\n"));
    std::fs::write(&cfg, text).expect("config");
    cfg
}

/// A `driftwatch run` child process; killed (SIGKILL) when dropped if still running.
#[derive(Debug)]
pub struct Service {
    pub child: Child,
    pub log: PathBuf,
}

impl Service {
    pub fn start(config: &Path, brokers: &str, extra: &[&str], log: PathBuf) -> Service {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("open service log");
        let child = Command::new(bin())
            .args(["run", "--config", &config.to_string_lossy(), "--brokers", brokers])
            .args(extra)
            // `DRIFTWATCH_TEST_LOG` sets the services' log filter (e.g. `driftwatch=debug`).
            .env(
                "RUST_LOG",
                std::env::var("DRIFTWATCH_TEST_LOG").unwrap_or_else(|_| "driftwatch=info,rdkafka=warn".into()),
            )
            .env_remove("DRIFTWATCH_CONFIG")
            .env_remove("DRIFTWATCH_BROKERS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .expect("start driftwatch run");
        Service { child, log }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal with `kill -SIG pid`.
    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill").args([&format!("-{sig}"), &self.pid().to_string()]).status().expect("kill");
        assert!(st.success(), "kill -{sig} {} failed", self.pid());
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_for(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return Some(st);
            }
            if Instant::now() > until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM; asserts a clean exit (status 0) within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> Duration {
        let t0 = Instant::now();
        self.signal("TERM");
        match self.wait_for(timeout) {
            Some(st) => {
                assert!(st.success(), "driftwatch run exited {st:?} after SIGTERM; log:\n{}", self.log_tail());
                t0.elapsed()
            }
            None => {
                let _ = self.child.kill();
                panic!("driftwatch run did not exit within {timeout:?} of SIGTERM; log:\n{}", self.log_tail())
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let s = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    pub fn assert_running(&mut self) {
        if let Some(st) = self.child.try_wait().expect("try_wait") {
            panic!("driftwatch run exited early ({st:?}); log:\n{}", self.log_tail());
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Scenario lines from the library's generator (no newline), with `duration` in minutes.
pub fn scenario_lines(name: &str, seed: u64, rate_scale: f64, minutes: Option<i64>) -> Vec<Vec<u8>> {
    let mut s = driftwatch::sim::scenario(name).expect("scenario");
    if let Some(m) = minutes {
        s.duration = m * 60_000;
    }
    let mut g = driftwatch::sim::Generator::new(s, seed, rate_scale);
    let mut out = Vec::new();
    while let Some(l) = g.next_line() {
        out.push(l);
    }
    out
}

/// Writes lines as a JSON Lines file.
pub fn write_lines(path: &Path, lines: &[Vec<u8>]) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).expect("create input file"));
    for l in lines {
        f.write_all(l).unwrap();
        f.write_all(b"\n").unwrap();
    }
    f.flush().unwrap();
}

/// `driftwatch replay --config cfg file`: (commands, number of bad lines).
pub fn replay(config: &Path, file: &Path) -> (Vec<Value>, usize) {
    let dead = file.with_extension("dead.jsonl");
    let out = Command::new(bin())
        .args(["replay", "-q", "--config"])
        .arg(config)
        .arg("--dead-letter")
        .arg(&dead)
        .arg(file)
        .env_remove("DRIFTWATCH_CONFIG")
        .stdin(Stdio::null())
        .output()
        .expect("run replay");
    assert!(out.status.success(), "replay failed: {}", String::from_utf8_lossy(&out.stderr));
    let cmds = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("replay output is JSON"))
        .collect();
    let bad = std::fs::read_to_string(&dead).unwrap_or_default().lines().count();
    (cmds, bad)
}

/// Produces every line (in order, one partition) and waits until all are acknowledged.
pub fn produce(brokers: &str, topic: &str, lines: &[Vec<u8>]) {
    produce_paced(brokers, topic, lines, 1, Duration::ZERO)
}

/// Like [`produce`], in `chunks` equal parts with `pause` after each: a live stream. The
/// producer rides out a broker outage (idempotent, retries until it is back).
/// The broker list of the tests' Kafka broker, from `DRIFTWATCH_TEST_BROKERS`; panics (never
/// skips) without it.
pub fn brokers() -> String {
    match std::env::var("DRIFTWATCH_TEST_BROKERS") {
        Ok(b) if !b.trim().is_empty() => b,
        _ => panic!(
            "DRIFTWATCH_TEST_BROKERS is not set: this test needs a real Kafka broker. Run `scripts/test.sh`, or \
             `bash scripts/kafka.sh up` then `DRIFTWATCH_TEST_BROKERS=127.0.0.1:9092 cargo test --release`"
        ),
    }
}

/// A TCP port free on 127.0.0.1 right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// An idempotent producer of test input (each partition keeps the order it is given).
fn input_producer(brokers: &str) -> BaseProducer {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("enable.idempotence", "true")
        // Through a broker restart the queue waits for the broker instead of expiring.
        .set("message.timeout.ms", "0")
        .set("queue.buffering.max.messages", "1000000")
        .create()
        .expect("producer")
}

pub fn produce_paced(brokers: &str, topic: &str, lines: &[Vec<u8>], chunks: usize, pause: Duration) {
    let producer = input_producer(brokers);
    for part in lines.chunks(lines.len().div_ceil(chunks.max(1)).max(1)) {
        for line in part {
            send_waiting(&producer, BaseRecord::<(), [u8]>::to(topic).payload(line.as_slice()).partition(0));
        }
        if !pause.is_zero() {
            producer.poll(pause);
        }
    }
    // After a broker restart the idempotent producer may need a while to resume: keep flushing.
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    while let Err(e) = producer.flush(Duration::from_secs(10)) {
        assert!(
            std::time::Instant::now() < deadline,
            "flush input: {e} ({} messages queued)",
            producer.in_flight_count()
        );
    }
}

/// One consumed message.
#[derive(Debug, Clone)]
pub struct Msg {
    pub topic: String,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Msg {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!("{} payload is not JSON ({e}): {}", self.topic, String::from_utf8_lossy(&self.payload))
        })
    }
}

/// Reads partition 0 of each topic from the beginning to its end (the last stable offset with
/// `read_committed`).
pub fn read_all(brokers: &str, topics: &[&str], read_committed: bool) -> Vec<Msg> {
    try_read_all(brokers, topics, read_committed, Duration::from_secs(60))
        .unwrap_or_else(|| panic!("reading {topics:?} timed out"))
}

/// [`read_all`], or `None` when the topics are not read to their end within `limit`: with
/// `read_committed`, a transaction left open (by a member killed, or cut off by a stalled
/// broker) holds readers back until it is aborted or times out.
pub fn try_read_all(brokers: &str, topics: &[&str], read_committed: bool, limit: Duration) -> Option<Vec<Msg>> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "driftwatch-test-reader")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", if read_committed { "read_committed" } else { "read_uncommitted" })
        .create()
        .expect("reader");
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        tpl.add_partition_offset(t, 0, Offset::Beginning).unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut open = topics.len();
    let mut out = Vec::new();
    let deadline = Instant::now() + limit;
    while open > 0 {
        if Instant::now() >= deadline {
            return None;
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => {}
            Some(Err(KafkaError::PartitionEOF(_))) => open -= 1,
            Some(Err(e)) => panic!("reading {topics:?}: {e}"),
            Some(Ok(m)) => {
                let mut headers = BTreeMap::new();
                if let Some(h) = m.headers() {
                    for hh in h.iter() {
                        headers.insert(
                            hh.key.to_owned(),
                            hh.value.map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
                        );
                    }
                }
                out.push(Msg {
                    topic: m.topic().to_owned(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    payload: m.payload().unwrap_or(&[]).to_vec(),
                    headers,
                });
            }
        }
    }
    Some(out)
}

/// The group's committed offset on partition 0 of `topic` (-1 when none).
pub fn committed(brokers: &str, group: &str, topic: &str) -> i64 {
    let consumer: BaseConsumer = match ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
    {
        Ok(c) => c,
        Err(_) => return -1,
    };
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, 0);
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(t) => t.elements().first().and_then(|e| e.offset().to_raw()).unwrap_or(-1),
        Err(_) => -1,
    }
}

/// Polls `f` until it returns true or `timeout` passes; returns whether it did.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let until = Instant::now() + timeout;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// Commands by `command_id`, in a stable order.
pub fn by_id(cmds: &[Value]) -> BTreeMap<String, Vec<Value>> {
    let mut m: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for c in cmds {
        let id = c["command_id"].as_str().expect("command_id").to_owned();
        m.entry(id).or_default().push(comparable(c));
    }
    m
}

/// The expected Kafka key of a command: `kind/name`.
pub fn key_of(c: &Value) -> String {
    format!("{}/{}", c["target"]["kind"].as_str().unwrap_or("?"), c["target"]["name"].as_str().unwrap_or("?"))
}

/// Checks a topic's commands against replay's: each on its own topic and the audit log, keyed
/// `kind/name`, exactly once each (or at least once when `dedup`), equal except issued_at and
/// offsets. Returns a description of the mismatch, if any.
pub fn compare_with_replay(n: &Names, msgs: &[Msg], replayed: &[Value], dedup: bool) -> Result<(), String> {
    let mut problems = Vec::new();
    let topic_of = |c: &Value| match serde_json::from_value::<CommandKind>(c["command"].clone()) {
        Ok(kind) => n.topics.for_command(kind).to_owned(),
        Err(_) => format!("<unknown command {}>", c["command"]),
    };
    let expected = by_id(replayed);
    for c in replayed {
        let _ = topic_of(c);
    }
    for audit in [true, false] {
        let mut got = Vec::new();
        for m in msgs {
            let is_audit = m.topic == n.topics.decisions;
            if is_audit != audit || !(is_audit || n.topics.command_topics().contains(&m.topic.as_str())) {
                continue;
            }
            let c = m.json();
            if !audit && topic_of(&c) != m.topic {
                problems.push(format!("{} command on topic {}", c["command"], m.topic));
            }
            if m.key.as_deref() != Some(key_of(&c).as_str()) {
                problems.push(format!("key {:?} for {}", m.key, key_of(&c)));
            }
            got.push(c);
        }
        let mut got = by_id(&got);
        if dedup {
            for v in got.values_mut() {
                v.dedup();
                if v.len() > 1 {
                    problems.push(format!("same command_id, different content: {v:?}"));
                }
            }
        }
        if got != expected {
            problems.push(format!(
                "{}: got {} ids {:#?}\nexpected {} ids {:#?}",
                if audit { "audit log" } else { "command topics" },
                got.len(),
                got,
                expected.len(),
                expected
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Creates `topic` with `partitions` partitions (replication 1); an existing topic is an error.
pub fn create_topic(brokers: &str, topic: &str, partitions: i32) {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", brokers).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let topics = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let created = rt.block_on(admin.create_topics(&topics, &AdminOptions::new())).expect("create topic");
    assert_eq!(created.len(), topics.len(), "creating {topic}: {created:?}");
    assert!(created.iter().all(|r| r.is_ok()), "creating {topic}: {created:?}");
}

/// One input record: topic, partition, key, value.
pub type Keyed<'a> = (&'a str, i32, Option<String>, &'a [u8]);

/// Produces records in order, each to its topic and partition, and waits until all are
/// acknowledged (idempotent: each partition keeps the order it was given).
pub fn produce_keyed(brokers: &str, records: &[Keyed<'_>]) {
    let producer = input_producer(brokers);
    for (topic, partition, key, payload) in records {
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(payload).partition(*partition);
        if let Some(k) = key {
            record = record.key(k.as_str());
        }
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(120)).expect("flush input");
}

/// Sends one record, waiting while the producer's queue is full (through a broker restart, as
/// long as the final flush may take); any other error fails the test.
fn send_waiting<K: rdkafka::message::ToBytes + ?Sized>(producer: &BaseProducer, record: BaseRecord<'_, K, [u8]>) {
    let (topic, partition) = (record.topic, record.partition);
    if let Err(e) = driftwatch::kafka::send_retrying(producer, record, Duration::from_secs(300)) {
        panic!("producing to {topic}/{partition:?}: {e}");
    }
    producer.poll(Duration::ZERO);
}

/// The group's committed offsets summed over the first `partitions` partitions of `topic`
/// (a partition without a commit counts 0).
pub fn committed_sum(brokers: &str, group: &str, topic: &str, partitions: i32) -> i64 {
    let Ok(consumer) = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create::<BaseConsumer>()
    else {
        return -1;
    };
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition(topic, p);
    }
    match consumer.committed_offsets(tpl, Duration::from_secs(5)) {
        Ok(t) => t.elements().iter().map(|e| e.offset().to_raw().unwrap_or(0).max(0)).sum(),
        Err(_) => -1,
    }
}

/// One input record with headers: topic, partition, headers, value.
pub type WithHeaders = (String, i32, Vec<(String, String)>, Vec<u8>);

/// Produces records with their headers, in order, each to its topic and partition, and waits
/// until all are acknowledged.
pub fn produce_with_headers(brokers: &str, records: &[WithHeaders]) {
    let timed: Vec<(&WithHeaders, Option<i64>)> = records.iter().map(|r| (r, None)).collect();
    produce_timed(brokers, &timed);
}

/// As [`produce_with_headers`], each record with its own timestamp when given (else the
/// producer's clock).
pub fn produce_timed(brokers: &str, records: &[(&WithHeaders, Option<i64>)]) {
    use rdkafka::message::{Header, OwnedHeaders};
    let producer = input_producer(brokers);
    for ((topic, partition, headers, payload), ts) in records {
        let mut hs = OwnedHeaders::new_with_capacity(headers.len());
        for (k, v) in headers {
            hs = hs.insert(Header { key: k, value: Some(v.as_bytes()) });
        }
        let mut record =
            BaseRecord::<(), [u8]>::to(topic).payload(payload.as_slice()).partition(*partition).headers(hs);
        if let Some(ts) = ts {
            record = record.timestamp(*ts);
        }
        send_waiting(&producer, record);
    }
    producer.flush(Duration::from_secs(120)).expect("flush input");
}

/// Writes driftwatch events, one JSON object per line.
pub fn write_jsonl(path: &Path, events: &[(i64, Value)]) {
    let text: String = events.iter().map(|(_, e)| format!("{e}\n")).collect();
    std::fs::write(path, text).expect("write events");
}

/// Runs `driftwatch` with `args` (no config from the environment) and returns the commands it
/// prints.
pub fn replay_args(args: &[&str]) -> Vec<Value> {
    let out = Command::new(bin()).args(args).env_remove("DRIFTWATCH_CONFIG").output().expect("replay");
    assert!(out.status.success(), "replay {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("command JSON")).collect()
}

/// Commands without what differs between runs, ordered by id.
pub fn comparable_all(cmds: &[Value]) -> Vec<Value> {
    let mut v: Vec<Value> = cmds.iter().map(comparable).collect();
    v.sort_by_key(|c| c["command_id"].as_str().unwrap_or("").to_owned());
    v
}

/// `kcat -C -J` of `topic` into `dir/file`, as a user dumps a topic.
pub fn kcat_dump(brokers: &str, topic: &str, dir: &Path, file: &str) -> PathBuf {
    let path = dir.join(file);
    let out = Command::new("kcat")
        .args(["-C", "-J", "-e", "-q", "-b", brokers, "-t", topic])
        .output()
        .expect("kcat (scripts/test.sh installs it)");
    assert!(out.status.success(), "kcat: {}", String::from_utf8_lossy(&out.stderr));
    std::fs::write(&path, &out.stdout).expect("write dump");
    path
}

/// `(command, kind/name, version, reason)` of each command, for messages and checks.
pub fn summary_of(cmds: &[Value]) -> Vec<String> {
    cmds.iter()
        .map(|c| {
            format!(
                "{} {}/{} {} {}",
                c["command"], c["target"]["kind"], c["target"]["name"], c["target"]["version"], c["reason"]
            )
        })
        .collect()
}

/// Waits until `svc` has published the expected number of decisions and committed `all`
/// records of the `inputs` (topic, partitions), stops it, and checks its commands against
/// `expected`: each exactly once, equal apart from issued_at and offsets.
pub fn finish_and_compare(
    mut svc: Service,
    brokers: &str,
    n: &Names,
    inputs: &[(&str, i32)],
    all: i64,
    expected: &[Value],
) {
    let committed = || inputs.iter().map(|(t, p)| committed_sum(brokers, &n.group, t, *p).max(0)).sum::<i64>();
    let complete = wait_until(Duration::from_secs(180), || {
        read_all(brokers, &[&n.topics.decisions], true).len() >= expected.len() && committed() >= all
    });
    std::thread::sleep(Duration::from_secs(2));
    svc.terminate(Duration::from_secs(30));
    assert!(
        complete,
        "run did not publish {} decisions and commit {all} records in time (committed {})\n{}",
        expected.len(),
        committed(),
        svc.log_tail()
    );
    let mut topics = n.topics.command_topics().to_vec();
    topics.push(&n.topics.decisions);
    let msgs = read_all(brokers, &topics, true);
    compare_with_replay(n, &msgs, expected, false).unwrap_or_else(|e| panic!("run vs equivalent events: {e}"));
}

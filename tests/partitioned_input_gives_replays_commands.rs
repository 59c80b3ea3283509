//! `driftwatch run` on partitioned input, against a real Apache Kafka broker: a time-ordered
//! stream of twelve services (apps and labelled models, 2% bad lines, some with absurd
//! timestamps) produced onto several partitions keyed by service gives exactly the commands
//! `replay` gives for the same events — read from a backlog and from two input topics.
//!
//! Needs a broker: `bash scripts/kafka.sh up`, then
//! `DRIFTWATCH_TEST_BROKERS=127.0.0.1:9092 cargo test --release`. Without the variable these
//! tests fail (they never skip silently). Every test uses its own topics and group.

mod kafka_support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_support::*;
use serde_json::Value;

/// The tests kill the service; one at a time in this process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Short consumer sessions (a killed member leaves the group in seconds), and an idle timeout
/// long enough that no partition counts as idle while a restarted service fetches.
const CONFIG: &str = r#"[kafka.consumer_properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"#;

/// The service key producers use: the app, else the model; a label's is its `event_id`.
fn service_key(line: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(line).ok()?;
    ["app", "model", "event_id"].iter().find_map(|k| v.get(*k).and_then(Value::as_str)).map(str::to_owned)
}

/// A stable spread of keys over `n` slots (FNV-1a); lines without a key go round-robin.
fn slot(key: Option<&str>, index: usize, n: usize) -> usize {
    match key {
        Some(k) => {
            (k.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) % n as u64)
                as usize
        }
        None => index % n,
    }
}

struct Setup {
    n: Names,
    dir: std::path::PathBuf,
    cfg: std::path::PathBuf,
    lines: Vec<Vec<u8>>,
    /// (topic index, partition, key) of each line.
    placed: Vec<(usize, i32, Option<String>)>,
    topics: Vec<String>,
    partitions: i32,
}

/// The `fleet` scenario at half rate spread over `topics` × `partitions` by service key.
fn setup(name: &str, topics: usize, partitions: i32) -> Setup {
    let b = brokers();
    let n = Names::new(name);
    let dir = temp_dir(name);
    let cfg = write_config(&dir, &n, "exactly_once", true, CONFIG);
    let topic_names: Vec<String> =
        (0..topics).map(|i| if i == 0 { n.events().to_owned() } else { format!("{}.{i}", n.events()) }).collect();
    let list = topic_names.iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ");
    let text = std::fs::read_to_string(&cfg)
        .expect("config")
        .replace(&format!("events = [\"{}\"]", n.events()), &format!("events = [{list}]"))
        .replace("idle_timeout = \"1s\"", "idle_timeout = \"5s\"");
    std::fs::write(&cfg, text).expect("config");
    for t in &topic_names {
        create_topic(&b, t, partitions);
    }
    let lines = scenario_lines("fleet", 5, 0.5, None);
    let slots = topics * partitions as usize;
    let placed = lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let key = service_key(l);
            let s = slot(key.as_deref(), i, slots);
            (s % topics, (s / topics) as i32, key)
        })
        .collect();
    Setup { n, dir, cfg, lines, placed, topics: topic_names, partitions }
}

impl Setup {
    fn produce(&self, range: std::ops::Range<usize>, keep: impl Fn(usize) -> bool) {
        let records: Vec<Keyed<'_>> = range
            .filter(|&i| keep(i))
            .map(|i| {
                let (t, p, k) = &self.placed[i];
                (self.topics[*t].as_str(), *p, k.clone(), self.lines[i].as_slice())
            })
            .collect();
        produce_keyed(&brokers(), &records);
    }

    fn committed(&self) -> i64 {
        self.topics.iter().map(|t| committed_sum(&brokers(), &self.n.group, t, self.partitions)).sum()
    }

    /// `replay` of the lines kept, in their time order (one file).
    fn replay(&self, keep: impl Fn(usize) -> bool) -> (Vec<Value>, usize) {
        let kept: Vec<Vec<u8>> = (0..self.lines.len()).filter(|&i| keep(i)).map(|i| self.lines[i].clone()).collect();
        let input = self.dir.join("input.jsonl");
        write_lines(&input, &kept);
        replay(&self.cfg, &input)
    }

    fn start(&self) -> Service {
        let log = self.dir.join("service.log");
        let svc = Service::start(&self.cfg, &brokers(), &[], log.clone());
        assert!(
            wait_until(Duration::from_secs(60), || std::fs::read_to_string(&log)
                .unwrap_or_default()
                .contains("state restored")),
            "the service did not start; log:\n{}",
            svc.log_tail()
        );
        svc
    }

    /// Waits until every produced line is committed and the audit log (read_committed) holds
    /// replay's number of decisions, a little longer, then stops the service and compares
    /// what consumers see with replay, dead letters included.
    fn finish(&self, svc: &mut Service, produced: i64, replayed: &[Value], bad: usize) {
        let b = brokers();
        let ok = wait_until(Duration::from_secs(180), || {
            svc.assert_running();
            self.committed() >= produced && read_all(&b, &[&self.n.topics.decisions], true).len() >= replayed.len()
        });
        assert!(
            ok,
            "not done: committed {} of {produced}, {} of {} decisions; log:\n{}",
            self.committed(),
            read_all(&b, &[&self.n.topics.decisions], true).len(),
            replayed.len(),
            svc.log_tail()
        );
        std::thread::sleep(Duration::from_secs(3));
        svc.terminate(Duration::from_secs(15));
        let msgs = read_all(&b, &self.n.outputs(), true);
        compare_with_replay(&self.n, &msgs, replayed, false)
            .unwrap_or_else(|e| panic!("{e}\nservice log: {}", svc.log.display()));
        let dead = msgs.iter().filter(|m| m.topic == self.n.topics.deadletter).count();
        assert_eq!(dead, bad, "dead letters vs bad lines in replay");
        let log = std::fs::read_to_string(&svc.log).unwrap_or_default();
        assert!(!log.contains("session ended"), "a session failed; log:\n{}", svc.log_tail());
    }
}

fn all(_: usize) -> bool {
    true
}

#[test]
fn four_partitions_keyed_by_service_read_from_a_backlog_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let s = setup("part-backlog", 1, 4);
    let (replayed, bad) = s.replay(all);
    assert!(replayed.len() >= 8, "replay gives {} commands; want ≥ 8", replayed.len());
    s.produce(0..s.lines.len(), all);
    let mut svc = s.start();
    s.finish(&mut svc, s.lines.len() as i64, &replayed, bad);
    eprintln!("{} lines, {} commands, {bad} bad, in {:?}", s.lines.len(), replayed.len(), t0.elapsed());
}

#[test]
fn two_input_topics_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Partition numbers repeat across the two topics: the end of each is told apart.
    let s = setup("part-topics", 2, 2);
    let (replayed, bad) = s.replay(all);
    s.produce(0..s.lines.len(), all);
    let mut svc = s.start();
    s.finish(&mut svc, s.lines.len() as i64, &replayed, bad);
}

/// A quarter of the stream at a time, live: half of it, and once most of that is committed the
/// other half (no partition pauses for `kafka.idle_timeout`, as with a steady producer), and the
/// service killed (SIGKILL) while it reads that, in each of the first three quarters, then
/// started again. The restored state, the stored positions and the open transactions agree, so
/// consumers see replay's commands once.
#[test]
fn four_partitions_with_kill9_at_three_points_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup("part-kill", 1, 4);
    let (replayed, bad) = s.replay(all);
    let len = s.lines.len();
    let mut svc = s.start();
    for q in 0..4 {
        let (start, end) = (q * len / 4, (q + 1) * len / 4);
        let mid = (start + end) / 2;
        s.produce(start..mid, all);
        // The newest records of some partitions wait for the others' next ones: not all of the
        // half is committed before the rest comes.
        let most = (start + (mid - start) * 9 / 10) as i64;
        let reached = wait_until(Duration::from_secs(120), || {
            svc.assert_running();
            s.committed() >= most
        });
        assert!(reached, "quarter {q}: committed {} of {most}; log:\n{}", s.committed(), svc.log_tail());
        s.produce(mid..end, all);
        if q < 3 {
            // Killed at a different point of its reading each time.
            std::thread::sleep(Duration::from_millis(10 + 30 * q as u64));
            let committed = s.committed();
            svc.kill9();
            eprintln!("quarter {q}: killed with {committed} of {end} committed");
            svc = s.start();
        }
    }
    s.finish(&mut svc, len as i64, &replayed, bad);
}

/// One partition goes quiet a third of the way in while the others carry on, read live: the
/// idle timeout lets the watermark move past it, and the decisions are replay's for what was
/// produced.
#[test]
fn a_partition_going_quiet_while_others_run_live_gives_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup("part-quiet", 1, 4);
    let len = s.lines.len();
    let quiet_from = len * 3 / 10;
    let keep = |i: usize| !(s.placed[i].1 == 3 && i >= quiet_from);
    let (replayed, bad) = s.replay(keep);
    let produced = (0..len).filter(|&i| keep(i)).count() as i64;
    let backlog = len * 6 / 10;
    s.produce(0..backlog, keep);
    let mut svc = s.start();
    let chunks = 20;
    for c in 0..chunks {
        let range = backlog + c * (len - backlog) / chunks..backlog + (c + 1) * (len - backlog) / chunks;
        s.produce(range, keep);
        std::thread::sleep(Duration::from_millis(100));
    }
    s.finish(&mut svc, produced, &replayed, bad);
}

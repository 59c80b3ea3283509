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

use kafka_support::spread::Setup;
use kafka_support::wait_until;

/// The tests kill the service; one at a time in this process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Short consumer sessions (a killed member leaves the group in seconds), and an idle timeout
/// long enough that no partition counts as idle while a restarted service fetches.
const CONFIG: &str = r#"[kafka.consumer_properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"#;

fn setup(name: &str, topics: usize, partitions: i32) -> Setup {
    Setup::new(name, topics, partitions, CONFIG)
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
    s.finish(std::slice::from_mut(&mut svc), s.lines.len() as i64, &replayed, bad);
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
    s.finish(std::slice::from_mut(&mut svc), s.lines.len() as i64, &replayed, bad);
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
    s.finish(std::slice::from_mut(&mut svc), len as i64, &replayed, bad);
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
    s.finish(std::slice::from_mut(&mut svc), produced, &replayed, bad);
}

//! Several `driftwatch run` instances in one consumer group (`kafka.tasks`), against a real
//! Apache Kafka broker: a multi-service stream (apps, labelled models with drift and accuracy
//! loss, 2% bad lines) on a 6-partition topic gives exactly the commands `replay` gives — read
//! from a backlog by three instances, through a member killed with SIGKILL and another
//! started, and while the group shrinks from three to one and grows to two.
//!
//! Needs a broker: `bash scripts/kafka.sh up`, then
//! `DRIFTWATCH_TEST_BROKERS=127.0.0.1:9092 cargo test --release`. Without the variable these
//! tests fail (they never skip silently). Every test uses its own topics and group.

mod kafka_support;

use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_support::spread::Setup;
use kafka_support::wait_until;

/// The tests start and kill several services; one test at a time in this process.
static SERIAL: Mutex<()> = Mutex::new(());

/// Six task partitions and four join partitions; short consumer sessions, so a killed member
/// leaves the group in seconds. Commits every second: three members and the broker share two
/// cores here, and a member the broker does not hear from in time is evicted and starts a new
/// session (allowed: what consumers see must still be replay's).
const CONFIG: &str = r#"tasks = 6
joins = 4
[kafka.consumer_properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"#;

fn all(_: usize) -> bool {
    true
}

/// Waits until the group has committed at least `n` input records.
fn reach(s: &Setup, svcs: &mut [kafka_support::Service], n: i64) {
    let ok = wait_until(Duration::from_secs(180), || {
        svcs.iter_mut().for_each(kafka_support::Service::assert_running);
        s.committed() >= n
    });
    assert!(ok, "committed {} of {n}; logs in {}", s.committed(), s.dir.display());
}

#[test]
fn three_instances_on_six_partitions_read_from_a_backlog_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let s = Setup::committing("group-backlog", 1, 6, "1s", CONFIG);
    let (replayed, bad) = s.replay(all);
    assert!(replayed.len() >= 8, "replay gives {} commands; want ≥ 8", replayed.len());
    s.produce(0..s.lines.len(), all);
    let mut svcs: Vec<_> = (0..3).map(|_| s.start()).collect();
    s.finish_with(&mut svcs, s.lines.len() as i64, &replayed, bad, true);
    eprintln!("{} lines, {} commands, {bad} bad, in {:?}", s.lines.len(), replayed.len(), t0.elapsed());
}

/// Three instances read the first half live; one is killed (SIGKILL) while the second half
/// comes, and a new one joins: the killed member's open transaction is aborted, its partitions'
/// state is restored by the others and the newcomer, and consumers see replay's commands once.
#[test]
fn a_member_killed_and_another_started_mid_stream_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::committing("group-kill", 1, 6, "1s", CONFIG);
    let (replayed, bad) = s.replay(all);
    let len = s.lines.len();
    let mut svcs: Vec<_> = (0..3).map(|_| s.start()).collect();
    s.produce(0..len / 2, all);
    reach(&s, &mut svcs, (len / 4) as i64);
    s.produce(len / 2..len, all);
    svcs[1].kill9();
    svcs.remove(1);
    svcs.push(s.start());
    s.finish_with(&mut svcs, len as i64, &replayed, bad, true);
}

/// Three instances, then one (two stopped with SIGTERM mid-stream), then two: no command is
/// lost or published twice.
#[test]
fn three_then_one_then_two_instances_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = Setup::committing("group-resize", 1, 6, "1s", CONFIG);
    let (replayed, bad) = s.replay(all);
    let len = s.lines.len();
    let mut svcs: Vec<_> = (0..3).map(|_| s.start()).collect();
    s.produce(0..len / 3, all);
    reach(&s, &mut svcs, (len / 6) as i64);
    s.produce(len / 3..2 * len / 3, all);
    for mut gone in svcs.drain(1..) {
        gone.terminate(Duration::from_secs(30));
    }
    reach(&s, &mut svcs, (len / 2) as i64);
    s.produce(2 * len / 3..len, all);
    svcs.push(s.start());
    s.finish_with(&mut svcs, len as i64, &replayed, bad, true);
}

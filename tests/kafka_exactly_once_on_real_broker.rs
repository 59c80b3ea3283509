//! `driftwatch run` against a real Apache Kafka broker: crashes (kill -9), a broker outage and
//! partitions added to the input mid-stream neither lose nor duplicate a command; what
//! read_committed consumers see equals `replay`.
//!
//! Needs a broker: `bash scripts/kafka.sh up`, then
//! `DRIFTWATCH_TEST_BROKERS=127.0.0.1:9092 cargo test --release`. Without the variable these
//! tests fail (they never skip silently). Every test uses its own topics, group and
//! transactional id, so the broker may be shared.

mod kafka_support;

use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kafka_support::*;

/// The tests stop the broker or kill the service; one at a time in this process.
static SERIAL: Mutex<()> = Mutex::new(());

fn kafka_sh(cmd: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kafka.sh");
    let st = Command::new("bash").args([script, cmd]).status().expect("run scripts/kafka.sh");
    assert!(st.success(), "scripts/kafka.sh {cmd} failed");
}

/// Short consumer sessions, so a killed instance's member leaves the group in seconds.
const FAST_GROUP: &str = r#"[kafka.consumer_properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "1000"
"#;

struct Setup {
    n: Names,
    dir: TempDir,
    cfg: std::path::PathBuf,
    lines: Vec<Vec<u8>>,
    replayed: Vec<serde_json::Value>,
}

/// The `demo` scenario at half rate: 3 commands (rollback, promote, retrain) spread over
/// ~125k lines.
fn setup(name: &str, delivery: &str, extra: &str) -> Setup {
    let n = Names::new(name);
    let dir = temp_dir(name);
    let cfg = write_config(&dir, &n, delivery, true, &format!("{FAST_GROUP}{extra}"));
    let lines = scenario_lines("demo", 11, 0.5, None);
    let input = dir.join("input.jsonl");
    write_lines(&input, &lines);
    let (replayed, _) = replay(&cfg, &input);
    assert!(replayed.len() >= 3, "replay gives {} commands; want ≥ 3", replayed.len());
    Setup { n, dir, cfg, lines, replayed }
}

/// Waits until the group has committed every input line and the audit log (read_committed)
/// has replay's number of decisions, then a little longer, then stops the service with SIGTERM.
fn finish(s: &Setup, b: &str, svc: &mut Service, timeout: Duration, read_committed: bool) -> Vec<Msg> {
    let total = s.lines.len() as i64;
    let ok = wait_until(timeout, || {
        svc.assert_running();
        committed(b, &s.n.group, s.n.events()) >= total
            && read_all(b, &[&s.n.topics.decisions], read_committed).len() >= s.replayed.len()
    });
    assert!(
        ok,
        "not done within {timeout:?}: committed {} of {total}, {} of {} decisions; log:\n{}",
        committed(b, &s.n.group, s.n.events()),
        read_all(b, &[&s.n.topics.decisions], read_committed).len(),
        s.replayed.len(),
        svc.log_tail()
    );
    // Anything extra (a duplicate) would show up within a few commit intervals.
    std::thread::sleep(Duration::from_secs(3));
    svc.terminate(Duration::from_secs(10));
    let topics: Vec<&str> = s.n.outputs();
    read_all(b, &topics, read_committed)
}

/// Starts the service on a live feed of the input (`chunks` parts, `pause` after each; all on
/// partition 0, the order replay reads) and waits until a fifth of it is committed. A long idle
/// timeout keeps pauses in the feed from advancing event time (which replay cannot know).
fn start_live(
    s: &Setup,
    b: &str,
    extra: &[&str],
    chunks: usize,
    pause: Duration,
) -> (Service, std::thread::JoinHandle<()>) {
    let cfg_text = std::fs::read_to_string(&s.cfg).unwrap().replace("idle_timeout = \"1s\"", "idle_timeout = \"15s\"");
    std::fs::write(&s.cfg, cfg_text).unwrap();
    let log = s.dir.join("service.log");
    let svc = Service::start(&s.cfg, b, extra, log.clone());
    assert!(wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("state restored")));
    let feed = {
        let (b, topic, lines) = (b.to_owned(), s.n.events().to_owned(), s.lines.clone());
        std::thread::spawn(move || produce_paced(&b, &topic, &lines, chunks, pause))
    };
    let total = s.lines.len() as i64;
    assert!(
        wait_until(Duration::from_secs(60), || committed(b, &s.n.group, s.n.events()) >= total / 5),
        "service made no progress; log:\n{}",
        svc.log_tail()
    );
    (svc, feed)
}

#[test]
fn kill_dash_nine_at_three_points_loses_and_duplicates_nothing() {
    let b = brokers();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    let s = setup("eos-kill", "exactly_once", "");
    let log = s.dir.join("service.log");
    // Topics first (the service creates them), then the whole input up front.
    let mut svc = Service::start(&s.cfg, &b, &[], log.clone());
    assert!(wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("state restored")));
    // The input arrives in four parts; the service is killed while it works on each of the
    // first three, so the kill points fall at different places of the stream.
    let total = s.lines.len() as i64;
    let quarter = s.lines.len() / 4;
    let mut kills = Vec::new();
    for part in 0..3 {
        produce(&b, s.n.events(), &s.lines[part * quarter..(part + 1) * quarter]);
        let at = (part * quarter + quarter / 2) as i64;
        let reached = wait_until(Duration::from_secs(90), || {
            svc.assert_running();
            committed(&b, &s.n.group, s.n.events()) >= at
        });
        assert!(reached, "committed offset never reached {at}; log:\n{}", svc.log_tail());
        svc.kill9();
        let c = committed(&b, &s.n.group, s.n.events());
        kills.push(c);
        eprintln!("kill -9 at committed offset {c} of {total} ({:?})", t0.elapsed());
        svc = Service::start(&s.cfg, &b, &[], log.clone());
    }
    produce(&b, s.n.events(), &s.lines[3 * quarter..]);
    let msgs = finish(&s, &b, &mut svc, Duration::from_secs(120), true);
    eprintln!("done in {:?}; kills at {kills:?}", t0.elapsed());
    assert!(kills.windows(2).all(|w| w[0] < w[1]) && kills[2] < total, "kill points not distinct: {kills:?}");
    compare_with_replay(&s.n, &msgs, &s.replayed, false)
        .unwrap_or_else(|e| panic!("{e}\nservice log: {}", log.display()));
}

#[test]
fn broker_outage_mid_stream_recovers_without_a_restart() {
    let b = brokers();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    // Input arrives live (~30 s in 300 chunks), so the service is mid-stream when the broker goes.
    let s = setup("eos-outage", "exactly_once", "");
    let log = s.dir.join("service.log");
    let (mut svc, feed) = start_live(&s, &b, &[], 300, Duration::from_millis(100));
    let total = s.lines.len() as i64;
    let before = committed(&b, &s.n.group, s.n.events());
    eprintln!("broker down at committed offset {before} of {total} ({:?})", t0.elapsed());
    kafka_sh("down");
    std::thread::sleep(Duration::from_secs(20));
    svc.assert_running();
    kafka_sh("up");
    eprintln!("broker up again ({:?})", t0.elapsed());
    feed.join().expect("feeder");
    let msgs = finish(&s, &b, &mut svc, Duration::from_secs(180), true);
    eprintln!("done in {:?}", t0.elapsed());
    let restarts = std::fs::read_to_string(&log).unwrap_or_default().matches("session ended").count();
    eprintln!("service sessions ended by errors: {restarts}");
    compare_with_replay(&s.n, &msgs, &s.replayed, false)
        .unwrap_or_else(|e| panic!("{e}\nservice log: {}", log.display()));
}

#[test]
fn at_least_once_after_a_crash_equals_replay_after_dedup() {
    let b = brokers();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let s = setup("alo-kill", "at_least_once", "");
    let log = s.dir.join("service.log");
    let mut svc = Service::start(&s.cfg, &b, &[], log.clone());
    assert!(wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("state restored")));
    produce(&b, s.n.events(), &s.lines);
    let total = s.lines.len() as i64;
    assert!(wait_until(Duration::from_secs(90), || committed(&b, &s.n.group, s.n.events()) >= total / 2));
    svc.kill9();
    svc = Service::start(&s.cfg, &b, &[], log.clone());
    let msgs = finish(&s, &b, &mut svc, Duration::from_secs(120), false);
    compare_with_replay(&s.n, &msgs, &s.replayed, true)
        .unwrap_or_else(|e| panic!("{e}\nservice log: {}", log.display()));
}

/// Operators add partitions to a busy input topic: the consumer group rebalances mid-stream
/// (every partition revoked, then assigned again). The service must go on from where it had
/// read, not from its last commit: every event ingested once, commands exactly replay's.
#[test]
fn input_partitions_added_mid_stream_neither_lose_nor_repeat_events() {
    use rdkafka::admin::{AdminClient, AdminOptions, NewPartitions};
    use rdkafka::client::DefaultClientContext;

    let b = brokers();
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Metadata refreshed every second, so the new partition is seen (and the group rebalances)
    // while input is still arriving.
    let s = setup("eos-grow", "exactly_once", "\"topic.metadata.refresh.interval.ms\" = \"1000\"\n");
    let log = s.dir.join("service.log");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
        l.local_addr().expect("local address").to_string()
    };
    // ~20 s of live input.
    let (mut svc, feed) = start_live(&s, &b, &["--http", &addr], 200, Duration::from_millis(100));
    let total = s.lines.len() as i64;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::config::ClientConfig::new().set("bootstrap.servers", &b).create().expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let added = rt
        .block_on(admin.create_partitions(&[NewPartitions::new(s.n.events(), 2)], &AdminOptions::new()))
        .expect("create partitions");
    assert_eq!(added.len(), 1, "one result for the one topic: {added:?}");
    assert!(added.iter().all(|r| r.is_ok()), "adding a partition failed: {added:?}");
    assert!(
        wait_until(Duration::from_secs(30), || std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("assigned 2 input partitions")),
        "the group never took the new partition; log:\n{}",
        svc.log_tail()
    );
    assert!(
        committed(&b, &s.n.group, s.n.events()) < total,
        "the input was all read before the rebalance: the test proves nothing"
    );
    feed.join().expect("feeder");
    // The engine's own counts (kept in its state, so a session restarted from the last commit
    // does not count twice) must add up to the lines produced: nothing read twice.
    let counted = || -> i64 {
        let status: serde_json::Value = ureq::get(&format!("http://{addr}/v1/status"))
            .call()
            .ok()
            .and_then(|r| r.into_json().ok())
            .unwrap_or_default();
        let sum = |k: &str| status[k].as_object().map_or(0, |o| o.values().filter_map(|v| v.as_i64()).sum::<i64>());
        sum("events_by_type") + sum("bad_input")
    };
    assert!(
        wait_until(Duration::from_secs(60), || committed(&b, &s.n.group, s.n.events()) >= total && counted() >= total),
        "not all input counted: {} of {total}; log:\n{}",
        counted(),
        svc.log_tail()
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(counted(), total, "events counted by the engine (valid and bad) vs lines produced");
    let msgs = finish(&s, &b, &mut svc, Duration::from_secs(120), true);
    eprintln!("rebalances: {}", std::fs::read_to_string(&log).unwrap_or_default().matches("revoked").count());
    compare_with_replay(&s.n, &msgs, &s.replayed, false)
        .unwrap_or_else(|e| panic!("{e}\nservice log: {}", log.display()));
}

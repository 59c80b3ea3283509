//! A multi-service stream spread over input partitions by service key, read by one or more
//! `driftwatch run` instances, compared with `replay` of the same lines.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use super::*;

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

/// One test's topics, config and stream.
pub struct Setup {
    pub n: Names,
    pub dir: TempDir,
    pub cfg: PathBuf,
    pub lines: Vec<Vec<u8>>,
    /// (topic index, partition, key) of each line.
    pub placed: Vec<(usize, i32, Option<String>)>,
    pub topics: Vec<String>,
    pub partitions: i32,
    /// Instances started so far (names their logs).
    started: std::cell::Cell<usize>,
}

impl Setup {
    /// The `fleet` scenario at half rate spread over `topics` × `partitions` by service key;
    /// `extra_kafka` goes into the config's `[kafka]` section.
    pub fn new(name: &str, topics: usize, partitions: i32, extra_kafka: &str) -> Setup {
        Setup::committing(name, topics, partitions, "200ms", extra_kafka)
    }

    /// As [`Setup::new`], committing every `commit_interval`.
    pub fn committing(name: &str, topics: usize, partitions: i32, commit_interval: &str, extra_kafka: &str) -> Setup {
        let b = brokers();
        let n = Names::new(name);
        let dir = temp_dir(name);
        let cfg = write_config_committing(&dir, &n, "exactly_once", true, commit_interval, extra_kafka);
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
        Setup { n, dir, cfg, lines, placed, topics: topic_names, partitions, started: std::cell::Cell::new(0) }
    }

    pub fn produce(&self, range: std::ops::Range<usize>, keep: impl Fn(usize) -> bool) {
        let records: Vec<Keyed<'_>> = range
            .filter(|&i| keep(i))
            .map(|i| {
                let (t, p, k) = &self.placed[i];
                (self.topics[*t].as_str(), *p, k.clone(), self.lines[i].as_slice())
            })
            .collect();
        produce_keyed(&brokers(), &records);
    }

    /// Input records the group has committed.
    pub fn committed(&self) -> i64 {
        self.topics.iter().map(|t| committed_sum(&brokers(), &self.n.group, t, self.partitions)).sum()
    }

    /// `replay` of the lines kept, in their time order (one file).
    pub fn replay(&self, keep: impl Fn(usize) -> bool) -> (Vec<Value>, usize) {
        let kept: Vec<Vec<u8>> = (0..self.lines.len()).filter(|&i| keep(i)).map(|i| self.lines[i].clone()).collect();
        let input = self.dir.join("input.jsonl");
        write_lines(&input, &kept);
        replay(&self.cfg, &input)
    }

    /// Starts an instance and waits until it has joined (its log says its state is restored).
    pub fn start(&self) -> Service {
        self.start_with(&[])
    }

    /// As [`Setup::start`], serving the HTTP API on a free port; with its URL.
    pub fn start_serving(&self) -> (Service, String) {
        let addr = format!("127.0.0.1:{}", free_port());
        (self.start_with(&["--http", &addr]), format!("http://{addr}"))
    }

    /// The logs of every instance started so far, killed or stopped ones included.
    pub fn logs(&self) -> Vec<PathBuf> {
        (0..self.started.get()).map(|i| self.dir.join(format!("service-{i}.log"))).collect()
    }

    fn start_with(&self, extra: &[&str]) -> Service {
        let i = self.started.get();
        self.started.set(i + 1);
        let log = self.dir.join(format!("service-{i}.log"));
        let svc = Service::start(&self.cfg, &brokers(), extra, log.clone());
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
    /// replay's number of decisions, a little longer, then stops the services and compares
    /// what consumers see with replay, dead letters included; and no session ended on an error.
    pub fn finish(&self, svcs: &mut [Service], produced: i64, replayed: &[Value], bad: usize) {
        self.finish_with(svcs, produced, replayed, bad, false)
    }

    /// As [`Setup::finish`]; with `restarts`, sessions that ended on an error and started
    /// again (a member evicted from the group on an overloaded machine) are allowed, as long
    /// as what consumers see is replay's.
    pub fn finish_with(&self, svcs: &mut [Service], produced: i64, replayed: &[Value], bad: usize, restarts: bool) {
        let b = brokers();
        let ok = wait_until(Duration::from_secs(240), || {
            svcs.iter_mut().for_each(Service::assert_running);
            self.committed() >= produced
                && try_read_all(&b, &[&self.n.topics.decisions], true, Duration::from_secs(20))
                    .is_some_and(|audit| audit.len() >= replayed.len())
        });
        let tails = || svcs.iter().map(Service::log_tail).collect::<Vec<_>>().join("\n---\n");
        if !ok {
            let audit = read_all(&b, &[&self.n.topics.decisions], true);
            let published: Vec<Value> = audit.iter().filter_map(|m| serde_json::from_slice(&m.payload).ok()).collect();
            let missing: Vec<String> = replayed
                .iter()
                .filter(|r| !published.iter().any(|p| p["command_id"] == r["command_id"]))
                .map(|r| {
                    format!(
                        "{} {} {} at {}",
                        r["command"], r["target"]["name"], r["target"]["version"], r["decided_at"]
                    )
                })
                .collect();
            panic!(
                "not done: committed {} of {produced}, {} of {} decisions (not published: {missing:?}); service logs in {}:\n{}",
                self.committed(),
                audit.len(),
                replayed.len(),
                self.dir.display(),
                tails()
            );
        }
        std::thread::sleep(Duration::from_secs(3));
        for s in svcs.iter_mut() {
            s.terminate(Duration::from_secs(30));
        }
        let msgs = read_all(&b, &self.n.outputs(), true);
        compare_with_replay(&self.n, &msgs, replayed, false)
            .unwrap_or_else(|e| panic!("{e}\nservice logs in {}", self.dir.display()));
        let dead = msgs.iter().filter(|m| m.topic == self.n.topics.deadletter).count();
        assert_eq!(dead, bad, "dead letters vs bad lines in replay");
        for s in svcs.iter() {
            let log = std::fs::read_to_string(&s.log).unwrap_or_default();
            if restarts {
                let ended = log.matches("session ended").count();
                if ended > 0 {
                    eprintln!("{}: {ended} sessions ended on an error and started again", s.log.display());
                }
            } else {
                assert!(!log.contains("session ended"), "a session failed; log:\n{}", s.log_tail());
            }
        }
    }
}

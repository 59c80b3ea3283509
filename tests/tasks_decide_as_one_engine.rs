//! The targets of a stream split over tasks — the unit of work instances of one consumer group
//! share — give exactly the commands one engine gives: same ids, same `decided_at`, same
//! evidence (apart from `input_offsets`, which say how far the input was read when a task
//! decided). Every scenario, several task counts.
//!
//! Commands of different targets may come out in another order (a task decides for its
//! targets when event time reaches it); each target's own come in the same order.

use driftwatch::command::Command;
use driftwatch::config::Config;
use driftwatch::engine::stages::{finish_tasks, wire, Dest, Join, Record, Router, Task};
use driftwatch::engine::tasks::{Follow, Tasks};
use driftwatch::engine::{Engine, Position};
use driftwatch::event::decode;
use driftwatch::merge::{pick, Head, Pick};
use driftwatch::replay::simulated_into;
use driftwatch::sim;
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;
use serde_json::Value;

/// A command as compared: everything but the wall clock and the input offsets.
fn comparable(c: &Command) -> Value {
    let mut v = serde_json::to_value(c).expect("a command serializes");
    if let Some(o) = v.as_object_mut() {
        o.remove("issued_at");
        if let Some(e) = o.get_mut("evidence").and_then(Value::as_object_mut) {
            e.remove("input_offsets");
        }
    }
    v
}

fn brief(c: &Value) -> String {
    format!(
        "{} {}/{}/{} {} at {}",
        c["command"], c["target"]["kind"], c["target"]["name"], c["target"]["version"], c["reason"], c["decided_at"]
    )
}

/// The commands of scenario `name` from one engine (`tasks` 0) or `tasks` tasks that learn the
/// stream's time as `follow` says.
fn commands_of(name: &str, tasks: usize, follow: Follow) -> Vec<Value> {
    let scenario = sim::scenario(name).expect("scenario exists");
    let out = match tasks {
        0 => simulated_into(scenario, 1, &mut Engine::new(Config::default())),
        n => simulated_into(scenario, 1, &mut Tasks::new(Config::default(), n).following(follow)),
    };
    out.iter().map(comparable).collect()
}

/// Asserts that `split` holds exactly one engine's commands `one` (`how` says how it was split).
fn assert_same(one: &[Value], split: &[Value], how: &str) {
    let missing: Vec<String> = one.iter().filter(|c| !split.contains(c)).map(brief).collect();
    let extra: Vec<String> = split.iter().filter(|c| !one.contains(c)).map(brief).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{how}: one engine's commands missing: {missing:#?}\nnot from one engine: {extra:#?}"
    );
    // Tasks decide for their targets as event time reaches them, so commands of different
    // targets may come out in another order; each target's own come in the same order.
    let of_target =
        |v: &[Value], c: &Value| -> Vec<Value> { v.iter().filter(|d| d["target"] == c["target"]).cloned().collect() };
    for c in one {
        assert_eq!(of_target(one, c), of_target(split, c), "{how}: {}'s commands in another order", brief(c));
    }
}

fn check(name: &str, counts: &[usize]) {
    let one = commands_of(name, 0, Follow::Stream);
    let expected = sim::scenario(name).map(|s| s.expected.len()).unwrap_or_default();
    assert!(one.len() >= expected, "{name}: {} commands, the scenario expects {expected}", one.len());
    for (n, follow) in counts.iter().flat_map(|&n| [Follow::Stream, Follow::Own, Follow::Ahead].map(|f| (n, f))) {
        let split = commands_of(name, n, follow);
        assert_same(&one, &split, &format!("{name} in {n} tasks (following {follow:?})"));
    }
}

/// Scenario `name`'s lines dealt at random (seeded) over `partitions` input partitions, each
/// in its original order.
fn partitioned(name: &str, partitions: usize, seed: u64) -> Vec<Vec<Vec<u8>>> {
    let scenario = sim::scenario(name).expect("scenario exists");
    let mut generator = sim::Generator::new(scenario, 1, 1.0);
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut parts = vec![Vec::new(); partitions];
    while let Some(line) = generator.next_line() {
        parts[rng.gen_range(0..partitions)].push(line);
    }
    parts
}

/// One engine fed the partitions merged by event time (what `replay` of the partitions' files
/// gives).
fn one_engine(parts: &[Vec<Vec<u8>>]) -> Vec<Value> {
    let mut engine = Engine::new(Config::default());
    let max_future = engine.config().windows.max_future.0;
    let times: Vec<Vec<Option<i64>>> =
        parts.iter().map(|p| p.iter().map(|l| decode(l).ok().map(|e| e.ts)).collect()).collect();
    let mut next = vec![0usize; parts.len()];
    let mut out = Vec::new();
    loop {
        let heads = (0..parts.len()).map(|i| match times[i].get(next[i]) {
            Some(&ts) => Head::Ready(ts),
            None => Head::Done,
        });
        let Pick::Input(i) = pick(heads, engine.max_event_time(), max_future) else { break };
        let pos = Position { source: i as u32, offset: next[i] as u64 };
        match decode(&parts[i][next[i]]) {
            Ok(ev) => {
                let _ = engine.ingest(&ev, pos);
            }
            Err(bad) => engine.reject(&bad),
        }
        next[i] += 1;
        out.extend(engine.drain_commands());
    }
    engine.finish();
    out.extend(engine.drain_commands());
    out.iter().map(comparable).collect()
}

/// Bytes the internal records of a staged run took, and lines and bytes of input.
#[derive(Default, Debug)]
struct Traffic {
    internal: u64,
    records: u64,
    lines: u64,
    input: u64,
}

/// A record as the next stage reads it: through its wire form, counted.
fn carried(from: usize, rec: Record, traffic: &mut Traffic) -> Record {
    let bytes = wire::encode(from as u32, &rec);
    traffic.internal += bytes.len() as u64;
    traffic.records += 1;
    let (sender, back) = wire::decode(&bytes).expect("an internal record reads back");
    assert_eq!(sender as usize, from);
    back
}

/// The partitions through routers, joins and tasks, whose steps interleave at random (seeded):
/// routers route a few lines and now and then say how far they are; joins and tasks take
/// what they can when their turn comes. Every record crosses in its wire form.
fn staged(parts: &[Vec<Vec<u8>>], joins: usize, tasks: usize, seed: u64) -> Vec<Value> {
    staged_counting(parts, joins, tasks, seed, &mut Traffic::default())
}

fn staged_counting(parts: &[Vec<Vec<u8>>], joins: usize, tasks: usize, seed: u64, traffic: &mut Traffic) -> Vec<Value> {
    let cfg = Config::default();
    let p = parts.len();
    let mut routers: Vec<Router> = (0..p).map(|_| Router::new(&cfg, tasks, joins)).collect();
    let mut join: Vec<Join> = (0..joins).map(|_| Join::new(&cfg, p, tasks)).collect();
    let mut task: Vec<Task> = (0..tasks).map(|_| Task::new(cfg.clone(), p + joins)).collect();
    let mut next = vec![0usize; p];
    let mut ended = vec![false; p];
    let mut rng = Pcg64::seed_from_u64(seed);
    let mut steps = 0u64;
    while !task.iter().all(Task::done) {
        steps += 1;
        assert!(steps < 50_000_000, "the stages made no progress");
        match rng.gen_range(0..4) {
            0 | 1 => {
                let r = rng.gen_range(0..p);
                if ended[r] {
                    continue;
                }
                let (join, task, tr) = (&mut join, &mut task, &mut *traffic);
                let mut send = |d: Dest, rec: Record| {
                    let rec = carried(r, rec, tr);
                    match d {
                        Dest::Task(t) => task[t].push(r, rec),
                        Dest::Join(j) => join[j].push(r, rec),
                    }
                };
                let mut read = (0, 0);
                for _ in 0..rng.gen_range(1..64) {
                    let Some(line) = parts[r].get(next[r]) else { break };
                    read.0 += 1;
                    read.1 += line.len() as u64 + 1;
                    let _ = routers[r].route(line, Position { source: r as u32, offset: next[r] as u64 }, &mut send);
                    next[r] += 1;
                }
                traffic.lines += read.0;
                traffic.input += read.1;
                let marker = if next[r] == parts[r].len() {
                    ended[r] = true;
                    Some(Record::End)
                } else if rng.gen_bool(0.3) {
                    routers[r].newest().map(Record::Progress)
                } else {
                    None
                };
                if let Some(m) = marker {
                    for j in join.iter_mut() {
                        j.push(r, carried(r, m.clone(), traffic));
                    }
                    for t in task.iter_mut() {
                        t.push(r, carried(r, m.clone(), traffic));
                    }
                }
            }
            2 => {
                let j = rng.gen_range(0..joins);
                let (task, tr) = (&mut task, &mut *traffic);
                join[j].poll(&mut |t, rec| task[t].push(p + j, carried(p + j, rec, tr)));
            }
            _ => {
                let t = rng.gen_range(0..tasks);
                task[t].poll();
            }
        }
    }
    let newest = routers.iter().filter_map(Router::newest).max();
    finish_tasks(&mut task, newest);
    let mut out = Vec::new();
    for t in &mut task {
        out.extend(t.engine_mut().drain_commands());
    }
    out.iter().map(comparable).collect()
}

#[test]
fn every_scenario_in_two_three_and_eight_tasks() {
    for name in sim::SCENARIOS {
        // The two large fleets run with fewer task counts below (they take longest).
        if name == "ten-thousand-targets" || name == "services" {
            continue;
        }
        check(name, &[2, 3, 8]);
    }
}

#[test]
fn large_fleets_in_five_tasks() {
    check("ten-thousand-targets", &[5]);
    check("services", &[5]);
}

#[test]
fn one_task_is_one_engine() {
    check("mixed", &[1]);
}

#[test]
fn partitions_through_routers_joins_and_tasks_in_any_interleaving() {
    // Every scenario whose input is in event-time order (the guarantee's premise), dealt over
    // 4 partitions; 2 join and 3 task partitions; steps interleaved by two seeds.
    for name in sim::SCENARIOS {
        if ["disorder", "ten-thousand-targets", "services"].contains(&name) {
            continue;
        }
        let parts = partitioned(name, 4, 7);
        let one = one_engine(&parts);
        for seed in [1, 2] {
            let split = staged(&parts, 2, 3, seed);
            assert_same(&one, &split, &format!("{name} over 4 partitions, 2 joins, 3 tasks, interleaving {seed}"));
        }
    }
}

#[test]
fn internal_records_per_input_event() {
    // What crosses the internal topics for the mixed fleet over 4 partitions, 2 joins and
    // 3 tasks (progress records as often as this interleaving sends them).
    let parts = partitioned("mixed", 4, 7);
    let mut traffic = Traffic::default();
    let split = staged_counting(&parts, 2, 3, 1, &mut traffic);
    assert_same(&one_engine(&parts), &split, "mixed, counted");
    let per = |x: u64| x as f64 / traffic.lines as f64;
    println!(
        "mixed over 4 partitions, 2 joins, 3 tasks: {} input events ({:.0} bytes each); internal: {:.2} records and {:.0} bytes per input event",
        traffic.lines,
        per(traffic.input),
        per(traffic.records),
        per(traffic.internal)
    );
    // An event's line crosses once per task it concerns (twice at most) plus small records.
    assert!(traffic.internal < 3 * traffic.input, "{traffic:?}");
}

#[test]
fn one_partition_one_join_one_task_and_six_five_four() {
    for name in ["mixed", "accuracy-review", "fleet"] {
        for (p, j, t) in [(1, 1, 1), (6, 5, 4)] {
            let parts = partitioned(name, p, 11);
            let one = one_engine(&parts);
            let split = staged(&parts, j, t, 3);
            assert_same(&one, &split, &format!("{name} over {p} partitions, {j} joins, {t} tasks"));
        }
    }
}

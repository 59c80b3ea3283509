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

use kafka_support::openapi::{Reply, Spec};
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

/// Seconds since the epoch, now.
fn now_secs() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// The time of a log line (`2026-12-05T00:29:56.905274Z  INFO ...`), in seconds.
fn line_time(line: &str) -> Option<f64> {
    let stamp = line.split_whitespace().next()?;
    let (whole, frac) = stamp.strip_suffix('Z')?.split_once('.')?;
    let ms = driftwatch::time::parse_rfc3339(&format!("{whole}Z")).ok()?;
    Some(ms as f64 / 1000.0 + format!("0.{frac}").parse::<f64>().ok()?)
}

/// The list after `what` in a line (`assigned tasks [0, 3], ...`).
fn listed(line: &str, what: &str) -> Option<Vec<usize>> {
    let rest = &line[line.find(what)? + what.len()..];
    let list = rest.strip_prefix('[')?.split(']').next()?;
    Some(list.split(',').filter_map(|x| x.trim().parse().ok()).collect())
}

/// From the members' logs: while a member owns a task (from its "assigned tasks [..]" line to
/// its "released tasks [..]" line, its death by SIGKILL, or its last line), no other member
/// owns it — no task's state is restored by two instances at once. Returns the number of
/// ownerships seen.
fn assert_no_task_owned_twice(s: &Setup, killed: &[(std::path::PathBuf, f64)]) -> usize {
    let mut spans: Vec<(usize, f64, f64, usize)> = Vec::new(); // (task, from, to, member)
    for (m, log) in s.logs().iter().enumerate() {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        let end = killed
            .iter()
            .find(|(l, _)| l == log)
            .map(|&(_, t)| t)
            .or_else(|| text.lines().rev().find_map(line_time))
            .unwrap_or(f64::MAX);
        let mut held: Vec<(usize, f64)> = Vec::new();
        for line in text.lines() {
            let Some(at) = line_time(line) else { continue };
            if let Some(tasks) = line.contains("assigned tasks").then(|| listed(line, "assigned tasks ")).flatten() {
                held.extend(tasks.into_iter().map(|t| (t, at)));
            } else if line.contains("released tasks") || line.contains("session ended") {
                spans.extend(held.drain(..).map(|(t, from)| (t, from, at, m)));
            }
        }
        spans.extend(held.drain(..).map(|(t, from)| (t, from, end, m)));
    }
    for (i, a) in spans.iter().enumerate() {
        for b in &spans[i + 1..] {
            let overlap = a.0 == b.0 && a.3 != b.3 && a.1 < b.2 && b.1 < a.2;
            assert!(
                !overlap,
                "task {} owned by member {} ({:.6}–{:.6}) and member {} ({:.6}–{:.6}) at once; logs in {}",
                a.0,
                a.3,
                a.1,
                a.2,
                b.3,
                b.1,
                b.2,
                s.dir.display()
            );
        }
    }
    spans.len()
}

fn get(agent: &ureq::Agent, url: &str) -> (u16, String, Option<String>) {
    match agent.get(url).call() {
        Ok(r) => (r.status(), r.header("location").map(str::to_owned).unwrap_or_default(), r.into_string().ok()),
        Err(ureq::Error::Status(code, r)) => {
            (code, r.header("location").map(str::to_owned).unwrap_or_default(), r.into_string().ok())
        }
        Err(e) => panic!("GET {url}: {e}"),
    }
}

fn get_json(agent: &ureq::Agent, url: &str) -> Option<serde_json::Value> {
    let (code, _, body) = get(agent, url);
    (code == 200).then(|| body.and_then(|b| serde_json::from_str(&b).ok())).flatten()
}

/// What the HTTP API of a group's members says once the group is settled: every member lists
/// the same members, each with its URL, owning all tasks between them; a target asked of a
/// member that does not decide it is redirected to the one that does, which answers it; the
/// metrics give the group's size and each owned partition's lag.
fn check_group_api(urls: &[String]) {
    let agent = ureq::AgentBuilder::new().redirects(0).timeout(Duration::from_secs(10)).build();
    let settled = wait_until(Duration::from_secs(60), || {
        urls.iter().all(|u| {
            let Some(g) = get_json(&agent, &format!("{u}/v1/group")) else { return false };
            let members = g["members"].as_array().cloned().unwrap_or_default();
            let mut tasks: Vec<u64> = members
                .iter()
                .flat_map(|m| m["tasks"].as_array().cloned().unwrap_or_default())
                .filter_map(|t| t.as_u64())
                .collect();
            tasks.sort_unstable();
            let mut listed: Vec<&str> = members.iter().filter_map(|m| m["url"].as_str()).collect();
            listed.sort_unstable();
            let mut want: Vec<&str> = urls.iter().map(String::as_str).collect();
            want.sort_unstable();
            members.len() == urls.len()
                && tasks == (0..6).collect::<Vec<u64>>()
                && listed == want
                && g["state"] == "Stable"
        })
    });
    assert!(settled, "the members' /v1/group never agreed: {:?}", get_json(&agent, &format!("{}/v1/group", urls[0])));
    // Every answer below is also what schemas/openapi.yaml says.
    let mut spec = Spec::load();
    let mut check = |template: &str, url: &str| {
        let r = Reply::of(agent.get(url).call(), url);
        spec.check(template, url, &r)
    };
    for u in urls {
        let g = check("/v1/group", &format!("{u}/v1/group"));
        let this: Vec<&str> = g["members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["this"] == true)
            .filter_map(|m| m["url"].as_str())
            .collect();
        assert_eq!(this, [u.as_str()], "{g}");
    }
    let mine = |u: &String| -> Vec<(String, String, String)> {
        let v = get_json(&agent, &format!("{u}/v1/targets?limit=1000")).expect("targets");
        v["targets"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| {
                        (
                            t["kind"].as_str().unwrap_or_default().to_owned(),
                            t["name"].as_str().unwrap_or_default().to_owned(),
                            t["version"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // The members' views stop changing: the input is committed to its end before the tasks
    // are done with their internal topics, and each member publishes its view as it goes.
    let views = || -> Vec<Option<serde_json::Value>> {
        urls.iter()
            .map(|u| get_json(&agent, &format!("{u}/v1/targets?limit=1000")).map(|v| v["targets"].clone()))
            .collect()
    };
    let mut before = views();
    let quiet = wait_until(Duration::from_secs(60), || {
        std::thread::sleep(Duration::from_secs(2));
        let now = views();
        let same = now == before && now.iter().all(Option::is_some);
        before = now;
        same
    });
    assert!(quiet, "the members' views kept changing for a minute");
    // A target one member decides, asked of another.
    let mut listed = Vec::new();
    let seen = wait_until(Duration::from_secs(30), || {
        listed = urls.iter().enumerate().flat_map(|(i, u)| mine(u).into_iter().map(move |t| (i, t))).collect();
        !listed.is_empty()
    });
    assert!(seen, "no member lists a target");
    let (owner, (kind, name, version)) = listed.swap_remove(0);
    let asked = &urls[(owner + 1) % urls.len()];
    for (template, path) in [
        ("/v1/targets/{kind}/{name}/{version}", format!("/v1/targets/{kind}/{name}/{version}")),
        ("/v1/verdict/{kind}/{name}/{version}", format!("/v1/verdict/{kind}/{name}/{version}")),
    ] {
        let (code, location, body) = get(&agent, &format!("{asked}{path}"));
        assert_eq!(code, 307, "{path} asked of a member not deciding it: {body:?}");
        assert_eq!(location, format!("{}{path}", urls[owner]), "{body:?}");
        let redirect = check(template, &format!("{asked}{path}"));
        assert_eq!(redirect["error"], "elsewhere", "{redirect}");
        assert_eq!(redirect["owner"]["url"].as_str(), Some(urls[owner].as_str()), "{redirect}");
        let answer = get_json(&agent, &location).expect("the owner answers");
        let named = answer.get("name").or_else(|| answer["target"].get("name"));
        assert_eq!(named.and_then(|n| n.as_str()), Some(name.as_str()), "{answer}");
    }
    // Every member's targets, asked of one. An empty cursor is the first page: the two answers
    // agree once the members' views stop changing (the tasks may still be reading their
    // internal topics when the input is committed to its end, and each member publishes its
    // view as it goes).
    let (mut all, mut first) = (serde_json::Value::Null, serde_json::Value::Null);
    wait_until(Duration::from_secs(30), || {
        all = check("/v1/targets", &format!("{asked}/v1/targets?scope=group&limit=1000"));
        first = check("/v1/targets", &format!("{asked}/v1/targets?scope=group&cursor=&limit=1000"));
        first["targets"] == all["targets"]
    });
    assert_eq!(first["targets"], all["targets"], "{first}");
    // Pages are per member: a cursor with scope=group is refused.
    let paged = check("/v1/targets", &format!("{asked}/v1/targets?scope=group&cursor=00"));
    assert_eq!(paged["parameter"], "cursor", "{paged}");
    for path in ["/v1/decisions", "/v1/alerts"] {
        let answer = check(path, &format!("{asked}{path}?scope=group"));
        assert_eq!(answer["members"].as_array().map(Vec::len), Some(urls.len()), "{answer}");
    }
    // Flagger's hooks are POSTs: redirected the same way (307 keeps the method and the body),
    // and the owner answers them itself.
    let hook_body = serde_json::json!({
        "name": name, "namespace": "shop", "phase": "Progressing",
        "metadata": {"kind": kind, "name": name, "version": version},
    })
    .to_string();
    let post =
        |url: &str| Reply::of(agent.post(url).set("Content-Type", "application/json").send_string(&hook_body), url);
    for hook in ["rollback", "confirm-promotion"] {
        let path = format!("/v1/flagger/{hook}");
        let r = post(&format!("{asked}{path}"));
        assert_eq!(r.status, 307, "{path} asked of a member not deciding {name}: {}", r.body);
        let redirect = spec.check_method("post", &path, &format!("{asked}{path}"), &r);
        assert_eq!(redirect["error"], "elsewhere", "{redirect}");
        let location = format!("{}{path}", urls[owner]);
        assert_eq!(redirect["owner"]["url"].as_str(), Some(urls[owner].as_str()), "{redirect}");
        let r = post(&location);
        let answer = spec.check_method("post", &path, &location, &r);
        assert_eq!(answer["hook"], hook, "the owner answers the hook: {answer}");
        assert_eq!(answer["passed"], (200..=202).contains(&r.status), "{answer}");
    }
    let mut together: Vec<(String, String, String)> = all["targets"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let f = |k: &str| t[k].as_str().unwrap_or_default().to_owned();
            (f("kind"), f("name"), f("version"))
        })
        .collect();
    let mut each: Vec<(String, String, String)> = urls.iter().flat_map(mine).collect();
    together.sort();
    each.sort();
    assert_eq!(together, each, "scope=group vs every member's own targets: {all}");
    assert!(all["members"]
        .as_array()
        .is_some_and(|m| m.len() == urls.len() && m.iter().all(|m| m["answered"] == true)));
    // Lag comes with the client's statistics, every 5 s.
    let mut metrics = String::new();
    let lagged = wait_until(Duration::from_secs(30), || {
        let (code, _, text) = get(&agent, &format!("{}/metrics", urls[0]));
        metrics = text.unwrap_or_default();
        code == 200 && metrics.contains("driftwatch_partition_lag_messages{topic=\"")
    });
    assert!(lagged, "no per-partition lag:\n{metrics}");
    assert!(metrics.lines().any(|l| l == format!("driftwatch_group_members {}", urls.len())), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("driftwatch_state_restores_total ")), "{metrics}");
}

#[test]
fn three_instances_on_six_partitions_read_from_a_backlog_give_replays_commands() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let t0 = Instant::now();
    // A small queue bound: members reading a backlog run ahead of one another by far more
    // records than this, so tasks and joins read parts of their partitions again.
    let s = Setup::committing("group-backlog", 1, 6, "1s", &format!("max_queued = 2000\n{CONFIG}"));
    let (replayed, bad) = s.replay(all);
    assert!(replayed.len() >= 8, "replay gives {} commands; want ≥ 8", replayed.len());
    s.produce(0..s.lines.len(), all);
    let (mut svcs, urls): (Vec<_>, Vec<_>) = (0..3).map(|_| s.start_serving()).unzip();
    reach(&s, &mut svcs, s.lines.len() as i64);
    check_group_api(&urls);
    let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(10)).build();
    let rereads: f64 = urls
        .iter()
        .filter_map(|u| get(&agent, &format!("{u}/metrics")).2)
        .flat_map(|m| {
            m.lines()
                .filter_map(|l| l.strip_prefix("driftwatch_merge_rereads_total ")?.parse().ok())
                .collect::<Vec<f64>>()
        })
        .sum();
    assert!(rereads > 0.0, "no task or join read its partition again with max_queued = 2000");
    eprintln!("{rereads} reads again from an earlier offset");
    s.finish_with(&mut svcs, s.lines.len() as i64, &replayed, bad, true);
    let owned = assert_no_task_owned_twice(&s, &[]);
    assert!(owned >= 6, "{owned} task ownerships in the logs");
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
    let killed = [(svcs[1].log.clone(), now_secs())];
    svcs.remove(1);
    svcs.push(s.start());
    s.finish_with(&mut svcs, len as i64, &replayed, bad, true);
    let owned = assert_no_task_owned_twice(&s, &killed);
    assert!(owned >= 12, "{owned} task ownerships in the logs");
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
    let owned = assert_no_task_owned_twice(&s, &[]);
    assert!(owned >= 12, "{owned} task ownerships in the logs");
}

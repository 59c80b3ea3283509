//! Who owns what in a scaled-out group, as the group coordinator tells: the members' assigned
//! partitions (from the group's description) and the URL each member's HTTP API answers at
//! (from the `member/{instance}` records each writes to the state topic when it starts).
//!
//! A thread per session asks every couple of seconds and keeps the answer where the HTTP API
//! reads it, so that an instance can send a client to the member deciding a target it does not
//! own, and the status page can show the whole group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration as StdDuration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::{client_config, kafka, ReaderCtx, ServiceError};
use crate::clock::wall_ms;
use crate::config::Config;
use crate::observe::{GroupMember, GroupStatus};

/// The prefix of a member's client id; the rest is its instance name.
pub(super) const CLIENT_PREFIX: &str = "driftwatch-";

/// The state-topic key of a member's record.
pub(super) fn member_key(instance: &str) -> String {
    format!("member/{instance}")
}

/// What a member writes about itself.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct MemberRecord {
    pub instance: String,
    pub url: String,
}

/// What the watcher needs to know of the group's layout.
pub(super) struct Watched {
    pub group: String,
    pub instance: String,
    pub tasks_topic: String,
    pub joins_topic: String,
    pub tasks: usize,
    pub joins: usize,
    pub state_topic: String,
    /// The state partition holding the member records.
    pub members_partition: i32,
}

/// The running watcher; stops (and forgets the group) when dropped.
pub(super) struct Watcher {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    out: Arc<Mutex<Option<Arc<GroupStatus>>>>,
}

impl Drop for Watcher {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if let Ok(mut g) = self.out.lock() {
            *g = None;
        }
    }
}

/// How often the coordinator is asked.
const EVERY: StdDuration = StdDuration::from_secs(2);

/// Starts watching the group; the answers go to `out`.
pub(super) fn watch(
    cfg: &Config,
    brokers: &str,
    w: Watched,
    out: Arc<Mutex<Option<Arc<GroupStatus>>>>,
) -> Result<Watcher, ServiceError> {
    let k = &cfg.kafka;
    let mut extra = k.consumer_properties.clone();
    extra.insert("group.id".into(), format!("{}-watch", k.group_id));
    extra.insert("enable.auto.commit".into(), "false".into());
    extra.insert("isolation.level".into(), "read_committed".into());
    extra.insert("auto.offset.reset".into(), "earliest".into());
    let consumer: BaseConsumer<ReaderCtx> = client_config(k, brokers, &extra)
        .create_with_context(ReaderCtx)
        .map_err(kafka("creating the group watcher"))?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&w.state_topic, w.members_partition, Offset::Beginning)
        .map_err(kafka("assigning the member records"))?;
    consumer.assign(&tpl).map_err(kafka("assigning the member records"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let thread = {
        let stop = stop.clone();
        let out = out.clone();
        std::thread::Builder::new()
            .name("driftwatch-members".into())
            .spawn(move || run(&consumer, &w, &stop, &out))
            .map_err(|e| ServiceError::Thread(format!("starting the group watcher: {e}")))?
    };
    Ok(Watcher { stop, thread: Some(thread), out })
}

fn run(consumer: &BaseConsumer<ReaderCtx>, w: &Watched, stop: &AtomicBool, out: &Mutex<Option<Arc<GroupStatus>>>) {
    let mut urls: HashMap<String, String> = HashMap::new();
    let mut next = Instant::now();
    let mut warned = false;
    while !stop.load(Ordering::SeqCst) {
        // Member records first: a member's URL is known by the time the group lists it.
        while let Some(polled) = consumer.poll(StdDuration::from_millis(100)) {
            let Ok(m) = polled else { break };
            let Some(key) = m.key().and_then(|k| std::str::from_utf8(k).ok()) else { continue };
            let Some(instance) = key.strip_prefix("member/") else { continue };
            match m.payload().map(serde_json::from_slice::<MemberRecord>) {
                Some(Ok(r)) => {
                    urls.insert(instance.to_owned(), r.url);
                }
                Some(Err(e)) => debug!("member record {key}: {e}"),
                None => {
                    urls.remove(instance);
                }
            }
            if stop.load(Ordering::SeqCst) {
                return;
            }
        }
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + EVERY;
        match consumer.fetch_group_list(Some(&w.group), StdDuration::from_secs(5)) {
            Ok(list) => {
                warned = false;
                let Some(g) = list.groups().iter().find(|g| g.name() == w.group) else { continue };
                let mut members = g
                    .members()
                    .iter()
                    .map(|m| {
                        let instance = m.client_id().strip_prefix(CLIENT_PREFIX).unwrap_or(m.client_id()).to_owned();
                        let owned = m.assignment().and_then(parse_assignment).unwrap_or_default();
                        member(w, instance.clone(), m.client_host(), urls.get(&instance).cloned(), owned)
                    })
                    .collect::<Vec<_>>();
                members.sort_by(|a, b| a.instance.cmp(&b.instance));
                let status = GroupStatus {
                    group: w.group.clone(),
                    instance: w.instance.clone(),
                    tasks: w.tasks,
                    joins: w.joins,
                    state: g.state().to_owned(),
                    members,
                    seen_at: wall_ms(),
                };
                if let Ok(mut o) = out.lock() {
                    *o = Some(Arc::new(status));
                }
            }
            Err(e) => {
                if !warned {
                    warn!("describing group {}: {e}", w.group);
                    warned = true;
                }
            }
        }
    }
}

/// A member as the status tells it: its partitions sorted by stage.
fn member(w: &Watched, instance: String, host: &str, url: Option<String>, owned: Vec<(String, i32)>) -> GroupMember {
    let mut tasks = Vec::new();
    let mut joins = Vec::new();
    let mut inputs = BTreeMap::new();
    for (topic, p) in owned {
        if topic == w.tasks_topic {
            tasks.push(p as usize);
        } else if topic == w.joins_topic {
            joins.push(p as usize);
        } else {
            inputs.insert((topic, p), ());
        }
    }
    tasks.sort_unstable();
    joins.sort_unstable();
    GroupMember {
        instance,
        host: host.trim_start_matches('/').to_owned(),
        url,
        tasks,
        joins,
        inputs: inputs.into_keys().collect(),
    }
}

/// The partitions of a consumer-protocol assignment (Kafka's `ConsumerProtocolAssignment`:
/// a version, then topics with their partitions, then user data), or `None` if it is not one.
pub fn parse_assignment(b: &[u8]) -> Option<Vec<(String, i32)>> {
    let mut r = Reader(b);
    let _version = r.i16()?;
    let topics = r.i32()?;
    let mut out = Vec::new();
    for _ in 0..topics.max(0) {
        let len = r.i16()?;
        let topic = std::str::from_utf8(r.take(len.max(0) as usize)?).ok()?.to_owned();
        let n = r.i32()?;
        for _ in 0..n.max(0) {
            out.push((topic.clone(), r.i32()?));
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }
    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(topics: &[(&str, &[i32])]) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(1i16.to_be_bytes());
        b.extend((topics.len() as i32).to_be_bytes());
        for (t, ps) in topics {
            b.extend((t.len() as i16).to_be_bytes());
            b.extend(t.as_bytes());
            b.extend((ps.len() as i32).to_be_bytes());
            for p in *ps {
                b.extend(p.to_be_bytes());
            }
        }
        b.extend((-1i32).to_be_bytes());
        b
    }

    #[test]
    fn an_assignment_gives_its_partitions_and_garbage_gives_none() {
        let b = assignment(&[("events", &[0, 3]), ("g-tasks", &[5])]);
        assert_eq!(parse_assignment(&b), Some(vec![("events".into(), 0), ("events".into(), 3), ("g-tasks".into(), 5)]));
        assert_eq!(parse_assignment(&b[..b.len() - 9]), None);
        assert_eq!(parse_assignment(&[0, 1]), None);
    }

    #[test]
    fn members_sort_their_partitions_by_stage() {
        let w = Watched {
            group: "g".into(),
            instance: "a".into(),
            tasks_topic: "g-tasks".into(),
            joins_topic: "g-joins".into(),
            tasks: 6,
            joins: 4,
            state_topic: "g-state".into(),
            members_partition: 10,
        };
        let owned = vec![("g-tasks".into(), 4), ("events".into(), 1), ("g-joins".into(), 2), ("g-tasks".into(), 1)];
        let m = member(&w, "a".into(), "/10.0.0.7", Some("http://a:9464".into()), owned);
        assert_eq!((m.tasks, m.joins, m.inputs), (vec![1, 4], vec![2], vec![("events".into(), 1)]));
        assert_eq!(m.host, "10.0.0.7");
    }
}

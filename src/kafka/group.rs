//! A scaled-out group (`kafka.tasks` > 0): the instances of one consumer group split the work
//! by target, through internal topics, and each decides for the targets of the partitions it
//! is assigned — exactly what one engine fed every event decides.
//!
//! ```text
//!   input topics                 {group}-joins (J)            {group}-tasks (T)
//!  ┌───────────────┐  labels,     ┌──────────────┐  joined     ┌──────────────┐
//!  │ input p  ─────┼─ predictions▶│ join j       │──labels────▶│ task t       │──▶ commands
//!  │ (a Router     │             │ (by event_id)│             │ (an Engine,  │    decisions
//!  │  per input    │─────────── events (app part to the app's task, ▶│  by name)    │
//!  │  partition)   │             model part to the model's)    └──────┬───────┘
//!  └───────────────┘   progress and idle records to every join and task   │ state
//!                                                              {group}-state (T + J + 1)
//! ```
//!
//! Every stage is a state machine of [`crate::engine::stages`]; this driver carries their
//! records over Kafka. One consumer per instance subscribes to the input topics and both
//! internal topics, so the group's assignor spreads routers, joins and tasks over the
//! instances; one transactional producer per instance writes routed records, commands, state
//! and the consumed offsets in one transaction, the offsets with the group's metadata (KIP-447:
//! a member that lost its partitions cannot commit for them).
//!
//! State lives in `{group}-state`, compacted: task `t`'s engine and merge state in partition
//! `t`, join `j`'s in partition `T + j`, every router's position in partition `T + J`. An
//! instance restores only the partitions it is assigned; on a rebalance it commits first, so
//! the state leaves with its partition and the next owner reads it back.
//!
//! Joins and tasks merge their upstreams by event time; a record read again after a restart is
//! recognised by its offset (the merge state keeps the last offset taken from each upstream)
//! and dropped. Routers tell downstream stages how far they got (progress) at each commit, and
//! that their input is read to its end and quiet (idle) once it has been for
//! `kafka.partition_wait`, so a quiet partition does not hold the others back. A task whose
//! every upstream is idle advances event time with the wall clock after `kafka.idle_timeout`,
//! from the newest time of the whole stream, as one instance does.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use serde::{Deserialize, Serialize};
use tracing::{debug, info, warn};

use super::members::{self, member_key, MemberRecord, Watched, CLIENT_PREFIX};
use super::{client_config, client_error, commit_and_begin, kafka, send, send_retrying, ServiceError, QUEUE_FULL_WAIT};
use crate::clock::wall_ms;
use crate::command::Command;
use crate::config::Config;
use crate::engine::stages::{wire, Dest, Join, JoinState, MergeState, Record, Router, Task};
use crate::engine::{Engine, Position};
use crate::event::BadInput;
use crate::observe::{Observer, OwnedPartition, RestoreProgress, ServiceStats};
use crate::time::Millis;

/// The group's topics and how partitions map to stages.
#[derive(Debug, Clone)]
struct Layout {
    /// Input partitions, in order: router `r` reads `inputs[r]`.
    inputs: Vec<(String, i32)>,
    router_of: HashMap<(String, i32), usize>,
    tasks: usize,
    joins: usize,
    tasks_topic: String,
    joins_topic: String,
    state_topic: String,
}

impl Layout {
    fn state_of_task(&self, t: usize) -> i32 {
        t as i32
    }
    fn state_of_join(&self, j: usize) -> i32 {
        (self.tasks + j) as i32
    }
    fn state_of_routers(&self) -> i32 {
        (self.tasks + self.joins) as i32
    }
    /// Upstreams of a task: the routers, then the joins.
    fn task_upstreams(&self) -> usize {
        self.inputs.len() + self.joins
    }
    /// What stage a consumed partition feeds.
    fn stage_of(&self, topic: &str, partition: i32) -> Option<Stage> {
        if topic == self.tasks_topic {
            return (0..self.tasks as i32).contains(&partition).then_some(Stage::Task(partition as usize));
        }
        if topic == self.joins_topic {
            return (0..self.joins as i32).contains(&partition).then_some(Stage::Join(partition as usize));
        }
        self.router_of.get(&(topic.to_owned(), partition)).map(|&r| Stage::Router(r))
    }
    fn partition_of(&self, stage: Stage) -> (&str, i32) {
        match stage {
            Stage::Router(r) => (&self.inputs[r].0, self.inputs[r].1),
            Stage::Join(j) => (&self.joins_topic, j as i32),
            Stage::Task(t) => (&self.tasks_topic, t as i32),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Stage {
    Router(usize),
    Join(usize),
    Task(usize),
}

/// A router's stored state: where its input continues and the newest time it read.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
struct RouterState {
    next: i64,
    newest: Option<Millis>,
}

/// A task's stored merge state, with where its partition continues.
#[derive(Debug, Serialize, Deserialize)]
struct TaskMerge {
    resume: i64,
    merge: MergeState,
}

/// A join's stored state, with where its partition continues.
#[derive(Debug, Serialize, Deserialize)]
struct JoinStored {
    resume: i64,
    join: JoinState,
}

const MERGE_KEY: &str = "merge";
const JOIN_KEY: &str = "join";

fn router_key(topic: &str, partition: i32) -> String {
    format!("router/{topic}/{partition}")
}

struct RouterSlot {
    router: Router,
    next: i64,
    last_input: Instant,
    /// The progress last sent downstream.
    said: Option<Millis>,
    idle_said: bool,
    changed: bool,
}

struct JoinSlot {
    join: Join,
    next: i64,
    /// The resume offset last stored with its state (-1: none).
    stored: i64,
    /// The offset the partition was last sought back to, until its record there is read.
    reread: Option<i64>,
}

struct TaskSlot {
    task: Task,
    next: i64,
    /// The offset the partition was last sought back to, until its record there is read.
    reread: Option<i64>,
    last_record: Instant,
    idle_base: Option<(Millis, Instant)>,
}

/// The stages this instance owns now.
#[derive(Default)]
struct Owned {
    routers: BTreeMap<usize, RouterSlot>,
    joins: BTreeMap<usize, JoinSlot>,
    tasks: BTreeMap<usize, TaskSlot>,
    /// Commands produced in the open transaction.
    pending: Vec<Command>,
    /// Commands committed, for the observer.
    committed: Vec<Command>,
    /// Tasks restored by the last assignment, whose decisions the observer has not seen.
    restored: Vec<usize>,
    commits: u64,
    /// Seeks back within a task's or join's partition (see [`rewind`]).
    rereads: u64,
}

struct Ctx {
    cfg: Config,
    brokers: String,
    layout: Layout,
    producer: BaseProducer,
    owned: Mutex<Owned>,
    /// The first failure in a rebalance callback: the session ends with it.
    failed: Mutex<Option<ServiceError>>,
    assigned: AtomicBool,
    /// Shared with the service's counters: `/readyz` says "restoring" while a restore runs,
    /// and the metrics tell its progress.
    restore: Arc<RestoreProgress>,
    /// The last stable offset of each consumed partition, from the client's statistics.
    ends: Mutex<HashMap<(String, i32), i64>>,
    /// The observer builds views: engines keep their latency quantiles as buckets close.
    views: bool,
    /// The session is ending on an error: a revocation (as the consumer closes) lets go
    /// without committing.
    closing: AtomicBool,
}

impl ClientContext for Ctx {
    fn error(&self, err: KafkaError, reason: &str) {
        client_error(err, reason);
    }

    fn stats_raw(&self, json: &[u8]) {
        let Ok(stats) = serde_json::from_slice::<super::ClientStats>(json) else { return };
        let Ok(mut ends) = self.ends.lock() else { return };
        for (topic, t) in stats.topics {
            for p in t.partitions.into_values().filter(|p| p.partition >= 0) {
                // The last stable offset, else (before the client knows it) the high watermark.
                let end = if p.ls_offset >= 0 { p.ls_offset } else { p.hi_offset };
                if end >= 0 {
                    ends.insert((topic.clone(), p.partition), end);
                }
            }
        }
    }
}

impl ConsumerContext for Ctx {
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => self.assign(consumer, tpl),
            _ => self.revoke(consumer),
        };
        if let Err(e) = result {
            warn!("rebalance: {e}");
            self.restore.end();
            if let Ok(mut f) = self.failed.lock() {
                f.get_or_insert(e);
            }
            // Holding nothing is safe: the session ends and starts again from what is committed.
            if let Ok(mut o) = self.owned.lock() {
                o.routers.clear();
                o.joins.clear();
                o.tasks.clear();
            }
            let _ = consumer.unassign();
        }
    }
}

impl Ctx {
    /// Commits everything, then lets go of every partition (the next assignment restores what
    /// it is given from the state just committed).
    fn revoke(&self, consumer: &BaseConsumer<Self>) -> Result<(), ServiceError> {
        self.assigned.store(false, Ordering::SeqCst);
        let mut o = self.owned.lock().map_err(|_| ServiceError::Thread("state lock poisoned".into()))?;
        info!(
            "released tasks {:?}, joins {:?}, inputs {:?}",
            o.tasks.keys().collect::<Vec<_>>(),
            o.joins.keys().collect::<Vec<_>>(),
            o.routers
                .keys()
                .map(|&r| format!("{}/{}", self.layout.inputs[r].0, self.layout.inputs[r].1))
                .collect::<Vec<_>>()
        );
        let result = if self.closing.load(Ordering::SeqCst)
            || (o.routers.is_empty() && o.joins.is_empty() && o.tasks.is_empty())
        {
            Ok(())
        } else {
            self.commit(consumer, &mut o)
        };
        o.routers.clear();
        o.joins.clear();
        o.tasks.clear();
        drop(o);
        consumer.unassign().map_err(kafka("unassigning"))?;
        result
    }

    /// Restores the stages of the assigned partitions from the state topic, and starts each
    /// partition where its stored state continues.
    fn assign(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) -> Result<(), ServiceError> {
        self.restore.begin();
        let started = Instant::now();
        let l = &self.layout;
        let stages: Vec<Stage> = tpl
            .elements()
            .iter()
            .filter_map(|e| l.stage_of(e.topic(), e.partition()))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut parts: BTreeSet<i32> = BTreeSet::new();
        for s in &stages {
            parts.insert(match *s {
                Stage::Router(_) => l.state_of_routers(),
                Stage::Join(j) => l.state_of_join(j),
                Stage::Task(t) => l.state_of_task(t),
            });
        }
        let mut state = self.read_complete_state(consumer, &stages, &parts)?;
        let mut owned = Owned::default();
        let mut offsets = TopicPartitionList::new();
        let now = Instant::now();
        for s in stages {
            let (topic, partition) = l.partition_of(s);
            let start = match s {
                Stage::Router(r) => {
                    let stored = state
                        .get(&l.state_of_routers())
                        .and_then(|m| m.get(&router_key(topic, partition)))
                        .map(|b| {
                            serde_json::from_slice::<RouterState>(b).map_err(|e| decode_error(topic, partition, e))
                        })
                        .transpose()?;
                    let router = Router::restored(&self.cfg, l.tasks, l.joins, stored.and_then(|s| s.newest));
                    let next = stored.map_or(-1, |s| s.next);
                    owned.routers.insert(
                        r,
                        RouterSlot {
                            router,
                            next: next.max(0),
                            last_input: now,
                            said: stored.and_then(|s| s.newest),
                            idle_said: false,
                            // Stored at the first commit even if nothing comes: the stored
                            // position always equals the committed one.
                            changed: stored.is_none(),
                        },
                    );
                    if next >= 0 {
                        Offset::Offset(next)
                    } else {
                        Offset::Stored
                    }
                }
                Stage::Join(j) => {
                    let mut records = state.remove(&l.state_of_join(j)).unwrap_or_default();
                    let stored = match records.remove(JOIN_KEY) {
                        Some(b) => Some(
                            crate::engine::snapshot::decode_value::<JoinStored>(JOIN_KEY, &b)
                                .map_err(ServiceError::State)?,
                        ),
                        None => None,
                    };
                    let (mut join, resume, stored) = match stored {
                        Some(s) => {
                            let join = Join::restored(&self.cfg, l.inputs.len(), l.tasks, s.join, records)
                                .map_err(ServiceError::State)?;
                            (join, s.resume, s.resume)
                        }
                        None => (Join::new(&self.cfg, l.inputs.len(), l.tasks), 0, -1),
                    };
                    join.bound_queue(self.cfg.kafka.max_queued);
                    owned.joins.insert(j, JoinSlot { join, next: resume, stored, reread: None });
                    Offset::Offset(resume)
                }
                Stage::Task(t) => {
                    let mut records = state.remove(&l.state_of_task(t)).unwrap_or_default();
                    let merge = match records.remove(MERGE_KEY) {
                        Some(b) => Some(
                            crate::engine::snapshot::decode_value::<TaskMerge>(MERGE_KEY, &b)
                                .map_err(ServiceError::State)?,
                        ),
                        None => None,
                    };
                    let mut engine = if records.is_empty() {
                        Engine::new(self.cfg.clone())
                    } else {
                        Engine::restore(self.cfg.clone(), records)?
                    };
                    for (topic, partition) in &l.inputs {
                        engine.register_source(&format!("{topic}/{partition}"));
                    }
                    engine.keep_view_quantiles(self.views);
                    crate::profile::load_profiles(&self.cfg, &mut engine)
                        .map_err(|e| ServiceError::Profile(e.to_string()))?;
                    let resume = merge.as_ref().map_or(0, |m| m.resume);
                    let mut task = Task::restored(engine, l.task_upstreams(), merge.map(|m| m.merge));
                    task.bound_queue(self.cfg.kafka.max_queued);
                    owned
                        .tasks
                        .insert(t, TaskSlot { task, next: resume, reread: None, last_record: now, idle_base: None });
                    Offset::Offset(resume)
                }
            };
            offsets.add_partition_offset(topic, partition, start).map_err(kafka("building the assignment"))?;
        }
        info!(
            "assigned tasks {:?}, joins {:?}, inputs {:?}: {} targets restored in {} ms",
            owned.tasks.keys().collect::<Vec<_>>(),
            owned.joins.keys().collect::<Vec<_>>(),
            owned.routers.keys().map(|&r| format!("{}/{}", l.inputs[r].0, l.inputs[r].1)).collect::<Vec<_>>(),
            owned.tasks.values().map(|t| t.task.engine().target_count()).sum::<usize>(),
            started.elapsed().as_millis()
        );
        {
            let mut o = self.owned.lock().map_err(|_| ServiceError::Thread("state lock poisoned".into()))?;
            owned.committed = std::mem::take(&mut o.committed);
            owned.restored = owned.tasks.keys().copied().collect();
            owned.commits = o.commits;
            owned.rereads = o.rereads;
            *o = owned;
        }
        consumer.assign(&offsets).map_err(kafka("assigning"))?;
        self.restore.end();
        self.assigned.store(true, Ordering::SeqCst);
        Ok(())
    }

    /// The state of `stages` (in state partitions `parts`) as of the group's committed offsets.
    ///
    /// A transaction's commit returns before its markers are written to every partition, so
    /// the member that owned a stage until a moment ago may have committed state that a
    /// read_committed reader cannot see yet: restoring it would process again what that
    /// transaction already decided, and publish it twice. The group's committed offsets are
    /// fetched as stable (KIP-447: the fetch waits for a pending transactional commit), and the
    /// state is read again until every stage's stored position has reached them.
    fn read_complete_state(
        &self,
        consumer: &BaseConsumer<Self>,
        stages: &[Stage],
        parts: &BTreeSet<i32>,
    ) -> Result<BTreeMap<i32, BTreeMap<String, Vec<u8>>>, ServiceError> {
        let l = &self.layout;
        let mut tpl = TopicPartitionList::new();
        for &s in stages {
            let (topic, partition) = l.partition_of(s);
            tpl.add_partition(topic, partition);
        }
        let committed: HashMap<(String, i32), i64> = consumer
            .committed_offsets(tpl, StdDuration::from_secs(60))
            .map_err(kafka("fetching committed offsets"))?
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some(((e.topic().to_owned(), e.partition()), o)),
                _ => None,
            })
            .collect();
        let deadline = Instant::now() + StdDuration::from_secs(60);
        loop {
            let state = read_state(&self.cfg, &self.brokers, &l.state_topic, parts, &self.restore)?;
            let behind = stages.iter().find_map(|&s| {
                let (topic, partition) = l.partition_of(s);
                let want = *committed.get(&(topic.to_owned(), partition))?;
                let stored = stored_position(l, &state, s).unwrap_or(-1);
                (stored < want).then(|| format!("{topic}/{partition} (stored {stored}, committed {want})"))
            });
            let Some(behind) = behind else { return Ok(state) };
            if Instant::now() > deadline {
                warn!("the state of {behind} stays behind its committed offset");
                return Err(ServiceError::Kafka {
                    context: "waiting for committed state",
                    source: KafkaError::MessageConsumption(RDKafkaErrorCode::OperationTimedOut),
                });
            }
            info!("the state of {behind} is not readable yet (a transaction is completing); reading it again");
            std::thread::sleep(StdDuration::from_millis(100));
        }
    }

    /// The partitions owned now, with how far each is read.
    fn owned_partitions(&self, o: &Owned) -> Vec<OwnedPartition> {
        let l = &self.layout;
        let ends = self.ends.lock().map(|e| e.clone()).unwrap_or_default();
        let part = |stage: Stage, name: &'static str, position: i64| {
            let (topic, partition) = l.partition_of(stage);
            OwnedPartition {
                topic: topic.to_owned(),
                partition,
                stage: name,
                position,
                end: ends.get(&(topic.to_owned(), partition)).copied(),
            }
        };
        let routers = o.routers.iter().map(|(&r, s)| part(Stage::Router(r), "router", s.next));
        let joins = o.joins.iter().map(|(&j, s)| part(Stage::Join(j), "join", s.next));
        let tasks = o.tasks.iter().map(|(&t, s)| part(Stage::Task(t), "task", s.next));
        routers.chain(joins).chain(tasks).collect()
    }

    /// Tells downstream stages how far routers and joins got, writes the changed state and the
    /// positions, and commits them with everything produced since the last commit.
    fn commit(&self, consumer: &BaseConsumer<Self>, o: &mut Owned) -> Result<(), ServiceError> {
        let l = &self.layout;
        let p = &self.producer;
        let state = &l.state_topic;
        let mut offsets = TopicPartitionList::new();
        for (&r, slot) in o.routers.iter_mut() {
            let newest = slot.router.newest();
            tell_progress(p, l, r, slot)?;
            let (topic, partition) = (&l.inputs[r].0, l.inputs[r].1);
            if std::mem::take(&mut slot.changed) {
                let value = serde_json::to_vec(&RouterState { next: slot.next, newest })
                    .map_err(|e| ServiceError::Thread(format!("encoding router state: {e}")))?;
                send_to(p, state, l.state_of_routers(), &router_key(topic, partition), Some(&value))?;
            }
            offsets.add_partition_offset(topic, partition, Offset::Offset(slot.next)).map_err(kafka("offsets"))?;
        }
        for (&j, slot) in o.joins.iter_mut() {
            say_join(p, l, j, &mut slot.join)?;
            let resume = slot.join.resume_offset(slot.next);
            // The stored resume offset always equals the committed one (a new owner waits for
            // them to agree, see `read_complete_state`).
            if resume != slot.stored {
                slot.join.mark_changed();
            }
            let mut records = Vec::new();
            if let Some(join) = slot.join.state(&mut records) {
                // The pending joins' records, then what says where they stand.
                for (key, value) in records {
                    send_to(p, state, l.state_of_join(j), &key, value.as_deref())?;
                }
                let value = crate::engine::snapshot::encode_value(&JoinStored { resume, join });
                send_to(p, state, l.state_of_join(j), JOIN_KEY, Some(&value))?;
                slot.stored = resume;
            }
            offsets.add_partition_offset(&l.joins_topic, j as i32, Offset::Offset(resume)).map_err(kafka("offsets"))?;
        }
        for (&t, slot) in o.tasks.iter_mut() {
            let part = l.state_of_task(t);
            for (key, value) in slot.task.engine_mut().snapshot_changes() {
                send_to(p, state, part, &key, value.as_deref())?;
            }
            let resume = slot.task.resume_offset(slot.next);
            let merge = TaskMerge { resume, merge: slot.task.merge_state().clone() };
            send_to(p, state, part, MERGE_KEY, Some(&crate::engine::snapshot::encode_value(&merge)))?;
            offsets.add_partition_offset(&l.tasks_topic, t as i32, Offset::Offset(resume)).map_err(kafka("offsets"))?;
        }
        if offsets.count() > 0 {
            let meta = consumer.group_metadata().ok_or(ServiceError::Kafka {
                context: "reading group metadata",
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::Unknown),
            })?;
            p.send_offsets_to_transaction(&offsets, &meta, StdDuration::from_secs(30))
                .map_err(kafka("sending offsets to the transaction"))?;
        }
        commit_and_begin(p)?;
        o.commits += 1;
        let done = std::mem::take(&mut o.pending);
        o.committed.extend(done);
        Ok(())
    }
}

/// Where a stage's stored state continues reading its partition (`None`: nothing stored, or
/// not readable — the restore itself then says why).
fn stored_position(l: &Layout, state: &BTreeMap<i32, BTreeMap<String, Vec<u8>>>, s: Stage) -> Option<i64> {
    use crate::engine::snapshot::decode_value;
    match s {
        Stage::Router(r) => {
            let value = state.get(&l.state_of_routers())?.get(&router_key(&l.inputs[r].0, l.inputs[r].1))?;
            serde_json::from_slice::<RouterState>(value).ok().map(|st| st.next)
        }
        Stage::Join(j) => decode_value::<JoinStored>(JOIN_KEY, state.get(&l.state_of_join(j))?.get(JOIN_KEY)?)
            .ok()
            .map(|st| st.resume),
        Stage::Task(t) => decode_value::<TaskMerge>(MERGE_KEY, state.get(&l.state_of_task(t))?.get(MERGE_KEY)?)
            .ok()
            .map(|st| st.resume),
    }
}

fn decode_error(topic: &str, partition: i32, e: serde_json::Error) -> ServiceError {
    ServiceError::State(crate::engine::snapshot::SnapshotError::Decode {
        key: router_key(topic, partition),
        reason: e.to_string(),
    })
}

/// Sends `payload` to one partition of `topic`.
fn send_to(
    p: &BaseProducer,
    topic: &str,
    partition: i32,
    key: &str,
    payload: Option<&[u8]>,
) -> Result<(), ServiceError> {
    let mut record: BaseRecord<'_, str, [u8]> = BaseRecord::to(topic).partition(partition).key(key);
    if let Some(v) = payload {
        record = record.payload(v);
    }
    send_retrying(p, record, QUEUE_FULL_WAIT).map_err(kafka("producing"))
}

/// Tells every join and task how far router `r` got, when it got further.
fn tell_progress(p: &BaseProducer, l: &Layout, r: usize, slot: &mut RouterSlot) -> Result<(), ServiceError> {
    let newest = slot.router.newest();
    if newest > slot.said {
        slot.said = newest;
        if let Some(t) = newest {
            broadcast(p, l, r as u32, &Record::Progress(t))?;
        }
    }
    Ok(())
}

/// Sends join `j`'s progress, end or idleness on to the tasks, when that changed. Returns
/// whether it sent anything.
fn say_join(p: &BaseProducer, l: &Layout, j: usize, join: &mut Join) -> Result<bool, ServiceError> {
    let from = (l.inputs.len() + j) as u32;
    let mut sent = Ok(false);
    join.say(&mut |t, rec| {
        if sent.is_ok() {
            sent = send_to(p, &l.tasks_topic, t as i32, "", Some(&wire::encode(from, &rec))).map(|()| true);
        }
    });
    sent
}

/// Sends a router's record to every join and every task.
fn broadcast(p: &BaseProducer, l: &Layout, from: u32, r: &Record) -> Result<(), ServiceError> {
    let bytes = wire::encode(from, r);
    for j in 0..l.joins {
        send_to(p, &l.joins_topic, j as i32, "", Some(&bytes))?;
    }
    for t in 0..l.tasks {
        send_to(p, &l.tasks_topic, t as i32, "", Some(&bytes))?;
    }
    Ok(())
}

/// The latest value of every key in the given partitions of the state topic, per partition.
fn read_state(
    cfg: &Config,
    brokers: &str,
    topic: &str,
    partitions: &BTreeSet<i32>,
    progress: &RestoreProgress,
) -> Result<BTreeMap<i32, BTreeMap<String, Vec<u8>>>, ServiceError> {
    if partitions.is_empty() {
        return Ok(BTreeMap::new());
    }
    super::read_compacted(&cfg.kafka, brokers, topic, Some(partitions), Some(progress))
}

/// The input partitions of the configured topics, and the group's layout.
fn layout(cfg: &Config, brokers: &str) -> Result<Layout, ServiceError> {
    let k = &cfg.kafka;
    let consumer: BaseConsumer<super::ReaderCtx> = client_config(k, brokers, &BTreeMap::new())
        .create_with_context(super::ReaderCtx)
        .map_err(kafka("creating the metadata client"))?;
    let mut inputs = Vec::new();
    for topic in &k.topics.events {
        let md = consumer
            .fetch_metadata(Some(topic), StdDuration::from_secs(20))
            .map_err(kafka("reading input metadata"))?;
        let mut parts: Vec<i32> = md.topics().iter().flat_map(|t| t.partitions().iter().map(|p| p.id())).collect();
        parts.sort_unstable();
        if parts.is_empty() {
            return Err(ServiceError::Kafka {
                context: "reading input metadata",
                source: KafkaError::MetadataFetch(RDKafkaErrorCode::UnknownTopicOrPartition),
            });
        }
        inputs.extend(parts.into_iter().map(|p| (topic.clone(), p)));
    }
    let router_of = inputs.iter().enumerate().map(|(i, tp)| (tp.clone(), i)).collect();
    let tasks = k.tasks.max(1) as usize;
    let joins = if k.joins > 0 { k.joins as usize } else { tasks };
    Ok(Layout {
        inputs,
        router_of,
        tasks,
        joins,
        tasks_topic: format!("{}-tasks", k.group_id),
        joins_topic: format!("{}-joins", k.group_id),
        state_topic: format!("{}-state", k.group_id),
    })
}

/// Creates the internal topics (if missing) with the layout's partition counts.
fn ensure_internal_topics(cfg: &Config, brokers: &str, l: &Layout) -> Result<(), ServiceError> {
    let k = &cfg.kafka;
    let specs = [
        (l.tasks_topic.as_str(), l.tasks as i32, false),
        (l.joins_topic.as_str(), l.joins as i32, false),
        (l.state_topic.as_str(), (l.tasks + l.joins + 1) as i32, true),
    ];
    super::create_topics(k, brokers, &specs)
}

/// The instance's name: `DRIFTWATCH_INSTANCE`, else `kafka.instance`, else a random one.
fn instance_name(cfg: &Config) -> String {
    let named = std::env::var("DRIFTWATCH_INSTANCE").ok().filter(|s| !s.is_empty());
    named.or_else(|| Some(cfg.kafka.instance.clone()).filter(|s| !s.is_empty())).unwrap_or_else(|| {
        let seed = wall_ms() as u64 ^ ((std::process::id() as u64) << 32);
        format!("{:016x}", crate::labels::hash_str(&seed.to_string()))
    })
}

/// One session of a group member: join, own what the group assigns, route, join, decide,
/// commit; any Kafka error ends it (the next starts from what is committed).
pub(super) fn session(
    cfg: &Config,
    brokers: &str,
    shutdown: &AtomicBool,
    observer: &mut dyn Observer,
    stats: &mut ServiceStats,
) -> Result<(), ServiceError> {
    let k = &cfg.kafka;
    if k.create_topics {
        super::ensure_topics(k, brokers)?;
    }
    let l = layout(cfg, brokers)?;
    if k.create_topics {
        ensure_internal_topics(cfg, brokers, &l)?;
    }
    let instance = instance_name(cfg);
    let mut pconf = super::producer_config(k);
    pconf.insert("transactional.id".into(), format!("{}-{instance}", k.transactional_id));
    pconf.entry("transaction.timeout.ms".into()).or_insert_with(|| "30000".into());
    let producer: BaseProducer = client_config(k, brokers, &pconf).create().map_err(kafka("creating the producer"))?;
    producer.init_transactions(StdDuration::from_secs(60)).map_err(kafka("initialising transactions"))?;
    producer.begin_transaction().map_err(kafka("beginning a transaction"))?;
    // Where this member's HTTP API answers, for the others to send clients to.
    if let Some(url) = &cfg.http.advertise {
        let record = MemberRecord { instance: instance.clone(), url: url.clone() };
        let value = serde_json::to_vec(&record).map_err(|e| ServiceError::Thread(format!("member record: {e}")))?;
        send_to(&producer, &l.state_topic, l.state_of_routers(), &member_key(&instance), Some(&value))?;
        commit_and_begin(&producer)?;
    }
    let _watcher = members::watch(
        cfg,
        brokers,
        Watched {
            group: k.group_id.clone(),
            instance: instance.clone(),
            tasks_topic: l.tasks_topic.clone(),
            joins_topic: l.joins_topic.clone(),
            tasks: l.tasks,
            joins: l.joins,
            state_topic: l.state_topic.clone(),
            members_partition: l.state_of_routers(),
        },
        stats.group.clone(),
    )?;
    let mut cconf = super::member_config(k);
    cconf.entry("partition.assignment.strategy".into()).or_insert_with(|| "roundrobin".into());
    // The group's description names each member by its client id: the instance name in it
    // lets every member tell who owns which partitions.
    cconf.insert("client.id".into(), format!("{CLIENT_PREFIX}{instance}"));
    // Per-partition lag for the metrics comes from the statistics, without a call to the broker.
    cconf.entry("statistics.interval.ms".into()).or_insert_with(|| "5000".into());
    let ctx = Ctx {
        cfg: cfg.clone(),
        brokers: brokers.to_owned(),
        layout: l.clone(),
        producer,
        owned: Mutex::new(Owned::default()),
        failed: Mutex::new(None),
        assigned: AtomicBool::new(false),
        restore: stats.restore.clone(),
        ends: Mutex::new(HashMap::new()),
        views: observer.wants_views(),
        closing: AtomicBool::new(false),
    };
    let consumer: BaseConsumer<Ctx> =
        client_config(k, brokers, &cconf).create_with_context(ctx).map_err(kafka("creating the consumer"))?;
    let mut topics: Vec<&str> = k.topics.events.iter().map(String::as_str).collect();
    topics.extend([l.joins_topic.as_str(), l.tasks_topic.as_str()]);
    consumer.subscribe(&topics).map_err(kafka("subscribing"))?;
    info!(
        "state restored: group member {instance}: {} input partitions, {} joins, {} tasks",
        l.inputs.len(),
        l.joins,
        l.tasks
    );
    let result = run_loop(cfg, &consumer, shutdown, observer, stats);
    // On an error, the revocation as the consumer closes must not commit: nothing of this
    // session can be trusted to commit any more.
    if result.is_err() {
        consumer.context().closing.store(true, Ordering::SeqCst);
        let _ = consumer.context().producer.abort_transaction(StdDuration::from_secs(10));
    }
    result
}

/// What the loop reports about the group member.
fn publish_committed(o: &mut Owned, stats: &mut ServiceStats, observer: &mut dyn Observer) {
    stats.commits = o.commits;
    for c in o.committed.drain(..) {
        stats.commands += 1;
        observer.published(&c);
    }
}

fn run_loop(
    cfg: &Config,
    consumer: &BaseConsumer<Ctx>,
    shutdown: &AtomicBool,
    observer: &mut dyn Observer,
    stats: &mut ServiceStats,
) -> Result<(), ServiceError> {
    let ctx = consumer.context();
    let k = &cfg.kafka;
    let commit_every = StdDuration::from_millis(k.commit_interval.0 as u64);
    let idle_after = StdDuration::from_millis(k.idle_timeout.0 as u64);
    let partition_wait = StdDuration::from_millis(k.partition_wait.0 as u64);
    let lateness = cfg.windows.allowed_lateness.0;
    let mut last_commit = Instant::now();
    let mut last_tick = Instant::now();
    let mut dirty = false;
    let mut scratch: Vec<(Dest, Record)> = Vec::new();
    let mut joined: Vec<(usize, Record)> = Vec::new();
    loop {
        if let Some(e) = ctx.failed.lock().ok().and_then(|mut f| f.take()) {
            return Err(e);
        }
        if shutdown.load(Ordering::SeqCst) {
            let mut o = ctx.owned.lock().map_err(|_| ServiceError::Thread("state lock poisoned".into()))?;
            ctx.commit(consumer, &mut o)?;
            publish_committed(&mut o, stats, observer);
            drop(o);
            consumer.unsubscribe();
            info!("shut down cleanly after {} messages", stats.messages);
            return Ok(());
        }
        let polled = consumer.poll(StdDuration::from_millis(20));
        let now = Instant::now();
        let mut o = ctx.owned.lock().map_err(|_| ServiceError::Thread("state lock poisoned".into()))?;
        // The decisions kept with restored state were published by whoever owned it before.
        for t in std::mem::take(&mut o.restored) {
            if let Some(slot) = o.tasks.get(&t) {
                observer.restored(slot.task.engine());
            }
        }
        match polled {
            None => {}
            Some(Err(e)) => {
                warn!("consumer: {e}");
                if e.rdkafka_error_code().is_some_and(|c| matches!(c, RDKafkaErrorCode::Fatal)) {
                    return Err(ServiceError::Kafka { context: "consuming", source: e });
                }
            }
            Some(Ok(m)) => {
                dirty = true;
                match handle(ctx, consumer, &mut o, &m, now, &mut scratch, &mut joined)? {
                    Handled::Input => stats.messages += 1,
                    Handled::DeadLetter => {
                        stats.messages += 1;
                        stats.dead_letters += 1;
                    }
                    Handled::Internal => {}
                }
            }
        }
        if now - last_tick >= StdDuration::from_millis(100) {
            last_tick = now;
            dirty |= tick(ctx, consumer, &mut o, now, partition_wait, idle_after, lateness)?;
            stats.ready = ctx.assigned.load(Ordering::SeqCst) && !ctx.restore.is_active();
            stats.partitions = ctx.owned_partitions(&o);
            let lags: Vec<i64> = stats.partitions.iter().filter_map(OwnedPartition::lag).collect();
            stats.lag = (!lags.is_empty()).then(|| lags.iter().sum());
            stats.rereads = o.rereads;
            stats.queued = o.tasks.values().map(|t| t.task.queued() as u64).sum::<u64>()
                + o.joins.values().map(|j| j.join.queued() as u64).sum::<u64>();
            let engines: Vec<&Engine> = o.tasks.values().map(|t| t.task.engine()).collect();
            observer.engines(&engines, stats);
        }
        // Commands wait for the next regular commit: every member committing as soon as it
        // decides would multiply the transactions the coordinator handles.
        let due = now - last_commit >= commit_every;
        if due && (dirty || !o.pending.is_empty() || o.routers.values().any(|r| r.router.newest() > r.said)) {
            ctx.commit(consumer, &mut o)?;
            publish_committed(&mut o, stats, observer);
            last_commit = Instant::now();
            dirty = false;
        }
    }
}

/// What a consumed record was.
enum Handled {
    /// An input record, routed.
    Input,
    /// An input record that was bad, forwarded to the dead-letter topic.
    DeadLetter,
    /// A record of an internal topic (or of a partition no longer owned).
    Internal,
}

/// Hands one consumed record to its stage and sends on what the stage produces.
fn handle(
    ctx: &Ctx,
    consumer: &BaseConsumer<Ctx>,
    o: &mut Owned,
    m: &BorrowedMessage<'_>,
    now: Instant,
    scratch: &mut Vec<(Dest, Record)>,
    joined: &mut Vec<(usize, Record)>,
) -> Result<Handled, ServiceError> {
    let l = &ctx.layout;
    let p = &ctx.producer;
    let Some(stage) = l.stage_of(m.topic(), m.partition()) else { return Ok(Handled::Internal) };
    let payload = m.payload().unwrap_or_default();
    match stage {
        Stage::Router(r) => {
            let Some(slot) = o.routers.get_mut(&r) else { return Ok(Handled::Internal) };
            slot.next = m.offset() + 1;
            slot.last_input = now;
            slot.changed = true;
            if slot.idle_said {
                slot.idle_said = false;
            }
            let pos = Position { source: r as u32, offset: m.offset().max(0) as u64 };
            scratch.clear();
            let routed = slot.router.route(payload, pos, &mut |d, rec| scratch.push((d, rec)));
            for (d, rec) in scratch.drain(..) {
                let bytes = wire::encode(r as u32, &rec);
                match d {
                    Dest::Task(t) => send_to(p, &l.tasks_topic, t as i32, "", Some(&bytes))?,
                    Dest::Join(j) => send_to(p, &l.joins_topic, j as i32, "", Some(&bytes))?,
                }
            }
            if let Err(bad) = routed {
                dead_letter(ctx, m, &bad)?;
                return Ok(Handled::DeadLetter);
            }
            return Ok(Handled::Input);
        }
        Stage::Join(j) => {
            let Some(slot) = o.joins.get_mut(&j) else { return Ok(Handled::Internal) };
            if !rereading(&mut slot.reread, m.offset()) {
                return Ok(Handled::Internal);
            }
            slot.next = m.offset() + 1;
            let (from, rec) = decode_internal(m, payload)?;
            if from >= l.inputs.len() {
                return Err(internal_error(m, "a join's record from no router"));
            }
            slot.join.push_at(from, m.offset(), rec);
            take_joined(p, l, j, slot, joined)?;
            rewind(consumer, l, Stage::Join(j), slot.join.rewind(), &mut slot.next, &mut slot.reread, &mut o.rereads)?;
        }
        Stage::Task(t) => {
            let Some(slot) = o.tasks.get_mut(&t) else { return Ok(Handled::Internal) };
            if !rereading(&mut slot.reread, m.offset()) {
                return Ok(Handled::Internal);
            }
            slot.next = m.offset() + 1;
            let (from, rec) = decode_internal(m, payload)?;
            if from >= l.task_upstreams() {
                return Err(internal_error(m, "a task's record from no upstream"));
            }
            slot.task.push_at(from, m.offset(), rec);
            if slot.task.poll() > 0 {
                slot.last_record = now;
                slot.idle_base = None;
            }
            rewind(consumer, l, Stage::Task(t), slot.task.rewind(), &mut slot.next, &mut slot.reread, &mut o.rereads)?;
            publish(ctx, slot.task.engine_mut(), &mut o.pending)?;
        }
    }
    Ok(Handled::Internal)
}

/// Takes what join `j` can take and sends the joined labels to their tasks.
fn take_joined(
    p: &BaseProducer,
    l: &Layout,
    j: usize,
    slot: &mut JoinSlot,
    joined: &mut Vec<(usize, Record)>,
) -> Result<(), ServiceError> {
    joined.clear();
    slot.join.take(&mut |t, rec| joined.push((t, rec)));
    let me = (l.inputs.len() + j) as u32;
    for (t, rec) in joined.drain(..) {
        send_to(p, &l.tasks_topic, t as i32, "", Some(&wire::encode(me, &rec)))?;
    }
    Ok(())
}

/// Whether a record read at `offset` of a stage's partition is to be handled: after the
/// partition was sought back to `reread`, records the client fetched before the seek are not.
fn rereading(reread: &mut Option<i64>, offset: i64) -> bool {
    match *reread {
        Some(at) if offset > at => false,
        Some(_) => {
            *reread = None;
            true
        }
        None => true,
    }
}

/// Seeks a stage's partition back to `to` (from [`Task::rewind`] or [`Join::rewind`]): the
/// records it left there to bound its queue are read again from there.
fn rewind(
    consumer: &BaseConsumer<Ctx>,
    l: &Layout,
    stage: Stage,
    to: Option<i64>,
    next: &mut i64,
    reread: &mut Option<i64>,
    rereads: &mut u64,
) -> Result<(), ServiceError> {
    let Some(to) = to else { return Ok(()) };
    *rereads += 1;
    let (topic, partition) = l.partition_of(stage);
    debug!("{topic}/{partition}: reading again from {to} (queue bound reached at {next})");
    consumer
        .seek(topic, partition, Offset::Offset(to), StdDuration::from_secs(10))
        .map_err(kafka("seeking back within a stage's partition"))?;
    *next = to;
    *reread = Some(to);
    Ok(())
}

fn decode_internal(m: &BorrowedMessage<'_>, payload: &[u8]) -> Result<(usize, Record), ServiceError> {
    wire::decode(payload).map(|(from, r)| (from as usize, r)).map_err(|e| internal_error(m, &e.to_string()))
}

/// An internal record that cannot be read: the topics were written by another layout or
/// version. Restarting cannot fix it.
fn internal_error(m: &BorrowedMessage<'_>, what: &str) -> ServiceError {
    ServiceError::Profile(format!(
        "{}/{}/{}: {what} (internal topics written by another version or with other kafka.tasks/kafka.joins?)",
        m.topic(),
        m.partition(),
        m.offset()
    ))
}

/// Publishes an engine's new commands in the open transaction.
fn publish(ctx: &Ctx, engine: &mut Engine, pending: &mut Vec<Command>) -> Result<(), ServiceError> {
    if !engine.has_commands() {
        return Ok(());
    }
    let topics = &ctx.cfg.kafka.topics;
    let now = wall_ms();
    for mut c in engine.drain_commands() {
        c.stamp(now);
        let json = c.to_json();
        let key = c.key();
        send(&ctx.producer, topics.for_command(c.command), &key, Some(json.as_bytes()), None)?;
        send(&ctx.producer, &topics.decisions, &key, Some(json.as_bytes()), None)?;
        pending.push(c);
    }
    engine.stamp_decisions(now);
    Ok(())
}

/// Forwards a bad input record to the dead-letter topic, with the reason in its headers.
fn dead_letter(ctx: &Ctx, m: &BorrowedMessage<'_>, bad: &BadInput) -> Result<(), ServiceError> {
    let origin = format!("{}/{}/{}", m.topic(), m.partition(), m.offset());
    let mut headers = OwnedHeaders::new();
    if let Some(h) = m.headers() {
        for h in h.iter() {
            headers = headers.insert(Header { key: h.key, value: h.value });
        }
    }
    let headers = headers
        .insert(Header { key: "driftwatch.reason", value: Some(bad.reason.as_str()) })
        .insert(Header { key: "driftwatch.detail", value: Some(bad.detail.as_str()) })
        .insert(Header { key: "driftwatch.source", value: Some(origin.as_str()) });
    let key = m.key().and_then(|k| std::str::from_utf8(k).ok()).unwrap_or("");
    send(&ctx.producer, &ctx.cfg.kafka.topics.deadletter, key, m.payload(), Some(headers))
}

/// Timed work: routers read to their end and quiet say so; joins pass on their progress; quiet
/// tasks let event time follow the wall clock. Returns whether it produced anything (which the
/// next commit must then commit).
fn tick(
    ctx: &Ctx,
    consumer: &BaseConsumer<Ctx>,
    o: &mut Owned,
    now: Instant,
    partition_wait: StdDuration,
    idle_after: StdDuration,
    lateness: Millis,
) -> Result<bool, ServiceError> {
    let l = &ctx.layout;
    let p = &ctx.producer;
    let mut sent = false;
    for (&r, slot) in o.routers.iter_mut() {
        if slot.idle_said || now - slot.last_input < partition_wait {
            continue;
        }
        let (topic, partition) = (&l.inputs[r].0, l.inputs[r].1);
        let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, StdDuration::from_secs(2)) else {
            continue;
        };
        if slot.next < high {
            slot.last_input = now;
            continue;
        }
        tell_progress(p, l, r, slot)?;
        broadcast(p, l, r as u32, &Record::Idle)?;
        slot.idle_said = true;
        sent = true;
    }
    for (&j, slot) in o.joins.iter_mut() {
        sent |= say_join(p, l, j, &mut slot.join)?;
    }
    for (&t, slot) in o.tasks.iter_mut() {
        if slot.task.poll() > 0 {
            slot.last_record = now;
            slot.idle_base = None;
        }
        rewind(consumer, l, Stage::Task(t), slot.task.rewind(), &mut slot.next, &mut slot.reread, &mut o.rereads)?;
        if slot.task.quiet() && now - slot.last_record >= idle_after {
            if let Some(newest) = slot.task.newest() {
                let (base, since) = *slot.idle_base.get_or_insert((newest, now));
                let advanced = base + (now - since).as_millis() as i64 + idle_after.as_millis() as i64;
                slot.task.engine_mut().advance_watermark(advanced - lateness);
            }
        }
        publish(ctx, slot.task.engine_mut(), &mut o.pending)?;
    }
    Ok(sent)
}

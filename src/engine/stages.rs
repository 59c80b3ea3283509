//! The stages a group of instances runs, as deterministic state machines that records flow
//! through: what travels on the internal topics, and what each stage does with it.
//!
//! ```text
//!  input partitions        join partitions (by event_id)       task partitions (by name)
//!  ┌────────┐  labels, predictions  ┌──────┐  joined labels       ┌──────┐
//!  │ Router │──────────────────────▶│ Join │─────────────────────▶│ Task │──▶ commands
//!  │ (one   │  events (app part to the app's task, model part to the model's) │ (an  │
//!  │ per    │────────────────────────────────────────────────────────────────▶│Engine│
//!  │ input) │  progress (newest event time) to every join and task  └──────┘
//!  └────────┘
//! ```
//!
//! - A [`Router`] reads one input partition: it decodes, judges lateness and far-future times
//!   by that partition's own newest event time (so the judgement depends on the partition
//!   alone), and sends each part of an event where it belongs.
//! - A [`Join`] owns the `event_id`s that hash to it: it remembers which task each
//!   prediction went to, and sends each label to that task once both have come.
//! - A [`Task`] owns the apps and models whose name hashes to it (a candidate and its baseline
//!   meet in one task) and runs an [`Engine`] on them.
//!
//! Joins and tasks take their inputs' records merged by event time with the rule of
//! [`crate::merge`]: each upstream (router or join) is one input, and the progress records it
//! sends everyone let a downstream stage take the records of the others without waiting for
//! it. So each stage sees its records in one order, however the records of its upstreams
//! interleave on the way; and an engine decides for its targets what one engine fed every
//! event decides (see [`super::tasks`] for why the time it learns between its events does not
//! matter).

use std::collections::VecDeque;
use std::sync::Arc;

use super::snapshot::{JoinLog, JoinRestore, SnapshotError};
use super::tasks::finish_together;
use super::*;
use crate::event::{BadInput, Decoder};
use crate::labels::hash_str;
use crate::merge::{pick, Head, Pick};

/// A record on an internal topic.
#[derive(Debug, Clone)]
pub enum Record {
    /// An input event for a task: the raw line, where it was read, the part of it the task
    /// takes and whether its input partition found it late.
    Event { ts: Millis, line: Arc<[u8]>, pos: Position, share: Share },
    /// A prediction awaiting its label, for a join: the task that holds it.
    Prediction { ts: Millis, event_id: Arc<str>, task: u32, value: Value },
    /// A label: for a join from a router; for a task from a join, once its prediction came
    /// (`ts` is then when the pair became complete).
    Label { ts: Millis, event_id: Arc<str>, label: Value },
    /// The sender has sent everything up to this event time.
    Progress(Millis),
    /// The sender has sent everything.
    End,
    /// The sender's input is read to its end and has been quiet for a while: downstream
    /// stages pass it by (take the others' records without waiting for it) until it sends
    /// again, as the single-engine merge passes a partition read to its end.
    Idle,
}

impl Record {
    fn ts(&self) -> Option<Millis> {
        match self {
            Record::Event { ts, .. } | Record::Prediction { ts, .. } | Record::Label { ts, .. } => Some(*ts),
            Record::Progress(_) | Record::End | Record::Idle => None,
        }
    }
}

/// Where a router's record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    /// A task partition.
    Task(usize),
    /// A join partition.
    Join(usize),
}

/// The task partition of the apps and models called `name`.
pub fn task_of(name: &str, tasks: usize) -> usize {
    (hash_str(name) % tasks.max(1) as u64) as usize
}

/// The tasks an event (not a label, not a logged half) goes to, with the part each takes: its
/// app's task and its model's, or one task taking all when both names hash to it. Also the
/// model's task.
pub fn split(ev: &Event<'_>, tasks: usize) -> ([Option<(usize, Share)>; 2], Option<usize>) {
    let app = ev.app.as_ref().map(|(name, _)| task_of(name, tasks));
    let model = ev.model.as_ref().map(|(name, _)| task_of(name, tasks));
    let parts = match (app, model) {
        (Some(a), Some(m)) if a != m => [
            Some((a, Share { app: true, model: false, count: true, late: None })),
            Some((m, Share { app: false, model: true, count: false, late: None })),
        ],
        (a, m) => [Some((a.or(m).unwrap_or(0), Share::ALL)), None],
    };
    (parts, model)
}

/// The join partition of `event_id`.
pub fn join_of(event_id: &str, joins: usize) -> usize {
    // Another hash than the tasks' (seeded by a prefix), so that joins spread evenly whatever
    // the names.
    let mut key = String::with_capacity(event_id.len() + 1);
    key.push('j');
    key.push_str(event_id);
    (hash_str(&key) % joins.max(1) as u64) as usize
}

/// Reads one input partition and routes its events.
#[derive(Debug)]
pub struct Router {
    tasks: usize,
    joins: usize,
    lateness: Millis,
    max_future: Millis,
    newest: Option<Millis>,
    decoder: Decoder,
    /// Lines that could not be decoded or lay too far ahead.
    pub rejected: u64,
}

impl Router {
    /// A router for one input partition, sending to `tasks` task and `joins` join partitions.
    pub fn new(cfg: &Config, tasks: usize, joins: usize) -> Router {
        Router {
            tasks: tasks.max(1),
            joins: joins.max(1),
            lateness: cfg.windows.allowed_lateness.0,
            max_future: cfg.windows.max_future.0,
            newest: None,
            decoder: Decoder::default(),
            rejected: 0,
        }
    }

    /// The newest event time of this partition (what its progress records say).
    pub fn newest(&self) -> Option<Millis> {
        self.newest
    }

    /// A router continuing after `newest` (its stored state).
    pub fn restored(cfg: &Config, tasks: usize, joins: usize, newest: Option<Millis>) -> Router {
        Router { newest, ..Router::new(cfg, tasks, joins) }
    }

    /// Routes one input line read at `pos`. A line that cannot be decoded, or lies too far
    /// ahead of the partition's newest time, is returned as bad input (and sent nowhere).
    pub fn route(&mut self, line: &[u8], pos: Position, out: &mut dyn FnMut(Dest, Record)) -> Result<(), BadInput> {
        let ev = match self.decoder.decode(line) {
            Ok(ev) => ev,
            Err(bad) => {
                self.rejected += 1;
                return Err(bad);
            }
        };
        if let Some(bad) = too_far_ahead(ev.ts, self.newest, self.max_future) {
            self.rejected += 1;
            self.decoder.recycle(ev);
            return Err(bad);
        }
        let late = Some(self.newest.is_some_and(|n| ev.ts < n - self.lateness));
        let ts = ev.ts;
        let line: Arc<[u8]> = Arc::from(line);
        let event = |share: Share| Record::Event { ts, line: line.clone(), pos, share: Share { late, ..share } };
        match (&ev.part, ev.kind) {
            (Some(part), _) => out(Dest::Task(task_of(&part.name, self.tasks)), event(Share::ALL)),
            (None, EventType::Label) => {
                if let (Some(id), Some(label)) = (&ev.event_id, &ev.label) {
                    let record = Record::Label { ts, event_id: Arc::from(&**id), label: Value::of(label) };
                    out(Dest::Join(join_of(id, self.joins)), record);
                }
            }
            (None, _) => {
                let (parts, model) = split(&ev, self.tasks);
                for (task, share) in parts.into_iter().flatten() {
                    out(Dest::Task(task), event(share));
                }
                if let (Some(m), EventType::Prediction, Some(id), Some(p)) =
                    (model, ev.kind, &ev.event_id, &ev.prediction)
                {
                    let record =
                        Record::Prediction { ts, event_id: Arc::from(&**id), task: m as u32, value: Value::of(p) };
                    out(Dest::Join(join_of(id, self.joins)), record);
                }
            }
        }
        self.newest = self.newest.max(Some(ts));
        self.decoder.recycle(ev);
        Ok(())
    }
}

/// Records from several upstreams, taken in event-time order ([`crate::merge`]).
///
/// Each record may carry the offset it was read at (all upstreams of a stage share one
/// internal partition, so one offset space): the merger remembers the offset of the last
/// record it took from each upstream, so that records read again after a restart from
/// [`Merger::resume_offset`] are not taken twice.
#[derive(Debug)]
struct Merger {
    queues: Vec<VecDeque<(i64, Record)>>,
    state: MergeState,
    /// Records queued at most (about) before an upstream running ahead has its records read
    /// again later instead of held; 0: no bound.
    limit: usize,
    /// Per upstream: the offset of the last record queued (-1: none), so a record read again
    /// after a rewind and still queued or taken is not queued twice.
    last: Vec<i64>,
    /// Per upstream: its records are left to be read again (from [`Merger::rewind`]).
    skipping: Vec<bool>,
    /// The oldest offset left to be read again, if any.
    rewind: Option<i64>,
    /// The offset after the last record read (where reading goes on).
    reading: i64,
    /// Records queued, over all queues.
    count: usize,
}

/// What a merger must keep across restarts (its queued records are read again).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct MergeState {
    /// Per upstream: the newest time it delivered or said it reached.
    after: Vec<Option<Millis>>,
    ended: Vec<bool>,
    /// Per upstream: it said it is idle, and has sent nothing since.
    idle: Vec<bool>,
    /// Per upstream: the offset of the last record taken (-1: none).
    taken: Vec<i64>,
}

impl Merger {
    fn new(upstreams: usize) -> Merger {
        Merger::with_state(
            upstreams,
            MergeState {
                after: vec![None; upstreams],
                ended: vec![false; upstreams],
                idle: vec![false; upstreams],
                taken: vec![-1; upstreams],
            },
        )
    }

    fn with_state(upstreams: usize, state: MergeState) -> Merger {
        Merger {
            queues: vec![VecDeque::new(); upstreams],
            last: state.taken.clone(),
            state,
            limit: 0,
            skipping: vec![false; upstreams],
            rewind: None,
            reading: 0,
            count: 0,
        }
    }

    /// A merger continuing from `state` (of the same number of upstreams, else a new one).
    fn restored(upstreams: usize, state: MergeState) -> Merger {
        let sizes = [state.after.len(), state.ended.len(), state.idle.len(), state.taken.len()];
        if sizes.iter().any(|&n| n != upstreams) {
            return Merger::new(upstreams);
        }
        Merger::with_state(upstreams, state)
    }

    /// Queues record `r` of upstream `from`, read at `offset` (negative: not from Kafka).
    /// A record at or before the last one taken from `from` was taken already and is dropped.
    ///
    /// With a limit, the queues hold about that many records: past it, the newest records of
    /// the upstream with the longest queue (the one furthest ahead of the upstream the merge
    /// waits for) are left to be read again, and so is every later record of it until
    /// [`Merger::rewind`] says where to read from again.
    fn push_at(&mut self, from: usize, offset: i64, r: Record) {
        if offset >= 0 {
            self.reading = offset + 1;
        }
        if from >= self.queues.len() || (offset >= 0 && offset <= self.state.taken[from].max(self.last[from])) {
            return;
        }
        if !matches!(r, Record::Idle) {
            self.state.idle[from] = false;
        }
        if offset >= 0 && self.limit > 0 {
            if !self.skipping[from] && self.queued() >= self.limit {
                self.leave_newest(from);
            }
            if self.skipping[from] {
                self.rewind = Some(self.rewind.map_or(offset, |o| o.min(offset)));
                return;
            }
        }
        if offset >= 0 {
            self.last[from] = offset;
        }
        self.queues[from].push_back((offset, r));
        self.count += 1;
    }

    /// Makes room for a record of `from`: the newest record of the longest queue is left to be
    /// read again (`from`'s own record, when its queue is the longest).
    fn leave_newest(&mut self, from: usize) {
        let longest = (0..self.queues.len()).max_by_key(|&i| (self.queues[i].len(), i == from)).unwrap_or(from);
        self.skipping[longest] = true;
        if longest == from {
            return;
        }
        let q = &mut self.queues[longest];
        if let Some((at, _)) = q.back().filter(|(at, _)| *at >= 0) {
            self.rewind = Some(self.rewind.map_or(*at, |o| o.min(*at)));
            q.pop_back();
            self.count -= 1;
            self.last[longest] = q.back().map_or(-1, |(at, _)| *at);
        }
    }

    /// Bounds the queues to about `limit` records (0: no bound), and at least twice the
    /// upstreams: the merge needs a record of every upstream it waits for, and the longest
    /// queue, where records are left, then always keeps one.
    fn bound(&mut self, limit: usize) {
        self.limit = if limit == 0 { 0 } else { limit.max(2 * self.queues.len()) };
    }

    /// Where to read the stage's partition again from, once records were left to be read
    /// again and either the queues are down to half the limit or the merge waits for an
    /// upstream whose records were left. Records read again that were queued or taken already
    /// are dropped by [`Merger::push_at`].
    fn rewind(&mut self) -> Option<i64> {
        self.rewind?;
        let s = &self.state;
        let waited = (0..self.queues.len())
            .filter(|&i| self.queues[i].is_empty() && !s.ended[i] && !s.idle[i])
            .min_by_key(|&i| (s.after[i], i));
        let needed = waited.is_some_and(|i| self.skipping[i]);
        if self.queued() > self.limit / 2 && !needed {
            return None;
        }
        self.skipping.iter_mut().for_each(|s| *s = false);
        // A record left that was queued after a rewind lies ahead: reading on reaches it.
        let to = self.rewind.take().filter(|&to| to < self.reading)?;
        self.reading = to;
        Some(to)
    }

    fn push(&mut self, from: usize, r: Record) {
        self.push_at(from, -1, r);
    }

    /// The next record in merged order, if it can be known now.
    fn next(&mut self) -> Option<Record> {
        let s = &mut self.state;
        for (i, q) in self.queues.iter_mut().enumerate() {
            while let Some((at, r)) = q.front() {
                match r {
                    Record::Progress(t) => s.after[i] = s.after[i].max(Some(*t)),
                    Record::End => s.ended[i] = true,
                    Record::Idle => s.idle[i] = true,
                    _ => break,
                }
                s.taken[i] = s.taken[i].max(*at);
                q.pop_front();
                self.count -= 1;
            }
        }
        let heads = self.queues.iter().enumerate().map(|(i, q)| match q.front() {
            Some((_, r)) => Head::Ready(r.ts()),
            None if s.ended[i] || s.idle[i] => Head::Done,
            None => Head::Waiting(s.after[i]),
        });
        match pick(heads, None, Millis::MAX) {
            Pick::Input(i) => {
                let (at, r) = self.queues[i].pop_front()?;
                self.count -= 1;
                s.after[i] = s.after[i].max(r.ts());
                s.taken[i] = s.taken[i].max(at);
                Some(r)
            }
            Pick::Wait | Pick::Empty => None,
        }
    }

    /// Every upstream ended and everything was taken.
    fn done(&self) -> bool {
        self.state.ended.iter().all(|&e| e) && self.queues.iter().all(VecDeque::is_empty)
    }

    /// Nothing queued, and no upstream is waited for: each ended or is idle.
    fn quiet(&self) -> bool {
        let s = &self.state;
        self.queues.iter().all(VecDeque::is_empty) && s.ended.iter().zip(&s.idle).all(|(&e, &i)| e || i)
    }

    /// The newest time every upstream reached (what a stage may say it reached itself): the
    /// oldest of the upstreams waited for, or the newest of all when none is.
    fn progress(&self) -> Option<Millis> {
        let s = &self.state;
        let waited = (0..s.after.len()).filter(|&i| !s.ended[i] && !s.idle[i]);
        match waited.clone().next() {
            Some(_) => waited.map(|i| s.after[i]).min().flatten(),
            None => s.after.iter().copied().max().flatten(),
        }
    }

    /// The newest time any upstream reached.
    fn newest(&self) -> Option<Millis> {
        self.state.after.iter().copied().max().flatten()
    }

    /// Where to read the stage's partition again from after a restart: the oldest of the
    /// records queued, the records left to be read again, and `next` (where reading goes on).
    /// Right after a rewind, `next` lies before records read earlier and still queued: the
    /// records between are neither taken nor queued yet.
    fn resume_offset(&self, next: i64) -> i64 {
        let queued = self.queues.iter().filter_map(|q| q.front().map(|(at, _)| *at)).filter(|&at| at >= 0);
        queued.chain(self.rewind).fold(next, i64::min)
    }

    /// Records queued.
    fn queued(&self) -> usize {
        self.count
    }
}

/// Joins labels to the tasks holding their predictions, for the `event_id`s of one partition.
#[derive(Debug)]
pub struct Join {
    merge: Merger,
    routes: LabelJoin<u32>,
    /// Where the stored copy of `routes` stands (a base and a log of changes, as the engine
    /// stores its own pending joins).
    log: JoinLog,
    tasks: usize,
    lateness: Millis,
    said: Said,
    /// Something changed since [`Join::state`] was last taken.
    changed: bool,
}

/// What a stage last told the stages downstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize, serde::Deserialize)]
struct Said {
    /// The progress last sent on.
    progress: Option<Millis>,
    ended: bool,
    /// Idle was sent, and nothing since.
    idle: bool,
}

/// A join's stored state (its queued records are read again), beside the records of its
/// pending joins ([`Join::state`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JoinState {
    merge: MergeState,
    said: Said,
    #[serde(default)]
    counters: JoinCounters,
    /// [`JoinLog::position`] of the pending joins' records.
    #[serde(default)]
    log: (u64, u64),
    /// The pending joins themselves, in state stored before they had records of their own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    routes: Option<LabelJoin<u32>>,
}

impl Join {
    /// A join partition reading `upstreams` routers, sending to `tasks` tasks.
    pub fn new(cfg: &Config, upstreams: usize, tasks: usize) -> Join {
        let routes =
            LabelJoin::new(cfg.accuracy.max_pending.saturating_mul(tasks.max(1)), cfg.accuracy.max_label_delay.0);
        Join {
            merge: Merger::new(upstreams),
            routes,
            log: JoinLog::default(),
            tasks: tasks.max(1),
            lateness: cfg.windows.allowed_lateness.0,
            said: Said::default(),
            changed: true,
        }
    }

    /// A join continuing from its stored state and the records of its pending joins (other
    /// records are ignored).
    pub fn restored(
        cfg: &Config,
        upstreams: usize,
        tasks: usize,
        state: JoinState,
        records: impl IntoIterator<Item = (String, Vec<u8>)>,
    ) -> Result<Join, SnapshotError> {
        let mut j = Join::new(cfg, upstreams, tasks);
        j.merge = Merger::restored(upstreams, state.merge);
        j.said = state.said;
        match state.routes {
            // Stored whole: the next state writes a base of its own.
            Some(routes) => j.routes = routes,
            None => {
                let mut restore = JoinRestore::new();
                for (key, bytes) in records {
                    restore.offer(&key, &bytes)?;
                }
                j.log = restore.finish(&mut j.routes, state.log);
                j.routes.counters = state.counters;
            }
        }
        j.changed = false;
        Ok(j)
    }

    /// Makes the next [`Join::state`] give the state even if nothing in it changed (where its
    /// partition continues did).
    pub fn mark_changed(&mut self) {
        self.changed = true;
    }

    /// Its state to store, if it changed since the last call; the records storing what
    /// changed in its pending joins are appended to `out` (keyed as the engine keys its own).
    pub fn state(&mut self, out: &mut Vec<(String, Option<Vec<u8>>)>) -> Option<JoinState> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        self.log.write(&mut self.routes, out);
        Some(JoinState {
            merge: self.merge.state.clone(),
            said: self.said,
            counters: self.routes.counters,
            log: self.log.position(),
            routes: None,
        })
    }

    /// A record from router `from`.
    pub fn push(&mut self, from: usize, r: Record) {
        self.merge.push(from, r);
    }

    /// A record from router `from` read at `offset` of the join's partition (one read again
    /// after a restart, and taken before it, is dropped).
    pub fn push_at(&mut self, from: usize, offset: i64, r: Record) {
        self.merge.push_at(from, offset, r);
    }

    /// Bounds the records queued for the merge to about `limit` (0: no bound): past it, the
    /// records of an upstream running ahead are read again later (see [`Join::rewind`]).
    pub fn bound_queue(&mut self, limit: usize) {
        self.merge.bound(limit);
    }

    /// The offset of the stage's partition to read again from, when records were left there
    /// to bound the queue and there is room for them now. The reader must seek there, and read
    /// on from it as from a restart.
    pub fn rewind(&mut self) -> Option<i64> {
        self.merge.rewind()
    }

    /// Where to read this join's partition from after a restart (`next`: after the last
    /// record read).
    pub fn resume_offset(&self, next: i64) -> i64 {
        self.merge.resume_offset(next)
    }

    /// Takes what can be taken and sends joined labels to their tasks.
    pub fn take(&mut self, out: &mut dyn FnMut(usize, Record)) {
        while let Some(r) = self.merge.next() {
            self.changed = true;
            let joined = match r {
                Record::Prediction { ts, event_id, task, value } => self
                    .routes
                    .prediction(&event_id, PendingPrediction { target: task, value, ts })
                    .map(|j| (j, event_id)),
                Record::Label { ts, event_id, label } => self.routes.label(&event_id, label, ts).map(|j| (j, event_id)),
                _ => None,
            };
            if let Some((j, event_id)) = joined {
                out(j.target as usize, Record::Label { ts: j.ts, event_id, label: j.label });
            }
        }
        // Whether a label joins depends only on the two times (at most `max_label_delay`
        // apart): dropping what nothing on time can join any more only saves memory.
        if let Some(p) = self.merge.progress() {
            self.routes.expire(p - self.lateness);
        }
    }

    /// Sends every task its progress, its end, or that it is idle, when that changed.
    pub fn say(&mut self, out: &mut dyn FnMut(usize, Record)) {
        let mut tell = |r: &dyn Fn() -> Record| (0..self.tasks).for_each(|t| out(t, r()));
        if self.merge.done() {
            if !self.said.ended {
                self.said.ended = true;
                self.changed = true;
                tell(&|| Record::End);
            }
            return;
        }
        if let Some(p) = self.merge.progress().filter(|&p| Some(p) > self.said.progress) {
            self.said.progress = Some(p);
            self.said.idle = false;
            self.changed = true;
            tell(&|| Record::Progress(p));
        }
        let quiet = self.merge.quiet();
        if quiet != self.said.idle && quiet {
            self.said.idle = true;
            self.changed = true;
            tell(&|| Record::Idle);
        } else if !quiet {
            self.said.idle = false;
        }
    }

    /// Takes what can be taken; sends joined labels to their tasks, then its progress (or its
    /// end) to every task.
    pub fn poll(&mut self, out: &mut dyn FnMut(usize, Record)) {
        self.take(out);
        self.say(out);
    }

    /// Records queued for the merge.
    pub fn queued(&self) -> usize {
        self.merge.queued()
    }
}

/// One task: the targets whose name hashes to it, decided on by an engine.
#[derive(Debug)]
pub struct Task {
    merge: Merger,
    engine: Engine,
    decoder: Decoder,
}

impl Task {
    /// A task reading `upstreams` upstreams (the routers, then the joins).
    pub fn new(cfg: Config, upstreams: usize) -> Task {
        Task::restored(Engine::new(cfg), upstreams, None)
    }

    /// A task continuing with `engine` and the merge state stored with it.
    pub fn restored(engine: Engine, upstreams: usize, merge: Option<MergeState>) -> Task {
        let merge = match merge {
            Some(m) => Merger::restored(upstreams, m),
            None => Merger::new(upstreams),
        };
        Task { merge, engine, decoder: Decoder::default() }
    }

    /// The merge state to store with the engine's.
    pub fn merge_state(&self) -> &MergeState {
        &self.merge.state
    }

    /// A record from upstream `from`.
    pub fn push(&mut self, from: usize, r: Record) {
        self.merge.push(from, r);
    }

    /// A record from upstream `from` read at `offset` of the task's partition (one read again
    /// after a restart, and taken before it, is dropped).
    pub fn push_at(&mut self, from: usize, offset: i64, r: Record) {
        self.merge.push_at(from, offset, r);
    }

    /// Bounds the records queued for the merge to about `limit` (0: no bound): past it, the
    /// records of an upstream running ahead are read again later (see [`Task::rewind`]).
    pub fn bound_queue(&mut self, limit: usize) {
        self.merge.bound(limit);
    }

    /// The offset of the stage's partition to read again from, when records were left there
    /// to bound the queue and there is room for them now. The reader must seek there, and read
    /// on from it as from a restart.
    pub fn rewind(&mut self) -> Option<i64> {
        self.merge.rewind()
    }

    /// Where to read this task's partition from after a restart (`next`: after the last
    /// record read).
    pub fn resume_offset(&self, next: i64) -> i64 {
        self.merge.resume_offset(next)
    }

    /// Takes what can be taken into the engine. Returns how many records it took.
    pub fn poll(&mut self) -> usize {
        let mut n = 0;
        while let Some(r) = self.merge.next() {
            n += 1;
            match r {
                Record::Event { line, pos, share, .. } => {
                    if let Ok(ev) = self.decoder.decode(&line) {
                        // The router checked the time already.
                        let _ = self.engine.ingest_share(&ev, pos, share);
                        self.decoder.recycle(ev);
                    }
                }
                Record::Label { ts, event_id, label } => self.engine.join_label(&event_id, label, ts),
                _ => {}
            }
        }
        n
    }

    /// Nothing queued and every upstream idle or ended: the stream is quiet for now.
    pub fn quiet(&self) -> bool {
        self.merge.quiet()
    }

    /// The newest event time any upstream reached: the stream's newest, as far as it is known.
    pub fn newest(&self) -> Option<Millis> {
        self.merge.newest()
    }

    /// Records queued for the merge.
    pub fn queued(&self) -> usize {
        self.merge.queued()
    }

    /// Every upstream ended and everything was taken.
    pub fn done(&self) -> bool {
        self.merge.done()
    }

    /// The engine.
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// End of input for all tasks: they finish together at the newest event time `newest` of the
/// whole input (as one engine would).
pub fn finish_tasks(tasks: &mut [Task], newest: Option<Millis>) {
    let Some(n) = newest else { return };
    let lateness = tasks.first().map_or(0, |t| t.engine.config().windows.allowed_lateness.0);
    finish_together(tasks.iter_mut().map(|t| &mut t.engine), Some(n), Some(n), n - lateness);
}

/// The wire form of [`Record`]s on the internal topics: one Kafka record value each, written
/// by one instance and read by another (of the same version).
///
/// Layout: a tag byte, the sender's upstream index (u32), then per tag:
/// - `E` event: time (i64), input source (u32), offset (u64), share bits (u8: app, model,
///   count, late judged, late), then the input line as read;
/// - `P` prediction: time, task (u32), value, then the `event_id`;
/// - `L` label: time, value, then the `event_id`;
/// - `G` progress: time; `Z` end; `I` idle.
///
/// A value is a tag byte (`n` number, `c` class hash) and 8 bytes. Integers are big-endian.
pub mod wire {
    use super::*;

    /// Why a record could not be read back.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("internal record: {0}")]
    pub struct WireError(&'static str);

    fn put_value(out: &mut Vec<u8>, v: Value) {
        match v {
            Value::Num(x) => {
                out.push(b'n');
                out.extend_from_slice(&x.to_bits().to_be_bytes());
            }
            Value::Class(h) => {
                out.push(b'c');
                out.extend_from_slice(&h.to_be_bytes());
            }
        }
    }

    /// Encodes record `r` sent by upstream `from`.
    pub fn encode(from: u32, r: &Record) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        let tag = match r {
            Record::Event { .. } => b'E',
            Record::Prediction { .. } => b'P',
            Record::Label { .. } => b'L',
            Record::Progress(_) => b'G',
            Record::End => b'Z',
            Record::Idle => b'I',
        };
        out.push(tag);
        out.extend_from_slice(&from.to_be_bytes());
        match r {
            Record::Event { ts, line, pos, share } => {
                out.extend_from_slice(&ts.to_be_bytes());
                out.extend_from_slice(&pos.source.to_be_bytes());
                out.extend_from_slice(&pos.offset.to_be_bytes());
                let bits = u8::from(share.app)
                    | u8::from(share.model) << 1
                    | u8::from(share.count) << 2
                    | u8::from(share.late.is_some()) << 3
                    | u8::from(share.late == Some(true)) << 4;
                out.push(bits);
                out.extend_from_slice(line);
            }
            Record::Prediction { ts, event_id, task, value } => {
                out.extend_from_slice(&ts.to_be_bytes());
                out.extend_from_slice(&task.to_be_bytes());
                put_value(&mut out, *value);
                out.extend_from_slice(event_id.as_bytes());
            }
            Record::Label { ts, event_id, label } => {
                out.extend_from_slice(&ts.to_be_bytes());
                put_value(&mut out, *label);
                out.extend_from_slice(event_id.as_bytes());
            }
            Record::Progress(ts) => out.extend_from_slice(&ts.to_be_bytes()),
            Record::End | Record::Idle => {}
        }
        out
    }

    /// Reads fixed-size fields off the front of a record.
    struct Reader<'a>(&'a [u8]);

    impl<'a> Reader<'a> {
        fn take<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], WireError> {
            let (head, rest) = self.0.split_first_chunk::<N>().ok_or(WireError(what))?;
            self.0 = rest;
            Ok(*head)
        }
        fn i64(&mut self, what: &'static str) -> Result<i64, WireError> {
            self.take::<8>(what).map(i64::from_be_bytes)
        }
        fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
            self.take::<4>(what).map(u32::from_be_bytes)
        }
        fn value(&mut self) -> Result<Value, WireError> {
            let [tag] = self.take::<1>("value: cut short")?;
            let bits = self.take::<8>("value: cut short")?;
            match tag {
                b'n' => Ok(Value::Num(f64::from_bits(u64::from_be_bytes(bits)))),
                b'c' => Ok(Value::Class(u64::from_be_bytes(bits))),
                _ => Err(WireError("value: unknown kind")),
            }
        }
        fn text(self, what: &'static str) -> Result<Arc<str>, WireError> {
            std::str::from_utf8(self.0).map(Arc::from).map_err(|_| WireError(what))
        }
    }

    /// Decodes a record: its sender's upstream index and the record.
    pub fn decode(bytes: &[u8]) -> Result<(u32, Record), WireError> {
        let mut r = Reader(bytes);
        let [tag] = r.take::<1>("empty")?;
        let from = r.u32("no sender")?;
        let record = match tag {
            b'E' => {
                let ts = r.i64("event: no time")?;
                let source = r.u32("event: no source")?;
                let offset = r.take::<8>("event: no offset").map(u64::from_be_bytes)?;
                let [bits] = r.take::<1>("event: no share")?;
                let share = Share {
                    app: bits & 1 != 0,
                    model: bits & 2 != 0,
                    count: bits & 4 != 0,
                    late: (bits & 8 != 0).then_some(bits & 16 != 0),
                };
                Record::Event { ts, line: Arc::from(r.0), pos: Position { source, offset }, share }
            }
            b'P' => {
                let ts = r.i64("prediction: no time")?;
                let task = r.u32("prediction: no task")?;
                let value = r.value()?;
                Record::Prediction { ts, task, value, event_id: r.text("prediction: event_id is not UTF-8")? }
            }
            b'L' => {
                let ts = r.i64("label: no time")?;
                let label = r.value()?;
                Record::Label { ts, label, event_id: r.text("label: event_id is not UTF-8")? }
            }
            b'G' => Record::Progress(r.i64("progress: no time")?),
            b'Z' => Record::End,
            b'I' => Record::Idle,
            _ => return Err(WireError("unknown record kind")),
        };
        Ok((from, record))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        fn same(a: &Record, b: &Record) -> bool {
            format!("{a:?}") == format!("{b:?}")
        }

        #[test]
        fn every_kind_reads_back_as_written() {
            let id: Arc<str> = Arc::from("req-7");
            let records = [
                Record::Event {
                    ts: 1_764_000_000_123,
                    line: Arc::from(&br#"{"type":"request"}"#[..]),
                    pos: Position { source: 3, offset: 1 << 40 },
                    share: Share { app: true, model: false, count: true, late: Some(true) },
                },
                Record::Event {
                    ts: -5,
                    line: Arc::from(&b""[..]),
                    pos: Position { source: 0, offset: 0 },
                    share: Share::ALL,
                },
                Record::Prediction { ts: 9, event_id: id.clone(), task: 4, value: Value::Num(-0.25) },
                Record::Label { ts: 10, event_id: id, label: Value::Class(u64::MAX) },
                Record::Progress(i64::MIN),
                Record::End,
                Record::Idle,
            ];
            for (i, r) in records.iter().enumerate() {
                let (from, back) = decode(&encode(i as u32 + 7, r)).expect("reads back");
                assert_eq!(from, i as u32 + 7);
                assert!(same(r, &back), "{r:?} read back as {back:?}");
            }
        }

        #[test]
        fn a_cut_or_unknown_record_is_an_error_naming_what_is_missing() {
            let full =
                encode(1, &Record::Prediction { ts: 9, event_id: Arc::from("x"), task: 4, value: Value::Num(1.0) });
            assert_eq!(decode(&full[..10]).map(|_| ()), Err(WireError("prediction: no time")));
            assert_eq!(decode(&full[..17]).map(|_| ()), Err(WireError("value: cut short")));
            assert_eq!(decode(b"Q\0\0\0\x01").map(|_| ()), Err(WireError("unknown record kind")));
            assert_eq!(decode(b"").map(|_| ()), Err(WireError("empty")));
        }
    }
}

#[cfg(test)]
mod merge_tests {
    use super::*;

    fn event(ts: Millis) -> Record {
        Record::Event { ts, line: Arc::from(&b""[..]), pos: Position { source: 0, offset: 0 }, share: Share::ALL }
    }

    /// A partition of records from `upstreams` upstreams, each in time order, interleaved at
    /// random; the last upstream's records come late in the partition (it runs behind).
    fn partition(upstreams: usize, per: usize, seed: u64) -> Vec<(usize, Record)> {
        let mut x = seed;
        let mut rand = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut next = vec![0usize; upstreams];
        let mut log = Vec::new();
        while next.iter().any(|&n| n <= per) {
            let behind = next[..upstreams - 1].iter().any(|&n| n <= per);
            let u = if behind && rand() % 10 != 0 { (rand() as usize) % (upstreams - 1) } else { upstreams - 1 };
            if next[u] > per {
                continue;
            }
            let r = if next[u] == per { Record::End } else { event((next[u] * 10 + u) as Millis) };
            next[u] += 1;
            log.push((u, r));
        }
        log
    }

    /// Reads `log` as a stage reads its partition: rewinding when told to, and restarting from
    /// the stored state and resume offset after `restart_every` records read, then twice as
    /// many, three times…, and right after every other rewind. Returns the records taken, the
    /// most ever queued and the reads.
    fn read(
        log: &[(usize, Record)],
        upstreams: usize,
        limit: usize,
        restart_every: usize,
    ) -> (Vec<Millis>, usize, usize) {
        let mut m = Merger::new(upstreams);
        m.bound(limit);
        let (mut pos, mut taken, mut most, mut reads) = (0usize, Vec::new(), 0usize, 0usize);
        let (mut restarts, mut next_restart, mut rewinds) = (1usize, restart_every, 0usize);
        while pos < log.len() {
            let (from, r) = &log[pos];
            m.push_at(*from, pos as i64, r.clone());
            pos += 1;
            reads += 1;
            most = most.max(m.queued());
            while let Some(r) = m.next() {
                taken.extend(r.ts());
            }
            let mut rewound = false;
            if let Some(at) = m.rewind() {
                rewinds += 1;
                assert!(at < pos as i64, "rewinds backwards: {at} at {pos}, limit {limit}");
                pos = at as usize;
                rewound = true;
            }
            // Restarts come further apart each time, so the reading gets past any stretch;
            // and right after every other rewind, while records read before it are queued.
            if restart_every > 0 && (reads == next_restart || (rewound && rewinds % 2 == 1)) {
                restarts += 1;
                next_restart = reads + restart_every * restarts;
                pos = m.resume_offset(pos as i64) as usize;
                m = Merger::restored(upstreams, m.state.clone());
                m.bound(limit);
            }
        }
        assert!(m.done(), "every upstream ended and everything was taken");
        assert!(limit == 0 || rewinds > 0, "the queue bound {limit} was never reached");
        (taken, most, reads)
    }

    #[test]
    fn a_bounded_queue_reads_again_and_takes_what_an_unbounded_one_takes() {
        for seed in 1..=20u64 {
            let log = partition(4, 300, seed);
            let (unbounded, most, _) = read(&log, 4, 0, 0);
            assert_eq!(unbounded.len(), 4 * 300);
            assert!(most > 200, "seed {seed}: the test's upstream runs behind ({most} queued at most)");
            for (limit, restart) in [(50, 0), (50, 37), (7, 0), (7, 113), (1, 0)] {
                let (bounded, most, reads) = read(&log, 4, limit, restart);
                if seed == 1 {
                    eprintln!("limit {limit}, restarts every {restart}+: {reads} reads of {}", log.len());
                }
                assert_eq!(bounded, unbounded, "seed {seed}, limit {limit}, restarts every {restart}");
                assert!(most <= limit.max(8) + 1, "seed {seed}, limit {limit}: {most} queued");
            }
        }
    }
}

#[cfg(test)]
mod join_state_tests {
    use std::collections::BTreeMap;

    use super::*;

    fn prediction(i: u64) -> Record {
        Record::Prediction {
            ts: i as Millis * 1000,
            event_id: format!("e{i}").into(),
            task: (i % 3) as u32,
            value: Value::Class(i % 2),
        }
    }

    fn label(i: u64) -> Record {
        Record::Label { ts: i as Millis * 1000 + 500, event_id: format!("e{i}").into(), label: Value::Class(1) }
    }

    /// Stores the join as the group does: its records applied to a compacted partition.
    fn store(j: &mut Join, part: &mut BTreeMap<String, Vec<u8>>) -> Option<(JoinState, usize)> {
        let mut out = Vec::new();
        let state = j.state(&mut out)?;
        let written = out.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len)).sum();
        for (k, v) in out {
            match v {
                Some(v) => part.insert(k, v),
                None => part.remove(&k),
            };
        }
        Some((state, written))
    }

    #[test]
    fn a_join_stores_what_changed_and_restores_the_same_pending_joins() {
        let cfg = Config::default();
        let mut j = Join::new(&cfg, 1, 3);
        let mut part = BTreeMap::new();
        let mut sink = |_: usize, _: Record| {};
        let mut state = None;
        let (mut written_all, mut full_all) = (0usize, 0usize);
        // 30 rounds of 1,000 predictions; from the 10th on, labels for nine in ten of those
        // made ten rounds before (as labels come hours late): about 10,000 pending, 2,000
        // changing per round.
        for round in 0..30u64 {
            for i in round * 1000..(round + 1) * 1000 {
                j.push(0, prediction(i));
                if round >= 10 && i % 10 != 0 {
                    j.push(0, label(i - 10_000));
                }
            }
            j.take(&mut sink);
            let (s, written) = store(&mut j, &mut part).expect("changed");
            if round >= 10 {
                written_all += written;
                full_all +=
                    j.routes.shards().iter().map(|s| crate::engine::snapshot::encode_value(s).len()).sum::<usize>();
            }
            state = Some(s);
            let restored = Join::restored(&cfg, 1, 3, state.clone().expect("stored"), part.clone()).expect("restores");
            assert!(restored.routes.same_pending(&j.routes), "round {round}");
            assert_eq!(restored.routes.counters, j.routes.counters);
        }
        let pending = j.routes.pending();
        assert!(pending > 10_000, "{pending} pending");
        // What changed is written, and a base now and then: far less than a copy per round.
        eprintln!("{pending} pending: {written_all} bytes written in 20 rounds, {full_all} for a copy per round");
        assert!(written_all * 2 < full_all, "{written_all} bytes written, a copy per round {full_all}");
        // Nothing changed: nothing to store.
        assert!(store(&mut j, &mut part).is_none());
        // State stored whole (before the pending joins had records) restores, and the next
        // state writes a base.
        let mut old = state.expect("stored");
        old.routes = Some(j.routes.clone());
        let bytes = crate::engine::snapshot::encode_value(&old);
        let old: JoinState = crate::engine::snapshot::decode_value("join", &bytes).expect("reads back");
        let mut back = Join::restored(&cfg, 1, 3, old, BTreeMap::new()).expect("restores");
        assert!(back.routes.same_pending(&j.routes));
        back.mark_changed();
        let mut fresh = BTreeMap::new();
        let (s, _) = store(&mut back, &mut fresh).expect("marked changed");
        assert!(s.routes.is_none());
        let again = Join::restored(&cfg, 1, 3, s, fresh).expect("restores");
        assert!(again.routes.same_pending(&j.routes));
    }
}

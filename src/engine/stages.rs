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

use super::tasks::finish_together;
use super::*;
use crate::event::Decoder;
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
}

impl Record {
    fn ts(&self) -> Option<Millis> {
        match self {
            Record::Event { ts, .. } | Record::Prediction { ts, .. } | Record::Label { ts, .. } => Some(*ts),
            Record::Progress(_) | Record::End => None,
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

    /// Routes one input line read at `pos`.
    pub fn route(&mut self, line: &[u8], pos: Position, out: &mut dyn FnMut(Dest, Record)) {
        let ev = match self.decoder.decode(line) {
            Ok(ev) => ev,
            Err(_) => {
                self.rejected += 1;
                return;
            }
        };
        if self.newest.is_some_and(|n| ev.ts > n.saturating_add(self.max_future)) {
            self.rejected += 1;
            self.decoder.recycle(ev);
            return;
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
    }
}

/// Records from several upstreams, taken in event-time order ([`crate::merge`]).
#[derive(Debug)]
struct Merger {
    queues: Vec<VecDeque<Record>>,
    /// Per upstream: the newest time it delivered or said it reached.
    after: Vec<Option<Millis>>,
    ended: Vec<bool>,
}

impl Merger {
    fn new(upstreams: usize) -> Merger {
        Merger { queues: vec![VecDeque::new(); upstreams], after: vec![None; upstreams], ended: vec![false; upstreams] }
    }

    fn push(&mut self, from: usize, r: Record) {
        if let Some(q) = self.queues.get_mut(from) {
            q.push_back(r);
        }
    }

    /// The next record in merged order, if it can be known now.
    fn next(&mut self) -> Option<Record> {
        for (i, q) in self.queues.iter_mut().enumerate() {
            while let Some(r) = q.front() {
                match r {
                    Record::Progress(t) => self.after[i] = self.after[i].max(Some(*t)),
                    Record::End => self.ended[i] = true,
                    _ => break,
                }
                q.pop_front();
            }
        }
        let heads = self.queues.iter().enumerate().map(|(i, q)| match q.front() {
            Some(r) => Head::Ready(r.ts()),
            None if self.ended[i] => Head::Done,
            None => Head::Waiting(self.after[i]),
        });
        match pick(heads, None, Millis::MAX) {
            Pick::Input(i) => {
                let r = self.queues[i].pop_front()?;
                self.after[i] = self.after[i].max(r.ts());
                Some(r)
            }
            Pick::Wait | Pick::Empty => None,
        }
    }

    /// Every upstream ended and everything was taken.
    fn done(&self) -> bool {
        self.ended.iter().all(|&e| e) && self.queues.iter().all(VecDeque::is_empty)
    }

    /// The newest time every upstream reached (what a stage may say it reached itself).
    fn progress(&self) -> Option<Millis> {
        self.after.iter().copied().min().flatten()
    }
}

/// Joins labels to the tasks holding their predictions, for the `event_id`s of one partition.
#[derive(Debug)]
pub struct Join {
    merge: Merger,
    routes: LabelJoin<u32>,
    tasks: usize,
    lateness: Millis,
    /// The progress last sent on.
    said: Option<Millis>,
    ended: bool,
}

impl Join {
    /// A join partition reading `upstreams` routers, sending to `tasks` tasks.
    pub fn new(cfg: &Config, upstreams: usize, tasks: usize) -> Join {
        let routes =
            LabelJoin::new(cfg.accuracy.max_pending.saturating_mul(tasks.max(1)), cfg.accuracy.max_label_delay.0);
        Join {
            merge: Merger::new(upstreams),
            routes,
            tasks: tasks.max(1),
            lateness: cfg.windows.allowed_lateness.0,
            said: None,
            ended: false,
        }
    }

    /// A record from router `from`.
    pub fn push(&mut self, from: usize, r: Record) {
        self.merge.push(from, r);
    }

    /// Takes what can be taken; sends joined labels to their tasks, then its progress (or its
    /// end) to every task.
    pub fn poll(&mut self, out: &mut dyn FnMut(usize, Record)) {
        while let Some(r) = self.merge.next() {
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
        if self.merge.done() && !self.ended {
            self.ended = true;
            for t in 0..self.tasks {
                out(t, Record::End);
            }
        } else if let Some(p) = self.merge.progress().filter(|&p| Some(p) > self.said) {
            self.said = Some(p);
            for t in 0..self.tasks {
                out(t, Record::Progress(p));
            }
        }
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
        Task { merge: Merger::new(upstreams), engine: Engine::new(cfg), decoder: Decoder::default() }
    }

    /// A record from upstream `from`.
    pub fn push(&mut self, from: usize, r: Record) {
        self.merge.push(from, r);
    }

    /// Takes what can be taken into the engine.
    pub fn poll(&mut self) {
        while let Some(r) = self.merge.next() {
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
/// - `G` progress: time; `Z` end.
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
            Record::End => {}
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

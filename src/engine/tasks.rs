//! A stream's targets split over a fixed number of engines (tasks), giving the decisions one
//! engine gives.
//!
//! This is the unit of work a group of instances shares: each task owns the apps and models
//! whose name hashes to it, so a candidate and its baseline always meet in one task, and the
//! commands depend on the events alone — not on the number of tasks, nor on which process runs
//! which task. What crosses from the stream to a task is what an internal topic keyed by target
//! carries:
//!
//! - an event's app part goes to the app's task, its model part to the model's task (one task
//!   when both names hash to it; the event is counted once);
//! - a logged request or response half goes to the task of its name, where it is paired;
//! - a label goes to the task of the model whose prediction it names: a join keyed by
//!   `event_id` remembers which task each prediction went to, and holds a label that comes
//!   before its prediction until the prediction comes;
//! - the stream's event time: before each event it is given, a task catches up with the
//!   newest event time and the watermark of the whole stream ([`Engine::follow`]). Since an
//!   engine's work depends only on the watermark it reaches, not on the steps it took, a task
//!   decides for its targets what one engine fed every event decides for them.
//!
//! The exceptions are limits counted per engine, so per task: `limits.max_targets` and
//! `accuracy.max_pending` apply to each task's share. Evidence's `input_offsets` name how far
//! the input was read when the task decided, as the contract's partition guarantee allows.

use super::*;

/// Something events go into and commands come out of: one engine, or several tasks.
pub trait Decider {
    /// Takes one decoded event. An error (already counted) is an event too far in the future.
    fn ingest(&mut self, ev: &Event<'_>, pos: Position) -> Result<(), BadInput>;
    /// Counts a bad input found by the decoder.
    fn reject(&mut self, bad: &BadInput);
    /// End of input.
    fn finish(&mut self);
    /// Moves the commands decided so far to `out`.
    fn drain_into(&mut self, out: &mut Vec<Command>);
}

impl Decider for Engine {
    fn ingest(&mut self, ev: &Event<'_>, pos: Position) -> Result<(), BadInput> {
        Engine::ingest(self, ev, pos)
    }
    fn reject(&mut self, bad: &BadInput) {
        Engine::reject(self, bad)
    }
    fn finish(&mut self) {
        Engine::finish(self)
    }
    fn drain_into(&mut self, out: &mut Vec<Command>) {
        out.extend(self.drain_commands());
    }
}

/// The order commands of one step of event time come out in (as [`Engine`] sorts them).
fn command_order(c: &Command) -> impl Ord + '_ {
    (c.decided_at, c.target.kind, &c.target.name, &c.target.version, c.command, c.reason)
}

/// A stream's targets split over tasks by name.
#[derive(Debug)]
pub struct Tasks {
    tasks: Vec<Engine>,
    /// Which task each prediction awaiting its label went to; labels that came first.
    routes: LabelJoin<u32>,
    lateness: Millis,
    max_future: Millis,
    /// The whole stream's newest event time, newest time (with idle time) and watermark, as
    /// one engine keeps them.
    newest_event: Option<Millis>,
    max_ts: Option<Millis>,
    watermark: Millis,
    /// The next whole hour at which `routes` drops what is too old (as each task's sweep).
    next_sweep: Millis,
    /// Label events, counted here: a label reaches a task only once its prediction is known.
    labels: u64,
    /// When tasks learn the stream's time.
    follow: Follow,
}

/// When the tasks learn the stream's time: an engine's decisions for events in order do not
/// depend on it (the tests check all three).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Follow {
    /// Before each event given to it, a task catches up with the whole stream.
    Stream,
    /// A task learns the time only from its own events, and at the end: as a task fed by an
    /// internal topic that carries it its own records and little else.
    Own,
    /// Before each event, a task moves on to that event's time, ahead of where one engine
    /// would be; lateness is judged by the stream (as by the stage that reads the input).
    Ahead,
}

impl Tasks {
    /// `n` tasks (at least one) with one config.
    pub fn new(cfg: Config, n: usize) -> Tasks {
        let n = n.max(1);
        let routes = LabelJoin::new(cfg.accuracy.max_pending.saturating_mul(n), cfg.accuracy.max_label_delay.0);
        Tasks {
            lateness: cfg.windows.allowed_lateness.0,
            max_future: cfg.windows.max_future.0,
            tasks: (0..n).map(|_| Engine::new(cfg.clone())).collect(),
            routes,
            newest_event: None,
            max_ts: None,
            watermark: Millis::MIN,
            next_sweep: Millis::MIN,
            labels: 0,
            follow: Follow::Stream,
        }
    }

    /// Tasks that learn the stream's time as `follow` says.
    pub fn following(mut self, follow: Follow) -> Tasks {
        self.follow = follow;
        self
    }

    /// The task that owns the apps and models called `name`.
    pub fn task_of(&self, name: &str) -> usize {
        stages::task_of(name, self.tasks.len())
    }

    /// The tasks.
    pub fn tasks(&self) -> &[Engine] {
        &self.tasks
    }

    /// Registers an input source in every task (evidence names it); returns its index.
    pub fn register_source(&mut self, name: &str) -> u32 {
        let mut idx = 0;
        for t in &mut self.tasks {
            idx = t.register_source(name);
        }
        idx
    }

    /// Counters of all tasks together.
    pub fn counters(&self) -> Counters {
        let mut sum = Counters::default();
        for t in &self.tasks {
            sum.add(t.counters());
        }
        sum.events[3] += self.labels;
        sum
    }

    /// Gives task `k` the event (its `share`), once it caught up with the stream.
    fn give(&mut self, k: usize, ev: &Event<'_>, pos: Position, mut share: Share) {
        let (newest, max_ts, wm) = (self.newest_event, self.max_ts, self.watermark);
        let follow = self.follow;
        let lateness = self.lateness;
        let Some(task) = self.tasks.get_mut(k) else { return };
        match follow {
            Follow::Stream => task.follow(newest, max_ts, wm),
            Follow::Own => {}
            Follow::Ahead => {
                share.late = Some(ev.ts < wm);
                let ts = Some(ev.ts);
                task.follow(newest.max(ts), max_ts.max(ts), wm.max(ev.ts - lateness));
            }
        }
        // The stream's own check below rejected what is too far ahead.
        let _ = task.ingest_share(ev, pos, share);
    }

    /// A label with the time it completes its join, for the task that holds the prediction.
    fn give_label(&mut self, k: usize, id: &str, label: Value, ts: Millis) {
        let (newest, max_ts, wm) = (self.newest_event, self.max_ts, self.watermark);
        let follow = self.follow;
        let Some(task) = self.tasks.get_mut(k) else { return };
        if follow != Follow::Own {
            task.follow(newest, max_ts, wm);
        }
        task.join_label(id, label, ts);
    }

    /// The stream reached event time `ts` (as [`Engine`]'s own watermark follows it).
    fn note_time(&mut self, ts: Millis) {
        if self.newest_event.is_none_or(|m| ts > m) {
            self.newest_event = Some(ts);
        }
        if self.max_ts.is_none_or(|m| ts > m) {
            self.max_ts = Some(ts);
            self.watermark = self.watermark.max(ts - self.lateness);
        }
        self.sweep_routes();
    }

    /// Drops routes too old to be joined at the whole hours the watermark passed, as each
    /// task's sweep drops its pending joins.
    fn sweep_routes(&mut self) {
        if self.next_sweep == Millis::MIN {
            if let Some(first) = self.newest_event {
                self.next_sweep = schedule::hour_after(first);
            }
        }
        while self.next_sweep <= self.watermark {
            self.routes.expire(self.next_sweep);
            self.next_sweep += schedule::SWEEP_EVERY;
        }
    }

    /// Ingests one decoded event into the tasks it concerns.
    pub fn ingest(&mut self, ev: &Event<'_>, pos: Position) -> Result<(), BadInput> {
        if let Some(bad) = too_far_ahead(ev.ts, self.max_ts, self.max_future) {
            self.reject(&bad);
            return Err(bad);
        }
        match (&ev.part, ev.kind) {
            (Some(part), _) => {
                let k = self.task_of(&part.name);
                self.give(k, ev, pos, Share::ALL);
            }
            (None, EventType::Label) => {
                self.labels += 1;
                if let (Some(id), Some(label)) = (&ev.event_id, &ev.label) {
                    if let Some(j) = self.routes.label(id, Value::of(label), ev.ts) {
                        self.give_label(j.target as usize, id, j.label, j.ts);
                    }
                }
            }
            (None, _) => {
                let (parts, model) = stages::split(ev, self.tasks.len());
                for (task, share) in parts.into_iter().flatten() {
                    self.give(task, ev, pos, share);
                }
                if let (Some(m), EventType::Prediction, Some(id), Some(p)) =
                    (model, ev.kind, &ev.event_id, &ev.prediction)
                {
                    let pending = PendingPrediction { target: m as u32, value: Value::of(p), ts: ev.ts };
                    if let Some(j) = self.routes.prediction(id, pending) {
                        self.give_label(m, id, j.label, j.ts);
                    }
                }
            }
        }
        self.note_time(ev.ts);
        Ok(())
    }

    /// Counts a bad input found by the decoder (once, in the first task).
    pub fn reject(&mut self, bad: &BadInput) {
        if let Some(t) = self.tasks.first_mut() {
            t.reject(bad);
        }
    }

    /// Moves the watermark of the whole stream to `wm`, as [`Engine::advance_watermark`].
    pub fn advance_watermark(&mut self, wm: Millis) {
        if wm > self.watermark {
            if self.max_ts.is_none_or(|m| m < wm) {
                self.max_ts = Some(wm);
            }
            self.watermark = wm;
            self.sweep_routes();
        }
        for t in &mut self.tasks {
            t.advance_watermark(wm);
        }
    }

    /// End of input, as [`Engine::finish`]: every task finishes where the whole stream does.
    pub fn finish(&mut self) {
        finish_together(self.tasks.iter_mut(), self.newest_event, self.max_ts, self.watermark);
    }

    /// The commands decided so far, in the order one engine gives them.
    pub fn drain_commands(&mut self) -> Vec<Command> {
        let mut out: Vec<Command> = Vec::new();
        for t in &mut self.tasks {
            out.extend(t.drain_commands());
        }
        out.sort_by(|a, b| command_order(a).cmp(&command_order(b)));
        out
    }
}

/// End of input for engines that share a stream whose newest event time, newest time and
/// watermark are given: each catches up, completes its pairs, and all finish at the latest
/// point any of them would finish at, as one engine fed the whole stream does.
pub fn finish_together<'a>(
    engines: impl Iterator<Item = &'a mut Engine>,
    newest: Option<Millis>,
    max_ts: Option<Millis>,
    wm: Millis,
) {
    let mut engines: Vec<&mut Engine> = engines.collect();
    for t in &mut engines {
        t.follow(newest, max_ts, wm);
        t.finish_pairs();
    }
    let Some(end) = engines.iter().filter_map(|t| t.finish_watermark()).max() else { return };
    for t in &mut engines {
        t.finish_at(end);
    }
}

impl Decider for Tasks {
    fn ingest(&mut self, ev: &Event<'_>, pos: Position) -> Result<(), BadInput> {
        Tasks::ingest(self, ev, pos)
    }
    fn reject(&mut self, bad: &BadInput) {
        Tasks::reject(self, bad)
    }
    fn finish(&mut self) {
        Tasks::finish(self)
    }
    fn drain_into(&mut self, out: &mut Vec<Command>) {
        out.extend(self.drain_commands());
    }
}

impl Counters {
    /// Adds another engine's counts.
    pub fn add(&mut self, o: &Counters) {
        for (a, b) in self.events.iter_mut().zip(o.events) {
            *a += b;
        }
        for (a, b) in self.bad.iter_mut().zip(o.bad) {
            *a += b;
        }
        for (a, b) in self.commands.iter_mut().zip(o.commands) {
            *a += b;
        }
        self.late_events += o.late_events;
        self.late_labels += o.late_labels;
        self.dropped_over_target_limit += o.dropped_over_target_limit;
        self.targets_evicted += o.targets_evicted;
        self.predictions_not_awaited += o.predictions_not_awaited;
        self.drift_type_mismatches += o.drift_type_mismatches;
    }
}

//! Input from the consumer: the poll thread's batches, and the per-partition queues from which
//! the engine thread takes one record at a time in event-time order.
//!
//! The poll thread copies messages out of librdkafka into batches and hands them over a
//! bounded channel; each batch carries the assignment epoch it was polled in, so that nothing
//! fetched before a rebalance is ingested after it. The engine thread files every message of a
//! batch under its partition ([`Inputs`]) and takes records by the rule of [`crate::merge`]:
//! the oldest ready record first, and nothing while an assigned partition that may still
//! deliver older records has none ready. So what the engine sees does not depend on how fast
//! each partition is fetched. A partition that runs far ahead of the one the merge waits for
//! is paused, which bounds the queues.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::{Duration as StdDuration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tracing::{debug, warn};

use super::Ctx;
use crate::engine::Engine;
use crate::event::{BadInput, Decoder, Event, Features};
use crate::fleet::{Formats, RawRecord};
use crate::merge::{pick, Head, Pick};
use crate::time::Millis;

/// Messages polled and not yet filed by the engine thread, at most this many batches (plus
/// librdkafka's own prefetch queue).
pub(super) const IN_FLIGHT_BATCHES: usize = 4;
/// Messages per batch handed from the poll thread to the engine thread, at most.
const BATCH_MESSAGES: usize = 1024;
/// Bytes of keys and payloads per batch, at most (one larger message makes its own batch): with
/// the batches in flight, this bounds the memory between the threads.
const BATCH_BYTES: usize = 1 << 20;
/// A partition with this many queued messages is paused while the merge waits for another.
const PAUSE_AT: usize = 20_000;
/// A paused partition resumes once its queue is down to this many.
const RESUME_AT: usize = PAUSE_AT / 4;
/// Batches kept for queued messages, at most: beyond it, every partition with queued messages
/// is paused while the merge waits (batches that arrive one message at a time, as in a live
/// stream, would otherwise pile up well below [`PAUSE_AT`]).
const MAX_HELD_BATCHES: usize = 256;

/// Polled input, copied out of librdkafka's buffers so the poll thread can go on.
#[derive(Default)]
pub(super) struct Batch {
    /// The assignment epoch the messages were polled in.
    pub(super) epoch: u64,
    /// Keys and payloads, back to back, while the poll thread fills the batch.
    data: Vec<u8>,
    /// Topic names the items refer to by index.
    topics: Vec<String>,
    /// Headers of the messages: name and value byte ranges in `data`.
    headers: Vec<HeaderAt>,
    items: Vec<Polled>,
    /// `data` with one decoding result per message item, in order; each taken when ingested.
    decoded: Option<DecodedBatch>,
    /// Emptied feature lists, on their way back to the poll thread's decoder.
    spares: Vec<Features<'static>>,
}

type Decoded<'a> = Vec<Option<Result<Event<'a>, BadInput>>>;

self_cell::self_cell!(
    /// Keys and payloads with the events decoded from (and borrowing) them.
    struct DecodedBatch {
        owner: Vec<u8>,
        #[covariant]
        dependent: Decoded,
    }
);

/// A header's name and value as byte ranges of a batch's data.
type HeaderAt = ((usize, usize), (usize, usize));

enum Polled {
    Message {
        topic: usize,
        partition: i32,
        offset: i64,
        key: Option<(usize, usize)>,
        payload: (usize, usize),
        /// Range of the batch's `headers`.
        headers: (u32, u32),
        /// The record's timestamp, when it has one.
        timestamp: Option<i64>,
    },
    /// The partition (of one of the input topics: librdkafka does not say which) is read to
    /// its end, for now.
    End(i32),
    Error(KafkaError),
}

impl Batch {
    fn push(&mut self, m: &rdkafka::message::BorrowedMessage<'_>) {
        use rdkafka::Message as _;
        let topic = match self.topics.iter().position(|t| t == m.topic()) {
            Some(i) => i,
            None => {
                self.topics.push(m.topic().to_owned());
                self.topics.len() - 1
            }
        };
        let key = m.key().map(|k| {
            let start = self.data.len();
            self.data.extend_from_slice(k);
            (start, self.data.len())
        });
        let start = self.data.len();
        self.data.extend_from_slice(m.payload().unwrap_or(&[]));
        let payload = (start, self.data.len());
        let first = self.headers.len() as u32;
        if let Some(hs) = m.headers() {
            use rdkafka::message::Headers as _;
            for h in hs.iter() {
                let n = self.data.len();
                self.data.extend_from_slice(h.key.as_bytes());
                let v = self.data.len();
                self.data.extend_from_slice(h.value.unwrap_or(&[]));
                self.headers.push(((n, v), (v, self.data.len())));
            }
        }
        let headers = (first, self.headers.len() as u32);
        let timestamp = m.timestamp().to_millis();
        self.items.push(Polled::Message {
            topic,
            partition: m.partition(),
            offset: m.offset(),
            key,
            payload,
            headers,
            timestamp,
        });
    }

    /// The headers of a message, as text names and byte values (names that are not UTF-8 are
    /// left out).
    fn headers_of<'d>(all: &[HeaderAt], data: &'d [u8], (a, b): (u32, u32)) -> Vec<(&'d str, &'d [u8])> {
        all.get(a as usize..b as usize)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&((n0, n1), (v0, v1))| Some((std::str::from_utf8(&data[n0..n1]).ok()?, &data[v0..v1])))
            .collect()
    }

    /// Decodes every message of the batch, each in its topic's format.
    pub(super) fn decode(&mut self, decoder: &mut Decoder, formats: &Formats) {
        for f in self.spares.drain(..) {
            decoder.give(f);
        }
        let (items, topics, all_headers) = (&self.items, &self.topics, &self.headers);
        let plain = !formats.needs_headers();
        self.decoded = Some(DecodedBatch::new(std::mem::take(&mut self.data), |data| {
            items
                .iter()
                .filter_map(|item| match item {
                    Polled::Message { payload, .. } if plain => Some(Some(decoder.decode(&data[payload.0..payload.1]))),
                    Polled::Message { topic, payload, headers, timestamp, .. } => {
                        let headers = Batch::headers_of(all_headers, data, *headers);
                        let rec = RawRecord {
                            topic: &topics[*topic],
                            headers: &headers,
                            payload: &data[payload.0..payload.1],
                            timestamp: *timestamp,
                        };
                        Some(Some(formats.decode(decoder, rec)))
                    }
                    _ => None,
                })
                .collect()
        }));
    }

    pub(super) fn is_decoded(&self) -> bool {
        self.decoded.is_some()
    }

    /// Empties the batch for reuse, keeping its allocations.
    pub(super) fn clear(&mut self) {
        if let Some(decoded) = self.decoded.take() {
            self.data = decoded.into_owner();
        }
        self.data.clear();
        // A batch that held a very large message does not keep its buffer.
        self.data.shrink_to(2 * BATCH_BYTES);
        self.topics.clear();
        self.headers.clear();
        self.items.clear();
    }
}

/// The poll thread: polls the consumer (which also runs the rebalance callback) and hands
/// batches of copied messages, partition ends and errors to the engine thread, in order.
/// Returns when `stop` is set or the engine thread is gone.
pub(super) fn poll_input(
    consumer: &BaseConsumer<Ctx>,
    full: SyncSender<Batch>,
    spare: Receiver<Batch>,
    queued: &AtomicUsize,
    stop: &AtomicBool,
    formats: &Formats,
) {
    let epoch = &consumer.context().epoch;
    let mut batch = Batch { epoch: epoch.load(Ordering::SeqCst), ..Batch::default() };
    let mut decoder = Decoder::default();
    let mut hand_over = |batch: &mut Batch| -> bool {
        // Decoding is shared: this thread decodes while the engine thread has batches waiting
        // (it is the slower one), else the engine thread decodes what it gets.
        if queued.load(Ordering::Relaxed) > 0 {
            batch.decode(&mut decoder, formats);
        }
        let mut next = spare.try_recv().unwrap_or_default();
        next.epoch = batch.epoch;
        queued.fetch_add(1, Ordering::Relaxed);
        full.send(std::mem::replace(batch, next)).is_ok()
    };
    while !stop.load(Ordering::Relaxed) {
        let polled = match consumer.poll(StdDuration::ZERO) {
            None => {
                // Nothing ready: what is batched goes now, then wait for more.
                if !batch.items.is_empty() && !hand_over(&mut batch) {
                    return;
                }
                consumer.poll(StdDuration::from_millis(50))
            }
            some => some,
        };
        // A rebalance runs inside `poll`: what this batch holds from before it is not ingested
        // (the engine thread resumes each partition after what it did ingest).
        let now = epoch.load(Ordering::SeqCst);
        if now != batch.epoch {
            batch.clear();
            batch.epoch = now;
        }
        let urgent = match polled {
            None => false,
            Some(Ok(m)) => {
                batch.push(&m);
                batch.items.len() >= BATCH_MESSAGES || batch.data.len() >= BATCH_BYTES
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                batch.items.push(Polled::End(p));
                true
            }
            Some(Err(e)) => {
                batch.items.push(Polled::Error(e));
                true
            }
        };
        if urgent && !hand_over(&mut batch) {
            return;
        }
    }
}

/// One record handed to the engine thread.
pub(super) struct Record<'a> {
    pub(super) topic: &'a str,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) key: Option<&'a [u8]>,
    pub(super) payload: &'a [u8],
    /// The record's headers (forwarded with a dead letter).
    pub(super) headers: Vec<(&'a str, &'a [u8])>,
    pub(super) decoded: Result<Event<'a>, BadInput>,
}

/// A message filed under its partition: where it is in which held batch, and its event time
/// (`None` when it could not be decoded).
struct Queued {
    seq: u64,
    item: u32,
    event: u32,
    ts: Option<Millis>,
}

/// An assigned input partition and its queue.
struct Part {
    topic: String,
    partition: i32,
    queue: VecDeque<Queued>,
    /// Read to its end (for now), by the last word from the consumer.
    at_end: bool,
    /// Since when it has been read to its end with nothing queued.
    at_end_since: Option<Instant>,
    /// The newest event time taken from the queue since the partition was assigned (not counting
    /// times the engine rejects as too far ahead).
    newest: Option<Millis>,
    /// When a message last arrived (or the partition was assigned or resumed).
    last_seen: Instant,
    paused: bool,
    /// The offset after the last message queued, or where reading started.
    fetched: Option<i64>,
    /// Quiet for `idle_timeout` without being read to its end: when the broker was last asked
    /// for its end, and whether the merge may pass it by (only when the broker did not say).
    checked: Option<Instant>,
    passable: bool,
}

/// A batch kept until each of its messages is ingested.
struct Held {
    batch: Batch,
    left: usize,
}

/// The engine thread's side of the input: per-partition queues merged by event time.
pub(super) struct Inputs {
    parts: Vec<Part>,
    held: VecDeque<Held>,
    /// Sequence number of `held[0]`.
    first_seq: u64,
    max_future: Millis,
    idle_after: StdDuration,
    /// How long a partition read to its end holds the merge (`kafka.partition_wait`).
    wait_at_end: StdDuration,
    /// Whether the last [`Inputs::drain`] stopped to wait for a partition.
    waiting: bool,
    /// Messages delivered again at an offset already queued or ingested, and dropped.
    pub(super) redelivered: u64,
}

impl Inputs {
    pub(super) fn new(max_future: Millis, idle_after: StdDuration, wait_at_end: StdDuration) -> Inputs {
        Inputs {
            parts: Vec::new(),
            held: VecDeque::new(),
            first_seq: 0,
            max_future,
            idle_after,
            wait_at_end,
            waiting: false,
            redelivered: 0,
        }
    }

    /// Drops everything queued and takes a new assignment (partitions with the offset each
    /// starts at). Returns the batches let go of.
    pub(super) fn reset(
        &mut self,
        assignment: &[(String, i32, Option<i64>)],
        consumer: &BaseConsumer<Ctx>,
    ) -> Vec<Batch> {
        // Partitions this side paused and still assigned fetch again (an assignment does not
        // undo a pause the application asked for).
        let mut resume = TopicPartitionList::new();
        for p in self.parts.iter().filter(|p| p.paused) {
            if assignment.iter().any(|(t, n, _)| *t == p.topic && *n == p.partition) {
                resume.add_partition(&p.topic, p.partition);
            }
        }
        if resume.count() > 0 {
            if let Err(e) = consumer.resume(&resume) {
                warn!("resuming partitions after a rebalance: {e}");
            }
        }
        let now = Instant::now();
        self.parts = assignment
            .iter()
            .map(|(topic, partition, start)| Part {
                topic: topic.clone(),
                partition: *partition,
                queue: VecDeque::new(),
                at_end: false,
                at_end_since: None,
                newest: None,
                last_seen: now,
                paused: false,
                fetched: *start,
                checked: None,
                passable: false,
            })
            .collect();
        self.first_seq += self.held.len() as u64;
        self.waiting = false;
        self.held.drain(..).map(|h| h.batch).collect()
    }

    fn part_of(&mut self, topic: &str, partition: i32, hint: usize) -> usize {
        if self.parts.get(hint).is_some_and(|p| p.partition == partition && p.topic == topic) {
            return hint;
        }
        match self.parts.iter().position(|p| p.partition == partition && p.topic == topic) {
            Some(i) => i,
            None => {
                // Not in the assignment this side knows of (it is about to hear of it).
                self.parts.push(Part {
                    topic: topic.to_owned(),
                    partition,
                    queue: VecDeque::new(),
                    at_end: false,
                    at_end_since: None,
                    newest: None,
                    last_seen: Instant::now(),
                    paused: false,
                    fetched: None,
                    checked: None,
                    passable: false,
                });
                self.parts.len() - 1
            }
        }
    }

    /// Files a decoded batch's messages under their partitions and notes partition ends.
    /// Returns the consumer errors it held, and the batch back if it holds nothing to ingest.
    pub(super) fn push(
        &mut self,
        mut batch: Batch,
        consumer: &BaseConsumer<Ctx>,
        now: Instant,
    ) -> (Vec<KafkaError>, Option<Batch>) {
        let seq = self.first_seq + self.held.len() as u64;
        let mut errors = Vec::new();
        let mut left = 0usize;
        let mut hint = 0usize;
        let mut event = 0u32;
        let times: Vec<Option<Millis>> = match batch.decoded.as_ref() {
            Some(d) => {
                d.borrow_dependent().iter().map(|e| e.as_ref().and_then(|r| r.as_ref().ok()).map(|e| e.ts)).collect()
            }
            None => Vec::new(),
        };
        for (idx, item) in batch.items.iter_mut().enumerate() {
            match item {
                Polled::Message { topic, partition, offset, .. } => {
                    let i = self.part_of(&batch.topics[*topic], *partition, hint);
                    hint = i;
                    let p = &mut self.parts[i];
                    if p.fetched.is_some_and(|f| *offset < f) {
                        // Delivered again (the client may fetch a message a second time when a
                        // partition is paused or resumed while it is being polled): it is queued
                        // or ingested already.
                        self.redelivered += 1;
                        debug!("{}/{}: offset {offset} delivered again, dropped", p.topic, p.partition);
                        event += 1;
                        continue;
                    }
                    let ts = times.get(event as usize).copied().flatten();
                    p.queue.push_back(Queued { seq, item: idx as u32, event, ts });
                    p.at_end = false;
                    p.at_end_since = None;
                    p.last_seen = now;
                    p.fetched = Some(*offset + 1);
                    p.checked = None;
                    p.passable = false;
                    event += 1;
                    left += 1;
                }
                Polled::End(n) => self.note_end(*n, consumer),
                Polled::Error(e) => errors.push(e.clone()),
            }
        }
        if left == 0 {
            return (errors, Some(batch));
        }
        self.held.push_back(Held { batch, left });
        (errors, None)
    }

    /// A partition number is at its end. With several input topics, librdkafka does not say
    /// whose: each candidate is checked against the broker's high watermark.
    fn note_end(&mut self, n: i32, consumer: &BaseConsumer<Ctx>) {
        let candidates: Vec<usize> = (0..self.parts.len()).filter(|&i| self.parts[i].partition == n).collect();
        if let [i] = candidates[..] {
            self.parts[i].at_end = true;
            return;
        }
        for i in candidates {
            let p = &mut self.parts[i];
            match consumer.fetch_watermarks(&p.topic, n, StdDuration::from_secs(5)) {
                Ok((low, high)) => p.at_end = p.fetched.unwrap_or(low) >= high,
                Err(e) => debug!("watermarks of {}/{n}: {e}", p.topic),
            }
        }
    }

    /// Every assigned partition is read to its end and everything read is ingested.
    pub(super) fn caught_up(&self) -> bool {
        !self.parts.is_empty() && self.parts.iter().all(|p| p.at_end && p.queue.is_empty())
    }

    /// Ingests records in merged order while the merge allows, calling `ingest` with each;
    /// returns the number ingested and appends the batches fully ingested to `freed`.
    pub(super) fn drain<E>(
        &mut self,
        engine: &mut Engine,
        now: Instant,
        freed: &mut Vec<Batch>,
        mut ingest: impl FnMut(&mut Engine, Record<'_>) -> Result<Option<Features<'static>>, E>,
    ) -> Result<usize, E> {
        let mut n = 0;
        self.waiting = false;
        loop {
            let (idle_after, wait_at_end) = (self.idle_after, self.wait_at_end);
            let heads = self.parts.iter_mut().map(|p| match p.queue.front() {
                Some(q) => Head::Ready(q.ts),
                None if now.duration_since(p.last_seen) >= idle_after && (p.at_end || p.passable) => Head::Done,
                None if p.at_end => {
                    // Read to its end is not enough at once: a moment later the partition may
                    // receive records older than the other partitions' (see `crate::merge`).
                    let since = *p.at_end_since.get_or_insert(now);
                    if now.duration_since(since) >= wait_at_end {
                        Head::Done
                    } else {
                        Head::Waiting(p.newest)
                    }
                }
                None => Head::Waiting(p.newest),
            });
            let i = match pick(heads, engine.max_event_time(), self.max_future) {
                Pick::Input(i) => i,
                Pick::Wait => {
                    self.waiting = true;
                    break;
                }
                Pick::Empty => break,
            };
            let part = &mut self.parts[i];
            let Some(q) = part.queue.pop_front() else { break };
            let too_far = engine.max_event_time().map_or(Millis::MAX, |n| n.saturating_add(self.max_future));
            if q.ts.is_some_and(|ts| ts <= too_far) {
                part.newest = part.newest.max(q.ts);
            }
            let slot = (q.seq - self.first_seq) as usize;
            let Some(held) = self.held.get_mut(slot) else { break };
            let batch = &mut held.batch;
            let Polled::Message { topic, partition, offset, key, payload, headers, .. } = batch.items[q.item as usize]
            else {
                break;
            };
            let topic = batch.topics[topic].as_str();
            let all_headers = &batch.headers;
            let Some(decoded) = batch.decoded.as_mut() else { break };
            let spare = decoded.with_dependent_mut(|data, events| {
                let Some(decoded) = events.get_mut(q.event as usize).and_then(Option::take) else {
                    return Ok(None);
                };
                let record = Record {
                    topic,
                    partition,
                    offset,
                    key: key.map(|(a, b)| &data[a..b]),
                    payload: &data[payload.0..payload.1],
                    headers: Batch::headers_of(all_headers, data, headers),
                    decoded,
                };
                ingest(engine, record)
            })?;
            batch.spares.extend(spare);
            held.left -= 1;
            n += 1;
            while self.held.front().is_some_and(|h| h.left == 0) {
                if let Some(h) = self.held.pop_front() {
                    freed.push(h.batch);
                }
                self.first_seq += 1;
            }
        }
        Ok(n)
    }

    /// Asks the broker about partitions quiet for `idle_timeout` and not read to their end
    /// (once per `idle_timeout` each). One with records left to fetch holds the merge however
    /// long fetching takes (a slow fetch must not make its records late; Kafka Streams waits on
    /// a partition with known lag the same way); one read to its end is marked so (its end may
    /// have gone unreported); one the broker does not answer for is passed by, with a warning.
    pub(super) fn check_quiet(&mut self, consumer: &BaseConsumer<Ctx>, now: Instant) {
        let idle_after = self.idle_after;
        for p in &mut self.parts {
            let quiet = now.duration_since(p.last_seen);
            if !p.queue.is_empty() || p.at_end || p.passable || quiet < idle_after {
                continue;
            }
            if p.checked.is_some_and(|c| now.duration_since(c) < idle_after) {
                continue;
            }
            p.checked = Some(now);
            match consumer.fetch_watermarks(&p.topic, p.partition, StdDuration::from_secs(2)) {
                Ok((low, high)) => {
                    let at = p.fetched.unwrap_or(low);
                    if at >= high {
                        p.at_end = true;
                    } else {
                        warn!(
                            "{}/{}: {} records not fetched after {:.1}s without input; the merge waits for them",
                            p.topic,
                            p.partition,
                            high - at,
                            quiet.as_secs_f64()
                        );
                    }
                }
                Err(e) => {
                    warn!(
                        "{}/{}: no input for {:.1}s and its end unknown ({e}); passed by, its next records may be late",
                        p.topic,
                        p.partition,
                        quiet.as_secs_f64()
                    );
                    p.passable = true;
                }
            }
        }
    }

    /// Pauses partitions that run ahead while the merge waits for another, and resumes them
    /// once their queues are short again.
    pub(super) fn flow_control(&mut self, consumer: &BaseConsumer<Ctx>, now: Instant) {
        let crowded = self.held.len() >= MAX_HELD_BATCHES;
        let (mut pause, mut resume) = (TopicPartitionList::new(), TopicPartitionList::new());
        for p in &mut self.parts {
            let len = p.queue.len();
            if !p.paused && self.waiting && (len >= PAUSE_AT || (crowded && len > 0)) {
                p.paused = true;
                pause.add_partition(&p.topic, p.partition);
            } else if p.paused && (len == 0 || (len <= RESUME_AT && self.held.len() <= MAX_HELD_BATCHES / 2)) {
                // An empty partition is what the merge may wait for: it always fetches again.
                p.paused = false;
                // Fetching starts again now: the partition is not idle while it does.
                p.last_seen = now;
                resume.add_partition(&p.topic, p.partition);
            }
        }
        if pause.count() > 0 {
            debug!("pausing {} partitions running ahead ({} batches held)", pause.count(), self.held.len());
            if let Err(e) = consumer.pause(&pause) {
                warn!("pausing partitions: {e}");
            }
        }
        if resume.count() > 0 {
            debug!("resuming {} partitions", resume.count());
            if let Err(e) = consumer.resume(&resume) {
                warn!("resuming partitions: {e}");
            }
        }
    }

    /// Messages queued and batches held, for the logs and metrics.
    pub(super) fn queued(&self) -> (usize, usize) {
        (self.parts.iter().map(|p| p.queue.len()).sum(), self.held.len())
    }
}

/// The start offset of an assigned partition, when it is a plain offset.
pub(super) fn start_offset(o: Offset) -> Option<i64> {
    match o {
        Offset::Offset(n) => Some(n),
        _ => None,
    }
}

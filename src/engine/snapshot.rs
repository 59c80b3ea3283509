//! Snapshots of engine state as keyed records, for a compacted changelog topic.
//!
//! The state is split by app or model (`group/{kind}/{name}`: the group and all its versions'
//! windows, tests and latches), the pending label joins, and one small `meta` record
//! (watermark, counters, input offsets, the last decisions, where the join log stands). Only
//! groups that changed since the last snapshot are written, and a forgotten group is written
//! as a tombstone, so the changelog stays as large as the live state. Keying by app/model means
//! that when several instances own different input partitions later, each can restore just the
//! groups it owns.
//!
//! The pending label joins change by the thousands every second, so they are stored as a base
//! plus a log:
//!
//! - the base, `joins/00` … `joins/63`: every pending join, in 64 shards by id hash, all 64
//!   written together;
//! - the log, `joinlog/{seq:012}`: one record per ≤ 12,000 changed ids (< 1 MB), each a CBOR
//!   array of `[id, prediction, label]` with the id's current prediction
//!   `[[target, generation], value, ts]` and label `[value, ts]`, `null` when none waits (both
//!   `null`: the id is gone). `seq` increases by one per record; the next one is kept in `meta`.
//!
//! A snapshot appends the ids changed since the previous one to the log. Once the log written
//! since the base would exceed the base's size (at least 256 KiB), or after a change to many
//! entries at once, it writes a new base instead and a tombstone for every log record since the
//! previous base, so at most about twice the logged bytes are written in all and the topic stays
//! about twice the size of the pending joins. Restoring loads the base, applies the log records
//! in `seq` order, then rebuilds the eviction order, which is a function of the pending entries:
//! the restored join equals the one written. A changelog holding only `joins/NN` (format 1,
//! before the log) restores as a base.

use serde::{Deserialize, Serialize};

use super::*;
use crate::labels::{JoinChanges, JoinEntry, JoinShard};

/// Key of the record holding engine-wide state.
pub const META_KEY: &str = "meta";
/// Key prefix of the shards of the base copy of the pending label joins.
pub const JOINS_PREFIX: &str = "joins/";
/// Key prefix of the log of changes to the pending label joins since the base.
pub const JOINLOG_PREFIX: &str = "joinlog/";
/// Key prefix of the request/response halves waiting for each other (fleet inputs), one CBOR
/// blob cut into records of at most [`PAIRING_CHUNK`] bytes.
pub const PAIRING_PREFIX: &str = "pairing/";
const PAIRING_CHUNK: usize = 512 * 1024;
/// Decisions kept in the `meta` record (the in-memory log may hold more).
const KEPT_DECISIONS: usize = 100;
/// Changed ids per `joinlog` record: at most ~75 bytes each, so a record stays under 1 MB.
const JOINLOG_ENTRIES: usize = 12_000;
/// The log may always grow to this many bytes before a new base is written.
const MIN_REBASE_BYTES: u64 = 256 * 1024;
/// Format of the records this build writes.
pub const FORMAT: u32 = 2;
/// Oldest format this build reads (format 1 has no join log).
pub const OLDEST_FORMAT: u32 = 1;

/// A record that cannot be restored.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Corrupt or from an incompatible build.
    #[error("state record `{key}` cannot be decoded: {reason}")]
    Decode {
        /// Record key.
        key: String,
        /// Decoder message.
        reason: String,
    },
    /// Written by a newer or older format.
    #[error("state record `{key}` has format {found}; this driftwatch reads formats {OLDEST_FORMAT} to {FORMAT} (start with a new changelog topic)")]
    Format {
        /// Record key.
        key: String,
        /// Format found.
        found: u32,
    },
}

fn check_format(key: String, found: u32) -> Result<(), SnapshotError> {
    if (OLDEST_FORMAT..=FORMAT).contains(&found) {
        Ok(())
    } else {
        Err(SnapshotError::Format { key, found })
    }
}

/// Where the stored copy of the pending label joins stands: which log records follow the
/// base, and how large both are.
#[derive(Debug, Default)]
pub(crate) struct JoinLog {
    /// `seq` of the next log record.
    next_seq: u64,
    /// `seq` of the first log record written after the current base; older ones are stale.
    base_seq: u64,
    /// Log records stored since the previous base, to delete with the next one.
    stored: Vec<u64>,
    /// Bytes of log records written since the current base.
    log_bytes: u64,
    /// Bytes of the current base.
    base_bytes: u64,
}

/// One changed id as stored: `(id, [target, value, ts], [value, ts])`.
type EntryRecord<T> = (u64, Option<(T, Value, Millis)>, Option<(Value, Millis)>);

impl JoinLog {
    /// `seq` of the next log record, and of the first one after the current base: what must
    /// be stored beside the records to restore them.
    pub(crate) fn position(&self) -> (u64, u64) {
        (self.next_seq, self.base_seq)
    }

    /// Appends to `out` the records storing what changed in `joins` since the last call: log
    /// records, or a new base and tombstones for the log records it replaces.
    pub(crate) fn write<T: Copy + Serialize>(
        &mut self,
        joins: &mut LabelJoin<T>,
        out: &mut Vec<(String, Option<Vec<u8>>)>,
    ) {
        let logged = match joins.take_changes() {
            JoinChanges::All => None,
            JoinChanges::Changed(changed) if changed.is_empty() => return,
            JoinChanges::Changed(changed) => {
                let records: Vec<Vec<u8>> = changed
                    .chunks(JOINLOG_ENTRIES)
                    .map(|chunk| {
                        let rec: Vec<EntryRecord<T>> = chunk
                            .iter()
                            .map(|e| (e.id, e.prediction.map(|p| (p.target, p.value, p.ts)), e.label))
                            .collect();
                        encode(&rec)
                    })
                    .collect();
                let bytes: u64 = records.iter().map(|r| r.len() as u64).sum();
                // Past the base's size, a new base is cheaper than the log it replaces.
                (self.log_bytes + bytes <= self.base_bytes.max(MIN_REBASE_BYTES)).then_some((records, bytes))
            }
        };
        match logged {
            Some((records, bytes)) => {
                for rec in records {
                    out.push((joinlog_key(self.next_seq), Some(rec)));
                    self.stored.push(self.next_seq);
                    self.next_seq += 1;
                }
                self.log_bytes += bytes;
            }
            None => {
                let mut bytes = 0;
                for (shard, contents) in joins.shards().iter().enumerate() {
                    let rec = encode(contents);
                    bytes += rec.len() as u64;
                    out.push((format!("{JOINS_PREFIX}{shard:02}"), Some(rec)));
                }
                out.extend(self.stored.drain(..).map(|seq| (joinlog_key(seq), None)));
                self.base_seq = self.next_seq;
                self.base_bytes = bytes;
                self.log_bytes = 0;
            }
        }
    }
}

/// Pending label joins being restored from `joins/NN` and `joinlog/…` records, which may come
/// in any order and before the position stored beside them.
pub(crate) struct JoinRestore<T> {
    shards: Vec<(usize, JoinShard<T>)>,
    logged: Vec<(u64, usize, Vec<EntryRecord<T>>)>,
}

impl<T: Copy + serde::de::DeserializeOwned> JoinRestore<T> {
    pub(crate) fn new() -> JoinRestore<T> {
        JoinRestore { shards: Vec::new(), logged: Vec::new() }
    }

    /// Takes the record if it stores pending joins (`Ok(false)`: some other record).
    pub(crate) fn offer(&mut self, key: &str, bytes: &[u8]) -> Result<bool, SnapshotError> {
        if key.starts_with(JOINS_PREFIX) {
            self.shards.push((bytes.len(), decode(key, bytes)?));
        } else if let Some(seq) = key.strip_prefix(JOINLOG_PREFIX) {
            let Ok(seq) = seq.parse::<u64>() else {
                return Err(SnapshotError::Decode {
                    key: key.into(),
                    reason: "no sequence number after `joinlog/`".into(),
                });
            };
            self.logged.push((seq, bytes.len(), decode(key, bytes)?));
        } else {
            return Ok(false);
        }
        Ok(true)
    }

    /// Loads the base into `joins`, applies the log records after it in `seq` order, and
    /// rebuilds the eviction orders. `position` is what [`JoinLog::position`] gave when they
    /// were written.
    pub(crate) fn finish(mut self, joins: &mut LabelJoin<T>, position: (u64, u64)) -> JoinLog {
        let (next_seq, base_seq) = position;
        let mut log = JoinLog { next_seq, base_seq, ..JoinLog::default() };
        for (bytes, shard) in self.shards {
            log.base_bytes += bytes as u64;
            joins.restore_shard(shard);
        }
        self.logged.sort_unstable_by_key(|r| r.0);
        for (seq, bytes, entries) in self.logged {
            log.stored.push(seq);
            log.next_seq = log.next_seq.max(seq + 1);
            // Records from before the base (left over from an interrupted at-least-once
            // snapshot) are already in it.
            if seq < log.base_seq {
                continue;
            }
            log.log_bytes += bytes as u64;
            for (id, prediction, label) in entries {
                let prediction = prediction.map(|(target, value, ts)| PendingPrediction { target, value, ts });
                joins.restore_entry(JoinEntry { id, prediction, label });
            }
        }
        joins.restored();
        log
    }
}

fn joinlog_key(seq: u64) -> String {
    format!("{JOINLOG_PREFIX}{seq:012}")
}

#[derive(Serialize)]
struct MetaOut<'a> {
    format: u32,
    watermark: Millis,
    max_ts: Option<Millis>,
    newest_event: Option<Millis>,
    next_gen: u32,
    next_sweep: Millis,
    counters: &'a Counters,
    join_counters: crate::labels::JoinCounters,
    sources: &'a [String],
    offsets: &'a [u64],
    decisions: Vec<String>,
    join_log_next: u64,
    join_log_base: u64,
    pairing_chunks: usize,
}

#[derive(Deserialize)]
struct MetaIn {
    format: u32,
    watermark: Millis,
    max_ts: Option<Millis>,
    #[serde(default)]
    newest_event: Option<Millis>,
    next_gen: u32,
    next_sweep: Millis,
    counters: Counters,
    join_counters: crate::labels::JoinCounters,
    sources: Vec<String>,
    offsets: Vec<u64>,
    decisions: Vec<String>,
    #[serde(default)]
    join_log_next: u64,
    #[serde(default)]
    join_log_base: u64,
    #[serde(default)]
    pairing_chunks: usize,
}

#[derive(Serialize)]
struct GroupOut<'a> {
    format: u32,
    group: &'a Group,
    targets: Vec<(TargetId, &'a Target)>,
}

#[derive(Deserialize)]
struct GroupIn {
    format: u32,
    group: Group,
    targets: Vec<(TargetId, Target)>,
}

/// A stored value in the changelog's encoding (CBOR).
pub fn encode_value<T: Serialize>(v: &T) -> Vec<u8> {
    encode(v)
}

/// Reads a stored value written by [`encode_value`]; `key` names it in the error.
pub fn decode_value<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, SnapshotError> {
    decode(key, bytes)
}

fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing CBOR into a Vec cannot fail for these plain data types.
    let _ = ciborium::into_writer(v, &mut out);
    out
}

fn decode<T: for<'de> Deserialize<'de>>(key: &str, bytes: &[u8]) -> Result<T, SnapshotError> {
    ciborium::from_reader(bytes).map_err(|e| SnapshotError::Decode { key: key.to_owned(), reason: e.to_string() })
}

/// The changelog key of an app's or model's state.
pub fn group_key(kind: Kind, name: &str) -> String {
    format!("group/{}/{}", kind.as_str(), name)
}

impl Engine {
    /// Records that changed since the last call: every changed group (a tombstone, `None`, for
    /// a forgotten one) and the `meta` record. Writing them all, in order, to a compacted topic
    /// keeps a restorable copy of the state.
    pub fn snapshot_changes(&mut self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut out: Vec<(String, Option<Vec<u8>>)> =
            std::mem::take(&mut self.removed_groups).into_iter().map(|k| (k, None)).collect();
        let dirty: Vec<u32> = self
            .groups
            .iter()
            .enumerate()
            .filter_map(|(i, g)| g.as_ref().filter(|g| g.dirty).map(|_| i as u32))
            .collect();
        if !dirty.is_empty() {
            // Frozen groups are written as they were before they froze.
            let frozen: Vec<(u32, Vec<(TargetId, Target)>)> = dirty
                .iter()
                .filter(|&&g| self.groups[g as usize].as_ref().is_some_and(|g| g.frozen.is_some()))
                .map(|&g| (g, self.frozen_targets(g)))
                .collect();
            let mut by_group: FxHashMap<u32, Vec<(TargetId, &Target)>> = FxHashMap::default();
            for (i, t) in self.targets.iter().enumerate() {
                if let Some(t) = t {
                    by_group.entry(t.group).or_default().push((i as TargetId, &**t));
                }
            }
            for (g, targets) in &frozen {
                by_group.entry(*g).or_default().extend(targets.iter().map(|(id, t)| (*id, t)));
            }
            for &g in &dirty {
                let Some(group) = targets::issued(&self.groups, g) else { continue };
                let rec = GroupOut { format: FORMAT, group, targets: by_group.remove(&g).unwrap_or_default() };
                out.push((group_key(group.kind, &group.name), Some(encode(&rec))));
            }
            for g in dirty {
                if let Some(group) = targets::issued_mut(&mut self.groups, g) {
                    group.dirty = false;
                }
            }
        }
        self.snapshot_joins(&mut out);
        self.snapshot_pairing(&mut out);
        let meta = MetaOut {
            format: FORMAT,
            watermark: self.watermark,
            max_ts: self.max_ts,
            newest_event: self.newest_event,
            next_gen: self.next_gen,
            next_sweep: self.next_sweep,
            counters: &self.counters,
            join_counters: self.joins.counters,
            sources: &self.sources,
            offsets: &self.offsets,
            decisions: self.decisions.iter().rev().take(KEPT_DECISIONS).rev().map(Command::to_json).collect(),
            join_log_next: self.join_log.next_seq,
            join_log_base: self.join_log.base_seq,
            pairing_chunks: self.pairing_chunks,
        };
        out.push((META_KEY.to_owned(), Some(encode(&meta))));
        out
    }

    /// The waiting request/response halves, when they changed: the whole set, cut into
    /// records, and tombstones for the records the previous copy had beyond them.
    fn snapshot_pairing(&mut self, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        if !self.pairing.dirty {
            return;
        }
        self.pairing.dirty = false;
        let blob = encode(&self.pairing);
        let chunks: Vec<&[u8]> = blob.chunks(PAIRING_CHUNK).collect();
        for (i, c) in chunks.iter().enumerate() {
            out.push((format!("{PAIRING_PREFIX}{i:04}"), Some(c.to_vec())));
        }
        for i in chunks.len()..self.pairing_chunks {
            out.push((format!("{PAIRING_PREFIX}{i:04}"), None));
        }
        self.pairing_chunks = chunks.len();
    }

    /// The pending label joins changed since the last snapshot.
    fn snapshot_joins(&mut self, out: &mut Vec<(String, Option<Vec<u8>>)>) {
        self.join_log.write(&mut self.joins, out);
    }

    /// Marks every group changed, so that the next [`Engine::snapshot_changes`] writes all state.
    pub fn mark_all_changed(&mut self) {
        self.pairing.dirty = true;
        for g in self.groups.iter_mut().flatten() {
            g.dirty = true;
        }
    }

    /// Rebuilds an engine from the latest record of each key (tombstones already dropped).
    pub fn restore(cfg: Config, records: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(cfg);
        let mut groups: Vec<(String, GroupIn)> = Vec::new();
        let mut joins = JoinRestore::new();
        let mut join_position = (0, 0);
        let mut pairing: Vec<(usize, Vec<u8>)> = Vec::new();
        for (key, bytes) in records {
            if key == META_KEY {
                let m: MetaIn = decode(&key, &bytes)?;
                check_format(key.clone(), m.format)?;
                e.watermark = m.watermark;
                e.max_ts = m.max_ts;
                e.newest_event = m.newest_event.or(m.max_ts);
                e.next_gen = m.next_gen;
                // Sweeps fall on whole hours of event time (a changelog written before they did
                // continues from the next one).
                e.next_sweep = match m.next_sweep {
                    Millis::MIN => Millis::MIN,
                    n if n.rem_euclid(schedule::SWEEP_EVERY) == 0 => n,
                    n => schedule::hour_after(n),
                };
                e.counters = m.counters;
                e.joins.counters = m.join_counters;
                e.sources = m.sources;
                e.offsets = m.offsets;
                e.decisions = m
                    .decisions
                    .iter()
                    .enumerate()
                    .map(|(i, d)| {
                        serde_json::from_str(d).map_err(|err| SnapshotError::Decode {
                            key: key.clone(),
                            reason: format!("decision {i} of the decision log: {err}"),
                        })
                    })
                    .collect::<Result<_, _>>()?;
                join_position = (m.join_log_next, m.join_log_base);
                e.pairing_chunks = m.pairing_chunks;
            } else if let Some(i) = key.strip_prefix(PAIRING_PREFIX) {
                let Ok(i) = i.parse::<usize>() else {
                    return Err(SnapshotError::Decode { key, reason: "no chunk number after `pairing/`".into() });
                };
                pairing.push((i, bytes));
            } else if !joins.offer(&key, &bytes)? && key.starts_with("group/") {
                let g: GroupIn = decode(&key, &bytes)?;
                check_format(key.clone(), g.format)?;
                groups.push((key, g));
            }
        }
        pairing.sort_unstable_by_key(|c| c.0);
        let blob: Vec<u8> =
            pairing.into_iter().take_while(|(i, _)| *i < e.pairing_chunks).flat_map(|(_, b)| b).collect();
        if !blob.is_empty() {
            e.pairing = decode(&format!("{PAIRING_PREFIX}*"), &blob)?;
        }
        e.join_log = joins.finish(&mut e.joins, join_position);
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, rec) in groups {
            let gid = e.groups.len() as u32;
            let mut group = rec.group;
            group.live = rec.targets.len();
            group.dirty = false;
            for p in &group.pending {
                e.tick_queue.insert(p.sec, gid);
            }
            e.group_index.insert((group.kind, Box::from(&*group.name)), gid);
            for (id, mut t) in rec.targets {
                t.group = gid;
                let slot = id as usize;
                if e.targets.len() <= slot {
                    e.targets.resize_with(slot + 1, || None);
                }
                e.index.insert(super::targets::target_key(t.kind, &t.name, &t.version), id);
                if let Some(w) = t.wake {
                    e.wake_queue.insert((w, id));
                }
                e.targets[slot] = Some(Box::new(t));
            }
            e.groups.push(Some(group));
        }
        e.free = e.targets.iter().enumerate().filter(|(_, t)| t.is_none()).map(|(i, _)| i as TargetId).collect();
        Ok(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Decoder;

    /// Logged request/response halves of a canary (`canary`, model_version `v2`) failing 5% of
    /// requests against 0.2% on `default` (`v1`): (time, part), in time order.
    fn inference_parts(seed: u64) -> Vec<(Millis, crate::fleet::Part)> {
        use crate::fleet::{Output, Part, Role, Value as V};
        use rand::{Rng, SeedableRng};
        let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
        let mut parts = Vec::new();
        let mut t = 1_764_000_000_000i64;
        for n in 0..30_000 {
            t += rng.gen_range(20..80);
            let canary = n > 6_000 && rng.gen_bool(0.2);
            let (route, version, fail) = if canary { ("canary", "v2", 0.05) } else { ("default", "v1", 0.002) };
            let id = format!("r{n}");
            let part = |role, rows, outputs, mv: Option<&str>| Part {
                role,
                id: id.clone(),
                name: "ns/isvc".into(),
                route: route.into(),
                model_version: mv.map(str::to_owned),
                rows,
                outputs,
            };
            parts.push((
                t,
                part(Role::Request, vec![vec![("x".into(), V::Num(rng.gen_range(0.0..1.0)))]], vec![], None),
            ));
            if !rng.gen_bool(fail) {
                let r = t + rng.gen_range(1..60);
                parts.push((r, part(Role::Response, vec![], vec![Some(Output::Num(0.5))], Some(version))));
            }
        }
        parts.sort_by_key(|p| p.0);
        parts
    }

    fn feed_parts(e: &mut Engine, parts: &[(Millis, crate::fleet::Part)]) -> Vec<Command> {
        let mut out = Vec::new();
        for (i, (ts, part)) in parts.iter().enumerate() {
            let ev = crate::event::Event {
                kind: crate::event::EventType::Inference,
                ts: *ts,
                event_id: None,
                app: None,
                model: None,
                latency_ms: None,
                features: Vec::new(),
                prediction: None,
                label: None,
                error_kind: None,
                part: Some(Box::new(part.clone())),
            };
            let _ = e.ingest(&ev, Position { source: 0, offset: i as u64 });
            out.extend(e.drain_commands());
        }
        out
    }

    #[test]
    fn requests_waiting_for_their_response_survive_a_restore() {
        let parts = inference_parts(3);
        let mut whole = Engine::new(Config::default());
        whole.register_source("in");
        let mut expected = feed_parts(&mut whole, &parts);
        whole.finish();
        expected.extend(whole.drain_commands());
        assert!(
            expected.iter().any(|c| c.command == CommandKind::Rollback && c.target.version == "v2"),
            "the failing canary is rolled back: {expected:?}"
        );
        let mut store: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut engine = Engine::new(Config::default());
        engine.register_source("in");
        let mut got = Vec::new();
        let cuts: Vec<usize> = (0..=23).map(|i| i * parts.len() / 23).collect();
        let mut waiting_at_cuts = 0;
        for w in cuts.windows(2) {
            got.extend(feed_parts(&mut engine, &parts[w[0]..w[1]]));
            for (k, v) in engine.snapshot_changes() {
                match v {
                    Some(v) => store.insert(k, v),
                    None => store.remove(&k),
                };
            }
            let restored = Engine::restore(Config::default(), store.clone()).expect("restore");
            assert_eq!(restored.pairs_waiting(), engine.pairs_waiting(), "after part {}", w[1]);
            assert_eq!(restored.pair_counters(), engine.pair_counters());
            waiting_at_cuts += engine.pairs_waiting();
            engine = restored;
        }
        assert!(waiting_at_cuts > 0, "no cut fell between a request and its response");
        engine.finish();
        got.extend(engine.drain_commands());
        let strip = |v: &[Command]| v.iter().map(|c| (c.command_id.clone(), c.decided_at)).collect::<Vec<_>>();
        assert_eq!(strip(&got), strip(&expected));
        assert_eq!(engine.pair_counters(), whole.pair_counters());
        assert_eq!(engine.counters().events, whole.counters().events);
        assert!(whole.pair_counters().no_response > 100);
    }

    fn feed(e: &mut Engine, lines: &[Vec<u8>]) -> Vec<Command> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Ok(ev) = d.decode(l) {
                let _ = e.ingest(&ev, Position { source: 0, offset: i as u64 });
                d.recycle(ev);
            }
            out.extend(e.drain_commands());
        }
        out
    }

    #[test]
    fn restored_engine_decides_exactly_like_the_original() {
        let mut buf = Vec::new();
        crate::sim::write_scenario("mixed", 4, 0.5, Some(60 * 60_000), &mut buf).expect("simulate");
        let lines: Vec<Vec<u8>> = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec).collect();
        let mut whole = Engine::new(Config::default());
        whole.register_source("in");
        let mut expected = feed(&mut whole, &lines);
        whole.finish();
        expected.extend(whole.drain_commands());
        assert!(expected.len() >= 2);

        // Cut 16 times, keeping only the latest record per key, as a compacted topic does.
        let mut store: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut engine = Engine::new(Config::default());
        engine.register_source("in");
        let mut got = Vec::new();
        let cuts: Vec<usize> = (0..=16).map(|i| i * lines.len() / 16).collect();
        let mut logged = 0;
        for w in cuts.windows(2) {
            got.extend(feed(&mut engine, &lines[w[0]..w[1]]));
            for (k, v) in engine.snapshot_changes() {
                logged += usize::from(k.starts_with(JOINLOG_PREFIX) && v.is_some());
                match v {
                    Some(v) => store.insert(k, v),
                    None => store.remove(&k),
                };
            }
            let restored = Engine::restore(Config::default(), store.clone()).expect("restore");
            assert!(restored.joins.same_pending(&engine.joins), "pending joins differ after line {}", w[1]);
            engine = restored;
        }
        assert!(logged > 0, "the pending joins were only ever written in full");
        engine.finish();
        got.extend(engine.drain_commands());
        let strip = |v: &[Command]| v.iter().map(|c| (c.command_id.clone(), c.decided_at)).collect::<Vec<_>>();
        assert_eq!(strip(&got), strip(&expected));
        assert_eq!(engine.counters().events, whole.counters().events);
    }

    #[test]
    fn corrupt_records_are_named() {
        let err = Engine::restore(Config::default(), [("group/app/x".to_owned(), vec![1, 2, 3])]).unwrap_err();
        assert!(err.to_string().contains("group/app/x"), "{err}");
        let err = Engine::restore(Config::default(), [("joinlog/x".to_owned(), vec![0x80])]).unwrap_err();
        assert!(err.to_string().contains("joinlog/x"), "{err}");
        let err = Engine::restore(Config::default(), [("joinlog/000000000001".to_owned(), vec![1, 2])]).unwrap_err();
        assert!(err.to_string().contains("joinlog/000000000001"), "{err}");
    }

    type Store = std::collections::BTreeMap<String, Vec<u8>>;

    /// Writes records to a model of a compacted topic (the latest value per key; a tombstone
    /// deletes the key); returns the bytes written.
    fn apply(store: &mut Store, records: Vec<(String, Option<Vec<u8>>)>) -> usize {
        let mut bytes = 0;
        for (k, v) in records {
            bytes += k.len() + v.as_ref().map_or(0, Vec::len);
            match v {
                Some(v) => {
                    if k.starts_with(JOINLOG_PREFIX) {
                        assert!(v.len() < 1 << 20, "{k} has {} bytes", v.len());
                    }
                    store.insert(k, v)
                }
                None => store.remove(&k),
            };
        }
        bytes
    }

    fn feed_from(e: &mut Engine, lines: &[String], first: usize) -> Vec<Command> {
        let mut d = Decoder::default();
        let mut out = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            if let Ok(ev) = d.decode(l.as_bytes()) {
                let _ = e.ingest(&ev, Position { source: 0, offset: (first + i) as u64 });
                d.recycle(ev);
            }
            out.extend(e.drain_commands());
        }
        out
    }

    /// Predictions and labels of three models (one never labelled, so its predictions are
    /// forgotten after the probation), with repeated ids, disorder, and gaps that expire
    /// what waits.
    fn join_events(rng: &mut rand_pcg::Pcg64, n: usize) -> Vec<String> {
        use rand::Rng;
        let mut now: i64 = 1_764_000_000_000;
        let mut lines = Vec::with_capacity(n);
        for _ in 0..n {
            now += if rng.gen_bool(0.002) { 40 * 60_000 } else { rng.gen_range(0..3000) };
            let ts = now - rng.gen_range(0..20_000);
            let id = rng.gen_range(0..400);
            let m = rng.gen_range(0..3);
            let value =
                if m == 1 { format!("{}", rng.gen_range(0..5)) } else { format!("\"c{}\"", rng.gen_range(0..3)) };
            lines.push(match rng.gen_range(0..10) {
                0..=5 => format!(
                    r#"{{"type":"prediction","timestamp":{ts},"model":"m{m}","model_version":"1","event_id":"e{id}","prediction":{value}}}"#
                ),
                6..=8 if m != 2 => format!(
                    r#"{{"type":"label","timestamp":{ts},"event_id":"e{id}","label":{value},"model":"m{m}","model_version":"1"}}"#
                ),
                _ => format!(r#"{{"type":"request","timestamp":{ts},"app":"a","app_version":"1","latency_ms":12}}"#),
            });
        }
        lines
    }

    /// Random streams cut at random points: each cut writes a snapshot to a model of the
    /// compacted topic and, mostly, carries on from an engine restored from it. The restored
    /// joins always equal the live ones, no stale log record survives a new base, and the
    /// whole run ends in the same state and decisions as one without cuts.
    #[test]
    fn random_cuts_restore_the_pending_joins_exactly() {
        use rand::{Rng, SeedableRng};
        let mut bases = 0;
        let mut logs = 0;
        for seed in 0..40 {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let mut cfg = Config::default();
            cfg.accuracy.max_pending = [5, 40, 1000][rng.gen_range(0..3)];
            cfg.accuracy.max_label_delay = crate::config::Duration(30 * 60_000);
            cfg.accuracy.label_probation = crate::config::Duration(rng.gen_range(60_000..600_000));
            let lines = join_events(&mut rng, 3000);

            let mut whole = Engine::new(cfg.clone());
            whole.register_source("in");
            let mut expected = feed_from(&mut whole, &lines, 0);
            whole.finish();
            expected.extend(whole.drain_commands());

            let mut store = Store::new();
            let mut engine = Engine::new(cfg.clone());
            engine.register_source("in");
            let mut got = Vec::new();
            let mut at = 0;
            while at < lines.len() {
                let to = (at + rng.gen_range(1..300)).min(lines.len());
                got.extend(feed_from(&mut engine, &lines[at..to], at));
                at = to;
                let records = engine.snapshot_changes();
                bases += records.iter().filter(|(k, _)| k == "joins/00").count();
                logs += records.iter().filter(|(k, _)| k.starts_with(JOINLOG_PREFIX)).count();
                apply(&mut store, records);
                for k in store.keys().filter_map(|k| k.strip_prefix(JOINLOG_PREFIX)) {
                    let seq: u64 = k.parse().expect("seq");
                    assert!(seq >= engine.join_log.base_seq, "seed {seed}: stale joinlog/{k} kept");
                }
                let restored = Engine::restore(cfg.clone(), store.clone()).expect("restore");
                assert!(restored.joins.same_pending(&engine.joins), "seed {seed} line {at}: restored joins differ");
                assert_eq!(restored.counters(), engine.counters());
                if rng.gen_bool(0.7) {
                    engine = restored;
                }
            }
            engine.finish();
            got.extend(engine.drain_commands());
            assert!(engine.joins.same_pending(&whole.joins), "seed {seed}: pending joins differ at the end");
            assert_eq!(engine.counters(), whole.counters(), "seed {seed}");
            let strip = |v: &[Command]| v.iter().map(|c| (c.command_id.clone(), c.decided_at)).collect::<Vec<_>>();
            assert_eq!(strip(&got), strip(&expected), "seed {seed}");
        }
        assert!(bases > 40 && logs > 200, "both kinds of snapshot written: {bases} bases, {logs} log records");
    }

    /// An engine holding `pending` predictions of a labelled model, snapshotted once.
    fn with_pending(pending: usize) -> (Engine, Store) {
        let mut e = Engine::new(Config::default());
        e.register_source("in");
        let p = |id: usize, ts: i64| {
            format!(
                r#"{{"type":"prediction","timestamp":{ts},"model":"m","model_version":"1","event_id":"e{id}","prediction":"a"}}"#
            )
        };
        let l = |id: usize, ts: i64| {
            format!(
                r#"{{"type":"label","timestamp":{ts},"event_id":"e{id}","label":"a","model":"m","model_version":"1"}}"#
            )
        };
        let t0: i64 = 1_764_000_000_000;
        let mut lines = vec![p(0, t0), l(0, t0)];
        lines.extend((1..=pending).map(|i| p(i, t0 + i as i64 / 100)));
        feed_from(&mut e, &lines, 0);
        assert_eq!(e.joins.pending(), pending);
        let mut store = Store::new();
        apply(&mut store, e.snapshot_changes());
        (e, store)
    }

    #[test]
    fn a_snapshot_writes_what_changed_not_everything_pending() {
        let mut written = Vec::new();
        for pending in [2_000, 100_000] {
            let (mut e, mut store) = with_pending(pending);
            let t = 1_764_000_000_000 + pending as i64 / 100;
            let mut lines: Vec<String> = (1..=5)
                .map(|id| format!(r#"{{"type":"label","timestamp":{t},"event_id":"e{id}","label":"b","model":"m","model_version":"1"}}"#))
                .collect();
            lines.extend((0..5).map(|i| {
                format!(r#"{{"type":"prediction","timestamp":{t},"model":"m","model_version":"1","event_id":"n{i}","prediction":"a"}}"#)
            }));
            feed_from(&mut e, &lines, pending + 2);
            let records = e.snapshot_changes();
            let joins: usize = records
                .iter()
                .filter(|(k, _)| k.starts_with(JOINS_PREFIX) || k.starts_with(JOINLOG_PREFIX))
                .map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len))
                .sum();
            written.push((joins, apply(&mut store, records)));
            let restored = Engine::restore(Config::default(), store).expect("restore");
            assert!(restored.joins.same_pending(&e.joins));
        }
        let [(joins_small, all_small), (joins_large, all_large)] = written[..] else { unreachable!() };
        assert!(joins_small < 1000 && joins_large == joins_small, "bytes of joins written: {written:?}");
        // The rest (group and meta records) grows only with the digits of the counters.
        assert!(all_large * 10 < all_small * 11, "bytes written: {written:?}");
    }

    #[test]
    fn the_log_is_folded_into_a_new_base_once_it_outgrows_it() {
        let (mut e, mut store) = with_pending(5_000);
        let t: i64 = 1_764_000_000_000 + 200;
        let (mut logged, mut total, mut bases) = (0, 0, 0);
        for round in 0..60 {
            let lines: Vec<String> = (0..500)
                .map(|i| {
                    format!(r#"{{"type":"prediction","timestamp":{t},"model":"m","model_version":"1","event_id":"r{round}-{i}","prediction":"a"}}"#)
                })
                .collect();
            feed_from(&mut e, &lines, 0);
            let records = e.snapshot_changes();
            if records.iter().any(|(k, _)| k == "joins/00") {
                bases += 1;
                assert!(records.iter().any(|(k, v)| k.starts_with(JOINLOG_PREFIX) && v.is_none()), "old log deleted");
            }
            logged += records
                .iter()
                .filter(|(k, v)| k.starts_with(JOINLOG_PREFIX) && v.is_some())
                .map(|(_, v)| v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
            total += records
                .iter()
                .filter(|(k, _)| k.starts_with(JOINS_PREFIX) || k.starts_with(JOINLOG_PREFIX))
                .map(|(_, v)| v.as_ref().map_or(0, Vec::len))
                .sum::<usize>();
            apply(&mut store, records);
            if round % 10 == 9 {
                let restored = Engine::restore(Config::default(), store.clone()).expect("restore");
                assert!(restored.joins.same_pending(&e.joins), "round {round}");
            }
        }
        assert!(bases >= 2, "{bases} new bases");
        let stored: usize = store.iter().filter(|(k, _)| k.starts_with("join")).map(|(_, v)| v.len()).sum();
        let base: usize = e.joins.shards().iter().map(|s| encode(s).len()).sum();
        assert!(stored <= 2 * base + 50_000, "{stored} bytes stored for a base of {base}");
        // Each base follows at least its own size in log records.
        assert!(total <= 2 * logged + 2 * base, "{total} bytes of joins written for {logged} bytes of changes");
    }

    #[test]
    fn a_changelog_from_before_the_join_log_restores() {
        let (e, store) = with_pending(3_000);
        // Format 1: the same `joins/NN` shards, and a `meta` without the join log fields.
        let mut old = Store::new();
        for (k, v) in store {
            if k == META_KEY {
                let mut meta: ciborium::Value = ciborium::from_reader(&v[..]).expect("meta");
                if let ciborium::Value::Map(fields) = &mut meta {
                    fields.retain(|(k, _)| k.as_text().is_none_or(|k| !k.starts_with("join_log")));
                    for (k, v) in fields.iter_mut() {
                        if k.as_text() == Some("format") {
                            *v = ciborium::Value::Integer(1.into());
                        }
                    }
                }
                let mut bytes = Vec::new();
                ciborium::into_writer(&meta, &mut bytes).expect("encode");
                old.insert(k, bytes);
            } else if !k.starts_with(JOINLOG_PREFIX) {
                old.insert(k, v);
            }
        }
        let mut restored = Engine::restore(Config::default(), old.clone()).expect("restore");
        assert!(restored.joins.same_pending(&e.joins));
        // It carries on with a log from there.
        let line =
            r#"{"type":"label","timestamp":1764000000001,"event_id":"e7","label":"a","model":"m","model_version":"1"}"#;
        feed_from(&mut restored, &[line.to_owned()], 0);
        let records = restored.snapshot_changes();
        assert!(records.iter().any(|(k, _)| k == "joinlog/000000000000"));
        apply(&mut old, records);
        let again = Engine::restore(Config::default(), old).expect("restore");
        assert!(again.joins.same_pending(&restored.joins));
        assert_eq!(again.joins.pending(), 2_999);
    }

    #[test]
    fn log_records_stay_under_a_megabyte() {
        let worst: EntryRecord<(TargetId, u32)> = (
            u64::MAX,
            Some(((TargetId::MAX, u32::MAX), Value::Class(u64::MAX), Millis::MIN)),
            Some((Value::Class(u64::MAX), Millis::MIN)),
        );
        let rec = encode(&vec![worst; JOINLOG_ENTRIES]);
        assert!(rec.len() < 1 << 20, "{} bytes", rec.len());
    }
}

//! Snapshots of engine state as keyed records, for a compacted changelog topic.
//!
//! The state is split by app or model (`group/{kind}/{name}`: the group and all its versions'
//! windows, tests and latches), 64 shards of pending label joins (`joins/NN`, by id hash) and
//! one small `meta` record (watermark, counters, input offsets, the last decisions). Only groups that changed since the last snapshot
//! are written, and a forgotten group is written as a tombstone, so the changelog stays as
//! large as the live state. Keying by app/model means that when several instances own
//! different input partitions later, each can restore just the groups it owns.

use serde::{Deserialize, Serialize};

use super::*;

/// Key of the record holding engine-wide state.
pub const META_KEY: &str = "meta";
/// Key prefix of the shards of pending label joins.
pub const JOINS_PREFIX: &str = "joins/";
/// Decisions kept in the `meta` record (the in-memory log may hold more).
const KEPT_DECISIONS: usize = 100;
/// Format of the records this build writes and reads.
pub const FORMAT: u32 = 1;

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
    #[error("state record `{key}` has format {found}; this driftwatch reads format {FORMAT} (start with a new changelog topic)")]
    Format {
        /// Record key.
        key: String,
        /// Format found.
        found: u32,
    },
}

#[derive(Serialize)]
struct MetaOut<'a> {
    format: u32,
    watermark: Millis,
    max_ts: Option<Millis>,
    next_gen: u32,
    next_sweep: Millis,
    counters: &'a Counters,
    join_counters: crate::labels::JoinCounters,
    sources: &'a [String],
    offsets: &'a [u64],
    decisions: Vec<String>,
}

#[derive(Deserialize)]
struct MetaIn {
    format: u32,
    watermark: Millis,
    max_ts: Option<Millis>,
    next_gen: u32,
    next_sweep: Millis,
    counters: Counters,
    join_counters: crate::labels::JoinCounters,
    sources: Vec<String>,
    offsets: Vec<u64>,
    decisions: Vec<String>,
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

fn target_key(kind: Kind, name: &str, version: &str) -> Box<str> {
    let mut k = String::with_capacity(name.len() + version.len() + 2);
    k.push(if kind == Kind::App { 'a' } else { 'm' });
    k.push_str(name);
    k.push('\0');
    k.push_str(version);
    k.into_boxed_str()
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
            let mut by_group: FxHashMap<u32, Vec<(TargetId, &Target)>> = FxHashMap::default();
            for (i, t) in self.targets.iter().enumerate() {
                if let Some(t) = t {
                    by_group.entry(t.group).or_default().push((i as TargetId, t));
                }
            }
            for &g in &dirty {
                let Some(group) = self.groups[g as usize].as_ref() else { continue };
                let rec = GroupOut { format: FORMAT, group, targets: by_group.remove(&g).unwrap_or_default() };
                out.push((group_key(group.kind, &group.name), Some(encode(&rec))));
            }
            for g in dirty {
                if let Some(group) = self.groups[g as usize].as_mut() {
                    group.dirty = false;
                }
            }
        }
        for (shard, contents) in self.joins.take_changed_shards() {
            out.push((format!("{JOINS_PREFIX}{shard:02}"), Some(encode(&contents))));
        }
        let meta = MetaOut {
            format: FORMAT,
            watermark: self.watermark,
            max_ts: self.max_ts,
            next_gen: self.next_gen,
            next_sweep: self.next_sweep,
            counters: &self.counters,
            join_counters: self.joins.counters,
            sources: &self.sources,
            offsets: &self.offsets,
            decisions: self.decisions.iter().rev().take(KEPT_DECISIONS).rev().map(Command::to_json).collect(),
        };
        out.push((META_KEY.to_owned(), Some(encode(&meta))));
        out
    }

    /// Marks every group changed, so that the next [`Engine::snapshot_changes`] writes all state.
    pub fn mark_all_changed(&mut self) {
        for g in self.groups.iter_mut().flatten() {
            g.dirty = true;
        }
    }

    /// Rebuilds an engine from the latest record of each key (tombstones already dropped).
    pub fn restore(cfg: Config, records: impl IntoIterator<Item = (String, Vec<u8>)>) -> Result<Engine, SnapshotError> {
        let mut e = Engine::new(cfg);
        let mut groups: Vec<(String, GroupIn)> = Vec::new();
        for (key, bytes) in records {
            if key == META_KEY {
                let m: MetaIn = decode(&key, &bytes)?;
                if m.format != FORMAT {
                    return Err(SnapshotError::Format { key, found: m.format });
                }
                e.watermark = m.watermark;
                e.max_ts = m.max_ts;
                e.next_gen = m.next_gen;
                e.next_sweep = m.next_sweep;
                e.counters = m.counters;
                e.joins.counters = m.join_counters;
                e.sources = m.sources;
                e.offsets = m.offsets;
                e.decisions = m.decisions.iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
            } else if key.starts_with(JOINS_PREFIX) {
                let shard: crate::labels::JoinShard<(TargetId, u32)> = decode(&key, &bytes)?;
                e.joins.restore_shard(shard);
            } else if key.starts_with("group/") {
                let g: GroupIn = decode(&key, &bytes)?;
                if g.format != FORMAT {
                    return Err(SnapshotError::Format { key, found: g.format });
                }
                groups.push((key, g));
            }
        }
        e.joins.restored();
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        for (_, rec) in groups {
            let gid = e.groups.len() as u32;
            let mut group = rec.group;
            group.live = rec.targets.len();
            group.dirty = false;
            for p in &group.pending {
                e.tick_queue.insert((p.sec, gid));
            }
            e.group_index.insert((group.kind, Box::from(&*group.name)), gid);
            for (id, mut t) in rec.targets {
                t.group = gid;
                let slot = id as usize;
                if e.targets.len() <= slot {
                    e.targets.resize_with(slot + 1, || None);
                }
                e.index.insert(target_key(t.kind, &t.name, &t.version), id);
                if let Some(w) = t.wake {
                    e.wake_queue.insert((w, id));
                }
                e.targets[slot] = Some(t);
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

        // Cut twice, keeping only the latest record per key, as a compacted topic does.
        let mut store: std::collections::BTreeMap<String, Vec<u8>> = Default::default();
        let mut engine = Engine::new(Config::default());
        engine.register_source("in");
        let mut got = Vec::new();
        let cuts = [0, lines.len() / 3, 2 * lines.len() / 3, lines.len()];
        for w in cuts.windows(2) {
            got.extend(feed(&mut engine, &lines[w[0]..w[1]]));
            for (k, v) in engine.snapshot_changes() {
                match v {
                    Some(v) => store.insert(k, v),
                    None => store.remove(&k),
                };
            }
            engine = Engine::restore(Config::default(), store.clone()).expect("restore");
        }
        engine.finish();
        got.extend(engine.drain_commands());
        let strip = |v: &[Command]| v.iter().map(|c| (c.command_id.clone(), c.decided_at.clone())).collect::<Vec<_>>();
        assert_eq!(strip(&got), strip(&expected));
        assert_eq!(engine.counters().events, whole.counters().events);
    }

    #[test]
    fn corrupt_records_are_named() {
        let err = Engine::restore(Config::default(), [("group/app/x".to_owned(), vec![1, 2, 3])]).unwrap_err();
        assert!(err.to_string().contains("group/app/x"), "{err}");
    }
}

//! Quiet apps and models kept small. At the hourly sweep, an app or model whose versions have
//! all been quiet for an hour of event time, with nothing due (no second waiting to be folded,
//! no bucket waiting to close), is frozen: its versions' state becomes one deflated copy in the
//! changelog's encoding, beside a summary per version for views, until an event, a label or the
//! idle expiry needs it again. Thawing gives back exactly the state frozen, so decisions are
//! those of an engine that never froze anything.

use std::sync::OnceLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::view::Summary;
use super::*;

/// How long every version of an app or model has been quiet before it is frozen.
pub(super) const FREEZE_AFTER: Millis = schedule::SWEEP_EVERY;

/// A frozen app's or model's versions.
#[derive(Debug)]
pub(super) struct Frozen {
    /// CBOR of `[(id, target)]`, in the order of `members`, deflated against [`dictionary`].
    blob: Box<[u8]>,
    /// Each version's id and what its overview shows.
    members: Box<[(TargetId, Summary)]>,
    /// The oldest `last_seen` of the versions: the idle expiry thaws the group once it passes.
    oldest_seen: Millis,
    /// How far [`Engine::finish`] moves the watermark for the versions' buckets.
    finish_floor: Millis,
    /// Features dropped and categories overflowed by the versions' feature tables.
    drops: (u64, u64),
}

impl Frozen {
    /// What each version's overview shows.
    pub(super) fn summaries(&self) -> impl Iterator<Item = &Summary> {
        self.members.iter().map(|(_, s)| s)
    }

    pub(super) fn oldest_seen(&self) -> Millis {
        self.oldest_seen
    }

    pub(super) fn finish_floor(&self) -> Millis {
        self.finish_floor
    }

    pub(super) fn drops(&self) -> (u64, u64) {
        self.drops
    }

    /// The frozen targets, as they were.
    fn targets(&self) -> Vec<(TargetId, Target)> {
        let decoded = inflate(&self.blob)
            .and_then(|cbor| ciborium::from_reader::<Vec<(TargetId, Target)>, _>(&cbor[..]).map_err(|e| e.to_string()));
        // The copy was written by this process a moment ago from these very types.
        decoded.unwrap_or_else(|e| panic!("a frozen group's copy does not decode: {e}"))
    }
}

/// A deflate dictionary of typical frozen state: the versions of a simulated fleet (a quarter
/// of an hour of the `mixed` scenario) in the encoding frozen copies use. A copy then refers to
/// the field names and shapes it shares with them instead of spelling them out: a frozen model
/// version takes about half the room it would alone. Built once per process, the same for
/// every engine in it (copies never leave the process: snapshots decode them).
fn dictionary() -> &'static [u8] {
    static DICTIONARY: OnceLock<Vec<u8>> = OnceLock::new();
    // Built quietly: what the simulated fleet does is no news to the user.
    DICTIONARY.get_or_init(|| {
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), build_dictionary)
    })
}

/// [`dictionary`], built.
fn build_dictionary() -> Vec<u8> {
    /// Deflate refers at most this far back.
    const WINDOW: usize = 32 * 1024;
    let mut stream = Vec::new();
    if crate::sim::write_scenario("mixed", 1, 0.2, Some(15 * 60_000), &mut stream).is_err() {
        return Vec::new();
    }
    let mut e = Engine::new(Config::default());
    e.freezing = false;
    let mut decoder = crate::event::Decoder::default();
    for (i, line) in stream.split(|&b| b == b'\n').enumerate() {
        if let Ok(ev) = decoder.decode(line) {
            let _ = e.ingest(&ev, Position { source: 0, offset: i as u64 });
            decoder.recycle(ev);
        }
    }
    e.finish();
    let mut by_group: std::collections::BTreeMap<u32, Vec<(TargetId, &Target)>> = Default::default();
    for (id, t) in e.targets.iter().enumerate() {
        if let Some(t) = t {
            by_group.entry(t.group).or_default().push((id as TargetId, &**t));
        }
    }
    let mut dict = Vec::new();
    for targets in by_group.values() {
        let _ = ciborium::into_writer(targets, &mut dict);
    }
    dict.split_off(dict.len().saturating_sub(WINDOW))
}

/// `data` deflated against [`dictionary`].
fn deflate(data: &[u8]) -> Result<Vec<u8>, String> {
    let mut z = Compress::new(Compression::default(), false);
    z.set_dictionary(dictionary()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(data.len() / 3 + 64);
    loop {
        let rest = &data[(z.total_in() as usize).min(data.len())..];
        match z.compress_vec(rest, &mut out, FlushCompress::Finish).map_err(|e| e.to_string())? {
            Status::StreamEnd => return Ok(out),
            _ => out.reserve(out.capacity().max(64)),
        }
    }
}

/// What [`deflate`] deflated.
fn inflate(blob: &[u8]) -> Result<Vec<u8>, String> {
    let mut z = Decompress::new(false);
    z.set_dictionary(dictionary()).map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(blob.len() * 4 + 64);
    loop {
        let rest = &blob[(z.total_in() as usize).min(blob.len())..];
        let before = (z.total_in(), z.total_out());
        match z.decompress_vec(rest, &mut out, FlushDecompress::Finish).map_err(|e| e.to_string())? {
            Status::StreamEnd => return Ok(out),
            _ if out.len() < out.capacity() && before == (z.total_in(), z.total_out()) => {
                return Err("the deflated copy ends early".into());
            }
            _ => out.reserve(out.capacity().max(64)),
        }
    }
}

/// Where [`Engine::finish_watermark`] moves the watermark for `t`'s buckets.
pub(super) fn finish_floor(t: &Target) -> Millis {
    let mut wm = Millis::MIN;
    for r in RingKind::ALL {
        let step = t.step(r);
        if step != i64::MAX && t.last_data[r] != i64::MIN {
            wm = wm.max((t.last_data[r] + 1) * step);
        }
    }
    wm
}

impl Engine {
    /// Freezes every app and model whose versions have all been quiet since `wm -
    /// FREEZE_AFTER` and have nothing due.
    pub(super) fn freeze_quiet(&mut self, wm: Millis) {
        if !self.freezing {
            return;
        }
        let quiet_since = wm - FREEZE_AFTER;
        // Per group: whether every version is quiet, and the versions.
        let mut quiet: Vec<(bool, Vec<TargetId>)> = Vec::new();
        quiet.resize_with(self.groups.len(), || (true, Vec::new()));
        for (id, t) in self.targets.iter().enumerate() {
            let Some(t) = t else { continue };
            let Some(q) = quiet.get_mut(t.group as usize) else { continue };
            q.0 &= t.last_seen < quiet_since && t.wake.is_none() && t.traffic.is_empty() && t.latency.is_empty();
            q.1.push(id as TargetId);
        }
        for (g, (all_quiet, ids)) in quiet.into_iter().enumerate() {
            let Some(group) = self.groups[g].as_ref() else { continue };
            if all_quiet && !ids.is_empty() && group.frozen.is_none() && group.pending.is_empty() {
                self.freeze(g as u32, ids);
            }
        }
    }

    fn freeze(&mut self, g: u32, ids: Vec<TargetId>) {
        let mut targets: Vec<(TargetId, Box<Target>)> = Vec::with_capacity(ids.len());
        let mut members = Vec::with_capacity(ids.len());
        let (mut oldest_seen, mut finish, mut drops) = (Millis::MAX, Millis::MIN, (0, 0));
        for id in ids {
            let Some(mut t) = self.targets[id as usize].take() else { continue };
            oldest_seen = oldest_seen.min(t.last_seen);
            finish = finish.max(finish_floor(&t));
            if let Some(m) = t.model.as_ref() {
                drops.0 += m.table.features_dropped;
                drops.1 += m.table.categories_overflowed;
            }
            members.push((id, self.summary_of(&mut t)));
            self.frozen.insert(id, g);
            targets.push((id, t));
        }
        let refs: Vec<(TargetId, &Target)> = targets.iter().map(|(id, t)| (*id, &**t)).collect();
        let mut cbor = Vec::new();
        let written = ciborium::into_writer(&refs, &mut cbor).map_err(|e| e.to_string());
        let blob = written.and_then(|()| deflate(&cbor));
        let blob = match blob {
            Ok(b) => b.into_boxed_slice(),
            Err(e) => {
                // Writing to memory does not fail; should it, the group stays as it was.
                tracing::error!(error = %e, "a quiet group could not be frozen");
                for ((id, t), (_, s)) in targets.into_iter().zip(members) {
                    let mut t = t;
                    s.restore_into(&mut t);
                    self.frozen.remove(&id);
                    self.targets[id as usize] = Some(t);
                }
                return;
            }
        };
        if let Some(group) = targets::issued_mut(&mut self.groups, g) {
            group.frozen = Some(Box::new(Frozen {
                blob,
                members: members.into_boxed_slice(),
                oldest_seen,
                finish_floor: finish,
                drops,
            }));
        }
    }

    /// Thaws group `g` if it is frozen.
    pub(super) fn thaw(&mut self, g: u32) {
        let Some(f) = self.groups.get_mut(g as usize).and_then(Option::as_mut).and_then(|gr| gr.frozen.take()) else {
            return;
        };
        let f = *f;
        let targets = f.targets();
        debug_assert_eq!(targets.len(), f.members.len());
        for ((id, mut t), (_, s)) in targets.into_iter().zip(f.members.into_vec()) {
            s.restore_into(&mut t);
            self.frozen.remove(&id);
            self.targets[id as usize] = Some(Box::new(t));
        }
    }

    /// Makes target `id` live again if its group is frozen.
    #[inline]
    pub(super) fn thaw_target(&mut self, id: TargetId) {
        if self.targets.get(id as usize).is_some_and(Option::is_none) {
            if let Some(&g) = self.frozen.get(&id) {
                self.thaw(g);
            }
        }
    }

    /// Thaws every frozen group (for views that change how they read targets).
    pub(super) fn thaw_all(&mut self) {
        for g in 0..self.groups.len() as u32 {
            self.thaw(g);
        }
    }

    /// The frozen groups' targets, decoded (for snapshots).
    pub(super) fn frozen_targets(&self, g: u32) -> Vec<(TargetId, Target)> {
        self.groups
            .get(g as usize)
            .and_then(Option::as_ref)
            .and_then(|gr| gr.frozen.as_ref())
            .map_or_else(Vec::new, |f| f.targets())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Decoder;

    /// 2025-11-24T16:00:00Z, on a whole hour.
    const T0: Millis = 1_764_000_000_000;

    /// A fleet that serves ten minutes and goes quiet, a clock that keeps event time moving,
    /// then: labels for one model arriving two hours late, one app serving again, a model's new
    /// version, and a day and more of quiet (the idle expiry).
    fn stream() -> Vec<(Millis, String)> {
        let mut out = Vec::new();
        for s in (0..30 * 3_600i64).step_by(10) {
            let ts = T0 + s * 1_000;
            out.push((ts, format!(r#"{{"type":"request","timestamp":{ts},"app":"clock","app_version":"1"}}"#)));
        }
        let mut serve = |from: i64, to: i64, apps: &[(usize, &str, u32)], models: &[(usize, &str, i64)]| {
            for s in from..to {
                let ts = T0 + s * 1_000;
                for &(i, v, errors_per_10) in apps {
                    let ms = ts + i as i64;
                    let kind = if (s as u32) % 10 < errors_per_10 { "error" } else { "request" };
                    let lat = 20 + (s + i as i64) % 30;
                    out.push((
                        ms,
                        format!(r#"{{"type":"{kind}","timestamp":{ms},"app":"s{i}","app_version":"{v}","latency_ms":{lat}}}"#),
                    ));
                }
                for &(i, v, shift) in models {
                    let ms = ts + 100 + i as i64;
                    let id = format!("m{i}-{v}-{s}");
                    let x = (s * 7 + i as i64) % 100 + shift;
                    let c = ["red", "green", "blue"][(s as usize + i) % 3];
                    let p = ["yes", "no"][(s as usize * 3 + i) % 2];
                    out.push((
                        ms,
                        format!(r#"{{"type":"prediction","timestamp":{ms},"event_id":"{id}","model":"m{i}","model_version":"{v}","features":{{"x":{x},"c":"{c}"}},"prediction":"{p}"}}"#),
                    ));
                    // m2's odd seconds are labelled two hours late, after it froze.
                    let delay = if i == 2 && s % 2 == 1 { 7_200_000 } else { 500 };
                    let label = if s % 7 == 0 { "no" } else { p };
                    out.push((
                        ms + delay,
                        format!(r#"{{"type":"label","timestamp":{},"event_id":"{id}","label":"{label}"}}"#, ms + delay),
                    ));
                }
            }
        };
        let apps: Vec<(usize, &str, u32)> = (0..4).map(|i| (i, "1", 0)).collect();
        let models: Vec<(usize, &str, i64)> = (0..4).map(|i| (i, "a", 0)).collect();
        serve(0, 600, &apps, &models);
        let canaries: Vec<(usize, &str, u32)> = (0..4).map(|i| (i, "2", if i == 1 { 3 } else { 0 })).collect();
        let models_b: Vec<(usize, &str, i64)> = (0..4).map(|i| (i, "b", 0)).collect();
        serve(120, 600, &canaries, &models_b);
        // Back after more than two hours: s0's versions, and a new version of m0 that drifts.
        serve(9_000, 9_600, &[(0, "1", 0), (0, "2", 2)], &[(0, "c", 40)]);
        out.sort_by_key(|(ts, _)| *ts);
        out
    }

    /// Views of all targets, by event time.
    type Views = Vec<(Millis, Vec<TargetOverview>)>;

    /// Feeds `lines` to `a` (which freezes) and `b` (which does not); at every ten minutes of
    /// event time, compares what they show and what they would store. Returns their commands,
    /// the most versions `a` had frozen at once, and `a`'s views at each check.
    fn run_both(lines: &[(Millis, String)]) -> (Vec<String>, Vec<String>, usize, Views) {
        let (mut a, mut b) = (Engine::new(Config::default()), Engine::new(Config::default()));
        b.freezing = false;
        let mut d = Decoder::default();
        let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
        let mut most_frozen = 0;
        let mut next_check = T0;
        let mut views = Vec::new();
        for (i, (ts, line)) in lines.iter().enumerate() {
            let ev = d.decode(line.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e:?}"));
            let pos = Position { source: 0, offset: i as u64 };
            assert_eq!(a.ingest(&ev, pos).is_ok(), b.ingest(&ev, pos).is_ok(), "{line}");
            d.recycle(ev);
            out_a.extend(a.drain_commands().map(|c| c.to_json()));
            out_b.extend(b.drain_commands().map(|c| c.to_json()));
            most_frozen = most_frozen.max(a.frozen.len());
            if *ts >= next_check {
                next_check = ts + 600_000;
                let view = a.overview();
                assert_eq!(view, b.overview(), "views at line {i}");
                views.push((*ts, view));
                assert_eq!(a.cardinality_drops(), b.cardinality_drops());
                assert_eq!(a.target_count(), b.target_count());
                assert_eq!(a.finish_watermark(), b.finish_watermark());
                a.mark_all_changed();
                b.mark_all_changed();
                assert_eq!(a.snapshot_changes(), b.snapshot_changes(), "stored state at line {i}");
            }
        }
        a.finish();
        b.finish();
        out_a.extend(a.drain_commands().map(|c| c.to_json()));
        out_b.extend(b.drain_commands().map(|c| c.to_json()));
        assert_eq!(a.overview(), b.overview(), "views at the end");
        assert_eq!(a.counters().targets_evicted, b.counters().targets_evicted);
        assert_eq!(a.join_counters(), b.join_counters());
        (out_a, out_b, most_frozen, views)
    }

    #[test]
    fn frozen_groups_decide_show_and_store_what_live_ones_do() {
        let lines = stream();
        let (a, b, most_frozen, views) = run_both(&lines);
        assert_eq!(a, b);
        // Every version but the clock's froze: 8 app versions and 9 model versions (m0's new
        // one included) once m0 and s0 had been quiet an hour again.
        assert_eq!(most_frozen, 17);
        // Decided before the quiet: s1's canary is rolled back. After it: s0's canary, which
        // comes back failing, is rolled back on evidence that spans the quiet (the test thawed).
        let decided =
            |name: &str| a.iter().filter(|c| c.contains(&format!(r#""name":"{name}","version":"2""#))).count();
        assert_eq!((decided("s0"), decided("s1"), a.len()), (1, 1, 2), "{a:#?}");
        assert!(a[1].contains(r#""decided_at":"2025-11-24T18:30"#), "{}", a[1]);
        // m2's labels that came two hours late were joined to predictions of a frozen version:
        // four hours in, every one of its 600 predictions is labelled.
        let m2 = |at: Millis| {
            let (_, view) = views.iter().rev().find(|(ts, _)| *ts <= at).expect("a view");
            view.iter().find(|t| t.name == "m2" && t.version == "a").and_then(|t| t.labels).map(|(n, _)| n)
        };
        assert_eq!(m2(T0 + 2 * 3_600_000), Some(300));
        assert_eq!(m2(T0 + 4 * 3_600_000), Some(600));
    }
}

//! Event time moving on: the seconds folded into the sequential tests, the buckets closed and
//! the windowed rules woken, the hourly sweep of idle targets.

use super::*;

/// How often idle targets and expired label joins are swept, in event time.
pub(super) const SWEEP_EVERY: Millis = 3_600_000;

/// The first sweep time after `t`: the next whole hour.
pub(super) fn hour_after(t: Millis) -> Millis {
    (t.div_euclid(SWEEP_EVERY) + 1) * SWEEP_EVERY
}

impl Engine {
    #[inline]
    pub(super) fn schedule(&mut self, id: TargetId, at: Millis) {
        let Some(t) = self.target_mut(id) else { return };
        if t.wake.is_some_and(|w| w <= at) {
            return;
        }
        let old = t.wake.replace(at);
        if let Some(old) = old {
            self.wake_queue.remove(&(old, id));
        }
        self.wake_queue.insert((at, id));
    }

    /// Adds a tick to the target's group for second `sec`, queueing the second when new.
    pub(super) fn add_tick(&mut self, id: TargetId, group: u32, sec: i64, tick: Tick) {
        let Some(g) = targets::issued_mut(&mut self.groups, group) else { return };
        g.dirty = true;
        let pos = match g.pending.back() {
            Some(p) if p.sec == sec => g.pending.len() - 1,
            Some(p) if p.sec < sec => {
                g.pending.push_back(PendingSecond { sec, ticks: SmallVec::new() });
                self.tick_queue.insert(sec, group);
                g.pending.len() - 1
            }
            None => {
                g.pending.push_back(PendingSecond { sec, ticks: SmallVec::new() });
                self.tick_queue.insert(sec, group);
                0
            }
            _ => match g.pending.binary_search_by_key(&sec, |p| p.sec) {
                Ok(p) => p,
                Err(p) => {
                    g.pending.insert(p, PendingSecond { sec, ticks: SmallVec::new() });
                    self.tick_queue.insert(sec, group);
                    p
                }
            },
        };
        let ticks = &mut g.pending[pos].ticks;
        match ticks.iter_mut().find(|(t, _)| *t == id) {
            Some((_, t)) => t.merge(&tick),
            None => ticks.push((id, tick)),
        }
    }

    /// Processes every second and bucket that became final, in event-time order.
    ///
    /// The hourly sweep is one more item of that order (at each hour of event time, after the
    /// seconds and buckets due by then), so what the engine does depends only on the watermark
    /// it reaches, never on the steps it took to get there: an engine that sees a share of a
    /// stream and follows the stream's watermark in larger steps decides what an engine that
    /// sees all of it decides for the same targets.
    pub(super) fn advance(&mut self, wm: Millis) {
        self.watermark = wm;
        let first_new = self.out.len();
        loop {
            let tick = self.tick_queue.first().map(|(s, g)| ((s + 1) * TICK_MS, s, g));
            let wake = self.wake_queue.first().copied();
            let next = tick.map(|(at, ..)| at).into_iter().chain(wake.map(|(at, _)| at)).min();
            // Sweeps start with the first hour after the first due work: before it there was
            // nothing to sweep.
            if self.next_sweep == Millis::MIN {
                match next {
                    Some(at) if at <= wm => self.next_sweep = hour_after(at),
                    _ => break,
                }
            }
            if self.next_sweep <= wm && next.is_none_or(|at| at > self.next_sweep) {
                let at = self.next_sweep;
                self.sweep(at);
                self.next_sweep = at + SWEEP_EVERY;
                continue;
            }
            match (tick, wake) {
                (Some((at, sec, g)), w) if at <= wm && w.is_none_or(|(wt, _)| at <= wt) => {
                    self.tick_queue.pop_first();
                    self.fold_second(g, sec);
                }
                (_, Some((at, id))) if at <= wm => {
                    self.wake_queue.pop_first();
                    self.wake_target(id, at);
                }
                _ => break,
            }
        }
        if self.out.len() > first_new {
            self.out[first_new..].sort_by(|a, b| {
                (&a.decided_at, a.target.kind, &a.target.name, &a.target.version, a.command, a.reason).cmp(&(
                    &b.decided_at,
                    b.target.kind,
                    &b.target.name,
                    &b.target.version,
                    b.command,
                    b.reason,
                ))
            });
        }
    }

    /// Forgets idle targets and expired label joins.
    pub(super) fn sweep(&mut self, wm: Millis) {
        self.joins.expire(wm);
        let ttl = self.cfg.limits.target_idle_ttl.0;
        // Frozen versions due to be forgotten are forgotten as live ones are.
        let expired: Vec<u32> = (0..self.groups.len() as u32)
            .filter(|&g| {
                self.groups[g as usize]
                    .as_ref()
                    .and_then(|g| g.frozen.as_ref())
                    .is_some_and(|f| f.oldest_seen() < wm - ttl)
            })
            .collect();
        for g in expired {
            self.thaw(g);
        }
        let idle: Vec<TargetId> = self
            .targets
            .iter()
            .enumerate()
            .filter_map(|(i, t)| t.as_ref().filter(|t| t.last_seen < wm - ttl).map(|_| i as TargetId))
            .collect();
        for id in idle {
            let Some(t) = self.targets[id as usize].take() else {
                continue;
            };
            self.counters.targets_evicted += 1;
            self.index.remove(&targets::target_key(t.kind, &t.name, &t.version));
            if let Some(w) = t.wake {
                self.wake_queue.remove(&(w, id));
            }
            let mut drop_group = false;
            if let Some(g) = targets::issued_mut(&mut self.groups, t.group) {
                g.members.retain(|&m| m != id);
                for p in &mut g.pending {
                    p.ticks.retain(|(m, _)| *m != id);
                }
                g.live -= 1;
                g.dirty = true;
                drop_group = g.live == 0;
            }
            if drop_group {
                if let Some(g) = self.groups[t.group as usize].take() {
                    self.removed_groups.push(snapshot::group_key(g.kind, &g.name));
                    self.group_index.remove(&(g.kind, Box::from(&*g.name)));
                    for p in &g.pending {
                        self.tick_queue.remove(p.sec, t.group);
                    }
                    self.free_groups.push(t.group);
                }
            }
            self.free.push(id);
        }
        // Versions gone quiet keep no traffic or latency buckets older than any window a later
        // event could read (the next window read ends after the watermark), and give back the
        // memory: an idle version costs little until it sees traffic again.
        for t in self.targets.iter_mut().flatten() {
            t.traffic.evict(t.traffic.spec.bucket_of(wm) - 1);
            t.traffic.shrink();
            t.latency.evict(t.latency.spec.bucket_of(wm) - 1);
            t.latency.shrink();
            // Drift and accuracy buckets stay while later windows may reach back for them;
            // only the room beside them goes.
            if let Some(m) = t.model.as_mut() {
                m.drift.shrink();
                m.accuracy.shrink();
            }
        }
        // Seconds waiting to be folded come and go with traffic: a quiet group keeps no room
        // for them.
        for g in self.groups.iter_mut().flatten() {
            if g.pending.is_empty() {
                g.pending.shrink_to_fit();
            }
        }
        self.freeze_quiet(wm);
    }

    pub(super) fn fold_second(&mut self, g: u32, sec: i64) {
        let Some(group) = targets::issued_mut(&mut self.groups, g) else { return };
        let Some(front) = group.pending.front() else {
            return;
        };
        if front.sec != sec {
            return;
        }
        let Some(entry) = group.pending.pop_front() else {
            return;
        };
        group.dirty = true;
        let mut newcomers: Vec<TargetId> = Vec::new();
        for (id, tick) in &entry.ticks {
            if let Some(t) = targets::issued_mut(&mut self.targets, *id) {
                if tick.traffic.events > 0 {
                    t.last_tick_sec = sec;
                }
                if !t.registered && tick.traffic.events > 0 {
                    newcomers.push(*id);
                }
            }
        }
        if !newcomers.is_empty() {
            newcomers.sort_by(|a, b| {
                let va = self.target(*a).map(|t| t.version.clone());
                let vb = self.target(*b).map(|t| t.version.clone());
                va.cmp(&vb)
            });
            for id in newcomers {
                self.register(g, id, sec);
            }
        }
        let tick_of = |id: TargetId| entry.ticks.iter().find(|(t, _)| *t == id).map(|(_, t)| *t).unwrap_or_default();
        let mut i = 0;
        // Members are read by index: stepping a candidate never adds or removes one.
        while let Some(id) = targets::issued(&self.groups, g).and_then(|gr| gr.members.get(i).copied()) {
            i += 1;
            let Some((base, gen)) =
                self.target(id).and_then(|t| t.candidate.as_ref()).map(|c| (c.baseline, c.baseline_gen))
            else {
                continue;
            };
            // The baseline may have been forgotten since, and its slot given to another target.
            let (base_tick, base_last) = match self.target_of_gen(base, gen) {
                Some(b) => (tick_of(base), b.last_tick_sec),
                None => (Default::default(), i64::MIN),
            };
            self.step_candidate(id, sec, tick_of(id), base_tick, base_last);
        }
    }

    pub(super) fn register(&mut self, g: u32, id: TargetId, sec: i64) {
        let Some(group) = targets::issued(&self.groups, g) else { return };
        let pinned = group.pinned.clone();
        let windows = group.windows;
        let members = group.members.clone();
        let (kind, version) = match self.target(id) {
            Some(t) => (t.kind, t.version.clone()),
            None => return,
        };
        let eligible = |m: &TargetId| self.target(*m).is_some_and(|t| !t.latch.rolled_back);
        let baseline = if pinned.as_deref() == Some(&*version) {
            None
        } else if let Some(p) = pinned
            .as_deref()
            .and_then(|p| members.iter().copied().find(|m| self.target(*m).is_some_and(|t| &*t.version == p)))
        {
            Some(p)
        } else {
            let lookback = windows.error_rate.length / TICK_MS;
            members
                .iter()
                .copied()
                .filter(eligible)
                .find(|m| self.target(*m).is_some_and(|t| t.last_tick_sec >= sec - lookback))
                .or_else(|| {
                    members
                        .iter()
                        .copied()
                        .filter(eligible)
                        .max_by_key(|m| self.target(*m).map_or(i64::MIN, |t| t.last_tick_sec))
                })
        };
        if let Some(gr) = targets::issued_mut(&mut self.groups, g) {
            gr.members.push(id);
        }
        let Some(b) = baseline else {
            if let Some(t) = self.target_mut(id) {
                t.registered = true;
                t.first_sec = sec;
            }
            return;
        };
        let cand = self.new_candidate(id, b, sec, kind, windows);
        if let Some(t) = self.target_mut(id) {
            t.registered = true;
            t.first_sec = sec;
            t.candidate = cand.map(Box::new);
        }
    }

    pub(super) fn wake_target(&mut self, id: TargetId, at: Millis) {
        let Some(t) = self.target_mut(id) else { return };
        if t.wake != Some(at) {
            return;
        }
        t.wake = None;
        let group = t.group;
        if let Some(g) = targets::issued_mut(&mut self.groups, group) {
            g.dirty = true;
        }
        for ring in RingKind::ALL {
            let Some(t) = self.target(id) else { return };
            let step = t.step(ring);
            if step == i64::MAX || t.last_data[ring] == i64::MIN {
                continue;
            }
            let closed = at.div_euclid(step) - 1;
            let from =
                if t.last_eval[ring] == i64::MIN { t.last_data[ring].min(closed) } else { t.last_eval[ring] + 1 };
            // Windows are read when a bucket with data closes: after a target's last data
            // nothing new is learnt, and nothing is dated after the input's end.
            let upto = closed.min(t.last_data[ring]);
            let mut idx = from;
            while idx <= upto {
                self.close_bucket(id, ring, idx);
                idx += 1;
            }
            if ring == RingKind::Latency && from <= upto && self.view_quantiles {
                if let Some(t) = self.target_mut(id) {
                    t.latency_view = latency_view(t);
                }
            }
            if let Some(t) = self.target_mut(id) {
                t.last_eval[ring] = t.last_eval[ring].max(closed);
                match ring {
                    RingKind::Traffic => t.traffic.evict(closed),
                    RingKind::Latency => t.latency.evict(closed),
                    RingKind::Drift => {
                        if let Some(m) = t.model.as_mut() {
                            m.drift.evict_counted(closed, |s| s.events);
                            // Closed buckets are final: they are packed, as the windows reaching
                            // back for evidence keep them for long.
                            for b in m.drift.range_mut(from, closed) {
                                b.pack();
                            }
                        }
                    }
                    RingKind::Accuracy => {
                        let frozen = t.latch.reviewed || t.latch.accuracy_episode.is_some();
                        if let Some(m) = t.model.as_mut() {
                            // The own reference grows by every bucket leaving the current
                            // window until a loss is decided on: the longer the history, the
                            // narrower its interval, and smaller losses become visible.
                            let mut grow =
                                m.accuracy_reference.as_mut().filter(|(_, rs, _)| *rs != i64::MIN && !frozen);
                            m.accuracy.evict_counted_into(
                                closed,
                                |a| a.labelled + a.numeric,
                                |i, a| {
                                    if let Some((r, _, re)) = grow.as_mut() {
                                        if i > *re {
                                            r.merge(a);
                                            *re = i;
                                        }
                                    }
                                },
                            );
                        }
                    }
                }
            }
        }
        // Next close with data still inside a window.
        let Some(t) = self.target(id) else { return };
        let mut next = None::<Millis>;
        for ring in RingKind::ALL {
            let step = t.step(ring);
            if step == i64::MAX || t.last_data[ring] == i64::MIN {
                continue;
            }
            if t.last_data[ring] > t.last_eval[ring] {
                let at = (t.last_eval[ring] + 2) * step;
                next = Some(next.map_or(at, |n: Millis| n.min(at)));
            }
        }
        if let Some(n) = next {
            self.schedule(id, n);
        }
    }

    pub(super) fn close_bucket(&mut self, id: TargetId, ring: RingKind, idx: i64) {
        match ring {
            // The traffic ring's rules run every tick (`step_candidate`), not per bucket.
            RingKind::Traffic => {}
            RingKind::Latency => {
                if self.cfg.latency.enabled {
                    self.check_latency(id, idx);
                }
            }
            RingKind::Drift => self.close_drift(id, idx),
            RingKind::Accuracy => {
                if self.cfg.accuracy.enabled {
                    self.check_accuracy_vs_reference(id, idx);
                }
            }
        }
    }
}

//! The target table: resolving (kind, name, version) to a target, creating targets and the
//! groups (apps, models) they belong to, candidates and their baselines.

use super::*;

/// A target's key in the engine's index (short keys are kept in the table itself, so a lookup
/// does not follow a pointer to compare them).
pub(super) type TargetKey = smallvec::SmallVec<[u8; 30]>;

/// The one encoding of a target in the engine's index: kind, name, NUL, version. Unambiguous
/// because names and versions hold no control character (the decoder rejects them).
pub(super) fn target_key_into(buf: &mut TargetKey, kind: Kind, name: &str, version: &str) {
    debug_assert!(!name.contains('\0'), "a target name holds NUL: {name:?}");
    buf.clear();
    buf.push(if kind == Kind::App { b'a' } else { b'm' });
    buf.extend_from_slice(name.as_bytes());
    buf.push(0);
    buf.extend_from_slice(version.as_bytes());
}

/// [`target_key_into`] a key of its own.
pub(super) fn target_key(kind: Kind, name: &str, version: &str) -> TargetKey {
    let mut key = TargetKey::new();
    target_key_into(&mut key, kind, name, version);
    key
}

/// Entry `id` of a table whose ids the engine hands out and takes back itself (targets,
/// groups). The ids the engine holds name present entries, so a missing one is a broken
/// invariant: debug builds stop on it; release builds skip the work, as they always did.
#[inline]
pub(super) fn issued<T>(table: &[Option<T>], id: u32) -> Option<&T> {
    let entry = table.get(id as usize).and_then(Option::as_ref);
    debug_assert!(entry.is_some(), "entry {id} of the engine's {} table is missing", std::any::type_name::<T>());
    entry
}

/// [`issued`], mutable.
#[inline]
pub(super) fn issued_mut<T>(table: &mut [Option<T>], id: u32) -> Option<&mut T> {
    let entry = table.get_mut(id as usize).and_then(Option::as_mut);
    debug_assert!(entry.is_some(), "entry {id} of the engine's {} table is missing", std::any::type_name::<T>());
    entry
}

impl Engine {
    pub(super) fn resolve(&mut self, kind: Kind, name: &str, version: &str, ts: Millis) -> Option<TargetId> {
        target_key_into(&mut self.key_buf, kind, name, version);
        if let Some(&id) = self.index.get(&self.key_buf) {
            self.thaw_target(id);
            return Some(id);
        }
        if self.index.len() >= self.cfg.limits.max_targets {
            self.counters.dropped_over_target_limit += 1;
            return None;
        }
        let group = self.group_of(kind, name);
        // A new version is compared with the others, which must be at hand.
        self.thaw(group);
        let windows = issued(&self.groups, group).map_or_else(|| self.cfg.windows_for(kind, name), |g| g.windows);
        let gen = self.next_gen;
        self.next_gen = self.next_gen.wrapping_add(1);
        let model = (kind == Kind::Model).then(|| {
            Box::new(ModelState {
                table: FeatureTable::new(self.cfg.limits.max_features, self.cfg.limits.max_categories),
                drift: Ring::new(windows.drift, 1),
                accuracy: Ring::new(windows.accuracy, 1),
                reference: self.profile_for(name, version),
                reference_end: i64::MIN,
                warm_first: None,
                warm_end: i64::MIN,
                warm: DriftSketch::default(),
                accuracy_reference: None,
                last_drift: Vec::new(),
                last_accuracy_drop: None,
                labels: LabelWait::default(),
                type_mismatch_reported: false,
            })
        });
        let t = Target {
            gen,
            kind,
            name: name.into(),
            version: version.into(),
            group,
            registered: false,
            first_sec: ts.div_euclid(TICK_MS),
            last_tick_sec: i64::MIN,
            last_seen: ts,
            lifetime: Traffic::default(),
            late: 0,
            traffic: Ring::new(windows.error_rate, windows.error_rate.buckets()),
            latency: Ring::new(windows.latency, windows.latency.buckets()),
            model,
            candidate: None,
            latch: Latch::default(),
            wake: None,
            last_eval: PerRing::NONE,
            last_data: PerRing::NONE,
            last_latency_ratio: None,
            latency_view: None,
            latency_total: (0, 0.0),
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.targets[id as usize] = Some(Box::new(t));
                id
            }
            None => {
                self.targets.push(Some(Box::new(t)));
                (self.targets.len() - 1) as TargetId
            }
        };
        if let Some(g) = issued_mut(&mut self.groups, group) {
            g.live += 1;
        }
        self.index.insert(self.key_buf.clone(), id);
        Some(id)
    }

    pub(super) fn profile_for(&self, model: &str, version: &str) -> Option<Arc<ModelReference>> {
        // A version-specific profile wins over a model-wide one.
        let exact = self.profiles.iter().find(|(m, v, _)| m == model && v.as_deref() == Some(version));
        let any = self.profiles.iter().find(|(m, v, _)| m == model && v.is_none());
        exact.or(any).map(|(_, _, r)| r.clone())
    }

    pub(super) fn group_of(&mut self, kind: Kind, name: &str) -> u32 {
        if let Some(&g) = self.group_index.get(&(kind, Box::from(name))) {
            return g;
        }
        let g = Group {
            kind,
            name: name.into(),
            members: Vec::new(),
            pending: VecDeque::new(),
            windows: self.cfg.windows_for(kind, name),
            pinned: self.cfg.pinned_baseline(kind, name).map(Arc::from),
            live: 0,
            dirty: true,
            frozen: None,
        };
        let id = match self.free_groups.pop() {
            Some(id) => {
                self.groups[id as usize] = Some(g);
                id
            }
            None => {
                self.groups.push(Some(g));
                (self.groups.len() - 1) as u32
            }
        };
        self.group_index.insert((kind, Box::from(name)), id);
        id
    }

    /// A target the engine holds the id of (see [`issued`]).
    #[inline]
    pub(super) fn target(&self, id: TargetId) -> Option<&Target> {
        issued(&self.targets, id).map(|t| &**t)
    }

    /// [`Engine::target`], mutable.
    #[inline]
    pub(super) fn target_mut(&mut self, id: TargetId) -> Option<&mut Target> {
        issued_mut(&mut self.targets, id).map(|t| &mut **t)
    }

    /// A target that may have been forgotten since its id was taken (a candidate's baseline,
    /// the version a pending prediction came from): the one at `id` if it is of generation
    /// `gen`.
    #[inline]
    pub(super) fn target_of_gen(&self, id: TargetId, gen: u32) -> Option<&Target> {
        self.targets.get(id as usize).and_then(Option::as_deref).filter(|t| t.gen == gen)
    }

    /// [`Engine::target_of_gen`], mutable.
    #[inline]
    pub(super) fn target_of_gen_mut(&mut self, id: TargetId, gen: u32) -> Option<&mut Target> {
        self.targets.get_mut(id as usize).and_then(Option::as_deref_mut).filter(|t| t.gen == gen)
    }

    pub(super) fn new_candidate(
        &self,
        _id: TargetId,
        b: TargetId,
        sec: i64,
        _kind: Kind,
        windows: TargetWindows,
    ) -> Option<Candidate> {
        let base = self.target(b)?;
        let er = &self.cfg.error_rate;
        let start_ms = sec * TICK_MS;
        let tw = windows.error_rate;
        let bs = tw.bucket_of(start_ms);
        let first = bs - tw.buckets() as i64;
        let pre_traffic = base.traffic.sum(first, bs - 1);
        let lw = windows.latency;
        let lb = lw.bucket_of(start_ms);
        let pre_latency = base.latency.sum(lb - lw.buckets() as i64, lb - 1);
        let pre_accuracy = base.model.as_ref().map_or_else(Accuracy::default, |m| {
            let aw = m.accuracy.spec;
            let ab = aw.bucket_of(start_ms);
            m.accuracy.sum(ab - aw.buckets() as i64, ab - 1)
        });
        let delta = er.alpha * REFERENCE_ALPHA_SHARE;
        let (lower, upper) =
            if pre_traffic.events > 0 { kl_bounds(pre_traffic.errors, pre_traffic.events, delta) } else { (0.0, 1.0) };
        let min_rel = 1.0 + er.min_relative_increase;
        let pre_rate = pre_traffic.error_rate();
        // "Not worse by the minimum effect": a rise is only worse when it is both ≥ the relative
        // and ≥ the absolute minimum, so the non-inferiority margin is the larger of the two.
        let margin = if pre_traffic.events >= 100 && pre_rate > 0.0 {
            (1.0 + er.min_absolute_increase / pre_rate).max(min_rel).min(100.0)
        } else {
            min_rel
        };
        let mut grid = vec![1.0, margin];
        let regression: Vec<f64> = geometric_grid(min_rel, 30.0_f64.max(min_rel), 1.25);
        let noninf = noninferiority_alternatives(margin);
        let regression_alts: Vec<usize> = (grid.len()..grid.len() + regression.len()).collect();
        grid.extend(regression);
        let noninferiority_alts: Vec<usize> = (grid.len()..grid.len() + noninf.len()).collect();
        grid.extend(noninf);
        let pre_noninferiority_null = (lower * min_rel).max(lower + er.min_absolute_increase).min(0.999);
        Some(Candidate {
            baseline: b,
            baseline_gen: base.gen,
            baseline_version: base.version.clone(),
            start_sec: sec,
            mode: if base.last_tick_sec >= sec - tw.step / TICK_MS { Mode::Canary } else { Mode::Rollout },
            switched_sec: None,
            ratio: RatioLikelihood::new(grid),
            regression_alts,
            noninferiority_alts,
            noninferiority_null: 1,
            cand: Tick::default(),
            base: Tick::default(),
            rollout: Traffic::default(),
            log_e_regression_at_switch: 0.0,
            log_e_noninferiority_at_switch: 0.0,
            pre: Tick { traffic: pre_traffic, accuracy: pre_accuracy },
            pre_window: (tw.bucket_start(first), tw.bucket_start(bs)),
            pre_latency,
            pre_upper: upper.min(0.999),
            pre_noninferiority_null,
            last_log_e_regression: 0.0,
            last_log_e_noninferiority: 0.0,
            noninferiority_stale: false,
        })
    }
}

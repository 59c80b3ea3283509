//! Events in: validation against the target table, per-second ticks and window buckets,
//! predictions awaiting labels and the joins that complete them.

use super::*;

impl Engine {
    /// Turns the halves whose response timeout has passed by `now` into events.
    pub(super) fn expire_pairs(&mut self, now: Millis) {
        if self.pairing.next_deadline().is_some_and(|d| d <= now) {
            let mut done = Vec::new();
            self.pairing.expire(now, &mut done);
            self.ingest_pairs(done);
        }
    }

    /// Ingests what pairing produced, as predictions and errors.
    pub(super) fn ingest_pairs(&mut self, done: Vec<pairing::Outcome>) {
        for o in done {
            let features = o.row.as_ref().map(crate::fleet::features_of).unwrap_or_default();
            let (kind, prediction, error_kind) = match &o.prediction {
                Some(p) => (EventType::Prediction, p.as_ref().map(crate::fleet::Output::outcome), None),
                None => (EventType::Error, None, Some(std::borrow::Cow::Borrowed(o.error_kind))),
            };
            let nv =
                || Some((std::borrow::Cow::Borrowed(o.name.as_str()), std::borrow::Cow::Borrowed(o.version.as_str())));
            let ev = Event {
                kind,
                ts: o.ts,
                event_id: Some(std::borrow::Cow::Borrowed(o.event_id.as_str())),
                app: nv(),
                model: nv(),
                latency_ms: o.latency_ms,
                features,
                prediction,
                label: None,
                error_kind,
                part: None,
            };
            self.ingest_valid(&ev, Share::ALL);
            self.note_time(ev.ts);
        }
    }

    /// Counts and files one valid driftwatch event (the parts of it in `share`).
    pub(super) fn ingest_valid(&mut self, ev: &Event<'_>, share: Share) {
        let type_idx = match ev.kind {
            EventType::Request => 0,
            EventType::Prediction => 1,
            EventType::Error => 2,
            EventType::Label => 3,
            EventType::Inference => return,
        };
        if share.count {
            self.counters.events[type_idx] += 1;
        }
        let late = share.late.unwrap_or(ev.ts < self.watermark);
        if ev.kind == EventType::Label {
            if let (Some(id), Some(label)) = (&ev.event_id, &ev.label) {
                if let Some(j) = self.joins.label(id, Value::of(label), ev.ts) {
                    self.apply_join(j);
                }
            }
        } else {
            if let Some((app, version)) = ev.app.as_ref().filter(|_| share.app) {
                if let Some(t) = self.resolve(Kind::App, app, version, ev.ts) {
                    self.record(t, ev, late);
                }
            }
            if let Some((model, version)) = ev.model.as_ref().filter(|_| share.model) {
                if let Some(t) = self.resolve(Kind::Model, model, version, ev.ts) {
                    self.record(t, ev, late);
                    if ev.kind == EventType::Prediction {
                        self.record_prediction(t, ev, late);
                    }
                }
            }
        }
    }

    /// Joins a label routed here by [`tasks::Tasks`] (already counted there) with its
    /// prediction, or keeps it until the prediction comes.
    pub fn join_label(&mut self, id: &str, label: Value, ts: Millis) {
        if let Some(j) = self.joins.label(id, label, ts) {
            self.apply_join(j);
        }
    }

    /// Event time `ts` was seen: the watermark follows the newest event time.
    #[inline]
    pub(super) fn note_time(&mut self, ts: Millis) {
        if self.newest_event.is_none_or(|m| ts > m) {
            self.newest_event = Some(ts);
        }
        if self.max_ts.is_none_or(|m| ts > m) {
            self.max_ts = Some(ts);
            let wm = ts - self.lateness;
            if wm > self.watermark {
                self.advance(wm);
            }
        }
    }

    pub(super) fn record(&mut self, id: TargetId, ev: &Event<'_>, late: bool) {
        let is_error = ev.kind == EventType::Error;
        let Some(t) = self.target_mut(id) else { return };
        t.lifetime.events += 1;
        t.lifetime.errors += u64::from(is_error);
        t.last_seen = t.last_seen.max(ev.ts);
        if late {
            t.late += 1;
            let group = t.group;
            self.counters.late_events += 1;
            if let Some(g) = targets::issued_mut(&mut self.groups, group) {
                g.dirty = true;
            }
            return;
        }
        let traffic = t.traffic.at(ev.ts);
        traffic.events += 1;
        traffic.errors += u64::from(is_error);
        let b = t.traffic.spec.bucket_of(ev.ts);
        t.last_data[RingKind::Traffic] = t.last_data[RingKind::Traffic].max(b);
        let mut wake = (b + 1) * t.traffic.spec.step;
        if let Some(l) = ev.latency_ms {
            t.latency.at(ev.ts).record(l);
            t.latency_total.0 += 1;
            t.latency_total.1 += l;
            let b = t.latency.spec.bucket_of(ev.ts);
            t.last_data[RingKind::Latency] = t.last_data[RingKind::Latency].max(b);
            wake = wake.min((b + 1) * t.latency.spec.step);
        }
        let group = t.group;
        let needs_wake = t.wake.is_none_or(|w| w > wake);
        let tick = Tick { traffic: Traffic { events: 1, errors: u64::from(is_error) }, accuracy: Accuracy::default() };
        self.add_tick(id, group, ev.ts.div_euclid(TICK_MS), tick);
        if needs_wake {
            self.schedule(id, wake);
        }
    }

    pub(super) fn record_prediction(&mut self, id: TargetId, ev: &Event<'_>, late: bool) {
        let Some(t) = targets::issued_mut(&mut self.targets, id) else { return };
        let gen = t.gen;
        let Some(m) = t.model.as_mut() else { return };
        if !late {
            let step = m.drift.spec.step;
            let b = m.drift.spec.bucket_of(ev.ts);
            let ModelState { table, drift, .. } = m.as_mut();
            let sketch = drift.at(ev.ts);
            // Buckets are packed once closed, and events for them are late: this is cheap.
            sketch.unpack();
            sketch.events += 1;
            for (pos, (name, value)) in ev.features.iter().enumerate() {
                let Some(idx) = table.lookup(name, pos) else {
                    continue;
                };
                match value {
                    FeatureValue::Num(x) => sketch.feature_mut(idx).add_numeric(*x),
                    FeatureValue::Str(s) => {
                        let c = table.category(idx, s);
                        sketch.feature_mut(idx).add_category(c);
                    }
                    FeatureValue::Bool(b) => {
                        let c = table.category(idx, if *b { "true" } else { "false" });
                        sketch.feature_mut(idx).add_category(c);
                    }
                    FeatureValue::Null => {}
                }
            }
            match &ev.prediction {
                Some(Outcome::Num(x)) => sketch.prediction.add_numeric(*x),
                Some(Outcome::Class(s)) => {
                    let c = table.prediction_category(s);
                    sketch.prediction.add_category(c);
                }
                None => {}
            }
            t.last_data[RingKind::Drift] = t.last_data[RingKind::Drift].max(b);
            let wake = (b + 1) * step;
            if t.wake.is_none_or(|w| w > wake) {
                self.schedule(id, wake);
            }
        }
        if !self.awaits_labels(id, ev.ts) {
            self.counters.predictions_not_awaited += 1;
            return;
        }
        if let (Some(id_str), Some(p)) = (&ev.event_id, &ev.prediction) {
            let pending = PendingPrediction { target: (id, gen), value: Value::of(p), ts: ev.ts };
            if let Some(j) = self.joins.prediction(id_str, pending) {
                self.apply_join(j);
            }
        } else if ev.prediction.is_none() {
            self.joins.counters.predictions_without_value += 1;
        }
    }

    /// Label probation: keep a version's predictions while labels arrive for it, or while it
    /// is young enough that they may still come.
    pub(super) fn awaits_labels(&mut self, id: TargetId, ts: Millis) -> bool {
        let probation = self.cfg.accuracy.label_probation.0;
        let retry = self.cfg.accuracy.max_label_delay.0;
        let Some(m) = self.target_mut(id).and_then(|t| t.model.as_mut()) else { return false };
        let w = &mut m.labels;
        if w.matched > 0 {
            return true;
        }
        if let Some(g) = w.gave_up_at {
            if ts - g < retry {
                return false;
            }
            w.gave_up_at = None;
            w.since = None;
        }
        let since = *w.since.get_or_insert(ts);
        if ts - since <= probation {
            return true;
        }
        w.gave_up_at = Some(ts);
        self.joins.forget(|&(t, _)| t == id);
        false
    }

    pub(super) fn apply_join(&mut self, j: Joined<(TargetId, u32)>) {
        let (id, gen) = j.target;
        let late = j.ts < self.watermark;
        self.thaw_target(id);
        let Some(t) = self.target_of_gen_mut(id, gen) else { return };
        if let Some(m) = t.model.as_mut() {
            m.labels.matched += 1;
        }
        let mut acc = Accuracy::default();
        match (j.prediction, j.label) {
            (Value::Num(p), Value::Num(l)) => {
                acc.numeric = 1;
                acc.abs_error_sum = (p - l).abs();
            }
            (p, l) => {
                acc.labelled = 1;
                acc.correct = u64::from(p == l);
            }
        }
        if late {
            self.counters.late_labels += 1;
            return;
        }
        let Some(m) = t.model.as_mut() else { return };
        m.accuracy.at(j.ts).merge(&acc);
        let b = m.accuracy.spec.bucket_of(j.ts);
        let wake = (b + 1) * m.accuracy.spec.step;
        t.last_data[RingKind::Accuracy] = t.last_data[RingKind::Accuracy].max(b);
        let group = t.group;
        let needs_wake = t.wake.is_none_or(|w| w > wake);
        self.add_tick(id, group, j.ts.div_euclid(TICK_MS), Tick { traffic: Traffic::default(), accuracy: acc });
        if needs_wake {
            self.schedule(id, wake);
        }
    }
}

//! The drift rule: feature and prediction distributions of a closing window against the
//! reference (profile or warm-up), by PSI; the features a drift decision names.

use crate::engine::*;

/// The features a drift decision names: those at or over the PSI threshold and, once one is,
/// those shifting with them — a quarter of the threshold and a chi-square p-value below
/// [`SHIFTING_P`] over the features compared. A step shift crosses the threshold feature by
/// feature as it fills the window; the command names every feature it moved, not only the
/// first to cross.
pub(in crate::engine) fn drifted_features(
    drift: &[crate::reference::FeatureDrift],
    threshold: f64,
) -> Vec<crate::reference::FeatureDrift> {
    if !drift.iter().any(|d| d.value >= threshold) {
        return Vec::new();
    }
    let p = SHIFTING_P / drift.len().max(1) as f64;
    drift
        .iter()
        .filter(|d| d.value >= threshold || (d.value >= threshold * SHIFTING_SHARE && d.p_value < p))
        .cloned()
        .collect()
}

/// Family-wise significance of the features named as shifting with a drifted one.
pub(in crate::engine) const SHIFTING_P: f64 = 0.001;

/// The share of the PSI threshold a feature must reach to be named as shifting with one that
/// crossed it.
pub(in crate::engine) const SHIFTING_SHARE: f64 = 0.25;

/// A drift episode ends at a window with every feature below this share of the threshold.
pub(in crate::engine) const EPISODE_CLEAR_SHARE: f64 = 0.5;

impl Engine {
    pub(in crate::engine) fn close_drift(&mut self, id: TargetId, idx: i64) {
        let dcfg = self.cfg.drift;
        let Some(t) = self.targets.get_mut(id as usize).and_then(Option::as_mut) else {
            return;
        };
        let Some(m) = t.model.as_mut() else { return };
        let spec = m.drift.spec;
        if m.reference.is_none() {
            // Warm-up: the version's first buckets, until they hold enough events.
            let Some(bucket) = m.drift.get(idx).cloned() else {
                if m.warm_first.is_some() && idx >= m.warm_end && m.warm.events >= dcfg.min_reference_events {
                    Self::freeze_reference(m, idx, &dcfg);
                }
                return;
            };
            if m.warm_first.is_none() {
                m.warm_first = Some(idx);
                m.warm_end = idx + (dcfg.warmup.0 / spec.step).max(1) - 1;
            }
            m.warm.merge(&bucket);
            if idx >= m.warm_end && m.warm.events >= dcfg.min_reference_events {
                Self::freeze_reference(m, idx, &dcfg);
            }
            return;
        }
        if m.reference_end == i64::MIN {
            // A profile: windows may start anywhere.
            m.reference_end = m.drift.iter().next().map_or(idx, |(i, _)| i - 1);
        }
        if !dcfg.enabled || t.latch.rolled_back || m.drift.get(idx).is_none() {
            return;
        }
        let (window, first, extent) = m.drift.extended_window(idx, m.reference_end + 1, |s| s.events);
        if window.events < dcfg.min_events {
            return;
        }
        let Some(reference) = m.reference.clone() else {
            return;
        };
        let drift = reference.drift(&window, &m.table, dcfg.psi_threshold);
        let drifted = drifted_features(&drift, dcfg.psi_threshold);
        let unreferenced: Vec<String> =
            reference.unreferenced(&m.table, &window).into_iter().map(str::to_owned).collect();
        let mismatched = reference.type_mismatches(&window, &m.table);
        if !mismatched.is_empty() {
            self.counters.drift_type_mismatches += mismatched.len() as u64;
            if !m.type_mismatch_reported {
                m.type_mismatch_reported = true;
                for f in mismatched.iter().take(MAX_MISMATCHES_LISTED.saturating_sub(self.type_mismatched.len())) {
                    self.type_mismatched.insert(format!("{} {}: {f}", t.name, t.version));
                }
                tracing::warn!(
                    model = %t.name,
                    version = %t.version,
                    features = ?mismatched,
                    "values of another type than the reference (numbers against categories): not compared for drift"
                );
            }
        }
        m.last_drift = drift;
        if drifted.is_empty() {
            // A window clear of drift ends the episode: every feature below half the threshold,
            // so a shift hovering about the threshold as it fills the window is one episode.
            if m.last_drift.iter().all(|d| d.value < dcfg.psi_threshold * EPISODE_CLEAR_SHARE) {
                t.latch.drift_episode = None;
            }
            return;
        }
        let decided_at = spec.bucket_start(idx + 1);
        if t.latch.last_retrain.is_some_and(|l| decided_at - l < self.cfg.retrain.cooldown.0) {
            return;
        }
        let Some((state, episode)) = Episode::due(t.latch.drift_episode, decided_at, self.cfg.retrain.reminder.0)
        else {
            return;
        };
        t.latch.drift_episode = Some(state);
        let reason =
            if drifted.iter().any(|d| d.name != "prediction") { Reason::FeatureDrift } else { Reason::PredictionDrift };
        let window_span = ev::Window::by(spec.bucket_start(first), decided_at, extent);
        let evidence = ev::to_value(&ev::Drift {
            test: "population_stability_index",
            method: "PSI on quantile bins of the reference (numeric) or reference categories with an unseen bucket (categorical), each with a missing-value bin; a feature at or over the threshold decides, and features shifting with it (PSI at least a quarter of the threshold, chi-square p-value below 0.001 over the features compared) are named too",
            statistic: "psi",
            threshold: dcfg.psi_threshold,
            drifted_features: &drifted,
            all_features: m.last_drift.iter().map(|d| ev::FeaturePsi { name: &d.name, value: d.value }).collect(),
            unreferenced_features: &unreferenced,
            type_mismatched_features: &mismatched,
            absent_features: reference.absent(&m.table),
            current: ev::DriftSide { events: window.events, window: Some(window_span), source: None },
            reference: ev::DriftSide { events: reference.events, window: None, source: Some(&reference.source) },
            min_events: dcfg.min_events,
            window: window_span,
            episode,
        });
        self.decide(id, CommandKind::Retrain, reason, decided_at, evidence, None);
    }

    pub(in crate::engine) fn freeze_reference(m: &mut ModelState, idx: i64, dcfg: &crate::config::DriftConfig) {
        let spec = m.drift.spec;
        let start = m.warm_first.map_or(0, |f| spec.bucket_start(f));
        let r = ModelReference::from_sketch(
            &m.warm,
            &m.table,
            dcfg.bins,
            dcfg.max_reference_categories,
            ReferenceSource::WarmUp { start, end: spec.bucket_start(idx + 1) },
        );
        m.reference = Some(Arc::new(r));
        m.reference_end = idx;
        m.warm = DriftSketch::default();
    }
}

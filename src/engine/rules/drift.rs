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
        let Some(t) = targets::issued_mut(&mut self.targets, id) else { return };
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

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::command::{CommandKind, Reason};
    use crate::config::{Config, Duration};
    use crate::time::Millis;

    /// End of the warm-up reference of [`drifting`]: its first ten minutes.
    const REFERENCE_END: Millis = T0 + 10 * MIN;

    /// Values of `x` spread evenly over [0, 1).
    fn even(n: u64) -> f64 {
        ((n * 37) % 100) as f64 / 100.0 + 0.005
    }

    /// Values of `x` moved to [0.5, 1): drift far over any threshold.
    fn moved(n: u64) -> f64 {
        0.5 + even(n) / 2.0
    }

    /// 15% of the values piled at 0.95, the rest spread evenly: a PSI of about 0.14.
    fn piled(n: u64) -> f64 {
        if n % 20 < 3 {
            0.95
        } else {
            even(n)
        }
    }

    /// Values of `x`, by event number.
    type Values = fn(u64) -> f64;

    /// Model `fraud` 1, two predictions a second: feature `x` spread evenly over the warm-up
    /// reference (the first ten minutes), then from each `(minutes, x)` in turn.
    fn drifting(phases: &[(i64, Values)]) -> Stream {
        let mut s = Stream::default();
        let row = |x: f64| (format!(r#"{{"x":{x}}}"#), "0.5".to_owned(), None);
        s.model("fraud", "1", (T0, REFERENCE_END), 2, |n| row(even(n)));
        let mut at = REFERENCE_END;
        for &(minutes, x) in phases {
            s.model("fraud", "1", (at, at + minutes * MIN), 2, |n| row(x(n)));
            at += minutes * MIN;
        }
        s
    }

    fn retrains(cmds: &[crate::command::Command]) -> Vec<&crate::command::Command> {
        of(cmds, CommandKind::Retrain, "1")
    }

    /// 120 events a minute after the reference: the first window with 1,000 of them (nine
    /// minutes) decides; a minimum over the 1,800 there are is never met.
    #[test]
    fn retrain_waits_for_min_events_in_the_window() {
        let s = drifting(&[(15, moved)]);
        let cmds = s.commands(Config::default());
        let c = only(&cmds, CommandKind::Retrain, Reason::FeatureDrift, "1");
        let events = num(c, "current.events");
        assert!((1_000.0..1_120.0).contains(&events), "current events {events}");
        assert_eq!(num(c, "min_events"), 1_000.0);
        assert_eq!(c.decided_at, REFERENCE_END + 9 * MIN);
        assert_eq!(num(c, "reference.events"), 1_200.0);

        let cmds = s.commands(config(|c| c.drift.min_events = 2_000));
        assert_none(&cmds, CommandKind::Retrain, "1");
    }

    /// A PSI of about 0.14: under the default threshold of 0.2 nothing, under 0.1 a retrain
    /// naming `x` with its PSI.
    #[test]
    fn retrain_at_the_psi_threshold() {
        let s = drifting(&[(20, piled)]);
        let cmds = s.commands(Config::default());
        assert_none(&cmds, CommandKind::Retrain, "1");

        let cmds = s.commands(config(|c| c.drift.psi_threshold = 0.1));
        let c = only(&cmds, CommandKind::Retrain, Reason::FeatureDrift, "1");
        assert_eq!(text(c, "statistic"), "psi");
        assert_eq!(num(c, "threshold"), 0.1);
        let drifted = c.evidence["drifted_features"].as_array().expect("drifted_features");
        assert_eq!(drifted.len(), 1, "{}", c.evidence);
        assert_eq!(drifted[0]["name"], "x");
        let psi = drifted[0]["value"].as_f64().expect("a PSI");
        assert!((0.1..0.2).contains(&psi), "PSI {psi}");
        assert_eq!(drifted[0]["threshold"], 0.1);
    }

    /// Steady features and a prediction that moved: `prediction_drift`, naming the prediction.
    #[test]
    fn a_moved_prediction_is_prediction_drift() {
        let mut s = Stream::default();
        let row = |x: f64, p: f64| (format!(r#"{{"x":{x}}}"#), format!("{p}"), None);
        s.model("fraud", "1", (T0, REFERENCE_END), 2, |n| row(even(n), even(n + 11)));
        s.model("fraud", "1", (REFERENCE_END, REFERENCE_END + 15 * MIN), 2, |n| row(even(n), moved(n + 11)));
        let cmds = s.commands(Config::default());
        let c = only(&cmds, CommandKind::Retrain, Reason::PredictionDrift, "1");
        let drifted = c.evidence["drifted_features"].as_array().expect("drifted_features");
        let names: Vec<&str> = drifted.iter().filter_map(|d| d["name"].as_str()).collect();
        assert_eq!(names, ["prediction"], "{}", c.evidence);
    }

    /// Drift for half an hour, half an hour without (the episode ends), drift again: a second
    /// retrain only when the cooldown has passed since the first.
    #[test]
    fn retrain_again_only_after_the_cooldown() {
        let s = drifting(&[(30, moved), (30, even), (30, moved)]);
        let cmds = s.commands(Config::default());
        assert_eq!(retrains(&cmds).len(), 1, "6 h cooldown: {}", list(&cmds));

        let cmds = s.commands(config(|c| c.retrain.cooldown = Duration(45 * MIN)));
        let r = retrains(&cmds);
        assert_eq!(r.len(), 2, "45 min cooldown: {}", list(&cmds));
        assert!(r[1].decided_at - r[0].decided_at >= 45 * MIN, "{}", list(&cmds));
        assert!(r[1].decided_at >= REFERENCE_END + 60 * MIN, "the second is for the second shift");
        for c in r {
            assert_eq!(text(c, "episode.why"), "new_episode");
            assert_eq!(num(c, "episode.retrains"), 1.0);
        }
    }

    /// Drift lasting five hours: one retrain, then a reminder every `retrain.reminder`, never
    /// closer than the cooldown.
    #[test]
    fn a_lasting_episode_is_reminded_of() {
        let s = drifting(&[(300, moved)]);
        let cmds = s.commands(Config::default());
        assert_eq!(retrains(&cmds).len(), 1, "30 d reminder: {}", list(&cmds));

        for (reminder, cooldown, gap, count) in [(120, 60, 120, 3), (60, 180, 180, 2)] {
            let cmds = s.commands(config(|c| {
                c.retrain.reminder = Duration(reminder * MIN);
                c.retrain.cooldown = Duration(cooldown * MIN);
            }));
            let r = retrains(&cmds);
            assert_eq!(r.len(), count, "reminder {reminder} min, cooldown {cooldown} min: {}", list(&cmds));
            for (i, c) in r.iter().enumerate() {
                assert_eq!(num(c, "episode.retrains"), (i + 1) as f64);
                assert_eq!(text(c, "episode.why"), if i == 0 { "new_episode" } else { "reminder" });
                if i > 0 {
                    assert_eq!(c.decided_at - r[i - 1].decided_at, gap * MIN, "{}", list(&cmds));
                    assert_eq!(num(c, "episode.reminder_ms"), (reminder * MIN) as f64);
                    assert_eq!(text(c, "episode.started_at"), crate::time::format_rfc3339(r[0].decided_at));
                }
            }
        }
    }
}

//! The latency rule: a candidate's quantile against its baseline's over the same buckets (or the
//! pre-switch window, after a full rollout).

use crate::engine::*;

#[derive(Debug, Clone)]
pub(in crate::engine) struct LatencyComparison {
    pub(in crate::engine) quantile: f64,
    pub(in crate::engine) candidate: f64,
    pub(in crate::engine) baseline: f64,
    pub(in crate::engine) ratio: f64,
    pub(in crate::engine) candidate_count: u64,
    pub(in crate::engine) baseline_count: u64,
    candidate_p50: f64,
    baseline_p50: f64,
    pub(in crate::engine) mode: &'static str,
    pub(in crate::engine) window: (Millis, Millis),
    pub(in crate::engine) baseline_window: (Millis, Millis),
}

impl LatencyComparison {
    /// The comparison as evidence; `threshold` is the rollback ratio (none in a promote).
    pub(in crate::engine) fn evidence(&self, threshold: Option<f64>) -> ev::Latency {
        ev::Latency {
            test: "latency_quantile_ratio",
            mode: self.mode,
            statistic: format!("p{}_ratio", (self.quantile * 100.0).round()),
            value: self.ratio,
            quantile: self.quantile,
            candidate: ev::LatencyArm {
                events: self.candidate_count,
                quantile_ms: self.candidate,
                p50_ms: self.candidate_p50,
                window: None,
            },
            baseline: ev::LatencyArm {
                events: self.baseline_count,
                quantile_ms: self.baseline,
                p50_ms: self.baseline_p50,
                window: Some(ev::Window::new(self.baseline_window.0, self.baseline_window.1)),
            },
            window: ev::Window::new(self.window.0, self.window.1),
            threshold,
        }
    }
}

/// The smallest baseline quantile divided by: below the histogram's resolution a ratio means
/// nothing.
pub(in crate::engine) const MIN_BASELINE_QUANTILE_MS: f64 = 0.1;

impl Engine {
    pub(in crate::engine) fn latency_comparison(&self, id: TargetId, idx: i64) -> Option<LatencyComparison> {
        let t = self.target(id)?;
        let c = t.candidate.as_ref()?;
        let spec = t.latency.spec;
        let (cand, first) = t.latency.window(idx, i64::MIN, Latency::count);
        let base_t = self.target_of_gen(c.baseline, c.baseline_gen);
        let same_span = base_t.map(|b| b.latency.sum(first, idx));
        let min = self.cfg.latency.min_events;
        let (base, mode, bw) = match same_span {
            Some(b) if b.count() >= min => (b, "canary", (spec.bucket_start(first), spec.bucket_start(idx + 1))),
            _ => (c.pre_latency.clone(), "full_rollout", c.pre_window),
        };
        if cand.count() < min || base.count() < min {
            return None;
        }
        let q = self.cfg.latency.quantile;
        let cq = cand.quantile_ms(q)?;
        let bq = base.quantile_ms(q)?.max(MIN_BASELINE_QUANTILE_MS);
        Some(LatencyComparison {
            quantile: q,
            candidate: cq,
            baseline: bq,
            ratio: cq / bq,
            candidate_count: cand.count(),
            baseline_count: base.count(),
            candidate_p50: cand.quantile_ms(0.5).unwrap_or(0.0),
            baseline_p50: base.quantile_ms(0.5).unwrap_or(0.0),
            mode,
            window: (spec.bucket_start(first), spec.bucket_start(idx + 1)),
            baseline_window: bw,
        })
    }

    pub(in crate::engine) fn check_latency(&mut self, id: TargetId, idx: i64) {
        let Some(t) = self.target(id) else { return };
        if t.latch.rolled_back || t.candidate.is_none() || t.latency.get(idx).is_none() {
            return;
        }
        let Some(l) = self.latency_comparison(id, idx) else {
            return;
        };
        if let Some(t) = self.target_mut(id) {
            t.last_latency_ratio = Some(l.ratio);
        }
        let Some(t) = self.target(id) else { return };
        if l.ratio < self.cfg.latency.max_ratio {
            return;
        }
        let baseline = t.candidate.as_ref().map(|c| c.baseline_version.clone());
        let decided_at = l.window.1;
        let evidence = ev::to_value(&l.evidence(Some(self.cfg.latency.max_ratio)));
        self.decide(id, CommandKind::Rollback, Reason::Latency, decided_at, evidence, baseline);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::command::{CommandKind, Reason};
    use crate::config::Config;

    /// A canary twice as slow, 120 latencies a minute on each side: decided on the first bucket
    /// whose window holds the minimum on both sides.
    #[test]
    fn rollback_waits_for_min_events_in_the_window() {
        let s = canary(15, 2, (0, latency(1.0)), (0, latency(2.0)));
        for (min, minutes) in [(500, 5), (700, 6)] {
            let cmds = s.commands(config(|c| c.latency.min_events = min));
            let c = only(&cmds, CommandKind::Rollback, Reason::Latency, "2.0");
            assert_decided_at_minimum(c, "events", min, 120);
            assert_eq!(c.decided_at, CANARY_START + minutes * MIN, "min {min}");
            assert_eq!(text(c, "mode"), "canary");
            assert_eq!(c.target.baseline_version.as_deref(), Some("1.0"));
        }
        // A 10-minute window holds 1,200 events a side: a minimum above that is never met.
        let cmds = s.commands(config(|c| c.latency.min_events = 1_300));
        assert_none(&cmds, CommandKind::Rollback, "2.0");
    }

    /// A canary 30% slower at p99: under the default ratio of 1.5 it stays, under 1.2 it is
    /// rolled back, with the ratio and the threshold in the evidence.
    #[test]
    fn rollback_at_max_ratio() {
        let s = canary(15, 2, (0, latency(1.0)), (0, latency(1.3)));
        let cmds = s.commands(Config::default());
        assert_none(&cmds, CommandKind::Rollback, "2.0");

        let cmds = s.commands(config(|c| c.latency.max_ratio = 1.2));
        let c = only(&cmds, CommandKind::Rollback, Reason::Latency, "2.0");
        assert_eq!(text(c, "statistic"), "p99_ratio");
        assert_eq!(num(c, "threshold"), 1.2);
        assert_eq!(num(c, "quantile"), 0.99);
        let ratio = num(c, "value");
        assert!((1.25..1.35).contains(&ratio), "p99 ratio {ratio}");
        let (cq, bq) = (num(c, "candidate.quantile_ms"), num(c, "baseline.quantile_ms"));
        assert!((cq / bq - ratio).abs() < 1e-9 && bq > 140.0 && bq < 155.0, "{}", c.evidence);
    }
}

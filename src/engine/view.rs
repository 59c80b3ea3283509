//! What the engine shows of each target to views (terminal, HTTP): its state, its detectors'
//! latest statistics against their thresholds, its latency quantiles.

use super::*;

/// What the engine knows of one target, for views (terminal, HTTP).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TargetOverview {
    /// `app` or `model`.
    pub kind: Kind,
    /// App or model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// The version it is compared with, when it is a candidate.
    pub baseline: Option<String>,
    /// Event time of the first event seen (start of its first second).
    pub first_seen: Millis,
    /// Event time of the newest event seen.
    pub last_seen: Millis,
    /// Events since first seen.
    pub events: u64,
    /// Errors since first seen.
    pub errors: u64,
    /// Events that arrived after the watermark.
    pub late: u64,
    /// The current error-rate window: [start, end) in event time.
    pub window: (Millis, Millis),
    /// Events in the current error-rate window.
    pub window_events: u64,
    /// Errors in the current error-rate window.
    pub window_errors: u64,
    /// Error rate in the current window.
    pub window_error_rate: f64,
    /// Latency quantiles (p50, p90, p99) in the latency window ending with the newest closed
    /// bucket that held latencies (none once that window no longer overlaps the current one).
    pub latency_ms: Option<[f64; 3]>,
    /// Latency samples and their sum in milliseconds, since first seen.
    pub latency_total: (u64, f64),
    /// Current e-value of the error-rate test (candidates).
    pub error_rate_e_value: Option<f64>,
    /// Latest drift statistic per feature (models).
    pub drift: Vec<(String, f64)>,
    /// Labels joined to this version's predictions, and the labelled share of its predictions
    /// (models that receive labels).
    pub labels: Option<(u64, f64)>,
    /// Each detector's latest statistic and threshold.
    pub detectors: Vec<DetectorStatus>,
    /// healthy, suspect, rolled_back, retrain, review or promoted.
    pub state: &'static str,
    /// A rollback is decided (latched).
    pub rolled_back: bool,
    /// A promotion is decided (latched), whatever was decided after it.
    pub promoted: bool,
}

/// A detector's latest statistic against its threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectorStatus {
    /// `error_rate`, `promote`, `latency`, `drift` or `accuracy`.
    pub detector: &'static str,
    /// The feature, for drift (`prediction` for the output).
    pub feature: Option<String>,
    /// What `value` measures (`e_value`, `p99_ratio`, `psi`, `accuracy_drop_lower_bound`).
    pub statistic: String,
    /// Latest value; `None` until the detector has enough data.
    pub value: Option<f64>,
    /// The detector decides when `value` reaches this.
    pub threshold: f64,
}

/// Latency p50, p90 and p99 of `t`'s window ending with its newest closed bucket that held
/// latencies, and that bucket.
pub(in crate::engine) fn latency_view(t: &Target) -> Option<(i64, [f64; 3])> {
    let idx = t.last_eval[RingKind::Latency].min(t.last_data[RingKind::Latency]);
    if idx == i64::MIN {
        return None;
    }
    let (lat, _) = t.latency.window(idx, i64::MIN, Latency::count);
    match (lat.quantile_ms(0.5), lat.quantile_ms(0.9), lat.quantile_ms(0.99)) {
        (Some(a), Some(b), Some(c)) => Some((idx, [a, b, c])),
        _ => None,
    }
}

impl Engine {
    /// Keeps each target's latency quantiles for [`Self::overview`] up to date as its latency
    /// buckets close, so that building a view costs no histogram merges; for drivers that
    /// publish views often. Off: [`Self::overview`] computes them.
    pub fn keep_view_quantiles(&mut self, on: bool) {
        self.view_quantiles = on;
        if on {
            for t in self.targets.iter_mut().flatten() {
                t.latency_view = latency_view(t);
            }
        }
    }

    /// A summary of every tracked target, sorted by kind, name and version.
    pub fn overview(&self) -> Vec<TargetOverview> {
        let mut out: Vec<TargetOverview> = self.targets.iter().flatten().map(|t| self.target_overview(t)).collect();
        out.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
        out
    }

    pub(in crate::engine) fn target_overview(&self, t: &Target) -> TargetOverview {
        let w = self.watermark.max(0);
        let tb = t.traffic.spec.bucket_of(w);
        let (window, first) = t.traffic.window(tb, i64::MIN, |x| x.events);
        // Quantiles of the latest closed latency window, while it still overlaps the current one.
        let lb = t.latency.spec.bucket_of(w);
        let view = if self.view_quantiles { t.latency_view } else { latency_view(t) };
        let latency_ms = view.filter(|(idx, _)| idx + t.latency.spec.buckets() as i64 > lb).map(|(_, q)| q);
        let er_threshold = self.error_rate_threshold();
        let state = if t.latch.rolled_back {
            "rolled_back"
        } else if t.latch.last_retrain.is_some() {
            "retrain"
        } else if t.latch.reviewed {
            "review"
        } else if t.latch.promoted {
            "promoted"
        } else if t.candidate.as_ref().is_some_and(|c| c.last_log_e_regression > 0.5 * er_threshold) {
            "suspect"
        } else {
            "healthy"
        };
        let mut detectors = Vec::new();
        if let Some(c) = t.candidate.as_ref() {
            detectors.push(DetectorStatus {
                detector: "error_rate",
                feature: None,
                statistic: "e_value".into(),
                value: Some(c.last_log_e_regression.exp()),
                threshold: er_threshold.exp(),
            });
            detectors.push(DetectorStatus {
                detector: "promote",
                feature: None,
                statistic: "e_value".into(),
                value: Some(c.last_log_e_noninferiority.exp()),
                threshold: 1.0 / self.cfg.error_rate.alpha,
            });
            if self.cfg.latency.enabled {
                detectors.push(DetectorStatus {
                    detector: "latency",
                    feature: None,
                    statistic: format!("p{}_ratio", (self.cfg.latency.quantile * 100.0).round()),
                    value: t.last_latency_ratio,
                    threshold: self.cfg.latency.max_ratio,
                });
            }
        }
        let mut labels = None;
        if let Some(m) = t.model.as_ref() {
            for d in &m.last_drift {
                detectors.push(DetectorStatus {
                    detector: "drift",
                    feature: Some(d.name.clone()),
                    statistic: "psi".into(),
                    value: Some(d.value),
                    threshold: d.threshold,
                });
            }
            if self.cfg.accuracy.enabled && (m.labels.matched > 0 || m.last_accuracy_drop.is_some()) {
                detectors.push(DetectorStatus {
                    detector: "accuracy",
                    feature: None,
                    statistic: "accuracy_drop_lower_bound".into(),
                    value: m.last_accuracy_drop,
                    threshold: self.cfg.accuracy.rollback_drop,
                });
            }
            if m.labels.matched > 0 {
                let coverage = m.labels.matched as f64 / t.lifetime.events.max(1) as f64;
                labels = Some((m.labels.matched, coverage.min(1.0)));
            }
        }
        let spec = t.traffic.spec;
        TargetOverview {
            kind: t.kind,
            name: t.name.to_string(),
            version: t.version.to_string(),
            baseline: t.candidate.as_ref().map(|c| c.baseline_version.to_string()),
            first_seen: t.first_sec.saturating_mul(TICK_MS),
            last_seen: t.last_seen,
            events: t.lifetime.events,
            errors: t.lifetime.errors,
            late: t.late,
            window: (spec.bucket_start(first.min(tb)), spec.bucket_start(tb + 1)),
            window_events: window.events,
            window_errors: window.errors,
            window_error_rate: window.error_rate(),
            latency_ms,
            latency_total: t.latency_total,
            error_rate_e_value: t.candidate.as_ref().map(|c| c.last_log_e_regression.exp()),
            drift: t
                .model
                .as_ref()
                .map(|m| m.last_drift.iter().map(|d| (d.name.clone(), d.value)).collect())
                .unwrap_or_default(),
            labels,
            detectors,
            state,
            rolled_back: t.latch.rolled_back,
            promoted: t.latch.promoted,
        }
    }
}

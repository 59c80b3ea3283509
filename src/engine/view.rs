//! What the engine shows of each target to views (terminal, HTTP): its state, its detectors'
//! latest statistics against their thresholds, its latency quantiles.

use std::fmt;
use std::str::FromStr;

use super::*;
use crate::reference::FeatureDrift;
use crate::window::WindowSpec;

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
    /// Where it stands.
    pub state: TargetState,
    /// A rollback is decided (latched).
    pub rolled_back: bool,
    /// A promotion is decided (latched), whatever was decided after it.
    pub promoted: bool,
}

/// A detector's latest statistic against its threshold.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct DetectorStatus {
    /// Which detector.
    pub detector: Detector,
    /// The feature, for drift (`prediction` for the output).
    pub feature: Option<String>,
    /// What `value` measures (`e_value`, `p99_ratio`, `psi`, `accuracy_drop_lower_bound`).
    pub statistic: String,
    /// Latest value; `None` until the detector has enough data.
    pub value: Option<f64>,
    /// The detector decides when `value` reaches this.
    pub threshold: f64,
}

/// Where a target stands, as views show it: the latest decision latched for it, else whether
/// its error-rate test is past half its threshold. Its wire name is snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TargetState {
    /// Nothing decided, nothing suspicious.
    Healthy,
    /// A candidate whose error-rate test is past half its threshold (log scale), nothing decided.
    Suspect,
    /// A rollback is decided.
    RolledBack,
    /// A retrain is decided.
    Retrain,
    /// A review is decided.
    Review,
    /// A promotion is decided.
    Promoted,
}

/// How an alert shows a target whose state is a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finding {
    /// The finding's name: rollback, retrain, review or suspect.
    pub name: &'static str,
    /// critical, warning or info.
    pub severity: &'static str,
    /// The alert's state: firing once a command is decided, pending before.
    pub alert_state: &'static str,
    /// The command that stands behind the finding, if any.
    pub command: Option<CommandKind>,
}

impl TargetState {
    /// Every state, in the order of the HTTP API's documentation.
    pub const ALL: [TargetState; 6] = [
        TargetState::Healthy,
        TargetState::Suspect,
        TargetState::RolledBack,
        TargetState::Retrain,
        TargetState::Review,
        TargetState::Promoted,
    ];

    /// The states that are findings, most severe first (the order of the findings metric).
    pub const FINDINGS: [TargetState; 4] =
        [TargetState::RolledBack, TargetState::Retrain, TargetState::Review, TargetState::Suspect];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Healthy => "healthy",
            TargetState::Suspect => "suspect",
            TargetState::RolledBack => "rolled_back",
            TargetState::Retrain => "retrain",
            TargetState::Review => "review",
            TargetState::Promoted => "promoted",
        }
    }

    /// The finding this state is, if it is one.
    pub fn finding(self) -> Option<Finding> {
        let (name, severity, alert_state, command) = match self {
            TargetState::RolledBack => ("rollback", "critical", "firing", Some(CommandKind::Rollback)),
            TargetState::Retrain => ("retrain", "warning", "firing", Some(CommandKind::Retrain)),
            TargetState::Review => ("review", "warning", "firing", Some(CommandKind::Review)),
            TargetState::Suspect => ("suspect", "info", "pending", None),
            TargetState::Healthy | TargetState::Promoted => return None,
        };
        Some(Finding { name, severity, alert_state, command })
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for TargetState {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<TargetState, UnknownName> {
        UnknownName::find(s, &TargetState::ALL, TargetState::as_str)
    }
}

/// A detector whose latest statistic views show. Its wire name is snake_case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// The candidate's error-rate regression test (e-value).
    ErrorRate,
    /// The candidate's error-rate non-inferiority test that promotes it (e-value).
    Promote,
    /// The candidate/baseline latency quantile ratio.
    Latency,
    /// A feature's (or the prediction's) PSI against the reference.
    Drift,
    /// The lower confidence bound of the accuracy drop.
    Accuracy,
}

impl Detector {
    /// Every detector, in the order a target lists them.
    pub const ALL: [Detector; 5] =
        [Detector::ErrorRate, Detector::Promote, Detector::Latency, Detector::Drift, Detector::Accuracy];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::ErrorRate => "error_rate",
            Detector::Promote => "promote",
            Detector::Latency => "latency",
            Detector::Drift => "drift",
            Detector::Accuracy => "accuracy",
        }
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for Detector {
    type Err = UnknownName;

    fn from_str(s: &str) -> Result<Detector, UnknownName> {
        UnknownName::find(s, &Detector::ALL, Detector::as_str)
    }
}

/// A name that is none of a closed set's (a state, a detector, a query parameter's values).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be one of {}, got `{got}`", expected.join(", "))]
pub struct UnknownName {
    /// The name given.
    pub got: String,
    /// The names known, in order.
    pub expected: Vec<&'static str>,
}

impl UnknownName {
    /// The member of `all` whose `name` is `s`.
    pub fn find<T: Copy>(s: &str, all: &[T], name: fn(T) -> &'static str) -> Result<T, UnknownName> {
        all.iter()
            .copied()
            .find(|x| name(*x) == s)
            .ok_or_else(|| UnknownName { got: s.to_owned(), expected: all.iter().map(|x| name(*x)).collect() })
    }
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
        // Frozen versions' summaries were taken with the other setting.
        self.thaw_all();
        if on {
            for t in self.targets.iter_mut().flatten() {
                t.latency_view = latency_view(t);
            }
        }
    }

    /// A summary of every tracked target, sorted by kind, name and version.
    pub fn overview(&self) -> Vec<TargetOverview> {
        let mut out: Vec<TargetOverview> = self.targets.iter().flatten().map(|t| self.target_overview(t)).collect();
        for g in self.groups.iter().flatten() {
            if let Some(f) = g.frozen.as_ref() {
                let traffic = Ring::new(g.windows.error_rate, 0);
                out.extend(f.summaries().map(|s| self.render(s.parts(), &traffic, g.windows.latency)));
            }
        }
        out.sort_by(|a, b| (a.kind, &a.name, &a.version).cmp(&(b.kind, &b.name, &b.version)));
        out
    }

    pub(in crate::engine) fn target_overview(&self, t: &Target) -> TargetOverview {
        self.render(self.parts(t), &t.traffic, t.latency.spec)
    }

    /// What the overview of `t` shows apart from its current error-rate window.
    fn parts<'a>(&self, t: &'a Target) -> Parts<'a> {
        Parts {
            shown: self.shown(t),
            name: &t.name,
            version: &t.version,
            candidate: t.candidate.as_ref().map(|c| {
                (
                    &*c.baseline_version,
                    c.last_log_e_regression,
                    c.log_e_noninferiority(self.cfg.error_rate.min_absolute_increase),
                )
            }),
            model: t.model.as_ref().map(|m| (&m.last_drift[..], m.last_accuracy_drop, m.labels.matched)),
        }
    }

    /// The plain values the overview of `t` shows.
    fn shown(&self, t: &Target) -> Shown {
        Shown {
            kind: t.kind,
            first_sec: t.first_sec,
            last_seen: t.last_seen,
            lifetime: t.lifetime,
            late: t.late,
            latency_total: t.latency_total,
            latency: if self.view_quantiles { t.latency_view } else { latency_view(t) },
            last_latency_ratio: t.last_latency_ratio,
            latch: Marks::of(&t.latch),
        }
    }

    /// The overview of a target made of `p`, its error-rate ring `traffic` and the shape of
    /// its latency windows.
    fn render(&self, parts: Parts<'_>, traffic: &Ring<Traffic>, latency: WindowSpec) -> TargetOverview {
        let p = parts.shown;
        let w = self.watermark.max(0);
        let spec = traffic.spec;
        let tb = spec.bucket_of(w);
        let (window, first) = traffic.window(tb, i64::MIN, |x| x.events);
        // Quantiles of the latest closed latency window, while it still overlaps the current one.
        let lb = latency.bucket_of(w);
        let latency_ms = p.latency.filter(|(idx, _)| idx + latency.buckets() as i64 > lb).map(|(_, q)| q);
        let er_threshold = self.error_rate_threshold();
        let state = if p.latch.rolled_back {
            TargetState::RolledBack
        } else if p.latch.retrain {
            TargetState::Retrain
        } else if p.latch.reviewed {
            TargetState::Review
        } else if p.latch.promoted {
            TargetState::Promoted
        } else if parts.candidate.is_some_and(|(_, e, _)| e > 0.5 * er_threshold) {
            TargetState::Suspect
        } else {
            TargetState::Healthy
        };
        let mut detectors = Vec::new();
        if let Some((_, log_e_regression, log_e_noninferiority)) = parts.candidate {
            detectors.push(DetectorStatus {
                detector: Detector::ErrorRate,
                feature: None,
                statistic: "e_value".into(),
                value: Some(log_e_regression.exp()),
                threshold: er_threshold.exp(),
            });
            detectors.push(DetectorStatus {
                detector: Detector::Promote,
                feature: None,
                statistic: "e_value".into(),
                value: Some(log_e_noninferiority.exp()),
                threshold: 1.0 / self.cfg.error_rate.alpha,
            });
            if self.cfg.latency.enabled {
                detectors.push(DetectorStatus {
                    detector: Detector::Latency,
                    feature: None,
                    statistic: format!("p{}_ratio", (self.cfg.latency.quantile * 100.0).round()),
                    value: p.last_latency_ratio,
                    threshold: self.cfg.latency.max_ratio,
                });
            }
        }
        let mut labels = None;
        if let Some((last_drift, last_accuracy_drop, matched)) = parts.model {
            for d in last_drift {
                detectors.push(DetectorStatus {
                    detector: Detector::Drift,
                    feature: Some(d.name.clone()),
                    statistic: "psi".into(),
                    value: Some(d.value),
                    threshold: d.threshold,
                });
            }
            if self.cfg.accuracy.enabled && (matched > 0 || last_accuracy_drop.is_some()) {
                detectors.push(DetectorStatus {
                    detector: Detector::Accuracy,
                    feature: None,
                    statistic: "accuracy_drop_lower_bound".into(),
                    value: last_accuracy_drop,
                    threshold: self.cfg.accuracy.rollback_drop,
                });
            }
            if matched > 0 {
                let coverage = matched as f64 / p.lifetime.events.max(1) as f64;
                labels = Some((matched, coverage.min(1.0)));
            }
        }
        TargetOverview {
            kind: p.kind,
            name: parts.name.to_string(),
            version: parts.version.to_string(),
            baseline: parts.candidate.map(|(b, _, _)| b.to_string()),
            first_seen: p.first_sec.saturating_mul(TICK_MS),
            last_seen: p.last_seen,
            events: p.lifetime.events,
            errors: p.lifetime.errors,
            late: p.late,
            window: (spec.bucket_start(first.min(tb)), spec.bucket_start(tb + 1)),
            window_events: window.events,
            window_errors: window.errors,
            window_error_rate: window.error_rate(),
            latency_ms,
            latency_total: p.latency_total,
            error_rate_e_value: parts.candidate.map(|(_, e, _)| e.exp()),
            drift: parts
                .model
                .map(|(d, _, _)| d.iter().map(|d| (d.name.clone(), d.value)).collect())
                .unwrap_or_default(),
            labels,
            detectors,
            state,
            rolled_back: p.latch.rolled_back,
            promoted: p.latch.promoted,
        }
    }
}

/// The latches a view shows.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct Marks {
    rolled_back: bool,
    retrain: bool,
    reviewed: bool,
    promoted: bool,
}

impl Marks {
    fn of(l: &Latch) -> Marks {
        Marks {
            rolled_back: l.rolled_back,
            retrain: l.last_retrain.is_some(),
            reviewed: l.reviewed,
            promoted: l.promoted,
        }
    }
}

/// What a target's overview shows apart from its current error-rate window, read from a live
/// target or from a frozen one's [`Summary`].
#[derive(Debug, Clone, Copy)]
struct Parts<'a> {
    shown: Shown,
    name: &'a str,
    version: &'a str,
    /// Baseline version, log e-values of the regression and non-inferiority tests.
    candidate: Option<(&'a str, f64, f64)>,
    /// Latest drift per feature, latest accuracy drop bound, labels joined.
    model: Option<(&'a [FeatureDrift], Option<f64>, u64)>,
}

/// The plain values a target's overview shows.
#[derive(Debug, Clone, Copy)]
struct Shown {
    kind: Kind,
    first_sec: i64,
    last_seen: Millis,
    lifetime: Traffic,
    late: u64,
    latency_total: (u64, f64),
    /// The latest latency view (bucket, quantiles), shown while its window overlaps the current one.
    latency: Option<(i64, [f64; 3])>,
    last_latency_ratio: Option<f64>,
    latch: Marks,
}

/// A frozen target's overview (apart from its current window, empty while it is frozen), and
/// its view-only state, which is not part of its stored copy: given back when it thaws.
#[derive(Debug)]
pub(in crate::engine) struct Summary {
    shown: Shown,
    name: Arc<str>,
    version: Arc<str>,
    candidate: Option<Box<(Arc<str>, f64, f64)>>,
    /// View-only state of the target (with `shown.last_latency_ratio`).
    latency_view: Option<(i64, [f64; 3])>,
    model: Option<Box<ModelSummary>>,
}

/// A frozen model version's view-only state.
#[derive(Debug)]
struct ModelSummary {
    last_drift: Vec<FeatureDrift>,
    last_accuracy_drop: Option<f64>,
    matched: u64,
    type_mismatch_reported: bool,
}

impl Engine {
    /// Takes the view-only state out of `t`, which is about to be frozen, and keeps what its
    /// overview shows.
    pub(in crate::engine) fn summary_of(&self, t: &mut Target) -> Summary {
        let shown = self.shown(t);
        let min_increase = self.cfg.error_rate.min_absolute_increase;
        let candidate = t.candidate.as_ref().map(|c| {
            Box::new((c.baseline_version.clone(), c.last_log_e_regression, c.log_e_noninferiority(min_increase)))
        });
        t.last_latency_ratio = None;
        Summary {
            shown,
            name: t.name.clone(),
            version: t.version.clone(),
            candidate,
            latency_view: t.latency_view.take(),
            model: t.model.as_mut().map(|m| {
                Box::new(ModelSummary {
                    last_drift: std::mem::take(&mut m.last_drift),
                    last_accuracy_drop: m.last_accuracy_drop.take(),
                    matched: m.labels.matched,
                    type_mismatch_reported: m.type_mismatch_reported,
                })
            }),
        }
    }
}

impl Summary {
    fn parts(&self) -> Parts<'_> {
        Parts {
            shown: self.shown,
            name: &self.name,
            version: &self.version,
            candidate: self.candidate.as_deref().map(|(b, r, n)| (&**b, *r, *n)),
            model: self.model.as_deref().map(|m| (&m.last_drift[..], m.last_accuracy_drop, m.matched)),
        }
    }

    /// Gives the view-only state back to `t`, thawed.
    pub(in crate::engine) fn restore_into(self, t: &mut Target) {
        t.latency_view = self.latency_view;
        t.last_latency_ratio = self.shown.last_latency_ratio;
        if let (Some(m), Some(s)) = (t.model.as_mut(), self.model) {
            m.last_drift = s.last_drift;
            m.last_accuracy_drop = s.last_accuracy_drop;
            m.type_mismatch_reported = s.type_mismatch_reported;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_and_detectors_round_trip_through_their_names() {
        for s in TargetState::ALL {
            assert_eq!(s.as_str().parse::<TargetState>(), Ok(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
            assert_eq!(s.to_string(), s.as_str());
        }
        for d in Detector::ALL {
            assert_eq!(d.as_str().parse::<Detector>(), Ok(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
            assert_eq!(d.to_string(), d.as_str());
        }
        let e = "sick".parse::<TargetState>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "must be one of healthy, suspect, rolled_back, retrain, review, promoted, got `sick`"
        );
        let e = "Drift".parse::<Detector>().unwrap_err();
        assert_eq!(e.to_string(), "must be one of error_rate, promote, latency, drift, accuracy, got `Drift`");
    }

    #[test]
    fn the_alert_table_covers_exactly_the_finding_states() {
        let with_finding: Vec<TargetState> = TargetState::ALL.into_iter().filter(|s| s.finding().is_some()).collect();
        let mut listed = TargetState::FINDINGS.to_vec();
        listed.sort_by_key(|s| TargetState::ALL.iter().position(|x| x == s));
        listed.dedup();
        assert_eq!(listed, with_finding);
        let names: Vec<&str> = TargetState::FINDINGS.iter().filter_map(|s| s.finding()).map(|f| f.name).collect();
        assert_eq!(names, ["rollback", "retrain", "review", "suspect"]);
        for s in TargetState::FINDINGS {
            let f = s.finding().unwrap();
            // A firing finding has a command behind it; a pending one has none yet.
            assert_eq!(f.alert_state == "firing", f.command.is_some(), "{s}");
        }
    }
}

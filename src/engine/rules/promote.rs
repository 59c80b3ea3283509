//! Promotion: a canary shown not worse than its baseline on errors (and accuracy, for a
//! labelled model), held for the configured time.

use crate::engine::*;

/// What a candidate's accuracy says about promoting it.
pub(in crate::engine) enum PromoteAccuracy {
    /// Neither it nor its baseline receives labels: error rate and latency decide.
    NotLabelled,
    /// Labels flow but do not yet show it is not worse.
    Waiting,
    /// Shown not worse; the evidence.
    Shown(Box<ev::AccuracyNonInferiority>),
}

/// A canary is not promoted while its latency ratio is at this share of the rollback ratio or
/// more: close to regressing is not healthy.
pub(in crate::engine) const PROMOTE_MAX_LATENCY_SHARE: f64 = 0.8;

impl Engine {
    pub(in crate::engine) fn check_promote(&mut self, id: TargetId, sec: i64, decided_at: Millis) {
        let p = self.cfg.promote;
        let Some(t) = self.target(id) else { return };
        if t.latch.promoted || t.latch.adverse || t.latch.reviewed || t.latch.last_retrain.is_some() {
            return;
        }
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        if c.cand.traffic.events < p.min_events || (sec + 1 - c.start_sec) * TICK_MS < p.min_duration.0 {
            return;
        }
        let thr = (1.0 / self.cfg.error_rate.alpha).ln();
        let log_e = c.log_e_noninferiority(self.cfg.error_rate.min_absolute_increase);
        if log_e < thr {
            return;
        }
        // Latency must not be regressing either (when there is enough to tell).
        let latency = self.latency_comparison(id, t.latency.spec.bucket_of(decided_at) - 1);
        if latency.as_ref().is_some_and(|l| l.ratio >= self.cfg.latency.max_ratio * PROMOTE_MAX_LATENCY_SHARE) {
            return;
        }
        let accuracy = match self.promote_accuracy(t, c) {
            PromoteAccuracy::NotLabelled => None,
            PromoteAccuracy::Waiting => return,
            PromoteAccuracy::Shown(evidence) => Some(*evidence),
        };
        let (base, mode_name) = match c.mode {
            Mode::Canary => (c.base.traffic, "canary"),
            Mode::Rollout => (c.pre.traffic, "full_rollout"),
        };
        let margin = c.ratio.ratios[c.noninferiority_null];
        let traffic =
            |t: &Traffic| ev::Traffic { events: t.events, errors: t.errors, error_rate: t.error_rate(), window: None };
        let evidence = ev::Promote {
            test: ev::Test {
                test: "error_rate_non_inferiority",
                method: if c.mode == Mode::Canary {
                    "mean of two anytime-valid mixture likelihood ratios: the rate ratio against the margin, and the candidate's error rate against the minimum absolute increase"
                } else {
                    "mixture likelihood ratio of the candidate's error rate against the baseline's pre-switch rate plus the minimum effect, anytime-valid"
                },
                statistic: "e_value",
                value: log_e.exp(),
                threshold: thr.exp(),
            },
            mode: mode_name,
            non_inferiority_margin_ratio: if c.mode == Mode::Canary { Some(margin) } else { None },
            non_inferiority_max_error_rate: if c.mode == Mode::Rollout {
                c.pre_noninferiority_null
            } else {
                self.cfg.error_rate.min_absolute_increase
            },
            candidate: traffic(&c.cand.traffic),
            baseline: traffic(&base),
            latency: latency.map(|l| l.evidence(None)),
            accuracy,
            min_events: p.min_events,
            min_duration_ms: p.min_duration.0,
            window: ev::Window::new(c.start_sec * TICK_MS, decided_at),
        };
        let baseline = Some(c.baseline_version.clone());
        // A promoted canary's e-value stays what it was when it was promoted.
        if let Some(c) = self.target_mut(id).and_then(|t| t.candidate.as_mut()) {
            c.last_log_e_noninferiority = log_e;
            c.noninferiority_stale = false;
        }
        self.decide(id, CommandKind::Promote, Reason::Healthy, decided_at, ev::to_value(&evidence), baseline);
    }

    /// Whether a candidate model version that receives labels has shown its accuracy is not
    /// worse than its baseline's (or, while the baseline has too few labels, its profile's):
    /// the upper confidence bound of the drop below `accuracy.rollback_drop`, the observed drop
    /// below `accuracy.review_drop`, and nothing for the accuracy rules to review.
    pub(in crate::engine) fn promote_accuracy(&self, t: &Target, c: &Candidate) -> PromoteAccuracy {
        let acfg = self.cfg.accuracy;
        let Some(m) = t.model.as_ref() else { return PromoteAccuracy::NotLabelled };
        let baseline_labelled = self
            .target_of_gen(c.baseline, c.baseline_gen)
            .and_then(|b| b.model.as_ref())
            .is_some_and(|bm| bm.labels.matched > 0);
        if !acfg.enabled || (m.labels.matched == 0 && !baseline_labelled) {
            return PromoteAccuracy::NotLabelled;
        }
        let (base, source) = match c.mode {
            Mode::Canary => (c.base.accuracy, "baseline"),
            Mode::Rollout => (c.pre.accuracy, "baseline_before_rollout"),
        };
        let (base, source) = match m.reference.as_ref().and_then(|r| r.accuracy) {
            Some((labelled, correct)) if base.labelled < acfg.min_labels => {
                (Accuracy { labelled, correct, ..Accuracy::default() }, "profile")
            }
            _ => (base, source),
        };
        let cand = c.cand.accuracy;
        if cand.labelled < acfg.min_labels || base.labelled < acfg.min_labels {
            return PromoteAccuracy::Waiting;
        }
        let AccuracyGap { base: (bl, bu), cand: (cl, cu), drop, drop_lower, drop_upper } =
            AccuracyGap::of(&base, &cand, acfg.alpha);
        if drop_upper >= acfg.rollback_drop || drop >= acfg.review_drop || drop_lower >= acfg.review_drop {
            return PromoteAccuracy::Waiting;
        }
        PromoteAccuracy::Shown(Box::new(ev::AccuracyNonInferiority {
            test: "accuracy_non_inferiority",
            method: "difference of Beta-binomial mixture confidence sequences (anytime-valid), alpha/2 per arm: upper bound of the drop below rollback_drop, observed drop below review_drop",
            drop_upper_bound: drop_upper,
            accuracy_drop: drop,
            review_band: [acfg.review_drop, acfg.rollback_drop],
            candidate: arm(&cand, (cl, cu)),
            baseline: ev::AccuracyArm { source: Some(source), ..arm(&base, (bl, bu)) },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::command::{CommandKind, Reason};
    use crate::config::{Config, Duration};

    /// A canary as healthy as its baseline, three requests a second each for half an hour.
    fn healthy(cand_latency: f64) -> Stream {
        canary(30, 3, (0, latency(1.0)), (0, latency(cand_latency)))
    }

    /// With no errors on either side the test shows the canary not worse within its first
    /// thousand events: the time it must serve decides when it is promoted.
    #[test]
    fn promote_after_min_duration() {
        let s = healthy(1.0);
        for minutes in [15, 20] {
            let cmds = s.commands(config(|c| c.promote.min_duration = Duration(minutes * MIN)));
            let c = only(&cmds, CommandKind::Promote, Reason::Healthy, "2.0");
            assert_eq!(c.decided_at, CANARY_START + minutes * MIN, "{}", list(&cmds));
            assert_eq!(num(c, "min_duration_ms"), (minutes * MIN) as f64);
            assert_eq!(text(c, "window.start"), crate::time::format_rfc3339(CANARY_START));
            assert!(num(c, "candidate.events") >= 2_000.0, "{}", c.evidence);
            assert!(num(c, "value") >= num(c, "threshold"), "{}", c.evidence);
            assert_eq!(c.target.baseline_version.as_deref(), Some("1.0"));
            assert_eq!(cmds.len(), 1, "{}", list(&cmds));
        }
        let cmds = s.commands(config(|c| c.promote.min_duration = Duration(31 * MIN)));
        assert!(cmds.is_empty(), "the canary served 30 minutes: {}", list(&cmds));
    }

    /// 180 events a minute: promoted once it has served the minimum, never when the half hour
    /// does not reach it.
    #[test]
    fn promote_after_min_events() {
        let s = healthy(1.0);
        let cmds = s.commands(config(|c| c.promote.min_events = 4_000));
        let c = only(&cmds, CommandKind::Promote, Reason::Healthy, "2.0");
        let events = num(c, "candidate.events");
        assert!((4_000.0..4_003.0).contains(&events), "candidate events {events}");
        assert_eq!(num(c, "min_events"), 4_000.0);

        let cmds = s.commands(config(|c| c.promote.min_events = 5_500));
        assert!(cmds.is_empty(), "5,400 events served: {}", list(&cmds));
    }

    /// A canary 30% slower at p99 is not rolled back (the ratio is under 1.5) but not promoted
    /// either: 1.3 is over 0.8 × 1.5. 10% slower, it is, with the latency in the evidence.
    #[test]
    fn no_promote_while_latency_is_close_to_regressing() {
        let cmds = healthy(1.3).commands(Config::default());
        assert!(cmds.is_empty(), "{}", list(&cmds));

        let cmds = healthy(1.1).commands(Config::default());
        let c = only(&cmds, CommandKind::Promote, Reason::Healthy, "2.0");
        let ratio = num(c, "latency.value");
        assert!((1.05..1.15).contains(&ratio), "p99 ratio {ratio}");
        assert_eq!(c.evidence["latency"]["threshold"], serde_json::Value::Null);
    }

    /// A model version whose predictions are labelled is promoted only once its accuracy is
    /// shown not worse; one without labels on either side on traffic alone.
    #[test]
    fn a_labelled_model_is_promoted_only_with_its_accuracy_shown() {
        let always = |_| true;
        let cmds = labelled_canary(30, 3, always, always).commands(Config::default());
        let c = only(&cmds, CommandKind::Promote, Reason::Healthy, "2");
        let a = &c.evidence["accuracy"];
        assert_eq!(a["test"], "accuracy_non_inferiority", "{}", c.evidence);
        assert!(a["candidate"]["labelled"].as_u64().is_some_and(|n| n >= 300), "{a}");
        assert!(a["drop_upper_bound"].as_f64().is_some_and(|d| d < 0.05), "{a}");
        assert_eq!(a["baseline"]["source"], "baseline");

        // Labels for its first hundred predictions only: never enough to show it.
        let end = CANARY_START + 30 * MIN;
        let mut s = Stream::default();
        s.model("fraud", "1", (T0, end), 3, |_| labelled(true));
        s.model("fraud", "2", (CANARY_START, end), 3, |n| {
            let (f, p, l) = labelled(true);
            (f, p, l.filter(|_| n < 100))
        });
        let cmds = s.commands(Config::default());
        assert_none(&cmds, CommandKind::Promote, "2");

        // No labels at all.
        let mut s = Stream::default();
        let unlabelled = |_| ("{}".to_owned(), r#""a""#.to_owned(), None);
        s.model("fraud", "1", (T0, end), 3, unlabelled);
        s.model("fraud", "2", (CANARY_START, end), 3, unlabelled);
        let cmds = s.commands(Config::default());
        let c = only(&cmds, CommandKind::Promote, Reason::Healthy, "2");
        assert_eq!(c.evidence["accuracy"], serde_json::Value::Null, "{}", c.evidence);
    }
}

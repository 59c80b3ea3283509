//! The error-rate rule: a candidate's sequential test against its baseline (or its pre-switch
//! statistics), folded one second at a time; the non-inferiority test that promotion waits on.

use crate::engine::*;

/// The canary's non-inferiority e-value (log): the mean of the rate-ratio test against the
/// margin and a one-sample test of the candidate's own error rate against
/// `error_rate.min_absolute_increase`.
///
/// "Worse by the minimum effect" means at least `min_absolute_increase` above the baseline,
/// hence at least `min_absolute_increase` itself, so both are e-processes under that null and
/// so is their mean. The ratio test learns only from errors; the one-sample test is what shows
/// a candidate serving without errors (beside a baseline without errors) is not worse.
pub(in crate::engine) fn canary_noninferiority_log_e(c: &Candidate, max_error_rate: f64) -> f64 {
    let ratio = c.ratio.log_e_value(&c.noninferiority_alts, c.noninferiority_null);
    let own = one_sample_log_e_value(
        c.cand.traffic.errors,
        c.cand.traffic.events,
        max_error_rate,
        &noninferiority_alternatives(max_error_rate),
    );
    log_sum_exp([ratio, own].into_iter()) - std::f64::consts::LN_2
}

impl Candidate {
    /// The log e-value of the non-inferiority test on the data so far.
    pub(in crate::engine) fn log_e_noninferiority(&self, min_absolute_increase: f64) -> f64 {
        if self.noninferiority_stale {
            canary_noninferiority_log_e(self, min_absolute_increase)
        } else {
            self.last_log_e_noninferiority
        }
    }

    /// [`Candidate::log_e_noninferiority`], kept.
    pub(in crate::engine) fn settle_noninferiority(&mut self, min_absolute_increase: f64) -> f64 {
        self.last_log_e_noninferiority = self.log_e_noninferiority(min_absolute_increase);
        self.noninferiority_stale = false;
        self.last_log_e_noninferiority
    }
}

/// The alternatives a non-inferiority test mixes over: [`NONINFERIORITY_ALTERNATIVES`] values
/// below its null, each [`NONINFERIORITY_STEP`] of the one before.
pub(in crate::engine) fn noninferiority_alternatives(null: f64) -> SmallVec<[f64; NONINFERIORITY_ALTERNATIVES]> {
    (1..=NONINFERIORITY_ALTERNATIVES as i32).map(|j| null * NONINFERIORITY_STEP.powi(j)).collect()
}

/// How many alternatives a non-inferiority test mixes over.
pub(in crate::engine) const NONINFERIORITY_ALTERNATIVES: usize = 12;

/// The ratio between successive alternatives of a non-inferiority test.
pub(in crate::engine) const NONINFERIORITY_STEP: f64 = 0.8;

/// The largest error rate an alternative of the full-rollout test may claim.
pub(in crate::engine) const MAX_ALTERNATIVE_ERROR_RATE: f64 = 0.999;

impl Engine {
    pub(in crate::engine) fn step_candidate(
        &mut self,
        id: TargetId,
        sec: i64,
        own: Tick,
        base: Tick,
        base_last_sec: i64,
    ) {
        let (error_rate_on, accuracy_on, promote_on) =
            (self.cfg.error_rate.enabled, self.cfg.accuracy.enabled, self.cfg.promote.enabled);
        let min_absolute_increase = self.cfg.error_rate.min_absolute_increase;
        let Some(t) = self.target_mut(id) else { return };
        let step_secs = t.traffic.spec.step / TICK_MS;
        let promoted = t.latch.promoted;
        let Some(c) = t.candidate.as_mut() else {
            return;
        };
        if sec < c.start_sec {
            return;
        }
        c.cand.merge(&own);
        c.base.merge(&base);
        if c.mode == Mode::Canary {
            // Seconds without errors leave the likelihood, hence the ratio e-values, as they were.
            let changed =
                c.ratio.update(own.traffic.events, base.traffic.events, own.traffic.errors, base.traffic.errors);
            if changed {
                c.last_log_e_regression = c.ratio.log_e_value(&c.regression_alts, 0);
            }
            if (changed || own.traffic.events > 0) && !promoted {
                c.noninferiority_stale = true;
            }
            if base_last_sec < sec - step_secs {
                c.mode = Mode::Rollout;
                c.switched_sec = Some(sec);
                c.log_e_regression_at_switch = c.last_log_e_regression;
                c.log_e_noninferiority_at_switch = c.settle_noninferiority(min_absolute_increase);
            }
        } else if own.traffic.events > 0 {
            c.rollout.merge(&own.traffic);
            let alts: Vec<f64> = c
                .regression_alts
                .iter()
                .map(|&k| (c.pre_upper * c.ratio.ratios[k]).min(MAX_ALTERNATIVE_ERROR_RATE))
                .collect();
            c.last_log_e_regression = c.log_e_regression_at_switch
                + one_sample_log_e_value(c.rollout.errors, c.rollout.events, c.pre_upper, &alts);
            let ni_alts = noninferiority_alternatives(c.pre_noninferiority_null);
            c.last_log_e_noninferiority = c.log_e_noninferiority_at_switch
                + one_sample_log_e_value(c.rollout.errors, c.rollout.events, c.pre_noninferiority_null, &ni_alts);
        }
        let decided_at = (sec + 1) * TICK_MS;
        if t.latch.rolled_back {
            return;
        }
        if error_rate_on && own.traffic.errors > 0 {
            self.check_error_rate(id, decided_at);
        }
        if accuracy_on && (own.accuracy.labelled > 0 || base.accuracy.labelled > 0) {
            self.check_accuracy_vs_baseline(id, decided_at);
        }
        if promote_on {
            self.check_promote(id, sec, decided_at);
        }
    }

    pub(in crate::engine) fn error_rate_threshold(&self) -> f64 {
        (1.0 / (self.cfg.error_rate.alpha * (1.0 - REFERENCE_ALPHA_SHARE))).ln()
    }

    /// The e-value at which the error-rate test decides a rollback.
    pub fn error_rate_e_value_threshold(&self) -> f64 {
        self.error_rate_threshold().exp()
    }

    pub(in crate::engine) fn check_error_rate(&mut self, id: TargetId, decided_at: Millis) {
        let thr = self.error_rate_threshold();
        let er = self.cfg.error_rate;
        let Some(t) = self.target(id) else { return };
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        if c.last_log_e_regression < thr {
            return;
        }
        let (cand, base, mode_name, base_window) = match c.mode {
            Mode::Canary => (c.cand.traffic, c.base.traffic, "canary", (c.start_sec * TICK_MS, decided_at)),
            Mode::Rollout => (c.cand.traffic, c.pre.traffic, "full_rollout", c.pre_window),
        };
        if cand.events < er.min_events || base.events < er.min_events {
            return;
        }
        let pc = cand.error_rate();
        let pb = base.error_rate();
        let relative = if pb > 0.0 { pc / pb - 1.0 } else { f64::INFINITY };
        if relative < er.min_relative_increase || pc - pb < er.min_absolute_increase {
            return;
        }
        let traffic = |t: Traffic, window: Option<ev::Window>| ev::Traffic {
            events: t.events,
            errors: t.errors,
            error_rate: t.error_rate(),
            window,
        };
        let evidence = ev::ErrorRate {
            test: ev::Test {
                test: "sequential_error_rate_ratio",
                method: if c.mode == Mode::Canary {
                    "mixture likelihood ratio of the conditional Poisson-process model (Lindon et al., KDD 2022), anytime-valid"
                } else {
                    "mixture likelihood ratio of the candidate's error rate against an upper confidence bound of the baseline's pre-switch rate, anytime-valid"
                },
                statistic: "e_value",
                value: c.last_log_e_regression.exp(),
                threshold: thr.exp(),
            },
            mode: mode_name,
            alpha: er.alpha,
            candidate: traffic(cand, None),
            baseline: traffic(base, Some(ev::Window::new(base_window.0, base_window.1))),
            relative_increase: ev::finite(relative),
            absolute_increase: pc - pb,
            min_relative_increase: er.min_relative_increase,
            min_absolute_increase: er.min_absolute_increase,
            window: ev::Window::new(c.start_sec * TICK_MS, decided_at),
        };
        let baseline = Some(c.baseline_version.clone());
        self.decide(id, CommandKind::Rollback, Reason::ErrorRate, decided_at, ev::to_value(&evidence), baseline);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use crate::command::{CommandKind, Reason};
    use crate::config::Config;

    /// A canary failing 20% of requests against 1%: the test is confident within a few dozen
    /// events, so the minimum number of events on each side is what holds the decision back.
    #[test]
    fn rollback_waits_for_min_events_on_each_side() {
        let s = canary(20, 2, (100, latency(1.0)), (5, latency(1.0)));
        let mut first = None;
        for min in [200, 400] {
            let cmds = s.commands(config(|c| c.error_rate.min_events = min));
            let c = only(&cmds, CommandKind::Rollback, Reason::ErrorRate, "2.0");
            assert_decided_at_minimum(c, "events", min, 10);
            assert_eq!(c.target.baseline_version.as_deref(), Some("1.0"));
            assert_eq!(text(c, "mode"), "canary");
            assert_eq!(text(c, "statistic"), "e_value");
            assert!(num(c, "value") >= num(c, "threshold"), "{}", c.evidence);
            // 1 / (alpha × (1 − the share spent on the baseline's bound)).
            assert!((num(c, "threshold") - 1.0 / (0.01 * 0.9)).abs() < 1e-6, "{}", c.evidence);
            assert!(first.is_none_or(|f| c.decided_at > f), "a higher minimum decides later");
            first = Some(c.decided_at);
        }
        // 2,400 events each: a minimum above that is never met.
        let cmds = s.commands(config(|c| c.error_rate.min_events = 2_500));
        assert_none(&cmds, CommandKind::Rollback, "2.0");
    }

    /// 3% errors against 1%: a rise of 2 points, or +200%. Rolled back when the minimum
    /// absolute and relative increases are both below it, not when either is above it.
    #[test]
    fn rollback_needs_the_minimum_increases() {
        let s = canary(30, 5, (100, latency(1.0)), (33, latency(1.0)));
        type Set = fn(&mut Config, f64);
        let absolute: Set = |c, v| c.error_rate.min_absolute_increase = v;
        let relative: Set = |c, v| c.error_rate.min_relative_increase = v;
        for (set, increase, below, above) in
            [(absolute, "absolute_increase", 0.015, 0.025), (relative, "relative_increase", 1.5, 2.5)]
        {
            let cmds = s.commands(config(|c| set(c, below)));
            let c = only(&cmds, CommandKind::Rollback, Reason::ErrorRate, "2.0");
            assert!(num(c, increase) >= below, "{}", c.evidence);
            assert_eq!(num(c, &format!("min_{increase}")), below);
            assert!(num(c, "candidate.error_rate") > num(c, "baseline.error_rate"));

            let cmds = s.commands(config(|c| set(c, above)));
            assert_none(&cmds, CommandKind::Rollback, "2.0");
        }
    }

    /// Versions failing alike: no rollback, however long they serve.
    #[test]
    fn equal_error_rates_are_not_rolled_back() {
        let s = canary(60, 5, (50, latency(1.0)), (50, latency(1.0)));
        let cmds = s.commands(Config::default());
        assert!(cmds.iter().all(|c| c.command != CommandKind::Rollback), "{}", list(&cmds));
        // The healthy canary is promoted instead: the run did decide something.
        assert_eq!(of(&cmds, CommandKind::Promote, "2.0").len(), 1, "{}", list(&cmds));
    }
}

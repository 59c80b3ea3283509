//! The accuracy rules: a candidate's accuracy against its baseline's, and a model version's
//! against its own reference, by anytime-valid confidence sequences.

use crate::engine::*;

/// A candidate's accuracy against a baseline's (or a reference's): each arm's anytime-valid
/// confidence interval (Beta-binomial mixture, alpha/2 per arm) and the drop between them.
#[derive(Debug, Clone, Copy)]
pub(in crate::engine) struct AccuracyGap {
    pub(in crate::engine) base: (f64, f64),
    pub(in crate::engine) cand: (f64, f64),
    /// Observed baseline accuracy minus candidate accuracy.
    pub(in crate::engine) drop: f64,
    /// Lower and upper confidence bounds of the drop.
    pub(in crate::engine) drop_lower: f64,
    pub(in crate::engine) drop_upper: f64,
}

impl AccuracyGap {
    pub(in crate::engine) fn of(base: &Accuracy, cand: &Accuracy, alpha: f64) -> AccuracyGap {
        let (bl, bu) = beta_binomial_cs(base.correct, base.labelled, alpha / 2.0);
        let (cl, cu) = beta_binomial_cs(cand.correct, cand.labelled, alpha / 2.0);
        AccuracyGap {
            base: (bl, bu),
            cand: (cl, cu),
            drop: base.accuracy().unwrap_or(0.0) - cand.accuracy().unwrap_or(0.0),
            drop_lower: bl - cu,
            drop_upper: bu - cl,
        }
    }

    /// What the gap calls for, gravest first: accuracy confidently below `min_accuracy`; a
    /// drop confidently of `rollback_drop` or more; a review's evidence — the drop shown (its
    /// lower bound above zero) and estimated inside the band, real and large enough to matter.
    pub(in crate::engine) fn verdict(&self, acfg: &AccuracyConfig) -> Verdict {
        if acfg.min_accuracy.is_some_and(|m| self.cand.1 < m) {
            Verdict::BelowFloor
        } else if self.drop_lower >= acfg.rollback_drop {
            Verdict::Loss
        } else if self.drop_lower > 0.0 && self.drop >= acfg.review_drop && self.drop < acfg.rollback_drop {
            Verdict::Review
        } else {
            Verdict::Nothing
        }
    }
}

/// An accuracy comparison's outcome, ordered by gravity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(in crate::engine) enum Verdict {
    Nothing,
    Review,
    Loss,
    BelowFloor,
}

impl Engine {
    pub(in crate::engine) fn check_accuracy_vs_baseline(&mut self, id: TargetId, decided_at: Millis) {
        let acfg = self.cfg.accuracy;
        let Some(t) = self.target(id) else { return };
        let Some(c) = t.candidate.as_ref() else {
            return;
        };
        let (base, base_window) = match c.mode {
            Mode::Canary => (c.base.accuracy, (c.start_sec * TICK_MS, decided_at)),
            Mode::Rollout => (c.pre.accuracy, c.pre_window),
        };
        let cand = c.cand.accuracy;
        if cand.labelled < acfg.min_labels || base.labelled < acfg.min_labels {
            return;
        }
        let gap = AccuracyGap::of(&base, &cand, acfg.alpha);
        let AccuracyGap { base: (bl, bu), cand: (cl, cu), drop, drop_lower, .. } = gap;
        let (ca, ba) = (cand.accuracy().unwrap_or(0.0), base.accuracy().unwrap_or(0.0));
        let verdict = gap.verdict(&acfg);
        let below_floor = verdict == Verdict::BelowFloor;
        let command = if verdict >= Verdict::Loss {
            CommandKind::Rollback
        } else if verdict == Verdict::Review && !t.latch.reviewed {
            CommandKind::Review
        } else {
            return;
        };
        let evidence = ev::AccuracyVsBaseline {
            test: ev::Test {
                test: "accuracy_difference",
                method: "difference of Beta-binomial mixture confidence sequences (anytime-valid), alpha/2 per arm",
                statistic: "accuracy_drop_lower_bound",
                value: drop_lower,
                threshold: if command == CommandKind::Rollback { acfg.rollback_drop } else { 0.0 },
            },
            alpha: acfg.alpha,
            band: band(&acfg, below_floor, drop),
            candidate: ev::AccuracyArm { accuracy: Some(ca), ..arm(&cand, (cl, cu)) },
            baseline: ev::AccuracyArm {
                accuracy: Some(ba),
                window: ev::Skip(Some(Some(ev::Window::new(base_window.0, base_window.1)))),
                ..arm(&base, (bl, bu))
            },
            window: ev::Window::new(c.start_sec * TICK_MS, decided_at),
        };
        let baseline = Some(c.baseline_version.clone());
        self.decide(id, command, Reason::Accuracy, decided_at, ev::to_value(&evidence), baseline);
    }

    pub(in crate::engine) fn check_accuracy_vs_reference(&mut self, id: TargetId, idx: i64) {
        let acfg = self.cfg.accuracy;
        let cooldown = self.cfg.retrain.cooldown.0;
        let reminder = self.cfg.retrain.reminder.0;
        let Some(t) = self.target_mut(id) else { return };
        if t.latch.rolled_back {
            return;
        }
        let Some(m) = t.model.as_mut() else { return };
        let spec = m.accuracy.spec;
        if m.accuracy_reference.is_none() {
            // A profile's recorded accuracy is the reference; `i64::MIN` bounds mark it.
            if let Some((labelled, correct)) = m.reference.as_ref().and_then(|r| r.accuracy) {
                let acc = Accuracy { labelled, correct, ..Accuracy::default() };
                m.accuracy_reference = Some((acc, i64::MIN, i64::MIN));
            }
        }
        if m.accuracy.get(idx).is_none() {
            return;
        }
        let floor = m.accuracy_reference.map_or(i64::MIN, |(_, _, end)| end + 1);
        let short = m.accuracy.extended_window_to(idx, floor, acfg.min_labels, |a| a.labelled);
        if short.0.labelled < acfg.min_labels {
            return;
        }
        let Some((reference, rs, re)) = m.accuracy_reference else {
            m.accuracy_reference = Some((short.0, short.1, idx));
            return;
        };
        // The window of `min_labels` shows large losses soon; the long one small losses. Read
        // both, each at alpha/2, and act on the graver verdict (the short one on a tie).
        let long = m.accuracy.extended_window(idx, floor, |a| a.labelled);
        let both = [short, long];
        let windows = if long.0.labelled > short.0.labelled { &both[..] } else { &both[..1] };
        let alpha = acfg.alpha / windows.len() as f64;
        let judged: SmallVec<[(AccuracyGap, Verdict); 2]> = windows
            .iter()
            .map(|(w, _, _)| {
                let gap = AccuracyGap::of(&reference, w, alpha);
                (gap, gap.verdict(&acfg))
            })
            .collect();
        let pick = (0..judged.len()).fold(0, |best, i| if judged[i].1 > judged[best].1 { i } else { best });
        let (window, first, extent) = windows[pick];
        let decided_at = spec.bucket_start(idx + 1);
        let (AccuracyGap { base: (rl, ru), cand: (cl, cu), drop, drop_lower, .. }, verdict) = judged[pick];
        m.last_accuracy_drop = judged.iter().map(|(g, _)| g.drop_lower).reduce(f64::max);
        let below_floor = verdict == Verdict::BelowFloor;
        if verdict < Verdict::Loss {
            // A full window without the loss ends the episode.
            t.latch.accuracy_episode = None;
        }
        let mut episode = None;
        let command = if below_floor {
            CommandKind::Rollback
        } else if verdict == Verdict::Loss {
            if t.latch.last_retrain.is_some_and(|l| decided_at - l < cooldown) {
                return;
            }
            let Some((state, why)) = Episode::due(t.latch.accuracy_episode, decided_at, reminder) else {
                return;
            };
            t.latch.accuracy_episode = Some(state);
            episode = Some(why);
            CommandKind::Retrain
        } else if verdict == Verdict::Review && !t.latch.reviewed {
            CommandKind::Review
        } else {
            return;
        };
        let reference_window =
            (rs != i64::MIN).then(|| ev::Window::new(spec.bucket_start(rs), spec.bucket_start(re + 1)));
        let evidence = ev::AccuracyVsReference {
            test: ev::Test {
                test: "accuracy_vs_reference",
                method: "difference of Beta-binomial mixture confidence sequences, alpha/2 per side; reference = the accuracy recorded in the version's profile, else the version's labels before the current window (from its first window with enough labels, growing until a loss is decided on)",
                statistic: "accuracy_drop_lower_bound",
                value: drop_lower,
                threshold: if command == CommandKind::Review { 0.0 } else { acfg.rollback_drop },
            },
            alpha,
            windows_compared: windows.len(),
            band: band(&acfg, below_floor, drop),
            current: ev::AccuracyArm { mae: ev::Skip(Some(window.mae())), ..arm(&window, (cl, cu)) },
            reference: ev::AccuracyArm {
                window: ev::Skip(Some(reference_window)),
                source: Some(if rs == i64::MIN { "profile" } else { "own_labels" }),
                ..arm(&reference, (rl, ru))
            },
            window: ev::Window::by(spec.bucket_start(first), decided_at, extent),
            episode,
        };
        self.decide(id, command, Reason::Accuracy, decided_at, ev::to_value(&evidence), None);
    }
}

/// One arm of an accuracy comparison: its counts, accuracy and confidence interval.
pub(in crate::engine) fn arm(a: &Accuracy, (lower, upper): (f64, f64)) -> ev::AccuracyArm {
    ev::AccuracyArm {
        labelled: a.labelled,
        correct: a.correct,
        accuracy: a.accuracy(),
        confidence_interval: [lower, upper],
        mae: ev::Skip(None),
        window: ev::Skip(None),
        source: None,
    }
}

fn band(acfg: &AccuracyConfig, below_min_accuracy: bool, accuracy_drop: f64) -> ev::AccuracyBand {
    ev::AccuracyBand {
        review_band: [acfg.review_drop, acfg.rollback_drop],
        min_accuracy: acfg.min_accuracy,
        below_min_accuracy,
        accuracy_drop,
    }
}

#[cfg(test)]
mod tests {
    use super::super::testkit::*;
    use super::*;

    fn acc(labelled: u64, accuracy: f64) -> Accuracy {
        Accuracy { labelled, correct: (labelled as f64 * accuracy).round() as u64, ..Accuracy::default() }
    }

    fn verdict(base: Accuracy, cand: Accuracy, acfg: &AccuracyConfig) -> (Verdict, AccuracyGap) {
        let gap = AccuracyGap::of(&base, &cand, acfg.alpha);
        (gap.verdict(acfg), gap)
    }

    /// With a million labels a side the drop is known to a fraction of a point: the verdict
    /// follows the band, 1 to 5 points a review, 5 or more a loss, under 1 point nothing.
    #[test]
    fn verdict_follows_the_review_and_rollback_band() {
        let acfg = AccuracyConfig::default();
        let n = 1_000_000;
        for (cand, expected) in [
            (0.895, Verdict::Nothing),
            (0.885, Verdict::Review),
            (0.855, Verdict::Review),
            (0.845, Verdict::Loss),
            (0.70, Verdict::Loss),
        ] {
            let (v, gap) = verdict(acc(n, 0.90), acc(n, cand), &acfg);
            assert_eq!(v, expected, "0.90 against {cand}: {gap:?}");
            // Each of these drops is shown: the band decides, not the confidence.
            assert!(gap.drop_lower > 0.0, "{gap:?}");
        }
        // The same band, set wider.
        let wide = AccuracyConfig { review_drop: 0.02, rollback_drop: 0.08, ..acfg };
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.885), &wide).0, Verdict::Nothing);
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.845), &wide).0, Verdict::Review);
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.81), &wide).0, Verdict::Loss);
    }

    /// A drop inside the band that the labels cannot show yet (its lower bound at or under
    /// zero) is no review; with enough labels it is.
    #[test]
    fn a_review_needs_the_drop_shown() {
        let acfg = AccuracyConfig::default();
        let (v, gap) = verdict(acc(300, 0.90), acc(300, 0.87), &acfg);
        assert_eq!(v, Verdict::Nothing, "{gap:?}");
        assert!(gap.drop_lower <= 0.0 && gap.drop >= acfg.review_drop, "{gap:?}");
        let (v, gap) = verdict(acc(100_000, 0.90), acc(100_000, 0.87), &acfg);
        assert_eq!(v, Verdict::Review, "{gap:?}");
    }

    /// `min_accuracy` rolls back a version confidently below it, whatever its baseline does.
    #[test]
    fn below_min_accuracy_is_graver_than_any_drop() {
        let n = 100_000;
        let floor = |m: f64| AccuracyConfig { min_accuracy: Some(m), ..AccuracyConfig::default() };
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.90), &floor(0.95)).0, Verdict::BelowFloor);
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.90), &floor(0.85)).0, Verdict::Nothing);
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.80), &floor(0.85)).0, Verdict::BelowFloor);
        assert_eq!(verdict(acc(n, 0.90), acc(n, 0.80), &AccuracyConfig::default()).0, Verdict::Loss);
    }

    /// A canary right 60% of the time against 95%: a loss the first labels show, held back
    /// until each side has the minimum number of labels.
    #[test]
    fn rollback_waits_for_min_labels_on_each_side() {
        let s = labelled_canary(20, 2, right(95), right(60));
        let mut first = None;
        for min in [300, 600] {
            let cmds = s.commands(config(|c| c.accuracy.min_labels = min));
            let c = only(&cmds, CommandKind::Rollback, Reason::Accuracy, "2");
            assert_decided_at_minimum(c, "labelled", min, 10);
            assert_eq!(c.target.baseline_version.as_deref(), Some("1"));
            assert_eq!(text(c, "statistic"), "accuracy_drop_lower_bound");
            assert_eq!(num(c, "threshold"), 0.05);
            assert!(num(c, "value") >= 0.05, "{}", c.evidence);
            assert!((num(c, "accuracy_drop") - 0.35).abs() < 0.03, "{}", c.evidence);
            assert!(first.is_none_or(|f| c.decided_at > f), "a higher minimum decides later");
            first = Some(c.decided_at);
        }
        // 2,400 labels each: a minimum above that is never met.
        let cmds = s.commands(config(|c| c.accuracy.min_labels = 3_000));
        assert_none(&cmds, CommandKind::Rollback, "2");
    }

    /// A canary 3 points less accurate: one review (none repeated, no rollback, no promote);
    /// none when the review band starts above 3 points.
    #[test]
    fn review_inside_the_band_once() {
        let s = labelled_canary(40, 5, right(100), right(97));
        let cmds = s.commands(Config::default());
        let c = only(&cmds, CommandKind::Review, Reason::Accuracy, "2");
        assert_eq!(num(c, "threshold"), 0.0);
        let lower = num(c, "value");
        assert!(lower > 0.0 && lower < 0.05, "{}", c.evidence);
        assert!((num(c, "accuracy_drop") - 0.03).abs() < 0.01, "{}", c.evidence);
        assert_eq!(c.evidence["review_band"], serde_json::json!([0.01, 0.05]));
        assert_eq!(of(&cmds, CommandKind::Rollback, "2").len(), 0, "{}", list(&cmds));
        assert_eq!(of(&cmds, CommandKind::Promote, "2").len(), 0, "{}", list(&cmds));

        let cmds = s.commands(config(|c| c.accuracy.review_drop = 0.04));
        assert_none(&cmds, CommandKind::Review, "2");
    }

    /// One model version, right 95% of the time for half an hour, then 60%: against its own
    /// earlier labels that is a loss, and the remedy is one retrain.
    #[test]
    fn a_loss_against_the_own_reference_asks_for_one_retrain() {
        let mut s = Stream::default();
        let drop_at = T0 + 30 * MIN;
        s.model("fraud", "1", (T0, drop_at), 2, |n| labelled(right(95)(n)));
        s.model("fraud", "1", (drop_at, drop_at + 60 * MIN), 2, |n| labelled(right(60)(n)));
        let cmds = s.commands(Config::default());
        let c = only(&cmds, CommandKind::Retrain, Reason::Accuracy, "1");
        assert!(c.decided_at > drop_at, "{}", list(&cmds));
        assert_eq!(c.target.baseline_version, None);
        assert_eq!(text(c, "reference.source"), "own_labels");
        assert_eq!(text(c, "episode.why"), "new_episode");
        assert_eq!(num(c, "episode.retrains"), 1.0);
        assert!(num(c, "value") >= 0.05 && num(c, "current.labelled") >= 300.0, "{}", c.evidence);
        assert_eq!(cmds.len(), 1, "{}", list(&cmds));

        // The same half hour without the loss: nothing.
        let mut s = Stream::default();
        s.model("fraud", "1", (T0, drop_at + 60 * MIN), 2, |n| labelled(right(95)(n)));
        let cmds = s.commands(Config::default());
        assert!(cmds.is_empty(), "{}", list(&cmds));
    }
}

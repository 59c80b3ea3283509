//! From a rule's finding to a command: latching (one rollback per version, one review, one
//! promote), the retrain cooldown, dry-run, the evidence's input offsets and the decision log.

use super::*;

impl Engine {
    /// Applies latching and emits the command.
    pub(in crate::engine) fn decide(
        &mut self,
        id: TargetId,
        command: CommandKind,
        reason: Reason,
        decided_at: Millis,
        mut evidence: serde_json::Value,
        baseline: Option<Arc<str>>,
    ) {
        let offsets: serde_json::Map<String, serde_json::Value> =
            self.sources.iter().zip(&self.offsets).map(|(s, o)| (s.clone(), json!(o))).collect();
        // The last bucket of the input ends after its newest event: such a decision is dated
        // at that event, and says so.
        let window_end = decided_at;
        let decided_at = self.newest_event.map_or(decided_at, |n| decided_at.min(n));
        let policy = self.cfg.policy.clone();
        let dry_run = self.cfg.dry_run;
        let cooldown = self.cfg.retrain.cooldown.0;
        let Some(t) = self.target_mut(id) else { return };
        let l = &mut t.latch;
        if l.rolled_back {
            return;
        }
        match command {
            CommandKind::Rollback => {
                l.rolled_back = true;
                l.adverse = true;
            }
            CommandKind::Promote => {
                if l.promoted {
                    return;
                }
                l.promoted = true;
            }
            CommandKind::Review => {
                if l.reviewed {
                    return;
                }
                l.reviewed = true;
                l.adverse = true;
            }
            CommandKind::Retrain => {
                if l.last_retrain.is_some_and(|last| decided_at - last < cooldown) {
                    return;
                }
                l.last_retrain = Some(decided_at);
                l.adverse = true;
            }
        }
        if let Some(obj) = evidence.as_object_mut() {
            obj.insert("input_offsets".into(), serde_json::Value::Object(offsets));
            if decided_at < window_end {
                obj.insert(
                    "dated".into(),
                    ev::to_value(&ev::Dated {
                        at: "newest_event",
                        why: "the input ends before the window's last bucket does",
                        window_end,
                    }),
                );
            }
        }
        let target = t.target_ref(baseline.as_deref());
        let cmd = Command::new(command, target, reason, decided_at, evidence, &policy, dry_run);
        self.counters.commands[CommandKind::ALL.iter().position(|k| *k == command).unwrap_or(0)] += 1;
        if self.decisions.len() >= self.cfg.limits.decision_log {
            self.decisions.pop_front();
        }
        self.decisions.push_back(cmd.clone());
        self.out.push(cmd);
    }
}

#[cfg(test)]
mod tests {
    use super::super::rules::testkit::*;
    use super::*;

    /// App `shop`'s canary fails 20% of requests and is twice as slow; app `cart`'s is
    /// healthy.
    fn two_apps() -> Stream {
        let mut s = canary(30, 3, (100, latency(1.0)), (5, latency(2.0)));
        let end = CANARY_START + 30 * MIN;
        s.app("cart", "1.0", (T0, end), 3, 0, latency(1.0));
        s.app("cart", "2.0", (CANARY_START, end), 3, 0, latency(1.0));
        s
    }

    /// Errors and latency both call for a rollback of `shop` 2.0, for half an hour: one is
    /// issued, and nothing else for that version after it.
    #[test]
    fn a_rollback_is_issued_once_per_target() {
        let s = two_apps();
        let (engine, cmds) = s.run(Config::default());
        let shop: Vec<&Command> = cmds.iter().filter(|c| c.target.name == "shop").collect();
        assert_eq!(shop.len(), 1, "{}", list(&cmds));
        assert_eq!((shop[0].command, &*shop[0].target.version), (CommandKind::Rollback, "2.0"));
        // Both rules would decide it, each on its own.
        let latency_off = config(|c| c.latency.enabled = false);
        let error_rate_off = config(|c| c.error_rate.enabled = false);
        for (reason, cfg) in [(Reason::ErrorRate, latency_off), (Reason::Latency, error_rate_off)] {
            let cmds = s.commands(cfg);
            only(&cmds, CommandKind::Rollback, reason, "2.0");
        }
        assert_eq!(engine.counters().commands, [1, 0, 0, 1], "{}", list(&cmds));
    }

    /// Dry run withholds nothing: the same commands, with the same ids and times, each marked.
    #[test]
    fn dry_run_marks_every_command() {
        let s = two_apps();
        let live = s.commands(Config::default());
        let dry = s.commands(config(|c| c.dry_run = true));
        assert_eq!(live.len(), 2, "{}", list(&live));
        assert_eq!(dry.len(), live.len(), "{}", list(&dry));
        for (d, l) in dry.iter().zip(&live) {
            assert!(d.dry_run && !l.dry_run);
            assert_eq!(Command { dry_run: false, ..d.clone() }, *l);
        }
    }

    /// Every command names its policy and where the input stood when it was decided.
    #[test]
    fn commands_carry_the_policy_and_the_input_offsets() {
        let s = two_apps();
        let cmds = s.commands(config(|c| c.policy = "canary-gates".into()));
        assert_eq!(cmds.len(), 2, "{}", list(&cmds));
        for c in &cmds {
            assert_eq!(c.policy, "canary-gates");
            let offset = c.evidence["input_offsets"]["in"].as_u64().expect("an offset for `in`");
            assert!(offset > 0 && (offset as usize) < s.events(), "offset {offset}");
        }
        let other = s.commands(Config::default());
        assert_ne!(cmds[0].command_id, other[0].command_id, "the policy is part of the id");
    }

    /// The decision log keeps the newest `limits.decision_log` decisions.
    #[test]
    fn the_decision_log_keeps_the_newest() {
        let s = two_apps();
        let (engine, cmds) = s.run(Config::default());
        assert_eq!(engine.decisions().collect::<Vec<_>>(), cmds.iter().collect::<Vec<_>>());
        let (engine, cmds) = s.run(config(|c| c.limits.decision_log = 1));
        assert_eq!(cmds.len(), 2, "{}", list(&cmds));
        assert_eq!(engine.decisions().collect::<Vec<_>>(), [&cmds[1]]);
    }
}

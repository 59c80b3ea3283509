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

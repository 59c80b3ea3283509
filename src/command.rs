//! Output commands (contract §2): their shape, deterministic ids and JSON encoding.

use std::fmt;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Kind;
use crate::time::{format_rfc3339, Millis};

/// Version of the command schema (`schemas/command.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// What deploy tooling or a retraining pipeline should do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// Return to the baseline version.
    Rollback,
    /// Retrain the model.
    Retrain,
    /// Have a person look.
    Review,
    /// Give the candidate all traffic.
    Promote,
}

impl CommandKind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            CommandKind::Rollback => "rollback",
            CommandKind::Retrain => "retrain",
            CommandKind::Review => "review",
            CommandKind::Promote => "promote",
        }
    }

    /// All kinds.
    pub const ALL: [CommandKind; 4] =
        [CommandKind::Rollback, CommandKind::Retrain, CommandKind::Review, CommandKind::Promote];
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    /// Error rate rose against the baseline.
    ErrorRate,
    /// Latency regressed against the baseline.
    Latency,
    /// Accuracy dropped.
    Accuracy,
    /// Input features drifted from the reference.
    FeatureDrift,
    /// Predictions drifted from the reference.
    PredictionDrift,
    /// No adverse finding (promote).
    Healthy,
}

impl Reason {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::ErrorRate => "error_rate",
            Reason::Latency => "latency",
            Reason::Accuracy => "accuracy",
            Reason::FeatureDrift => "feature_drift",
            Reason::PredictionDrift => "prediction_drift",
            Reason::Healthy => "healthy",
        }
    }

    /// All reasons.
    pub const ALL: [Reason; 6] = [
        Reason::ErrorRate,
        Reason::Latency,
        Reason::Accuracy,
        Reason::FeatureDrift,
        Reason::PredictionDrift,
        Reason::Healthy,
    ];
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a command acts on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetRef {
    /// `app` or `model`.
    pub kind: Kind,
    /// App or model name.
    pub name: String,
    /// The version acted on.
    pub version: String,
    /// The version it was compared with; `null` for a fixed reference.
    pub baseline_version: Option<String>,
}

/// One command, exactly as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    /// rollback | retrain | review | promote.
    pub command: CommandKind,
    /// Deterministic id: same input and config give the same id.
    pub command_id: String,
    /// What to act on.
    pub target: TargetRef,
    /// Why.
    pub reason: Reason,
    /// Event time (watermark) of the decision, epoch milliseconds; RFC 3339 in JSON.
    #[serde(with = "crate::time::rfc3339")]
    pub decided_at: Millis,
    /// Wall-clock time of emission, RFC 3339 (stamped by the driver).
    pub issued_at: String,
    /// Everything a reviewer needs.
    pub evidence: serde_json::Value,
    /// Policy name from config.
    pub policy: String,
    /// True when the policy is in dry-run mode.
    pub dry_run: bool,
    /// Command schema version.
    pub schema_version: u32,
}

impl Command {
    /// Builds a command; `issued_at` is left for the driver to stamp.
    pub fn new(
        command: CommandKind,
        target: TargetRef,
        reason: Reason,
        decided_at: Millis,
        evidence: serde_json::Value,
        policy: &str,
        dry_run: bool,
    ) -> Command {
        let command_id = command_id(policy, command, &target, reason, decided_at);
        Command {
            command,
            command_id,
            target,
            reason,
            decided_at,
            issued_at: String::new(),
            evidence,
            policy: policy.to_owned(),
            dry_run,
            schema_version: SCHEMA_VERSION,
        }
    }

    /// Sets `issued_at` to the given wall-clock time.
    pub fn stamp(&mut self, wall_ms: Millis) {
        self.issued_at = format_rfc3339(wall_ms);
    }

    /// Kafka message key: `kind/name`, so all commands of one app or model stay in order.
    pub fn key(&self) -> String {
        format!("{}/{}", self.target.kind.as_str(), self.target.name)
    }

    /// What decided the command, read from its evidence (every rule's evidence has these
    /// keys; see [`crate::evidence`]).
    pub fn headline(&self) -> Headline<'_> {
        let e = &self.evidence;
        Headline {
            statistic: e["statistic"].as_str(),
            value: e["value"].as_f64(),
            threshold: e["threshold"].as_f64(),
            drifted_features: e["drifted_features"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| Some((d["name"].as_str()?, d["value"].as_f64()?))).collect())
                .unwrap_or_default(),
        }
    }

    /// One line of JSON.
    pub fn to_json(&self) -> String {
        // A Command holds only strings, numbers and JSON values: serialization cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The statistic that decided a command, against its threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct Headline<'a> {
    /// `e_value`, `p99_ratio`, `accuracy_drop_lower_bound`, `psi`…
    pub statistic: Option<&'a str>,
    /// Its value (none for drift, decided per feature).
    pub value: Option<f64>,
    /// The value that decides.
    pub threshold: Option<f64>,
    /// For drift: the features named, with their PSI.
    pub drifted_features: Vec<(&'a str, f64)>,
}

/// The deterministic id: a UUID (version 8, RFC 9562) from SHA-256 of everything that makes
/// the decision unique.
pub fn command_id(
    policy: &str,
    command: CommandKind,
    target: &TargetRef,
    reason: Reason,
    decided_at: Millis,
) -> String {
    let mut h = Sha256::new();
    for part in [policy, command.as_str(), target.kind.as_str(), &target.name, &target.version, reason.as_str()] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    h.update(decided_at.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 16];
    b.copy_from_slice(&d[..16]);
    b[6] = (b[6] & 0x0f) | 0x80;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[0..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_and_distinct() {
        let t = TargetRef {
            kind: Kind::App,
            name: "checkout".into(),
            version: "2.4.0".into(),
            baseline_version: Some("2.3.0".into()),
        };
        let a = command_id("default", CommandKind::Rollback, &t, Reason::ErrorRate, 1000);
        assert_eq!(a, command_id("default", CommandKind::Rollback, &t, Reason::ErrorRate, 1000));
        assert_ne!(a, command_id("default", CommandKind::Rollback, &t, Reason::Latency, 1000));
        assert_ne!(a, command_id("default", CommandKind::Rollback, &t, Reason::ErrorRate, 1001));
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "8");
    }

    #[test]
    fn json_has_contract_fields() {
        let t = TargetRef { kind: Kind::Model, name: "fraud".into(), version: "7".into(), baseline_version: None };
        let mut c = Command::new(
            CommandKind::Retrain,
            t,
            Reason::FeatureDrift,
            1_764_001_661_120,
            serde_json::json!({}),
            "default",
            false,
        );
        c.stamp(1_764_001_661_120);
        let v: serde_json::Value = serde_json::from_str(&c.to_json()).unwrap();
        assert_eq!(v["command"], "retrain");
        assert_eq!(v["target"]["kind"], "model");
        assert_eq!(v["target"]["baseline_version"], serde_json::Value::Null);
        assert_eq!(v["reason"], "feature_drift");
        assert_eq!(v["decided_at"], "2025-11-24T16:27:41.120Z");
        assert_eq!(v["schema_version"], 1);
        assert_eq!(c.key(), "model/fraud");
    }
}

//! Configuration: the TOML file, its defaults (contract §4) and validation.
//!
//! Every struct denies unknown keys, so a typo is an error that names the key instead of a
//! silently ignored setting. [`Config::validate`] checks values and names the rule and key.
//! The doc comments on fields document each setting for developers; [`reference`] describes
//! them for users (`driftwatch config`).

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::{format_duration, parse_duration, Millis};
use crate::window::WindowSpec;

pub mod http;
pub mod kafka;
pub mod reference;

/// A duration written as `"30s"`, `"10m"`, `"6h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Duration(pub Millis);

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s).map(Duration).map_err(serde::de::Error::custom)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

/// A configuration error: which key, and what is wrong with it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown or ill-typed keys.
    #[error("config file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key, line and column).
        message: String,
    },
    /// A value is out of range.
    #[error("config key `{key}`: {reason}")]
    Invalid {
        /// Dotted path of the key.
        key: String,
        /// What is wrong and what is allowed.
        reason: String,
    },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.into(), reason: reason.into() }
}

/// Shape of one rule's sliding window. Omitted keys take the values of `[windows]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WindowConfig {
    /// Window length (time-based windows), or the longest span a count-based window may cover.
    pub length: Option<Duration>,
    /// How often the window advances (also the bucket width).
    pub step: Option<Duration>,
    /// Count-based window for low-traffic targets: the last `count` events (rounded to whole
    /// steps), looking back at most `length`.
    pub count: Option<u64>,
    /// Drift and accuracy windows holding fewer events than their rule's minimum reach further
    /// back, up to this long in all, until they hold it.
    pub extend: Option<Duration>,
}

impl WindowConfig {
    /// Fills unset keys from `base`.
    pub fn or(self, base: WindowConfig) -> WindowConfig {
        WindowConfig {
            length: self.length.or(base.length),
            step: self.step.or(base.step),
            count: self.count.or(base.count),
            extend: self.extend.or(base.extend),
        }
    }

    fn spec(self) -> WindowSpec {
        WindowSpec {
            length: self.length.map_or(600_000, |d| d.0),
            step: self.step.map_or(60_000, |d| d.0),
            min_count: self.count,
            extend: self.extend.map_or(0, |d| d.0),
            need: 0,
        }
    }

    fn validate(&self, key: &str) -> Result<(), ConfigError> {
        let spec = self.spec();
        if spec.step < 1000 || spec.step % 1000 != 0 {
            return Err(invalid(
                format!("{key}.step"),
                format!("must be a whole number of seconds ≥ 1s (got {})", format_duration(spec.step)),
            ));
        }
        if spec.length < spec.step || spec.length % spec.step != 0 {
            return Err(invalid(
                format!("{key}.length"),
                format!(
                    "must be a whole multiple of the step {} (got {})",
                    format_duration(spec.step),
                    format_duration(spec.length)
                ),
            ));
        }
        if spec.length / spec.step > 100_000 {
            return Err(invalid(format!("{key}.length"), "must be at most 100000 steps long"));
        }
        if self.count == Some(0) {
            return Err(invalid(format!("{key}.count"), "must be ≥ 1"));
        }
        if let Some(e) = self.extend {
            if e.0 != 0 && e.0 < spec.step {
                return Err(invalid(format!("{key}.extend"), "must be 0s (never) or at least the step"));
            }
            if e.0 > 366 * 86_400_000 {
                return Err(invalid(format!("{key}.extend"), "must be at most 366d"));
            }
        }
        Ok(())
    }
}

/// Only the drift and accuracy windows extend: the error-rate test reads every second since the
/// candidate started, and latency compares the same buckets of both versions.
fn fixed_window(key: &str, w: WindowConfig) -> Result<(), ConfigError> {
    match w.extend {
        Some(e) if e.0 != 0 => {
            Err(invalid(format!("{key}.extend"), "only the drift and accuracy windows extend (0s or unset here)"))
        }
        _ => Ok(()),
    }
}

/// Defaults shared by every rule's window, and event-time handling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WindowsConfig {
    /// Default window length.
    pub length: Duration,
    /// Default window step.
    pub step: Duration,
    /// Events up to this much older than the newest event seen are still placed in their
    /// window; older ones are counted as late (and still counted in totals).
    pub allowed_lateness: Duration,
    /// Events further ahead of the newest event seen than this are rejected as bad input
    /// (`future_timestamp`), so that one broken clock cannot fast-forward every window.
    pub max_future: Duration,
    /// Drift and accuracy windows holding fewer events than their rule's minimum reach back up
    /// to this long until they hold it, so slow targets are decided on as fast ones are.
    pub extend: Duration,
}

impl Default for WindowsConfig {
    fn default() -> Self {
        WindowsConfig {
            length: Duration(600_000),
            step: Duration(60_000),
            allowed_lateness: Duration(30_000),
            max_future: Duration(3_600_000),
            extend: Duration(60 * 86_400_000),
        }
    }
}

impl WindowsConfig {
    fn base(&self) -> WindowConfig {
        WindowConfig { length: Some(self.length), step: Some(self.step), count: None, extend: Some(self.extend) }
    }
}

/// Error-rate rule: candidate vs baseline, anytime-valid.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ErrorRateConfig {
    /// Rule on/off.
    pub enabled: bool,
    /// Largest probability of rolling back a healthy candidate, under continuous monitoring.
    pub alpha: f64,
    /// A rise must be at least this relative increase (0.5 = +50%) …
    pub min_relative_increase: f64,
    /// … and at least this absolute increase (0.005 = 0.5 percentage points).
    pub min_absolute_increase: f64,
    /// Events each side must have served (since the candidate started) before a decision.
    /// The sequential test is valid from the first event; this guards against its earliest
    /// looks. Over 2,400 seeded A/A runs a floor of 100 gave the false rollbacks of 200 (3),
    /// 25–50 two more; 200 delayed a 30%-failing canary at 1 request/s to 3.5 minutes, 100 to
    /// 1.8 (`cargo run --release --example error_rate_tradeoff`).
    pub min_events: u64,
    /// Window for the reported rates and the pre-switch reference of full rollouts.
    pub window: WindowConfig,
}

impl Default for ErrorRateConfig {
    fn default() -> Self {
        ErrorRateConfig {
            enabled: true,
            alpha: 0.01,
            min_relative_increase: 0.5,
            min_absolute_increase: 0.005,
            min_events: 100,
            window: WindowConfig::default(),
        }
    }
}

/// Latency rule: candidate quantile vs baseline quantile over the same span.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LatencyConfig {
    /// Rule on/off.
    pub enabled: bool,
    /// Quantile compared (0.99 = p99).
    pub quantile: f64,
    /// Roll back when candidate quantile ≥ this × baseline quantile.
    pub max_ratio: f64,
    /// Latencies needed on each side.
    pub min_events: u64,
    /// Window.
    pub window: WindowConfig,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        LatencyConfig {
            enabled: true,
            quantile: 0.99,
            max_ratio: 1.5,
            min_events: 500,
            window: WindowConfig::default(),
        }
    }
}

/// Accuracy rules from late labels.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccuracyConfig {
    /// Rule on/off.
    pub enabled: bool,
    /// Confidence level of every accuracy decision (false decision probability).
    pub alpha: f64,
    /// Confident drop of at least this much (0.05 = 5 points) → rollback (or retrain when the
    /// comparison is with the version's own reference).
    pub rollback_drop: f64,
    /// A drop shown (its lower confidence bound above zero) and estimated at least this much,
    /// and below `rollback_drop` → review.
    pub review_drop: f64,
    /// Labels needed on each side.
    pub min_labels: u64,
    /// Against its own reference, a version's window is also read reaching back (within the
    /// window's `extend`) until it holds this many labels: losses too small for a window of
    /// `min_labels` are shown on it.
    pub long_window_labels: u64,
    /// Roll back when accuracy is confidently below this (no default).
    pub min_accuracy: Option<f64>,
    /// Window for the comparison of a version with its own reference period.
    pub window: WindowConfig,
    /// Predictions awaiting their label, at most (oldest evicted first, counted).
    pub max_pending: usize,
    /// Predictions wait at most this long (event time) for their label.
    pub max_label_delay: Duration,
    /// A model version whose predictions have waited this long without a single label
    /// arriving is taken to be unlabelled: its predictions stop being kept (counted as not
    /// awaited) until `max_label_delay` has passed, then it is tried again. Keeps memory flat
    /// for models that never get labels.
    pub label_probation: Duration,
}

impl Default for AccuracyConfig {
    fn default() -> Self {
        AccuracyConfig {
            enabled: true,
            alpha: 0.01,
            rollback_drop: 0.05,
            review_drop: 0.01,
            min_labels: 300,
            long_window_labels: 5_000,
            min_accuracy: None,
            window: WindowConfig::default(),
            max_pending: 500_000,
            max_label_delay: Duration(86_400_000),
            label_probation: Duration(3_600_000),
        }
    }
}

/// Feature and prediction drift against the reference.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DriftConfig {
    /// Rule on/off.
    pub enabled: bool,
    /// PSI at or above this is drift.
    pub psi_threshold: f64,
    /// Quantile bins of numeric features.
    pub bins: usize,
    /// Events needed in the current window.
    pub min_events: u64,
    /// Warm-up reference: a model version's first `warmup` of traffic (when no profile is
    /// attached), extended until it holds `min_reference_events`.
    pub warmup: Duration,
    /// Events needed in the warm-up reference.
    pub min_reference_events: u64,
    /// Most frequent categories kept as their own bin; the rest share the "unseen" bin.
    pub max_reference_categories: usize,
    /// Window.
    pub window: WindowConfig,
}

impl Default for DriftConfig {
    fn default() -> Self {
        DriftConfig {
            enabled: true,
            psi_threshold: 0.2,
            bins: 10,
            min_events: 1000,
            warmup: Duration(600_000),
            min_reference_events: 1000,
            max_reference_categories: 50,
            window: WindowConfig::default(),
        }
    }
}

/// Retrain commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetrainConfig {
    /// At most one retrain per model version per this much event time.
    pub cooldown: Duration,
    /// One retrain per episode: once a version's drift (or accuracy loss) has asked for a
    /// retrain, it asks again only after the episode clears (a full window without it) or,
    /// while it lasts, once per this much event time.
    pub reminder: Duration,
}

impl Default for RetrainConfig {
    fn default() -> Self {
        RetrainConfig { cooldown: Duration(6 * 3_600_000), reminder: Duration(30 * 86_400_000) }
    }
}

/// Promote commands.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PromoteConfig {
    /// Rule on/off.
    pub enabled: bool,
    /// Events the candidate must have served.
    pub min_events: u64,
    /// Time the candidate must have served.
    pub min_duration: Duration,
}

impl Default for PromoteConfig {
    fn default() -> Self {
        PromoteConfig { enabled: true, min_events: 2000, min_duration: Duration(900_000) }
    }
}

/// Bounds on state, whatever the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Targets (app or model versions) tracked at once; events for more are counted and dropped.
    pub max_targets: usize,
    /// Features tracked per model version; further feature names are counted and ignored.
    pub max_features: usize,
    /// Distinct categories tracked per feature; further ones share one overflow bucket.
    pub max_categories: usize,
    /// A target with no events for this long (event time) is forgotten.
    pub target_idle_ttl: Duration,
    /// Decisions kept in memory for the API.
    pub decision_log: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_targets: 20_000,
            max_features: 200,
            max_categories: 1000,
            target_idle_ttl: Duration(86_400_000),
            decision_log: 10_000,
        }
    }
}

/// Target kind in config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// An application (CI/CD target).
    App,
    /// A model (MLOps target).
    Model,
}

impl Kind {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::App => "app",
            Kind::Model => "model",
        }
    }
}

/// Pins the baseline version of an app or model.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BaselinePin {
    /// `app` or `model`.
    pub kind: Kind,
    /// App or model name.
    pub name: String,
    /// The version every other version is compared with.
    pub version: String,
}

/// Window overrides for one app or model (all its versions).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TargetOverride {
    /// `app` or `model`.
    pub kind: Kind,
    /// App or model name.
    pub name: String,
    /// Window for every rule of this target.
    #[serde(default)]
    pub window: WindowConfig,
    /// Window of the error-rate rule.
    #[serde(default)]
    pub error_rate_window: WindowConfig,
    /// Window of the latency rule.
    #[serde(default)]
    pub latency_window: WindowConfig,
    /// Window of the accuracy rule.
    #[serde(default)]
    pub accuracy_window: WindowConfig,
    /// Window of the drift rule.
    #[serde(default)]
    pub drift_window: WindowConfig,
}

/// A reference profile attached to a model (and optionally one version).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProfileRef {
    /// Model name.
    pub model: String,
    /// Model version; all versions of the model when absent.
    pub version: Option<String>,
    /// Profile file (Arrow IPC, written by `driftwatch baseline`).
    pub path: PathBuf,
}

/// The whole decision policy and engine configuration.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Name of the policy, copied into every command.
    pub policy: String,
    /// Mark every command `dry_run: true` (downstream tooling should only log them).
    pub dry_run: bool,
    /// Window defaults and event-time handling.
    pub windows: WindowsConfig,
    /// Error-rate rule.
    pub error_rate: ErrorRateConfig,
    /// Latency rule.
    pub latency: LatencyConfig,
    /// Accuracy rules.
    pub accuracy: AccuracyConfig,
    /// Drift rule.
    pub drift: DriftConfig,
    /// Retrain cooldown.
    pub retrain: RetrainConfig,
    /// Promotion.
    pub promote: PromoteConfig,
    /// State bounds.
    pub limits: LimitsConfig,
    /// Pinned baselines.
    pub baselines: Vec<BaselinePin>,
    /// Per app/model window overrides.
    pub targets: Vec<TargetOverride>,
    /// Reference profiles.
    pub profiles: Vec<ProfileRef>,
    /// Inputs from serving fleets (KServe): decoding and request/response pairing.
    pub fleet: crate::fleet::FleetConfig,
    /// The Kafka service (`driftwatch run`).
    pub kafka: kafka::KafkaConfig,
    /// The HTTP API (`driftwatch run --http`, `driftwatch demo --http`).
    pub http: http::HttpConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            policy: "default".to_owned(),
            dry_run: false,
            windows: WindowsConfig::default(),
            error_rate: ErrorRateConfig::default(),
            latency: LatencyConfig::default(),
            accuracy: AccuracyConfig::default(),
            drift: DriftConfig::default(),
            retrain: RetrainConfig::default(),
            promote: PromoteConfig::default(),
            limits: LimitsConfig::default(),
            baselines: Vec::new(),
            targets: Vec::new(),
            profiles: Vec::new(),
            fleet: crate::fleet::FleetConfig::default(),
            kafka: kafka::KafkaConfig::default(),
            http: http::HttpConfig::default(),
        }
    }
}

/// Resolved windows of one target, one per rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TargetWindows {
    /// Error-rate window.
    pub error_rate: WindowSpec,
    /// Latency window.
    pub latency: WindowSpec,
    /// Accuracy window.
    pub accuracy: WindowSpec,
    /// Drift window.
    pub drift: WindowSpec,
}

impl Config {
    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse { path: path.to_owned(), message },
            other => other,
        })
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string().trim_end().to_owned(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value, naming the key of the first one out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn prob(key: &str, v: f64, lo: f64, hi: f64) -> Result<(), ConfigError> {
            if v.is_finite() && v > lo && v < hi {
                Ok(())
            } else {
                Err(invalid(key, format!("must be strictly between {lo} and {hi} (got {v})")))
            }
        }
        if self.policy.is_empty() {
            return Err(invalid("policy", "must not be empty"));
        }
        let w = &self.windows;
        w.base().validate("windows")?;
        if w.allowed_lateness.0 < 0 || w.allowed_lateness.0 > 86_400_000 {
            return Err(invalid("windows.allowed_lateness", "must be between 0s and 1d"));
        }
        if w.max_future.0 < 1000 {
            return Err(invalid("windows.max_future", "must be at least 1s"));
        }
        let e = &self.error_rate;
        prob("error_rate.alpha", e.alpha, 0.0, 0.5)?;
        if !(e.min_relative_increase.is_finite() && e.min_relative_increase > 0.0) {
            return Err(invalid(
                "error_rate.min_relative_increase",
                format!("must be > 0 (got {})", e.min_relative_increase),
            ));
        }
        prob("error_rate.min_absolute_increase", e.min_absolute_increase, -f64::MIN_POSITIVE, 1.0)?;
        e.window.or(w.base()).validate("error_rate.window")?;
        fixed_window("error_rate.window", e.window)?;
        let l = &self.latency;
        prob("latency.quantile", l.quantile, 0.0, 1.0)?;
        if !(l.max_ratio.is_finite() && l.max_ratio > 1.0) {
            return Err(invalid("latency.max_ratio", format!("must be > 1 (got {})", l.max_ratio)));
        }
        if l.min_events == 0 {
            return Err(invalid("latency.min_events", "must be ≥ 1"));
        }
        l.window.or(w.base()).validate("latency.window")?;
        fixed_window("latency.window", l.window)?;
        let a = &self.accuracy;
        prob("accuracy.alpha", a.alpha, 0.0, 0.5)?;
        prob("accuracy.review_drop", a.review_drop, 0.0, 1.0)?;
        prob("accuracy.rollback_drop", a.rollback_drop, 0.0, 1.0)?;
        if a.review_drop >= a.rollback_drop {
            return Err(invalid("accuracy.review_drop", "must be smaller than accuracy.rollback_drop"));
        }
        if let Some(m) = a.min_accuracy {
            prob("accuracy.min_accuracy", m, 0.0, 1.0)?;
        }
        if a.min_labels == 0 {
            return Err(invalid("accuracy.min_labels", "must be ≥ 1"));
        }
        if a.long_window_labels < a.min_labels {
            return Err(invalid("accuracy.long_window_labels", "must be at least accuracy.min_labels"));
        }
        if a.max_pending == 0 {
            return Err(invalid("accuracy.max_pending", "must be ≥ 1"));
        }
        a.window.or(w.base()).validate("accuracy.window")?;
        if a.label_probation.0 < 1000 || a.label_probation > a.max_label_delay {
            return Err(invalid("accuracy.label_probation", "must be between 1s and accuracy.max_label_delay"));
        }
        let d = &self.drift;
        if !(d.psi_threshold.is_finite() && d.psi_threshold > 0.0) {
            return Err(invalid("drift.psi_threshold", format!("must be > 0 (got {})", d.psi_threshold)));
        }
        if !(2..=100).contains(&d.bins) {
            return Err(invalid("drift.bins", format!("must be between 2 and 100 (got {})", d.bins)));
        }
        if d.warmup.0 < 1000 {
            return Err(invalid("drift.warmup", "must be at least 1s"));
        }
        if d.min_events == 0 || d.min_reference_events == 0 {
            return Err(invalid("drift.min_events", "must be ≥ 1"));
        }
        if d.max_reference_categories == 0 {
            return Err(invalid("drift.max_reference_categories", "must be ≥ 1"));
        }
        d.window.or(w.base()).validate("drift.window")?;
        if self.retrain.cooldown.0 < 0 {
            return Err(invalid("retrain.cooldown", "must not be negative"));
        }
        if self.promote.min_duration.0 < 0 {
            return Err(invalid("promote.min_duration", "must not be negative"));
        }
        let lim = &self.limits;
        for (key, v) in [
            ("limits.max_targets", lim.max_targets),
            ("limits.max_features", lim.max_features),
            ("limits.max_categories", lim.max_categories),
            ("limits.decision_log", lim.decision_log),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be ≥ 1"));
            }
        }
        if lim.target_idle_ttl.0 < 60_000 {
            return Err(invalid("limits.target_idle_ttl", "must be at least 1m"));
        }
        for (i, t) in self.targets.iter().enumerate() {
            for (name, wc) in [
                ("window", t.window),
                ("error_rate_window", t.error_rate_window),
                ("latency_window", t.latency_window),
                ("accuracy_window", t.accuracy_window),
                ("drift_window", t.drift_window),
            ] {
                wc.or(w.base()).validate(&format!("targets[{i}].{name}"))?;
            }
            fixed_window(&format!("targets[{i}].error_rate_window"), t.error_rate_window)?;
            fixed_window(&format!("targets[{i}].latency_window"), t.latency_window)?;
        }
        self.fleet.validate()?;
        self.kafka.validate()?;
        for (topic, format) in &self.kafka.topics.formats {
            if *format == crate::fleet::Format::Seldon {
                self.fleet.seldon.topic(topic).map_err(|e| invalid(format!("kafka.topics.formats.\"{topic}\""), e))?;
            }
        }
        self.http.validate()?;
        for (i, b) in self.baselines.iter().enumerate() {
            if b.name.is_empty() || b.version.is_empty() {
                return Err(invalid(format!("baselines[{i}]"), "name and version must not be empty"));
            }
        }
        Ok(())
    }

    /// The windows of one app or model, after per-target overrides.
    pub fn windows_for(&self, kind: Kind, name: &str) -> TargetWindows {
        let base = self.windows.base();
        let ov = self.targets.iter().rev().find(|t| t.kind == kind && t.name == name);
        let pick = |rule: WindowConfig, per_target: Option<WindowConfig>| {
            let mut w = rule;
            if let Some(t) = ov {
                w = per_target.unwrap_or_default().or(t.window).or(w);
            }
            w.or(base).spec()
        };
        let fixed = |spec: WindowSpec| WindowSpec { extend: 0, need: 0, ..spec };
        let needs = |spec: WindowSpec, need: u64| WindowSpec { need, ..spec };
        TargetWindows {
            error_rate: fixed(pick(self.error_rate.window, ov.map(|t| t.error_rate_window))),
            latency: fixed(pick(self.latency.window, ov.map(|t| t.latency_window))),
            accuracy: needs(
                pick(self.accuracy.window, ov.map(|t| t.accuracy_window)),
                self.accuracy.long_window_labels.max(self.accuracy.min_labels),
            ),
            drift: needs(pick(self.drift.window, ov.map(|t| t.drift_window)), self.drift.min_events),
        }
    }

    /// The pinned baseline version of an app or model, if any.
    pub fn pinned_baseline(&self, kind: Kind, name: &str) -> Option<&str> {
        self.baselines.iter().find(|b| b.kind == kind && b.name == name).map(|b| b.version.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_contract() {
        let c = Config::from_toml("").unwrap();
        assert_eq!(c.error_rate.alpha, 0.01);
        assert_eq!(c.latency.max_ratio, 1.5);
        assert_eq!(c.drift.psi_threshold, 0.2);
        assert_eq!(c.retrain.cooldown, Duration(21_600_000));
        let w = c.windows_for(Kind::App, "x");
        assert_eq!(w.error_rate.length, 600_000);
        assert_eq!(w.error_rate.step, 60_000);
    }

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let e = Config::from_toml("[latency]\nmax_ratoi = 2.0\n").unwrap_err().to_string();
        assert!(e.contains("max_ratoi"), "{e}");
    }

    #[test]
    fn invalid_values_name_the_rule() {
        let e = Config::from_toml("[latency]\nmax_ratio = 0.9\n").unwrap_err().to_string();
        assert!(e.contains("latency.max_ratio"), "{e}");
        let e = Config::from_toml("[drift.window]\nlength = \"90s\"\nstep = \"1m\"\n").unwrap_err().to_string();
        assert!(e.contains("drift.window.length"), "{e}");
        let e = Config::from_toml("[windows]\nstep = \"soon\"\n").unwrap_err().to_string();
        assert!(e.contains("soon"), "{e}");
    }

    #[test]
    fn a_seldon_topic_must_be_named_as_seldon_names_it() {
        let cfg = |topic: &str, prefix: &str| {
            format!(
                "[kafka.topics]\nevents = [\"{topic}\"]\nformats = {{ \"{topic}\" = \"seldon\" }}\n[fleet.seldon]\ntopic_prefix = \"{prefix}\"\n"
            )
        };
        let e = Config::from_toml(&cfg("inference.logs", "seldon")).unwrap_err().to_string();
        assert!(e.contains("kafka.topics.formats.\"inference.logs\"") && e.contains("not a Seldon topic"), "{e}");
        Config::from_toml(&cfg("seldon.prod.model.iris.outputs", "seldon")).expect("a model topic");
        Config::from_toml(&cfg("acme.prod.errors.errors", "acme")).expect("a prefixed errors topic");
        let e = Config::from_toml(&cfg("seldon.prod.model.iris.outputs", "acme")).unwrap_err().to_string();
        assert!(e.contains("acme.<namespace>"), "{e}");
    }

    #[test]
    fn per_target_windows_override_rules() {
        let c = Config::from_toml(
            "[drift.window]\nlength = \"30m\"\n[[targets]]\nkind = \"model\"\nname = \"rare\"\ndrift_window = { count = 500, length = \"7d\", step = \"1h\" }\n",
        )
        .unwrap();
        let w = c.windows_for(Kind::Model, "rare");
        assert_eq!(w.drift.min_count, Some(500));
        assert_eq!(w.drift.step, 3_600_000);
        assert_eq!(c.windows_for(Kind::Model, "other").drift.length, 1_800_000);
    }
}

//! Prometheus text exposition (format 0.0.4) of a [`View`].
//!
//! Names follow the Prometheus conventions: `driftwatch_` prefix, base units (seconds, ratios),
//! `_total` for counters. Per-target series carry `kind`, `name` and `version` labels.

use std::fmt::Write as _;
use std::io::Write as _;

use axum::body::Bytes;

use crate::event::BadReason;

use super::{MetricsTargets, View};
use crate::config::Kind;
use crate::engine::{Detector, TargetOverview, TargetState};

/// A rendered exposition, plain and gzip-compressed.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// `text/plain; version=0.0.4`.
    pub text: Bytes,
    /// The same, gzip-compressed (for scrapers sending `Accept-Encoding: gzip`).
    pub gzip: Bytes,
}

/// Escapes a label value.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn num(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v == f64::INFINITY {
        "+Inf".into()
    } else if v == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        format!("{v}")
    }
}

struct Out {
    s: String,
}

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.s, "# HELP {name} {help}");
        let _ = writeln!(self.s, "# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: f64) {
        if labels.is_empty() {
            let _ = writeln!(self.s, "{name} {}", num(v));
        } else {
            let _ = writeln!(self.s, "{name}{{{labels}}} {}", num(v));
        }
    }
}

/// The versions with per-version series under `v.metrics_targets`, in the view's order.
fn exported(v: &View) -> Vec<&TargetOverview> {
    match v.metrics_targets {
        MetricsTargets::All => v.targets.iter().collect(),
        MetricsTargets::None => Vec::new(),
        MetricsTargets::Compared => {
            let baselines: std::collections::HashSet<(Kind, &str, &str)> =
                v.targets.iter().filter_map(|t| t.baseline.as_deref().map(|b| (t.kind, t.name.as_str(), b))).collect();
            v.targets
                .iter()
                .filter(|t| {
                    t.baseline.is_some()
                        || t.state != TargetState::Healthy
                        || baselines.contains(&(t.kind, t.name.as_str(), t.version.as_str()))
                })
                .collect()
        }
    }
}

/// Renders the exposition of `v`.
pub fn render(v: &View) -> Rendered {
    let mut o = Out { s: String::with_capacity(4096 + v.targets.len() * 900) };
    let targets = exported(v);
    let ids: Vec<String> = targets
        .iter()
        .map(|t| format!("kind=\"{}\",name=\"{}\",version=\"{}\"", t.kind.as_str(), esc(&t.name), esc(&t.version)))
        .collect();

    let scalars: [(&str, &str, &str, Option<f64>); 20] = [
        (
            "driftwatch_up",
            "gauge",
            "1 while the service loop runs with its state restored and partitions assigned.",
            Some(if v.ready { 1.0 } else { 0.0 }),
        ),
        ("driftwatch_messages_consumed_total", "counter", "Input messages consumed.", Some(v.stats.messages as f64)),
        (
            "driftwatch_processing_rate_events_per_second",
            "gauge",
            "Input messages processed per second, over the last publication interval.",
            Some(v.events_per_second),
        ),
        (
            "driftwatch_consumer_lag_messages",
            "gauge",
            "Messages between the consumer's position and the end of its assigned partitions.",
            v.stats.lag.map(|l| l as f64),
        ),
        (
            "driftwatch_dead_letters_total",
            "counter",
            "Bad input messages forwarded to the dead-letter topic.",
            Some(v.stats.dead_letters as f64),
        ),
        (
            "driftwatch_commits_total",
            "counter",
            "Transactions (or offset commits) completed.",
            Some(v.stats.commits as f64),
        ),
        (
            "driftwatch_sessions_total",
            "counter",
            "Kafka sessions started (1 plus recoveries).",
            Some(v.stats.sessions as f64),
        ),
        (
            "driftwatch_merge_queued_records",
            "gauge",
            "Records read and waiting for their turn in the merge by event time (of the input partitions, or of a scaled-out member's tasks and joins).",
            Some(v.stats.queued as f64),
        ),
        (
            "driftwatch_merge_rereads_total",
            "counter",
            "Times a task or join of a scaled-out group read its partition again from an earlier offset, because its queue reached kafka.max_queued while it waited for a slower upstream.",
            Some(v.stats.rereads as f64),
        ),
        (
            "driftwatch_watermark_seconds",
            "gauge",
            "Event-time watermark, as Unix time.",
            v.watermark.map(|w| w as f64 / 1000.0),
        ),
        (
            "driftwatch_view_timestamp_seconds",
            "gauge",
            "Wall-clock time the service loop published this data, as Unix time.",
            Some(v.generated_at as f64 / 1000.0),
        ),
        ("driftwatch_targets", "gauge", "App and model versions tracked.", Some(v.targets.len() as f64)),
        (
            "driftwatch_late_events_total",
            "counter",
            "Events older than the watermark (counted in totals, not in windows).",
            Some(v.counters.late_events as f64),
        ),
        (
            "driftwatch_events_dropped_total",
            "counter",
            "Events dropped because limits.max_targets was reached.",
            Some(v.counters.dropped_over_target_limit as f64),
        ),
        (
            "driftwatch_drift_type_mismatches_total",
            "counter",
            "Features (and predictions) left out of a drift check because their values are of another type than the reference's (numbers against categories), one per feature and check.",
            Some(v.counters.drift_type_mismatches as f64),
        ),
        (
            "driftwatch_labels_matched_total",
            "counter",
            "Labels joined to their prediction.",
            Some(v.joins.matched as f64),
        ),
        (
            "driftwatch_predictions_unlabelled_total",
            "counter",
            "Predictions evicted before their label arrived.",
            Some(v.joins.predictions_evicted as f64),
        ),
        (
            "driftwatch_error_rate_e_value_threshold",
            "gauge",
            "E-value at which the error-rate test decides a rollback (1/(0.9 alpha)).",
            Some(v.thresholds.error_rate_e_value),
        ),
        (
            "driftwatch_drift_psi_threshold",
            "gauge",
            "PSI at which a feature counts as drifted.",
            Some(v.thresholds.drift_psi),
        ),
        (
            "driftwatch_latency_ratio_threshold",
            "gauge",
            "Candidate/baseline latency quantile ratio at which a rollback is decided.",
            Some(v.thresholds.latency_ratio),
        ),
    ];
    for (name, kind, help, value) in scalars {
        o.family(name, kind, help);
        if let Some(x) = value {
            o.sample(name, "", x);
        }
    }
    o.family("driftwatch_input_events_total", "counter", "Valid input events by type.");
    for (i, ty) in ["request", "prediction", "error", "label"].iter().enumerate() {
        o.sample("driftwatch_input_events_total", &format!("type=\"{ty}\""), v.counters.events[i] as f64);
    }
    o.family("driftwatch_bad_input_total", "counter", "Rejected input by reason.");
    for r in BadReason::ALL {
        o.sample("driftwatch_bad_input_total", &format!("reason=\"{}\"", r.as_str()), v.counters.bad[r.index()] as f64);
    }
    let (pairs, waiting) = v.pairs;
    o.family(
        "driftwatch_inference_pairs_total",
        "counter",
        "Logged inference halves (KServe, Seldon) by outcome: paired, no_response and failed (counted as errors), unpaired_response, unpaired_failure, duplicate_id, row_mismatch, over_limit.",
    );
    for (outcome, n) in [
        ("paired", pairs.paired),
        ("no_response", pairs.no_response),
        ("unpaired_response", pairs.unpaired_responses),
        ("failed", pairs.failed),
        ("unpaired_failure", pairs.unpaired_failures),
        ("duplicate_id", pairs.duplicate_ids),
        ("row_mismatch", pairs.row_mismatches),
        ("over_limit", pairs.over_limit),
    ] {
        o.sample("driftwatch_inference_pairs_total", &format!("outcome=\"{outcome}\""), n as f64);
    }
    o.family("driftwatch_inference_waiting", "gauge", "Logged requests and responses waiting for their other half.");
    o.sample("driftwatch_inference_waiting", "", waiting as f64);
    o.family(
        "driftwatch_decisions_total",
        "counter",
        "Commands published by command and reason, since the process started.",
    );
    for ((command, reason), n) in v.decision_counts.iter() {
        o.sample("driftwatch_decisions_total", &format!("command=\"{command}\",reason=\"{reason}\""), *n as f64);
    }
    let alerts = v.alerts();
    o.family("driftwatch_active_findings", "gauge", "Active findings (see /v1/alerts) by finding and severity.");
    for f in TargetState::FINDINGS.iter().filter_map(|s| s.finding()) {
        let n = alerts.iter().filter(|a| a["finding"] == f.name).count();
        o.sample(
            "driftwatch_active_findings",
            &format!("finding=\"{}\",severity=\"{}\"", f.name, f.severity),
            n as f64,
        );
    }

    o.family(
        "driftwatch_targets_by_state",
        "gauge",
        "Tracked versions by kind and state (all of them, whatever `http.metrics_targets` exports).",
    );
    let mut by_state: std::collections::BTreeMap<(&str, &str), usize> = std::collections::BTreeMap::new();
    // Keyed by names: the series sort by their labels.
    for t in &v.targets {
        *by_state.entry((t.kind.as_str(), t.state.as_str())).or_default() += 1;
    }
    for ((kind, state), n) in by_state {
        o.sample("driftwatch_targets_by_state", &format!("kind=\"{kind}\",state=\"{state}\""), n as f64);
    }
    o.family(
        "driftwatch_target_state",
        "gauge",
        "1 for the target's current state (healthy, suspect, rolled_back, retrain, review, promoted).",
    );
    for (t, id) in targets.iter().zip(&ids) {
        o.sample("driftwatch_target_state", &format!("{id},state=\"{}\"", t.state), 1.0);
    }
    o.family("driftwatch_target_events_total", "counter", "Events of the target since it was first seen.");
    for (t, id) in targets.iter().zip(&ids) {
        o.sample("driftwatch_target_events_total", id, t.events as f64);
    }
    o.family("driftwatch_target_errors_total", "counter", "Errors of the target since it was first seen.");
    for (t, id) in targets.iter().zip(&ids) {
        o.sample("driftwatch_target_errors_total", id, t.errors as f64);
    }
    o.family("driftwatch_target_window_events", "gauge", "Events in the target's current error-rate window.");
    for (t, id) in targets.iter().zip(&ids) {
        o.sample("driftwatch_target_window_events", id, t.window_events as f64);
    }
    o.family(
        "driftwatch_target_error_rate_ratio",
        "gauge",
        "Error rate (errors/events) in the target's current window.",
    );
    for (t, id) in targets.iter().zip(&ids) {
        o.sample("driftwatch_target_error_rate_ratio", id, t.window_error_rate);
    }
    o.family(
        "driftwatch_target_latency_seconds",
        "summary",
        "Latency: quantiles over the target's current latency window; count and sum since it was first seen.",
    );
    for (t, id) in targets.iter().zip(&ids) {
        if let Some(l) = t.latency_ms {
            for (q, x) in ["0.5", "0.9", "0.99"].iter().zip(l) {
                o.sample("driftwatch_target_latency_seconds", &format!("{id},quantile=\"{q}\""), x / 1000.0);
            }
        }
        if t.latency_total.0 > 0 {
            o.sample("driftwatch_target_latency_seconds_count", id, t.latency_total.0 as f64);
            o.sample("driftwatch_target_latency_seconds_sum", id, t.latency_total.1 / 1000.0);
        }
    }
    for (detector, name, help) in [
        (
            Detector::ErrorRate,
            "driftwatch_target_error_rate_e_value",
            "Current e-value of the candidate's error-rate regression test.",
        ),
        (Detector::Latency, "driftwatch_target_latency_ratio", "Latest candidate/baseline latency quantile ratio."),
        (
            Detector::Drift,
            "driftwatch_target_drift_psi",
            "Latest PSI of each feature (and of the prediction) against the reference.",
        ),
        (
            Detector::Accuracy,
            "driftwatch_target_accuracy_drop",
            "Latest lower confidence bound of the accuracy drop against the reference.",
        ),
    ] {
        o.family(name, "gauge", help);
        for (t, id) in targets.iter().zip(&ids) {
            for d in t.detectors.iter().filter(|d| d.detector == detector) {
                let Some(x) = d.value else { continue };
                match &d.feature {
                    Some(f) => o.sample(name, &format!("{id},feature=\"{}\"", esc(f)), x),
                    None => o.sample(name, id, x),
                }
            }
        }
    }
    o.family(
        "driftwatch_target_labels_coverage_ratio",
        "gauge",
        "Share of the model version's predictions that got a label.",
    );
    for (t, id) in targets.iter().zip(&ids) {
        if let Some((_, cov)) = t.labels {
            o.sample("driftwatch_target_labels_coverage_ratio", id, cov);
        }
    }
    o.family("driftwatch_target_labels_joined_total", "counter", "Labels joined to the model version's predictions.");
    for (t, id) in targets.iter().zip(&ids) {
        if let Some((n, _)) = t.labels {
            o.sample("driftwatch_target_labels_joined_total", id, n as f64);
        }
    }
    group_series(&mut o, v);
    let text = Bytes::from(o.s);
    let gzip = gzip(&text);
    Rendered { text, gzip }
}

/// `text`, gzip-compressed (empty if compressing fails).
pub fn gzip(text: &[u8]) -> Bytes {
    let mut gz = flate2::write::GzEncoder::new(Vec::with_capacity(text.len() / 8 + 64), flate2::Compression::fast());
    match gz.write_all(text).and_then(|_| gz.finish()) {
        Ok(b) => Bytes::from(b),
        Err(_) => Bytes::new(),
    }
}

/// A member of a scaled-out group: the group's size and, per owned partition, how far it is
/// read and how much is left.
fn group_series(o: &mut Out, v: &View) {
    let Some(g) = v.stats.group() else { return };
    o.family("driftwatch_group_members", "gauge", "Members of the scaled-out group, as its coordinator last told.");
    o.sample("driftwatch_group_members", "", g.members.len() as f64);
    o.family("driftwatch_group_owned_tasks", "gauge", "Task partitions this member owns (of kafka.tasks).");
    o.sample(
        "driftwatch_group_owned_tasks",
        "",
        v.stats.partitions.iter().filter(|p| p.stage == "task").count() as f64,
    );
    let label = |p: &crate::observe::OwnedPartition| {
        format!("topic=\"{}\",partition=\"{}\",stage=\"{}\"", esc(&p.topic), p.partition, p.stage)
    };
    o.family(
        "driftwatch_partition_lag_messages",
        "gauge",
        "Committed records of an owned partition not read yet (its last stable offset less the position).",
    );
    for p in &v.stats.partitions {
        if let Some(lag) = p.lag() {
            o.sample("driftwatch_partition_lag_messages", &label(p), lag as f64);
        }
    }
    o.family("driftwatch_partition_position", "gauge", "Offset of the next record to read in an owned partition.");
    for p in &v.stats.partitions {
        o.sample("driftwatch_partition_position", &label(p), p.position as f64);
    }
}

/// What changes while views do not (restoring state blocks the loop that publishes them):
/// rendered at each request, after the view's exposition. Empty outside a scaled-out group.
pub fn render_live(v: &View) -> String {
    let r = &v.stats.restore;
    if v.stats.group().is_none() && !r.is_active() && r.restores() == 0 {
        return String::new();
    }
    let mut o = Out { s: String::new() };
    o.family("driftwatch_state_restoring", "gauge", "1 while the state of newly assigned partitions is restored.");
    o.sample("driftwatch_state_restoring", "", if r.is_active() { 1.0 } else { 0.0 });
    o.family(
        "driftwatch_state_restore_remaining_records",
        "gauge",
        "Records of a state partition left to read by the restore in progress (0 once read).",
    );
    for p in r.parts() {
        let remaining = if r.is_active() { p.total - p.read } else { 0 };
        o.sample(
            "driftwatch_state_restore_remaining_records",
            &format!("partition=\"{}\"", p.partition),
            remaining as f64,
        );
    }
    o.family("driftwatch_state_restored_records_total", "counter", "Records read from the state topic by restores.");
    o.sample("driftwatch_state_restored_records_total", "", r.restored_records() as f64);
    o.family("driftwatch_state_restores_total", "counter", "Restores finished (one per assignment).");
    o.sample("driftwatch_state_restores_total", "", r.restores() as f64);
    o.s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value of the unlabelled sample `name`, with its HELP and TYPE lines checked.
    fn counter(text: &str, name: &str) -> Option<f64> {
        assert!(text.contains(&format!("\n# HELP {name} ")), "no HELP for {name}:\n{text}");
        assert!(text.contains(&format!("\n# TYPE {name} counter\n")), "{name} is not a counter:\n{text}");
        text.lines().find_map(|l| l.strip_prefix(&format!("{name} "))).and_then(|v| v.parse().ok())
    }

    fn target(name: &str, version: &str, baseline: Option<&str>, state: TargetState) -> TargetOverview {
        TargetOverview {
            kind: Kind::App,
            name: name.into(),
            version: version.into(),
            baseline: baseline.map(Into::into),
            first_seen: 0,
            last_seen: 0,
            events: 10,
            errors: 0,
            late: 0,
            window: (0, 60_000),
            window_events: 10,
            window_errors: 0,
            window_error_rate: 0.0,
            latency_ms: None,
            latency_total: (0, 0.0),
            error_rate_e_value: None,
            drift: Vec::new(),
            labels: None,
            detectors: Vec::new(),
            state,
            rolled_back: state == TargetState::RolledBack,
            promoted: false,
        }
    }

    #[test]
    fn per_version_series_follow_metrics_targets() {
        let mut v = View {
            targets: vec![
                target("cart", "1.0", None, TargetState::Healthy),
                target("cart", "1.1", Some("1.0"), TargetState::Healthy),
                target("search", "4", None, TargetState::Healthy),
                target("search", "5", None, TargetState::RolledBack),
                target("users", "2", None, TargetState::Healthy),
            ],
            ..View::default()
        };
        let mut exported = |mode| {
            v.metrics_targets = mode;
            let r = render(&v);
            let text = String::from_utf8(r.text.to_vec()).expect("UTF-8");
            let states: Vec<String> = text
                .lines()
                .filter_map(|l| l.strip_prefix("driftwatch_target_state{kind=\"app\",name=\""))
                .map(|l| l.split("\",state").next().unwrap_or_default().replace("\",version=\"", " "))
                .collect();
            let healthy = text
                .lines()
                .find_map(|l| l.strip_prefix("driftwatch_targets_by_state{kind=\"app\",state=\"healthy\"} "));
            assert_eq!(healthy, Some("4"), "every version is counted by state:\n{text}");
            states
        };
        assert_eq!(exported(MetricsTargets::Compared), ["cart 1.0", "cart 1.1", "search 5"]);
        assert_eq!(exported(MetricsTargets::All).len(), 5);
        assert!(exported(MetricsTargets::None).is_empty());
    }

    #[test]
    fn engine_counters_are_exported_as_counters() {
        let mut v = View::default();
        v.counters.late_events = 4;
        v.counters.dropped_over_target_limit = 2;
        v.counters.drift_type_mismatches = 3;
        let r = render(&v);
        let text = std::str::from_utf8(&r.text).expect("UTF-8");
        assert_eq!(counter(text, "driftwatch_late_events_total"), Some(4.0));
        assert_eq!(counter(text, "driftwatch_events_dropped_total"), Some(2.0));
        assert_eq!(counter(text, "driftwatch_drift_type_mismatches_total"), Some(3.0));
    }
}

//! The default configuration as commented TOML (`driftwatch config`).
//!
//! Keys and default values come from serializing [`Config::default`]; what each key means comes
//! from the table in [`docs`], the one place settings are described for users. Keys that are
//! unset by default (optional settings, the entries of `[[baselines]]`, `[[targets]]` and
//! `[[profiles]]`) are shown commented out with an example value. The tests check that every
//! key of [`Config`] is described, that every description names a key, and that the output
//! loads back as the defaults.

use toml::{Table, Value};

use super::{Config, ConfigError};

/// What one documented path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A section (`[path]`), commented out when it is unset by default.
    Table,
    /// An array of tables (`[[path]]`), empty by default: shown as a commented example.
    Array,
    /// A key shown with its default value.
    Key,
    /// A key unset by default, shown commented out with this example value.
    Unset(&'static str),
}

/// One documented path (dotted from the root; entries of an array share the array's path).
#[derive(Debug)]
struct Doc {
    path: String,
    item: Item,
    text: String,
}

/// The descriptions, in the order they are printed within each section.
#[derive(Debug, Default)]
struct Docs(Vec<Doc>);

impl Docs {
    fn add(mut self, path: &str, item: Item, text: &str) -> Self {
        self.0.push(Doc { path: path.to_owned(), item, text: text.to_owned() });
        self
    }

    fn table(self, path: &str, text: &str) -> Self {
        self.add(path, Item::Table, text)
    }

    fn array(self, path: &str, text: &str) -> Self {
        self.add(path, Item::Array, text)
    }

    fn key(self, path: &str, text: &str) -> Self {
        self.add(path, Item::Key, text)
    }

    fn unset(self, path: &str, example: &'static str, text: &str) -> Self {
        self.add(path, Item::Unset(example), text)
    }

    /// A window section (`length`, `step`, `count`); `counted` names what `count` counts, and
    /// `example` holds example values of the three keys.
    fn window(self, path: &str, text: &str, counted: &str, example: [&'static str; 3]) -> Self {
        self.table(path, text)
            .unset(
                &format!("{path}.length"),
                example[0],
                "Window length: the window covers the last `length / step` closed buckets; with \
                 `count`, the furthest it reaches back. A whole multiple of `step`.",
            )
            .unset(
                &format!("{path}.step"),
                example[1],
                "How often the window advances, and the bucket width. Whole seconds, at least 1s.",
            )
            .unset(
                &format!("{path}.count"),
                example[2],
                &format!(
                    "Count window: the newest closed buckets that together hold at least this many \
                     {counted}, reaching back at most `length`. Without a count: a time window of `length`."
                ),
            )
    }
}

impl Docs {
    /// The `extend` key of an error-rate or latency window, which is refused.
    fn fixed(self, path: &str) -> Self {
        self.unset(
            &format!("{path}.extend"),
            "\"0s\"",
            "0s only: the drift and accuracy windows extend, this one does not (the error-rate test reads every \
             second since the candidate started; latency compares the same buckets of both versions).",
        )
    }

    /// The `extend` key of a drift or accuracy window.
    fn extending(self, path: &str) -> Self {
        self.unset(
            &format!("{path}.extend"),
            "\"60d\"",
            "Reach back up to this long in all while the window holds fewer than the rule's minimum. Unset: \
             `windows.extend`; 0s: never.",
        )
    }
}

/// Every key of [`Config`], described.
fn docs() -> Docs {
    const RULE_WINDOW: [&str; 3] = ["\"30m\"", "\"1m\"", "5000"];
    const TARGET_WINDOW: [&str; 3] = ["\"7d\"", "\"1h\"", "1000"];
    const EVERY_RULE: &str = "of what each rule counts (events, latencies or labels)";
    Docs::default()
        .key("policy", "Name of the policy, copied into every command.")
        .key("dry_run", "Mark every command `dry_run: true` (downstream tooling should only log them).")
        .table(
            "windows",
            "Event-time windows shared by every rule. Events go into buckets `step` wide; when the watermark \
             (newest event time minus `allowed_lateness`) passes the end of a bucket, the rules read their \
             window from the closed buckets. `[<rule>.window]` and `[[targets]]` override `length` and `step` \
             key by key, and may set `count`: the newest buckets holding that many. A drift or accuracy window \
             that holds fewer than its rule's `min_events` (`min_labels`) reaches further back, up to `extend`, \
             until it does: slow targets are decided on without configuration, and the evidence says whether \
             a window was cut by time, by count or extended.",
        )
        .key(
            "windows.length",
            "Default window length: a window covers the last `length / step` closed buckets. A whole multiple \
             of `step`, at most 100000 steps.",
        )
        .key(
            "windows.step",
            "Default step: how often windows advance, and the bucket width. Whole seconds, at least 1s.",
        )
        .key(
            "windows.allowed_lateness",
            "Events up to this much older than the newest event seen still go into their window; older ones \
             are counted as late (in totals, not in windows). 0s to 1d.",
        )
        .key(
            "windows.max_future",
            "Events further ahead of the newest event seen than this are bad input (`future_timestamp`), so \
             one broken clock cannot fast-forward every window. At least 1s.",
        )
        .key(
            "windows.extend",
            "Drift and accuracy windows short of their rule's minimum reach back up to this long in all (e.g. a \
             model serving one prediction every 10 minutes needs about 7 days for 1000 events). 0s: never.",
        )
        .table(
            "error_rate",
            "Error-rate rule → rollback: a sequential test of the candidate's error rate against the baseline's, \
             valid however often it is looked at.",
        )
        .key("error_rate.enabled", "Rule on/off.")
        .key(
            "error_rate.alpha",
            "Largest probability of rolling back a healthy candidate, under continuous monitoring. Between 0 and \
             0.5.",
        )
        .key("error_rate.min_relative_increase", "A rise must be at least this relative increase (0.5 = +50%) …")
        .key(
            "error_rate.min_absolute_increase",
            "… and at least this absolute increase (0.005 = 0.5 percentage points).",
        )
        .key(
            "error_rate.min_events",
            "Events each side must have served since the candidate started before a decision.",
        )
        .window(
            "error_rate.window",
            "Window of the reported error rates, and of the baseline's traffic before the switch that a full \
             rollout is compared with (the test itself reads every second since the candidate started). Unset \
             keys come from `[windows]`.",
            "events",
            RULE_WINDOW,
        )
        .fixed("error_rate.window")
        .table(
            "latency",
            "Latency rule → rollback: the candidate's latency quantile against the baseline's over the same span.",
        )
        .key("latency.enabled", "Rule on/off.")
        .key("latency.quantile", "Quantile compared (0.99 = p99).")
        .key("latency.max_ratio", "Roll back when the candidate's quantile ≥ this × the baseline's. Greater than 1.")
        .key("latency.min_events", "Latencies needed on each side.")
        .window(
            "latency.window",
            "Window of the candidate's latencies; the baseline's are summed over the same buckets (after a full \
             rollout: its window before the switch). Unset keys come from `[windows]`.",
            "latencies",
            RULE_WINDOW,
        )
        .fixed("latency.window")
        .table("accuracy", "Accuracy rules from late labels → rollback, review or retrain.")
        .key("accuracy.enabled", "Rule on/off.")
        .key(
            "accuracy.alpha",
            "Probability of a false accuracy decision (each side's confidence sequence gets half). Between 0 and \
             0.5.",
        )
        .key(
            "accuracy.rollback_drop",
            "A confident drop of at least this much (0.05 = 5 points) → rollback; against the version's own \
             reference → retrain (at most once per `retrain.cooldown`).",
        )
        .key(
            "accuracy.review_drop",
            "A drop shown (its lower confidence bound above 0) and estimated at least this much, and below \
             `rollback_drop` → review: real and large enough to matter. Smaller than `rollback_drop`.",
        )
        .key("accuracy.min_labels", "Labels needed on each side.")
        .key(
            "accuracy.long_window_labels",
            "Against its own reference, a version's window is also read reaching back (within `accuracy.window`'s \
             `extend`) until it holds this many labels, for losses too small to show on `min_labels`; both \
             windows are then judged at alpha/2.",
        )
        .unset("accuracy.min_accuracy", "0.9", "Roll back when accuracy is confidently below this. Unset: no floor.")
        .key(
            "accuracy.max_pending",
            "Predictions awaiting their label, at most (the oldest are evicted first, counted).",
        )
        .key("accuracy.max_label_delay", "Predictions wait at most this long (event time) for their label.")
        .key(
            "accuracy.label_probation",
            "A model version whose predictions waited this long without one label is taken as unlabelled: its \
             predictions are not kept until `max_label_delay` has passed, then it is tried again.",
        )
        .window(
            "accuracy.window",
            "Window a version is compared with its own reference in: the accuracy in its profile, else its labels \
             before the window (from its first window with `min_labels` labels, growing by every bucket leaving \
             the window until a loss is decided on). Unset keys come from `[windows]`.",
            "labels",
            RULE_WINDOW,
        )
        .extending("accuracy.window")
        .table(
            "drift",
            "Drift rule → retrain: PSI of each feature and of the predictions against the reference (the \
             version's profile, else its warm-up traffic).",
        )
        .key("drift.enabled", "Rule on/off.")
        .key("drift.psi_threshold", "PSI at or above this is drift.")
        .key("drift.bins", "Quantile bins of numeric features, 2 to 100.")
        .key("drift.min_events", "Events needed in the current window.")
        .key(
            "drift.warmup",
            "Warm-up reference when no profile is attached: a version's first `warmup` of traffic, extended \
             until it holds `min_reference_events`.",
        )
        .key("drift.min_reference_events", "Events needed in the warm-up reference.")
        .key(
            "drift.max_reference_categories",
            "Most frequent categories of a feature kept as their own bin; the rest share the \"unseen\" bin.",
        )
        .window(
            "drift.window",
            "Window compared with the reference; it never reaches back into the warm-up reference. Unset keys \
             come from `[windows]`.",
            "events",
            RULE_WINDOW,
        )
        .extending("drift.window")
        .table("retrain", "Retrain commands.")
        .key("retrain.cooldown", "At most one retrain per model version per this much event time.")
        .key(
            "retrain.reminder",
            "One retrain per episode: once drift (or an accuracy loss) has asked for a retrain, it asks again \
             only after a full window without it, or, while it lasts, once per this much event time.",
        )
        .table(
            "promote",
            "Promote command for a healthy candidate: its error rate shown not worse than the baseline's by the \
             minimum effect, latency not regressing, no adverse finding; a model version whose labels flow also \
             needs its accuracy drop shown below accuracy.rollback_drop and observed below accuracy.review_drop.",
        )
        .key("promote.enabled", "Rule on/off.")
        .key("promote.min_events", "Events the candidate must have served.")
        .key("promote.min_duration", "Event time the candidate must have served.")
        .table("limits", "Bounds on state, whatever the input.")
        .key("limits.max_targets", "App and model versions tracked at once; events for more are counted and dropped.")
        .key(
            "limits.max_features",
            "Features tracked per model version; further feature names are counted and ignored.",
        )
        .key(
            "limits.max_categories",
            "Distinct categories tracked per feature; further ones share one overflow bucket.",
        )
        .key("limits.target_idle_ttl", "A version with no events for this long (event time) is forgotten. At least 1m.")
        .key("limits.decision_log", "Decisions kept in memory for the API.")
        .array(
            "baselines",
            "Pinned baselines, one table each. None by default: the baseline is the version serving before a new \
             one appeared.",
        )
        .unset("baselines.kind", "\"app\"", "`app` or `model`.")
        .unset("baselines.name", "\"checkout\"", "App or model name.")
        .unset("baselines.version", "\"2.3.0\"", "The version every other version is compared with.")
        .array(
            "targets",
            "Window overrides for one app or model (all its versions), e.g. a model with little traffic. A \
             rule's window takes each key from the first that sets it: `<rule>_window`, `window`, \
             `[<rule>.window]`, `[windows]`.",
        )
        .unset("targets.kind", "\"model\"", "`app` or `model`.")
        .unset("targets.name", "\"churn\"", "App or model name.")
        .window("targets.window", "Window of every rule of this target.", EVERY_RULE, TARGET_WINDOW)
        .extending("targets.window")
        .window("targets.error_rate_window", "Window of the error-rate rule of this target.", "events", TARGET_WINDOW)
        .fixed("targets.error_rate_window")
        .window("targets.latency_window", "Window of the latency rule of this target.", "latencies", TARGET_WINDOW)
        .fixed("targets.latency_window")
        .window("targets.accuracy_window", "Window of the accuracy rule of this target.", "labels", TARGET_WINDOW)
        .extending("targets.accuracy_window")
        .window("targets.drift_window", "Window of the drift rule of this target.", "events", TARGET_WINDOW)
        .extending("targets.drift_window")
        .array(
            "profiles",
            "Reference profiles (`driftwatch baseline`), one table each: the drift reference, and the accuracy \
             reference when the profile records one. None by default.",
        )
        .unset("profiles.model", "\"fraud\"", "Model name.")
        .unset("profiles.version", "\"7\"", "Model version. Unset: every version of the model.")
        .unset("profiles.path", "\"profiles/fraud-7.arrow\"", "Profile file (Arrow IPC).")
        .table("fleet", "Inputs from serving fleets (KServe, Seldon): decoding and request/response pairing.")
        .key(
            "fleet.response_timeout",
            "A request whose response has not come this long (event time) after it is an error \
             (`no_response`); a response without its request within it is a prediction without features.",
        )
        .key(
            "fleet.max_pending",
            "Requests waiting for their response, at most; beyond it new requests are counted (`over_limit`) and \
             not tracked.",
        )
        .table("fleet.kserve", "KServe inference-logger CloudEvents (topics of format `kserve`).")
        .unset(
            "fleet.kserve.version_header",
            "\"X-Model-Version\"",
            "A request header kept in `ce_metadata` that names the version. Unset: the Open Inference Protocol \
             `model_version`, else the endpoint (`default` / `canary`).",
        )
        .key(
            "fleet.kserve.columns",
            "Feature names for the columns of unnamed inputs. Empty: `<tensor>_<j>` (V2), `x<j>` (V1).",
        )
        .unset(
            "fleet.kserve.output",
            "\"output-0\"",
            "Output tensor (V2) or key of object predictions (V1) taken as the prediction. Unset: the first \
             output tensor.",
        )
        .table("fleet.seldon", "Seldon Core v2 inference topics (format `seldon`).")
        .key("fleet.seldon.topic_prefix", "The topic prefix Seldon was installed with (its `kafka.topicPrefix`).")
        .unset(
            "fleet.seldon.version_header",
            "\"x-model-version\"",
            "A record header naming the version. Unset, or a record without it: the response's `model_version`, \
             else `default`.",
        )
        .key("fleet.seldon.columns", "Feature names for the columns of an input tensor. Empty: `<tensor>_<j>`.")
        .unset("fleet.seldon.output", "\"output-0\"", "Output tensor taken as the prediction. Unset: the first.")
        .table("kafka", "The Kafka service (`driftwatch run`).")
        .key("kafka.brokers", "Bootstrap servers (`--brokers` and `DRIFTWATCH_BROKERS` override).")
        .key("kafka.group_id", "Consumer group.")
        .key("kafka.delivery", "`exactly_once` or `at_least_once` (`--delivery` overrides).")
        .key("kafka.transactional_id", "Transactional id (exactly-once); one per instance.")
        .key("kafka.commit_interval", "How often state and offsets are committed (and commands become visible).")
        .key(
            "kafka.idle_timeout",
            "With no input for this long, event time advances with the wall clock, so decisions are not held \
             back when traffic stops.",
        )
        .key(
            "kafka.partition_wait",
            "How long an input partition read to its end holds back the other partitions' newer records \
             (partitions merge by event time); one quiet for longer is passed by.",
        )
        .key(
            "kafka.tasks",
            "Task partitions of a scaled-out group: the instances of one consumer group split the targets over \
             this many partitions of `{group_id}-tasks` (labels joined over `{group_id}-joins`, state in \
             `{group_id}-state`). 0: one instance per group.",
        )
        .key("kafka.joins", "Label-join partitions of a scaled-out group (0: as many as `tasks`).")
        .key(
            "kafka.max_queued",
            "Records a task or join of a scaled-out group holds while it waits for a slower upstream, at most \
             (about): past it, the records of upstreams running ahead are read again from the internal topic \
             once there is room.",
        )
        .key(
            "kafka.instance",
            "This instance's name in a scaled-out group (`DRIFTWATCH_INSTANCE` overrides), for its transactional \
             id `{transactional_id}-{instance}`. Empty: a random name per start.",
        )
        .key("kafka.create_topics", "Create missing topics at start-up.")
        .key("kafka.partitions", "Partitions of created topics.")
        .key("kafka.replication_factor", "Replication factor of created topics.")
        .key(
            "kafka.properties",
            "librdkafka properties for every client, e.g. `{ \"security.protocol\" = \"SASL_SSL\" }`.",
        )
        .key("kafka.consumer_properties", "librdkafka properties for the consumers only.")
        .key("kafka.producer_properties", "librdkafka properties for the producer only.")
        .table("kafka.topics", "Topic names.")
        .key("kafka.topics.events", "Input topics.")
        .key("kafka.topics.rollback", "Rollback commands.")
        .key("kafka.topics.retrain", "Retrain commands.")
        .key("kafka.topics.review", "Review commands.")
        .key("kafka.topics.promote", "Promote commands.")
        .key("kafka.topics.decisions", "Every decision (audit log).")
        .key("kafka.topics.deadletter", "Bad input, forwarded unchanged with the reason in headers.")
        .key("kafka.topics.changelog", "Compacted topic holding the engine's state.")
        .key(
            "kafka.topics.formats",
            "Format of each input topic not written as driftwatch events (`kserve` or `seldon`), e.g. \
             `{ \"kserve.logs\" = \"kserve\" }`.",
        )
        .table("http", "The HTTP API and status page (`driftwatch run --http`, `driftwatch demo --http`).")
        .unset("http.listen", "\"0.0.0.0:9464\"", "Address to serve on (`--http` overrides). Unset: no server.")
        .unset(
            "http.advertise",
            "\"http://driftwatch-2:9464\"",
            "In a scaled-out group (`kafka.tasks`), the URL other members send clients to for the targets this \
             instance decides. Unset: `http://{host}:{port}` of the address served on (the host name when it \
             listens on every address).",
        )
        .unset(
            "http.token",
            "\"change-me\"",
            "Bearer token required on everything but `/healthz`, `/readyz` and the page's static shell \
             (`DRIFTWATCH_HTTP_TOKEN` overrides). Unset: no authentication.",
        )
        .unset(
            "http.hook_token",
            "\"flagger-hook\"",
            "Token Flagger's webhooks may send as `metadata.token`; it opens the `/v1/flagger/*` hooks only. \
             Unset: the hooks need the bearer token, if any.",
        )
        .key("http.decision_retention", "Published decisions kept for `/v1/decisions` (newest win).")
        .key("http.history_points", "Points kept per time series of the charts.")
        .key("http.history_step", "Event time between two points of the charts.")
        .key("http.publish_interval", "Shortest time between two published views.")
        .key(
            "http.metrics_targets",
            "Versions with per-version series in `/metrics`: `compared` (versions compared with a baseline, \
             their baselines, and versions with a finding), `all`, or `none`. Every version is counted by \
             state in `driftwatch_targets_by_state` either way.",
        )
}

const HEADER: &str = "\
# driftwatch configuration: every key with its default value (`driftwatch config`).
# Lines `# key = value` are unset by default and show an example; remove the `#` to set them.
# Durations are a whole number and a unit: ms, s, m, h, d or w (\"500ms\", \"30s\", \"10m\", \"7d\").
# Unknown keys are errors naming the key.

";

/// Longest comment line, `# ` included.
const WIDTH: usize = 100;

/// The default configuration as commented TOML: every key with its default value (or, when it
/// is unset by default, a commented-out example) under a comment saying what it means.
pub fn commented_defaults() -> Result<String, ConfigError> {
    let defaults = match Value::try_from(Config::default()) {
        Ok(Value::Table(t)) => t,
        Ok(_) => return Err(broken("", "does not serialize as a table")),
        Err(e) => return Err(broken("", &e.to_string())),
    };
    let docs = docs();
    let mut out = String::from(HEADER);
    render(&docs.0, &defaults, "", false, &mut out)?;
    Ok(out)
}

fn broken(key: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), reason: format!("the configuration reference: {reason}") }
}

/// The section at `prefix`: its keys, then its sub-sections.
fn render(docs: &[Doc], defaults: &Table, prefix: &str, commented: bool, out: &mut String) -> Result<(), ConfigError> {
    let children = || docs.iter().filter(move |d| parent(&d.path) == prefix);
    for d in children().filter(|d| matches!(d.item, Item::Key | Item::Unset(_))) {
        let name = leaf(&d.path);
        let line = match (d.item, lookup(defaults, &d.path)) {
            (Item::Key, Some(v)) if !commented => format!("{name} = {v}"),
            (Item::Unset(example), None) => format!("# {name} = {example}"),
            (_, Some(_)) => return Err(broken(&d.path, "has a default value but is documented as unset")),
            (_, None) => return Err(broken(&d.path, "has no default value to show")),
        };
        comment(&d.text, out);
        out.push_str(&line);
        out.push('\n');
    }
    for d in children().filter(|d| matches!(d.item, Item::Table | Item::Array)) {
        let value = lookup(defaults, &d.path);
        let (header, sub_commented) = match (d.item, value) {
            (Item::Array, Some(Value::Array(a))) if a.is_empty() => (format!("# [[{}]]", d.path), true),
            (Item::Table, Some(Value::Table(_))) if !commented => (format!("[{}]", d.path), false),
            (Item::Table, None) => (format!("# [{}]", d.path), true),
            _ => return Err(broken(&d.path, "is not a section of the default configuration")),
        };
        out.push('\n');
        comment(&d.text, out);
        out.push_str(&header);
        out.push('\n');
        render(docs, defaults, &d.path, sub_commented, out)?;
    }
    Ok(())
}

/// `text` as `# ` lines of at most [`WIDTH`] characters; `code spans` are not broken.
fn comment(text: &str, out: &mut String) {
    let mut words: Vec<String> = Vec::new();
    for word in text.split_whitespace() {
        match words.last_mut() {
            Some(open) if open.matches('`').count() % 2 == 1 => {
                open.push(' ');
                open.push_str(word);
            }
            _ => words.push(word.to_owned()),
        }
    }
    let mut line = String::from("#");
    for word in &words {
        if line.len() > 1 && line.chars().count() + 1 + word.chars().count() > WIDTH {
            out.push_str(&line);
            out.push('\n');
            line.truncate(1);
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

fn parent(path: &str) -> &str {
    path.rsplit_once('.').map_or("", |(p, _)| p)
}

fn leaf(path: &str) -> &str {
    path.rsplit_once('.').map_or(path, |(_, l)| l)
}

/// The value at a dotted path of sections.
fn lookup<'v>(root: &'v Table, path: &str) -> Option<&'v Value> {
    let mut parts = path.split('.');
    let mut value = root.get(parts.next()?)?;
    for part in parts {
        value = value.as_table()?.get(part)?;
    }
    Some(value)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde::de::value::{Error as DeError, MapDeserializer};
    use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
    use serde::Deserialize;

    use super::*;

    /// A deserializer that answers every struct with all of its fields and records their dotted
    /// paths: every key a config file may hold, whether or not it has a default value.
    struct Tracer<'a> {
        path: String,
        found: &'a mut BTreeSet<String>,
    }

    macro_rules! answer {
        ($($method:ident => $visit:ident($value:expr)),* $(,)?) => {
            $(fn $method<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
                v.$visit($value)
            })*
        };
    }

    impl<'de> Deserializer<'de> for Tracer<'_> {
        type Error = DeError;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, DeError> {
            Err(de::Error::custom(format!("`{}` has no type to trace", self.path)))
        }

        answer! {
            deserialize_bool => visit_bool(true),
            deserialize_u8 => visit_u64(1),
            deserialize_u16 => visit_u64(1),
            deserialize_u32 => visit_u64(1),
            deserialize_u64 => visit_u64(1),
            deserialize_i8 => visit_i64(1),
            deserialize_i16 => visit_i64(1),
            deserialize_i32 => visit_i64(1),
            deserialize_i64 => visit_i64(1),
            deserialize_f32 => visit_f64(0.5),
            deserialize_f64 => visit_f64(0.5),
            // A duration, a name or a path.
            deserialize_str => visit_str("1s"),
            deserialize_string => visit_str("1s"),
            // Maps have free-form keys: nothing to trace inside.
            deserialize_map => visit_map(MapDeserializer::<_, DeError>::new(std::iter::empty::<(&str, &str)>())),
        }

        fn deserialize_option<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            v.visit_some(self)
        }

        fn deserialize_seq<V: Visitor<'de>>(self, v: V) -> Result<V::Value, DeError> {
            v.visit_seq(One(Some(self)))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, DeError> {
            v.visit_map(Fields { tracer: self, fields: fields.iter(), current: "" })
        }

        fn deserialize_enum<V: Visitor<'de>>(
            self,
            _: &'static str,
            variants: &'static [&'static str],
            v: V,
        ) -> Result<V::Value, DeError> {
            let first = variants.first().ok_or_else(|| de::Error::custom("an enum without variants"))?;
            v.visit_enum(IntoDeserializer::<DeError>::into_deserializer(*first))
        }

        serde::forward_to_deserialize_any! {
            i128 u128 char bytes byte_buf unit unit_struct newtype_struct tuple tuple_struct identifier ignored_any
        }
    }

    /// An array of one element, traced at the array's path.
    struct One<'a>(Option<Tracer<'a>>);

    impl<'de> SeqAccess<'de> for One<'_> {
        type Error = DeError;

        fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, DeError> {
            self.0.take().map(|t| seed.deserialize(t)).transpose()
        }
    }

    /// The fields of a struct, each traced at its own path.
    struct Fields<'a> {
        tracer: Tracer<'a>,
        fields: std::slice::Iter<'static, &'static str>,
        current: &'static str,
    }

    impl<'de> MapAccess<'de> for Fields<'_> {
        type Error = DeError;

        fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, DeError> {
            let Some(field) = self.fields.next() else { return Ok(None) };
            self.current = field;
            seed.deserialize(IntoDeserializer::<DeError>::into_deserializer(*field)).map(Some)
        }

        fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
            let path = join(&self.tracer.path, self.current);
            self.tracer.found.insert(path.clone());
            seed.deserialize(Tracer { path, found: &mut *self.tracer.found })
        }
    }

    fn join(prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}.{key}")
        }
    }

    /// Every key a config file may hold.
    fn config_keys() -> BTreeSet<String> {
        let mut found = BTreeSet::new();
        Config::deserialize(Tracer { path: String::new(), found: &mut found }).expect("every field traced");
        found
    }

    /// The key paths of a serialized config (entries of arrays at the array's path).
    fn serialized_keys(value: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Table(t) => {
                for (k, v) in t {
                    let path = join(prefix, k);
                    serialized_keys(v, &path, out);
                    out.insert(path);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| serialized_keys(v, prefix, out)),
            _ => {}
        }
    }

    fn keys_of(cfg: &Config) -> BTreeSet<String> {
        let mut out = BTreeSet::new();
        serialized_keys(&Value::try_from(cfg).expect("serializes"), "", &mut out);
        out
    }

    fn documented() -> BTreeSet<String> {
        docs().0.into_iter().map(|d| d.path).collect()
    }

    fn printed() -> String {
        commented_defaults().expect("the reference renders")
    }

    /// The TOML of a printed line that shows an example (`# key = value`, `# [section]`).
    fn example(line: &str) -> Option<&str> {
        let rest = line.strip_prefix("# ")?;
        let key = rest.split_once(" = ").map(|(k, _)| k);
        let is_key = key.is_some_and(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        (is_key || rest.starts_with('[')).then_some(rest)
    }

    #[test]
    fn every_key_has_a_description_and_every_description_names_a_key() {
        let keys = config_keys();
        let docs = documented();
        let undocumented: Vec<_> = keys.difference(&docs).collect();
        assert!(undocumented.is_empty(), "config keys without a description in config/reference.rs: {undocumented:?}");
        let unknown: Vec<_> = docs.difference(&keys).collect();
        assert!(unknown.is_empty(), "descriptions of keys the config does not have: {unknown:?}");
        let serialized = keys_of(&Config::default());
        assert!(serialized.is_subset(&docs), "{:?}", serialized.difference(&docs).collect::<Vec<_>>());
        assert_eq!(super::docs().0.len(), docs.len(), "a key is described twice");
    }

    #[test]
    fn printed_defaults_load_as_the_default_config() {
        let text = printed();
        let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        assert_eq!(cfg, Config::default());
    }

    #[test]
    fn every_key_is_printed_in_its_section_under_a_comment() {
        let text = printed();
        let mut section = String::new();
        let mut shown = BTreeSet::new();
        let mut previous = "";
        for line in text.lines() {
            assert!(line.chars().count() <= WIDTH || !line.starts_with("# "), "too long: {line}");
            let toml = example(line).unwrap_or(line);
            if let Some(header) = toml.strip_prefix('[') {
                section = header.trim_matches(|c| c == '[' || c == ']').to_owned();
                shown.insert(section.clone());
            } else if let Some((key, _)) = toml.split_once(" = ").filter(|_| !toml.starts_with('#')) {
                shown.insert(join(&section, key));
            } else {
                previous = line;
                continue;
            }
            assert!(previous.starts_with("# ") && example(previous).is_none(), "no comment above `{line}`");
            previous = line;
        }
        assert_eq!(shown, documented());
        assert!(text.contains("\n[accuracy]\n"), "{text}");
        assert!(text.contains("\n# min_accuracy = 0.9\n"), "{text}");
        assert!(text.contains("\n# [[targets]]\n"), "{text}");
    }

    #[test]
    fn printed_examples_uncommented_are_valid_and_set_every_key() {
        let text: String = printed().lines().map(|l| format!("{}\n", example(l).unwrap_or(l))).collect();
        let cfg = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let set = keys_of(&cfg);
        let unset: Vec<_> = documented().into_iter().filter(|k| !set.contains(k)).collect();
        assert!(unset.is_empty(), "keys without an example: {unset:?}");
        assert_eq!(cfg.windows_for(super::super::Kind::Model, "churn").drift.min_count, Some(1000));
    }
}

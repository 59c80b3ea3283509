//! The `[kafka]` section: brokers, group, topics, delivery, timing and client properties.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::command::CommandKind;
use crate::config::{ConfigError, Duration};

/// Delivery guarantee of commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Delivery {
    /// Commands, state and input offsets commit in one transaction: consumers reading with
    /// `isolation.level=read_committed` see each command exactly once.
    ExactlyOnce,
    /// Commands are published, then offsets committed; after a crash some commands may be
    /// published again with the same `command_id`.
    AtLeastOnce,
}

/// Topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicsConfig {
    /// Input topics.
    pub events: Vec<String>,
    /// Rollback commands.
    pub rollback: String,
    /// Retrain commands.
    pub retrain: String,
    /// Review commands.
    pub review: String,
    /// Promote commands.
    pub promote: String,
    /// Every decision (audit log).
    pub decisions: String,
    /// Bad input, forwarded unchanged with the reason in headers.
    pub deadletter: String,
    /// Compacted topic holding the engine's state.
    pub changelog: String,
    /// How each input topic's records are written, by topic: `driftwatch` (the default),
    /// `kserve` (KServe inference-logger CloudEvents) or `seldon` (Seldon Core v2 model topics),
    /// e.g. `formats = { "kserve.logs" = "kserve" }`.
    pub formats: BTreeMap<String, crate::fleet::Format>,
}

impl Default for TopicsConfig {
    fn default() -> Self {
        TopicsConfig {
            events: vec!["driftwatch.events".into()],
            rollback: "driftwatch.rollback".into(),
            retrain: "driftwatch.retrain".into(),
            review: "driftwatch.review".into(),
            promote: "driftwatch.promote".into(),
            decisions: "driftwatch.decisions".into(),
            deadletter: "driftwatch.deadletter".into(),
            changelog: "driftwatch.changelog".into(),
            formats: BTreeMap::new(),
        }
    }
}

impl TopicsConfig {
    /// The topic of a command kind.
    pub fn for_command(&self, k: CommandKind) -> &str {
        match k {
            CommandKind::Rollback => &self.rollback,
            CommandKind::Retrain => &self.retrain,
            CommandKind::Review => &self.review,
            CommandKind::Promote => &self.promote,
        }
    }

    /// The command topics, in the order of [`CommandKind::ALL`].
    pub fn command_topics(&self) -> [&str; 4] {
        CommandKind::ALL.map(|k| self.for_command(k))
    }

    /// Every topic driftwatch reads or writes: the input topics, then the command topics, the
    /// decisions, the dead letters and last the changelog.
    pub fn all(&self) -> Vec<&str> {
        let mut all: Vec<&str> = self.events.iter().map(String::as_str).collect();
        all.extend(self.command_topics());
        all.extend([self.decisions.as_str(), self.deadletter.as_str(), self.changelog.as_str()]);
        all
    }
}

/// The `[kafka]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers (`--brokers` and `DRIFTWATCH_BROKERS` override).
    pub brokers: String,
    /// Consumer group.
    pub group_id: String,
    /// Topic names.
    pub topics: TopicsConfig,
    /// `exactly_once` (default) or `at_least_once`.
    pub delivery: Delivery,
    /// Transactional id (exactly-once); one per instance.
    pub transactional_id: String,
    /// How often state and offsets are committed (and commands become visible).
    pub commit_interval: Duration,
    /// With no input for this long, event time is advanced by the wall-clock time that passes,
    /// so decisions are not held back when traffic stops.
    pub idle_timeout: Duration,
    /// How long an input partition read to its end holds back the other partitions' records
    /// newer than its own (Kafka Streams' `max.task.idle.ms`). Partitions merge by event time;
    /// one that receives records again within this time gives the order `replay` gives, one
    /// quiet for longer is passed by and its next records may arrive late. A partition not read
    /// to its end holds the merge while the broker says it has records left to fetch.
    pub partition_wait: Duration,
    /// Task partitions of a scaled-out group (0, the default: each instance reads every input
    /// partition it is assigned into one engine of its own, so one instance per group). With
    /// N > 0, the instances of one consumer group split the work by target over N partitions of
    /// the internal topic `{group_id}-tasks`, with labels joined over `{group_id}-joins`, state
    /// in `{group_id}-state`; any number of instances (up to N) give one instance's decisions.
    pub tasks: i32,
    /// Label-join partitions of a scaled-out group (0: as many as `tasks`).
    pub joins: i32,
    /// Records a task or join of a scaled-out group holds, at most (about), while it waits
    /// for a slower upstream: past it, the records of upstreams running ahead are left in the
    /// internal topic and read again once there is room, so memory stays bounded however far
    /// one member falls behind.
    pub max_queued: usize,
    /// This instance's name in a scaled-out group, for its transactional id
    /// (`{transactional_id}-{instance}`; `DRIFTWATCH_INSTANCE` overrides). A restarted instance
    /// with the same name aborts its predecessor's open transaction at once; empty: a new
    /// random name per start (the broker aborts a dead instance's transaction after
    /// `transaction.timeout.ms`, 30 s by default in a group).
    pub instance: String,
    /// Create missing topics at start-up.
    pub create_topics: bool,
    /// Partitions of created topics.
    pub partitions: i32,
    /// Replication factor of created topics.
    pub replication_factor: i32,
    /// librdkafka properties for every client (TLS, SASL, timeouts…), e.g.
    /// `"security.protocol" = "SASL_SSL"`.
    pub properties: BTreeMap<String, String>,
    /// librdkafka properties for the consumers only.
    pub consumer_properties: BTreeMap<String, String>,
    /// librdkafka properties for the producer only.
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            group_id: "driftwatch".into(),
            topics: TopicsConfig::default(),
            delivery: Delivery::ExactlyOnce,
            transactional_id: "driftwatch-0".into(),
            commit_interval: Duration(1000),
            idle_timeout: Duration(10_000),
            partition_wait: Duration(2_000),
            tasks: 0,
            joins: 0,
            max_queued: 20_000,
            instance: String::new(),
            create_topics: true,
            partitions: 3,
            replication_factor: 1,
            properties: BTreeMap::new(),
            consumer_properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.brokers.trim().is_empty() {
            return bad("kafka.brokers", "must name at least one HOST:PORT");
        }
        if self.topics.events.is_empty() {
            return bad("kafka.topics.events", "must name at least one input topic");
        }
        if let Some(t) = self.topics.formats.keys().find(|t| !self.topics.events.contains(t)) {
            return Err(ConfigError::Invalid {
                key: format!("kafka.topics.formats.\"{t}\""),
                reason: format!("`{t}` is not one of kafka.topics.events ({})", self.topics.events.join(", ")),
            });
        }
        if self.commit_interval.0 < 10 {
            return bad("kafka.commit_interval", "must be at least 10ms");
        }
        if self.idle_timeout.0 < 100 {
            return bad("kafka.idle_timeout", "must be at least 100ms");
        }
        if self.partitions < 1 || self.replication_factor < 1 {
            return bad("kafka.partitions", "partitions and replication_factor must be ≥ 1");
        }
        if self.group_id.is_empty() || self.transactional_id.is_empty() {
            return bad("kafka.group_id", "group_id and transactional_id must not be empty");
        }
        if !(0..=10_000).contains(&self.tasks) {
            return bad("kafka.tasks", "must be between 0 (one instance per group) and 10000");
        }
        if !(0..=10_000).contains(&self.joins) {
            return bad("kafka.joins", "must be between 0 (as many as tasks) and 10000");
        }
        if self.max_queued == 0 {
            return bad("kafka.max_queued", "must be at least 1");
        }
        if self.tasks > 0 {
            if self.delivery != Delivery::ExactlyOnce {
                return bad(
                    "kafka.tasks",
                    "a scaled-out group commits through transactions: needs delivery = \"exactly_once\"",
                );
            }
            if let Some((t, f)) = self.topics.formats.iter().find(|(_, f)| **f != crate::fleet::Format::Driftwatch) {
                return Err(ConfigError::Invalid {
                    key: "kafka.tasks".into(),
                    reason: format!(
                        "input topic `{t}` is read as `{f:?}`: a scaled-out group reads driftwatch events only; run one instance per group (tasks = 0) for fleet formats"
                    ),
                });
            }
        }
        for (section, props) in [("properties", &self.properties), ("consumer_properties", &self.consumer_properties)] {
            if props.get("partition.assignment.strategy").is_some_and(|s| s.contains("cooperative")) {
                return Err(ConfigError::Invalid {
                    key: format!("kafka.{section}.\"partition.assignment.strategy\""),
                    reason: "cooperative assignment is not supported: every rebalance releases all input \
                             partitions and resumes each where the engine's input ends; use `range` or \
                             `roundrobin`"
                        .into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_topic_of_the_section_once() {
        let t = TopicsConfig { events: vec!["in.a".into(), "in.b".into()], ..TopicsConfig::default() };
        let all = t.all();
        // Every name the section holds, whatever fields it gains.
        let mut named: Vec<String> = Vec::new();
        for (key, v) in serde_json::to_value(&t).expect("topics serialize").as_object().into_iter().flatten() {
            match v {
                serde_json::Value::String(s) => named.push(s.clone()),
                serde_json::Value::Array(a) => named.extend(a.iter().filter_map(|s| s.as_str().map(str::to_owned))),
                _ => assert_eq!(key, "formats", "a topic field `{key}` of an unexpected shape"),
            }
        }
        assert_eq!(all.len(), named.len(), "{all:?} vs {named:?}");
        for name in &named {
            assert_eq!(all.iter().filter(|t| *t == name).count(), 1, "{name} in {all:?}");
        }
        assert_eq!(&all[..2], ["in.a", "in.b"]);
        assert_eq!(all.last(), Some(&"driftwatch.changelog"));
    }
}

//! Inputs as serving fleets write them (contract §7): each input topic declares its format,
//! and a record — headers and payload, as Kafka holds it — is decoded into one [`Event`].
//!
//! `driftwatch` records are driftwatch JSON events. A `kserve` record is one half of an
//! inference — the logged request or the logged response — decoded into an
//! [`EventType::Inference`] event carrying a [`Part`]; the engine pairs the halves by id into
//! predictions, and counts a request whose response never comes as an error (KServe logs
//! responses only for HTTP 200). Pairing happens after the partitions are merged by event
//! time, so the halves may arrive on different partitions and the decisions still do not
//! depend on how the topic is split.
//!
//! `seldon` records are the same halves as Seldon Core v2 writes them onto its model topics
//! ([`seldon`]); its errors topic marks requests that failed.
//!
//! `replay --format F` reads the same records from a file of `kcat -J` envelopes
//! ([`envelope`]).

pub mod envelope;
pub mod kserve;
pub mod seldon;

use std::borrow::Cow;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::ConfigError;
use crate::event::{BadInput, Decoder, Event, FeatureValue, Features, Outcome};
use crate::time::Millis;

/// How the records of an input topic are written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// driftwatch JSON events (contract §1).
    #[default]
    Driftwatch,
    /// KServe inference-logger CloudEvents.
    Kserve,
    /// Seldon Core v2 inference topics.
    Seldon,
}

impl Format {
    /// Every format.
    pub const ALL: [Format; 3] = [Format::Driftwatch, Format::Kserve, Format::Seldon];

    /// The format named `s`.
    pub fn parse(s: &str) -> Result<Format, String> {
        Format::ALL.into_iter().find(|f| f.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Format::ALL.iter().map(|f| f.as_str()).collect();
            format!("unknown format `{s}` (expected one of: {})", names.join(", "))
        })
    }

    /// The config and CLI name.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Driftwatch => "driftwatch",
            Format::Kserve => "kserve",
            Format::Seldon => "seldon",
        }
    }
}

/// The `[fleet]` section: how fleet records are read and paired.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FleetConfig {
    /// A logged request whose response has not come this long (event time) after it counts as
    /// an error (`no_response`); a response whose request has not come within it counts as a
    /// prediction without features. Keep it within `windows.allowed_lateness` plus the time
    /// the slowest response takes.
    pub response_timeout: crate::config::Duration,
    /// Requests waiting for their response, at most; beyond it new requests are counted
    /// (`over_limit`) and not tracked.
    pub max_pending: usize,
    /// KServe records.
    pub kserve: kserve::KserveConfig,
    /// Seldon records.
    pub seldon: seldon::SeldonConfig,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            response_timeout: crate::config::Duration(10_000),
            max_pending: 100_000,
            kserve: kserve::KserveConfig::default(),
            seldon: seldon::SeldonConfig::default(),
        }
    }
}

impl FleetConfig {
    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.response_timeout.0 <= 0 {
            return bad("fleet.response_timeout", "must be positive");
        }
        if self.max_pending == 0 {
            return bad("fleet.max_pending", "must be at least 1");
        }
        self.kserve.validate()?;
        self.seldon.validate()
    }
}

/// A feature value owned by a [`Part`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Value {
    /// A finite number.
    Num(f64),
    /// A category.
    Str(String),
    /// A boolean category.
    Bool(bool),
    /// A missing value.
    Null,
}

impl Value {
    fn borrowed(&self) -> FeatureValue<'_> {
        match self {
            Value::Num(x) => FeatureValue::Num(*x),
            Value::Str(s) => FeatureValue::Str(Cow::Borrowed(s)),
            Value::Bool(b) => FeatureValue::Bool(*b),
            Value::Null => FeatureValue::Null,
        }
    }
}

/// A model output owned by a [`Part`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Output {
    /// A number (score, probability, regression output).
    Num(f64),
    /// A class.
    Class(String),
}

impl Output {
    /// As an event's outcome.
    pub fn outcome(&self) -> Outcome<'_> {
        match self {
            Output::Num(x) => Outcome::Num(*x),
            Output::Class(s) => Outcome::Class(Cow::Borrowed(s)),
        }
    }
}

/// One feature row: names and values, in order.
pub type Row = Vec<(String, Value)>;

/// The features of a row as an event holds them.
pub fn features_of(row: &Row) -> Features<'_> {
    row.iter().map(|(n, v)| (Cow::Borrowed(n.as_str()), v.borrowed())).collect()
}

/// Which half of an inference a record logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// The request: its inputs.
    Request,
    /// The response: its outputs.
    Response,
    /// The fleet's record that the request failed (Seldon's errors topic).
    Failure,
}

/// One logged half of an inference, decoded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Part {
    /// Request or response.
    pub role: Role,
    /// What the halves pair by (`ce_id`).
    pub id: String,
    /// The app and model name (`namespace/inferenceservice`).
    pub name: String,
    /// The version named by the record's routing (a configured metadata header, else the
    /// endpoint: `default` / `canary`).
    pub route: String,
    /// The version the model itself reported (Open Inference Protocol `model_version`).
    pub model_version: Option<String>,
    /// Feature rows, one per instance (requests).
    pub rows: Vec<Row>,
    /// Outputs, one per instance (responses).
    pub outputs: Vec<Option<Output>>,
}

impl Part {
    /// The event carrying this half, at `ts`.
    pub fn into_event<'a>(self, ts: Millis) -> Event<'a> {
        Event {
            kind: crate::event::EventType::Inference,
            ts,
            event_id: None,
            app: None,
            model: None,
            latency_ms: None,
            features: Features::new(),
            prediction: None,
            label: None,
            error_kind: None,
            part: Some(Box::new(self)),
        }
    }
}

/// One Kafka record as read: where from, its headers and payload.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'a, 'h> {
    /// Topic.
    pub topic: &'h str,
    /// Header names and values, in order.
    pub headers: &'h [(&'h str, &'h [u8])],
    /// The value.
    pub payload: &'a [u8],
    /// The record's own timestamp, when it has one (used when a CloudEvent has no `time`).
    pub timestamp: Option<Millis>,
}

/// The format of each input topic, and what decoding needs.
#[derive(Debug, Clone, Default)]
pub struct Formats {
    by_topic: BTreeMap<String, Format>,
    default: Format,
    kserve: kserve::KserveConfig,
    seldon: seldon::SeldonConfig,
}

impl Formats {
    /// Formats per topic (others are `default`).
    pub fn new(by_topic: BTreeMap<String, Format>, default: Format, fleet: &FleetConfig) -> Formats {
        Formats { by_topic, default, kserve: fleet.kserve.clone(), seldon: fleet.seldon.clone() }
    }

    /// The format of `topic`.
    pub fn of(&self, topic: &str) -> Format {
        self.by_topic.get(topic).copied().unwrap_or(self.default)
    }

    /// True when some topic needs record headers.
    pub fn needs_headers(&self) -> bool {
        self.default != Format::Driftwatch || self.by_topic.values().any(|f| *f != Format::Driftwatch)
    }

    /// Decodes one record of `topic`.
    pub fn decode<'a>(&self, decoder: &mut Decoder, rec: RawRecord<'a, '_>) -> Result<Event<'a>, BadInput> {
        match self.of(rec.topic) {
            Format::Driftwatch => decoder.decode(rec.payload),
            Format::Kserve => kserve::decode(&self.kserve, rec),
            Format::Seldon => seldon::decode(&self.seldon, rec),
        }
    }
}

/// The header `name` (case-insensitive), as text.
pub(crate) fn header<'a>(headers: &[(&str, &'a [u8])], name: &str) -> Option<&'a [u8]> {
    headers.iter().rev().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
}

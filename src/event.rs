//! Input events (contract §1): their types, decoding from bytes, and the reasons input is bad.
//!
//! Decoding borrows from the input line wherever the JSON has no escapes, so the hot path
//! allocates nothing for a typical event. Every rejection names the field and the reason, and
//! never panics, whatever the bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use smallvec::SmallVec;

use crate::time::{check_range, parse_rfc3339, Millis, TimestampError};

/// The four kinds of input event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventType {
    /// A successful request served by an application version.
    Request,
    /// A successful request answered by a model version.
    Prediction,
    /// A failed request.
    Error,
    /// Ground truth for an earlier prediction.
    Label,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Request => "request",
            EventType::Prediction => "prediction",
            EventType::Error => "error",
            EventType::Label => "label",
        }
    }
}

/// A feature value: numbers are continuous, strings and booleans categorical, null missing.
#[derive(Debug, Clone, PartialEq)]
pub enum FeatureValue<'a> {
    /// A finite number.
    Num(f64),
    /// A category.
    Str(Cow<'a, str>),
    /// A boolean category.
    Bool(bool),
    /// A missing value.
    Null,
}

/// A prediction or a label: a number (score, regression output) or a class.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<'a> {
    /// A finite number.
    Num(f64),
    /// A class label.
    Class(Cow<'a, str>),
}

/// A `(name, version)` pair naming an app or a model version.
pub type NameVersion<'a> = (Cow<'a, str>, Cow<'a, str>);

/// Up to this many features are kept inline without allocating.
pub type Features<'a> = SmallVec<[(Cow<'a, str>, FeatureValue<'a>); 12]>;

/// One decoded, validated input event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event<'a> {
    /// Which kind of event.
    pub kind: EventType,
    /// Event time in epoch milliseconds.
    pub ts: Millis,
    /// The event's id (required for predictions and labels).
    pub event_id: Option<Cow<'a, str>>,
    /// The app version named by the event, if any.
    pub app: Option<NameVersion<'a>>,
    /// The model version named by the event, if any.
    pub model: Option<NameVersion<'a>>,
    /// Latency in milliseconds (finite, ≥ 0).
    pub latency_ms: Option<f64>,
    /// Model input features, in the order they appeared.
    pub features: Features<'a>,
    /// The model's output.
    pub prediction: Option<Outcome<'a>>,
    /// Ground truth (label events only).
    pub label: Option<Outcome<'a>>,
    /// Error kind (error events only).
    pub error_kind: Option<Cow<'a, str>>,
}

/// Why an input was rejected. The names are stable: they appear in metrics, summaries and the
/// dead-letter header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum BadReason {
    /// Bytes that are not UTF-8.
    InvalidUtf8,
    /// Not a JSON document (or trailing garbage after it).
    InvalidJson,
    /// Valid JSON, but not an object.
    NotAnObject,
    /// `type` is not one of the four event types.
    UnknownType,
    /// A required field is absent.
    MissingField,
    /// A field has the wrong JSON type.
    WrongType,
    /// A value of the right type that is not allowed (negative latency, empty name).
    InvalidValue,
    /// The timestamp is not RFC 3339 / epoch milliseconds, or lies outside 2000..2100.
    BadTimestamp,
    /// A number too large to represent (JSON has no NaN or infinity, so overflow is the case).
    NonFiniteNumber,
    /// The event time lies further ahead of the stream than the configured maximum.
    FutureTimestamp,
}

impl BadReason {
    /// All reasons, in reporting order.
    pub const ALL: [BadReason; 10] = [
        BadReason::InvalidUtf8,
        BadReason::InvalidJson,
        BadReason::NotAnObject,
        BadReason::UnknownType,
        BadReason::MissingField,
        BadReason::WrongType,
        BadReason::InvalidValue,
        BadReason::BadTimestamp,
        BadReason::NonFiniteNumber,
        BadReason::FutureTimestamp,
    ];

    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            BadReason::InvalidUtf8 => "invalid_utf8",
            BadReason::InvalidJson => "invalid_json",
            BadReason::NotAnObject => "not_an_object",
            BadReason::UnknownType => "unknown_type",
            BadReason::MissingField => "missing_field",
            BadReason::WrongType => "wrong_type",
            BadReason::InvalidValue => "invalid_value",
            BadReason::BadTimestamp => "bad_timestamp",
            BadReason::NonFiniteNumber => "non_finite_number",
            BadReason::FutureTimestamp => "future_timestamp",
        }
    }

    /// Position in [`BadReason::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for BadReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected input: the reason and a message naming the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInput {
    /// The reason, for counting.
    pub reason: BadReason,
    /// What exactly was wrong, naming the field.
    pub detail: String,
}

impl BadInput {
    fn new(reason: BadReason, detail: impl Into<String>) -> Self {
        BadInput {
            reason,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for BadInput {}

/// A JSON value as loosely typed as the wire allows, validated after parsing so that every
/// error can name its field.
#[derive(Debug, Clone, PartialEq)]
enum Loose<'a> {
    Int(i64),
    Float(f64),
    Str(Cow<'a, str>),
    Bool(bool),
    Null,
    Object,
    Array,
}

impl Loose<'_> {
    fn type_name(&self) -> &'static str {
        match self {
            Loose::Int(_) | Loose::Float(_) => "a number",
            Loose::Str(_) => "a string",
            Loose::Bool(_) => "a boolean",
            Loose::Null => "null",
            Loose::Object => "an object",
            Loose::Array => "an array",
        }
    }
}

struct LooseVisitor;

impl<'de> Visitor<'de> for LooseVisitor {
    type Value = Loose<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Loose::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Loose::Int(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(i64::try_from(v).map_or(Loose::Float(v as f64), Loose::Int))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Loose::Float(v))
    }
    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Borrowed(v)))
    }
    fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v.to_owned())))
    }
    fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
        Ok(Loose::Str(Cow::Owned(v)))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(Loose::Null)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Loose::Object)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Loose::Array)
    }
}

impl<'de> de::Deserialize<'de> for Loose<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(LooseVisitor)
    }
}

/// A string that borrows from the input when it can.
struct CowStr<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for CowStr<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CowStr<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(CowStr(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The `features` value: an object collected as-is, or a note of what else it was.
enum RawFeatures<'a> {
    Object(SmallVec<[(Cow<'a, str>, Loose<'a>); 12]>),
    Other(&'static str),
}

impl<'de> de::Deserialize<'de> for RawFeatures<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawFeatures<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of features")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = SmallVec::new();
                while let Some(CowStr(k)) = map.next_key::<CowStr<'de>>()? {
                    let v = map.next_value::<Loose<'de>>()?;
                    out.push((k, v));
                }
                Ok(RawFeatures::Object(out))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(RawFeatures::Object(SmallVec::new()))
            }
            fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
                Ok(RawFeatures::Other("a boolean"))
            }
            fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
                Ok(RawFeatures::Other("a number"))
            }
            fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
                Ok(RawFeatures::Other("a number"))
            }
            fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
                Ok(RawFeatures::Other("a number"))
            }
            fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
                Ok(RawFeatures::Other("a string"))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(RawFeatures::Other("an array"))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Default)]
struct RawEvent<'a> {
    kind: Option<Loose<'a>>,
    timestamp: Option<Loose<'a>>,
    event_id: Option<Loose<'a>>,
    app: Option<Loose<'a>>,
    app_version: Option<Loose<'a>>,
    model: Option<Loose<'a>>,
    model_version: Option<Loose<'a>>,
    latency_ms: Option<Loose<'a>>,
    features: Option<RawFeatures<'a>>,
    prediction: Option<Loose<'a>>,
    label: Option<Loose<'a>>,
    error: Option<Loose<'a>>,
}

enum Field {
    Type,
    Timestamp,
    EventId,
    App,
    AppVersion,
    Model,
    ModelVersion,
    LatencyMs,
    Features,
    Prediction,
    Label,
    Error,
    Other,
}

impl<'de> de::Deserialize<'de> for Field {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Field;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E>(self, v: &str) -> Result<Field, E> {
                Ok(match v {
                    "type" => Field::Type,
                    "timestamp" => Field::Timestamp,
                    "event_id" => Field::EventId,
                    "app" => Field::App,
                    "app_version" => Field::AppVersion,
                    "model" => Field::Model,
                    "model_version" => Field::ModelVersion,
                    "latency_ms" => Field::LatencyMs,
                    "features" => Field::Features,
                    "prediction" => Field::Prediction,
                    "label" => Field::Label,
                    "error" => Field::Error,
                    _ => Field::Other,
                })
            }
        }
        d.deserialize_identifier(V)
    }
}

const NOT_AN_OBJECT: &str = "driftwatch: event is not an object";

struct RawEventSeed;

impl<'de> DeserializeSeed<'de> for RawEventSeed {
    type Value = RawEvent<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(RawEventVisitor)
    }
}

struct RawEventVisitor;

impl<'de> Visitor<'de> for RawEventVisitor {
    type Value = RawEvent<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an event object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut raw = RawEvent::default();
        while let Some(field) = map.next_key::<Field>()? {
            let slot = match field {
                Field::Features => {
                    raw.features = Some(map.next_value()?);
                    continue;
                }
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
                Field::Type => &mut raw.kind,
                Field::Timestamp => &mut raw.timestamp,
                Field::EventId => &mut raw.event_id,
                Field::App => &mut raw.app,
                Field::AppVersion => &mut raw.app_version,
                Field::Model => &mut raw.model,
                Field::ModelVersion => &mut raw.model_version,
                Field::LatencyMs => &mut raw.latency_ms,
                Field::Prediction => &mut raw.prediction,
                Field::Label => &mut raw.label,
                Field::Error => &mut raw.error,
            };
            *slot = Some(map.next_value()?);
        }
        Ok(raw)
    }
    // Any other top-level JSON value: consume it fully so trailing garbage is still caught,
    // then report it as "not an object".
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Err(E::custom(NOT_AN_OBJECT))
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::custom(NOT_AN_OBJECT))
    }
}

fn classify_json_error(line: &[u8], e: &serde_json::Error) -> BadInput {
    let msg = e.to_string();
    if msg.starts_with(NOT_AN_OBJECT) {
        return BadInput::new(
            BadReason::NotAnObject,
            "the line is valid JSON but not an object",
        );
    }
    if msg.contains("number out of range") {
        return BadInput::new(
            BadReason::NonFiniteNumber,
            format!("a number is too large to be finite ({msg})"),
        );
    }
    if let Err(u) = std::str::from_utf8(line) {
        return BadInput::new(
            BadReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", u.valid_up_to()),
        );
    }
    BadInput::new(BadReason::InvalidJson, msg)
}

fn required<'a>(v: Option<Loose<'a>>, field: &str, kind: &str) -> Result<Loose<'a>, BadInput> {
    v.ok_or_else(|| {
        BadInput::new(
            BadReason::MissingField,
            format!("missing field `{field}` for a {kind} event"),
        )
    })
}

fn string<'a>(v: Loose<'a>, field: &str) -> Result<Cow<'a, str>, BadInput> {
    match v {
        Loose::Str(s) if s.is_empty() => Err(BadInput::new(
            BadReason::InvalidValue,
            format!("field `{field}` is an empty string"),
        )),
        Loose::Str(s) => Ok(s),
        other => Err(BadInput::new(
            BadReason::WrongType,
            format!(
                "field `{field}` must be a string, got {}",
                other.type_name()
            ),
        )),
    }
}

fn opt_string<'a>(v: Option<Loose<'a>>, field: &str) -> Result<Option<Cow<'a, str>>, BadInput> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(v) => string(v, field).map(Some),
    }
}

fn number(v: &Loose<'_>, field: &str) -> Result<f64, BadInput> {
    match *v {
        Loose::Int(i) => Ok(i as f64),
        Loose::Float(f) if f.is_finite() => Ok(f),
        Loose::Float(_) => Err(BadInput::new(
            BadReason::NonFiniteNumber,
            format!("field `{field}` is not finite"),
        )),
        ref other => Err(BadInput::new(
            BadReason::WrongType,
            format!(
                "field `{field}` must be a number, got {}",
                other.type_name()
            ),
        )),
    }
}

fn outcome<'a>(v: Option<Loose<'a>>, field: &str) -> Result<Option<Outcome<'a>>, BadInput> {
    match v {
        None | Some(Loose::Null) => Ok(None),
        Some(Loose::Str(s)) => Ok(Some(Outcome::Class(s))),
        Some(v @ (Loose::Int(_) | Loose::Float(_))) => Ok(Some(Outcome::Num(number(&v, field)?))),
        Some(other) => Err(BadInput::new(
            BadReason::WrongType,
            format!(
                "field `{field}` must be a number or a string, got {}",
                other.type_name()
            ),
        )),
    }
}

fn pair<'a>(
    name: Option<Loose<'a>>,
    version: Option<Loose<'a>>,
    name_field: &str,
    version_field: &str,
) -> Result<Option<NameVersion<'a>>, BadInput> {
    match (
        opt_string(name, name_field)?,
        opt_string(version, version_field)?,
    ) {
        (Some(n), Some(v)) => Ok(Some((n, v))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(BadInput::new(
            BadReason::MissingField,
            format!("field `{name_field}` is given without `{version_field}`"),
        )),
        (None, Some(_)) => Err(BadInput::new(
            BadReason::MissingField,
            format!("field `{version_field}` is given without `{name_field}`"),
        )),
    }
}

fn timestamp(v: Loose<'_>) -> Result<Millis, BadInput> {
    let r = match v {
        Loose::Str(s) => parse_rfc3339(&s),
        Loose::Int(i) => check_range(i),
        other => {
            return Err(BadInput::new(
                BadReason::WrongType,
                format!("field `timestamp` must be an RFC 3339 string or integer epoch milliseconds, got {}", other.type_name()),
            ))
        }
    };
    r.map_err(|e| match e {
        TimestampError::Syntax => BadInput::new(
            BadReason::BadTimestamp,
            "field `timestamp` is not RFC 3339 (e.g. 2025-11-24T16:27:41.120Z)",
        ),
        TimestampError::OutOfRange => BadInput::new(
            BadReason::BadTimestamp,
            "field `timestamp` is outside 2000-01-01 .. 2100-01-01",
        ),
    })
}

/// Decodes one event from the bytes of a JSON Lines line or a Kafka message value.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, BadInput> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let raw = RawEventSeed
        .deserialize(&mut de)
        .and_then(|raw| de.end().map(|()| raw))
        .map_err(|e| classify_json_error(bytes, &e))?;
    validate(raw)
}

fn validate(raw: RawEvent<'_>) -> Result<Event<'_>, BadInput> {
    let kind = match raw.kind {
        None => {
            return Err(BadInput::new(
                BadReason::MissingField,
                "missing field `type`",
            ))
        }
        Some(Loose::Str(s)) => {
            match s.as_ref() {
                "request" => EventType::Request,
                "prediction" => EventType::Prediction,
                "error" => EventType::Error,
                "label" => EventType::Label,
                other => {
                    let shown: String = other.chars().take(40).collect();
                    return Err(BadInput::new(
                    BadReason::UnknownType,
                    format!("field `type` is `{shown}`, expected request, prediction, error or label"),
                ));
                }
            }
        }
        Some(other) => {
            return Err(BadInput::new(
                BadReason::WrongType,
                format!("field `type` must be a string, got {}", other.type_name()),
            ))
        }
    };
    let k = kind.as_str();
    let ts = timestamp(required(raw.timestamp, "timestamp", k)?)?;
    let event_id = match kind {
        EventType::Prediction | EventType::Label => {
            Some(string(required(raw.event_id, "event_id", k)?, "event_id")?)
        }
        _ => opt_string(raw.event_id, "event_id")?,
    };
    let latency_ms = match raw.latency_ms {
        None | Some(Loose::Null) => None,
        Some(v) => {
            let l = number(&v, "latency_ms")?;
            if l < 0.0 {
                return Err(BadInput::new(
                    BadReason::InvalidValue,
                    "field `latency_ms` is negative",
                ));
            }
            Some(l)
        }
    };
    let mut ev = Event {
        kind,
        ts,
        event_id,
        app: None,
        model: None,
        latency_ms,
        features: SmallVec::new(),
        prediction: None,
        label: None,
        error_kind: None,
    };
    match kind {
        EventType::Request => {
            let app = string(required(raw.app, "app", k)?, "app")?;
            let version = string(required(raw.app_version, "app_version", k)?, "app_version")?;
            ev.app = Some((app, version));
        }
        EventType::Prediction => {
            let model = string(required(raw.model, "model", k)?, "model")?;
            let version = string(
                required(raw.model_version, "model_version", k)?,
                "model_version",
            )?;
            ev.model = Some((model, version));
            ev.app = pair(raw.app, raw.app_version, "app", "app_version")?;
            ev.prediction = outcome(raw.prediction, "prediction")?;
            ev.features = features(raw.features)?;
        }
        EventType::Error => {
            ev.app = pair(raw.app, raw.app_version, "app", "app_version")?;
            ev.model = pair(raw.model, raw.model_version, "model", "model_version")?;
            if ev.app.is_none() && ev.model.is_none() {
                return Err(BadInput::new(
                    BadReason::MissingField,
                    "an error event must name `app`+`app_version` or `model`+`model_version`",
                ));
            }
            ev.error_kind = match raw.error {
                None | Some(Loose::Null) => None,
                Some(Loose::Str(s)) => Some(s),
                Some(other) => {
                    return Err(BadInput::new(
                        BadReason::WrongType,
                        format!("field `error` must be a string, got {}", other.type_name()),
                    ))
                }
            };
        }
        EventType::Label => {
            ev.label = outcome(Some(required(raw.label, "label", k)?), "label")?;
            if ev.label.is_none() {
                return Err(BadInput::new(
                    BadReason::MissingField,
                    "field `label` is null",
                ));
            }
        }
    }
    Ok(ev)
}

fn features(raw: Option<RawFeatures<'_>>) -> Result<Features<'_>, BadInput> {
    let items = match raw {
        None => return Ok(SmallVec::new()),
        Some(RawFeatures::Other(t)) => {
            return Err(BadInput::new(
                BadReason::WrongType,
                format!("field `features` must be an object, got {t}"),
            ))
        }
        Some(RawFeatures::Object(items)) => items,
    };
    let mut out = SmallVec::with_capacity(items.len());
    for (name, v) in items {
        let value = match v {
            Loose::Int(i) => FeatureValue::Num(i as f64),
            Loose::Float(f) if f.is_finite() => FeatureValue::Num(f),
            Loose::Float(_) => {
                return Err(BadInput::new(
                    BadReason::NonFiniteNumber,
                    format!("feature `{name}` is not finite"),
                ))
            }
            Loose::Str(s) => FeatureValue::Str(s),
            Loose::Bool(b) => FeatureValue::Bool(b),
            Loose::Null => FeatureValue::Null,
            other @ (Loose::Object | Loose::Array) => {
                return Err(BadInput::new(
                    BadReason::WrongType,
                    format!(
                        "feature `{name}` must be a number, string, boolean or null, got {}",
                        other.type_name()
                    ),
                ))
            }
        };
        out.push((name, value));
    }
    Ok(out)
}

/// True for lines that hold nothing but whitespace (skipped, not counted as bad input).
pub fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(s: &str) -> BadReason {
        decode(s.as_bytes()).expect_err(s).reason
    }

    #[test]
    fn decodes_each_type() {
        let e = decode(br#"{"type":"request","timestamp":"2025-11-24T16:27:41.120Z","app":"checkout","app_version":"2.4.0","latency_ms":12.5}"#).unwrap();
        assert_eq!(e.kind, EventType::Request);
        assert_eq!(e.app, Some(("checkout".into(), "2.4.0".into())));
        assert_eq!(e.latency_ms, Some(12.5));

        let e = decode(br#"{"type":"prediction","timestamp":1764001661120,"event_id":"p1","model":"fraud","model_version":"7","features":{"amount":12.5,"country":"DE","new":true,"x":null},"prediction":0.83}"#).unwrap();
        assert_eq!(e.ts, 1_764_001_661_120);
        assert_eq!(e.features.len(), 4);
        assert_eq!(
            e.features[1],
            ("country".into(), FeatureValue::Str("DE".into()))
        );
        assert_eq!(e.prediction, Some(Outcome::Num(0.83)));

        let e = decode(br#"{"type":"error","timestamp":1764001661120,"model":"fraud","model_version":"7","error":"timeout"}"#).unwrap();
        assert_eq!(e.model, Some(("fraud".into(), "7".into())));
        assert!(e.app.is_none());

        let e = decode(
            br#"{"type":"label","timestamp":1764001661120,"event_id":"p1","label":"fraud"}"#,
        )
        .unwrap();
        assert_eq!(e.label, Some(Outcome::Class("fraud".into())));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e = decode(
            br#"{"type":"request","timestamp":1764001661120,"app":"a\"b","app_version":"1\u00e9"}"#,
        )
        .unwrap();
        assert_eq!(e.app, Some(("a\"b".into(), "1é".into())));
    }

    #[test]
    fn bad_input_reasons() {
        assert_eq!(reason("not json"), BadReason::InvalidJson);
        assert_eq!(reason("[1,2]"), BadReason::NotAnObject);
        assert_eq!(reason("42"), BadReason::NotAnObject);
        assert_eq!(
            reason(r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":"1"} x"#),
            BadReason::InvalidJson
        );
        assert_eq!(
            reason(r#"{"type":"click","timestamp":1764001661120}"#),
            BadReason::UnknownType
        );
        assert_eq!(
            reason(r#"{"timestamp":1764001661120}"#),
            BadReason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"request","timestamp":1764001661120,"app":"a"}"#),
            BadReason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":2}"#),
            BadReason::WrongType
        );
        assert_eq!(
            reason(r#"{"type":"request","timestamp":"yesterday","app":"a","app_version":"1"}"#),
            BadReason::BadTimestamp
        );
        assert_eq!(
            reason(r#"{"type":"request","timestamp":17640016611,"app":"a","app_version":"1"}"#),
            BadReason::BadTimestamp
        );
        assert_eq!(
            reason(
                r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":"1","latency_ms":1e999}"#
            ),
            BadReason::NonFiniteNumber
        );
        assert_eq!(
            reason(
                r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":"1","latency_ms":-1}"#
            ),
            BadReason::InvalidValue
        );
        assert_eq!(
            reason(
                r#"{"type":"prediction","timestamp":1764001661120,"model":"m","model_version":"1"}"#
            ),
            BadReason::MissingField
        );
        assert_eq!(
            reason(
                r#"{"type":"prediction","timestamp":1764001661120,"event_id":"e","model":"m","model_version":"1","features":{"a":[1]}}"#
            ),
            BadReason::WrongType
        );
        assert_eq!(
            reason(r#"{"type":"error","timestamp":1764001661120}"#),
            BadReason::MissingField
        );
        assert_eq!(
            reason(r#"{"type":"label","timestamp":1764001661120,"event_id":"e"}"#),
            BadReason::MissingField
        );
        assert_eq!(
            decode(b"\xff\xfe").expect_err("utf8").reason,
            BadReason::InvalidUtf8
        );
    }

    #[test]
    fn error_messages_name_the_field() {
        let e = decode(br#"{"type":"request","timestamp":1764001661120,"app":"a"}"#).unwrap_err();
        assert!(e.detail.contains("app_version"), "{e}");
    }
}

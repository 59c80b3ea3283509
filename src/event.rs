//! Input events (contract §1): their types, decoding from bytes, and the reasons input is bad.
//!
//! Decoding borrows from the input line wherever the JSON has no escapes, so the hot path
//! allocates nothing for a typical event. Every rejection names the field and the reason, and
//! never panics, whatever the bytes.

use std::borrow::Cow;
use std::fmt;

use crate::scan::{scan_event, Loose, RawEvent};

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
    /// One half of a request/response pair logged by a serving fleet (KServe, Seldon): never
    /// read from driftwatch JSON; the engine pairs the halves into predictions and errors.
    Inference,
}

impl EventType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Request => "request",
            EventType::Prediction => "prediction",
            EventType::Error => "error",
            EventType::Label => "label",
            EventType::Inference => "inference",
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

/// Features of one event, in the order they appeared. The allocation is recycled across
/// events by [`Decoder`].
pub type Features<'a> = Vec<(Cow<'a, str>, FeatureValue<'a>)>;

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
    /// The logged request or response ([`EventType::Inference`] only).
    pub part: Option<Box<crate::fleet::Part>>,
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
    pub(crate) fn new(reason: BadReason, detail: impl Into<String>) -> Self {
        BadInput { reason, detail: detail.into() }
    }
}

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason, self.detail)
    }
}

impl std::error::Error for BadInput {}

fn required<'a>(v: Option<Loose<'a>>, field: &str, kind: &str) -> Result<Loose<'a>, BadInput> {
    v.ok_or_else(|| BadInput::new(BadReason::MissingField, format!("missing field `{field}` for a {kind} event")))
}

fn string<'a>(v: Loose<'a>, field: &str) -> Result<Cow<'a, str>, BadInput> {
    match v {
        Loose::Str(s) if s.is_empty() => {
            Err(BadInput::new(BadReason::InvalidValue, format!("field `{field}` is an empty string")))
        }
        // A raw control character is a syntax error; one can only come from an escape, so only
        // an unescaped (owned) string needs the check. Names and versions key the engine's
        // tables with a NUL between them: none may hold one.
        Loose::Str(Cow::Owned(s)) if s.chars().any(char::is_control) => {
            let c = s.chars().find(|c| c.is_control()).map_or(0, u32::from);
            Err(BadInput::new(
                BadReason::InvalidValue,
                format!("field `{field}` holds a control character (U+{c:04X})"),
            ))
        }
        Loose::Str(s) => Ok(s),
        other => Err(BadInput::new(
            BadReason::WrongType,
            format!("field `{field}` must be a string, got {}", other.type_name()),
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
        Loose::Float(_) => Err(BadInput::new(BadReason::NonFiniteNumber, format!("field `{field}` is not finite"))),
        ref other => Err(BadInput::new(
            BadReason::WrongType,
            format!("field `{field}` must be a number, got {}", other.type_name()),
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
            format!("field `{field}` must be a number or a string, got {}", other.type_name()),
        )),
    }
}

fn pair<'a>(
    name: Option<Loose<'a>>,
    version: Option<Loose<'a>>,
    name_field: &str,
    version_field: &str,
) -> Result<Option<NameVersion<'a>>, BadInput> {
    match (opt_string(name, name_field)?, opt_string(version, version_field)?) {
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
                format!(
                    "field `timestamp` must be an RFC 3339 string or integer epoch milliseconds, got {}",
                    other.type_name()
                ),
            ))
        }
    };
    r.map_err(|e| match e {
        TimestampError::Syntax => {
            BadInput::new(BadReason::BadTimestamp, "field `timestamp` is not RFC 3339 (e.g. 2025-11-24T16:27:41.120Z)")
        }
        TimestampError::OutOfRange => {
            BadInput::new(BadReason::BadTimestamp, "field `timestamp` is outside 2000-01-01 .. 2100-01-01")
        }
    })
}

/// Decodes one event from the bytes of a JSON Lines line or a Kafka message value.
pub fn decode(bytes: &[u8]) -> Result<Event<'_>, BadInput> {
    Decoder::default().decode(bytes)
}

/// A decoder that recycles feature lists' allocations from one event to the next.
#[derive(Debug, Default)]
pub struct Decoder {
    spares: Vec<Features<'static>>,
}

/// Spare feature lists a decoder keeps at most (one per event of a batch in flight).
const MAX_SPARES: usize = 4096;

/// Empties a feature list and re-types it for another lifetime, keeping its allocation
/// (in-place collection reuses the buffer: the element layout does not depend on lifetimes).
#[allow(clippy::unnecessary_filter_map)] // `filter` cannot change the element's lifetime
fn recycle<'b>(v: Features<'_>) -> Features<'b> {
    v.into_iter().filter_map(|_| None).collect()
}

/// An event's feature list, emptied, to hand to [`Decoder::give`] (possibly on another thread).
pub fn spare_features(ev: Event<'_>) -> Features<'static> {
    recycle(ev.features)
}

/// [`spare_features`] of an event that stays where it is.
pub fn take_features(ev: &mut Event<'_>) -> Features<'static> {
    recycle(std::mem::take(&mut ev.features))
}

impl Decoder {
    /// Decodes one event, borrowing from `bytes`.
    pub fn decode<'a>(&mut self, bytes: &'a [u8]) -> Result<Event<'a>, BadInput> {
        let mut raw = RawEvent { features: recycle(self.spares.pop().unwrap_or_default()), ..RawEvent::default() };
        scan_event(bytes, &mut raw)?;
        validate(&mut raw)
    }

    /// Hands an event's feature list back for reuse by the next [`Decoder::decode`].
    pub fn recycle(&mut self, ev: Event<'_>) {
        self.give(spare_features(ev));
    }

    /// Keeps an emptied feature list for reuse.
    pub fn give(&mut self, features: Features<'static>) {
        if features.capacity() > 0 && self.spares.len() < MAX_SPARES {
            self.spares.push(features);
        }
    }
}

#[inline]
fn validate<'a>(raw: &mut RawEvent<'a>) -> Result<Event<'a>, BadInput> {
    let kind = match raw.kind.take() {
        None => return Err(BadInput::new(BadReason::MissingField, "missing field `type`")),
        Some(Loose::Str(s)) => match s.as_ref() {
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
        },
        Some(other) => {
            return Err(BadInput::new(
                BadReason::WrongType,
                format!("field `type` must be a string, got {}", other.type_name()),
            ))
        }
    };
    let k = kind.as_str();
    let ts = timestamp(required(raw.timestamp.take(), "timestamp", k)?)?;
    let event_id = match kind {
        EventType::Prediction | EventType::Label | EventType::Inference => {
            Some(string(required(raw.event_id.take(), "event_id", k)?, "event_id")?)
        }
        _ => opt_string(raw.event_id.take(), "event_id")?,
    };
    let latency_ms = match raw.latency_ms.take() {
        None | Some(Loose::Null) => None,
        Some(v) => {
            let l = number(&v, "latency_ms")?;
            if l < 0.0 {
                return Err(BadInput::new(BadReason::InvalidValue, "field `latency_ms` is negative"));
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
        features: Vec::new(),
        prediction: None,
        label: None,
        error_kind: None,
        part: None,
    };
    match kind {
        EventType::Request => {
            let app = string(required(raw.app.take(), "app", k)?, "app")?;
            let version = string(required(raw.app_version.take(), "app_version", k)?, "app_version")?;
            ev.app = Some((app, version));
        }
        EventType::Prediction => {
            let model = string(required(raw.model.take(), "model", k)?, "model")?;
            let version = string(required(raw.model_version.take(), "model_version", k)?, "model_version")?;
            ev.model = Some((model, version));
            ev.app = pair(raw.app.take(), raw.app_version.take(), "app", "app_version")?;
            ev.prediction = outcome(raw.prediction.take(), "prediction")?;
            if let Some(bad) = raw.features_bad.take() {
                return Err(bad);
            }
            ev.features = std::mem::take(&mut raw.features);
        }
        EventType::Error => {
            ev.app = pair(raw.app.take(), raw.app_version.take(), "app", "app_version")?;
            ev.model = pair(raw.model.take(), raw.model_version.take(), "model", "model_version")?;
            if ev.app.is_none() && ev.model.is_none() {
                return Err(BadInput::new(
                    BadReason::MissingField,
                    "an error event must name `app`+`app_version` or `model`+`model_version`",
                ));
            }
            ev.error_kind = match raw.error.take() {
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
            ev.label = outcome(Some(required(raw.label.take(), "label", k)?), "label")?;
            if ev.label.is_none() {
                return Err(BadInput::new(BadReason::MissingField, "field `label` is null"));
            }
        }
        // Not a JSON event type: only the fleet decoders make these.
        EventType::Inference => {}
    }
    Ok(ev)
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
        assert_eq!(e.features[1], ("country".into(), FeatureValue::Str("DE".into())));
        assert_eq!(e.prediction, Some(Outcome::Num(0.83)));

        let e = decode(
            br#"{"type":"error","timestamp":1764001661120,"model":"fraud","model_version":"7","error":"timeout"}"#,
        )
        .unwrap();
        assert_eq!(e.model, Some(("fraud".into(), "7".into())));
        assert!(e.app.is_none());

        let e = decode(br#"{"type":"label","timestamp":1764001661120,"event_id":"p1","label":"fraud"}"#).unwrap();
        assert_eq!(e.label, Some(Outcome::Class("fraud".into())));
    }

    #[test]
    fn escaped_strings_are_decoded() {
        let e =
            decode(br#"{"type":"request","timestamp":1764001661120,"app":"a\"b","app_version":"1\u00e9"}"#).unwrap();
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
        assert_eq!(reason(r#"{"type":"click","timestamp":1764001661120}"#), BadReason::UnknownType);
        assert_eq!(reason(r#"{"timestamp":1764001661120}"#), BadReason::MissingField);
        assert_eq!(reason(r#"{"type":"request","timestamp":1764001661120,"app":"a"}"#), BadReason::MissingField);
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
            reason(r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":"1","latency_ms":1e999}"#),
            BadReason::NonFiniteNumber
        );
        assert_eq!(
            reason(r#"{"type":"request","timestamp":1764001661120,"app":"a","app_version":"1","latency_ms":-1}"#),
            BadReason::InvalidValue
        );
        assert_eq!(
            reason(r#"{"type":"prediction","timestamp":1764001661120,"model":"m","model_version":"1"}"#),
            BadReason::MissingField
        );
        assert_eq!(
            reason(
                r#"{"type":"prediction","timestamp":1764001661120,"event_id":"e","model":"m","model_version":"1","features":{"a":[1]}}"#
            ),
            BadReason::WrongType
        );
        assert_eq!(reason(r#"{"type":"error","timestamp":1764001661120}"#), BadReason::MissingField);
        assert_eq!(reason(r#"{"type":"label","timestamp":1764001661120,"event_id":"e"}"#), BadReason::MissingField);
        assert_eq!(decode(b"\xff\xfe").expect_err("utf8").reason, BadReason::InvalidUtf8);
    }

    #[test]
    fn names_with_an_escaped_control_character_are_rejected() {
        // `x\0y` version `z` and `x` version `y\0z` would be one target otherwise.
        for line in [
            r#"{"type":"request","timestamp":1764001661120,"app":"x\u0000y","app_version":"z"}"#,
            r#"{"type":"request","timestamp":1764001661120,"app":"x","app_version":"y\u0000z"}"#,
            r#"{"type":"prediction","timestamp":1764001661120,"event_id":"p1","model":"m\n","model_version":"1"}"#,
        ] {
            let e = decode(line.as_bytes()).unwrap_err();
            assert_eq!(e.reason, BadReason::InvalidValue, "{line}");
            assert!(e.detail.contains("control character"), "{e}");
        }
    }

    #[test]
    fn error_messages_name_the_field() {
        let e = decode(br#"{"type":"request","timestamp":1764001661120,"app":"a"}"#).unwrap_err();
        assert!(e.detail.contains("app_version"), "{e}");
    }
}

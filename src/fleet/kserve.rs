//! KServe's inference logger: CloudEvents 1.0 on Kafka.
//!
//! The logger (KServe `pkg/logger`) sends one CloudEvent for the request and, when the model
//! answered HTTP 200, one for the response, both with the request's `ce_id`, `type`
//! `org.kubeflow.serving.inference.request` / `.response`, the extensions `inferenceservicename`,
//! `namespace`, `component`, `endpoint` (`default` or `canary`) and `metadata` (the request
//! headers it was told to keep, as a JSON object of string lists), and the body as data.
//! In Kafka's binary mode the attributes are `ce_`-prefixed headers and the value is the body;
//! in structured mode (`content-type: application/cloudevents+json`) the value is the whole
//! event as JSON, the body in `data` (or `data_base64`).
//!
//! Bodies: V1 (`{"instances": [...]}` → `{"predictions": [...]}`) and the Open Inference
//! Protocol V2 (`inputs` / `outputs` tensors with `name`, `shape`, `datatype`, `data`, and
//! `model_name` / `model_version`). Each instance (V1) or tensor row (V2) is one prediction.

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::{header, Output, Part, RawRecord, Role, Row, Value};
use crate::config::ConfigError;
use crate::event::{BadInput, BadReason, Event};
use crate::time::{parse_rfc3339, Millis};

/// CloudEvent `type` of a logged request.
pub const REQUEST_TYPE: &str = "org.kubeflow.serving.inference.request";
/// CloudEvent `type` of a logged response.
pub const RESPONSE_TYPE: &str = "org.kubeflow.serving.inference.response";

/// The `[fleet.kserve]` section.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KserveConfig {
    /// A request header kept in `ce_metadata` (the InferenceService's `logger.metadataHeaders`)
    /// whose value names the version, e.g. `X-Model-Version`. Unset: the version is the Open
    /// Inference Protocol `model_version`, else the endpoint (`default` / `canary`).
    pub version_header: Option<String>,
    /// Feature names for the columns of unnamed inputs: V1 instances written as lists, and a
    /// V2 input tensor of shape `[rows, columns]`. Unset: `<tensor>_<j>` (V2), `x<j>` (V1).
    pub columns: Vec<String>,
    /// The output tensor (V2) or the key of object predictions (V1) to take as the
    /// prediction. Unset: the first output tensor; object predictions are refused.
    pub output: Option<String>,
}

impl KserveConfig {
    fn tensors(&self) -> Tensors<'_> {
        Tensors { columns: &self.columns, output: self.output.as_deref(), section: "fleet.kserve" }
    }

    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.version_header.as_deref().is_some_and(|h| h.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "fleet.kserve.version_header".into(),
                reason: "is empty; leave it out to use model_version or the endpoint".into(),
            });
        }
        self.tensors().validate()
    }
}

/// How Open Inference Protocol tensors map to features and the prediction: the `columns` and
/// `output` keys of a fleet section.
pub(super) struct Tensors<'c> {
    /// Feature names for the columns of an unnamed 2-D input.
    pub columns: &'c [String],
    /// The output tensor (or V1 object key) holding the prediction.
    pub output: Option<&'c str>,
    /// The config section, for messages.
    pub section: &'static str,
}

impl Tensors<'_> {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        if let Some(dup) = self.columns.iter().enumerate().find(|(i, c)| self.columns[..*i].contains(c)) {
            return Err(ConfigError::Invalid {
                key: format!("{}.columns", self.section),
                reason: format!("names `{}` twice", dup.1),
            });
        }
        if self.output.is_some_and(|o| o.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: format!("{}.output", self.section),
                reason: "is empty; leave it out to take the first output tensor".into(),
            });
        }
        Ok(())
    }
}

pub(super) fn bad(reason: BadReason, detail: impl Into<String>) -> BadInput {
    BadInput { reason, detail: detail.into() }
}

/// The CloudEvent attributes driftwatch reads.
struct Attributes {
    specversion: Option<String>,
    id: Option<String>,
    ty: Option<String>,
    time: Option<String>,
    isvc: Option<String>,
    namespace: Option<String>,
    endpoint: Option<String>,
    metadata: Option<String>,
}

fn text(bytes: &[u8], what: &str) -> Result<String, BadInput> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| bad(BadReason::InvalidUtf8, format!("{what} is not UTF-8")))
}

/// Decodes one KServe logger record.
pub fn decode<'a>(cfg: &KserveConfig, rec: RawRecord<'_, '_>) -> Result<Event<'a>, BadInput> {
    let content_type = header(rec.headers, "content-type").map(|v| text(v, "header content-type")).transpose()?;
    let structured = content_type.as_deref().is_some_and(|c| c.starts_with("application/cloudevents+json"));
    let (attrs, body): (Attributes, std::borrow::Cow<'_, [u8]>) = if structured {
        structured_event(rec.payload)?
    } else {
        let h = |name: &str| -> Result<Option<String>, BadInput> {
            header(rec.headers, name).map(|v| text(v, &format!("header {name}"))).transpose()
        };
        let attrs = Attributes {
            specversion: h("ce_specversion")?,
            id: h("ce_id")?,
            ty: h("ce_type")?,
            time: h("ce_time")?,
            isvc: h("ce_inferenceservicename")?,
            namespace: h("ce_namespace")?,
            endpoint: h("ce_endpoint")?,
            metadata: h("ce_metadata")?,
        };
        (attrs, std::borrow::Cow::Borrowed(rec.payload))
    };
    let (what, prefix) = if structured { ("attribute", "") } else { ("header", "ce_") };
    let missing =
        |name: &str| bad(BadReason::MissingField, format!("{what} {prefix}{name} is missing: not a CloudEvent"));
    match attrs.specversion.as_deref() {
        Some("1.0") => {}
        Some(v) => {
            return Err(bad(BadReason::InvalidValue, format!("{what} {prefix}specversion is `{v}`, expected 1.0")))
        }
        None => return Err(missing("specversion")),
    }
    let id = attrs.id.filter(|i| !i.is_empty()).ok_or_else(|| missing("id"))?;
    let role = match attrs.ty.as_deref() {
        Some(REQUEST_TYPE) => Role::Request,
        Some(RESPONSE_TYPE) => Role::Response,
        Some(other) => {
            return Err(bad(
                BadReason::UnknownType,
                format!("{what} {prefix}type is `{}`, expected {REQUEST_TYPE} or {RESPONSE_TYPE}", shorten(other)),
            ))
        }
        None => return Err(missing("type")),
    };
    let ts: Millis = match (&attrs.time, rec.timestamp) {
        (Some(t), _) => parse_rfc3339(t).map_err(|_| {
            bad(BadReason::BadTimestamp, format!("{what} {prefix}time `{}` is not an RFC 3339 time", shorten(t)))
        })?,
        (None, Some(ts)) => ts,
        (None, None) => return Err(missing("time")),
    };
    let isvc = attrs.isvc.filter(|s| !s.is_empty()).ok_or_else(|| missing("inferenceservicename"))?;
    let name = match attrs.namespace.filter(|s| !s.is_empty()) {
        Some(ns) => format!("{ns}/{isvc}"),
        None => isvc,
    };
    let mut route = attrs.endpoint.filter(|s| !s.is_empty()).unwrap_or_else(|| "default".to_owned());
    if let (Some(key), Some(meta)) = (&cfg.version_header, &attrs.metadata) {
        if let Some(v) = metadata_value(meta, key, what, prefix)? {
            route = v;
        }
    }
    let body: Json =
        serde_json::from_slice(&body).map_err(|e| bad(BadReason::InvalidJson, format!("payload is not JSON: {e}")))?;
    let Json::Object(body) = body else {
        return Err(bad(BadReason::NotAnObject, "payload is not a JSON object (V1 or V2 inference body)"));
    };
    let mut part = Part { role, id, name, route, model_version: None, rows: Vec::new(), outputs: Vec::new() };
    match role {
        Role::Request => part.rows = request_rows(&cfg.tensors(), &body)?,
        Role::Response => {
            part.model_version = match body.get("model_version") {
                Some(Json::String(v)) if !v.is_empty() => Some(v.clone()),
                _ => None,
            };
            part.outputs = response_outputs(&cfg.tensors(), &body)?;
        }
        Role::Failure => {}
    }
    Ok(part.into_event(ts))
}

fn shorten(s: &str) -> String {
    s.chars().take(60).collect()
}

/// A structured-mode event: its attributes and the body.
fn structured_event(payload: &[u8]) -> Result<(Attributes, std::borrow::Cow<'static, [u8]>), BadInput> {
    let v: Json = serde_json::from_slice(payload)
        .map_err(|e| bad(BadReason::InvalidJson, format!("structured CloudEvent is not JSON: {e}")))?;
    let Json::Object(mut o) = v else {
        return Err(bad(BadReason::NotAnObject, "structured CloudEvent is not a JSON object"));
    };
    let mut s = |k: &str| -> Result<Option<String>, BadInput> {
        match o.remove(k) {
            None | Some(Json::Null) => Ok(None),
            Some(Json::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(BadReason::WrongType, format!("attribute {k} must be a string"))),
        }
    };
    let attrs = Attributes {
        specversion: s("specversion")?,
        id: s("id")?,
        ty: s("type")?,
        time: s("time")?,
        isvc: s("inferenceservicename")?,
        namespace: s("namespace")?,
        endpoint: s("endpoint")?,
        metadata: s("metadata")?,
    };
    let data_base64 = s("data_base64")?;
    let body = match (o.remove("data"), data_base64) {
        (Some(Json::String(text)), None) => text.into_bytes(),
        (Some(data), None) => serde_json::to_vec(&data).unwrap_or_default(),
        (None, Some(b64)) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| bad(BadReason::InvalidValue, format!("attribute data_base64 is not base64: {e}")))?,
        (Some(_), Some(_)) => {
            return Err(bad(BadReason::InvalidValue, "structured CloudEvent has both data and data_base64"))
        }
        (None, None) => return Err(bad(BadReason::MissingField, "structured CloudEvent has no data")),
    };
    Ok((attrs, std::borrow::Cow::Owned(body)))
}

/// The first value of header `key` in the logger's metadata (a JSON object of string lists).
fn metadata_value(meta: &str, key: &str, what: &str, prefix: &str) -> Result<Option<String>, BadInput> {
    let v: Json = serde_json::from_str(meta).map_err(|_| {
        bad(
            BadReason::InvalidJson,
            format!("{what} {prefix}metadata is not JSON (expected {{\"Header\": [\"value\"]}})"),
        )
    })?;
    let Json::Object(o) = v else {
        return Err(bad(BadReason::WrongType, format!("{what} {prefix}metadata is not a JSON object")));
    };
    let found = o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v);
    Ok(match found {
        Some(Json::Array(vs)) => vs.iter().find_map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)),
        Some(Json::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    })
}

fn scalar_value(v: &Json, at: &str) -> Result<Value, BadInput> {
    match v {
        Json::Null => Ok(Value::Null),
        Json::Bool(b) => Ok(Value::Bool(*b)),
        Json::Number(n) => n
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Value::Num)
            .ok_or_else(|| bad(BadReason::NonFiniteNumber, format!("{at} is not a finite number"))),
        Json::String(s) => Ok(Value::Str(s.clone())),
        _ => Err(bad(BadReason::WrongType, format!("{at} must be a number, string, bool or null"))),
    }
}

fn column_name(cfg: &Tensors<'_>, tensor: Option<&str>, j: usize, columns: usize) -> String {
    match (cfg.columns.get(j), tensor) {
        (Some(c), _) if cfg.columns.len() == columns => c.clone(),
        (_, Some(t)) => format!("{t}_{j}"),
        (_, None) => format!("x{j}"),
    }
}

/// Feature rows of a V1 or V2 request.
pub(super) fn request_rows(cfg: &Tensors<'_>, body: &Map<String, Json>) -> Result<Vec<Row>, BadInput> {
    if let Some(instances) = body.get("instances") {
        let Json::Array(instances) = instances else {
            return Err(bad(BadReason::WrongType, "payload field `instances` must be a list"));
        };
        return instances
            .iter()
            .enumerate()
            .map(|(i, inst)| match inst {
                Json::Object(o) => {
                    o.iter().map(|(k, v)| Ok((k.clone(), scalar_value(v, &format!("instances[{i}].{k}"))?))).collect()
                }
                Json::Array(cols) => cols
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        Ok((column_name(cfg, None, j, cols.len()), scalar_value(v, &format!("instances[{i}][{j}]"))?))
                    })
                    .collect(),
                v => Ok(vec![(column_name(cfg, None, 0, 1), scalar_value(v, &format!("instances[{i}]"))?)]),
            })
            .collect();
    }
    let Some(inputs) = body.get("inputs") else {
        return Err(bad(BadReason::MissingField, "request payload has neither `instances` (V1) nor `inputs` (V2)"));
    };
    let Json::Array(inputs) = inputs else {
        return Err(bad(BadReason::WrongType, "payload field `inputs` must be a list of tensors"));
    };
    let mut rows: Vec<Row> = Vec::new();
    for (t, input) in inputs.iter().enumerate() {
        let tensor = Tensor::parse(input, &format!("inputs[{t}]"))?;
        let (n, cols) = tensor.rows_columns();
        if t == 0 {
            rows = vec![Row::new(); n];
        } else if n != rows.len() {
            return Err(bad(
                BadReason::InvalidValue,
                format!("inputs[{t}] (`{}`) has {n} rows, inputs[0] has {}", tensor.name, rows.len()),
            ));
        }
        for (i, row) in rows.iter_mut().enumerate() {
            for j in 0..cols {
                let v = tensor.value(i * cols + j)?;
                let name = if cols == 1 { tensor.name.clone() } else { column_name(cfg, Some(&tensor.name), j, cols) };
                row.push((name, v));
            }
        }
    }
    Ok(rows)
}

/// Outputs of a V1 or V2 response, one per instance.
pub(super) fn response_outputs(cfg: &Tensors<'_>, body: &Map<String, Json>) -> Result<Vec<Option<Output>>, BadInput> {
    if let Some(preds) = body.get("predictions") {
        let Json::Array(preds) = preds else {
            return Err(bad(BadReason::WrongType, "payload field `predictions` must be a list"));
        };
        return preds
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let at = format!("predictions[{i}]");
                match (p, cfg.output) {
                    (Json::Object(o), Some(key)) => match o.get(key) {
                        Some(v) => output_of(&scalar_value(v, &format!("{at}.{key}"))?),
                        None => Err(bad(BadReason::MissingField, format!("{at} has no key `{key}`"))),
                    },
                    (Json::Object(_), None) => Err(bad(
                        BadReason::WrongType,
                        format!("{at} is an object: set {}.output to the key holding the prediction", cfg.section),
                    )),
                    (Json::Array(scores), _) => argmax(scores, &at),
                    (v, _) => output_of(&scalar_value(v, &at)?),
                }
            })
            .collect();
    }
    let Some(outputs) = body.get("outputs") else {
        return Err(bad(BadReason::MissingField, "response payload has neither `predictions` (V1) nor `outputs` (V2)"));
    };
    let Json::Array(outputs) = outputs else {
        return Err(bad(BadReason::WrongType, "payload field `outputs` must be a list of tensors"));
    };
    let chosen = match cfg.output {
        Some(name) => outputs
            .iter()
            .enumerate()
            .find(|(_, o)| o.get("name").and_then(Json::as_str) == Some(name))
            .ok_or_else(|| bad(BadReason::MissingField, format!("response has no output tensor named `{name}`")))?,
        None => outputs
            .iter()
            .enumerate()
            .next()
            .ok_or_else(|| bad(BadReason::MissingField, "response payload field `outputs` is empty"))?,
    };
    let at = format!("outputs[{}]", chosen.0);
    let tensor = Tensor::parse(chosen.1, &at)?;
    let (n, cols) = tensor.rows_columns();
    (0..n)
        .map(|i| {
            if cols == 1 {
                output_of(&tensor.value(i)?)
            } else {
                let row: Vec<Json> = tensor.flat[i * cols..(i + 1) * cols].iter().map(|v| (*v).clone()).collect();
                argmax(&row, &format!("{at} row {i}"))
            }
        })
        .collect()
}

fn output_of(v: &Value) -> Result<Option<Output>, BadInput> {
    Ok(match v {
        Value::Num(x) => Some(Output::Num(*x)),
        Value::Str(s) => Some(Output::Class(s.clone())),
        Value::Bool(b) => Some(Output::Class(b.to_string())),
        Value::Null => None,
    })
}

/// A list of class scores: the class is the index of the highest (a one-element list is the
/// score itself).
fn argmax(scores: &[Json], at: &str) -> Result<Option<Output>, BadInput> {
    if scores.len() == 1 {
        return output_of(&scalar_value(&scores[0], &format!("{at}[0]"))?);
    }
    let mut best: Option<(usize, f64)> = None;
    for (j, s) in scores.iter().enumerate() {
        let x = s
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(BadReason::WrongType, format!("{at}[{j}] must be a finite number (a class score)")))?;
        if best.is_none_or(|(_, b)| x > b) {
            best = Some((j, x));
        }
    }
    Ok(best.map(|(j, _)| Output::Class(j.to_string())))
}

/// An Open Inference Protocol tensor.
struct Tensor<'a> {
    name: String,
    shape: Vec<usize>,
    datatype: String,
    /// `data`, flattened in row-major order.
    flat: Vec<&'a Json>,
    at: String,
}

impl<'a> Tensor<'a> {
    fn parse(v: &'a Json, at: &str) -> Result<Tensor<'a>, BadInput> {
        let Json::Object(o) = v else {
            return Err(bad(BadReason::WrongType, format!("{at} must be a tensor object")));
        };
        let name = match o.get("name") {
            Some(Json::String(s)) if !s.is_empty() => s.clone(),
            Some(_) => return Err(bad(BadReason::WrongType, format!("{at}.name must be a non-empty string"))),
            None => return Err(bad(BadReason::MissingField, format!("{at}.name is missing"))),
        };
        let shape = match o.get("shape") {
            Some(Json::Array(dims)) => dims
                .iter()
                .map(|d| d.as_u64().map(|d| d as usize))
                .collect::<Option<Vec<usize>>>()
                .ok_or_else(|| bad(BadReason::WrongType, format!("{at}.shape must list non-negative integers")))?,
            Some(_) => return Err(bad(BadReason::WrongType, format!("{at}.shape must be a list"))),
            None => return Err(bad(BadReason::MissingField, format!("{at}.shape is missing"))),
        };
        let datatype = match o.get("datatype") {
            Some(Json::String(s)) => s.clone(),
            Some(_) => return Err(bad(BadReason::WrongType, format!("{at}.datatype must be a string"))),
            None => return Err(bad(BadReason::MissingField, format!("{at}.datatype is missing"))),
        };
        let Some(data) = o.get("data") else {
            return Err(bad(BadReason::MissingField, format!("{at}.data is missing")));
        };
        let mut flat = Vec::new();
        flatten(data, &mut flat);
        let expected: usize = shape.iter().product();
        if shape.len() > 2 {
            return Err(bad(
                BadReason::InvalidValue,
                format!("{at} (`{name}`) has shape {shape:?}: only [rows] and [rows, columns] tensors are read"),
            ));
        }
        if expected != flat.len() {
            return Err(bad(
                BadReason::InvalidValue,
                format!("{at} (`{name}`): shape {shape:?} holds {expected} values, data has {}", flat.len()),
            ));
        }
        Ok(Tensor { name, shape, datatype, flat, at: at.to_owned() })
    }

    /// Rows and columns: `[n]` is n rows of one value, `[n, k]` n rows of k.
    fn rows_columns(&self) -> (usize, usize) {
        match self.shape.as_slice() {
            [n] => (*n, 1),
            [n, k] => (*n, *k),
            _ => (1, 1),
        }
    }

    fn value(&self, i: usize) -> Result<Value, BadInput> {
        let at = format!("{}.data[{i}]", self.at);
        let v = self.flat.get(i).ok_or_else(|| bad(BadReason::InvalidValue, format!("{at} is missing")))?;
        let v = scalar_value(v, &at)?;
        match (self.datatype.as_str(), &v) {
            ("BOOL", Value::Num(x)) => Ok(Value::Bool(*x != 0.0)),
            ("BYTES", Value::Num(x)) => Ok(Value::Str(x.to_string())),
            ("BYTES", _) | ("BOOL", _) | (_, Value::Num(_)) | (_, Value::Null) => Ok(v),
            (dt, _) => Err(bad(BadReason::WrongType, format!("{at} is not a number although datatype is {dt}"))),
        }
    }
}

fn flatten<'a>(v: &'a Json, out: &mut Vec<&'a Json>) {
    match v {
        Json::Array(items) => items.iter().for_each(|i| flatten(i, out)),
        other => out.push(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binary(ty: &str, meta: &str) -> Vec<(&'static str, Vec<u8>)> {
        vec![
            ("ce_specversion", b"1.0".to_vec()),
            ("ce_id", b"req-1".to_vec()),
            ("ce_type", ty.as_bytes().to_vec()),
            ("ce_source", b"http://localhost:9081/".to_vec()),
            ("ce_time", b"2025-11-24T16:27:41.120Z".to_vec()),
            ("ce_inferenceservicename", b"scorer".to_vec()),
            ("ce_namespace", b"fraud".to_vec()),
            ("ce_component", b"predictor".to_vec()),
            ("ce_endpoint", b"canary".to_vec()),
            ("ce_metadata", meta.as_bytes().to_vec()),
            ("content-type", b"application/json".to_vec()),
        ]
    }

    fn decode_with(cfg: &KserveConfig, headers: &[(&'static str, Vec<u8>)], payload: &[u8]) -> Result<Part, BadInput> {
        let hs: Vec<(&str, &[u8])> = headers.iter().map(|(k, v)| (*k, v.as_slice())).collect();
        let rec = RawRecord { topic: "t", headers: &hs, payload, timestamp: None };
        decode(cfg, rec).map(|e| *e.part.expect("a part"))
    }

    #[test]
    fn a_binary_v2_request_gives_one_row_per_tensor_row() {
        let cfg = KserveConfig { columns: vec!["a".into(), "b".into()], ..KserveConfig::default() };
        let body = br#"{"inputs":[{"name":"x","shape":[2,2],"datatype":"FP32","data":[[1,2],[3,4]]},
                                 {"name":"country","shape":[2],"datatype":"BYTES","data":["DE","FR"]}]}"#;
        let p = decode_with(&cfg, &binary(REQUEST_TYPE, "{}"), body).expect("decodes");
        assert_eq!(
            (p.role, p.id.as_str(), p.name.as_str(), p.route.as_str()),
            (Role::Request, "req-1", "fraud/scorer", "canary")
        );
        assert_eq!(
            p.rows[1],
            vec![
                ("a".into(), Value::Num(3.0)),
                ("b".into(), Value::Num(4.0)),
                ("country".into(), Value::Str("FR".into()))
            ]
        );
    }

    #[test]
    fn the_version_comes_from_model_version_or_the_metadata_header() {
        let cfg = KserveConfig { version_header: Some("x-model-version".into()), ..KserveConfig::default() };
        let body = br#"{"model_name":"scorer","model_version":"7","outputs":[{"name":"p","shape":[1,3],"datatype":"FP32","data":[0.1,0.7,0.2]}]}"#;
        let p = decode_with(&cfg, &binary(RESPONSE_TYPE, r#"{"X-Model-Version":["v9"]}"#), body).expect("decodes");
        assert_eq!((p.route.as_str(), p.model_version.as_deref()), ("v9", Some("7")));
        assert_eq!(p.outputs, vec![Some(Output::Class("1".into()))]);
    }

    #[test]
    fn a_structured_v1_response_decodes_its_data() {
        let event = serde_json::json!({
            "specversion": "1.0", "id": "r-2", "source": "s", "type": RESPONSE_TYPE,
            "time": "2025-11-24T16:27:41Z", "inferenceservicename": "ranker", "namespace": "shop",
            "endpoint": "default", "data": {"predictions": [0.5, "cat", null]}
        });
        let headers = vec![("content-type", b"application/cloudevents+json".to_vec())];
        let p = decode_with(&KserveConfig::default(), &headers, event.to_string().as_bytes()).expect("decodes");
        assert_eq!(p.outputs, vec![Some(Output::Num(0.5)), Some(Output::Class("cat".into())), None]);
        assert_eq!(p.name, "shop/ranker");
    }

    #[test]
    fn bad_records_name_the_header_or_field() {
        let cfg = KserveConfig::default();
        let mut no_id = binary(REQUEST_TYPE, "{}");
        no_id.retain(|(k, _)| *k != "ce_id");
        let e = decode_with(&cfg, &no_id, b"{}").unwrap_err();
        assert_eq!(e.reason, BadReason::MissingField);
        assert!(e.detail.contains("ce_id"), "{e}");
        let e = decode_with(&cfg, &binary("other.type", "{}"), b"{}").unwrap_err();
        assert!(e.detail.contains("ce_type"), "{e}");
        let shape = br#"{"inputs":[{"name":"x","shape":[3],"datatype":"FP32","data":[1,2]}]}"#;
        let e = decode_with(&cfg, &binary(REQUEST_TYPE, "{}"), shape).unwrap_err();
        assert_eq!(e.reason, BadReason::InvalidValue);
        assert!(e.detail.contains("shape [3] holds 3 values, data has 2"), "{e}");
        let e = decode_with(&cfg, &binary(REQUEST_TYPE, "{}"), br#"{"foo":1}"#).unwrap_err();
        assert!(e.detail.contains("instances") && e.detail.contains("inputs"), "{e}");
    }
}

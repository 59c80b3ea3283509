//! Seldon Core v2's inference topics.
//!
//! Seldon Core v2 (`scheduler/pkg/kafka`) runs every inference through Kafka: the gateway
//! writes the request to `<prefix>.<namespace>.model.<model>.inputs` (pipelines:
//! `<prefix>.<namespace>.pipeline.<pipeline>.inputs`), the model's worker writes the response to
//! the matching `.outputs` topic — with the request's key and headers — or, when the model
//! fails, the error text to `<prefix>.<namespace>.errors.errors` with the header
//! `seldon-pipeline-errors`. Every record carries the `x-request-id` header, and the gateway
//! adds `pipeline` naming the model (or pipeline) the request was for. Payloads are Open
//! Inference Protocol messages, as protobuf `inference.ModelInferRequest` /
//! `ModelInferResponse` or as JSON, told apart by the header `seldon-infer-type`
//! (`proto/InferModelRequest`, `proto/InferModelResponse`, `json/inferModelRequest`,
//! `json/inferModelResponse`); without it a payload starting with `{` is JSON, anything else
//! protobuf. A pipeline step's input may be the previous step's response: its outputs are then
//! the step's inputs.
//!
//! A record is one half of an inference, as for KServe ([`super::kserve`]): the app and model
//! are `namespace/model` (`namespace/pipeline.pipeline` for pipelines), halves pair by
//! `x-request-id` within it, the time is the record's timestamp, and an errors-topic record
//! makes its waiting request an error (`model_error`).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use super::kserve::{bad, request_rows, response_outputs, Tensors};
use super::{header, Part, RawRecord, Role};
use crate::config::ConfigError;
use crate::event::{BadInput, BadReason, Event};

/// Header naming how the payload is written.
pub const INFER_TYPE_HEADER: &str = "seldon-infer-type";
/// Header with the request id.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// Header the gateway sets to the model or pipeline the request was sent to.
pub const RESOURCE_HEADER: &str = "pipeline";

/// The `[fleet.seldon]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeldonConfig {
    /// The topic prefix Seldon was installed with (its `kafka.topicPrefix`).
    pub topic_prefix: String,
    /// A record header naming the version, e.g. `x-model-version` (Seldon passes request
    /// headers starting with `x-` on to Kafka, lower-cased, and copies them onto the
    /// response). Records without it, or with this unset: the response's `model_version`,
    /// else `default`.
    pub version_header: Option<String>,
    /// Feature names for the columns of an input tensor of shape `[rows, columns]`. Unset:
    /// `<tensor>_<j>`.
    pub columns: Vec<String>,
    /// The output tensor to take as the prediction. Unset: the first.
    pub output: Option<String>,
}

impl Default for SeldonConfig {
    fn default() -> Self {
        SeldonConfig { topic_prefix: "seldon".into(), version_header: None, columns: Vec::new(), output: None }
    }
}

impl SeldonConfig {
    fn tensors(&self) -> Tensors<'_> {
        Tensors { columns: &self.columns, output: self.output.as_deref(), section: "fleet.seldon" }
    }

    /// Checks values, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.topic_prefix.is_empty() || self.topic_prefix.starts_with('.') || self.topic_prefix.ends_with('.') {
            return invalid("fleet.seldon.topic_prefix", "must be a topic-name prefix such as `seldon`");
        }
        if self.version_header.as_deref().is_some_and(|h| h.trim().is_empty()) {
            return invalid("fleet.seldon.version_header", "is empty; leave it out to use model_version");
        }
        self.tensors().validate()
    }

    /// What the Seldon topic `topic` carries, or why it is no Seldon topic.
    pub fn topic(&self, topic: &str) -> Result<Topic, String> {
        let p = &self.topic_prefix;
        let expected = || {
            format!(
                "`{topic}` is not a Seldon topic (expected {p}.<namespace>.model.<model>.inputs|outputs, \
                 {p}.<namespace>.pipeline.<pipeline>.inputs|outputs or {p}.<namespace>.errors.errors)"
            )
        };
        let rest = topic.strip_prefix(p.as_str()).and_then(|r| r.strip_prefix('.')).ok_or_else(expected)?;
        let (namespace, rest) = rest.split_once('.').filter(|(ns, _)| !ns.is_empty()).ok_or_else(expected)?;
        if rest == "errors.errors" {
            return Ok(Topic { role: Role::Failure, namespace: namespace.into(), resource: None });
        }
        let (kind, rest) = rest.split_once('.').ok_or_else(expected)?;
        let (resource, role) = match rest.rsplit_once('.') {
            Some((r, "inputs")) => (r, Role::Request),
            Some((r, "outputs")) => (r, Role::Response),
            _ => return Err(expected()),
        };
        if resource.is_empty() {
            return Err(expected());
        }
        let name = match kind {
            "model" => format!("{namespace}/{resource}"),
            "pipeline" => format!("{namespace}/{resource}.pipeline"),
            _ => return Err(expected()),
        };
        Ok(Topic { role, namespace: namespace.into(), resource: Some(name) })
    }
}

/// What a Seldon topic carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    /// Requests (`inputs`), responses (`outputs`) or failures (`errors.errors`).
    pub role: Role,
    /// The Kubernetes namespace.
    pub namespace: String,
    /// `namespace/model` or `namespace/pipeline.pipeline`; none for the errors topic, whose
    /// records name their model in the `pipeline` header.
    pub resource: Option<String>,
}

fn text_header(rec: &RawRecord<'_, '_>, name: &str) -> Result<Option<String>, BadInput> {
    match header(rec.headers, name) {
        None => Ok(None),
        Some(v) => std::str::from_utf8(v)
            .map(|s| Some(s.trim().to_owned()).filter(|s| !s.is_empty()))
            .map_err(|_| bad(BadReason::InvalidUtf8, format!("header {name} is not UTF-8"))),
    }
}

/// How a payload is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Json,
    Proto,
}

/// Decodes one record of a Seldon topic.
pub fn decode<'a>(cfg: &SeldonConfig, rec: RawRecord<'_, '_>) -> Result<Event<'a>, BadInput> {
    let topic = cfg.topic(rec.topic).map_err(|e| bad(BadReason::InvalidValue, e))?;
    let id = text_header(&rec, REQUEST_ID_HEADER)?
        .ok_or_else(|| bad(BadReason::MissingField, format!("header {REQUEST_ID_HEADER} is missing")))?;
    let ts = rec
        .timestamp
        .ok_or_else(|| bad(BadReason::BadTimestamp, "the record has no timestamp (Seldon records carry their time)"))?;
    let header_version = match &cfg.version_header {
        Some(h) => text_header(&rec, h)?,
        None => None,
    };
    let route = header_version.clone().unwrap_or_else(|| "default".to_owned());
    let name = match topic.resource {
        Some(name) => name,
        None => {
            let resource = text_header(&rec, RESOURCE_HEADER)?.ok_or_else(|| {
                bad(BadReason::MissingField, format!("header {RESOURCE_HEADER} (the model that failed) is missing"))
            })?;
            format!("{}/{resource}", topic.namespace)
        }
    };
    let mut part =
        Part { role: topic.role, id, name, route, model_version: None, rows: Vec::new(), outputs: Vec::new() };
    if topic.role != Role::Failure {
        let infer_type = text_header(&rec, INFER_TYPE_HEADER)?;
        // The outputs topic holds responses whatever the header (the worker copies the
        // request's headers onto its response); on an inputs topic the header tells.
        let (encoding, response_header) = match infer_type.as_deref() {
            Some("json/inferModelRequest") => (Encoding::Json, false),
            Some("json/inferModelResponse") => (Encoding::Json, true),
            Some("proto/InferModelRequest") => (Encoding::Proto, false),
            Some("proto/InferModelResponse") => (Encoding::Proto, true),
            Some(other) => {
                return Err(bad(
                    BadReason::InvalidValue,
                    format!(
                        "header {INFER_TYPE_HEADER} is `{}`: expected json/inferModelRequest, json/inferModelResponse, proto/InferModelRequest or proto/InferModelResponse",
                        other.chars().take(60).collect::<String>()
                    ),
                ))
            }
            None if rec.payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') => (Encoding::Json, false),
            None => (Encoding::Proto, false),
        };
        let response_shaped = topic.role == Role::Response || response_header;
        let body = match encoding {
            Encoding::Json => json_body(rec.payload)?,
            Encoding::Proto => proto::body(rec.payload, response_shaped)?,
        };
        let tensors = cfg.tensors();
        match topic.role {
            Role::Request => {
                // A pipeline step's input may be the previous step's response.
                let body = match (body.contains_key("inputs"), body.get("outputs")) {
                    (false, Some(outputs)) => Map::from_iter([("inputs".to_owned(), outputs.clone())]),
                    _ => body,
                };
                part.rows = request_rows(&tensors, &body)?;
            }
            Role::Response => {
                // Seldon's worker pins the version it asks the server for, so a response's
                // `model_version` names a version only when no version header does.
                part.model_version = match body.get("model_version") {
                    Some(Json::String(v)) if !v.is_empty() && header_version.is_none() => Some(v.clone()),
                    _ => None,
                };
                part.outputs = response_outputs(&tensors, &body)?;
            }
            Role::Failure => {}
        }
    }
    Ok(part.into_event(ts))
}

fn json_body(payload: &[u8]) -> Result<Map<String, Json>, BadInput> {
    match serde_json::from_slice(payload) {
        Ok(Json::Object(o)) => Ok(o),
        Ok(_) => Err(bad(BadReason::NotAnObject, "payload is not a JSON object (an Open Inference Protocol message)")),
        Err(e) => Err(bad(BadReason::InvalidJson, format!("payload is not JSON: {e}"))),
    }
}

/// Open Inference Protocol messages in protobuf (`inference.ModelInferRequest` /
/// `ModelInferResponse`, as in Seldon's `apis/mlops/v2_dataplane/v2_dataplane.proto`; fields
/// driftwatch does not read are skipped), turned into the JSON form the V2 reader takes.
pub mod proto {
    use serde_json::{Map, Number, Value as Json};

    use super::bad;
    use crate::event::{BadInput, BadReason};

    /// `inference.ModelInferRequest`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferRequest {
        /// Model name.
        #[prost(string, tag = "1")]
        pub model_name: String,
        /// Model version.
        #[prost(string, tag = "2")]
        pub model_version: String,
        /// Request id.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Input tensors.
        #[prost(message, repeated, tag = "5")]
        pub inputs: Vec<InferTensor>,
        /// Raw contents, one per input, when the tensors carry none.
        #[prost(bytes = "vec", repeated, tag = "7")]
        pub raw_input_contents: Vec<Vec<u8>>,
    }

    /// `inference.ModelInferResponse`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelInferResponse {
        /// Model name.
        #[prost(string, tag = "1")]
        pub model_name: String,
        /// Model version.
        #[prost(string, tag = "2")]
        pub model_version: String,
        /// Request id.
        #[prost(string, tag = "3")]
        pub id: String,
        /// Output tensors.
        #[prost(message, repeated, tag = "5")]
        pub outputs: Vec<InferTensor>,
        /// Raw contents, one per output, when the tensors carry none.
        #[prost(bytes = "vec", repeated, tag = "6")]
        pub raw_output_contents: Vec<Vec<u8>>,
    }

    /// `InferInputTensor` / `InferOutputTensor` (the same fields).
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferTensor {
        /// Tensor name.
        #[prost(string, tag = "1")]
        pub name: String,
        /// Data type (`FP32`, `INT64`, `BYTES`, ...).
        #[prost(string, tag = "2")]
        pub datatype: String,
        /// Shape.
        #[prost(int64, repeated, tag = "3")]
        pub shape: Vec<i64>,
        /// Typed contents.
        #[prost(message, optional, tag = "5")]
        pub contents: Option<InferTensorContents>,
    }

    /// `inference.InferTensorContents`.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct InferTensorContents {
        /// BOOL.
        #[prost(bool, repeated, tag = "1")]
        pub bool_contents: Vec<bool>,
        /// INT8, INT16, INT32.
        #[prost(int32, repeated, tag = "2")]
        pub int_contents: Vec<i32>,
        /// INT64.
        #[prost(int64, repeated, tag = "3")]
        pub int64_contents: Vec<i64>,
        /// UINT8, UINT16, UINT32.
        #[prost(uint32, repeated, tag = "4")]
        pub uint_contents: Vec<u32>,
        /// UINT64.
        #[prost(uint64, repeated, tag = "5")]
        pub uint64_contents: Vec<u64>,
        /// FP32.
        #[prost(float, repeated, tag = "6")]
        pub fp32_contents: Vec<f32>,
        /// FP64.
        #[prost(double, repeated, tag = "7")]
        pub fp64_contents: Vec<f64>,
        /// BYTES.
        #[prost(bytes = "vec", repeated, tag = "8")]
        pub bytes_contents: Vec<Vec<u8>>,
    }

    /// The payload as the JSON body of a V2 request (`inputs`) or response (`outputs`,
    /// `model_version`).
    pub(super) fn body(payload: &[u8], response: bool) -> Result<Map<String, Json>, BadInput> {
        use prost::Message as _;
        let (field, tensors, raw, version) = if response {
            let m = ModelInferResponse::decode(payload).map_err(|e| {
                bad(BadReason::InvalidValue, format!("payload is not a protobuf ModelInferResponse: {e}"))
            })?;
            ("outputs", m.outputs, m.raw_output_contents, m.model_version)
        } else {
            let m = ModelInferRequest::decode(payload).map_err(|e| {
                bad(BadReason::InvalidValue, format!("payload is not a protobuf ModelInferRequest: {e}"))
            })?;
            ("inputs", m.inputs, m.raw_input_contents, m.model_version)
        };
        if !raw.is_empty() && raw.len() != tensors.len() {
            return Err(bad(
                BadReason::InvalidValue,
                format!("{} raw contents for {} {field} tensors", raw.len(), tensors.len()),
            ));
        }
        let list = tensors
            .into_iter()
            .enumerate()
            .map(|(i, t)| tensor_json(t, raw.get(i).map(Vec::as_slice), &format!("{field}[{i}]")))
            .collect::<Result<Vec<Json>, BadInput>>()?;
        let mut body = Map::new();
        body.insert(field.to_owned(), Json::Array(list));
        if response && !version.is_empty() {
            body.insert("model_version".to_owned(), Json::String(version));
        }
        Ok(body)
    }

    fn num(x: f64, at: &str) -> Result<Json, BadInput> {
        Number::from_f64(x)
            .map(Json::Number)
            .ok_or_else(|| bad(BadReason::NonFiniteNumber, format!("{at} holds a value that is not a finite number")))
    }

    fn utf8(b: &[u8], at: &str) -> Result<Json, BadInput> {
        std::str::from_utf8(b)
            .map(|s| Json::String(s.to_owned()))
            .map_err(|_| bad(BadReason::InvalidUtf8, format!("{at} holds BYTES that are not UTF-8")))
    }

    fn tensor_json(t: InferTensor, raw: Option<&[u8]>, at: &str) -> Result<Json, BadInput> {
        let data: Vec<Json> = match raw {
            Some(raw) => raw_values(&t.datatype, raw, at)?,
            None => {
                let c = t.contents.unwrap_or_default();
                match t.datatype.as_str() {
                    "BOOL" => c.bool_contents.into_iter().map(Json::Bool).collect(),
                    "INT8" | "INT16" | "INT32" => c.int_contents.into_iter().map(Json::from).collect(),
                    "INT64" => c.int64_contents.into_iter().map(Json::from).collect(),
                    "UINT8" | "UINT16" | "UINT32" => c.uint_contents.into_iter().map(Json::from).collect(),
                    "UINT64" => c.uint64_contents.into_iter().map(Json::from).collect(),
                    "FP32" => c.fp32_contents.into_iter().map(|x| num(f64::from(x), at)).collect::<Result<_, _>>()?,
                    "FP64" => c.fp64_contents.into_iter().map(|x| num(x, at)).collect::<Result<_, _>>()?,
                    "BYTES" => c.bytes_contents.iter().map(|b| utf8(b, at)).collect::<Result<_, _>>()?,
                    other => return Err(unknown_datatype(other, at)),
                }
            }
        };
        let shape: Vec<Json> = t.shape.into_iter().map(Json::from).collect();
        Ok(serde_json::json!({"name": t.name, "datatype": t.datatype, "shape": shape, "data": data}))
    }

    fn unknown_datatype(dt: &str, at: &str) -> BadInput {
        bad(
            BadReason::InvalidValue,
            format!(
                "{at}.datatype is `{}`: expected BOOL, INT8-64, UINT8-64, FP16, FP32, FP64 or BYTES",
                dt.chars().take(30).collect::<String>()
            ),
        )
    }

    /// Row-major little-endian raw contents.
    fn raw_values(dt: &str, raw: &[u8], at: &str) -> Result<Vec<Json>, BadInput> {
        fn fixed<const N: usize>(
            raw: &[u8],
            at: &str,
            f: impl Fn([u8; N]) -> Result<Json, BadInput>,
        ) -> Result<Vec<Json>, BadInput> {
            if !raw.len().is_multiple_of(N) {
                return Err(bad(
                    BadReason::InvalidValue,
                    format!("{at}: raw contents of {} bytes are not a whole number of {N}-byte values", raw.len()),
                ));
            }
            raw.chunks_exact(N).map(|c| f(c.try_into().unwrap_or([0; N]))).collect()
        }
        match dt {
            "BOOL" => fixed::<1>(raw, at, |b| Ok(Json::Bool(b[0] != 0))),
            "INT8" => fixed::<1>(raw, at, |b| Ok(Json::from(i8::from_le_bytes(b)))),
            "INT16" => fixed::<2>(raw, at, |b| Ok(Json::from(i16::from_le_bytes(b)))),
            "INT32" => fixed::<4>(raw, at, |b| Ok(Json::from(i32::from_le_bytes(b)))),
            "INT64" => fixed::<8>(raw, at, |b| Ok(Json::from(i64::from_le_bytes(b)))),
            "UINT8" => fixed::<1>(raw, at, |b| Ok(Json::from(b[0]))),
            "UINT16" => fixed::<2>(raw, at, |b| Ok(Json::from(u16::from_le_bytes(b)))),
            "UINT32" => fixed::<4>(raw, at, |b| Ok(Json::from(u32::from_le_bytes(b)))),
            "UINT64" => fixed::<8>(raw, at, |b| Ok(Json::from(u64::from_le_bytes(b)))),
            "FP16" => fixed::<2>(raw, at, |b| num(f16_to_f64(u16::from_le_bytes(b)), at)),
            "FP32" => fixed::<4>(raw, at, |b| num(f64::from(f32::from_le_bytes(b)), at)),
            "FP64" => fixed::<8>(raw, at, |b| num(f64::from_le_bytes(b), at)),
            "BYTES" => {
                // Each element: a 4-byte little-endian length, then the bytes.
                let mut out = Vec::new();
                let mut rest = raw;
                while !rest.is_empty() {
                    let Some((len, tail)) = rest.split_first_chunk::<4>() else {
                        return Err(bad(
                            BadReason::InvalidValue,
                            format!("{at}: raw BYTES end inside a length prefix"),
                        ));
                    };
                    let len = u32::from_le_bytes(*len) as usize;
                    if tail.len() < len {
                        return Err(bad(
                            BadReason::InvalidValue,
                            format!("{at}: raw BYTES element longer than the contents"),
                        ));
                    }
                    out.push(utf8(&tail[..len], at)?);
                    rest = &tail[len..];
                }
                Ok(out)
            }
            other => Err(unknown_datatype(other, at)),
        }
    }

    /// IEEE 754 half precision to f64.
    fn f16_to_f64(h: u16) -> f64 {
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let frac = f64::from(h & 0x3ff);
        match exp {
            0 => sign * frac * 2f64.powi(-24),
            31 if frac == 0.0 => sign * f64::INFINITY,
            31 => f64::NAN,
            e => sign * (1.0 + frac / 1024.0) * 2f64.powi(e - 15),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn half_precision_values_convert() {
            assert_eq!(f16_to_f64(0x3c00), 1.0);
            assert_eq!(f16_to_f64(0xc000), -2.0);
            assert_eq!(f16_to_f64(0x3555), 0.333251953125);
            assert_eq!(f16_to_f64(0x0001), 2f64.powi(-24));
            assert!(f16_to_f64(0x7c00).is_infinite());
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message as _;

    use super::proto::*;
    use super::*;
    use crate::fleet::{Output, Value};

    fn cfg() -> SeldonConfig {
        SeldonConfig { version_header: Some("x-model-version".into()), ..SeldonConfig::default() }
    }

    fn part(cfg: &SeldonConfig, topic: &str, headers: &[(&str, &[u8])], payload: &[u8]) -> Result<Part, BadInput> {
        let rec = RawRecord { topic, headers, payload, timestamp: Some(1_000) };
        decode(cfg, rec).map(|e| *e.part.expect("a part"))
    }

    fn fp32(name: &str, shape: Vec<i64>, data: Vec<f32>) -> InferTensor {
        InferTensor {
            name: name.into(),
            datatype: "FP32".into(),
            shape,
            contents: Some(InferTensorContents { fp32_contents: data, ..Default::default() }),
        }
    }

    #[test]
    fn topic_names_give_role_and_resource() {
        let c = SeldonConfig::default();
        let t = c.topic("seldon.prod.model.iris.inputs").expect("model inputs");
        assert_eq!((t.role, t.resource.as_deref()), (Role::Request, Some("prod/iris")));
        let t = c.topic("seldon.prod.pipeline.fraud-flow.outputs").expect("pipeline outputs");
        assert_eq!((t.role, t.resource.as_deref()), (Role::Response, Some("prod/fraud-flow.pipeline")));
        let t = c.topic("seldon.prod.errors.errors").expect("errors");
        assert_eq!((t.role, t.namespace.as_str(), t.resource), (Role::Failure, "prod", None));
        for not in [
            "seldon.prod.model.iris",
            "other.prod.model.iris.inputs",
            "seldon.prod.server.iris.inputs",
            "seldon.prod.model..inputs",
        ] {
            let e = c.topic(not).expect_err(not);
            assert!(e.contains("not a Seldon topic") && e.contains("seldon.<namespace>.model"), "{e}");
        }
    }

    #[test]
    fn a_protobuf_request_and_response_decode_with_their_headers() {
        let c = SeldonConfig { columns: vec!["clicks".into(), "price".into()], ..cfg() };
        let req = ModelInferRequest {
            model_name: "iris".into(),
            inputs: vec![fp32("predict", vec![2, 2], vec![1.0, 2.5, 3.0, 4.5])],
            ..Default::default()
        }
        .encode_to_vec();
        let headers: [(&str, &[u8]); 3] = [("x-request-id", b"r-1"), ("pipeline", b"iris"), ("x-model-version", b"v7")];
        let p = part(&c, "seldon.prod.model.iris.inputs", &headers, &req).expect("request");
        assert_eq!(
            (p.role, p.id.as_str(), p.name.as_str(), p.route.as_str()),
            (Role::Request, "r-1", "prod/iris", "v7")
        );
        assert_eq!(p.rows[1], vec![("clicks".to_owned(), Value::Num(3.0)), ("price".to_owned(), Value::Num(4.5))]);

        let resp = ModelInferResponse {
            model_name: "iris".into(),
            model_version: "3".into(),
            outputs: vec![InferTensor {
                name: "predict".into(),
                datatype: "INT64".into(),
                shape: vec![2],
                contents: None,
            }],
            raw_output_contents: vec![[2i64.to_le_bytes(), 0i64.to_le_bytes()].concat()],
            ..Default::default()
        }
        .encode_to_vec();
        let typed: [(&str, &[u8]); 2] = [("x-request-id", b"r-1"), ("seldon-infer-type", b"proto/InferModelRequest")];
        let p = part(&c, "seldon.prod.model.iris.outputs", &typed, &resp).expect("response");
        assert_eq!((p.role, p.model_version.as_deref()), (Role::Response, Some("3")));
        assert_eq!(p.outputs, vec![Some(Output::Num(2.0)), Some(Output::Num(0.0))]);
    }

    #[test]
    fn json_payloads_and_chained_steps_decode() {
        let c = cfg();
        let h: [(&str, &[u8]); 2] = [("x-request-id", b"r-2"), ("seldon-infer-type", b"json/inferModelRequest")];
        let body = br#"{"inputs":[{"name":"amount","shape":[1],"datatype":"FP64","data":[12.5]}]}"#;
        let p = part(&c, "seldon.prod.model.scorer.inputs", &h, body).expect("json request");
        assert_eq!(p.rows, vec![vec![("amount".to_owned(), Value::Num(12.5))]]);
        // A step fed by the previous step's response: its outputs are this step's inputs.
        let h: [(&str, &[u8]); 2] = [("x-request-id", b"r-2"), ("seldon-infer-type", b"proto/InferModelResponse")];
        let chained =
            ModelInferResponse { outputs: vec![fp32("emb", vec![1], vec![0.5])], ..Default::default() }.encode_to_vec();
        let p = part(&c, "seldon.prod.model.step2.inputs", &h, &chained).expect("chained");
        assert_eq!(p.rows, vec![vec![("emb".to_owned(), Value::Num(0.5))]]);
        // No type header: `{` means JSON.
        let h: [(&str, &[u8]); 1] = [("x-request-id", b"r-3")];
        let out =
            br#"{"model_name":"scorer","outputs":[{"name":"p","shape":[1],"datatype":"BYTES","data":["fraud"]}]}"#;
        let p = part(&c, "seldon.prod.model.scorer.outputs", &h, out).expect("json response");
        assert_eq!(p.outputs, vec![Some(Output::Class("fraud".into()))]);
    }

    #[test]
    fn errors_name_their_model_in_the_pipeline_header() {
        let c = cfg();
        let h: [(&str, &[u8]); 3] =
            [("x-request-id", b"r-4"), ("pipeline", b"scorer"), ("seldon-pipeline-errors", b"")];
        let p = part(&c, "seldon.prod.errors.errors", &h, b"rpc error: code = Internal").expect("failure");
        assert_eq!((p.role, p.name.as_str(), p.id.as_str()), (Role::Failure, "prod/scorer", "r-4"));
        let h: [(&str, &[u8]); 1] = [("x-request-id", b"r-4")];
        let e = part(&c, "seldon.prod.errors.errors", &h, b"boom").expect_err("no model named");
        assert!(e.detail.contains("header pipeline"), "{e}");
    }

    #[test]
    fn bad_records_name_what_is_wrong() {
        let c = cfg();
        let id: [(&str, &[u8]); 1] = [("x-request-id", b"r-5")];
        type Case<'c> = (&'c str, Vec<(&'c str, &'c [u8])>, Vec<u8>, &'c str);
        let cases: Vec<Case<'_>> = vec![
            ("seldon.prod.model.m.inputs", vec![], b"{}".to_vec(), "x-request-id"),
            ("seldon.prod.model.m.inputs", id.to_vec(), vec![0x0a, 0xff], "protobuf ModelInferRequest"),
            (
                "seldon.prod.model.m.inputs",
                vec![("x-request-id", b"r"), ("seldon-infer-type", b"avro")],
                b"{}".to_vec(),
                "seldon-infer-type",
            ),
            (
                "seldon.prod.model.m.inputs",
                id.to_vec(),
                br#"{"inputs":[{"name":"a","shape":[2],"datatype":"FP32","data":[1]}]}"#.to_vec(),
                "shape",
            ),
            ("prod.model.m.inputs", id.to_vec(), b"{}".to_vec(), "not a Seldon topic"),
            (
                "seldon.prod.model.m.inputs",
                id.to_vec(),
                ModelInferRequest {
                    inputs: vec![InferTensor {
                        name: "a".into(),
                        datatype: "FP8".into(),
                        shape: vec![1],
                        contents: None,
                    }],
                    ..Default::default()
                }
                .encode_to_vec(),
                "datatype",
            ),
            (
                "seldon.prod.model.m.inputs",
                id.to_vec(),
                ModelInferRequest {
                    inputs: vec![InferTensor {
                        name: "a".into(),
                        datatype: "FP32".into(),
                        shape: vec![1],
                        contents: None,
                    }],
                    raw_input_contents: vec![vec![0, 0, 0]],
                    ..Default::default()
                }
                .encode_to_vec(),
                "4-byte",
            ),
        ];
        for (topic, headers, payload, want) in cases {
            let e = part(&c, topic, &headers, &payload).expect_err(want);
            assert!(e.detail.contains(want), "{want}: {e}");
        }
        let rec = RawRecord { topic: "seldon.prod.model.m.inputs", headers: &id, payload: b"{}", timestamp: None };
        let e = decode(&c, rec).expect_err("no timestamp");
        assert!(e.detail.contains("timestamp"), "{e}");
    }
}

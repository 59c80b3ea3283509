//! Answers for deploy tools: a verdict per target for Argo Rollouts' web metric provider, and
//! Flagger's `rollback`, `confirm-promotion` and `pre-rollout` webhooks.
//!
//! Both read the published [`View`], like every other endpoint. Argo Rollouts records any
//! non-2xx answer as a measurement error, not a failure, so the verdict endpoint answers 200
//! whenever the request itself is well formed, even for a target driftwatch has never seen.
//! Flagger decides from the status alone (200–202 pass, anything else does not), so each hook
//! answers 200 only when what it asks holds, and 409 with the same verdict body when it does
//! not (yet). For the `rollback` hook every answer other than 200 — a bad payload, a missing
//! token, an unknown target — means "do not roll back", the safe side.
//!
//! Flagger cannot send headers, so besides the bearer token the hooks accept
//! `metadata.token` equal to `http.hook_token`: a credential that opens these three hooks
//! only, since it sits in the Canary's spec for anyone who can read it.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::{json, Map, Value};

use super::query::Params;
use super::{
    bearer_matches, constant_time_eq, detector_summary, error, evidence_summary, json_response, parse_kind,
    unauthorized, QueryError, Shared, View,
};
use crate::command::CommandKind;
use crate::config::Kind;
use crate::engine::{Detector, TargetOverview, TargetState};
use crate::time::format_rfc3339;

/// What driftwatch says about one target version, for a deploy tool.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A rollback is decided.
    Rollback,
    /// A promotion is decided and no rollback.
    Promote,
    /// A review is decided (a person should look) and neither of the above.
    Review,
    /// Tracked, nothing decided about the rollout yet.
    Pending,
    /// Not tracked: no events of that version seen (or it went idle and was dropped).
    Unknown,
}

impl Verdict {
    /// The name in the JSON answer.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Rollback => "rollback",
            Verdict::Promote => "promote",
            Verdict::Review => "review",
            Verdict::Pending => "pending",
            Verdict::Unknown => "unknown",
        }
    }
}

/// The verdict about `kind/name/version` in view `v`, and its JSON.
fn verdict(v: &View, ready: bool, kind: Kind, name: &str, version: &str) -> (Verdict, Value) {
    let id = format!("{}/{name}/{version}", kind.as_str());
    let mut body = json!({
        "target": {"kind": kind.as_str(), "name": name, "version": version, "baseline_version": null},
        "state": null,
        "reason": null,
        "command_id": null,
        "decided_at": null,
        "ready": ready,
        "watermark": v.watermark.map(format_rfc3339),
    });
    let Some(t) = v.target(kind, name, version) else {
        let detail = if ready {
            format!("no events of {id} seen (or it was idle longer than limits.target_idle_ttl)")
        } else {
            format!("no events of {id} seen yet: driftwatch is not ready (restoring state or waiting for partitions)")
        };
        body["verdict"] = json!(Verdict::Unknown.as_str());
        body["detail"] = json!(detail);
        return (Verdict::Unknown, body);
    };
    body["target"]["baseline_version"] = json!(t.baseline);
    body["state"] = json!(t.state);
    let (verdict, command) = if t.rolled_back {
        (Verdict::Rollback, Some(CommandKind::Rollback))
    } else if t.promoted {
        (Verdict::Promote, Some(CommandKind::Promote))
    } else if t.state == TargetState::Review {
        (Verdict::Review, Some(CommandKind::Review))
    } else {
        (Verdict::Pending, None)
    };
    let detail = match (command, command.and_then(|k| v.last_decision(k, t))) {
        (Some(kind), Some(d)) => {
            body["reason"] = json!(d.command.reason.as_str());
            body["command_id"] = json!(d.command.command_id);
            body["decided_at"] = json!(format_rfc3339(d.command.decided_at));
            format!("{} decided for {id}: {}", kind.as_str(), evidence_summary(&d.command))
        }
        (Some(kind), None) => {
            format!("{} decided for {id} (the command is older than the retained decisions)", kind.as_str())
        }
        (None, _) => pending_detail(t, &id),
    };
    body["verdict"] = json!(verdict.as_str());
    body["detail"] = json!(detail);
    (verdict, body)
}

fn pending_detail(t: &TargetOverview, id: &str) -> String {
    match t.state {
        TargetState::Suspect => {
            format!("{id} is suspect, nothing decided yet: {}", detector_summary(t, Detector::ErrorRate))
        }
        TargetState::Retrain => {
            format!("{id}: retrain decided, which is not a rollout verdict; nothing decided about the rollout")
        }
        _ if t.baseline.is_none() => {
            format!("{id} is not a candidate (no baseline to compare with): nothing to decide about a rollout")
        }
        _ => format!(
            "nothing decided yet for {id}: {} events in the window; {}",
            t.window_events,
            detector_summary(t, Detector::Promote)
        ),
    }
}

/// `GET /v1/verdict/{kind}/{name}/{version}`: the verdict, always 200 for a well-formed request.
pub(super) async fn verdict_handler(
    State(s): State<Arc<Shared>>,
    Path((kind, name, version)): Path<(String, String, String)>,
    RawQuery(q): RawQuery,
    uri: Uri,
) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let kind = parse_kind(&kind, "kind")?;
    let v = s.view();
    if let Some(r) = super::group::elsewhere(&v, &name, &uri) {
        return Ok(r);
    }
    let (_, body) = verdict(&v, ready(&s, &v), kind, &name, &version);
    Ok(json_response(&body))
}

fn ready(s: &Shared, v: &View) -> bool {
    v.ready && s.session_ok.load(Ordering::SeqCst) && s.alive.load(Ordering::SeqCst)
}

/// The Flagger hooks driftwatch answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hook {
    /// `rollback`: 200 when a rollback is decided.
    Rollback,
    /// `confirm-promotion`: 200 once promotion is decided.
    ConfirmPromotion,
    /// `pre-rollout`: 200 when driftwatch is ready and the version is not rolled back.
    PreRollout,
}

impl Hook {
    fn as_str(self) -> &'static str {
        match self {
            Hook::Rollback => "rollback",
            Hook::ConfirmPromotion => "confirm-promotion",
            Hook::PreRollout => "pre-rollout",
        }
    }
}

/// A Flagger payload (`CanaryWebhookPayload`) mapped to a target.
#[derive(Debug, PartialEq)]
struct Mapped {
    kind: Kind,
    name: String,
    version: Option<String>,
}

/// A payload that cannot be read or mapped: the field at fault and why.
#[derive(Debug, PartialEq)]
struct PayloadError {
    field: String,
    message: String,
}

impl PayloadError {
    fn new(field: &str, message: impl Into<String>) -> PayloadError {
        PayloadError { field: field.to_owned(), message: message.into() }
    }
}

/// Reads Flagger's payload: `name`, `namespace` (strings), optional `phase` and `checksum`
/// (strings), optional `metadata` (string → string); other fields are ignored. The target is
/// `metadata.kind` (`app` by default) / `metadata.name` (default: the canary's `name`) /
/// `metadata.version` (required unless `version_optional`).
fn map_payload(body: &[u8], version_optional: bool) -> Result<Mapped, PayloadError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        PayloadError::new(
            "body",
            format!(
                "is not JSON ({e}); Flagger sends {{\"name\", \"namespace\", \"phase\", \"checksum\", \"metadata\"}}"
            ),
        )
    })?;
    let Value::Object(o) = v else {
        return Err(PayloadError::new("body", "must be a JSON object (Flagger's webhook payload)"));
    };
    let text =
        |o: &Map<String, Value>, key: &str, field: &str, required: bool| -> Result<Option<String>, PayloadError> {
            match o.get(key) {
                None if required => Err(PayloadError::new(field, "is missing")),
                None => Ok(None),
                Some(Value::String(s)) if s.is_empty() && required => {
                    Err(PayloadError::new(field, "must not be empty"))
                }
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(PayloadError::new(field, format!("must be a string, got {other}"))),
            }
        };
    let canary = text(&o, "name", "name", true)?.unwrap_or_default();
    text(&o, "namespace", "namespace", true)?;
    text(&o, "phase", "phase", false)?;
    text(&o, "checksum", "checksum", false)?;
    let empty = Map::new();
    let metadata = match o.get("metadata") {
        None => &empty,
        Some(Value::Object(m)) => m,
        Some(other) => return Err(PayloadError::new("metadata", format!("must be an object of strings, got {other}"))),
    };
    if let Some((k, bad)) = metadata.iter().find(|(_, v)| !v.is_string()) {
        return Err(PayloadError::new(
            &format!("metadata.{k}"),
            format!("must be a string (Flagger's metadata is string to string), got {bad}"),
        ));
    }
    let meta = |key: &str, required: bool| text(metadata, key, &format!("metadata.{key}"), required);
    let kind = match meta("kind", false)?.as_deref() {
        None => Kind::App,
        Some("app") => Kind::App,
        Some("model") => Kind::Model,
        Some(other) => {
            return Err(PayloadError::new("metadata.kind", format!("must be `app` or `model`, got `{other}`")))
        }
    };
    let name = match meta("name", false)? {
        Some(n) if n.is_empty() => {
            return Err(PayloadError::new("metadata.name", "must not be empty (leave it out to use the canary's name)"))
        }
        Some(n) => n,
        None => canary,
    };
    let version =
        match meta("version", !version_optional)? {
            Some(v) if v.is_empty() => return Err(PayloadError::new("metadata.version", "must not be empty")),
            Some(v) => Some(v),
            None if version_optional => None,
            None => return Err(PayloadError::new(
                "metadata.version",
                "is missing: set it to the version the canary serves (as in the events' app_version / model_version)",
            )),
        };
    Ok(Mapped { kind, name, version })
}

/// Whether the caller may ask: the bearer token, or `metadata.token` equal to `http.hook_token`.
fn hook_authorized(s: &Shared, headers: &HeaderMap, body: &[u8]) -> bool {
    if s.token.is_none() && s.cfg.hook_token.is_none() {
        return true;
    }
    if s.token.as_deref().is_some_and(|t| bearer_matches(headers, t)) {
        return true;
    }
    let Some(hook_token) = s.cfg.hook_token.as_deref() else { return false };
    let given = serde_json::from_slice::<Value>(body).ok();
    given
        .as_ref()
        .and_then(|v| v.get("metadata"))
        .and_then(|m| m.get("token"))
        .and_then(Value::as_str)
        .is_some_and(|g| constant_time_eq(g.as_bytes(), hook_token.as_bytes()))
}

async fn answer(s: Arc<Shared>, hook: Hook, q: Option<String>, headers: HeaderMap, body: Bytes, uri: Uri) -> Response {
    if !hook_authorized(&s, &headers, &body) {
        let how = if s.cfg.hook_token.is_some() {
            "`Authorization: Bearer <token>` (http.token) or `metadata.token` equal to http.hook_token"
        } else {
            "`Authorization: Bearer <token>` (http.token); Flagger cannot send headers, so set http.hook_token and put it in the webhook's `metadata.token`"
        };
        return unauthorized(format!("the Flagger {} hook needs {how}", hook.as_str()));
    }
    if let Err(e) = Params::parse(q.as_deref(), &[]) {
        return axum::response::IntoResponse::into_response(e);
    }
    let mapped = match map_payload(&body, hook == Hook::PreRollout) {
        Ok(m) => m,
        Err(e) => {
            let message = format!("Flagger payload: `{}` {}", e.field, e.message);
            return with_status(
                StatusCode::BAD_REQUEST,
                &json!({"error": "bad_request", "message": message, "field": e.field}),
            );
        }
    };
    let v = s.view();
    if let Some(r) = super::group::elsewhere(&v, &mapped.name, &uri) {
        return r;
    }
    let ready = ready(&s, &v);
    let (status, mut body) = match (hook, mapped.version.as_deref()) {
        (Hook::PreRollout, version) => {
            let (verdict, body) = match version {
                Some(version) => verdict(&v, ready, mapped.kind, &mapped.name, version),
                None => (Verdict::Unknown, unversioned(&v, ready, &mapped)),
            };
            let status = if !ready {
                StatusCode::SERVICE_UNAVAILABLE
            } else if verdict == Verdict::Rollback {
                StatusCode::CONFLICT
            } else {
                StatusCode::OK
            };
            (status, body)
        }
        (hook, Some(version)) => {
            let (verdict, body) = verdict(&v, ready, mapped.kind, &mapped.name, version);
            let wanted = if hook == Hook::Rollback { Verdict::Rollback } else { Verdict::Promote };
            (if verdict == wanted { StatusCode::OK } else { StatusCode::CONFLICT }, body)
        }
        // map_payload requires the version for these hooks.
        (_, None) => (StatusCode::CONFLICT, unversioned(&v, ready, &mapped)),
    };
    body["hook"] = json!(hook.as_str());
    body["passed"] = json!(status == StatusCode::OK);
    with_status(status, &body)
}

fn with_status(status: StatusCode, body: &Value) -> Response {
    let mut r = json_response(body);
    *r.status_mut() = status;
    r
}

/// The answer's body when the payload names no version (pre-rollout only).
fn unversioned(v: &View, ready: bool, m: &Mapped) -> Value {
    let id = format!("{}/{}", m.kind.as_str(), m.name);
    json!({
        "verdict": Verdict::Unknown.as_str(),
        "target": {"kind": m.kind.as_str(), "name": m.name, "version": null, "baseline_version": null},
        "state": null,
        "reason": null,
        "command_id": null,
        "decided_at": null,
        "detail": if ready {
            format!("driftwatch is ready; no metadata.version given, so no version of {id} was looked up")
        } else {
            "driftwatch is not ready (restoring state or waiting for partitions)".to_owned()
        },
        "ready": ready,
        "watermark": v.watermark.map(format_rfc3339),
    })
}

/// `POST /v1/flagger/{hook}`: Flagger's `rollback`, `confirm-promotion` and `pre-rollout` hooks.
pub(super) async fn hook_handler(
    State(s): State<Arc<Shared>>,
    Path(hook): Path<String>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let hook = match hook.as_str() {
        "rollback" => Hook::Rollback,
        "confirm-promotion" => Hook::ConfirmPromotion,
        "pre-rollout" => Hook::PreRollout,
        other => {
            let message = format!(
                "driftwatch answers Flagger's rollback, confirm-promotion and pre-rollout hooks, not `{other}`"
            );
            return error(StatusCode::NOT_FOUND, "not_found", message, None);
        }
    };
    answer(s, hook, q, headers, body, uri).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flaggers_payload_maps_through_metadata() {
        let p = br#"{"name":"checkout","namespace":"shop","phase":"Progressing","checksum":"6d5c8f","metadata":{"version":"2.4.0"}}"#;
        assert_eq!(
            map_payload(p, false),
            Ok(Mapped { kind: Kind::App, name: "checkout".into(), version: Some("2.4.0".into()) })
        );
        let p = br#"{"name":"fraud-canary","namespace":"ml","phase":"Waiting","metadata":{"kind":"model","name":"fraud","version":"7","token":"x"}}"#;
        assert_eq!(
            map_payload(p, false),
            Ok(Mapped { kind: Kind::Model, name: "fraud".into(), version: Some("7".into()) })
        );
        // Older Flagger versions send neither checksum nor metadata.
        let p = br#"{"name":"checkout","namespace":"shop","phase":"Progressing"}"#;
        assert_eq!(map_payload(p, true), Ok(Mapped { kind: Kind::App, name: "checkout".into(), version: None }));
    }

    #[test]
    fn unmappable_payloads_name_the_field() {
        let field = |p: &[u8], optional: bool| map_payload(p, optional).map_err(|e| e.field);
        assert_eq!(field(br#"{"name":"checkout","namespace":"shop"}"#, false), Err("metadata.version".into()));
        assert_eq!(
            field(br#"{"name":"checkout","namespace":"shop","metadata":{"kind":"job","version":"1"}}"#, false),
            Err("metadata.kind".into())
        );
        assert_eq!(
            field(br#"{"name":"checkout","namespace":"shop","metadata":{"version":1}}"#, false),
            Err("metadata.version".into())
        );
        assert_eq!(field(br#"{"namespace":"shop","metadata":{"version":"1"}}"#, false), Err("name".into()));
        assert_eq!(field(br#"{"name":"c","namespace":"shop","phase":null}"#, true), Err("phase".into()));
        assert_eq!(field(br#"{"name":"c","namespace":"shop","metadata":null}"#, true), Err("metadata".into()));
        assert_eq!(field(b"{not json", true), Err("body".into()));
        assert_eq!(field(b"[]", true), Err("body".into()));
        let e = map_payload(br#"{"name":"c","namespace":"s","metadata":{"kind":"job"}}"#, true).unwrap_err();
        assert!(e.message.contains("`app` or `model`") && e.message.contains("job"), "{}", e.message);
    }
}

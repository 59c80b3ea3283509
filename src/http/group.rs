//! The HTTP API of a member of a scaled-out group (`kafka.tasks`): each member decides the
//! targets of the tasks it owns; `/v1/group` says who owns what, a question about a target
//! another member decides is redirected to it, and `scope=group` on the list endpoints
//! gathers every member's answer into one (what the status page shows).

use std::sync::Arc;
use std::time::Duration as StdDuration;

use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use super::query::{Params, QueryError};
use super::{error, json_response, Shared, View};
use crate::observe::GroupStatus;
use crate::time::format_rfc3339;

/// In a scaled-out group, the answer about a target named `name` when another member decides
/// it: a redirect to that member's URL with the same path and query (307, so that a POST stays
/// a POST), or 503 while the group is between assignments. `None` when this instance decides
/// it, or is no group member.
pub(super) fn elsewhere(v: &View, name: &str, uri: &Uri) -> Option<Response> {
    let g = v.stats.group()?;
    let task = crate::engine::stages::task_of(name, g.tasks);
    if v.stats.partitions.iter().any(|p| p.stage == "task" && p.partition as usize == task) {
        return None;
    }
    let owner = g.owner_of_task(task);
    if owner.is_some_and(|m| m.instance == g.instance) {
        // Assigned to this instance, not restored yet: it answers (not ready).
        return None;
    }
    let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
    let (status, code, message, location) = match owner {
        Some(m) => match &m.url {
            Some(url) => (
                StatusCode::TEMPORARY_REDIRECT,
                "elsewhere",
                format!("{name} is decided by task {task}, owned by instance {} at {url}", m.instance),
                Some(format!("{}{path}", url.trim_end_matches('/'))),
            ),
            None => (
                StatusCode::NOT_FOUND,
                "elsewhere",
                format!("{name} is decided by task {task}, owned by instance {}, which serves no HTTP API", m.instance),
                None,
            ),
        },
        None => (
            StatusCode::SERVICE_UNAVAILABLE,
            "rebalancing",
            format!("{name} is decided by task {task}, which no member owns right now (the group is rebalancing)"),
            None,
        ),
    };
    let body = json!({
        "error": code,
        "message": message,
        "owner": owner.map(|m| json!({"instance": m.instance, "url": m.url, "task": task})),
    });
    let mut r = (status, axum::Json(body)).into_response();
    if let Some(l) = location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert(header::LOCATION, l);
    }
    if status == StatusCode::SERVICE_UNAVAILABLE {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("2"));
    }
    Some(r)
}

/// `GET /v1/group`: the members of a scaled-out group, what each owns and where its API
/// answers; this member's partitions with their lag, and its restores.
pub(super) async fn group(State(s): State<Arc<Shared>>, RawQuery(q): RawQuery) -> Result<Response, QueryError> {
    Params::parse(q.as_deref(), &[])?;
    let v = s.view();
    let Some(g) = v.stats.group() else {
        return Ok(error(
            StatusCode::NOT_FOUND,
            "not_found",
            "this instance is not a member of a scaled-out group (kafka.tasks = 0), or has not heard from the group yet"
                .into(),
            None,
        ));
    };
    let members: Vec<Value> = g
        .members
        .iter()
        .map(|m| {
            json!({
                "instance": m.instance,
                "this": m.instance == g.instance,
                "host": m.host,
                "url": m.url,
                "tasks": m.tasks,
                "joins": m.joins,
                "inputs": m.inputs.iter().map(|(t, p)| json!({"topic": t, "partition": p})).collect::<Vec<_>>(),
            })
        })
        .collect();
    let partitions: Vec<Value> = v
        .stats
        .partitions
        .iter()
        .map(|p| {
            json!({"topic": p.topic, "partition": p.partition, "stage": p.stage, "position": p.position,
                   "end": p.end, "lag": p.lag()})
        })
        .collect();
    let r = &v.stats.restore;
    let restore: Vec<Value> =
        r.parts().iter().map(|p| json!({"partition": p.partition, "read": p.read, "total": p.total})).collect();
    Ok(json_response(&json!({
        "group": g.group,
        "instance": g.instance,
        "state": g.state,
        "tasks": g.tasks,
        "joins": g.joins,
        "seen_at": format_rfc3339(g.seen_at),
        "members": members,
        "partitions": partitions,
        "restore": {"active": r.is_active(), "partitions": restore, "restores": r.restores(),
                    "records": r.restored_records()},
    })))
}

/// How long a member waits for another's answer to a `scope=group` question.
const PEER_TIMEOUT: StdDuration = StdDuration::from_secs(3);

/// `scope=group` on `/v1/targets`, `/v1/alerts` and `/v1/decisions`: this member's answer and
/// every other member's (asked at its URL with the same question and credentials), merged and
/// cut to the asked `limit`; `members` says who answered. Pages (`cursor`) are per member.
/// On `/v1/history/{kind}/{name}`: the answer of the member deciding the name, fetched by this
/// one (for a browser that may not reach the others). Outside a group the answer is this
/// instance's.
pub(super) async fn scope(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut scope = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').map_or((pair, ""), |(k, v)| (k, v)) {
            ("scope", v) => scope = Some(v.to_owned()),
            _ => rest.push(pair),
        }
    }
    let Some(scope) = scope else { return next.run(req).await };
    if scope != "group" {
        let reason = format!("must be `group` (every member's answer together), got `{scope}`");
        return QueryError::new("scope", reason).into_response();
    }
    // An empty cursor is the first page; outside a group, the answer is this instance's own.
    let paged = rest.iter().any(|p| p.strip_prefix("cursor=").is_some_and(|c| !c.is_empty()));
    if paged && s.view().stats.group().is_some() {
        let reason = "pages are per member: leave out cursor with scope=group, or ask each member";
        return QueryError::new("cursor", reason.into()).into_response();
    }
    let path = req.uri().path().to_owned();
    let rest = rest.join("&");
    let local_uri = if rest.is_empty() { path.clone() } else { format!("{path}?{rest}") };
    let auth = req.headers().get(header::AUTHORIZATION).and_then(|a| a.to_str().ok()).map(str::to_owned);
    let (mut parts, body) = req.into_parts();
    if let Ok(u) = local_uri.parse() {
        parts.uri = u;
    }
    let local = next.run(Request::from_parts(parts, body)).await;
    let Some(g) = s.view().stats.group() else { return local };
    if local.status() == StatusCode::TEMPORARY_REDIRECT {
        let Some(location) = local.headers().get(header::LOCATION).and_then(|l| l.to_str().ok()).map(str::to_owned)
        else {
            return local;
        };
        let answer = tokio::task::spawn_blocking(move || fetch(&location, auth.as_deref())).await;
        return match answer {
            Ok(Ok(v)) => json_response(&v),
            Ok(Err(e)) => error(StatusCode::BAD_GATEWAY, "member_unreachable", e, None),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string(), None),
        };
    }
    if !local.status().is_success() || !matches!(path.as_str(), "/v1/targets" | "/v1/decisions" | "/v1/alerts") {
        return local;
    }
    let Ok(bytes) = axum::body::to_bytes(local.into_body(), 64 << 20).await else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "reading this member's answer".into(), None);
    };
    let Ok(mine) = serde_json::from_slice::<Value>(&bytes) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "internal", "this member's answer is not JSON".into(), None);
    };
    let answers = ask_peers(&g, &local_uri, auth).await;
    let limit =
        rest.split('&').find_map(|p| p.strip_prefix("limit=")).and_then(|l| l.parse::<usize>().ok()).unwrap_or(100);
    json_response(&merge(&path, &g, mine, answers, limit))
}

/// Every other member's answer to `path_and_query`, by instance.
async fn ask_peers(
    g: &GroupStatus,
    path_and_query: &str,
    auth: Option<String>,
) -> Vec<(String, Result<Value, String>)> {
    let mut asked = Vec::new();
    for m in g.members.iter().filter(|m| m.instance != g.instance) {
        let Some(url) = &m.url else {
            asked.push((m.instance.clone(), None));
            continue;
        };
        let url = format!("{}{path_and_query}", url.trim_end_matches('/'));
        let auth = auth.clone();
        asked.push((m.instance.clone(), Some(tokio::task::spawn_blocking(move || fetch(&url, auth.as_deref())))));
    }
    let mut out = Vec::new();
    for (instance, handle) in asked {
        let answer = match handle {
            None => Err("it serves no HTTP API".to_owned()),
            Some(h) => h.await.unwrap_or_else(|e| Err(e.to_string())),
        };
        out.push((instance, answer));
    }
    out
}

fn fetch(url: &str, auth: Option<&str>) -> Result<Value, String> {
    let agent = ureq::AgentBuilder::new().timeout(PEER_TIMEOUT).redirects(0).build();
    let mut req = agent.get(url);
    if let Some(a) = auth {
        req = req.set("Authorization", a);
    }
    match req.call() {
        Ok(r) => r.into_json::<Value>().map_err(|e| format!("{url}: {e}")),
        Err(ureq::Error::Status(code, _)) => Err(format!("{url} answered HTTP {code}")),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

/// The members' answers to one list question as one.
fn merge(
    path: &str,
    g: &GroupStatus,
    mine: Value,
    answers: Vec<(String, Result<Value, String>)>,
    limit: usize,
) -> Value {
    let field = match path {
        "/v1/targets" => "targets",
        "/v1/decisions" => "decisions",
        _ => "alerts",
    };
    let mut members = vec![json!({"instance": g.instance, "this": true, "answered": true})];
    let mut items: Vec<Value> = mine.get(field).and_then(Value::as_array).cloned().unwrap_or_default();
    let mut total = mine.get("total").and_then(Value::as_u64).unwrap_or(0);
    let mut retained = mine.get("retained").and_then(Value::as_u64).unwrap_or(0);
    for (instance, answer) in answers {
        match answer {
            Ok(v) => {
                items.extend(v.get(field).and_then(Value::as_array).cloned().unwrap_or_default());
                total += v.get("total").and_then(Value::as_u64).unwrap_or(0);
                retained += v.get("retained").and_then(Value::as_u64).unwrap_or(0);
                members.push(json!({"instance": instance, "this": false, "answered": true}));
            }
            Err(e) => members.push(json!({"instance": instance, "this": false, "answered": false, "error": e})),
        }
    }
    let text = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or_default().to_owned();
    let mut out = mine;
    match field {
        "targets" => {
            items.sort_by_key(|t| (text(t, "kind"), text(t, "name"), text(t, "version")));
            items.truncate(limit);
            out["total"] = json!(total);
            out["next_cursor"] = Value::Null;
        }
        "decisions" => {
            // Newest first, as one member answers.
            items.sort_by_key(|d| std::cmp::Reverse((text(d, "decided_at"), text(d, "command_id"))));
            items.truncate(limit);
            out["retained"] = json!(retained);
            out["next_cursor"] = Value::Null;
        }
        _ => {}
    }
    out[field] = Value::Array(items);
    out["members"] = Value::Array(members);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::GroupMember;

    fn group() -> GroupStatus {
        GroupStatus {
            group: "g".into(),
            instance: "a".into(),
            tasks: 6,
            joins: 4,
            state: "Stable".into(),
            members: vec![
                GroupMember { instance: "a".into(), tasks: vec![0, 1, 2], ..GroupMember::default() },
                GroupMember { instance: "b".into(), tasks: vec![3, 4, 5], ..GroupMember::default() },
            ],
            seen_at: 0,
        }
    }

    #[test]
    fn targets_merge_in_order_and_cut_to_the_limit() {
        let mine =
            json!({"targets": [{"kind": "app", "name": "cart", "version": "2"}], "total": 1, "next_cursor": null});
        let theirs = json!({"targets": [{"kind": "app", "name": "auth", "version": "1"},
                                        {"kind": "model", "name": "fraud", "version": "7"}], "total": 2});
        let out =
            merge("/v1/targets", &group(), mine, vec![("b".into(), Ok(theirs)), ("c".into(), Err("down".into()))], 2);
        let names: Vec<&str> =
            out["targets"].as_array().into_iter().flatten().filter_map(|t| t["name"].as_str()).collect();
        assert_eq!(names, ["auth", "cart"]);
        assert_eq!(out["total"], 3);
        assert_eq!(out["members"][2]["answered"], false);
        assert_eq!(out["members"][2]["error"], "down");
    }

    #[test]
    fn decisions_merge_newest_first() {
        let mine = json!({"decisions": [{"command_id": "x", "decided_at": "2026-01-01T00:00:02.000Z"}], "retained": 1});
        let theirs = json!({"decisions": [{"command_id": "y", "decided_at": "2026-01-01T00:00:03.000Z"},
                                          {"command_id": "z", "decided_at": "2026-01-01T00:00:01.000Z"}], "retained": 2});
        let out = merge("/v1/decisions", &group(), mine, vec![("b".into(), Ok(theirs))], 100);
        let ids: Vec<&str> =
            out["decisions"].as_array().into_iter().flatten().filter_map(|d| d["command_id"].as_str()).collect();
        assert_eq!(ids, ["y", "x", "z"]);
        assert_eq!(out["retained"], 3);
    }
}

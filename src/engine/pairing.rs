//! Pairs the logged halves of an inference (request, response) by id into predictions, in
//! the merged event-time order of the input, so the result does not depend on which partition
//! each half was written to.
//!
//! A pair is one prediction per instance at the response's time, with the request's features,
//! the response's output and the time between them as latency. A request whose response has
//! not come `response_timeout` after it is an error (`no_response`) per instance at that
//! deadline; a response whose request never came is a prediction without features. The
//! version of a pair is the model's own `model_version` when the response reports one, else
//! the record's route (metadata header or endpoint); a request that timed out takes the
//! version last reported on its route, so its error counts for the version that would have
//! answered.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::fleet::{Output, Part, Role, Row};
use crate::time::Millis;

/// Pairing counts, reported in metrics and summaries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PairCounters {
    /// Requests paired with their response.
    pub paired: u64,
    /// Requests with no response within the timeout (counted as errors).
    pub no_response: u64,
    /// Responses whose request never came (counted as predictions without features).
    pub unpaired_responses: u64,
    /// Halves whose id was already waiting (the later one is ignored).
    pub duplicate_ids: u64,
    /// Pairs whose request and response have different instance counts (the shorter wins).
    pub row_mismatches: u64,
    /// Requests not tracked because `fleet.max_pending` requests were waiting.
    pub over_limit: u64,
    /// Requests the fleet logged as failed (Seldon's errors topic), counted as errors.
    pub failed: u64,
    /// Failures logged for no waiting request of the same model (e.g. a pipeline step's,
    /// named by its pipeline): ignored; such a request becomes `no_response` at its deadline.
    pub unpaired_failures: u64,
}

/// A half waiting for the other one.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Waiting {
    ts: Millis,
    deadline: Millis,
    part: Part,
}

/// What a pairing step yields, for the engine to ingest in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Outcome {
    /// Event time.
    pub ts: Millis,
    /// The event id of the prediction (`id`, or `id/<instance>` for batched requests).
    pub event_id: String,
    /// App and model name.
    pub name: String,
    /// Version.
    pub version: String,
    /// Response time minus request time.
    pub latency_ms: Option<f64>,
    /// Features (none for a response whose request never came).
    pub row: Option<Row>,
    /// `Some(output)` for a prediction, `None` for an error.
    pub prediction: Option<Option<Output>>,
    /// The error kind, for an error.
    pub error_kind: &'static str,
}

/// Error kind of a request whose response never came.
pub(crate) const NO_RESPONSE: &str = "no_response";
/// Error kind of a request the fleet logged as failed.
pub(crate) const MODEL_ERROR: &str = "model_error";

/// What the halves wait under: the id within its app and model, so that the steps of one
/// request through a pipeline, which share its id, pair model by model.
fn key_of(part: &Part) -> String {
    format!("{}\n{}", part.name, part.id)
}

/// The pairing state (part of the engine's state, and of its snapshots).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Pairing {
    waiting: FxHashMap<String, Waiting>,
    deadlines: BTreeSet<(Millis, String)>,
    /// `(name, route)` → the model version last reported on it.
    versions: BTreeMap<(String, String), String>,
    pub(crate) counters: PairCounters,
    #[serde(skip)]
    pub(crate) dirty: bool,
}

impl Pairing {
    /// Halves waiting for their other half.
    pub(crate) fn waiting(&self) -> usize {
        self.waiting.len()
    }

    /// The earliest deadline, if any half is waiting.
    pub(crate) fn next_deadline(&self) -> Option<Millis> {
        self.deadlines.first().map(|(d, _)| *d)
    }

    /// The latest deadline, if any half is waiting.
    pub(crate) fn last_deadline(&self) -> Option<Millis> {
        self.deadlines.last().map(|(d, _)| *d)
    }

    /// Takes one half at event time `ts`; pushes the predictions it completes onto `out`.
    pub(crate) fn offer(
        &mut self,
        ts: Millis,
        part: Part,
        timeout: Millis,
        max_pending: usize,
        out: &mut Vec<Outcome>,
    ) {
        self.dirty = true;
        let key = key_of(&part);
        if let Some(w) = self.waiting.remove(&key) {
            self.deadlines.remove(&(w.deadline, key.clone()));
            match (w.part.role, part.role) {
                (Role::Request, Role::Response) => self.pair(w.ts, w.part, ts, part, out),
                (Role::Response, Role::Request) => self.pair(ts, part, w.ts, w.part, out),
                (Role::Request, Role::Failure) => {
                    self.counters.failed += 1;
                    self.fail(ts, w.part, MODEL_ERROR, out);
                }
                (Role::Response, Role::Failure) => {
                    // A failure logged for a request that was answered: the answer stands.
                    self.counters.unpaired_failures += 1;
                    self.deadlines.insert((w.deadline, key.clone()));
                    self.waiting.insert(key, w);
                }
                _ => {
                    // The same half twice: keep the first.
                    self.counters.duplicate_ids += 1;
                    self.deadlines.insert((w.deadline, key.clone()));
                    self.waiting.insert(key, w);
                }
            }
            return;
        }
        if part.role == Role::Failure {
            self.counters.unpaired_failures += 1;
            return;
        }
        if self.waiting.len() >= max_pending {
            self.counters.over_limit += 1;
            return;
        }
        let deadline = ts.saturating_add(timeout);
        self.deadlines.insert((deadline, key.clone()));
        self.waiting.insert(key, Waiting { ts, deadline, part });
    }

    /// A request that failed at `ts`: an error per instance, on the version its model reported,
    /// else the version last reported on its route.
    fn fail(&mut self, ts: Millis, part: Part, error_kind: &'static str, out: &mut Vec<Outcome>) {
        let version = part
            .model_version
            .clone()
            .or_else(|| self.versions.get(&(part.name.clone(), part.route.clone())).cloned())
            .unwrap_or_else(|| part.route.clone());
        let batched = part.rows.len() > 1;
        for i in 0..part.rows.len().max(1) {
            out.push(Outcome {
                ts,
                event_id: if batched { format!("{}/{i}", part.id) } else { part.id.clone() },
                name: part.name.clone(),
                version: version.clone(),
                latency_ms: None,
                row: None,
                prediction: None,
                error_kind,
            });
        }
    }

    fn pair(&mut self, req_ts: Millis, req: Part, resp_ts: Millis, resp: Part, out: &mut Vec<Outcome>) {
        self.counters.paired += 1;
        let version = match resp.model_version.clone().or_else(|| req.model_version.clone()) {
            Some(v) => {
                self.versions.insert((req.name.clone(), req.route.clone()), v.clone());
                v
            }
            None => req.route.clone(),
        };
        if req.rows.len() != resp.outputs.len() {
            self.counters.row_mismatches += 1;
        }
        let n = req.rows.len().min(resp.outputs.len());
        let batched = n > 1;
        let latency = (resp_ts - req_ts).max(0) as f64;
        for (i, (row, output)) in req.rows.into_iter().zip(resp.outputs).enumerate() {
            out.push(Outcome {
                ts: resp_ts.max(req_ts),
                event_id: if batched { format!("{}/{i}", req.id) } else { req.id.clone() },
                name: req.name.clone(),
                version: version.clone(),
                latency_ms: Some(latency),
                row: Some(row),
                prediction: Some(output),
                error_kind: "",
            });
        }
    }

    /// Halves whose deadline is at or before `now`, as errors (requests) or feature-less
    /// predictions (responses), in deadline order.
    pub(crate) fn expire(&mut self, now: Millis, out: &mut Vec<Outcome>) {
        while let Some((deadline, _)) = self.deadlines.first() {
            if *deadline > now {
                break;
            }
            let Some((deadline, key)) = self.deadlines.pop_first() else { break };
            let Some(w) = self.waiting.remove(&key) else { continue };
            self.dirty = true;
            let part = w.part;
            match part.role {
                Role::Request => {
                    self.counters.no_response += 1;
                    self.fail(deadline, part, NO_RESPONSE, out);
                }
                Role::Failure => {}
                Role::Response => {
                    self.counters.unpaired_responses += 1;
                    let version = part.model_version.clone().unwrap_or_else(|| part.route.clone());
                    let batched = part.outputs.len() > 1;
                    for (i, output) in part.outputs.into_iter().enumerate() {
                        out.push(Outcome {
                            ts: w.ts,
                            event_id: if batched { format!("{}/{i}", part.id) } else { part.id.clone() },
                            name: part.name.clone(),
                            version: version.clone(),
                            latency_ms: None,
                            row: None,
                            prediction: Some(output),
                            error_kind: "",
                        });
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fleet::Value;

    fn part(role: Role, id: &str, route: &str, n: usize, model_version: Option<&str>) -> Part {
        Part {
            role,
            id: id.into(),
            name: "ns/isvc".into(),
            route: route.into(),
            model_version: model_version.map(str::to_owned),
            rows: if role == Role::Request {
                (0..n).map(|i| vec![("x".to_owned(), Value::Num(i as f64))]).collect()
            } else {
                Vec::new()
            },
            outputs: if role == Role::Response {
                (0..n).map(|i| Some(Output::Num(i as f64))).collect()
            } else {
                Vec::new()
            },
        }
    }

    #[test]
    fn halves_pair_in_either_order_and_late_requests_become_errors_on_the_version_last_seen() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        p.offer(1_000, part(Role::Request, "a", "canary", 1, None), 10_000, 10, &mut out);
        assert!(out.is_empty());
        p.offer(1_050, part(Role::Response, "a", "canary", 1, Some("v3")), 10_000, 10, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ts, out[0].version.as_str(), out[0].latency_ms), (1_050, "v3", Some(50.0)));
        // Response first, then request.
        p.offer(2_000, part(Role::Response, "b", "canary", 2, Some("v3")), 10_000, 10, &mut out);
        p.offer(2_010, part(Role::Request, "b", "canary", 2, None), 10_000, 10, &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[1].event_id, "b/0");
        assert_eq!(out[2].event_id, "b/1");
        // A request with no response: an error at its deadline, on the version seen on its route.
        out.clear();
        p.offer(3_000, part(Role::Request, "c", "canary", 1, None), 10_000, 10, &mut out);
        p.expire(12_999, &mut out);
        assert!(out.is_empty());
        p.expire(13_000, &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].ts, out[0].version.as_str(), out[0].prediction.is_none()), (13_000, "v3", true));
        assert_eq!(p.counters.no_response, 1);
        assert_eq!(p.counters.paired, 2);
        assert_eq!(p.waiting(), 0);
    }

    #[test]
    fn duplicates_and_limits_are_counted_not_paired_twice() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        p.offer(0, part(Role::Request, "a", "default", 1, None), 1_000, 2, &mut out);
        p.offer(1, part(Role::Request, "a", "default", 1, None), 1_000, 2, &mut out);
        p.offer(2, part(Role::Request, "b", "default", 1, None), 1_000, 2, &mut out);
        p.offer(3, part(Role::Request, "c", "default", 1, None), 1_000, 2, &mut out);
        assert_eq!((p.counters.duplicate_ids, p.counters.over_limit, p.waiting()), (1, 1, 2));
        p.offer(4, part(Role::Response, "a", "default", 3, None), 1_000, 2, &mut out);
        assert_eq!((out.len(), p.counters.row_mismatches), (1, 1));
        assert_eq!(out[0].version, "default");
    }

    #[test]
    fn a_logged_failure_makes_its_request_an_error_and_pipeline_steps_pair_per_model() {
        let mut p = Pairing::default();
        let mut out = Vec::new();
        p.offer(1_000, part(Role::Request, "a", "v2", 1, None), 10_000, 10, &mut out);
        // Another model's step of the same request waits apart.
        let mut step = part(Role::Request, "a", "v1", 1, None);
        step.name = "ns/other".into();
        p.offer(1_001, step, 10_000, 10, &mut out);
        assert_eq!(p.waiting(), 2);
        p.offer(1_040, part(Role::Failure, "a", "v2", 0, None), 10_000, 10, &mut out);
        assert_eq!(out.len(), 1);
        let o = &out[0];
        assert_eq!((o.ts, o.name.as_str(), o.version.as_str()), (1_040, "ns/isvc", "v2"));
        assert_eq!((o.prediction.is_none(), o.error_kind), (true, MODEL_ERROR));
        // A failure with no request waiting is counted, not turned into anything.
        p.offer(1_050, part(Role::Failure, "zz", "v2", 0, None), 10_000, 10, &mut out);
        assert_eq!((out.len(), p.counters.failed, p.counters.unpaired_failures), (1, 1, 1));
        p.expire(11_001, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!((out[1].name.as_str(), out[1].error_kind, out[1].ts), ("ns/other", NO_RESPONSE, 11_001));
        assert_eq!(p.waiting(), 0);
    }
}

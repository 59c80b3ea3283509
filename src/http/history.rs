//! Time series behind the status page's charts, sampled from published views in event time.
//!
//! Bounded: `history_points` points per series, and series of targets no longer tracked are
//! dropped. Owned by the server; the service loop never touches it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::config::Kind;
use crate::engine::Detector;
use crate::time::Millis;

use super::{Shared, View};

#[derive(Debug, Default)]
struct Series {
    points: VecDeque<(Millis, f32)>,
}

impl Series {
    fn push(&mut self, at: Millis, v: f64, cap: usize) {
        if self.points.back().is_some_and(|&(t, _)| t >= at) {
            return;
        }
        self.points.push_back((at, v as f32));
        while self.points.len() > cap {
            self.points.pop_front();
        }
    }

    fn json(&self) -> Vec<Value> {
        self.points.iter().map(|&(t, v)| json!([t, f64::from(v)])).collect()
    }
}

#[derive(Debug, Default)]
struct Group {
    /// Error rate of each version's current window.
    error_rate: BTreeMap<String, Series>,
    /// PSI of each (version, feature), with its threshold.
    drift: BTreeMap<(String, String), (f64, Series)>,
}

/// Sampled series per app or model.
#[derive(Debug)]
pub struct History {
    groups: BTreeMap<(Kind, String), Group>,
    cap: usize,
    step: Millis,
    last_sample: Option<Millis>,
    last_generation: u64,
}

impl History {
    /// Empty, keeping `cap` points per series, one per `step` of event time.
    pub fn new(cap: usize, step: Millis) -> History {
        History { groups: BTreeMap::new(), cap, step, last_sample: None, last_generation: 0 }
    }

    /// Takes a sample of `view` if event time moved on by a step since the last one.
    pub fn sample(&mut self, view: &View) {
        if view.generation == self.last_generation {
            return;
        }
        self.last_generation = view.generation;
        let Some(at) = view.watermark else { return };
        if self.last_sample.is_some_and(|last| at < last + self.step) {
            return;
        }
        self.last_sample = Some(at);
        let mut seen: BTreeMap<(Kind, &str), Vec<&str>> = BTreeMap::new();
        for t in &view.targets {
            seen.entry((t.kind, t.name.as_str())).or_default().push(t.version.as_str());
            let g = self.groups.entry((t.kind, t.name.clone())).or_default();
            if t.window_events > 0 {
                g.error_rate.entry(t.version.clone()).or_default().push(at, t.window_error_rate, self.cap);
            }
            for d in t.detectors.iter().filter(|d| d.detector == Detector::Drift) {
                if let (Some(f), Some(v)) = (&d.feature, d.value) {
                    let (thr, s) = g.drift.entry((t.version.clone(), f.clone())).or_default();
                    *thr = d.threshold;
                    s.push(at, v, self.cap);
                }
            }
        }
        // Forget what is no longer tracked.
        self.groups.retain(|(k, n), g| match seen.get(&(*k, n.as_str())) {
            None => false,
            Some(versions) => {
                g.error_rate.retain(|v, _| versions.contains(&v.as_str()));
                g.drift.retain(|(v, _), _| versions.contains(&v.as_str()));
                true
            }
        });
    }

    /// The series of one app or model.
    pub fn json(&self, kind: Kind, name: &str) -> Option<Value> {
        let g = self.groups.get(&(kind, name.to_owned()))?;
        Some(json!({
            "kind": kind.as_str(),
            "name": name,
            "step_seconds": self.step / 1000,
            "error_rate": g.error_rate.iter().map(|(v, s)| json!({"version": v, "points": s.json()})).collect::<Vec<_>>(),
            "drift": g.drift.iter().map(|((v, f), (thr, s))| json!({"version": v, "feature": f, "threshold": thr, "points": s.json()})).collect::<Vec<_>>(),
        }))
    }
}

/// Samples every new view, until aborted.
pub async fn sample(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        let view = shared.view();
        if let Ok(mut h) = shared.history.lock() {
            h.sample(&view);
        }
    }
}

//! The generator: a scenario's streams drawn and merged into JSON Lines, with bad lines and
//! disorder, and the fleet actions a deployer applies while it runs.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{self, Write};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, Normal};
use rand_pcg::Pcg64;

use crate::config::Kind;
use crate::time::{format_rfc3339, Millis};

use super::{Scenario, Shift, TsFormat, EPOCH};

const COUNTRIES: [&str; 5] = ["US", "DE", "FR", "GB", "JP"];
const COUNTRY_SHARES: [f64; 5] = [0.45, 0.20, 0.15, 0.10, 0.10];
const DEVICES: [&str; 3] = ["mobile", "desktop", "tablet"];
const DEVICE_SHARES: [f64; 3] = [0.6, 0.3, 0.1];

fn pick<'a>(rng: &mut Pcg64, items: &[&'a str], shares: &[f64]) -> &'a str {
    let mut u: f64 = rng.gen();
    for (i, s) in shares.iter().enumerate() {
        if u < *s {
            return items[i];
        }
        u -= s;
    }
    items[items.len() - 1]
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Pending {
    Arrival(usize),
    Label(String, String, Option<(String, String)>),
}

/// What deploy tooling or a retraining pipeline does to the fleet: the demo's deployer turns
/// driftwatch's commands into these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FleetAction {
    /// The version stops serving; its traffic goes to `baseline` (serving again if it had
    /// stopped), or without one to the name's other serving versions.
    RollBack {
        /// App or model.
        kind: Kind,
        /// App or model name.
        name: String,
        /// The version rolled back.
        version: String,
        /// The version its traffic goes back to.
        baseline: Option<String>,
    },
    /// The version takes all of its name's traffic; the others stop serving.
    Promote {
        /// App or model.
        kind: Kind,
        /// App or model name.
        name: String,
        /// The version promoted.
        version: String,
    },
    /// `delay` later, a new version of the model, trained on the data of that time, takes all
    /// of the version's traffic.
    Retrain {
        /// Model name.
        name: String,
        /// The version retrained.
        version: String,
        /// Event time from the command to the new version serving.
        delay: Millis,
    },
}

/// What a [`FleetAction`] changed; times are epoch ms of event time.
#[derive(Debug, Clone, PartialEq)]
pub enum FleetChange {
    /// From `at`, the traffic of `from` (`rate` events/s) goes to `to` (nowhere when empty).
    Moved {
        /// When.
        at: Millis,
        /// Versions that stopped serving.
        from: Vec<String>,
        /// Versions that took their traffic.
        to: Vec<String>,
        /// Events per second moved.
        rate: f64,
    },
    /// From `at`, version `new` (trained at `trained_at`) serves all of `old`'s traffic.
    Retrained {
        /// When the command arrived: the data the new version is trained on ends here.
        trained_at: Millis,
        /// When the new version takes the traffic.
        at: Millis,
        /// The version replaced.
        old: String,
        /// The new version.
        new: String,
        /// Events per second it serves.
        rate: f64,
    },
    /// Nothing changed, for the reason given.
    Unchanged {
        /// When the action was applied.
        at: Millis,
        /// Why nothing changed.
        why: String,
    },
}

/// The next version after `v`: its last number plus one (`7` → `8`, `1.3.0` → `1.3.1`), or
/// `v-retrained` when it has no number.
fn bump_version(v: &str) -> String {
    if let Some(end) = v.char_indices().rev().find(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i + 1) {
        let start =
            v[..end].char_indices().rev().find(|(_, c)| !c.is_ascii_digit()).map_or(0, |(i, c)| i + c.len_utf8());
        if let Some(n) = v[start..end].parse::<u64>().ok().and_then(|n| n.checked_add(1)) {
            return format!("{}{n}{}", &v[..start], &v[end..]);
        }
    }
    format!("{v}-retrained")
}

/// Generates a scenario's JSON Lines, in output order.
///
/// [`Generator::apply`] changes the fleet while it runs (traffic moved, versions stopped or
/// added) at a given event time; a seed and the same actions at the same event times always
/// give the same bytes.
#[derive(Debug)]
pub struct Generator {
    scenario: Scenario,
    rng: Pcg64,
    bad_rng: Pcg64,
    disorder_rng: Pcg64,
    queue: BinaryHeap<Reverse<(Millis, u64, Pending)>>,
    seq: u64,
    counters: Vec<u64>,
    start: Millis,
    /// Lines held back for disorder: (emit-after time, seq, line).
    held: BinaryHeap<Reverse<(Millis, u64, Vec<u8>)>>,
    emitted_valid: bool,
    line: String,
    /// Event time of the newest event generated, from the scenario start.
    now: Millis,
}

impl Generator {
    /// A generator for `scenario` with `seed`; `rate_scale` multiplies every stream's rate.
    pub fn new(mut scenario: Scenario, seed: u64, rate_scale: f64) -> Self {
        for s in &mut scenario.streams {
            s.rate *= rate_scale;
        }
        let mut g = Generator {
            rng: Pcg64::seed_from_u64(seed),
            bad_rng: Pcg64::seed_from_u64(seed ^ 0x0bad_0bad_0bad_0bad),
            disorder_rng: Pcg64::seed_from_u64(seed ^ 0x5eed_5eed),
            queue: BinaryHeap::new(),
            seq: 0,
            counters: vec![0; scenario.streams.len()],
            start: EPOCH,
            held: BinaryHeap::new(),
            emitted_valid: false,
            line: String::with_capacity(512),
            now: 0,
            scenario,
        };
        for i in 0..g.scenario.streams.len() {
            let first = g.scenario.streams[i].start;
            if let Some(t) = g.next_arrival(i, first) {
                g.push(t, Pending::Arrival(i));
            }
        }
        g
    }

    /// Moves the scenario to start at `start` (epoch ms) instead of [`EPOCH`].
    pub fn starting_at(mut self, start: Millis) -> Self {
        self.start = start;
        self
    }

    /// Event time of the next event, if any.
    pub fn next_time(&self) -> Option<Millis> {
        self.queue.peek().map(|Reverse((t, _, _))| self.start + *t)
    }

    /// Event time (epoch ms) of the newest event generated: actions cannot apply before it.
    pub fn position(&self) -> Millis {
        self.start + self.now
    }

    /// Applies a deployer's action at event time `at` (epoch ms), or at [`Self::position`]
    /// when that is later: streams stop, start or change rate from then on. Arrivals are
    /// Poisson, so a stream whose rate changes draws its next arrival afresh from `at`.
    pub fn apply(&mut self, at: Millis, action: &FleetAction) -> FleetChange {
        let t = (at - self.start).max(self.now);
        let abs = self.start + t;
        let unchanged = |why: String| FleetChange::Unchanged { at: abs, why };
        match action {
            FleetAction::RollBack { kind, name, version, baseline } => {
                let from = self.serving(*kind, name, Some(version.as_str()), t);
                if from.is_empty() {
                    return unchanged(format!("{name} {version} serves no traffic"));
                }
                let rate = self.stop(&from, t);
                let mut to = match baseline {
                    Some(b) => self.serving(*kind, name, Some(b.as_str()), t),
                    None => self.serving(*kind, name, None, t),
                };
                if to.is_empty() {
                    // The baseline stopped (a full rollout): it serves again.
                    if let Some(i) = baseline.as_ref().and_then(|b| self.last_stream(*kind, name, b, t)) {
                        self.scenario.streams[i].end = None;
                        self.scenario.streams[i].rate = 0.0;
                        to.push(i);
                    }
                }
                self.add_rate(&to, rate, t);
                FleetChange::Moved { at: abs, from: self.versions(*kind, &from), to: self.versions(*kind, &to), rate }
            }
            FleetAction::Promote { kind, name, version } => {
                let to = self.serving(*kind, name, Some(version.as_str()), t);
                if to.is_empty() {
                    return unchanged(format!("{name} {version} serves no traffic"));
                }
                let from: Vec<usize> =
                    self.serving(*kind, name, None, t).into_iter().filter(|i| !to.contains(i)).collect();
                if from.is_empty() {
                    return unchanged(format!("{name} {version} already serves all traffic"));
                }
                let rate = self.stop(&from, t);
                self.add_rate(&to, rate, t);
                FleetChange::Moved { at: abs, from: self.versions(*kind, &from), to: self.versions(*kind, &to), rate }
            }
            FleetAction::Retrain { name, version, delay } => {
                let from_t = t + (*delay).max(0);
                let old: Vec<usize> = self
                    .serving(Kind::Model, name, Some(version.as_str()), t)
                    .into_iter()
                    .filter(|&i| self.scenario.streams[i].end.is_none_or(|e| e > from_t))
                    .collect();
                if old.is_empty() {
                    return unchanged(format!("{name} {version} serves no traffic then"));
                }
                let new = self.next_version(name, version);
                let mut rate = 0.0;
                for i in old {
                    // The inputs of the version it replaces (the world's, drifted or not), so
                    // its warm-up reference is the data of now; its error rate and accuracy.
                    let mut spec = self.scenario.streams[i].clone();
                    spec.model = Some((name.clone(), new.clone()));
                    spec.start = from_t;
                    rate += spec.rate;
                    self.scenario.streams[i].end = Some(from_t);
                    self.reschedule(i, t);
                    self.scenario.streams.push(spec);
                    self.counters.push(0);
                    let j = self.scenario.streams.len() - 1;
                    if let Some(first) = self.next_arrival(j, from_t) {
                        self.push(first, Pending::Arrival(j));
                    }
                }
                FleetChange::Retrained { trained_at: abs, at: self.start + from_t, old: version.clone(), new, rate }
            }
        }
    }

    /// Streams of `kind`/`name` (of `version`, when given) serving at `t`.
    fn serving(&self, kind: Kind, name: &str, version: Option<&str>, t: Millis) -> Vec<usize> {
        (0..self.scenario.streams.len())
            .filter(|&i| {
                let s = &self.scenario.streams[i];
                let id = match kind {
                    Kind::App => &s.app,
                    Kind::Model => &s.model,
                };
                id.as_ref().is_some_and(|(n, v)| n == name && version.is_none_or(|w| w == v))
                    && s.rate > 0.0
                    && s.start <= t
                    && s.end.is_none_or(|e| e > t)
            })
            .collect()
    }

    /// The last stream of `kind`/`name`/`version` that started by `t`, serving or not.
    fn last_stream(&self, kind: Kind, name: &str, version: &str, t: Millis) -> Option<usize> {
        self.scenario.streams.iter().rposition(|s| {
            let id = match kind {
                Kind::App => &s.app,
                Kind::Model => &s.model,
            };
            id.as_ref().is_some_and(|(n, v)| n == name && v == version) && s.start <= t
        })
    }

    fn versions(&self, kind: Kind, streams: &[usize]) -> Vec<String> {
        let mut out: Vec<String> = streams
            .iter()
            .filter_map(|&i| {
                let s = &self.scenario.streams[i];
                match kind {
                    Kind::App => s.app.as_ref(),
                    Kind::Model => s.model.as_ref(),
                }
                .map(|(_, v)| v.clone())
            })
            .collect();
        out.dedup();
        out
    }

    /// Stops `streams` at `t`; returns the rate they served.
    fn stop(&mut self, streams: &[usize], t: Millis) -> f64 {
        let mut rate = 0.0;
        for &i in streams {
            rate += self.scenario.streams[i].rate;
            self.scenario.streams[i].end = Some(t);
            self.reschedule(i, t);
        }
        rate
    }

    /// Shares `rate` among `streams` in proportion to their rates (equally when all are 0).
    fn add_rate(&mut self, streams: &[usize], rate: f64, t: Millis) {
        let total: f64 = streams.iter().map(|&i| self.scenario.streams[i].rate).sum();
        for &i in streams {
            let s = &mut self.scenario.streams[i];
            s.rate += if total > 0.0 { rate * s.rate / total } else { rate / streams.len() as f64 };
            self.reschedule(i, t);
        }
    }

    /// Replaces stream `i`'s pending arrival with one drawn from `from` under its current spec.
    fn reschedule(&mut self, i: usize, from: Millis) {
        self.queue.retain(|Reverse((_, _, p))| *p != Pending::Arrival(i));
        if let Some(next) = self.next_arrival(i, from) {
            self.push(next, Pending::Arrival(i));
        }
    }

    /// A version of model `name` after `version` that no stream uses yet.
    fn next_version(&self, name: &str, version: &str) -> String {
        let mut v = bump_version(version);
        while self.scenario.streams.iter().any(|s| s.model.as_ref().is_some_and(|(n, w)| n == name && *w == v)) {
            v = bump_version(&v);
        }
        v
    }

    fn push(&mut self, at: Millis, p: Pending) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, p)));
    }

    fn next_arrival(&mut self, i: usize, from: Millis) -> Option<Millis> {
        let s = &self.scenario.streams[i];
        if s.rate <= 0.0 {
            return None;
        }
        let gap = Exp::new(s.rate).map_or(1.0, |e| e.sample(&mut self.rng));
        let t = from + (gap * 1000.0).round() as Millis;
        let end = s.end.unwrap_or(self.scenario.duration).min(self.scenario.duration);
        (t < end).then_some(t)
    }

    fn ts(&mut self, t: Millis, fmt: TsFormat) {
        let abs = self.start + t;
        match fmt {
            TsFormat::Rfc3339 => {
                let _ = write!(self.line, "\"{}\"", format_rfc3339(abs));
            }
            TsFormat::EpochMs => {
                let _ = write!(self.line, "{abs}");
            }
        }
    }

    /// Writes the next event into `self.line`; returns its event time, or `None` at the end.
    fn next_event(&mut self) -> Option<Millis> {
        let Reverse((t, _, p)) = self.queue.pop()?;
        self.now = self.now.max(t);
        self.line.clear();
        match p {
            Pending::Label(event_id, label, model) => {
                self.line.push_str("{\"type\":\"label\",\"timestamp\":");
                self.ts(t, TsFormat::EpochMs);
                let _ = write!(self.line, ",\"event_id\":\"{event_id}\",\"label\":{label}");
                if let Some((m, v)) = model {
                    let _ = write!(self.line, ",\"model\":\"{m}\",\"model_version\":\"{v}\"");
                }
                self.line.push('}');
            }
            Pending::Arrival(i) => {
                if let Some(n) = self.next_arrival(i, t) {
                    self.push(n, Pending::Arrival(i));
                }
                self.counters[i] += 1;
                self.write_arrival(i, t);
            }
        }
        Some(t)
    }

    fn write_arrival(&mut self, i: usize, t: Millis) {
        let s = self.scenario.streams[i].clone();
        let is_error = self.rng.gen::<f64>() < s.error_rate;
        let latency = (s.latency_median.ln()
            + s.latency_sigma * Normal::new(0.0, 1.0).map_or(0.0, |n| n.sample(&mut self.rng)))
        .exp();
        let kind = if is_error {
            "error"
        } else if s.model.is_some() {
            "prediction"
        } else {
            "request"
        };
        let _ = write!(self.line, "{{\"type\":\"{kind}\",\"timestamp\":");
        self.ts(t, s.ts_format);
        if let Some((a, v)) = &s.app {
            let _ = write!(self.line, ",\"app\":\"{a}\",\"app_version\":\"{v}\"");
        }
        if let Some((m, v)) = &s.model {
            let _ = write!(self.line, ",\"model\":\"{m}\",\"model_version\":\"{v}\"");
        }
        let _ = write!(self.line, ",\"latency_ms\":{:.1}", latency);
        if is_error {
            let _ = write!(
                self.line,
                ",\"error\":\"{}\"",
                if self.rng.gen::<f64>() < 0.7 { "http_500" } else { "timeout" }
            );
            self.line.push('}');
            return;
        }
        let Some((m, v)) = &s.model else {
            self.line.push('}');
            return;
        };
        let event_id = format!("{m}-{v}-{}", self.counters[i]);
        let _ = write!(self.line, ",\"event_id\":\"{event_id}\"");
        let shifted = s.shift.filter(|(at, _)| t >= *at).map(|(_, sh)| sh);
        if s.features {
            let shift = match shifted {
                Some(Shift::AmountLog(d)) => d,
                _ => 0.0,
            };
            let amount = (3.0 + shift + Normal::new(0.0, 1.0).map_or(0.0, |n| n.sample(&mut self.rng))).exp();
            let shares =
                if shifted == Some(Shift::CountrySwap) { [0.20, 0.45, 0.15, 0.10, 0.10] } else { COUNTRY_SHARES };
            let country = pick(&mut self.rng, &COUNTRIES, &shares);
            let age: f64 = 40.0 + 12.0 * Normal::new(0.0, 1.0).map_or(0.0, |n| n.sample(&mut self.rng));
            let device = pick(&mut self.rng, &DEVICES, &DEVICE_SHARES);
            let is_new = self.rng.gen::<f64>() < 0.2;
            let _ = write!(
                self.line,
                ",\"features\":{{\"amount\":{amount:.2},\"country\":\"{country}\",\"age\":{:.0},\"device\":\"{device}\",\"is_new\":{is_new},\"ext_score\":",
                age.max(18.0)
            );
            if self.rng.gen::<f64>() < 0.02 {
                self.line.push_str("null}");
            } else {
                let _ = write!(self.line, "{:.3}}}", self.rng.gen::<f64>());
            }
        }
        let label = if s.numeric_prediction {
            let truth: f64 = 100.0 + 20.0 * Normal::new(0.0, 1.0).map_or(0.0, |n| n.sample(&mut self.rng));
            let pred = truth + 5.0 * Normal::new(0.0, 1.0).map_or(0.0, |n| n.sample(&mut self.rng));
            let _ = write!(self.line, ",\"prediction\":{pred:.2}");
            Some(format!("{truth:.2}"))
        } else {
            let fraud = self.rng.gen::<f64>() < 0.1;
            let pred = if fraud { "fraud" } else { "legit" };
            let _ = write!(self.line, ",\"prediction\":\"{pred}\"");
            let accuracy = match shifted {
                Some(Shift::Accuracy(a)) => s.accuracy.map(|_| a),
                _ => s.accuracy,
            };
            accuracy.map(|acc| {
                let right = self.rng.gen::<f64>() < acc;
                let truth = if right == fraud { "fraud" } else { "legit" };
                format!("\"{truth}\"")
            })
        };
        self.line.push('}');
        if let Some(label) = label {
            if s.accuracy.is_some() || s.numeric_prediction {
                let delay = self.rng.gen_range(30_000..180_000);
                let model = Some((m.clone(), v.clone()));
                self.push(t + delay, Pending::Label(event_id, label, model));
            }
        }
    }

    fn bad_line(&mut self, t: Millis) -> Vec<u8> {
        let ts = format_rfc3339(self.start + t);
        let k = self.bad_rng.gen_range(0..14);
        let s = match k {
            0 => "this is not json".to_owned(),
            1 => format!("{{\"type\":\"request\",\"timestamp\":\"{ts}\",\"app\":\"checkout\",\"app_ver"),
            2 => format!("{{\"type\":\"click\",\"timestamp\":\"{ts}\",\"app\":\"checkout\",\"app_version\":\"2.4.0\"}}"),
            3 => format!("{{\"type\":\"error\",\"timestamp\":\"{ts}\",\"app\":\"checkout\"}}"),
            4 => "{\"type\":\"error\",\"timestamp\":\"yesterday\",\"app\":\"checkout\",\"app_version\":\"2.4.0\"}".to_owned(),
            5 => format!("{{\"type\":\"error\",\"timestamp\":{},\"app\":\"checkout\",\"app_version\":\"2.4.0\"}}", (self.start + t) / 1000),
            6 => format!("{{\"type\":\"error\",\"timestamp\":\"{ts}\",\"app\":\"checkout\",\"app_version\":\"2.4.0\",\"latency_ms\":1e999}}"),
            7 => format!("{{\"type\":\"request\",\"timestamp\":\"{ts}\",\"app\":\"checkout\",\"app_version\":\"2.3.0\",\"latency_ms\":-3}}"),
            8 => "[1,2,3]".to_owned(),
            9 => format!("{{\"type\":\"error\",\"timestamp\":\"{ts}\"}}"),
            10 => "{\"type\":\"error\",\"timestamp\":\"2999-01-01T00:00:00Z\",\"app\":\"checkout\",\"app_version\":\"2.4.0\"}".to_owned(),
            11 => format!("{{\"type\":\"request\",\"timestamp\":\"{ts}\",\"app\":\"checkout\",\"app_version\":2.4}}"),
            12 if self.emitted_valid => "{\"type\":\"error\",\"timestamp\":\"2090-01-01T00:00:00Z\",\"app\":\"checkout\",\"app_version\":\"2.4.0\"}".to_owned(),
            13 => return b"{\"type\":\"error\",\"app\":\"\xff\xfe\"}".to_vec(),
            _ => "{\"type\":\"request\"}".to_owned(),
        };
        s.into_bytes()
    }

    /// Writes the whole scenario as JSON Lines.
    pub fn write_all(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        let mut n = 0;
        while let Some(line) = self.next_line() {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
            n += 1;
        }
        out.flush()?;
        Ok(n)
    }

    /// The next line of output (without newline), or `None` at the end.
    pub fn next_line(&mut self) -> Option<Vec<u8>> {
        loop {
            if self.scenario.disorder > 0 {
                // Hold each event back by a random delay; release in order of release time, so
                // no event is more than `disorder` late relative to the newest one emitted.
                let next_t = self.queue.peek().map(|Reverse((t, _, _))| *t);
                if let Some(Reverse((release, _, _))) = self.held.peek() {
                    if next_t.is_none_or(|t| *release <= t) {
                        let Reverse((_, _, line)) = self.held.pop()?;
                        return Some(line);
                    }
                }
                let t = self.next_event()?;
                let delay = self.disorder_rng.gen_range(0..self.scenario.disorder);
                self.seq += 1;
                self.held.push(Reverse((t + delay, self.seq, self.line.as_bytes().to_vec())));
                continue;
            }
            if self.scenario.bad_input_rate > 0.0 && self.bad_rng.gen::<f64>() < self.scenario.bad_input_rate {
                let t = self.queue.peek().map_or(0, |Reverse((t, _, _))| *t);
                return Some(self.bad_line(t));
            }
            self.next_event()?;
            self.emitted_valid = true;
            return Some(self.line.as_bytes().to_vec());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{scenario, MIN};

    #[test]
    fn disorder_stays_within_bound() {
        let mut s = scenario("disorder").unwrap();
        s.duration = 3 * MIN;
        let mut g = Generator::new(s, 1, 0.2);
        let mut max_seen = 0i64;
        while let Some(line) = g.next_line() {
            let ev = crate::event::decode(&line).unwrap();
            max_seen = max_seen.max(ev.ts);
            assert!(ev.ts > max_seen - 25_000, "{}", max_seen - ev.ts);
        }
    }
}

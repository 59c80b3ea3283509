//! What the rules' tests share: streams of hand-built events (JSON lines, decoded as input
//! is), run through a real [`Engine`], and readers of the commands it gives.

use crate::command::{Command, CommandKind, Reason};
use crate::config::Config;
use crate::engine::{Engine, Position};
use crate::event::Decoder;
use crate::time::Millis;

/// A minute-aligned start of event time.
pub(in crate::engine) const T0: Millis = 1_764_000_000_000;
/// One minute of event time.
pub(in crate::engine) const MIN: Millis = 60_000;

/// Events with their time; run in time order (events of the same time in the order added).
#[derive(Debug, Default)]
pub(in crate::engine) struct Stream(Vec<(Millis, String)>);

impl Stream {
    /// Adds one event, as a JSON line.
    pub(in crate::engine) fn push(&mut self, ts: Millis, line: String) {
        self.0.push((ts, line));
    }

    /// `per_sec` events a second of app `app` version `version` over `[from, to)`: every
    /// `error_every`-th an error (none when 0), the others requests with latency `latency(n)`
    /// (n counts the version's events from 0).
    pub(in crate::engine) fn app(
        &mut self,
        app: &str,
        version: &str,
        (from, to): (Millis, Millis),
        per_sec: u64,
        error_every: u64,
        latency: impl Fn(u64) -> f64,
    ) {
        for (n, ts) in times(from, to, per_sec).enumerate() {
            let n = n as u64;
            let line = if error_every > 0 && n % error_every == error_every - 1 {
                format!(r#"{{"type":"error","timestamp":{ts},"app":"{app}","app_version":"{version}"}}"#)
            } else {
                format!(
                    r#"{{"type":"request","timestamp":{ts},"app":"{app}","app_version":"{version}","latency_ms":{}}}"#,
                    latency(n)
                )
            };
            self.push(ts, line);
        }
    }

    /// `per_sec` predictions a second of model `model` version `version` over `[from, to)`.
    /// `make(n)` gives the n-th prediction's features (a JSON object), its prediction (a JSON
    /// value) and its label (a JSON value, sent at the prediction's time), if any.
    pub(in crate::engine) fn model(
        &mut self,
        model: &str,
        version: &str,
        (from, to): (Millis, Millis),
        per_sec: u64,
        make: impl Fn(u64) -> (String, String, Option<String>),
    ) {
        for (n, ts) in times(from, to, per_sec).enumerate() {
            let (features, prediction, label) = make(n as u64);
            let id = format!("{model}-{version}-{ts}-{n}");
            self.push(
                ts,
                format!(
                    r#"{{"type":"prediction","timestamp":{ts},"event_id":"{id}","model":"{model}","model_version":"{version}","features":{features},"prediction":{prediction}}}"#
                ),
            );
            if let Some(label) = label {
                self.push(ts, format!(r#"{{"type":"label","timestamp":{ts},"event_id":"{id}","label":{label}}}"#));
            }
        }
    }

    /// Runs a new engine over the stream to its end; returns it and every command it gave.
    pub(in crate::engine) fn run(&self, cfg: Config) -> (Engine, Vec<Command>) {
        let mut lines: Vec<&(Millis, String)> = self.0.iter().collect();
        lines.sort_by_key(|(ts, _)| *ts);
        let mut engine = Engine::new(cfg);
        let source = engine.register_source("in");
        let mut decoder = Decoder::default();
        let mut out = Vec::new();
        for (i, (_, line)) in lines.iter().enumerate() {
            let ev = decoder.decode(line.as_bytes()).unwrap_or_else(|e| panic!("{e}: {line}"));
            engine.ingest(&ev, Position { source, offset: i as u64 }).expect("an event in time");
            decoder.recycle(ev);
            out.extend(engine.drain_commands());
        }
        engine.finish();
        out.extend(engine.drain_commands());
        (engine, out)
    }

    /// The commands of a run.
    pub(in crate::engine) fn commands(&self, cfg: Config) -> Vec<Command> {
        self.run(cfg).1
    }

    /// Events in the stream.
    pub(in crate::engine) fn events(&self) -> usize {
        self.0.len()
    }
}

/// `per_sec` evenly spaced times a second over `[from, to)`.
fn times(from: Millis, to: Millis, per_sec: u64) -> impl Iterator<Item = Millis> {
    let gap = 1000 / per_sec.max(1) as Millis;
    (from..to).step_by(gap as usize)
}

/// The commands of one kind for a version, in the order given.
pub(in crate::engine) fn of<'a>(commands: &'a [Command], kind: CommandKind, version: &str) -> Vec<&'a Command> {
    commands.iter().filter(|c| c.command == kind && c.target.version == version).collect()
}

/// The one command of `kind` and `reason` for `version`; panics, listing the commands, when
/// there is none or more than one.
pub(in crate::engine) fn only<'a>(
    commands: &'a [Command],
    kind: CommandKind,
    reason: Reason,
    version: &str,
) -> &'a Command {
    let found: Vec<&Command> = of(commands, kind, version).into_iter().filter(|c| c.reason == reason).collect();
    assert_eq!(found.len(), 1, "one {kind:?} ({reason:?}) of version {version}: {}", list(commands));
    found[0]
}

/// A number in a command's evidence at a dotted path (`candidate.events`).
pub(in crate::engine) fn num(c: &Command, path: &str) -> f64 {
    let v = path.split('.').fold(&c.evidence, |v, k| &v[k]);
    v.as_f64().unwrap_or_else(|| panic!("evidence `{path}` is not a number in {}", c.evidence))
}

/// A string in a command's evidence at a dotted path.
pub(in crate::engine) fn text<'a>(c: &'a Command, path: &str) -> &'a str {
    let v = path.split('.').fold(&c.evidence, |v, k| &v[k]);
    v.as_str().unwrap_or_else(|| panic!("evidence `{path}` is not a string in {}", c.evidence))
}

/// `command reason kind/name/version @decided_at`, one a line, for failure messages.
pub(in crate::engine) fn list(commands: &[Command]) -> String {
    let lines: Vec<String> = commands
        .iter()
        .map(|c| {
            format!(
                "{} {} {}/{}/{} @{}",
                c.command.as_str(),
                c.reason.as_str(),
                c.target.kind.as_str(),
                c.target.name,
                c.target.version,
                c.decided_at
            )
        })
        .collect();
    format!("[{}]", lines.join("; "))
}

/// When the canary of [`canary`] starts serving.
pub(in crate::engine) const CANARY_START: Millis = T0 + 5 * MIN;

/// App `shop`: version 1.0 serving alone from T0, 2.0 beside it from [`CANARY_START`], both for
/// `minutes` more, `per_sec` events a second each. `base` and `cand` give each version's error
/// spacing (see [`Stream::app`]) and latency.
pub(in crate::engine) fn canary(
    minutes: i64,
    per_sec: u64,
    base: (u64, impl Fn(u64) -> f64),
    cand: (u64, impl Fn(u64) -> f64),
) -> Stream {
    let end = CANARY_START + minutes * MIN;
    let mut s = Stream::default();
    s.app("shop", "1.0", (T0, end), per_sec, base.0, base.1);
    s.app("shop", "2.0", (CANARY_START, end), per_sec, cand.0, cand.1);
    s
}

/// Latencies from 50 to 149 ms, times `scale`: a p99 of about 149 × `scale`.
pub(in crate::engine) fn latency(scale: f64) -> impl Fn(u64) -> f64 {
    move |n| scale * (50.0 + (n % 100) as f64)
}

/// Model `fraud`: version 1 serving alone from T0, 2 beside it from [`CANARY_START`], both for
/// `minutes` more, `per_sec` predictions a second each, each labelled at once: prediction `"a"`,
/// label `"a"` when `base(n)` (`cand(n)`) says the n-th is right, `"b"` otherwise.
pub(in crate::engine) fn labelled_canary(
    minutes: i64,
    per_sec: u64,
    base: impl Fn(u64) -> bool,
    cand: impl Fn(u64) -> bool,
) -> Stream {
    let end = CANARY_START + minutes * MIN;
    let mut s = Stream::default();
    s.model("fraud", "1", (T0, end), per_sec, |n| labelled(base(n)));
    s.model("fraud", "2", (CANARY_START, end), per_sec, |n| labelled(cand(n)));
    s
}

/// No features, prediction `"a"`, labelled `"a"` when right.
pub(in crate::engine) fn labelled(right: bool) -> (String, String, Option<String>) {
    ("{}".into(), r#""a""#.into(), Some(if right { r#""a""# } else { r#""b""# }.into()))
}

/// Right `percent` times in a hundred.
pub(in crate::engine) fn right(percent: u64) -> impl Fn(u64) -> bool {
    move |n| n % 100 < percent
}

/// The default config, changed by `change`.
pub(in crate::engine) fn config(change: impl FnOnce(&mut Config)) -> Config {
    let mut cfg = Config::default();
    change(&mut cfg);
    cfg
}

/// Asserts `c` was decided as soon as both sides had `min` of `counted` (`events`,
/// `labelled`): each has at least `min`, the candidate fewer than `min + slack`.
pub(in crate::engine) fn assert_decided_at_minimum(c: &Command, counted: &str, min: u64, slack: u64) {
    let cand = num(c, &format!("candidate.{counted}"));
    let base = num(c, &format!("baseline.{counted}"));
    assert!(cand >= min as f64 && cand < (min + slack) as f64, "minimum {min}: candidate {counted} {cand}");
    assert!(base >= min as f64, "minimum {min}: baseline {counted} {base}");
}

/// Asserts there is no command of `kind` for `version`.
pub(in crate::engine) fn assert_none(commands: &[Command], kind: CommandKind, version: &str) {
    assert!(of(commands, kind, version).is_empty(), "no {kind:?} of version {version}: {}", list(commands));
}

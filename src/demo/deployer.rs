//! The demo's deployer: deploy tooling and a retraining pipeline in one, simulated. It reads
//! the command topics as any subscriber would (a consumer group, `read_committed`), acts once
//! per `command_id` (delivery is at least once), and turns each command into a
//! [`FleetAction`] on the simulated fleet, stamped with the event time at which it learned of
//! the command. Review commands are shown, not acted on.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;

use super::DemoError;
use crate::command::{Command, CommandKind};
use crate::config::Kind;
use crate::sim::{FleetAction, FleetChange};
use crate::time::{format_rfc3339, Millis};

/// Event time of the demo: the fleet's scenario starts at `start` (epoch ms) and runs `speed`
/// times faster than the wall clock from `t0`.
#[derive(Debug, Clone, Copy)]
pub(super) struct DemoClock {
    pub start: Millis,
    pub t0: Instant,
    pub speed: f64,
}

impl DemoClock {
    /// Event time now.
    pub fn now(&self) -> Millis {
        self.start + (self.t0.elapsed().as_secs_f64() * self.speed * 1000.0) as Millis
    }

    /// Wall time from `t0` at which event time `at` comes.
    pub fn due(&self, at: Millis) -> Duration {
        Duration::from_secs_f64(((at - self.start) as f64 / 1000.0 / self.speed).max(0.0))
    }
}

/// An action for the fleet, and the command it answers.
#[derive(Debug, Clone)]
pub(super) struct Order {
    /// Event time at which the deployer read the command.
    pub at: Millis,
    /// `rollback app/checkout 2.4.0`.
    pub command: String,
    pub action: FleetAction,
}

/// A line of the deployer's log, at an event time.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct DeployerLine {
    pub at: Millis,
    pub text: String,
}

impl DeployerLine {
    /// As the view shows it, beside the decisions.
    pub fn render(&self) -> String {
        format!("  {} deployer {}", format_rfc3339(self.at), self.text)
    }
}

/// Where the deployer reads and what it sends where.
#[derive(Debug)]
pub(super) struct DeployerSetup {
    pub brokers: String,
    pub topics: Vec<String>,
    pub clock: DemoClock,
    /// Event time from a retrain command to the retrained version serving.
    pub retrain_delay: Millis,
    pub orders: Sender<Order>,
    pub log: Sender<DeployerLine>,
    /// Set when the service has ended: the deployer reads what is left and stops.
    pub stop: Arc<AtomicBool>,
}

/// Subscribes to the command topics and starts the deployer's thread.
pub(super) fn spawn(setup: DeployerSetup) -> Result<JoinHandle<()>, DemoError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &setup.brokers)
        .set("group.id", "driftwatch-demo-deployer")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create()
        .map_err(DemoError::DeployerConsumer)?;
    let topics: Vec<&str> = setup.topics.iter().map(String::as_str).collect();
    consumer.subscribe(&topics).map_err(|cause| DemoError::DeployerSubscribe { topics: topics.join(", "), cause })?;
    Ok(std::thread::spawn(move || {
        let mut seen = HashSet::new();
        let mut stopping = false;
        loop {
            if !stopping && setup.stop.load(Ordering::SeqCst) {
                stopping = true;
            }
            let Some(result) = consumer.poll(Duration::from_millis(100)) else {
                if stopping {
                    break;
                }
                continue;
            };
            let at = setup.clock.now();
            let m = match result {
                Ok(m) => m,
                Err(e) => {
                    let _ = setup.log.send(DeployerLine { at, text: format!("cannot read the command topics: {e}") });
                    continue;
                }
            };
            let command = match m.payload().map(serde_json::from_slice::<Command>) {
                Some(Ok(c)) => c,
                Some(Err(e)) => {
                    let text =
                        format!("skipped {}/{} offset {}: not a command ({e})", m.topic(), m.partition(), m.offset());
                    let _ = setup.log.send(DeployerLine { at, text });
                    continue;
                }
                None => continue,
            };
            if !seen.insert(command.command_id.clone()) {
                continue;
            }
            match order(&command, at, setup.retrain_delay) {
                Ok(o) => {
                    let _ = setup.orders.send(o);
                }
                Err(text) => {
                    let _ = setup.log.send(DeployerLine { at, text });
                }
            }
        }
    }))
}

/// The fleet action a command asks for, or the log line saying why there is none.
fn order(c: &Command, at: Millis, retrain_delay: Millis) -> Result<Order, String> {
    let t = &c.target;
    let command = format!("{} {}/{} {}", c.command.as_str(), t.kind.as_str(), t.name, t.version);
    if c.dry_run {
        return Err(format!("{command}: dry run, no action"));
    }
    let action = match c.command {
        CommandKind::Rollback => FleetAction::RollBack {
            kind: t.kind,
            name: t.name.clone(),
            version: t.version.clone(),
            baseline: t.baseline_version.clone(),
        },
        CommandKind::Promote => FleetAction::Promote { kind: t.kind, name: t.name.clone(), version: t.version.clone() },
        CommandKind::Retrain if t.kind == Kind::Model => {
            FleetAction::Retrain { name: t.name.clone(), version: t.version.clone(), delay: retrain_delay }
        }
        CommandKind::Retrain => return Err(format!("{command}: only models are retrained, no action")),
        CommandKind::Review => {
            return Err(format!("{command} ({}): shown for a person to look at, no action", c.reason))
        }
    };
    Ok(Order { at, command, action })
}

/// The log line for what an order changed, and for a change that comes later (a retrained
/// version taking the traffic), the line to show when the fleet gets there.
pub(super) fn describe(order: &Order, change: &FleetChange) -> (DeployerLine, Option<DeployerLine>) {
    let c = &order.command;
    match change {
        FleetChange::Moved { at, from, to, rate } => {
            let text = match (&order.action, to.is_empty()) {
                (_, true) => format!("{c} → {} stopped, no version left to serve", from.join(", ")),
                (FleetAction::Promote { .. }, false) => {
                    format!("{c} → all traffic to {} ({rate:.0}/s moved; {} stopped)", to.join(", "), from.join(", "))
                }
                _ => format!("{c} → traffic to {} ({rate:.0}/s moved; {} stopped)", to.join(", "), from.join(", ")),
            };
            (DeployerLine { at: *at, text }, None)
        }
        FleetChange::Retrained { trained_at, at, old, new, rate } => {
            let name = match &order.action {
                FleetAction::Retrain { name, .. } => name.as_str(),
                _ => "",
            };
            let now = format!("{c} → training {name} {new} on current data; serves from {}", format_rfc3339(*at));
            let later = format!("deploy model/{name} {new} (retrained) → all of {old}'s traffic ({rate:.0}/s)");
            (DeployerLine { at: *trained_at, text: now }, Some(DeployerLine { at: *at, text: later }))
        }
        FleetChange::Unchanged { at, why } => (DeployerLine { at: *at, text: format!("{c} → no change: {why}") }, None),
    }
}

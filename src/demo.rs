//! `driftwatch demo`: the whole loop with no set-up. An embedded Kafka (librdkafka's mock
//! cluster), a simulated fleet produced in accelerated real time (a canary that regresses, a
//! model whose inputs drift, a healthy canary that gets promoted), the service consuming it,
//! a simulated deployer acting on the commands it publishes, and a live terminal view of
//! traffic, decisions and deployer actions.
//!
//! The loop closes through Kafka: the deployer ([`deployer`]) is a consumer of the command
//! topics, and sends what it decides to do over a channel to the fleet's thread, which applies
//! it to the generator before the next event it produces, at the event time the deployer read
//! the command (or at the newest event already produced, if that is later). For a seed the
//! fleet is the same up to the first action; after it, it depends on when the commands were
//! read, which the wall clock decides. Replaying what the fleet produced gives the same
//! decisions.

mod deployer;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::mocking::MockCluster;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

use crate::command::{Command, Reason};
use crate::config::{Config, Duration as CfgDuration};
use crate::engine::{Engine, TargetOverview};
use crate::http::ServeError;
use crate::kafka::{send_retrying, Delivery, ServiceError};
use crate::observe::{Observer, ServiceStats};
use crate::sim::{self, Generator};
use crate::time::{format_rfc3339, Millis};
use deployer::{DemoClock, DeployerLine, DeployerSetup, Order};

/// What the demo shows.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Wall-clock length of the demo.
    pub duration: Duration,
    /// Event time passes this many times faster than wall time.
    pub speed: f64,
    /// Seed of the simulated fleet.
    pub seed: u64,
    /// Serve the HTTP API and status page on this address.
    pub http: Option<String>,
    /// Event time from a retrain command to the retrained model version serving.
    pub retrain_delay: Millis,
}

/// Why the demo could not run. Each message holds its cause, so none is also a `source`.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// librdkafka's mock cluster did not start.
    #[error("cannot start the embedded Kafka: {0}")]
    EmbeddedKafka(KafkaError),
    /// A topic could not be created on the embedded cluster.
    #[error("cannot create {topic}: {cause}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The client's error.
        cause: KafkaError,
    },
    /// The built-in demo scenario is missing.
    #[error("demo scenario missing")]
    Scenario,
    /// The deployer's consumer could not be created.
    #[error("deployer: cannot create its consumer: {0}")]
    DeployerConsumer(KafkaError),
    /// The deployer could not subscribe to the command topics.
    #[error("deployer: cannot subscribe to {topics}: {cause}")]
    DeployerSubscribe {
        /// The command topics, comma-separated.
        topics: String,
        /// The client's error.
        cause: KafkaError,
    },
    /// The fleet's producer could not be created.
    #[error("producer: {0}")]
    Producer(KafkaError),
    /// The HTTP server did not start.
    #[error(transparent)]
    Http(#[from] ServeError),
    /// The service ended with an error.
    #[error("{0}")]
    Service(ServiceError),
}

/// Width of the time that starts every log line: two spaces and an RFC 3339 time in ms.
const LOG_TIME_WIDTH: usize = 26;

/// Prints the live view.
struct TerminalView {
    start: Instant,
    last_draw: Instant,
    tty: bool,
    /// Decisions and deployer actions, in the order they happened.
    decisions: Vec<String>,
    deployer: Receiver<DeployerLine>,
    /// Deployer actions seen.
    actions: usize,
    /// Every target, as of the latest engine call.
    targets: Vec<TargetOverview>,
    speed: f64,
    /// The status page, when serving HTTP.
    url: Option<String>,
}

impl TerminalView {
    /// Adds the deployer's new lines.
    fn take_deployer_lines(&mut self) {
        while let Ok(line) = self.deployer.try_recv() {
            let line = line.render();
            if !self.tty {
                println!("{line}");
            }
            self.log(line);
            self.actions += 1;
        }
    }

    /// Adds a decision or an action to the log, kept in event-time order (a command may be
    /// acted on before its publication is reported): each line starts with its time.
    fn log(&mut self, line: String) {
        let time = |l: &str| l.get(..LOG_TIME_WIDTH).map(str::to_owned);
        let at = time(&line);
        let pos = self.decisions.partition_point(|d| time(d) <= at);
        self.decisions.insert(pos, line);
    }

    fn draw(&mut self, engine: &Engine, stats: &ServiceStats) {
        let mut out = String::new();
        let now = engine.watermark().map(format_rfc3339).unwrap_or_else(|| "-".into());
        if self.tty {
            out.push_str("\x1b[H\x1b[2J");
        }
        out.push_str(&format!(
            "driftwatch demo  {:>5.0}s  event time {now} (x{:.0})  {} events consumed  {} commits  Ctrl-C to stop\n\n",
            self.start.elapsed().as_secs_f64(),
            self.speed,
            stats.messages,
            stats.commits
        ));
        if let Some(url) = &self.url {
            out.push_str(&format!("status page and API: {url}\n\n"));
        }
        out.push_str(&format!(
            "{:<26} {:<10} {:>9} {:>7} {:>8} {:>9}  {}\n",
            "TARGET", "BASELINE", "EVENTS", "ERR %", "P99 ms", "E-VALUE", "STATE"
        ));
        for t in &self.targets {
            out.push_str(&row(t));
        }
        out.push_str("\nDECISIONS (published) AND DEPLOYER ACTIONS\n");
        if self.decisions.is_empty() {
            out.push_str("  none yet\n");
        }
        for d in self.decisions.iter().rev().take(12).rev() {
            out.push_str(d);
            out.push('\n');
        }
        if !self.tty {
            out.push_str("----\n");
        }
        let mut so = std::io::stdout().lock();
        let _ = so.write_all(out.as_bytes());
        let _ = so.flush();
    }
}

fn row(t: &TargetOverview) -> String {
    let drift = t
        .drift
        .iter()
        .filter(|(_, v)| *v >= 0.1)
        .map(|(n, v)| format!("{n} psi {v:.2}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{:<26} {:<10} {:>9} {:>7.2} {:>8} {:>9}  {}{}\n",
        format!("{}/{} {}", t.kind.as_str(), t.name, t.version),
        t.baseline.as_deref().unwrap_or("-"),
        t.events,
        t.window_error_rate * 100.0,
        t.latency_ms.map_or("-".into(), |[_, _, p99]| format!("{p99:.1}")),
        t.error_rate_e_value.map_or("-".into(), |e| if e >= 1e6 { ">1e6".into() } else { format!("{e:.1}") }),
        t.state,
        if drift.is_empty() { String::new() } else { format!("  [{drift}]") }
    )
}

impl Observer for TerminalView {
    fn wants_views(&self) -> bool {
        true
    }

    fn engine(&mut self, engine: &Engine, stats: &ServiceStats) {
        self.take_deployer_lines();
        self.targets = engine.overview();
        let every = if self.tty { Duration::from_millis(500) } else { Duration::from_secs(5) };
        if self.last_draw.elapsed() >= every {
            self.last_draw = Instant::now();
            self.draw(engine, stats);
        }
    }

    fn published(&mut self, c: &Command) {
        let h = c.headline();
        let detail = match c.reason {
            Reason::FeatureDrift | Reason::PredictionDrift => h
                .drifted_features
                .iter()
                .map(|(name, psi)| format!("{name} psi {psi:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
            _ => format!(
                "{} {:.3} (threshold {:.3})",
                h.statistic.unwrap_or("statistic"),
                h.value.unwrap_or(f64::NAN),
                h.threshold.unwrap_or(f64::NAN)
            ),
        };
        let line = format!(
            "  {} {:<8} {}/{} {} vs {}  {}: {}",
            crate::time::Rfc3339(c.decided_at),
            c.command.as_str(),
            c.target.kind.as_str(),
            c.target.name,
            c.target.version,
            c.target.baseline_version.as_deref().unwrap_or("reference"),
            c.reason,
            detail
        );
        if !self.tty {
            println!("{line}");
        }
        self.log(line);
    }
}

/// Runs the demo until `duration` passes or `stop` is set. Returns the commands published.
pub fn run(opts: &DemoOptions, stop: Arc<AtomicBool>) -> Result<Vec<String>, DemoError> {
    let cluster = MockCluster::new(1).map_err(DemoError::EmbeddedKafka)?;
    let brokers = cluster.bootstrap_servers();
    let mut cfg = Config::default();
    cfg.kafka.brokers = brokers.clone();
    cfg.kafka.delivery = Delivery::AtLeastOnce;
    cfg.kafka.commit_interval = CfgDuration(500);
    cfg.kafka.idle_timeout = CfgDuration(2000);
    cfg.kafka.partitions = 1;
    cfg.policy = "demo".into();
    // Half an hour is compressed into the demo: drift is watched over 5-minute windows against a
    // 5-minute warm-up, so a retrained model version is checked against its own reference
    // before the end.
    cfg.drift.warmup = CfgDuration(5 * 60_000);
    cfg.drift.window.length = Some(CfgDuration(5 * 60_000));
    // The mock cluster has no admin API: create every topic up front.
    cfg.kafka.create_topics = false;
    for name in cfg.kafka.topics.all() {
        cluster.create_topic(name, 1, 1).map_err(|cause| DemoError::CreateTopic { topic: name.to_owned(), cause })?;
    }
    let topic = cfg.kafka.topics.events[0].clone();
    let command_topics = cfg.kafka.topics.command_topics().map(str::to_owned).to_vec();

    // The fleet: the demo scenario, starting now, paced at `speed` × real time.
    let scenario = sim::scenario("demo").ok_or(DemoError::Scenario)?;
    let clock = DemoClock { start: crate::clock::wall_ms(), t0: Instant::now(), speed: opts.speed };
    let (order_tx, orders) = mpsc::channel::<Order>();
    let (log, deployer_log) = mpsc::channel::<DeployerLine>();
    let fleet_log = log.clone();
    let deployer_stop = Arc::new(AtomicBool::new(false));
    let deployer = deployer::spawn(DeployerSetup {
        brokers: brokers.clone(),
        topics: command_topics,
        clock,
        retrain_delay: opts.retrain_delay,
        orders: order_tx,
        log,
        stop: deployer_stop.clone(),
    })?;
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("linger.ms", "5")
        .create()
        .map_err(DemoError::Producer)?;
    let fleet_stop = stop.clone();
    let seed = opts.seed;
    let fleet = std::thread::spawn(move || {
        let mut g = Generator::new(scenario, seed, 1.0).starting_at(clock.start);
        // Changes the deployer scheduled (a retrained version serving), shown once reached.
        let mut scheduled: Vec<DeployerLine> = Vec::new();
        loop {
            if fleet_stop.load(Ordering::SeqCst) {
                break;
            }
            // The deployer's actions apply before the next event, so never to the past.
            while let Ok(order) = orders.try_recv() {
                let change = g.apply(order.at, &order.action);
                let (now, later) = deployer::describe(&order, &change);
                let _ = fleet_log.send(now);
                scheduled.extend(later);
            }
            let next = g.next_time();
            scheduled.retain(|line| {
                let reached = next.is_none_or(|n| n >= line.at);
                if reached {
                    let _ = fleet_log.send(line.clone());
                }
                !reached
            });
            let Some(at) = next else { break };
            if let Some(wait) = clock.due(at).checked_sub(clock.t0.elapsed()) {
                std::thread::sleep(wait.min(Duration::from_millis(50)));
                continue;
            }
            let Some(line) = g.next_line() else { break };
            let record = BaseRecord::<(), [u8]>::to(&topic).payload(&line);
            // Any other error, or an embedded broker that takes no more for this long, would
            // not pass: the fleet stops, the service drains.
            if send_retrying(&producer, record, Duration::from_secs(10)).is_err() {
                return;
            }
            producer.poll(Duration::ZERO);
        }
        let _ = producer.flush(Duration::from_secs(5));
    });

    let service_stop = stop.clone();
    let deadline_stop = stop.clone();
    let duration = opts.duration;
    let timer = std::thread::spawn(move || {
        let end = Instant::now() + duration;
        while Instant::now() < end && !deadline_stop.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(100));
        }
        deadline_stop.store(true, Ordering::SeqCst);
    });
    let mut view = TerminalView {
        start: Instant::now(),
        last_draw: Instant::now() - Duration::from_secs(10),
        tty: std::io::stdout().is_terminal(),
        decisions: Vec::new(),
        deployer: deployer_log,
        actions: 0,
        targets: Vec::new(),
        speed: opts.speed,
        url: None,
    };
    let server = match &opts.http {
        Some(addr) => {
            let shared = crate::http::Shared::new(cfg.http.clone());
            let server = crate::http::serve(addr, shared.clone())?;
            view.url = Some(format!("http://{}/", server.addr));
            Some((server, shared))
        }
        None => None,
    };
    let (result, mut view) = match &server {
        Some((_, shared)) => {
            let mut both = crate::http::Both(view, crate::http::Publisher::new(shared.clone()));
            let result = crate::kafka::run(cfg, &brokers, service_stop, &mut both);
            shared.service_ended();
            (result, both.0)
        }
        None => (crate::kafka::run(cfg, &brokers, service_stop, &mut view), view),
    };
    if let Some((server, _)) = server {
        server.stop();
    }
    let _ = timer.join();
    let _ = fleet.join();
    deployer_stop.store(true, Ordering::SeqCst);
    let _ = deployer.join();
    view.take_deployer_lines();
    let stats = result.map_err(DemoError::Service)?;
    println!(
        "\ndemo finished: {} events consumed, {} commands published, {} deployer actions, {} commits\n",
        stats.messages, stats.commands, view.actions, stats.commits
    );
    println!("{:<26} {:<24} {:<24} {:>9} {:>8}  STATE", "TARGET", "FIRST EVENT", "LAST EVENT", "EVENTS", "MAX PSI");
    for t in &view.targets {
        let psi = t.drift.iter().map(|(_, v)| *v).fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
        println!(
            "{:<26} {:<24} {:<24} {:>9} {:>8}  {}",
            format!("{}/{} {}", t.kind.as_str(), t.name, t.version),
            format_rfc3339(t.first_seen),
            format_rfc3339(t.last_seen),
            t.events,
            psi.map_or("-".into(), |p| format!("{p:.3}")),
            t.state
        );
    }
    println!("\nDECISIONS (published) AND DEPLOYER ACTIONS");
    for d in &view.decisions {
        println!("{d}");
    }
    drop(cluster);
    Ok(view.decisions)
}

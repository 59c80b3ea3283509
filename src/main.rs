//! The `driftwatch` command line: parses arguments, builds a driver, runs it.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use driftwatch::config::Config;
use driftwatch::engine::Engine;
use driftwatch::replay::{describe, replay, stderr_is_terminal, ReplayOptions};
use driftwatch::sim;
use driftwatch::time::parse_duration;

#[derive(Debug, Parser)]
#[command(
    name = "driftwatch",
    version,
    about = "Rollback, retrain, review and promote decisions from production events"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The Kafka service: consume events, decide, publish commands (exactly once by default).
    Run {
        /// Policy and service config (TOML); defaults apply without one.
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Bootstrap servers (overrides `kafka.brokers`).
        #[arg(long, env = "DRIFTWATCH_BROKERS")]
        brokers: Option<String>,
        /// Delivery mode (overrides `kafka.delivery`): exactly-once or at-least-once.
        #[arg(long, value_parser = ["exactly-once", "at-least-once"])]
        delivery: Option<String>,
        /// Serve the HTTP API and status page on this address, e.g. 0.0.0.0:9464 (overrides `http.listen`).
        #[arg(long, env = "DRIFTWATCH_HTTP")]
        http: Option<String>,
        /// Bearer token the HTTP API requires (overrides `http.token`).
        #[arg(long, env = "DRIFTWATCH_HTTP_TOKEN", hide_env_values = true)]
        http_token: Option<String>,
    },
    /// The whole loop on an embedded Kafka with a simulated fleet and a live view; no set-up.
    Demo {
        /// Wall-clock length in seconds (the fleet's 30 minutes are compressed into it).
        #[arg(long, default_value_t = 90)]
        duration: u64,
        /// Random seed of the fleet.
        #[arg(long, default_value_t = 11)]
        seed: u64,
        /// Also serve the HTTP API and status page here, e.g. 127.0.0.1:9464.
        #[arg(long)]
        http: Option<String>,
        /// Event time from a retrain command to the retrained model version taking the traffic.
        #[arg(long, default_value = "3m", value_parser = parse_duration)]
        retrain_delay: i64,
    },
    /// Replay JSON Lines files (or - for stdin): commands as JSON Lines on stdout, a summary on stderr.
    Replay {
        /// Policy file (TOML); defaults apply without one.
        #[arg(long, env = "DRIFTWATCH_CONFIG")]
        config: Option<PathBuf>,
        /// Write every bad line, with its reason, to this file (JSON Lines).
        #[arg(long)]
        dead_letter: Option<PathBuf>,
        /// No summary on stderr.
        #[arg(long, short)]
        quiet: bool,
        /// Read the files one after the other instead of merging them by event time.
        #[arg(long)]
        concat: bool,
        /// The files are topic dumps as `kcat -C -J` prints them (one envelope per line, with
        /// headers), whose records are in this format: `driftwatch`, `kserve` or `seldon`. Partitions
        /// are merged by event time as `run` merges them.
        #[arg(long, value_parser = parse_format)]
        format: Option<driftwatch::fleet::Format>,
        /// Input files; `-` reads stdin. Several files are merged by event time, as `run`
        /// merges the partitions of its input topics.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Reference profile from training data (Parquet, Arrow IPC, CSV, JSON Lines) as an Arrow
    /// IPC file; `baseline show FILE` prints one.
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Baseline {
        /// Training data; the format comes from the extension (.parquet/.pq, .arrow/.ipc/.feather, .csv, .jsonl/.ndjson/.json).
        #[arg(long, required = true)]
        input: Option<PathBuf>,
        /// Profile file to write (Arrow IPC).
        #[arg(long, required = true)]
        out: Option<PathBuf>,
        /// Model the profile is for (checked against `[[profiles]]`).
        #[arg(long)]
        model: Option<String>,
        /// Model version the profile is for.
        #[arg(long)]
        version: Option<String>,
        /// Quantile bins per numeric column.
        #[arg(long, default_value_t = 10)]
        bins: usize,
        /// Categories kept per categorical column; the rest count as "other".
        #[arg(long, default_value_t = 50)]
        top_k: usize,
        /// Columns to leave out (ids, timestamps), comma-separated or repeated.
        #[arg(long, value_delimiter = ',')]
        exclude: Vec<String>,
        /// What `prediction` and `label` are: `classification` (classes: accuracy; numbers are
        /// read as class names, 1 and 1.0 both as class "1", which events must then send as the
        /// JSON string "1") or `regression` (numbers: MAE; a value that is not a number is an
        /// error). Without it, inferred from the column types: numbers are regression, text and
        /// booleans classification; the summary says which, and warns when numbers look like
        /// classes (at most 20 distinct whole numbers, e.g. labels written 0/1).
        #[arg(long, value_name = "classification|regression", value_parser = parse_task)]
        task: Option<driftwatch::profile::Task>,
        /// No summary or progress on stderr (warnings still are).
        #[arg(long, short)]
        quiet: bool,
        #[command(subcommand)]
        action: Option<BaselineAction>,
    },
    /// The default configuration as commented TOML on stdout: every key, its default and what it means.
    Config,
    /// Synthetic fleet traffic with injected faults, as JSON Lines on stdout.
    Simulate {
        /// Scenario name (see --list).
        #[arg(long, required_unless_present = "list")]
        scenario: Option<String>,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Override the scenario's length (e.g. 2h).
        #[arg(long)]
        duration: Option<String>,
        /// Multiply every stream's rate.
        #[arg(long, default_value_t = 1.0)]
        rate_scale: f64,
        /// Write here instead of stdout.
        #[arg(long, conflicts_with = "brokers")]
        out: Option<PathBuf>,
        /// Produce onto Kafka instead of writing JSON Lines.
        #[arg(long, env = "DRIFTWATCH_BROKERS")]
        brokers: Option<String>,
        /// Topic to produce to (with --brokers). Records are keyed by service (the app, else the
        /// model; a label by its `event_id`), as serving fleets key theirs.
        #[arg(long, default_value = "driftwatch.events")]
        topic: String,
        /// Create the topic with this many partitions (replication 1) when it does not exist.
        #[arg(long, requires = "brokers", value_parser = clap::value_parser!(i32).range(1..=10_000))]
        partitions: Option<i32>,
        /// Number of services of the `services` scenario (two versions each).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        services: Option<u32>,
        /// List scenarios and what they show.
        #[arg(long)]
        list: bool,
    },
}

#[derive(Debug, Subcommand)]
enum BaselineAction {
    /// Print a readable summary of a profile file.
    Show {
        /// Profile file.
        file: PathBuf,
    },
}

fn load_config(path: Option<&PathBuf>) -> Result<Config> {
    match path {
        Some(p) => Ok(Config::load(p)?),
        None => Ok(Config::default()),
    }
}

fn parse_format(s: &str) -> std::result::Result<driftwatch::fleet::Format, String> {
    driftwatch::fleet::Format::parse(s)
}

fn parse_task(s: &str) -> std::result::Result<driftwatch::profile::Task, String> {
    driftwatch::profile::Task::parse(s)
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Replay { config, dead_letter, quiet, concat, format, files } => {
            let cfg = load_config(config.as_ref())?;
            let mut engine = Engine::new(cfg);
            driftwatch::profile::load_profiles(&engine.config().clone(), &mut engine)?;
            let opts = ReplayOptions { dead_letter, progress: !quiet && stderr_is_terminal(), quiet, concat, format };
            let stdout = io::stdout();
            let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
            let summary = replay(&mut engine, &files, &mut out, &opts)?;
            out.flush()?;
            if !quiet {
                eprintln!("{}", describe(&engine, &summary));
            }
        }
        Cmd::Baseline { action: Some(BaselineAction::Show { file }), .. } => {
            print!("{}", driftwatch::profile::show(&file)?)
        }
        Cmd::Baseline {
            input: Some(input),
            out: Some(out),
            model,
            version,
            bins,
            top_k,
            exclude,
            task,
            quiet,
            action: None,
        } => {
            let opts = driftwatch::profile::BaselineOptions {
                model,
                version,
                bins,
                top_k,
                exclude,
                task,
                progress: !quiet && stderr_is_terminal(),
                ..driftwatch::profile::BaselineOptions::new(input)
            };
            let report = driftwatch::profile::run_baseline(&opts, &out)?;
            if !quiet {
                eprintln!("{}", report.summary);
            }
            for warning in &report.warnings {
                eprintln!("warning: {warning}");
            }
        }
        Cmd::Baseline { .. } => anyhow::bail!("baseline needs --input and --out, or `show FILE`"),
        Cmd::Run { config, brokers, delivery, http, http_token } => {
            init_logging("info");
            let mut cfg = load_config(config.as_ref())?;
            if let Some(b) = brokers {
                cfg.kafka.brokers = b;
            }
            match delivery.as_deref() {
                Some("exactly-once") => cfg.kafka.delivery = driftwatch::kafka::Delivery::ExactlyOnce,
                Some("at-least-once") => cfg.kafka.delivery = driftwatch::kafka::Delivery::AtLeastOnce,
                _ => {}
            }
            if http.is_some() {
                cfg.http.listen = http;
            }
            if http_token.is_some() {
                cfg.http.token = http_token;
            }
            cfg.validate()?;
            let shutdown = shutdown_on_signal()?;
            let brokers = cfg.kafka.brokers.clone();
            let stats = match cfg.http.listen.clone() {
                Some(addr) => {
                    let shared = driftwatch::http::Shared::new(cfg.http.clone());
                    let server = driftwatch::http::serve(&addr, shared.clone())?;
                    if cfg.http.advertise.is_none() {
                        cfg.http.advertise = Some(driftwatch::http::advertised_url(server.addr));
                    }
                    let mut publisher = driftwatch::http::Publisher::new(shared.clone());
                    let stats = driftwatch::kafka::run(cfg, &brokers, shutdown, &mut publisher);
                    shared.service_ended();
                    server.stop();
                    stats?
                }
                None => driftwatch::kafka::run(cfg, &brokers, shutdown, &mut driftwatch::observe::NoObserver)?,
            };
            eprintln!(
                "driftwatch run: {} messages, {} dead letters, {} commands, {} commits, {} sessions",
                stats.messages, stats.dead_letters, stats.commands, stats.commits, stats.sessions
            );
        }
        Cmd::Demo { duration, seed, http, retrain_delay } => {
            init_logging("error");
            if duration == 0 {
                anyhow::bail!("--duration must be at least 1 second");
            }
            let stop = shutdown_on_signal()?;
            let opts = driftwatch::demo::DemoOptions {
                duration: std::time::Duration::from_secs(duration),
                speed: 1800.0 / duration as f64,
                seed,
                http,
                retrain_delay,
            };
            driftwatch::demo::run(&opts, stop)?;
        }
        Cmd::Config => {
            let text = driftwatch::config::reference::commented_defaults()?;
            io::stdout().lock().write_all(text.as_bytes())?;
        }
        Cmd::Simulate { scenario, seed, duration, rate_scale, out, list, brokers, topic, partitions, services } => {
            if list {
                for name in sim::SCENARIOS {
                    if let Some(s) = sim::scenario(name) {
                        println!("{name:20} {}", s.description);
                    }
                }
                return Ok(());
            }
            let name = scenario.unwrap_or_default();
            let Some(mut spec) = sim::scenario(&name) else {
                anyhow::bail!("unknown scenario `{name}`; known: {}", sim::SCENARIOS.join(", "));
            };
            if let Some(n) = services {
                if name != "services" {
                    anyhow::bail!("--services applies to the `services` scenario only (not `{name}`)");
                }
                spec = sim::services(n as usize);
            }
            if !(rate_scale.is_finite() && rate_scale > 0.0) {
                anyhow::bail!("--rate-scale must be a positive number (got {rate_scale})");
            }
            let duration =
                duration.map(|d| parse_duration(&d).map_err(|e| anyhow::anyhow!("--duration: {e}"))).transpose()?;
            if let Some(brokers) = brokers {
                let mut s = spec;
                if let Some(d) = duration {
                    s.duration = d;
                }
                if let Some(p) = partitions {
                    create_input_topic(&brokers, &topic, p)?;
                }
                let n = produce_scenario(s, seed, rate_scale, &brokers, &topic)?;
                eprintln!("produced {n} messages to {topic} on {brokers}");
                return Ok(());
            }
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock())),
            };
            match sim::write_spec(spec, seed, rate_scale, duration, &mut sink) {
                Ok(_) => {}
                // A closed pipe (`simulate | head`) is not an error.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Logs to stderr; `RUST_LOG` overrides the level.
fn init_logging(default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("driftwatch={default},rdkafka=warn")));
    // Colours only on a terminal: logs written to a file or collected by a container runtime
    // stay plain text.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(io::stderr().is_terminal())
        .with_writer(io::stderr)
        .try_init();
}

/// A flag set by SIGINT or SIGTERM.
fn shutdown_on_signal() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let f = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    std::thread::spawn(move || {
        rt.block_on(async {
            let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            f.store(true, Ordering::SeqCst);
        });
    });
    Ok(flag)
}

/// Creates `topic` with `partitions` partitions unless it exists.
fn create_input_topic(brokers: &str, topic: &str, partitions: i32) -> Result<()> {
    use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
    use rdkafka::client::DefaultClientContext;
    use rdkafka::types::RDKafkaErrorCode;
    let admin: AdminClient<DefaultClientContext> =
        rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).create().context("creating the admin client")?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().context("runtime")?;
    let new = [NewTopic::new(topic, partitions, TopicReplication::Fixed(1))];
    let opts = AdminOptions::new().operation_timeout(Some(std::time::Duration::from_secs(20)));
    let results = rt.block_on(admin.create_topics(&new, &opts)).with_context(|| format!("creating {topic}"))?;
    for r in results {
        match r {
            Ok(name) => eprintln!("created {name} with {partitions} partitions"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => anyhow::bail!("creating {name}: {code}"),
        }
    }
    Ok(())
}

/// The key a serving fleet would give an event line: its app, else its model, else (a label)
/// its `event_id`.
fn service_key(line: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Keys {
        app: Option<String>,
        model: Option<String>,
        event_id: Option<String>,
    }
    let k: Keys = serde_json::from_slice(line).ok()?;
    k.app.or(k.model).or(k.event_id)
}

/// Produces a scenario's lines onto a topic, keyed by service; returns how many.
fn produce_scenario(s: sim::Scenario, seed: u64, rate_scale: f64, brokers: &str, topic: &str) -> Result<u64> {
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("compression.type", "lz4")
        .set("enable.idempotence", "true")
        .create()
        .context("creating the producer")?;
    let mut g = sim::Generator::new(s, seed, rate_scale);
    let mut n = 0u64;
    while let Some(line) = g.next_line() {
        let key = service_key(&line);
        let mut record = BaseRecord::<str, [u8]>::to(topic).payload(&line);
        if let Some(k) = &key {
            record = record.key(k.as_str());
        }
        // A queue full for as long as the final flush may take is a broker that is not taking
        // the scenario.
        driftwatch::kafka::send_retrying(&producer, record, std::time::Duration::from_secs(60))
            .map_err(|e| anyhow::anyhow!("producing to {topic}: {e}"))?;
        n += 1;
        producer.poll(std::time::Duration::ZERO);
    }
    producer.flush(std::time::Duration::from_secs(60)).context("flushing")?;
    Ok(n)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if e.downcast_ref::<io::Error>().is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe) {
                return ExitCode::SUCCESS;
            }
            eprintln!("driftwatch: {e:#}");
            ExitCode::from(2)
        }
    }
}

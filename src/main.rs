//! The `driftwatch` command line: parses arguments, builds a driver, runs it.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

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
        /// Input files; `-` reads stdin.
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
        /// No summary or progress on stderr.
        #[arg(long, short)]
        quiet: bool,
        #[command(subcommand)]
        action: Option<BaselineAction>,
    },
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
        #[arg(long)]
        out: Option<PathBuf>,
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

fn run() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Replay { config, dead_letter, quiet, files } => {
            let cfg = load_config(config.as_ref())?;
            let mut engine = Engine::new(cfg);
            driftwatch::profile::load_profiles(&engine.config().clone(), &mut engine)?;
            let opts = ReplayOptions { dead_letter, progress: !quiet && stderr_is_terminal(), quiet };
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
            quiet,
            action: None,
        } => {
            let opts = driftwatch::profile::BaselineOptions {
                model,
                version,
                bins,
                top_k,
                exclude,
                progress: !quiet && stderr_is_terminal(),
                ..driftwatch::profile::BaselineOptions::new(input)
            };
            let summary = driftwatch::profile::run_baseline(&opts, &out)?;
            if !quiet {
                eprintln!("{summary}");
            }
        }
        Cmd::Baseline { .. } => anyhow::bail!("baseline needs --input and --out, or `show FILE`"),
        Cmd::Simulate { scenario, seed, duration, rate_scale, out, list } => {
            if list {
                for name in sim::SCENARIOS {
                    if let Some(s) = sim::scenario(name) {
                        println!("{name:20} {}", s.description);
                    }
                }
                return Ok(());
            }
            let name = scenario.unwrap_or_default();
            if sim::scenario(&name).is_none() {
                anyhow::bail!("unknown scenario `{name}`; known: {}", sim::SCENARIOS.join(", "));
            }
            if !(rate_scale.is_finite() && rate_scale > 0.0) {
                anyhow::bail!("--rate-scale must be a positive number (got {rate_scale})");
            }
            let duration =
                duration.map(|d| parse_duration(&d).map_err(|e| anyhow::anyhow!("--duration: {e}"))).transpose()?;
            let mut sink: Box<dyn Write> = match &out {
                Some(p) => Box::new(io::BufWriter::new(
                    std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
                )),
                None => Box::new(io::BufWriter::with_capacity(1 << 16, io::stdout().lock())),
            };
            match sim::write_scenario(&name, seed, rate_scale, duration, &mut sink) {
                Ok(_) => {}
                // A closed pipe (`simulate | head`) is not an error.
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
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

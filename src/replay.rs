//! The file driver: JSON Lines in, commands out, a summary of what was read.
//!
//! Reads each input in large blocks and splits lines itself, so that the engine, not I/O,
//! bounds the rate. Bad lines are counted by reason, the first few are reported with their
//! line numbers, and all of them can be written to a dead-letter file.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use memchr::memchr;

use crate::engine::{Engine, Position};
use crate::event::{is_blank, BadInput, BadReason, Decoder};

/// Bad lines reported individually on stderr before only counting.
const SHOWN_BAD_LINES: usize = 10;
const BLOCK: usize = 1 << 20;

/// How to replay.
#[derive(Debug, Default)]
pub struct ReplayOptions {
    /// Write each bad line with its reason here (JSON Lines).
    pub dead_letter: Option<PathBuf>,
    /// Show progress on stderr (only sensible on a terminal).
    pub progress: bool,
    /// Stay quiet on stderr (benchmarks, tests).
    pub quiet: bool,
}

/// What a replay read and did.
#[derive(Debug, Default, Clone)]
pub struct ReplaySummary {
    /// Lines read (blank lines included).
    pub lines: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Valid events ingested.
    pub events: u64,
    /// Bad lines.
    pub bad: u64,
    /// Commands written.
    pub commands: u64,
    /// Wall time.
    pub elapsed: Duration,
}

/// Wall-clock now in epoch milliseconds (for `issued_at`).
pub fn wall_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

struct DeadLetter {
    out: io::BufWriter<File>,
}

impl DeadLetter {
    fn write(&mut self, source: &str, line: u64, raw: &[u8], bad: &BadInput) -> io::Result<()> {
        let rec = serde_json::json!({
            "source": source,
            "line": line,
            "reason": bad.reason.as_str(),
            "detail": bad.detail,
            "raw": String::from_utf8_lossy(raw),
        });
        writeln!(self.out, "{rec}")
    }
}

/// Replays `inputs` (paths, or `-` for stdin) through `engine`, writing commands to `out`.
pub fn replay(
    engine: &mut Engine,
    inputs: &[PathBuf],
    out: &mut dyn Write,
    opts: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let start = Instant::now();
    let mut summary = ReplaySummary::default();
    let mut dead = match &opts.dead_letter {
        Some(p) => Some(DeadLetter {
            out: io::BufWriter::new(File::create(p).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create dead-letter file {}: {e}", p.display()))
            })?),
        }),
        None => None,
    };
    let mut shown = 0usize;
    let mut decoder = Decoder::default();
    let mut last_progress = Instant::now();
    for input in inputs {
        let name = input.display().to_string();
        let source = engine.register_source(&name);
        let mut reader: Box<dyn Read> = if input == Path::new("-") {
            Box::new(io::stdin().lock())
        } else {
            Box::new(File::open(input).map_err(|e| io::Error::new(e.kind(), format!("cannot open {name}: {e}")))?)
        };
        let mut buf: Vec<u8> = vec![0; BLOCK];
        let mut filled = 0usize;
        let mut line_no = 0u64;
        loop {
            if filled == buf.len() {
                // A line longer than the buffer: grow it.
                buf.resize(buf.len() * 2, 0);
            }
            let n = reader.read(&mut buf[filled..])?;
            let eof = n == 0;
            filled += n;
            summary.bytes += n as u64;
            let mut pos = 0usize;
            loop {
                let rest = &buf[pos..filled];
                let (line, next) = match memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], pos + i + 1),
                    None if eof && !rest.is_empty() => (rest, filled),
                    None => break,
                };
                line_no += 1;
                summary.lines += 1;
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                if !is_blank(line) {
                    let result = match decoder.decode(line) {
                        Ok(ev) => {
                            let r = engine.ingest(&ev, Position { source, offset: line_no });
                            decoder.recycle(ev);
                            r
                        }
                        Err(bad) => {
                            engine.reject(&bad);
                            Err(bad)
                        }
                    };
                    match result {
                        Ok(()) => summary.events += 1,
                        Err(bad) => {
                            summary.bad += 1;
                            if !opts.quiet && shown < SHOWN_BAD_LINES {
                                shown += 1;
                                eprintln!("{name}:{line_no}: bad input: {bad}");
                            }
                            if let Some(d) = dead.as_mut() {
                                d.write(&name, line_no, line, &bad)?;
                            }
                        }
                    }
                    if engine.has_commands() {
                        summary.commands += write_commands(engine, out)?;
                    }
                }
                pos = next;
            }
            buf.copy_within(pos..filled, 0);
            filled -= pos;
            if opts.progress && last_progress.elapsed() >= Duration::from_secs(1) {
                last_progress = Instant::now();
                let secs = start.elapsed().as_secs_f64();
                eprint!(
                    "\r{name}: {} lines, {:.0} events/s, {:.0} MB/s, {} commands   ",
                    summary.lines,
                    summary.events as f64 / secs,
                    summary.bytes as f64 / secs / 1e6,
                    summary.commands
                );
            }
            if eof {
                break;
            }
        }
    }
    engine.finish();
    summary.commands += write_commands(engine, out)?;
    out.flush()?;
    if let Some(d) = dead.as_mut() {
        d.out.flush()?;
    }
    summary.elapsed = start.elapsed();
    if opts.progress {
        eprintln!();
    }
    Ok(summary)
}

fn write_commands(engine: &mut Engine, out: &mut dyn Write) -> io::Result<u64> {
    let now = wall_ms();
    let mut n = 0;
    for mut c in engine.drain_commands() {
        c.stamp(now);
        writeln!(out, "{}", c.to_json())?;
        n += 1;
    }
    Ok(n)
}

/// A human summary of a replay for stderr.
pub fn describe(engine: &Engine, s: &ReplaySummary) -> String {
    use std::fmt::Write as _;
    let c = engine.counters();
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "read {} lines ({:.1} MB) in {:.2} s: {:.0} events/s, {:.0} MB/s",
        s.lines,
        s.bytes as f64 / 1e6,
        secs,
        s.lines as f64 / secs,
        s.bytes as f64 / 1e6 / secs
    );
    let _ = writeln!(
        out,
        "events: {} request, {} prediction, {} error, {} label; {} late (counted in totals only)",
        c.events[0], c.events[1], c.events[2], c.events[3], c.late_events
    );
    if s.bad > 0 {
        let reasons: Vec<String> = BadReason::ALL
            .iter()
            .filter(|r| c.bad[r.index()] > 0)
            .map(|r| format!("{} {}", c.bad[r.index()], r.as_str()))
            .collect();
        let _ = writeln!(out, "bad input: {} lines ({})", s.bad, reasons.join(", "));
    } else {
        let _ = writeln!(out, "bad input: none");
    }
    let j = engine.join_counters();
    let _ = writeln!(
        out,
        "labels: {} matched, {} late, {} unmatched; {} predictions evicted unlabelled, {} not awaited (model gets no labels)",
        j.matched, c.late_labels, j.labels_unmatched, j.predictions_evicted, c.predictions_not_awaited
    );
    let (features, categories) = engine.cardinality_drops();
    if c.dropped_over_target_limit + features + categories + c.targets_evicted > 0 {
        let _ = writeln!(
            out,
            "limits: {} events over the target limit, {} feature values over the feature limit, {} categories over the category limit, {} idle targets forgotten",
            c.dropped_over_target_limit, features, categories, c.targets_evicted
        );
    }
    let _ = write!(
        out,
        "commands: {} ({} rollback, {} retrain, {} review, {} promote)",
        s.commands, c.commands[0], c.commands[1], c.commands[2], c.commands[3]
    );
    if let Some(rss) = peak_rss_bytes() {
        let _ = write!(out, "\npeak memory: {:.1} MB; {} targets tracked", rss as f64 / 1e6, engine.target_count());
    }
    out
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// True when stderr is a terminal (progress is shown only then).
pub fn stderr_is_terminal() -> bool {
    io::stderr().is_terminal()
}

//! The file driver: JSON Lines in, commands out, a summary of what was read.
//!
//! Reads each input in large blocks and splits lines itself, so that the engine, not I/O,
//! bounds the rate. Bad lines are counted by reason, the first few are reported with their
//! line numbers, and all of them can be written to a dead-letter file.

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::clock::wall_ms;

use memchr::memchr;

use crate::engine::tasks::Decider;
use crate::engine::{Engine, Position};
use crate::event::{is_blank, BadInput, BadReason, Decoder, Event};
use crate::fleet::envelope::Envelope;
use crate::fleet::{Format, Formats, RawRecord};
use crate::merge::{pick, Head, Pick};
use crate::time::Millis;

mod blocks;

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
    /// Read several inputs one after the other instead of merging them by event time.
    pub concat: bool,
    /// The inputs are `kcat -J` envelopes whose payloads are in this format (instead of
    /// driftwatch JSON Lines).
    pub format: Option<Format>,
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

/// A line: its number and byte range in its input's buffer.
type LineAt = (u64, usize, usize);

/// One input read in large blocks and split into lines.
struct Lines {
    name: String,
    source: u32,
    reader: Box<dyn Read>,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
    filled: usize,
    eof: bool,
    line_no: u64,
}

impl Lines {
    fn open(input: &Path, engine: &mut Engine) -> io::Result<Lines> {
        let (name, reader) = open_input(input)?;
        let source = engine.register_source(&name);
        Ok(Lines { name, source, reader, buf: vec![0; BLOCK], pos: 0, filled: 0, eof: false, line_no: 0 })
    }

    /// The next line's number and byte range in `buf` (without the line end), or `None` at the
    /// end. The range stays valid until the next call.
    fn next(&mut self, summary: &mut ReplaySummary) -> io::Result<Option<LineAt>> {
        loop {
            let rest = &self.buf[self.pos..self.filled];
            let (end, next) = match memchr(b'\n', rest) {
                Some(i) => (self.pos + i, self.pos + i + 1),
                None if self.eof && !rest.is_empty() => (self.filled, self.filled),
                None if self.eof => return Ok(None),
                None => {
                    self.buf.copy_within(self.pos..self.filled, 0);
                    self.filled -= self.pos;
                    self.pos = 0;
                    if self.filled == self.buf.len() {
                        // A line longer than the buffer: grow it.
                        self.buf.resize(self.buf.len() * 2, 0);
                    }
                    let n = self.reader.read(&mut self.buf[self.filled..])?;
                    self.eof = n == 0;
                    self.filled += n;
                    summary.bytes += n as u64;
                    continue;
                }
            };
            let start = self.pos;
            self.pos = next;
            self.line_no += 1;
            summary.lines += 1;
            let end = if end > start && self.buf[end - 1] == b'\r' { end - 1 } else { end };
            return Ok(Some((self.line_no, start, end)));
        }
    }

    /// The next line that is not blank, as [`Lines::next`].
    fn next_event(&mut self, summary: &mut ReplaySummary) -> io::Result<Option<LineAt>> {
        while let Some((n, a, b)) = self.next(summary)? {
            if !is_blank(&self.buf[a..b]) {
                return Ok(Some((n, a, b)));
            }
        }
        Ok(None)
    }
}

/// An input's name and a reader of it (`-` is stdin).
fn open_input(input: &Path) -> io::Result<(String, Box<dyn Read + Send>)> {
    let name = input.display().to_string();
    let reader: Box<dyn Read + Send> = if input == Path::new("-") {
        Box::new(io::stdin())
    } else {
        Box::new(File::open(input).map_err(|e| io::Error::new(e.kind(), format!("cannot open {name}: {e}")))?)
    };
    Ok((name, reader))
}

/// One input read and decoded on a thread of its own while this one ingests.
fn pipelined(engine: &mut Engine, input: &Path, sink: &mut Sink<'_>, progress: &mut Progress) -> io::Result<()> {
    let (name, reader) = open_input(input)?;
    let source = engine.register_source(&name);
    blocks::with_blocks(reader, |blocks| {
        while let Some(mut block) = blocks.next()? {
            sink.summary.lines += block.line_count;
            sink.summary.bytes += block.bytes;
            block.each(|line_no, line, decoded| {
                let pos = Position { source, offset: line_no };
                sink.record(engine, decoded, pos, &name, line_no, line)?;
                progress.show(&name, &sink.summary);
                Ok::<_, io::Error>(())
            })?;
            blocks.give_back(block);
        }
        Ok(())
    })
}

/// What a replay writes besides commands: counts, reported bad lines, dead letters.
struct Sink<'a> {
    out: &'a mut dyn Write,
    dead: Option<DeadLetter>,
    shown: usize,
    quiet: bool,
    summary: ReplaySummary,
}

impl Sink<'_> {
    /// Decodes and ingests one line; writes the commands it led to.
    fn line(
        &mut self,
        engine: &mut Engine,
        decoder: &mut Decoder,
        input: &Lines,
        (line_no, a, b): LineAt,
    ) -> io::Result<()> {
        let line = &input.buf[a..b];
        let decoded = decoder.decode(line);
        let pos = Position { source: input.source, offset: line_no };
        self.record(engine, decoded.as_ref(), pos, &input.name, line_no, line)?;
        if let Ok(ev) = decoded {
            decoder.recycle(ev);
        }
        Ok(())
    }

    /// Ingests one decoded record (or counts and reports a bad one); writes the commands it
    /// led to.
    fn record(
        &mut self,
        engine: &mut Engine,
        decoded: Result<&Event<'_>, &BadInput>,
        pos: Position,
        name: &str,
        line_no: u64,
        line: &[u8],
    ) -> io::Result<()> {
        let result = match decoded {
            Ok(ev) => engine.ingest(ev, pos),
            Err(bad) => {
                engine.reject(bad);
                Err(bad.clone())
            }
        };
        match result {
            Ok(()) => self.summary.events += 1,
            Err(bad) => {
                self.summary.bad += 1;
                if !self.quiet && self.shown < SHOWN_BAD_LINES {
                    self.shown += 1;
                    eprintln!("{name}:{line_no}: bad input: {bad}");
                }
                if let Some(d) = self.dead.as_mut() {
                    d.write(name, line_no, line, &bad)?;
                }
            }
        }
        if engine.has_commands() {
            self.summary.commands += write_commands(engine, self.out)?;
        }
        Ok(())
    }
}

/// The commands of seeded simulation `scenario` under `config`, replayed in process: what
/// `simulate | replay` gives, without the pipe and the files (for measurements over many seeds).
pub fn simulated(
    scenario: crate::sim::Scenario,
    seed: u64,
    config: crate::config::Config,
) -> Vec<crate::command::Command> {
    simulated_into(scenario, seed, &mut Engine::new(config))
}

/// [`simulated`] through any [`Decider`]: one engine, or the targets split over tasks.
pub fn simulated_into(
    scenario: crate::sim::Scenario,
    seed: u64,
    decider: &mut dyn Decider,
) -> Vec<crate::command::Command> {
    let mut generator = crate::sim::Generator::new(scenario, seed, 1.0);
    let mut decoder = Decoder::default();
    let mut out = Vec::new();
    let mut offset = 0;
    while let Some(line) = generator.next_line() {
        offset += 1;
        match decoder.decode(&line) {
            Ok(ev) => {
                // Commands are what is measured; a rejected event is counted by the decider.
                let _ = decider.ingest(&ev, Position { source: 0, offset });
                decoder.recycle(ev);
            }
            Err(bad) => decider.reject(&bad),
        }
        decider.drain_into(&mut out);
    }
    decider.finish();
    decider.drain_into(&mut out);
    out
}

/// Replays `inputs` (paths, or `-` for stdin) through `engine`, writing commands to `out`.
///
/// Several inputs are merged by event time with the rule `run` applies to Kafka partitions
/// ([`crate::merge`]), so that replaying a dump of each partition gives the service's
/// decisions; with [`ReplayOptions::concat`] they are read one after the other instead.
pub fn replay(
    engine: &mut Engine,
    inputs: &[PathBuf],
    out: &mut dyn Write,
    opts: &ReplayOptions,
) -> io::Result<ReplaySummary> {
    let start = Instant::now();
    let dead = match &opts.dead_letter {
        Some(p) => Some(DeadLetter {
            out: io::BufWriter::new(File::create(p).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot create dead-letter file {}: {e}", p.display()))
            })?),
        }),
        None => None,
    };
    let mut sink = Sink { out, dead, shown: 0, quiet: opts.quiet, summary: ReplaySummary::default() };
    let mut decoder = Decoder::default();
    let mut progress = Progress { on: opts.progress, records: 0, start, last: Instant::now() };
    if let Some(format) = opts.format {
        envelopes(engine, inputs, format, &mut sink, &mut decoder)?;
    } else if inputs.len() == 1 || opts.concat {
        for input in inputs {
            pipelined(engine, input, &mut sink, &mut progress)?;
        }
    } else {
        merged(engine, inputs, &mut sink, &mut decoder, &mut progress)?;
    }
    engine.finish();
    let Sink { out, dead, mut summary, .. } = sink;
    summary.commands += write_commands(engine, out)?;
    out.flush()?;
    if let Some(mut d) = dead {
        d.out.flush()?;
    }
    summary.elapsed = start.elapsed();
    if opts.progress {
        eprintln!();
    }
    Ok(summary)
}

/// Several inputs merged by event time: each input's next line is decoded once to learn its
/// time, and again when its turn comes (lines stay in their input's buffer meanwhile).
fn merged(
    engine: &mut Engine,
    inputs: &[PathBuf],
    sink: &mut Sink<'_>,
    decoder: &mut Decoder,
    progress: &mut Progress,
) -> io::Result<()> {
    let mut all: Vec<Lines> = Vec::with_capacity(inputs.len());
    let mut heads: Vec<Option<(LineAt, Option<Millis>)>> = Vec::with_capacity(inputs.len());
    let time_of = |decoder: &mut Decoder, lines: &Lines, (_, a, b): LineAt| match decoder.decode(&lines.buf[a..b]) {
        Ok(ev) => {
            let ts = ev.ts;
            decoder.recycle(ev);
            Some(ts)
        }
        Err(_) => None,
    };
    for input in inputs {
        let mut lines = Lines::open(input, engine)?;
        let head = lines.next_event(&mut sink.summary)?.map(|l| (l, time_of(decoder, &lines, l)));
        all.push(lines);
        heads.push(head);
    }
    let max_future = engine.config().windows.max_future.0;
    loop {
        let offered = heads.iter().map(|h| h.map_or(Head::Done, |(_, ts)| Head::Ready(ts)));
        let i = match pick(offered, engine.max_event_time(), max_future) {
            Pick::Input(i) => i,
            Pick::Wait | Pick::Empty => return Ok(()),
        };
        let Some((line, _)) = heads[i] else { return Ok(()) };
        sink.line(engine, decoder, &all[i], line)?;
        progress.show(&all[i].name, &sink.summary);
        heads[i] = all[i].next_event(&mut sink.summary)?.map(|l| (l, time_of(decoder, &all[i], l)));
    }
}

/// A record of a dump waiting for its turn: where it was read and what it holds.
struct Dumped {
    name: usize,
    line_no: u64,
    line: Vec<u8>,
    envelope: Result<Envelope, BadInput>,
    ts: Option<Millis>,
}

/// Decodes the record of an envelope in `format`; a line that is no envelope is bad input.
fn decode_dumped<'a>(
    formats: &Formats,
    decoder: &mut Decoder,
    d: &'a Dumped,
) -> Result<crate::event::Event<'a>, BadInput> {
    let env = d.envelope.as_ref().map_err(Clone::clone)?;
    let headers = env.header_pairs();
    let rec = RawRecord {
        topic: &env.topic,
        headers: &headers,
        payload: env.payload.as_deref().unwrap_or(&[]),
        timestamp: env.timestamp(),
    };
    formats.decode(decoder, rec)
}

/// Dumps of topics as `kcat -J` envelopes: the records of each topic partition, in their
/// order, merged across partitions by event time as `run` merges them. Positions in evidence
/// are `topic/partition` and offset, as `run` gives them.
fn envelopes(
    engine: &mut Engine,
    inputs: &[PathBuf],
    format: Format,
    sink: &mut Sink<'_>,
    decoder: &mut Decoder,
) -> io::Result<()> {
    // Topics the config names a format for keep it; the others are in `format`.
    let cfg = engine.config();
    let formats = Formats::new(cfg.kafka.topics.formats.clone(), format, &cfg.fleet);
    let mut names: Vec<String> = Vec::new();
    // Records per (topic, partition), in file order; lines that are no envelope in a queue of
    // their own file, so they are reported where they stand.
    let mut queues: Vec<(String, std::collections::VecDeque<Dumped>)> = Vec::new();
    for input in inputs {
        let mut lines = Lines::open(input, engine)?;
        names.push(lines.name.clone());
        let name = names.len() - 1;
        while let Some((line_no, a, b)) = lines.next_event(&mut sink.summary)? {
            let line = lines.buf[a..b].to_vec();
            let envelope = Envelope::parse(&line);
            let key = match &envelope {
                Ok(e) => format!("{}/{}", e.topic, e.partition),
                Err(_) => lines.name.clone(),
            };
            let mut d = Dumped { name, line_no, line, envelope, ts: None };
            d.ts = decode_dumped(&formats, decoder, &d).ok().map(|e| e.ts);
            match queues.iter_mut().find(|(k, _)| *k == key) {
                Some((_, q)) => q.push_back(d),
                None => queues.push((key, std::collections::VecDeque::from([d]))),
            }
        }
    }
    let sources: Vec<u32> = queues.iter().map(|(k, _)| engine.register_source(k)).collect();
    let max_future = engine.config().windows.max_future.0;
    loop {
        let offered = queues.iter().map(|(_, q)| q.front().map_or(Head::Done, |d| Head::Ready(d.ts)));
        let i = match pick(offered, engine.max_event_time(), max_future) {
            Pick::Input(i) => i,
            Pick::Wait | Pick::Empty => return Ok(()),
        };
        let Some(d) = queues[i].1.pop_front() else { return Ok(()) };
        let offset = d.envelope.as_ref().map_or(d.line_no, |e| e.offset.max(0) as u64);
        let decoded = decode_dumped(&formats, decoder, &d);
        let pos = Position { source: sources[i], offset };
        sink.record(engine, decoded.as_ref(), pos, &names[d.name], d.line_no, &d.line)?;
        if let Ok(ev) = decoded {
            decoder.recycle(ev);
        }
    }
}

/// Progress on stderr, at most once a second.
struct Progress {
    on: bool,
    /// Records shown so far (the clock is read every 4096th).
    records: u64,
    start: Instant,
    last: Instant,
}

impl Progress {
    fn show(&mut self, name: &str, summary: &ReplaySummary) {
        self.records += 1;
        if !self.on || !self.records.is_multiple_of(4096) || self.last.elapsed() < Duration::from_secs(1) {
            return;
        }
        self.last = Instant::now();
        let secs = self.start.elapsed().as_secs_f64();
        eprint!(
            "\r{name}: {} lines, {:.0} events/s, {:.0} MB/s, {} commands   ",
            summary.lines,
            summary.events as f64 / secs,
            summary.bytes as f64 / secs / 1e6,
            summary.commands
        );
    }
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
    if c.drift_type_mismatches > 0 {
        let _ = writeln!(
            out,
            "drift: {} feature windows not compared: values of another type than the reference (numbers against categories): {}",
            c.drift_type_mismatches,
            engine.type_mismatched().iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let p = engine.pair_counters();
    if p != Default::default() {
        let _ = writeln!(
            out,
            "inference logs: {} paired, {} without response and {} failed (errors), {} responses without request, {} failures without request, {} duplicate ids, {} instance-count mismatches, {} over fleet.max_pending",
            p.paired, p.no_response, p.failed, p.unpaired_responses, p.unpaired_failures, p.duplicate_ids, p.row_mismatches, p.over_limit
        );
    }
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
